"""The project's graph: NIR's own node objects, flattened, ordered and shaped.

:func:`make_graph` is the one constructor. Front end and passes give it nodes and edges; it
classifies recurrent edges, orders the nodes, infers every shape and rejects what is
malformed, so that every :class:`Graph` satisfies the invariants documented on the class.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import networkx as nx
import nir

from snn2chip.frontend import shapes
from snn2chip.errors import ModelError

Edge = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Graph:
    """A flat NIR graph (no subgraphs) ready for analysis and execution.

    Invariants:

    - ``nodes`` is ordered topologically over the forward edges (every edge not in ``recurrent``);
    - every edge endpoint is a key of ``nodes``; there are no duplicate edges;
    - ``recurrent`` edges close cycles: their destination reads the source's value of the
      previous time step (docs/architecture.md §2);
    - ``in_shapes[n]`` / ``out_shapes[n]`` are the shapes (without batch axis) at the input and
      output of node ``n``; all edges into a node carry the same shape (joins are summed);
    - every node is reachable from an Input node.
    """

    nodes: Mapping[str, nir.NIRNode]
    edges: tuple[Edge, ...]
    recurrent: frozenset[Edge]
    in_shapes: Mapping[str, shapes.Shape | None]
    out_shapes: Mapping[str, shapes.Shape]
    metadata: Mapping = dataclasses.field(default_factory=dict)
    source: str = "<memory>"

    @property
    def inputs(self) -> list[str]:
        """Names of the Input nodes, in order."""
        return [n for n, node in self.nodes.items() if isinstance(node, nir.Input)]

    @property
    def outputs(self) -> list[str]:
        """Names of the Output nodes, in order."""
        return [n for n, node in self.nodes.items() if isinstance(node, nir.Output)]

    def predecessors(self, name: str) -> list[str]:
        """Sources of the edges into ``name``, in edge order (recurrent ones included)."""
        return [src for src, dst in self.edges if dst == name]

    def successors(self, name: str) -> list[str]:
        """Destinations of the edges out of ``name``, in edge order."""
        return [dst for src, dst in self.edges if src == name]

    @property
    def joins(self) -> dict[str, list[str]]:
        """Nodes with several incoming edges (residual merges), with their sources."""
        result = {}
        for name in self.nodes:
            preds = self.predecessors(name)
            if len(preds) > 1:
                result[name] = preds
        return result

    def to_networkx(self) -> nx.DiGraph:
        """A networkx view: node attributes ``node``, ``type``, ``shape``; edge attribute ``recurrent``."""
        g = nx.DiGraph()
        for name, node in self.nodes.items():
            g.add_node(name, node=node, type=type(node).__name__, shape=self.out_shapes[name])
        for edge in self.edges:
            g.add_edge(*edge, recurrent=edge in self.recurrent)
        return g

    def error(self, problem: str, node: str | None = None) -> ModelError:
        """A :class:`ModelError` about this graph's file."""
        return ModelError(problem, file=self.source, node=node)


def _classify(nodes: Mapping[str, nir.NIRNode], edges: list[Edge], fail) -> tuple[list[str], frozenset[Edge]]:
    """Depth-first search from the Input nodes: (topological order, recurrent edges).

    An edge to a node still on the search stack closes a cycle and is recurrent. The order
    is a topological sort of the remaining edges that follows discovery order, so that it is
    deterministic and reads like the data flow.
    """
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for src, dst in edges:
        succ[src].append(dst)
    discovered: dict[str, int] = {}
    on_stack: set[str] = set()
    recurrent = set()
    for root in (n for n, node in nodes.items() if isinstance(node, nir.Input)):
        if root in discovered:
            continue
        discovered[root] = len(discovered)
        on_stack.add(root)
        stack = [(root, iter(succ[root]))]
        while stack:
            name, children = stack[-1]
            child = next(children, None)
            if child is None:
                on_stack.discard(name)
                stack.pop()
            elif child in on_stack:
                recurrent.add((name, child))
            elif child not in discovered:
                discovered[child] = len(discovered)
                on_stack.add(child)
                stack.append((child, iter(succ[child])))
    for name in nodes:
        if name not in discovered:
            fail("is not reachable from any Input node (every node needs a path from the network input)", name)
    forward = nx.DiGraph()
    forward.add_nodes_from(nodes)
    forward.add_edges_from(e for e in edges if e not in recurrent)
    order = list(nx.lexicographical_topological_sort(forward, key=discovered.__getitem__))
    return order, frozenset(recurrent)


def _check_structure(nodes: Mapping[str, nir.NIRNode], edges: list[Edge], fail) -> None:
    """Edges between existing nodes, none repeated, none into an Input or out of an Output; no
    nested NIRGraph; at least one Input and one Output node."""
    seen = set()
    for src, dst in edges:
        for end in (src, dst):
            if end not in nodes:
                fail(f"edge ({src} -> {dst}) refers to node '{end}', which does not exist")
        if (src, dst) in seen:
            fail(f"duplicate edge ({src} -> {dst}): NIR sums joins, so a repeated edge is ambiguous")
        seen.add((src, dst))
        if isinstance(nodes[dst], nir.Input):
            fail(f"edge ({src} -> {dst}) leads into an Input node", dst)
        if isinstance(nodes[src], nir.Output):
            fail(f"edge ({src} -> {dst}) leaves an Output node", src)
    for name, node in nodes.items():
        if isinstance(node, nir.NIRGraph):
            fail("nested NIRGraph: flatten subgraphs before building a Graph", name)
    if not any(isinstance(n, nir.Input) for n in nodes.values()):
        fail("the graph has no Input node")
    if not any(isinstance(n, nir.Output) for n in nodes.values()):
        fail("the graph has no Output node")


def _infer_shapes(nodes: Mapping[str, nir.NIRNode], edges: list[Edge], order: list[str], recurrent: frozenset[Edge],
                  fail) -> tuple[dict[str, shapes.Shape | None], dict[str, shapes.Shape]]:
    """Input and output shape of every node, in ``order``; joins and recurrent edges must
    carry the shape their destination receives."""
    in_shapes: dict[str, shapes.Shape | None] = {}
    out_shapes: dict[str, shapes.Shape] = {}
    for name in order:
        preds = [src for src, dst in edges if dst == name and (src, dst) not in recurrent]
        arriving = {src: out_shapes[src] for src in preds}
        if len(set(arriving.values())) > 1:
            listed = ", ".join(f"{src} {shapes.fmt(s)}" for src, s in arriving.items())
            fail(f"inputs to this join have different shapes: {listed}", name)
        in_shape = next(iter(arriving.values()), None)
        try:
            out_shapes[name] = shapes.output_shape(nodes[name], in_shape)
        except shapes.ShapeError as e:
            fail(f"{type(nodes[name]).__name__} {e}", name)
        in_shapes[name] = in_shape if in_shape is not None else out_shapes[name]
    for src, dst in sorted(recurrent):
        if out_shapes[src] != in_shapes[dst]:
            fail(
                f"recurrent edge from '{src}' carries {shapes.fmt(out_shapes[src])} "
                f"but the node receives {shapes.fmt(in_shapes[dst])}",
                dst,
            )
    return in_shapes, out_shapes


def make_graph(
    nodes: Mapping[str, nir.NIRNode],
    edges: list[Edge] | tuple[Edge, ...],
    metadata: Mapping | None = None,
    source: str = "<memory>",
) -> Graph:
    """Check structure and shapes of a flat NIR graph and build its :class:`Graph`.

    Raises :class:`ModelError` naming ``source`` and the offending node for: edges to missing
    nodes, duplicate edges, edges into Input or out of Output nodes, a missing Input or Output,
    unreachable nodes, nested NIRGraphs, and every shape mismatch (including joins whose inputs
    differ in shape).
    """

    def fail(problem: str, node: str | None = None):
        raise ModelError(problem, file=source, node=node)

    edges = [tuple(e) for e in edges]
    _check_structure(nodes, edges, fail)
    order, recurrent = _classify(nodes, edges, fail)
    in_shapes, out_shapes = _infer_shapes(nodes, edges, order, recurrent, fail)
    return Graph(
        nodes={name: nodes[name] for name in order},
        edges=tuple(edges),
        recurrent=recurrent,
        in_shapes=in_shapes,
        out_shapes=out_shapes,
        metadata=dict(metadata or {}),
        source=source,
    )
