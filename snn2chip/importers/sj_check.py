"""A spikingjelly network against its NIR graph on the same inputs, layer by layer and step by step.

:func:`compare` runs spikingjelly's own ``forward`` (single- or multi-step, with forward hooks on
the modules whose outputs NIR nodes compute) and snn2chip's float reference on the graph, and
reports, per spiking node, how many spikes differ, and for real-valued nodes with a counterpart
(MS-ResNet's block sums, the head) the largest difference. A NIR node's counterpart is the module
of the same path; ``<block>.connect`` and ``<block>.stream`` are the block's output.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from snn2chip.frontend import neurons
from snn2chip.frontend.graph import Graph, make_graph
from snn2chip.frontend.read import load
from snn2chip.frontend.reference import run
from snn2chip.importers.spikingjelly import mode_of

SUFFIXES = (".connect", ".stream")  # nodes computing their block's output


@dataclasses.dataclass(frozen=True)
class NodeComparison:
    """One NIR node against its module: ``values`` compared (samples × steps × neurons); for a
    spiking node ``spikes`` (spikingjelly's) and ``mismatches``; for any node ``max_difference``."""

    node: str
    module: str
    spiking: bool
    values: int
    spikes: int
    mismatches: int
    max_difference: float


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Every compared node, the head (the module feeding the NIR output) among them."""

    nodes: tuple[NodeComparison, ...]
    head: str | None

    @property
    def spiking(self) -> tuple[NodeComparison, ...]:
        return tuple(n for n in self.nodes if n.spiking)

    @property
    def spikes_equal(self) -> bool:
        return all(n.mismatches == 0 for n in self.spiking)

    @property
    def head_difference(self) -> float | None:
        return next((n.max_difference for n in self.nodes if n.node == self.head), None)


def as_graph(graph: nir.NIRGraph | Graph | str | Path) -> Graph:
    """snn2chip's :class:`Graph` of a NIR file, an in-memory ``nir.NIRGraph`` or a Graph."""
    if isinstance(graph, Graph):
        return graph
    if isinstance(graph, nir.NIRGraph):
        return make_graph(graph.nodes, list(graph.edges), metadata=graph.metadata)
    return load(graph)


def counterparts(graph: Graph, model: nn.Module) -> dict[str, str]:
    """NIR node -> module path computing the same tensor (spiking nodes, block outputs, the head)."""
    modules = dict(model.named_modules())
    head = graph.predecessors("output") if "output" in graph.nodes else []
    pairs = {}
    for name, node in graph.nodes.items():
        block = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), None)
        if name in modules and (neurons.spikes(node) or name in head):
            pairs[name] = name
        elif block is not None and block in modules:
            pairs[name] = block
    return pairs


def record_spikingjelly(model: nn.Module, x: torch.Tensor, modules: list[str], mode: str) -> dict[str, np.ndarray]:
    """Outputs ``(N, T, ...)`` of ``modules`` while spikingjelly runs ``x`` ``(T, N, ...)``: step by
    step in single-step mode, in one call in multi-step mode; the network is reset before and after."""
    from spikingjelly.activation_based import functional

    outputs: dict[str, list[torch.Tensor]] = {m: [] for m in modules}
    hooks = [model.get_submodule(m).register_forward_hook(
        lambda _m, _i, out, m=m: outputs[m].append(out.detach().clone())) for m in modules]
    functional.reset_net(model)
    try:
        with torch.no_grad():
            if mode == "m":
                model(x)
            else:
                for step in x:
                    model(step)
    finally:
        for hook in hooks:
            hook.remove()
        functional.reset_net(model)
    # multi-step: one call with (T, N, ...); single-step (or per-step children): one call per step
    return {m: (v[0].transpose(0, 1) if len(v) == 1 and mode == "m" else torch.stack(v, dim=1)).cpu().numpy()
            for m, v in outputs.items()}


def compare(model: nn.Module, graph: nir.NIRGraph | Graph | str | Path, x) -> Comparison:
    """Run ``model`` (spikingjelly, evaluation mode) and the float reference on ``graph`` with inputs
    ``x``, a sequence ``(T, N, *sample shape)`` (spikingjelly's multi-step layout, also for
    single-step networks: step ``t`` is ``x[t]``), and compare node by node (see the module doc).
    Use ``N >= 2``: PyTorch's CPU convolution rounds differently for a batch of one."""
    g = as_graph(graph)
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    mode, _ = mode_of(model)
    pairs = counterparts(g, model)
    theirs = record_spikingjelly(model, x, sorted(set(pairs.values())), mode)
    ours = run(g, np.swapaxes(x.numpy(), 0, 1), record=list(pairs))
    head = next(iter(g.predecessors("output")), None) if "output" in g.nodes else None
    rows = []
    for node, module in pairs.items():
        a, b = ours[node], theirs[module].reshape(ours[node].shape)
        spiking = neurons.spikes(g.nodes[node])
        rows.append(NodeComparison(node, module, spiking, int(a.size), int(b.sum()) if spiking else 0,
                                   int(np.count_nonzero(a != b)) if spiking else 0,
                                   float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))))
    return Comparison(tuple(rows), head)
