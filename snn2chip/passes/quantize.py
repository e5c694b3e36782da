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
they get their own groups (``bias.late``), one step later. Depths beyond the target's delay
limit are rejected.

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

import nir
import numpy as np

from snn2chip.chip import loihi
from snn2chip.chip.ir import ChipNet, Population, SynapseGroup
from snn2chip.frontend.graph import Graph
from snn2chip.passes import align, bias, context, lower, rounding, scales, shortcuts, weights
from snn2chip.passes.context import Capabilities, Context, Options

__all__ = ["Capabilities", "Options", "compile_graph"]


def _population(ctx: Context, pop: str, n: scales.Neuron, alpha: float, entry: dict) -> Population:
    """The population's integer neuron parameters (decays, threshold, leak bias); errors into ``entry``."""
    node, shape = ctx.pops[pop], ctx.graph.out_shapes[ctx.pops[pop]]
    if n.relay:
        entry.update(kind="relay", vth=0)
        return Population(pop, "relay", shape, source=node, vth=0, payload_bits=ctx.caps.relay_bits, scale=alpha,
                          role="relay" if shortcuts.is_relay(ctx.graph.nodes[node]) else "model")
    chip_bias = 64 * alpha * n.leak_bias
    mant, bias_exp, recon_bias = bias.mantissa(chip_bias)
    du = 4095
    if n.syn_decay is not None:
        du = int(round(4096 * (1 - n.syn_decay))) - 1
        entry["syn_decay_error"] = abs((4096 - du - 1) / 4096 - n.syn_decay)
    dv = 4095 if n.memoryless else min(int(round(4096 * (1 - n.decay))), 4095)
    entry["decay_error"] = abs((4096 - dv) / 4096 - n.decay)
    vth = loihi.VTH_MAX
    if n.theta is not None:
        vth = math.floor(alpha * n.theta)
        # v_chip/64 is an integer n when nothing decays and biases are multiples of 64; then
        # n > alpha*theta <=> n > floor(alpha*theta) and the threshold is exact
        exact = du == 4095 and (dv == 0 or n.memoryless) and not np.any(np.mod(recon_bias, 64))
        entry["threshold"] = n.theta
        entry["threshold_exact"] = bool(exact)
        entry["threshold_error"] = 0.0 if exact or not n.theta else (alpha * n.theta - vth) / abs(alpha * n.theta)
        if not 1 <= vth <= loihi.VTH_MAX:
            raise ctx.graph.error(
                f"threshold {n.theta:g} cannot be represented: the input range forces scale {alpha:g}, "
                f"giving vth {vth} (needs 1..{loihi.VTH_MAX}); inputs per step would otherwise wrap u",
                node=node,
            )
    reset = {}
    if n.subtract:
        # a spike removes theta: round(alpha*theta), which is exact for the >= encoding
        # nextafter(theta, -inf) of an integer alpha*theta, where vth is one less
        reset = dict(reset="subtract", vsub=int(round(alpha * n.theta)))
        entry["reset_error"] = abs(reset["vsub"] - alpha * n.theta) / abs(alpha * n.theta)
    entry.update(kind="lif", vth=vth, du=du, dv=dv, bias_exp=bias_exp,
                 bias_rel_rms_error=weights.rel(recon_bias - chip_bias, chip_bias), **reset)
    return Population(pop, "lif", shape, source=node, du=du, dv=dv, vth=vth, bias_mant=mant, bias_exp=bias_exp,
                      scale=alpha, **reset)


@dataclasses.dataclass
class _Built:
    """What the populations built so far fixed: the chip populations and groups (in build order),
    hop depths, and the largest value each relay carries (float units)."""

    populations: dict[str, Population] = dataclasses.field(default_factory=dict)
    groups: list[SynapseGroup] = dataclasses.field(default_factory=list)
    depth: dict[str, int] = dataclasses.field(default_factory=dict)
    ranges: dict[str, float] = dataclasses.field(default_factory=dict)
    names: set[str] = dataclasses.field(default_factory=set)

    def add(self, populations=(), groups=(), depth=None) -> None:
        for p in populations:
            self.populations[p.name] = p
        self.groups.extend(groups)
        self.names.update(g.name for g in groups)
        self.depth.update(depth or {})


def _paths(ctx: Context, pop: str, n: scales.Neuron, alpha: float, incoming: list, timing: align.Alignment,
           built: _Built, entry: dict) -> np.ndarray:
    """The synapse groups (and the delay lines they read) of every path into ``pop``, added to
    ``built``, their report entries into ``entry``; returns the bias correction (float units per
    step, zero without calibration): rounding's shift of the mean input (Nagel et al. 2019)."""
    shape = ctx.graph.out_shapes[ctx.pops[pop]]
    correction = np.zeros(shape)
    for (src, chain, rec, fg), wait in zip(incoming, timing.waits):
        sender = src
        if wait.lag and not wait.synaptic:
            sender, *made = align.delay_line(built.populations[src], wait.lag, built.depth[src], set(built.populations))
            built.add(*made)
        if wait.lag:
            entry.setdefault("delayed", []).append({"source": src, "steps": wait.lag, "by": wait.how})
        unit = alpha * n.gain / scales.input_scale(ctx, src, built.populations)  # chip units per float weight
        common = dict(src=sender, dst=pop, num_weight_bits=ctx.caps.weight_bits, source=",".join(chain))
        src_shape = built.populations[src].shape if src in built.populations else shape
        moments = None if ctx.calibrated is None else rounding.second_moments(fg, ctx.calibrated[src], src_shape)
        compensate = moments if ctx.options.rounding == "compensated" else None
        for suffix, part, ints, exp, recon in weights.quantize(fg.weights * unit, fg.kind == "conv",
                                                               ctx.options.split_signs, ctx.caps.weight_bits,
                                                               f"{pop}<-{sender}", ctx.graph, ctx.pops[pop], compensate):
            if ctx.means is not None:
                correction -= lower.apply_map(fg, (recon - part) / unit, ctx.means[src], src_shape).reshape(shape)
            group = weights.synapse_group(weights.unique(f"{pop}<-{sender}{suffix}", built.names), fg, ints, exp,
                                          common, wait.lag if wait.synaptic else 0)
            built.add(groups=[group])
            measured = {"rounding": "compensated" if compensate is not None else "nearest"}
            if moments is not None:
                measured["input_rel_rms_error"] = rounding.input_error(recon - part, part, moments)
            entry["groups"].append(weights.group_entry(group, exp, part, recon, unit, through=list(chain), recurrent=rec,
                                                       **measured))
    return correction


def _layer(ctx: Context, pop: str, built: _Built) -> tuple[dict, dict | None, dict | None]:
    """Build population ``pop`` and everything feeding it into ``built``; return its report
    entry, its range clamp (or None) and its unaligned join (or None)."""
    node = ctx.pops[pop]
    shape = ctx.graph.out_shapes[node]
    biases = bias.population_biases(ctx, pop, scales.neuron(ctx.graph, node, ctx.dt))
    n = biases.neuron
    incoming = align.incoming_paths(ctx, pop)
    scale = scales.population_scale(ctx, pop, n, incoming, biases.constant, built.populations, built.ranges)
    alpha = scale.alpha
    if scale.carries is not None:
        built.ranges[pop] = scale.carries
    entry = {"population": pop, "nir_node": node, "neurons": int(np.prod(shape)), "scale": alpha, "groups": []}
    clamp = None
    if scale.guaranteed < 1:
        clamp = {"worst_case_input": scale.worst, "guaranteed_fraction": scale.guaranteed}
        entry.update(range_clamped=True, **clamp)
        clamp = {"population": pop, "scale": alpha, **clamp}
    timing = align.align(ctx, incoming, built.depth, built.populations)
    built.depth[pop] = timing.depth
    unaligned = {"population": pop, "path_hops": list(timing.hops)} if len(timing.hops) > 1 and not ctx.options.align \
        else None
    correction = _paths(ctx, pop, n, alpha, incoming, timing, built, entry)
    forward = biases.forward
    if ctx.means is not None:
        correction *= n.gain
        entry["bias_correction_rms"] = float(np.sqrt(np.mean(np.square(correction))))
        forward = forward + correction
    for label, values, delay in (("bias", forward, timing.depth - 1), ("bias.late", biases.late, timing.depth)):
        if np.any(values != 0):
            made, entries = bias.groups(ctx, pop, alpha * values.reshape(-1, 1), alpha, delay, label)
            built.add(populations=[] if bias.BIAS in built.populations else [bias.always_on()], groups=made)
            entry["groups"] += entries
    built.add(populations=[_population(ctx, pop, n, alpha, entry)])
    return entry, clamp, unaligned


def _outputs(ctx: Context) -> dict[str, str]:
    """Per Output node the population whose outputs are its values."""
    return {name: f"{name}.readout" if f"{name}.readout" in ctx.pops else ctx.graph.predecessors(name)[0]
            for name in ctx.graph.outputs}


def compile_graph(graph: Graph, options: Options = Options(), caps: Capabilities = Capabilities()
                  ) -> tuple[ChipNet, dict]:
    """Lower and quantize ``graph`` for a target with capabilities ``caps``; return the chip
    network and the per-layer report."""
    ctx = context.make(graph, options, caps)
    built = _Built()
    layers, clamps, unaligned = [], [], []
    for pop, node in ctx.pops.items():
        if isinstance(ctx.graph.nodes[node], nir.Input):
            built.add(populations=[Population(pop, "input", ctx.graph.out_shapes[node], source=node,
                                              payload_bits=options.input_bits, input_scale=options.input_scale)],
                      depth={pop: 0})
            continue
        entry, clamp, join = _layer(ctx, pop, built)
        layers.append(entry)
        clamps += [clamp] if clamp else []
        unaligned += [join] if join else []
    outputs = _outputs(ctx)
    net = ChipNet(
        populations=built.populations,
        groups=tuple(built.groups),
        inputs=tuple(p for p in built.populations if built.populations[p].kind == "input"),
        outputs=tuple(outputs.values()),
        pipeline_depth=max((built.depth[p] for p in outputs.values()), default=0),
        depth=built.depth, output_of=outputs, dt=ctx.dt, source=ctx.graph.source,
    )
    report = {
        "layers": layers,
        "unaligned_joins": unaligned,
        "range_clamps": clamps,
        "pipeline_depth": net.pipeline_depth,
        "strategy": options.strategy,
        "split_signs": options.split_signs,
        "calibration_samples": 0 if options.calibration is None else len(options.calibration),
        "rounding": "nearest" if options.calibration is None else options.rounding,
        "joins": [dataclasses.asdict(j) for j in shortcuts.joins(ctx.graph)],
    }
    return net, report
