"""Graded relays beyond the shortcut joins: where a map's output is better carried by a population.

Runs after :func:`snn2chip.passes.shortcuts.apply`, so the relays that strategy put at joins
already cut the stateless regions. A relay (an identity Scale marked by
:data:`shortcuts.RELAY_KEY`) goes after

- a Conv2d whose output reaches another Conv2d through stateless non-relay nodes, when that
  output is too large for the composed map to be lowered as a dense matrix (``size**2 >
  lower.MAX_DENSE``), unless the path is a chain :func:`lower.composable` makes one convolution
  (a padded convolution after another is not one convolution at the borders; an unpadded pool
  between them may be, as MS-ResNet-104's stem convolution before the average pool of its first
  downsampling shortcut);
- a pool that reaches an Affine/Linear when ``in size * out size > lower.MAX_DENSE``, or when
  the composed readout (``classifier outputs * pool input size`` weights, as
  :func:`lower._fc_as_conv` builds it) would not fit one core's synaptic memory (``core_weights``
  weights): a global average pool before a 1000-class classifier composes to ``1000 * C*7*7``
  weights, which take about as many cores in memory as its source layer takes again in fan-out
  (every source neuron reaches every readout core); relayed, the pool is a depthwise conv into
  ``C`` relay neurons, then a ``1000 x C`` dense map;
- a Conv2d whose output only reaches relay joins and waits at each of them (an MS-ResNet
  downsampling shortcut), when its output is smaller than the delay line of ``wait`` copies of
  its sources that alignment would otherwise build, and takes more of a core than the
  convolution's explicit synapses with delays would: the relay reads the convolution at once
  and the join reads the relay one-to-one, through synaptic delays.

The float meaning is unchanged (relays are identity Scales).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import nir
import numpy as np

from snn2chip.frontend.graph import Graph, make_graph
from snn2chip.passes import lower, shortcuts

if TYPE_CHECKING:
    from snn2chip.passes.context import Capabilities


def insert(graph: Graph, caps: Capabilities) -> Graph:
    """``graph`` with a relay after every map named in the module docstring, for a target of
    ``caps`` (the waits are measured once the relays of large regions are in: those add hops)."""
    graph = _relayed(graph, _chained(graph, caps.core_memory_bits // caps.weight_bits))
    return _relayed(graph, _waiting(graph, caps))


def _relayed(graph: Graph, after: list[str]) -> Graph:
    """``graph`` with a relay ``<name>.relay`` carrying the output of each node in ``after``.

    An average pool becomes a sum pool before its relay and a Scale ``<name>.mean`` (one over
    the window) after it: the relay then carries window sums, integers on spikes, exact at scale
    1, and the mean's small factor goes into the weights of the relay's consumers. (Relaying the
    mean itself needs a scale of about 254 * window to resolve the pool's weights, which leaves
    the next layer's weights, divided by that scale, below the smallest chip weight.)"""
    if not after:
        return graph
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for name in after:
        relay = carrier = f"{name}.relay"
        nodes[relay] = nir.Scale(scale=np.ones(graph.out_shapes[name]), metadata={shortcuts.RELAY_KEY: True})
        node = graph.nodes[name]
        if isinstance(node, nir.AvgPool2d):
            nodes[name] = nir.SumPool2d(kernel_size=node.kernel_size, stride=node.stride, padding=node.padding)
            carrier = f"{name}.mean"
            nodes[carrier] = nir.Scale(scale=np.full(graph.out_shapes[name], 1.0 / np.prod(node.kernel_size)))
            edges.append((relay, carrier))
        edges = [(carrier, b) if a == name else (a, b) for a, b in edges] + [(name, relay)]
    return make_graph(nodes, edges, graph.metadata, graph.source)


def _forward(graph: Graph) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Successors and predecessors of every node over the forward edges."""
    succ, pred = defaultdict(list), defaultdict(list)
    for a, b in graph.edges:
        if (a, b) not in graph.recurrent:
            succ[a].append(b)
            pred[b].append(a)
    return succ, pred


def _size(shape) -> int:
    return int(np.prod(shape))


def _chained(graph: Graph, core_weights: int) -> list[str]:
    """Convolutions and pools whose outputs reach the next map through too large a region."""
    succ, pred = _forward(graph)
    memo: dict[tuple, set[str]] = {}

    def open_node(name: str) -> bool:
        node = graph.nodes[name]
        return isinstance(node, lower.STATELESS) and not shortcuts.is_relay(node)

    def reached(name: str, kinds: tuple) -> set[str]:
        """The nodes of ``kinds`` that ``name``'s output reaches through stateless non-relay nodes."""
        if (name, kinds) not in memo:
            memo[name, kinds] = set().union(*({s} if isinstance(graph.nodes[s], kinds) else
                                              reached(s, kinds) if open_node(s) else set() for s in succ[name]))
        return memo[name, kinds]

    def large_readout(pool: str) -> bool:
        size_in = _size(graph.in_shapes[pool])
        fcs = reached(pool, (nir.Affine, nir.Linear))
        return bool(fcs) and (size_in * _size(graph.out_shapes[pool]) > lower.MAX_DENSE
                              or any(_size(graph.out_shapes[fc]) * size_in > core_weights for fc in fcs))

    def uncomposed(name: str, chain: tuple[str, ...]) -> bool:
        """Whether the conv at ``chain[0]`` reaches a Conv2d from ``name`` other than by a composable chain."""
        for s in succ[name]:
            if isinstance(graph.nodes[s], nir.Conv2d):
                if not lower.composable(graph, (*chain, s)):
                    return True
            elif open_node(s) and (len(pred[s]) > 1
                                   or not isinstance(graph.nodes[s], (nir.Scale, nir.SumPool2d, nir.AvgPool2d))):
                if reached(s, (nir.Conv2d,)):
                    return True
            elif open_node(s) and uncomposed(s, (*chain, s)):
                return True
        return False

    return [n for n, node in graph.nodes.items()
            if (isinstance(node, nir.Conv2d) and _size(graph.out_shapes[n]) ** 2 > lower.MAX_DENSE
                and uncomposed(n, (n,)))
            or (isinstance(node, (nir.SumPool2d, nir.AvgPool2d)) and large_readout(n))]


def levels(graph: Graph) -> dict[str, int]:
    """Per node the hop depth of the data at its output, as alignment counts it: 0 for an Input,
    one more than the deepest forward input for a population, the deepest forward input's for a
    stateless node."""
    _, pred = _forward(graph)
    level: dict[str, int] = {}
    for name, node in graph.nodes.items():
        deepest = max((level[p] for p in pred[name]), default=0)
        level[name] = 0 if isinstance(node, nir.Input) else deepest + lower.is_population(node)
    return level


def _waiting(graph: Graph, caps: Capabilities) -> list[str]:
    """Convolutions that only feed relay joins and wait at each, where a relay of their output is
    cheaper than both ways alignment would make them wait: the delay line of ``wait`` copies of
    their sources, and their explicit synapses with delays (``caps.synapses_cheaper``)."""
    succ, _ = _forward(graph)
    level = levels(graph)
    pops = lower.populations(graph)

    def through_scales(name: str, found: tuple[str, ...] = ()) -> tuple[str, ...] | None:
        """The populations ``name`` feeds through Scales, or None if it feeds anything else."""
        for s in succ[name]:
            node = graph.nodes[s]
            if lower.is_population(node):
                found = (*found, s)
            elif isinstance(node, nir.Scale):
                found = through_scales(s, found)
                if found is None:
                    return None
            else:
                return None
        return found

    chosen = []
    for name, node in graph.nodes.items():
        joins = through_scales(name) if isinstance(node, nir.Conv2d) else None
        if not joins or not all(shortcuts.is_relay(graph.nodes[j]) for j in joins):
            continue
        wait = min(level[j] - 1 for j in joins) - level[name]
        maps = [(lower.lower_path(graph, pops, src, j, chain), j) for j in set(joins)
                for src, chain, rec in lower.paths(graph, pops, j) if name in chain and not rec]
        if wait <= 0 or any(fg.kind != "conv" for fg, _ in maps):  # a dense map waits in synaptic delays
            continue
        line = wait * sum(_size(graph.out_shapes[src]) for src in {fg.src for fg, _ in maps})
        synapses = sum(lower.conv_synapse_bound(fg, graph.out_shapes[j]) for fg, j in maps)
        relay = _size(graph.out_shapes[name])
        if relay < line and not caps.synapses_cheaper(synapses, relay):
            chosen.append(name)
    return chosen
