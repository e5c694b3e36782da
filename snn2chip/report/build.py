"""The readable build report: ``report.md`` and the core-utilisation picture (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from snn2chip.chip.partition import RESOURCES, PartitionReport
from snn2chip.report import text
from snn2chip.report.plots import _pyplot

if TYPE_CHECKING:  # the compiler imports this module
    from snn2chip.compiler import CompileReport

PNG = "core_utilisation.png"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def markdown(report: CompileReport) -> str:
    """``report.md``: totals, cores against their bounds, traffic, and per layer its tiles,
    cores and binding resource."""
    part, t = report.partition, report.totals
    bounds = part.bounds
    lines = [
        f"# {report.model} on {part.target} ({part.system}, {_count(part.system_chips, 'chip')})", "",
        f"{t.populations:,} populations, {t.neurons:,} neurons ({text.roles(report)}), {t.synapses:,} stored synapses, "
        f"pipeline depth {report.pipeline_depth}, shortcut strategy {report.quantization.strategy}.", "",
        "## Cores", "",
        f"**{_count(part.cores, 'core')}** on **{_count(part.chips_used, 'chip')}** ({part.tiles:,} tiles); "
        f"volume bound {bounds['volume']['cores']:,}, one-layer-per-core bound {bounds['one_layer_per_core']['cores']:,}; "
        f"**cores / bound = {part.cores_to_bound_ratio:.3f}** "
        f"(/ one-layer-per-core bound: {part.cores_to_layer_bound_ratio:.3f}).", "",
    ]
    lines += _table(["resource", "capacity per core", "volume bound", "one-layer-per-core bound", "mean utilisation"],
                    [[r, f"{part.capacity[r]:,}", f"{bounds['volume'][r]:,}", f"{bounds['one_layer_per_core'][r]:,}",
                      f"{100 * part.utilisation_mean[r]:.1f}%"] for r in RESOURCES])
    traffic = part.traffic
    unit = "spikes per step (measured rates)" if traffic.weighting == "firing rates" else \
        "axon messages per step if every neuron fired"
    lines += ["", "## Traffic", "", f"In {unit}: between cores {traffic.inter_core:,.1f}, between chips "
              f"{traffic.inter_chip:,.1f}, from the inputs {traffic.from_inputs:,.1f}.", "",
              "## Layers", "", f"![core utilisation]({PNG})", ""]
    lines += _table(["population", "block (C x H x W)", "tiles", "cores", "bound", "binding", "neurons", "memory bits",
                     "fan-in axons", "fan-out axons"],
                    [[e.population, " x ".join(map(str, e.block)), e.tiles, e.cores, e.bound, e.binding,
                      f"{e.neurons:,}", f"{e.memory_bits:,}", f"{e.fan_in_axons:,}", f"{e.fan_out_axons:,}"]
                     for e in part.layers])
    lines += ["", "Bounds per layer use its untiled demand (the last four columns: kernels stored once, every "
              "source neuron read once); 'binding' is the resource its fullest tile uses most of."]
    return "\n".join(lines) + "\n"


def utilisation_png(part: PartitionReport, path: str | Path) -> None:
    """Per core (columns, in chip order) the fraction of each resource its tiles use."""
    plt = _pyplot()
    usage = np.array([np.asarray(part.core_usage[r], dtype=np.float64) / part.capacity[r] for r in RESOURCES])
    chips = np.asarray(part.chip_of_core)
    order = np.argsort(chips, kind="stable")
    fig, ax = plt.subplots(figsize=(10, 3))
    image = ax.imshow(usage[:, order], aspect="auto", interpolation="nearest", vmin=0, vmax=1, cmap="viridis")
    for edge in np.flatnonzero(np.diff(chips[order])):
        ax.axvline(edge + 0.5, color="white", linewidth=0.6)
    ax.set_yticks(range(len(RESOURCES)), [r.replace("_", " ") for r in RESOURCES])
    ax.xaxis.set_major_locator(plt.MaxNLocator(nbins=10, integer=True))
    ax.set_xlabel(f"core ({_count(part.cores, 'core')} on {_count(part.chips_used, 'chip')}; "
                  "white lines separate chips)")
    ax.set_title(f"Core utilisation on {part.target} (cores / bound {part.cores_to_bound_ratio:.3f})")
    fig.colorbar(image, ax=ax, label="fraction of capacity")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
