"""Lava against the simulator, bit for bit: the whole network on the first samples (small
networks), or replay of chosen populations (:mod:`snn2chip.backends.replay`, any size)."""

from __future__ import annotations

import numpy as np

from snn2chip import memory
from snn2chip.backends import replay, simulator
from snn2chip.chip.ir import ChipNet
from snn2chip.verify import fidelity
from snn2chip.verify.reports import LavaCheck


def _first_difference(lava: dict, records: dict, i: int, where: str, start: int = 0) -> str | None:
    """Where Lava's records of sample 0 (chip steps from ``start`` on, as many as Lava ran) first
    differ from the simulator's sample ``i``, or None."""
    for key in sorted(lava):
        mine = records[key][i][start : start + lava[key].shape[1]]
        diff = np.argwhere(lava[key][0] != mine)
        if len(diff):
            t, *index = diff[0]
            flat = int(np.ravel_multi_index(index, lava[key].shape[2:])) if index else 0
            return (f"sample {i}, '{key}'{where}, chip step {start + t}, neuron {flat}: "
                    f"Lava {lava[key][0][tuple(diff[0])]} vs simulator {mine[tuple(diff[0])]}")
    return None


def network_check(net: ChipNet, x: np.ndarray, steps: int, probe: list[str], bar) -> LavaCheck:
    """Run the samples ``x`` through the whole network in Lava and in the simulator; compare every
    non-input population (and the u, v of ``probe``)."""
    from snn2chip.backends.lava import run_lava

    pops = [p for p, pop in net.populations.items() if pop.kind != "input"]
    records = simulator.simulate(net, fidelity.chip_inputs(net, x, steps), record=pops, probe=probe)
    for i in range(len(x)):
        lava = run_lava(net, fidelity.chip_inputs(net, x[i : i + 1], steps), record=pops, probe=probe)
        bar.update(1)
        difference = _first_difference(lava, records, i, "")
        if difference:
            return LavaCheck(i + 1, False, "network", first_difference=difference)
    return LavaCheck(len(x), True, "network", compared=(*pops, *(f"{p}.{v}" for p in probe for v in ("u", "v"))))


def _active_span(records: dict, i: int, keys: list[str]) -> tuple[int, int]:
    """The chip steps ``[start, stop)`` of sample ``i`` outside which all of ``keys`` (a
    population's output, u, v and its sources' outputs) are zero; at least one step.

    Outside the span the population is at rest with nothing in flight: zero u and v, zero bias
    (a bias makes v non-zero) and no input, which keeps it at rest. So a replay may start at
    ``start`` from Lava's zero state (a deep layer waits hundreds of steps for its data) and stop
    at ``stop`` (the simulator's records after it are zero, which is what Lava gives there); a
    spike still in a delay line or a dendritic accumulator reaches u before ``stop``, or it adds
    nothing."""
    busy = np.zeros(len(records[keys[0]][i]), bool)
    for key in keys:
        busy |= records[key][i].reshape(len(busy), -1).any(1)
    if not busy.any():
        return 0, 1
    return int(np.argmax(busy)), len(busy) - int(np.argmax(busy[::-1]))


def _needs(net: ChipNet, names: list[str]) -> tuple[list[str], list[str]]:
    """What replaying ``names`` needs from the simulator: the records (the populations and their
    sources) and the probes (u and v of the LIF populations)."""
    return (list(dict.fromkeys([*names, *(g.src for p in names for g in net.incoming(p))])),
            [p for p in names if net.populations[p].kind == "lif"])


def _runs(net: ChipNet, names: list[str], samples: int, steps: int) -> list[list[str]]:
    """``names`` cut into runs of consecutive populations whose simulator records fit the memory
    budget together (a deep network's records over all its chip steps may not fit at once)."""
    runs: list[list[str]] = [[]]
    for name in names:
        together = runs[-1] + [name]
        needed = sum(b for b, _ in simulator.estimate_bytes(net, samples, samples, steps, *_needs(net, together)))
        if runs[-1] and needed > memory.budget():
            runs.append([name])
        else:
            runs[-1] = together
    return runs


def replay_check(net: ChipNet, x: np.ndarray, steps: int, names: list[str], bar) -> LavaCheck:
    """Replay each population of ``names`` in Lava on what its sources sent in the simulator for
    the samples ``x``, over the steps it is active (:func:`_active_span`); compare its outputs
    (and u, v) with the simulator's there (outside them, they are all zero in the simulator)."""
    from snn2chip.backends.lava import run_lava

    inputs = fidelity.chip_inputs(net, x, steps)
    compared: list[str] = []
    for run in _runs(net, names, len(x), inputs.shape[1]):
        needed, lif = _needs(net, run)
        records = simulator.simulate(net, inputs, record=needed, probe=lif)
        for name in run:
            bar.set_postfix_str(f"Lava replay {name}")
            sub = replay.subnet(net, name)
            probe = [name] if name in lif else []
            for i in range(len(x)):
                start, stop = _active_span(records, i, [name, *sub.inputs, *(f"{name}.{v}" for v in ("u", "v") if probe)])
                lava = run_lava(sub, {s: records[s][i : i + 1, start:stop] for s in sub.inputs}, record=[name], probe=probe)
                difference = _first_difference(lava, records, i, " (replayed alone)", start)
                if difference:
                    return LavaCheck(len(x), False, "replay", populations=names.index(name) + 1,
                                     first_difference=difference)
            compared += [name, *(f"{name}.{v}" for v in ("u", "v") if probe)]
            bar.update(1)
        del records
    return LavaCheck(len(x), True, "replay", populations=len(names), compared=tuple(compared))
