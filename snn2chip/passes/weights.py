"""Weights: float chip-unit weights become integer synapse groups with their exponents, by sign
group, rounded to nearest or with error compensation; and their report entries."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from snn2chip.chip import loihi
from snn2chip.chip.ir import SynapseGroup, conv_synapses
from snn2chip.frontend.graph import Graph
from snn2chip.passes import lower, rounding
from snn2chip.passes.reports import GroupReport
from snn2chip.passes.scales import WEIGHT_EXP_RANGE


def _exponent(target: np.ndarray, conv: bool, weight_bits: int, where: str, graph: Graph, node: str) -> tuple[int, int]:
    """Weight exponent and mantissa step of a group with float chip-unit weights ``target``: the
    largest weight uses the full mantissa (mixed signs drop the LSB, as Lava does). A conv's
    exponent has no upper limit: at ``exp >= 0`` it stores the effective kernel ``mant << exp``."""
    mixed = bool(np.any(target > 0) and np.any(target < 0))
    step = 1 << (loihi.WEIGHT_BITS - weight_bits + mixed)
    top = 2**loihi.WEIGHT_BITS - step
    biggest = float(np.abs(target).max(initial=0))
    if biggest == 0:
        return 0, step
    exp = math.ceil(math.log2(biggest / top)) if biggest > top else -math.floor(math.log2(top / biggest))
    exp = max(exp, WEIGHT_EXP_RANGE[0]) if conv else min(max(exp, WEIGHT_EXP_RANGE[0]), WEIGHT_EXP_RANGE[1])
    if biggest / 2.0**exp > 2**loihi.WEIGHT_BITS:
        raise graph.error(f"weights of synapse group {where} exceed the 8-bit mantissa at the largest weight exponent",
                          node=node)
    return exp, step


def _mantissa_range(exp: int, mant_step: int) -> tuple[float, float]:
    """Smallest and largest weight (chip units) of a group with exponent ``exp``."""
    return -(2**loihi.WEIGHT_BITS) * 2.0**exp, (2**loihi.WEIGHT_BITS - mant_step) * 2.0**exp


def _compensated(target: np.ndarray, parts: list[tuple[str, np.ndarray]], grids: list[tuple[int, int]],
                 moments: list[np.ndarray]) -> np.ndarray:
    """Float chip-unit weights ``target`` rounded with error compensation (:mod:`.rounding`,
    ``moments`` from :func:`~snn2chip.passes.rounding.second_moments`), each weight on its sign
    group's grid (``parts``, with their exponent and mantissa step in ``grids``). Every weight
    keeps its sign; zeros stay zero."""
    step, low, high = np.ones(target.shape), np.zeros(target.shape), np.zeros(target.shape)
    for (_, part), (exp, mant_step) in zip(parts, grids):
        bottom, top = _mantissa_range(exp, mant_step)
        step[part != 0] = mant_step * 2.0**exp
        low[part < 0], high[part > 0] = bottom, top
    return rounding.compensated(target, moments, step, low, high)


def sign_parts(target: np.ndarray, split: bool) -> list[tuple[str, np.ndarray]]:
    """The weights as one group, or split into an excitatory (``+``) and an inhibitory (``-``)
    group when signs are mixed: each then keeps all 8 mantissa bits, where a mixed group loses
    its LSB (twice the precision for one more group; the stored synapses are the same)."""
    if not (split and np.any(target > 0) and np.any(target < 0)):
        return [("", target)]
    return [("+", np.clip(target, 0, None)), ("-", np.clip(target, None, 0))]


def quantize(target: np.ndarray, conv: bool, split_signs: bool, weight_bits: int, where: str, graph: Graph, node: str,
             moments: list[np.ndarray] | None = None) -> Iterator[tuple[str, np.ndarray, np.ndarray, int, np.ndarray]]:
    """Float chip-unit weights ``target`` as chip groups: per sign group (:func:`sign_parts`) the
    name suffix, its float weights, integer weights, exponent and reconstruction (chip units),
    one group at a time (large maps: one group's arrays alive at once). Rounded to nearest, or
    error-compensated when ``moments`` are given. Conv groups with an exponent >= 0 store the
    effective kernel ``mant << exp`` with exponent 0 (Lava's CPU Conv has no exponent); one that
    needs a negative exponent keeps it and its mantissas."""
    parts = sign_parts(target, split_signs)
    grids = [_exponent(part, conv, weight_bits, where + suffix, graph, node) for suffix, part in parts]
    joint = None if moments is None else _compensated(target, parts, grids, moments)
    for (suffix, part), (exp, mant_step) in zip(parts, grids):
        if joint is None:
            unit = mant_step * 2.0**exp
            mine = np.clip(np.round(part / unit) * unit, *_mantissa_range(exp, mant_step))
        else:
            mine = np.where(part != 0, joint, 0.0)
        stored_exp = 0 if conv and exp >= 0 else exp  # ``mine`` is a multiple of 2**exp
        yield suffix, part, np.round(mine / 2.0**stored_exp).astype(np.int64), stored_exp, mine


def rel(error: np.ndarray, reference_values: np.ndarray) -> float:
    """RMS of ``error`` over RMS of ``reference_values`` (0 when those are all 0)."""
    scale = float(np.sqrt(np.mean(np.square(reference_values)))) if reference_values.size else 0.0
    return float(np.sqrt(np.mean(np.square(error)))) / scale if scale else 0.0


def unique(name: str, *taken: set[str] | frozenset[str]) -> str:
    """``name``, or ``name#k`` when several paths join the same two populations (names in any of ``taken``)."""
    k = 1
    candidate = name
    while any(candidate in names for names in taken):
        candidate, k = f"{name}#{k}", k + 1
    return candidate


def group_report(group: SynapseGroup, exp: int, target: np.ndarray, recon: np.ndarray, unit: float,
                 **extra) -> GroupReport:
    """Report of one synapse group; errors in float weight units (chip units / ``unit``)."""
    return GroupReport(group.name, group.kind, group.src, int(np.count_nonzero(group.weights)), exp,
                       loihi.sign_mode(group.weights), rel(recon - target, target),
                       float(np.abs(recon - target).max(initial=0)) / unit, **extra)


def _delays(shape, delay: int) -> np.ndarray | None:
    return np.full(shape, delay) if delay else None


def synapse_group(name: str, fg: lower.FloatGroup, ints: np.ndarray, exp: int, common: dict,
                  delay: int = 0, shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None) -> SynapseGroup:
    """The chip synapse group for integer weights ``ints`` (exponent ``exp``) of the float map
    ``fg``, every synapse ``delay`` extra steps late. A conv with a negative exponent holds
    mantissas: such kernels read relays whose payload scale is far above the destination's (e.g.
    a deep MS-ResNet's downsampling shortcut). A delayed conv (its weights quantized as a sparse
    group's, exponent at most 7) becomes the sparse group of its explicit synapses between the
    population ``shapes`` (source, destination): Lava's Conv has no delays."""
    if fg.kind == "diag":
        keep = np.nonzero(ints)[0]
        return SynapseGroup(name, "sparse", weights=ints[keep], weight_exp=exp, rows=keep, cols=keep,
                            delays=_delays(keep.size, delay), **common)
    if fg.kind == "conv" and delay:
        rows, cols, values = conv_synapses(ints, fg.stride, fg.padding, fg.dilation, fg.groups, *shapes)
        return SynapseGroup(name, "sparse", weights=values, weight_exp=exp, rows=rows, cols=cols,
                            delays=_delays(values.size, delay), **common)
    if fg.kind == "conv":
        return SynapseGroup(name, "conv", weights=ints, weight_exp=exp, stride=fg.stride, padding=fg.padding,
                            dilation=fg.dilation, groups=fg.groups, **common)
    return SynapseGroup(name, "dense", weights=ints, weight_exp=exp, delays=_delays(ints.shape, delay), **common)
