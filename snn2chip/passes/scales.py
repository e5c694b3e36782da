"""Scales: per population the power-of-two ``alpha`` that maps float membrane units to chip
units (``v_chip = 64 * alpha * v``), from its neurons' dynamics and the worst-case input per
step (:mod:`snn2chip.passes.quantize` states the rules and the range clamp)."""

from __future__ import annotations

import dataclasses
import math

import nir
import numpy as np

from snn2chip.chip import loihi
from snn2chip.chip.ir import Population
from snn2chip.frontend import neurons
from snn2chip.frontend.graph import Graph
from snn2chip.passes import lower, shortcuts
from snn2chip.passes.context import Context

U_LIMIT = 2**17 - 1  # a_in (and v/64) bound that keeps u and v inside 24 bits
WEIGHT_EXP_RANGE = (-8, 7)
MAX_WEIGHT = (2**loihi.WEIGHT_BITS - 2) * 2 ** WEIGHT_EXP_RANGE[1]  # largest weight in chip units
# |a_in| <= 63 keeps |v| = 64 |a_in| < 4096, which the dv = 4095 decay truncates to 0 next step
MEMORYLESS_INPUT = 63
MIN_VTH = 2**6  # smallest threshold (chip units) a range clamp accepts: theta resolved to 1/64
RELAY_RESOLUTION = 2**-4  # chip units the largest weight into a range-clamped relay keeps at least


def _uniform(values, what: str, graph: Graph, node: str) -> float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size and not np.allclose(arr, arr.reshape(-1)[0], rtol=0, atol=0):
        raise graph.error(f"per-neuron {what} differ: Lava's LIF has one value per population", node=node)
    return float(arr.reshape(-1)[0]) if arr.size else 0.0


@dataclasses.dataclass(frozen=True)
class Neuron:
    """Uniform discrete dynamics of one population's neurons (float)."""

    decay: float  # v decay factor per step
    syn_decay: float | None  # u decay factor, None without synaptic current
    gain: float  # float input -> float v increment (times syn gain)
    theta: float | None  # threshold, None if not spiking
    leak_bias: np.ndarray  # dt/tau * v_leak per neuron
    memoryless: bool = False  # a Threshold node: du = dv = 4095 and |a_in| < 64, so nothing carries over
    subtract: bool = False  # reset by subtraction of theta
    relay: bool = False  # a graded relay: out = summed input, graded payload


def neuron(graph: Graph, node: str, dt: float) -> Neuron:
    """The dynamics of the population of NIR node ``node`` (relays and Outputs: out = input)."""
    n = graph.nodes[node]
    if isinstance(n, nir.Output) or shortcuts.is_relay(n):  # relays: out = summed input, exactly
        return Neuron(0.0, None, 1.0, None, np.zeros(graph.out_shapes[node]), relay=True)
    if isinstance(n, nir.Threshold):
        theta = _uniform(n.threshold, "thresholds", graph, node)
        return Neuron(0.0, None, 1.0, theta, np.zeros(graph.out_shapes[node]), memoryless=True)
    p = neurons.discretise(n, dt, node)
    if p.spiking and not p.subtract:
        if np.any(p.v_reset != 0):
            raise graph.error("v_reset other than 0 cannot be represented: Loihi's LIF resets v to 0", node=node)
    syn = p.syn_decay is not None
    gain = _uniform(p.gain, "gains (r, tau)", graph, node) * (_uniform(p.syn_gain, "w_in, tau_syn", graph, node) if syn else 1)
    return Neuron(
        decay=_uniform(p.decay, "time constants", graph, node),
        syn_decay=_uniform(p.syn_decay, "synaptic time constants", graph, node) if syn else None,
        gain=gain,
        theta=_uniform(p.v_threshold, "thresholds", graph, node) if p.spiking else None,
        leak_bias=np.broadcast_to(p.lam_v_leak, graph.out_shapes[node]).astype(np.float64),
        subtract=p.subtract,
    )


def relay_limit(ctx: Context) -> int:
    """The largest payload a relay carries."""
    return 2 ** (ctx.caps.relay_bits - 1) - 1


def input_range(ctx: Context, src: str, ranges: dict[str, float]) -> tuple[float, bool]:
    """Largest float value a source sends per step, and whether it can be negative (``ranges``:
    what each relay built so far carries)."""
    if isinstance(ctx.graph.nodes[ctx.pops[src]], nir.Input) and ctx.options.input_bits:
        return (2 ** (ctx.options.input_bits - 1) - 1) / ctx.options.input_scale, True
    if src in ranges:
        return ranges[src], True
    return 1.0, False


def input_scale(ctx: Context, src: str, populations: dict[str, Population]) -> float:
    """Payload units per float unit of a source: the input scale for graded inputs, a relay's
    scale for relays (its payload is ``alpha * value``), else 1 (spikes)."""
    if isinstance(ctx.graph.nodes[ctx.pops[src]], nir.Input) and ctx.options.input_bits:
        return ctx.options.input_scale
    source = populations.get(src)  # absent when it is the population being built (a recurrent edge)
    return source.scale if source is not None and source.kind == "relay" else 1.0


def _step_input_bounds(fg: lower.FloatGroup, x_max: float, signed: bool, shape) -> tuple[np.ndarray, np.ndarray]:
    """Per destination neuron: largest positive and negative float input per step from one group."""
    w = fg.weights
    if fg.kind == "conv":
        pos = np.clip(w, 0, None).reshape(w.shape[0], -1).sum(1)
        neg = np.clip(w, None, 0).reshape(w.shape[0], -1).sum(1)
        pos, neg = (np.broadcast_to(a.reshape(-1, *(1,) * (len(shape) - 1)), shape).reshape(-1) for a in (pos, neg))
    elif fg.kind == "diag":
        pos, neg = np.clip(w, 0, None), np.clip(w, None, 0)
    else:
        pos, neg = np.clip(w, 0, None).sum(1), np.clip(w, None, 0).sum(1)
    if signed:
        pos = neg = pos - neg
        neg = -neg
    return pos * x_max, neg * x_max


def choose_scale(n: Neuron, pos: float, neg: float, steps: int, weight: float, relay_max: int) -> tuple[float, float]:
    """The power-of-two alpha and the fraction of it that the worst-case input per step allows
    (1: the worst case is guaranteed). ``weight`` is the largest float weight times gain;
    ``relay_max`` the largest relay payload. Range clamp: for a threshold, alpha is never below
    the smallest power of two giving ``vth >= MIN_VTH``, as far as the weight and threshold
    limits allow; the fraction is then below 1."""
    hard = [MAX_WEIGHT / weight] if weight > 0 else []  # limits that no input range relaxes
    ranged = []  # limits from the worst-case input per step
    per_step = max(pos, neg)
    if n.memoryless and per_step > 0:
        ranged.append(MEMORYLESS_INPUT / per_step)
    if n.syn_decay is not None and n.syn_decay < 1:
        per_step /= 1 - n.syn_decay  # the synaptic current accumulates
    if per_step > 0 and not n.relay:  # a relay keeps no u: its payload range bounds it (below)
        ranged.append(U_LIMIT / per_step)
    if n.theta is not None:
        # v before a spike (with reset by subtraction, an input that stays above theta keeps
        # raising v, up to the chip's clip: the neuron fires every step either way)
        ranged.append(U_LIMIT / (abs(n.theta) + per_step))
        if n.theta > 0:
            hard.append(loihi.VTH_MAX / n.theta)
    elif n.relay and per_step > 0:
        ranged.append(relay_max / per_step)
    elif per_step > 0:
        horizon = steps if n.decay >= 1 else min(steps, 1 / (1 - n.decay))
        ranged.append(U_LIMIT / (per_step * horizon))
    alpha = power_below(min(hard + ranged, default=2.0**20))
    if n.theta is not None and n.theta > 0:
        floor = min(2.0 ** math.ceil(math.log2(MIN_VTH / n.theta)), power_below(min(hard)))
        if alpha < floor:
            return floor, min(ranged) / floor
    return alpha, 1.0


def power_below(bound: float) -> float:
    """The largest power of two not above ``bound``."""
    return 2.0 ** math.floor(math.log2(bound))


def _relay_scale(incoming: list[tuple[lower.FloatGroup, float]], bias: np.ndarray) -> float:
    """The smallest scale at which every input of a relay keeps a full 8-bit mantissa.

    ``incoming`` pairs each float map with its source's payload scale (payload per float unit):
    a group's chip weights are ``W * alpha / source_scale``. Integer weights on spikes need only
    alpha = 1 (the relay then carries the spike count itself). Small relay scales keep the
    weights of the relay's own consumers (``W * alpha_consumer / alpha_relay``) large.
    """
    needed = [1.0]
    for fg, source_scale in incoming:
        w = np.abs(fg.weights)
        w = w[w > 0]
        if w.size and not (source_scale == 1 and np.all(w == np.round(w))):
            needed.append(254 * source_scale / w.max())
    b = np.abs(bias)[np.abs(bias) > 0]
    if b.size:
        needed.append(254 / b.max())
    return 2.0 ** math.ceil(math.log2(max(needed)))


def _relay_floor(incoming: list[tuple[lower.FloatGroup, float]]) -> float:
    """The smallest power-of-two scale at which the largest weight of every input of a relay is at
    least ``RELAY_RESOLUTION`` chip units, 4 significant bits at the smallest exponent (``incoming``
    as for :func:`_relay_scale`): a relay's worst-case range bound may not push it lower, where its
    inputs would round to zero (range clamp, as for thresholds). Below one chip unit, so a chain of
    relays does not compound it."""
    floors = [RELAY_RESOLUTION * source_scale / w for fg, source_scale in incoming
              for w in [float(np.abs(fg.weights).max(initial=0))] if w > 0]
    return 2.0 ** math.ceil(math.log2(max(floors))) if floors else 1.0


@dataclasses.dataclass(frozen=True)
class Scale:
    """A population's scale ``alpha``, the fraction of it the worst-case input guarantees
    (below 1: range-clamped), that worst case (float units per step), and for a relay the
    largest value it carries (float units; None for other populations)."""

    alpha: float
    guaranteed: float
    worst: float
    carries: float | None = None


def population_scale(ctx: Context, pop: str, n: Neuron, incoming: list, constant: np.ndarray,
                     populations: dict[str, Population], ranges: dict[str, float]) -> Scale:
    """The :class:`Scale` of ``pop`` (dynamics ``n``, float maps ``incoming`` as
    ``(src, chain, recurrent, FloatGroup)``, constant input per step ``constant``), given the
    populations built so far and the ranges their relays carry."""
    shape = ctx.graph.out_shapes[ctx.pops[pop]]
    pos = constant.clip(0, None).reshape(-1).copy()
    neg = (-constant).clip(0, None).reshape(-1).copy()
    for src, _, _, fg in incoming:
        x_max, signed = input_range(ctx, src, ranges)
        p, m = _step_input_bounds(fg, x_max, signed, shape)
        pos += p * n.gain
        neg -= m * n.gain
    weight = max([float(np.abs(constant).max(initial=0))]
                 + [float(np.abs(fg.weights).max(initial=0)) * n.gain / input_scale(ctx, src, populations)
                    for src, _, _, fg in incoming])
    worst = max(float(pos.max(initial=0)), float(neg.max(initial=0)))
    alpha, guaranteed = choose_scale(n, float(pos.max(initial=0)), float(neg.max(initial=0)), ctx.options.steps,
                                     weight, relay_limit(ctx))
    if not shortcuts.is_relay(ctx.graph.nodes[ctx.pops[pop]]):
        return Scale(alpha, guaranteed, worst)
    # never below a relay it reads: relay-to-relay weights are then 2**k >= 1, exact (a right
    # shift would floor the carried sum at every hop)
    upstream = [populations[src].scale for src, *_ in incoming if src in ranges]
    sources = [(fg, input_scale(ctx, src, populations)) for src, *_, fg in incoming]
    wanted = max([_relay_scale(sources, constant), *upstream])
    floor = min(wanted, _relay_floor(sources), power_below(MAX_WEIGHT / weight) if weight > 0 else wanted)
    if alpha < floor:  # range clamp: the worst case would round the relay's inputs away
        alpha, guaranteed = floor, alpha / floor
    alpha = min(alpha, wanted)
    return Scale(alpha, guaranteed, worst, min(worst, relay_limit(ctx) / alpha))  # no more than a payload carries

