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
import json
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np

from snn2chip import memory, progress
from snn2chip.verify import energy, fidelity, lava_check, shards
from snn2chip.backends import replay, simulator
from snn2chip.chip.ir import ChipNet
from snn2chip.verify.data import Dataset
from snn2chip.verify.reports import (Check, Execution, Fidelity, LavaCheck, Latency, PopulationActivity,
                                     VerifyReport)
from snn2chip.errors import ModelError
from snn2chip.files import atomic_dir
from snn2chip.frontend.graph import Graph

DEFAULT_STEPS = 100
#: ``--data digits`` sends image / 16 as graded payloads 0..16 (exact).
DIGITS_INPUT = {"input_bits": 6, "input_scale": 16.0}


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


@dataclasses.dataclass
class Result:
    """A verify run: its ``report``, the simulator's ``outputs`` for golden files,
    chip ``predictions``, and ``raster`` (sample 0's chip spikes per layer) for plots."""

    report: VerifyReport
    outputs: dict[str, np.ndarray]
    predictions: np.ndarray
    raster: dict[str, np.ndarray]
    inputs_sha256: list[str]


def _check_memory(graph: Graph, net: ChipNet, samples: int, steps: int, chunk: int, parallel: int) -> None:
    """Before running: ``parallel`` shards at a time on this machine, each simulating and
    running the float reference on ``chunk`` samples, and the output records kept for every
    sample, must fit the memory budget."""
    chip_steps = steps + net.pipeline_depth
    spiking = [p for p in fidelity.spiking_populations(graph, net) if p not in net.outputs]
    probe = [p for p in net.outputs if net.populations[p].kind == "lif"]
    running = simulator.estimate_bytes(net, chunk, chunk, chip_steps, [*spiking, *net.outputs], probe,
                                       windows=fidelity.windows(net, spiking, steps))
    running.append((8 * chunk * steps * sum(net.populations[p].size for p in [*spiking, *net.outputs]),
                    f"the float reference's records of {chunk} samples"))
    consumers = [(parallel * b, what if parallel == 1 else f"{what} in each of {parallel} workers") for b, what in running]
    consumers.append((4 * samples * chip_steps * sum(net.populations[p].size * (1 + 2 * (p in probe)) for p in net.outputs),
                      f"the output records of {samples} samples"))
    largest = max(consumers)
    memory.check(sum(b for b, _ in consumers), f"verifying {samples} samples x {steps} steps", file=graph.source,
                 hint=f"the largest consumer is {largest[1]} ({memory.fmt(largest[0])}); use fewer --samples or --steps")


class Local:
    """Runs the shards one after another in this process."""

    mode, workers, local_workers, retried = "local", 1, 1, 0

    def shards(self, graph: Graph, net: ChipNet, steps: int, dt: float | None, x: np.ndarray,
               jobs: list[tuple[int, int]], advance: Callable[[int], None]) -> Iterator[shards.Shard]:
        """The :class:`~snn2chip.verify.shards.Shard` of each job ``[start, stop)`` of ``x``, as each finishes."""
        worker = shards.Worker(graph, net, steps, dt) if jobs else None
        for start, stop in jobs:
            yield worker.shard(x[start:stop], start, advance)


def run(graph: Graph, net: ChipNet, dataset: Dataset, setup: Settings, *, target: str = "loihi2",
        dt: float | None = None, lava_samples: int = 0, lava_populations: str | None = None,
        show_progress: bool = False, shard_size: int = shards.DEFAULT_SIZE, executor=None,
        finished: Mapping[int, shards.Shard] | None = None, keep: Callable[[shards.Shard], None] | None = None) -> Result:
    """Verify ``net`` (compiled from ``graph``) on every sample of ``dataset`` and Lava on the first
    ``lava_samples``: the whole network, or with ``lava_populations`` (``all``, ``N`` or names, see
    :func:`snn2chip.backends.replay.choose`) those populations replayed one at a time.

    The samples run in shards of ``shard_size`` (:mod:`snn2chip.verify.shards`) on ``executor``
    (default :class:`Local`; :class:`snn2chip.verify.cluster.Cluster` for Ray), except those in
    ``finished`` (shards by first sample, from an interrupted run); ``keep(shard)`` is called as
    each shard finishes (to save it)."""
    x, steps, samples = np.asarray(dataset.x), setup.steps, len(dataset.x)
    executor = executor or Local()
    finished = dict(finished or {})
    _check_memory(graph, net, samples, steps, min(samples, shard_size, shards.CHUNK), executor.local_workers)
    probe = [p for p in net.outputs if net.populations[p].kind == "lif"]
    replayed = replay.choose(net, lava_populations) if lava_populations and lava_samples else None
    jobs = [job for job in shards.plan(samples, shard_size) if job[0] not in finished]
    total = samples + (lava_samples if replayed is None else len(replayed))
    began = time.perf_counter()
    with progress.bar(range(total), "verify", "sample", show_progress) as bar:  # advanced by hand
        bar.update(sum(s.stop - s.start for s in finished.values()))
        bar.set_postfix_str(f"{executor.mode}: simulator and float reference")
        for shard in executor.shards(graph, net, steps, dt, x, jobs, bar.update):
            finished[shard.start] = shard
            if keep:
                keep(shard)
        seconds = time.perf_counter() - began
        merged = shards.merge(list(finished.values()))
        if lava_samples:
            bar.set_postfix_str("Lava")
        lava = None
        if replayed is not None:
            lava = lava_check.replay_check(net, x[:lava_samples], steps, replayed, bar)
        elif lava_samples:
            lava = lava_check.network_check(net, x[:lava_samples], steps, probe, bar)
    fid = fidelity.summary(merged.tally, steps, dataset.y)
    done = sum(b - a for a, b in jobs)
    execution = Execution(executor.mode, executor.workers, len(finished), shard_size, len(finished) - len(jobs),
                          executor.retried, round(seconds, 3), round(done / seconds, 3) if done else None)
    report = _report(net, dataset, setup, target, merged, fid, lava_samples, lava, execution)
    return Result(report, merged.outputs, merged.tally.chip_pred, merged.raster, dataset.digests)


def _populations(net: ChipNet, counts: shards.Shard, fid: Fidelity) -> tuple[PopulationActivity, ...]:
    """The report's entry per population: size, spikes and synaptic operations, and for spiking
    populations their float and chip firing rates and spike agreement."""
    rates = {layer.population: layer for layer in fid.layers}
    return tuple(PopulationActivity(
        p, pop.kind, pop.size, float(counts.messages[p].mean() / pop.size), float(counts.synops[p].mean()),
        **({k: getattr(rates[p], k) for k in ("float_rate", "chip_rate", "rate_error", "spike_agreement")}
           if p in rates else {}),
    ) for p, pop in net.populations.items())


LATENCY_NOTE = ("Loihi time steps have no fixed duration (asynchronous cores; an unthrottled step lasts as long as its "
                "traffic needs): no public time-per-step figure applies, so none is given")


def _report(net: ChipNet, dataset: Dataset, setup: Settings, target: str, counts: shards.Shard,
            fid: Fidelity, lava_samples: int, lava: LavaCheck | None, execution: Execution) -> VerifyReport:
    """The verify report from the merged shards ``counts`` (chip activity), the :func:`fidelity
    <snn2chip.verify.fidelity.summary>` report ``fid``, the Lava comparison ``lava`` and how the
    run was carried out."""
    steps = setup.steps
    chip_steps = steps + net.pipeline_depth
    neurons = {p: pop.size for p, pop in net.populations.items() if pop.kind != "input"}
    total_neurons = sum(neurons.values())
    spikes = sum(counts.messages[p].mean() for p in neurons)
    synops = sum(counts.synops[p].mean() for p in net.populations)
    messages = sum(counts.messages[g.src].mean() for g in net.groups)  # one per spike and synapse group
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
        execution=execution,
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
