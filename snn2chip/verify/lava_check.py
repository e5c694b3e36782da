"""Lava against the simulator, bit for bit: the whole network on the first samples (small
networks), or replay of chosen populations (:mod:`snn2chip.backends.replay`, any size)."""

from __future__ import annotations

import numpy as np

from snn2chip.backends import replay, simulator
from snn2chip.chip.ir import ChipNet
from snn2chip.verify import fidelity
from snn2chip.verify.reports import LavaCheck


def _first_difference(lava: dict, records: dict, i: int, where: str, start: int = 0) -> str | None:
    """Where Lava's records of sample 0 (from chip step ``start`` on) first differ from the
    simulator's sample ``i``, or None."""
    for key in sorted(lava):
        mine = records[key][i][start:]
        diff = np.argwhere(lava[key][0] != mine)
        if len(diff):
            t, *index = diff[0]
            flat = int(np.ravel_multi_index(index, lava[key].shape[2:])) if index else 0
            return (f"sample {i}, '{key}'{where}, chip step {start + t}, neuron {flat}: "
                    f"Lava {lava[key][0][tuple(diff[0])]} vs simulator {mine[tuple(diff[0])]}")
    return None


def network_check(net: ChipNet, x: np.ndarray, steps: int, records: dict, probe: list[str], bar) -> LavaCheck:
    """Run the samples ``x`` through the whole network in Lava; compare every non-input population
    (and the u, v of ``probe``) with the simulator's ``records``."""
    from snn2chip.backends.lava import run_lava

    pops = [p for p, pop in net.populations.items() if pop.kind != "input"]
    for i in range(len(x)):
        lava = run_lava(net, fidelity.chip_inputs(net, x[i : i + 1], steps), record=pops, probe=probe)
        bar.update(1)
        difference = _first_difference(lava, records, i, "")
        if difference:
            return LavaCheck(i + 1, False, "network", first_difference=difference)
    return LavaCheck(len(x), True, "network", compared=(*pops, *(f"{p}.{v}" for p in probe for v in ("u", "v"))))


def _at_rest_until(records: dict, i: int, keys: list[str]) -> int:
    """The first chip step at which any of ``keys`` (a population's output, u, v and its sources'
    outputs) is non-zero in sample ``i``: before it the population is at rest with nothing in
    flight, so a replay may start there from Lava's zero state (a deep layer waits hundreds of
    steps for its data)."""
    busy = np.zeros(len(records[keys[0]][i]), bool)
    for key in keys:
        busy |= records[key][i].reshape(len(busy), -1).any(1)
    return int(np.argmax(busy)) if busy.any() else 0


def replay_check(net: ChipNet, x: np.ndarray, steps: int, names: list[str], bar) -> LavaCheck:
    """Replay each population of ``names`` in Lava on what its sources sent in the simulator for
    the samples ``x``, from the step its activity starts; compare its outputs (and u, v) with the
    simulator's from there (before it, they are all zero in the simulator)."""
    from snn2chip.backends.lava import run_lava

    lif = [p for p in names if net.populations[p].kind == "lif"]
    needed = list(dict.fromkeys([*names, *(g.src for p in names for g in net.incoming(p))]))
    records = simulator.simulate(net, fidelity.chip_inputs(net, x, steps), record=needed, probe=lif)
    compared = []
    for checked, name in enumerate(names):
        bar.set_postfix_str(f"Lava replay {name}")
        sub = replay.subnet(net, name)
        probe = [name] if name in lif else []
        for i in range(len(x)):
            start = _at_rest_until(records, i, [name, *sub.inputs, *(f"{name}.{v}" for v in ("u", "v") if probe)])
            lava = run_lava(sub, {s: records[s][i : i + 1, start:] for s in sub.inputs}, record=[name], probe=probe)
            difference = _first_difference(lava, records, i, " (replayed alone)", start)
            if difference:
                return LavaCheck(len(x), False, "replay", populations=checked + 1, first_difference=difference)
        compared += [name, *(f"{name}.{v}" for v in ("u", "v") if probe)]
        bar.update(1)
    return LavaCheck(len(x), True, "replay", populations=len(names), compared=tuple(compared))
