"""Bit-accurate simulator of a :class:`~snn2chip.chip.ChipNet`, vectorised over the batch.

Each step follows Lava's Loihi protocol: every synapse group delivers what it computed on the
previous step (or ``1 + delay`` steps earlier), inputs into one population are summed, every
population updates (:mod:`snn2chip.loihi`), then every group computes from this step's outputs.
Integer state is ``torch.int32`` as in Lava; synaptic sums are computed in float32 when a bound
on the group proves that exact (|sum| < 2**24), else in float64, then shifted and wrapped as
Lava does.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from snn2chip import memory, progress
from snn2chip.chip import loihi
from snn2chip.chip.ir import ChipNet, SynapseGroup
from snn2chip.errors import ModelError
from snn2chip.frontend import shapes


def _scatter(values: np.ndarray, g: SynapseGroup, shape: tuple[int, int]) -> np.ndarray:
    """A sparse group's per-synapse ``values`` as a dense ``(dst, src)`` matrix."""
    dense = np.zeros(shape, dtype=np.int64)
    dense[g.rows, g.cols] = values
    return dense


class _Group:
    """A synapse group ready to run: weights as float tensors, pending deliveries per delay."""

    def __init__(self, net: ChipNet, g: SynapseGroup, batch: int):
        self.g = g
        src, dst = net.populations[g.src], net.populations[g.dst]
        self.graded = src.payload_bits > 0
        self.out_shape = (batch, *dst.shape)
        payload = 2 ** (src.payload_bits - 1) if self.graded else 1
        if g.kind == "conv":
            weights = np.array(g.weights, dtype=np.int64)  # a writable copy: IR arrays are read-only
            bound = np.abs(weights).reshape(weights.shape[0], -1).sum(1).max(initial=0) * payload
            self.dtype = torch.float32 if bound < 2**24 else torch.float64
            self.small = bound < 2**23  # the sum can neither leave int32 nor wrap at 24 bits
            self.weights = torch.as_tensor(weights).to(self.dtype)
            depth = 1
        else:
            weights = loihi.effective_weights(g.weights, g.num_weight_bits)
            delays = np.zeros(weights.shape, dtype=np.int64) if g.delays is None else np.asarray(g.delays)
            if g.kind == "sparse":
                weights, delays = (_scatter(a, g, (dst.size, src.size)) for a in (weights, delays))
            depth = int(delays.max(initial=0)) + 1
            bound = np.abs(weights).sum(1).max(initial=0) * payload
            self.dtype = torch.float32 if bound < 2**24 else torch.float64
            self.small = bound * 2.0 ** max(g.weight_exp, 0) < 2**31  # shifted sums stay in int32
            self.by_delay = [torch.as_tensor(np.where(delays == k, weights, 0).T).to(self.dtype) for k in range(depth)]
        self.pending = [torch.zeros(self.out_shape, dtype=torch.int32) for _ in range(depth)]

    def deliver(self) -> torch.Tensor:
        """What arrives this step; the queue moves on by one step."""
        arriving = self.pending.pop(0)
        self.pending.append(torch.zeros(self.out_shape, dtype=torch.int32))
        return arriving

    def compute(self, sent: torch.Tensor) -> None:
        """Queue the synaptic input caused by ``sent`` (this step's output of the source)."""
        g = self.g
        x = sent.to(self.dtype)  # binary sources send 0/1 already
        if g.kind == "conv":
            y = F.conv2d(x, self.weights, None, g.stride, g.padding, g.dilation, g.groups).reshape(self.out_shape)
            self.pending[0] += y.to(torch.int32) if self.small else loihi.conv_output(y)
            return
        flat = x.reshape(x.shape[0], -1)
        for k, weights in enumerate(self.by_delay):
            total = flat @ weights  # integer-valued and exact (see the bounds in __init__)
            if self.small:
                acc = loihi.shift(total.to(torch.int32), g.weight_exp)
            else:
                acc = total.to(torch.int64)
                if self.graded:
                    acc = loihi.wrap(acc, 32)  # numpy's int32 dot
                acc = loihi.shift(acc, g.weight_exp).to(torch.int32)
            self.pending[k] += acc.reshape(self.out_shape)


def payloads(net: ChipNet, inputs, steps: int | None) -> tuple[dict[str, torch.Tensor], int, int]:
    """Integer payloads ``(batch, steps, *shape)`` per input population from user values."""
    if not isinstance(inputs, Mapping):
        if len(net.inputs) != 1:
            raise ModelError(f"the network has {len(net.inputs)} inputs ({', '.join(net.inputs)}): pass a dict")
        inputs = {net.inputs[0]: inputs}
    result, lengths, batches = {}, set(), set()
    for name in net.inputs:
        if name not in inputs:
            raise ModelError(f"no input given for input population '{name}'")
        pop = net.populations[name]
        x = np.asarray(inputs[name], dtype=np.float64)
        layout = shapes.input_layout(x.shape, pop.shape)
        if layout == shapes.HELD:
            if steps is None:
                raise ModelError("constant inputs (samples, *shape) need the number of steps", node=name)
            x = shapes.over_steps(x, pop.shape, steps)
        elif layout is None:
            raise ModelError(f"input has shape {x.shape}; expected (samples, [steps,] {', '.join(map(str, pop.shape))})", node=name)
        if not np.isfinite(x).all():
            raise ModelError("input holds NaN or infinite values", node=name)
        if pop.payload_bits == 0:
            payload = x * pop.input_scale
            if not np.isin(payload, (0, 1)).all():
                bad = payload[~np.isin(payload, (0, 1))].flat[0]
                raise ModelError(f"input is binary spikes: every value must be 0 or 1, found {bad:g} (graded inputs "
                                 "need --input-bits B and --input-scale S when compiling)", node=name)
        else:
            payload = np.round(x * pop.input_scale)
            limit = 2 ** (pop.payload_bits - 1) - 1
            if np.any(np.abs(payload) > limit):
                raise ModelError(f"input values up to {np.abs(x).max():g} do not fit {pop.payload_bits}-bit signed "
                                 f"payloads (|round(x * {pop.input_scale:g})| <= {limit})", node=name)
        result[name] = torch.as_tensor(payload.astype(np.int32))
        lengths.add(x.shape[1])
        batches.add(x.shape[0])
    if len(lengths) != 1 or len(batches) != 1 or (steps is not None and lengths != {steps}):
        raise ModelError(f"inputs disagree on steps {sorted(lengths)} (asked {steps}) or samples {sorted(batches)}")
    return result, lengths.pop(), batches.pop()


def estimate_bytes(net: ChipNet, samples: int, chunk: int, steps: int, record: list[str],
                   probe: list[str]) -> list[tuple[int, str]]:
    """Peak memory of :func:`simulate` by consumer, ``(bytes, what)``, largest first: the
    per-group matrices it builds (a sparse group becomes a dense ``(dst, src)`` matrix per
    delay), the queues of pending inputs, the neuron state and the records."""
    consumers = []
    for g in net.groups:
        src, dst = net.populations[g.src], net.populations[g.dst]
        depth = 1 + (int(np.max(g.delays)) if g.delays is not None and np.size(g.delays) else 0)
        matrix = np.size(g.weights) * 8 if g.kind == "conv" else dst.size * src.size * (16 + 8 * depth)
        consumers.append((matrix + 4 * chunk * dst.size * (depth + 1), f"synapse group '{g.name}'"))
    neurons = sum(p.size for p in net.populations.values())
    consumers.append((4 * chunk * neurons * 4, f"the state of {neurons:,} neurons for {chunk} samples"))
    inputs = sum(net.populations[n].size for n in net.inputs)
    consumers.append((12 * samples * steps * inputs, f"the inputs of {samples} samples x {steps} steps"))
    recorded = sum(net.populations[n].size for n in record) + 2 * sum(net.populations[n].size for n in probe)
    consumers.append((12 * (samples + chunk) * steps * recorded,
                      f"the records of {len(record) + 2 * len(probe)} populations over {samples} samples x {steps} steps"))
    return sorted(consumers, reverse=True)


def _extent(net: ChipNet, inputs, steps: int | None) -> tuple[int, int]:
    """Samples and steps that user ``inputs`` ask for, read off the first input's shape (checked
    later by :func:`payloads`); steps 1 when unknown."""
    first = np.shape(inputs if not isinstance(inputs, Mapping) else next(iter(inputs.values()), ()))
    if not first:
        return 0, 1
    timed = shapes.has_time_axis(first, net.populations[net.inputs[0]].shape)
    return first[0], first[1] if timed else (steps or 1)


def simulate(
    net: ChipNet,
    inputs,
    steps: int | None = None,
    *,
    record: Iterable[str] | None = None,
    probe: Iterable[str] = (),
    batch_size: int | None = None,
    show_progress: bool = False,
) -> dict[str, np.ndarray]:
    """Run ``net``; return ``{pop: (samples, steps, *shape)}`` outputs and ``{pop.u, pop.v}`` probes.

    ``inputs``: user values per input population (an array if there is one), ``(samples, *shape)``
    held for ``steps`` or ``(samples, steps, *shape)``; they become payloads ``round(x * scale)``.
    ``record``: populations whose outputs (spikes 0/1, or graded payloads) to return (default:
    the network outputs). ``probe``: LIF populations whose u and v to return as well.
    """
    record = list(net.outputs) if record is None else list(record)
    probe = list(probe)
    for name in record + probe:
        if name not in net.populations:
            raise ModelError(f"cannot record population '{name}': no such population",
                             option="--record" if name in record else "--probe")
    for name in probe:
        if net.populations[name].kind != "lif":
            raise ModelError(f"cannot probe population '{name}': it is a {net.populations[name].kind}, without u and v",
                             option="--probe")
    samples, steps_asked = _extent(net, inputs, steps)
    chunk = min(batch_size or samples, samples) or 1
    consumers = estimate_bytes(net, samples, chunk, steps_asked, record, probe)
    memory.check(sum(b for b, _ in consumers), f"simulating {samples} samples x {steps_asked} steps",
                 file=net.source or None, hint=f"the largest consumer is {consumers[0][1]} ({memory.fmt(consumers[0][0])}); "
                      "use a smaller --batch-size, fewer samples or fewer steps")
    data, steps, samples = payloads(net, inputs, steps)
    results: dict[str, np.ndarray] = {}
    for start in progress.bar(range(0, samples, chunk), "chip simulator", "batch", show_progress):
        part = {n: p[start : start + chunk] for n, p in data.items()}
        for key, values in _run(net, part, steps, record, probe).items():
            results.setdefault(key, np.zeros((samples, *values.shape[1:]), dtype=values.dtype))[start : start + chunk] = values
    return results


def _run(net: ChipNet, payloads: dict[str, torch.Tensor], steps: int, record, probe) -> dict[str, np.ndarray]:
    batch = next(iter(payloads.values())).shape[0]
    groups = [_Group(net, g, batch) for g in net.groups]
    incoming = {name: [grp for grp in groups if grp.g.dst == name] for name in net.populations}
    state, bias = {}, {}
    for name, pop in net.populations.items():
        if pop.kind == "lif":
            state[name] = (torch.zeros((batch, *pop.shape), dtype=torch.int32),) * 2
            mant = np.zeros(pop.shape) if pop.bias_mant is None else pop.bias_mant
            effective = loihi.effective_bias(mant, pop.bias_exp).astype(np.int32)
            bias[name] = torch.as_tensor(effective) if effective.any() else None
    out = {k: torch.zeros((batch, steps, *net.populations[k].shape), dtype=torch.int32) for k in record}
    probes = {f"{p}.{var}": torch.zeros((batch, steps, *net.populations[p].shape), dtype=torch.int32)
              for p in probe for var in ("u", "v")}
    for t in range(steps):
        arriving = {grp.g.name: grp.deliver() for grp in groups}
        sent = {}
        for name, pop in net.populations.items():
            if pop.kind == "input":
                sent[name] = payloads[name][:, t]
                continue
            terms = [arriving[grp.g.name] for grp in incoming[name]]
            a_in = terms[0] if terms else torch.zeros((batch, *pop.shape), dtype=torch.int32)
            for term in terms[1:]:
                a_in = a_in + term  # int32, wrapping as Lava's summed ports do
            if pop.kind == "relay":
                sent[name] = loihi.relay_step(a_in, pop.vth)
                continue
            u, v, spikes = loihi.lif_step(*state[name], a_in, pop.du, pop.dv, bias[name], pop.vth, pop.vsub)
            state[name] = (u, v)
            sent[name] = spikes.to(torch.int32)
            if name in probe:
                probes[f"{name}.u"][:, t], probes[f"{name}.v"][:, t] = u, v
        for grp in groups:
            grp.compute(sent[grp.g.src])
        for name in record:
            out[name][:, t] = sent[name]
    return {k: v.numpy().astype(np.int64) for k, v in {**out, **probes}.items()}
