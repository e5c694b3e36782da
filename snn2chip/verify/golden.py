"""Golden files: the simulator's outputs on given inputs, for users' regression tests.

A golden file (``.npz``) holds ``meta`` (JSON: format, model file and its SHA-256, target,
compile options, chip IR format, snn2chip version, inputs' SHA-256, samples, steps), ``out:NAME``
per output population (its outputs, and ``out:NAME.v`` its membrane for LIF populations),
``(samples, steps + D, *shape)`` int32, and ``predictions``. :func:`check_golden` compares a run
with one and says in one line what differs and why.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

import snn2chip
from snn2chip import chip
from snn2chip.errors import ModelError
from snn2chip.files import require_file
from snn2chip.verify import data
from snn2chip.verify.runner import Result

GOLDEN_FORMAT = "snn2chip-golden"
GOLDEN_VERSION = 1


def _digest_array(a: np.ndarray) -> str:
    return f"array {a.shape} sha256 {hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]}"


def identity(model: str, target: str, options) -> dict:
    """What a chip network's outputs depend on besides its inputs: the model file and its
    SHA-256, the target, the compile options, and the versions of the chip IR and snn2chip."""
    return {
        "model": str(model),
        "model_sha256": hashlib.sha256(Path(model).read_bytes()).hexdigest(),
        "target": target,
        "options": {k: _digest_array(v) if isinstance(v, np.ndarray) else v for k, v in dataclasses.asdict(options).items()},
        "chip_ir_format": chip.FORMAT_VERSION,
        "snn2chip": snn2chip.__version__,
    }


def inputs_sha256(per_sample: list[str]) -> str:
    """One SHA-256 of the inputs from their per-sample digests."""
    return hashlib.sha256("".join(per_sample).encode()).hexdigest()


def golden_meta(model: str, target: str, options, result: Result) -> dict:
    """What a golden file records about how its outputs were made."""
    return {"format": GOLDEN_FORMAT, "version": GOLDEN_VERSION, **identity(model, target, options),
            "data": result.report.data, "samples": result.report.samples,
            "inputs_sha256": inputs_sha256(result.inputs_sha256)}


def golden_arrays(meta: dict, result: Result) -> dict[str, np.ndarray]:
    """The arrays of a golden file (write them with an atomic ``.npz`` writer)."""
    return {"meta": np.array(json.dumps(meta)), "predictions": result.predictions.astype(np.int64),
            **{f"out:{k}": v for k, v in result.outputs.items()}}


def _causes(old: dict, new: dict) -> str:
    causes = []
    if old.get("model_sha256") != new["model_sha256"]:
        causes.append(f"the model file changed (sha256 {old.get('model_sha256', '?')[:12]}... -> {new['model_sha256'][:12]}...)")
    changed = [f"{k} {old['options'].get(k)} -> {v}" for k, v in new["options"].items() if old.get("options", {}).get(k) != v]
    if changed:
        causes.append("compile options changed: " + ", ".join(changed))
    for field, what in (("target", "target"), ("chip_ir_format", "chip IR format"), ("snn2chip", "snn2chip version")):
        if old.get(field) != new[field]:
            causes.append(f"{what} {old.get(field)} -> {new[field]}")
    return "; ".join(causes) or "same model file, options and snn2chip version: the compiler's output changed"


def _first_difference(new: np.ndarray, old: np.ndarray) -> str:
    sample, step, *index = np.argwhere(new != old)[0]
    flat = int(np.ravel_multi_index(index, new.shape[2:])) if index else 0
    at = (sample, step, *index)
    return f"sample {sample} chip step {step} neuron {flat}: {new[at]} vs golden {old[at]}"


#: keys of a golden file's ``meta`` and their types
GOLDEN_META = {"format": str, "version": int, "model_sha256": str, "target": str, "options": dict,
               "chip_ir_format": int, "snn2chip": str, "data": str, "samples": int, "inputs_sha256": str}


def read_golden(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``meta`` and the arrays (``predictions``, ``out:NAME``) of a golden file, checked against
    the schema of :data:`GOLDEN_META` and its version; a broken file is a one-line error."""
    file = str(path)
    require_file(path, "golden", hint="write it with --update-golden")
    arrays = data.read_arrays(path)
    if not isinstance(arrays, dict):
        raise ModelError("not a golden file: it is a .npy array, not an .npz archive", file=file)
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, ValueError):
        raise ModelError("not a golden file: no readable 'meta' entry (write it with --update-golden)", file=file) from None
    if not isinstance(meta, dict) or meta.get("format") != GOLDEN_FORMAT:
        raise ModelError(f"not a golden file: its 'meta' is not of format {GOLDEN_FORMAT}", file=file)
    for key, kind in GOLDEN_META.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ModelError(f"broken golden file: meta key '{key}' is {meta.get(key)!r}; expected a {kind.__name__}",
                             file=file)
    if not 1 <= meta["version"] <= GOLDEN_VERSION:
        raise ModelError(f"golden file version {meta['version']}; this snn2chip reads versions 1..{GOLDEN_VERSION}",
                         file=file)
    count = meta["samples"]
    predictions = arrays.get("predictions")
    if count < 1 or predictions is None or predictions.dtype.kind not in "iu" or predictions.shape != (count,):
        raise ModelError(f"broken golden file: 'predictions' must be {count} integers (meta 'samples')", file=file)
    for key, values in arrays.items():
        if key != "predictions" and (not key.startswith("out:") or values.dtype.kind not in "iu" or values.ndim < 2
                                     or values.shape[0] != count):
            raise ModelError(f"broken golden file: entry '{key}' is not an output record ({count} samples of integers)",
                             file=file)
    return meta, arrays


def check_golden(path: str | Path, meta: dict, result: Result) -> str | None:
    """None when the run reproduces the golden file at ``path``, else a one-line diff summary."""
    file = str(path)
    old, arrays = read_golden(path)
    count = old["samples"]
    hint = f"to accept the new outputs, rerun with --update-golden (rewrites {file})"
    if result.report.samples < count:
        return f"golden file {file} holds {count} samples; this run has {result.report.samples}: pass --samples {count}"
    if hashlib.sha256("".join(result.inputs_sha256[:count]).encode()).hexdigest() != old["inputs_sha256"]:
        return (f"golden mismatch ({file}): the first {count} inputs differ from those it was written with "
                f"(data '{old['data']}'); {hint}")
    diffs = []
    stored = {k.removeprefix("out:"): v for k, v in arrays.items() if k.startswith("out:")}
    for key in sorted(set(stored) | set(result.outputs)):
        if key not in result.outputs or key not in stored:
            diffs.append(f"output '{key}' is {'gone' if key in stored else 'new'}")
            continue
        new, ref = result.outputs[key][:count], stored[key]
        if new.shape != ref.shape:
            diffs.append(f"output '{key}' has shape {new.shape}, golden {ref.shape}")
        elif (new != ref).any():
            bad = int((new != ref).reshape(count, -1).any(1).sum())
            diffs.append(f"output '{key}' differs in {bad} of {count} samples (first: {_first_difference(new, ref)})")
    if not diffs:
        return None
    changed = int((result.predictions[:count] != arrays["predictions"]).sum())
    diffs.append(f"predictions changed for {changed} of {count} samples")
    return f"golden mismatch ({file}): {'; '.join(diffs)}; why: {_causes(old, meta)}; {hint}"
