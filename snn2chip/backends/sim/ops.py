"""Synapse operations: the integer input each synapse group causes, without dense matrices where
the group is not dense.

A group becomes one :class:`Op` per distinct delay among its synapses. An op maps a source's
outputs ``(n, *src.shape)`` (``n`` samples, or samples x steps) to its destination's int32 input
``(n, *dst.shape)``, delivered ``lag = 1 + delay`` steps after the source sent them, as Lava computes
it (docs/architecture.md §3): conv sums wrapped to 24 bits, dense and sparse sums (and those of a
conv with a negative exponent, which Lava runs as its sparse synapses) shifted by ``weight_exp``
and wrapped to 32 bits. Convolutions run as convolutions, one-to-one (diagonal) sparse groups as
elementwise products, sparse groups (and dense ones with few non-zero weights) that are
convolutions as convolutions (e.g. the compiler's composed shortcuts), other sparse groups as CSR
products, dense groups as matrix products. Sums are exact: float32 where a bound proves
|sum| < 2**24, else float64 (a bound of 2**53 or more is refused), elementwise products in
integers.

**Merging.** Ops with the same source, destination, delay and geometry are summed into one op when
each part's result is a linear function of the source's outputs modulo 2**32 (the destination sums
its inputs in wrapping int32, so they may be added in any order): a conv at exponent 0 whose sum
stays below 2**23 (no 24-bit wrap); any other part with ``weight_exp >= 0``, or with every weight a
multiple of ``2**-weight_exp`` (an exact right shift) unless a graded sum may wrap before the
shift. Such a part contributes ``x @ (W * 2**weight_exp)`` mod 2**32.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from snn2chip.chip import loihi
from snn2chip.chip.ir import ChipNet, Population, SynapseGroup
from snn2chip.errors import ModelError

F32_EXACT, F64_EXACT = 2**24, 2**53  # integers below these are exact in float32 / float64
INT32 = 2**31
CONV_WRAP = 2**23  # conv sums below this never wrap at 24 bits
SPARSE_ENOUGH = 8  # dense groups of over SMALL weights, at most 1/8 of them non-zero, run as sparse ones
SMALL = 2**16


@dataclasses.dataclass(frozen=True)
class Part:
    """One delay class of a synapse group, or an exact sum of such: int64 ``weights`` (conv kernel,
    dense ``(dst, src)``, or one per synapse at ``rows``, ``cols``); ``exact``: a conv sum of
    parts that cannot wrap, so never wrapped."""

    kind: str
    src: str
    dst: str
    delay: int
    weights: np.ndarray
    exp: int
    graded: bool
    names: tuple[str, ...]
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    geometry: tuple = ()
    exact: bool = False

    @property
    def key(self) -> tuple:
        """Parts with equal keys read the same source through the same geometry."""
        return self.kind, self.src, self.dst, self.delay, np.shape(self.weights) if self.kind == "conv" else (), self.geometry

    def bound(self, payload: int) -> int:
        """The largest |sum| one destination neuron can receive, before any shift or wrap."""
        w = np.abs(self.weights)
        if self.kind == "sparse":
            sums = np.bincount(self.rows, w) if w.size else np.zeros(1)
        else:
            sums = w.reshape(len(w), -1).sum(1) if w.size else np.zeros(1)
        return int(sums.max()) * payload

    def linear(self, payload: int) -> bool:
        """Whether the part's result is ``x @ (W * 2**exp)`` mod 2**32 (see the module docstring)."""
        if self.kind == "conv" and self.exp == 0:
            return self.exact or self.bound(payload) < CONV_WRAP
        if self.exp >= 0:
            return True
        exact_shift = not np.any(self.weights % (1 << -self.exp))
        return exact_shift and (not self.graded or self.bound(payload) < INT32)


def _scaled(p: Part) -> np.ndarray:
    """``p.weights * 2**p.exp``, exact for linear parts."""
    return p.weights << p.exp if p.exp >= 0 else p.weights >> -p.exp


def _sum(parts: list[Part]) -> Part:
    """One part equal to the sum of linear ``parts`` of one key (a common shift kept as exponent)."""
    if len(parts) == 1:
        return parts[0]
    first, base = parts[0], max(min(p.exp for p in parts), 0)
    names = tuple(n for p in parts for n in p.names)
    if first.kind == "sparse":
        cat = [np.concatenate(a) for a in zip(*((_scaled(p) >> base, p.rows, p.cols) for p in parts))]
        return dataclasses.replace(first, weights=cat[0], rows=cat[1], cols=cat[2], exp=base, names=names)
    total = sum(_scaled(p) for p in parts) >> base
    return dataclasses.replace(first, weights=total, exp=base, names=names, exact=first.kind == "conv")


def merge(parts: list[Part], payload: int) -> list[Part]:
    """``parts`` with the linear ones of equal key summed, while the sum of their bounds stays
    below 2**31 (conv: cast to int32 unwrapped) or 2**53 (exact in float64)."""
    kept, linear = [], {}
    for p in parts:
        if p.linear(payload):
            linear.setdefault(p.key, []).append(p)
        else:
            kept.append(p)
    for same in linear.values():
        batch, total = [], 0
        for p in same:
            bound = p.bound(payload) << max(p.exp, 0)
            if batch and total + bound >= (INT32 if p.kind == "conv" else F64_EXACT):
                kept.append(_sum(batch))
                batch, total = [], 0
            batch.append(p)
            total += bound
        kept.append(_sum(batch))
    return kept


def sparse_enough(g: SynapseGroup) -> bool:
    """Whether a dense group has many weights (over ``SMALL``), few of them non-zero (at most
    ``1 / SPARSE_ENOUGH``)."""
    return np.size(g.weights) > SMALL and np.count_nonzero(g.weights) * SPARSE_ENOUGH <= np.size(g.weights)


def group_parts(g: SynapseGroup, src: Population) -> list[Part]:
    """Group ``g`` as one part per distinct delay, with Lava's effective weights; a dense group
    with few non-zero weights as sparse parts (its zero weights dropped, the matrix never copied)."""
    common = dict(src=g.src, dst=g.dst, graded=src.payload_bits > 0, names=(g.name,))
    if g.kind == "conv":  # at weight_exp 0 the effective kernel itself; else mantissas, as Sparse takes them
        geometry = (g.stride, g.padding, g.dilation, g.groups)
        kernel = loihi.effective_weights(g.weights, g.num_weight_bits) if g.weight_exp else np.array(g.weights, np.int64)
        return [Part("conv", delay=0, weights=kernel, exp=g.weight_exp, geometry=geometry, **common)]
    values = delay_values(g)
    if g.kind == "dense" and not sparse_enough(g):
        weights = loihi.effective_weights(g.weights, g.num_weight_bits)
        return [Part("dense", delay=int(d), weights=weights if len(values) == 1 else np.where(g.delays == d, weights, 0),
                     exp=g.weight_exp, **common) for d in values]
    if g.kind == "dense":
        rows, cols = np.nonzero(g.weights)
        synapses, delays = g.weights[rows, cols], None if g.delays is None else g.delays[rows, cols]
    else:
        rows, cols, synapses, delays = np.asarray(g.rows, np.int64), np.asarray(g.cols, np.int64), g.weights, g.delays
    weights = loihi.effective_weights(synapses, g.num_weight_bits)  # the sign mode ignores zero weights
    masks = [slice(None)] if len(values) == 1 else [delays == d for d in values]
    return [Part("sparse", delay=int(d), weights=weights[m], exp=g.weight_exp, rows=rows[m], cols=cols[m], **common)
            for d, m in zip(values, masks)]


def delay_values(g: SynapseGroup) -> np.ndarray:
    """The distinct delays among the synapses of ``g`` (0 when it has none)."""
    if g.delays is None or not g.delays.size:
        return np.zeros(1, np.int64)
    return np.flatnonzero(np.bincount(np.ravel(g.delays)))


def _dtype(bound: int, names: tuple[str, ...]) -> torch.dtype:
    """The float type that sums integers up to ``bound`` exactly."""
    if bound >= F64_EXACT:
        raise ModelError(f"synaptic sums can reach {bound:.3g}, beyond the 2**53 the simulator sums exactly",
                         node=names[0])
    return torch.float32 if bound < F32_EXACT else torch.float64


def as_type(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` converted to ``dtype``; spikes through uint8 (a much faster conversion than from bool)."""
    return (x.view(torch.uint8) if x.dtype == torch.bool else x).to(dtype)


class Op:
    """Synaptic input from ``src`` into ``dst``, ``lag`` steps after the source sent it: calling it
    maps source outputs ``(n, *src.shape)`` to int32 inputs ``(n, *dst.shape)``. ``result_bound``
    bounds |result| (for the bounds of relays fed by it); ``nbytes``: its weights."""

    def __init__(self, part: Part, bound: int, dst_shape: tuple[int, ...]):
        self.src, self.dst, self.lag, self.names = part.src, part.dst, 1 + part.delay, part.names
        self.dst_shape = dst_shape
        self.result_bound = min(bound, INT32)


class _Conv(Op):
    """A conv at exponent 0: Lava's Conv, its sum wrapped to 24 bits."""

    def __init__(self, part: Part, bound: int, dst_shape: tuple[int, ...]):
        super().__init__(part, bound, dst_shape)
        self.wraps = bound >= CONV_WRAP and not part.exact
        self.result_bound = CONV_WRAP if self.wraps else self.result_bound
        self.dtype = _dtype(bound, part.names)
        self.kernel = torch.as_tensor(part.weights).to(self.dtype)
        self.geometry = part.geometry
        self.nbytes = self.kernel.element_size() * self.kernel.numel()

    def total(self, x: torch.Tensor) -> torch.Tensor:
        """The exact sum ``(n, dst.size)``."""
        return F.conv2d(as_type(x, self.dtype), self.kernel, None, *self.geometry).reshape(len(x), -1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.total(x).reshape(len(x), *self.dst_shape)
        return loihi.conv_output(y) if self.wraps else y.to(torch.int32)


class _Shifted(Op):
    """A dense or sparse op: the sum is shifted by ``weight_exp`` and wrapped to 32 bits."""

    def __init__(self, part: Part, bound: int, dst_shape: tuple[int, ...]):
        super().__init__(part, bound, dst_shape)
        self.exp, self.graded = part.exp, part.graded
        self.small = bound << max(part.exp, 0) < INT32  # the shifted sum stays in int32
        shifted = bound << part.exp if part.exp >= 0 else -(-bound >> -part.exp)
        self.result_bound = min(shifted, INT32)

    def finish(self, total: torch.Tensor) -> torch.Tensor:
        """The int32 input from the exact sum ``total`` ``(n, dst.size)``, as Lava shifts and wraps it."""
        if self.small:
            acc = total.to(torch.int32)
            acc = loihi.shift(acc, self.exp) if self.exp else acc
        else:
            acc = total.to(torch.int64)
            if self.graded:
                acc = loihi.wrap(acc, 32)  # numpy's int32 dot
            acc = loihi.shift(acc, self.exp).to(torch.int32)
        return acc.reshape(len(total), *self.dst_shape)


class _Matrix(_Shifted):
    """A product with the ``(dst, src)`` weights: a dense matrix, or CSR for sparse parts."""

    def __init__(self, part: Part, bound: int, dst_shape: tuple[int, ...], src_size: int):
        super().__init__(part, bound, dst_shape)
        self.dtype = _dtype(bound, part.names)
        dst_size = int(np.prod(dst_shape))
        if part.kind == "dense":
            self.matrix = torch.as_tensor(part.weights.T).to(self.dtype).contiguous()
            self.nbytes, self.csr = self.matrix.element_size() * self.matrix.numel(), False
            return
        index = torch.as_tensor(np.stack([part.rows, part.cols]))
        values = torch.as_tensor(part.weights).to(self.dtype)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            self.matrix = torch.sparse_coo_tensor(index, values, (dst_size, src_size)).coalesce().to_sparse_csr()
        self.nbytes, self.csr = values.element_size() * len(values) + 8 * (len(values) + dst_size + 1), True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), -1)
        if self.csr:  # CSR times a contiguous (src, n) matrix: much faster than with a transposed view
            return self.finish(torch.mm(self.matrix, as_type(x.T.contiguous(), self.dtype)).T)
        return self.finish(torch.mm(as_type(x, self.dtype), self.matrix))


class _ShiftedConv(_Shifted, _Conv):
    """A conv with a negative exponent: its explicit synapses in a sparse group (Lava's Sparse:
    the sum shifted and wrapped to 32 bits), summed as a convolution; so also a sparse part that
    is a convolution (:func:`as_conv`). (``_Shifted.__init__``
    runs ``_Conv.__init__`` first, then sets the shift and bound.)"""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(self.total(x))


class _Diagonal(_Shifted):
    """A sparse op whose synapses connect neuron ``i`` to neuron ``i``: an elementwise product."""

    def __init__(self, part: Part, bound: int, dst_shape: tuple[int, ...]):
        super().__init__(part, bound, dst_shape)
        weights = np.bincount(part.rows, part.weights, minlength=int(np.prod(dst_shape))).astype(np.int64)
        self.weights = torch.as_tensor(weights).to(torch.int32 if bound < INT32 else torch.int64)
        self.nbytes = self.weights.element_size() * self.weights.numel()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(as_type(x.reshape(len(x), -1), self.weights.dtype) * self.weights)


def _axis(inputs: np.ndarray, outputs: np.ndarray, n_in: int, n_out: int) -> tuple[int, int, int] | None:
    """Stride, padding and kernel size along one axis of a conv that connects output positions
    ``outputs`` to input positions ``inputs`` (``n_in`` in, ``n_out`` out), if there is one."""
    for stride in sorted({max(1, n_in // n_out), max(1, -(-n_in // n_out))}):
        offset = inputs - stride * outputs
        padding = max(0, -int(offset.min()))
        size = int(offset.max()) + padding + 1
        while (n_in + 2 * padding - size) // stride + 1 > n_out:
            size += 1
        while (n_in + 2 * padding - size) // stride + 1 < n_out:  # grows by at most 1 a turn
            padding, size = padding + 1, size + 1
        if 0 <= offset.min() + padding and size <= n_in + 2 * padding:
            return stride, padding, size
    return None


def as_conv(part: Part, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> Part | None:
    """A sparse ``part`` between ``(channels, height, width)`` populations as the conv part (one
    group, no dilation) with the same synapses, if there is one and it does at most
    ``SPARSE_ENOUGH`` times the synapses' products: every synapse's weight is the kernel's at its
    offset, and every non-zero kernel entry has a synapse at every output position it reaches.
    (Duplicate synapses are summed, as the CSR product sums them.)"""
    if part.kind != "sparse" or len(src_shape) != 3 or len(dst_shape) != 3:
        return None
    src_size = int(np.prod(src_shape))
    index, inverse = np.unique(part.rows * src_size + part.cols, return_inverse=True)
    weights = np.bincount(inverse, part.weights).astype(np.int64)  # float64 sums of integers below 2**53: exact
    index, weights = index[weights != 0], weights[weights != 0]
    out, inp = np.unravel_index(index // src_size, dst_shape), np.unravel_index(index % src_size, src_shape)
    axes = [_axis(inp[a], out[a], src_shape[a], dst_shape[a]) for a in (1, 2)] if len(index) else [None]
    if None in axes:
        return None
    (sy, py, ky), (sx, px, kx) = axes
    kernel = np.zeros((dst_shape[0], src_shape[0], ky, kx), np.int64)
    key = (out[0], inp[0], inp[1] - sy * out[1] + py, inp[2] - sx * out[2] + px)
    kernel[key] = weights
    reach = [np.array([np.count_nonzero((0 <= s * np.arange(n) + k - p) & (s * np.arange(n) + k - p < m))
                       for k in range(size)]) for s, p, size, n, m in ((sy, py, ky, dst_shape[1], src_shape[1]),
                                                                       (sx, px, kx, dst_shape[2], src_shape[2]))]
    products = kernel.size * dst_shape[1] * dst_shape[2]
    if (not np.array_equal(kernel[key], weights) or products > SPARSE_ENOUGH * len(weights)
            or np.sum((kernel != 0) * np.outer(*reach)) != len(weights)):
        return None
    return dataclasses.replace(part, kind="conv", weights=kernel, rows=None, cols=None,
                               geometry=((sy, sx), (py, px), (1, 1), 1))


def make_op(part: Part, payload: int, net: ChipNet) -> Op:
    """The op computing ``part`` for a source sending values up to ``payload`` in magnitude (a
    sparse part that is a convolution, :func:`as_conv`, computed as one)."""
    src, dst = net.populations[part.src], net.populations[part.dst]
    bound = part.bound(payload)
    if part.kind == "conv":
        return _ShiftedConv(part, bound, dst.shape) if part.exp else _Conv(part, bound, dst.shape)
    if part.kind == "sparse" and src.size == dst.size and np.array_equal(part.rows, part.cols):
        return _Diagonal(part, bound, dst.shape)
    conv = as_conv(part, src.shape, dst.shape)
    if conv is not None:
        return _ShiftedConv(conv, bound, dst.shape)
    return _Matrix(part, bound, dst.shape, src.size)


def sent_bound(pop: Population, incoming: list[Op] | None) -> int:
    """The largest |value| ``pop`` sends: 1 for spikes, the payload range for inputs, for relays the
    sum of what their ops deliver (``incoming`` None: not known yet, inside a cycle)."""
    if pop.kind == "lif":
        return 1
    if pop.kind == "input":
        return 2 ** (pop.payload_bits - 1) if pop.payload_bits else 1
    return INT32 if incoming is None else min(INT32, sum(op.result_bound for op in incoming))


def build(net: ChipNet, components: list[tuple[str, ...]], cyclic: set[tuple[str, ...]]) -> list[Op]:
    """Every group of ``net`` as merged ops; ``components`` in data-flow order (sources first)."""
    incoming: dict[str, dict[str, list[SynapseGroup]]] = {p: {} for p in net.populations}
    for g in net.groups:
        incoming[g.dst].setdefault(g.src, []).append(g)
    bounds: dict[str, int] = {}
    ops: list[Op] = []
    for comp in components:
        if comp in cyclic:
            bounds.update({p: sent_bound(net.populations[p], None) for p in comp})
        for p in comp:
            into = []
            for src, groups in incoming[p].items():
                parts = [part for g in groups for part in group_parts(g, net.populations[src])]
                into += [make_op(part, bounds[src], net) for part in merge(parts, bounds[src])]
            ops += into
            bounds.setdefault(p, sent_bound(net.populations[p], into))
    return ops
