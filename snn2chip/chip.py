"""Chip IR: the compile artifact, integers only, independent of Lava.

A :class:`ChipNet` is populations (groups of neurons sharing one model) connected by synapse
groups. Every synapse hop costs one time step (DESIGN.md §2); per-synapse delays add more.
Populations keep NIR's layout (``(C, H, W)`` or ``(N,)``, flattened row-major); the Lava back
end alone converts to Lava's WHC layout.

Parameters are the exact integers handed to the chip: Dense/Sparse ``weights`` as Lava's
``Dense(weights=...)`` takes them (the hardware clips them to 8 bits and drops the low
``8 - num_weight_bits`` bits, one more for mixed signs, then shifts the summed input by
``weight_exp``); Conv ``weights`` are the effective integer kernel (Lava's CPU Conv ignores
exponents); LIF ``du, dv, vth, bias_mant, bias_exp`` as Lava's ``LIF``.

Saved to one HDF5 file (:func:`save`, :func:`load`) with a format version.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from snn2chip.errors import ModelError

FORMAT = "snn2chip-chip-ir"
FORMAT_VERSION = 2  # 2: LIF reset by subtraction (``reset``, ``vsub``); version 1 files still load

#: Population kinds. ``input``: values injected from outside (spikes, or graded payloads);
#: ``lif``: Loihi's CUBA leaky integrate-and-fire neuron; ``relay``: forwards its summed input
#: as a graded spike when ``|input| > vth`` (Lava ``GradedVec``). A ``lif`` resets v to 0 after a
#: spike (Loihi's stock neuron) or, with ``reset="subtract"``, subtracts ``vsub << 6`` (the
#: neuron of ANN-converted networks: a Loihi 2 microcode neuron,
#: :mod:`snn2chip.lava_neurons.subtractive`).
KINDS = ("input", "lif", "relay")
RESETS = ("zero", "subtract")
GROUP_KINDS = ("dense", "sparse", "conv")


@dataclasses.dataclass(frozen=True)
class Population:
    """A group of neurons of one model.

    ``payload_bits`` is the width of the graded payload the population sends (0: binary
    spikes). For ``input``, ``input_scale`` maps user values to payloads: ``round(x * scale)``.
    ``bias_mant`` has the population's shape. ``scale`` is the chip units per float unit of the
    membrane (``v_chip = 64 * scale * v_float`` for mapped NIR neurons), kept for decoding.
    ``reset`` 'zero' or 'subtract' (then a spike removes ``vsub << 6`` from v).
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    source: str = ""
    du: int = 4095
    dv: int = 0
    vth: int = 0
    bias_mant: np.ndarray | None = None
    bias_exp: int = 0
    payload_bits: int = 0
    input_scale: float = 1.0
    scale: float = 1.0
    reset: str = "zero"
    vsub: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclasses.dataclass(frozen=True)
class SynapseGroup:
    """Synapses from population ``src`` to ``dst``; one time step per hop plus ``delays``.

    ``dense``: ``weights`` ``(dst.size, src.size)``; ``sparse``: ``weights`` with ``rows`` (dst
    index) and ``cols`` (src index); ``conv``: ``weights`` ``(C_out, C_in/groups, kH, kW)``
    applied as cross-correlation (PyTorch's convention) with ``stride``, ``padding``,
    ``dilation`` as ``(H, W)`` pairs. ``delays`` (dense, sparse): extra steps per synapse, shape of
    ``weights``.
    """

    name: str
    kind: str
    src: str
    dst: str
    weights: np.ndarray
    weight_exp: int = 0
    num_weight_bits: int = 8
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    delays: np.ndarray | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    source: str = ""

    @property
    def synapses(self) -> int:
        """Stored synapses (for conv: the shared kernel's entries)."""
        return int(np.size(self.weights))


@dataclasses.dataclass(frozen=True)
class ChipNet:
    """Populations (in evaluation order), synapse groups, inputs and outputs.

    ``pipeline_depth`` D: chip output at step ``t + D`` corresponds to the float output at
    step ``t``. ``metadata`` holds provenance (source file, target, dt).
    """

    populations: Mapping[str, Population]
    groups: tuple[SynapseGroup, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    pipeline_depth: int = 0
    metadata: Mapping = dataclasses.field(default_factory=dict)

    def incoming(self, name: str) -> list[SynapseGroup]:
        return [g for g in self.groups if g.dst == name]

    def validate(self) -> "ChipNet":
        """Check references, kinds and weight shapes; return self."""
        for name, pop in self.populations.items():
            if pop.kind not in KINDS:
                raise ModelError(f"population kind '{pop.kind}' is not one of {', '.join(KINDS)}", node=name)
            if pop.reset not in RESETS or (pop.vsub > 0) != (pop.reset == "subtract") or (pop.vsub and pop.kind != "lif"):
                raise ModelError(f"reset '{pop.reset}' (vsub {pop.vsub}) is not 'zero', or 'subtract' on a lif "
                                 "with vsub > 0", node=name)
            if pop.bias_mant is not None and np.shape(pop.bias_mant) != pop.shape:
                raise ModelError(f"bias_mant shape {np.shape(pop.bias_mant)} is not the population shape {pop.shape}", node=name)
        for g in self.groups:
            if g.kind not in GROUP_KINDS:
                raise ModelError(f"synapse group kind '{g.kind}' is not one of {', '.join(GROUP_KINDS)}", node=g.name)
            for end in (g.src, g.dst):
                if end not in self.populations:
                    raise ModelError(f"synapse group refers to population '{end}', which does not exist", node=g.name)
            if self.populations[g.dst].kind == "input":
                raise ModelError("synapse group leads into an input population", node=g.name)
            src, dst = self.populations[g.src], self.populations[g.dst]
            if g.kind == "dense" and g.weights.shape != (dst.size, src.size):
                raise ModelError(f"dense weights {g.weights.shape} do not connect {src.size} -> {dst.size}", node=g.name)
            if g.kind == "conv" and not _conv_fits(g, src.shape, dst.shape):
                raise ModelError(f"conv weights {np.shape(g.weights)} (groups {g.groups}) do not connect "
                                 f"{src.shape} -> {dst.shape}", node=g.name)
            if g.delays is not None and (g.kind == "conv" or g.delays.shape != g.weights.shape):
                raise ModelError("delays are supported on dense and sparse groups, one per synapse", node=g.name)
        return self


def _conv_fits(g: SynapseGroup, src: tuple[int, ...], dst: tuple[int, ...]) -> bool:
    """Whether conv group ``g`` maps a ``src`` (C, H, W) population onto ``dst``: its output
    (C_out, oH, oW) is ``dst``, or ``dst`` is (C_out,) and oH = oW = 1."""
    w = np.shape(g.weights)
    if len(w) != 4 or len(src) != 3 or src[0] != w[1] * g.groups:
        return False
    out = (w[0], *((n + 2 * p - d * (k - 1) - 1) // s + 1
                   for n, k, s, p, d in zip(src[1:], w[2:], g.stride, g.padding, g.dilation)))
    return dst == out or (dst == out[:1] and out[1:] == (1, 1))


def _to_attr(value):
    return json.dumps(value)


def save(net: ChipNet, path: str | Path) -> None:
    """Write ``net`` to one HDF5 file."""
    with h5py.File(path, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["inputs"] = _to_attr(list(net.inputs))
        f.attrs["outputs"] = _to_attr(list(net.outputs))
        f.attrs["pipeline_depth"] = net.pipeline_depth
        f.attrs["metadata"] = _to_attr(dict(net.metadata))
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


def _read_item(cls, h) -> object:
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in h.attrs:
            value = json.loads(h.attrs[field.name])
            kwargs[field.name] = tuple(value) if isinstance(value, list) else value
        elif field.name in h:
            kwargs[field.name] = h[field.name][()]
    return cls(**kwargs)


def load(path: str | Path) -> ChipNet:
    """Read a network written by :func:`save`; a newer or broken file gives a :class:`ModelError`."""
    file = str(path)
    if not Path(path).is_file():
        raise ModelError("no such file", file=file)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise ModelError(f"not a snn2chip chip network (no '{FORMAT}' format mark)", file=file)
            version = int(f.attrs.get("format_version", -1))
            if version > FORMAT_VERSION:
                raise ModelError(
                    f"written in chip IR format {version} by a newer snn2chip; this one reads format {FORMAT_VERSION}",
                    file=file,
                )
            if version < 1:
                raise ModelError(f"unknown chip IR format version {version}", file=file)
            pops = {name: _read_item(Population, f["populations"][name.replace("/", "|")])
                    for name in json.loads(f.attrs["population_order"])}
            groups = tuple(_read_item(SynapseGroup, f["groups"][name.replace("/", "|")])
                           for name in json.loads(f.attrs["group_order"]))
            net = ChipNet(
                populations=pops,
                groups=groups,
                inputs=tuple(json.loads(f.attrs["inputs"])),
                outputs=tuple(json.loads(f.attrs["outputs"])),
                pipeline_depth=int(f.attrs["pipeline_depth"]),
                metadata=json.loads(f.attrs["metadata"]),
            )
    except ModelError:
        raise
    except OSError:
        raise ModelError("not a chip network: it is not HDF5", file=file) from None
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"broken chip network file: {type(e).__name__}: {e}", file=file) from None
    try:
        return net.validate()
    except ModelError as e:
        raise e.in_file(file) from None
