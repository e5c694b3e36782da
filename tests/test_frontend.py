"""Front end: real fixtures load with the right structure; malformed files fail with one clear line."""

from __future__ import annotations

import h5py
import networkx as nx
import nir
import numpy as np
import pytest

import snn2chip
from snn2chip import ModelError
from tests.conftest import BRAILLE, FIXTURES, NORSE, SINABS, arr, chain, set_dataset


def test_every_fixture_loads():
    files = sorted(FIXTURES.glob("*.nir"))
    assert len(files) == 3
    for path in files:
        graph = snn2chip.load(path)
        assert graph.inputs and graph.outputs
        assert set(graph.out_shapes) == set(graph.nodes)


def test_sinabs_structure():
    graph = snn2chip.load(SINABS)
    assert list(graph.nodes) == ["input", *map(str, range(13)), "output"]  # file order is by name: 0, 1, 10, ...
    assert graph.out_shapes["input"] == (2, 34, 34)
    assert graph.out_shapes["0"] == (16, 16, 16)
    assert graph.out_shapes["4"] == (16, 8, 8)
    assert graph.out_shapes["8"] == (128,)
    assert graph.out_shapes["output"] == (10,)
    assert graph.joins == {} and graph.recurrent == frozenset()


def test_braille_recurrence_and_join():
    graph = snn2chip.load(BRAILLE)
    assert graph.recurrent == {("lif1.w_rec", "lif1.lif")}
    assert sorted(graph.joins["lif1.lif"]) == ["fc1", "lif1.w_rec"]
    order = list(graph.nodes)
    assert order.index("fc1") < order.index("lif1.lif") < order.index("lif1.w_rec")
    view = graph.to_networkx()
    assert view.edges["lif1.w_rec", "lif1.lif"]["recurrent"] is True
    assert view.nodes["lif1.lif"]["type"] == "CubaLIF" and view.nodes["lif1.lif"]["shape"] == (38,)
    forward = view.edge_subgraph([e for e in view.edges if not view.edges[e]["recurrent"]])
    assert nx.is_directed_acyclic_graph(forward)


def test_norse_single_neuron():
    graph = snn2chip.load(NORSE)
    assert [type(n).__name__ for n in graph.nodes.values()] == ["Input", "Affine", "LIF", "Output"]


def _block(prefix_shape=(4,)):
    """A subgraph with its own Input and Output around an Affine and an LIF."""
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array(prefix_shape)}),
            "fc": nir.Affine(weight=np.eye(4), bias=np.zeros(4)),
            "lif": nir.LIF(tau=arr(2, 2, 2, 2), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4)),
            "out": nir.Output(output_type={"output": np.array(prefix_shape)}),
        },
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")],
        type_check=False,
    )


def test_subgraphs_flatten_with_path_names(tmp_nir):
    outer = nir.NIRGraph(
        nodes={"input": _block().nodes["in"], "inner": _block(), "output": nir.Output(output_type={"output": np.array([4])})},
        edges=[("input", "inner"), ("inner", "output")],
        type_check=False,
    )
    path = tmp_nir(
        {"input": nir.Input(input_type={"input": np.array([4])}), "block1": _block(), "block2": outer,
         "output": nir.Output(output_type={"output": np.array([4])})},
        [("input", "block1"), ("block1", "block2"), ("block2.output", "output")],
    )
    graph = snn2chip.load(path)
    assert list(graph.nodes) == ["input", "block1.fc", "block1.lif", "block2.inner.fc", "block2.inner.lif", "output"]
    assert graph.edges == (
        ("block1.fc", "block1.lif"),
        ("block2.inner.fc", "block2.inner.lif"),
        ("input", "block1.fc"),
        ("block1.lif", "block2.inner.fc"),
        ("block2.inner.lif", "output"),
    )


def test_edge_naming_node_inside_subgraph(tmp_nir):
    path = tmp_nir(
        {"input": nir.Input(input_type={"input": np.array([4])}), "b": _block(),
         "output": nir.Output(output_type={"output": np.array([4])})},
        [("input", "b.fc"), ("b.lif", "output")],
    )
    graph = snn2chip.load(path)
    assert graph.predecessors("b.fc") == ["input"]
    assert graph.predecessors("output") == ["b.lif"]


def test_residual_join_is_found(tmp_nir):
    nodes, edges = chain(("a", nir.Affine(weight=np.eye(4), bias=np.zeros(4))), ("if", nir.IF(r=np.ones(4), v_threshold=np.ones(4))))
    edges.append(("input", "if"))
    graph = snn2chip.load(tmp_nir(nodes, edges))
    assert graph.joins == {"if": ["a", "input"]}


# --- errors: one line naming the file and the node -------------------------------------------------------------


def error_of(path) -> str:
    with pytest.raises(ModelError) as info:
        snn2chip.load(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))
    return message[len(str(path)) + 2 :]


def test_not_hdf5(tmp_path):
    path = tmp_path / "garbage.nir"
    path.write_text("this is not a model\n")
    assert error_of(path) == "not a NIR file: it is not HDF5 (NIR files are HDF5 written by nir.write)"


def test_hdf5_but_not_nir(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    assert error_of(path) == "not a NIR file: the HDF5 file has no 'node' group"


def test_missing_file(tmp_path):
    assert error_of(tmp_path / "absent.nir") == "no such file"


def test_unknown_node_type(tmp_nir):
    path = tmp_nir(*chain(("mystery", nir.Scale(scale=np.ones(4)))))
    set_dataset(path, "node/nodes/mystery/type", "Conv3d")
    assert error_of(path) == (
        "node 'mystery': unknown node type 'Conv3d' (NIR 1.0.8 defines Conv1d, Conv2d, Delay, Flatten, Input, "
        "NIRGraph, Output, Affine, Linear, Scale, CubaLI, CubaLIF, I, IF, LI, LIF, AvgPool2d, SumPool2d, Threshold)"
    )


def test_malformed_node(tmp_nir):
    path = tmp_nir(*chain(("fc", nir.Affine(weight=np.eye(4), bias=np.zeros(4)))))
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc/weight"]
    assert error_of(path) == "node 'fc': malformed Affine node: missing field 'weight'"


def test_edge_to_missing_node(tmp_nir):
    nodes, edges = chain(("fc", nir.Affine(weight=np.eye(4), bias=np.zeros(4))))
    edges.append(("fc", "ghost"))
    assert error_of(tmp_nir(nodes, edges)) == "edge (fc -> ghost) refers to node 'ghost', which does not exist"


def test_shapes_differ_at_join(tmp_nir):
    nodes, edges = chain(("a", nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))),
                         ("lif", nir.IF(r=np.ones(3), v_threshold=np.ones(3))), out=(3,))
    nodes["b"] = nir.Affine(weight=np.ones((5, 4)), bias=np.zeros(5))
    edges += [("input", "b"), ("b", "lif")]
    assert error_of(tmp_nir(nodes, edges)) == "node 'lif': inputs to this join have different shapes: a 3, b 5"


def test_shape_mismatch_on_edge(tmp_nir):
    path = tmp_nir(*chain(("fc", nir.Affine(weight=np.ones((3, 5)), bias=np.zeros(3))), out=(3,)))
    assert error_of(path) == "node 'fc': Affine weight 3x5 expects 5 inputs, receives 4"


def test_output_declares_other_shape(tmp_nir):
    path = tmp_nir(*chain(("fc", nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))), out=(7,)))
    assert error_of(path) == "node 'output': Output declares shape 7 but receives 3"


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "infinite")])
def test_non_finite_parameter(tmp_nir, bad, word):
    weight = np.eye(4)
    weight[1, 2] = bad
    path = tmp_nir(*chain(("fc", nir.Affine(weight=weight, bias=np.zeros(4)))))
    assert error_of(path) == "node 'fc': parameter 'weight' has 1 NaN or infinite value"


def test_non_positive_time_constant(tmp_nir):
    lif = nir.LIF(tau=arr(1, 0, 1, 1), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4))
    assert error_of(tmp_nir(*chain(("lif", lif)))) == "node 'lif': time constant 'tau' must be > 0 (smallest is 0)"


def test_unsupported_subtract_reset_with_reset_potential(tmp_nir):
    neuron = nir.IF(r=np.ones(4), v_threshold=np.ones(4), v_reset=np.full(4, 0.5), metadata={"reset": "subtract"})
    assert error_of(tmp_nir(*chain(("if", neuron)))) == (
        "node 'if': metadata reset='subtract' with non-zero v_reset is not supported: "
        "reset by subtraction removes v_threshold and has no reset potential"
    )


def test_unsupported_reset_mode(tmp_nir):
    neuron = nir.LIF(tau=np.ones(4), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4), metadata={"reset": "soft"})
    assert error_of(tmp_nir(*chain(("lif", neuron)))) == (
        "node 'lif': metadata reset='soft' is not supported: use one of value, subtract"
    )


def test_unsupported_reset_on_non_spiking_node(tmp_nir):
    neuron = nir.LI(tau=np.ones(4), r=np.ones(4), v_leak=np.zeros(4), metadata={"reset": "subtract"})
    assert error_of(tmp_nir(*chain(("li", neuron)))) == (
        "node 'li': metadata reset='subtract' is not supported on a LI node: only IF, LIF and CubaLIF spike and reset"
    )


def test_unsupported_same_padding_with_stride(tmp_nir):
    conv = nir.Conv2d(input_shape=(8, 8), weight=np.ones((2, 1, 3, 3)), stride=2, padding="same", dilation=1, groups=1,
                      bias=np.zeros(2))
    path = tmp_nir(*chain(("conv", conv), shape=(1, 8, 8), out=(2, 8, 8)))
    assert error_of(path) == (
        "node 'conv': Conv2d padding 'same' with stride other than 1 is not supported (its padding is not defined)"
    )


def test_unreachable_node(tmp_nir):
    nodes, edges = chain(("fc", nir.Affine(weight=np.eye(4), bias=np.zeros(4))))
    nodes["island"] = nir.Scale(scale=np.ones(4))
    edges.append(("island", "output"))
    assert error_of(tmp_nir(nodes, edges)) == (
        "node 'island': is not reachable from any Input node (every node needs a path from the network input)"
    )


def test_no_input_node(tmp_nir):
    path = tmp_nir({"fc": nir.Affine(weight=np.eye(4), bias=np.zeros(4)), "output": nir.Output(output_type={"output": np.array([4])})},
                   [("fc", "output")])
    assert error_of(path) == "the graph has no Input node"


def test_ambiguous_subgraph_edge(tmp_nir):
    block = _block()
    block.nodes["in2"] = nir.Input(input_type={"input": np.array([4])})
    block.edges.append(("in2", "fc"))
    path = tmp_nir({"input": nir.Input(input_type={"input": np.array([4])}), "b": block,
                    "output": nir.Output(output_type={"output": np.array([4])})},
                   [("input", "b"), ("b", "output")])
    assert error_of(path) == "edge (input -> b) names subgraph 'b', which has 2 Input nodes: name one of them as 'b.<node>'"


def test_parallel_edges_from_flattening_are_rejected(tmp_nir):
    passthrough = nir.NIRGraph(
        nodes={"in": nir.Input(input_type={"input": np.array([4])}), "out": nir.Output(output_type={"output": np.array([4])})},
        edges=[("in", "out")],
        type_check=False,
    )
    path = tmp_nir({"input": nir.Input(input_type={"input": np.array([4])}), "p": passthrough,
                    "output": nir.Output(output_type={"output": np.array([4])})},
                   [("input", "p"), ("p", "output"), ("input", "output")])
    assert error_of(path) == (
        "bypassing subgraph port 'p.out' gives a second edge (input -> output): "
        "parallel edges between two nodes are not supported"
    )
