"""The locked environment is the one Lava needs (docs/architecture.md §10: Python 3.10, Lava 0.10.0, lava-dl 0.6.0)."""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
from pathlib import Path

import pytest

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


@pytest.mark.lava
def test_python_is_3_10():
    assert sys.version_info[:2] == (3, 10)


@pytest.mark.lava
def test_lava_dl_netx_imports():
    import lava.lib.dl.netx  # noqa: F401
    from lava.proc.lif.process import LIF  # noqa: F401


@pytest.mark.lava
def test_installed_versions_are_the_locked_ones():
    pins = dict(
        line.split("==", 1) for line in LOCK.read_text().splitlines() if line and not line.startswith("#")
    )
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
