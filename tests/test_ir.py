"""snn2chip/chip/ir.py: the chip IR validates itself when built (every field against Loihi's
widths, every reference, kind and weight shape; a violation is the internal IRError), holds
read-only copies of its arrays and compares by value. (tests/test_chip_exact.py checks the same
through a saved and loaded network: du, a missing population, read-only loaded weights.)"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import torch

from snn2chip.chip.ir import ChipNet, IRError, Population, SynapseGroup, conv_as_sparse


def refused(make, problem: str, node: str | None) -> None:
    """``make()`` raises an IRError with exactly ``problem`` about ``node``."""
    with pytest.raises(IRError) as e:
        make()
    assert (e.value.problem, e.value.node) == (problem, node)
    assert str(e.value) == (f"node '{node}': {problem}" if node else problem)


def lif(name: str = "p", shape=(2,), **fields) -> Population:
    return Population(name, "lif", shape, **fields)


@pytest.mark.parametrize("fields, problem", [
    (dict(dv=4096), "field 'dv' is 4096; expected an integer in [0, 4095]"),
    (dict(du=-1), "field 'du' is -1; expected an integer in [0, 4095]"),
    (dict(du=1.0), "field 'du' is 1.0; expected an integer in [0, 4095]"),
    (dict(vth=2**17), "field 'vth' is 131072; expected an integer in [0, 131071]"),
    (dict(vth=True), "field 'vth' is True; expected an integer in [0, 131071]"),
    (dict(bias_exp=8), "field 'bias_exp' is 8; expected an integer in [0, 7]"),
    (dict(bias_exp=-1), "field 'bias_exp' is -1; expected an integer in [0, 7]"),
    (dict(payload_bits=25), "field 'payload_bits' is 25; expected an integer in [0, 24]"),
    (dict(reset="subtract", vsub=2**17), "field 'vsub' is 131072; expected an integer in [0, 131071]"),
    (dict(input_scale=0.0), "field 'input_scale' is 0.0; expected a positive number"),
    (dict(scale=float("nan")), "field 'scale' is nan; expected a positive number"),
    (dict(scale=float("inf")), "field 'scale' is inf; expected a positive number"),
    (dict(reset="subtract"), "reset 'subtract' (vsub 0) is not 'zero', or 'subtract' on a lif with vsub > 0"),
    (dict(vsub=3), "reset 'zero' (vsub 3) is not 'zero', or 'subtract' on a lif with vsub > 0"),
    (dict(reset="hold"), "reset 'hold' (vsub 0) is not 'zero', or 'subtract' on a lif with vsub > 0"),
    (dict(role="delay"), "role 'delay' with origin '': a delay copy, and only one, names its origin"),
    (dict(origin="q"), "role 'model' with origin 'q': a delay copy, and only one, names its origin"),
    (dict(role="helper"), "population role 'helper' is not one of model, readout, relay, delay, pool, bias"),
    (dict(bias_mant=np.zeros(3, int)), "bias_mant shape (3,) is not the population shape (2,)"),
    (dict(bias_mant=np.zeros(2)), "field 'bias_mant' holds float64 values; expected integers"),
    (dict(bias_mant=np.array([4096, 0])), "field 'bias_mant' holds values in [0, 4096]; expected [-4096, 4095]"),
    (dict(bias_mant=np.array([-4097, 0])), "field 'bias_mant' holds values in [-4097, 0]; expected [-4096, 4095]"),
])
def test_population_fields_out_of_range_are_refused(fields, problem):
    refused(lambda: lif(**fields), problem, "p")


@pytest.mark.parametrize("shape", [(), (0,), (2, -1), [2], (2.0,), (True,)])
def test_population_shape_must_be_a_tuple_of_positive_integers(shape):
    refused(lambda: lif(shape=shape), f"field 'shape' is {shape!r}; expected positive integers", "p")


def test_population_limits_are_inclusive_and_depend_on_the_kind():
    edge = lif(du=np.int64(4095), dv=4095, vth=2**17 - 1, bias_exp=7, payload_bits=24,
               bias_mant=np.array([-4096, 4095]), reset="subtract", vsub=2**17 - 1)
    assert (edge.du, edge.vth, edge.vsub) == (4095, 2**17 - 1, 2**17 - 1)
    # a relay's threshold is a payload magnitude: up to 2**23 - 1
    assert Population("r", "relay", (2,), vth=2**23 - 1).vth == 2**23 - 1
    refused(lambda: Population("r", "relay", (2,), vth=2**23), "field 'vth' is 8388608; expected an integer in [0, 8388607]",
            "r")
    refused(lambda: Population("r", "relay", (2,), reset="subtract", vsub=1),
            "reset 'subtract' (vsub 1) is not 'zero', or 'subtract' on a lif with vsub > 0", "r")
    refused(lambda: Population("x", "neuron", (2,)), "population kind 'neuron' is not one of input, lif, relay", "x")


def dense(name="g", src="a", dst="b", weights=None, **fields) -> SynapseGroup:
    return SynapseGroup(name, "dense", src, dst, np.zeros((2, 3), int) if weights is None else weights, **fields)


def sparse(rows=(0, 1), cols=(0, 2), weights=(1, -1), **fields) -> SynapseGroup:
    as_array = (lambda v: None if v is None else np.array(v))
    return SynapseGroup("s", "sparse", "a", "b", as_array(weights), rows=as_array(rows), cols=as_array(cols), **fields)


def conv(weights=None, **fields) -> SynapseGroup:
    return SynapseGroup("c", "conv", "a", "b", np.ones((2, 1, 3, 3), int) if weights is None else weights, **fields)


@pytest.mark.parametrize("make, problem", [
    (lambda: dense(weight_exp=8), "field 'weight_exp' is 8; expected an integer in [-8, 7]"),
    (lambda: dense(weight_exp=-9), "field 'weight_exp' is -9; expected an integer in [-8, 7]"),
    (lambda: dense(num_weight_bits=0), "field 'num_weight_bits' is 0; expected an integer in [1, 8]"),
    (lambda: dense(num_weight_bits=9), "field 'num_weight_bits' is 9; expected an integer in [1, 8]"),
    (lambda: dense(weights=np.array([[256, 0, 0], [0, 0, 0]])),
     "field 'weights' holds values in [0, 256]; expected [-256, 255]"),
    (lambda: dense(weights=np.array([[-257, 0, 0], [0, 0, 0]])),
     "field 'weights' holds values in [-257, 0]; expected [-256, 255]"),
    (lambda: dense(weights=np.zeros((2, 3))), "field 'weights' holds float64 values; expected integers"),
    (lambda: dense(delays=np.full((2, 3), 64)), "field 'delays' holds values in [64, 64]; expected [0, 63]"),
    (lambda: dense(delays=np.full((2, 3), -1)), "field 'delays' holds values in [-1, -1]; expected [0, 63]"),
    (lambda: dense(delays=np.zeros((3, 2), int)), "delays are supported on dense and sparse groups, one per synapse"),
])
def test_dense_group_fields_out_of_range_are_refused(make, problem):
    refused(make, problem, "g")


@pytest.mark.parametrize("make", [
    lambda: sparse(rows=None), lambda: sparse(cols=None), lambda: sparse(rows=(0, 1, 1)),
    lambda: sparse(weights=((1, -1),), rows=((0, 1),), cols=((0, 2),)),
])
def test_sparse_groups_need_rows_and_cols_per_weight(make):
    refused(make, "sparse weights need 'rows' and 'cols' of the same length", "s")


@pytest.mark.parametrize("make, problem", [
    (lambda: conv(stride=(0, 1)), "field 'stride' is 0; expected an integer in [1, 65536]"),
    (lambda: conv(padding=(0, -1)), "field 'padding' is -1; expected an integer in [0, 65536]"),
    (lambda: conv(dilation=(1, 0)), "field 'dilation' is 0; expected an integer in [1, 65536]"),
    (lambda: conv(stride=[1, 1]), "field 'stride' is [1, 1]; expected two integers"),
    (lambda: conv(padding=(1, 1, 1)), "field 'padding' is (1, 1, 1); expected two integers"),
    (lambda: conv(groups=0), "field 'groups' is 0; expected an integer in [1, 65536]"),
    (lambda: conv(weights=np.full((2, 1, 3, 3), 2**23)),
     "field 'weights' holds values in [8388608, 8388608]; expected [-8388608, 8388607]"),
    (lambda: conv(delays=np.zeros((2, 1, 3, 3), int)), "delays are supported on dense and sparse groups, one per synapse"),
    (lambda: conv(weight_exp=1), "conv weight_exp 1 > 0: a conv stores its effective kernel at exponent 0"),
    (lambda: conv(weights=np.full((2, 1, 3, 3), 256), weight_exp=-1),
     "field 'weights' holds values in [256, 256]; expected [-256, 255]"),  # with an exponent: mantissas
    (lambda: SynapseGroup("c", "full", "a", "b", np.zeros((2, 3), int)),
     "synapse group kind 'full' is not one of dense, sparse, conv"),
])
def test_conv_group_fields_out_of_range_are_refused(make, problem):
    refused(make, problem, "c")


def test_conv_weights_are_the_effective_kernel_beyond_8_bits():
    assert conv(weights=np.full((2, 1, 3, 3), 2**23 - 1)).weights.max() == 2**23 - 1
    assert conv(weights=np.full((2, 1, 3, 3), -(2**23))).weights.min() == -(2**23)


def net(groups=(), populations=None, **fields) -> ChipNet:
    pops = populations or {"a": Population("a", "input", (1, 4, 4)), "b": lif("b", (2,))}
    return ChipNet(pops, tuple(groups), inputs=("a",), outputs=("b",), **fields)


def test_a_network_checks_its_references():
    refused(lambda: net(pipeline_depth=-1), "field 'pipeline_depth' is -1; expected an integer in [0, 1048576]", None)
    refused(lambda: ChipNet(net().populations, (), inputs=("x",), outputs=("b",)),
            "input/output/depth population 'x' does not exist", "x")
    refused(lambda: net(depth={"a": 0, "c": 1}), "input/output/depth population 'c' does not exist", "c")
    refused(lambda: net(output_of={"output": "d"}), "input/output/depth population 'd' does not exist", "d")
    refused(lambda: net(populations={"a": Population("a", "input", (2,)), "b": lif("bb")}),
            "is stored under the name 'b'", "bb")
    copy = Population("b@1", "lif", (2,), role="delay", origin="z")
    refused(lambda: net(populations={"a": Population("a", "input", (2,)), "b": lif("b"), "b@1": copy}),
            "delay copy of 'z', which does not exist", "b@1")
    refused(lambda: net([dense("g", "b", "a", np.zeros((16, 2), int))]), "synapse group leads into an input population",
            "g")
    refused(lambda: net([dense("g", "zz", "b")]), "synapse group refers to population 'zz', which does not exist", "g")


def test_a_network_checks_that_weights_connect_their_populations():
    refused(lambda: net([dense("g", "a", "b", np.zeros((2, 3), int))]), "dense weights (2, 3) do not connect 16 -> 2", "g")
    assert net([dense("g", "a", "b", np.zeros((2, 16), int))]).incoming("b")[0].name == "g"
    flat = {"a": Population("a", "input", (3,)), "b": lif("b", (2,))}
    refused(lambda: net([sparse(rows=(0, 2), cols=(0, 1))], populations=flat), "field 'rows' holds values in [0, 2]; "
            "expected [0, 1]", "s")
    refused(lambda: net([sparse(rows=(0, 1), cols=(0, 3))], populations=flat), "field 'cols' holds values in [0, 3]; "
            "expected [0, 2]", "s")
    assert net([sparse(rows=(0, 1), cols=(0, 2))], populations=flat).groups[0].synapses == 2


def test_a_conv_group_must_produce_its_destinations_shape():
    """(1, 4, 4) through a 3x3 kernel, no padding: (2, 2, 2); padding 1 keeps 4x4; a 4x4 kernel
    gives 1x1, which may feed a flat (2,) population."""
    pops = lambda shape: {"a": Population("a", "input", (1, 4, 4)), "b": lif("b", shape)}  # noqa: E731
    assert net([conv()], populations=pops((2, 2, 2))).groups[0].synapses == 18
    net([conv(padding=(1, 1))], populations=pops((2, 4, 4)))
    net([conv(weights=np.ones((2, 1, 4, 4), int))], populations=pops((2,)))
    refused(lambda: net([conv()], populations=pops((2, 4, 4))),
            "conv weights (2, 1, 3, 3) (groups 1) do not connect (1, 4, 4) -> (2, 4, 4)", "c")
    refused(lambda: net([conv(groups=2)], populations=pops((2, 2, 2))),
            "conv weights (2, 1, 3, 3) (groups 2) do not connect (1, 4, 4) -> (2, 2, 2)", "c")  # 1 channel, 2 groups
    refused(lambda: net([conv()], populations=pops((2,))),
            "conv weights (2, 1, 3, 3) (groups 1) do not connect (1, 4, 4) -> (2,)", "c")  # 2x2 output is not flat


def test_arrays_are_read_only_copies():
    bias_mant, weights, rows, cols, delays = np.array([1, 2]), np.array([1, -1]), np.array([0, 1]), np.array([0, 2]), \
        np.array([3, 4])
    pop = lif(bias_mant=bias_mant)
    group = SynapseGroup("s", "sparse", "a", "b", weights, rows=rows, cols=cols, delays=delays)
    for array in (pop.bias_mant, group.weights, group.rows, group.cols, group.delays):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 7
    for array in (bias_mant, weights, rows, cols, delays):
        array[0] = 7  # the caller's arrays stay writable and are not shared
    assert (pop.bias_mant.tolist(), group.weights.tolist(), group.rows.tolist(), group.delays.tolist()) == (
        [1, 2], [1, -1], [0, 1], [3, 4])
    with pytest.raises(dataclasses.FrozenInstanceError):
        pop.vth = 3


def test_populations_groups_and_networks_compare_by_value():
    assert lif(bias_mant=np.array([1, 2])) == lif(bias_mant=[1, 2])
    assert lif(bias_mant=np.array([1, 2])) != lif(bias_mant=np.array([1, 3]))
    assert lif(bias_mant=np.zeros(2, int)) != lif()  # an all-zero bias is not no bias
    assert lif(scale=2.0) != lif() and lif() != lif("q")
    assert dense(delays=np.zeros((2, 3), int)) != dense() and dense() == dense()
    assert dense() != lif()  # different types are never equal
    assert net() == net() and net(pipeline_depth=1) != net()
    a = net([dense("g", "a", "b", np.zeros((2, 16), int))])
    b = net([dense("g", "a", "b", np.eye(2, 16, dtype=int))])
    assert a != b


def test_sizes():
    assert lif(shape=(2, 3, 4)).size == 24
    assert conv().synapses == 18 and dense().synapses == 6


def test_sparse_synapses_may_not_repeat_a_pair():
    pops = {"a": Population("a", "input", (3,)), "b": Population("b", "lif", (2,), vth=1)}
    twice = SynapseGroup("b<-a", "sparse", "a", "b", np.array([1, 2]), rows=np.array([0, 0]), cols=np.array([1, 1]))
    with pytest.raises(IRError, match=r"node 'b<-a': sparse synapses repeat a \(row, col\) pair"):
        ChipNet(pops, (twice,), inputs=("a",), outputs=("b",))
    once = SynapseGroup("b<-a", "sparse", "a", "b", np.array([1, 2]), rows=np.array([0, 1]), cols=np.array([1, 1]))
    assert ChipNet(pops, (once,), inputs=("a",), outputs=("b",)).groups == (once,)


@pytest.mark.parametrize("stride, padding, dilation, groups", [((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (2, 1), 2)])
def test_conv_as_sparse_is_the_conv_as_explicit_synapses(stride, padding, dilation, groups):
    """Each (destination, source) pair once, sorted, zero taps and padding left out: the sparse
    product equals the convolution on random inputs."""
    rng = np.random.default_rng(0)
    kernel = rng.integers(-3, 4, size=(4, 4 // groups, 3, 2))
    g = SynapseGroup("c", "conv", "a", "b", kernel, weight_exp=-2, num_weight_bits=6, stride=stride, padding=padding,
                     dilation=dilation, groups=groups, source="n")
    x = torch.from_numpy(rng.random((1, 4, 7, 6)))
    want = torch.nn.functional.conv2d(x, torch.from_numpy(kernel.astype(float)), None, stride, padding, dilation, groups)
    s = conv_as_sparse(g, (4, 7, 6), tuple(want.shape[1:]))
    assert (s.kind, s.name, s.src, s.dst, s.weight_exp, s.num_weight_bits, s.source) == ("sparse", "c", "a", "b", -2, 6, "n")
    assert np.all(s.weights != 0) and np.all(np.diff(s.rows * x.numel() + s.cols) > 0)
    got = np.bincount(s.rows, s.weights * x.numpy().reshape(-1)[s.cols], minlength=want.numel())
    np.testing.assert_allclose(got, want.numpy().reshape(-1), rtol=0, atol=1e-12)


def test_conv_as_sparse_onto_a_flat_destination():
    """A 2x2 kernel over a 2x2 input onto (O,): row o holds kernel o flattened."""
    g = SynapseGroup("c", "conv", "a", "b", np.arange(1, 9).reshape(2, 1, 2, 2), weight_exp=-1)
    s = conv_as_sparse(g, (1, 2, 2), (2,))
    assert (s.rows.tolist(), s.cols.tolist(), s.weights.tolist()) == ([0] * 4 + [1] * 4, [0, 1, 2, 3] * 2, list(range(1, 9)))
