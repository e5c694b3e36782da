"""Lava back end: a :class:`~snn2chip.chip.ChipNet` rebuilt as Lava processes (:func:`build`, public
as :func:`snn2chip.lava.build`) and run with ``Loihi2SimCfg(select_tag="fixed_pt")``, one sample
at a time (:func:`run_lava`, which uses :func:`build` too).

LIF populations become ``LIF`` (bit-accurate model) or, with reset by subtraction,
:class:`~snn2chip.backends.lava_neurons.subtractive.SubtractiveLIF`, relays ``GradedVec``, synapse
groups ``Dense``/``DelayDense``/``Sparse``/``DelaySparse``/``Conv``; all of them sit in one
hierarchical process, :class:`~snn2chip.backends.lava_neurons.network.ChipNetwork`, whose
in-ports stand for the input populations (a spike source's ``s_out`` connects to them) and whose
out-ports carry the output populations' spikes. :func:`run_lava` feeds the in-ports from
``io.source.RingBuffer``s and records with ``io.sink.RingBuffer`` and ``Monitor``; its results have
the simulator's layout, so the two compare with ``==``.

Layout is handled here only: snn2chip keeps NIR's ``(C, H, W)`` order, Lava uses ``(W, H, C)``
(axes reversed), its flat index follows that order, and its Conv is a true convolution with
kernels ``(C_out, kW, kH, C_in)`` and ``(W, H)`` parameter pairs.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import numpy as np

from snn2chip import progress
from snn2chip.errors import ModelError
from snn2chip.chip.ir import ChipNet, SynapseGroup, conv_as_sparse
from snn2chip.backends.simulator import payloads as make_payloads


def lava_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Lava's shape for a population of NIR shape ``shape`` (axes reversed: CHW -> WHC)."""
    return tuple(reversed(shape))


def to_lava(x: np.ndarray, ndim: int) -> np.ndarray:
    """Reverse the last ``ndim`` axes of ``x`` (leading axes, e.g. time, stay)."""
    lead = x.ndim - ndim
    return np.transpose(x, (*range(lead), *reversed(range(lead, x.ndim))))


def from_lava(x: np.ndarray, ndim: int) -> np.ndarray:
    """Inverse of :func:`to_lava` (reversing axes is its own inverse)."""
    return to_lava(x, ndim)


def nir_index(shape: tuple[int, ...]) -> np.ndarray:
    """For each Lava flat index, the NIR flat index of the same neuron."""
    return to_lava(np.arange(int(np.prod(shape))).reshape(shape), len(shape)).reshape(-1)


def lava_kernel(weights: np.ndarray) -> np.ndarray:
    """A PyTorch cross-correlation kernel (O, I, kH, kW) as Lava's convolution kernel (O, kW, kH, I)."""
    return np.ascontiguousarray(np.flip(weights, (2, 3)).transpose(0, 3, 2, 1))


def _population(pop):
    """The Lava process of a relay or LIF population ``pop``."""
    from lava.proc.graded.process import GradedVec
    from lava.proc.lif.process import LIF

    from snn2chip.backends.lava_neurons.subtractive import SubtractiveLIF

    nd, shape = len(pop.shape), lava_shape(pop.shape)
    if pop.kind == "relay":
        return GradedVec(shape=shape, vth=pop.vth)
    bias = np.zeros(pop.shape, dtype=np.int32) if pop.bias_mant is None else pop.bias_mant
    params = dict(shape=shape, du=pop.du, dv=pop.dv, vth=pop.vth,
                  bias_mant=to_lava(np.asarray(bias, dtype=np.int32), nd), bias_exp=pop.bias_exp)
    return SubtractiveLIF(vsub=pop.vsub, **params) if pop.reset == "subtract" else LIF(**params)


def _connect_conv(g: SynapseGroup, src, dst, out, procs: dict):
    """A conv group as Lava's ``Conv`` from port ``out`` (of population ``src``) to population ``dst``."""
    from lava.proc.conv.process import Conv

    conn = Conv(weight=lava_kernel(np.asarray(g.weights, dtype=np.int32)), input_shape=lava_shape(src.shape),
                padding=g.padding[::-1], stride=g.stride[::-1], dilation=g.dilation[::-1], groups=g.groups,
                num_message_bits=src.payload_bits)
    out.connect(conn.s_in)
    # (O, 1, 1) -> (O,): Lava's (1, 1, O) and (O,) share the flat order
    (conn.a_out if len(dst.shape) == 3 else conn.a_out.reshape(lava_shape(dst.shape))).connect(procs[g.dst].a_in)
    return conn


def _matrix_process(g: SynapseGroup, src, dst):
    """A dense or sparse group as Lava's ``Dense``/``DelayDense``/``Sparse``/``DelaySparse``
    (rows and columns in Lava's flat order)."""
    from lava.proc.dense.process import Dense, DelayDense
    from lava.proc.sparse.process import DelaySparse, Sparse
    from scipy.sparse import csr_matrix

    bits = src.payload_bits
    rows, cols = nir_index(dst.shape), nir_index(src.shape)
    if g.kind == "sparse":
        lava_row, lava_col = np.argsort(rows)[g.rows], np.argsort(cols)[g.cols]

        def csr(values, dtype):
            return csr_matrix((np.asarray(values, dtype=dtype), (lava_row, lava_col)), shape=(dst.size, src.size))

        common = dict(weights=csr(g.weights, np.int32), weight_exp=g.weight_exp, num_weight_bits=g.num_weight_bits,
                      num_message_bits=bits)
        # DelaySparse insists on Python-int (int64) delays
        return Sparse(**common) if g.delays is None else DelaySparse(delays=csr(g.delays, int), **common)
    if g.delays is not None:
        return DelayDense(weights=g.weights[np.ix_(rows, cols)], delays=g.delays[np.ix_(rows, cols)],
                          weight_exp=g.weight_exp, num_weight_bits=g.num_weight_bits, num_message_bits=bits)
    return Dense(weights=g.weights[np.ix_(rows, cols)], weight_exp=g.weight_exp,
                 num_weight_bits=g.num_weight_bits, num_message_bits=bits)


def _connect(g: SynapseGroup, net: ChipNet, procs: dict, inputs: dict):
    """Group ``g`` as a new Lava synapse process from its source (a population's ``s_out``, or the
    network's in-port of an input population) to its destination's ``a_in``; returns the process."""
    src, dst = net.populations[g.src], net.populations[g.dst]
    out = inputs[g.src] if g.src in inputs else procs[g.src].s_out
    if g.kind == "conv" and not g.weight_exp:
        return _connect_conv(g, src, dst, out, procs)
    if g.kind == "conv":  # Lava's CPU Conv ignores weight_exp: Sparse applies it
        g = conv_as_sparse(g, src.shape, dst.shape)
    conn = _matrix_process(g, src, dst)
    (out.flatten() if len(src.shape) > 1 else out).connect(conn.s_in)
    conn.a_out.reshape(lava_shape(dst.shape)).connect(procs[g.dst].a_in)
    return conn


@dataclasses.dataclass(frozen=True)
class LavaNetwork:
    """A :class:`~snn2chip.chip.ChipNet` as Lava processes, built and connected, ready to embed.

    - ``process``: the hierarchical :class:`~snn2chip.backends.lava_neurons.network.ChipNetwork`
      holding the ports below; ``.run()`` and ``.stop()`` on it (or on any process connected to
      it) run the whole network.
    - ``inputs``: per input population, the ``InPort`` a source connects to:
      ``source.s_out.connect(lava_net.inputs[name])``. Its shape is Lava's, ``shapes[name]``. The
      source sends, every step, the population's payloads: 0/1 spikes, or for a graded input
      (``net.populations[name].payload_bits > 0``) integers ``round(x · input_scale)``
      (:meth:`encode` computes them). What it sends on step ``t`` reaches the first neurons on
      step ``t + 1``, as in the simulator.
    - ``outputs``: per output population, an ``OutPort`` with its spikes (graded payloads for a
      relay): ``lava_net.outputs[name].connect(sink.a_in)``.
    - ``processes``: the neuron process (``LIF``, ``SubtractiveLIF`` or ``GradedVec``) of every
      other population (probe its ``u``, ``v`` or connect to its ``s_out``); ``synapses`` the
      synapse process of every synapse group, by group name.
    - ``shapes``: every population's Lava shape, NIR's ``(C, H, W)`` reversed to ``(W, H, C)``
      (``nir_shapes``: as in the chip IR); Lava's flat index (a ``Dense`` row) follows it.
    """

    net: ChipNet
    process: Any
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    processes: Mapping[str, Any]
    synapses: Mapping[str, Any]
    shapes: Mapping[str, tuple[int, ...]]
    nir_shapes: Mapping[str, tuple[int, ...]]

    def encode(self, inputs, steps: int | None = None) -> dict[str, np.ndarray]:
        """Per input population, what a ``io.source.RingBuffer`` sends for ``inputs`` (as for
        :func:`~snn2chip.backends.simulator.simulate`: ``(samples, [steps,] *NIR shape)`` values,
        held for ``steps`` steps when constant): int32 ``(samples, *Lava shape, steps)``, so
        ``RingBuffer(data=encoded[name][b])`` feeds sample ``b``."""
        return _ring_data(make_payloads(self.net, inputs, steps)[0])

    def decode(self, name: str, data: np.ndarray) -> np.ndarray:
        """What a sink recorded of population ``name``, ``(*Lava shape, steps)``, in the simulator's
        layout ``(steps, *NIR shape)`` (int64)."""
        return from_lava(np.moveaxis(np.asarray(data), -1, 0), len(self.nir_shapes[name])).astype(np.int64)


def _ring_data(payloads: dict) -> dict[str, np.ndarray]:
    """Payloads ``(samples, steps, *NIR shape)`` per input as RingBuffer data ``(samples, *Lava shape, steps)``."""
    return {name: np.moveaxis(to_lava(x.numpy(), x.ndim - 2), 1, -1).astype(np.int32) for name, x in payloads.items()}


def require_lava() -> None:
    """A :class:`ModelError` saying how to get Lava, unless it is installed."""
    try:
        for module in ("lava.magma.core.run_conditions", "lava.magma.core.run_configs"):
            importlib.import_module(module)
    except ImportError:
        raise ModelError("Lava is not installed: the Lava check needs the 'lava' extra on Python 3.10 "
                         "(pip install 'snn2chip[lava]'; this repository's .venv has it)",
                         option="--backend lava / --lava-samples") from None


def build(net: ChipNet) -> LavaNetwork:
    """``net`` as connected Lava processes in a :class:`LavaNetwork` (fresh ones every call: Lava
    runs a process once). Without Lava installed, a :class:`ModelError` says how to get it."""
    require_lava()
    from snn2chip.backends.lava_neurons.network import ChipNetwork

    pops = net.populations
    shapes = {name: lava_shape(pop.shape) for name, pop in pops.items()}
    out_names = [name for name in net.outputs if pops[name].kind != "input"]  # an input has no process to send
    container = ChipNetwork(in_shapes=tuple(shapes[name] for name in net.inputs),
                            out_shapes=tuple(shapes[name] for name in out_names))
    inputs = {name: getattr(container, f"in_{i}") for i, name in enumerate(net.inputs)}
    outputs = {name: getattr(container, f"out_{i}") for i, name in enumerate(out_names)}
    procs = {name: _population(pop) for name, pop in pops.items() if pop.kind != "input"}
    synapses = {g.name: _connect(g, net, procs, inputs) for g in net.groups}
    for name, port in outputs.items():
        procs[name].s_out.connect(port)
    nir_shapes = {name: tuple(pop.shape) for name, pop in pops.items()}
    return LavaNetwork(net, container, *map(MappingProxyType, (inputs, outputs, procs, synapses, shapes, nir_shapes)))


def _attach(lnet: LavaNetwork, sample: dict[str, np.ndarray], steps: int, record: list[str], probe: list[str]):
    """Sources with one sample's payloads on ``lnet``'s inputs, sinks on the populations of
    ``record`` and u, v monitors on those of ``probe``: ``(sinks, monitors)``."""
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.monitor.process import Monitor

    for name, data in sample.items():
        Source(data=data).s_out.connect(lnet.inputs[name])
    sinks = {}
    for name in record:
        sinks[name] = Sink(shape=lnet.shapes[name], buffer=steps)
        lnet.processes[name].s_out.connect(sinks[name].a_in)
    monitors = {}
    for name in probe:
        for var in ("u", "v"):
            monitors[f"{name}.{var}"] = monitor = Monitor()
            monitor.probe(getattr(lnet.processes[name], var), steps)
    return sinks, monitors


def run_lava(
    net: ChipNet,
    inputs,
    steps: int | None = None,
    *,
    record: Iterable[str] | None = None,
    probe: Iterable[str] = (),
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """Run ``net`` in Lava; same arguments and results as :func:`snn2chip.backends.simulator.simulate`.
    Without Lava installed, a :class:`ModelError` says how to get it."""
    require_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg

    data, steps, samples = make_payloads(net, inputs, steps)
    record = list(net.outputs) if record is None else list(record)
    probe = list(probe)
    ring = _ring_data(data)
    results: dict[str, list[np.ndarray]] = {}
    for b in progress.bar(range(samples), "Lava", "sample", show_progress):
        lnet = build(net)
        sinks, monitors = _attach(lnet, {name: x[b] for name, x in ring.items()}, steps,
                                  [r for r in record if r not in net.inputs], probe)
        lnet.process.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        try:
            for name in record:
                values = data[name][b].numpy() if name in net.inputs else lnet.decode(name, sinks[name].data.get())
                results.setdefault(name, []).append(values.astype(np.int64))
            for key, monitor in monitors.items():
                name, var = key.rsplit(".", 1)
                proc = lnet.processes[name]
                trace = np.asarray(monitor.get_data()[proc.name][var]).reshape(steps, *lnet.shapes[name])
                results.setdefault(key, []).append(from_lava(trace, len(lnet.nir_shapes[name])).astype(np.int64))
        finally:
            lnet.process.stop()
    return {k: np.stack(v) for k, v in results.items()}
