"""The compile driver: NIR file -> chip network + report, written atomically to a build folder.

A build folder holds ``network.h5`` (the chip IR, :mod:`snn2chip.chip`) and ``report.json``
(totals, per-layer quantization errors, pipeline depth, and the float-vs-chip fidelity when
check inputs were given). It is written to a temporary sibling and renamed into place, so a
failed compile leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Iterable

import nir
import numpy as np

from snn2chip import chip, frontend, lower, memory, neurons, partition, reference, report as report_md, shortcuts
from snn2chip import simulator
from snn2chip import targets as target_files
from snn2chip.chip import ChipNet
from snn2chip.errors import ModelError
from snn2chip.files import atomic_dir
from snn2chip.graph import Graph
from snn2chip.quantize import Options, compile_graph

def totals(net: ChipNet) -> dict:
    """Resource totals: neurons, stored synapses (a conv kernel counts once), connections, weight memory."""
    neurons = sum(p.size for p in net.populations.values() if p.kind != "input")
    stored = sum(int(np.count_nonzero(g.weights)) for g in net.groups)
    connections = 0
    for g in net.groups:
        if g.kind == "conv":  # per output position, the channel's non-zero kernel entries (padding ignored)
            dst = net.populations[g.dst]
            connections += dst.size // dst.shape[0] * int(np.count_nonzero(g.weights))
        else:
            connections += int(np.count_nonzero(g.weights))
    return {
        "populations": sum(p.kind != "input" for p in net.populations.values()),
        "neurons": neurons,
        "synapse_groups": len(net.groups),
        "synapses": stored,
        "connections": connections,
        "weight_memory_bytes": sum(int(np.count_nonzero(g.weights)) * g.num_weight_bits // 8 for g in net.groups),
    }


def chip_inputs(net: ChipNet, x: np.ndarray, steps: int) -> np.ndarray:
    """Inputs ``(samples, steps + D, *shape)`` for the chip: ``x`` (``(samples, *shape)`` held for
    ``steps`` steps, or ``(samples, steps, *shape)``) followed by ``D = net.pipeline_depth`` zero
    steps, so that the outputs of the last float step leave the chip."""
    shape = net.populations[net.inputs[0]].shape
    held = x if x.ndim == len(shape) + 2 else np.repeat(x[:, None], steps, axis=1)
    return np.concatenate([held, np.zeros((held.shape[0], net.pipeline_depth, *held.shape[2:]), held.dtype)], axis=1)


def readout(graph: Graph, net: ChipNet) -> tuple[str, str]:
    """The first output population and the chip record its prediction reads: ``NAME.v`` (the
    probed membrane) for integrating neurons (I, LI, CubaLI), else ``NAME`` (spikes or payloads)."""
    out = net.outputs[0]
    integrating = net.populations[out].kind == "lif" and not neurons.spikes(graph.nodes[net.populations[out].source])
    return out, f"{out}.v" if integrating else out


def chip_prediction(net: ChipNet, key: str, values: np.ndarray, steps: int) -> np.ndarray:
    """Class per sample from the chip record ``values`` ``(samples, steps + D, *shape)`` named
    ``key`` (see :func:`readout`): over the output's ``steps`` aligned steps, the largest membrane
    at the last step (``NAME.v``), else the largest sum over time."""
    out = key.removesuffix(".v")
    start = net.metadata["depth"][out]
    window = values[:, start : start + steps].reshape(values.shape[0], steps, -1)
    return (window[:, -1] if key != out else window.sum(1)).argmax(1)


def spiking_populations(graph: Graph, net: ChipNet) -> list[str]:
    """The chip populations that stand for spiking NIR neurons (compared spike by spike)."""
    return [p for p, pop in net.populations.items()
            if pop.kind == "lif" and pop.source in graph.nodes and neurons.spikes(graph.nodes[pop.source])]


def predictions(graph: Graph, net: ChipNet, x: np.ndarray, steps: int, dt: float | None = None,
                chips: dict[str, np.ndarray] | None = None):
    """Float and chip outputs over ``steps`` aligned steps: per spiking population its spikes,
    and the class predictions of the first output.

    Prediction rules by read-out: spiking neurons, the most spikes; integrating neurons (I, LI,
    CubaLI), the largest membrane at the last step (probed on chip); a linear read-out (relay),
    the largest sum over time. ``chips``: the simulator's records on :func:`chip_inputs` of ``x``
    (the spiking populations and the read-out's :func:`readout` key), when already run. Returns
    ``(float_spikes, chip_spikes, float_pred, chip_pred)``.
    """
    depth = net.metadata["depth"]
    spiking = spiking_populations(graph, net)
    out, key = readout(graph, net)
    integrating = key != out
    record = [net.populations[p].source for p in spiking] + [net.populations[out].source]
    floats = reference.run(graph, x, steps, dt=dt, record=record)
    if chips is None:
        chips = simulator.simulate(net, chip_inputs(net, x, steps), record=spiking + ([] if integrating else [out]),
                                   probe=[out] if integrating else [])
    float_out = floats[net.populations[out].source].reshape(x.shape[0], steps, -1)
    float_pred = (float_out[:, -1] if integrating else float_out.sum(1)).argmax(1)
    chip_pred = chip_prediction(net, key, chips[key], steps)
    float_spikes = {p: floats[net.populations[p].source] for p in spiking}
    chip_spikes = {p: chips[p][:, depth[p] : depth[p] + steps] for p in spiking}
    return float_spikes, chip_spikes, float_pred, chip_pred


def fidelity(graph: Graph, net: ChipNet, x: np.ndarray, steps: int, dt: float | None = None,
             labels: np.ndarray | None = None, chips: dict[str, np.ndarray] | None = None) -> dict:
    """Float reference vs compiled simulator on inputs ``x``, aligned by each population's depth.

    Per spiking population: firing rates (spikes per neuron per step), their difference and the
    spike agreement at matching steps; for the first output: prediction agreement, and the
    accuracies of both when ``labels`` are given. ``chips``: as for :func:`predictions`.
    """
    float_spikes, chip_spikes, float_pred, chip_pred = predictions(graph, net, x, steps, dt, chips)
    layers = [{
        "population": p,
        "float_rate": float(float_spikes[p].mean()),
        "chip_rate": float(chip_spikes[p].mean()),
        "rate_error": float(abs(chip_spikes[p].mean() - float_spikes[p].mean())),
        "spike_agreement": float((float_spikes[p] == chip_spikes[p]).mean()),
    } for p in float_spikes]
    result = {"samples": int(x.shape[0]), "steps": steps, "layers": layers,
              "output_agreement": float((float_pred == chip_pred).mean())}
    if labels is not None:
        result["float_accuracy"] = float((float_pred == labels).mean())
        result["chip_accuracy"] = float((chip_pred == labels).mean())
    return result


def measured_rates(fidelity_report: dict) -> dict[str, float]:
    """Chip firing rates (spikes per neuron per step) per population from a :func:`fidelity` report."""
    return {layer["population"]: layer["chip_rate"] for layer in fidelity_report["layers"]}


def partition_report(net: ChipNet, target: target_files.Target, system: str | None = None,
                     rates: dict | None = None) -> dict:
    """Partition ``net`` on ``target`` (:mod:`snn2chip.partition`) and return its report entry."""
    return partition.partition(net, target, system, rates).summary()


#: compile's peak memory per value of the graph (a node's output per sample): at most 170 bytes on the
#: scale models (``benchmarks/scale_compile.py``), with a margin; each parameter adds 8 bytes
COMPILE_BYTES_PER_VALUE = 200


def check_size(graph: Graph, target: target_files.Target, system: str | None) -> None:
    """Before quantizing: the network's neurons must fit the given system (else the largest
    one of the target), and the memory compiling it needs must fit the budget."""
    neurons = sum(math.prod(graph.out_shapes[n]) for n, node in graph.nodes.items()
                  if lower.is_population(node) and not isinstance(node, nir.Input))
    name, chips = (system, target.chips(system)) if system else target.systems[-1]
    capacity = chips * target.cores_per_chip * target.neurons
    if neurons > capacity:
        raise graph.error(f"has {neurons:,} neurons; system '{name}' of target '{target.name}' ({chips:,} chips x "
                          f"{target.cores_per_chip} cores x {target.neurons:,} neurons){'' if system else ', the largest,'} "
                          f"holds {capacity:,}")
    values = sum(math.prod(graph.out_shapes[n]) for n in graph.nodes)
    params = sum(np.size(v) for node in graph.nodes.values() for v in vars(node).values() if isinstance(v, np.ndarray))
    memory.check(COMPILE_BYTES_PER_VALUE * values + 8 * params,
                 f"compiling it ({values:,} values per step, {params:,} parameters; an estimate)", file=graph.source)


def compile_file(model: str | Path, target: str | Path | target_files.Target = "loihi2", options: Options = Options(),
                 system: str | None = None) -> tuple[Graph, ChipNet, dict]:
    """Load, lower, quantize and partition a NIR file for ``target`` (a built-in name, a ``.toml``
    file or a Target) on its named ``system`` (None: the smallest that fits); return the graph,
    the chip network and the report."""
    chip_target = target_files.resolve(target)
    graph = frontend.load(model)
    check_size(graph, chip_target, system)
    try:
        if options.strategy == "auto":
            # both strategies; keep the one with less weight memory (expand on ties: fewer hops)
            candidates = [compile_graph(graph, dataclasses.replace(options, strategy=s)) for s in shortcuts.STRATEGIES]
            memory = {c[1]["strategy"]: totals(c[0])["weight_memory_bytes"] for c in candidates}
            net, layers = min(candidates, key=lambda c: (memory[c[1]["strategy"]], c[1]["strategy"] != "expand"))
            layers["strategy_costs"] = {k: {"weight_memory_bytes": v} for k, v in memory.items()}
        else:
            net, layers = compile_graph(graph, options)
        placement = partition_report(net, chip_target, system)
    except ModelError as e:
        raise e.in_file(str(model)) from None
    report = {
        "model": str(model),
        "target": chip_target.name,
        "dt": net.metadata["dt"],
        "chip_ir_format": chip.FORMAT_VERSION,
        **totals(net),
        "pipeline_depth": net.pipeline_depth,
        "inputs": list(net.inputs),
        "outputs": net.metadata["outputs"],
        **layers,
        "cores_to_bound_ratio": placement["cores_to_bound_ratio"],
        "partition": placement,
    }
    return graph, net, report


def write_build(out_dir: str | Path, net: ChipNet, report: dict, inputs: Iterable = ()) -> None:
    """Write ``network.h5``, ``report.json`` and, with a partition, ``report.md`` and
    ``core_utilisation.png`` into ``out_dir`` when complete; an existing ``out_dir`` is replaced
    only if it is a previous build (:func:`snn2chip.files.atomic_dir`) and holds none of ``inputs``."""
    with atomic_dir(out_dir, "build", inputs) as tmp:
        chip.save(net, tmp / "network.h5")
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        if "partition" in report:
            (tmp / "report.md").write_text(report_md.markdown(report))
            report_md.utilisation_png(report["partition"], tmp / report_md.PNG)


def load_build(path: str | Path) -> ChipNet:
    """The chip network of a build folder (or of a ``network.h5`` file)."""
    path = Path(path)
    return chip.load(path / "network.h5" if path.is_dir() else path)
