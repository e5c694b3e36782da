"""The samples of a ``verify`` run cut into shards, each run on its own and merged after.

A shard is ``shard_size`` consecutive samples (the last may be shorter), run by a
:class:`Worker` in chunks of at most :data:`CHUNK` samples: the bit-accurate simulator, then the
float reference, on the same chunk. It returns counts that add up over samples (per population
its messages and synaptic operations per sample; per spiking population the float and chip
spikes and their agreement), both predictions per sample and the output populations' records.
:func:`merge` adds them up in sample order. Every figure a ``verify`` report gives is computed
from the merged shard, so one process running the shards in turn and a Ray cluster running
them anywhere (:mod:`snn2chip.verify.cluster`) give the same report.

Shards and chunks depend only on the number of samples and ``shard_size``, never on the workers,
so each float-reference batch is the same in both cases (float32 results can depend on the
batch's size).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from snn2chip.backends import simulator
from snn2chip.chip.ir import ChipNet, SynapseGroup
from snn2chip.frontend.graph import Graph
from snn2chip.verify import fidelity

CHUNK = 64  #: samples per simulator and float-reference run inside a shard (bounds memory)
DEFAULT_SIZE = 64  #: samples per shard


def plan(samples: int, size: int) -> list[tuple[int, int]]:
    """The shards ``[start, stop)`` of ``samples`` samples, ``size`` each (the last may be shorter)."""
    return [(start, min(start + size, samples)) for start in range(0, samples, size)]


@dataclasses.dataclass
class Shard:
    """The results of samples ``[start, stop)``: per population its ``messages`` (non-zero
    outputs) and ``synops`` (synaptic operations they cause) per sample; the float-vs-chip
    ``tally``; the ``outputs`` records of the output populations (and ``NAME.v`` of the LIF ones),
    ``(samples, steps + D, *shape)`` int32; and ``raster``, sample 0's aligned chip spikes per
    spiking population (only in the shard that holds sample 0)."""

    start: int
    stop: int
    messages: dict[str, np.ndarray]
    synops: dict[str, np.ndarray]
    tally: fidelity.Tally
    outputs: dict[str, np.ndarray]
    raster: dict[str, np.ndarray]

    def arrays(self) -> dict[str, np.ndarray]:
        """The shard as named arrays (for an ``.npz`` file; :meth:`from_arrays` reads them back)."""
        named = {"range": np.array([self.start, self.stop]), "float_pred": self.tally.float_pred,
                 "chip_pred": self.tally.chip_pred}
        for prefix, values in (("messages", self.messages), ("synops", self.synops), ("layer", self.tally.layers),
                               ("out", self.outputs), ("raster", self.raster)):
            named.update({f"{prefix}:{k}": v for k, v in values.items()})
        return named

    @staticmethod
    def from_arrays(named) -> Shard:
        """The shard stored by :meth:`arrays`."""
        parts: dict[str, dict[str, np.ndarray]] = {k: {} for k in ("messages", "synops", "layer", "out", "raster")}
        for key in named:
            if ":" in key:
                prefix, name = key.split(":", 1)
                parts[prefix][name] = np.asarray(named[key])
        start, stop = (int(v) for v in named["range"])
        tally = fidelity.Tally(parts["layer"], np.asarray(named["float_pred"]), np.asarray(named["chip_pred"]))
        return Shard(start, stop, parts["messages"], parts["synops"], tally, parts["out"], parts["raster"])


def merge(parts: list[Shard]) -> Shard:
    """The shards ``parts`` (consecutive, any order) as one."""
    parts = sorted(parts, key=lambda s: s.start)
    if any(a.stop != b.start for a, b in zip(parts, parts[1:])):
        raise ValueError("shards to merge are not consecutive")
    joined = lambda field: {k: np.concatenate([getattr(s, field)[k] for s in parts]) for k in getattr(parts[0], field)}
    return Shard(parts[0].start, parts[-1].stop, joined("messages"), joined("synops"),
                 fidelity.Tally.merge([s.tally for s in parts]), joined("outputs"), parts[0].raster)


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


class Worker:
    """Runs shards of one verify: the float ``graph`` and the ``net`` compiled from it, inputs
    held for ``steps`` steps, float time step ``dt``. Built once per process (the fan-outs it
    needs to count synaptic operations take a pass over every synapse group)."""

    def __init__(self, graph: Graph, net: ChipNet, steps: int, dt: float | None):
        self.graph, self.net, self.steps, self.dt = graph, net, steps, dt
        #: per population, the synapses leaving each neuron (a message costs that many synaptic operations)
        self.weights = {p: sum((fanout(net, g) for g in net.groups if g.src == p), np.zeros(pop.size, np.int64))
                        for p, pop in net.populations.items()}
        self.probe = [p for p in net.outputs if net.populations[p].kind == "lif"]
        self.outputs = list(net.outputs) + [f"{p}.v" for p in self.probe]
        self.spiking = fidelity.spiking_populations(graph, net)

    def shard(self, x: np.ndarray, start: int, advance: Callable[[int], None] = lambda n: None) -> Shard:
        """Run the samples ``x`` (the shard starting at sample ``start``); ``advance(n)`` after each chunk of ``n``."""
        net, steps = self.net, self.steps
        record = list(dict.fromkeys([*net.outputs, *self.spiking]))
        windows = fidelity.windows(net, [p for p in record if p not in net.outputs], steps)
        chunks = []
        for first in range(0, len(x), CHUNK):
            part = x[first : first + CHUNK]
            records = simulator.simulate(net, fidelity.chip_inputs(net, part, steps), record=record, probe=self.probe,
                                         activity=self.weights, windows=windows)
            messages = {p: records.pop(f"{p}:messages") for p in net.populations}
            synops = {p: records.pop(f"{p}:weighted").round().astype(np.int64) for p in net.populations}
            tally = fidelity.tally(self.graph, net, part, steps, self.dt, chips=records)
            raster = ({p: fidelity.aligned(net, p, records[p][:1], steps)[0] for p in tally.layers}
                      if start + first == 0 else {})
            outputs = {k: records[k].astype(np.int32) for k in self.outputs}
            chunks.append(Shard(start + first, start + first + len(part), messages, synops, tally, outputs, raster))
            advance(len(part))
        return merge(chunks)
