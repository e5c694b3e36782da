"""Residual structure: find the joins of a graph and choose how each reaches the chip.

A join is a node with several forward inputs (NIR sums them). Kinds (docs/architecture.md §4):

- ``spike``: every addend is a spiking population (SEW ADD, plain Spiking ResNet, converted
  ResNets): the sum is an integer count of spikes;
- ``stream``: some addend is a real value (MS-ResNet's membrane shortcut, exported either as an
  identity Scale per block or flattened into many edges);
- ``logic``: the join is a Threshold node (SEW AND ``A + S > 1.5``, IAND ``S - A > 0.5``): it
  becomes a threshold neuron whatever the strategy.

Strategies (passes from graph to graph; the float meaning is unchanged):

- ``expand``: nothing to insert; lowering gives every addend its own synapse group
  (``conv(A + S) = conv(A) + conv(S)``), binary spikes only, fan-in grows with depth;
- ``relay``: :func:`insert_relays` puts a relay node (an identity ``Scale`` marked in its
  metadata) at every spike or stream join feeding stateless nodes, shared by joins with the same
  addends; on chip it is a graded relay that carries the sum once (Loihi 2 graded spikes).
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from snn2chip.frontend.graph import Graph, make_graph
from snn2chip.frontend.neurons import NEURONS, spikes

RELAY_KEY = "snn2chip_relay"
STRATEGIES = ("expand", "relay")


@dataclasses.dataclass(frozen=True)
class Join:
    node: str
    kind: str
    inputs: tuple[str, ...]


def is_relay(node: nir.NIRNode) -> bool:
    """Whether ``node`` is a relay inserted (or marked) by :func:`insert_relays`."""
    return isinstance(node, nir.Scale) and bool(node.metadata.get(RELAY_KEY))


def joins(graph: Graph) -> list[Join]:
    """Every join with its kind, in graph order."""
    result = []
    for name, node in graph.nodes.items():
        inputs = tuple(src for src in graph.predecessors(name) if (src, name) not in graph.recurrent)
        if len(inputs) < 2:
            continue
        if isinstance(node, nir.Threshold):
            kind = "logic"
        elif all(spikes(graph.nodes[src]) for src in inputs):
            kind = "spike"
        else:
            kind = "stream"
        result.append(Join(name, kind, inputs))
    return result


def _identity_stream(node: nir.NIRNode) -> bool:
    return isinstance(node, nir.Scale) and np.all(np.asarray(node.scale) == 1)


def insert_relays(graph: Graph) -> Graph:
    """The relay strategy: a relay node carries each spike/stream sum that feeds stateless nodes.

    An identity Scale that is itself a join (the MS stream node) is marked as the relay; a join at
    the input of another stateless node gets a new relay ``<first addend>.sum<k>``, shared by
    all joins with the same addends and built on the largest earlier relay whose addends it
    contains. Joins into neurons need no relay (the neuron sums), except stream joins whose
    addends nest with another join's (a flattened MS stream: block k's neuron sums the stem and
    every earlier block's conv), which then read the chained relay.
    """
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    shared: dict[frozenset[str], str] = {}
    candidates = [j for j in joins(graph) if j.kind != "logic" and not isinstance(graph.nodes[j.node], nir.Output)]
    keys = {frozenset(j.inputs) for j in candidates}
    for join in candidates:
        node = graph.nodes[join.node]
        key = frozenset(join.inputs)
        nested = any(key < other or other < key for other in keys)
        if isinstance(node, NEURONS) and not (join.kind == "stream" and nested):
            continue
        if _identity_stream(node):
            nodes[join.node] = nir.Scale(scale=np.asarray(node.scale), metadata={**node.metadata, RELAY_KEY: True})
            continue
        if key not in shared:
            shared[key] = relay = f"{join.inputs[0]}.sum{len(shared)}"
            nodes[relay] = nir.Scale(scale=np.ones(graph.in_shapes[join.node]), metadata={RELAY_KEY: True})
            # chain: the largest earlier sum whose addends are all here carries them (a flattened
            # SEW ADD stage: sum_k = sum_k-1 + A_k), so each relay reads O(1) sources, not O(k)
            base = max((k for k in shared if k < key), key=len, default=frozenset())
            sources = ([shared[base]] if base else []) + [src for src in join.inputs if src not in base]
            edges += [(src, relay) for src in sources]
        edges = [e for e in edges if not (e[1] == join.node and e[0] in join.inputs)]
        edges.append((shared[key], join.node))
    return make_graph(nodes, edges, graph.metadata, graph.source)


def apply(graph: Graph, strategy: str) -> Graph:
    """The graph for ``strategy`` ('expand' leaves it as it is)."""
    if strategy not in STRATEGIES:
        raise graph.error(f"unknown shortcut strategy '{strategy}' (known: {', '.join(STRATEGIES)})")
    return insert_relays(graph) if strategy == "relay" else graph
