"""Tiling: every placed population cut into core-sized tiles, with each tile's demands.

A population is viewed as ``(C, H, W)`` and cut into boxes of one block size (see
:mod:`snn2chip.chip.partition` for the demands, the choice of block size and the fan-out
re-tiling). :func:`tile_network` tiles a whole network; :func:`untiled_demands` gives each
population's demand as a single tile, the base of the partition's lower bounds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Sequence

import numpy as np

from snn2chip.chip.ir import ChipNet, SynapseGroup
from snn2chip.chip.targets import Target
from snn2chip.errors import ModelError

Box = tuple[int, int, int, int, int, int]  # c0, c1, h0, h1, w0, w1 in the (C, H, W) view
#: the per-core resources tiles demand, in the order of demand vectors (:meth:`Tiling.vectors`)
RESOURCES = ("neurons", "memory_bits", "fan_in_axons", "fan_out_axons")
#: block sizes of no greater cost are tried by their exact demands when their upper bounds exceed a
#: core by at most this factor (sign-split kernels and padding make the bounds loose), at most
#: EXACT_TRIES of them per population
BOUND_SLACK = 1.5
EXACT_TRIES = 3
Labels = Callable[[], np.ndarray]  # the tile index per neuron (flat), computed on demand


def view(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The ``(C, H, W)`` view of a population shape: 3-D as is, else ``(shape[0], rest, 1)``."""
    if len(shape) == 3:
        return tuple(int(s) for s in shape)
    return int(shape[0]), int(np.prod(shape[1:], dtype=np.int64)), 1


def box_size(box: Box) -> int:
    """Neurons in ``box``."""
    return (box[1] - box[0]) * (box[3] - box[2]) * (box[5] - box[4])


@dataclasses.dataclass(frozen=True)
class Reach:
    """Source neurons a tile reads from one source population: a channel range x row and
    column index sets (``flat`` None), or explicit flat indices (``flat``)."""

    channels: tuple[int, int] = (0, 0)
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    flat: np.ndarray | None = None

    @property
    def size(self) -> int:
        if self.flat is not None:
            return int(self.flat.size)
        return (self.channels[1] - self.channels[0]) * self.rows.size * self.cols.size

    def indices(self, shape: tuple[int, int, int]) -> np.ndarray:
        if self.flat is not None:
            return self.flat
        c = np.arange(*self.channels)
        return np.ravel_multi_index(np.ix_(c, self.rows, self.cols), shape).ravel()

    def same(self, other: "Reach") -> bool:
        return (self.flat is None and other.flat is None and self.channels == other.channels
                and np.array_equal(self.rows, other.rows) and np.array_equal(self.cols, other.cols))

    def count_in(self, boxes: np.ndarray, labels: Labels) -> np.ndarray:
        """Neurons of the reach inside each source tile (``boxes`` (T, 6)); ``labels()`` gives
        the source's tile index per neuron (needed for flat reaches only)."""
        if self.flat is not None:
            return np.bincount(labels()[self.flat], minlength=len(boxes))
        ch = np.clip(np.minimum(self.channels[1], boxes[:, 1]) - np.maximum(self.channels[0], boxes[:, 0]), 0, None)
        rows = np.searchsorted(self.rows, boxes[:, 3]) - np.searchsorted(self.rows, boxes[:, 2])
        cols = np.searchsorted(self.cols, boxes[:, 5]) - np.searchsorted(self.cols, boxes[:, 4])
        return ch * rows * cols


def _union(a: Reach, b: Reach, shape) -> Reach:
    """The source neurons of both reaches, sorted (timsort merges sorted index runs in linear time)."""
    if a.same(b):
        return a
    merged = np.concatenate([a.indices(shape), b.indices(shape)])
    merged.sort(kind="stable")
    keep = np.ones(merged.size, dtype=bool)
    keep[1:] = merged[1:] != merged[:-1]
    return Reach(flat=merged[keep])


def _read(lo: int, hi: int, stride: int, pad: int, dil: int, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Along a convolution axis of input size ``n``: the input position each of outputs
    ``lo..hi-1`` reads at each kernel position ``(hi - lo, k)``, and whether it lies inside
    ``0..n-1`` (not on the padding)."""
    pos = np.arange(lo, hi)[:, None] * stride - pad + np.arange(k)[None] * dil
    return pos, (pos >= 0) & (pos < n)


@functools.lru_cache(maxsize=4096)
def _taps(lo: int, hi: int, stride: int, pad: int, dil: int, k: int, n: int) -> np.ndarray:
    """Input positions read by outputs ``lo..hi-1`` of a convolution axis of input size ``n``
    (read-only: cached, as gap filling asks again for every run of channel slabs of a box)."""
    pos, inside = _read(lo, hi, stride, pad, dil, k, n)
    taps = np.unique(pos[inside])
    taps.flags.writeable = False
    return taps


def limits(cap: dict) -> np.ndarray:
    """A core's capacity ``cap`` (per resource) as a vector in the order of :data:`RESOURCES`."""
    return np.array([cap[r] for r in RESOURCES])


def _inside(lo: int, hi: int, stride: int, pad: int, dil: int, k: int, n: int) -> np.ndarray:
    """Per kernel position along a convolution axis: how many of outputs ``lo..hi-1`` read an
    input inside ``0..n-1`` (not the padding)."""
    return _read(lo, hi, stride, pad, dil, k, n)[1].sum(0)


class GroupDemands:
    """A synapse group's demands on destination tiles: exact per box, and upper bounds per block size."""

    def __init__(self, g: SynapseGroup, net: ChipNet, target: Target):
        self.g = g
        self.src_view = view(net.populations[g.src].shape)
        self.dst_view = view(net.populations[g.dst].shape)
        nz = np.asarray(g.weights) != 0
        if g.kind == "conv":
            self.nnz = nz.reshape(nz.shape[0], -1).sum(1)  # per output channel
            self.cum = np.concatenate([[0], np.cumsum(self.nnz)])
            taps = nz.sum(1)  # (O, kH, kW): non-zero taps per output channel and kernel position
            self.tap_cum = np.concatenate([np.zeros((1, *taps.shape[1:]), dtype=np.int64), np.cumsum(taps, axis=0)])
            self.key = (g.src, "conv", g.stride, g.padding, g.dilation, g.groups, g.weights.shape)
        elif g.kind == "dense":
            self.nz = nz
            self.row_nnz = nz.sum(1)
            self.key = (g.src, g.name)
        else:
            keep = nz.reshape(-1)
            self.rows, self.cols = np.asarray(g.rows)[keep], np.asarray(g.cols)[keep]
            self.row_nnz = np.bincount(self.rows, minlength=int(np.prod(self.dst_view)))
            self.distinct = int(np.bincount(self.cols).max(initial=0)) <= 1  # each source neuron read once
            self.key = (g.src, g.name)
        self.on_chip = net.populations[g.src].kind != "input"  # its source sends through fan-out axons
        self.shared = target.shared_conv_kernels
        self.synapse_bits, self.kernel_bits = target.synapse_bits, target.kernel_entry_bits

    def exact(self, boxes: Sequence[Box], labels: Labels | None) -> list[tuple[int, Reach]]:
        """Per destination box: memory bits and the reach in the source (``labels``: the
        destination's tile index per neuron, read by sparse groups only)."""
        if self.g.kind == "conv":
            return [self._conv_exact(box) for box in boxes]
        g = self.g
        if g.kind == "dense":
            index = np.arange(int(np.prod(self.dst_view))).reshape(self.dst_view)
            result = []
            for c0, c1, h0, h1, w0, w1 in boxes:
                rows = self.nz[index[c0:c1, h0:h1, w0:w1].ravel()]
                result.append((int(rows.sum()) * self.synapse_bits, Reach(flat=np.flatnonzero(rows.any(0)))))
            return result
        tile = labels()[self.rows].astype(np.int64)
        synapses = np.bincount(tile, minlength=len(boxes))
        if self.distinct:  # no source neuron twice: group the sources by tile, nothing to remove
            cols, bounds = self.cols[np.argsort(tile, kind="stable")], np.concatenate([[0], np.cumsum(synapses)])
            return [(int(synapses[i]) * self.synapse_bits, Reach(flat=cols[bounds[i]:bounds[i + 1]]))
                    for i in range(len(boxes))]
        span = int(np.prod(self.src_view))
        pairs = np.unique(tile * span + self.cols)  # distinct (tile, source neuron), sorted by tile
        bounds = np.searchsorted(pairs, np.arange(len(boxes) + 1) * span)
        return [(int(synapses[i]) * self.synapse_bits, Reach(flat=pairs[bounds[i]:bounds[i + 1]] - i * span))
                for i in range(len(boxes))]

    def _conv_exact(self, box: Box) -> tuple[int, Reach]:
        g = self.g
        c0, c1, h0, h1, w0, w1 = box
        cout, cin_g, kh, kw = g.weights.shape
        per_out = cout // g.groups
        _, hi, wi = self.src_view
        if self.shared:
            memory = int(self.cum[c1] - self.cum[c0]) * self.kernel_bits
        else:  # every connection stored: per kernel position, the outputs whose tap falls inside the input
            rows = _inside(h0, h1, g.stride[0], g.padding[0], g.dilation[0], kh, hi)
            cols = _inside(w0, w1, g.stride[1], g.padding[1], g.dilation[1], kw, wi)
            memory = int(((self.tap_cum[c1] - self.tap_cum[c0]) * rows[:, None] * cols[None, :]).sum()) * self.synapse_bits
        reach = Reach((c0 // per_out * cin_g, ((c1 - 1) // per_out + 1) * cin_g),
                      _taps(h0, h1, g.stride[0], g.padding[0], g.dilation[0], kh, hi),
                      _taps(w0, w1, g.stride[1], g.padding[1], g.dilation[1], kw, wi))
        return memory, reach

    def bounds(self, cb: np.ndarray, hb: np.ndarray, wb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Upper bounds of memory bits and fan-in of any tile of block size ``cb x hb x wb`` (arrays)."""
        g = self.g
        n = cb * hb * wb
        if g.kind != "conv":
            top = int(self.row_nnz.max(initial=0))
            reachable = int(np.count_nonzero(self.nz.any(0))) if g.kind == "dense" else np.unique(self.cols).size
            return n * top * self.synapse_bits, np.minimum(n * top, reachable)
        cout, cin_g, kh, kw = g.weights.shape
        per_out = cout // g.groups
        ci, hi, wi = self.src_view
        chans = np.minimum(np.minimum(g.groups, (cb + per_out - 2) // per_out + 1) * cin_g, ci)
        rows = np.minimum.reduce([np.full_like(hb, hi), hb * kh, (hb - 1) * g.stride[0] + (kh - 1) * g.dilation[0] + 1])
        cols = np.minimum.reduce([np.full_like(wb, wi), wb * kw, (wb - 1) * g.stride[1] + (kw - 1) * g.dilation[1] + 1])
        top = int(self.nnz.max(initial=0))
        memory = cb * top * self.kernel_bits if self.shared else n * top * self.synapse_bits
        return memory, chans * rows * cols


def _blocks(n: int) -> np.ndarray:
    """Candidate block sizes along an axis of length ``n``: every ``ceil(n / k)``."""
    return np.unique(-(-n // np.arange(1, n + 1)))


def _boxes(shape: tuple[int, int, int], block: tuple[int, int, int]) -> list[Box]:
    (c, h, w), (cb, hb, wb) = shape, block
    return [(c0, min(c0 + cb, c), h0, min(h0 + hb, h), w0, min(w0 + wb, w))
            for c0 in range(0, c, cb) for h0 in range(0, h, hb) for w0 in range(0, w, wb)]


def _choose_block(pop: str, shape, groups: Sequence[GroupDemands], cap: dict, neuron_limit: int
                  ) -> list[tuple[int, int, int]]:
    """Block sizes to try, the last one certain: up to :data:`EXACT_TRIES` of no greater cost whose
    bounds exceed a core by at most :data:`BOUND_SLACK` (the exact demands may still fit), then the
    block size of least cost whose bounds fit. Cost, in cores: each tile's share of a core (its
    largest of neurons, memory and fan-in), summed, plus the axons routed to the tiles (their
    fan-in bound, summed) over a core's fan-out axons, the room those axons take on the sources'
    cores (see :mod:`snn2chip.chip.partition`)."""
    c, h, w = shape
    cb, hb, wb = (a.ravel() for a in np.meshgrid(_blocks(c), _blocks(h), _blocks(w), indexing="ij"))
    memory = np.zeros(cb.shape, dtype=np.int64)
    fan_in: dict = {}
    for grp in groups:
        m, f = grp.bounds(cb, hb, wb)
        memory = memory + m
        fan_in[grp.key] = np.maximum(fan_in.get(grp.key, 0), f)  # same key: same geometry, same reach
    fan = sum(fan_in.values(), np.zeros(cb.shape, dtype=np.int64))
    on_chip = {grp.key for grp in groups if grp.on_chip}
    sent = sum((f for key, f in fan_in.items() if key in on_chip), np.zeros(cb.shape, dtype=np.int64))
    ok = (cb * hb * wb <= neuron_limit) & (memory <= cap["memory_bits"]) & (fan <= cap["fan_in_axons"])
    if not ok.any():
        one = {"neurons": 1, "memory_bits": int(memory[0]), "fan_in_axons": int(fan[0])}
        worst = max(one, key=lambda r: one[r] / cap[r])
        raise ModelError(f"one neuron needs {one[worst]:,} {worst.replace('_', ' ')}; a core has {cap[worst]:,}",
                         node=pop)
    count = -(-c // cb) * -(-h // hb) * -(-w // wb)
    # in cores: the tiles' shares (the room they leave is for others' tiles), and the room on their
    # sources' cores of the axons routed to them (at most the fan-in bound of each tile from
    # sources on chip)
    share = np.maximum.reduce([cb * hb * wb / cap["neurons"], memory / cap["memory_bits"],
                               fan / cap["fan_in_axons"]])
    cost = count * share + sent * count / cap["fan_out_axons"]
    order = np.lexsort((-wb, -hb, -cb, fan * count, cost))
    best = order[np.flatnonzero(ok[order])[0]]
    near = (cb * hb * wb <= neuron_limit) & (cost <= cost[best]) & ~ok & (memory <= BOUND_SLACK * cap["memory_bits"]) \
        & (fan <= BOUND_SLACK * cap["fan_in_axons"])
    blocks = [(int(cb[i]), int(hb[i]), int(wb[i])) for i in order[np.flatnonzero(near[order])][:EXACT_TRIES]]
    return blocks + [(int(cb[best]), int(hb[best]), int(wb[best]))]


def box_demands(groups: Sequence[GroupDemands], boxes: Sequence[Box], labels: Labels) -> list[tuple[int, dict[str, Reach]]]:
    """Per box of a population whose incoming groups are ``groups``: memory bits and reach per
    source population (the reaches of groups from one source united)."""
    memory = [0] * len(boxes)
    reach: list[dict[str, Reach]] = [{} for _ in boxes]
    for grp in groups:
        for i, (m, r) in enumerate(grp.exact(boxes, labels)):
            memory[i] += m
            src = grp.g.src
            reach[i][src] = _union(reach[i][src], r, grp.src_view) if src in reach[i] else r
    return list(zip(memory, reach))


@dataclasses.dataclass(frozen=True, eq=False)
class Tiling:
    """One population cut into tiles: its ``(C, H, W)`` view, incoming ``groups``, the neuron
    limit per tile it was cut under, the block size and the boxes; per box its :attr:`demands`."""

    population: str
    shape: tuple[int, int, int]
    groups: tuple[GroupDemands, ...]
    neuron_limit: int
    block: tuple[int, int, int]
    boxes: tuple[Box, ...]

    @functools.cached_property
    def array(self) -> np.ndarray:
        """The boxes as a ``(T, 6)`` array."""
        return np.array(self.boxes, dtype=np.int64)

    @functools.cached_property
    def _labels(self) -> np.ndarray:
        lab = np.empty(self.shape, dtype=np.int32)
        for i, (c0, c1, h0, h1, w0, w1) in enumerate(self.boxes):
            lab[c0:c1, h0:h1, w0:w1] = i
        return lab.ravel()

    def labels(self) -> np.ndarray:
        """The tile index of every neuron (flat), computed when first asked for."""
        return self._labels

    @functools.cached_property
    def demands(self) -> list[tuple[int, dict[str, Reach]]]:
        """Per box: memory bits and reach per source population."""
        return box_demands(self.groups, self.boxes, self.labels)

    def count_in(self, reach: Reach) -> np.ndarray:
        """Neurons of ``reach`` (a reach into this population) inside each of its tiles."""
        return reach.count_in(self.array, self.labels)

    @functools.cached_property
    def _fixed(self) -> np.ndarray:
        """Per box: neurons, memory bits and fan-in axons, ``(T, 3)``."""
        return np.array([[box_size(box), memory, sum(r.size for r in reach.values())]
                         for box, (memory, reach) in zip(self.boxes, self.demands)], dtype=np.int64).reshape(-1, 3)

    def vectors(self, fan: np.ndarray) -> np.ndarray:
        """Per box (rows): neurons, memory bits, fan-in and fan-out axons (``fan``: per box),
        the order of :data:`RESOURCES`."""
        return np.column_stack([self._fixed, np.asarray(fan, dtype=np.int64)])

    def untiled(self) -> tuple[int, dict[str, Reach]]:
        """Memory bits and reach per source of the whole population as one box."""
        whole = (0, self.shape[0], 0, self.shape[1], 0, self.shape[2])
        (result,) = box_demands(self.groups, [whole], lambda: np.zeros(int(np.prod(self.shape)), dtype=np.int32))
        return result


def tile_population(population: str, shape: tuple[int, int, int], groups: tuple[GroupDemands, ...], cap: dict,
                    neuron_limit: int) -> Tiling:
    """Cut ``population`` with the best block size under ``neuron_limit`` neurons per tile: the
    first of :func:`_choose_block`'s whose every tile fits a core by its exact demands."""
    *tries, certain = _choose_block(population, shape, groups, cap, neuron_limit)
    for block in tries:
        t = Tiling(population, shape, groups, neuron_limit, block, tuple(_boxes(shape, block)))
        if all(memory <= cap["memory_bits"] and sum(r.size for r in reach.values()) <= cap["fan_in_axons"]
               for memory, reach in t.demands):
            return t
    return Tiling(population, shape, groups, neuron_limit, certain, tuple(_boxes(shape, certain)))


def fan_out(tilings: dict[str, Tiling]) -> dict[str, np.ndarray]:
    """Per placed population and tile: the tiles its neurons send to, summed over neurons."""
    counts = {p: np.zeros(len(t.boxes), dtype=np.int64) for p, t in tilings.items()}
    for t in tilings.values():
        for _, reach in t.demands:
            for src, r in reach.items():
                if src in counts:
                    counts[src] += tilings[src].count_in(r)
    return counts


def fan_out_per_neuron(tilings: dict[str, Tiling], which: set[str]) -> dict[str, np.ndarray]:
    """Per population of ``which``, per neuron ``(C, H, W)``: the tiles of ``tilings`` that read
    it (:func:`fan_out` neuron by neuron)."""
    result = {p: np.zeros(int(np.prod(tilings[p].shape)), dtype=np.int32) for p in which}
    for t in tilings.values():
        for _, reach in t.demands:
            for src, r in reach.items():
                if src in result:  # reach indices are distinct: one tile reads a neuron once
                    result[src][r.indices(tilings[src].shape)] += 1
    return {p: f.reshape(tilings[p].shape) for p, f in result.items()}


def fan_out_recut(tilings: dict[str, Tiling], fan: dict[str, np.ndarray], p: str, finer: Tiling
                  ) -> dict[str, np.ndarray]:
    """:func:`fan_out` of ``tilings`` with ``p`` cut as ``finer``, from ``fan`` (theirs): only
    ``p``'s tiles and those of its sources are counted again."""
    old = tilings[p]
    if any(grp.g.src == p for grp in old.groups):  # p reads itself: count everything
        return fan_out({**tilings, p: finer})
    result = dict(fan)
    result[p] = np.zeros(len(finer.boxes), dtype=np.int64)
    for q, t in tilings.items():
        if q != p and any(grp.g.src == p for grp in t.groups):
            for _, reach in t.demands:
                if p in reach:
                    result[p] += finer.count_in(reach[p])
    for tiles, sign in ((old, -1), (finer, 1)):
        for _, reach in tiles.demands:
            for src, r in reach.items():
                if src in result:
                    result[src] = result[src] + sign * tilings[src].count_in(r)
    return result


def _retiled(t: Tiling, fan: np.ndarray, cap: dict) -> Tiling:
    """``t`` cut into smaller tiles, so that fewer neurons send to ``fan`` tiles; an error when
    a single neuron sends to more tiles than a core has fan-out axons."""
    sizes = np.array([box_size(b) for b in t.boxes])
    per_neuron = float((fan / sizes).max())
    if max(sizes) == 1 or per_neuron > cap["fan_out_axons"]:
        raise ModelError(f"one neuron sends to {math.ceil(per_neuron):,} tiles; a core has "
                         f"{cap['fan_out_axons']:,} fan-out axons", node=t.population)
    limit = min(t.neuron_limit, int(max(sizes)) - 1, int(cap["fan_out_axons"] / per_neuron))
    return tile_population(t.population, t.shape, t.groups, cap, limit)


def tile_network(net: ChipNet, target: Target) -> tuple[dict[str, Tiling], dict[str, np.ndarray]]:
    """Every non-input population tiled (in network order), re-tiling those whose tiles send
    to too many tiles until none does; and the :func:`fan_out` of the final tiles."""
    cap = target.capacity
    placed = [p for p, pop in net.populations.items() if pop.kind != "input"]
    incoming: dict[str, list[GroupDemands]] = {p: [] for p in placed}
    for g in net.groups:
        incoming[g.dst].append(GroupDemands(g, net, target))
    tilings = {p: tile_population(p, view(net.populations[p].shape), tuple(incoming[p]), cap, cap["neurons"])
               for p in placed}
    while True:
        fan = fan_out(tilings)
        over = [p for p in placed if fan[p].max(initial=0) > cap["fan_out_axons"]]
        if not over:
            return tilings, fan
        tilings = {**tilings, **{p: _retiled(tilings[p], fan[p], cap) for p in over}}


def untiled_demands(net: ChipNet, tilings: dict[str, Tiling]) -> dict[str, dict[str, int]]:
    """Per placed population its demand as one tile (kernels stored once, every source neuron
    read once, every neuron sending to one core per consumer), in network order."""
    demand = {p: {"neurons": net.populations[p].size, "fan_out_axons": 0} for p in tilings}
    for p, t in tilings.items():
        memory, reach = t.untiled()
        demand[p].update(memory_bits=memory, fan_in_axons=sum(r.size for r in reach.values()))
        for src, r in reach.items():
            if src in demand:  # sources later in network order too (recurrent groups)
                demand[src]["fan_out_axons"] += r.size
    return demand
