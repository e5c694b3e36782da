"""The package as a user gets it: a wheel holding every subpackage and the target files, run from outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: every package directory of the source tree, as a wheel entry (``snn2chip/chip/__init__.py``)
INITS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "snn2chip").rglob("__init__.py"))
TARGET_FILES = ["snn2chip/target_files/loihi1.toml", "snn2chip/target_files/loihi2.toml"]


def pip(*args: str, **kwargs) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from the repository; setuptools' build and egg-info folders go to a temporary
    folder (``DIST_EXTRA_CONFIG``), so no stale ``build/lib`` of the work tree can slip into it."""
    tmp = tmp_path_factory.mktemp("wheel")
    config = tmp / "setup.cfg"
    config.write_text(f"[build]\nbuild_base = {tmp / 'build'}\n[egg_info]\negg_base = {tmp}\n")
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(ROOT),
        env={**os.environ, "DIST_EXTRA_CONFIG": str(config)})
    (built,) = (tmp / "dist").glob("snn2chip-*.whl")
    return built


@pytest.mark.slow
def test_wheel_holds_every_subpackage_and_the_target_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert len(INITS) >= 9  # snn2chip and its eight stage packages, at least
    assert [n for n in INITS + TARGET_FILES if n not in names] == []


@pytest.mark.slow
def test_installed_wheel_runs_from_outside_the_repository(wheel, tmp_path):
    site = tmp_path / "site"
    pip("install", "--no-deps", "--target", str(site), str(wheel))
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*args: str) -> str:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    assert Path(run("-c", "import snn2chip, sys; print(snn2chip.__file__)").strip()).is_relative_to(site)
    listed = run("-m", "snn2chip", "targets")
    assert all(f"{name}: " in listed and str(site / "snn2chip" / "target_files" / f"{name}.toml") in listed
               for name in ("loihi1", "loihi2"))
    assert "usage: snn2chip convert" in run("-m", "snn2chip", "convert", "--help")
