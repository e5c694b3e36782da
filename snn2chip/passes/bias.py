"""Biases: a population's constant input per step, fed from an always-on neuron through synapse
groups delayed to start with the population's data (:mod:`snn2chip.passes.quantize` states the
timing), and the 13-bit neuron bias of ``v_leak`` under a synaptic current.

A population deeper than the target's delay limit (``max_delay + 1`` hops, e.g. SEW-ResNet-50's
last blocks) reads its bias from a **delayed always-on neuron**: stage ``k``
(``bias.always_on.k``) is fed by stage ``k − 1`` through one synapse delayed by ``max_delay``, so
it fires every step from chip step ``k·(max_delay + 1)`` on; a bias delayed by ``d`` steps comes
from stage ``d // (max_delay + 1)`` with the remaining delay ``d % (max_delay + 1)``."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from snn2chip.chip.ir import Population, SynapseGroup
from snn2chip.errors import ModelError
from snn2chip.passes import lower, weights
from snn2chip.passes.context import Context
from snn2chip.passes.reports import GroupReport
from snn2chip.passes.scales import Neuron

BIAS = "bias.always_on"  # the always-on neuron that feeds input biases
BIAS_MANT_MAX = 4095
BIAS_EXP_MAX = 7
BIAS_TERMS = 2  # synapse groups per bias sign: coarse, then the fine remainder


def mantissa(values: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """``bias_mant``, ``bias_exp`` and the reconstruction for chip-unit neuron biases."""
    biggest = float(np.abs(values).max(initial=0))
    exp = 0 if biggest <= BIAS_MANT_MAX else math.ceil(math.log2(biggest / BIAS_MANT_MAX))
    if exp > BIAS_EXP_MAX:
        raise ModelError(f"bias {biggest:g} (chip units) exceeds 13-bit mantissa << 7")
    mant = np.clip(np.round(values / 2**exp), -BIAS_MANT_MAX - 1, BIAS_MANT_MAX).astype(np.int64)
    return mant, exp, mant * 2.0**exp


@dataclasses.dataclass(frozen=True)
class Biases:
    """A population's input biases per step in float membrane units: ``forward`` (from float
    step 0) and ``late`` (crossing a recurrent edge: from float step 1), and its dynamics with
    ``v_leak`` moved into ``forward`` where there is no synaptic current."""

    forward: np.ndarray
    late: np.ndarray
    neuron: Neuron

    @property
    def constant(self) -> np.ndarray:
        return self.forward + self.late


def population_biases(ctx: Context, pop: str, n: Neuron) -> Biases:
    """The :class:`Biases` of ``pop`` with dynamics ``n``."""
    shape = ctx.graph.out_shapes[ctx.pops[pop]]
    forward, late = lower.population_bias(ctx.graph, ctx.pops, pop)
    forward, late = forward.reshape(shape) * n.gain, late.reshape(shape) * n.gain  # v units per step
    if n.syn_decay is None and np.any(n.leak_bias):
        # without a synaptic current an input is added to v as it is: v_leak joins the input
        # biases, so that it too starts with the population's data
        forward = forward + n.leak_bias.reshape(shape)
        n = dataclasses.replace(n, leak_bias=np.zeros_like(n.leak_bias))
    return Biases(forward, late, n)


def always_on() -> Population:
    """The always-on neuron (v = 1 > vth = 0 every step) that feeds every input bias."""
    return Population(BIAS, "lif", (1,), source="(always-on bias neuron)", vth=0, bias_mant=np.ones(1, dtype=np.int64),
                      role="bias")


def stage(k: int) -> str:
    """The name of the always-on neuron that fires from chip step ``k·(max_delay + 1)`` on."""
    return BIAS if k == 0 else f"{BIAS}.{k}"


def stage_of(name: str) -> int:
    """``k`` of always-on neuron :func:`stage` (``k``)."""
    return 0 if name == BIAS else int(name[len(BIAS) + 1:])


def stages(k: int, max_delay: int, existing, weight_bits: int = 8) -> tuple[list[Population], list[SynapseGroup]]:
    """The always-on neurons ``0..k`` not in ``existing`` and the delayed synapses that start them:
    stage ``j`` receives stage ``j − 1``'s spikes ``max_delay`` steps late (weight 255, positive at
    any weight width; no decay, vth 0: it fires in every step it receives one)."""
    pops, chain = [], []
    for j in range(k + 1):
        if stage(j) in existing:
            continue
        if j == 0:
            pops.append(always_on())
            continue
        pops.append(Population(stage(j), "lif", (1,), source=f"(always-on bias neuron from chip step {j * (max_delay + 1)})",
                               vth=0, role="bias"))
        chain.append(SynapseGroup(f"{stage(j)}<-{stage(j - 1)}", "dense", stage(j - 1), stage(j), np.full((1, 1), 255),
                                  num_weight_bits=weight_bits, delays=np.full((1, 1), max_delay) if max_delay else None,
                                  source="bias"))
    return pops, chain


def groups(ctx: Context, pop: str, target: np.ndarray, alpha: float, delay: int,
           label: str = "bias") -> tuple[list[SynapseGroup], list[GroupReport]]:
    """The synapse groups from an always-on neuron that give ``pop`` its input bias (chip units
    ``target``), ``delay`` steps late (a population at hop depth D gets its first data at chip
    step D: delay D - 1; beyond the delay limit from a delayed always-on neuron, :func:`stages`),
    a coarse group and the fine remainder; and their report entries."""
    node = ctx.pops[pop]
    taken = next((n for n in ctx.graph.nodes if n == BIAS or n.startswith(BIAS + ".")), None)
    if taken is not None:
        raise ctx.graph.error(f"the name '{BIAS}' is reserved for the compiler's always-on bias neurons", node=taken)
    k, delay = divmod(delay, ctx.caps.max_delay + 1)  # from stage k, which starts k·(max_delay + 1) steps late
    made, entries = [], []
    remainder = target
    for term in range(BIAS_TERMS):
        for suffix, part, ints, exp, recon in weights.quantize(remainder, False, ctx.options.split_signs,
                                                               ctx.caps.weight_bits, f"{pop}<-{label}", ctx.graph, node):
            group = SynapseGroup(f"{pop}<-{label}{'.fine' * term}{suffix}", "dense", stage(k), pop, ints, exp,
                                 ctx.caps.weight_bits, delays=np.full(ints.shape, delay) if delay else None, source="bias")
            made.append(group)
            entries.append(weights.group_report(group, exp, part, recon, alpha, delay=delay))
            remainder = remainder - recon
        if not np.any(remainder):
            break
    return made, entries
