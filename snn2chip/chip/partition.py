"""Partitioning: populations -> core-sized tiles -> cores -> chips, with lower bounds.

Every population except inputs (injected by the host) is viewed as ``(C, H, W)`` (``(N,)`` as
``(N, 1, 1)``) and cut into **tiles**: a channel range x a block of rows x a block of columns,
one block size per population. A tile's demand per resource (:data:`RESOURCES`, capacities from
the :class:`~snn2chip.chip.targets.Target`):

- ``neurons``: its neurons;
- ``memory_bits``: per incoming synapse group, dense/sparse: stored synapses x ``synapse_bits``;
  conv with shared kernels: the non-zero kernel entries of the tile's channels x
  ``kernel_entry_bits`` (once per tile), else its connections x ``synapse_bits`` (taps on the
  padding left out);
- ``fan_in_axons``: per source population, the distinct source neurons its synapses read (for a
  conv: the groups' input channels x the rows and columns of the receptive field);
- ``fan_out_axons``: per neuron, the number of tiles it sends to (an upper bound of the cores).

A population's block size is the one of least cost whose upper bounds of neurons, memory and
fan-in fit a core (candidates ``ceil(n/k)`` per axis; cost in cores: the tiles' shares of a core,
plus the axons that sources on chip route to them over a core's fan-out axons; ties: fewer
routed axons, then wider channel blocks), unless one of a few of no greater cost, whose bounds
exceed a core by at most ``tiling.BOUND_SLACK``, fits by the exact demands of every tile
(sign-split kernel halves and padding make the bounds loose). Tiles whose fan-out exceeds the
limit make their population re-tile with fewer neurons per tile. On networks of a few hundred
tiles, populations are then cut finer where that packs into fewer cores
(:mod:`snn2chip.chip.refine`). Tiles are packed onto cores first-fit in network order (a tile
goes to the first core where every resource still fits, so small layers share cores). Then the
packing is done again with gap filling (:mod:`snn2chip.chip.fill`): divisible populations
(relays, delay lines) and cuttable dense and conv populations go last, cut into slabs that fill
the room the other tiles leave; it is kept when it uses fewer cores. ``packing="local"`` leaves
the conv and dense populations whole (fewer axons between chips, more cores). Cores go onto
chips in order, then neighbouring chips swap cores by Kernighan-Lin bisection (networkx, fixed
seed) to cut inter-chip traffic.
Everything iterates in network order: the result is deterministic.

**Traffic** from a source tile to a destination tile: the routed axons (source neurons whose
spikes reach it) times the source population's firing rate (spikes per neuron per step) when
measured rates are given, else once (the messages per step if every neuron fired).

**Bounds** use each population's untiled demand ``d_r`` (one tile holding all of it: kernels
stored once, every source neuron read once, every neuron sending to one core per consumer):
the volume bound ``max_r ceil(sum d_r / cap_r)`` (no partition uses fewer cores) and the
one-layer-per-core bound ``sum_pop max_r ceil(d_r / cap_r)`` (no partition with one population
per core uses fewer). ``cores_to_bound_ratio`` is cores / the volume bound, the bound every
partition obeys; ``cores_to_layer_bound_ratio`` compares with the one-layer-per-core bound, which
packing small populations together can beat (ratio below 1).
"""

from __future__ import annotations

import dataclasses
import math

import networkx as nx
import numpy as np

from snn2chip.chip import fill, refine
from snn2chip.chip.ir import ChipNet, Population
from snn2chip.chip.targets import Target
from snn2chip.chip.tiling import RESOURCES, Box, Tiling, limits, tile_network, untiled_demands
from snn2chip.errors import ModelError
from snn2chip.records import Record



@dataclasses.dataclass(frozen=True)
class LayerPlacement(Record):
    """One population on chip: its block ``(C, H, W)``, tiles, cores, the resource its fullest
    tile uses most of (``binding``), its one-layer-per-core bound and its untiled demand per resource."""

    population: str
    block: tuple[int, ...]
    tiles: int
    cores: int
    binding: str
    bound: int
    neurons: int
    memory_bits: int
    fan_in_axons: int
    fan_out_axons: int


@dataclasses.dataclass(frozen=True)
class Traffic(Record):
    """Messages per step between cores, between chips and from the inputs, weighted by
    measured ``firing rates`` or ``all neurons firing``."""

    weighting: str
    inter_core: float
    inter_chip: float
    from_inputs: float


@dataclasses.dataclass(frozen=True)
class PartitionReport(Record):
    """The ``partition`` entry of the compile report (see the module docstring for the bounds)."""

    target: str
    system: str
    packing: str
    system_chips: int
    chips_used: int
    cores: int
    tiles: int
    cores_to_bound_ratio: float
    cores_to_layer_bound_ratio: float
    bounds: dict
    traffic: Traffic
    utilisation_mean: dict[str, float]
    core_usage: dict[str, list[int]]
    capacity: dict[str, int]
    chip_of_core: tuple[int, ...]
    layers: tuple[LayerPlacement, ...]


@dataclasses.dataclass(frozen=True)
class Tile:
    """A block of one population's neurons on one core; ``demand`` per :data:`RESOURCES`."""

    population: str
    box: Box
    demand: tuple[int, ...]
    core: int


@dataclasses.dataclass(frozen=True)
class Partition:
    """Tiles on cores on chips, with traffic and bounds (see module docstring).

    ``chip_of`` per core; ``traffic`` (src core, dst core) -> weight (spikes per step) between
    different cores; ``layers`` per population its block, tiles, cores, binding resource and
    one-layer bound; ``demand`` per population its untiled demand per resource.
    """

    target: Target
    system: str
    packing: str
    tiles: tuple[Tile, ...]
    chip_of: tuple[int, ...]
    traffic: dict
    input_traffic: float
    layers: dict
    demand: dict
    weighting: str

    @property
    def cores(self) -> int:
        return len(self.chip_of)

    @property
    def chips(self) -> int:
        return len(set(self.chip_of))

    def core_usage(self) -> np.ndarray:
        """Per core the summed demand of its tiles, ``(cores, len(RESOURCES))``."""
        usage = np.zeros((self.cores, len(RESOURCES)), dtype=np.int64)
        for t in self.tiles:
            usage[t.core] += t.demand
        return usage

    def bounds(self) -> dict:
        """Volume and one-layer-per-core bounds, per resource and overall (``cores``)."""
        cap = self.target.capacity
        volume = volume_bounds(self.demand, cap)
        layer = {r: sum(math.ceil(d[r] / cap[r]) for d in self.demand.values()) for r in RESOURCES}
        return {"volume": {**volume, "cores": max(volume.values())},
                "one_layer_per_core": {**layer, "cores": sum(max(math.ceil(d[r] / cap[r]) for r in RESOURCES)
                                                              for d in self.demand.values())}}

    def summary(self) -> PartitionReport:
        """The report entry."""
        bounds = self.bounds()
        usage = self.core_usage()
        cap = limits(self.target.capacity)
        inter_chip = sum(w for (a, b), w in self.traffic.items() if self.chip_of[a] != self.chip_of[b])
        return PartitionReport(
            target=self.target.name,
            system=self.system,
            packing=self.packing,
            system_chips=self.target.chips(self.system),
            chips_used=self.chips,
            cores=self.cores,
            tiles=len(self.tiles),
            cores_to_bound_ratio=self.cores / bounds["volume"]["cores"],
            cores_to_layer_bound_ratio=self.cores / bounds["one_layer_per_core"]["cores"],
            bounds=bounds,
            traffic=Traffic(self.weighting, float(sum(self.traffic.values())), float(inter_chip),
                            float(self.input_traffic)),
            utilisation_mean={r: float((usage[:, i] / cap[i]).mean()) for i, r in enumerate(RESOURCES)},
            core_usage={r: usage[:, i].tolist() for i, r in enumerate(RESOURCES)},
            capacity=dict(self.target.capacity),
            chip_of_core=tuple(self.chip_of),
            layers=tuple(self.layers.values()),
        )


def volume_bounds(demand: dict[str, dict[str, int]], cap: dict) -> dict[str, int]:
    """Per resource the cores that the untiled ``demand`` of every population needs at least."""
    return {r: math.ceil(sum(d[r] for d in demand.values()) / cap[r]) for r in RESOURCES}


def check_capabilities(net: ChipNet, target: Target) -> None:
    """Features the target lacks (graded payloads, weight bits, delays) raise :class:`ModelError`."""
    for name, pop in net.populations.items():
        if pop.payload_bits > target.payload_bits:
            what = f"{target.payload_bits}-bit payloads" if target.payload_bits else "binary spikes only"
            raise ModelError(f"sends {pop.payload_bits}-bit graded spikes; target '{target.name}' carries {what}",
                             node=name)
    for g in net.groups:
        if g.num_weight_bits > target.weight_bits:
            raise ModelError(f"{g.num_weight_bits}-bit weights; target '{target.name}' has {target.weight_bits}", node=g.name)
        delay = int(np.max(g.delays, initial=0)) if g.delays is not None else 0
        if delay > target.max_delay:
            raise ModelError(f"delay {delay}; target '{target.name}' delays at most {target.max_delay} steps", node=g.name)


def _rate(pop: Population, rates: dict | None, default: float) -> float:
    """Firing rate of ``pop`` (a delay copy fires as its origin), else ``default``."""
    if rates is None:
        return 1.0
    return float(rates.get(pop.name, rates.get(pop.origin, default)))


def partition(net: ChipNet, target: Target, system: str | None = None, rates: dict | None = None,
              packing: str = "cores") -> Partition:
    """Tile, pack and place ``net`` on ``target``; ``system`` None picks the smallest that fits.

    ``rates``: measured spikes per neuron per step per population (others: their mean);
    ``packing``: one of :data:`snn2chip.chip.fill.PACKINGS`.
    Raises :class:`ModelError` for an unknown ``packing`` and when a feature, a neuron or the whole
    network does not fit.
    """
    if packing not in fill.PACKINGS:
        raise ModelError(f"unknown packing '{packing}' (known: {', '.join(fill.PACKINGS)})", option="--packing")
    check_capabilities(net, target)
    tilings, fan = tile_network(net, target)
    demand = untiled_demands(net, tilings)
    tilings, fan = refine.refine(tilings, fan, target.capacity, max(volume_bounds(demand, target.capacity).values()))
    tiles, cores = _pack(_tile_demands(tilings, fan), target.capacity)
    filled = fill.pack(net, tilings, fan, target, packing)
    if filled is not None and filled.cores < cores:
        tilings, cores = filled.tilings, filled.cores
        tiles = [Tile(p, box, tuple(int(x) for x in d), core) for p, t in tilings.items()
                 for box, d, core in zip(t.boxes, t.vectors(filled.fan[p]), filled.core_of[p])]
    layers = _layers(tilings, tiles, demand, target.capacity)
    traffic, input_traffic = _traffic(net, tilings, tiles, rates)
    system = _system(target, system, cores, tiles, target.capacity)
    chip_of = place(cores, target.cores_per_chip, traffic)
    return Partition(target, system, packing, tuple(tiles), chip_of, traffic, input_traffic, layers, demand,
                     "firing rates" if rates else "axons")


def _tile_demands(tilings: dict[str, Tiling], fan: dict[str, np.ndarray]) -> list[tuple[str, Box, np.ndarray]]:
    """Every tile in network order: its population, box and demand per :data:`RESOURCES`."""
    return [(p, box, d) for p, t in tilings.items() for box, d in zip(t.boxes, t.vectors(fan[p]))]


def _pack(demands: list[tuple[str, Box, np.ndarray]], cap: dict) -> tuple[list[Tile], int]:
    """The tiles packed first-fit onto cores in the order given (a tile goes to the first core
    where every resource still fits, else to a new core), and the number of cores."""
    cores = fill.Cores(limits(cap)).place([d for *_, d in demands])
    tiles = [Tile(p, box, tuple(int(x) for x in d), core) for (p, box, d), core in zip(demands, cores)]
    return tiles, len(set(cores))


def _layers(tilings: dict[str, Tiling], tiles: list[Tile], demand: dict, cap: dict) -> dict[str, LayerPlacement]:
    """Per population: block, tiles, cores, binding resource, one-layer bound and untiled demand."""
    capacity = limits(cap)
    own: dict[str, list[Tile]] = {p: [] for p in tilings}
    for tile in tiles:
        own[tile.population].append(tile)
    layers = {}
    for p, t in tilings.items():
        binding = np.zeros(len(RESOURCES))
        for tile in own[p]:
            binding = np.maximum(binding, np.array(tile.demand, dtype=np.int64) / capacity)
        layers[p] = LayerPlacement(p, tuple(t.block), len(t.boxes), len({tile.core for tile in own[p]}),
                                   RESOURCES[int(binding.argmax())],
                                   max(math.ceil(demand[p][r] / cap[r]) for r in RESOURCES),
                                   *(int(demand[p][r]) for r in RESOURCES))
    return layers


def _traffic(net: ChipNet, tilings: dict[str, Tiling], tiles: list[Tile], rates: dict | None) -> tuple[dict, float]:
    """Weight (spikes per step) per (source core, destination core) between different cores,
    and the weight arriving from the inputs (see the module docstring)."""
    measured = [v for v in (rates or {}).values()]
    default = float(np.mean(measured)) if measured else 1.0
    cores: dict[str, list[int]] = {p: [] for p in tilings}
    for tile in tiles:
        cores[tile.population].append(tile.core)
    traffic: dict[tuple[int, int], float] = {}
    input_traffic = 0.0
    for p, t in tilings.items():
        for i, (_, reach) in enumerate(t.demands):
            dst_core = cores[p][i]
            for src, r in reach.items():
                rate = _rate(net.populations[src], rates, default)
                if src not in tilings:
                    input_traffic += r.size * rate
                    continue
                counts = tilings[src].count_in(r)
                for j in np.flatnonzero(counts):
                    src_core = cores[src][int(j)]
                    if src_core != dst_core:
                        traffic[(src_core, dst_core)] = traffic.get((src_core, dst_core), 0.0) + float(counts[j]) * rate
    return traffic, input_traffic


def _system(target: Target, system: str | None, cores: int, tiles: list[Tile], cap: dict) -> str:
    """The named system (given, or the smallest that fits); too small a system raises an error
    saying which resource runs out, by how much, and which system would fit."""
    chips = math.ceil(cores / target.cores_per_chip)
    fits = [name for name, n in target.systems if n >= chips]
    if system is None:
        if fits:
            return fits[0]
        system = target.systems[-1][0]
    have = target.chips(system)
    if have >= chips:
        return system
    total_cores = have * target.cores_per_chip
    totals = {r: sum(t.demand[i] for t in tiles) for i, r in enumerate(RESOURCES)}
    worst = max(RESOURCES, key=lambda r: totals[r] / cap[r])
    short = (f"{worst.replace('_', ' ')} run out: the tiles need {totals[worst]:,}, the system has "
             f"{total_cores * cap[worst]:,} ({totals[worst] / (total_cores * cap[worst]):.2f}x)")
    if totals[worst] <= total_cores * cap[worst]:
        short = f"cores run out ({worst.replace('_', ' ')} use {totals[worst] / (total_cores * cap[worst]):.0%} of the system)"
    where = (f"system '{fits[0]}' ({target.chips(fits[0]):,} chips) fits" if fits else
             f"no system of target '{target.name}' fits (largest: '{target.systems[-1][0]}', {target.systems[-1][1]:,} chips)")
    raise ModelError(f"the network needs {cores:,} cores on {chips:,} chips; system '{system}' has {have:,} chips = "
                     f"{total_cores:,} cores, {cores - total_cores:,} too few: {short}; {where}")


def place(cores: int, per_chip: int, traffic: dict) -> tuple[int, ...]:
    """Chip of each core: consecutive cores fill chips in order, then each pair of neighbouring
    chips is re-split by Kernighan-Lin bisection (sizes kept, seed 0) when that cuts traffic."""
    chip_of = [c // per_chip for c in range(cores)]
    chips = -(-cores // per_chip)
    if chips < 2:
        return tuple(chip_of)
    graph = nx.Graph()
    graph.add_nodes_from(range(cores))
    for (a, b), w in sorted(traffic.items()):
        if graph.has_edge(a, b):
            graph[a][b]["weight"] += w
        else:
            graph.add_edge(a, b, weight=w)

    def cut(sub, side):
        return sum(d["weight"] for a, b, d in sub.edges(data=True) if (a in side) != (b in side))

    for k in range(chips - 1):
        a = {c for c in range(cores) if chip_of[c] == k}
        b = {c for c in range(cores) if chip_of[c] == k + 1}
        sub = graph.subgraph(sorted(a | b))
        if sub.number_of_edges() == 0:
            continue
        left, right = nx.algorithms.community.kernighan_lin_bisection(sub, (a, b), weight="weight", seed=0)
        if cut(sub, left) < cut(sub, a) and len(left) == len(a):
            for c in left:
                chip_of[c] = k
            for c in right:
                chip_of[c] = k + 1
    return tuple(chip_of)
