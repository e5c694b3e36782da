"""A model file may name its calibration set (metadata 'calibration', relative to the model):
compile and verify then calibrate on it without --calib, say so, and --no-calib turns it off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest

from snn2chip.cli import main

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"


def _compile(capsys, tmp_path, *extra) -> tuple[int, dict | None, str]:
    """Exit code, report.json and what was printed (stdout on success, else stderr)."""
    code = main(["compile", str(ZOO / "sew_and.nir"), "-o", str(tmp_path / "b"), "--steps", "4", *extra])
    out, err = capsys.readouterr()
    report = tmp_path / "b" / "report.json"
    return code, json.loads(report.read_text()) if code == 0 else None, out if code == 0 else err


NAMED = f"{ZOO / 'resnet_ann_calib.npy'} (named by the model's metadata 'calibration'; --no-calib: none)"


def test_the_zoo_models_name_their_calibration_set_and_compile_uses_it(capsys, tmp_path):
    code, report, out = _compile(capsys, tmp_path)
    assert code == 0 and report["calibration_samples"] == 64 and report["rounding"] == "compensated"
    assert report["calibration"] == NAMED and f"; calibration {NAMED})\n" in out
    code, report, out = _compile(capsys, tmp_path, "--no-calib")
    assert code == 0 and report["calibration_samples"] == 0 and report["rounding"] == "nearest"
    assert report["calibration"] == "none"


def test_verify_says_which_calibration_it_used(capsys):
    assert main(["verify", str(ZOO / "sew_and.nir"), "--data", "digits", "--samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "  used: steps 4 (model metadata 'time_steps'), input-bits 6, input-scale 16 (digits defaults), " \
           f"calibration {NAMED}\n" in out


def test_no_calib_and_calib_exclude_each_other(capsys, tmp_path):
    code, _, err = _compile(capsys, tmp_path, "--no-calib", "--calib", str(ZOO / "resnet_ann_calib.npy"))
    assert code == 1 and err == "snn2chip: error: option --no-calib: cannot be combined with --calib\n"


def _with_calibration(tmp_path, value) -> Path:
    model = tmp_path / "m.nir"
    shutil.copy(ZOO / "sew_and.nir", model)
    with h5py.File(model, "r+") as f:
        del f["node/metadata/calibration"]
        f["node/metadata"].create_dataset("calibration", data=value)
    return model


@pytest.mark.parametrize("value, message", [
    (b"missing.npy", "metadata 'calibration' names 'missing.npy', but {dir}/missing.npy is not a file (--no-calib: "
                     "compile without calibration)"),
    (3, "metadata 'calibration' must name a file (.npy or .npz, relative to the model), got 3"),
])
def test_a_bad_calibration_entry_is_one_line(capsys, tmp_path, value, message):
    model = _with_calibration(tmp_path, value)
    args = ["verify", str(model), "--data", "digits", "--samples", "4"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == f"snn2chip: error: {model}: {message.format(dir=tmp_path)}\n"
    assert main([*args, "--no-calib"]) == (1 if value == 3 else 0)  # a malformed entry stays an error
