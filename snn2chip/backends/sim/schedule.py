"""Running a chip network on one batch, in one of two orders that give the same integers.

**step**: Lava's order. Every step, every population sums what its ops deliver (each reads its
source's output of ``lag`` steps earlier), updates and sends. Each population keeps its last
``1 + max lag`` outputs in a ring (all of them when recorded).

**layer**: population by population in data-flow order (strongly connected components of the
population graph, sources first). A population outside recurrent cycles runs a slice of its
samples at a time (:func:`~snn2chip.backends.sim.neurons.row_slices`): the slice gets its input
for all steps from each op at once (e.g. one convolution over steps x samples, in calls of at
most ``OP_ELEMENTS`` values), shifted by the op's lag, then its neurons run through the steps
(what batch-free sources send is summed once for all slices). A recurrent component runs step
by step with its inputs from outside precomputed. Outputs of every
step are kept until their last reader has run (to the end when recorded). Ops read only the
steps in which their source sent something; before its first input a population without bias
stays at rest and is not updated.

Populations whose activity cannot depend on the inputs (no input population upstream, e.g. the
always-on bias neuron) run for one sample and are broadcast over the batch.
Tensors are time-major, ``(steps, batch, *shape)``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import networkx as nx
import torch

from snn2chip.backends.sim import ops as ops_
from snn2chip.backends.sim.neurons import Neurons, output_dtype
from snn2chip.backends.sim.tally import Tally
from snn2chip.chip.ir import ChipNet

SCHEDULES = ("layer", "step")
OP_ELEMENTS = 2**20  # source and destination values one op call of the layer schedule works on at most


@dataclasses.dataclass(frozen=True)
class Structure:
    """The population graph of a network: ``components`` (sources first), the ``cyclic`` ones,
    ``batch_free`` populations, ``last_use`` (index of the last component reading each population),
    ``lag`` (the largest lag at which each population is read) and each population's ``size``."""

    components: list[tuple[str, ...]]
    cyclic: set[tuple[str, ...]]
    batch_free: set[str]
    last_use: dict[str, int]
    lag: dict[str, int]
    size: dict[str, int]


def structure(net: ChipNet) -> Structure:
    """The :class:`Structure` of ``net`` (no weights are touched)."""
    order = {p: i for i, p in enumerate(net.populations)}
    graph = nx.DiGraph()
    graph.add_nodes_from(net.populations)
    graph.add_edges_from((g.src, g.dst) for g in net.groups)
    dag = nx.condensation(graph)
    first = {c: min(order[p] for p in dag.nodes[c]["members"]) for c in dag}
    components = [tuple(sorted(dag.nodes[c]["members"], key=order.get))
                  for c in nx.lexicographical_topological_sort(dag, key=first.get)]
    cyclic = {c for c in components if len(c) > 1 or graph.has_edge(c[0], c[0])}
    index = {p: i for i, c in enumerate(components) for p in c}
    last_use, lag = dict(index), dict.fromkeys(net.populations, 0)
    for g in net.groups:
        last_use[g.src] = max(last_use[g.src], index[g.dst])
        lag[g.src] = max(lag[g.src], 1 + (int(g.delays.max()) if g.delays is not None and g.delays.size else 0))
    inputs = [p for p, pop in net.populations.items() if pop.kind == "input"]
    tied = set(inputs).union(*(nx.descendants(graph, p) for p in inputs))
    sizes = {p: pop.size for p, pop in net.populations.items()}
    return Structure(components, cyclic, set(net.populations) - tied, last_use, lag, sizes)


class Plan:
    """A network ready to run: its populations, :class:`Structure` and ops by destination
    (``into``). It keeps no reference to the network itself (plans are cached per network)."""

    def __init__(self, net: ChipNet, known: Structure | None = None):
        self.populations, self.structure = net.populations, known or structure(net)
        self.ops = ops_.build(net, self.structure.components, self.structure.cyclic)
        self.into: dict[str, list[ops_.Op]] = {p: [] for p in net.populations}
        for op in self.ops:
            self.into[op.dst].append(op)

    def batch(self, name: str, batch: int) -> int:
        return 1 if name in self.structure.batch_free else batch

    def neurons(self, batch: int, steps: int, probe: list[str]) -> dict[str, Neurons]:
        return {p: Neurons(pop, self.batch(p, batch), steps, p in probe)
                for p, pop in self.populations.items() if pop.kind != "input"}


def run(plan: Plan, payloads: dict[str, torch.Tensor], steps: int, record: list[str], probe: list[str],
        schedule: str, tally: Tally | None = None, windows: dict[str, tuple[int, int]] | None = None
        ) -> dict[str, torch.Tensor]:
    """Records ``(steps, batch or 1, *shape)`` of ``record`` and ``NAME.u``/``NAME.v`` of ``probe``
    from input ``payloads`` ``(steps, batch, *shape)``; every population's output is added to
    ``tally``. A record in ``windows`` holds only those steps (the layer schedule drops the others
    as soon as the population has been read)."""
    batch = next(iter(payloads.values())).shape[1]
    neurons = plan.neurons(batch, steps, probe)
    tally = tally or Tally({}, batch)
    windows = windows or {}
    if schedule == "layer":
        outputs = _layer(plan, payloads, neurons, steps, record, tally, windows)
    else:
        outputs = _step(plan, payloads, neurons, steps, record, tally)
        outputs.update({p: outputs[p][slice(*windows[p])] for p in record if p in windows})
    results = {p: outputs[p] for p in record}
    for p in probe:
        results[f"{p}.u"], results[f"{p}.v"] = neurons[p].probes["u"], neurons[p].probes["v"]
    return results


def _step_through(plan: Plan, members: tuple[str, ...], neurons: dict[str, Neurons], history: dict[str, torch.Tensor],
                  steps: int, inside: set[str] | None = None, outside: dict[str, torch.Tensor] | None = None,
                  tally: Tally | None = None) -> None:
    """Run ``members`` step by step; ``history[p][t % len]`` holds p's output of step t. Only ops
    from ``inside`` (default: all) are applied; ``outside`` holds the other inputs, every step.
    Each step's outputs are added to ``tally`` when given."""
    for t in range(steps):
        for p in members:
            a_in = outside[p][t] if outside is not None else neurons[p].zero
            for op in plan.into[p]:
                if t >= op.lag and (inside is None or op.src in inside):
                    source = history[op.src]
                    a_in = a_in + op(source[(t - op.lag) % len(source)])  # int32, wrapping as Lava's summed ports
            history[p][t % len(history[p])] = out = neurons[p].step(t, a_in)
            if tally is not None:
                tally.add(p, out.unsqueeze(0))


def _step(plan: Plan, payloads, neurons, steps: int, record: list[str], tally: Tally) -> dict[str, torch.Tensor]:
    batch = next(iter(payloads.values())).shape[1]
    history = {}
    for p, pop in plan.populations.items():
        depth = steps if p in record else plan.structure.lag[p] + 1  # + 1: read after this step's update
        history[p] = payloads[p] if pop.kind == "input" else torch.zeros(
            (depth, plan.batch(p, batch), *pop.shape), dtype=output_dtype(pop))
    for p in payloads:
        tally.add(p, payloads[p])
    _step_through(plan, tuple(p for p in plan.populations if p not in payloads), neurons, history, steps, tally=tally)
    return history


def _span(out: torch.Tensor) -> tuple[int, int]:
    """The first and one past the last step in which ``out`` holds something non-zero."""
    flat = (out.view(torch.uint8) if out.dtype == torch.bool else out).flatten(1)
    if not flat.shape[1]:
        return 0, 0
    active = flat.amax(1) != 0  # amax, amin: much faster than any()
    steps = torch.nonzero(active if out.dtype == torch.bool else active | (flat.amin(1) != 0)).flatten()
    return (int(steps[0]), int(steps[-1]) + 1) if len(steps) else (0, 0)


def _reads(ops: list[ops_.Op], spans: dict[str, tuple[int, int]], steps: int) -> list[tuple[ops_.Op, int, int]]:
    """``(op, first, end)``: each op reads the steps ``first`` to ``end`` of its source, those in
    which it sent something and whose values arrive by ``steps``."""
    reads = [(op, first, min(end, steps - op.lag)) for op in ops for first, end in [spans[op.src]]]
    return [(op, first, end) for op, first, end in reads if first < end]


def _sum(reads, outputs: dict[str, torch.Tensor], shape: tuple[int, ...], steps: int, start: int,
         rows: slice) -> torch.Tensor | None:
    """The int32 sum of ``reads`` (of sources of one batch) in steps ``start`` to ``steps``, ``(steps
    - start, samples, *shape)``, for the samples ``rows``; None without reads. Ops run on at most
    ``OP_ELEMENTS`` values of source and destination at a time."""
    acc = None
    for op, first, end in reads:
        source = outputs[op.src][:, rows]
        copy = acc is None and first + op.lag == start and end + op.lag == steps  # a first op writing every step
        if acc is None:
            acc = (torch.empty if copy else torch.zeros)((steps - start, source.shape[1], *shape), dtype=torch.int32)
        write = torch.Tensor.copy_ if copy else torch.Tensor.add_  # add_: int32, wrapping as Lava's summed ports
        count = max(1, OP_ELEMENTS // (source[0].numel() + acc[0].numel()))
        for a in range(first, end, count):
            b = min(a + count, end)
            write(acc[a + op.lag - start : b + op.lag - start], op(source[a:b].flatten(0, 1)).view(b - a, -1, *shape))
    return acc


def _inputs(plan: Plan, p: str, reads, outputs, steps: int, start: int, batch: int) -> Callable[[slice], torch.Tensor]:
    """The summed input of population ``p`` from ``reads`` in steps ``start`` to ``steps``: a
    function of a slice of its samples, giving a new ``(steps - start, samples, *shape)`` int32
    tensor. What batch-free sources send is summed once."""
    shape, free = plan.populations[p].shape, plan.structure.batch_free
    fixed = _sum([r for r in reads if r[0].src in free], outputs, shape, steps, start, slice(None))
    tied = [r for r in reads if r[0].src not in free]

    def of(rows: slice) -> torch.Tensor:
        total = _sum(tied, outputs, shape, steps, start, rows)
        if total is not None:
            return total if fixed is None else total.add_(fixed)  # int32, wrapping
        size = (steps - start, len(range(*rows.indices(plan.batch(p, batch)))), *shape)
        if fixed is None:
            return torch.zeros(size, dtype=torch.int32)
        return fixed.expand(size).clone(memory_format=torch.contiguous_format)

    return of


def _layer(plan: Plan, payloads, neurons, steps: int, record: list[str], tally: Tally,
           windows: dict[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    batch, s = next(iter(payloads.values())).shape[1], plan.structure
    outputs, spans = {}, {}
    for i, comp in enumerate(s.components):
        if comp in s.cyclic:
            _cycle(plan, comp, neurons, outputs, spans, steps, batch)
        elif comp[0] in payloads:
            outputs[comp[0]] = payloads[comp[0]]
        else:
            p = comp[0]
            reads = _reads(plan.into[p], spans, steps)
            start = 0 if neurons[p].biased else min((first + op.lag for op, first, _ in reads), default=steps)
            outputs[p] = neurons[p].run(_inputs(plan, p, reads, outputs, steps, start, batch), start)
        spans.update({p: _span(outputs[p]) for p in comp})
        for p in comp:
            tally.add(p, outputs[p][slice(*spans[p])])  # outside its span it sends nothing
        for src in {op.src for p in comp for op in plan.into[p]} | set(comp):
            if s.last_use[src] == i and src not in record:
                del outputs[src]
            elif s.last_use[src] == i and src in windows:
                first, stop = windows[src]
                outputs[src] = outputs[src][first:stop].clone()
    return outputs


def _cycle(plan: Plan, comp: tuple[str, ...], neurons, outputs, spans, steps: int, batch: int) -> None:
    """A recurrent component: outside inputs for every step at once, then step by step."""
    inside = set(comp)
    outside = {p: _inputs(plan, p, _reads([op for op in plan.into[p] if op.src not in inside], spans, steps),
                          outputs, steps, 0, batch)(slice(None)) for p in comp}
    for p in comp:
        pop = plan.populations[p]
        outputs[p] = torch.zeros((steps, plan.batch(p, batch), *pop.shape), dtype=output_dtype(pop))
    _step_through(plan, comp, neurons, outputs, steps, inside, outside)
