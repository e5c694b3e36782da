"""ANN→SNN conversion (snn2chip.convert, ``snn2chip convert``): structure, exact scaling factors,
accuracy of the converted zoo ANN, a torch.onnx-exported ResNet with max pooling, errors, CLI."""

from __future__ import annotations

import sys
from pathlib import Path

import nir
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from snn2chip import compiler, convert, frontend
from snn2chip.verify import fidelity
from snn2chip.frontend import reference
from snn2chip.backends import simulator
from snn2chip.cli import main
from snn2chip.convert.emit import IF_THRESHOLD
from snn2chip.errors import ModelError
from snn2chip.passes.quantize import Options

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models.data import test_set as digits_test_set  # noqa: E402

ZOO_ANN = ROOT / "models" / "zoo" / "resnet_ann.onnx"
ZOO_CALIB = ROOT / "models" / "zoo" / "resnet_ann_calib.npy"


class Block(nn.Module):
    """A torchvision-style basic block: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x))."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.down is None else self.down(x)))


class SmallResNet(nn.Module):
    """Stem conv-BN-ReLU-MaxPool(3, 2, 1), an identity and a projection block, global average pool,
    dropout, linear: the operators of torchvision's ResNets at a small size."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.layer1, self.layer2 = Block(8, 8, 1), Block(8, 16, 2)
        self.pool, self.drop, self.fc = nn.AdaptiveAvgPool2d(1), nn.Dropout(0.5), nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.drop(torch.flatten(self.pool(self.layer2(self.layer1(self.stem(x)))), 1)))


def export(model: nn.Module, x: torch.Tensor, path: Path, **kwargs) -> Path:
    torch.onnx.export(model.eval(), x[:1], str(path), input_names=["x"], output_names=["y"], opset_version=17,
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, **kwargs)
    return path


@pytest.fixture(scope="module")
def small_resnet(tmp_path_factory):
    """A SmallResNet with non-trivial batch-norm statistics, exported with BatchNormalization
    nodes kept (``do_constant_folding=False``), its inputs and the model."""
    torch.manual_seed(0)
    model = SmallResNet()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.rand(40, 3, 16, 16)
    path = export(model, x, tmp_path_factory.mktemp("onnx") / "small_resnet.onnx", do_constant_folding=False)
    assert "BatchNormalization" in {n.op_type for n in onnx.load(str(path)).graph.node}
    return path, x, model


@pytest.fixture(scope="module")
def zoo():
    return convert.convert(ZOO_ANN, np.load(ZOO_CALIB))


def test_zoo_ann_structure(zoo):
    nodes = zoo.graph.nodes
    kinds = [type(n).__name__ for n in nodes.values()]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "Input": 1, "Conv2d": 10, "IF": 9, "Scale": 3, "AvgPool2d": 1, "Flatten": 1, "Affine": 1, "I": 1, "Output": 1}
    for node in nodes.values():
        if isinstance(node, nir.IF):
            assert node.metadata == {"reset": "subtract"}
            assert np.all(node.v_threshold == IF_THRESHOLD) and np.all(node.r == 1) and np.all(node.v_reset == 0)
    # an identity block: the last neuron sums conv2 and the scaled shortcut of the block's input
    preds = {src for src, dst in zoo.graph.edges if dst == "layer1.layer1.0.relu2.Relu"}
    assert preds == {"layer1.layer1.0.conv2.conv.Conv", "layer1.layer1.0.relu2.Relu.shortcut"}
    assert ("relu1.Relu", "layer1.layer1.0.relu2.Relu.shortcut") in zoo.graph.edges
    # a projection block: conv2 and the downsample convolution, no Scale
    preds = {src for src, dst in zoo.graph.edges if dst == "layer2.layer2.0.relu2.Relu"}
    assert preds == {"layer2.layer2.0.conv2.conv.Conv", "layer2.layer2.0.downsample.conv.Conv"}
    assert ("fc.Gemm", "readout") in zoo.graph.edges and ("readout", "output") in zoo.graph.edges


def test_zoo_ann_float_accuracy(zoo):
    x, y = (np.asarray(a) for a in digits_test_set())
    x, y = x[:150], y[:150]
    out = reference.run(convert.graph_of(zoo), x, 64, record=["readout"])["readout"]
    ann = convert.ann_logits(ZOO_ANN, x).argmax(1)
    snn = out[:, -1].argmax(1)
    assert (ann == y).mean() >= 0.98
    assert (snn == y).mean() >= (ann == y).mean() - 0.01  # within one point at T = 64
    assert (snn == ann).mean() >= 0.98
    early = out[:, 7].argmax(1)  # T = 8 is far too short without compensation (README table)
    assert (early == y).mean() < 0.5


def _activations(model: SmallResNet, x: torch.Tensor) -> dict[str, np.ndarray]:
    """The ReLU outputs and logits of SmallResNet, computed by torch (the values λ comes from)."""
    with torch.no_grad():
        s = model.stem[2](model.stem[1](model.stem[0](x)))
        acts = {"stem": s}
        h = model.stem[3](s)
        for name in ("layer1", "layer2"):
            block = getattr(model, name)
            acts[f"{name}.relu1"] = torch.relu(block.bn1(block.conv1(h)))
            h = block(h)
            acts[f"{name}.relu2"] = h
        acts["fc"] = model(x)
    return {k: v.numpy().astype(np.float64) for k, v in acts.items()}


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    factor = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().double().numpy()
    w = conv.weight.detach().double().numpy() * factor[:, None, None, None]
    return w, (bn.bias.detach().double().numpy() - bn.running_mean.double().numpy() * factor)


def test_scaling_factors_follow_the_s_resnet_rules(small_resnet):
    path, x, model = small_resnet
    calib = x[:32].numpy()
    result = convert.convert(path, calib, compensation=1.1)
    lam = {k: np.percentile(v, 99.9) for k, v in _activations(model, x[:32]).items()}
    nodes = {name: node for name, node in result.graph.nodes.items()}
    convs = sorted(n for n, node in nodes.items() if isinstance(node, nir.Conv2d) and "MaxPool" not in n)
    ifs = sorted(n for n, node in nodes.items() if isinstance(node, nir.IF) and "MaxPool" not in n)
    assert len(convs) == 6 and len(ifs) == 5  # stem, 2 + 2 block convs, the projection; 5 ReLUs
    report = {entry["node"]: entry for entry in result.report["layers"]}
    for name, want in zip(ifs, ("layer1.relu1", "layer1.relu2", "layer2.relu1", "layer2.relu2", "stem")):
        assert report[name]["lambda"] == pytest.approx(lam[want], rel=1e-5), name
    c = 1.1
    b1, b2 = model.layer1, model.layer2
    expected = {  # conv (module, bn) -> (λ_in, λ_out); max pooling keeps the stem's λ
        0: ((model.stem[0], model.stem[1]), 1.0, lam["stem"]),
        1: ((b1.conv1, b1.bn1), lam["stem"], lam["layer1.relu1"]),
        2: ((b1.conv2, b1.bn2), lam["layer1.relu1"], lam["layer1.relu2"]),
        3: ((b2.conv1, b2.bn1), lam["layer1.relu2"], lam["layer2.relu1"]),
        4: ((b2.conv2, b2.bn2), lam["layer2.relu1"], lam["layer2.relu2"]),
        5: ((b2.down[0], b2.down[1]), lam["layer1.relu2"], lam["layer2.relu2"]),
    }
    order = [n for n in result.graph.nodes if isinstance(nodes[n], nir.Conv2d) and "MaxPool" not in n]
    for i, ((conv, bn), lam_in, lam_out) in expected.items():
        w, b = _fold(conv, bn)
        node = nodes[order[i]]
        np.testing.assert_allclose(node.weight, w * lam_in / lam_out * c, rtol=2e-5, atol=1e-6, err_msg=order[i])
        np.testing.assert_allclose(node.bias, b / lam_out, rtol=2e-5, atol=1e-6, err_msg=order[i])
    # the identity shortcut of layer1: Scale(λ_in/λ_out · c) from the max-pooled stem's spikes
    shortcut = [n for n in nodes if n.endswith(".shortcut")]
    assert len(shortcut) == 1
    np.testing.assert_allclose(nodes[shortcut[0]].scale, lam["stem"] / lam["layer1.relu2"] * c, rtol=1e-5)
    fc = next(node for node in nodes.values() if isinstance(node, nir.Affine))
    np.testing.assert_allclose(fc.weight, model.fc.weight.detach().numpy() * lam["layer2.relu2"] / lam["fc"] * c, rtol=2e-5)
    np.testing.assert_allclose(fc.bias, model.fc.bias.detach().numpy() / lam["fc"], rtol=2e-5)
    # without shortcut normalisation the identity shortcut is a plain edge
    plain = convert.convert(path, calib, shortcut_norm=False)
    assert not [n for n in plain.graph.nodes if n.endswith(".shortcut")]


def test_exported_resnet_with_max_pooling_converges_to_the_ann(small_resnet):
    path, x, model = small_resnet
    result = convert.convert(path, x[:32].numpy())
    lam_out = next(e for e in result.report["layers"] if e["kind"] == "gemm")["lambda_out"]
    test = x[32:].numpy()
    with torch.no_grad():
        ann = model(x[32:]).numpy()
    steps = 256
    snn = reference.run(convert.graph_of(result), test, steps, record=["readout"])["readout"][:, -1] * lam_out / steps
    assert np.abs(snn - ann).max() < 0.02 * np.abs(ann).max()
    np.testing.assert_array_equal(snn.argmax(1), ann.argmax(1))


#: pools tested: (pool, input size, IF populations: stages and the output)
POOLS = {"2x2": (lambda: nn.MaxPool2d(2), 4, 4), "3x3 stride 2": (lambda: nn.MaxPool2d(3, 2, 1), 6, 5),
         "3x3 stride 1": (lambda: nn.MaxPool2d(3, 1, 1), 5, 5), "3x2 stride 3x2": (lambda: nn.MaxPool2d((3, 2), (3, 2)), 6, 6)}


def pooling_model(kind: str) -> nn.Module:
    """Max pool ``kind`` (:data:`POOLS`) read out by an identity Linear."""
    pool, size, _ = POOLS[kind]
    n = pool()(torch.zeros(1, 1, size, size)).numel()
    model = nn.Sequential(pool(), nn.Flatten(), nn.Linear(n, n, bias=False))
    with torch.no_grad():
        model[2].weight.copy_(torch.eye(n))
    return model


@pytest.mark.parametrize("kind", POOLS)
def test_spiking_max_pooling_counts_the_largest_rate(tmp_path, kind):
    """A max pool of a constant input read out by an identity Linear: the read-out / T is the
    window maximum up to a few spikes / T (the float reference, 200 steps)."""
    model, (pool, size, populations) = pooling_model(kind), POOLS[kind]
    x = torch.rand(16, 1, size, size) * 0.9 + 0.05
    path = export(model, x, tmp_path / "maxpool.onnx")
    result = convert.convert(path, x.numpy())
    lam_out = next(e for e in result.report["layers"] if e["kind"] == "gemm")["lambda_out"]
    assert sum(isinstance(n, nir.IF) for n in result.graph.nodes.values()) == populations
    steps = 200
    out = reference.run(convert.graph_of(result), x.numpy(), steps, record=["readout"])["readout"][:, -1] * lam_out / steps
    want = pool()(x).reshape(16, -1).numpy()
    assert np.abs(out - want).max() <= 4 / steps


def compiled_max_pooling(tmp_path, kind: str = "2x2"):
    """Max pool ``kind`` read out by an identity Linear, converted and compiled; exact graded inputs (k/16)."""
    size = POOLS[kind][1]
    x = torch.randint(1, 16, (16, 1, size, size), generator=torch.Generator().manual_seed(0)).float() / 16
    convert.write(convert.convert(export(pooling_model(kind), x, tmp_path / "mp.onnx"), x.numpy()).graph,
                  tmp_path / "mp.nir")
    graph, net, _ = compiler.compile_file(tmp_path / "mp.nir", "loihi2", Options(input_bits=6, input_scale=16, steps=64))
    return x.numpy(), graph, net


def test_a_3x3_pool_of_stride_2_takes_rows_then_columns(tmp_path):
    """MaxPool(3, 2, 1) of 6x6: two stages over the three columns of every input row (1x6x3), two
    over the three rows of their result (1x3x3): 54 stage neurons, not the one tree's 8 x 9 = 72;
    as deep (2 + 2 hops, then the output)."""
    _, _, net = compiled_max_pooling(tmp_path, "3x3 stride 2")
    pool = {p: (pop.role, pop.shape, net.depth[p]) for p, pop in net.populations.items() if p.startswith("0.MaxPool")}
    assert pool == {"0.MaxPool.hmax1": ("pool", (1, 6, 3), 1), "0.MaxPool.hmax2": ("pool", (1, 6, 3), 2),
                    "0.MaxPool.vmax1": ("pool", (1, 3, 3), 3), "0.MaxPool.vmax2": ("pool", (1, 3, 3), 4),
                    "0.MaxPool": ("model", (1, 3, 3), 5)}


def test_max_pooling_is_a_tree_of_pairwise_maxima_three_hops_deep(tmp_path):
    """A 2x2 pool: max1 = IF(sel1 - sel0) and max3 = IF(sel3 - sel2) one hop deep, max2 =
    IF(sel2 + max3 - sel0 - max1) two hops deep, whose window selections wait one step as
    explicit sparse synapses (one per output neuron), not in a delay line of the input; the pool
    = IF(sel0 + max1 + max2), three hops deep (4 as a chain of running maxima), is all the
    read-out reads."""
    _, _, net = compiled_max_pooling(tmp_path)
    assert {p: pop.role for p, pop in net.populations.items() if p.startswith("0.MaxPool")} == {
        "0.MaxPool": "model", **{f"0.MaxPool.max{j}": "pool" for j in (1, 2, 3)}}
    reads: dict[str, set] = {}
    for g in net.groups:
        if g.dst.startswith("0.MaxPool"):
            nonzero = g.weights[g.weights != 0]
            sign = "+" if (nonzero > 0).all() else "-" if (nonzero < 0).all() else "mixed"
            delays = () if g.delays is None else tuple(sorted(set(g.delays.ravel().tolist())))
            reads.setdefault(g.dst.removeprefix("0.MaxPool"), set()).add(
                (g.src.removeprefix("0.MaxPool"), g.kind, sign, delays, nonzero.size))
    assert reads == {
        ".max1": {("input", "conv", "+", (), 1), ("input", "conv", "-", (), 1)},  # a one-hot kernel: one entry
        ".max3": {("input", "conv", "+", (), 1), ("input", "conv", "-", (), 1)},
        ".max2": {("input", "sparse", "+", (1,), 4), ("input", "sparse", "-", (1,), 4),
                  (".max3", "sparse", "+", (), 4), (".max1", "sparse", "-", (), 4)},
        "": {("input", "sparse", "+", (2,), 4), (".max1", "sparse", "+", (1,), 4), (".max2", "sparse", "+", (), 4)},
    }
    assert net.depth["0.MaxPool"] == 3
    assert [g.src for g in net.groups if g.dst == "readout"] == ["0.MaxPool"]


@pytest.mark.lava
@pytest.mark.parametrize("kind", POOLS)
def test_compiled_max_pooling_simulator_equals_lava(tmp_path, kind):
    from snn2chip.backends.lava import run_lava

    x, _, net = compiled_max_pooling(tmp_path, kind)
    inputs = fidelity.chip_inputs(net, x[:2], 20)
    stages = [p for p in net.populations if p.startswith("0.MaxPool")]
    sim = simulator.simulate(net, inputs, record=stages, probe=["readout"])
    lava = run_lava(net, inputs, record=stages, probe=["readout"])
    assert all(sim[p].any() for p in stages) and sorted(sim) == sorted(lava)
    for key in sim:
        np.testing.assert_array_equal(sim[key], lava[key], err_msg=key)


@pytest.mark.parametrize("kind", POOLS)
def test_spiking_max_pooling_compiles_exactly(tmp_path, kind):
    """On exact graded inputs (k/16), the compiled max pooling fires spike for spike as in float,
    and the read-out's membrane at the last step is the float one times one constant (so equal
    maxima tie on chip as in float; the float sums of the tree's terms differ in the last bits)."""
    x, graph, net = compiled_max_pooling(tmp_path, kind)
    fid = fidelity.fidelity(graph, net, x, 64)
    stages = [p for p in net.populations if p.startswith("0.MaxPool")]
    assert len(stages) == POOLS[kind][2] and sorted(layer.population for layer in fid.layers) == sorted(stages)
    assert all(layer.spike_agreement == 1.0 for layer in fid.layers)
    out, key = fidelity.readout(graph, net)
    chip = simulator.simulate(net, fidelity.chip_inputs(net, x, 64), probe=[out])[key]
    chip = fidelity.aligned(net, out, chip, 64)[:, -1].reshape(len(x), -1).astype(np.float64)
    source = net.populations[out].source
    floats = reference.run(graph, x, 64, record=[source])[source][:, -1].reshape(len(x), -1)
    assert len(np.unique(chip)) > 4  # not all one value
    np.testing.assert_allclose(chip, floats * (chip.max() / floats.max()), rtol=1e-5)


def compile_small_resnet(small_resnet, tmp_path: Path):
    """The SmallResNet converted and compiled for Loihi 2 (graded inputs, 16 steps), and its inputs."""
    path, x, _ = small_resnet
    convert.write(convert.convert(path, x[:32].numpy()).graph, tmp_path / "small.nir")
    _, net, _ = compiler.compile_file(tmp_path / "small.nir", "loihi2", Options(input_bits=6, input_scale=16, steps=16))
    return x[32:].numpy(), net


def test_a_downsampling_shortcut_waits_in_a_line_of_the_positions_it_reads(small_resnet, tmp_path, monkeypatch):
    """The projection block's 1x1 stride-2 shortcut convolution reaches its join one hop early and
    reads one input position in four: its delay line copies those 8x4x4 neurons. Counted as the
    whole 8x8x8 block input, a line cost more than the convolution's explicit synapses, delayed
    (2,048), which it then took; every model population fires exactly as it did with those."""
    x, net = compile_small_resnet(small_resnet, tmp_path)
    from snn2chip.passes import align
    monkeypatch.setattr(align, "read_grid", lambda fg: None)
    _, before = compile_small_resnet(small_resnet, tmp_path)
    line = {p.name: p.shape for p in net.populations.values() if p.origin == "layer1.Relu_1"}
    assert line == {"layer1.Relu_1@1.every2x2": (8, 4, 4)}
    shortcut = {(g.dst, g.kind, g.stride) for g in net.groups if g.src == "layer1.Relu_1@1.every2x2"}
    assert shortcut == {("layer2.Relu_1", "conv", (1, 1))}  # its excitatory and inhibitory halves
    assert not [p for p in before.populations.values() if p.origin == "layer1.Relu_1"]
    explicit = [g for g in before.groups if g.src == "layer1.Relu_1" and g.dst == "layer2.Relu_1"]
    assert {(g.kind, tuple(np.unique(g.delays))) for g in explicit} == {("sparse", (1,))}
    assert sum(g.weights.size for g in explicit) == 2048
    model = [p for p, pop in net.populations.items() if pop.role == "model" and pop.kind != "input"]
    inputs = fidelity.chip_inputs(net, x, 16)
    ours, theirs = (simulator.simulate(n, inputs, record=model, probe=["readout"]) for n in (net, before))
    assert ours["layer2.Relu_1"].any() and ours["readout.v"].any()
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


@pytest.mark.lava
def test_a_converted_resnet_with_a_strided_delay_line_simulator_equals_lava(small_resnet, tmp_path):
    from snn2chip.backends.lava import run_lava

    x, net = compile_small_resnet(small_resnet, tmp_path)
    inputs = fidelity.chip_inputs(net, x[:2], 16)
    record = ["layer1.Relu_1@1.every2x2", "layer2.Relu_1"]
    sim = simulator.simulate(net, inputs, record=record, probe=["readout"])
    lava = run_lava(net, inputs, record=record, probe=["readout"])
    assert all(sim[p].any() for p in record) and sorted(sim) == sorted(lava)
    for key in sim:
        np.testing.assert_array_equal(sim[key], lava[key], err_msg=key)


def _same_nir(a: nir.NIRGraph, b: nir.NIRGraph, names: bool = True) -> None:
    """``a`` and ``b`` have the same nodes (in order; by name unless ``names`` is False), edges and
    parameters, bit for bit."""
    assert [type(n) for n in a.nodes.values()] == [type(n) for n in b.nodes.values()]
    if names:
        assert list(a.nodes) == list(b.nodes) and a.edges == b.edges
    for (name, x), y in zip(a.nodes.items(), b.nodes.values()):
        for field, value in vars(x).items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, vars(y)[field], err_msg=f"{name}.{field}")


@pytest.mark.parametrize("batch", [1, 3])
def test_a_fixed_batch_export_converts_to_the_same_nir(tmp_path, batch):
    """``torch.onnx.export(model, x, f)`` fixes the batch at len(x): calibration runs in chunks of
    it (10 samples: the last chunk of 3 padded), the NIR has no batch axis and equals the
    dynamic-axes export's. The untrained batch norms fold to equal biases, which torch shares
    through Identity nodes (constants too)."""
    torch.manual_seed(1)
    model = SmallResNet().eval()
    x = torch.rand(10, 3, 16, 16)
    torch.onnx.export(model, x[:batch], str(tmp_path / "fixed.onnx"))
    fixed_input = onnx.load(str(tmp_path / "fixed.onnx")).graph.input[0]
    assert fixed_input.type.tensor_type.shape.dim[0].dim_value == batch
    assert "Identity" in {n.op_type for n in onnx.load(str(tmp_path / "fixed.onnx")).graph.node}
    fixed = convert.convert(tmp_path / "fixed.onnx", x.numpy())
    dynamic = convert.convert(export(model, x, tmp_path / "dynamic.onnx"), x.numpy())
    _same_nir(fixed.graph, dynamic.graph)
    assert fixed.report == dynamic.report
    assert fixed.graph.nodes["input"].input_type["input"].tolist() == [3, 16, 16]  # no batch axis
    runs = [reference.run(convert.graph_of(c), x[:4].numpy(), 12, record=["readout"])["readout"] for c in (fixed, dynamic)]
    np.testing.assert_array_equal(*runs)
    np.testing.assert_allclose(convert.ann_logits(tmp_path / "fixed.onnx", x.numpy()), model(x).detach().numpy(), atol=1e-5)


class ViewNet(nn.Module):
    """conv, ReLU, ``x.view(x.size(0), -1)``, linear: under a fixed batch B torch writes the view as
    ``Reshape`` to the constant ``[B, -1]``; ``flatten=True`` uses ``torch.flatten`` instead."""

    def __init__(self, flatten: bool = False):
        super().__init__()
        self.conv, self.fc, self.flatten = nn.Conv2d(2, 3, 3), nn.Linear(3 * 4 * 4, 4), flatten

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(torch.flatten(h, 1) if self.flatten else h.view(h.size(0), -1))


@pytest.mark.parametrize("batch", [1, 4])
def test_a_reshape_with_the_batch_hard_coded_converts(tmp_path, batch):
    torch.manual_seed(2)
    model = ViewNet().eval()
    x = torch.rand(9, 2, 6, 6)
    torch.onnx.export(model, x[:batch], str(tmp_path / "view.onnx"))
    shapes = [onnx.numpy_helper.to_array(a.t).tolist() for n in onnx.load(str(tmp_path / "view.onnx")).graph.node
              for a in n.attribute if n.op_type == "Constant"]
    assert shapes == [[batch, -1]]
    flat = ViewNet(flatten=True).eval()
    flat.load_state_dict(model.state_dict())
    want = convert.convert(export(flat, x, tmp_path / "flat.onnx"), x.numpy())
    _same_nir(convert.convert(tmp_path / "view.onnx", x.numpy()).graph, want.graph, names=False)


def _reshape_model(tmp_path: Path, batch, target: list[int]) -> Path:
    """input (batch, 2, 2, 2) -> Relu -> Reshape to ``target`` (node 'flat') -> output."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["h"], name="relu"),
         onnx.helper.make_node("Reshape", ["h", "shape"], ["y"], name="flat")], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 2, 2, 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array(target, np.int64), "shape")])
    path = tmp_path / "reshape.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("batch, target, problem", [
    (1, [2, -1], "reshapes to [2, -1], whose first entry is not the batch (the input's declared batch is 1)"),
    ("b", [2, 4, -1], "only a reshape to (batch, -1) is supported, got [2, 4, -1]"),
])
def test_a_reshape_that_is_not_per_sample_is_refused(tmp_path, capsys, batch, target, problem):
    path = _reshape_model(tmp_path, batch, target)
    np.save(tmp_path / "calib.npy", np.ones((3, 2, 2, 2), np.float32))
    assert main(["convert", str(path), "--calib", str(tmp_path / "calib.npy"), "-o", str(tmp_path / "s.nir")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"snn2chip: error: {path}: node 'flat' (op Reshape): ") and problem in err
    assert err.count("\n") == 1


def test_a_batch_computed_at_run_time_is_refused_with_the_way_around_it(tmp_path):
    """``x.view(x.size(0), -1)`` under dynamic axes becomes Shape/Gather/Concat nodes."""
    path = export(ViewNet().eval(), torch.rand(2, 2, 6, 6), tmp_path / "dyn.onnx")
    with pytest.raises(ModelError) as info:
        convert.convert(path, np.ones((2, 2, 6, 6), np.float32))
    assert "(op Shape): unsupported operator" in str(info.value)
    assert str(info.value).endswith("export with a fixed batch (torch.onnx.export without dynamic_axes) "
                                    "or use torch.flatten(x, 1)")


def _onnx_with(tmp_path: Path, op: str, name: str) -> Path:
    """input (1, 4) -> ``op`` (node ``name``) -> output: a model with one unsupported operator."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node(op, ["x"], ["y"], name=name)], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["b", 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["b", 4])])
    path = tmp_path / "bad.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
    return path


def test_unsupported_operator_is_named(tmp_path, capsys):
    path = _onnx_with(tmp_path, "Sigmoid", "act_3")
    np.save(tmp_path / "calib.npy", np.zeros((2, 4), np.float32))
    out = tmp_path / "snn.nir"
    assert main(["convert", str(path), "--calib", str(tmp_path / "calib.npy"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == (f"snn2chip: error: {path}: node 'act_3' (op Sigmoid): unsupported operator; supported: Conv, "
                   "BatchNormalization, Relu, Add, Gemm, MatMul, Flatten, Reshape, AveragePool, GlobalAveragePool, "
                   "MaxPool, Identity, Dropout, Constant\n")
    assert not out.exists()


def test_cli_converts_writes_and_checks(tmp_path, capsys):
    out = tmp_path / "snn.nir"
    assert main(["convert", str(ZOO_ANN), "--calib", str(ZOO_CALIB), "-o", str(out), "--steps", "64"]) == 0
    text = capsys.readouterr().out
    assert f"-> {out} (S-ResNet conversion: percentile 99.9 on 64 calibration samples" in text
    assert "  layer1.layer1.0.relu2.Relu.shortcut: shortcut, x 0.6845" in text
    assert "check: float reference, 64 steps, on the calibration samples: prediction equals the ANN's on 100.0%" in text
    graph = frontend.load(out)
    assert graph.metadata["time_steps"] == 64 and graph.metadata["dt"] == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["snn.nir"]  # no temporary file left behind


@pytest.mark.parametrize("calib, message", [
    ("missing.npy", "missing.npy: no such file"),
    ("wrong.npy", "wrong.npy: calibration data has shape (5, 8, 8); the model's input 'input' takes (samples, 1, 8, 8)"),
    ("text.npy", "text.npy: not a readable .npy or .npz file"),
])
def test_cli_rejects_bad_calibration_data(tmp_path, capsys, calib, message):
    np.save(tmp_path / "wrong.npy", np.zeros((5, 8, 8), np.float32))
    (tmp_path / "text.npy").write_text("not numpy")
    out = tmp_path / "snn.nir"
    assert main(["convert", str(ZOO_ANN), "--calib", str(tmp_path / calib), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("snn2chip: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_cli_rejects_a_file_that_is_not_onnx(tmp_path, capsys):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00garbage")
    assert main(["convert", str(bad), "--calib", str(ZOO_CALIB), "-o", str(tmp_path / "s.nir")]) == 1
    assert capsys.readouterr().err == f"snn2chip: error: {bad}: not an ONNX model (DecodeError)\n"


def test_cli_needs_calibration_and_output(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", str(ZOO_ANN)])
    assert exit_info.value.code == 2


def test_non_positive_compensation_is_rejected():
    with pytest.raises(ModelError, match="compensation factor must be a positive number, got 0"):
        convert.convert(ZOO_ANN, np.load(ZOO_CALIB), compensation=0)


@pytest.mark.lava
@pytest.mark.slow
def test_compiled_converted_zoo_ann_simulator_equals_lava(zoo, tmp_path):
    from snn2chip.backends.lava import run_lava

    path = tmp_path / "snn.nir"
    convert.write(zoo.graph, path)
    steps = 12
    graph, net, _ = compiler.compile_file(path, "loihi2", Options(input_bits=6, input_scale=16, steps=steps))
    x = fidelity.chip_inputs(net, np.asarray(digits_test_set()[0][:1]), steps)
    pops = [p for p, pop in net.populations.items() if pop.kind == "lif"]
    sim = simulator.simulate(net, x, record=pops, probe=["readout"])
    lava = run_lava(net, x, record=pops, probe=["readout"])
    assert all(sim[p].any() for p in pops if net.populations[p].reset == "subtract")  # every IF layer fires
    assert sorted(sim) == sorted(lava)
    for key in sim:
        np.testing.assert_array_equal(sim[key], lava[key], err_msg=key)
