"""Fuzzing the command line with malformed inputs (hypothesis).

Strategies draw malformed NIR files (a dataset or group of a valid model replaced, deleted or
declared huge), data files, option values and target files. The property, for every command run
on them: the exit code is 0, 1 or 2 (never an internal error); a failure prints exactly one line,
naming the file or the option, and no traceback; nothing is left behind; every input is unchanged.
``benchmarks/fuzz_cli.py`` runs the same property on many more cases.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from snn2chip.cli import main
from tests.conftest import write_nir
from tests.test_bad_input import model_nodes, snapshot

ROOT = Path(__file__).resolve().parents[1]
TARGET = (ROOT / "targets" / "loihi2.toml").read_text()

# --- strategies -----------------------------------------------------------------------------

DTYPES = ["f8", "f4", "i8", "i4", "u1", "c16", "S4", "bool"]
values = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 10**12, "same", "valid", "", "x" * 3, b"\xff\xfe"]),
    st.sampled_from(DTYPES).flatmap(lambda d: hnp.arrays(d, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0,
                                                                               max_side=5))),
)


def _model_keys() -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        path = write_nir(Path(d) / "m.nir", *model_nodes())
        keys = []
        with h5py.File(path, "r") as f:
            f["node"].visit(keys.append)
    return ["node"] + [f"node/{k}" for k in keys]


MODEL_KEYS = _model_keys()
nir_mutation = st.tuples(st.just("nir"), st.sampled_from(MODEL_KEYS),
                         st.sampled_from(["replace", "delete", "group", "huge"]), values)
data_mutation = st.tuples(st.just("data"), st.sampled_from(["x.npy", "d.npz"]), st.sampled_from(["array", "bytes"]),
                          st.one_of(values, st.binary(max_size=64)))
OPTIONS = [("compile", "--steps"), ("compile", "--input-scale"), ("compile", "--input-bits"), ("compile", "--dt"),
           ("compile", "--check"), ("compile", "--system"), ("compile", "--target"), ("run", "--steps"),
           ("run", "--batch-size"), ("run", "--dt"), ("run", "--record"), ("verify", "--samples"),
           ("verify", "--min-agreement"), ("verify", "--lava-samples"), ("convert", "--percentile"),
           ("convert", "--compensation"), ("compile", "-o")]
option_mutation = st.tuples(st.just("option"), st.sampled_from(OPTIONS), st.just(""),
                            st.one_of(st.integers(-3, 40).map(str), st.sampled_from([10**9, 2**70, -(2**70)]).map(str),
                                      st.floats(max_value=40).map(str),
                                      st.text(st.characters(blacklist_characters="\x00"), max_size=6),
                                      st.sampled_from(["random:0", "random:x", "random:3", "nan", "inf", "-1", "0",
                                                       ".", "..", "", "x.npy", "m.nir"])))
target_mutation = st.tuples(st.just("target"), st.integers(0, len(TARGET.splitlines()) - 1),
                            st.sampled_from(["delete", "replace", "bytes", "junk"]),
                            st.one_of(st.integers(-5, 10**20).map(str), st.text(max_size=6), st.binary(max_size=8)))
cases = st.one_of(nir_mutation, data_mutation, option_mutation, target_mutation)

# --- applying a case -------------------------------------------------------------------------


def workspace(root: Path) -> None:
    """m.nir (input 1x4x4 -> conv -> IF -> fc -> IF), x.npy (binary), d.npz (x, y), c.npy (calibration)."""
    write_nir(root / "m.nir", *model_nodes())
    rng = np.random.default_rng(0)
    x = (rng.random((4, 1, 4, 4)) < 0.5).astype(np.float32)
    np.save(root / "x.npy", x)
    np.savez(root / "d.npz", x=x, y=np.array([0, 1, 2, 0]))
    np.save(root / "c.npy", x)


def _store(f: h5py.File, key: str, kind: str, value) -> None:
    if key in f:
        del f[key]
    if kind == "group":
        f.create_group(key)
    elif kind == "huge":
        f.create_dataset(key, shape=(10**6, 10**6), dtype="f8", chunks=(64, 64))
    elif kind == "replace":
        f.create_dataset(key, data=value)


def apply(case, root: Path) -> list[list[str]]:
    """Make the case's files in ``root``; return the commands to run on them."""
    kind, where, how, value = case
    build = ["compile", "m.nir", "-o", "out", "--steps", "4"]
    if kind == "nir":
        with h5py.File(root / "m.nir", "r+") as f:
            _store(f, where, how, value)
        return [["inspect", "m.nir"], build, ["run", "m.nir", "--input", "x.npy", "--steps", "2"]]
    if kind == "data":
        if how == "bytes":
            (root / where).write_bytes(value if isinstance(value, bytes) else str(value).encode())
        elif where == "x.npy":
            np.save(root / where, np.asarray(value))
        else:
            np.savez(root / where, x=np.asarray(value), y=np.asarray(value))
        return [["run", "m.nir", "--input", "x.npy", "--steps", "2"], [*build, "--calib", "x.npy"],
                ["verify", "m.nir", "--data", "d.npz", "--steps", "2"]]
    if kind == "option":
        command, option = where
        base = {"compile": build, "run": ["run", "m.nir", "--input", "x.npy", "--steps", "2"],
                "verify": ["verify", "m.nir", "--data", "d.npz", "--steps", "2"],
                "convert": ["convert", "m.nir", "--calib", "c.npy", "-o", "s.nir"]}[command]
        return [[*base, option, value] if option == "-o" else [*base, f"{option}={value}"]]
    lines = TARGET.splitlines()
    if how == "bytes":
        (root / "t.toml").write_bytes(TARGET.encode()[: where * 20] + (value if isinstance(value, bytes) else b"\xff"))
    else:
        if how == "delete":
            del lines[where]
        elif how == "replace" and "=" in lines[where]:
            lines[where] = lines[where].split("=")[0] + f"= {value}"
        else:
            lines.insert(where, str(value))
        (root / "t.toml").write_text("\n".join(lines))
    return [["targets", "--target-file", "t.toml"], [*build, "--target-file", "t.toml"]]


def check(case, counts: Counter | None = None) -> None:
    """Run the case's commands and assert the property of the module docstring."""
    with tempfile.TemporaryDirectory() as d, _chdir(d):
        root = Path(d)
        workspace(root)
        commands = apply(case, root)
        for argv in commands:
            before = snapshot(root)
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as e:
                    code = e.code
            text = err.getvalue()
            if counts is not None:
                counts[code] += 1
            assert code in (0, 1, 2), f"{argv}: exit {code}: {text}"
            assert "Traceback" not in text, text
            if code == 0:
                continue
            assert text.count("\n") == 1 and text.startswith("snn2chip"), f"{argv}: {text!r}"
            assert names_the_place(text, argv), f"{argv}: {text!r}"
            assert snapshot(root) == before, f"{argv}: files changed or left behind"


def names_the_place(text: str, argv: list[str]) -> bool:
    """Whether the error line names an option, or a file among (or inside) the arguments."""
    if text.startswith("snn2chip: error: option ") or " error: argument " in text:
        return True
    place = text.removeprefix("snn2chip: error: ").split(": ")[0]
    tokens = [a.split("=", 1)[-1] for a in argv]
    return any(place == t or place.startswith(t.rstrip("/") + "/") for t in tokens if t)


@contextlib.contextmanager
def _chdir(path: str):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@pytest.mark.lava
@pytest.mark.slow
@settings(max_examples=int(os.environ.get("SNN2CHIP_FUZZ_EXAMPLES", "200")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases)
def test_malformed_inputs_give_one_line_and_leave_files_alone(case):
    check(case)
