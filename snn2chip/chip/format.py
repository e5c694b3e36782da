"""The chip IR on disk: one HDF5 file with a format mark and version.

Version 3 stores every field of :class:`~snn2chip.chip.ir.ChipNet` (hop depths, the output map,
dt and source as attributes, populations with their role and origin). Versions 1 and 2 kept
depths, outputs, dt and source in a ``metadata`` attribute, and the roles in names (``x@k`` a
delay copy of ``x``, ``bias.always_on`` the bias neuron): :func:`load` reads them into the same
fields. A newer version, a broken file, or one whose fields break the IR's invariants is a
one-line :class:`~snn2chip.errors.ModelError` naming the file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np

from snn2chip import memory
from snn2chip.chip.ir import FORMAT_VERSION, ChipNet, IRError, Population, SynapseGroup, readout_name
from snn2chip.errors import ModelError
from snn2chip.files import require_file

FORMAT = "snn2chip-chip-ir"
BIAS = "bias.always_on"  # the name of the always-on neuron in version 1 and 2 files
DELAY_OF = "delay of "  # a version 1 or 2 delay copy's source: "delay of ORIGIN"


def _to_attr(value):
    return json.dumps(value)


def save(net: ChipNet, path: str | Path) -> None:
    """Write ``net`` to one HDF5 file (the current format version)."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        for field in ("inputs", "outputs", "pipeline_depth", "depth", "output_of", "dt", "source"):
            value = getattr(net, field)
            f.attrs[field] = _to_attr(list(value) if isinstance(value, tuple) else value)
        f.attrs["population_order"] = _to_attr(list(net.populations))
        f.attrs["group_order"] = _to_attr([g.name for g in net.groups])
        for kind, items in (("populations", net.populations.values()), ("groups", net.groups)):
            parent = f.create_group(kind)
            for item in items:
                h = parent.create_group(item.name.replace("/", "|"))
                for field in dataclasses.fields(item):
                    value = getattr(item, field.name)
                    if value is None:
                        continue
                    if isinstance(value, np.ndarray):
                        h.create_dataset(field.name, data=value, compression="gzip" if value.size > 1024 else None)
                    else:
                        h.attrs[field.name] = _to_attr(value)


def _fields(cls, h) -> dict:
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in h.attrs:
            value = json.loads(h.attrs[field.name])
            kwargs[field.name] = tuple(value) if isinstance(value, list) else value
        elif field.name in h:
            kwargs[field.name] = h[field.name][()]
    return kwargs


def _role(fields: dict, version: int) -> dict:
    """The role and origin of a population of a file before version 4, from its name and source
    (an Output's read-out is named after it; version 3 called it a model population)."""
    source = str(fields.get("source", ""))
    if fields["name"] == readout_name(source):
        return {"role": "readout"}
    if version == 3:
        return {}
    if fields["name"] == BIAS:
        return {"role": "bias"}
    if source.startswith(DELAY_OF):
        return {"role": "delay", "origin": source.removeprefix(DELAY_OF)}
    return {"role": "model"}  # a version 1 or 2 file does not say which relays the shortcut passes made


def _net(f: h5py.File, version: int) -> ChipNet:
    order = json.loads(f.attrs["population_order"])
    populations = {}
    for name in order:
        fields = _fields(Population, f["populations"][name.replace("/", "|")])
        populations[name] = Population(**{**fields, **(_role(fields, version) if version < 4 else {})})
    groups = tuple(SynapseGroup(**_fields(SynapseGroup, f["groups"][name.replace("/", "|")]))
                   for name in json.loads(f.attrs["group_order"]))
    if version < 3:
        meta = json.loads(f.attrs["metadata"])
        fields = {"depth": meta.get("depth", {}), "output_of": meta.get("outputs", {}), "dt": meta.get("dt", 1.0),
                  "source": meta.get("source") or ""}
    else:
        fields = {k: json.loads(f.attrs[k]) for k in ("depth", "output_of", "dt", "source")}
    return ChipNet(populations, groups, tuple(json.loads(f.attrs["inputs"])), tuple(json.loads(f.attrs["outputs"])),
                   int(json.loads(str(f.attrs["pipeline_depth"]))), **fields)


def load(path: str | Path) -> ChipNet:
    """Read a network written by :func:`save` (any version up to the current one)."""
    require_file(path)
    file = str(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ModelError(f"not a snn2chip chip network (no '{FORMAT}' format mark)", file=file)
            version = int(f.attrs.get("format_version", -1))
            if version > FORMAT_VERSION:
                raise ModelError(f"written in chip IR format {version} by a newer snn2chip; this one reads format "
                                 f"{FORMAT_VERSION}", file=file)
            if version < 1:
                raise ModelError(f"unknown chip IR format version {version}", file=file)
            memory.check_hdf5(f, file)
            return _net(f, version)
    except OSError:
        raise ModelError("not a chip network: it is not HDF5", file=file) from None
    except IRError as e:
        raise ModelError(e.problem, file=file, node=e.node) from None
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"broken chip network file: {type(e).__name__}: {e}", file=file) from None
