"""The model zoo (models/): exported NIR files against the PyTorch models they came from.

The PyTorch side is rebuilt from the committed trained state dicts (``models/zoo/<name>.pt``,
unfolded, with BatchNorm) and the ``config`` in ``zoo.json``, then BatchNorm-folded here with
``models.layers.fold_bn``. So the checks cover folding, export and the executor's semantics
together; nothing is retrained. "Identical" means bit-identical float32 arrays.
"""

from __future__ import annotations

import hashlib
import json

import h5py
import nir
import numpy as np
import pytest
import torch
from torch import nn

import snn2chip
from snn2chip.frontend import neurons as snn_neurons
from snn2chip.frontend import reference
from snn2chip.frontend.summary import summarize
from snn2chip.verify.data import random_spikes

from models import data, scale, zoo
from models.balance import TARGET_RATE
from models.export import Builder, ExportError, Value, export, strict_threshold
from models.layers import IFNode, Integrator, fold_bn
from models.ms_resnet import ms_resnet, ms_resnet_cifar, ms_resnet_small
from models.network import record
from models.sew_resnet import sew_resnet, sew_resnet_small
from models.spiking_resnet import spiking_resnet, spiking_resnet_small

from tests.conftest import randomise_bn

ZOO = zoo.ZOO_DIR
MANIFEST = json.loads((ZOO / zoo.MANIFEST).read_text())
SNNS = [name for name, entry in MANIFEST["models"].items() if entry["format"] == "nir"]
SPIKING_TYPES = (nir.IF, nir.LIF, nir.Threshold)


@pytest.fixture(autouse=True)
def _threads():
    # One thread: these networks are small, and with other jobs on the cores OpenMP's spinning
    # threads made runs several times slower (measured 1.2 s vs 7-13 s for one test).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _x_test() -> np.ndarray:
    return np.array(data.test_set()[0])


def counterparts(graph: snn2chip.Graph, model: nn.Module) -> dict[str, str]:
    """NIR node -> PyTorch module path computing the same tensor.

    Nodes are named by module path; ``<block>.stream`` (MS-ResNet) is the block's output. Nodes
    without a module are the ports and the helper nodes ``<connect>.neg`` and ``<maxpool>.sum``.
    """
    modules = dict(model.named_modules())
    pairs = {}
    for name, node in graph.nodes.items():
        if name in modules:
            pairs[name] = name
        elif name.endswith(".stream") and name[: -len(".stream")] in modules:
            pairs[name] = name[: -len(".stream")]
        else:
            assert isinstance(node, (nir.Input, nir.Output, nir.Scale, nir.SumPool2d)), f"node {name} has no module"
    return pairs


def assert_identical(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    assert ours.shape == theirs.shape, f"{what}: shapes {ours.shape} vs {theirs.shape}"
    differ = np.argwhere(ours != theirs)
    if len(differ):
        first = tuple(differ[0])
        pytest.fail(f"{what}: {len(differ)} of {ours.size} values differ; first at {first}: {ours[first]} vs {theirs[first]}")


def compare_all(graph: snn2chip.Graph, folded, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run PyTorch (single-step) and the executor on ``x``; every node with a module counterpart is
    asserted identical at every step. Returns the executor's outputs."""
    pairs = counterparts(graph, folded)
    torch_out = record(folded, x, sorted(set(pairs.values())))
    nir_out = snn2chip.run(graph, x, steps=folded.steps, record=list(pairs))
    for node, module in pairs.items():
        assert_identical(nir_out[node], torch_out[module], f"node {node} vs module {module}")
    return nir_out


# --- conventions ----------------------------------------------------------------------------------


def test_strict_threshold_turns_nir_strict_threshold_into_v_ge_theta_in_float32():
    t = strict_threshold(1.0)
    assert t.dtype == np.float32 and t < 1 and np.nextafter(t, np.float32(2)) == np.float32(1)
    near = np.float32(1) + np.arange(-200, 201, dtype=np.float32) * np.finfo(np.float32).eps / 2
    rng = np.random.default_rng(0)
    v = np.concatenate([near, rng.uniform(-3, 3, 10_000).astype(np.float32), np.float32([0.99999994, 1.0, 1.0000001])])
    assert np.array_equal(v > t, v >= np.float32(1))
    # Why it must be stored as float32: a float64 threshold just below 1 becomes 1 in float32.
    assert np.float32(np.float64(1) - 1e-9) == np.float32(1)
    assert strict_threshold(0.5) == np.nextafter(np.float32(0.5), np.float32(0))


def test_zoo_if_thresholds_are_stored_as_float32_just_below_one():
    with h5py.File(ZOO / "sew_add.nir") as f:
        dataset = f["node/nodes/sn1/v_threshold"]
        assert dataset.dtype == np.float32
        assert np.all(dataset[()] == strict_threshold(1.0))


def test_ms_neuron_discretises_to_decay_quarter_and_unit_gain_exactly():
    graph = snn2chip.load(ZOO / "ms_resnet.nir")
    lifs = [name for name, node in graph.nodes.items() if isinstance(node, nir.LIF)]
    assert lifs
    for name in lifs:
        p = snn_neurons.discretise(graph.nodes[name], 1.0, name)
        assert np.all(p.decay.astype(np.float32) == np.float32(0.25))
        assert np.all(p.gain.astype(np.float32) == np.float32(1.0))
        assert np.all(p.lam_v_leak == 0) and np.all(p.v_threshold == 0.5) and np.all(p.v_reset == 0)
        assert not p.subtract


# --- the manifest -----------------------------------------------------------------------------------


def test_manifest_lists_every_model_with_its_facts():
    models = MANIFEST["models"]
    assert set(models) == {"sew_add", "sew_and", "sew_iand", "ms_resnet", "spiking_resnet", "resnet_ann"}
    for name, entry in models.items():
        assert (ZOO / entry["file"]).is_file() and (ZOO / entry["weights"]).is_file(), name
        assert entry["input_shape"] == [1, 8, 8] and entry["test_samples"] == 450
        assert entry["family"] and entry["readout"]
        if entry["format"] == "nir":
            assert entry["dt"] == 1.0 and entry["time_steps"] >= 4 and entry["readout"] == zoo.READOUT_RULE
            graph = snn2chip.load(ZOO / entry["file"])
            assert graph.metadata["dt"] == 1.0 and graph.metadata["time_steps"] == entry["time_steps"]
            assert entry["executor_test_accuracy"] >= 0.9, f"{name} is below 90 % test accuracy"
        else:
            assert entry["onnxruntime_test_accuracy"] >= 0.9
    size = sum(p.stat().st_size for p in ZOO.iterdir() if p.is_file())
    assert size < 10 * 2**20, f"the zoo holds {size:,} bytes"


def test_split_is_the_documented_one():
    x_train, y_train = data.train_set()
    x_test, y_test = data.test_set()
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)
    assert x_train.dtype == np.float32 and x_train.min() == 0 and x_train.max() == 1
    assert np.array_equal(np.bincount(y_test), [45, 46, 44, 46, 45, 46, 45, 45, 43, 45])  # stratified
    digest = hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in (x_train, y_train, x_test, y_test)))
    assert digest.hexdigest() == data.split_digest() == MANIFEST["split_sha256"]


def test_calibration_set_is_training_images_only():
    calib = np.load(ZOO / zoo.CALIBRATION)
    assert calib.shape == (64, 1, 8, 8) and calib.dtype == np.float32
    train = {row.tobytes() for row in data.train_set()[0]}
    assert all(row.tobytes() in train for row in calib)
    assert np.array_equal(calib, data.calibration_images(64))


# --- PyTorch vs NIR on the whole test split -----------------------------------------------------------


@pytest.mark.parametrize("name", SNNS)
def test_executor_reproduces_the_folded_pytorch_model_on_the_whole_test_split(name):
    entry = MANIFEST["models"][name]
    graph = snn2chip.load(ZOO / entry["file"])
    folded = fold_bn(zoo.load_model(name))
    x, y = _x_test(), data.test_set()[1]
    out = compare_all(graph, folded, x)  # every node with a module: identical at every step

    spiking = [n for n, node in graph.nodes.items() if isinstance(node, SPIKING_TYPES)]
    assert spiking and set(spiking) <= set(counterparts(graph, folded))
    for node in spiking:  # not vacuous: every spiking layer fires, none saturates
        rate = out[node].mean()
        assert 0.001 < rate < 0.9, f"{node} fires at rate {rate:.4f}"
    predictions = out["readout"][:, -1].argmax(axis=1)
    assert np.mean(predictions == y) == entry["executor_test_accuracy"] == entry["pytorch_test_accuracy"]
    # The unfolded model (BatchNorm in eval mode) is close but computes in a different order.
    assert abs(entry["pytorch_unfolded_test_accuracy"] - entry["pytorch_test_accuracy"]) <= 0.01


@pytest.mark.parametrize("name", SNNS)
def test_committed_nir_file_is_what_the_exporter_writes_from_the_committed_weights(name, tmp_path):
    entry = MANIFEST["models"][name]
    committed = snn2chip.load(ZOO / entry["file"])
    folded = fold_bn(zoo.load_model(name))
    export(folded, tmp_path / "again.nir", metadata={k: committed.metadata[k] for k in committed.metadata if k != "dt"})
    again = snn2chip.load(tmp_path / "again.nir")
    assert list(again.nodes) == list(committed.nodes) and again.edges == committed.edges
    assert dict(again.metadata) == dict(committed.metadata)
    for node_name, node in committed.nodes.items():
        other = again.nodes[node_name]
        assert type(other) is type(node)
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(getattr(other, field), value) and getattr(other, field).dtype == value.dtype, (node_name, field)


@pytest.mark.parametrize("name", SNNS)
def test_zoo_files_are_valid_for_nir_itself(name):
    graph = nir.read(ZOO / MANIFEST["models"][name]["file"])  # NIR's reader with its type check
    assert "input" in graph.nodes and "output" in graph.nodes


def test_ms_resnet_stream_nodes_and_flattened_form_give_identical_outputs(tmp_path):
    folded = fold_bn(zoo.load_model("ms_resnet"))
    stream = snn2chip.load(ZOO / "ms_resnet.nir")
    export(folded, tmp_path / "flat.nir", residual_nodes=False)
    flat = snn2chip.load(tmp_path / "flat.nir")
    # Structure: the stream form keeps fan-in <= 2; the flattened one grows with the blocks of a stage.
    assert max(map(len, stream.joins.values())) == 2
    assert {n for n in stream.nodes if n.endswith(".stream")} == {f"layer{s}.{b}.stream" for s in (1, 2) for b in (0, 1)}
    assert not any(n.endswith(".stream") for n in flat.nodes)
    assert flat.joins["sn_out"] == ["layer2.0.downsample.0", "layer2.0.conv2", "layer2.1.conv2"]
    assert flat.joins["layer1.1.sn1"] == ["conv1.0", "layer1.0.conv2"]
    x = _x_test()
    common = [n for n in flat.nodes if n not in ("input", "output")]
    a = snn2chip.run(stream, x, steps=folded.steps, record=common)
    b = snn2chip.run(flat, x, steps=folded.steps, record=common)
    for node in common:
        assert_identical(b[node], a[node], node)


def test_sew_add_with_identity_nodes_gives_identical_outputs(tmp_path):
    folded = fold_bn(zoo.load_model("sew_add"))
    flat = snn2chip.load(ZOO / "sew_add.nir")
    export(folded, tmp_path / "nodes.nir", residual_nodes=True)
    with_nodes = snn2chip.load(tmp_path / "nodes.nir")
    assert flat.joins["avgpool"] == ["layer2.0.downsample_sn", "layer2.0.sn2", "layer2.1.sn2"]  # k+1 spike streams
    assert with_nodes.joins["layer2.1.connect"] == ["layer2.0.connect", "layer2.1.sn2"]
    x = _x_test()
    compare_all(with_nodes, folded, x)  # the connect nodes equal the PyTorch sums A + S
    common = [n for n in flat.nodes if n not in ("input", "output")]
    a = snn2chip.run(flat, x, steps=folded.steps, record=common)
    b = snn2chip.run(with_nodes, x, steps=folded.steps, record=common)
    for node in common:
        assert_identical(b[node], a[node], node)


# --- the ANN ----------------------------------------------------------------------------------------------


def test_onnx_ann_accuracy_and_predictions():
    import onnx

    entry = MANIFEST["models"]["resnet_ann"]
    path = ZOO / entry["file"]
    onnx.checker.check_model(onnx.load(path))
    x, y = _x_test(), data.test_set()[1]
    predictions = zoo.onnx_predictions(path, x)
    assert np.mean(predictions == y) == entry["onnxruntime_test_accuracy"]
    model = zoo.load_model("resnet_ann")
    with torch.no_grad():
        logits = model(torch.as_tensor(x)).numpy()
    assert np.array_equal(predictions, logits.argmax(axis=1))
    assert np.mean(logits.argmax(axis=1) == y) == entry["pytorch_unfolded_test_accuracy"]
    folded = fold_bn(model)
    with torch.no_grad():
        assert np.mean(folded(torch.as_tensor(x)).numpy().argmax(axis=1) == y) == entry["pytorch_test_accuracy"]


# --- nirtorch as a peer exporter ----------------------------------------------------------------------------


class _OneStep(nn.Module):
    """One time step of a zoo network as ``forward`` (what nirtorch traces)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.step(x)


def nirtorch_export(folded) -> nir.NIRGraph:
    """``nirtorch.torch_to_nir`` of a folded SEW network, with the mappings nirtorch lacks.

    nirtorch 2.6's ``torch_to_nir`` maps only ``nn.Linear`` by itself; the caller supplies Conv2d
    (with the spatial ``input_shape`` NIR needs, taken from a forward pass), the IF neuron, the
    readout integrator, AvgPool2d and Flatten (NIR's dims exclude the batch axis). BatchNorm must
    be folded first. The ADD (``s + a``) is traced by torch.fx and bypassed: each addend gets an
    edge into each consumer.
    """
    import nirtorch

    shapes: dict[nn.Module, tuple] = {}
    leaves = [m for m in folded.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.__setitem__(m, tuple(i[0].shape[1:]))) for m in leaves]
    record(folded, _x_test()[:1], [])
    for h in hooks:
        h.remove()

    def conv(m: nn.Conv2d):
        return nir.Conv2d(input_shape=np.array(shapes[m][1:]), weight=m.weight.detach().numpy(), stride=np.array(m.stride),
                          padding=np.array(m.padding), dilation=np.array(m.dilation), groups=m.groups,
                          bias=m.bias.detach().numpy())

    def if_node(m: IFNode):
        shape = shapes[m]
        return nir.IF(r=np.ones(shape, np.float32), v_threshold=np.full(shape, strict_threshold(1.0), np.float32),
                      v_reset=np.zeros(shape, np.float32))

    module_map = {
        nn.Conv2d: conv,
        IFNode: if_node,
        Integrator: lambda m: nir.I(r=np.ones(shapes[m], np.float32)),
        nn.AvgPool2d: lambda m: nir.AvgPool2d(kernel_size=np.array([m.kernel_size] * 2), stride=np.array([m.stride] * 2),
                                              padding=np.array([0, 0])),
        nn.Flatten: lambda m: nir.Flatten(input_type={"input": np.array(shapes[m])}, start_dim=0, end_dim=-1),
    }
    return nirtorch.torch_to_nir(_OneStep(folded), module_map)


def test_nirtorch_export_of_sew_add_matches_the_projects_export(tmp_path):
    folded = fold_bn(zoo.load_model("sew_add"))
    nir.write(tmp_path / "nirtorch.nir", nirtorch_export(folded))
    theirs = snn2chip.load(tmp_path / "nirtorch.nir")
    ours = snn2chip.load(ZOO / "sew_add.nir")

    # Differences: names (fx's "net_" + path with "_"; input "x"), no metadata (so no dt: the
    # executor's default dt = 1 applies). The joins are the same flattened ADD edges.
    def rename(n):
        return {"input": "x", "output": "output"}.get(n, "net_" + n.replace(".", "_"))

    assert sorted(theirs.nodes) == sorted(map(rename, ours.nodes))
    assert set(theirs.edges) == {(rename(a), rename(b)) for a, b in ours.edges}
    assert {k: sorted(v) for k, v in theirs.joins.items()} == {rename(k): sorted(map(rename, v)) for k, v in ours.joins.items()}
    assert dict(theirs.metadata) == {} and ours.metadata["dt"] == 1.0
    for name, node in ours.nodes.items():
        other = theirs.nodes[rename(name)]
        assert type(other) is type(node), name
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray) and field not in ("input_type", "output_type"):
                assert np.array_equal(np.asarray(getattr(other, field)), value), (name, field)

    x = _x_test()
    watched = [n for n, node in ours.nodes.items() if isinstance(node, (nir.IF, nir.I))]
    a = snn2chip.run(ours, x, steps=folded.steps, record=watched)
    b = snn2chip.run(theirs, x, steps=folded.steps, record=[rename(n) for n in watched])
    for node in watched:
        assert_identical(b[rename(node)], a[node], node)


@pytest.mark.parametrize("connect", ["AND", "IAND"])
def test_nirtorch_cannot_export_sew_and_or_iand(connect):
    # s * a and s * (1 - a) are fx multiplications/subtractions; nirtorch 2.6 traces only additions.
    with pytest.raises(ValueError, match="The only supported function is addition"):
        nirtorch_export(fold_bn(sew_resnet_small(connect, 2)))


# --- generality: every family and layout exports exactly (random weights, tiny widths) --------------------


LAYOUT_CASES = {
    "sew_resnet18_and": lambda: sew_resnet(18, "AND", 2, input_size=32, num_classes=10, in_channels=1, width=4),
    "sew_resnet50_iand": lambda: sew_resnet(50, "IAND", 2, input_size=32, num_classes=10, in_channels=1, width=4),
    "sew_resnet50_add": lambda: sew_resnet(50, "ADD", 2, input_size=32, num_classes=10, in_channels=1, width=4),
    "sew_small_bottleneck_add": lambda: sew_resnet_small("ADD", 3, layers=(1, 2, 1), widths=(4, 8, 8), block="bottleneck"),
    "ms_resnet18": lambda: ms_resnet(18, 3, input_size=64, num_classes=10, in_channels=1, width=4),
    "ms_resnet104": lambda: ms_resnet(104, 2, input_size=32, num_classes=10, in_channels=1, width=2),
    "ms_resnet_cifar20": lambda: ms_resnet_cifar(3, 2, input_size=16, in_channels=1, widths=(4, 8, 8)),
    "spiking_resnet50": lambda: spiking_resnet(50, 2, input_size=32, num_classes=10, in_channels=1, width=4),
    "spiking_resnet18": lambda: spiking_resnet(18, 3, input_size=32, num_classes=10, in_channels=1, width=4),
}


@pytest.mark.parametrize("case", sorted(LAYOUT_CASES))
def test_every_layout_exports_exactly(case, tmp_path):
    torch.manual_seed(0)
    model = LAYOUT_CASES[case]()
    randomise_bn(model, 1)
    folded = fold_bn(model)
    export(folded, tmp_path / "model.nir")
    graph = snn2chip.load(tmp_path / "model.nir")
    size = folded.input_shape[1]
    x = torch.rand((6, 1, size, size), generator=torch.Generator().manual_seed(2)).numpy() * 2
    out = compare_all(graph, folded, x)
    spiking = [n for n, node in graph.nodes.items() if isinstance(node, SPIKING_TYPES)]
    assert sum(out[n].sum() > 0 for n in spiking) >= len(spiking) // 2, "most spiking layers should fire"


# --- refusals -----------------------------------------------------------------------------------------------


def test_unfolded_batchnorm_is_refused_with_its_name():
    with pytest.raises(ExportError, match=r"module 'conv1' \(ConvBN\): BatchNorm is not folded"):
        export(sew_resnet_small("ADD", 2))


def test_unsupported_module_is_refused_with_its_name():
    folded = fold_bn(spiking_resnet_small(2))
    folded.layer1[0].sn1 = nn.ReLU()
    with pytest.raises(ExportError, match=r"module 'layer1\.0\.sn1' \(ReLU\) has no NIR equivalent"):
        export(folded)


def test_module_the_export_does_not_reach_is_refused_with_its_name():
    folded = fold_bn(ms_resnet_small(2))
    folded.layer2[1].extra = nn.Linear(3, 3)
    with pytest.raises(ExportError, match=r"module 'layer2\.1\.extra' \(Linear\) is not part of the export"):
        export(folded)


def test_maxpool_and_logic_connects_are_refused_on_non_spikes():
    builder = Builder(nn.Sequential(nn.MaxPool2d(2)), residual_nodes=False)
    x = builder.input((1, 4, 4))
    with pytest.raises(ExportError, match=r"module '0' \(MaxPool2d\): max pooling is exported only on spikes"):
        builder.module("0", x)
    and_net = fold_bn(sew_resnet_small("AND", 2))
    b = Builder(and_net, residual_nodes=False)
    real = b.input((16, 8, 8))
    with pytest.raises(ExportError, match=r"module 'layer1\.0\.connect' \(Connect AND\): A and S must both be spikes"):
        and_net.layer1[0].connect.export(b, "layer1.0.connect", real, Value(("input",), (16, 8, 8), True))


# --- scale generators -----------------------------------------------------------------------------------------


def _types(report) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in report["nodes"]:
        counts[row["type"]] = counts.get(row["type"], 0) + 1
    return counts


@pytest.mark.slow
def test_scale_generator_builds_the_482_layer_ms_resnet(tmp_path):
    stats = scale.generate("ms_resnet482", tmp_path / "ms482.nir")
    report = summarize(snn2chip.load(stats["path"]))
    types = _types(report)
    # 6n+2 = 482 weight layers: stem conv + 2 convs in each of 240 blocks + fc; plus 2 downsample convs.
    assert types["Conv2d"] == 1 + 2 * 240 + 2 and types["Affine"] == 1
    assert types["LIF"] == 2 * 240 + 1 and types["Scale"] == 240  # one stream node per block
    assert max(len(j["inputs"]) for j in report["joins"]) == 2
    assert report["totals"]["neurons"] == 4_603_914 and report["dt"] == 1.0
    assert stats["parameters"] == 7_740_074


def test_scale_generator_builds_the_152_layer_sew_resnet(tmp_path):
    # Full width is 60 M weights (233 MB, `make scale`); width 8 builds the same graph with 1/64 of them.
    stats = scale.generate("sew_resnet152", tmp_path / "sew152.nir", width=8)
    report = summarize(snn2chip.load(stats["path"]))
    types = _types(report)
    assert types["Conv2d"] == 1 + 3 * 50 + 4 and types["Affine"] == 1  # 151 + fc = 152 layers, + 4 downsample
    assert types["IF"] == 1 + 3 * 50 + 4 and types["Threshold"] == 1 and types["SumPool2d"] == 1  # maxpool on spikes
    assert report["totals"]["nodes"] == 318 and report["totals"]["edges"] == 1078
    assert max(len(j["inputs"]) for j in report["joins"]) == 37  # ADD: 36 identity blocks + downsample in stage 3
    assert report["nodes"][-2]["name"] == "readout" and report["nodes"][-2]["output_shape"] == [1000]


def _float_rates(path) -> list[float]:
    """Firing rate of every spiking layer of the NIR file on the random inputs of ``verify --data random:2``."""
    graph = snn2chip.load(path)
    spiking = [n for n, node in graph.nodes.items() if isinstance(node, (nir.IF, nir.LIF))]
    out = reference.run(graph, random_spikes(2, graph.out_shapes[graph.inputs[0]]), scale.STEPS, record=spiking)
    return [float(out[n].mean()) for n in spiking]


@pytest.mark.parametrize("name", ["sew_resnet18_32", "ms_resnet18_32"])
def test_balanced_scale_models_fire_at_the_target_rate(tmp_path, name):
    stats = scale.generate(name, tmp_path / "balanced.nir", width=4)
    rates = _float_rates(stats["path"])
    assert stats["balanced_layers"] == len(rates) == {"sew_resnet18_32": 20, "ms_resnet18_32": 17}[name]
    assert all(abs(r - TARGET_RATE) < 0.01 for r in rates), rates
    unbalanced = _float_rates(scale.generate(name, tmp_path / "raw.nir", width=4, balanced=False)["path"])
    assert any(abs(r - TARGET_RATE) > 0.05 for r in unbalanced), unbalanced  # why balancing exists


def test_streaming_writer_writes_what_nir_write_writes(tmp_path):
    model = scale.build_meta("sew_resnet50", width=2)  # bottlenecks, maxpool, random weights
    streamed = export(model, tmp_path / "streamed.nir", rng=np.random.default_rng(3), stream=True)
    in_memory = export(model, None, rng=np.random.default_rng(3))
    nir.write(tmp_path / "nir_write.nir", in_memory)
    a, b = nir.read(streamed), nir.read(tmp_path / "nir_write.nir")
    assert a.edges == b.edges and a.metadata == b.metadata and list(a.nodes) == list(b.nodes)
    for name, node in b.nodes.items():
        for field, value in vars(node).items():
            if isinstance(value, np.ndarray):
                assert np.array_equal(getattr(a.nodes[name], field), value), (name, field)
