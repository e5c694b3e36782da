"""The snn2chip command line: outputs, exit codes, one-line errors, help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest

from snn2chip.arguments import build_parser
from snn2chip.cli import COMMANDS, main
from tests.conftest import BRAILLE, SINABS, chain

SNN2CHIP = Path(sys.executable).parent / "snn2chip"


def cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_json_lists_the_15_sinabs_nodes_with_shapes(capsys):
    code, out, err = cli(capsys, "inspect", SINABS, "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert [n["name"] for n in report["nodes"]] == ["input", *map(str, range(13)), "output"]
    assert [n["type"] for n in report["nodes"]][:4] == ["Input", "Conv2d", "IF", "Conv2d"]
    assert report["nodes"][1]["input_shape"] == [2, 34, 34] and report["nodes"][1]["output_shape"] == [16, 16, 16]
    assert report["nodes"][9]["output_shape"] == [128]
    assert report["nodes"][1]["params"] == 16 * 2 * 5 * 5 + 16
    assert report["totals"] == {"nodes": 15, "edges": 14, "params": 66800, "neurons": 8970}
    assert report["joins"] == [] and report["recurrent_edges"] == []


def test_inspect_table_shows_joins_and_recurrence(capsys):
    code, out, _ = cli(capsys, "inspect", BRAILLE)
    assert code == 0
    assert "lif1.lif    CubaLIF  38     38         266       38" in out
    assert "  lif1.lif <- lif1.w_rec + fc1" in out
    assert "  lif1.w_rec -> lif1.lif" in out
    assert out.rstrip().endswith("totals: 7 nodes, 7 edges, 2,564 parameters, 45 neurons")


def test_garbage_file_gives_one_line_and_exit_1(tmp_path):
    garbage = tmp_path / "garbage.nir"
    garbage.write_bytes(b"\x00\x01 definitely not hdf5")
    done = subprocess.run([SNN2CHIP, "inspect", garbage], capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"snn2chip: error: {garbage}: not a NIR file: it is not HDF5 (NIR files are HDF5 written by nir.write)\n"


def test_model_errors_exit_1_without_traceback(capsys, tmp_nir):
    weight = np.eye(4)
    weight[0, 0] = np.nan
    path = tmp_nir(*chain(("fc", nir.Affine(weight=weight, bias=np.zeros(4)))))
    code, out, err = cli(capsys, "inspect", path)
    assert code == 1 and out == ""
    assert err == f"snn2chip: error: {path}: node 'fc': parameter 'weight' has 1 NaN or infinite value\n"


@pytest.mark.parametrize("command", ["inspect", "run", "compile", "verify", "convert", "targets"])
def test_every_command_has_help(capsys, command):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: snn2chip {command}")


def test_top_level_help_lists_every_command():
    text = build_parser(COMMANDS).format_help()
    for command in ("inspect", "run", "compile", "verify", "convert", "targets"):
        assert f"    {command}" in text


def test_run_writes_outputs(capsys, tmp_path):
    x = (np.random.default_rng(0).random((5, 2, 34, 34)) < 0.3).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    out_file = tmp_path / "out" / "result.npz"
    code, out, err = cli(capsys, "run", SINABS, "--input", tmp_path / "in.npz", "--steps", 4,
                         "--record", "3", "output", "-o", out_file)
    assert code == 0, err
    with np.load(out_file) as result:
        assert result["3"].shape == (5, 4, 16, 16, 16) and result["output"].shape == (5, 4, 10)
        assert float(result["dt"]) == 1.0
    assert f"wrote {out_file} (float backend, dt 1 from default)" in out
    assert list(tmp_path.joinpath("out").iterdir()) == [out_file]


def test_run_failure_leaves_no_output(capsys, tmp_path):
    np.savez(tmp_path / "in.npz", x=np.zeros((2, 12)))
    out_file = tmp_path / "result.npz"
    code, _, err = cli(capsys, "run", BRAILLE, "--input", tmp_path / "in.npz", "--steps", 3, "-o", out_file)
    assert code == 1 and "node 'lif1.lif': dt/tau_mem = 1000 > 1 at dt = 1" in err
    assert not out_file.exists()
    code, _, err = cli(capsys, "run", BRAILLE, "--input", tmp_path / "in.npz", "--steps", 3, "--dt", "1e-4", "-o", out_file)
    assert code == 0 and out_file.exists()


def test_run_input_file_errors(capsys, tmp_path):
    np.savez(tmp_path / "wrong.npz", y=np.zeros(3))
    code, _, err = cli(capsys, "run", SINABS, "--input", tmp_path / "wrong.npz", "--steps", 2)
    assert code == 1
    assert err == (f"snn2chip: error: {tmp_path / 'wrong.npz'}: no array 'x' (nor arrays named after the Input "
                   "nodes ['input']) in the file\n")
    code, _, err = cli(capsys, "run", SINABS, "--input", tmp_path / "absent.npz", "--steps", 2)
    assert code == 1 and err == f"snn2chip: error: {tmp_path / 'absent.npz'}: no such file\n"


def test_packing_is_chosen_on_the_command_line_and_reported(capsys, tmp_path):
    from snn2chip.chip import fill
    assert build_parser(COMMANDS).parse_args(["compile", "m.nir", "-o", "b"]).packing == "cores"
    code, _, err = cli(capsys, "compile", SINABS, "--packing", "local", "-o", tmp_path / "b")
    assert code == 0, err
    assert json.loads((tmp_path / "b" / "report.json").read_text())["partition"]["packing"] == "local"
    with pytest.raises(SystemExit) as info:
        main(["compile", str(SINABS), "--packing", "tight", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "argument --packing: invalid choice: 'tight' (choose from " in err
    listed = err.split("choose from ")[1].split(")")[0]
    assert tuple(c.strip(" '") for c in listed.split(",")) == fill.PACKINGS  # quoted or not, as argparse versions do
    assert not (tmp_path / "x").exists()
