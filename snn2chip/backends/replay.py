"""Lava replay: one population at a time, at any network size.

A whole network in Lava runs one OS process per Lava process, which no large network survives.
Replay checks population ``P`` alone: :func:`subnet` keeps ``P`` and its incoming synapse
groups and turns each source into an input population; fed the outputs (spikes or graded
payloads) that the simulator recorded for those sources, Lava must reproduce ``P``'s outputs,
u and v bit for bit. Each synapse group runs at its real size (full convolutions, strides,
sparse relays, delays, graded payloads), so checking every population checks the whole network
step by step.

:func:`choose` picks the populations: all, named ones, or ``N`` that first cover every kind of
population and incoming synapse (:func:`features`), then spread over the network.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from snn2chip.chip.ir import ChipNet, Population, SynapseGroup
from snn2chip.errors import ModelError


def subnet(net: ChipNet, name: str) -> ChipNet:
    """Population ``name`` and its incoming groups; every other source becomes an input
    population of the same shape and payload width (inputs carry payloads at scale 1)."""
    target = dataclasses.replace(net.populations[name], role="model", origin="")  # a delay copy, without its origin
    groups = net.incoming(name)
    pops = {src: Population(src, "input", net.populations[src].shape, payload_bits=net.populations[src].payload_bits)
            for src in dict.fromkeys(g.src for g in groups) if src != name}
    pops[name] = target
    return ChipNet(pops, tuple(groups), inputs=tuple(p for p in pops if p != name), outputs=(name,),
                   depth={p: 0 for p in pops} | {name: 1}, pipeline_depth=1, dt=net.dt, source=net.source)


def _group_features(net: ChipNet, g: SynapseGroup) -> set[str]:
    graded = " graded" if net.populations[g.src].payload_bits else ""
    found = {f"{g.kind}{graded}"}
    if g.kind == "conv":
        found.add(f"conv {'x'.join(map(str, np.shape(g.weights)[2:]))} stride {'x'.join(map(str, g.stride))}")
        if g.groups > 1:
            found.add("grouped conv")
        if g.weight_exp:
            found.add("conv with exponent")
    if g.delays is not None and np.any(g.delays):
        found.add(f"{g.kind} delayed")
    if g.src == g.dst:
        found.add("recurrent")
    return found


def features(net: ChipNet, name: str) -> set[str]:
    """What checking population ``name`` covers: its kind (and reset) and its incoming synapse kinds."""
    pop = net.populations[name]
    found = {pop.kind if pop.reset != "subtract" else "lif subtract"}
    for g in net.incoming(name):
        found |= _group_features(net, g)
    return found


def choose(net: ChipNet, spec: str) -> list[str]:
    """Populations to replay for ``--lava-populations``: ``all``, a count ``N`` (every feature
    covered first, then evenly spread over the rest), or comma-separated names. Populations
    without incoming synapses (inputs, the always-on bias neuron) have nothing to replay."""
    fed = {g.dst for g in net.groups}
    candidates = [p for p in net.populations if p in fed]
    if spec == "all":
        return candidates
    if not spec.isdigit():
        names = [s.strip() for s in spec.split(",") if s.strip()]
        unknown = [n for n in names if n not in candidates]
        if unknown:
            raise ModelError(f"no population '{unknown[0]}' with incoming synapses to replay", option="--lava-populations")
        return names
    count = min(int(spec), len(candidates))
    chosen, covered = [], set()
    for p in candidates:
        new = features(net, p) - covered
        if new and len(chosen) < count:
            chosen.append(p)
            covered |= new
    rest = [p for p in candidates if p not in chosen]
    spread = np.linspace(0, len(rest) - 1, count - len(chosen)).round().astype(int) if rest else []
    chosen += [rest[i] for i in dict.fromkeys(spread)]
    return [p for p in candidates if p in chosen]


def inputs_of(net: ChipNet, name: str, records: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The replay inputs of ``name``: its sources' recorded outputs ``(samples, steps, *shape)``."""
    return {src: records[src] for src in subnet(net, name).inputs}
