"""A torchvision ResNet-18 (random weights, 10 classes, 3x32x32) through the command line as a user
would run it: ``convert`` -> ``compile`` -> ``run --backend sim`` (the issue's 64x64 pipeline once
died in the simulator with a 32 GiB allocation; ``models/torchvision_resnet.py``), and ``run`` of
the converted NIR in the float reference on the same images.

What is asserted beyond exit codes and output shapes: the chip's timing (nothing reaches the
read-out before its depth; from then on it integrates and follows the float read-out), and per
spiking layer that the chip fires at the float reference's rate, nearly spike for spike on the stem. Class decisions are not compared:
with random weights the ten logits are close and 16 steps of rate coding with 8-bit weights
reorder them (the conversion's accuracy claims are for trained networks, ``benchmarks/conversion.py``).

The same ResNet-18 exported as ``torch.onnx.export(model, x, f)`` writes it by default (the batch
fixed at 1) converts to the same NIR, then compiles and verifies.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from snn2chip import chip, convert
from tests.test_cli import cli
from tests.test_convert import _same_nir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from models import torchvision_resnet as tv  # noqa: E402

SIZE, STEPS, SAMPLES = 32, 16, 2
#: spiking layers whose rates are compared: the stem, then the last neuron of each stage
LAYERS = ["relu.Relu", "layer1.layer1.1.relu_1.Relu", "layer2.layer2.1.relu_1.Relu", "layer3.layer3.1.relu_1.Relu",
          "layer4.layer4.1.relu_1.Relu"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A folder with the exported ResNet-18 (``r18.onnx``), calibration images and 2 input images."""
    tmp = tmp_path_factory.mktemp("resnet18")
    tv.export(tmp / "r18.onnx", SIZE, 10, 0)
    np.save(tmp / "calib.npy", tv.images(4, SIZE, 1))
    np.save(tmp / "x.npy", tv.images(SAMPLES, SIZE, 2))
    tv.main([str(tmp / "cli.onnx"), "--size", str(SIZE)])  # the module's command line writes the same model
    assert (tmp / "cli.onnx").read_bytes() == (tmp / "r18.onnx").read_bytes()
    return tmp


def test_convert_compile_run_on_the_simulator(built, capsys):
    tmp = built
    code, out, err = cli(capsys, "convert", tmp / "r18.onnx", "--calib", tmp / "calib.npy", "-o", tmp / "r18.nir")
    assert code == 0, err
    assert "IF neurons (threshold 1, reset by subtraction)" in out
    code, out, err = cli(capsys, "compile", tmp / "r18.nir", "-o", tmp / "build", "--input-bits", 6, "--input-scale", 16,
                         "--steps", STEPS)
    assert code == 0, err
    report = json.loads((tmp / "build" / "report.json").read_text())
    depth = report["pipeline_depth"]
    assert depth > 18  # 18 layers, a hop or more each
    # helpers: the 3x3 max pool's stages, 2 of 64x16x8 over each input row's columns and 2 of 64x8x8
    # over their rows (window selections wait in synaptic delays, not delay lines), the downsampling
    # shortcuts' delay lines of the positions they read (64x4x4, 128x2x2, 256x1x1) and the
    # always-on bias neuron; no relay
    roles = report["neurons_by_role"]
    assert roles == {"model": report["model_neurons"], "readout": 0, "relay": 0, "delay": 1024 + 512 + 256,
                     "pool": 64 * (2 * 16 * 8 + 2 * 8 * 8), "bias": 1}
    assert report["model_neurons"] == 51_210 and report["neurons"] == sum(roles.values())

    # the command: constant images, here held for T + D steps so the last float step leaves the chip
    code, out, err = cli(capsys, "run", tmp / "build", "--backend", "sim", "--input", tmp / "x.npy",
                         "--steps", STEPS + depth, "--probe", "readout", "--record", *LAYERS, "-o", tmp / "sim.npz")
    assert code == 0, err
    assert f"wrote {tmp / 'sim.npz'} (sim backend, pipeline depth {depth})" in out
    code, _, err = cli(capsys, "run", tmp / "r18.nir", "--input", tmp / "x.npy", "--steps", STEPS,
                       "--record", *LAYERS, "readout", "-o", tmp / "float.npz")
    assert code == 0, err

    net = chip.load(tmp / "build" / "network.h5")
    with np.load(tmp / "sim.npz") as sim, np.load(tmp / "float.npz") as ref:
        assert int(sim["pipeline_depth"]) == depth
        v = sim["readout.v"]
        assert v.shape == (SAMPLES, STEPS + depth, 10) and ref["readout"].shape == (SAMPLES, STEPS, 10)
        start = net.depth["readout"]
        assert start == depth  # the read-out is the last population
        assert not v[:, :start].any() and np.abs(v[:, start:]).sum(1).min() > 0
        # chip membrane in float units (v_chip = 64 * scale * v_float) follows the float read-out
        chip_out, float_out = v[:, start:] / (64 * net.populations["readout"].scale), ref["readout"]
        assert 0.5 < np.abs(chip_out).mean() / np.abs(float_out).mean() < 2
        assert np.corrcoef(chip_out.ravel(), float_out.ravel())[0, 1] > 0.6  # measured 0.85
        for layer in LAYERS:
            d = net.depth[layer]
            chip_spikes, float_spikes = sim[layer][:, d : d + STEPS], ref[layer]
            assert chip_spikes.shape == float_spikes.shape == (SAMPLES, STEPS, *net.populations[layer].shape)
            assert not sim[layer][:, :d].any(), layer  # nothing before the layer's depth
            rate_chip, rate_float = chip_spikes.mean(), float_spikes.mean()
            assert rate_float > 0.01 and abs(rate_chip - rate_float) < 0.01, (layer, rate_chip, rate_float)
        assert (sim[LAYERS[0]][:, net.depth[LAYERS[0]]:][:, :STEPS] == ref[LAYERS[0]]).mean() > 0.95


@pytest.mark.slow
def test_a_fixed_batch_export_converts_to_the_same_nir_compiles_and_verifies(built, capsys):
    tmp = built
    tv.export(tmp / "fixed.onnx", SIZE, 10, 0, batch=1)
    graph = onnx.load(str(tmp / "fixed.onnx")).graph
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, 3, SIZE, SIZE]
    code, out, err = cli(capsys, "convert", tmp / "fixed.onnx", "--calib", tmp / "calib.npy", "-o", tmp / "fixed.nir")
    assert code == 0, err
    assert "on 4 calibration samples" in out  # 4 samples through a model that takes 1 at a time
    calib = np.load(tmp / "calib.npy")
    _same_nir(convert.convert(tmp / "fixed.onnx", calib).graph, convert.convert(tmp / "r18.onnx", calib).graph)

    options = ["--input-bits", 6, "--input-scale", 16, "--steps", 8]
    code, out, err = cli(capsys, "compile", tmp / "fixed.nir", "-o", tmp / "fixed_build", *options)
    assert code == 0, err
    # random weights: class decisions are near ties (module docstring), so no agreement bar
    code, out, err = cli(capsys, "verify", tmp / "fixed.nir", "--data", "random:2", *options, "--min-agreement", 0,
                         "-o", tmp / "fixed_verify")
    assert code == 0, err
    report = json.loads((tmp / "fixed_verify" / "report.json").read_text())
    assert report["passed"] and report["pipeline_depth"] > 18
    stem = report["layers"][0]
    assert stem["population"] == LAYERS[0] and stem["float_rate"] > 0.01 and stem["spike_agreement"] > 0.95
