"""Verification: a compiled network against its float reference (:mod:`.fidelity`), Lava and
golden files (:mod:`.golden`), on the user's data (:mod:`.data`), with chip activity and an
energy estimate (:mod:`.energy`); :mod:`.runner` drives a ``verify`` run."""

from snn2chip.verify.golden import GOLDEN_FORMAT, GOLDEN_VERSION, check_golden, golden_arrays, golden_meta, read_golden
from snn2chip.verify.reports import Golden, VerifyReport
from snn2chip.verify.runner import Result, Settings, checks, fanout, judged, run, settings, write_dir

__all__ = ["GOLDEN_FORMAT", "GOLDEN_VERSION", "Golden", "Result", "Settings", "check_golden", "checks",
           "fanout", "golden_arrays", "judged", "golden_meta", "read_golden", "run", "settings", "VerifyReport", "write_dir"]
