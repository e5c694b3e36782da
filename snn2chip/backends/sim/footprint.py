"""What a simulator run will allocate, by consumer, computed from the network's declared sizes
before anything is built (docs/architecture.md §9). Upper estimates in bytes."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from snn2chip.backends.sim.neurons import row_slices
from snn2chip.backends.sim.ops import delay_values, sparse_enough
from snn2chip.backends.sim.schedule import OP_ELEMENTS, Structure
from snn2chip.chip.ir import ChipNet, SynapseGroup


def group_bytes(g: SynapseGroup) -> int:
    """Building and keeping one group's ops: a conv kernel (int64 copy, float kernel); a dense
    matrix per distinct delay (effective weights, masked copies, float matrices) unless it has
    few non-zero weights; per sparse synapse (or non-zero weight of such a dense group) its
    indices, weights, CSR entry or the arrays that find a convolution in it."""
    if g.kind == "conv":
        return 16 * g.weights.size
    if g.kind == "dense" and not sparse_enough(g):
        classes = len(delay_values(g))
        return 8 * g.weights.size * (2 + 2 * classes)
    return 128 * (np.count_nonzero(g.weights) if g.kind == "dense" else g.weights.size)


def _sizes(net: ChipNet, s: Structure, chunk: int) -> tuple[dict[str, int], dict[str, int]]:
    """Per population: its batch (1 if batch-free) and the bytes of one step of its outputs."""
    batch = {p: 1 if p in s.batch_free else chunk for p in net.populations}
    step = {p: batch[p] * s.size[p] * (1 if pop.kind == "lif" else 4) for p, pop in net.populations.items()}
    return batch, step


def _work(net: ChipNet, s: Structure, batch: dict[str, int], steps: int) -> dict[str, int]:
    """Working memory per population while it gets its input over ``steps`` steps and updates a
    slice of its samples at a time (:func:`~snn2chip.backends.sim.neurons.row_slices`): what the
    batch-free sources send and the slice's input sums, one op call's float input and output and
    int32 result (at most ``OP_ELEMENTS`` values of source and destination, or one step), three
    more sums' worth of neuron-update temporaries; and the step schedule's sums over the batch."""
    rows = {p: row_slices(batch[p], n)[0].stop for p, n in s.size.items()}
    ops = dict.fromkeys(net.populations, 0)
    for g in net.groups:
        src, n, r = s.size[g.src], s.size[g.dst], 1 if g.src in s.batch_free else rows[g.dst]
        count = min(steps, max(1, OP_ELEMENTS // (r * (src + n))))
        ops[g.dst] = max(ops[g.dst], 8 * count * r * (src + 2 * n))
    return {p: 4 * steps * n * (4 * rows[p] + 1) + ops[p] + 12 * batch[p] * n for p, n in s.size.items()}


def step_bytes(net: ChipNet, s: Structure, chunk: int, steps: int, record: list[str], probe: list[str]) -> int:
    """The step schedule: rings of recent outputs (every step when recorded), neuron state and
    probes, and one population's working memory for one step."""
    batch, step = _sizes(net, s, chunk)
    rings = sum(step[p] * (steps if p in record else s.lag[p] + 1) for p in net.populations)
    state = sum(8 * batch[p] * n for p, n in s.size.items())
    probes = sum(8 * steps * batch[p] * s.size[p] for p in probe)
    return rings + state + probes + max(_work(net, s, batch, 1).values(), default=0)


def layer_bytes(net: ChipNet, s: Structure, chunk: int, steps: int, record: list[str], probe: list[str],
                windows: Mapping[str, tuple[int, int]] | None = None) -> int:
    """The layer schedule at its peak: the outputs of every step of the populations still to be
    read (or recorded; only their ``windows`` steps once read), probes, and the working memory of
    the component running."""
    batch, step = _sizes(net, s, chunk)
    work = _work(net, s, batch, steps)
    freed = [0] * len(s.components)
    for p, i in s.last_use.items():
        kept = steps if p in record and p not in (windows or {}) else _length(windows, p) if p in record else 0
        freed[i] += (steps - kept) * step[p]
    live = sum(8 * steps * batch[p] * s.size[p] for p in probe)
    peak = 0
    for i, comp in enumerate(s.components):
        live += sum(steps * step[p] for p in comp)
        peak = max(peak, live + sum(work[p] for p in comp))
        live -= freed[i]
    return peak


def _length(windows: Mapping[str, tuple[int, int]] | None, name: str, default: int = 0) -> int:
    """Steps in ``name``'s window (``default`` without one)."""
    first, stop = (windows or {}).get(name, (0, default))
    return stop - first


def weights(net: ChipNet) -> list[tuple[int, str]]:
    """``(bytes, what)`` of building and keeping each group's ops."""
    return [(group_bytes(g), f"synapse group '{g.name}'") for g in net.groups]


def consumers(net: ChipNet, s: Structure, groups: list[tuple[int, str]], samples: int, chunk: int, steps: int,
              record: list[str], probe: list[str], schedule: str,
              windows: Mapping[str, tuple[int, int]] | None = None) -> list[tuple[int, str]]:
    """Peak memory by consumer, ``(bytes, what)``, largest first: each group's ops (``groups``, from
    :func:`weights`), the run's state in ``schedule`` (:mod:`snn2chip.backends.sim.schedule`), the
    inputs and the records (int8 ``windows`` of binary populations)."""
    found = list(groups)
    if schedule == "layer":
        run = layer_bytes(net, s, chunk, steps, record, probe, windows)
    else:
        run = step_bytes(net, s, chunk, steps, record, probe)
    found.append((run, f"the state of {sum(s.size.values()):,} neurons for {chunk} samples"))
    inputs = sum(s.size[n] for n in net.inputs)
    found.append((12 * samples * steps * inputs, f"the inputs of {samples} samples x {steps} steps"))
    full = [n for n in record if n not in (windows or {})]
    recorded = (12 * steps * (sum(s.size[n] for n in full) + 2 * sum(s.size[n] for n in probe))
                + 9 * sum(s.size[n] * _length(windows, n) for n in record if n not in full))
    found.append(((samples + chunk) * recorded,
                  f"the records of {len(record) + 2 * len(probe)} populations over {samples} samples x {steps} steps"))
    return sorted(found, reverse=True)
