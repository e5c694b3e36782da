"""The two locked environments: ``.venv`` is the one Lava needs (docs/architecture.md §10: Python
3.10, Lava 0.10.0, lava-dl 0.6.0, requirements.lock); ``.venv-modern`` runs the core without Lava
on Python >= 3.12 with numpy 2 and a current torch (requirements-modern.lock)."""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import LAVA_INSTALLED, chain, write_nir

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
MODERN_LOCK = ROOT / "requirements-modern.lock"
MODERN_VENV = ROOT / ".venv-modern"


def locked(lock: Path) -> tuple[str, dict[str, str]]:
    """The Python version (major.minor) named on the lock file's first line, and its pins by canonical name."""
    lines = lock.read_text().splitlines()
    python = re.search(r"Python (3\.\d+)", lines[0]).group(1)
    pins = dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))
    return python, {canonicalize_name(name): version for name, version in pins.items()}


@pytest.mark.parametrize("lock, extras", [(LOCK, ("lava", "dev", "ray")), (MODERN_LOCK, ("dev", "ray", "spikingjelly"))],
                         ids=["venv", "venv-modern"])
def test_pyproject_admits_what_each_lock_file_pins(lock, extras):
    """The core's ranges (and each environment's extras) hold the locked versions, on the lock's Python."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    python, pins = locked(lock)
    assert SpecifierSet(project["requires-python"]).contains(f"{python}.0")
    environment = {"python_version": python, "python_full_version": f"{python}.0"}
    wanted = [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]
    applicable = [r for r in map(Requirement, wanted) if r.marker is None or r.marker.evaluate(environment)]
    for requirement in applicable:
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None and requirement.specifier.contains(pin, prereleases=True), (lock.name, str(requirement), pin)


def test_modern_lock_is_numpy_2_and_current_torch_without_lava():
    python, pins = locked(MODERN_LOCK)
    assert Version(python) >= Version("3.12")
    assert Version(pins["numpy"]).major == 2 and Version(pins["torch"]) >= Version("2.6")
    assert Version(pins["spikingjelly"]) >= Version("2.0") and "onnxscript" not in pins
    assert not {"lava-nc", "lava-dl"} & set(pins)


@pytest.mark.skipif(Path(sys.prefix).resolve() != MODERN_VENV.resolve(), reason="checks the repository's .venv-modern")
def test_modern_environment_is_its_lock_file():
    assert sys.version_info >= (3, 12) and not LAVA_INSTALLED
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    _, pins = locked(MODERN_LOCK)
    assert {name: installed.get(name) for name in pins} == pins


@pytest.mark.skipif(LAVA_INSTALLED, reason="checks what snn2chip says where Lava is not installed")
def test_verify_asking_for_lava_without_it_says_how_to_get_it(tmp_path):
    """``snn2chip verify --lava-samples 1`` where Lava cannot be installed (.venv-modern): one line, exit 1."""
    model = write_nir(tmp_path / "m.nir", *chain(
        ("fc", nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2))),
        ("lif", nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.zeros(2))), out=(2,)))
    done = subprocess.run([str(Path(sys.executable).parent / "snn2chip"), "verify", str(model), "--data", "random:2",
                           "--samples", "2", "--lava-samples", "1", "-o", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert re.fullmatch(r"snn2chip: error: .*Lava is not installed: .*pip install 'snn2chip\[lava\]'.*\n", done.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.lava
def test_python_is_3_10():
    assert sys.version_info[:2] == (3, 10)


@pytest.mark.lava
def test_lava_dl_netx_imports():
    import lava.lib.dl.netx  # noqa: F401
    from lava.proc.lif.process import LIF  # noqa: F401


@pytest.mark.lava
def test_installed_versions_are_the_locked_ones():
    python, pins = locked(LOCK)
    assert python == "3.10"
    for name in ("lava-nc", "lava-dl", "torch", "torchvision", "nir", "nirtorch", "numpy", "networkx", "h5py"):
        assert metadata.version(name) == pins[name], name
    assert pins["lava-nc"] == "0.10.0" and pins["lava-dl"] == "0.6.0" and pins["nir"] == "1.0.8"
    assert pins["torch"].startswith("2.3.") and pins["torchvision"].startswith("0.18.")
    assert int(pins["numpy"].split(".")[0]) < 2 and pins["networkx"] == "2.8.7"


@pytest.mark.lava
def test_lava_imports_after_a_run_with_progress_bar():
    """Lava sets the multiprocessing start method at import: snn2chip must not have fixed it before."""
    code = (
        "import numpy as np, nir, snn2chip\n"
        "from snn2chip.frontend.graph import make_graph\n"
        "g = make_graph({'input': nir.Input(input_type={'input': np.array([2])}),\n"
        "                'output': nir.Output(output_type={'output': np.array([2])})}, [('input', 'output')])\n"
        "snn2chip.run(g, np.ones((4, 2)), 3, batch_size=2, show_progress=True)\n"
        "import lava.lib.dl.netx\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
