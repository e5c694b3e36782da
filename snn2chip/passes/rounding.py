"""Error-compensating weight rounding on calibration data (GPTQ: Frantar et al., "GPTQ: Accurate
Post-Training Quantization for Generative Pre-trained Transformers", ICLR 2023, Algorithm 1
without blocking).

Rounding weights one input at a time, the error made on input ``i`` is pushed onto the inputs
not rounded yet, in proportion to how they co-vary with ``i`` on the calibration data, so that
the destination's input ``W x`` moves as little as possible for inputs like those: the
second-moment matrix ``H = E[x x^T]`` of what one row of weights sees (a source's outputs, or a
convolution's input patches) decides the compensation. Round-to-nearest is the special case
``H`` diagonal. The grid is per weight (its sign group's step and range), and a weight keeps its
sign (zero stays zero), so the synapse groups are those of round-to-nearest.
"""

from __future__ import annotations

import numpy as np
import torch

from snn2chip.frontend import shapes
from snn2chip.passes import lower

MAX_ROWS = 2**16  # input vectors (patches) per second-moment matrix; evenly spaced beyond that
MAX_INPUTS = 4096  # inputs one weight row reads, beyond which a map is rounded to nearest (H is inputs^2)
DAMPING = 0.01  # of H's mean diagonal, added to its diagonal (GPTQ's dampening)


def _evenly(count: int, limit: int) -> np.ndarray:
    return np.linspace(0, count - 1, limit).round().astype(np.int64) if count > limit else np.arange(count)


def second_moments(fg: lower.FloatGroup, outputs: np.ndarray, src_shape: tuple[int, ...]) -> list[np.ndarray] | None:
    """``E[p p^T]`` of the inputs one weight row of ``fg`` reads, from the source's float outputs
    ``outputs`` (samples, steps, *src_shape): one matrix for a dense map, one per conv group; None
    for a one-to-one map (nothing to compensate across) or rows reading over ``MAX_INPUTS``."""
    if fg.kind == "diag" or np.prod(fg.weights.shape[1:]) > MAX_INPUTS:
        return None
    frames = outputs.reshape(-1, *src_shape)
    if fg.kind == "dense":
        x = frames.reshape(frames.shape[0], -1)[_evenly(frames.shape[0], MAX_ROWS)]
        return [x.T @ x / x.shape[0]]
    kh, kw = fg.weights.shape[2:]
    positions = np.prod(shapes.window_size(src_shape[1:], (kh, kw), fg.stride, fg.padding, fg.dilation))
    frames = frames[_evenly(frames.shape[0], max(1, MAX_ROWS // positions))]
    patches = torch.nn.functional.unfold(torch.from_numpy(np.asarray(frames, np.float64)), (kh, kw),
                                         dilation=fg.dilation, padding=fg.padding, stride=fg.stride)
    per_group = patches.shape[1] // fg.groups
    result = []
    for g in range(fg.groups):
        x = patches[:, g * per_group : (g + 1) * per_group].transpose(1, 2).reshape(-1, per_group)
        result.append((x.T @ x / x.shape[0]).numpy())
    return result


def _blocks(moments: list[np.ndarray], rows: int) -> list[tuple[slice, np.ndarray]]:
    """The rows of a map that read the inputs of each second-moment matrix (one per conv group)."""
    size = rows // len(moments)
    return [(slice(k * size, (k + 1) * size), h) for k, h in enumerate(moments)]


def _compensated_rows(w: np.ndarray, h: np.ndarray, step: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Rows ``w`` (rows, inputs) reading inputs with second moments ``h``, rounded input by input."""
    h = np.array(h, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += DAMPING * np.mean(np.diag(h))
    u = np.linalg.cholesky(np.linalg.inv(h)).T  # upper Cholesky factor of H^-1
    w = np.array(w, dtype=np.float64)
    out = np.zeros_like(w)
    for i in range(w.shape[1]):
        q = np.clip(np.round(w[:, i] / step[:, i]) * step[:, i], low[:, i], high[:, i])
        out[:, i] = q
        w[:, i + 1 :] -= np.outer((w[:, i] - q) / u[i, i], u[i, i + 1 :])
    return out


def compensated(w: np.ndarray, moments: list[np.ndarray], step: np.ndarray, low: np.ndarray,
                high: np.ndarray) -> np.ndarray:
    """The weights ``w`` of one map (rows, ...) rounded to multiples of ``step`` within ``[low,
    high]`` (all per weight, same shape), inputs taken in order and each rounding error
    compensated on the row's later inputs through the second moments ``moments`` (one matrix
    per block of rows, :func:`second_moments`). Inputs never active on the calibration data are
    rounded to nearest."""
    w_rows, step, low, high = (a.reshape(len(w), -1) for a in (w, step, low, high))
    out = np.zeros(w_rows.shape)
    for part, h in _blocks(moments, len(w)):
        out[part] = _compensated_rows(w_rows[part], h, step[part], low[part], high[part])
    return out.reshape(w.shape)


def input_error(delta: np.ndarray, weights: np.ndarray, moments: list[np.ndarray]) -> float:
    """RMS of the input error ``delta @ x`` over the RMS of the input ``weights @ x``, both rows
    (rows, ...) of one map, for ``x`` with the per-block second moments ``moments``."""
    def power(w):
        rows = w.reshape(len(w), -1)
        return sum(np.einsum("ri,ij,rj->", rows[part], h, rows[part]) for part, h in _blocks(moments, len(rows)))
    total = power(weights)
    return float(np.sqrt(max(power(delta), 0.0) / total)) if total > 0 else 0.0
