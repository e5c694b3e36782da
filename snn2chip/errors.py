"""User-facing errors: one line naming the file (or option), the node and the problem."""

from __future__ import annotations

import dataclasses


# Not frozen: from Python 3.11 on, contextlib assigns ``__traceback__`` to exceptions leaving a
# ``with`` block. eq=False keeps Exception's identity equality and hash.
@dataclasses.dataclass(eq=False)
class ModelError(Exception):
    """A problem with the user's model, data, options or output path (not a bug in snn2chip).

    ``str(error)`` is one line: ``FILE: node 'NODE': PROBLEM`` or ``option --NAME: PROBLEM``
    (each part when known). The command line prints it and exits with code 1; an error that
    names neither a file nor an option is reported as a bug (see :mod:`snn2chip.cli`).
    """

    problem: str
    file: str | None = None
    node: str | None = None
    option: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        if self.option is not None:
            where += f"option {self.option}: "
        if self.node is not None:
            where += f"node '{self.node}': "
        return where + " ".join(self.problem.split())

    @property
    def placed(self) -> bool:
        """Whether the message says where the problem is (a file or an option)."""
        return bool(self.file) or self.option is not None

    def in_file(self, file: str) -> "ModelError":
        """The same error attributed to ``file`` (kept as it is if it already names a file or an option)."""
        return self if self.placed else dataclasses.replace(self, file=str(file))


class InternalError(Exception):
    """An invariant of snn2chip itself failed: a bug, reported as such (the command line asks
    for a bug report), never as the user's :class:`ModelError`."""
