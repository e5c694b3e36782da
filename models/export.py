"""NIR export of the zoo's networks (BatchNorm folded first), and nothing silently dropped.

:func:`export` walks a folded network (:func:`models.layers.fold_bn`): each network and block
class has an ``export(builder, x)`` method that states its topology by naming its submodules;
the :class:`Builder` turns each named leaf module into NIR nodes (named by module path, e.g.
``layer1.0.conv1``) and wires edges. A value flowing between nodes is a :class:`Value`: the *sum*
of the outputs of one or more nodes, because NIR sums the edges arriving at a node. A residual
sum is therefore either several edges into every consumer (the flattened form) or, with
``residual_nodes=True``, one identity ``nir.Scale`` node receiving the terms.

Refusals (:class:`ExportError`, naming the module): a module type without NIR equivalent (for
example an unfolded BatchNorm, ReLU, Dropout), max pooling of non-binary values, AND/IAND of
non-binary values, and any module of the network that the export did not visit.

Conventions (shared with snn2chip's compiler, see models/README.md):

- ``dt = 1`` is stored in the graph metadata;
- IF neurons that spike at ``v >= θ`` get the strict NIR threshold :func:`strict_threshold` (θ);
- the MS-ResNet neuron is ``nir.LIF(tau = r = 4/3, v_leak = 0, v_threshold = 0.5, v_reset = 0)`` (the
  threshold is the module's: :mod:`models.balance` sets others);
- the readout is ``nir.I(r = 1)`` after the classifier's ``nir.Affine``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import h5py
import nir
import numpy as np
import torch
from torch import nn

from models.layers import ConvBN, Integrator, IFNode, MSNode


class ExportError(ValueError):
    """A network cannot be exported to NIR exactly; the message names the module."""


def strict_threshold(theta: float) -> np.ndarray:
    """The strict NIR threshold that reproduces ``v >= theta`` exactly in float32 arithmetic.

    NIR spikes when ``v > v_threshold``. For float32 membrane potentials, ``v > t`` with ``t`` the
    largest float32 below ``theta`` holds exactly when ``v >= theta`` (no float32 lies between
    them). The value is a ``numpy.float32`` and must be *stored* as float32 (the exporter writes
    float32 arrays): a float64 threshold "just below theta", e.g. ``theta - 1e-9``, rounds back to
    ``theta`` when an executor casts it to float32, turning ``>=`` into ``>``.
    """
    return np.nextafter(np.float32(theta), np.float32(-np.inf)).astype(np.float32)


# MS-ResNet neuron m <- 0.25*m*(1-s) + x as nir.LIF at dt = 1: decay = 1 - dt/tau = 0.25 and
# gain = dt/tau*r = 1 need tau = r = 4/3, stored in float64 (float32(4/3) would give a decay
# that rounds to 0.25000003 in float32).
MS_TAU = np.float64(4.0) / np.float64(3.0)
DT = 1.0


@dataclasses.dataclass(frozen=True)
class Value:
    """What flows on edges into a consumer: the sum of the outputs of ``sources`` (in this order).

    ``binary`` is true when the value is known to be 0/1 spikes (one spiking or Threshold node).
    """

    sources: tuple[str, ...]
    shape: tuple[int, ...]
    binary: bool = False


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _window(shape, kernel, stride, padding, dilation=(1, 1)) -> tuple[int, int]:
    return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, st, p, d in zip(shape, kernel, stride, padding, dilation))


def _write_items(group: h5py.Group, node: dict, compress) -> None:
    """nir.write's layout for one node dictionary (``compress(array)`` picks the HDF5 filter)."""
    for key, value in node.items():
        if key == "metadata":
            if value != {}:
                _write_items(group.create_group(key), value, compress)
        elif isinstance(value, str):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        elif isinstance(value, np.ndarray):
            group.create_dataset(key, data=value, dtype=value.dtype, compression=compress(value))
        elif isinstance(value, dict):
            _write_items(group.create_group(str(key)), value, compress)
        else:
            group.create_dataset(key, data=value)


def _compress_constant(array: np.ndarray) -> str | None:
    """gzip for constant arrays (neuron parameters: they shrink ~1000x), none for weights (random
    float32 does not compress, and gzip would be the slowest step)."""
    if array.size > 64 and array.dtype.kind == "f":
        flat = array.reshape(-1)
        if np.all(flat == flat[0]):
            return "gzip"
    return None


class _StreamSink:
    """Writes each node to a ``.nir`` (HDF5) file as soon as it is built, so that peak memory is
    one layer, not the network. The file has exactly :func:`nir.write`'s layout."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.file = h5py.File(self.path, "w")
        self.file.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
        self.root = self.file.create_group("node")
        self.group = self.root.create_group("nodes")

    def add(self, name: str, node: nir.NIRNode) -> None:
        _write_items(self.group.create_group(name), node.to_dict(), _compress_constant)

    def finish(self, edges: list[tuple[str, str]], metadata: dict) -> Path:
        self.root.create_dataset("edges", data=edges)
        if metadata:
            _write_items(self.root.create_group("metadata"), metadata, lambda a: None)
        self.root.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
        self.file.close()
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class Builder:
    """Accumulates NIR nodes and edges while a network's ``export`` methods walk it.

    ``rng``: weights of parameters on the meta device are drawn here (He-normal float32,
    ``std = sqrt(2 / fan_in)``; biases 0): the scale generators' random networks.
    ``stream_to``: write nodes to this file as they are built (see :class:`_StreamSink`).
    """

    def __init__(self, model: nn.Module, *, residual_nodes: bool, rng: np.random.Generator | None = None,
                 stream_to: str | Path | None = None):
        self.model = model
        self.residual_nodes = residual_nodes
        self.rng = rng
        self.nodes: dict[str, nir.NIRNode] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.edges: list[tuple[str, str]] = []
        self.visited: set[str] = set()
        self.sink = _StreamSink(stream_to) if stream_to is not None else None
        self.counts = {"nodes": 0, "neurons": 0}

    # --- nodes and values -------------------------------------------------------------------------

    def node(self, name: str, node: nir.NIRNode, inputs: Iterable[Value], shape, binary=False, neurons=False) -> Value:
        """Add ``node`` named ``name`` with one edge from every source of every input value."""
        if name in self.shapes:
            raise ExportError(f"two NIR nodes would be named '{name}'")
        sources = [src for value in inputs for src in value.sources]
        if len(set(sources)) != len(sources):
            raise ExportError(f"node '{name}' would receive two edges from the same node ({sources}): NIR cannot express that")
        shape = tuple(int(s) for s in shape)
        self.shapes[name] = shape
        self.edges.extend((src, name) for src in sources)
        self.counts["nodes"] += 1
        if neurons:
            self.counts["neurons"] += int(np.prod(shape))
        if self.sink is not None:
            self.sink.add(name, node)
        else:
            self.nodes[name] = node
        return Value((name,), shape, binary)

    @staticmethod
    def join(*values: Value) -> Value:
        """The sum of several values (flattened: consumers get an edge from every term)."""
        shapes = {v.shape for v in values}
        if len(shapes) != 1:
            raise ExportError(f"cannot sum values of shapes {sorted(shapes)}")
        return Value(tuple(s for v in values for s in v.sources), values[0].shape, False)

    def residual_sum(self, name: str, *values: Value) -> Value:
        """``sum(values)``: an identity Scale node ``name`` with ``residual_nodes``, else flattened edges."""
        total = self.join(*values)
        if not self.residual_nodes:
            return total
        return self.node(name, nir.Scale(scale=np.ones(total.shape, dtype=np.float32)), [total], total.shape)

    def input(self, shape) -> Value:
        return self.node("input", nir.Input(input_type={"input": np.array(shape)}), [], shape)

    def output(self, x: Value) -> Value:
        return self.node("output", nir.Output(output_type={"output": np.array(x.shape)}), [x], x.shape)

    def mark(self, path: str) -> None:
        """Record that module ``path`` (a parameter-free one, e.g. a connect function) was exported."""
        self.model.get_submodule(path)
        self.visited.add(path)

    def chain(self, prefix: str, names: Iterable[str], x: Value) -> Value:
        for name in names:
            x = self.module(f"{prefix}.{name}" if prefix else name, x)
        return x

    # --- leaf modules -----------------------------------------------------------------------------

    def _array(self, tensor: torch.Tensor | None, shape, fan_in: int | None = None) -> np.ndarray:
        if tensor is None:
            return np.zeros(shape, dtype=np.float32)
        if tensor.is_meta:
            if self.rng is None:
                raise ExportError("parameters on the meta device need random weights (pass rng)")
            if fan_in is None:  # a bias
                return np.zeros(tuple(tensor.shape), dtype=np.float32)
            w = self.rng.standard_normal(tuple(tensor.shape), dtype=np.float32)
            w *= np.float32(np.sqrt(2.0 / fan_in))
            return w
        if tensor.dtype != torch.float32:
            raise ExportError(f"parameters must be float32, got {tensor.dtype}")
        return tensor.detach().cpu().numpy().copy()

    def module(self, path: str, x: Value) -> Value:
        """Export the leaf module at ``path`` applied to ``x``."""
        try:
            m = self.model.get_submodule(path)
        except AttributeError:
            raise ExportError(f"module '{path}' does not exist in {type(self.model).__name__}") from None
        if path in self.visited:
            raise ExportError(f"module '{path}' is applied twice: NIR nodes are not shared, export it once")
        kind = type(m).__name__
        if isinstance(m, (ConvBN, nn.BatchNorm2d, nn.BatchNorm1d)):
            raise ExportError(f"module '{path}' ({kind}): BatchNorm is not folded; export fold_bn(model)")
        if isinstance(m, nn.Conv2d):
            out = self._conv(path, m, x)
        elif isinstance(m, IFNode):
            out = self.node(path, nir.IF(
                r=np.ones(x.shape, dtype=np.float32),
                v_threshold=np.full(x.shape, strict_threshold(m.v_threshold), dtype=np.float32),
                v_reset=np.zeros(x.shape, dtype=np.float32),
            ), [x], x.shape, binary=True, neurons=True)
        elif isinstance(m, MSNode):
            assert m.decay == 0.25
            out = self.node(path, nir.LIF(
                tau=np.full(x.shape, MS_TAU, dtype=np.float64),
                r=np.full(x.shape, MS_TAU, dtype=np.float64),
                v_leak=np.zeros(x.shape, dtype=np.float64),
                v_threshold=np.full(x.shape, m.v_threshold, dtype=np.float64),
                v_reset=np.zeros(x.shape, dtype=np.float64),
            ), [x], x.shape, binary=True, neurons=True)
        elif isinstance(m, Integrator):
            out = self.node(path, nir.I(r=np.ones(x.shape, dtype=np.float32)), [x], x.shape, neurons=True)
        elif isinstance(m, nn.AvgPool2d):
            out = self._avgpool(path, m, x)
        elif isinstance(m, nn.MaxPool2d):
            out = self._maxpool(path, m, x)
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ExportError(f"module '{path}' (Flatten): only start_dim=1, end_dim=-1 is exported")
            shape = (int(np.prod(x.shape)),)
            out = self.node(path, nir.Flatten(input_type={"input": np.array(x.shape)}, start_dim=0, end_dim=-1), [x], shape)
        elif isinstance(m, nn.Linear):
            if len(x.shape) != 1 or x.shape[0] != m.in_features:
                raise ExportError(f"module '{path}' (Linear): expects {m.in_features} inputs, receives {x.shape}")
            weight = self._array(m.weight, None, fan_in=m.in_features)
            bias = self._array(m.bias, (m.out_features,))
            out = self.node(path, nir.Affine(weight=weight, bias=bias), [x], (m.out_features,))
        else:
            raise ExportError(
                f"module '{path}' ({kind}) has no NIR equivalent in this exporter "
                "(supported: Conv2d, folded ConvBN, IFNode, MSNode, Integrator, AvgPool2d, MaxPool2d on spikes, Flatten, Linear)"
            )
        self.visited.add(path)
        return out

    def _conv(self, path: str, m: nn.Conv2d, x: Value) -> Value:
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise ExportError(f"module '{path}' (Conv2d): only numeric zero padding is exported")
        if len(x.shape) != 3 or x.shape[0] != m.in_channels:
            raise ExportError(f"module '{path}' (Conv2d): expects {m.in_channels} input channels, receives {x.shape}")
        fan_in = m.in_channels // m.groups * int(np.prod(m.kernel_size))
        weight = self._array(m.weight, None, fan_in=fan_in)
        bias = self._array(m.bias, (m.out_channels,))
        size = _window(x.shape[1:], m.kernel_size, m.stride, m.padding, m.dilation)
        node = nir.Conv2d(
            input_shape=np.array(x.shape[1:]), weight=weight, stride=np.array(m.stride), padding=np.array(m.padding),
            dilation=np.array(m.dilation), groups=m.groups, bias=bias,
        )
        return self.node(path, node, [x], (m.out_channels, *size))

    def _pool_args(self, path: str, m, x: Value):
        kernel, stride, padding = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
        if m.ceil_mode:
            raise ExportError(f"module '{path}' ({type(m).__name__}): ceil_mode is not exported")
        return kernel, stride, padding, (x.shape[0], *_window(x.shape[1:], kernel, stride, padding))

    def _avgpool(self, path: str, m: nn.AvgPool2d, x: Value) -> Value:
        kernel, stride, padding, shape = self._pool_args(path, m, x)
        if m.divisor_override is not None or (any(padding) and not m.count_include_pad):
            raise ExportError(f"module '{path}' (AvgPool2d): divisor_override / count_include_pad=False are not exported")
        node = nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
        return self.node(path, node, [x], shape)

    def _maxpool(self, path: str, m: nn.MaxPool2d, x: Value) -> Value:
        """Max pooling of spikes = OR over the window = ``SumPool2d > 0.5`` (exact for 0/1 inputs;
        zero padding is neutral for non-negative inputs). Nodes ``path.sum`` and ``path``."""
        if not x.binary:
            raise ExportError(
                f"module '{path}' (MaxPool2d): max pooling is exported only on spikes (as SumPool2d > 0.5); "
                "its input is not a single spiking node"
            )
        if _pair(m.dilation) != (1, 1):
            raise ExportError(f"module '{path}' (MaxPool2d): dilation is not exported")
        kernel, stride, padding, shape = self._pool_args(path, m, x)
        pooled = self.node(f"{path}.sum", nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride),
                                                        padding=np.array(padding)), [x], shape)
        return self.node(path, nir.Threshold(threshold=np.full(shape, 0.5, dtype=np.float32)), [pooled], shape, binary=True, neurons=True)

    # --- finish -----------------------------------------------------------------------------------

    def check_complete(self) -> None:
        """Fail naming any module the export did not visit (nothing may be dropped silently)."""
        for name, m in self.model.named_modules():
            if not name:
                continue
            is_leaf = next(m.children(), None) is None
            has_own = next(m.parameters(recurse=False), None) is not None or next(m.buffers(recurse=False), None) is not None
            parts = name.split(".")
            covered = any(".".join(parts[:i]) in self.visited for i in range(1, len(parts) + 1))
            if (is_leaf or has_own) and not covered:
                raise ExportError(
                    f"module '{name}' ({type(m).__name__}) is not part of the export: the network's export "
                    "does not say where it belongs, so it would be dropped"
                )


def export(model: nn.Module, path: str | Path | None = None, *, residual_nodes: bool | None = None,
           metadata: dict | None = None, rng: np.random.Generator | None = None, stream: bool = False):
    """Export a folded network to NIR; returns the ``nir.NIRGraph`` (and writes ``path`` if given).

    ``residual_nodes``: represent residual sums by identity Scale nodes (default: the family's
    choice, ``model.residual_nodes_default``). ``stream=True`` writes nodes to ``path`` while
    building (peak memory one layer) and returns the path instead of a graph.
    ``metadata`` is added to ``{"dt": 1.0}``.
    """
    if residual_nodes is None:
        residual_nodes = getattr(model, "residual_nodes_default", False)
    if stream and path is None:
        raise ValueError("stream=True needs a path")
    builder = Builder(model, residual_nodes=residual_nodes, rng=rng, stream_to=path if stream else None)
    meta = {"dt": DT, **(metadata or {})}
    try:
        x = builder.input(model.input_shape)
        builder.output(model.export(builder, x))
        builder.check_complete()
    except BaseException:
        if builder.sink is not None:
            builder.sink.abort()
        raise
    if builder.sink is not None:
        return builder.sink.finish(builder.edges, meta)
    graph = nir.NIRGraph(nodes=builder.nodes, edges=builder.edges, metadata=meta, type_check=True)
    if path is not None:
        nir.write(path, graph, compression=None)  # small files: HDF5 chunking for gzip costs more than it saves
    return graph
