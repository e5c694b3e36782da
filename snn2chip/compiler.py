"""The compile driver: NIR file -> chip network + report, written atomically to a build folder.

A build folder holds ``network.h5`` (the chip IR, :mod:`snn2chip.chip`) and ``report.json``
(totals, per-layer quantization errors, pipeline depth, and the float-vs-chip fidelity when
check inputs were given). It is written to a temporary sibling and renamed into place, so a
failed compile leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from snn2chip import chip, frontend, reference, simulator
from snn2chip.chip import ChipNet
from snn2chip.errors import ModelError
from snn2chip.graph import Graph
from snn2chip.quantize import Options, compile_graph

TARGETS = ("loihi2",)


def totals(net: ChipNet) -> dict:
    """Resource totals: neurons, stored synapses (a conv kernel counts once), connections, weight memory."""
    neurons = sum(p.size for p in net.populations.values() if p.kind != "input")
    stored = sum(int(np.count_nonzero(g.weights)) for g in net.groups)
    connections = 0
    for g in net.groups:
        if g.kind == "conv":
            dst = net.populations[g.dst]
            connections += dst.size * int(np.prod(g.weights.shape[1:]))
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


def fidelity(graph: Graph, net: ChipNet, x: np.ndarray, steps: int, dt: float | None = None) -> dict:
    """Float reference vs compiled simulator on inputs ``x``, aligned by the pipeline depth.

    Per spiking population: firing rates (spikes per neuron per step) and spike agreement at
    matching (aligned) steps; for the outputs: agreement of arg-max predictions of the summed
    output over time.
    """
    depth = net.metadata["depth"]
    names = [p for p, pop in net.populations.items() if pop.kind == "lif" and pop.source in graph.nodes]
    shift = net.pipeline_depth
    floats = reference.run(graph, x, steps, dt=dt, record=[net.populations[p].source for p in names])
    held = x if x.ndim == len(graph.out_shapes[graph.inputs[0]]) + 2 else np.repeat(x[:, None], steps, axis=1)
    padded = np.concatenate([held, np.zeros((held.shape[0], shift, *held.shape[2:]), dtype=held.dtype)], axis=1)
    chips = simulator.simulate(net, padded, record=names)
    layers = []
    for p in names:
        f = floats[net.populations[p].source]
        c = chips[p][:, depth[p] : depth[p] + steps]
        layers.append({
            "population": p,
            "float_rate": float(f.mean()),
            "chip_rate": float(c.mean()),
            "rate_error": float(abs(c.mean() - f.mean())),
            "spike_agreement": float((f == c).mean()),
        })
    result = {"samples": int(x.shape[0]), "steps": steps, "layers": layers}
    outputs = [p for p in net.outputs if p in names]
    if outputs:
        p = outputs[0]
        f = floats[net.populations[p].source].sum(1).reshape(x.shape[0], -1)
        c = chips[p][:, depth[p] : depth[p] + steps].sum(1).reshape(x.shape[0], -1)
        result["output_agreement"] = float((f.argmax(1) == c.argmax(1)).mean())
    return result


def compile_file(model: str | Path, target: str = "loihi2", options: Options = Options()) -> tuple[Graph, ChipNet, dict]:
    """Load, lower and quantize a NIR file; return the graph, the chip network and the report."""
    if target not in TARGETS:
        raise ModelError(f"unknown target '{target}' (known: {', '.join(TARGETS)})")
    graph = frontend.load(model)
    try:
        net, layers = compile_graph(graph, options)
    except ModelError as e:
        raise e.in_file(str(model)) from None
    report = {
        "model": str(model),
        "target": target,
        "dt": net.metadata["dt"],
        "chip_ir_format": chip.FORMAT_VERSION,
        **totals(net),
        "pipeline_depth": net.pipeline_depth,
        "inputs": list(net.inputs),
        "outputs": net.metadata["outputs"],
        **layers,
    }
    return graph, net, report


def write_build(out_dir: str | Path, net: ChipNet, report: dict) -> None:
    """Write ``network.h5`` and ``report.json`` into ``out_dir``, replacing it only when complete."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        chip.save(net, tmp / "network.h5")
        (tmp / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def load_build(path: str | Path) -> ChipNet:
    """The chip network of a build folder (or of a ``network.h5`` file)."""
    path = Path(path)
    return chip.load(path / "network.h5" if path.is_dir() else path)
