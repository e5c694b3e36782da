"""Energy per inference from counted chip activity and published per-operation energies.

Figures: M. Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning",
IEEE Micro 38(1), 2018, Table 2 ("Loihi pre-silicon performance and energy measurements", from
SDF and SPICE simulations, "consistent with early post-silicon characterization"):

- energy per synaptic spike op (min): 23.6 pJ
- energy per neuron update (active / inactive): 81 pJ / 52 pJ
- within-tile spike energy: 1.7 pJ (energy per tile hop: 3.0 pJ E-W, 4.0 pJ N-S)

Intel has not published per-operation energies for Loihi 2 (its 2021 technology brief "Taking
Neuromorphic Computing to the Next Level with Loihi 2" gives only relative speed and density
gains), so the ``loihi2`` target uses the Loihi 1 figures, marked as an estimate.

Model: synaptic ops x 23.6 pJ + neuron updates (active: the neuron spiked that step; else
inactive) + one within-tile spike message per spike and outgoing synapse group. Tile hops are
not counted (the energy of a hop is not public for Loihi 2), static power neither: a lower-bound estimate of dynamic energy.
"""

from __future__ import annotations

import dataclasses

from snn2chip.records import Record

PJ = 1e-12


@dataclasses.dataclass(frozen=True)
class Figures:
    """Per-operation energies in joules and where they come from."""

    name: str
    source: str
    synaptic_op: float
    neuron_update_active: float
    neuron_update_inactive: float
    spike_message: float


LOIHI1 = Figures(
    name="loihi1-davies2018",
    source="Davies et al., IEEE Micro 38(1) 2018, Table 2 (Loihi 1, pre-silicon SDF/SPICE figures)",
    synaptic_op=23.6 * PJ,
    neuron_update_active=81 * PJ,
    neuron_update_inactive=52 * PJ,
    spike_message=1.7 * PJ,
)

#: Figures per target, and whether they are the target's own published figures (other
#: targets: the Loihi 1 figures, as an estimate).
FIGURES = {"loihi1": (LOIHI1, True), "loihi2": (LOIHI1, False)}


@dataclasses.dataclass(frozen=True)
class Energy(Record):
    """Energy (J) of one inference by part, the figures used and their source."""

    synaptic_j: float
    neuron_j: float
    spike_messages_j: float
    total_j: float
    figures: str
    source: str
    per_operation_j: dict[str, float]
    target_figures_published: bool
    note: str


def estimate(target: str, synops: float, neuron_updates: float, spikes: float, messages: float) -> Energy:
    """Energy of one inference from per-inference counts: synaptic ops, neuron updates, spikes
    (active updates, a subset of the updates) and spike messages (spike x outgoing group)."""
    figures, own = FIGURES.get(target, (LOIHI1, False))
    synaptic = synops * figures.synaptic_op
    neuron = spikes * figures.neuron_update_active + (neuron_updates - spikes) * figures.neuron_update_inactive
    messages_j = messages * figures.spike_message
    note = ("dynamic energy lower bound: no tile hops, no static power"
            + ("" if own else f"; {target} per-operation energies are not published: {figures.name} figures used as an estimate"))
    return Energy(
        synaptic_j=synaptic, neuron_j=neuron, spike_messages_j=messages_j, total_j=synaptic + neuron + messages_j,
        figures=figures.name, source=figures.source,
        per_operation_j={"synaptic_op": figures.synaptic_op, "neuron_update_active": figures.neuron_update_active,
                         "neuron_update_inactive": figures.neuron_update_inactive,
                         "spike_message": figures.spike_message},
        target_figures_published=own, note=note,
    )
