"""Float reference against the compiled chip on the same inputs: per-layer firing rates,
spike agreement and predictions, aligned by each population's depth (chip step ``t + depth``
is float step ``t``).

Time on chip: the input is held for ``steps`` steps and followed by ``D`` (pipeline depth) zero
steps, so that the outputs of the last float step leave the chip (:func:`chip_inputs`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snn2chip.backends import simulator
from snn2chip.chip.ir import ChipNet
from snn2chip.frontend import neurons, reference, shapes
from snn2chip.frontend.graph import Graph
from snn2chip.verify.reports import Fidelity, LayerFidelity


@dataclasses.dataclass
class Tally:
    """Float against chip on some samples, in counts that add up over samples: per spiking
    population ``[float spikes, chip spikes, agreeing (sample, step, neuron), all of them]``, and
    per sample both predictions."""

    layers: dict[str, np.ndarray]
    float_pred: np.ndarray
    chip_pred: np.ndarray

    @staticmethod
    def merge(parts: list[Tally]) -> Tally:
        """The tally of ``parts`` (in sample order) together."""
        return Tally({p: sum(t.layers[p] for t in parts) for p in parts[0].layers},
                     np.concatenate([t.float_pred for t in parts]), np.concatenate([t.chip_pred for t in parts]))


def chip_inputs(net: ChipNet, x: np.ndarray, steps: int) -> np.ndarray:
    """Inputs ``(samples, steps + D, *shape)`` for the chip: ``x`` (``(samples, *shape)`` held for
    ``steps`` steps, or ``(samples, steps, *shape)``) followed by ``D = net.pipeline_depth`` zero
    steps, so that the outputs of the last float step leave the chip."""
    shape = net.populations[net.inputs[0]].shape
    held = shapes.over_steps(x, shape, steps)
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
    window = aligned(net, out, values, steps).reshape(values.shape[0], steps, -1)
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
    spiking = spiking_populations(graph, net)
    out, key = readout(graph, net)
    integrating = key != out
    record = [net.populations[p].source for p in spiking] + [net.populations[out].source]
    floats = reference.run(graph, x, steps, dt=dt, record=record)
    if chips is None:
        chips = simulator.simulate(net, chip_inputs(net, x, steps), record=spiking + ([] if integrating else [out]),
                                   probe=[out] if integrating else [], windows=windows(net, spiking, steps, out))
    float_out = floats[net.populations[out].source].reshape(x.shape[0], steps, -1)
    float_pred = (float_out[:, -1] if integrating else float_out.sum(1)).argmax(1)
    chip_pred = chip_prediction(net, key, chips[key], steps)
    float_spikes = {p: floats[net.populations[p].source] for p in spiking}
    chip_spikes = {p: aligned(net, p, chips[p], steps) for p in spiking}
    return float_spikes, chip_spikes, float_pred, chip_pred


def windows(net: ChipNet, populations: list[str], steps: int, keep: str | None = None) -> dict[str, tuple[int, int]]:
    """Per population (except ``keep``, recorded in full) the chip steps aligned with the float
    steps: ``[depth, depth + steps)``."""
    return {p: (net.depth[p], net.depth[p] + steps) for p in populations if p != keep}


def aligned(net: ChipNet, name: str, values: np.ndarray, steps: int) -> np.ndarray:
    """The aligned ``steps`` of a chip record ``(samples, steps or steps + D, *shape)``: already
    aligned when it has ``steps`` steps (a non-input population has D >= 1)."""
    start = 0 if values.shape[1] == steps else net.depth[name]
    return values[:, start : start + steps]


def tally(graph: Graph, net: ChipNet, x: np.ndarray, steps: int, dt: float | None = None,
          chips: dict[str, np.ndarray] | None = None) -> Tally:
    """Float reference vs compiled simulator on inputs ``x``, as counts that add up over samples
    (so any split of the samples gives the same :func:`summary`). ``chips``: as for :func:`predictions`."""
    float_spikes, chip_spikes, float_pred, chip_pred = predictions(graph, net, x, steps, dt, chips)
    layers = {p: np.array([np.count_nonzero(float_spikes[p]), np.count_nonzero(chip_spikes[p]),
                           np.count_nonzero(float_spikes[p] == chip_spikes[p]), float_spikes[p].size], np.int64)
              for p in float_spikes}
    return Tally(layers, float_pred.astype(np.int64), chip_pred.astype(np.int64))


def summary(t: Tally, steps: int, labels: np.ndarray | None = None) -> Fidelity:
    """The :class:`Fidelity` report of the counts ``t``; accuracies when ``labels`` are given."""
    def layer(p: str, counts: np.ndarray) -> LayerFidelity:
        floats, chips, agree, total = (int(c) for c in counts)
        return LayerFidelity(p, floats / total, chips / total, abs(chips - floats) / total, agree / total)

    accuracy = {} if labels is None else {"float_accuracy": float((t.float_pred == labels).mean()),
                                          "chip_accuracy": float((t.chip_pred == labels).mean())}
    return Fidelity(len(t.float_pred), steps, tuple(layer(p, c) for p, c in t.layers.items()),
                    float((t.float_pred == t.chip_pred).mean()), **accuracy)


def fidelity(graph: Graph, net: ChipNet, x: np.ndarray, steps: int, dt: float | None = None,
             labels: np.ndarray | None = None, chips: dict[str, np.ndarray] | None = None) -> Fidelity:
    """Float reference vs compiled simulator on inputs ``x``, aligned by each population's depth.

    Per spiking population: firing rates (spikes per neuron per step), their difference and the
    spike agreement at matching steps; for the first output: prediction agreement, and the
    accuracies of both when ``labels`` are given. ``chips``: as for :func:`predictions`.
    """
    return summary(tally(graph, net, x, steps, dt, chips), steps, labels)
