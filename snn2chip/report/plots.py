"""Plots of a verify run (matplotlib, Agg back end: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from snn2chip.verify.reports import LayerFidelity


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def firing_rates(layers: Sequence[LayerFidelity], path: str | Path) -> None:
    """Per spiking layer, firing rate (spikes per neuron per step) of the float reference and the chip."""
    plt = _pyplot()
    names = [layer.population for layer in layers]
    index = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(names) + 2), 4))
    ax.bar(index - 0.2, [layer.float_rate for layer in layers], 0.4, label="float reference")
    ax.bar(index + 0.2, [layer.chip_rate for layer in layers], 0.4, label="chip (simulator)")
    ax.set_xticks(index, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("spikes per neuron per step")
    ax.set_title("Firing rate per layer: float vs chip")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def raster(spikes: dict[str, np.ndarray], path: str | Path) -> None:
    """Spike raster of one sample on chip: ``spikes`` per layer ``(steps, *shape)``, each layer's
    steps aligned with the float steps (chip step minus the layer's depth), layers stacked
    bottom to top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 6))
    offset, ticks = 0, []
    for name, values in spikes.items():
        flat = np.asarray(values).reshape(values.shape[0], -1)
        steps, neurons = np.nonzero(flat)
        ax.scatter(steps, neurons + offset, s=1, marker="|")
        ticks.append((offset + flat.shape[1] / 2, name))
        offset += flat.shape[1]
        ax.axhline(offset, color="0.85", linewidth=0.5)
    ax.set_yticks([t for t, _ in ticks], [n for _, n in ticks], fontsize=6)
    ax.set_xlabel("time step (each layer's chip steps shifted by its depth)")
    ax.set_title("Spike raster of sample 0 on chip", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
