"""Gap filling: divisible and cuttable populations are packed last, cut into slabs that fill the
room the other tiles leave on their cores.

Tiles are sized to fill a core in their binding resource (:mod:`snn2chip.chip.tiling`), so a
core holding a tile bound by synaptic memory or axons keeps most of its neurons free, and no
packing order of whole tiles can use them. A population is **divisible** when its incoming groups
are all dense or sparse and every source neuron is read by at most one of its neurons (relays,
delay lines, one-to-one threshold joins). Then each of its neurons has a demand of its own (one
neuron, its synapses' memory, its sources, the tiles it sends to) that adds up over any box, and
cutting it changes no other tile's demand: each source neuron still reaches one of its tiles, and
each consumer reads each of its neurons from one tile (a divisible consumer too). On a target
that stores every connection (Loihi 1) a population whose groups are all dense or conv is
**cuttable**: memory, which binds there, adds up over slabs too, but a run of slabs reads its
receptive field's overlap with the next run again, so its fan-in is computed per run, and each
cut makes the source neurons in that overlap send to one more tile. On a target that stores a
conv kernel once per core (Loihi 2) a row cut would store the kernels again, so only layers whose
channel slabs are cheap to place are cuttable, cut along channels (memory adds up; each slab
reads its receptive field again): memory-bound layers of modest fan-in, which fill other cores'
memory, and layers light on memory, such as a stem convolution of three input channels, which
fill the neurons that cores bound by memory or axons leave free (:func:`cuttable`). Slabs on
distant cores add axons between chips; packing ``local`` (:data:`PACKINGS`) cuts nothing but the
divisible populations.

:func:`pack` packs every tile of the other populations first-fit in network order, then the
divisible and cuttable populations' tiles in network order: a tile goes whole to the first core
it fits; else its leading slabs (a cuttable population's channels with shared kernels, else
rows, else columns, else channels of its box) go to the first core the first slab fits, as many
as fit, and the rest goes on. A cut is only made where the
sources' cores (placed earlier) can take the fan-out it adds, and is charged to them. A
divisible population may use the cores between the first and last core of the non-divisible
populations it reads from or sends to, then the cores it opened itself. The result is checked
with the exact demands of the new tiles (a source placed after its consumer was not charged for
their cuts). Cores are then numbered in the network order of the population of each core's
largest piece (its largest share of a core), so that a core opened for a relay sits beside its
neighbours when chips are filled in order, and a slab filling a gap far from its own layer stays
a guest on its host's chip (numbered by the first population instead, a SEW-ResNet-18 whose stem
fills layer 4's cores moved them to the stem's chip: 3.8 M axons between chips against 2.0 M).
On a target without shared kernels, where there are cuttable populations, the packing is also
done with them in decreasing order of their largest tile's largest share of a core (first-fit
decreasing), and the one with fewer cores that passes the check is kept (network order on ties;
with shared kernels that order never packed fewer cores on the scale models and cost a second
packing); if none passes, the caller keeps the plain packing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snn2chip.chip.ir import ChipNet, SynapseGroup
from snn2chip.chip.targets import Target
from snn2chip.chip.tiling import (RESOURCES, Box, Reach, Tiling, box_demands, box_size, fan_out,
                                  fan_out_per_neuron, limits)

MEMORY, FAN_IN, FAN_OUT = (RESOURCES.index(r) for r in ("memory_bits", "fan_in_axons", "fan_out_axons"))
#: with shared kernels, a layer is cut into channel slabs when its tiles take at most this share of
#: a core's fan-in (each slab reads it again) and are bound by memory or take at most
#: CUT_MEMORY of it (:func:`cuttable`)
CUT_FAN_IN = 0.5
CUT_MEMORY = 0.3
#: ``cores``: the fewest cores (cuttable populations fill room on any core, which adds axons
#: between chips); ``local``: only divisible populations fill gaps, near their neighbours
PACKINGS = ("cores", "local")


@dataclasses.dataclass(frozen=True)
class Filled:
    """The packing found: the tilings with the divisible and cuttable populations re-cut, their per-tile
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


def cuttable(tilings: dict[str, Tiling], fan: dict[str, np.ndarray], target: Target, which: set[str],
             packing: str = "cores") -> set[str]:
    """The placed populations outside ``which`` (the divisible ones) that are cut into slabs by
    exact demands: every incoming group dense or conv, and

    - on a target that stores every connection: all of them (memory, the resource that binds
      there, then adds up over slabs; fan-in, with the receptive fields' overlaps, is computed
      per run of slabs);
    - on a target that stores each conv kernel once per core: those whose tiles (``fan``: their
      fan-out) take at most :data:`CUT_FAN_IN` of a core's fan-in and are bound by memory or take
      at most :data:`CUT_MEMORY` of it. They are cut into channel slabs, over which memory adds
      up (a kernel per channel), while each slab reads its whole receptive field again: the
      memory-bound ones fill other cores' memory, the light ones (a stem convolution of three
      input channels; layer-1 convolutions of 64 channels take 0.28) fill the neurons left free
      on cores bound by memory or axons.

    Populations with sparse groups stay whole: cut too, they left less room for the others (more
    cores on the zoo). With ``packing`` ``"local"`` none is cuttable (:data:`PACKINGS`)."""
    if packing == "local":
        return set()
    result = {p for p, t in tilings.items() if p not in which and int(np.prod(t.shape)) > 1 and t.groups
              and all(grp.g.kind in ("dense", "conv") for grp in t.groups)}
    if not target.shared_conv_kernels:
        return result
    full = limits(target.capacity)
    largest = {p: _largest(tilings[p], fan[p], full) for p in result}
    return {p for p, share in largest.items() if share[FAN_IN] <= CUT_FAN_IN
            and (int(share.argmax()) == MEMORY or share[MEMORY] <= CUT_MEMORY)}


def _largest(t: Tiling, fan: np.ndarray, full: np.ndarray) -> np.ndarray:
    """Per resource, the largest share of a core any of ``t``'s tiles takes (``fan``: their fan-out)."""
    return (t.vectors(fan) / full).max(0)


def neuron_demands(net: ChipNet, tilings: dict[str, Tiling], which: set[str], synapse_bits: int,
                   fan: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per divisible population, per neuron its demand ``(C, H, W, resource)``: one neuron, its
    synapses x ``synapse_bits``, its source neurons (each read by it alone) and ``fan``, the
    tiles that read it."""
    result = {}
    for p in which:
        size = net.populations[p].size
        d = np.zeros((size, 4), dtype=np.int32)  # one neuron's demand is far below 2**31
        d[:, 0] = 1
        for grp in tilings[p].groups:
            counts = np.bincount(_synapses(grp.g)[0], minlength=size)
            d[:, 1] += counts * synapse_bits
            d[:, 2] += counts
        d[:, 3] = fan[p].ravel()
        result[p] = d.reshape(*tilings[p].shape, 4)
    return result


def _prefix(box: Box, axis: int, per_neuron: np.ndarray) -> np.ndarray:
    """Prefix sums of ``per_neuron`` (``(C, H, W[, k])``) over the slabs of ``box`` along ``axis``."""
    c0, c1, h0, h1, w0, w1 = box
    sums = per_neuron[c0:c1, h0:h1, w0:w1].sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
    return np.concatenate([np.zeros((1, *sums.shape[1:]), dtype=np.int64), np.cumsum(sums, axis=0)])


def _cut(box: Box, axis: int, start: int, stop: int) -> Box:
    """Slabs ``start..stop-1`` of ``box`` along ``axis``."""
    b = list(box)
    lo = b[2 * axis]
    b[2 * axis], b[2 * axis + 1] = lo + start, lo + stop
    return tuple(b)


@dataclasses.dataclass(frozen=True)
class Slabs:
    """A box cut into unit slabs along ``axis``, with the demand of any run of them: a divisible
    population's summed per-neuron demands (``prefix``), or a cuttable population's (``tiling``)
    exact neurons, memory and fan-in with its summed per-neuron fan-out (``prefix``)."""

    box: Box
    axis: int
    prefix: np.ndarray
    tiling: Tiling | None = None

    @classmethod
    def of(cls, box: Box, per_neuron: np.ndarray, tiling: Tiling | None = None, channels: bool = False) -> "Slabs":
        """``box`` cut along its channels if ``channels``, else its rows, else columns, else
        channels; ``per_neuron``: ``(C, H, W, resource)`` demands (divisible), or ``(C, H, W)``
        fan-out (cuttable, with its ``tiling``)."""
        axis = 0 if channels else 1 if box[3] - box[2] > 1 else 2 if box[5] - box[4] > 1 else 0
        return cls(box, axis, _prefix(box, axis, per_neuron), tiling)

    @property
    def count(self) -> int:
        return len(self.prefix) - 1

    def run(self, start: int, stop: int) -> tuple[np.ndarray, dict[str, Reach] | None]:
        """The demand vector of slabs ``start..stop-1`` (monotone in ``stop``) and, for a
        cuttable population, their reach per source."""
        if self.tiling is None:
            return self.prefix[stop] - self.prefix[start], None
        box = _cut(self.box, self.axis, start, stop)
        ((memory, reach),) = box_demands(self.tiling.groups, [box], None)  # dense and conv: no labels
        return np.array([box_size(box), memory, sum(r.size for r in reach.values()),
                         self.prefix[stop] - self.prefix[start]], dtype=np.int64), reach


Windows = tuple[tuple[int, int | None], ...]  # ranges of cores (start, stop), searched in turn


class Cores:
    """Cores being packed first-fit: the summed demand per core against the limits."""

    def __init__(self, limits: np.ndarray):
        self.limits = limits
        self._load = np.zeros((16, len(limits)), dtype=np.int64)  # grown by doubling
        self.used = 0

    @property
    def load(self) -> np.ndarray:
        """The summed demand per opened core, ``(cores, resources)`` (a view: writable)."""
        return self._load[:self.used]

    def first(self, demand: np.ndarray, window: tuple[int, int] = (0, None), extra: np.ndarray | None = None
              ) -> int | None:
        """The first core (among ``window``, a range of cores) where ``demand`` fits, else None;
        ``extra``: fan-out axons added to every core at the same time, which must fit too."""
        lo, hi = window
        load = self.load
        if extra is not None:
            load = load.copy()
            load[:, FAN_OUT] += extra
            if np.any(load[:, FAN_OUT] > self.limits[FAN_OUT]):
                return None
        free = np.flatnonzero(np.all(load[lo:hi] + demand <= self.limits, axis=1))
        return int(free[0]) + lo if free.size else None

    def put(self, core: int | None, demand: np.ndarray) -> int:
        if core is None:
            if self.used == len(self._load):
                self._load = np.concatenate([self._load, np.zeros_like(self._load)])
            core, self.used = self.used, self.used + 1
        self._load[core] += demand
        return core

    def place(self, demands: list[np.ndarray]) -> list[int]:
        """The core of each demand vector, placed first-fit in the order given: the first core
        where every resource still fits, else a new core."""
        return [self.put(self.first(d), d) for d in demands]


class Filler:
    """Runs of slabs placed on ``cores`` beside the pieces already ``placed`` (per population,
    complete; ``tilings``: the populations as tiled), charging the cores of a cut population's
    placed sources for the pieces they then send to besides the one they did (the exact
    fan-out, while sources precede consumers)."""

    def __init__(self, cores: Cores, placed: dict[str, list[tuple[Box, int]]], tilings: dict[str, Tiling]):
        self.cores, self.placed, self.tilings = cores, placed, tilings
        self._pieces: dict[str, tuple[Tiling, np.ndarray]] = {}

    def _source(self, src: str) -> tuple[Tiling, np.ndarray]:
        """A placed population with its pieces as tiles, and each piece's core."""
        if src not in self._pieces:
            pieces = dataclasses.replace(self.tilings[src], boxes=tuple(box for box, _ in self.placed[src]))
            self._pieces[src] = pieces, np.array([core for _, core in self.placed[src]])
        return self._pieces[src]

    def _extra(self, parts: list[dict[str, Reach]], whole: dict[str, Reach]) -> np.ndarray:
        """Per core, the fan-out axons its sources' pieces add when the reach ``whole`` (per
        source) is read by ``parts`` instead."""
        extra = np.zeros(len(self.cores.load), dtype=np.int64)
        for src, r in whole.items():
            if src in self.placed:
                pieces, cores = self._source(src)
                delta = sum(pieces.count_in(part[src]) for part in parts if src in part) - pieces.count_in(r)
                np.add.at(extra, cores, delta)
        return extra

    def _first(self, demand: np.ndarray, windows: Windows, extra: np.ndarray | None = None) -> int | None:
        """The first core where ``demand`` (and ``extra``, see :meth:`Cores.first`) fits, searching
        ``windows`` (ranges of cores) in turn; None if none has room."""
        for window in windows:
            core = self.cores.first(demand, window, extra)
            if core is not None:
                return core
        return None

    def fill(self, slabs: Slabs, windows: Windows) -> list[tuple[Box, int]]:
        """``slabs.box`` placed whole or as runs of slabs on the cores of ``windows`` (module docstring)."""
        pieces, start, n = [], 0, slabs.count
        while start < n:
            rest, reach = slabs.run(start, n)
            core, stop, extra = self._first(rest, windows), n, None
            if core is None:
                core, stop, extra = self._split(slabs, start, reach, windows)
            if extra is not None:
                self.cores.load[:, FAN_OUT] += extra
            piece = _cut(slabs.box, slabs.axis, start, stop)
            pieces.append((piece, self.cores.put(core, slabs.run(start, stop)[0])))
            start = stop
        return pieces

    def _split(self, slabs: Slabs, start: int, reach: dict[str, Reach] | None, windows: Windows
               ) -> tuple[int | None, int, np.ndarray | None]:
        """The first core of ``windows`` where slab ``start`` fits, with the fan-out the cut adds
        (``reach``: the rest's, None for a divisible population), the end of the longest run from
        ``start`` that fits there and its added fan-out; ``(None, count, None)`` if none does."""
        n = slabs.count

        def trial(stop: int) -> tuple[np.ndarray, np.ndarray | None]:
            demand, part = slabs.run(start, stop)
            return demand, None if reach is None else self._extra([part, slabs.run(stop, n)[1]], reach)

        demand, extra = trial(start + 1)
        core = self._first(demand, windows, extra)
        if core is None:
            return None, n, None
        lo, hi = start + 1, n  # fits at lo, not at n
        while hi - lo > 1:
            mid = (lo + hi) // 2
            demand, more = trial(mid)
            if self.cores.first(demand, (core, core + 1), more) is None:
                hi = mid
            else:
                lo, extra = mid, more
        return core, lo, extra


def pack(net: ChipNet, tilings: dict[str, Tiling], fan: dict[str, np.ndarray], target: Target,
         packing: str = "cores") -> Filled | None:
    """Gap-filled packing of ``tilings`` (``fan``: their per-tile fan-out; ``packing``: one of
    :data:`PACKINGS`), or None when no population is divisible or cuttable, or the exact check
    fails (module docstring)."""
    which = divisible(net, tilings)
    cut = cuttable(tilings, fan, target, which, packing)
    if not which | cut:
        return None
    fan_of = fan_out_per_neuron(tilings, which | cut)
    slabs = {p: [Slabs.of(box, fan_of[p], tilings[p], channels=target.shared_conv_kernels) for box in tilings[p].boxes]
             for p in cut}
    for p, per_neuron in neuron_demands(net, tilings, which, target.synapse_bits, fan_of).items():
        slabs[p] = [Slabs.of(box, per_neuron) for box in tilings[p].boxes]
    del fan_of
    full = limits(target.capacity)
    network = [p for p in tilings if p in slabs]
    orders = [network]
    if cut and not target.shared_conv_kernels:  # largest tiles first (first-fit decreasing), then the divisible ones
        share = {p: float(_largest(tilings[p], fan[p], full).max()) for p in cut}
        largest = sorted((p for p in network if p in cut), key=lambda p: -share[p])  # ties: network order
        orders.append(largest + [p for p in network if p in which])
    best = None
    for order in orders:
        cores = Cores(full)
        filled = _checked(tilings, _place(tilings, fan, which, slabs, order, cores), cores)
        if filled is not None and (best is None or filled.cores < best.cores):
            best = filled
    return best


def _place(tilings: dict[str, Tiling], fan: dict[str, np.ndarray], which: set[str],
           slabs: dict[str, list[Slabs]], order: list[str], cores: Cores) -> dict[str, list[tuple[Box, int]]]:
    """Per population its pieces and their cores: the tiles of populations without ``slabs``
    whole, first-fit in network order, then the others' slabs in ``order``, a divisible
    population's (``which``) within the cores of its placed neighbours."""
    placed: dict[str, list[tuple[Box, int]]] = {}
    for p, t in tilings.items():
        if p not in slabs:
            placed[p] = list(zip(t.boxes, cores.place(t.vectors(fan[p]))))
    neighbours = _neighbours(tilings)
    filler = Filler(cores, placed, tilings)
    for p in order:
        near = [core for q in neighbours[p] - which if q in placed for _, core in placed[q]]
        # the cores between its neighbours', then those it opens itself
        windows = ((min(near), max(near) + 1), (cores.used, None)) if near and p in which else ((0, None),)
        placed[p] = [piece for s in slabs[p] for piece in filler.fill(s, windows)]
    return {p: placed[p] for p in tilings}


def _checked(tilings: dict[str, Tiling], placed: dict[str, list[tuple[Box, int]]], packed: Cores
             ) -> Filled | None:
    """The packing ``placed`` onto ``packed``, with the pieces as tiles, if every core is within
    its limits by the pieces' exact demands (sources then send to every piece)."""
    cores, full = len(packed.load), packed.limits
    recut = {p: dataclasses.replace(t, boxes=tuple(box for box, _ in placed[p])) for p, t in tilings.items()}
    exact_fan = fan_out(recut)
    vectors = {p: t.vectors(exact_fan[p]) for p, t in recut.items()}
    exact = np.zeros((cores, len(full)), dtype=np.int64)
    for p, t in recut.items():
        np.add.at(exact, [core for _, core in placed[p]], vectors[p])
    if np.any(exact > full):
        return None
    number = _in_network_order(placed, vectors, full, cores)
    core_of = {p: [int(number[core]) for _, core in placed[p]] for p in tilings}
    return Filled(recut, exact_fan, core_of, cores)


def _neighbours(tilings: dict[str, Tiling]) -> dict[str, set[str]]:
    """Per placed population, the placed populations it reads from or sends to."""
    result: dict[str, set[str]] = {p: set() for p in tilings}
    for p, t in tilings.items():
        for grp in t.groups:
            if grp.g.src in result:
                result[p].add(grp.g.src)
                result[grp.g.src].add(p)
    return result


def _in_network_order(placed: dict[str, list[tuple[Box, int]]], vectors: dict[str, np.ndarray], full: np.ndarray,
                      cores: int) -> np.ndarray:
    """New core numbers, ordered by the network position of each core's largest piece (its
    largest share of a core; ``vectors``: each piece's demand), so that cores opened late for a
    relay sit beside its neighbours when chips are filled in order, and a slab filling a gap
    stays a guest on its host's chip."""
    largest = np.full(cores, -1.0)
    rank = np.zeros(cores, dtype=np.int64)
    for k, (p, pieces) in enumerate(placed.items()):  # network order
        for (_, core), share in zip(pieces, (vectors[p] / full).max(1)):
            if share > largest[core]:
                largest[core], rank[core] = share, k
    number = np.empty(cores, dtype=np.int64)
    number[np.argsort(rank, kind="stable")] = np.arange(cores)
    return number
