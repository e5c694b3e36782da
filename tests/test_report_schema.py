"""The JSON keys the README documents for BUILD/report.json and `verify --json` keep working."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from snn2chip.cli import main

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"

#: README "Compile, then run": totals, pipeline depth, per population its scale, vth, du/dv and
#: their rounding errors, threshold exactness; per synapse group kind, exponent, sign mode and
#: weight error; the --check fidelity and the partition
BUILD = {"model", "target", "dt", "chip_ir_format", "model_neurons", "populations", "neurons", "neurons_by_role",
         "synapse_groups", "synapses",
         "connections", "weight_memory_bytes", "pipeline_depth", "inputs", "outputs", "layers", "unaligned_joins",
         "range_clamps", "strategy", "split_signs", "calibration_samples", "rounding", "joins", "cores_to_bound_ratio",
         "partition", "fidelity"}
LAYER = {"population", "nir_node", "neurons", "scale", "groups", "kind", "vth", "du", "dv", "decay_error", "bias_exp",
         "bias_rel_rms_error", "threshold", "threshold_exact", "threshold_error"}
GROUP = {"name", "kind", "source", "synapses", "weight_exp", "sign_mode", "weight_rel_rms_error", "weight_max_error",
         "through", "recurrent", "rounding"}
PARTITION = {"target", "system", "packing", "system_chips", "cores", "chips_used", "bounds", "cores_to_bound_ratio", "traffic",
             "capacity", "core_usage", "tiles"}
FIDELITY = {"samples", "steps", "layers", "output_agreement"}
#: README "Quickstart": the keys `verify --json` prints
VERIFY = {"float_accuracy", "chip_accuracy", "agreement", "lava_bit_exact", "pipeline_depth", "spikes_per_neuron",
          "synops_per_sample", "energy_per_inference_j", "layers", "populations", "checks", "passed", "compile"}


@pytest.mark.slow
def test_build_report_keys(tmp_path, capsys):
    assert main(["compile", str(ZOO / "sew_and.nir"), "-o", str(tmp_path / "b"), "--steps", "4", "--check",
                 "random:2"]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert BUILD <= set(report), BUILD - set(report)
    assert LAYER <= set(report["layers"][0]), LAYER - set(report["layers"][0])
    assert GROUP <= set(report["layers"][0]["groups"][0])
    assert PARTITION <= set(report["partition"]) and FIDELITY <= set(report["fidelity"])
    assert report["partition"]["packing"] == "cores"
    out = capsys.readouterr().out
    assert len(out.splitlines()) <= 10 and "(per layer: -v or report.md)" in out  # short, whatever the depth
    # the helper overhead: the roles add up, and the model's neurons are what inspect counts
    assert sum(report["neurons_by_role"].values()) == report["neurons"]
    assert set(report["neurons_by_role"]) == {"model", "readout", "relay", "delay", "pool", "bias"}
    assert main(["inspect", str(ZOO / "sew_and.nir"), "--json"]) == 0
    assert report["model_neurons"] == json.loads(capsys.readouterr().out)["totals"]["neurons"] == 10762
    assert "(1.00x the NIR model's 10,762; by role: model 10,762, bias 1)" in out


@pytest.mark.slow
def test_verify_json_keys(capsys):
    assert main(["verify", str(ZOO / "sew_and.nir"), "--data", "digits", "--samples", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert VERIFY <= set(report), VERIFY - set(report)
