"""``snn2chip verify``: report keys and figures, exit codes, plots, golden files, input data checks.

The golden files in tests/golden/ hold the simulator's outputs on the first 20 digits test images
per zoo model; ``make golden`` rewrites them after an intended change of compiled outputs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from snn2chip import compiler, verify
from snn2chip.verify import data, energy
from snn2chip.cli import main
from snn2chip.errors import ModelError
from snn2chip.passes.quantize import Options

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models" / "zoo"
GOLDEN = ROOT / "tests" / "golden"
SNNS = ["sew_add", "sew_and", "sew_iand", "ms_resnet", "spiking_resnet"]
KEYS = {"float_accuracy", "chip_accuracy", "agreement", "lava_bit_exact", "pipeline_depth", "spikes_per_neuron",
        "synops_per_sample", "energy_per_inference_j"}


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def sew_add_run(tmp_path_factory):
    """One JSON run on sew_add (12 samples) with an output folder, shared by several tests."""
    out_dir = tmp_path_factory.mktemp("verify") / "out"
    code = main(["verify", str(ZOO / "sew_add.nir"), "--target", "loihi2", "--data", "digits", "--samples", "12",
                 "--json", "-o", str(out_dir)])
    return code, out_dir


def test_json_report_has_the_keys_and_consistent_figures(capsys, sew_add_run):
    code, out_dir = sew_add_run
    report = json.loads((out_dir / "report.json").read_text())
    assert code == 0 and report["passed"] is True
    assert KEYS <= set(report)
    _, net, _ = compiler.compile_file(ZOO / "sew_add.nir", options=Options(steps=4, input_bits=6, input_scale=16,
                                                                           strategy="auto"))
    assert (report["samples"], report["steps"], report["steps_source"]) == (12, 4, "model metadata 'time_steps'")
    assert (report["input_bits"], report["input_scale"], report["input_source"]) == (6, 16.0, "digits defaults")
    assert report["pipeline_depth"] == net.pipeline_depth and report["latency_steps"] == 4 + net.pipeline_depth
    assert report["lava_bit_exact"] is None and report["lava_samples"] == 0
    neurons = sum(p.size for p in net.populations.values() if p.kind != "input")
    assert report["neurons"] == neurons and report["neuron_updates_per_sample"] == neurons * (4 + net.pipeline_depth)
    assert report["spikes_per_neuron"] == pytest.approx(report["spikes_per_sample"] / neurons)
    assert report["synops_per_sample"] == pytest.approx(sum(p["synops_per_sample"] for p in report["populations"]))
    assert report["synops_per_sample"] > report["spikes_per_sample"] > 1000
    assert report["energy"]["synaptic_j"] == pytest.approx(report["synops_per_sample"] * 23.6e-12)
    assert report["energy_per_inference_j"] == report["energy"]["total_j"] > report["energy"]["synaptic_j"]
    assert report["energy"]["target_figures_published"] is False
    # the first 12 test images: the float reference gets all 12 right
    assert report["float_accuracy"] == 1.0 and 0.9 <= report["chip_accuracy"] <= 1.0
    assert [c["check"] for c in report["checks"]] == ["agreement"]
    assert len(report["layers"]) == 10 and all(0 <= layer["rate_error"] < 0.05 for layer in report["layers"])


def test_output_folder_holds_report_and_plots(sew_add_run):
    _, out_dir = sew_add_run
    assert sorted(p.name for p in out_dir.iterdir()) == [".snn2chip-output", "raster.png", "rates.png", "report.json"]
    for name in ("raster.png", "rates.png"):
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out_dir.parent.glob(".out.*"))  # no temporary folder left


def test_table_names_what_was_used_and_the_checks(capsys):
    code, out, err = cli(capsys, "verify", ZOO / "spiking_resnet.nir", "--data", "digits", "--samples", "4",
                         "--steps", "3")
    assert code == 0 and err == ""
    assert "  used: steps 3 (--steps), input-bits 6, input-scale 16 (digits defaults)" in out
    assert "  PASS agreement: agreement " in out and out.rstrip().endswith("verify passed")
    assert "energy per inference (estimate): " in out and "latency: 13 chip steps (3 input steps + pipeline depth 10)" in out


def test_failed_agreement_check_exits_1_with_one_line(capsys):
    code, out, err = cli(capsys, "verify", ZOO / "sew_iand.nir", "--data", "digits", "--samples", "8",
                         "--no-align", "--json")  # misaligned shortcuts: far below the default 95 %
    report = json.loads(out)
    assert code == 1 and report["passed"] is False and report["agreement"] < 0.95
    assert err == f"snn2chip verify: failed: agreement {100 * report['agreement']:.2f}% (minimum 95.00%)\n"


@pytest.mark.lava
@pytest.mark.slow
def test_lava_matches_the_simulator_on_one_sample(capsys):
    code, out, err = cli(capsys, "verify", ZOO / "spiking_resnet.nir", "--data", "digits", "--samples", "2",
                         "--lava-samples", "1", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert report["lava_bit_exact"] is True and report["lava"]["samples"] == 1
    assert "readout.v" in report["lava"]["compared"] and len(report["lava"]["compared"]) > 10
    assert report["checks"][1] == {"check": "lava", "passed": True,
                                   "detail": "Lava equals the simulator bit for bit on 1 sample"}


@pytest.mark.parametrize("name", SNNS)
def test_zoo_models_reproduce_their_golden_files(capsys, name):
    code, out, err = cli(capsys, "verify", ZOO / f"{name}.nir", "--data", "digits", "--samples", "20",
                         "--golden", GOLDEN / f"{name}.npz", "--json")
    report = json.loads(out)
    assert report["golden"]["status"] == "match", report["golden"]["detail"]
    assert code == 0, err


def test_changing_one_weight_fails_the_golden_check(capsys, tmp_path):
    model = tmp_path / "sew_add.nir"
    shutil.copy(ZOO / "sew_add.nir", model)
    shutil.copy(ZOO / "resnet_ann_calib.npy", tmp_path)  # the calibration set its metadata names
    with h5py.File(model, "r+") as f:
        weight = f["node/nodes/fc/weight"]
        values = weight[()]
        values[3, 0] += 0.5
        weight[...] = values
    code, out, err = cli(capsys, "verify", model, "--data", "digits", "--samples", "20",
                         "--golden", GOLDEN / "sew_add.npz")
    assert code == 1
    (line,) = err.splitlines()
    assert line.startswith(f"snn2chip verify: failed: golden mismatch ({GOLDEN / 'sew_add.npz'}): output 'readout.v' differs in ")
    assert "predictions changed for " in line and "why: the model file changed (sha256 " in line
    assert line.endswith(f"to accept the new outputs, rerun with --update-golden (rewrites {GOLDEN / 'sew_add.npz'})")
    assert "  FAIL golden: golden mismatch" in out


def test_update_golden_writes_a_file_that_then_matches(capsys, tmp_path):
    ref = tmp_path / "ref.npz"
    args = ["verify", ZOO / "spiking_resnet.nir", "--data", "digits", "--samples", "3", "--golden", ref]
    code, out, _ = cli(capsys, *args, "--update-golden")
    assert code == 0 and f"  golden: wrote {ref} (3 samples)" in out
    with np.load(ref) as f:
        meta = json.loads(str(f["meta"]))
        assert sorted(f.files) == ["meta", "out:readout", "out:readout.v", "predictions"]
        assert f["out:readout.v"].shape == (3, 8 + 10, 10)  # steps + pipeline depth, classes
    assert meta["format"] == "snn2chip-golden" and meta["samples"] == 3 and meta["options"]["input_bits"] == 6
    assert cli(capsys, *args)[0] == 0
    code, out, err = cli(capsys, *args[:-4], "--samples", "2", "--golden", ref)
    assert code == 1 and err == (f"snn2chip verify: failed: golden file {ref} holds 3 samples; this run has 2: "
                                 "pass --samples 3\n")
    code, _, err = cli(capsys, *args, "--steps", "5")
    assert code == 1 and "output 'readout.v' has shape (3, 15, 10), golden (3, 18, 10)" in err
    assert "compile options changed: steps 8 -> 5" in err


def test_update_golden_needs_a_file(capsys):
    code, _, err = cli(capsys, "verify", ZOO / "sew_add.nir", "--data", "digits", "--update-golden")
    assert code == 1 and err == "snn2chip: error: option --update-golden: needs --golden FILE (the file to write)\n"


def test_fanout_counts_every_synapse_of_every_group():
    """Against dense matrices built by pushing unit vectors through each group (convs with stride 2, 1x1)."""
    _, net, _ = compiler.compile_file(ZOO / "sew_add.nir", options=Options(steps=4, input_bits=6, input_scale=16,
                                                                           strategy="expand"))
    kinds = set()
    for g in net.groups:
        src = net.populations[g.src]
        if g.kind == "conv":
            units = torch.eye(src.size, dtype=torch.float64).reshape(src.size, *src.shape)
            mask = torch.as_tensor(np.asarray(g.weights) != 0, dtype=torch.float64)
            dense = F.conv2d(units, mask, None, g.stride, g.padding, g.dilation, g.groups).reshape(src.size, -1).T
            expected = dense.sum(0).numpy()
        elif g.kind == "sparse":
            expected = np.zeros(src.size)
            np.add.at(expected, g.cols, np.asarray(g.weights) != 0)
        else:
            expected = (np.asarray(g.weights) != 0).sum(0)
        np.testing.assert_array_equal(verify.fanout(net, g), expected, err_msg=g.name)
        kinds.add((g.kind, tuple(g.stride)))
    assert {("conv", (2, 2)), ("conv", (1, 1)), ("dense", (1, 1)), ("sparse", (1, 1))} <= kinds


def test_energy_model_uses_the_published_loihi_figures():
    e = energy.estimate("loihi2", synops=1000, neuron_updates=100, spikes=10, messages=20)
    assert e.synaptic_j == pytest.approx(1000 * 23.6e-12)
    assert e.neuron_j == pytest.approx(10 * 81e-12 + 90 * 52e-12)
    assert e.spike_messages_j == pytest.approx(20 * 1.7e-12)
    assert e.total_j == pytest.approx(e.synaptic_j + e.neuron_j + e.spike_messages_j)
    assert "Davies et al., IEEE Micro" in e.source and "used as an estimate" in e.note


def test_time_axis_data_sets_the_steps(capsys, tmp_path):
    x, y = data.digits_test().x[:3], data.digits_test().y[:3]
    np.savez(tmp_path / "d.npz", x=np.repeat(x[:, None], 5, axis=1), y=y)
    code, out, err = cli(capsys, "verify", ZOO / "sew_add.nir", "--data", tmp_path / "d.npz", "--input-bits", "6",
                         "--input-scale", "16", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert (report["steps"], report["steps_source"], report["input_source"]) == (5, "the data's time axis", "options")
    assert report["float_accuracy"] == 1.0
    code, _, err = cli(capsys, "verify", ZOO / "sew_add.nir", "--data", tmp_path / "d.npz", "--steps", "4")
    assert code == 1 and err == f"snn2chip: error: {tmp_path / 'd.npz'}: --steps 4 disagrees with the data's time axis of 5 steps\n"


SHAPE = (1, 8, 8)


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((2, *SHAPE))}, "no array 'x' (arrays: images)"),
    ({"x": np.zeros((2, 8, 8))}, "'x' has shape (2, 8, 8); expected (samples, 1, 8, 8) (held constant) "
                                 "or (samples, steps, 1, 8, 8) (one value per step)"),
    ({"x": np.zeros((0, *SHAPE))}, "'x' has shape (0, 1, 8, 8): no samples or no steps"),
    ({"x": np.array([["a"] * 64]).reshape(1, *SHAPE)}, "'x' has dtype <U1; expected real numbers"),
    ({"x": np.full((1, *SHAPE), np.nan)}, "'x' contains NaN or infinite values"),
    ({"x": np.zeros((3, *SHAPE)), "y": np.zeros(2, dtype=int)},
     "'y' has shape (2,); expected (3,), one label per sample of 'x'"),
    ({"x": np.zeros((2, *SHAPE)), "y": np.array([0.5, 1.0])}, "'y' must hold integer class labels >= 0"),
    ({"x": np.zeros((2, *SHAPE)), "y": np.array([-1, 1])}, "'y' must hold integer class labels >= 0"),
])
def test_npz_layout_errors_are_one_clear_line(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ModelError) as info:
        data.load_npz(path, SHAPE)
    assert str(info.value) == f"{path}: {message}"


def test_npz_accepts_both_layouts_and_float_labels(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones((2, *SHAPE), dtype=np.int64), y=np.array([1.0, 2.0]))
    np.savez(tmp_path / "b.npz", x=np.ones((2, 7, *SHAPE)))
    a, b = data.load_npz(tmp_path / "a.npz", SHAPE), data.load_npz(tmp_path / "b.npz", SHAPE)
    assert a.x.dtype == np.float32 and a.y.tolist() == [1, 2] and a.y.dtype == np.int64 and a.steps(SHAPE) is None
    assert b.y is None and b.steps(SHAPE) == 7


def test_data_file_errors_through_the_cli(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, *SHAPE)))
    code, out, err = cli(capsys, "verify", ZOO / "sew_add.nir", "--data", tmp_path / "x.npy")
    assert (code, out) == (1, "")
    assert err == (f"snn2chip: error: {tmp_path / 'x.npy'}: a .npy file holds one array: "
                   "save 'x' (and 'y') with numpy.savez\n")
    code, _, err = cli(capsys, "verify", ZOO / "sew_add.nir", "--data", tmp_path / "none.npz")
    assert err == f"snn2chip: error: {tmp_path / 'none.npz'}: no such file\n"
    code, _, err = cli(capsys, "verify", ZOO / "sew_add.nir", "--data", "digits", "--samples", "500")
    assert code == 1 and err == ("snn2chip: error: digits (test split, 450 images): option --samples: asks for 500 "
                                 "samples; the data has 450\n")


def test_digits_split_is_the_zoo_split():
    """snn2chip.data defines the split models/ trains on: same arrays, same digest as zoo.json."""
    from models import data as zoo_data

    x, y = data.digits_test().x, data.digits_test().y
    assert x.shape == (450, *SHAPE) and x.dtype == np.float32 and y.shape == (450,)
    assert zoo_data.test_set()[0] is x and zoo_data.split_digest() == json.loads((ZOO / "zoo.json").read_text())["split_sha256"]


def test_digits_need_a_model_with_digits_input(capsys):
    from tests.conftest import SINABS

    code, out, err = cli(capsys, "verify", SINABS, "--data", "digits")
    assert (code, out) == (1, "")
    assert err == "snn2chip: error: option --data: digits are images of shape (1, 8, 8); the model's input has shape (2, 34, 34)\n"


def test_random_data_runs_without_labels(capsys):
    code, out, err = cli(capsys, "verify", ROOT / "tests" / "fixtures" / "cnn_sinabs.nir", "--data", "random:3",
                         "--steps", "5", "--min-agreement", "0", "--json")
    report = json.loads(out)
    assert code == 0, err
    assert (report["data"], report["samples"], report["float_accuracy"], report["chip_accuracy"]) == ("random:3", 3,
                                                                                                    None, None)
    x = data.random_spikes(3, (2, 34, 34))
    assert set(np.unique(x)) == {0.0, 1.0} and abs(x.mean() - data.RANDOM_RATE) < 0.01
    assert np.array_equal(x, data.load("random:3", (2, 34, 34)).x)  # the same inputs every run


def test_memory_limit_refuses_in_one_line_and_restores_the_budget(capsys):
    code, out, err = cli(capsys, "verify", ZOO / "sew_add.nir", "--data", "digits", "--memory-limit", "1M")
    assert code == 1 and out == ""
    assert err == (f"snn2chip: error: {ZOO / 'sew_add.nir'}: compiling it (15,518 values per step, 65,834 parameters; "
                   "an estimate) needs 3.5 MiB, more than the memory budget of 1.0 MiB (--memory-limit)\n")
    from snn2chip import memory

    assert memory.budget() > 2**20  # the option holds for its command only
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(ZOO / "sew_add.nir"), "--input", "x.npy", "--memory-limit", "lots"])
    assert exit_.value.code == 2
    assert "argument --memory-limit: expected a size such as 8G, 500M or 1000000, got 'lots'" in capsys.readouterr().err
