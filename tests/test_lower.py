"""snn2chip/passes/lower.py: which nodes become populations, the stateless paths between them, each
path as a float synapse map (diag, dense, one composed conv, a readout conv), the constant input
of a population, and relays for maps too large to compose."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from snn2chip.errors import ModelError
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import lower, relays, shortcuts
from snn2chip.passes.context import Capabilities
from tests.conftest import CAPS, chain


def neuron(shape) -> nir.IF:
    return nir.IF(r=np.ones(shape), v_threshold=np.ones(shape))


def conv(weight, padding=0, stride=1, groups=1) -> nir.Conv2d:
    weight = np.asarray(weight, dtype=np.float64)
    return nir.Conv2d(input_shape=None, weight=weight, stride=stride, padding=padding, dilation=1, groups=groups,
                      bias=np.zeros(weight.shape[0]))


def residual_graph():
    """input -> a (IF) -> fa -> b (IF) -> fb -> c (IF, reads b and a): a one-hop shortcut around b."""
    eye = np.eye(4)
    nodes, edges = chain(("a", neuron(4)), ("fa", nir.Linear(weight=eye)), ("b", neuron(4)),
                         ("fb", nir.Linear(weight=eye)), ("c", neuron(4)))
    nodes["skip"] = nir.Linear(weight=2 * eye)
    return make_graph(nodes, edges + [("a", "skip"), ("skip", "c")])


def test_populations_are_inputs_neurons_thresholds_relays_and_readouts():
    nodes, edges = chain(("a", neuron(2)), ("t", nir.Threshold(threshold=np.full(2, 0.5))),
                         ("r", nir.Scale(scale=np.ones(2), metadata={shortcuts.RELAY_KEY: True})),
                         ("s", nir.Scale(scale=np.full(2, 3.0))), shape=(2,))
    assert lower.populations(make_graph(nodes, edges)) == {"input": "input", "a": "a", "t": "t", "r": "r",
                                                           "output.readout": "output"}
    # an Output fed by a population reads it directly: no read-out population
    assert lower.populations(make_graph(*chain(("a", neuron(2)), shape=(2,)))) == {"input": "input", "a": "a"}


def test_delay_nodes_are_refused_naming_them():
    graph = make_graph(*chain(("d", nir.Delay(delay=np.ones(2))), ("a", neuron(2)), shape=(2,)))
    with pytest.raises(ModelError) as e:
        lower.populations(graph)
    assert (e.value.problem, e.value.node) == ("Delay cannot be compiled: Delay nodes are not lowered to synaptic delays yet",
                                               "d")


def test_conv1d_is_refused():
    c1 = nir.Conv1d(input_shape=None, weight=np.ones((1, 1, 2)), stride=1, padding=0, dilation=1, groups=1,
                    bias=np.zeros(1))
    graph = make_graph(*chain(("c", c1), ("a", neuron((1, 3))), shape=(1, 4), out=(1, 3)))
    with pytest.raises(ModelError) as e:
        lower.populations(graph)
    assert (e.value.problem, e.value.node) == ("Conv1d cannot be compiled: Conv1d is not lowered yet (Conv2d is)", "c")


def test_paths_list_every_chain_into_a_population():
    graph = residual_graph()
    pops = lower.populations(graph)
    assert lower.paths(graph, pops, "c") == [("b", ("fb",), False), ("a", ("skip",), False)]
    assert lower.paths(graph, pops, "a") == [("input", (), False)]


def test_paths_flag_a_recurrent_edge_and_refuse_a_stateless_cycle():
    nodes, edges = chain(("fc", nir.Linear(weight=np.eye(2))), ("n", neuron(2)), shape=(2,))
    nodes["rec"] = nir.Linear(weight=-np.eye(2))
    graph = make_graph(nodes, edges + [("n", "rec"), ("rec", "fc")])
    pops = lower.populations(graph)
    assert lower.paths(graph, pops, "n") == [("input", ("fc",), False), ("n", ("rec", "fc"), True)]
    nodes, edges = chain(("f1", nir.Linear(weight=np.eye(2))), ("f2", nir.Linear(weight=np.eye(2))), ("n", neuron(2)),
                         shape=(2,))
    cyclic = make_graph(nodes, edges + [("f2", "f1")])
    with pytest.raises(ModelError) as e:
        lower.paths(cyclic, lower.populations(cyclic), "n")
    assert (e.value.problem, e.value.node) == ("a cycle of stateless nodes has no neuron to hold its state", "f2")


def test_scales_and_flattens_are_one_to_one():
    nodes, edges = chain(("s1", nir.Scale(scale=np.array([2.0, 3.0, -1.0, 0.5]))), ("s2", nir.Scale(scale=np.full(4, 2.0))),
                         ("a", neuron(4)))
    graph = make_graph(nodes, edges)
    fg = lower.lower_path(graph, lower.populations(graph), "input", "a", ("s1", "s2"))
    assert (fg.kind, fg.src, fg.dst, fg.nodes) == ("diag", "input", "a", ("s1", "s2"))
    np.testing.assert_array_equal(fg.weights, [4.0, 6.0, -2.0, 1.0])


def test_an_affine_map_is_dense_without_its_bias():
    w = np.array([[1.0, 2.0, 0.0], [-3.0, 0.5, 4.0]])
    nodes, edges = chain(("fc", nir.Affine(weight=w, bias=np.array([10.0, -20.0]))),
                         ("s", nir.Scale(scale=np.array([2.0, -1.0]))), ("a", neuron(2)), shape=(3,), out=(2,))
    graph = make_graph(nodes, edges)
    fg = lower.lower_path(graph, lower.populations(graph), "input", "a", ("fc", "s"))
    assert fg.kind == "dense"
    np.testing.assert_array_equal(fg.weights, [[2.0, 4.0, 0.0], [3.0, -0.5, -4.0]])


def avgpool_conv_graph(padding: int):
    """input (1, 4, 4) -> AvgPool 2x2/2 -> Conv 2x2 [[1, 2], [3, 4]] (padding) -> n."""
    side = 2 + 2 * padding - 1
    nodes, edges = chain(("pool", nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                                padding=np.zeros(2, int))),
                         ("conv", conv([[[[1.0, 2.0], [3.0, 4.0]]]], padding=padding)), ("n", neuron((1, side, side))),
                         shape=(1, 4, 4), out=(1, side, side))
    return make_graph(nodes, edges)


@pytest.mark.parametrize("padding", [0, 1])
def test_avgpool_then_conv_is_one_composed_conv(padding):
    """Each weight of the 2x2 kernel spreads over the 2x2 pool window it reads, times 1/4; the
    strides multiply and so does the padding (pool window = pool stride)."""
    graph = avgpool_conv_graph(padding)
    fg = lower.lower_path(graph, lower.populations(graph), "input", "n", ("pool", "conv"))
    assert (fg.kind, fg.stride, fg.padding, fg.dilation, fg.groups) == ("conv", (2, 2), (2 * padding,) * 2, (1, 1), 1)
    np.testing.assert_array_equal(fg.weights[0, 0], [[0.25, 0.25, 0.5, 0.5],
                                                     [0.25, 0.25, 0.5, 0.5],
                                                     [0.75, 0.75, 1.0, 1.0],
                                                     [0.75, 0.75, 1.0, 1.0]])
    x = np.arange(16, dtype=np.float64)
    direct = torch.nn.functional.conv2d(torch.nn.functional.avg_pool2d(torch.from_numpy(x).reshape(1, 1, 4, 4), 2),
                                        torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64), padding=padding)
    np.testing.assert_allclose(lower.apply_map(fg, fg.weights, x, (1, 4, 4)), direct.reshape(-1).numpy(), rtol=1e-12)


def test_an_overlapping_pool_before_a_padded_conv_is_not_composed():
    """A 3x3/1 pool is not tiled by its stride, so with a padded conv the composition would be
    wrong at the borders: the path falls back to a dense matrix (exact, by push-through)."""
    nodes, edges = chain(("pool", nir.SumPool2d(kernel_size=np.array([3, 3]), stride=np.array([1, 1]),
                                                padding=np.zeros(2, int))),
                         ("conv", conv([[[[1.0, 1.0], [1.0, 1.0]]]], padding=1)), ("n", neuron((1, 3, 3))),
                         shape=(1, 4, 4), out=(1, 3, 3))
    graph = make_graph(nodes, edges)
    fg = lower.lower_path(graph, lower.populations(graph), "input", "n", ("pool", "conv"))
    assert fg.kind == "dense" and fg.weights.shape == (9, 16)
    # the centre output reads the whole 2x2 pooled map = each 3x3 window of the 4x4 input once:
    # the inner four pixels are in all four windows, the corners in one
    np.testing.assert_array_equal(fg.weights[4].reshape(4, 4), [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]])


def test_scales_fold_per_channel_into_a_grouped_conv():
    """Scale (2, -1) before a depthwise conv and (1, 3) after: kernel channel o times both factors."""
    nodes, edges = chain(("s_in", nir.Scale(scale=np.array([2.0, -1.0])[:, None, None])),
                         ("conv", conv([[[[1.0]]], [[[0.5]]]], groups=2)),
                         ("s_out", nir.Scale(scale=np.array([1.0, 3.0])[:, None, None])), ("n", neuron((2, 3, 3))),
                         shape=(2, 3, 3))
    graph = make_graph(nodes, edges)
    fg = lower.lower_path(graph, lower.populations(graph), "input", "n", ("s_in", "conv", "s_out"))
    assert (fg.kind, fg.groups) == ("conv", 2)
    np.testing.assert_array_equal(fg.weights.reshape(-1), [2.0, -1.5])


def test_flatten_fc_readout_beyond_max_dense_is_one_conv(monkeypatch):
    """A (2, 2, 2) population -> Flatten -> Linear (3x8): 8 x 8 unit-vector entries exceed
    MAX_DENSE = 10, so the readout is a conv whose kernel is the weight reshaped to (3, 2, 2, 2)."""
    monkeypatch.setattr(lower, "MAX_DENSE", 10)
    w = np.arange(24, dtype=np.float64).reshape(3, 8) - 10
    nodes, edges = chain(("flat", nir.Flatten(input_type={"input": np.array([2, 2, 2])}, start_dim=0, end_dim=-1)),
                         ("fc", nir.Linear(weight=w)), ("n", neuron(3)), shape=(2, 2, 2), out=(3,))
    graph = make_graph(nodes, edges)
    fg = lower.lower_path(graph, lower.populations(graph), "input", "n", ("flat", "fc"))
    assert (fg.kind, fg.stride, fg.padding) == ("conv", (1, 1), (0, 0))
    np.testing.assert_array_equal(fg.weights, w.reshape(3, 2, 2, 2))
    x = np.arange(8, dtype=np.float64)
    np.testing.assert_array_equal(lower.apply_map(fg, fg.weights, x, (2, 2, 2)), w @ x)


def test_a_map_beyond_max_dense_that_is_no_conv_is_refused(monkeypatch):
    monkeypatch.setattr(lower, "MAX_DENSE", 10)
    nodes, edges = chain(("f1", nir.Linear(weight=np.ones((8, 8)))), ("f2", nir.Linear(weight=np.ones((3, 8)))),
                         ("n", neuron(3)), shape=(8,), out=(3,))
    graph = make_graph(nodes, edges)
    with pytest.raises(ModelError) as e:
        lower.lower_path(graph, lower.populations(graph), "input", "n", ("f1", "f2"))
    assert e.value.node == "n"
    assert e.value.problem == (
        "the synapses from 'input' through f1, f2 would need a dense 3x8 matrix pushed through from 8 unit vectors; "
        "only convolutions (optionally after a pool), pools, and [pool] flatten fc readouts are lowered without one")


def test_population_bias_forward_and_across_a_recurrent_edge():
    """fc's bias reaches n every step, times the Scale after it; rec's bias crosses the recurrent
    edge (it arrives from the second step on)."""
    nodes, edges = chain(("fc", nir.Affine(weight=np.eye(2), bias=np.array([1.0, -2.0]))),
                         ("s", nir.Scale(scale=np.full(2, 3.0))), ("n", neuron(2)), shape=(2,))
    nodes["rec"] = nir.Affine(weight=np.eye(2), bias=np.array([0.5, 0.25]))
    graph = make_graph(nodes, edges + [("n", "rec"), ("rec", "n")])
    forward, late = lower.population_bias(graph, lower.populations(graph), "n")
    np.testing.assert_array_equal(forward, [3.0, -6.0])
    np.testing.assert_array_equal(late, [0.5, 0.25])


def test_conv_chains_too_large_to_compose_get_a_relay(monkeypatch):
    """conv c1 (1, 3, 3) feeds the padded conv c2: with MAX_DENSE = 10 < 9**2 a relay carries c1's output."""
    nodes, edges = chain(("c1", conv(np.ones((1, 1, 2, 2)))), ("c2", conv(np.ones((1, 1, 3, 3)), padding=1)),
                         ("n", neuron((1, 3, 3))), shape=(1, 4, 4), out=(1, 3, 3))
    graph = make_graph(nodes, edges)
    assert relays.insert(graph, CAPS) is graph  # small enough at the default MAX_DENSE
    monkeypatch.setattr(lower, "MAX_DENSE", 10)
    relayed = relays.insert(graph, CAPS)
    assert relayed.successors("c1") == ["c1.relay"] and relayed.predecessors("c2") == ["c1.relay"]
    assert shortcuts.is_relay(relayed.nodes["c1.relay"]) and "c2.relay" not in relayed.nodes  # c2 feeds no conv
    assert lower.populations(relayed) == {"input": "input", "c1.relay": "c1.relay", "n": "n"}


def test_an_unpadded_conv_after_a_conv_composes_into_one_exact_kernel(monkeypatch):
    """conv (stride 2, padded) -> per-channel Scale -> unpadded conv (stride 2) is one convolution
    (kernel 5x5, stride 4, the first's padding): no relay even where the dense map is too large,
    and the composed map equals the chain on random inputs. A padded second conv does not compose."""
    rng = np.random.default_rng(3)
    nodes, edges = chain(("c1", conv(rng.normal(size=(2, 3, 3, 3)), padding=1, stride=2)),
                         ("s", nir.Scale(scale=np.array([2.0, -0.5])[:, None, None] * np.ones((2, 5, 5)))),
                         ("c2", conv(rng.normal(size=(4, 2, 2, 2)), stride=2)), ("n", neuron((4, 2, 2))),
                         shape=(3, 9, 9), out=(4, 2, 2))
    graph = make_graph(nodes, edges)
    monkeypatch.setattr(lower, "MAX_DENSE", 10)
    assert relays.insert(graph, CAPS) is graph
    assert lower.composable(graph, ("c1", "s", "c2"))
    fg = lower.lower_path(graph, lower.populations(graph), "input", "n", ("c1", "s", "c2"))
    assert (fg.kind, fg.weights.shape, fg.stride, fg.padding) == ("conv", (4, 3, 5, 5), (4, 4), (1, 1))
    x = torch.from_numpy(rng.normal(size=(1, 3, 9, 9)))
    np.testing.assert_allclose(lower.apply_map(fg, fg.weights, x.reshape(-1).numpy(), (3, 9, 9)),
                               lower._push(graph, ("c1", "s", "c2"), x).reshape(-1).numpy(), rtol=1e-12)
    nodes["c2"] = conv(rng.normal(size=(4, 2, 2, 2)), stride=2, padding=1)
    nodes["n"], nodes["output"] = neuron((4, 3, 3)), nir.Output(output_type={"output": np.array([4, 3, 3])})
    padded = make_graph(nodes, edges)
    assert not lower.composable(padded, ("c1", "s", "c2"))
    assert relays.insert(padded, CAPS).predecessors("s") == ["c1.relay"]


def _conv_pool_conv(pool_padding: int = 0, kernel: int = 2):
    """conv c1 (3x3, padded) -> per-channel Scale -> AvgPool (``kernel``, stride 2) -> per-channel
    Scale -> unpadded 1x1 conv c2 -> neuron, on a (3, 8, 8) input: MS-ResNet-104's stem
    convolution and the average pool and convolution of its first downsampling shortcut."""
    rng = np.random.default_rng(4)
    pool = nir.AvgPool2d(kernel_size=np.array([kernel, kernel]), stride=np.array([2, 2]),
                         padding=np.array([pool_padding, pool_padding]))
    out = (8 + 2 * pool_padding - kernel) // 2 + 1
    nodes, edges = chain(("c1", conv(rng.normal(size=(2, 3, 3, 3)), padding=1)),
                         ("s1", nir.Scale(scale=np.array([2.0, -0.5])[:, None, None] * np.ones((2, 8, 8)))),
                         ("pool", pool),
                         ("s2", nir.Scale(scale=np.array([1.5, 3.0])[:, None, None] * np.ones((2, out, out)))),
                         ("c2", conv(rng.normal(size=(4, 2, 1, 1)))), ("n", neuron((4, out, out))),
                         shape=(3, 8, 8), out=(4, out, out))
    return make_graph(nodes, edges)


def test_a_conv_an_unpadded_pool_and_an_unpadded_conv_compose_into_one_exact_kernel(monkeypatch):
    """The pool's 2x2 windows tile the first conv's output, and the 1x1 conv is unpadded: one
    4x4 kernel of stride 2 with the first conv's padding, equal to the chain on random inputs, and
    no relay even where the dense map is too large. A padded pool, or windows that do not tile
    the map, do not compose (the relay carries the first conv's output)."""
    graph = _conv_pool_conv()
    path = ("c1", "s1", "pool", "s2", "c2")
    monkeypatch.setattr(lower, "MAX_DENSE", 10)
    assert lower.composable(graph, path) and relays.insert(graph, CAPS) is graph
    fg = lower.lower_path(graph, lower.populations(graph), "input", "n", path)
    assert (fg.kind, fg.weights.shape, fg.stride, fg.padding) == ("conv", (4, 3, 4, 4), (2, 2), (1, 1))
    x = torch.from_numpy(np.random.default_rng(5).normal(size=(1, 3, 8, 8)))
    np.testing.assert_allclose(lower.apply_map(fg, fg.weights, x.reshape(-1).numpy(), (3, 8, 8)),
                               lower._push(graph, path, x).reshape(-1).numpy(), rtol=1e-12)
    for other in (_conv_pool_conv(pool_padding=1), _conv_pool_conv(kernel=3)):
        assert not lower.composable(other, path)
        assert relays.insert(other, CAPS).predecessors("s1") == ["c1.relay"]


def _ms_block(channels: int, stride: int):
    """An MS-ResNet block on a (2, 4, 4) input under the relay strategy: input -> sn1 -> conv1 ->
    sn2 -> conv2 -> stream (a relay join) <- down (1x1 conv, ``channels``, ``stride``) <- input."""
    rng = np.random.default_rng(0)
    size = 4 // stride
    nodes = {"input": nir.Input(input_type={"input": np.array([2, 4, 4])}), "sn1": neuron((2, 4, 4)),
             "conv1": conv(rng.normal(size=(channels, 2, 3, 3)), padding=1, stride=stride),
             "sn2": neuron((channels, size, size)), "conv2": conv(rng.normal(size=(channels, channels, 3, 3)), padding=1),
             "down": conv(rng.normal(size=(channels, 2, 1, 1)), stride=stride),
             "stream": nir.Scale(scale=np.ones((channels, size, size))), "n": neuron((channels, size, size)),
             "output": nir.Output(output_type={"output": np.array([channels, size, size])})}
    edges = [("input", "sn1"), ("sn1", "conv1"), ("conv1", "sn2"), ("sn2", "conv2"), ("conv2", "stream"),
             ("input", "down"), ("down", "stream"), ("stream", "n"), ("n", "output")]
    return shortcuts.apply(make_graph(nodes, edges), "relay")


def test_a_waiting_conv_gets_a_relay_when_cheaper_than_its_delay_line_and_its_synapses():
    """The downsample conv reaches the stream relay two hops before conv2. Its output (2, 2, 2), or
    (2, 4, 4) without striding, is smaller than the delay line of two copies of its source (2, 4,
    4). On Loihi 2 its 16 (64) explicit synapses take less of a core than those relay neurons, so
    it waits in synaptic delays, unrelayed; where a synapse costs as much as a neuron, it gets a
    relay, which the join reads one-to-one. With 4 channels at stride 1 (as large as the line) it
    never does; nor does conv2, the deepest addend."""
    graph = _ms_block(2, 2)
    assert relays.levels(graph)["down"] == 0 and relays.levels(graph)["conv2"] == 2
    assert relays.levels(graph)["stream"] == 3
    assert relays.insert(graph, CAPS) is graph
    dear = Capabilities(core_memory_bits=CAPS.core_neurons * CAPS.synapse_bits)
    relayed = relays.insert(graph, dear)
    assert relayed.predecessors("stream") == ["conv2", "down.relay"] and shortcuts.is_relay(relayed.nodes["down.relay"])
    assert "conv2.relay" not in relayed.nodes
    assert relays.insert(_ms_block(2, 1), dear).predecessors("stream") == ["conv2", "down.relay"]
    assert "down.relay" not in relays.insert(_ms_block(4, 1), dear).nodes


def test_a_global_pool_before_a_classifier_too_large_for_a_core_gets_a_relay():
    """pool (8, 4, 4) -> flatten -> fc (10 outputs): composed, the readout kernel has 10 * 128
    weights. It stays composed while a core holds them, and is relayed once it does not: the
    average becomes a sum pool into 8 relay neurons (window sums, integers on spikes) and a
    Scale of 1/16 after the relay, before the 10 x 8 dense map."""
    rng = np.random.default_rng(5)
    graph = make_graph(*chain(("pool", nir.AvgPool2d(kernel_size=np.array([4, 4]), stride=np.array([4, 4]),
                                                     padding=np.zeros(2, int))),
                              ("flat", nir.Flatten(input_type={"input": np.array([8, 1, 1])}, start_dim=0, end_dim=-1)),
                              ("fc", nir.Linear(weight=rng.normal(size=(10, 8)))), ("n", neuron(10)),
                              shape=(8, 4, 4), out=(10,)))
    assert relays.insert(graph, Capabilities(core_memory_bits=10 * 128 * 8, weight_bits=8)) is graph
    relayed = relays.insert(graph, Capabilities(core_memory_bits=10 * 128 * 8 - 1, weight_bits=8))
    assert relayed.successors("pool") == ["pool.relay"] and relayed.predecessors("flat") == ["pool.mean"]
    assert isinstance(relayed.nodes["pool"], nir.SumPool2d) and relayed.predecessors("pool.mean") == ["pool.relay"]
    np.testing.assert_array_equal(relayed.nodes["pool.mean"].scale, np.full((8, 1, 1), 1 / 16))
    assert lower.populations(relayed) == {"input": "input", "pool.relay": "pool.relay", "n": "n"}
    x = torch.from_numpy(rng.random((2, 8, 4, 4)))
    np.testing.assert_allclose(lower._push(relayed, ("pool", "pool.relay", "pool.mean", "flat", "fc"), x),
                               lower._push(graph, ("pool", "flat", "fc"), x), rtol=1e-12)
