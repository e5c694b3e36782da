"""Gap filling: divisible populations are packed last, cut into slabs that fill the room the
other tiles leave on their cores.

Tiles are sized to fill a core in their binding resource (:mod:`snn2chip.chip.tiling`), so a
core holding a tile bound by synaptic memory or axons keeps most of its neurons free, and no
packing order of whole tiles can use them. A population is **divisible** when its incoming groups
are all dense or sparse and every source neuron is read by at most one of its neurons (relays,
delay lines, one-to-one threshold joins). Then each of its neurons has a demand of its own (one
neuron, its synapses' memory, its sources, the tiles it sends to) that adds up over any box, and
cutting it changes no other tile's demand: each source neuron still reaches one of its tiles, and
each consumer reads each of its neurons from one tile (a divisible consumer too).

:func:`pack` packs every tile of the other populations first-fit in network order, then the
divisible populations' tiles in network order: a tile goes whole to the first core it fits; else
its leading slabs (rows, else columns, else channels of its box) go to the first core the first
slab fits, as many as fit, and the rest goes on; the cores it may use are those between the first
and last core of the non-divisible populations it reads from or sends to. Cores are then numbered
by the first population on them in network order, so that a core opened for a relay sits beside
its neighbours when chips are filled in order. The result is checked with the exact demands of
the new tiles; if a core were over a limit (never expected), the caller keeps the plain packing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snn2chip.chip.ir import ChipNet, SynapseGroup
from snn2chip.chip.targets import Target
from snn2chip.chip.tiling import Box, Tiling, fan_out, limits


@dataclasses.dataclass(frozen=True)
class Filled:
    """The packing found: the tilings with the divisible populations re-cut, their per-tile
    fan-out, per population the core of each of its boxes (in box order); ``cores`` in all."""

    tilings: dict[str, Tiling]
    fan: dict[str, np.ndarray]
    core_of: dict[str, list[int]]
    cores: int


def _synapses(g: SynapseGroup) -> tuple[np.ndarray, np.ndarray]:
    """Destination and source indices of the group's non-zero synapses (dense or sparse)."""
    if g.kind == "dense":
        return np.nonzero(np.asarray(g.weights))
    keep = np.asarray(g.weights) != 0
    return np.asarray(g.rows)[keep], np.asarray(g.cols)[keep]


def divisible(net: ChipNet, tilings: dict[str, Tiling]) -> set[str]:
    """The placed populations that are divisible (module docstring)."""
    result = set()
    for p, t in tilings.items():
        groups = [grp.g for grp in t.groups]
        if net.populations[p].size < 2 or not groups or any(g.kind == "conv" for g in groups):
            continue
        reads: dict[str, np.ndarray] = {}
        for g in groups:
            size = net.populations[g.src].size
            reads[g.src] = reads.get(g.src, 0) + np.bincount(_synapses(g)[1], minlength=size)
        if all(int(r.max(initial=0)) <= 1 for r in reads.values()):
            result.add(p)
    return result


def neuron_demands(net: ChipNet, tilings: dict[str, Tiling], which: set[str], synapse_bits: int
                   ) -> dict[str, np.ndarray]:
    """Per divisible population, per neuron its demand ``(C, H, W, resource)``: one neuron, its
    synapses x ``synapse_bits``, its source neurons (each read by it alone) and the tiles of the
    current ``tilings`` that read it."""
    result = {}
    for p in which:
        size = net.populations[p].size
        d = np.zeros((size, 4), dtype=np.int32)  # one neuron's demand is far below 2**31
        d[:, 0] = 1
        for grp in tilings[p].groups:
            counts = np.bincount(_synapses(grp.g)[0], minlength=size)
            d[:, 1] += counts * synapse_bits
            d[:, 2] += counts
        result[p] = d
    for t in tilings.values():
        for _, reach in t.demands:
            for src, r in reach.items():
                if src in result:  # reach indices are distinct: one tile reads a neuron once
                    result[src][r.indices(tilings[src].shape), 3] += 1
    return {p: d.reshape(*tilings[p].shape, 4) for p, d in result.items()}


def _slabs(box: Box, per_neuron: np.ndarray) -> tuple[int, np.ndarray]:
    """The axis a box is cut along (rows, else columns, else channels; 0..2 of ``(C, H, W)``) and
    the prefix sums of its slabs' demands, ``(slabs + 1, resources)``."""
    c0, c1, h0, h1, w0, w1 = box
    axis = 1 if h1 - h0 > 1 else 2 if w1 - w0 > 1 else 0
    part = per_neuron[c0:c1, h0:h1, w0:w1]
    sums = part.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
    return axis, np.vstack([np.zeros((1, sums.shape[1]), dtype=np.int64), np.cumsum(sums, axis=0)])


def _cut(box: Box, axis: int, start: int, stop: int) -> Box:
    """Slabs ``start..stop-1`` of ``box`` along ``axis``."""
    b = list(box)
    lo = b[2 * axis]
    b[2 * axis], b[2 * axis + 1] = lo + start, lo + stop
    return tuple(b)


class Cores:
    """Cores being packed first-fit: the summed demand per core against the limits."""

    def __init__(self, limits: np.ndarray):
        self.limits = limits
        self.load = np.zeros((0, len(limits)), dtype=np.int64)

    def first(self, demand: np.ndarray, window: tuple[int, int] = (0, None)) -> int | None:
        """The first core (among ``window``, a range of cores) where ``demand`` fits, else None."""
        lo, hi = window
        free = np.flatnonzero(np.all(self.load[lo:hi] + demand <= self.limits, axis=1))
        return int(free[0]) + lo if free.size else None

    def put(self, core: int | None, demand: np.ndarray) -> int:
        if core is None:
            core = len(self.load)
            self.load = np.vstack([self.load, np.zeros(len(self.limits), dtype=np.int64)])
        self.load[core] += demand
        return core

    def place(self, demands: list[np.ndarray]) -> list[int]:
        """The core of each demand vector, placed first-fit in the order given: the first core
        where every resource still fits, else a new core."""
        return [self.put(self.first(d), d) for d in demands]

    def fill(self, box: Box, per_neuron: np.ndarray, window: tuple[int, int]) -> list[tuple[Box, int]]:
        """``box`` placed whole or as slabs on the cores of ``window`` (module docstring)."""
        axis, prefix = _slabs(box, per_neuron)
        pieces, start, n = [], 0, len(prefix) - 1
        while start < n:
            rest = prefix[n] - prefix[start]
            core = self.first(rest, window)
            stop = n
            if core is None:
                core = self.first(prefix[start + 1] - prefix[start], window)
                if core is not None:
                    room = self.limits - self.load[core]
                    stop = start + min(int(np.searchsorted(prefix[start:, r] - prefix[start, r], room[r], side="right")) - 1
                                       for r in range(len(room)))
            pieces.append((_cut(box, axis, start, stop), self.put(core, prefix[stop] - prefix[start])))
            start = stop
        return pieces


def pack(net: ChipNet, tilings: dict[str, Tiling], fan: dict[str, np.ndarray], target: Target) -> Filled | None:
    """Gap-filled packing of ``tilings`` (``fan``: their per-tile fan-out), or None when no
    population is divisible or the exact check fails (module docstring)."""
    which = divisible(net, tilings)
    if not which:
        return None
    per_neuron = neuron_demands(net, tilings, which, target.synapse_bits)
    cores = Cores(limits(target.capacity))
    placed: dict[str, list[tuple[Box, int]]] = {}
    for p, t in tilings.items():
        if p not in which:
            placed[p] = list(zip(t.boxes, cores.place(t.vectors(fan[p]))))
    neighbours = _neighbours(tilings)
    for p, t in tilings.items():
        if p in which:
            near = [core for q in neighbours[p] - which if q in placed for _, core in placed[q]]
            window = (min(near), max(near) + 1) if near else (0, None)
            placed[p] = [piece for box in t.boxes for piece in cores.fill(box, per_neuron[p], window)]
    del per_neuron
    recut = {p: dataclasses.replace(t, boxes=tuple(box for box, _ in placed[p])) if p in which else t
             for p, t in tilings.items()}
    number = _in_network_order(placed, list(tilings), len(cores.load))
    core_of = {p: [int(number[core]) for _, core in placed[p]] for p in tilings}
    exact = np.zeros_like(cores.load)
    exact_fan = fan_out(recut)
    for p, t in recut.items():
        for core, d in zip(core_of[p], t.vectors(exact_fan[p])):
            exact[core] += d
    if np.any(exact > cores.limits):
        return None
    return Filled(recut, exact_fan, core_of, len(cores.load))


def _neighbours(tilings: dict[str, Tiling]) -> dict[str, set[str]]:
    """Per placed population, the placed populations it reads from or sends to."""
    result: dict[str, set[str]] = {p: set() for p in tilings}
    for p, t in tilings.items():
        for grp in t.groups:
            if grp.g.src in result:
                result[p].add(grp.g.src)
                result[grp.g.src].add(p)
    return result


def _in_network_order(placed: dict[str, list[tuple[Box, int]]], order: list[str], cores: int) -> np.ndarray:
    """New core numbers, ordered by the first population (in network order) on each core, so that
    cores opened late for a relay sit beside its neighbours when chips are filled in order."""
    rank = {p: k for k, p in enumerate(order)}
    first = np.full(cores, len(order))
    for p, pieces in placed.items():
        for _, core in pieces:
            first[core] = min(first[core], rank[p])
    number = np.empty(cores, dtype=np.int64)
    number[np.argsort(first, kind="stable")] = np.arange(cores)
    return number
