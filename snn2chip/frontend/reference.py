"""Float reference executor: the meaning of a NIR graph in discrete time (docs/architecture.md §2).

Every time step evaluates all nodes in topological order (zero latency per node); a node's
input is the sum of its incoming edges; a recurrent edge delivers its source's value from the
previous step (zero at step 0). Neuron dynamics are those of :mod:`snn2chip.frontend.neurons`.
Tensors are batch-first: inputs ``(batch, *shape)`` (held constant) or
``(batch, time, *shape)``, results ``(batch, time, *shape)``.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import nir
import numpy as np
import torch
import torch.nn.functional as F

from snn2chip import memory, progress
from snn2chip.frontend import neurons, shapes
from snn2chip.errors import ModelError
from snn2chip.frontend.graph import Graph

DEFAULT_DT = 1.0
Op = Callable[[torch.Tensor], torch.Tensor]


def resolve_dt(graph: Graph, dt: float | None = None) -> tuple[float, str]:
    """The time step and where it came from: the argument, graph metadata ``dt``, or the default 1."""
    if dt is not None:
        source = "option"
    elif graph.metadata.get("dt") is not None:
        dt, source = graph.metadata["dt"], "metadata"
    else:
        dt, source = DEFAULT_DT, "default"
    dt = float(dt)
    if not np.isfinite(dt) or dt <= 0:
        raise graph.error(f"dt must be a positive number, got {dt:g} (from {source})")
    return dt, source


class _Neuron:
    """State and update of one neuron node (see :mod:`snn2chip.frontend.neurons`)."""

    def __init__(self, p: neurons.NeuronParams, shape, batch: int, dtype: torch.dtype):
        def t(a):
            return None if a is None else torch.as_tensor(a, dtype=dtype)

        self.decay, self.lam_v_leak, self.gain = t(p.decay), t(p.lam_v_leak), t(p.gain)
        self.syn_decay, self.syn_gain = t(p.syn_decay), t(p.syn_gain)
        self.v_threshold, self.v_reset, self.subtract = t(p.v_threshold), t(p.v_reset), p.subtract
        self.v = torch.zeros((batch, *shape), dtype=dtype)
        self.i = torch.zeros_like(self.v) if p.syn_decay is not None else None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.i is not None:
            self.i = self.syn_decay * self.i + self.syn_gain * x
            x = self.i
        self.v = self.decay * self.v + self.lam_v_leak + self.gain * x
        if self.v_threshold is None:
            return self.v
        spikes = self.v > self.v_threshold
        if self.subtract:
            self.v = self.v - spikes * self.v_threshold
        else:
            self.v = torch.where(spikes, self.v_reset, self.v)
        return spikes.to(self.v.dtype)


class _DelayLine:
    """Per-element delay by whole steps: ``y[t] = x[t - d]`` (zero before the first input)."""

    def __init__(self, steps: np.ndarray, shape, batch: int, dtype: torch.dtype):
        self.shape = (batch, *shape)
        size = int(np.prod(shape))
        self.d = torch.as_tensor(np.broadcast_to(steps, shape).reshape(-1).copy())
        self.depth = int(self.d.max()) + 1 if size else 1
        self.buffer = torch.zeros((self.depth, batch, size), dtype=dtype)
        self.columns = torch.arange(size)
        self.t = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.buffer[self.t % self.depth] = x.reshape(self.shape[0], -1)
        y = self.buffer[(self.t - self.d) % self.depth, :, self.columns]  # (size, batch)
        self.t += 1
        return y.T.reshape(self.shape)


def node_op(graph: Graph, name: str, dt: float, batch: int, dtype: torch.dtype) -> Op:
    """The per-step function of node ``name`` (stateful nodes get fresh zero state)."""
    node = graph.nodes[name]

    def t(a):
        return torch.as_tensor(np.asarray(a), dtype=dtype)

    if isinstance(node, (nir.Input, nir.Output)):
        return lambda x: x
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight, bias = t(node.weight), getattr(node, "bias", None)
        bias = None if bias is None else t(bias).reshape(-1).expand(node.weight.shape[0])
        return lambda x: F.linear(x, weight, bias)
    if isinstance(node, nir.Scale):
        scale = t(node.scale)
        return lambda x: x * scale
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        n = 1 if isinstance(node, nir.Conv1d) else 2
        conv = F.conv1d if n == 1 else F.conv2d
        weight, out_channels = t(node.weight), node.weight.shape[0]
        bias = None if node.bias is None else t(node.bias).reshape(-1).expand(out_channels).contiguous()
        kwargs = dict(
            stride=shapes.ints(node.stride, n, "stride"),
            padding=shapes.conv_padding(node, n),
            dilation=shapes.ints(node.dilation, n, "dilation"),
            groups=int(np.asarray(node.groups).reshape(-1)[0]),
        )
        return lambda x: conv(x, weight, bias, **kwargs)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        kwargs = dict(
            kernel_size=shapes.ints(node.kernel_size, 2, "kernel_size"),
            stride=shapes.ints(node.stride, 2, "stride"),
            padding=shapes.ints(node.padding, 2, "padding"),
            divisor_override=1 if isinstance(node, nir.SumPool2d) else None,
        )
        return lambda x: F.avg_pool2d(x, **kwargs)
    if isinstance(node, nir.Flatten):
        out = graph.out_shapes[name]
        return lambda x: x.reshape(x.shape[0], *out)
    if isinstance(node, nir.Threshold):
        threshold = t(node.threshold)
        return lambda x: (x > threshold).to(dtype)
    if isinstance(node, nir.Delay):
        return _DelayLine(neurons.delay_steps(node, dt, name), graph.in_shapes[name], batch, dtype)
    if isinstance(node, neurons.NEURONS):
        return _Neuron(neurons.discretise(node, dt, name), graph.in_shapes[name], batch, dtype)
    raise ModelError(f"node type {type(node).__name__} has no float semantics", node=name)


def _prepare_inputs(graph: Graph, inputs, steps: int | None) -> tuple[dict[str, torch.Tensor], int, int]:
    """Input tensors per Input node, the number of steps and the batch size."""
    names = graph.inputs
    if not isinstance(inputs, Mapping):
        if len(names) != 1:
            raise graph.error(f"the graph has {len(names)} Input nodes ({', '.join(names)}): pass a dict of inputs")
        inputs = {names[0]: inputs}
    if set(inputs) != set(names):
        raise graph.error(f"inputs given for {sorted(inputs)}, but the graph's Input nodes are {names}")
    tensors, lengths, batches = {}, set(), set()
    for name in names:
        x = np.array(inputs[name])  # a copy: inputs may be read-only arrays
        if x.dtype.kind not in "biuf" or not np.isfinite(x).all():
            raise graph.error("input must hold real, finite numbers", node=name)
        x = torch.as_tensor(x)
        shape = graph.out_shapes[name]
        layout = shapes.input_layout(x.shape, shape)
        if layout == shapes.HELD:
            if steps is None:
                raise graph.error("constant inputs (batch, *shape) need the number of steps", node=name)
            lengths.add(steps)
        elif layout == shapes.TIMED:
            lengths.add(x.shape[1])
        else:
            raise graph.error(
                f"input has shape {tuple(x.shape)}; expected (batch, {shapes.fmt(shape)}) "
                f"or (batch, time, {shapes.fmt(shape)}) with shape {shapes.fmt(shape)}",
                node=name,
            )
        tensors[name] = x
        batches.add(x.shape[0])
    if steps is not None:
        lengths.add(steps)
    if len(lengths) != 1 or len(batches) != 1:
        raise graph.error(f"inputs disagree on time steps {sorted(lengths)} or batch sizes {sorted(batches)}")
    return tensors, lengths.pop(), batches.pop()


def run(
    graph: Graph,
    inputs,
    steps: int | None = None,
    *,
    dt: float | None = None,
    record: Iterable[str] | None = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """Run ``graph`` on a batch and return the recorded nodes' outputs, ``(batch, time, *shape)``.

    ``inputs``: an array for a single Input node, else a dict by Input node name; each
    ``(batch, *shape)`` (constant current for ``steps`` steps) or ``(batch, time, *shape)``.
    ``record``: node names to return (default all: mind the memory on large networks).
    ``dt``: time step (default: graph metadata ``dt``, else 1). ``batch_size`` splits the batch
    into chunks run one after another (same result, less memory); ``show_progress`` shows a bar.
    """
    dt, _ = resolve_dt(graph, dt)
    tensors, steps, batch = _prepare_inputs(graph, inputs, steps)
    record = list(graph.nodes) if record is None else list(record)
    for name in record:
        if name not in graph.nodes:
            raise ModelError(f"cannot record node '{name}': no such node", option="--record")
    chunk = min(batch_size or batch, batch)
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    recorded = sum(math.prod(graph.out_shapes[n]) for n in record)
    state = sum(math.prod(graph.out_shapes[n]) for n in graph.nodes)
    memory.check(np_dtype.itemsize * ((batch + chunk) * steps * recorded + 4 * chunk * state),
                 f"running {batch} samples x {steps} steps in the float reference ({state:,} values per sample and step)",
                 file=graph.source, hint="use a smaller --batch-size, fewer samples or fewer steps")
    results = {n: np.zeros((batch, steps, *graph.out_shapes[n]), dtype=np_dtype) for n in record}
    starts = range(0, batch, chunk)
    for start in progress.bar(starts, "float reference", "batch", show_progress):
        part = {n: x[start : start + chunk].to(dtype) for n, x in tensors.items()}
        for name, values in _simulate(graph, part, steps, dt, record, dtype).items():
            results[name][start : start + chunk] = values
    return results


def _simulate(graph, inputs, steps, dt, record, dtype) -> dict[str, np.ndarray]:
    batch = next(iter(inputs.values())).shape[0]
    try:
        ops = {name: node_op(graph, name, dt, batch, dtype) for name in graph.nodes}
    except ModelError as e:
        raise e.in_file(graph.source) from None
    sources = {name: [(src, (src, name) in graph.recurrent) for src in graph.predecessors(name)] for name in graph.nodes}
    previous = {src: torch.zeros((batch, *graph.out_shapes[src]), dtype=dtype) for src, _ in graph.recurrent}
    out = {name: torch.zeros((batch, steps, *graph.out_shapes[name]), dtype=dtype) for name in record}
    with torch.no_grad():
        for step in range(steps):
            values: dict[str, torch.Tensor] = {}
            for name in graph.nodes:
                if name in inputs:
                    x = inputs[name]
                    x = x[:, step] if shapes.has_time_axis(x.shape, graph.out_shapes[name]) else x
                else:
                    terms = [previous[src] if rec else values[src] for src, rec in sources[name]]
                    x = terms[0]
                    for term in terms[1:]:
                        x = x + term
                values[name] = ops[name](x)
            for src in previous:
                previous[src] = values[src]
            for name in record:
                out[name][:, step] = values[name]
    return {name: v.numpy() for name, v in out.items()}
