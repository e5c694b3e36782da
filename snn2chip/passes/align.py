"""Latency alignment: every synapse hop costs one step, so a population's hop depth D is one
more than its deepest forward source, and a source reached in fewer hops waits: through dense
or sparse maps in synaptic delays (up to the target's maximum), binary spikes and graded
payloads alike (Lava's ``DelayDense``/``DelaySparse`` multiply a graded payload by the weight as
``Dense``/``Sparse`` do, then hold the product in their delay buffer). Lava's Conv has no
delays: a convolution waits as the sparse group of its explicit synapses where those take less
of a core than the delay line would (a max pool's one-hot window selections), else, and beyond
the maximum, through a delay line of one-hop copies, shared by all its consumers. A 1×1
convolution without padding and with a stride above 1 (a ResNet's downsampling shortcut) reads
one source position in ``sy·sx``: its line copies only those (``<source>@k.every{sy}x{sx}``,
read at stride 1), unless the whole line is already built. Chip step ``t + D`` is then float
step ``t`` everywhere."""

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
    synapses, in synaptic delays, than through a delay line of ``lag`` copies of the source
    positions it reads (the line counted whole, even where other consumers would share it)."""
    shapes = ctx.graph.out_shapes
    synapses = lower.conv_synapse_bound(fg, shapes[ctx.pops[fg.dst]])
    line = int(np.prod(_line_shape(shapes[ctx.pops[fg.src]], read_grid(fg))))
    return ctx.caps.synapses_cheaper(synapses, lag * line)


def read_grid(fg: lower.FloatGroup) -> tuple[int, int] | None:
    """``(sy, sx)`` when conv map ``fg`` reads only every ``sy``-th row and ``sx``-th column of its
    source from the first (a 1×1 kernel without padding, a stride above 1), else None."""
    if fg.kind == "conv" and fg.weights.shape[2:] == (1, 1) and tuple(fg.padding) == (0, 0) and max(fg.stride) > 1:
        return int(fg.stride[0]), int(fg.stride[1])
    return None


def _line_shape(shape: tuple[int, ...], every: tuple[int, int] | None) -> tuple[int, ...]:
    """The shape of a delay line of a source of ``shape`` that keeps every ``every`` position."""
    if every is None:
        return tuple(shape)
    (c, h, w), (sy, sx) = shape, every
    return c, -(-h // sy), -(-w // sx)


def line_name(src: str, k: int, every: tuple[int, int] | None = None) -> str:
    """The name of the ``k``-th copy in ``src``'s delay line (keeping every ``every`` position)."""
    return f"{src}@{k}" + (f".every{every[0]}x{every[1]}" if every else "")


def delay_line(src: Population, lag: int, src_depth: int, built: set[str], every: tuple[int, int] | None = None
               ) -> tuple[str, list[Population], list[SynapseGroup], dict[str, int]]:
    """The population that repeats ``src``'s output ``lag`` steps later, and what must be added
    for it: the copies not in ``built`` yet, their groups and depths. ``every``: ``(sy, sx)``, the
    copies keep only rows ``0, sy, ...`` and columns ``0, sx, ...`` (see :func:`read_grid`).

    One-to-one copies, one hop each: memoryless LIF copies for spikes (weight 1, vth 0), graded
    relays for graded values (weight 1, vth 0: payloads pass unchanged).
    """
    shape = _line_shape(src.shape, every)
    size = int(np.prod(shape))
    kept = np.arange(src.size).reshape(src.shape)[:, ::every[0], ::every[1]].ravel() if every else np.arange(size)
    pops, groups, depths = [], [], {}
    previous = src.name
    for k in range(1, lag + 1):
        name = line_name(src.name, k, every)
        if name not in built:
            origin = f"delay of {src.name}"
            copy = dict(source=origin, scale=src.scale, role="delay", origin=src.name)
            if src.payload_bits:
                pops.append(Population(name, "relay", shape, payload_bits=src.payload_bits, **copy))
            else:
                pops.append(Population(name, "lif", shape, du=4095, dv=4095, vth=0, **copy))
            index = np.arange(size)
            groups.append(SynapseGroup(f"{name}<-{previous}", "sparse", previous, name, np.ones(size, dtype=np.int64),
                                       rows=index, cols=kept if k == 1 else index, source=origin))
            depths[name] = src_depth + k
        previous = name
    return previous, pops, groups, depths


def line_for(fg: lower.FloatGroup, src: Population, lag: int, src_depth: int, built: set[str]
             ) -> tuple[lower.FloatGroup, str, list[Population], list[SynapseGroup], dict[str, int]]:
    """``fg`` as read from the delay line that makes ``src`` wait ``lag`` steps, and
    :func:`delay_line`'s result: a line of the positions ``fg`` reads (:func:`read_grid`), read at
    stride 1, unless the whole line is already in ``built``."""
    every = None if line_name(src.name, lag) in built else read_grid(fg)
    line = delay_line(src, lag, src_depth, built, every)
    return (dataclasses.replace(fg, stride=(1, 1)) if every else fg), *line


def incoming_paths(ctx: Context, pop: str) -> list[tuple[str, tuple[str, ...], bool, lower.FloatGroup]]:
    """The float maps into ``pop``: ``(source population, NIR chain, recurrent, FloatGroup)``."""
    return [(src, chain, rec, lower.lower_path(ctx.graph, ctx.pops, src, pop, chain))
            for src, chain, rec in lower.paths(ctx.graph, ctx.pops, pop)]
