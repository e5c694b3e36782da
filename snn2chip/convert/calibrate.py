"""Calibration: run the ANN (onnxruntime) on sample inputs; tensor shapes and activation scales λ.

λ of a tensor is the ``percentile``-th percentile of all its values over all calibration
samples (every element of every sample, zeros included: as the S-ResNet authors' code
``find_activation_single_gpu.m`` does); the input's λ is 1 (the input current is the data itself).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snn2chip.convert.onnx_graph import AnnGraph
from snn2chip.errors import ModelError

BATCH = 256  # samples per onnxruntime call


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Per tensor name: ``shapes`` without batch axis; ``scales`` λ of the tensors asked for."""

    shapes: dict[str, tuple[int, ...]]
    scales: dict[str, float]


def session(ann: AnnGraph, tensors: list[str]):
    """An onnxruntime session of ``ann``'s file that also returns the named inner ``tensors``."""
    import onnx
    import onnxruntime

    model = onnx.load(ann.source)
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors if t not in known)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def check_inputs(ann: AnnGraph, x: np.ndarray, file: str) -> np.ndarray:
    """``x`` as float32 ``(samples, *input shape)``, or a :class:`ModelError` naming ``file``."""
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ModelError(f"calibration data must be numeric, got dtype {x.dtype}", file=file)
    declared = ann.input_shape
    if x.ndim != len(declared) + 1 or any(d is not None and d != s for d, s in zip(declared, x.shape[1:])) or not len(x):
        want = ", ".join("?" if d is None else str(d) for d in declared)
        raise ModelError(f"calibration data has shape {x.shape}; the model's input '{ann.input}' takes (samples, {want}) "
                         "with at least one sample", file=file)
    if not np.all(np.isfinite(x)):
        raise ModelError("calibration data contains NaN or infinite values", file=file)
    return x.astype(np.float32)


def run(ann: AnnGraph, x: np.ndarray, tensors: list[str]) -> dict[str, np.ndarray]:
    """The named tensors of the ANN on inputs ``x`` (float32 ``(samples, *input shape)``).

    A file with a fixed batch (:attr:`AnnGraph.batch`) runs as exported, on chunks of exactly
    that many samples; the last chunk is padded with zeros, whose results are dropped."""
    sess = session(ann, tensors)
    size = ann.batch or BATCH
    parts = []
    for i in range(0, len(x), size):
        chunk = x[i : i + size]
        if ann.batch and len(chunk) < size:
            chunk = np.concatenate([chunk, np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        parts.append([v[: min(size, len(x) - i)] for v in sess.run(tensors, {ann.input: chunk})])
    return {t: np.concatenate([p[k] for p in parts]) for k, t in enumerate(tensors)}


def calibrate(ann: AnnGraph, x: np.ndarray, scaled: list[str], percentile: float) -> Calibration:
    """Shapes of every op's output and the input, and λ of the ``scaled`` tensors (module docstring)."""
    if not 0 < percentile <= 100:
        raise ModelError(f"the percentile must be in (0, 100], got {percentile:g}")
    tensors = list(dict.fromkeys(op.output for op in ann.ops))
    try:
        values = run(ann, x, tensors)
    except Exception as e:  # onnxruntime's own errors: the file does not run on these inputs
        raise ModelError(f"onnxruntime cannot run the model on the calibration data: {' '.join(str(e).split())[:300]}",
                         file=ann.source) from None
    shapes = {t: tuple(int(d) for d in v.shape[1:]) for t, v in values.items()}
    shapes[ann.input] = tuple(int(d) for d in x.shape[1:])
    scales = {}
    for t in scaled:
        lam = float(np.percentile(values[t].astype(np.float64), percentile)) if t != ann.input else 1.0
        if not lam > 0:
            raise ModelError(f"tensor '{t}' is never positive on the calibration data (its {percentile:g}th percentile "
                             f"is {lam:g}): the layer would never fire; give calibration samples that activate it",
                             file=ann.source)
        scales[t] = lam
    return Calibration(shapes, scales)
