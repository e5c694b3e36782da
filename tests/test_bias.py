"""snn2chip/passes/bias.py: the 13-bit neuron bias (:func:`mantissa`), a population's input
biases per step (forward, across a recurrent edge, ``v_leak``), the always-on neuron and the
delayed coarse and fine synapse groups that feed the biases from it."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from snn2chip.chip.ir import Population, SynapseGroup
from snn2chip.errors import ModelError
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import bias, context, scales
from snn2chip.passes.context import Capabilities, Options
from tests.conftest import chain

BIAS = [1.0, -2.0]


def test_bias_mantissa_and_reserved_name():  # moved from tests/test_passes.py
    mant, exp, recon = bias.mantissa(np.array([8190.0, -3.0]))
    assert (exp, mant.tolist(), recon.tolist()) == (1, [4095, -2], [8190.0, -4.0])
    with pytest.raises(ModelError, match="exceeds 13-bit mantissa << 7"):
        bias.mantissa(np.array([4096.0 * 2**8]))


def test_mantissa_takes_the_smallest_exponent_that_fits_4095():
    mant, exp, recon = bias.mantissa(np.array([4095.0, -4095.0, 2.5, 0.0]))
    assert (exp, mant.tolist(), recon.tolist()) == (0, [4095, -4095, 2, 0], [4095.0, -4095.0, 2.0, 0.0])  # half to even
    mant, exp, recon = bias.mantissa(np.array([4095.0 * 2**7, 100.0]))
    assert (exp, mant.tolist(), recon.tolist()) == (7, [4095, 1], [524160.0, 128.0])
    mant, exp, _ = bias.mantissa(np.zeros(3))
    assert (exp, mant.tolist()) == (0, [0, 0, 0])
    with pytest.raises(ModelError) as e:
        bias.mantissa(np.array([-524161.0]))
    assert e.value.problem == "bias 524161 (chip units) exceeds 13-bit mantissa << 7"


def biased_context(node, rec_bias=None, options: Options = Options(), caps: Capabilities = Capabilities()):
    """input (2) -> fc (Affine, bias [1, -2]) -> n -> output; with ``rec_bias`` also n -> rec (Affine) -> n."""
    nodes, edges = chain(("fc", nir.Affine(weight=np.eye(2), bias=np.array(BIAS))), ("n", node), shape=(2,))
    if rec_bias is not None:
        nodes["rec"] = nir.Affine(weight=np.eye(2), bias=np.array(rec_bias))
        edges += [("n", "rec"), ("rec", "n")]
    return context.make(make_graph(nodes, edges), options, caps)


def biases_of(node, rec_bias=None) -> bias.Biases:
    ctx = biased_context(node, rec_bias)
    return bias.population_biases(ctx, "n", scales.neuron(ctx.graph, "n", ctx.dt))


def test_input_bias_is_in_membrane_units_per_step():
    """IF with r = 2: the Affine bias [1, -2] adds [2, -4] to v every step."""
    b = biases_of(nir.IF(r=np.full(2, 2.0), v_threshold=np.ones(2)))
    assert (b.forward.tolist(), b.late.tolist(), b.constant.tolist()) == ([2.0, -4.0], [0.0, 0.0], [2.0, -4.0])


def test_a_bias_across_a_recurrent_edge_is_late():
    b = biases_of(nir.IF(r=np.full(2, 2.0), v_threshold=np.ones(2)), rec_bias=[0.5, 0.25])
    assert (b.forward.tolist(), b.late.tolist(), b.constant.tolist()) == ([2.0, -4.0], [1.0, 0.5], [3.0, -3.5])


def test_v_leak_without_a_synaptic_current_becomes_an_input_bias():
    """LIF at dt/tau = 1/2, r = 1, v_leak = 1: the bias contributes [0.5, -1], v_leak 0.5."""
    lif = nir.LIF(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.ones(2), v_threshold=np.ones(2))
    b = biases_of(lif)
    assert b.forward.tolist() == [1.0, -0.5] and b.neuron.leak_bias.tolist() == [0.0, 0.0]
    assert b.neuron.decay == 0.5 and b.neuron.gain == 0.5


def test_v_leak_under_a_synaptic_current_stays_a_neuron_bias():
    """CubaLIF at dt/tau = 1/2 for both: gain 1/4, v_leak 1 stays as 0.5 per step in the neuron."""
    cuba = nir.CubaLIF(tau_syn=np.full(2, 2.0), tau_mem=np.full(2, 2.0), r=np.ones(2), v_leak=np.ones(2),
                       v_threshold=np.ones(2))
    b = biases_of(cuba)
    assert b.forward.tolist() == [0.25, -0.5] and b.neuron.leak_bias.tolist() == [0.5, 0.5]


def test_always_on_neuron():
    assert bias.always_on() == Population("bias.always_on", "lif", (1,), source="(always-on bias neuron)", vth=0,
                                          bias_mant=np.ones(1, dtype=np.int64), role="bias")
    assert bias.BIAS == "bias.always_on"


def bias_groups(target, delay=0, label="bias", **kwargs) -> list[SynapseGroup]:
    ctx = biased_context(nir.IF(r=np.ones(2), v_threshold=np.ones(2)), **kwargs)
    made, _ = bias.groups(ctx, "n", np.array(target, dtype=np.float64).reshape(-1, 1), 1.0, delay, label)
    return made


def summary(groups: list[SynapseGroup]) -> list[tuple]:
    return [(g.name, g.kind, g.src, g.dst, g.weights.tolist(), g.weight_exp, g.num_weight_bits, g.source) for g in groups]


def test_bias_is_a_coarse_group_and_a_fine_remainder():
    """[1000, 3]: exponent 2 (1000 / 4 = 250 <= 255) leaves 3 -> 4, a remainder -1 for the fine
    group at exponent -7 (-1 = -128 / 2**7); together exact."""
    groups = bias_groups([1000.0, 3.0])
    assert summary(groups) == [
        ("n<-bias", "dense", "bias.always_on", "n", [[250], [1]], 2, 8, "bias"),
        ("n<-bias.fine", "dense", "bias.always_on", "n", [[0], [-128]], -7, 8, "bias"),
    ]
    assert all(g.delays is None for g in groups)
    total = sum(g.weights.astype(np.float64) * 2.0**g.weight_exp for g in groups)
    np.testing.assert_array_equal(total, [[1000.0], [3.0]])


def test_bias_groups_start_with_the_data():
    groups = bias_groups([1000.0, 3.0], delay=3, label="bias.late")
    assert [g.name for g in groups] == ["n<-bias.late", "n<-bias.late.fine"]
    for g in groups:
        np.testing.assert_array_equal(g.delays, [[3], [3]])


def test_mixed_sign_biases_split_into_two_full_mantissa_groups():
    assert summary(bias_groups([100.0, -50.0])) == [
        ("n<-bias+", "dense", "bias.always_on", "n", [[200], [0]], -1, 8, "bias"),
        ("n<-bias-", "dense", "bias.always_on", "n", [[0], [-200]], -2, 8, "bias"),
    ]
    # unsplit: one mixed group whose mantissas are even (Lava drops their LSB)
    unsplit = bias_groups([100.0, -50.0], options=Options(split_signs=False))
    assert summary(unsplit) == [("n<-bias", "dense", "bias.always_on", "n", [[200], [-100]], -1, 8, "bias")]


def test_bias_groups_use_the_targets_weight_bits():
    """6-bit weights: mantissa steps of 4, the largest 252: 1000 -> exponent 2, 1000 / 4 = 250 is
    62.5 steps, rounded (half to even) to 248; the fine group adds the remaining 8 = 128 / 2**4."""
    groups = bias_groups([1000.0, 0.0], caps=Capabilities(weight_bits=6))
    assert [(g.name, g.weights.tolist(), g.weight_exp, g.num_weight_bits) for g in groups] == [
        ("n<-bias", [[248], [0]], 2, 6), ("n<-bias.fine", [[128], [0]], -4, 6)]


def test_a_bias_beyond_the_delay_limit_comes_from_a_delayed_always_on_neuron():
    ctx = biased_context(nir.IF(r=np.ones(2), v_threshold=np.ones(2)), caps=Capabilities(max_delay=5))
    for delay, source, rest in ((5, "bias.always_on", 5), (6, "bias.always_on.1", None), (13, "bias.always_on.2", 1)):
        (group,) = bias.groups(ctx, "n", np.ones((2, 1)), 1.0, delay)[0]
        assert group.src == source and (group.delays is None if rest is None else np.all(group.delays == rest)), delay
    assert [bias.stage_of(bias.stage(k)) for k in range(3)] == [0, 1, 2]
    pops, chain_ = bias.stages(2, 5, {"bias.always_on"})  # stage 0 exists: stages 1 and 2 and what starts them
    assert [(p.name, p.vth, p.role, p.bias_mant) for p in pops] == [("bias.always_on.1", 0, "bias", None),
                                                                     ("bias.always_on.2", 0, "bias", None)]
    assert [(g.name, g.src, g.dst, g.weights.tolist(), g.delays.tolist()) for g in chain_] == [
        ("bias.always_on.1<-bias.always_on", "bias.always_on", "bias.always_on.1", [[255]], [[5]]),
        ("bias.always_on.2<-bias.always_on.1", "bias.always_on.1", "bias.always_on.2", [[255]], [[5]])]


def test_a_chain_deeper_than_the_delay_limit_gets_its_biases_on_time():
    """Eight biased IF layers with synaptic delays of at most 2 steps: the biases of layers 4..8
    come from always-on neurons started 3 and 6 steps late; chip spikes equal float spikes."""
    from snn2chip.backends.simulator import simulate
    from snn2chip.passes.quantize import compile_graph
    from tests.test_compile import _aligned

    layers = []
    for i in range(1, 9):
        layers += [(f"fc{i}", nir.Affine(weight=np.eye(2), bias=np.array([0.25, 0.5]))),
                   (f"n{i}", nir.IF(r=np.ones(2), v_threshold=np.ones(2)))]
    graph = make_graph(*chain(*layers, shape=(2,)))
    net, _ = compile_graph(graph, Options(), Capabilities(max_delay=2))
    assert {p: net.populations[p].role for p in net.populations if p.startswith("bias")} == {
        "bias.always_on": "bias", "bias.always_on.1": "bias", "bias.always_on.2": "bias"}
    assert net.pipeline_depth == 8 and max(int(g.delays.max()) for g in net.groups if g.delays is not None) == 2
    x = np.zeros((1, 12, 2))  # the biases alone drive every layer
    pairs = _aligned(net, graph, x, 12, [f"n{i}" for i in range(1, 9)])
    for name, (f, c) in pairs.items():
        assert f.sum() > 0, name
        np.testing.assert_array_equal(f, c, err_msg=name)
    padded = np.zeros((1, 12 + net.pipeline_depth, 2))
    starts = simulate(net, padded, record=["bias.always_on.1", "bias.always_on.2"])
    assert [int(np.argmax(starts[p][0, :, 0])) for p in starts] == [3, 6]


def test_the_bias_neurons_name_is_reserved():
    neuron = lambda: nir.IF(r=np.ones(2), v_threshold=np.ones(2))  # noqa: E731
    nodes, edges = chain(("bias.always_on", neuron()), ("fc", nir.Affine(weight=np.eye(2), bias=np.ones(2))),
                         ("n", neuron()), shape=(2,))
    ctx = context.make(make_graph(nodes, edges), Options(), Capabilities())
    with pytest.raises(ModelError) as e:
        bias.groups(ctx, "n", np.ones((2, 1)), 1.0, 1)
    assert (e.value.problem, e.value.node) == (
        "the name 'bias.always_on' is reserved for the compiler's always-on bias neurons", "bias.always_on")


@pytest.mark.lava
def test_delayed_always_on_neurons_run_the_same_in_lava():
    from snn2chip.backends.lava import run_lava
    from snn2chip.backends.simulator import simulate
    from snn2chip.passes.quantize import compile_graph

    layers = []
    for i in range(1, 5):
        layers += [(f"fc{i}", nir.Affine(weight=np.eye(2), bias=np.array([0.25, 0.5]))),
                   (f"n{i}", nir.IF(r=np.ones(2), v_threshold=np.ones(2)))]
    net, _ = compile_graph(make_graph(*chain(*layers, shape=(2,))), Options(), Capabilities(max_delay=1))
    lif = [p for p, pop in net.populations.items() if pop.kind == "lif"]
    assert "bias.always_on.1" in lif
    x = np.zeros((1, 10, 2))
    sim, lava = simulate(net, x, record=lif, probe=lif), run_lava(net, x, record=lif, probe=lif)
    for key in sim:
        np.testing.assert_array_equal(sim[key], lava[key], err_msg=key)
