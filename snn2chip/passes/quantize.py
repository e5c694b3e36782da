"""Quantization: populations and float synapse maps (:mod:`.lower`) become a ChipNet.

:func:`compile_graph` runs the passes population by population, in the order of the data flow:
its dynamics and biases (:mod:`.scales`, :mod:`.bias`), its scale, its alignment
(:mod:`.align`), its weights (:mod:`.weights`) and its integer neuron parameters; each pass is
a function of the :class:`~snn2chip.passes.context.Context` (graph, options, the target's
capabilities) and of what earlier populations fixed, returning a typed value.

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
they get their own groups (``bias.late``), one step later. Beyond the target's delay limit the
bias comes from a delayed always-on neuron (:mod:`.bias`).

Bias correction (with calibration inputs): rounding changes a population's mean input by
``sum_groups (W_chip - W) @ m``, ``m`` the source's mean output per step measured in the float
model on the calibration inputs; that amount is subtracted through the bias (Nagel et al.,
"Data-Free Quantization Through Weight Equalization and Bias Correction", ICCV 2019, §4.2, with
measured instead of modelled input means). With calibration inputs weights are also rounded
with error compensation (:mod:`.rounding`, GPTQ) on the float model's source outputs,
unless ``rounding`` is 'nearest'.

Latency alignment: a population's hop depth D is one more than its deepest forward source; a
source reached in fewer hops is read through a delay line (one-hop copies of it, shared by all
its consumers), so every path into a population has the same hop count and chip step ``t + D``
is float step ``t`` for every population. Every rounding is reported per layer.
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType
from typing import Mapping

import nir
import numpy as np

from snn2chip.chip import loihi
from snn2chip.chip.ir import ChipNet, Population, SynapseGroup, readout_name
from snn2chip.frontend import neurons
from snn2chip.frontend.graph import Graph
from snn2chip.passes import align, bias, context, lower, rounding, scales, shortcuts, weights
from snn2chip.passes.context import Capabilities, Context, Options
from snn2chip.passes.reports import (Delayed, GroupReport, LayerReport, NeuronReport, Quantization, RangeClamp,
                                     UnalignedJoin)

__all__ = ["Capabilities", "Options", "compile_graph"]


def _threshold(ctx: Context, pop: str, n: scales.Neuron, alpha: float, exact: bool) -> tuple[int, dict]:
    """The chip threshold of ``pop`` and its report fields; ``exact``: whether v stays a multiple of 64."""
    if n.theta is None:
        return loihi.VTH_MAX, {}
    vth = math.floor(alpha * n.theta)
    if not 1 <= vth <= loihi.VTH_MAX:
        raise ctx.graph.error(
            f"threshold {n.theta:g} cannot be represented: the input range forces scale {alpha:g}, "
            f"giving vth {vth} (needs 1..{loihi.VTH_MAX}); inputs per step would otherwise wrap u",
            node=ctx.pops[pop],
        )
    error = 0.0 if exact or not n.theta else (alpha * n.theta - vth) / abs(alpha * n.theta)
    return vth, dict(threshold=n.theta, threshold_exact=bool(exact), threshold_error=error)


def _population(ctx: Context, pop: str, n: scales.Neuron, alpha: float) -> tuple[Population, NeuronReport]:
    """The population's integer neuron parameters (decays, threshold, leak bias) and their errors."""
    node, shape = ctx.pops[pop], ctx.graph.out_shapes[ctx.pops[pop]]
    if n.relay:
        role = "relay" if shortcuts.is_relay(ctx.graph.nodes[node]) else "readout"  # else: an Output's read-out
        return (Population(pop, "relay", shape, source=node, vth=0, payload_bits=ctx.caps.relay_bits, scale=alpha,
                           role=role), NeuronReport("relay", 0))
    chip_bias = 64 * alpha * n.leak_bias
    mant, bias_exp, recon_bias = bias.mantissa(chip_bias)
    du, syn_error = 4095, None
    if n.syn_decay is not None:
        du = int(round(4096 * (1 - n.syn_decay))) - 1
        syn_error = abs((4096 - du - 1) / 4096 - n.syn_decay)
    dv = 4095 if n.memoryless else min(int(round(4096 * (1 - n.decay))), 4095)
    # v_chip/64 is an integer n when nothing decays and biases are multiples of 64; then
    # n > alpha*theta <=> n > floor(alpha*theta) and the threshold is exact
    exact = du == 4095 and (dv == 0 or n.memoryless) and not np.any(np.mod(recon_bias, 64))
    vth, threshold = _threshold(ctx, pop, n, alpha, exact)
    reset = {}
    if n.subtract:
        # a spike removes theta: round(alpha*theta), which is exact for the >= encoding
        # nextafter(theta, -inf) of an integer alpha*theta, where vth is one less
        reset = dict(reset="subtract", vsub=int(round(alpha * n.theta)))
    report = NeuronReport("lif", vth, du=du, dv=dv, decay_error=abs((4096 - dv) / 4096 - n.decay),
                          syn_decay_error=syn_error, bias_exp=bias_exp,
                          bias_rel_rms_error=weights.rel(recon_bias - chip_bias, chip_bias), **threshold, **reset,
                          reset_error=abs(reset["vsub"] - alpha * n.theta) / abs(alpha * n.theta) if reset else None)
    role = "pool" if neurons.pool_stage(ctx.graph.nodes[node]) else "model"
    return (Population(pop, "lif", shape, source=node, du=du, dv=dv, vth=vth, bias_mant=mant, bias_exp=bias_exp,
                       scale=alpha, role=role, **reset), report)


@dataclasses.dataclass(frozen=True)
class _SoFar:
    """What the populations built before this one fixed (read-only views): chip populations,
    hop depths, the largest value each relay carries (float units) and the group names taken."""

    populations: Mapping[str, Population]
    depth: Mapping[str, int]
    ranges: Mapping[str, float]
    names: frozenset[str] | set[str]


@dataclasses.dataclass(frozen=True)
class _Paths:
    """The paths into one population: the delay lines they read (populations, groups, depths),
    their synapse groups and reports, the waits, and the bias correction (float units per step)."""

    populations: tuple[Population, ...]
    groups: tuple[SynapseGroup, ...]
    depth: dict[str, int]
    reports: tuple[GroupReport, ...]
    delayed: tuple[Delayed, ...]
    correction: np.ndarray


def _paths(ctx: Context, pop: str, n: scales.Neuron, alpha: float, incoming: list, timing: align.Alignment,
           so_far: _SoFar) -> _Paths:
    """The synapse groups (and the delay lines they read) of every path into ``pop``, with the
    bias correction (zero without calibration): rounding's shift of the mean input (Nagel et al. 2019)."""
    shape = ctx.graph.out_shapes[ctx.pops[pop]]
    correction = np.zeros(shape)
    pops, groups, depth, reports, delayed = {}, [], {}, [], []
    for (src, chain, rec, fg), wait in zip(incoming, timing.waits):
        sender, chip_fg = src, fg
        if wait.lag and not wait.synaptic:
            built = so_far.populations.keys() | pops.keys()
            chip_fg, sender, made, links, depths = align.line_for(fg, so_far.populations[src], wait.lag,
                                                                   so_far.depth[src], built)
            pops.update((p.name, p) for p in made)
            groups += links
            depth.update(depths)
        if wait.lag:
            delayed.append(Delayed(src, wait.lag, wait.how))
        unit = alpha * n.gain / scales.input_scale(ctx, src, so_far.populations)  # chip units per float weight
        common = dict(src=sender, dst=pop, num_weight_bits=ctx.caps.weight_bits, source=",".join(chain))
        src_shape = so_far.populations[src].shape if src in so_far.populations else shape
        moments = None if ctx.calibrated is None else rounding.second_moments(fg, ctx.calibrated[src], src_shape)
        compensate = moments if ctx.options.rounding == "compensated" else None
        delay = wait.lag if wait.synaptic else 0
        for suffix, part, ints, exp, recon in weights.quantize(fg.weights * unit, fg.kind == "conv" and not delay,
                                                               ctx.options.split_signs, ctx.caps.weight_bits,
                                                               f"{pop}<-{sender}", ctx.graph, ctx.pops[pop], compensate):
            if ctx.means is not None:
                correction -= lower.apply_map(fg, (recon - part) / unit, ctx.means[src], src_shape).reshape(shape)
            name = weights.unique(f"{pop}<-{sender}{suffix}", so_far.names, {g.name for g in groups})
            group = weights.synapse_group(name, chip_fg, ints, exp, common, delay, (src_shape, shape))
            groups.append(group)
            error = None if moments is None else rounding.input_error(recon - part, part, moments)
            reports.append(weights.group_report(group, exp, part, recon, unit, through=tuple(chain), recurrent=rec,
                                                rounding="compensated" if compensate is not None else "nearest",
                                                input_rel_rms_error=error))
    return _Paths(tuple(pops.values()), tuple(groups), depth, tuple(reports), tuple(delayed), correction)


@dataclasses.dataclass(frozen=True)
class _Layer:
    """What one population adds to the chip network: populations (its own, delay lines, the
    always-on bias neuron), synapse groups, hop depths, the range it carries (relays), reports."""

    populations: tuple[Population, ...]
    groups: tuple[SynapseGroup, ...]
    depth: dict[str, int]
    carries: float | None
    report: LayerReport
    clamp: RangeClamp | None
    unaligned: UnalignedJoin | None


def _layer(ctx: Context, pop: str, so_far: _SoFar) -> _Layer:
    """Population ``pop`` and everything feeding it: the passes in order, for one population."""
    node = ctx.pops[pop]
    biases = bias.population_biases(ctx, pop, scales.neuron(ctx.graph, node, ctx.dt))
    n = biases.neuron
    incoming = align.incoming_paths(ctx, pop)
    scale = scales.population_scale(ctx, pop, n, incoming, biases.constant, so_far.populations, so_far.ranges)
    alpha = scale.alpha
    timing = align.align(ctx, incoming, so_far.depth)
    paths = _paths(ctx, pop, n, alpha, incoming, timing, so_far)
    forward, correction_rms = biases.forward, None
    if ctx.means is not None:
        correction = paths.correction * n.gain
        correction_rms = float(np.sqrt(np.mean(np.square(correction))))
        forward = forward + correction
    made, reports = [], []
    for label, values, delay in (("bias", forward, timing.depth - 1), ("bias.late", biases.late, timing.depth)):
        if np.any(values != 0):
            groups, entries = bias.groups(ctx, pop, alpha * values.reshape(-1, 1), alpha, delay, label)
            made += groups
            reports += entries
    population, neuron = _population(ctx, pop, n, alpha)
    always_on, chain = bias.stages(max(bias.stage_of(g.src) for g in made), ctx.caps.max_delay, so_far.populations,
                                   ctx.caps.weight_bits) if made else ([], [])
    clamped = scale.guaranteed < 1
    clamp = RangeClamp(pop, alpha, scale.worst, scale.guaranteed) if clamped else None
    report = LayerReport(pop, node, population.size, alpha, paths.reports + tuple(reports), neuron,
                         delayed=paths.delayed or None, range_clamped=True if clamped else None,
                         worst_case_input=scale.worst if clamped else None,
                         guaranteed_fraction=scale.guaranteed if clamped else None, bias_correction_rms=correction_rms)
    unaligned = UnalignedJoin(pop, timing.hops) if len(timing.hops) > 1 and not ctx.options.align else None
    return _Layer((*paths.populations, *always_on, population), paths.groups + tuple(chain) + tuple(made),
                  {**paths.depth, pop: timing.depth}, scale.carries, report, clamp, unaligned)


def _outputs(ctx: Context) -> dict[str, str]:
    """Per Output node the population whose outputs are its values."""
    return {name: readout_name(name) if readout_name(name) in ctx.pops else ctx.graph.predecessors(name)[0]
            for name in ctx.graph.outputs}


class OverBudget(Exception):
    """A compile abandoned once its weight memory passed ``budget`` bytes."""

    def __init__(self, budget: int):
        super().__init__(f"weight memory above {budget:,} bytes")
        self.budget = budget


def _build(ctx: Context, budget: int | None) -> tuple[dict[str, Population], list[SynapseGroup], dict[str, int],
                                                      list[_Layer]]:
    """Every population in data-flow order (:func:`_layer`), each seeing what the earlier ones
    fixed; :class:`OverBudget` once the weight memory passes ``budget`` bytes (None: no limit)."""
    pops: dict[str, Population] = {}
    weight_bytes = 0
    groups: list[SynapseGroup] = []
    depth: dict[str, int] = {}
    ranges: dict[str, float] = {}
    names: set[str] = set()
    layers = []
    for pop, node in ctx.pops.items():
        if isinstance(ctx.graph.nodes[node], nir.Input):
            pops[pop] = Population(pop, "input", ctx.graph.out_shapes[node], source=node,
                                   payload_bits=ctx.options.input_bits, input_scale=ctx.options.input_scale)
            depth[pop] = 0
            continue
        layer = _layer(ctx, pop, _SoFar(MappingProxyType(pops), MappingProxyType(depth), MappingProxyType(ranges),
                                        names))
        pops.update((p.name, p) for p in layer.populations)
        groups += layer.groups
        weight_bytes += sum(g.weight_memory_bytes for g in layer.groups)
        if budget is not None and weight_bytes > budget:
            raise OverBudget(budget)
        names.update(g.name for g in layer.groups)
        depth.update(layer.depth)
        if layer.carries is not None:
            ranges[pop] = layer.carries
        layers.append(layer)
    return pops, groups, depth, layers


def compile_graph(graph: Graph, options: Options = Options(), caps: Capabilities = Capabilities(),
                  budget: int | None = None) -> tuple[ChipNet, Quantization]:
    """Lower and quantize ``graph`` for a target with capabilities ``caps``; return the chip
    network and what the quantization reports. :class:`OverBudget` as soon as the weight memory
    passes ``budget`` bytes (None: no limit)."""
    ctx = context.make(graph, options, caps)
    pops, groups, depth, layers = _build(ctx, budget)
    outputs = _outputs(ctx)
    net = ChipNet(
        populations=pops,
        groups=tuple(groups),
        inputs=tuple(p for p in pops if pops[p].kind == "input"),
        outputs=tuple(outputs.values()),
        pipeline_depth=max((depth[p] for p in outputs.values()), default=0),
        depth=depth, output_of=outputs, dt=ctx.dt, source=ctx.graph.source,
    )
    report = Quantization(
        layers=tuple(layer.report for layer in layers),
        unaligned_joins=tuple(layer.unaligned for layer in layers if layer.unaligned),
        range_clamps=tuple(layer.clamp for layer in layers if layer.clamp),
        pipeline_depth=net.pipeline_depth,
        strategy=options.strategy,
        split_signs=options.split_signs,
        calibration_samples=0 if options.calibration is None else len(options.calibration),
        rounding="nearest" if options.calibration is None else options.rounding,
        joins=tuple(shortcuts.joins(ctx.graph)),
    )
    return net, report
