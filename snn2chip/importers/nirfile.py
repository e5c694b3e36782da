"""Writing NIR files node by node: :func:`nir.write`'s HDF5 layout, one node at a time.

:class:`StreamSink` lets an exporter write each node as soon as it is built, so that exporting a
network with hundreds of millions of weights needs the memory of one layer, not of the network.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import nir
import numpy as np


def write_items(group: h5py.Group, node: dict, compress) -> None:
    """nir.write's layout for one node dictionary (``compress(array)`` picks the HDF5 filter)."""
    for key, value in node.items():
        if key == "metadata":
            if value != {}:
                write_items(group.create_group(key), value, compress)
        elif isinstance(value, str):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        elif isinstance(value, np.ndarray):
            group.create_dataset(key, data=value, dtype=value.dtype, compression=compress(value))
        elif isinstance(value, dict):
            write_items(group.create_group(str(key)), value, compress)
        else:
            group.create_dataset(key, data=value)


def compress_constant(array: np.ndarray) -> str | None:
    """gzip for constant arrays (neuron parameters: they shrink ~1000x), none for weights (random
    float32 does not compress, and gzip would be the slowest step)."""
    if array.size > 64 and array.dtype.kind == "f":
        flat = array.reshape(-1)
        if np.all(flat == flat[0]):
            return "gzip"
    return None


class StreamSink:
    """Writes each node to a ``.nir`` (HDF5) file as soon as it is built, so that peak memory is
    one layer, not the network. The file has exactly :func:`nir.write`'s layout."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.file = h5py.File(self.path, "w")
        self.file.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
        self.root = self.file.create_group("node")
        self.group = self.root.create_group("nodes")

    def add(self, name: str, node: nir.NIRNode) -> None:
        write_items(self.group.create_group(name), node.to_dict(), compress_constant)

    def finish(self, edges: list[tuple[str, str]], metadata: dict) -> Path:
        self.root.create_dataset("edges", data=edges)
        if metadata:
            write_items(self.root.create_group("metadata"), metadata, lambda a: None)
        self.root.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
        self.file.close()
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)
