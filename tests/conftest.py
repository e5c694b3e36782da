"""Shared helpers: paths of the real fixtures (``tests/fixtures/``) and small crafted NIR files;
without Lava (``.venv-modern``), the tests marked ``lava`` are skipped with the reason."""

from __future__ import annotations

import functools
import importlib.util
import inspect
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

from snn2chip.passes.context import Capabilities

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SINABS = FIXTURES / "cnn_sinabs.nir"
NORSE = FIXTURES / "lif_norse.nir"
BRAILLE = FIXTURES / "braille_noDelay_bias_zero.nir"
#: Loihi 2 as the passes see it
CAPS = Capabilities()
LAVA_INSTALLED = importlib.util.find_spec("lava") is not None  # a namespace package: finding it runs no Lava code

# From torch 2.9 on, torch.onnx.export uses the dynamo exporter unless told dynamo=False; it needs
# onnxscript and writes other operators (a global average pool as ReduceMean, which `convert` does
# not read). The tests export with the TorchScript exporter (the default up to torch 2.8) in both
# environments.
if "dynamo" in inspect.signature(torch.onnx.export).parameters:
    torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)


def pytest_collection_modifyitems(config, items):
    """Without Lava, skip the tests marked ``lava`` (``make test`` deselects them there anyway)."""
    if LAVA_INSTALLED:
        return
    skip = pytest.mark.skip(reason="needs Lava: the 'lava' extra on Python 3.10 (this repository's .venv)")
    for item in items:
        if item.get_closest_marker("lava"):
            item.add_marker(skip)


def arr(*values) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def write_nir(path: Path, nodes: dict, edges: list, metadata: dict | None = None) -> Path:
    """Write a NIR graph as given (no type checking, so malformed graphs can be written too)."""
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata or {}, type_check=False))
    return path


def set_dataset(path: Path, key: str, value) -> None:
    """Overwrite one dataset inside a written NIR file, e.g. ``node/nodes/a/type``."""
    with h5py.File(path, "r+") as f:
        del f[key]
        f.create_dataset(key, data=value)


def chain(*nodes: tuple[str, nir.NIRNode], shape=(4,), out=None) -> tuple[dict, list]:
    """Nodes and edges of input (``shape``) -> nodes... -> output (``out``, default ``shape``)."""
    names = ["input", *(n for n, _ in nodes), "output"]
    all_nodes = {"input": nir.Input(input_type={"input": np.array(shape)}), **dict(nodes)}
    all_nodes["output"] = nir.Output(output_type={"output": np.array(out or shape)})
    return all_nodes, list(zip(names, names[1:]))


@pytest.fixture
def tmp_nir(tmp_path):
    """A function writing crafted graphs into the test's temporary folder."""

    def make(nodes, edges, name="model.nir", metadata=None) -> Path:
        return write_nir(tmp_path / name, nodes, edges, metadata)

    return make


def randomise_bn(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Random BatchNorm statistics and affine parameters, so that the layers after them are active
    (with Kaiming-initialised convolutions, spiking layers fire at 5-70 %)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.6)
    return model
