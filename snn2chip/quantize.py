"""Quantization: populations and float synapse maps (:mod:`snn2chip.lower`) become a ChipNet.

Per destination population a power-of-two scale ``alpha`` maps float membrane units to chip
units: ``v_chip = 64 * alpha * v``, so a synaptic input of float value ``x`` arrives as
``a_in = alpha * c * x`` with ``c`` the neuron's input gain (``dt*r`` or ``dt/tau*r``, times
``dt/tau_syn*w_in`` with a synaptic current). ``alpha`` is the largest power of two that keeps
the per-step input below 2**17 (u never wraps), the membrane before a spike below 2**17
(v never clips upwards, except with reset by subtraction under an input that stays above the
threshold: v then saturates at the clip where the float model keeps growing, while the neuron
fires every step in both), integrating read-outs within range for ``steps`` steps, and the
threshold within 17 bits. Thresholds become ``vth = floor(alpha * theta)``: exact, for ``>`` and
for the ``>=`` that exporters encode as ``> nextafter(theta, -inf)``, whenever v stays a multiple
of 64 (no leak, biases multiples of 64), because then ``v_chip/64`` is an integer.

Range clamp: those bounds take the worst case (every input at its largest magnitude, signs
adding up, compounded through every real-valued relay hop), which for deep or random-weight
networks exceeds actual inputs by orders of magnitude. Where it would leave a threshold below
``MIN_VTH = 64`` chip units, alpha is instead the smallest power of two giving ``vth >= 64``
(theta resolved to 1/64, as far as the weight and threshold limits allow); the layer's report
entry gets ``range_clamped``, ``worst_case_input`` (per step, float membrane units) and
``guaranteed_fraction`` (the largest worst-case-safe scale over the one used: inputs above that
fraction of the worst case may wrap u or clip v), and the report lists it under
``range_clamps``. A relay passes on at most the range its payload carries at its scale
(``RELAY_LIMIT / alpha``).

Each synapse group gets its own exponent ``e`` so that its largest weight uses the full 8-bit
mantissa: ``weights = round(alpha*c*W / 2**e)``. Mixed-sign weights are split by default into an
excitatory and an inhibitory group, each with 8-bit magnitudes; unsplit, they keep even values
only, as Lava drops the LSB of mixed-sign weights. Conv groups keep ``e >= 0`` and store the
effective kernel (Lava's CPU Conv has no exponent). Decays become ``dv = 4096*dt/tau`` and ``du = 4096*dt/tau_syn - 1`` (``du = 4095``
without synaptic current). ``v_leak`` is an input bias (below) where there is no synaptic
current, as the input is then added to v unchanged; with one it becomes ``bias_mant <<
bias_exp``, which acts from chip step 0, before the population's data arrive.

Input biases (Affine/Conv biases) enter where NIR puts them, through the synaptic input: an
always-on neuron ``bias`` (v = 1 > vth = 0 every step) feeds each biased population through
synapse groups delayed by ``D - 1`` steps (a coarse group and, for its rounding remainder, a
fine one with its own exponent: a bias error adds up over every step, a weight error only
where its input spikes), so that a population at hop depth D receives its bias
from chip step D on, when its first data arrive (float step 0). Biases that cross a recurrent
edge reach a population from float step 1 on (the edge delivers the previous step, 0 at first):
they get their own groups (``bias.late``), one step later. Depths beyond the 63-step delay limit
are rejected.

Bias correction (with calibration inputs): rounding changes a population's mean input by
``sum_groups (W_chip - W) @ m``, ``m`` the source's mean output per step measured in the float
model on the calibration inputs; that amount is subtracted through the bias (Nagel et al.,
"Data-Free Quantization Through Weight Equalization and Bias Correction", ICCV 2019, §4.2, with
measured instead of modelled input means). With calibration inputs weights are also rounded
with error compensation (:mod:`snn2chip.rounding`, GPTQ) on the float model's source outputs,
unless ``rounding`` is 'nearest'.

Latency alignment: a population's hop depth D is one more than its deepest forward source; a
source reached in fewer hops is read through a delay line (one-hop copies of it, shared by all
its consumers), so every path into a population has the same hop count and chip step ``t + D``
is float step ``t`` for every population. Every rounding is reported per layer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import nir
import numpy as np
import torch

from snn2chip import loihi, lower, neurons, reference, rounding, shortcuts
from snn2chip.chip import ChipNet, Population, SynapseGroup
from snn2chip.errors import ModelError
from snn2chip.graph import Graph

BIAS = "bias.always_on"  # the always-on neuron that feeds input biases
U_LIMIT = 2**17 - 1  # a_in (and v/64) bound that keeps u and v inside 24 bits
RELAY_LIMIT = 2**23 - 1  # a graded relay's payload
WEIGHT_EXP_RANGE = (-8, 7)
BIAS_MANT_MAX = 4095
BIAS_EXP_MAX = 7
BIAS_TERMS = 2  # synapse groups per bias sign: coarse, then the fine remainder
ROUNDINGS = ("compensated", "nearest")


@dataclasses.dataclass(frozen=True)
class Options:
    """Compile options. ``input_bits`` 0: inputs are binary spikes; else graded payloads of that
    width, ``round(x * input_scale)``. ``steps``: horizon for the range of integrating read-outs.
    ``align``: equalise the hop counts of paths into a population (switch off only to measure
    what misalignment costs). ``strategy``: how residual joins reach the chip
    (:mod:`snn2chip.shortcuts`). ``split_signs``: mixed-sign weights become an excitatory and an
    inhibitory group (8-bit magnitudes) instead of one mixed group (7 bits and a sign).
    ``calibration``: inputs (samples, *input shape), held for ``steps`` steps, on which the float
    model's source outputs are measured for bias correction and, with ``rounding``
    'compensated', for error-compensating weight rounding (module docstring); 'nearest' rounds
    every weight to nearest."""

    dt: float | None = None
    input_scale: float = 1.0
    input_bits: int = 0
    steps: int = 100
    weight_bits: int = 8
    align: bool = True
    strategy: str = "expand"
    split_signs: bool = True
    calibration: np.ndarray | None = None
    rounding: str = "compensated"


def _uniform(values, what: str, graph: Graph, node: str) -> float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size and not np.allclose(arr, arr.reshape(-1)[0], rtol=0, atol=0):
        raise graph.error(f"per-neuron {what} differ: Lava's LIF has one value per population", node=node)
    return float(arr.reshape(-1)[0]) if arr.size else 0.0


@dataclasses.dataclass(frozen=True)
class _Neuron:
    """Uniform discrete dynamics of one population's neurons (float)."""

    decay: float  # v decay factor per step
    syn_decay: float | None  # u decay factor, None without synaptic current
    gain: float  # float input -> float v increment (times syn gain)
    theta: float | None  # threshold, None if not spiking
    leak_bias: np.ndarray  # dt/tau * v_leak per neuron
    memoryless: bool = False  # a Threshold node: du = dv = 4095 and |a_in| < 64, so nothing carries over
    subtract: bool = False  # reset by subtraction of theta
    relay: bool = False  # a graded relay: out = summed input, 24-bit payload


def _neuron(graph: Graph, node: str, dt: float) -> _Neuron:
    n = graph.nodes[node]
    if isinstance(n, nir.Output) or shortcuts.is_relay(n):  # relays: out = summed input, exactly
        return _Neuron(0.0, None, 1.0, None, np.zeros(graph.out_shapes[node]), relay=True)
    if isinstance(n, nir.Threshold):
        theta = _uniform(n.threshold, "thresholds", graph, node)
        return _Neuron(0.0, None, 1.0, theta, np.zeros(graph.out_shapes[node]), memoryless=True)
    p = neurons.discretise(n, dt, node)
    if p.spiking and not p.subtract:
        if np.any(p.v_reset != 0):
            raise graph.error("v_reset other than 0 cannot be represented: Loihi's LIF resets v to 0", node=node)
    syn = p.syn_decay is not None
    gain = _uniform(p.gain, "gains (r, tau)", graph, node) * (_uniform(p.syn_gain, "w_in, tau_syn", graph, node) if syn else 1)
    return _Neuron(
        decay=_uniform(p.decay, "time constants", graph, node),
        syn_decay=_uniform(p.syn_decay, "synaptic time constants", graph, node) if syn else None,
        gain=gain,
        theta=_uniform(p.v_threshold, "thresholds", graph, node) if p.spiking else None,
        leak_bias=np.broadcast_to(p.lam_v_leak, graph.out_shapes[node]).astype(np.float64),
        subtract=p.subtract,
    )


def _input_range(graph: Graph, pops, src: str, options: Options, ranges: dict) -> tuple[float, bool]:
    """Largest float value a source sends per step, and whether it can be negative."""
    if isinstance(graph.nodes[pops[src]], nir.Input) and options.input_bits:
        return (2 ** (options.input_bits - 1) - 1) / options.input_scale, True
    if src in ranges:
        return ranges[src], True
    return 1.0, False


def _input_scale(graph: Graph, pops, src: str, options: Options, populations: dict) -> float:
    """Payload units per float unit of a source: the input scale for graded inputs, a relay's
    scale for relays (its payload is ``alpha * value``), else 1 (spikes)."""
    if isinstance(graph.nodes[pops[src]], nir.Input) and options.input_bits:
        return options.input_scale
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


MAX_WEIGHT = (2**loihi.WEIGHT_BITS - 2) * 2 ** WEIGHT_EXP_RANGE[1]  # largest weight in chip units
# |a_in| <= 63 keeps |v| = 64 |a_in| < 4096, which the dv = 4095 decay truncates to 0 next step
MEMORYLESS_INPUT = 63
MIN_VTH = 2**6  # smallest threshold (chip units) a range clamp accepts: theta resolved to 1/64


def _choose_scale(neuron: _Neuron, pos: float, neg: float, steps: int, weight: float) -> tuple[float, float]:
    """The power-of-two alpha (see module docstring) and the fraction of it that the worst-case
    input per step allows (1: the worst case is guaranteed). ``weight`` is the largest float
    weight times gain. Range clamp: for a threshold, alpha is never below the smallest power of
    two giving ``vth >= MIN_VTH``, as far as the weight and threshold limits allow; the
    fraction is then below 1."""
    hard = [MAX_WEIGHT / weight] if weight > 0 else []  # limits that no input range relaxes
    ranged = []  # limits from the worst-case input per step
    per_step = max(pos, neg)
    if neuron.memoryless and per_step > 0:
        ranged.append(MEMORYLESS_INPUT / per_step)
    if neuron.syn_decay is not None and neuron.syn_decay < 1:
        per_step /= 1 - neuron.syn_decay  # the synaptic current accumulates
    if per_step > 0:
        ranged.append(U_LIMIT / per_step)
    if neuron.theta is not None:
        # v before a spike (with reset by subtraction, an input that stays above theta keeps
        # raising v, up to the chip's clip: the neuron fires every step either way)
        ranged.append(U_LIMIT / (abs(neuron.theta) + per_step))
        if neuron.theta > 0:
            hard.append(loihi.VTH_MAX / neuron.theta)
    elif neuron.relay and per_step > 0:
        ranged.append(RELAY_LIMIT / per_step)
    elif per_step > 0:
        horizon = steps if neuron.decay >= 1 else min(steps, 1 / (1 - neuron.decay))
        ranged.append(U_LIMIT / (per_step * horizon))
    alpha = _power_below(min(hard + ranged, default=2.0**20))
    if neuron.theta is not None and neuron.theta > 0:
        floor = min(2.0 ** math.ceil(math.log2(MIN_VTH / neuron.theta)), _power_below(min(hard)))
        if alpha < floor:
            return floor, min(ranged) / floor
    return alpha, 1.0


def _power_below(bound: float) -> float:
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


def _exponent(target: np.ndarray, conv: bool, weight_bits: int, where: str, graph: Graph, node: str) -> tuple[int, int]:
    """Weight exponent and mantissa step of a group with float chip-unit weights ``target``: the
    largest weight uses the full mantissa (mixed signs drop the LSB, as Lava does)."""
    mixed = bool(np.any(target > 0) and np.any(target < 0))
    step = 1 << (loihi.WEIGHT_BITS - weight_bits + mixed)
    top = 2**loihi.WEIGHT_BITS - step
    biggest = float(np.abs(target).max(initial=0))
    if biggest == 0:
        return 0, step
    exp = math.ceil(math.log2(biggest / top)) if biggest > top else -math.floor(math.log2(top / biggest))
    exp = max(exp, 0) if conv else min(max(exp, WEIGHT_EXP_RANGE[0]), WEIGHT_EXP_RANGE[1])
    if biggest / 2.0**exp > 2**loihi.WEIGHT_BITS:
        raise graph.error(f"weights of synapse group {where} exceed the 8-bit mantissa at the largest weight exponent",
                          node=node)
    return exp, step


def _mantissa_range(exp: int, mant_step: int) -> tuple[float, float]:
    """Smallest and largest weight (chip units) of a group with exponent ``exp``."""
    return -(2**loihi.WEIGHT_BITS) * 2.0**exp, (2**loihi.WEIGHT_BITS - mant_step) * 2.0**exp


def _compensated(target: np.ndarray, parts: list[tuple[str, np.ndarray]], grids: list[tuple[int, int]],
                 moments: list[np.ndarray]) -> np.ndarray:
    """Float chip-unit weights ``target`` rounded with error compensation (:mod:`snn2chip.rounding`,
    ``moments`` from :func:`~snn2chip.rounding.second_moments`), each weight on its sign group's
    grid (``parts``, with their exponent and mantissa step in ``grids``). Every weight keeps its
    sign; zeros stay zero."""
    step, low, high = np.ones(target.shape), np.zeros(target.shape), np.zeros(target.shape)
    for (_, part), (exp, mant_step) in zip(parts, grids):
        bottom, top = _mantissa_range(exp, mant_step)
        step[part != 0] = mant_step * 2.0**exp
        low[part < 0], high[part > 0] = bottom, top
    return rounding.compensated(target, moments, step, low, high)


def _quantize(target: np.ndarray, conv: bool, options: Options, where: str, graph: Graph, node: str,
              moments: list[np.ndarray] | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray, int, np.ndarray]]:
    """Float chip-unit weights ``target`` as chip groups: per sign group (:func:`_sign_parts`) the
    name suffix, its float weights, integer weights, exponent and reconstruction (chip units),
    one group at a time (large maps: one group's arrays alive at once). Rounded to nearest, or
    error-compensated when ``moments`` are given. Conv groups store the effective kernel
    ``mant << exp`` with exponent 0 (Lava's CPU Conv has no exponent)."""
    parts = _sign_parts(target, options.split_signs)
    grids = [_exponent(part, conv, options.weight_bits, where + suffix, graph, node) for suffix, part in parts]
    joint = None if moments is None else _compensated(target, parts, grids, moments)
    for (suffix, part), (exp, mant_step) in zip(parts, grids):
        if joint is None:
            unit = mant_step * 2.0**exp
            mine = np.clip(np.round(part / unit) * unit, *_mantissa_range(exp, mant_step))
        else:
            mine = np.where(part != 0, joint, 0.0)
        stored_exp = 0 if conv else exp  # ``mine`` is a multiple of 2**exp
        yield suffix, part, np.round(mine / 2.0**stored_exp).astype(np.int64), stored_exp, mine


def _bias(values: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """``bias_mant``, ``bias_exp`` and the reconstruction for chip-unit biases."""
    biggest = float(np.abs(values).max(initial=0))
    exp = 0 if biggest <= BIAS_MANT_MAX else math.ceil(math.log2(biggest / BIAS_MANT_MAX))
    if exp > BIAS_EXP_MAX:
        raise ModelError(f"bias {biggest:g} (chip units) exceeds 13-bit mantissa << 7")
    mant = np.clip(np.round(values / 2**exp), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int64)
    return mant, exp, mant * 2.0**exp


def _rel(error: np.ndarray, reference_values: np.ndarray) -> float:
    scale = float(np.sqrt(np.mean(np.square(reference_values)))) if reference_values.size else 0.0
    return float(np.sqrt(np.mean(np.square(error)))) / scale if scale else 0.0


def _unique(name: str, groups: list[SynapseGroup]) -> str:
    """``name``, or ``name#k`` when several paths join the same two populations."""
    taken = {g.name for g in groups}
    k = 1
    candidate = name
    while candidate in taken:
        candidate, k = f"{name}#{k}", k + 1
    return candidate


def _group_entry(group: SynapseGroup, exp: int, target: np.ndarray, recon: np.ndarray, unit: float, **extra) -> dict:
    """Report entry of one synapse group; errors in float weight units (chip units / ``unit``)."""
    return {
        "name": group.name, "kind": group.kind, "source": group.src, **extra,
        "synapses": int(np.count_nonzero(group.weights)), "weight_exp": exp, "sign_mode": loihi.sign_mode(group.weights),
        "weight_rel_rms_error": _rel(recon - target, target),
        "weight_max_error": float(np.abs(recon - target).max(initial=0)) / unit,
    }


def _sign_parts(target: np.ndarray, split: bool) -> list[tuple[str, np.ndarray]]:
    """The weights as one group, or split into an excitatory (``+``) and an inhibitory (``-``)
    group when signs are mixed: each then keeps all 8 mantissa bits, where a mixed group loses
    its LSB (twice the precision for one more group; the stored synapses are the same)."""
    if not (split and np.any(target > 0) and np.any(target < 0)):
        return [("", target)]
    return [("+", np.clip(target, 0, None)), ("-", np.clip(target, None, 0))]


def _synapse_group(name: str, fg: lower.FloatGroup, ints: np.ndarray, exp: int, common: dict,
                   delay: int = 0) -> SynapseGroup:
    """The chip synapse group for integer weights ``ints`` of the float map ``fg``, every synapse
    ``delay`` extra steps late (dense and one-to-one maps only)."""
    if fg.kind == "diag":
        keep = np.nonzero(ints)[0]
        return SynapseGroup(name, "sparse", weights=ints[keep], weight_exp=exp, rows=keep, cols=keep,
                            delays=np.full(keep.size, delay) if delay else None, **common)
    if fg.kind == "conv":
        return SynapseGroup(name, "conv", weights=ints, stride=fg.stride, padding=fg.padding,
                            dilation=fg.dilation, groups=fg.groups, **common)
    return SynapseGroup(name, "dense", weights=ints, weight_exp=exp, delays=np.full(ints.shape, delay) if delay else None,
                        **common)



def _delay_line(src: str, lag: int, populations: dict, groups: list, depth: dict) -> str:
    """The population that repeats ``src``'s output ``lag`` steps later (shared, built on demand).

    One-to-one copies, one hop each: memoryless LIF copies for spikes (weight 1, vth 0), graded
    relays for graded values (weight 1, vth 0: payloads pass unchanged).
    """
    previous = src
    for k in range(1, lag + 1):
        name = f"{src}@{k}"
        if name not in populations:
            origin = populations[src]
            size = origin.size
            if origin.payload_bits:
                populations[name] = Population(name, "relay", origin.shape, source=f"delay of {src}",
                                               payload_bits=origin.payload_bits, scale=origin.scale)
            else:
                populations[name] = Population(name, "lif", origin.shape, source=f"delay of {src}", du=4095, dv=4095,
                                               vth=0, scale=origin.scale)
            index = np.arange(size)
            groups.append(SynapseGroup(f"{name}<-{previous}", "sparse", previous, name, np.ones(size, dtype=np.int64),
                                       rows=index, cols=index, source=f"delay of {src}"))
            depth[name] = depth[src] + k
        previous = name
    return previous


def _bias_group(graph: Graph, node: str, pop: str, target: np.ndarray, alpha: float, delay: int, options: Options,
                populations: dict, groups: list, entry: dict, label: str = "bias") -> None:
    """The synapse groups from the always-on neuron that give ``pop`` its input bias (chip units
    ``target``), ``delay`` steps late (a population at hop depth D gets its first data at chip step
    D: delay D - 1)."""
    if BIAS in graph.nodes:
        raise graph.error(f"the name '{BIAS}' is reserved for the compiler's always-on bias neuron", node=BIAS)
    populations.setdefault(BIAS, Population(BIAS, "lif", (1,), source="(always-on bias neuron)", vth=0,
                                            bias_mant=np.ones(1, dtype=np.int64)))
    if delay > loihi.MAX_DELAY:
        raise graph.error(f"bias needs a {delay}-step delay to start with the population's data; the chip delays "
                          f"at most {loihi.MAX_DELAY}", node=node)
    remainder = target
    for term in range(BIAS_TERMS):
        for suffix, part, ints, exp, recon in _quantize(remainder, False, options, f"{pop}<-{label}", graph, node):
            name = f"{pop}<-{label}{'.fine' * term}{suffix}"
            group = SynapseGroup(name, "dense", BIAS, pop, ints, exp, options.weight_bits,
                                 delays=np.full(ints.shape, delay) if delay else None, source="bias")
            groups.append(group)
            entry["groups"].append(_group_entry(group, exp, part, recon, alpha, delay=delay))
            remainder = remainder - recon
        if not np.any(remainder):
            break


def _population(graph: Graph, node: str, pop: str, shape, neuron: _Neuron, alpha: float, entry: dict) -> Population:
    """The population's integer neuron parameters (decays, threshold, leak bias); errors into ``entry``."""
    if neuron.relay:
        entry.update(kind="relay", vth=0)
        return Population(pop, "relay", shape, source=node, vth=0, payload_bits=24, scale=alpha)
    chip_bias = 64 * alpha * neuron.leak_bias
    mant, bias_exp, recon_bias = _bias(chip_bias)
    du = 4095
    if neuron.syn_decay is not None:
        du = int(round(4096 * (1 - neuron.syn_decay))) - 1
        entry["syn_decay_error"] = abs((4096 - du - 1) / 4096 - neuron.syn_decay)
    dv = 4095 if neuron.memoryless else min(int(round(4096 * (1 - neuron.decay))), 4095)
    entry["decay_error"] = abs((4096 - dv) / 4096 - neuron.decay)
    vth = loihi.VTH_MAX
    if neuron.theta is not None:
        vth = math.floor(alpha * neuron.theta)
        # v_chip/64 is an integer n when nothing decays and biases are multiples of 64; then
        # n > alpha*theta <=> n > floor(alpha*theta) and the threshold is exact
        exact = du == 4095 and (dv == 0 or neuron.memoryless) and not np.any(np.mod(recon_bias, 64))
        entry["threshold"] = neuron.theta
        entry["threshold_exact"] = bool(exact)
        entry["threshold_error"] = 0.0 if exact or not neuron.theta else (alpha * neuron.theta - vth) / abs(alpha * neuron.theta)
        if not 1 <= vth <= loihi.VTH_MAX:
            raise graph.error(
                f"threshold {neuron.theta:g} cannot be represented: the input range forces scale {alpha:g}, "
                f"giving vth {vth} (needs 1..{loihi.VTH_MAX}); inputs per step would otherwise wrap u",
                node=node,
            )
    reset = {}
    if neuron.subtract:
        # a spike removes theta: round(alpha*theta), which is exact for the >= encoding
        # nextafter(theta, -inf) of an integer alpha*theta, where vth is one less
        reset = dict(reset="subtract", vsub=int(round(alpha * neuron.theta)))
        entry["reset_error"] = abs(reset["vsub"] - alpha * neuron.theta) / abs(alpha * neuron.theta)
    entry.update(kind="lif", vth=vth, du=du, dv=dv, bias_exp=bias_exp,
                 bias_rel_rms_error=_rel(recon_bias - chip_bias, chip_bias), **reset)
    return Population(pop, "lif", shape, source=node, du=du, dv=dv, vth=vth, bias_mant=mant, bias_exp=bias_exp,
                      scale=alpha, **reset)


def _calibration_outputs(graph: Graph, pops: dict[str, str], options: Options, dt: float) -> dict[str, np.ndarray] | None:
    """Per population the float model's outputs (samples, steps, neurons) on the calibration inputs."""
    if options.calibration is None:
        return None
    nodes = sorted(set(pops.values()))
    try:
        outputs = reference.run(graph, options.calibration, options.steps, dt=dt, record=nodes, dtype=torch.float64)
    except ModelError as e:
        raise ModelError(f"calibration inputs: {e.problem}", node=e.node, option="--calib") from None
    return {pop: outputs[node].reshape(*outputs[node].shape[:2], -1) for pop, node in pops.items()}


def compile_graph(graph: Graph, options: Options = Options()) -> tuple[ChipNet, dict]:
    """Lower and quantize ``graph``; return the chip network and the per-layer report."""
    dt, _ = reference.resolve_dt(graph, options.dt)
    if options.rounding not in ROUNDINGS:
        raise ModelError(f"unknown rounding '{options.rounding}' (known: {', '.join(ROUNDINGS)})")
    graph = shortcuts.apply(lower.relay_large_maps(graph), options.strategy)
    pops = lower.populations(graph)
    calibrated = _calibration_outputs(graph, pops, options, dt)
    means = None if calibrated is None else {pop: out.mean((0, 1)) for pop, out in calibrated.items()}
    ranges: dict[str, float] = {}  # largest |value| a relay carries (float units)
    populations: dict[str, Population] = {}
    groups: list[SynapseGroup] = []
    layers = []
    depth: dict[str, int] = {}
    unaligned = []
    clamped = []
    for pop, node in pops.items():
        shape = graph.out_shapes[node]
        if isinstance(graph.nodes[node], nir.Input):
            populations[pop] = Population(pop, "input", shape, source=node, payload_bits=options.input_bits,
                                          input_scale=options.input_scale)
            depth[pop] = 0
            continue
        neuron = _neuron(graph, node, dt)
        incoming = [(src, chain, rec, lower.lower_path(graph, pops, src, pop, chain))
                    for src, chain, rec in lower.paths(graph, pops, pop)]
        forward, late = lower.population_bias(graph, pops, pop)
        bias, late = forward.reshape(shape) * neuron.gain, late.reshape(shape) * neuron.gain  # v units per step
        if neuron.syn_decay is None and np.any(neuron.leak_bias):
            # without a synaptic current an input is added to v as it is: v_leak joins the input
            # biases, so that it too starts with the population's data
            bias = bias + neuron.leak_bias.reshape(shape)
            neuron = dataclasses.replace(neuron, leak_bias=np.zeros_like(neuron.leak_bias))
        constant = bias + late
        pos = constant.clip(0, None).reshape(-1).copy()
        neg = (-constant).clip(0, None).reshape(-1).copy()
        for src, _, _, fg in incoming:
            x_max, signed = _input_range(graph, pops, src, options, ranges)
            p, n = _step_input_bounds(fg, x_max, signed, shape)
            pos += p * neuron.gain
            neg -= n * neuron.gain
        weight = max([float(np.abs(constant).max(initial=0))]
                     + [float(np.abs(fg.weights).max(initial=0)) * neuron.gain / _input_scale(graph, pops, src, options, populations)
                        for src, _, _, fg in incoming])
        worst = max(float(pos.max(initial=0)), float(neg.max(initial=0)))
        alpha, guaranteed = _choose_scale(neuron, float(pos.max(initial=0)), float(neg.max(initial=0)), options.steps,
                                          weight)
        if shortcuts.is_relay(graph.nodes[node]):
            # never below a relay it reads: relay-to-relay weights are then 2**k >= 1, exact (a right
            # shift would floor the carried sum at every hop)
            upstream = [populations[src].scale for src, *_ in incoming if src in ranges]
            sources = [(fg, _input_scale(graph, pops, src, options, populations)) for src, *_, fg in incoming]
            alpha = min(alpha, max([_relay_scale(sources, constant), *upstream]))
            ranges[pop] = min(worst, RELAY_LIMIT / alpha)  # a payload carries no more at this scale
        entry = {"population": pop, "nir_node": node, "neurons": int(np.prod(shape)), "scale": alpha, "groups": []}
        if guaranteed < 1:
            clamp = {"worst_case_input": worst, "guaranteed_fraction": guaranteed}
            entry.update(range_clamped=True, **clamp)
            clamped.append({"population": pop, "scale": alpha, **clamp})
        correction = np.zeros(shape)
        forward = {depth[src] + 1 for src, _, rec, _ in incoming if not rec and src in depth}
        depth[pop] = max(forward, default=1)
        if len(forward) > 1 and not options.align:
            unaligned.append({"population": pop, "path_hops": sorted(forward)})
        for src, chain, rec, fg in incoming:
            lag = depth[pop] - depth[src] - 1 if options.align and not rec else 0
            # binary spikes through dense/one-to-one maps wait in synaptic delays; convolutions
            # (Lava's Conv has no delays) and graded payloads read a delay line
            synaptic = 0 < lag <= loihi.MAX_DELAY and fg.kind != "conv" and not populations[src].payload_bits
            sender = _delay_line(src, lag, populations, groups, depth) if lag and not synaptic else src
            if lag:
                how = "synaptic delay" if synaptic else "delay line"
                entry.setdefault("delayed", []).append({"source": src, "steps": lag, "by": how})
            unit = alpha * neuron.gain / _input_scale(graph, pops, src, options, populations)  # chip units per float weight
            target = fg.weights * unit
            common = dict(src=sender, dst=pop, num_weight_bits=options.weight_bits, source=",".join(chain))
            src_shape = populations[src].shape if src in populations else shape
            moments = None if calibrated is None else rounding.second_moments(fg, calibrated[src], src_shape)
            compensate = moments if options.rounding == "compensated" else None
            for suffix, part, ints, exp, recon in _quantize(target, fg.kind == "conv", options, f"{pop}<-{sender}",
                                                            graph, node, compensate):
                name = _unique(f"{pop}<-{sender}{suffix}", groups)
                if means is not None:
                    correction -= lower.apply_map(fg, (recon - part) / unit, means[src], src_shape).reshape(shape)
                group = _synapse_group(name, fg, ints, exp, common, lag if synaptic else 0)
                groups.append(group)
                measured = {"rounding": "compensated" if compensate is not None else "nearest"}
                if moments is not None:
                    measured["input_rel_rms_error"] = rounding.input_error(recon - part, part, moments)
                entry["groups"].append(_group_entry(group, exp, part, recon, unit, through=list(chain), recurrent=rec,
                                                    **measured))
        if means is not None:
            correction *= neuron.gain
            entry["bias_correction_rms"] = float(np.sqrt(np.mean(np.square(correction))))
            bias = bias + correction
        for label, values, delay in (("bias", bias, depth[pop] - 1), ("bias.late", late, depth[pop])):
            if np.any(values != 0):
                _bias_group(graph, node, pop, alpha * values.reshape(-1, 1), alpha, delay, options, populations,
                            groups, entry, label)
        populations[pop] = _population(graph, node, pop, shape, neuron, alpha, entry)
        layers.append(entry)
    outputs = {}
    for name in graph.outputs:
        preds = graph.predecessors(name)
        outputs[name] = f"{name}.readout" if f"{name}.readout" in pops else preds[0]
    net = ChipNet(
        populations=populations,
        groups=tuple(groups),
        inputs=tuple(p for p in populations if populations[p].kind == "input"),
        outputs=tuple(outputs.values()),
        pipeline_depth=max((depth[p] for p in outputs.values()), default=0),
        metadata={"source": graph.source, "dt": dt, "outputs": outputs, "depth": depth},
    ).validate()
    report = {
        "layers": layers,
        "unaligned_joins": unaligned,
        "range_clamps": clamped,
        "pipeline_depth": net.pipeline_depth,
        "strategy": options.strategy,
        "split_signs": options.split_signs,
        "calibration_samples": 0 if options.calibration is None else len(options.calibration),
        "rounding": "nearest" if options.calibration is None else options.rounding,
        "joins": [dataclasses.asdict(j) for j in shortcuts.joins(graph)],
    }
    return net, report
