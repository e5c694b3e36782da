"""snn2chip/passes/weights.py: float chip-unit weights as integer synapse groups: the sign split,
one exponent per group so that its largest weight uses the full mantissa, rounding to nearest or
with error compensation, and the chip group of each float map kind."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from snn2chip.errors import ModelError
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import lower, weights
from tests.conftest import chain


def graph():
    """Only for naming the node in errors."""
    return make_graph(*chain(("n", nir.IF(r=np.ones(2), v_threshold=np.ones(2))), shape=(2,)))


def quantized(target, conv=False, split=True, bits=8, moments=None) -> list[tuple[str, list, int, list]]:
    """(suffix, integer weights, exponent, reconstruction) per group."""
    groups = weights.quantize(np.asarray(target, dtype=np.float64), conv, split, bits, "g", graph(), "n", moments)
    return [(suffix, ints.tolist(), exp, recon.tolist()) for suffix, _, ints, exp, recon in groups]


def test_weights_split_by_sign_and_use_the_full_mantissa():  # moved from tests/test_passes.py (own small graph)
    target = np.array([[100.0, -50.0], [0.0, 25.0]])
    parts = weights.sign_parts(target, split=True)
    assert [s for s, _ in parts] == ["+", "-"]
    groups = list(weights.quantize(target, False, True, 8, "g", graph(), "n"))
    assert [(s, exp) for s, _, _, exp, _ in groups] == [("+", -1), ("-", -2)]
    assert groups[0][2].max() == 200 and groups[1][2].min() == -200
    assert weights.unique("x", {"x", "x#1"}) == "x#2"


def test_sign_parts():
    mixed = np.array([[3.0, -1.0], [0.0, 2.0]])
    (plus, pos), (minus, neg) = weights.sign_parts(mixed, split=True)
    assert (plus, pos.tolist(), minus, neg.tolist()) == ("+", [[3.0, 0.0], [0.0, 2.0]], "-", [[0.0, -1.0], [0.0, 0.0]])
    assert [(s, p.tolist()) for s, p in weights.sign_parts(mixed, split=False)] == [("", mixed.tolist())]
    positive = np.array([[3.0, 0.0]])
    assert [(s, p.tolist()) for s, p in weights.sign_parts(positive, split=True)] == [("", [[3.0, 0.0]])]


def test_split_groups_have_8_bit_mantissas_and_their_own_exponents():
    """+ part: largest 100 -> exponent -1 (200 <= 255 < 400); - part: largest 50 -> exponent -2."""
    assert quantized([[100.0, -50.0], [0.3, 25.0]]) == [
        ("+", [[200, 0], [1, 50]], -1, [[100.0, 0.0], [0.5, 25.0]]),
        ("-", [[0, -200], [0, 0]], -2, [[0.0, -50.0], [0.0, 0.0]]),
    ]


def test_unsplit_mixed_signs_keep_even_mantissas():
    """A mixed group loses its LSB (as Lava does): steps of 2, the largest 254; 100 -> exponent -1,
    and 25.3 rounds to 25 (mantissa 50), -0.7 to -1 (mantissa -2)."""
    assert quantized([[100.0, -0.7], [0.0, 25.3]], split=False) == [
        ("", [[200, -2], [0, 50]], -1, [[100.0, -1.0], [0.0, 25.0]])]


def test_exponent_range_and_overflow():
    # tiny weights stop at exponent -8: 0.01 * 256 = 2.56 -> 3
    assert quantized([[0.01, 0.0]]) == [("", [[3, 0]], -8, [[3 / 256, 0.0]])]
    # large weights: 30000 -> exponent 7 (30000 / 128 = 234.4 -> 234)
    assert quantized([[30000.0]]) == [("", [[234]], 7, [[29952.0]])]
    assert quantized([[0.0, 0.0]]) == [("", [[0, 0]], 0, [[0.0, 0.0]])]
    with pytest.raises(ModelError) as e:
        quantized([[1e6, -1.0]])
    assert (e.value.problem, e.value.node) == (
        "weights of synapse group g+ exceed the 8-bit mantissa at the largest weight exponent", "n")


def test_fewer_weight_bits_coarsen_the_grid():
    """6 bits: steps of 4, the largest 252: 103 -> exponent -1, 103 / 2 = 51.5 -> 52 units of 2 -> 208."""
    assert quantized([[103.0, 10.0]], bits=6) == [("", [[208, 20]], -1, [[104.0, 10.0]])]


def test_conv_groups_store_the_effective_kernel():
    """Exponent 2 for 1000 (Lava's CPU Conv has none): stored as mant << 2 with exponent 0, and
    no upper exponent limit (1e6: exponent 12). A small kernel keeps its negative exponent and
    mantissas (10.3 -> exponent -4, 164.8 -> 165)."""
    assert quantized(np.array([1000.0, 3.0]).reshape(2, 1, 1, 1), conv=True) == [
        ("", [[[[1000]]], [[[4]]]], 0, [[[[1000.0]]], [[[4.0]]]])]
    assert quantized(np.array([1e6]).reshape(1, 1, 1, 1), conv=True) == [("", [[[[999424]]]], 0, [[[[999424.0]]]])]
    assert quantized(np.array([10.3]).reshape(1, 1, 1, 1), conv=True) == [("", [[[[165]]]], -4, [[[[10.3125]]]])]


def test_compensated_rounding_pushes_the_error_onto_correlated_inputs():
    """Two inputs with second moments [[1, .9], [.9, 1]] (plus 1% damping): rounding 200.4 to 200
    leaves 0.4, of which 0.9 / 1.01 moves to the second weight: 100.4 + 0.356 -> 101 (nearest: 100).
    Uncorrelated inputs round to nearest."""
    target = [[200.4, 100.4]]
    assert quantized(target) == [("", [[200, 100]], 0, [[200.0, 100.0]])]
    assert quantized(target, moments=[np.array([[1.0, 0.9], [0.9, 1.0]])]) == [("", [[200, 101]], 0, [[200.0, 101.0]])]
    assert quantized(target, moments=[np.eye(2)]) == [("", [[200, 100]], 0, [[200.0, 100.0]])]


def test_compensated_rounding_keeps_each_weight_on_its_sign_groups_grid():
    """Split signs: the - group has exponent -1 (largest 100.4): its weights are multiples of 1/2;
    compensation never turns a zero into a weight nor flips a sign."""
    target = [[200.4, -100.4, 0.0]]
    h = np.full((3, 3), 0.9) + 0.1 * np.eye(3)
    groups = quantized(target, moments=[h])
    assert [(s, exp) for s, _, exp, _ in groups] == [("+", 0), ("-", -1)]
    (_, plus, _, _), (_, minus, _, minus_recon) = groups
    assert plus == [[200, 0, 0]] and minus[0][0] == minus[0][2] == 0 and minus[0][1] < 0
    # nearest would give -100.5 (mantissa -201); the 0.4 left by 200.4 -> 200 moves it by 0.4 * 0.471
    # (H^-1 of 0.9 J + 0.11 I: -h01 / h00 = 0.9 / (0.11 + 1.8)) to -100.21, on the 1/2 grid -100.0
    assert minus == [[0, -200, 0]] and minus_recon == [[0.0, -100.0, 0.0]]


def test_rel_and_unique():
    assert weights.rel(np.array([1.0, -1.0]), np.array([2.0, 2.0])) == 0.5
    assert weights.rel(np.array([1.0]), np.array([0.0])) == 0.0
    assert weights.unique("x", set()) == "x" and weights.unique("x", {"x"}) == "x#1"


def test_synapse_group_of_each_map_kind():
    common = dict(src="a", dst="b", num_weight_bits=8, source="fc")
    diag = lower.FloatGroup("a", "b", "diag", np.array([1.0, 0.0, -1.0]), ("s",))
    g = weights.synapse_group("b<-a", diag, np.array([3, 0, -2]), -1, common, delay=2)
    assert (g.name, g.kind, g.weights.tolist(), g.rows.tolist(), g.cols.tolist(), g.delays.tolist(), g.weight_exp) == (
        "b<-a", "sparse", [3, -2], [0, 2], [0, 2], [2, 2], -1)  # zero synapses are not stored
    dense = lower.FloatGroup("a", "b", "dense", np.ones((2, 3)), ("fc",))
    g = weights.synapse_group("b<-a", dense, np.arange(6).reshape(2, 3), 3, common)
    assert (g.kind, g.weights.tolist(), g.weight_exp, g.delays, g.src, g.dst, g.source) == (
        "dense", [[0, 1, 2], [3, 4, 5]], 3, None, "a", "b", "fc")
    assert weights.synapse_group("b<-a", dense, np.ones((2, 3), int), 0, common, delay=4).delays.tolist() == [[4] * 3] * 2
    conv = lower.FloatGroup("a", "b", "conv", np.ones((2, 1, 3, 3)), ("c",), stride=(2, 1), padding=(1, 0), groups=2)
    g = weights.synapse_group("b<-a", conv, np.full((2, 1, 3, 3), 7), 0, common)
    assert (g.kind, g.stride, g.padding, g.dilation, g.groups, g.weight_exp, g.delays) == (
        "conv", (2, 1), (1, 0), (1, 1), 2, 0, None)
    assert weights.synapse_group("b<-a", conv, np.full((2, 1, 3, 3), 7), -3, common).weight_exp == -3  # mantissas
