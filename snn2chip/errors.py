"""User-facing errors: one line naming the file, the node and the problem."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelError(Exception):
    """A problem with the user's model or data (not a bug in snn2chip).

    ``str(error)`` is one line: ``FILE: node 'NODE': PROBLEM`` (file and node when known).
    The CLI prints it and exits with code 1.
    """

    problem: str
    file: str | None = None
    node: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        if self.node is not None:
            where += f"node '{self.node}': "
        return where + " ".join(self.problem.split())

    def in_file(self, file: str) -> "ModelError":
        """The same error attributed to ``file`` (kept if one is already named)."""
        return self if self.file else dataclasses.replace(self, file=str(file))
