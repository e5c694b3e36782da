"""Lowering, float part: a NIR :class:`Graph` as populations joined by linear synapse maps.

Neuron nodes, Threshold nodes (spike-element-wise AND/IAND), relays inserted by
:mod:`snn2chip.passes.shortcuts` and Input nodes become populations. Everything between populations is stateless
and linear-plus-bias (Affine, Linear, Scale, Conv2d, SumPool2d, AvgPool2d, Flatten), so the input
of a population is ``sum_paths map(source output) + bias``. :func:`paths` enumerates, per
destination, every chain of stateless nodes from a source population (a join upstream of a
conv yields one path per addend: conv(A + S) = conv(A) + conv(S)); :func:`lower_path` turns one
chain into a float :class:`FloatGroup` (a conv kernel when the chain is a convolution, after
folding Scales and composing a preceding non-overlapping pool and, where the dense map would be
too large, later unpadded convolutions (:func:`composable`); one-to-one weights when it is only
Scales/Flattens; otherwise a dense matrix obtained by pushing unit vectors through the chain, or,
where that matrix or its ``n_src**2`` unit vectors would exceed ``MAX_DENSE`` entries, a
convolution for a lone pool or a
``[pool] Flatten Affine`` readout);
:func:`population_bias` evaluates the stateless region with all sources at zero (apart from
biases that cross a recurrent edge, which arrive a step later).
Output nodes fed by a stateless chain get a relay population (an exact linear readout).
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np
import torch

from snn2chip.chip.ir import readout_name
from snn2chip.frontend import neurons, reference, shapes
from snn2chip.passes import shortcuts
from snn2chip.frontend.graph import Graph

STATELESS = (nir.Affine, nir.Linear, nir.Scale, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d, nir.Flatten)
MAX_DENSE = 2**25  # entries of a dense float matrix built by push-through (and of its unit vectors)


@dataclasses.dataclass(frozen=True)
class FloatGroup:
    """A linear synapse map from population ``src`` to ``dst`` in float, before quantization.

    ``kind`` 'conv' (``weights`` (O, I/groups, kH, kW) and the conv parameters; the output
    (O, oH, oW) is the destination's shape, or its size when that is (O,) and oH = oW = 1), 'dense'
    (``weights`` (dst.size, src.size)) or 'diag' (``weights`` (src.size,), one-to-one).
    ``nodes`` are the NIR nodes the map came from.
    """

    src: str
    dst: str
    kind: str
    weights: np.ndarray
    nodes: tuple[str, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1


def conv_synapse_bound(fg: FloatGroup, out_shape: tuple[int, ...]) -> int:
    """An upper bound of conv map ``fg``'s explicit synapses onto a destination of ``out_shape``:
    every non-zero tap at every output position (taps on the padding counted too)."""
    return int(np.count_nonzero(fg.weights)) * int(np.prod(out_shape[1:]))


def is_population(node: nir.NIRNode) -> bool:
    return isinstance(node, (nir.Input, nir.Threshold, *neurons.NEURONS)) or shortcuts.is_relay(node)


def populations(graph: Graph) -> dict[str, str]:
    """Population name -> NIR node name: Input and neuron nodes, and a relay for each Output fed
    by a stateless node. Unsupported node types are rejected here, naming the node."""
    result = {}
    for name, node in graph.nodes.items():
        if is_population(node):
            result[name] = name
        elif isinstance(node, nir.Output):
            preds = graph.predecessors(name)
            if len(preds) != 1 or not is_population(graph.nodes[preds[0]]):
                result[readout_name(name)] = name
        elif not isinstance(node, STATELESS):
            why = {nir.Delay: "Delay nodes are not lowered to synaptic delays yet",
                   nir.Conv1d: "Conv1d is not lowered yet (Conv2d is)"}.get(type(node), "no chip lowering exists")
            raise graph.error(f"{type(node).__name__} cannot be compiled: {why}", node=name)
    return result


def paths(graph: Graph, pops: dict[str, str], pop: str) -> list[tuple[str, tuple[str, ...], bool]]:
    """Every ``(source population, stateless chain from source to pop, recurrent)`` into ``pop``.

    ``recurrent`` is true when the chain uses a recurrent edge (it then delivers the previous step).
    """
    found = []
    by_node = {node: p for p, node in pops.items() if p == node}

    def walk(node: str, dst: str, chain: tuple[str, ...], recurrent: bool):
        recurrent = recurrent or (node, dst) in graph.recurrent
        if node in by_node:
            found.append((by_node[node], chain, recurrent))
            return
        if node in chain:
            raise graph.error("a cycle of stateless nodes has no neuron to hold its state", node=node)
        for pred in graph.predecessors(node):
            walk(pred, node, (node, *chain), recurrent)

    target = pops[pop]
    for pred in graph.predecessors(target):
        walk(pred, target, (), False)
    return found


def _push(graph: Graph, chain: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
    for name in chain:
        x = reference.node_op(graph, name, 1.0, x.shape[0], torch.float64)(x)
    return x


def _elementwise_scale(graph: Graph, name: str) -> np.ndarray | None:
    """A Scale node's factor per channel (first axis), or None if it also varies within a channel."""
    scale = np.broadcast_to(np.asarray(graph.nodes[name].scale, dtype=np.float64), graph.in_shapes[name])
    per_channel = scale.reshape(scale.shape[0], -1)
    if not np.all(per_channel == per_channel[:, :1]):
        return None
    return per_channel[:, 0]


def _as_conv(graph: Graph, src: str, dst: str, chain: tuple[str, ...], compose: bool) -> FloatGroup | None:
    """The chain as one convolution, or None: [Scale*] [pool] [Scale*] Conv2d [Scale*], then, if
    ``compose``, any further Conv2d [Scale*] that :func:`composable` allows, composed exactly."""
    convs = [i for i, n in enumerate(chain) if isinstance(graph.nodes[n], nir.Conv2d)]
    if not convs or (len(convs) > 1 and not compose):
        return None
    if not all(composable(graph, chain[a : b + 1]) for a, b in zip(convs, convs[1:])):
        return None
    at = convs[0]
    before = chain[:at]
    conv = graph.nodes[chain[at]]
    weights = np.asarray(conv.weight, dtype=np.float64).copy()
    groups = int(np.asarray(conv.groups).reshape(-1)[0])
    pool = [n for n in before if isinstance(graph.nodes[n], (nir.SumPool2d, nir.AvgPool2d))]
    if any(not isinstance(graph.nodes[n], (nir.Scale, nir.SumPool2d, nir.AvgPool2d)) for n in before) or len(pool) > 1:
        return None
    out_channels, per_group = weights.shape[:2]
    for name in before:
        if isinstance(graph.nodes[name], nir.Scale):
            factor = _elementwise_scale(graph, name)
            if factor is None:
                return None
            # input channel j of output channel o is channel (o's group) * per_group + j
            by_group = factor.reshape(groups, per_group)[np.arange(out_channels) // (out_channels // groups)]
            weights *= by_group[:, :, None, None]
    stride = shapes.ints(conv.stride, 2, "stride")
    padding = shapes.conv_padding(conv, 2)
    dilation = shapes.ints(conv.dilation, 2, "dilation")
    if pool:
        composed = _compose_pool(graph, pool[0], weights, stride, padding, dilation)
        if composed is None:
            return None
        weights, stride, padding = composed
    between = None  # a pool between the last conv composed and the next
    for at, end in zip(convs, [*convs[1:], len(chain)]):
        if at != convs[0]:
            later = graph.nodes[chain[at]]
            kernel, step = np.asarray(later.weight, dtype=np.float64), shapes.ints(later.stride, 2, "stride")
            if between is not None:  # exact: composable() checked it
                kernel, step, _ = _compose_pool(graph, between, kernel, step, (0, 0), (1, 1))
            weights = _compose_conv(weights, stride, kernel)
            stride = tuple(a * b for a, b in zip(stride, step))
        after = chain[at + 1 : end]
        pools = [n for n in after if isinstance(graph.nodes[n], (nir.SumPool2d, nir.AvgPool2d))]
        if len(pools) > 1 or (pools and end == len(chain)) or any(
                not isinstance(graph.nodes[n], nir.Scale) for n in after if n not in pools):
            return None
        between = pools[0] if pools else None
        for name in after:
            if name not in pools:  # per channel: it commutes with the pool
                factor = _elementwise_scale(graph, name)
                if factor is None:
                    return None
                weights *= factor[:, None, None, None]
    return FloatGroup(src, dst, "conv", weights, chain, stride, padding, dilation, groups)


def composable(graph: Graph, segment: tuple[str, ...]) -> bool:
    """Whether ``segment`` (Conv2d, Scales, at most one pool, Scales, Conv2d) is exactly one
    convolution: both convolutions ungrouped and undilated, the second unpadded and the pool
    unpadded, its windows tiling its input (the second then reads only positions the first
    computes, never the zero padding between them), every Scale per channel."""
    first, second = graph.nodes[segment[0]], graph.nodes[segment[-1]]
    pools = [n for n in segment[1:-1] if isinstance(graph.nodes[n], (nir.SumPool2d, nir.AvgPool2d))]

    def plain(conv: nir.Conv2d) -> bool:
        return int(np.asarray(conv.groups).reshape(-1)[0]) == 1 and shapes.ints(conv.dilation, 2, "dilation") == (1, 1)

    return (isinstance(first, nir.Conv2d) and isinstance(second, nir.Conv2d) and plain(first) and plain(second)
            and shapes.conv_padding(second, 2) == (0, 0) and len(pools) <= 1
            and all(isinstance(graph.nodes[n], nir.Scale) and _elementwise_scale(graph, n) is not None
                    for n in segment[1:-1] if n not in pools)
            and all(_pool_composes(graph, pool, (0, 0), (1, 1)) for pool in pools))


def _compose_conv(first: np.ndarray, stride: tuple[int, int], second: np.ndarray) -> np.ndarray:
    """The kernel of an unpadded convolution ``second`` (O, C, kH, kW) applied after ``first``
    (C, I, fH, fW; stride ``stride``), as one kernel on ``first``'s input: (O, I, (kH - 1) * sH +
    fH, (kW - 1) * sW + fW); its stride is the product of both, its padding ``first``'s."""
    kh, kw = second.shape[2:]
    fh, fw = first.shape[2:]
    composed = np.zeros((second.shape[0], first.shape[1], (kh - 1) * stride[0] + fh, (kw - 1) * stride[1] + fw))
    for a in range(kh):
        for b in range(kw):
            composed[:, :, a * stride[0] : a * stride[0] + fh, b * stride[1] : b * stride[1] + fw] += np.einsum(
                "oc,cihw->oihw", second[:, :, a, b], first)
    return composed


def _pool_composes(graph: Graph, pool: str, padding, dilation) -> bool:
    """Whether a convolution of ``padding`` and ``dilation`` after the pool node ``pool`` is one
    exact convolution on the pool's input: the pool unpadded, its windows tiling its input, the
    conv undilated, and unpadded unless the windows do not overlap."""
    node = graph.nodes[pool]
    k = shapes.ints(node.kernel_size, 2, "kernel_size")
    s = shapes.ints(node.stride, 2, "stride")
    return (dilation == (1, 1) and shapes.ints(node.padding, 2, "padding") == (0, 0)
            and all((n - kk) % ss == 0 for n, kk, ss in zip(graph.in_shapes[pool][1:], k, s))
            and (k == s or padding == (0, 0)))


def _compose_pool(graph: Graph, pool: str, weights: np.ndarray, stride, padding, dilation):
    """A convolution (``weights``, ``stride``, ``padding``, ``dilation``) applied after the pool
    node ``pool``, as one convolution on the pool's input: ``(weights, stride, padding)``, or None
    when that is not exact (a padded pool, a dilated conv, a pool window that does not tile its
    input, or an overlapping pool before a padded conv)."""
    if not _pool_composes(graph, pool, padding, dilation):
        return None
    node = graph.nodes[pool]
    k = shapes.ints(node.kernel_size, 2, "kernel_size")
    s = shapes.ints(node.stride, 2, "stride")
    share = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / (k[0] * k[1])
    kh, kw = weights.shape[2:]
    composed = np.zeros((*weights.shape[:2], (kh - 1) * s[0] + k[0], (kw - 1) * s[1] + k[1]))
    for a in range(kh):
        for b in range(kw):
            composed[:, :, a * s[0] : a * s[0] + k[0], b * s[1] : b * s[1] + k[1]] += weights[:, :, a : a + 1, b : b + 1] * share
    return composed, (stride[0] * s[0], stride[1] * s[1]), (padding[0] * s[0], padding[1] * s[1])


def _fc_as_conv(graph: Graph, pops: dict[str, str], src: str, dst: str, chain: tuple[str, ...]) -> FloatGroup | None:
    """The chain [Scale*] [pool] [Scale*] Flatten [Scale*] Affine|Linear [Scale*] from a
    ``(C, H, W)`` population as one convolution whose kernel covers the whole (pooled) input,
    output ``(N, 1, 1)`` in the order of the destination's ``(N,)``; or None. A global average
    pool readout so needs ``N*C*H*W`` kernel entries, never a dense push-through. Scales before
    the pool must be per channel; the others may vary per element."""
    nodes = [graph.nodes[n] for n in chain]
    flat = [i for i, n in enumerate(nodes) if isinstance(n, nir.Flatten)]
    fc = [i for i, n in enumerate(nodes) if isinstance(n, (nir.Affine, nir.Linear))]
    if len(flat) != 1 or len(fc) != 1 or flat[0] > fc[0] or len(graph.out_shapes[pops[src]]) != 3:
        return None
    before, mid, after = chain[: flat[0]], chain[flat[0] + 1 : fc[0]], chain[fc[0] + 1 :]
    pool = [n for n in before if isinstance(graph.nodes[n], (nir.SumPool2d, nir.AvgPool2d))]
    if len(pool) > 1 or any(not isinstance(graph.nodes[n], nir.Scale) for n in (*before, *mid, *after) if n not in pool):
        return None
    pooled = graph.out_shapes[chain[flat[0]]]
    if len(pooled) != 1:
        return None

    def factor(name: str) -> np.ndarray:
        return np.broadcast_to(np.asarray(graph.nodes[name].scale, dtype=np.float64), graph.in_shapes[name])

    weights = np.asarray(graph.nodes[chain[fc[0]]].weight, dtype=np.float64).copy()
    for name in mid:
        weights *= factor(name).reshape(1, -1)
    for name in after:
        weights *= factor(name).reshape(-1, 1)
    weights = weights.reshape(len(weights), *graph.in_shapes[chain[flat[0]]])
    at = before.index(pool[0]) if pool else 0
    for name in before[at:]:
        if name not in pool:
            weights *= factor(name)
    stride, padding = (1, 1), (0, 0)
    if pool:
        channel = [_elementwise_scale(graph, n) for n in before[:at]]
        if any(c is None for c in channel):
            return None
        for c in channel:
            weights *= c[:, None, None]
        composed = _compose_pool(graph, pool[0], weights, stride, padding, (1, 1))
        if composed is None:
            return None
        weights, stride, padding = composed
    return FloatGroup(src, dst, "conv", weights, chain, stride, padding)


def _pool_as_conv(graph: Graph, src: str, dst: str, chain: tuple[str, ...]) -> FloatGroup | None:
    """The chain [Scale*] pool [Scale*] (per-channel scales, any pool, e.g. the SumPool of an
    exported max pool) as a depthwise convolution with a constant kernel, or None. Exact:
    PyTorch's average pool counts padding in its divisor, as zero padding does. Used where the
    dense matrix would be too large (smaller pools stay dense, as before)."""
    pools = [n for n in chain if isinstance(graph.nodes[n], (nir.SumPool2d, nir.AvgPool2d))]
    if len(pools) != 1 or any(not isinstance(graph.nodes[n], nir.Scale) for n in chain if n != pools[0]):
        return None
    factors = [_elementwise_scale(graph, n) for n in chain if n != pools[0]]
    if any(f is None for f in factors):
        return None
    node = graph.nodes[pools[0]]
    k = shapes.ints(node.kernel_size, 2, "kernel_size")
    channels = graph.in_shapes[pools[0]][0]
    share = 1.0 if isinstance(node, nir.SumPool2d) else 1.0 / (k[0] * k[1])
    weights = np.full((channels, 1, *k), share) * np.prod([np.ones(channels), *factors], axis=0)[:, None, None, None]
    return FloatGroup(src, dst, "conv", weights, chain, shapes.ints(node.stride, 2, "stride"),
                      shapes.ints(node.padding, 2, "padding"), (1, 1), channels)


def lower_path(graph: Graph, pops: dict[str, str], src: str, dst: str, chain: tuple[str, ...]) -> FloatGroup:
    """One chain of stateless nodes from population ``src`` to ``dst`` as a float synapse map."""
    src_shape = graph.out_shapes[pops[src]]
    dst_node = pops[dst]
    dst_shape = graph.in_shapes[dst_node]
    if all(isinstance(graph.nodes[n], (nir.Scale, nir.Flatten)) for n in chain):
        ones = torch.ones((1, *src_shape), dtype=torch.float64)
        return FloatGroup(src, dst, "diag", _push(graph, chain, ones).reshape(-1).numpy(), chain)
    n_src, n_dst = int(np.prod(src_shape)), int(np.prod(dst_shape))
    large = n_src * max(n_src, n_dst) > MAX_DENSE  # the push-through's unit vectors or its result
    # convolutions in a row compose only where no dense map can be built: a dense map can wait in
    # synaptic delays, a convolution cannot (alignment)
    conv = _as_conv(graph, src, dst, chain, compose=large)
    if conv is not None:
        return conv
    if large:
        conv = _fc_as_conv(graph, pops, src, dst, chain) or _pool_as_conv(graph, src, dst, chain)
        if conv is not None:
            return conv
        raise graph.error(
            f"the synapses from '{src}' through {', '.join(chain)} would need a dense {n_dst}x{n_src} matrix "
            f"pushed through from {n_src} unit vectors; "
            "only convolutions (optionally after a pool), pools, and [pool] flatten fc readouts are lowered without one",
            node=dst_node,
        )
    basis = torch.cat([torch.zeros((1, n_src)), torch.eye(n_src)]).to(torch.float64).reshape(-1, *src_shape)
    pushed = _push(graph, chain, basis).reshape(n_src + 1, n_dst)
    return FloatGroup(src, dst, "dense", (pushed[1:] - pushed[:1]).T.contiguous().numpy(), chain)


def population_bias(graph: Graph, pops: dict[str, str], pop: str) -> tuple[np.ndarray, np.ndarray]:
    """The constant input of ``pop`` (biases carried through the stateless region, all sources at
    zero), shaped like its input: the part arriving over forward edges only, and the part that
    crosses a recurrent edge (it reaches ``pop`` from the second step on)."""
    values: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def gathered(node: str, shape) -> tuple[torch.Tensor, torch.Tensor]:
        forward = recurrent = torch.zeros((1, *shape), dtype=torch.float64)
        for p in graph.predecessors(node):
            f, r = value(p)
            if (p, node) in graph.recurrent:
                recurrent = recurrent + f + r
            else:
                forward, recurrent = forward + f, recurrent + r
        return forward, recurrent

    def value(node: str) -> tuple[torch.Tensor, torch.Tensor]:
        if node in pops and pops[node] == node:
            zero = torch.zeros((1, *graph.out_shapes[node]), dtype=torch.float64)
            return zero, zero
        if node not in values:
            forward, recurrent = gathered(node, graph.in_shapes[node])
            op = reference.node_op(graph, node, 1.0, 1, torch.float64)
            # affine: op(f + r) = op(f) + (op(r) - op(0)), the node's own bias going with the forward part
            values[node] = op(forward), op(recurrent) - op(torch.zeros_like(recurrent))
        return values[node]

    forward, recurrent = gathered(pops[pop], graph.in_shapes[pops[pop]])
    return forward[0].numpy(), recurrent[0].numpy()


def apply_map(fg: FloatGroup, weights: np.ndarray, x: np.ndarray, src_shape: tuple[int, ...]) -> np.ndarray:
    """The map of ``fg`` with ``weights`` (same layout as ``fg.weights``) applied to one flat
    source output ``x``; returns the flat destination input (float64)."""
    if fg.kind == "diag":
        return weights * x
    if fg.kind == "dense":
        return weights @ x
    out = torch.nn.functional.conv2d(torch.from_numpy(np.asarray(x, np.float64).reshape(1, *src_shape)),
                                     torch.from_numpy(np.asarray(weights, np.float64)), stride=fg.stride,
                                     padding=fg.padding, dilation=fg.dilation, groups=fg.groups)
    return out.reshape(-1).numpy()
