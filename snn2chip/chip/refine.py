"""Finer tiles where they pack into fewer cores, on networks of up to a few hundred tiles.

:mod:`snn2chip.chip.tiling` cuts each population into tiles that each fit a core, at a cost
counted in shares of a core, so a layer needing 2.2 cores of synaptic memory may become 3 tiles
of 0.73 each: no two of them share a core, and neither can a tile of another layer that needs more than 0.27. Cut finer (5 tiles of
0.44), its tiles pair up. :func:`refine` tries, population by population in network order and
round again, up to :data:`FINER_TRIES` finer tilings (each the best block under one neuron fewer
per tile than the previous one's largest tile) and keeps the first whose network packs first-fit
into fewer cores, as long as no source then sends to more tiles than a core has fan-out axons;
it stops after a whole cycle of populations without gain, or at the volume bound. A trial
re-counts the fan-out of the changed population and its sources only, but re-packs the whole
network, so it runs on networks of at most :data:`REFINE_TILES` tiles (the zoo, the converted
ResNet-18 at 64x64; not the ImageNet-size networks).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from snn2chip.chip.fill import Cores
from snn2chip.chip.tiling import Tiling, box_size, fan_out_recut, limits, tile_population

#: networks with more tiles are left as tiled (each trial re-packs the whole network)
REFINE_TILES = 256
#: finer tilings tried per population and round
FINER_TRIES = 4


def refine(tilings: dict[str, Tiling], fan: dict[str, np.ndarray], cap: dict, bound: int
           ) -> tuple[dict[str, Tiling], dict[str, np.ndarray]]:
    """``tilings`` (``fan``: their per-tile fan-out) with populations cut finer where the network
    then packs into fewer cores (module docstring), and their fan-out; ``bound``: the volume
    bound, where the search stops."""
    if sum(len(t.boxes) for t in tilings.values()) > REFINE_TILES:
        return tilings, fan
    best = _cores(tilings, fan, cap)
    order = list(tilings)
    since = 0  # populations tried since the last gain
    k = 0
    while since < len(order) and best > bound:
        p = order[k % len(order)]
        k, since = k + 1, since + 1
        for finer in _finer(tilings[p], cap):
            trial = {**tilings, p: finer}
            trial_fan = fan_out_recut(tilings, fan, p, finer)
            cores = _cores(trial, trial_fan, cap)
            if cores is not None and cores < best:
                tilings, fan, best, since = trial, trial_fan, cores, 0
                break
    return tilings, fan


def _cores(tilings: dict[str, Tiling], fan: dict[str, np.ndarray], cap: dict) -> int | None:
    """Cores of the first-fit packing, or None when a tile sends to more tiles than it may."""
    if any(f.max(initial=0) > cap["fan_out_axons"] for f in fan.values()):
        return None
    cores = Cores(limits(cap))
    cores.place(np.concatenate([t.vectors(fan[p]) for p, t in tilings.items()]))
    return cores.used


def _finer(t: Tiling, cap: dict) -> Iterator[Tiling]:
    """Up to :data:`FINER_TRIES` tilings of ``t``'s population, each with smaller tiles."""
    limit = max(box_size(b) for b in t.boxes) - 1
    for _ in range(FINER_TRIES):
        if limit < 1:
            return
        finer = tile_population(t.population, t.shape, t.groups, cap, limit)
        yield finer
        limit = max(box_size(b) for b in finer.boxes) - 1
