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

from snn2chip import memory
from snn2chip.frontend import shapes
from snn2chip.errors import ModelError
from snn2chip.files import require_file
from snn2chip.frontend.graph import Edge, Graph, make_graph
from snn2chip.frontend.neurons import RESETTING

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
    path = require_file(Path(path))
    file = str(path)
    try:
        with h5py.File(path, "r") as f:
            if not isinstance(f.get("node"), h5py.Group):
                raise ModelError("not a NIR file: the HDF5 file has no 'node' group", file=file)
            tree = read_tree(f["node"], file)
    except OSError:
        raise ModelError("not a NIR file: it is not HDF5 (NIR files are HDF5 written by nir.write)", file=file) from None
    try:
        root = read_node(tree, "")
        if not isinstance(root, nir.NIRGraph):
            raise ModelError(f"the top-level node is a {type(root).__name__}, not a NIRGraph")
        nodes, edges = flatten(root)
        for name, node in nodes.items():
            check_parameters(name, node)
        metadata = check_metadata(_plain(root.metadata))
    except ModelError as e:
        raise e.in_file(file) from None
    return make_graph(nodes, edges, metadata=metadata, source=file)


def read_tree(group: h5py.Group, file: str) -> dict:
    """The HDF5 group as nested dicts of values (bytes decoded), after checking that the data
    its datasets declare fits the memory budget. Links that are neither groups nor datasets
    are a :class:`ModelError`."""
    memory.check_hdf5(group, file)

    def read(g: h5py.Group) -> dict:
        result = {}
        for key, item in g.items():
            key = key.decode() if isinstance(key, bytes) else key
            if isinstance(item, h5py.Group):
                result[key] = read(item)
            elif not isinstance(item, h5py.Dataset):
                raise ModelError(f"entry '{key}' is neither a group nor a dataset", file=file)
            else:
                value = item[()]
                result[key] = value.decode(errors="replace") if isinstance(value, bytes) else value
        return result

    return read(group)


def _text(value) -> str | None:
    """A string stored as a dataset (str, bytes, or a 0-d string array), else None."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "SUO":
        value = value.item()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def _edge_names(raw, node: str | None) -> list[tuple[str, str]]:
    """The edges of a NIRGraph as pairs of names; a malformed list is a :class:`ModelError`."""
    if isinstance(raw, dict):
        raise ModelError("'edges' is a group; NIR stores edges as a dataset of name pairs", node=node)
    names = np.asarray(raw)
    if names.size == 0:
        return []
    if names.dtype.kind not in "SUO":
        raise ModelError(f"'edges' holds {names.dtype} values; expected pairs of node names", node=node)
    if names.size % 2 or (names.ndim == 2 and names.shape[1] != 2) or names.ndim > 2:
        raise ModelError(f"'edges' has shape {names.shape}; expected pairs of node names (n, 2)", node=node)
    flat = [_text(e) if not isinstance(e, str) else e for e in names.reshape(-1)]
    if any(e is None for e in flat):
        raise ModelError("'edges' holds entries that are not node names", node=node)
    return list(zip(flat[0::2], flat[1::2]))


def read_node(tree: dict, name: str) -> nir.NIRNode:
    """Build one NIR node (recursively for subgraphs) from its dictionary in the file."""
    node = name or None
    if not isinstance(tree, dict):
        raise ModelError("stored as a dataset; a NIR node is an HDF5 group", node=node)
    kind = _text(tree.get("type"))
    if kind is None:
        raise ModelError("not a NIR node: it has no 'type' entry (a string)", node=node)
    if kind not in NIR_TYPES:
        raise ModelError(f"unknown node type '{kind}' (NIR {nir.version} defines {', '.join(NIR_TYPES)})", node=node)
    metadata = tree.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelError("'metadata' is a dataset; NIR stores metadata as a group", node=node)
    if kind == "NIRGraph":
        children = tree.get("nodes", {})
        if not isinstance(children, dict):
            raise ModelError("'nodes' is a dataset; NIR stores a graph's nodes as a group", node=node)
        return nir.NIRGraph(
            nodes={k: read_node(v, f"{name}.{k}" if name else k) for k, v in children.items()},
            edges=_edge_names(tree.get("edges", np.empty((0, 2))), node),
            metadata=_plain(metadata),
            type_check=False,
        )
    for field, value in tree.items():
        if field in ("type", "metadata", "input_type", "output_type") or field == "padding" and isinstance(value, str):
            continue
        if isinstance(value, dict):
            raise ModelError(f"parameter '{field}' is a group; expected a dataset", node=node)
        if isinstance(value, (str, bytes)) or np.asarray(value).dtype.kind in "SUO":
            raise ModelError(f"parameter '{field}' holds text; expected numbers", node=node)
    try:
        shapes.check_geometry(kind, tree)
    except shapes.ShapeError as e:
        raise ModelError(f"{kind} {e}", node=node) from None
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


def file_metadata(path: str | Path) -> dict:
    """The top-level graph's metadata of the NIR file at ``path``, read alone (unchecked; {} when
    the file has none or is not readable: :func:`load` says why)."""
    try:
        with h5py.File(path, "r") as f:
            group = f.get("node/metadata")
            return _plain({k: group[k][()] for k in group if isinstance(group[k], h5py.Dataset)}) \
                if isinstance(group, h5py.Group) else {}
    except (OSError, ValueError):  # not HDF5, or metadata that does not decode
        return {}


def check_metadata(metadata: dict) -> dict:
    """The graph's metadata, with the keys snn2chip reads (``dt``, ``time_steps``, ``calibration``) checked."""
    dt = metadata.get("dt")
    if dt is not None and (isinstance(dt, (bool, str)) or np.ndim(dt) != 0 or np.asarray(dt).dtype.kind not in "iuf"
                           or not np.isfinite(dt) or dt <= 0):
        raise ModelError(f"metadata 'dt' must be a positive number (seconds or steps), got {dt!r}")
    steps = metadata.get("time_steps")
    if steps is not None and (isinstance(steps, (bool, str)) or np.ndim(steps) != 0
                              or np.asarray(steps).dtype.kind not in "iu" or steps < 1):
        raise ModelError(f"metadata 'time_steps' must be a positive integer, got {steps!r}")
    calibration = metadata.get("calibration")
    if calibration is not None and (not isinstance(calibration, str) or not calibration.strip()):
        raise ModelError(f"metadata 'calibration' must name a file (.npy or .npz, relative to the model), "
                         f"got {calibration!r}")
    return metadata


def _plain(metadata) -> dict:
    """Metadata as plain Python values (bytes decoded, 0-d arrays and numpy scalars unwrapped)."""
    result = {}
    for key, value in dict(metadata or {}).items():
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, (np.ndarray, np.generic)) and np.ndim(value) == 0:
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
        if field in ("input_type", "output_type", "metadata") or value is None:
            continue
        if field == "padding" and isinstance(value, (str, bytes)):
            continue  # 'same' / 'valid', checked with the shapes
        arr = np.asarray(value)
        if arr.dtype.kind == "c":
            raise ModelError(f"parameter '{field}' holds complex numbers; expected real numbers", node=name)
        if arr.dtype.kind not in "biuf":
            raise ModelError(f"parameter '{field}' holds {arr.dtype} values; expected numbers", node=name)
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ModelError(f"parameter '{field}' has {bad} NaN or infinite value{'s' * (bad > 1)}", node=name)
        if field in TIME_CONSTANTS and np.any(arr <= 0):
            raise ModelError(f"time constant '{field}' must be > 0 (smallest is {arr.min():g})", node=name)
    reset = node.metadata.get("reset", "value") if isinstance(node.metadata, dict) else "value"
    if not isinstance(reset, str):
        raise ModelError(f"metadata 'reset' must be a string ('value' or 'subtract'), got {reset!r}", node=name)
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
