"""snn2chip/passes/shortcuts.py: residual joins and their kinds (SEW ADD, AND, IAND, MS membrane
stream), and the relay strategy (which joins get a relay, shared and chained relays, the float
meaning unchanged)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from snn2chip.errors import ModelError
from snn2chip.frontend import reference
from snn2chip.frontend.graph import make_graph
from snn2chip.passes import shortcuts
from snn2chip.passes.shortcuts import RELAY_KEY, Join
from tests.conftest import chain

N = 3


def neuron(threshold: float = 1.0) -> nir.IF:
    return nir.IF(r=np.ones(N), v_threshold=np.full(N, threshold))


def linear(scale: float = 1.0) -> nir.Linear:
    return nir.Linear(weight=scale * np.eye(N))


def two_spiking_branches():
    """input -> fa -> a (IF) -> fs -> s (IF): nodes and edges without the output edge from s."""
    nodes, edges = chain(("fa", linear()), ("a", neuron()), ("fs", linear(0.5)), ("s", neuron(0.25)), shape=(N,))
    return nodes, [e for e in edges if e != ("s", "output")]


def sew_add():
    """SEW ADD: fc reads a + s (a spike join before a stateless node) -> n (IF) -> output."""
    nodes, edges = two_spiking_branches()
    nodes["fc"], nodes["n"] = linear(), neuron()
    return make_graph(nodes, edges + [("s", "fc"), ("a", "fc"), ("fc", "n"), ("n", "output")])


def sew_logic(kind: str):
    """SEW AND as Threshold(A + S > 1.5), IAND as Threshold(S - A > 0.5)."""
    nodes, edges = two_spiking_branches()
    nodes["g"] = nir.Threshold(threshold=np.full(N, 1.5 if kind == "and" else 0.5))
    edges += [("s", "g"), ("g", "output")]
    if kind == "and":
        edges.append(("a", "g"))
    else:
        nodes["neg"] = nir.Scale(scale=-np.ones(N))
        edges += [("a", "neg"), ("neg", "g")]
    return make_graph(nodes, edges)


def ms_block():
    """MS-ResNet: the stream x0 = stem(input) (identity Scale), the block adds conv(LIF(x0)) to it
    in the identity Scale x1 (a stream join), read by the next block's neuron."""
    nodes = {"input": nir.Input(input_type={"input": np.array([N])}), "stem": linear(0.5),
             "x0": nir.Scale(scale=np.ones(N)), "sn": nir.LIF(tau=np.full(N, 2.0), r=np.ones(N), v_leak=np.zeros(N),
                                                            v_threshold=np.full(N, 0.5)),
             "fc": linear(0.75), "x1": nir.Scale(scale=np.ones(N)), "sn2": neuron(0.5),
             "output": nir.Output(output_type={"output": np.array([N])})}
    edges = [("input", "stem"), ("stem", "x0"), ("x0", "sn"), ("sn", "fc"), ("fc", "x1"), ("x0", "x1"), ("x1", "sn2"),
             ("sn2", "output")]
    return make_graph(nodes, edges)


def test_joins_classify_sew_add_logic_and_ms_stream():
    assert shortcuts.joins(sew_add()) == [Join("fc", "spike", ("s", "a"))]
    assert shortcuts.joins(sew_logic("and")) == [Join("g", "logic", ("s", "a"))]
    assert shortcuts.joins(sew_logic("iand")) == [Join("g", "logic", ("s", "neg"))]
    assert shortcuts.joins(ms_block()) == [Join("x1", "stream", ("fc", "x0"))]


def test_a_join_of_a_spike_and_a_value_is_a_stream():
    nodes, edges = two_spiking_branches()
    nodes["fc"], nodes["n"] = linear(), neuron()
    graph = make_graph(nodes, edges + [("s", "fc"), ("input", "fc"), ("fc", "n"), ("n", "output")])
    assert shortcuts.joins(graph) == [Join("fc", "stream", ("s", "input"))]


def test_a_recurrent_edge_does_not_make_a_join():
    nodes, edges = chain(("fc", linear()), ("n", neuron()), ("rec", linear(0.5)), shape=(N,))
    graph = make_graph(nodes, edges + [("rec", "fc")])
    assert ("rec", "fc") in graph.recurrent and graph.predecessors("fc") == ["input", "rec"]
    assert shortcuts.joins(graph) == []


def test_is_relay_needs_a_marked_scale():
    assert shortcuts.is_relay(nir.Scale(scale=np.ones(N), metadata={RELAY_KEY: True}))
    assert not shortcuts.is_relay(nir.Scale(scale=np.ones(N)))
    assert not shortcuts.is_relay(nir.Scale(scale=np.ones(N), metadata={RELAY_KEY: False}))
    assert not shortcuts.is_relay(nir.Linear(weight=np.eye(N), metadata={RELAY_KEY: True}))


def test_relay_carries_a_spike_join_before_a_stateless_node():
    graph = shortcuts.insert_relays(sew_add())
    relay = graph.nodes["s.sum0"]
    assert shortcuts.is_relay(relay) and np.array_equal(relay.scale, np.ones(N))
    assert graph.predecessors("s.sum0") == ["s", "a"]
    assert graph.predecessors("fc") == ["s.sum0"]
    assert shortcuts.joins(graph) == [Join("s.sum0", "spike", ("s", "a"))]


def test_joins_with_the_same_addends_share_one_relay():
    nodes, edges = two_spiking_branches()
    nodes.update(fc=linear(), n=neuron(), fc2=linear(2.0), n2=neuron(), out2=nir.Output(output_type={"output": np.array([N])}))
    edges += [("s", "fc"), ("a", "fc"), ("fc", "n"), ("n", "output"),
              ("a", "fc2"), ("s", "fc2"), ("fc2", "n2"), ("n2", "out2")]
    graph = shortcuts.insert_relays(make_graph(nodes, edges))
    relays = [name for name, node in graph.nodes.items() if shortcuts.is_relay(node)]
    assert relays == ["s.sum0"]
    assert graph.predecessors("fc") == graph.predecessors("fc2") == ["s.sum0"]


def sew_stage():
    """A flattened SEW ADD stage: f1 reads a + b and feeds c (IF); f2 reads a + b + c."""
    nodes, edges = chain(("a", neuron()), ("fab", linear()), ("b", neuron()), shape=(N,))
    edges = [e for e in edges if e != ("b", "output")]
    nodes.update(f1=linear(0.5), c=neuron(0.5), f2=linear(), n2=neuron())
    edges += [("a", "f1"), ("b", "f1"), ("f1", "c"), ("a", "f2"), ("b", "f2"), ("c", "f2"), ("f2", "n2"),
              ("n2", "output")]
    return make_graph(nodes, edges)


def test_a_larger_sum_is_chained_on_the_earlier_smaller_relay():
    graph = shortcuts.insert_relays(sew_stage())
    assert graph.predecessors("a.sum0") == ["a", "b"]
    assert graph.predecessors("a.sum1") == ["a.sum0", "c"]  # sum1 = sum0 + c: O(1) sources per relay
    assert graph.predecessors("f1") == ["a.sum0"] and graph.predecessors("f2") == ["a.sum1"]


def test_joins_into_neurons_and_logic_joins_get_no_relay():
    nodes, edges = two_spiking_branches()
    nodes["n"] = neuron()
    plain = make_graph(nodes, edges + [("s", "n"), ("a", "n"), ("n", "output")])
    for graph in (plain, sew_logic("and"), sew_logic("iand")):
        relayed = shortcuts.insert_relays(graph)
        assert relayed.nodes.keys() == graph.nodes.keys() and set(relayed.edges) == set(graph.edges)


def test_the_ms_stream_node_itself_becomes_the_relay():
    graph = ms_block()
    relayed = shortcuts.insert_relays(graph)
    assert relayed.nodes.keys() == graph.nodes.keys() and set(relayed.edges) == set(graph.edges)
    assert shortcuts.is_relay(relayed.nodes["x1"]) and not shortcuts.is_relay(graph.nodes["x1"])
    assert not shortcuts.is_relay(relayed.nodes["x0"])  # one addend only: not a join


def test_relays_keep_the_float_meaning():
    x = (np.random.default_rng(0).random((4, 12, N)) < 0.6).astype(np.float64)
    for graph in (sew_add(), ms_block(), sew_stage()):
        relayed = shortcuts.apply(graph, "relay")
        before = reference.run(graph, x, record=["output"], dtype=torch.float64)["output"]
        after = reference.run(relayed, x, record=["output"], dtype=torch.float64)["output"]
        assert before.sum() > 0
        np.testing.assert_array_equal(after, before)


def test_apply_expand_keeps_the_graph_and_refuses_unknown_strategies():
    graph = sew_add()
    assert shortcuts.apply(graph, "expand") is graph
    with pytest.raises(ModelError) as e:
        shortcuts.apply(graph, "merge")
    assert e.value.problem == "unknown shortcut strategy 'merge' (known: expand, relay)"
