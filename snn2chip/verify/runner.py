"""``snn2chip verify``: a compiled network against its float reference, Lava and a golden file.

On the same inputs: the float reference and the bit-accurate simulator (accuracies, prediction
agreement, per-layer firing rates, via :func:`snn2chip.verify.fidelity.fidelity`); the simulator's
chip activity (spikes, synaptic operations, neuron updates, an energy estimate from
:mod:`snn2chip.verify.energy`, latency in steps); Lava on the first samples, which must equal the
simulator bit for bit (every population, every step); and optionally a golden file of the
simulator's outputs, for users' regression tests.

Time on chip: the input is held for ``steps`` steps and followed by ``D`` (pipeline depth) zero
steps, so one inference lasts ``steps + D`` chip steps (:func:`snn2chip.verify.fidelity.chip_inputs`).

Golden files (``.npz``): ``meta`` (JSON: format, model file and its SHA-256, target, compile
options, chip IR format, snn2chip version, inputs' SHA-256, samples, steps), ``out:NAME`` per
output population (its outputs, and ``out:NAME.v`` its membrane for LIF populations),
``(samples, steps + D, *shape)`` int32, and ``predictions``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from snn2chip import memory, progress
from snn2chip.verify import energy, fidelity, lava_check
from snn2chip.backends import replay, simulator
from snn2chip.chip.ir import ChipNet, SynapseGroup
from snn2chip.verify.data import Dataset
from snn2chip.verify.reports import Check, Fidelity, LavaCheck, Latency, PopulationActivity, VerifyReport
from snn2chip.errors import ModelError
from snn2chip.files import atomic_dir
from snn2chip.frontend.graph import Graph

DEFAULT_STEPS = 100
#: ``--data digits`` sends image / 16 as graded payloads 0..16 (exact).
DIGITS_INPUT = {"input_bits": 6, "input_scale": 16.0}
CHUNK = 64  # samples per simulator run when counting activity (bounds memory)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Steps and input encoding of a verify run, and where each came from (for the report)."""

    steps: int
    steps_source: str
    input_bits: int
    input_scale: float
    input_source: str


def settings(graph: Graph, dataset: Dataset, data_spec: str, steps: int | None,
             input_bits: int | None, input_scale: float | None) -> Settings:
    """Resolve unset options. Steps: ``--steps``; else the data's time axis; else the model's
    metadata ``time_steps``; else 100. Input encoding:
    the options; else for ``digits`` 6 bits at scale 16; else binary spikes at scale 1."""
    data_steps = dataset.steps(graph.out_shapes[graph.inputs[0]])
    if data_steps is not None and steps not in (None, data_steps):
        raise ModelError(f"--steps {steps} disagrees with the data's time axis of {data_steps} steps", file=data_spec)
    candidates = [(steps, "--steps"), (data_steps, "the data's time axis"),
                  (graph.metadata.get("time_steps"), "model metadata 'time_steps'"), (DEFAULT_STEPS, "default")]
    chosen, source = next((int(v), s) for v, s in candidates if v is not None)
    defaults = DIGITS_INPUT if data_spec == "digits" else {"input_bits": 0, "input_scale": 1.0}
    given = (input_bits is not None) + (input_scale is not None)
    default_name = "digits defaults" if data_spec == "digits" else "defaults: binary spikes"
    which = ["options", f"options and {default_name}", default_name][2 - given]
    return Settings(chosen, source, defaults["input_bits"] if input_bits is None else input_bits,
                    defaults["input_scale"] if input_scale is None else float(input_scale), which)


def fanout(net: ChipNet, g: SynapseGroup) -> np.ndarray:
    """Synapses (non-zero stored weights) leaving each source neuron of group ``g``, flat.

    A conv's fan-out is the gradient of the summed output of a convolution with the kernel's
    non-zero mask (edges and strides included), so no dense matrix is built."""
    src = net.populations[g.src]
    weights = np.asarray(g.weights)
    if g.kind == "conv":
        x = torch.ones((1, *src.shape), dtype=torch.float64, requires_grad=True)
        mask = torch.as_tensor(weights != 0, dtype=torch.float64)
        F.conv2d(x, mask, None, g.stride, g.padding, g.dilation, g.groups).sum().backward()
        return x.grad.reshape(-1).round().to(torch.int64).numpy()
    if g.kind == "sparse":
        return np.bincount(np.asarray(g.cols)[weights != 0], minlength=src.size)
    return np.count_nonzero(weights, axis=0)


@dataclasses.dataclass
class Result:
    """A verify run: its ``report``, the simulator's ``outputs`` for golden files,
    chip ``predictions``, and ``raster`` (sample 0's chip spikes per layer) for plots."""

    report: VerifyReport
    outputs: dict[str, np.ndarray]
    predictions: np.ndarray
    raster: dict[str, np.ndarray]
    inputs_sha256: list[str]


def _activity(net: ChipNet, x: np.ndarray, steps: int, keep: int, everywhere: list[str], probe: list[str],
              bar) -> tuple[dict, dict]:
    """Per population and sample: messages (non-zero outputs) and the synaptic operations they
    cause, counted while the simulator runs; the records named in ``everywhere`` for every sample
    (of non-output populations only their steps aligned with the float steps, as int8, when
    ``keep`` is 0), or of every population in full for the first ``keep`` samples (for the
    whole-network Lava check)."""
    fans = {p: [fanout(net, g) for g in net.groups if g.src == p] for p in net.populations}
    outputs = set(net.outputs)  # recorded in full (golden files)
    weights = {p: sum(f, np.zeros(net.populations[p].size, np.int64)) for p, f in fans.items()}
    spikes = {p: np.zeros(len(x), dtype=np.int64) for p in net.populations}
    synops = {p: np.zeros(len(x), dtype=np.int64) for p in net.populations}
    kept: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(x), CHUNK):
        part = fidelity.chip_inputs(net, x[start : start + CHUNK], steps)
        record = list(net.populations) if start < keep else [p for p in dict.fromkeys(everywhere) if p in net.populations]
        windows = fidelity.windows(net, [p for p in record if p not in outputs], steps) if not keep else None
        records = simulator.simulate(net, part, record=record, probe=probe, activity=weights, windows=windows)
        for p in net.populations:
            spikes[p][start : start + len(part)] = records.pop(f"{p}:messages")
            synops[p][start : start + len(part)] = records.pop(f"{p}:weighted").round().astype(np.int64)
        for key, values in records.items():
            if key in everywhere or start < keep:
                kept.setdefault(key, []).append(values if key in everywhere else values[: keep - start])
        bar.update(len(part))
    return {"spikes": spikes, "synops": synops, "fans": fans}, {k: np.concatenate(v) for k, v in kept.items()}


def _digest(x: np.ndarray) -> list[str]:
    """SHA-256 per sample of its float32 values (golden files check they see the same inputs)."""
    return [hashlib.sha256(np.ascontiguousarray(s, dtype=np.float32).tobytes()).hexdigest() for s in x]


def _check_memory(graph: Graph, net: ChipNet, samples: int, steps: int, probe: list[str]) -> None:
    """Before running: the simulator's chunks, the chip records kept for every sample and the
    float reference's records must fit the memory budget."""
    chip_steps = steps + net.pipeline_depth
    chunk = min(samples, CHUNK)
    spiking = [p for p in fidelity.spiking_populations(graph, net) if p not in net.outputs]
    consumers = simulator.estimate_bytes(net, chunk, chunk, chip_steps, [*spiking, *net.outputs], probe,
                                         windows=fidelity.windows(net, spiking, steps))
    kept = [*spiking, *net.outputs, *probe]
    consumers.append((samples * steps * sum(net.populations[p].size for p in spiking)
                      + 8 * samples * chip_steps * (sum(net.populations[p].size for p in net.outputs)
                                                    + 2 * sum(net.populations[p].size for p in probe)),  # u and v
                      f"the chip records of {len(kept)} populations over {samples} samples"))
    consumers.append((8 * samples * steps * sum(net.populations[p].size for p in kept),
                      f"the float reference's records over {samples} samples"))
    largest = max(consumers)
    memory.check(sum(b for b, _ in consumers), f"verifying {samples} samples x {steps} steps", file=graph.source,
                 hint=f"the largest consumer is {largest[1]} ({memory.fmt(largest[0])}); use fewer --samples or --steps")


def run(graph: Graph, net: ChipNet, dataset: Dataset, setup: Settings, *, target: str = "loihi2",
        dt: float | None = None, lava_samples: int = 0, lava_populations: str | None = None,
        show_progress: bool = False) -> Result:
    """Verify ``net`` (compiled from ``graph``) on every sample of ``dataset`` and Lava on the first
    ``lava_samples``: the whole network, or with ``lava_populations`` (``all``, ``N`` or names, see
    :func:`snn2chip.backends.replay.choose`) those populations replayed one at a time."""
    x, steps, samples = np.asarray(dataset.x), setup.steps, len(dataset.x)
    _, key = fidelity.readout(graph, net)
    probe = [p for p in net.outputs if net.populations[p].kind == "lif"]  # includes an integrating read-out
    outputs = list(net.outputs) + [f"{p}.v" for p in probe]
    _check_memory(graph, net, samples, steps, probe)
    replayed = replay.choose(net, lava_populations) if lava_populations and lava_samples else None
    total = 2 * samples + (lava_samples if replayed is None else len(replayed))
    with progress.bar(range(total), "verify", "sample", show_progress) as bar:  # advanced by hand
        bar.set_postfix_str("chip simulator")
        counts, records = _activity(net, x, steps, lava_samples if replayed is None else 0,
                                    outputs + fidelity.spiking_populations(graph, net), probe, bar)
        bar.set_postfix_str("float reference")
        fid = fidelity.fidelity(graph, net, x, steps, dt=dt, labels=dataset.y, chips=records)
        bar.update(samples)
        if lava_samples:
            bar.set_postfix_str("Lava")
        lava = None
        if replayed is not None:
            lava = lava_check.replay_check(net, x[:lava_samples], steps, replayed, bar)
        elif lava_samples:
            lava = lava_check.network_check(net, x[:lava_samples], steps, records, probe, bar)
    report = _report(net, dataset, setup, target, counts, fid, lava_samples, lava)
    outputs = {k: records[k].astype(np.int32) for k in outputs}
    raster = {layer.population: fidelity.aligned(net, layer.population, records[layer.population], steps)[0]
              for layer in fid.layers}
    return Result(report, outputs, fidelity.chip_prediction(net, key, records[key], steps), raster, _digest(x))


def _populations(net: ChipNet, counts: dict, fid: Fidelity) -> tuple[PopulationActivity, ...]:
    """The report's entry per population: size, spikes and synaptic operations, and for spiking
    populations their float and chip firing rates and spike agreement."""
    rates = {layer.population: layer for layer in fid.layers}
    return tuple(PopulationActivity(
        p, pop.kind, pop.size, float(counts["spikes"][p].mean() / pop.size), float(counts["synops"][p].mean()),
        **({k: getattr(rates[p], k) for k in ("float_rate", "chip_rate", "rate_error", "spike_agreement")}
           if p in rates else {}),
    ) for p, pop in net.populations.items())


LATENCY_NOTE = ("Loihi time steps have no fixed duration (asynchronous cores; an unthrottled step lasts as long as its "
                "traffic needs): no public time-per-step figure applies, so none is given")


def _report(net: ChipNet, dataset: Dataset, setup: Settings, target: str, counts: dict, fid: Fidelity,
            lava_samples: int, lava: LavaCheck | None) -> VerifyReport:
    """The verify report from the chip activity ``counts``, the :func:`fidelity
    <snn2chip.verify.fidelity.fidelity>` report ``fid`` and the Lava comparison ``lava``."""
    steps = setup.steps
    chip_steps = steps + net.pipeline_depth
    neurons = {p: pop.size for p, pop in net.populations.items() if pop.kind != "input"}
    total_neurons = sum(neurons.values())
    spikes = sum(counts["spikes"][p].mean() for p in neurons)
    synops = sum(counts["synops"][p].mean() for p in net.populations)
    messages = sum(counts["spikes"][p].mean() * len(counts["fans"][p]) for p in net.populations)
    updates = total_neurons * chip_steps
    joules = energy.estimate(target, synops, updates, spikes, messages)
    return VerifyReport(
        model=net.source or None, data=dataset.name, samples=len(dataset.x), steps=steps,
        steps_source=setup.steps_source, input_bits=setup.input_bits, input_scale=setup.input_scale,
        input_source=setup.input_source, float_accuracy=fid.float_accuracy, chip_accuracy=fid.chip_accuracy,
        agreement=fid.output_agreement, lava_samples=lava_samples, lava_bit_exact=None if lava is None else lava.bit_exact,
        pipeline_depth=net.pipeline_depth, latency_steps=chip_steps,
        latency=Latency(chip_steps, steps, net.pipeline_depth, None, LATENCY_NOTE),
        neurons=total_neurons, spikes_per_neuron=float(spikes / total_neurons), spikes_per_sample=float(spikes),
        synops_per_sample=float(synops), neuron_updates_per_sample=updates, energy_per_inference_j=joules.total_j,
        energy=joules, layers=fid.layers, populations=_populations(net, counts, fid), target=target, lava=lava,
    )


# --- checks and the output folder -----------------------------------------------------------


def checks(report: VerifyReport, min_agreement: float) -> tuple[Check, ...]:
    """The pass/fail checks asked for: agreement always, Lava when run, golden when compared
    (``report.golden``: ``status`` ``match``, ``mismatch`` or ``written``, and ``detail``)."""
    result = [Check("agreement", report.agreement >= min_agreement,
                    f"agreement {100 * report.agreement:.2f}% (minimum {100 * min_agreement:.2f}%)")]
    lava = report.lava
    if lava is not None:
        what = "Lava" if lava.mode == "network" else f"Lava replaying {lava.populations} populations one at a time"
        samples = f"{lava.samples} sample{'s' * (lava.samples != 1)}"
        detail = (f"{what} equals the simulator bit for bit on {samples}" if lava.bit_exact
                  else f"{what} differs from the simulator: {lava.first_difference}")
        result.append(Check("lava", lava.bit_exact, detail))
    golden = report.golden
    if golden is not None and golden.status != "written":
        result.append(Check("golden", golden.status == "match", golden.detail))
    return tuple(result)


def judged(report: VerifyReport, min_agreement: float) -> VerifyReport:
    """``report`` with its checks and whether all passed."""
    found = checks(report, min_agreement)
    return dataclasses.replace(report, checks=found, passed=all(c.passed for c in found))


def write_dir(out_dir: str | Path, report: VerifyReport, result: Result, inputs=()) -> None:
    """Write ``report.json``, ``rates.png`` and ``raster.png`` into ``out_dir`` when complete; an
    existing ``out_dir`` is replaced only if it is a previous verify output holding none of ``inputs``."""
    from snn2chip.report import plots

    with atomic_dir(out_dir, "verify", inputs) as tmp:
        (tmp / "report.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
        plots.firing_rates(report.layers, tmp / "rates.png")
        plots.raster(result.raster, tmp / "raster.png")
