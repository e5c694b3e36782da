"""Bad input, as a new user types it: every case exits 1 or 2 with one line naming the file (or the
option), no traceback, no output left behind, and every file that was there before unchanged byte
for byte. Output-path cases check what snn2chip may and may not replace."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import h5py
import nir
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from snn2chip import memory
from snn2chip.cli import main
from tests.conftest import write_nir


# --- a small workspace: model, data, ANN, calibration --------------------------------------


def model_nodes(conv: dict | None = None, input_shape=(1, 4, 4)) -> tuple[dict, list]:
    """input (1x4x4) -> conv (2 channels) -> IF -> flatten -> affine (3) -> IF -> output."""
    rng = np.random.default_rng(0)
    conv_args = dict(input_shape=tuple(input_shape[1:]), weight=rng.uniform(0.2, 1, (2, 1, 3, 3)), stride=1, padding=1, dilation=1,
                     groups=1, bias=np.zeros(2))
    conv_args.update(conv or {})
    c, h, w = 2, input_shape[1], input_shape[2]
    nodes = {
        "input": nir.Input(input_type={"input": np.array(input_shape)}),
        "conv": nir.Conv2d(**conv_args),
        "lif": nir.IF(r=np.ones((c, h, w)), v_threshold=np.ones((c, h, w)), v_reset=np.zeros((c, h, w))),
        "flat": nir.Flatten(input_type={"input": np.array([c, h, w])}, start_dim=0, end_dim=-1),
        "fc": nir.Affine(weight=rng.uniform(-0.5, 1, (3, c * h * w)), bias=np.zeros(3)),
        "out": nir.IF(r=np.ones(3), v_threshold=np.ones(3), v_reset=np.zeros(3)),
        "output": nir.Output(output_type={"output": np.array([3])}),
    }
    names = list(nodes)
    return nodes, list(zip(names, names[1:]))


def ann(path: Path, initializer=None) -> Path:
    """A tiny ReLU ANN in ONNX: x (batch, 4) -> Gemm (3) -> Relu."""
    weight = initializer or helper.make_tensor("w", TensorProto.FLOAT, [3, 4], np.linspace(-1, 1, 12).tolist())
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])], "ann",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def npy_header_only(path: Path, shape: tuple) -> Path:
    """An .npy file whose header declares ``shape`` (float64) but that holds no data."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return path


@pytest.fixture
def ws(tmp_path, monkeypatch):
    """A folder (the current one) holding m.nir, x.npy (binary spikes), d.npz (x, y), ann.onnx, c.npy."""
    monkeypatch.chdir(tmp_path)
    write_nir(tmp_path / "m.nir", *model_nodes())
    rng = np.random.default_rng(1)
    x = (rng.random((6, 1, 4, 4)) < 0.5).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]))
    ann(tmp_path / "ann.onnx")
    np.save(tmp_path / "c.npy", rng.random((16, 4)).astype(np.float32))
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (bytes) and folder (None) under ``root``, hidden ones included."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            result[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            result[os.path.relpath(os.path.join(dirpath, f), root)] = Path(dirpath, f).read_bytes()
    return result


def run_cli(capsys, argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(capsys, root: Path, argv, code: int, line: str) -> None:
    """``argv`` exits with ``code`` and exactly the stderr line ``line`` (a regex), leaving every
    file under ``root`` as it was and nothing new."""
    before = snapshot(root)
    got, _, err = run_cli(capsys, argv)
    assert "Traceback" not in err
    assert got == code and err.count("\n") == 1, err
    assert __import__("re").fullmatch(line, err.rstrip("\n")), err
    assert snapshot(root) == before


# --- output safety ------------------------------------------------------------------------


def test_output_folder_holding_the_model_is_refused_and_kept(capsys, ws):
    proj = ws / "proj"
    proj.mkdir()
    (proj / "m.nir").write_bytes((ws / "m.nir").read_bytes())
    (proj / "notes.txt").write_text("mine")
    assert_refused(capsys, ws, ["compile", "proj/m.nir", "-o", "proj"], 1,
                   r"snn2chip: error: proj: holds the input proj/m.nir: the output would replace it; choose another output name")


@pytest.mark.parametrize("out", [".", "", "./", ".."])
def test_current_folder_or_empty_name_is_refused(capsys, ws, out):
    where = "option -o: the output name is empty" if out == "" else \
        rf"{out}: is the current folder or a folder above it: name a new folder for the output"
    assert_refused(capsys, ws, ["compile", "m.nir", "-o", out], 1, rf"snn2chip: error: {where}".replace(".", r"\."))


def test_folder_of_user_files_is_refused(capsys, ws):
    (ws / "mine").mkdir()
    (ws / "mine" / "thesis.tex").write_text("precious")
    assert_refused(capsys, ws, ["compile", "m.nir", "-o", "mine"], 1,
                   r"snn2chip: error: mine: exists and is not a snn2chip build folder \(no \.snn2chip-output file\): "
                   r"snn2chip replaces only its own outputs; choose a new folder or remove this one")


def test_previous_build_is_replaced_but_not_with_a_user_file_in_it(capsys, ws):
    code, _, err = run_cli(capsys, ["compile", "m.nir", "-o", "b", "--steps", "4"])
    assert code == 0, err
    first = json.loads((ws / "b" / ".snn2chip-output").read_text())
    assert first["kind"] == "build" and "network.h5" in first["files"]
    code, _, err = run_cli(capsys, ["compile", "m.nir", "-o", "b", "--steps", "8"])  # a rebuild replaces it
    assert code == 0, err
    assert sorted(p.name for p in ws.iterdir() if p.name.startswith(".")) == []  # no temporaries left
    (ws / "b" / "my_notes.md").write_text("mine")
    assert_refused(capsys, ws, ["compile", "m.nir", "-o", "b"], 1,
                   r"snn2chip: error: b: holds files snn2chip did not write \(my_notes\.md\): move them away or "
                   r"choose a new folder")
    (ws / "b" / "my_notes.md").unlink()
    assert_refused(capsys, ws, ["verify", "m.nir", "--data", "d.npz", "--steps", "4", "-o", "b"], 1,
                   r"snn2chip: error: b: is a snn2chip build folder, not a verify folder: choose another output name")


def test_output_paths_that_cannot_be_made(capsys, ws):
    assert_refused(capsys, ws, ["compile", "m.nir", "-o", "x.npy"], 1,
                   r"snn2chip: error: x\.npy: exists and is not a folder: choose another output name")
    assert_refused(capsys, ws, ["compile", "m.nir", "-o", "x.npy/build"], 1,
                   r"snn2chip: error: x\.npy/build: cannot be created: x\.npy is not a folder")
    assert_refused(capsys, ws, ["run", "m.nir", "--input", "x.npy", "--steps", "2", "-o", "x.npy/out.npz"], 1,
                   r"snn2chip: error: x\.npy/out\.npz: cannot be created: x\.npy is not a folder")
    assert_refused(capsys, ws, ["compile", "m.nir", "-o", "/proc/snn2chip-test/build"], 1,
                   r"snn2chip: error: /proc/snn2chip-test/build: cannot be (created|written): .*")
    assert_refused(capsys, ws, ["run", "m.nir", "--input", "x.npy", "--steps", "2", "-o", "/proc/out.npz"], 1,
                   r"snn2chip: error: /proc/out\.npz: cannot be (created|written): .*")


def test_run_writes_exactly_the_named_file_and_replaces_only_its_own(capsys, ws):
    code, out, err = run_cli(capsys, ["run", "m.nir", "--input", "x.npy", "--steps", "3", "-o", "results"])
    assert code == 0, err
    assert "wrote results (float backend" in out
    with np.load(ws / "results") as f:  # the name given, not results.npz, and not empty
        assert f["output"].shape == (6, 3, 3) and json.loads(str(f["snn2chip"]))["format"] == "snn2chip-run"
    assert not (ws / "results.npz").exists() and not [p for p in ws.iterdir() if p.name.startswith(".")]
    code, _, err = run_cli(capsys, ["run", "m.nir", "--input", "x.npy", "--steps", "4", "-o", "results"])
    assert code == 0, err  # an earlier run output is replaced
    assert_refused(capsys, ws, ["run", "m.nir", "--input", "x.npy", "--steps", "2", "-o", "x.npy"], 1,
                   r"snn2chip: error: x\.npy: is the input x\.npy: the output would replace it; choose another output name")
    assert_refused(capsys, ws, ["run", "m.nir", "--input", "x.npy", "--steps", "2", "-o", "c.npy"], 1,
                   r"snn2chip: error: c\.npy: exists and was not written by snn2chip: snn2chip replaces only its own "
                   r"outputs; choose another name or remove the file")
    assert_refused(capsys, ws, ["run", "m.nir", "--input", "x.npy", "--steps", "2", "-o", "."], 1,
                   r"snn2chip: error: \.: is a folder: name a file for the output")


def test_convert_never_overwrites_its_input_or_a_foreign_file(capsys, ws):
    assert_refused(capsys, ws, ["convert", "ann.onnx", "--calib", "c.npy", "-o", "ann.onnx"], 1,
                   r"snn2chip: error: ann\.onnx: is the input ann\.onnx: the output would replace it; choose another "
                   r"output name")
    assert_refused(capsys, ws, ["convert", "ann.onnx", "--calib", "c.npy", "-o", "m.nir"], 1,
                   r"snn2chip: error: m\.nir: exists and was not written by snn2chip: .*")
    code, _, err = run_cli(capsys, ["convert", "ann.onnx", "--calib", "c.npy", "-o", "snn.nir"])
    assert code == 0, err
    code, _, err = run_cli(capsys, ["convert", "ann.onnx", "--calib", "c.npy", "-o", "snn.nir", "--percentile", "99"])
    assert code == 0, err  # its own earlier output is replaced


def test_golden_file_is_written_under_its_name_and_checked(capsys, ws):
    args = ["verify", "m.nir", "--data", "d.npz", "--steps", "4", "--min-agreement", "0", "--golden", "gold"]
    code, _, err = run_cli(capsys, [*args, "--update-golden"])
    assert code == 0, err
    assert (ws / "gold").stat().st_size > 0 and not (ws / "gold.npz").exists()
    code, out, err = run_cli(capsys, args)
    assert code == 0 and "PASS golden: outputs equal gold" in out, err
    assert_refused(capsys, ws, [*args[:-1], "x.npy", "--update-golden"], 1,
                   r"snn2chip: error: x\.npy: exists and was not written by snn2chip: .*")


# --- one-line errors for bad input: (argv maker, exit code, stderr line) ----------------------


def _nir(ws: Path, name: str = "bad.nir", conv: dict | None = None, input_shape=(1, 4, 4), metadata=None) -> str:
    write_nir(ws / name, *model_nodes(conv, input_shape), metadata=metadata)
    return name


def _set(path: Path, key: str, value) -> None:
    """Set dataset ``key`` of an HDF5 file to ``value`` (created if absent)."""
    with h5py.File(path, "r+") as f:
        if key in f:
            del f[key]
        f.create_dataset(key, data=value)


def _patched(ws: Path, key: str, value, name: str = "bad.nir") -> str:
    """The model with dataset ``key`` set to ``value``."""
    _nir(ws, name)
    _set(ws / name, key, value)
    return name


def _regrouped(ws: Path, key: str, as_group: bool, name: str = "bad.nir") -> str:
    """The model with entry ``key`` replaced by an empty group (as_group) or a dataset."""
    _nir(ws, name)
    with h5py.File(ws / name, "r+") as f:
        del f[key]
        f.create_group(key) if as_group else f.create_dataset(key, data=np.arange(3.0))
    return name


def _wide(ws: Path, input_shape: tuple, padding: int) -> str:
    """input -> 3x3 conv (``padding``) -> IF -> output, with per-channel neuron parameters: a
    small file for a huge network."""
    c, h, w = 2, input_shape[1] + 2 * padding - 2, input_shape[2] + 2 * padding - 2
    nodes = {
        "input": nir.Input(input_type={"input": np.array(input_shape)}),
        "conv": nir.Conv2d(input_shape=input_shape[1:], weight=np.ones((c, 1, 3, 3)), stride=1, padding=padding,
                           dilation=1, groups=1, bias=np.zeros(c)),
        "lif": nir.IF(r=np.ones((c, 1, 1)), v_threshold=np.ones((c, 1, 1)), v_reset=np.zeros((c, 1, 1))),
        "output": nir.Output(output_type={"output": np.array([c, h, w])}),
    }
    names = list(nodes)
    write_nir(ws / "bad.nir", nodes, list(zip(names, names[1:])))
    return "bad.nir"


def _huge_weight(ws: Path) -> str:
    _nir(ws)
    with h5py.File(ws / "bad.nir", "r+") as f:
        del f["node/nodes/fc/weight"]
        f.create_dataset("node/nodes/fc/weight", shape=(100_000, 50_000), dtype="f8", chunks=(1000, 1000))
    return "bad.nir"


def _tampered_build(ws: Path, population: str, field: str, value: str) -> str:
    assert main(["compile", "m.nir", "-o", "b", "--steps", "4"]) == 0
    with h5py.File(ws / "b" / "network.h5", "r+") as f:
        f[f"populations/{population}"].attrs[field] = value
    return "b"


def _golden(ws: Path, arrays: dict | None) -> str:
    if arrays is None:
        (ws / "g.npz").write_bytes(b"")
    else:
        np.savez(ws / "g.npz", **arrays)
    return "g.npz"


def _onnx_short_initializer(ws: Path) -> str:
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[3000, 4000], raw_data=b"\x00" * 16)
    ann(ws / "short.onnx", tensor)
    return "short.onnx"


RUN = ["run", "m.nir", "--input", "x.npy", "--steps", "2"]
VERIFY = ["verify", "m.nir", "--data", "d.npz", "--steps", "4"]
CASES: dict[str, tuple[Callable[[Path], list], int, str]] = {
    # silent wrong results before
    "batch size -1": (lambda ws: [*RUN, "--batch-size", "-1"], 2,
                      r"snn2chip run: error: argument --batch-size: must be >= 1, got -1 \(see 'snn2chip run --help'\)"),
    "binary input 0.7": (lambda ws: (main(["compile", "m.nir", "-o", "b", "--steps", "2"]),
                                     np.save(ws / "f.npy", np.full((2, 1, 4, 4), 0.7)),
                                     ["run", "b", "--input", "f.npy", "--steps", "2"])[-1], 1,
                         r"snn2chip: error: f\.npy: node 'input': input is binary spikes: every value must be 0 or 1, "
                         r"found 0\.7 .*"),
    "NaN input (sim)": (lambda ws: (main(["compile", "m.nir", "-o", "b", "--steps", "2"]),
                                    np.save(ws / "f.npy", np.full((2, 1, 4, 4), np.nan)),
                                    ["run", "b", "--input", "f.npy", "--steps", "2"])[-1], 1,
                        r"snn2chip: error: f\.npy: the array contains NaN or infinite values"),
    "NaN input (float)": (lambda ws: (np.savez(ws / "f.npz", x=np.full((2, 1, 4, 4), np.inf)),
                                      ["run", "m.nir", "--input", "f.npz", "--steps", "2"])[-1], 1,
                          r"snn2chip: error: f\.npz: 'x' contains NaN or infinite values"),
    "complex input": (lambda ws: (np.save(ws / "f.npy", np.ones((2, 1, 4, 4), complex)),
                                  ["run", "m.nir", "--input", "f.npy", "--steps", "2"])[-1], 1,
                      r"snn2chip: error: f\.npy: the array has dtype complex128; expected real numbers"),
    "complex weights": (lambda ws: [*["compile", _patched(ws, "node/nodes/fc/weight", np.ones((3, 32), complex))],
                                    "-o", "out"], 1,
                        r"snn2chip: error: bad\.nir: node 'fc': parameter 'weight' holds complex numbers; expected real "
                        r"numbers"),
    "conv input_shape contradicts": (lambda ws: ["compile", _nir(ws, conv={"input_shape": (5, 5)}), "-o", "out"], 1,
                                     r"snn2chip: error: bad\.nir: node 'conv': Conv2d declares input_shape 5x5 but "
                                     r"receives 1x4x4"),
    "label 42": (lambda ws: (np.savez(ws / "l.npz", x=np.load(ws / "x.npy"), y=np.array([0, 1, 2, 42, 0, 1])),
                             ["verify", "m.nir", "--data", "l.npz"])[-1], 1,
                 r"snn2chip: error: l\.npz: 'y' holds label 42, but the model's output has 3 classes \(labels 0\.\.2\)"),
    # malformed NIR files
    "node as a dataset": (lambda ws: ["inspect", _regrouped(ws, "node/nodes/fc", as_group=False)], 1,
                          r"snn2chip: error: bad\.nir: node 'fc': stored as a dataset; a NIR node is an HDF5 group"),
    "nodes as a dataset": (lambda ws: ["inspect", _regrouped(ws, "node/nodes", as_group=False)], 1,
                           r"snn2chip: error: bad\.nir: 'nodes' is a dataset; NIR stores a graph's nodes as a group"),
    "odd edge entries": (lambda ws: ["inspect", _patched(ws, "node/edges", np.array([b"input", b"conv", b"lif"]))], 1,
                         r"snn2chip: error: bad\.nir: 'edges' has shape \(3,\); expected pairs of node names \(n, 2\)"),
    "edges as numbers": (lambda ws: ["inspect", _patched(ws, "node/edges", np.arange(4.0))], 1,
                         r"snn2chip: error: bad\.nir: 'edges' holds float64 values; expected pairs of node names"),
    "metadata as an array": (lambda ws: ["inspect", _patched(ws, "node/metadata", np.arange(3))], 1,
                             r"snn2chip: error: bad\.nir: 'metadata' is a dataset; NIR stores metadata as a group"),
    "weights as strings": (lambda ws: ["inspect", _patched(ws, "node/nodes/fc/weight", np.array([b"a", b"b"]))], 1,
                           r"snn2chip: error: bad\.nir: node 'fc': parameter 'weight' holds text; expected numbers"),
    "type is a group": (lambda ws: ["inspect", _regrouped(ws, "node/nodes/fc/type", as_group=True)], 1,
                        r"snn2chip: error: bad\.nir: node 'fc': not a NIR node: it has no 'type' entry \(a string\)"),
    "zero-sized input": (lambda ws: ["inspect", _patched(ws, "node/nodes/input/shape", np.array([1, 0, 4]))],
                         1, r"snn2chip: error: bad\.nir: node 'input': Input declares shape \[1, 0, 4\]: .*"),
    "scalar input": (lambda ws: ["inspect", _patched(ws, "node/nodes/input/shape", np.zeros(0, int))], 1,
                     r"snn2chip: error: bad\.nir: node 'input': Input declares shape \[\]: an input needs at least "
                     r"one axis and no empty axis"),
    "shape of strings": (lambda ws: ["inspect", _patched(ws, "node/nodes/input/shape", np.array([b"x"]))], 1,
                         r"snn2chip: error: bad\.nir: node 'input': .*"),
    "1e9-neuron input": (lambda ws: ["compile", _wide(ws, (1, 31623, 31623), 1), "-o", "out"], 1,
                         r"snn2chip: error: bad\.nir: (has [\d,]+ neurons; system 'hala_point' .*|compiling it .* needs "
                         r".*, more than the memory budget .*)"),
    "huge declared weight": (lambda ws: ["inspect", _huge_weight(ws)], 1,
                             r"snn2chip: error: bad\.nir: reading its datasets \(largest: 'node/nodes/fc/weight', "
                             r"shape \(100000, 50000\)\) needs 37\.3 GiB, more than the memory budget .*"),
    "conv needing more cores than any system": (
        lambda ws: ["compile", _wide(ws, (1, 4, 4), 9000), "--target", "loihi1", "-o", "out"], 1,
        r"snn2chip: error: bad\.nir: has 648,144,008 neurons; system 'pohoiki_springs' of target 'loihi1' \(768 chips x 128 "
        r"cores x 1,024 neurons\), the largest, holds 100,663,296"),
    "conv stride 0": (lambda ws: ["inspect", _patched(ws, "node/nodes/conv/stride", np.array([0, 0]))], 1,
                      r"snn2chip: error: bad\.nir: node 'conv': Conv2d stride must be at least 1, got \[0, 0\]"),
    "conv dilation 0": (lambda ws: ["inspect", _patched(ws, "node/nodes/conv/dilation", np.array([0, 0]))], 1,
                        r"snn2chip: error: bad\.nir: node 'conv': Conv2d dilation must be at least 1, got \[0, 0\]"),
    "conv padding -1": (lambda ws: ["inspect", _patched(ws, "node/nodes/conv/padding", np.array([-1, -1]))], 1,
                        r"snn2chip: error: bad\.nir: node 'conv': Conv2d padding must be at least 0, got \[-1, -1\]"),
    "conv groups 0": (lambda ws: ["inspect", _patched(ws, "node/nodes/conv/groups", 0)], 1,
                      r"snn2chip: error: bad\.nir: node 'conv': Conv2d groups must be at least 1, got 0"),
    "pool stride 0": (lambda ws: (write_nir(ws / "bad.nir", *pooled()),
                                  _set(ws / "bad.nir", "node/nodes/pool/stride", np.array([0, 0])),
                                  ["inspect", "bad.nir"])[-1], 1,
                      r"snn2chip: error: bad\.nir: node 'pool': SumPool2d stride must be at least 1, got \[0, 0\]"),
    "metadata dt string": (lambda ws: ["inspect", _nir(ws, metadata={"dt": "fast"})], 1,
                           r"snn2chip: error: bad\.nir: metadata 'dt' must be a positive number \(seconds or steps\), got "
                           r"'fast'"),
    "metadata dt array": (lambda ws: ["inspect", _nir(ws, metadata={"dt": np.array([1.0, 2.0])})], 1,
                          r"snn2chip: error: bad\.nir: metadata 'dt' must be a positive number .*"),
    "metadata time_steps string": (lambda ws: ["inspect", _nir(ws, metadata={"time_steps": "4"})], 1,
                                   r"snn2chip: error: bad\.nir: metadata 'time_steps' must be a positive integer, "
                                   r"got '4'"),
    "metadata time_steps 0": (lambda ws: ["inspect", _nir(ws, metadata={"time_steps": 0})], 1,
                              r"snn2chip: error: bad\.nir: metadata 'time_steps' must be a positive integer, got 0"),
    "metadata time_steps 1e9": (lambda ws: ["verify", _nir(ws, metadata={"time_steps": 10**9}), "--data", "d.npz"], 1,
                                r"snn2chip: error: bad\.nir: verifying 6 samples x 1000000000 steps needs .* TiB, more "
                                r"than the memory budget .*; the largest consumer is .*; use fewer --samples or --steps"),
    "metadata reset not text": (lambda ws: ["inspect", _nir_reset(ws)], 1,
                                r"snn2chip: error: bad\.nir: node 'lif': metadata 'reset' must be a string .*"),
    # data files
    "256 GB --input": (lambda ws: ["run", "m.nir", "--input", npy_header_only(ws / "big.npy", (2**35, 1)).name,
                                   "--steps", "2"], 1,
                       r"snn2chip: error: big\.npy: the arrays its headers declare needs 256\.0 GiB, more than the "
                       r"memory budget .*"),
    "256 GB --data": (lambda ws: ["verify", "m.nir", "--data", big_npz(ws)], 1,
                      r"snn2chip: error: big\.npz: the arrays its headers declare needs 256\.0 GiB, .*"),
    "256 GB --calib": (lambda ws: ["convert", "ann.onnx", "--calib", npy_header_only(ws / "big.npy", (2**35, 1)).name,
                                   "-o", "s.nir"], 1,
                       r"snn2chip: error: big\.npy: the arrays its headers declare needs 256\.0 GiB, .*"),
    "truncated npy": (lambda ws: (Path(ws / "t.npy").write_bytes((ws / "x.npy").read_bytes()[:200]),
                                  ["run", "m.nir", "--input", "t.npy", "--steps", "2"])[-1], 1,
                      r"snn2chip: error: t\.npy: not a readable \.npy or \.npz file .*"),
    "empty calib": (lambda ws: (np.save(ws / "e.npy", np.zeros((0, 4), np.float32)),
                                ["convert", "ann.onnx", "--calib", "e.npy", "-o", "s.nir"])[-1], 1,
                    r"snn2chip: error: e\.npy: the array has shape \(0, 4\): no samples"),
    "NaN calib": (lambda ws: (np.save(ws / "n.npy", np.full((4, 4), np.nan, np.float32)),
                              ["convert", "ann.onnx", "--calib", "n.npy", "-o", "s.nir"])[-1], 1,
                  r"snn2chip: error: n\.npy: the array contains NaN or infinite values"),
    "NaN compile --calib": (lambda ws: (np.save(ws / "n.npy", np.full((4, 1, 4, 4), np.nan, np.float32)),
                                        ["compile", "m.nir", "--calib", "n.npy", "-o", "out"])[-1], 1,
                            r"snn2chip: error: n\.npy: the array contains NaN or infinite values"),
    # options out of range
    "run --steps 0": (lambda ws: ["run", "m.nir", "--input", "x.npy", "--steps", "0"], 2,
                      r"snn2chip run: error: argument --steps: must be >= 1, got 0 \(see 'snn2chip run --help'\)"),
    "compile --steps -3": (lambda ws: ["compile", "m.nir", "-o", "out", "--steps", "-3"], 2,
                           r"snn2chip compile: error: argument --steps: must be >= 1, got -3 .*"),
    "verify --steps 0": (lambda ws: [*VERIFY[:-1], "0"], 2, r"snn2chip verify: error: argument --steps: must be >= 1, got 0 .*"),
    "--check random:abc": (lambda ws: ["compile", "m.nir", "-o", "out", "--check", "random:abc"], 2,
                           r"snn2chip compile: error: argument --check: expected an integer >= 1, got 'abc' .*"),
    "--check random:0": (lambda ws: ["compile", "m.nir", "-o", "out", "--check", "random:0"], 2,
                         r"snn2chip compile: error: argument --check: must be >= 1, got 0 .*"),
    "--input-scale 0": (lambda ws: ["compile", "m.nir", "-o", "out", "--input-scale", "0"], 2,
                        r"snn2chip compile: error: argument --input-scale: expected a finite number > 0, got '0' .*"),
    "--input-scale nan": (lambda ws: ["compile", "m.nir", "-o", "out", "--input-scale", "nan"], 2,
                          r"snn2chip compile: error: argument --input-scale: expected a finite number > 0, got 'nan' .*"),
    "--dt -1": (lambda ws: [*RUN, "--dt", "-1"], 2, r"snn2chip run: error: argument --dt: expected a finite number > 0, .*"),
    "--input-bits 40": (lambda ws: ["compile", "m.nir", "-o", "out", "--input-bits", "40"], 2,
                        r"snn2chip compile: error: argument --input-bits: must be 0 \(binary spikes\) or 2\.\.24 .*"),
    "--min-agreement 2": (lambda ws: [*VERIFY, "--min-agreement", "2"], 2,
                          r"snn2chip verify: error: argument --min-agreement: expected a finite number \[0, 1\], .*"),
    "--percentile 0": (lambda ws: ["convert", "ann.onnx", "--calib", "c.npy", "-o", "s.nir", "--percentile", "0"], 2,
                       r"snn2chip convert: error: argument --percentile: expected a finite number \(0, 100\], got '0' .*"),
    "--samples 0": (lambda ws: [*VERIFY, "--samples", "0"], 2, r"snn2chip verify: error: argument --samples: must be >= 1.*"),
    "--lava-samples > samples": (lambda ws: [*VERIFY, "--samples", "2", "--lava-samples", "3"], 1,
                                 r"snn2chip: error: option --lava-samples: asks for 3 samples; verify runs 2"),
    "unknown --system": (lambda ws: ["compile", "m.nir", "-o", "out", "--system", "moon"], 1,
                         r"snn2chip: error: option --system: target 'loihi2' has no system 'moon' .*"),
    "--record a reserved name": (lambda ws: [*RUN, "--record", "dt", "-o", "o.npz"], 1,
                                 r"snn2chip: error: option --record: recorded name 'dt' clashes with an entry snn2chip "
                                 r"stores beside the outputs"),
    "--record unknown": (lambda ws: [*RUN, "--record", "nope"], 1,
                         r"snn2chip: error: option --record: cannot record node 'nope': no such node"),
    # golden files, build folders, target files, ONNX
    "golden empty": (lambda ws: [*VERIFY, "--golden", _golden(ws, None)], 1,
                     r"snn2chip: error: g\.npz: not a readable \.npy or \.npz file .*"),
    "golden missing keys": (lambda ws: [*VERIFY, "--golden", _golden(ws, {"meta": np.array(json.dumps(
        {"format": "snn2chip-golden", "version": 1}))})], 1,
        r"snn2chip: error: g\.npz: broken golden file: meta key 'model_sha256' is None; expected a str"),
    "golden as a list": (lambda ws: (np.save(ws / "g.npy", np.arange(3)), [*VERIFY, "--golden", "g.npy"])[-1], 1,
                         r"snn2chip: error: g\.npy: not a golden file: it is a \.npy array, not an \.npz archive"),
    "golden without meta": (lambda ws: [*VERIFY, "--golden", _golden(ws, {"predictions": np.arange(3)})], 1,
                            r"snn2chip: error: g\.npz: not a golden file: no readable 'meta' entry .*"),
    "golden newer": (lambda ws: [*VERIFY, "--golden", _golden(ws, {"meta": np.array(json.dumps(
        {"format": "snn2chip-golden", "version": 99}))})], 1,
        r"snn2chip: error: g\.npz: broken golden file: meta key 'model_sha256' is None; expected a str"),
    "build with a string vth": (lambda ws: ["run", _tampered_build(ws, "lif", "vth", '"abc"'), "--input", "x.npy",
                                            "--steps", "2"], 1,
                                r"snn2chip: error: b/network\.h5: node 'lif': field 'vth' is 'abc'; expected an integer "
                                r"in \[0, 131071\]"),
    "build with du 5000": (lambda ws: ["run", _tampered_build(ws, "lif", "du", "5000"), "--input", "x.npy",
                                       "--steps", "2"], 1,
                           r"snn2chip: error: b/network\.h5: node 'lif': field 'du' is 5000; expected an integer in "
                           r"\[0, 4095\]"),
    "target file not UTF-8": (lambda ws: (Path(ws / "t.toml").write_bytes(b"name = \xff\xfe"),
                                          ["compile", "m.nir", "-o", "out", "--target-file", "t.toml"])[-1], 1,
                              r"snn2chip: error: t\.toml: not a text file in UTF-8 \(byte 7\); target files are TOML"),
    "target file of a newer format": (lambda ws: (Path(ws / "t.toml").write_text("format_version = 9\n"),
                                                  ["targets", "--target-file", "t.toml"])[-1], 1,
                                      r"snn2chip: error: t\.toml: key 'format_version' is 9; this snn2chip reads "
                                      r"target files of format 1\.\.1"),
    "ONNX initializer short of its data": (lambda ws: ["convert", _onnx_short_initializer(ws), "--calib", "c.npy",
                                                       "-o", "s.nir"], 1,
                                           r"snn2chip: error: short\.onnx: initializer 'w' of shape \[3000, 4000\] does "
                                           r"not hold the data it declares .*"),
}


def pooled() -> tuple[dict, list]:
    nodes, _ = model_nodes()
    nodes = {"input": nodes["input"], "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                                            padding=np.array([0, 0])),
             "output": nir.Output(output_type={"output": np.array([1, 2, 2])})}
    return nodes, [("input", "pool"), ("pool", "output")]


def big_npz(ws: Path) -> str:
    npy_header_only(ws / "x_part.npy", (2**35, 1))
    import zipfile

    with zipfile.ZipFile(ws / "big.npz", "w") as z:
        z.write(ws / "x_part.npy", "x.npy")
    (ws / "x_part.npy").unlink()
    return "big.npz"


def _nir_reset(ws: Path) -> str:
    nodes, edges = model_nodes()
    nodes["lif"].metadata = {"reset": np.array([1, 2])}
    write_nir(ws / "bad.nir", nodes, edges)
    return "bad.nir"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_naming_the_place(capsys, ws, case):
    make, code, line = CASES[case]
    argv = make(ws)
    capsys.readouterr()
    assert_refused(capsys, ws, argv, code, line)


# --- the boundary ---------------------------------------------------------------------------


def test_an_internal_error_is_one_line_asking_for_a_report(capsys, ws, monkeypatch):
    from snn2chip.frontend import summary

    def broken(graph):
        raise KeyError("population 'x'")

    monkeypatch.setattr(summary, "summarize", broken)
    code, out, err = run_cli(capsys, ["inspect", "m.nir"])
    assert (code, out) == (3, "")
    assert err == ("snn2chip: internal error: KeyError: \"population 'x'\" (a bug in snn2chip; rerun with --debug for "
                   "the traceback, and please report it)\n")
    with pytest.raises(KeyError):
        main(["inspect", "m.nir", "--debug"])


def test_memory_budget_comes_from_the_environment(capsys, ws, monkeypatch):
    monkeypatch.setenv(memory.ENV, "1K")
    assert_refused(capsys, ws, ["inspect", "m.nir"], 1,
                   r"snn2chip: error: m\.nir: reading its datasets \(largest: .*\) needs .*, more than the memory "
                   r"budget of 1\.0 KiB .*")
    monkeypatch.setenv(memory.ENV, "lots")
    assert_refused(capsys, ws, ["inspect", "m.nir"], 1,
                   r"snn2chip: error: option SNN2CHIP_MEMORY_LIMIT: environment variable SNN2CHIP_MEMORY_LIMIT='lots' "
                   r"is not a positive size .*")


def test_simulation_beyond_the_budget_names_its_largest_consumer(capsys, ws, monkeypatch):
    assert main(["compile", "m.nir", "-o", "b", "--steps", "2"]) == 0
    monkeypatch.setenv(memory.ENV, "8K")
    assert_refused(capsys, ws, ["run", "b", "--input", "x.npy", "--steps", "2"], 1,
                   r"snn2chip: error: m\.nir: simulating 6 samples x 2 steps needs [\d.]+ KiB, more than the memory "
                   r"budget of 8\.0 KiB .*; the largest consumer is the state of 51 neurons for 6 samples \([\d.]+ KiB\); use a "
                   r"smaller --batch-size, fewer samples or fewer steps")


def test_build_declaring_a_huge_dataset_is_refused_unread(capsys, ws):
    assert main(["compile", "m.nir", "-o", "b", "--steps", "2"]) == 0
    with h5py.File(ws / "b" / "network.h5", "r+") as f:
        group = next(iter(f["groups"].values()))
        del group["weights"]
        group.create_dataset("weights", shape=(10**6, 10**6), dtype="i8", chunks=(64, 64))
    assert_refused(capsys, ws, ["run", "b", "--input", "x.npy", "--steps", "2"], 1,
                   r"snn2chip: error: b/network\.h5: reading its datasets \(largest: 'groups/.*/weights', shape "
                   r"\(1000000, 1000000\)\) needs 7\.3 TiB, more than the memory budget .*")


def test_lava_backend_without_lava_says_how_to_get_it(capsys, ws, monkeypatch):
    import sys

    assert main(["compile", "m.nir", "-o", "b", "--steps", "2"]) == 0
    monkeypatch.setitem(sys.modules, "lava.magma.core.run_conditions", None)  # as if Lava were not installed
    assert_refused(capsys, ws, ["run", "b", "--backend", "lava", "--input", "x.npy", "--steps", "2"], 1,
                   r"snn2chip: error: option --backend lava / --lava-samples: Lava is not installed: the Lava check "
                   r"needs the 'lava' extra on Python 3\.10 \(pip install 'snn2chip\[lava\]'; this repository's \.venv "
                   r"has it\)")
