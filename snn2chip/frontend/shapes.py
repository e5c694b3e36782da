"""Shape inference for NIR nodes.

Shapes never include the batch axis: a Conv2d sees ``(C, H, W)``, an Affine ``(..., N)``.
:func:`output_shape` returns a node's output shape given the shape arriving at its input and
raises :class:`ShapeError` (a plain message, without file or node) when the two do not fit.
Inputs arrive as ``(samples, *shape)`` (held constant) or ``(samples, steps, *shape)``
(:func:`input_layout`, :func:`over_steps`).
"""

from __future__ import annotations

import math

import nir
import numpy as np

Shape = tuple[int, ...]

#: Node types whose parameters are per-element arrays that must broadcast to the input shape.
ELEMENTWISE = {
    nir.Scale: ("scale",),
    nir.Threshold: ("threshold",),
    nir.Delay: ("delay",),
    nir.I: ("r",),
    nir.IF: ("r", "v_threshold", "v_reset"),
    nir.LI: ("tau", "r", "v_leak"),
    nir.LIF: ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    nir.CubaLI: ("tau_syn", "tau_mem", "r", "v_leak", "w_in"),
    nir.CubaLIF: ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
}


class ShapeError(ValueError):
    """The input shape does not fit the node."""


def fmt(shape: Shape | None) -> str:
    """``(2, 34, 34)`` as ``2x34x34``; a scalar shape as ``1``."""
    if shape is None:
        return "-"
    return "x".join(str(d) for d in shape) or "1"


def declared(types: dict | None, key: str) -> Shape | None:
    """The shape a NIR node declares in ``input_type``/``output_type`` under ``key``, if any."""
    value = (types or {}).get(key) if isinstance(types, dict) else None
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype == object:
        return None
    if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)) or np.any(np.mod(arr, 1) != 0) or np.any(arr < 0):
        raise ShapeError(f"declares {key} shape {arr.tolist()}: expected non-negative integers")
    return tuple(int(d) for d in arr.reshape(-1))


def ints(value, n: int, what: str, least: int | None = None) -> tuple[int, ...]:
    """A scalar or length-``n`` sequence of integers (each ``>= least`` when given) as an ``n``-tuple."""
    arr = np.asarray(value).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.dtype.kind not in "biuf" or arr.size != n or not np.all(np.isfinite(arr)) \
            or not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ShapeError(f"{what} must be an integer or {n} integers, got {np.asarray(value).tolist()}")
    if least is not None and np.any(arr < least):
        raise ShapeError(f"{what} must be at least {least}, got {np.asarray(value).tolist()}")
    return tuple(int(v) for v in arr)


#: window geometry fields of Conv1d/Conv2d/SumPool2d/AvgPool2d and their smallest value
GEOMETRY = {"kernel_size": 1, "stride": 1, "dilation": 1, "groups": 1, "padding": 0}
WINDOWED = ("Conv1d", "Conv2d", "SumPool2d", "AvgPool2d")


def check_geometry(kind: str, fields: dict) -> None:
    """The geometry fields of a windowed node (as stored, before NIR's constructor computes with
    them): integers, at least :data:`GEOMETRY`'s minimum; padding may also be 'same'/'valid'."""
    if kind not in WINDOWED:
        return
    for field, least in GEOMETRY.items():
        value = fields.get(field)
        if value is None or field == "padding" and isinstance(value, (str, bytes)):
            continue
        arr = np.asarray(value)
        shown = arr.tolist()
        if arr.dtype.kind not in "biuf" or not np.all(np.isfinite(arr)) or np.any(np.mod(arr, 1) != 0):
            raise ShapeError(f"{field} must be integers, got {shown}")
        if np.any(arr < least):
            raise ShapeError(f"{field} must be at least {least}, got {shown}")


def conv_padding(node, n: int) -> tuple[int, ...]:
    """Symmetric zero padding of a Conv1d/Conv2d as ``n`` integers (resolving 'same'/'valid')."""
    padding = node.padding
    if isinstance(padding, bytes):
        padding = padding.decode()
    if isinstance(padding, str):
        if padding == "valid":
            return (0,) * n
        if padding != "same":
            raise ShapeError(f"padding must be integers, 'same' or 'valid', got '{padding}'")
        kernel = node.weight.shape[2:]
        dilation = ints(node.dilation, n, "dilation", least=1)
        if ints(node.stride, n, "stride", least=1) != (1,) * n:
            raise ShapeError("padding 'same' with stride other than 1 is not supported (its padding is not defined)")
        total = [d * (k - 1) for d, k in zip(dilation, kernel)]
        if any(t % 2 for t in total):
            raise ShapeError("padding 'same' with an even kernel needs asymmetric padding, which is not supported")
        return tuple(t // 2 for t in total)
    return ints(padding, n, "padding", least=0)


def window_size(size: Shape, kernel, stride, padding, dilation) -> Shape:
    """Output extent of a sliding window (convolution or pooling), per spatial axis, as the
    formula gives it (below 1 when the input is too small: see :func:`window_out`)."""
    return tuple(
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, k, st, p, d in zip(size, kernel, stride, padding, dilation)
    )


def window_out(size: Shape, kernel, stride, padding, dilation) -> Shape:
    """Output extent of a sliding window (convolution or pooling), per spatial axis; a
    :class:`ShapeError` when the input is too small for the window."""
    out = window_size(size, kernel, stride, padding, dilation)
    if any(o < 1 for o in out):
        raise ShapeError(f"input {fmt(size)} is too small for kernel {fmt(tuple(kernel))}: output would be {out}")
    return out


def _conv(node, shape: Shape, n: int) -> Shape:
    weight = node.weight
    if weight.ndim != n + 2 or 0 in weight.shape:
        raise ShapeError(f"weight must have {n + 2} non-empty axes (C_out, C_in/groups, kernel...), has shape {weight.shape}")
    (groups,) = ints(node.groups, 1, "groups", least=1)
    if len(shape) != n + 1:
        raise ShapeError(f"expects input (C, {'H, W' if n == 2 else 'L'}), receives {fmt(shape)}")
    if node.input_shape is not None and ints(node.input_shape, n, "input_shape") != shape[1:]:
        raise ShapeError(f"declares input_shape {fmt(ints(node.input_shape, n, 'input_shape'))} but receives {fmt(shape)}")
    if shape[0] != weight.shape[1] * groups:
        raise ShapeError(
            f"expects {weight.shape[1] * groups} input channels (weight {fmt(weight.shape)}, groups {groups}), "
            f"receives {fmt(shape)}"
        )
    if weight.shape[0] % groups:
        raise ShapeError(f"{weight.shape[0]} output channels are not divisible by groups {groups}")
    size = window_out(
        shape[1:],
        weight.shape[2:],
        ints(node.stride, n, "stride", least=1),
        conv_padding(node, n),
        ints(node.dilation, n, "dilation", least=1),
    )
    if node.bias is not None and np.size(node.bias) not in (1, weight.shape[0]):
        raise ShapeError(f"bias has {np.size(node.bias)} values for {weight.shape[0]} output channels")
    return (weight.shape[0], *size)


def _pool(node, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ShapeError(f"expects input (C, H, W), receives {fmt(shape)}")
    kernel = ints(node.kernel_size, 2, "kernel_size", least=1)
    size = window_out(shape[1:], kernel, ints(node.stride, 2, "stride", least=1), ints(node.padding, 2, "padding", least=0),
                      (1, 1))
    return (shape[0], *size)


def _flatten(node, shape: Shape) -> Shape:
    ndim = len(shape)
    start, end = int(node.start_dim), int(node.end_dim)
    start, end = start + ndim if start < 0 else start, end + ndim if end < 0 else end
    if not 0 <= start <= end < max(ndim, 1):
        raise ShapeError(f"start_dim {node.start_dim} / end_dim {node.end_dim} do not fit input {fmt(shape)}")
    return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])


def _dense(node, shape: Shape) -> Shape:
    weight = node.weight
    if weight.ndim != 2 or 0 in weight.shape:
        raise ShapeError(f"weight must be a non-empty matrix (out, in), has shape {weight.shape}")
    if not shape or shape[-1] != weight.shape[1]:
        raise ShapeError(f"weight {fmt(weight.shape)} expects {weight.shape[1]} inputs, receives {fmt(shape)}")
    bias = getattr(node, "bias", None)
    if bias is not None and np.size(bias) not in (1, weight.shape[0]):
        raise ShapeError(f"bias has {np.size(bias)} values for {weight.shape[0]} outputs")
    return (*shape[:-1], weight.shape[0])


def _elementwise(node, shape: Shape) -> Shape:
    for field in ELEMENTWISE[type(node)]:
        param = np.shape(getattr(node, field))
        try:
            fits = np.broadcast_shapes(param, shape) == shape
        except ValueError:
            fits = False
        if not fits:
            raise ShapeError(f"parameter '{field}' of shape {fmt(param)} does not fit input {fmt(shape)}")
    return shape


def output_shape(node: nir.NIRNode, shape: Shape | None) -> Shape:
    """Output shape of ``node`` when ``shape`` arrives at its input (``None`` for Input nodes)."""
    if isinstance(node, nir.Input):
        result = declared(node.input_type, "input")
        if result is None:
            raise ShapeError("Input node declares no shape")
        if not result or 0 in result:
            raise ShapeError(f"declares shape {list(result)}: an input needs at least one axis and no empty axis")
        return result
    if isinstance(node, nir.Output):
        want = declared(node.output_type, "output")
        if want is not None and want != shape:
            raise ShapeError(f"declares shape {fmt(want)} but receives {fmt(shape)}")
        return shape
    if isinstance(node, (nir.Affine, nir.Linear)):
        return _dense(node, shape)
    if isinstance(node, nir.Conv1d):
        return _conv(node, shape, 1)
    if isinstance(node, nir.Conv2d):
        return _conv(node, shape, 2)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        return _pool(node, shape)
    if isinstance(node, nir.Flatten):
        return _flatten(node, shape)
    if type(node) in ELEMENTWISE:
        return _elementwise(node, shape)
    raise ShapeError(f"node type {type(node).__name__} is not supported")


# --- inputs over time ---------------------------------------------------------------------

HELD, TIMED = "held", "timed"


def input_layout(x_shape: Shape, shape: Shape) -> str | None:
    """How an input array of shape ``x_shape`` gives per-step values of shape ``shape``:
    :data:`HELD` for ``(samples, *shape)`` (the same values at every step), :data:`TIMED` for
    ``(samples, steps, *shape)``, None for neither."""
    x_shape, shape = tuple(x_shape), tuple(shape)
    if x_shape[1:] == shape:
        return HELD
    if len(x_shape) == len(shape) + 2 and x_shape[2:] == shape:
        return TIMED
    return None


def has_time_axis(x_shape: Shape, shape: Shape) -> bool:
    """Whether an input of shape ``x_shape`` for per-step values of shape ``shape`` has the rank
    of ``(samples, steps, *shape)``."""
    return len(x_shape) == len(shape) + 2


def over_steps(x: np.ndarray, shape: Shape, steps: int) -> np.ndarray:
    """``x`` as ``(samples, steps, *shape)``: with a time axis as it is, else (``(samples,
    *shape)``, held constant) repeated over ``steps`` steps."""
    return x if has_time_axis(x.shape, shape) else np.repeat(x[:, None], steps, axis=1)
