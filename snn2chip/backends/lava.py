"""Lava back end: a :class:`~snn2chip.chip.ChipNet` rebuilt as Lava processes and run with
``Loihi2SimCfg(select_tag="fixed_pt")``, one sample at a time.

Input populations become ``io.source.RingBuffer``s, LIF populations ``LIF`` (bit-accurate
model) or, with reset by subtraction, :class:`~snn2chip.backends.lava_neurons.subtractive.SubtractiveLIF`,
relays ``GradedVec``, synapse groups ``Dense``/``DelayDense``/``Sparse``/``DelaySparse``/``Conv``.
Outputs are recorded with ``io.sink.RingBuffer``, u and v with ``Monitor``. Results have the
simulator's layout, so the two compare with ``==``.

Layout is handled here only: snn2chip keeps NIR's ``(C, H, W)`` order, Lava uses ``(W, H, C)``
(axes reversed), its flat index follows that order, and its Conv is a true convolution with
kernels ``(C_out, kW, kH, C_in)`` and ``(W, H)`` parameter pairs.
"""

from __future__ import annotations

from typing import Iterable

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


def _population(name: str, pop, sample: dict[str, np.ndarray]):
    """The Lava process of population ``name`` (``sample``: payloads ``(steps, *shape)`` per input)."""
    from lava.proc.graded.process import GradedVec
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    from snn2chip.backends.lava_neurons.subtractive import SubtractiveLIF

    nd, shape = len(pop.shape), lava_shape(pop.shape)
    if pop.kind == "input":
        return Source(data=np.moveaxis(to_lava(sample[name], nd), 0, -1).astype(np.int32))
    if pop.kind == "relay":
        return GradedVec(shape=shape, vth=pop.vth)
    bias = np.zeros(pop.shape, dtype=np.int32) if pop.bias_mant is None else pop.bias_mant
    params = dict(shape=shape, du=pop.du, dv=pop.dv, vth=pop.vth,
                  bias_mant=to_lava(np.asarray(bias, dtype=np.int32), nd), bias_exp=pop.bias_exp)
    return SubtractiveLIF(vsub=pop.vsub, **params) if pop.reset == "subtract" else LIF(**params)


def _connect_conv(g: SynapseGroup, src, dst, procs: dict) -> None:
    """A conv group as Lava's ``Conv`` between the processes of its populations ``src`` and ``dst``."""
    from lava.proc.conv.process import Conv

    conn = Conv(weight=lava_kernel(np.asarray(g.weights, dtype=np.int32)), input_shape=lava_shape(src.shape),
                padding=g.padding[::-1], stride=g.stride[::-1], dilation=g.dilation[::-1], groups=g.groups,
                num_message_bits=src.payload_bits)
    procs[g.src].s_out.connect(conn.s_in)
    # (O, 1, 1) -> (O,): Lava's (1, 1, O) and (O,) share the flat order
    (conn.a_out if len(dst.shape) == 3 else conn.a_out.reshape(lava_shape(dst.shape))).connect(procs[g.dst].a_in)


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


def _connect(g: SynapseGroup, net: ChipNet, procs: dict) -> None:
    """Connect the processes of group ``g``'s populations through a new Lava synapse process."""
    src, dst = net.populations[g.src], net.populations[g.dst]
    if g.kind == "conv" and not g.weight_exp:
        _connect_conv(g, src, dst, procs)
        return
    if g.kind == "conv":  # Lava's CPU Conv ignores weight_exp: Sparse applies it
        g = conv_as_sparse(g, src.shape, dst.shape)
    conn = _matrix_process(g, src, dst)
    out = procs[g.src].s_out
    (out.flatten() if len(src.shape) > 1 else out).connect(conn.s_in)
    conn.a_out.reshape(lava_shape(dst.shape)).connect(procs[g.dst].a_in)


def _build(net: ChipNet, sample: dict[str, np.ndarray], steps: int, record, probe):
    """The Lava processes of ``net`` for one sample, with sinks for ``record`` and monitors of
    u and v for ``probe``: ``(processes, sinks, monitors)``."""
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.monitor.process import Monitor

    procs = {name: _population(name, pop, sample) for name, pop in net.populations.items()}
    for g in net.groups:
        _connect(g, net, procs)
    sinks = {}
    for name in record:
        sinks[name] = Sink(shape=lava_shape(net.populations[name].shape), buffer=steps)
        procs[name].s_out.connect(sinks[name].a_in)
    monitors = {}
    for name in probe:
        for var in ("u", "v"):
            monitors[f"{name}.{var}"] = monitor = Monitor()
            monitor.probe(getattr(procs[name], var), steps)
    return procs, sinks, monitors


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
    try:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
    except ImportError:
        raise ModelError("Lava is not installed: the Lava check needs the 'lava' extra on Python 3.10 "
                         "(pip install 'snn2chip[lava]'; this repository's .venv has it)",
                         option="--backend lava / --lava-samples") from None

    data, steps, samples = make_payloads(net, inputs, steps)
    record = list(net.outputs) if record is None else list(record)
    probe = list(probe)
    results: dict[str, list[np.ndarray]] = {}
    for b in progress.bar(range(samples), "Lava", "sample", show_progress):
        sample = {name: data[name][b].numpy() for name in net.inputs}
        procs, sinks, monitors = _build(net, sample, steps, [r for r in record if r not in net.inputs], probe)
        anchor = next(iter(procs.values()))
        anchor.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        try:
            for name in record:
                pop = net.populations[name]
                if name in net.inputs:
                    values = sample[name]
                else:
                    values = from_lava(np.moveaxis(sinks[name].data.get(), -1, 0), len(pop.shape))
                results.setdefault(name, []).append(values.astype(np.int64))
            for key, monitor in monitors.items():
                name, var = key.rsplit(".", 1)
                pop = net.populations[name]
                trace = np.asarray(monitor.get_data()[procs[name].name][var]).reshape(steps, *lava_shape(pop.shape))
                results.setdefault(key, []).append(from_lava(trace, len(pop.shape)).astype(np.int64))
        finally:
            anchor.stop()
    return {k: np.stack(v) for k, v in results.items()}
