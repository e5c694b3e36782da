"""NIR front end: read a ``.nir`` file, flatten subgraphs, validate, build a :class:`Graph`.

Nodes are built with NIR's own ``nir.dict2NIRNode`` (what ``nir.read`` does), one node at a
time so that an error names the node. Subgraphs are flattened: inner nodes keep their path
(``block1.lif``) and the subgraph's own Input/Output nodes are bypassed. An edge may name a
subgraph (meaning its single Input or Output) or a node inside it by dotted path.

Extension (documented in the README): ``metadata["reset"] = "subtract"`` on an IF, LIF or
CubaLIF node means reset by subtraction, ``v <- v - v_threshold``, instead of NIR's jump to
``v_reset``; it requires ``v_reset == 0``. ``"value"`` (the default) is NIR's own reset.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import nir
import numpy as np
from nir.serialization import hdf2dict

from snn2chip.errors import ModelError
from snn2chip.graph import Edge, Graph, make_graph
from snn2chip.neurons import RESETTING

#: NIR node types this version of the nir package defines (and snn2chip supports).
NIR_TYPES = tuple(
    name
    for name in nir.ir.__all__
    if isinstance(cls := getattr(nir, name, None), type) and issubclass(cls, nir.NIRNode) and cls is not nir.NIRNode
)
RESETS = ("value", "subtract")
TIME_CONSTANTS = ("tau", "tau_mem", "tau_syn")


def load(path: str | Path) -> Graph:
    """Read, flatten and validate the NIR file at ``path``.

    Raises :class:`ModelError` (file and node named) for anything the compiler cannot take.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise ModelError("no such file", file=file)
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise ModelError("not a NIR file: the HDF5 file has no 'node' group", file=file)
            tree = hdf2dict(f["node"])
    except OSError:
        raise ModelError("not a NIR file: it is not HDF5 (NIR files are HDF5 written by nir.write)", file=file) from None
    try:
        root = read_node(tree, "")
        if not isinstance(root, nir.NIRGraph):
            raise ModelError(f"the top-level node is a {type(root).__name__}, not a NIRGraph")
        nodes, edges = flatten(root)
        for name, node in nodes.items():
            check_parameters(name, node)
    except ModelError as e:
        raise e.in_file(file) from None
    return make_graph(nodes, edges, metadata=_plain(root.metadata), source=file)


def read_node(tree: dict, name: str) -> nir.NIRNode:
    """Build one NIR node (recursively for subgraphs) from its dictionary in the file."""
    node = name or None
    kind = tree.get("type")
    if kind is None:
        raise ModelError("not a NIR node: it has no 'type' entry", node=node)
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    if kind not in NIR_TYPES:
        raise ModelError(f"unknown node type '{kind}' (NIR {nir.version} defines {', '.join(NIR_TYPES)})", node=node)
    if kind == "NIRGraph":
        children = tree.get("nodes", {})
        raw_edges = np.asarray(tree.get("edges", np.empty((0, 2)))).reshape(-1, 2)
        return nir.NIRGraph(
            nodes={k: read_node(v, f"{name}.{k}" if name else k) for k, v in children.items()},
            edges=[tuple(e.decode() if isinstance(e, bytes) else str(e) for e in pair) for pair in raw_edges],
            metadata=_plain(tree.get("metadata", {})),
            type_check=False,
        )
    try:
        return nir.dict2NIRNode(dict(tree))
    except KeyError as e:
        raise ModelError(f"malformed {kind} node: missing field {e}", node=node) from None
    except TypeError as e:
        missing = re.search(r"missing \d+ required \w+ arguments?: (.*)", str(e))
        problem = f"missing field {missing.group(1)}" if missing else str(e)
        raise ModelError(f"malformed {kind} node: {problem}", node=node) from None
    except Exception as e:  # nir's constructors assert and raise freely on bad fields
        raise ModelError(f"malformed {kind} node: {e or type(e).__name__}", node=node) from None


def _plain(metadata) -> dict:
    """Metadata as plain Python values (bytes decoded, 0-d arrays unwrapped)."""
    result = {}
    for key, value in dict(metadata or {}).items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        result[key] = value
    return result


def _endpoint(graph: nir.NIRGraph, name: str, side: str, prefix: str, edge: Edge) -> str:
    """Flat name of an edge endpoint; ``side`` is 'Input' (edge destination) or 'Output' (source)."""
    if name in graph.nodes:
        node = graph.nodes[name]
        if not isinstance(node, nir.NIRGraph):
            return prefix + name
        ports = [k for k, n in node.nodes.items() if type(n).__name__ == side]
        if len(ports) != 1:
            raise ModelError(
                f"edge ({edge[0]} -> {edge[1]}) names subgraph '{prefix}{name}', which has {len(ports)} "
                f"{side} nodes: name one of them as '{name}.<node>'"
            )
        return _endpoint(node, ports[0], side, f"{prefix}{name}.", edge)
    head, _, rest = name.partition(".")
    if rest and isinstance(graph.nodes.get(head), nir.NIRGraph):
        return _endpoint(graph.nodes[head], rest, side, f"{prefix}{head}.", edge)
    raise ModelError(f"edge ({edge[0]} -> {edge[1]}) refers to node '{prefix}{name}', which does not exist")


def flatten(graph: nir.NIRGraph) -> tuple[dict[str, nir.NIRNode], list[Edge]]:
    """Flat nodes and edges of ``graph``; subgraph Input/Output nodes are bypassed."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[Edge] = []
    ports: set[str] = set()

    def walk(g: nir.NIRGraph, prefix: str):
        for name, node in g.nodes.items():
            if isinstance(node, nir.NIRGraph):
                walk(node, f"{prefix}{name}.")
            else:
                nodes[prefix + name] = node
                if prefix and isinstance(node, (nir.Input, nir.Output)):
                    ports.add(prefix + name)
        for edge in g.edges:
            src = _endpoint(g, edge[0], "Output", prefix, edge)
            dst = _endpoint(g, edge[1], "Input", prefix, edge)
            edges.append((src, dst))

    walk(graph, "")
    for port in sorted(ports):
        preds = [s for s, d in edges if d == port]
        succs = [d for s, d in edges if s == port]
        edges = [e for e in edges if port not in e]
        for edge in ((s, d) for s in preds for d in succs):
            if edge in edges:
                raise ModelError(
                    f"bypassing subgraph port '{port}' gives a second edge ({edge[0]} -> {edge[1]}): "
                    "parallel edges between two nodes are not supported"
                )
            edges.append(edge)
        del nodes[port]
    return nodes, edges


def check_parameters(name: str, node: nir.NIRNode) -> None:
    """Reject non-finite parameters, non-positive time constants and unsupported resets."""
    for field, value in vars(node).items():
        if field in ("input_type", "output_type", "metadata") or isinstance(value, (str, bytes)):
            continue
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            continue
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ModelError(f"parameter '{field}' has {bad} NaN or infinite value{'s' * (bad > 1)}", node=name)
        if field in TIME_CONSTANTS and np.any(arr <= 0):
            raise ModelError(f"time constant '{field}' must be > 0 (smallest is {arr.min():g})", node=name)
    reset = node.metadata.get("reset", "value") if isinstance(node.metadata, dict) else "value"
    if reset == "value":
        return
    if not isinstance(node, RESETTING):
        raise ModelError(
            f"metadata reset='{reset}' is not supported on a {type(node).__name__} node: only IF, LIF and CubaLIF spike and reset",
            node=name,
        )
    if reset not in RESETS:
        raise ModelError(f"metadata reset='{reset}' is not supported: use one of {', '.join(RESETS)}", node=name)
    if np.any(np.asarray(node.v_reset) != 0):
        raise ModelError(
            "metadata reset='subtract' with non-zero v_reset is not supported: "
            "reset by subtraction removes v_threshold and has no reset potential",
            node=name,
        )
