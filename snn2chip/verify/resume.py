"""The finished shards of a ``verify -o DIR`` run, kept beside ``DIR`` so that an interrupted run
resumes where it stopped.

While a run goes, ``DIR.shards/`` holds ``run.json`` (what the shards depend on: the model
file's SHA-256, target, compile options, the inputs' SHA-256, samples, steps, shard size and the
versions of snn2chip and the chip IR) and ``shard-START.npz`` per finished shard
(:meth:`snn2chip.verify.shards.Shard.arrays`), each written atomically. A run with the same
``-o`` reads them back when its ``run.json`` is the same; otherwise it says what changed and
starts over. The folder is removed once ``DIR`` is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from snn2chip import files
from snn2chip.errors import ModelError
from snn2chip.verify.shards import Shard

FORMAT = "snn2chip-verify-shards"
#: what a change of each ``run.json`` key means, for the message
CHANGES = {"model_sha256": "the model file", "target": "the target", "options": "the compile options",
           "inputs_sha256": "the data", "samples": "the number of samples", "steps": "the steps",
           "shard_size": "the shard size", "snn2chip": "the snn2chip version", "chip_ir_format": "the chip IR format"}


class Store:
    """The shards folder ``folder`` of a run described by ``key`` (JSON-able, see :data:`CHANGES`)."""

    def __init__(self, folder: str | Path, key: dict):
        self.folder, self.key = Path(folder), {"format": FORMAT, **key}

    @staticmethod
    def beside(out_dir: str | Path, key: dict) -> Store:
        """The store of a run writing ``out_dir``: ``out_dir.shards``."""
        return Store(f"{str(out_dir).rstrip('/')}.shards", key)

    def load(self) -> tuple[dict[int, Shard], str | None]:
        """The finished shards by first sample, and a line to tell the user (resuming, or what
        changed so that the saved shards were dropped); prepares the folder for :meth:`save`."""
        run = self.folder / "run.json"
        if not self.folder.exists():
            return self._fresh({}, None)
        try:
            saved = json.loads(run.read_text())
        except (OSError, ValueError):
            saved = None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ModelError(f"{self.folder} exists and is not snn2chip's shards folder (no valid run.json); "
                             "remove it or choose another -o", option="-o")
        changed = [what for key, what in CHANGES.items() if saved.get(key) != self.key.get(key)]
        if changed:
            return self._fresh({}, f"dropped the shards saved in {self.folder}: {', '.join(changed)} changed since")
        found = {}
        for path in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as arrays:
                    shard = Shard.from_arrays(arrays)
            except (OSError, ValueError, KeyError):
                continue  # unreadable: that shard runs again
            found[shard.start] = shard
        return self._fresh(found, f"resuming: {len(found)} finished shard{'s' * (len(found) != 1)} read from "
                                  f"{self.folder}" if found else None)

    def _fresh(self, found: dict[int, Shard], note: str | None) -> tuple[dict[int, Shard], str | None]:
        """Make the folder hold ``run.json`` and the shards ``found`` only."""
        try:
            if self.folder.exists() and not found:
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / "run.json").write_text(json.dumps(self.key, indent=1) + "\n")
        except OSError as e:
            raise ModelError(f"cannot prepare {self.folder}: {e.strerror or e}", option="-o") from None
        return found, note

    def save(self, shard: Shard) -> None:
        """Keep ``shard`` (atomically: an interrupted write leaves no shard file)."""
        files.write_npz(self.folder / f"shard-{shard.start:09d}.npz", shard.arrays())

    def remove(self) -> None:
        """Drop the folder (the run's output is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)
