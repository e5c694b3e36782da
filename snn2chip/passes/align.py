"""Latency alignment: every synapse hop costs one step, so a population's hop depth D is one
more than its deepest forward source, and a source reached in fewer hops waits: through dense
or sparse maps in synaptic delays (up to the target's maximum), binary spikes and graded
payloads alike (Lava's ``DelayDense``/``DelaySparse`` multiply a graded payload by the weight as
``Dense``/``Sparse`` do, then hold the product in their delay buffer). Lava's Conv has no
delays: a convolution waits as the sparse group of its explicit synapses where those take less
of a core than the delay line would (a max pool's one-hot window selections), else, and beyond
the maximum, through a delay line of one-hop copies, shared by all its consumers. Chip step
``t + D`` is then float step ``t`` everywhere."""

from __future__ import annotations

import dataclasses

import numpy as np

from snn2chip.chip.ir import Population, SynapseGroup
from snn2chip.passes import lower
from snn2chip.passes.context import Context


@dataclasses.dataclass(frozen=True)
class Wait:
    """How one path into a population waits: ``lag`` extra steps, in synaptic delays
    (``synaptic``) or else, when ``lag`` > 0, through a delay line."""

    lag: int
    synaptic: bool

    @property
    def how(self) -> str:
        return "synaptic delay" if self.synaptic else "delay line"


@dataclasses.dataclass(frozen=True)
class Alignment:
    """A population's hop ``depth``, the distinct hop counts of its forward paths (``hops``; more
    than one means its joins need alignment) and per incoming path its :class:`Wait`."""

    depth: int
    hops: tuple[int, ...]
    waits: tuple[Wait, ...]


def align(ctx: Context, incoming: list, depth: dict[str, int]) -> Alignment:
    """The :class:`Alignment` of a population whose paths are ``incoming`` (``(src, chain,
    recurrent, FloatGroup)``), given the depths of the populations built so far."""
    hops = {depth[src] + 1 for src, _, rec, _ in incoming if not rec and src in depth}
    mine = max(hops, default=1)
    waits = []
    for src, _, rec, fg in incoming:
        lag = mine - depth[src] - 1 if ctx.options.align and not rec else 0
        waits.append(Wait(lag, 0 < lag <= ctx.caps.max_delay and (fg.kind != "conv" or _cheap_conv(ctx, fg, lag))))
    return Alignment(mine, tuple(sorted(hops)), tuple(waits))


def _cheap_conv(ctx: Context, fg: lower.FloatGroup, lag: int) -> bool:
    """Whether conv map ``fg`` waits ``lag`` steps more cheaply as the sparse group of its explicit
    synapses, in synaptic delays, than through a delay line of ``lag`` copies of its source (the
    line counted whole, even where other consumers would share it)."""
    shapes = ctx.graph.out_shapes
    synapses = lower.conv_synapse_bound(fg, shapes[ctx.pops[fg.dst]])
    return ctx.caps.synapses_cheaper(synapses, lag * int(np.prod(shapes[ctx.pops[fg.src]])))


def delay_line(src: Population, lag: int, src_depth: int, built: set[str]
               ) -> tuple[str, list[Population], list[SynapseGroup], dict[str, int]]:
    """The population that repeats ``src``'s output ``lag`` steps later, and what must be added
    for it: the copies not in ``built`` yet, their groups and depths.

    One-to-one copies, one hop each: memoryless LIF copies for spikes (weight 1, vth 0), graded
    relays for graded values (weight 1, vth 0: payloads pass unchanged).
    """
    pops, groups, depths = [], [], {}
    previous = src.name
    for k in range(1, lag + 1):
        name = f"{src.name}@{k}"
        if name not in built:
            origin = f"delay of {src.name}"
            copy = dict(source=origin, scale=src.scale, role="delay", origin=src.name)
            if src.payload_bits:
                pops.append(Population(name, "relay", src.shape, payload_bits=src.payload_bits, **copy))
            else:
                pops.append(Population(name, "lif", src.shape, du=4095, dv=4095, vth=0, **copy))
            index = np.arange(src.size)
            groups.append(SynapseGroup(f"{name}<-{previous}", "sparse", previous, name, np.ones(src.size, dtype=np.int64),
                                       rows=index, cols=index, source=origin))
            depths[name] = src_depth + k
        previous = name
    return previous, pops, groups, depths


def incoming_paths(ctx: Context, pop: str) -> list[tuple[str, tuple[str, ...], bool, lower.FloatGroup]]:
    """The float maps into ``pop``: ``(source population, NIR chain, recurrent, FloatGroup)``."""
    return [(src, chain, rec, lower.lower_path(ctx.graph, ctx.pops, src, pop, chain))
            for src, chain, rec in lower.paths(ctx.graph, ctx.pops, pop)]
