"""Resource totals of a chip network (the ``populations`` … ``weight_memory_bytes`` keys of reports)."""

from __future__ import annotations

import dataclasses

import numpy as np

from snn2chip.chip.ir import ROLES, ChipNet
from snn2chip.records import Record


@dataclasses.dataclass(frozen=True)
class Totals(Record):
    """Populations and neurons (inputs excluded), the neurons by population role (``model``;
    ``relay``: graded sums of shortcuts; ``delay``: delay-line copies; ``bias``: always-on
    neurons), synapse groups, stored synapses (a conv kernel counts once), connections (a
    conv's per output position) and weight memory in bytes."""

    populations: int
    neurons: int
    neurons_by_role: dict[str, int]
    synapse_groups: int
    synapses: int
    connections: int
    weight_memory_bytes: int


def totals(net: ChipNet) -> Totals:
    """The :class:`Totals` of ``net``."""
    connections = 0
    for g in net.groups:
        if g.kind == "conv":  # per output position, the channel's non-zero kernel entries (padding ignored)
            dst = net.populations[g.dst]
            connections += dst.size // dst.shape[0] * int(np.count_nonzero(g.weights))
        else:
            connections += int(np.count_nonzero(g.weights))
    return Totals(
        populations=sum(p.kind != "input" for p in net.populations.values()),
        neurons=sum(p.size for p in net.populations.values() if p.kind != "input"),
        neurons_by_role={role: sum(p.size for p in net.populations.values() if p.kind != "input" and p.role == role)
                         for role in ROLES},
        synapse_groups=len(net.groups),
        synapses=sum(int(np.count_nonzero(g.weights)) for g in net.groups),
        connections=connections,
        weight_memory_bytes=sum(g.weight_memory_bytes for g in net.groups),
    )
