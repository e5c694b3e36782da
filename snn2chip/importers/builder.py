"""Building a NIR graph from a PyTorch network whose topology is stated by walking its modules.

An exporter walks a network: for each block it knows how the block's ``forward`` combines its
submodules, and asks the :class:`Builder` to turn each named leaf module into NIR nodes (named by
module path, e.g. ``layer1.0.conv1``) and to wire edges. A value flowing between nodes is a
:class:`Value`: the *sum* of the outputs of one or more nodes, because NIR sums the edges arriving
at a node. A residual sum is therefore either several edges into every consumer (the flattened
form) or, with ``residual_nodes=True``, one identity ``nir.Scale`` node receiving the terms.

The base class exports the stateless layers every framework shares (``torch.nn`` Conv2d,
AvgPool2d, AdaptiveAvgPool2d to 1x1, MaxPool2d of spikes, Flatten, Linear) and the SEW connect
functions; a framework's exporter subclasses it and adds its neurons in :meth:`Builder.leaf`.
Used by ``models/export.py`` (the zoo's own networks) and :mod:`snn2chip.importers.spikingjelly`.

Refusals (:class:`ExportError`, one line naming the module and why): a module type without an
exact NIR equivalent, max pooling or AND/IAND of values that are not spikes, a module applied
twice, and any module of the network that the walk did not visit (nothing is dropped silently).

Conventions: ``dt = 1`` in the graph metadata; a neuron that fires at ``v >= θ`` gets the strict
NIR threshold :func:`strict_threshold` (θ), stored as float32.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable

import nir
import numpy as np
import torch
from torch import nn

from snn2chip.errors import ModelError
from snn2chip.importers.nirfile import StreamSink

DT = 1.0
#: the connect functions of SEW-ResNet (Fang et al. 2021): ``g(x, y)`` = x + y, x·y, x·(1 − y)
CONNECTS = ("ADD", "AND", "IAND")


class ExportError(ModelError):
    """A network cannot be exported to NIR exactly; the one-line message names the module and why."""


def strict_threshold(theta: float) -> np.ndarray:
    """The strict NIR threshold that reproduces ``v >= theta`` exactly in float32 arithmetic.

    NIR spikes when ``v > v_threshold``. For float32 membrane potentials, ``v > t`` with ``t`` the
    largest float32 below ``theta`` holds exactly when ``v >= theta`` (no float32 lies between
    them). ``theta`` is first rounded to float32, as PyTorch does with a Python number compared
    to a float32 tensor. The value is a ``numpy.float32`` and must be *stored* as float32: a
    float64 threshold "just below theta", e.g. ``theta - 1e-9``, rounds back to ``theta`` when an
    executor casts it to float32, turning ``>=`` into ``>``.
    """
    return np.nextafter(np.float32(theta), np.float32(-np.inf)).astype(np.float32)


def if_node(shape, v_threshold: np.floating, subtract: bool = False) -> nir.IF:
    """``v <- v + x``, spike at ``v > v_threshold``, reset to 0 or (``subtract``) by subtraction.
    ``v_threshold`` is a numpy scalar whose dtype is stored (float32 for :func:`strict_threshold`)."""
    return nir.IF(r=np.ones(shape, dtype=np.float32), v_threshold=np.full(shape, v_threshold),
                  v_reset=np.zeros(shape, dtype=np.float32), metadata={"reset": "subtract"} if subtract else {})


def lif_node(shape, tau: float, r: float, v_threshold: np.floating, subtract: bool = False) -> nir.LIF:
    """``v <- v + (r·x − v)/τ`` at dt = 1 (no leak potential), spike and reset as :func:`if_node`.
    ``tau`` and ``r`` are stored in float64, so that the executor's ``1 − 1/τ`` and ``r/τ`` are
    those of the exact values (float32(4/3) would give a decay of 0.25000003, not 0.25)."""
    return nir.LIF(tau=np.full(shape, tau, dtype=np.float64), r=np.full(shape, r, dtype=np.float64),
                   v_leak=np.zeros(shape, dtype=np.float64), v_threshold=np.full(shape, v_threshold),
                   v_reset=np.zeros(shape, dtype=np.float64), metadata={"reset": "subtract"} if subtract else {})


@dataclasses.dataclass(frozen=True)
class Value:
    """What flows on edges into a consumer: the sum of the outputs of ``sources`` (in this order).

    ``binary`` is true when the value is known to be 0/1 spikes (one spiking or Threshold node).
    """

    sources: tuple[str, ...]
    shape: tuple[int, ...]
    binary: bool = False


def pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def window(shape, kernel, stride, padding, dilation=(1, 1)) -> tuple[int, ...]:
    """Output size of a sliding window over ``shape`` (floor mode)."""
    return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, st, p, d in zip(shape, kernel, stride, padding, dilation))


class Builder:
    """Accumulates NIR nodes and edges while an exporter walks a network.

    ``rng``: weights of parameters on the meta device are drawn here (He-normal float32,
    ``std = sqrt(2 / fan_in)``; biases 0): the scale generators' random networks.
    ``stream_to``: write nodes to this file as they are built (see :class:`StreamSink`).
    """

    #: named in the refusal of an unknown module type
    supported = "Conv2d, AvgPool2d, AdaptiveAvgPool2d to 1x1, MaxPool2d on spikes, Flatten, Linear"

    def __init__(self, model: nn.Module, *, residual_nodes: bool, rng: np.random.Generator | None = None,
                 stream_to: str | Path | None = None):
        self.model = model
        self.residual_nodes = residual_nodes
        self.rng = rng
        self.nodes: dict[str, nir.NIRNode] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.edges: list[tuple[str, str]] = []
        self.visited: set[str] = set()
        self.sink = StreamSink(stream_to) if stream_to is not None else None
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

    def neuron(self, path: str, node: nir.NIRNode, x: Value) -> Value:
        """A spiking node ``path`` (neuron or Threshold) reading ``x``."""
        return self.node(path, node, [x], x.shape, binary=True, neurons=True)

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

    def connect(self, name: str, kind: str, x: Value, y: Value, where: str | None = None) -> Value:
        """SEW connect function ``g(x, y)`` in the argument order of spikingjelly's ``sew_function``:
        ADD ``x + y`` (:meth:`residual_sum`), AND ``x·y = [x + y > 1.5]``, IAND ``x·(1 − y) =
        [x − y > 0.5]`` (``y`` through ``nir.Scale(-1)``, node ``<name>.neg``). AND and IAND are
        exact for spikes only, so both operands must be spikes. ``where`` starts the refusal
        message (default ``module 'NAME' (Connect KIND)``)."""
        where = where or f"module '{name}' (Connect {kind})"
        if kind == "ADD":
            return self.residual_sum(name, x, y)
        if kind not in CONNECTS:
            raise ExportError(f"{where}: the connect function must be one of {', '.join(CONNECTS)}")
        if not (x.binary and y.binary):
            raise ExportError(f"{where}: A and S must both be spikes")
        if kind == "AND":
            return self.neuron(name, nir.Threshold(threshold=np.full(x.shape, 1.5, dtype=np.float32)), self.join(x, y))
        neg = self.node(f"{name}.neg", nir.Scale(scale=np.full(y.shape, -1.0, dtype=np.float32)), [y], y.shape)
        return self.neuron(name, nir.Threshold(threshold=np.full(x.shape, 0.5, dtype=np.float32)), self.join(x, neg))

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

    def array(self, tensor: torch.Tensor | None, shape, fan_in: int | None = None) -> np.ndarray:
        """A parameter as a float32 array (zeros of ``shape`` for ``None``; random on the meta device)."""
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

    def submodule(self, path: str) -> nn.Module:
        try:
            return self.model.get_submodule(path)
        except AttributeError:
            raise ExportError(f"module '{path}' does not exist in {type(self.model).__name__}") from None

    def module(self, path: str, x: Value) -> Value:
        """Export the leaf module at ``path`` applied to ``x``."""
        m = self.submodule(path)
        if path in self.visited:
            raise ExportError(f"module '{path}' is applied twice: NIR nodes are not shared, export it once")
        out = self.leaf(path, m, x)
        if out is None:
            raise ExportError(f"module '{path}' ({type(m).__name__}) has no NIR equivalent in this exporter "
                              f"(supported: {self.supported})")
        self.visited.add(path)
        return out

    def leaf(self, path: str, m: nn.Module, x: Value) -> Value | None:
        """NIR nodes of leaf module ``m`` at ``path`` applied to ``x``; ``None`` if its type is unknown.
        Subclasses handle their own types first and fall back to this."""
        kind = type(m).__name__
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            raise ExportError(f"module '{path}' ({kind}): BatchNorm is folded into the convolution before it; "
                              "this one does not follow a convolution")
        if isinstance(m, nn.Conv2d):
            return self.conv(path, m, x)
        if isinstance(m, nn.AvgPool2d):
            return self.avgpool(path, m, x)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.global_avgpool(path, m, x)
        if isinstance(m, nn.MaxPool2d):
            return self.maxpool(path, m, x)
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ExportError(f"module '{path}' (Flatten): only start_dim=1, end_dim=-1 is exported")
            return self.flatten(path, x)
        if isinstance(m, nn.Linear):
            return self.linear(path, m, x)
        return None

    def conv(self, path: str, m: nn.Conv2d, x: Value, weight: np.ndarray | None = None,
             bias: np.ndarray | None = None) -> Value:
        """``m`` as ``nir.Conv2d`` (``weight``/``bias``: replacements, e.g. with BatchNorm folded in)."""
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise ExportError(f"module '{path}' (Conv2d): only numeric zero padding is exported")
        if len(x.shape) != 3 or x.shape[0] != m.in_channels:
            raise ExportError(f"module '{path}' (Conv2d): expects {m.in_channels} input channels, receives {x.shape}")
        fan_in = m.in_channels // m.groups * int(np.prod(m.kernel_size))
        weight = self.array(m.weight, None, fan_in=fan_in) if weight is None else weight
        bias = self.array(m.bias, (m.out_channels,)) if bias is None else bias
        size = window(x.shape[1:], m.kernel_size, m.stride, m.padding, m.dilation)
        node = nir.Conv2d(
            input_shape=np.array(x.shape[1:]), weight=weight, stride=np.array(m.stride), padding=np.array(m.padding),
            dilation=np.array(m.dilation), groups=m.groups, bias=bias,
        )
        return self.node(path, node, [x], (m.out_channels, *size))

    def linear(self, path: str, m: nn.Linear, x: Value) -> Value:
        if len(x.shape) != 1 or x.shape[0] != m.in_features:
            raise ExportError(f"module '{path}' (Linear): expects {m.in_features} inputs, receives {x.shape}")
        weight = self.array(m.weight, None, fan_in=m.in_features)
        bias = self.array(m.bias, (m.out_features,))
        return self.node(path, nir.Affine(weight=weight, bias=bias), [x], (m.out_features,))

    def flatten(self, name: str, x: Value) -> Value:
        """``(C, H, W) -> (C·H·W,)`` as ``nir.Flatten`` (NIR's dims exclude the batch axis)."""
        shape = (int(np.prod(x.shape)),)
        return self.node(name, nir.Flatten(input_type={"input": np.array(x.shape)}, start_dim=0, end_dim=-1), [x], shape)

    def _pool_args(self, path: str, m, x: Value):
        kernel, stride, padding = pair(m.kernel_size), pair(m.stride), pair(m.padding)
        if m.ceil_mode:
            raise ExportError(f"module '{path}' ({type(m).__name__}): ceil_mode is not exported")
        if len(x.shape) != 3:
            raise ExportError(f"module '{path}' ({type(m).__name__}): expects (channels, height, width), receives {x.shape}")
        return kernel, stride, padding, (x.shape[0], *window(x.shape[1:], kernel, stride, padding))

    def avgpool(self, path: str, m: nn.AvgPool2d, x: Value) -> Value:
        kernel, stride, padding, shape = self._pool_args(path, m, x)
        if m.divisor_override is not None or (any(padding) and not m.count_include_pad):
            raise ExportError(f"module '{path}' (AvgPool2d): divisor_override / count_include_pad=False are not exported")
        node = nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride), padding=np.array(padding))
        return self.node(path, node, [x], shape)

    def global_avgpool(self, path: str, m: nn.AdaptiveAvgPool2d, x: Value) -> Value:
        """Adaptive average pooling to 1x1 = ``nir.AvgPool2d`` over the whole map (other output
        sizes have windows of unequal size: refused)."""
        size = (m.output_size, m.output_size) if isinstance(m.output_size, int) else tuple(m.output_size)
        if len(x.shape) != 3 or any(s not in (1, None) for s in size):
            raise ExportError(f"module '{path}' (AdaptiveAvgPool2d): only output size 1x1 is exported, got "
                              f"{m.output_size} on input {x.shape}")
        kernel = np.array(x.shape[1:])
        node = nir.AvgPool2d(kernel_size=kernel, stride=kernel.copy(), padding=np.array([0, 0]))
        return self.node(path, node, [x], (x.shape[0], 1, 1))

    def maxpool(self, path: str, m: nn.MaxPool2d, x: Value) -> Value:
        """Max pooling of spikes = OR over the window = ``SumPool2d > 0.5`` (exact for 0/1 inputs;
        zero padding is neutral for non-negative inputs). Nodes ``path.sum`` and ``path``."""
        if not x.binary:
            raise ExportError(
                f"module '{path}' ({type(m).__name__}): max pooling is exported only on spikes (as SumPool2d > 0.5); "
                "its input is not a single spiking node"
            )
        if pair(m.dilation) != (1, 1):
            raise ExportError(f"module '{path}' ({type(m).__name__}): dilation is not exported")
        kernel, stride, padding, shape = self._pool_args(path, m, x)
        pooled = self.node(f"{path}.sum", nir.SumPool2d(kernel_size=np.array(kernel), stride=np.array(stride),
                                                        padding=np.array(padding)), [x], shape)
        return self.node(path, nir.Threshold(threshold=np.full(shape, 0.5, dtype=np.float32)), [pooled], shape,
                         binary=True, neurons=True)

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

    def finish(self, path: str | Path | None, metadata: dict):
        """The ``nir.NIRGraph`` (also written to ``path`` if given); when streaming, the written path."""
        if self.sink is not None:
            return self.sink.finish(self.edges, metadata)
        graph = nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=metadata, type_check=True)
        if path is not None:
            nir.write(path, graph, compression=None)  # small files: HDF5 chunking for gzip costs more than it saves
        return graph

    def abort(self) -> None:
        """Discard a partly streamed file after a failure."""
        if self.sink is not None:
            self.sink.abort()
