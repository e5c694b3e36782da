"""Verification: a compiled network against its float reference (:mod:`.fidelity`), Lava and
golden files (:mod:`.golden`), on the user's data (:mod:`.data`), with chip activity and an
energy estimate (:mod:`.energy`); :mod:`.runner` drives a ``verify`` run, in shards
(:mod:`.shards`) run in this process or on Ray (:mod:`.cluster`), kept on disk to resume
(:mod:`.resume`)."""

from snn2chip.verify.golden import (GOLDEN_FORMAT, GOLDEN_VERSION, check_golden, golden_arrays, golden_meta, identity,
                                    inputs_sha256, read_golden)
from snn2chip.verify.reports import Golden, VerifyReport
from snn2chip.verify.runner import Local, Result, Settings, checks, judged, run, settings, write_dir
from snn2chip.verify.shards import fanout

__all__ = ["GOLDEN_FORMAT", "GOLDEN_VERSION", "Golden", "Local", "Result", "Settings", "VerifyReport", "check_golden",
           "checks", "fanout", "golden_arrays", "golden_meta", "identity", "inputs_sha256", "judged",
           "read_golden", "run", "settings", "write_dir"]
