"""``snn2chip verify``: a compiled network against its float reference, Lava and a golden file.

On the same inputs: the float reference and the bit-accurate simulator (accuracies, prediction
agreement, per-layer firing rates, via :func:`snn2chip.compiler.fidelity`); the simulator's
chip activity (spikes, synaptic operations, neuron updates, an energy estimate from
:mod:`snn2chip.energy`, latency in steps); Lava on the first samples, which must equal the
simulator bit for bit (every population, every step); and optionally a golden file of the
simulator's outputs, for users' regression tests.

Time on chip: the input is held for ``steps`` steps and followed by ``D`` (pipeline depth) zero
steps, so one inference lasts ``steps + D`` chip steps (:func:`snn2chip.compiler.chip_inputs`).

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

import snn2chip
from snn2chip import chip, compiler, data, energy, memory, progress, simulator
from snn2chip.chip import ChipNet, SynapseGroup
from snn2chip.data import Dataset
from snn2chip.errors import ModelError
from snn2chip.files import atomic_dir
from snn2chip.graph import Graph

DEFAULT_MIN_AGREEMENT = 0.95
DEFAULT_STEPS = 100
#: ``--data digits`` sends image / 16 as graded payloads 0..16 (exact).
DIGITS_INPUT = {"input_bits": 6, "input_scale": 16.0}
CHUNK = 64  # samples per simulator run when counting activity (bounds memory)
GOLDEN_FORMAT = "snn2chip-golden"
GOLDEN_VERSION = 1


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
    """A verify run: ``report`` (JSON-ready), the simulator's ``outputs`` for golden files,
    chip ``predictions``, and ``raster`` (sample 0's chip spikes per layer) for plots."""

    report: dict
    outputs: dict[str, np.ndarray]
    predictions: np.ndarray
    raster: dict[str, np.ndarray]
    inputs_sha256: list[str]


def _activity(net: ChipNet, x: np.ndarray, steps: int, keep: int, everywhere: list[str], probe: list[str],
              bar) -> tuple[dict, dict]:
    """Per population: spikes (non-zero messages) per sample; and the full chip records of the
    first ``keep`` samples plus every sample's records named in ``everywhere``."""
    fans = {p: [fanout(net, g) for g in net.groups if g.src == p] for p in net.populations}
    spikes = {p: np.zeros(len(x), dtype=np.int64) for p in net.populations}
    synops = {p: np.zeros(len(x), dtype=np.int64) for p in net.populations}
    kept: dict[str, list[np.ndarray]] = {}
    outputs = set(everywhere)
    for start in range(0, len(x), CHUNK):
        part = compiler.chip_inputs(net, x[start : start + CHUNK], steps)
        records = simulator.simulate(net, part, record=list(net.populations), probe=probe)
        for p in net.populations:
            counts = (records[p] != 0).sum(1).reshape(len(part), -1)
            spikes[p][start : start + len(part)] = counts.sum(1)
            synops[p][start : start + len(part)] = sum((counts @ f for f in fans[p]), np.zeros(len(part), np.int64))
        for key, values in records.items():
            if key in outputs or start < keep:
                kept.setdefault(key, []).append(values if key in outputs else values[: keep - start])
        bar.update(len(part))
    return {"spikes": spikes, "synops": synops, "fans": fans}, {k: np.concatenate(v) for k, v in kept.items()}


def _lava_check(net: ChipNet, x: np.ndarray, steps: int, records: dict, probe: list[str], bar) -> dict:
    """Run the first samples in Lava; compare every non-input population (and probes) with the simulator."""
    from snn2chip.lava_backend import run_lava

    pops = [p for p, pop in net.populations.items() if pop.kind != "input"]
    for i in range(len(x)):
        lava = run_lava(net, compiler.chip_inputs(net, x[i : i + 1], steps), record=pops, probe=probe)
        bar.update(1)
        for key in sorted(lava):
            diff = np.argwhere(lava[key][0] != records[key][i])
            if len(diff):
                t, *index = diff[0]
                flat = int(np.ravel_multi_index(index, lava[key].shape[2:])) if index else 0
                return {"samples": i + 1, "bit_exact": False,
                        "first_difference": f"sample {i}, '{key}', chip step {t}, neuron {flat}: "
                                            f"Lava {lava[key][0][tuple(diff[0])]} vs simulator {records[key][i][tuple(diff[0])]}"}
    return {"samples": len(x), "bit_exact": True, "compared": pops + [f"{p}.{v}" for p in probe for v in ("u", "v")]}


def _digest(x: np.ndarray) -> list[str]:
    """SHA-256 per sample of its float32 values (golden files check they see the same inputs)."""
    return [hashlib.sha256(np.ascontiguousarray(s, dtype=np.float32).tobytes()).hexdigest() for s in x]


def _check_memory(graph: Graph, net: ChipNet, samples: int, steps: int, probe: list[str]) -> None:
    """Before running: the simulator's chunks, the chip records kept for every sample and the
    float reference's records must fit the memory budget."""
    chip_steps = steps + net.pipeline_depth
    chunk = min(samples, CHUNK)
    consumers = simulator.estimate_bytes(net, chunk, chunk, chip_steps, list(net.populations), probe)
    kept = [*compiler.spiking_populations(graph, net), *net.outputs, *probe]
    consumers.append((8 * samples * chip_steps * sum(net.populations[p].size for p in kept),
                      f"the chip records of {len(kept)} populations over {samples} samples"))
    consumers.append((8 * samples * steps * sum(net.populations[p].size for p in kept),
                      f"the float reference's records over {samples} samples"))
    largest = max(consumers)
    memory.check(sum(b for b, _ in consumers), f"verifying {samples} samples x {steps} steps", file=graph.source,
                 hint=f"the largest consumer is {largest[1]} ({memory.fmt(largest[0])}); use fewer --samples or --steps")


def run(graph: Graph, net: ChipNet, dataset: Dataset, setup: Settings, *, target: str = "loihi2",
        dt: float | None = None, lava_samples: int = 0, show_progress: bool = False) -> Result:
    """Verify ``net`` (compiled from ``graph``) on every sample of ``dataset`` and Lava on the first ``lava_samples``."""
    x, steps, samples = np.asarray(dataset.x), setup.steps, len(dataset.x)
    _, key = compiler.readout(graph, net)
    probe = [p for p in net.outputs if net.populations[p].kind == "lif"]  # includes an integrating read-out
    outputs = list(net.outputs) + [f"{p}.v" for p in probe]
    _check_memory(graph, net, samples, steps, probe)
    total = 2 * samples + lava_samples
    with progress.bar(range(total), "verify", "sample", show_progress) as bar:  # advanced by hand
        bar.set_postfix_str("chip simulator")
        counts, records = _activity(net, x, steps, max(lava_samples, 1),
                                    outputs + compiler.spiking_populations(graph, net), probe, bar)
        bar.set_postfix_str("float reference")
        fid = compiler.fidelity(graph, net, x, steps, dt=dt, labels=dataset.y, chips=records)
        bar.update(samples)
        if lava_samples:
            bar.set_postfix_str("Lava")
        lava = _lava_check(net, x[:lava_samples], steps, records, probe, bar) if lava_samples else None

    chip_steps = steps + net.pipeline_depth
    neurons = {p: pop.size for p, pop in net.populations.items() if pop.kind != "input"}
    total_neurons = sum(neurons.values())
    spikes = sum(counts["spikes"][p].mean() for p in neurons)
    synops = sum(counts["synops"][p].mean() for p in net.populations)
    messages = sum(counts["spikes"][p].mean() * len(counts["fans"][p]) for p in net.populations)
    updates = total_neurons * chip_steps
    rates = {layer["population"]: layer for layer in fid["layers"]}
    populations = [{
        "population": p, "kind": pop.kind, "neurons": pop.size,
        "spikes_per_neuron": float(counts["spikes"][p].mean() / pop.size),
        "synops_per_sample": float(counts["synops"][p].mean()),
        **({k: rates[p][k] for k in ("float_rate", "chip_rate", "rate_error", "spike_agreement")} if p in rates else {}),
    } for p, pop in net.populations.items()]
    report = {
        "model": net.metadata.get("source"),
        "data": dataset.name,
        "samples": samples,
        "steps": steps,
        "steps_source": setup.steps_source,
        "input_bits": setup.input_bits,
        "input_scale": setup.input_scale,
        "input_source": setup.input_source,
        "float_accuracy": fid.get("float_accuracy"),
        "chip_accuracy": fid.get("chip_accuracy"),
        "agreement": fid["output_agreement"],
        "lava_samples": lava_samples,
        "lava_bit_exact": None if lava is None else lava["bit_exact"],
        "pipeline_depth": net.pipeline_depth,
        "latency_steps": chip_steps,
        "latency": {"steps": chip_steps, "input_steps": steps, "pipeline_depth": net.pipeline_depth, "seconds": None,
                    "note": "Loihi time steps have no fixed duration (asynchronous cores; an unthrottled step lasts "
                            "as long as its traffic needs): no public time-per-step figure applies, so none is given"},
        "neurons": total_neurons,
        "spikes_per_neuron": float(spikes / total_neurons),
        "spikes_per_sample": float(spikes),
        "synops_per_sample": float(synops),
        "neuron_updates_per_sample": updates,
        "energy_per_inference_j": None,
        "energy": energy.estimate(target, synops, updates, spikes, messages),
        "layers": fid["layers"],
        "populations": populations,
    }
    report["energy_per_inference_j"] = report["energy"]["total_j"]
    if lava is not None:
        report["lava"] = lava
    outputs = {k: records[k].astype(np.int32) for k in outputs}
    raster = {p: records[p][0] for p in rates}
    return Result(report, outputs, compiler.chip_prediction(net, key, records[key], steps), raster, _digest(x))


# --- golden files -------------------------------------------------------------------------


def _digest_array(a: np.ndarray) -> str:
    return f"array {a.shape} sha256 {hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]}"


def golden_meta(model: str, target: str, options, result: Result) -> dict:
    """What a golden file records about how its outputs were made."""
    return {
        "format": GOLDEN_FORMAT,
        "version": GOLDEN_VERSION,
        "model": str(model),
        "model_sha256": hashlib.sha256(Path(model).read_bytes()).hexdigest(),
        "target": target,
        "options": {k: _digest_array(v) if isinstance(v, np.ndarray) else v for k, v in dataclasses.asdict(options).items()},
        "chip_ir_format": chip.FORMAT_VERSION,
        "snn2chip": snn2chip.__version__,
        "data": result.report["data"],
        "samples": result.report["samples"],
        "inputs_sha256": hashlib.sha256("".join(result.inputs_sha256).encode()).hexdigest(),
    }


def golden_arrays(meta: dict, result: Result) -> dict[str, np.ndarray]:
    """The arrays of a golden file (write them with an atomic ``.npz`` writer)."""
    return {"meta": np.array(json.dumps(meta)), "predictions": result.predictions.astype(np.int64),
            **{f"out:{k}": v for k, v in result.outputs.items()}}


def _causes(old: dict, new: dict) -> str:
    causes = []
    if old.get("model_sha256") != new["model_sha256"]:
        causes.append(f"the model file changed (sha256 {old.get('model_sha256', '?')[:12]}... -> {new['model_sha256'][:12]}...)")
    changed = [f"{k} {old['options'].get(k)} -> {v}" for k, v in new["options"].items() if old.get("options", {}).get(k) != v]
    if changed:
        causes.append("compile options changed: " + ", ".join(changed))
    for field, what in (("target", "target"), ("chip_ir_format", "chip IR format"), ("snn2chip", "snn2chip version")):
        if old.get(field) != new[field]:
            causes.append(f"{what} {old.get(field)} -> {new[field]}")
    return "; ".join(causes) or "same model file, options and snn2chip version: the compiler's output changed"


def _first_difference(new: np.ndarray, old: np.ndarray) -> str:
    sample, step, *index = np.argwhere(new != old)[0]
    flat = int(np.ravel_multi_index(index, new.shape[2:])) if index else 0
    at = (sample, step, *index)
    return f"sample {sample} chip step {step} neuron {flat}: {new[at]} vs golden {old[at]}"


#: keys of a golden file's ``meta`` and their types
GOLDEN_META = {"format": str, "version": int, "model_sha256": str, "target": str, "options": dict,
               "chip_ir_format": int, "snn2chip": str, "data": str, "samples": int, "inputs_sha256": str}


def read_golden(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``meta`` and the arrays (``predictions``, ``out:NAME``) of a golden file, checked against
    the schema of :data:`GOLDEN_META` and its version; a broken file is a one-line error."""
    file = str(path)
    if not Path(path).is_file():
        raise ModelError("no such golden file (write it with --update-golden)", file=file)
    arrays = data.read_arrays(path)
    if not isinstance(arrays, dict):
        raise ModelError("not a golden file: it is a .npy array, not an .npz archive", file=file)
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except (KeyError, ValueError):
        raise ModelError("not a golden file: no readable 'meta' entry (write it with --update-golden)", file=file) from None
    if not isinstance(meta, dict) or meta.get("format") != GOLDEN_FORMAT:
        raise ModelError(f"not a golden file: its 'meta' is not of format {GOLDEN_FORMAT}", file=file)
    for key, kind in GOLDEN_META.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ModelError(f"broken golden file: meta key '{key}' is {meta.get(key)!r}; expected a {kind.__name__}",
                             file=file)
    if not 1 <= meta["version"] <= GOLDEN_VERSION:
        raise ModelError(f"golden file version {meta['version']}; this snn2chip reads versions 1..{GOLDEN_VERSION}",
                         file=file)
    count = meta["samples"]
    predictions = arrays.get("predictions")
    if count < 1 or predictions is None or predictions.dtype.kind not in "iu" or predictions.shape != (count,):
        raise ModelError(f"broken golden file: 'predictions' must be {count} integers (meta 'samples')", file=file)
    for key, values in arrays.items():
        if key != "predictions" and (not key.startswith("out:") or values.dtype.kind not in "iu" or values.ndim < 2
                                     or values.shape[0] != count):
            raise ModelError(f"broken golden file: entry '{key}' is not an output record ({count} samples of integers)",
                             file=file)
    return meta, arrays


def check_golden(path: str | Path, meta: dict, result: Result) -> str | None:
    """None when the run reproduces the golden file at ``path``, else a one-line diff summary."""
    file = str(path)
    old, arrays = read_golden(path)
    count = old["samples"]
    hint = f"to accept the new outputs, rerun with --update-golden (rewrites {file})"
    if result.report["samples"] < count:
        return f"golden file {file} holds {count} samples; this run has {result.report['samples']}: pass --samples {count}"
    if hashlib.sha256("".join(result.inputs_sha256[:count]).encode()).hexdigest() != old["inputs_sha256"]:
        return (f"golden mismatch ({file}): the first {count} inputs differ from those it was written with "
                f"(data '{old['data']}'); {hint}")
    diffs = []
    stored = {k.removeprefix("out:"): v for k, v in arrays.items() if k.startswith("out:")}
    for key in sorted(set(stored) | set(result.outputs)):
        if key not in result.outputs or key not in stored:
            diffs.append(f"output '{key}' is {'gone' if key in stored else 'new'}")
            continue
        new, ref = result.outputs[key][:count], stored[key]
        if new.shape != ref.shape:
            diffs.append(f"output '{key}' has shape {new.shape}, golden {ref.shape}")
        elif (new != ref).any():
            bad = int((new != ref).reshape(count, -1).any(1).sum())
            diffs.append(f"output '{key}' differs in {bad} of {count} samples (first: {_first_difference(new, ref)})")
    if not diffs:
        return None
    changed = int((result.predictions[:count] != arrays["predictions"]).sum())
    diffs.append(f"predictions changed for {changed} of {count} samples")
    return f"golden mismatch ({file}): {'; '.join(diffs)}; why: {_causes(old, meta)}; {hint}"


# --- checks, report, output folder -------------------------------------------------------


def checks(report: dict, min_agreement: float) -> list[dict]:
    """The pass/fail checks asked for: agreement always, Lava when run, golden when compared
    (``report["golden"]``: ``status`` ``match``, ``mismatch`` or ``written``, and ``detail``)."""
    result = [{"check": "agreement", "passed": report["agreement"] >= min_agreement,
               "detail": f"agreement {100 * report['agreement']:.2f}% (minimum {100 * min_agreement:.2f}%)"}]
    if report["lava_bit_exact"] is not None:
        lava = report["lava"]
        detail = (f"Lava equals the simulator bit for bit on {lava['samples']} samples" if lava["bit_exact"]
                  else f"Lava differs from the simulator: {lava['first_difference']}")
        result.append({"check": "lava", "passed": lava["bit_exact"], "detail": detail})
    golden = report.get("golden")
    if golden is not None and golden["status"] != "written":
        result.append({"check": "golden", "passed": golden["status"] == "match", "detail": golden["detail"]})
    return result


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def format_report(r: dict) -> str:
    """The readable terminal table."""
    lines = [
        f"{r['model']}: {r['data']}, {r['samples']} samples x {r['steps']} steps",
        f"  used: steps {r['steps']} ({r['steps_source']}), input-bits {r['input_bits']}, "
        f"input-scale {r['input_scale']:g} ({r['input_source']})",
    ]
    if "compile" in r:
        c = r["compile"]
        lines.append(f"  compiled for {r['target']} (shortcut strategy {r['strategy']}): {c['populations']} populations, "
                     f"{c['neurons']:,} neurons, {c['synapses']:,} synapses, {c['weight_memory_bytes']:,} bytes of weights")
    lines += [
        "",
        f"  {'':24}{'float':>10}{'chip':>10}",
        f"  {'accuracy':24}{_pct(r['float_accuracy']):>10}{_pct(r['chip_accuracy']):>10}",
        f"  {'prediction agreement':24}{'':>10}{_pct(r['agreement']):>10}",
        "",
        f"  {'layer':28}{'neurons':>8}{'rate float':>12}{'rate chip':>11}{'error':>9}{'spike agr.':>12}",
    ]
    sizes = {p["population"]: p["neurons"] for p in r["populations"]}
    for layer in r["layers"]:
        lines.append(f"  {layer['population']:28}{sizes[layer['population']]:>8,}{layer['float_rate']:>12.4f}"
                     f"{layer['chip_rate']:>11.4f}{layer['rate_error']:>9.4f}{_pct(layer['spike_agreement']):>12}")
    e = r["energy"]
    lines += [
        "",
        f"  chip activity per sample: {r['spikes_per_neuron']:.3f} spikes per neuron ({r['spikes_per_sample']:,.0f} spikes, "
        f"{r['neurons']:,} neurons), {r['synops_per_sample']:,.0f} synaptic ops, {r['neuron_updates_per_sample']:,} neuron updates",
        f"  energy per inference (estimate): {1e6 * e['total_j']:.3f} uJ = synaptic {1e6 * e['synaptic_j']:.3f} "
        f"+ neurons {1e6 * e['neuron_j']:.3f} + spike messages {1e6 * e['spike_messages_j']:.3f} uJ",
        f"    figures: {e['source']}; {e['note']}",
        f"  latency: {r['latency_steps']} chip steps ({r['steps']} input steps + pipeline depth {r['pipeline_depth']})",
    ]
    for c in r["checks"]:
        lines.append(f"  {'PASS' if c['passed'] else 'FAIL'} {c['check']}: {c['detail']}")
    if r.get("golden", {}).get("status") == "written":
        lines.append(f"  golden: {r['golden']['detail']}")
    lines.append(f"  verify {'passed' if r['passed'] else 'FAILED'}")
    return "\n".join(lines)


def write_dir(out_dir: str | Path, report: dict, result: Result, inputs=()) -> None:
    """Write ``report.json``, ``rates.png`` and ``raster.png`` into ``out_dir`` when complete; an
    existing ``out_dir`` is replaced only if it is a previous verify output holding none of ``inputs``."""
    from snn2chip import plots

    with atomic_dir(out_dir, "verify", inputs) as tmp:
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        plots.firing_rates(report["layers"], tmp / "rates.png")
        plots.raster(result.raster, report["pipeline_depth"], tmp / "raster.png")
