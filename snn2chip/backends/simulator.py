"""Bit-accurate simulator of a :class:`~snn2chip.chip.ChipNet`, vectorised over the batch.

Lava's Loihi protocol: every synapse group delivers what its source sent on the previous step (or
``1 + delay`` steps earlier), inputs into one population are summed, every population updates
(:mod:`snn2chip.chip.loihi`). Integer state is ``torch.int32`` as in Lava; synaptic sums are exact
(float32 where a bound proves |sum| < 2**24, else float64), then shifted and wrapped as Lava does.
Two schedules give the same integers (:mod:`snn2chip.backends.sim.schedule`): ``layer`` (the
default: population by population over all steps, step by step only inside recurrent cycles) and
``step`` (every population, step by step). Synapse groups run as convolutions, matrix, sparse or
elementwise products (:mod:`snn2chip.backends.sim.ops`), never as dense matrices unless dense.
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Iterable, Mapping

import numpy as np
import torch

from snn2chip import memory, progress
from snn2chip.backends.sim import footprint, schedule as schedule_
from snn2chip.backends.sim.tally import Tally
from snn2chip.chip.ir import ChipNet
from snn2chip.errors import ModelError
from snn2chip.frontend import shapes


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


@dataclasses.dataclass
class _Known:
    """What runs of one network compute once: its structure and its groups' memory (for the memory
    check) and, from its first run on, its plan."""

    structure: schedule_.Structure
    groups: list[tuple[int, str]]
    plan: schedule_.Plan | None = None


_KNOWN: dict[int, _Known] = {}


def _known(net: ChipNet) -> _Known:
    """The :class:`_Known` of ``net``, kept while it lives (a ChipNet and its arrays are immutable)."""
    if id(net) not in _KNOWN:
        _KNOWN[id(net)] = _Known(schedule_.structure(net), footprint.weights(net))
        weakref.finalize(net, _KNOWN.pop, id(net), None)
    return _KNOWN[id(net)]


def estimate_bytes(net: ChipNet, samples: int, chunk: int, steps: int, record: list[str],
                   probe: list[str], schedule: str = "layer",
                   windows: Mapping[str, tuple[int, int]] | None = None) -> list[tuple[int, str]]:
    """Peak memory of :func:`simulate` by consumer, ``(bytes, what)``, largest first: each synapse
    group's ops, the run's state in ``schedule`` for ``chunk`` samples (the layer schedule keeps
    every step of the outputs still to be read), the inputs and the records (``windows`` as for
    :func:`simulate`)."""
    known = _known(net)
    return footprint.consumers(net, known.structure, known.groups, samples, chunk, steps, list(record), list(probe),
                               schedule, windows)


def _extent(net: ChipNet, inputs, steps: int | None) -> tuple[int, int]:
    """Samples and steps that user ``inputs`` ask for, read off the first input's shape (checked
    later by :func:`payloads`); steps 1 when unknown."""
    first = np.shape(inputs if not isinstance(inputs, Mapping) else next(iter(inputs.values()), ()))
    if not first:
        return 0, 1
    timed = shapes.has_time_axis(first, net.populations[net.inputs[0]].shape)
    return first[0], first[1] if timed else (steps or 1)


def _fit(net: ChipNet, samples: int, steps: int, batch_size: int | None, record: list[str], probe: list[str],
         schedule: str, windows: Mapping[str, tuple[int, int]] | None = None) -> tuple[str, int]:
    """The schedule and chunk of samples to run: as asked if that fits the memory budget; else, when
    no batch size was given, the layer schedule on fewer samples at a time, or the step schedule
    (same results). Refuses with the asked configuration's largest consumer."""
    chunk = min(batch_size or samples, samples) or 1
    tries = [(schedule, chunk)]
    if batch_size is None and schedule == "layer":
        tries += [("layer", c) for c in (chunk >> k for k in range(1, chunk.bit_length())) if c]
        tries.append(("step", chunk))
    budget = memory.budget()
    for sched, c in tries:
        if sum(b for b, _ in estimate_bytes(net, samples, c, steps, record, probe, sched, windows)) <= budget:
            return sched, c
    consumers = estimate_bytes(net, samples, chunk, steps, record, probe, schedule, windows)
    memory.check(sum(b for b, _ in consumers), f"simulating {samples} samples x {steps} steps", file=net.source or None,
                 hint=f"the largest consumer is {consumers[0][1]} ({memory.fmt(consumers[0][0])}); "
                      "use a smaller --batch-size, fewer samples or fewer steps")
    return schedule, chunk


def _check_names(net: ChipNet, record: list[str], probe: list[str], schedule: str) -> None:
    for name in record + probe:
        if name not in net.populations:
            raise ModelError(f"cannot record population '{name}': no such population",
                             option="--record" if name in record else "--probe")
    for name in probe:
        if net.populations[name].kind != "lif":
            raise ModelError(f"cannot probe population '{name}': it is a {net.populations[name].kind}, without u and v",
                             option="--probe")
    if schedule not in schedule_.SCHEDULES:
        raise ModelError(f"unknown schedule '{schedule}'; expected one of {', '.join(schedule_.SCHEDULES)}")


def simulate(
    net: ChipNet,
    inputs,
    steps: int | None = None,
    *,
    record: Iterable[str] | None = None,
    probe: Iterable[str] = (),
    batch_size: int | None = None,
    show_progress: bool = False,
    schedule: str = "layer",
    activity: Mapping[str, np.ndarray] | None = None,
    windows: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, np.ndarray]:
    """Run ``net``; return ``{pop: (samples, steps, *shape)}`` outputs and ``{pop.u, pop.v}`` probes (int64).

    ``inputs``: user values per input population (an array if there is one), ``(samples, *shape)``
    held for ``steps`` or ``(samples, steps, *shape)``; they become payloads ``round(x * scale)``.
    ``record``: populations whose outputs (spikes 0/1, or graded payloads) to return (default:
    the network outputs). ``probe``: LIF populations whose u and v to return as well.
    ``batch_size``: samples per run (default all, fewer if the memory budget requires).
    ``schedule``: ``"layer"`` or ``"step"``, the order of computation (same results).
    ``activity``: per population a weight per neuron (flat); adds ``NAME:messages`` (its non-zero
    outputs over all steps) and ``NAME:weighted`` (their sum of weights) per sample, ``(samples,)``,
    counted as the run goes, so nothing needs recording (:mod:`snn2chip.backends.sim.tally`).
    ``windows``: per recorded population the steps ``[start, stop)`` to return, as int8 for
    binary spikes (the rest of the steps is not kept past the run).
    """
    record = list(net.outputs) if record is None else list(record)
    probe = list(probe)
    _check_names(net, record, probe, schedule)
    samples, steps_asked = _extent(net, inputs, steps)
    schedule, chunk = _fit(net, samples, steps_asked, batch_size, record, probe, schedule, windows)
    data, steps, samples = payloads(net, inputs, steps)
    known = _known(net)
    known.plan = known.plan or schedule_.Plan(net, known.structure)
    windows = dict(windows or {})
    weights = {p: torch.as_tensor(w, dtype=torch.float64).reshape(-1) for p, w in (activity or {}).items()}
    results: dict[str, np.ndarray] = {}
    for start in progress.bar(range(0, samples, chunk), "chip simulator", "batch", show_progress):
        part = {n: p[start : start + chunk].transpose(0, 1).contiguous() for n, p in data.items()}
        size = next(iter(part.values())).shape[1]
        tally = Tally(weights, size)
        for key, values in schedule_.run(known.plan, part, steps, record, probe, schedule, tally, windows).items():
            values = values.expand(len(values), size, *values.shape[2:]).transpose(0, 1).numpy()
            dtype = np.int8 if key in windows and not net.populations[key].payload_bits else np.int64
            results.setdefault(key, np.zeros((samples, *values.shape[1:]), dtype=dtype))[start : start + size] = values
        for key, values in tally.results().items():
            results.setdefault(key, np.zeros(samples, dtype=values.numpy().dtype))[start : start + size] = values.numpy()
    return results
