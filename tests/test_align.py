"""snn2chip/passes/align.py: hop depths, how each path into a population waits (synaptic delay
or delay line) and the delay lines of one-hop copies."""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from snn2chip.chip.ir import Population
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import align, context, lower, weights
from snn2chip.passes.align import Alignment, Wait
from snn2chip.passes.context import Capabilities, Options
from tests.conftest import chain


def neuron(n: int = 4) -> nir.IF:
    return nir.IF(r=np.ones(n), v_threshold=np.ones(n))


def residual_graph():
    """input -> a (IF) -> fa -> b (IF) -> fb -> c (IF, reads b and a through skip): a one-hop shortcut around b."""
    eye = np.eye(4)
    nodes, edges = chain(("a", neuron()), ("fa", nir.Linear(weight=eye)), ("b", neuron()), ("fb", nir.Linear(weight=eye)),
                         ("c", neuron()))
    nodes["skip"] = nir.Linear(weight=2 * eye)
    return make_graph(nodes, edges + [("a", "skip"), ("skip", "c")])


def residual(options: Options = Options(), caps: Capabilities = Capabilities()):
    """The context, the incoming paths of c and the depths of the populations built before c."""
    ctx = context.make(residual_graph(), options, caps)
    return ctx, align.incoming_paths(ctx, "c"), {"input": 0, "a": 1, "b": 2}


def test_incoming_paths_are_the_lowered_float_maps():
    _, incoming, _ = residual()
    assert [(src, chain_, rec, fg.kind, fg.src, fg.dst) for src, chain_, rec, fg in incoming] == [
        ("b", ("fb",), False, "dense", "b", "c"), ("a", ("skip",), False, "dense", "a", "c")]
    np.testing.assert_array_equal(incoming[0][3].weights, np.eye(4))
    np.testing.assert_array_equal(incoming[1][3].weights, 2 * np.eye(4))


def test_a_shorter_binary_dense_path_waits_in_synaptic_delays():
    ctx, incoming, depth = residual()
    assert align.align(ctx, incoming, depth) == Alignment(3, (2, 3), (Wait(0, False), Wait(1, True)))


def test_a_path_waits_in_a_delay_line_beyond_the_delay_limit():
    ctx, incoming, depth = residual(caps=Capabilities(max_delay=0))
    assert align.align(ctx, incoming, depth).waits == (Wait(0, False), Wait(1, False))


def as_conv(incoming, kernel: np.ndarray):
    return [(src, ch, rec, dataclasses.replace(fg, kind="conv", weights=kernel)) for src, ch, rec, fg in incoming]


def test_a_conv_waits_in_synaptic_delays_only_where_its_synapses_cost_less_than_the_delay_line():
    """c has 4 neurons; the delay line of a (4 neurons) costs 4/8192 of a Loihi 2 core. A one-hot
    kernel is 4 synapses (84 of 1,048,576 bits), a full 3x3 kernel 144 (3,024 bits, more than the
    line's 512-bit share); Loihi 1 stores every conv synapse anyway."""
    ctx, incoming, depth = residual()
    one_hot = np.eye(4).reshape(4, 4, 1, 1)
    assert align.align(ctx, as_conv(incoming, one_hot), depth).waits == (Wait(0, False), Wait(1, True))
    assert align.align(ctx, as_conv(incoming, np.ones((4, 4, 3, 3))), depth).waits == (Wait(0, False), Wait(1, False))
    ctx, incoming, depth = residual(caps=Capabilities(shared_conv_kernels=False))
    assert align.align(ctx, as_conv(incoming, np.ones((4, 4, 3, 3))), depth).waits == (Wait(0, False), Wait(1, True))


def test_a_delayed_conv_becomes_its_explicit_synapses_with_delays():
    fg = lower.FloatGroup("a", "c", "conv", np.zeros((2, 1, 3, 3)), ("sel",), stride=(2, 2), padding=(1, 1), groups=2)
    kernel = np.zeros((2, 1, 3, 3), np.int64)
    kernel[:, 0, 1, 1] = [3, 5]
    common = dict(src="a", dst="c", num_weight_bits=8, source="sel")
    group = weights.synapse_group("c<-a", fg, kernel, 2, common, 4, ((2, 4, 4), (2, 2, 2)))
    assert (group.kind, group.weight_exp) == ("sparse", 2) and group.delays.tolist() == [4] * 8
    dense = np.zeros((8, 32), np.int64)
    dense[group.rows, group.cols] = group.weights
    expected = np.zeros((2, 2, 2, 2, 4, 4), np.int64)  # (c, y, x) <- (c, 2y, 2x)
    for c, y, x in np.ndindex(2, 2, 2):
        expected[c, y, x, c, 2 * y, 2 * x] = kernel[c, 0, 1, 1]
    np.testing.assert_array_equal(dense, expected.reshape(8, 32))
    assert weights.synapse_group("c<-a", fg, kernel, 0, common).kind == "conv"


def test_the_lag_is_the_depth_difference_and_the_limit_is_inclusive():
    """b at depth 5: c is at depth 6, and a (depth 1) waits 6 - 1 - 1 = 4 steps."""
    ctx, incoming, _ = residual(caps=Capabilities(max_delay=4))
    deep = {"input": 0, "a": 1, "b": 5}
    assert align.align(ctx, incoming, deep) == Alignment(6, (2, 6), (Wait(0, False), Wait(4, True)))
    ctx, incoming, _ = residual(caps=Capabilities(max_delay=3))
    assert align.align(ctx, incoming, deep).waits == (Wait(0, False), Wait(4, False))


def test_without_alignment_nothing_waits_but_the_hops_are_reported():
    ctx, incoming, depth = residual(options=Options(align=False))
    assert align.align(ctx, incoming, depth) == Alignment(3, (2, 3), (Wait(0, False), Wait(0, False)))


def test_a_recurrent_path_neither_waits_nor_sets_the_depth():
    nodes, edges = chain(("fc", nir.Linear(weight=np.eye(2))), ("n", neuron(2)), shape=(2,))
    nodes["rec"] = nir.Linear(weight=-np.eye(2))
    ctx = context.make(make_graph(nodes, edges + [("n", "rec"), ("rec", "fc")]), Options(), Capabilities())
    incoming = align.incoming_paths(ctx, "n")
    assert [(src, rec) for src, _, rec, _ in incoming] == [("input", False), ("n", True)]
    assert align.align(ctx, incoming, {"input": 0}) == Alignment(1, (1,), (Wait(0, False), Wait(0, False)))


def test_wait_says_how():
    assert Wait(2, True).how == "synaptic delay" and Wait(2, False).how == "delay line"


def test_delay_line_adds_only_the_missing_copies():  # moved from tests/test_passes.py
    src = Population("s", "lif", (3,), vth=1)
    last, pops, groups, depths = align.delay_line(src, 3, 5, {"s", "s@1"})
    assert last == "s@3" and [p.name for p in pops] == ["s@2", "s@3"] and depths == {"s@2": 7, "s@3": 8}
    assert [g.name for g in groups] == ["s@2<-s@1", "s@3<-s@2"]
    assert all(p.kind == "lif" and (p.du, p.dv, p.vth) == (4095, 4095, 0) for p in pops)


def test_a_graded_delay_line_is_relays_of_one_to_one_unit_weights():
    src = Population("g", "relay", (2,), payload_bits=16, scale=4.0)
    last, pops, groups, depths = align.delay_line(src, 2, 1, {"g"})
    assert last == "g@2" and depths == {"g@1": 2, "g@2": 3}
    assert pops == [Population(f"g@{k}", "relay", (2,), source="delay of g", vth=0, payload_bits=16, scale=4.0,
                               role="delay", origin="g") for k in (1, 2)]
    assert [(g.name, g.kind, g.src, g.dst) for g in groups] == [("g@1<-g", "sparse", "g", "g@1"),
                                                                ("g@2<-g@1", "sparse", "g@1", "g@2")]
    for g in groups:
        assert g.weights.tolist() == [1, 1] and g.rows.tolist() == g.cols.tolist() == [0, 1]
        assert (g.weight_exp, g.delays) == (0, None)


def test_a_strided_delay_line_copies_only_the_positions_read():
    """Every second row and column of a (2, 3, 3) source: (2, 2, 2) copies, the first reading
    source neurons (c, 0|2, 0|2), the next one-to-one."""
    src = Population("s", "lif", (2, 3, 3), vth=1)
    last, pops, groups, depths = align.delay_line(src, 2, 0, {"s"}, every=(2, 2))
    assert last == "s@2.every2x2" and [(p.name, p.shape) for p in pops] == [("s@1.every2x2", (2, 2, 2)),
                                                                             ("s@2.every2x2", (2, 2, 2))]
    first, second = groups
    assert first.src == "s" and first.rows.tolist() == list(range(8))
    assert first.cols.tolist() == [0, 2, 6, 8, 9, 11, 15, 17]
    assert second.src == "s@1.every2x2" and second.rows.tolist() == second.cols.tolist() == list(range(8))


def test_only_an_unpadded_strided_1x1_convolution_reads_a_grid():
    def conv(kernel, stride, padding=(0, 0)):
        return lower.FloatGroup("a", "b", "conv", np.ones((2, 2, *kernel)), ("c",), stride=stride, padding=padding)

    assert align.read_grid(conv((1, 1), (2, 2))) == (2, 2) and align.read_grid(conv((1, 1), (1, 2))) == (1, 2)
    assert align.read_grid(conv((1, 1), (1, 1))) is None and align.read_grid(conv((3, 3), (2, 2))) is None
    assert align.read_grid(conv((1, 1), (2, 2), (1, 1))) is None


def test_a_delay_line_already_built_adds_nothing():
    src = Population("s", "lif", (3,), vth=1, scale=2.0)
    assert align.delay_line(src, 2, 0, {"s", "s@1", "s@2"}) == ("s@2", [], [], {})
    assert align.delay_line(src, 0, 0, {"s"}) == ("s", [], [], {})
    (copy,), _ = align.delay_line(src, 1, 0, {"s"})[1:3]
    assert (copy.scale, copy.role, copy.origin, copy.payload_bits) == (2.0, "delay", "s", 0)
