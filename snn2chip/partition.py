"""Partitioning: populations -> core-sized tiles -> cores -> chips, with lower bounds.

Every population except inputs (injected by the host) is viewed as ``(C, H, W)`` (``(N,)`` as
``(N, 1, 1)``) and cut into **tiles**: a channel range x a block of rows x a block of columns,
one block size per population. A tile's demand per resource (:data:`RESOURCES`, capacities from
the :class:`~snn2chip.targets.Target`):

- ``neurons``: its neurons;
- ``memory_bits``: per incoming synapse group, dense/sparse: stored synapses x ``synapse_bits``;
  conv with shared kernels: the non-zero kernel entries of the tile's channels x
  ``kernel_entry_bits`` (once per tile), else its connections x ``synapse_bits`` (padding
  ignored: an upper bound);
- ``fan_in_axons``: per source population, the distinct source neurons its synapses read (for a
  conv: the groups' input channels x the rows and columns of the receptive field);
- ``fan_out_axons``: per neuron, the number of tiles it sends to (an upper bound of the cores).

A population's block size is the one with the fewest tiles whose upper bounds of neurons, memory
and fan-in fit a core (candidates ``ceil(n/k)`` per axis; ties: fewer routed axons, then wider
channel blocks). Tiles whose fan-out exceeds the limit make their population re-tile with fewer
neurons per tile. Tiles are packed onto cores first-fit in network order (a tile goes to the
first core where every resource still fits, so small layers share cores), cores onto chips in order, then neighbouring
chips swap cores by Kernighan-Lin bisection (networkx, fixed seed) to cut inter-chip traffic.
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

from snn2chip.chip import ChipNet, SynapseGroup
from snn2chip.errors import ModelError
from snn2chip.targets import Target

RESOURCES = ("neurons", "memory_bits", "fan_in_axons", "fan_out_axons")
Box = tuple[int, int, int, int, int, int]  # c0, c1, h0, h1, w0, w1 in the (C, H, W) view


def view(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The ``(C, H, W)`` view of a population shape: 3-D as is, else ``(shape[0], rest, 1)``."""
    if len(shape) == 3:
        return tuple(int(s) for s in shape)
    return int(shape[0]), int(np.prod(shape[1:], dtype=np.int64)), 1


def _size(box: Box) -> int:
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

    def count_in(self, boxes: np.ndarray, labels) -> np.ndarray:
        """Neurons of the reach inside each source tile (``boxes`` (T, 6)); ``labels()`` gives
        the source's tile index per neuron (needed for flat reaches only)."""
        if self.flat is not None:
            return np.bincount(labels()[self.flat], minlength=len(boxes))
        ch = np.clip(np.minimum(self.channels[1], boxes[:, 1]) - np.maximum(self.channels[0], boxes[:, 0]), 0, None)
        rows = np.searchsorted(self.rows, boxes[:, 3]) - np.searchsorted(self.rows, boxes[:, 2])
        cols = np.searchsorted(self.cols, boxes[:, 5]) - np.searchsorted(self.cols, boxes[:, 4])
        return ch * rows * cols


def _union(a: Reach, b: Reach, shape) -> Reach:
    return a if a.same(b) else Reach(flat=np.union1d(a.indices(shape), b.indices(shape)))


def _taps(lo: int, hi: int, stride: int, pad: int, dil: int, k: int, n: int) -> np.ndarray:
    """Input positions read by outputs ``lo..hi-1`` of a convolution axis of input size ``n``."""
    pos = (np.arange(lo, hi)[:, None] * stride - pad + np.arange(k)[None] * dil).ravel()
    return np.unique(pos[(pos >= 0) & (pos < n)])


class _Group:
    """A synapse group's demands on destination tiles: exact per box, and upper bounds per block size."""

    def __init__(self, g: SynapseGroup, net: ChipNet, target: Target):
        self.g = g
        self.src_view = view(net.populations[g.src].shape)
        self.dst_view = view(net.populations[g.dst].shape)
        nz = np.asarray(g.weights) != 0
        if g.kind == "conv":
            self.nnz = nz.reshape(nz.shape[0], -1).sum(1)  # per output channel
            self.cum = np.concatenate([[0], np.cumsum(self.nnz)])
            self.key = (g.src, "conv", g.stride, g.padding, g.dilation, g.groups, g.weights.shape)
        elif g.kind == "dense":
            self.nz = nz
            self.row_nnz = nz.sum(1)
            self.key = (g.src, g.name)
        else:
            keep = nz.reshape(-1)
            self.rows, self.cols = np.asarray(g.rows)[keep], np.asarray(g.cols)[keep]
            self.row_nnz = np.bincount(self.rows, minlength=int(np.prod(self.dst_view)))
            self.key = (g.src, g.name)
        self.shared = target.shared_conv_kernels
        self.synapse_bits, self.kernel_bits = target.synapse_bits, target.kernel_entry_bits

    def exact(self, boxes: list[Box], labels) -> list[tuple[int, Reach]]:
        """Per destination box: memory bits and the reach in the source."""
        g = self.g
        if g.kind == "conv":
            cout, cin_g, kh, kw = g.weights.shape
            per_out = cout // g.groups
            _, hi, wi = self.src_view
            result = []
            for c0, c1, h0, h1, w0, w1 in boxes:
                kernel = int(self.cum[c1] - self.cum[c0])
                memory = kernel * self.kernel_bits if self.shared else kernel * (h1 - h0) * (w1 - w0) * self.synapse_bits
                reach = Reach((c0 // per_out * cin_g, ((c1 - 1) // per_out + 1) * cin_g),
                              _taps(h0, h1, g.stride[0], g.padding[0], g.dilation[0], kh, hi),
                              _taps(w0, w1, g.stride[1], g.padding[1], g.dilation[1], kw, wi))
                result.append((memory, reach))
            return result
        if g.kind == "dense":
            index = np.arange(int(np.prod(self.dst_view))).reshape(self.dst_view)
            result = []
            for c0, c1, h0, h1, w0, w1 in boxes:
                rows = self.nz[index[c0:c1, h0:h1, w0:w1].ravel()]
                result.append((int(rows.sum()) * self.synapse_bits, Reach(flat=np.flatnonzero(rows.any(0)))))
            return result
        tile = labels()[self.rows]
        order = np.argsort(tile, kind="stable")
        bounds = np.searchsorted(tile[order], np.arange(len(boxes) + 1))
        return [(int(bounds[i + 1] - bounds[i]) * self.synapse_bits, Reach(flat=np.unique(self.cols[order[bounds[i]:bounds[i + 1]]])))
                for i in range(len(boxes))]

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


def _choose_block(pop: str, shape, groups: list[_Group], cap: dict, neuron_limit: int) -> tuple[int, int, int]:
    """The block size with the fewest tiles whose bounds fit (see module docstring)."""
    c, h, w = shape
    cb, hb, wb = (a.ravel() for a in np.meshgrid(_blocks(c), _blocks(h), _blocks(w), indexing="ij"))
    memory = np.zeros(cb.shape, dtype=np.int64)
    fan_in: dict = {}
    for grp in groups:
        m, f = grp.bounds(cb, hb, wb)
        memory = memory + m
        fan_in[grp.key] = np.maximum(fan_in.get(grp.key, 0), f)  # same key: same geometry, same reach
    fan = sum(fan_in.values(), np.zeros(cb.shape, dtype=np.int64))
    ok = (cb * hb * wb <= neuron_limit) & (memory <= cap["memory_bits"]) & (fan <= cap["fan_in_axons"])
    if not ok.any():
        one = {"neurons": 1, "memory_bits": int(memory[0]), "fan_in_axons": int(fan[0])}
        worst = max(one, key=lambda r: one[r] / cap[r])
        raise ModelError(f"one neuron needs {one[worst]:,} {worst.replace('_', ' ')}; a core has {cap[worst]:,}",
                         node=pop)
    count = -(-c // cb) * -(-h // hb) * -(-w // wb)
    order = np.lexsort((-wb, -hb, -cb, fan * count, count))
    best = order[np.flatnonzero(ok[order])[0]]
    return int(cb[best]), int(hb[best]), int(wb[best])


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
        volume = {r: math.ceil(sum(d[r] for d in self.demand.values()) / cap[r]) for r in RESOURCES}
        layer = {r: sum(math.ceil(d[r] / cap[r]) for d in self.demand.values()) for r in RESOURCES}
        return {"volume": {**volume, "cores": max(volume.values())},
                "one_layer_per_core": {**layer, "cores": sum(max(math.ceil(d[r] / cap[r]) for r in RESOURCES)
                                                              for d in self.demand.values())}}

    def summary(self) -> dict:
        """The report entry (JSON-ready)."""
        bounds = self.bounds()
        usage = self.core_usage()
        cap = np.array([self.target.capacity[r] for r in RESOURCES])
        inter_chip = sum(w for (a, b), w in self.traffic.items() if self.chip_of[a] != self.chip_of[b])
        return {
            "target": self.target.name,
            "system": self.system,
            "system_chips": self.target.chips(self.system),
            "chips_used": self.chips,
            "cores": self.cores,
            "tiles": len(self.tiles),
            "cores_to_bound_ratio": self.cores / bounds["volume"]["cores"],
            "cores_to_layer_bound_ratio": self.cores / bounds["one_layer_per_core"]["cores"],
            "bounds": bounds,
            "traffic": {"weighting": self.weighting, "inter_core": float(sum(self.traffic.values())),
                        "inter_chip": float(inter_chip), "from_inputs": float(self.input_traffic)},
            "utilisation_mean": {r: float((usage[:, i] / cap[i]).mean()) for i, r in enumerate(RESOURCES)},
            "core_usage": {r: usage[:, i].tolist() for i, r in enumerate(RESOURCES)},
            "capacity": self.target.capacity,
            "chip_of_core": list(self.chip_of),
            "layers": [{"population": p, **entry} for p, entry in self.layers.items()],
        }


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


def _rate(pop: str, rates: dict | None, default: float) -> float:
    """Firing rate of ``pop`` (a delay line ``X@k`` fires as ``X``), else ``default``."""
    if rates is None:
        return 1.0
    return float(rates.get(pop, rates.get(pop.split("@")[0], default)))


def partition(net: ChipNet, target: Target, system: str | None = None, rates: dict | None = None) -> Partition:
    """Tile, pack and place ``net`` on ``target``; ``system`` None picks the smallest that fits.

    ``rates``: measured spikes per neuron per step per population (others: their mean).
    Raises :class:`ModelError` when a feature, a neuron or the whole network does not fit.
    """
    check_capabilities(net, target)
    cap = target.capacity
    placed = [p for p, pop in net.populations.items() if pop.kind != "input"]
    views = {p: view(pop.shape) for p, pop in net.populations.items()}
    incoming = {p: [] for p in placed}
    for g in net.groups:
        incoming[g.dst].append(_Group(g, net, target))
    limit = {p: cap["neurons"] for p in placed}
    boxes: dict[str, list[Box]] = {}
    arrays: dict[str, np.ndarray] = {}  # boxes as (T, 6) arrays
    labels_cache: dict[str, np.ndarray] = {}

    def labels(pop: str):
        def get():
            if pop not in labels_cache:
                lab = np.empty(views[pop], dtype=np.int32)
                for i, (c0, c1, h0, h1, w0, w1) in enumerate(boxes[pop]):
                    lab[c0:c1, h0:h1, w0:w1] = i
                labels_cache[pop] = lab.ravel()
            return labels_cache[pop]
        return get

    def tile_population(p: str) -> tuple[list, list]:
        block = _choose_block(p, views[p], incoming[p], cap, limit[p])
        boxes[p] = _boxes(views[p], block)
        arrays[p] = np.array(boxes[p], dtype=np.int64)
        labels_cache.pop(p, None)
        return block, demands(p, boxes[p])

    def demands(p: str, bxs: list[Box]) -> list[tuple[int, dict]]:
        """Per box: memory bits and reach per source population."""
        memory = [0] * len(bxs)
        reach: list[dict] = [{} for _ in bxs]
        for grp in incoming[p]:
            for i, (m, r) in enumerate(grp.exact(bxs, labels(p))):
                memory[i] += m
                src = grp.g.src
                reach[i][src] = _union(reach[i][src], r, views[src]) if src in reach[i] else r
        return list(zip(memory, reach))

    info = {p: tile_population(p) for p in placed}
    while True:  # fan-out: re-tile sources whose tiles send to too many tiles
        fan_out = {p: np.zeros(len(boxes[p]), dtype=np.int64) for p in placed}
        for p in placed:
            for _, reach in info[p][1]:
                for src, r in reach.items():
                    if src in fan_out:
                        fan_out[src] += r.count_in(arrays[src], labels(src))
        over = [p for p in placed if fan_out[p].max(initial=0) > cap["fan_out_axons"]]
        if not over:
            break
        for p in over:
            sizes = np.array([_size(b) for b in boxes[p]])
            per_neuron = float((fan_out[p] / sizes).max())
            if max(sizes) == 1 or per_neuron > cap["fan_out_axons"]:
                raise ModelError(f"one neuron sends to {math.ceil(per_neuron):,} tiles; a core has "
                                 f"{cap['fan_out_axons']:,} fan-out axons", node=p)
            limit[p] = min(limit[p], int(max(sizes)) - 1, int(cap["fan_out_axons"] / per_neuron))
            info[p] = tile_population(p)
    # untiled demands (bounds)
    demand = {p: {"neurons": net.populations[p].size} for p in placed}
    for p in placed:
        (memory, reach), = demands(p, [(0, views[p][0], 0, views[p][1], 0, views[p][2])])
        demand[p].update(memory_bits=memory, fan_in_axons=sum(r.size for r in reach.values()), fan_out_axons=0)
        for src, r in reach.items():
            if src in demand:
                demand[src]["fan_out_axons"] += r.size
    # tiles and next-fit packing in network order
    tiles, layers = [], {}
    limits = np.array([cap[r] for r in RESOURCES])
    load = np.zeros((0, len(RESOURCES)), dtype=np.int64)  # per core
    index = {}
    for p in placed:
        block, dem = info[p]
        used = set()
        binding = np.zeros(len(RESOURCES))
        for i, (box, (memory, reach)) in enumerate(zip(boxes[p], dem)):
            d = np.array([_size(box), memory, sum(r.size for r in reach.values()), fan_out[p][i]], dtype=np.int64)
            binding = np.maximum(binding, d / limits)
            free = np.flatnonzero(np.all(load + d <= limits, axis=1))
            core = int(free[0]) if free.size else len(load)
            if not free.size:
                load = np.vstack([load, np.zeros(len(RESOURCES), dtype=np.int64)])
            load[core] += d
            used.add(core)
            index[(p, i)] = len(tiles)
            tiles.append(Tile(p, box, tuple(int(x) for x in d), core))
        layers[p] = {"block": list(block), "tiles": len(boxes[p]), "cores": len(used),
                     "binding": RESOURCES[int(binding.argmax())],
                     "bound": max(math.ceil(demand[p][r] / cap[r]) for r in RESOURCES),
                     **{r: int(demand[p][r]) for r in RESOURCES}}
    cores = len(load)
    # traffic between cores
    measured = [v for v in (rates or {}).values()]
    default = float(np.mean(measured)) if measured else 1.0
    traffic: dict[tuple[int, int], float] = {}
    input_traffic = 0.0
    for p in placed:
        for i, (_, reach) in enumerate(info[p][1]):
            dst_core = tiles[index[(p, i)]].core
            for src, r in reach.items():
                rate = _rate(src, rates, default)
                if src not in boxes:
                    input_traffic += r.size * rate
                    continue
                counts = r.count_in(arrays[src], labels(src))
                for j in np.flatnonzero(counts):
                    src_core = tiles[index[(src, int(j))]].core
                    if src_core != dst_core:
                        traffic[(src_core, dst_core)] = traffic.get((src_core, dst_core), 0.0) + float(counts[j]) * rate
    system = _system(target, system, cores, tiles, cap)
    chip_of = place(cores, target.cores_per_chip, traffic)
    return Partition(target, system, tuple(tiles), chip_of, traffic, input_traffic, layers, demand,
                     "firing rates" if rates else "axons")


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
