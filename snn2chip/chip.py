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

from snn2chip import loihi, memory
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
        """Check types, value ranges (Loihi's field widths), references, kinds and weight shapes; return self."""
        _integer(self.pipeline_depth, 0, MAX_DEPTH, "pipeline_depth", None)
        for end in (*self.inputs, *self.outputs):
            if end not in self.populations:
                raise ModelError(f"input/output population '{end}' does not exist", node=end)
        for name, pop in self.populations.items():
            _check_population(name, pop)
        for g in self.groups:
            if g.kind not in GROUP_KINDS:
                raise ModelError(f"synapse group kind '{g.kind}' is not one of {', '.join(GROUP_KINDS)}", node=g.name)
            for end in (g.src, g.dst):
                if end not in self.populations:
                    raise ModelError(f"synapse group refers to population '{end}', which does not exist", node=g.name)
            if self.populations[g.dst].kind == "input":
                raise ModelError("synapse group leads into an input population", node=g.name)
            _check_group(g, self.populations[g.src], self.populations[g.dst])
        return self


#: bounds of the integer fields (Loihi's field widths, as Lava's CPU models take them)
MAX_DEPTH = 1 << 20
U12 = (0, 4095)
BIAS_MANT = (-(2**12), 2**12 - 1)
BIAS_EXP = (0, 7)
WEIGHT_EXP = (-8, 7)
DENSE_WEIGHT = (-256, 255)
CONV_WEIGHT = (-(2**23), 2**23 - 1)
PAYLOAD_BITS = (0, 24)


def _integer(value, low: int, high: int, what: str, node: str | None) -> int:
    """``value`` if it is an integer in ``[low, high]``, else a :class:`ModelError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ModelError(f"field '{what}' is {value!r}; expected an integer in [{low}, {high}]", node=node)
    return int(value)


def _integers(values, low: int, high: int, what: str, node: str) -> None:
    """An integer array with every entry in ``[low, high]``, else a :class:`ModelError`."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise ModelError(f"field '{what}' holds {arr.dtype} values; expected integers", node=node)
    if arr.size and (arr.min() < low or arr.max() > high):
        raise ModelError(f"field '{what}' holds values in [{arr.min()}, {arr.max()}]; expected [{low}, {high}]", node=node)


def _check_population(name: str, pop: Population) -> None:
    if pop.kind not in KINDS:
        raise ModelError(f"population kind '{pop.kind}' is not one of {', '.join(KINDS)}", node=name)
    if not isinstance(pop.shape, tuple) or not pop.shape or any(
            isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in pop.shape):
        raise ModelError(f"field 'shape' is {pop.shape!r}; expected positive integers", node=name)
    for field in ("du", "dv"):
        _integer(getattr(pop, field), *U12, field, name)
    _integer(pop.vth, 0, loihi.VTH_MAX if pop.kind == "lif" else loihi.MAX_UV - 1, "vth", name)
    _integer(pop.vsub, 0, loihi.VTH_MAX, "vsub", name)
    _integer(pop.bias_exp, *BIAS_EXP, "bias_exp", name)
    _integer(pop.payload_bits, *PAYLOAD_BITS, "payload_bits", name)
    for field in ("input_scale", "scale"):
        value = getattr(pop, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise ModelError(f"field '{field}' is {value!r}; expected a positive number", node=name)
    if pop.reset not in RESETS or (pop.vsub > 0) != (pop.reset == "subtract") or (pop.vsub and pop.kind != "lif"):
        raise ModelError(f"reset '{pop.reset}' (vsub {pop.vsub}) is not 'zero', or 'subtract' on a lif "
                         "with vsub > 0", node=name)
    if pop.bias_mant is not None:
        if np.shape(pop.bias_mant) != pop.shape:
            raise ModelError(f"bias_mant shape {np.shape(pop.bias_mant)} is not the population shape {pop.shape}", node=name)
        _integers(pop.bias_mant, *BIAS_MANT, "bias_mant", name)


def _check_group(g: SynapseGroup, src: Population, dst: Population) -> None:
    name = g.name
    _integer(g.weight_exp, *WEIGHT_EXP, "weight_exp", name)
    _integer(g.num_weight_bits, 1, loihi.WEIGHT_BITS, "num_weight_bits", name)
    _integers(g.weights, *(CONV_WEIGHT if g.kind == "conv" else DENSE_WEIGHT), "weights", name)
    if g.kind == "dense" and g.weights.shape != (dst.size, src.size):
        raise ModelError(f"dense weights {g.weights.shape} do not connect {src.size} -> {dst.size}", node=name)
    if g.kind == "sparse":
        if g.rows is None or g.cols is None or not np.shape(g.rows) == np.shape(g.cols) == np.shape(g.weights) \
                or np.ndim(g.weights) != 1:
            raise ModelError("sparse weights need 'rows' and 'cols' of the same length", node=name)
        _integers(g.rows, 0, dst.size - 1, "rows", name)
        _integers(g.cols, 0, src.size - 1, "cols", name)
    if g.kind == "conv":
        for field, least in (("stride", 1), ("padding", 0), ("dilation", 1)):
            value = getattr(g, field)
            if not isinstance(value, tuple) or len(value) != 2:
                raise ModelError(f"field '{field}' is {value!r}; expected two integers", node=name)
            for v in value:
                _integer(v, least, 1 << 16, field, name)
        _integer(g.groups, 1, 1 << 16, "groups", name)
        if not _conv_fits(g, src.shape, dst.shape):
            raise ModelError(f"conv weights {np.shape(g.weights)} (groups {g.groups}) do not connect "
                             f"{src.shape} -> {dst.shape}", node=name)
    if g.delays is not None:
        if g.kind == "conv" or np.shape(g.delays) != np.shape(g.weights):
            raise ModelError("delays are supported on dense and sparse groups, one per synapse", node=name)
        _integers(g.delays, 0, loihi.MAX_DELAY, "delays", name)


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
            memory.check_hdf5(f, file)
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
