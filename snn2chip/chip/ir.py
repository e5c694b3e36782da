"""Chip IR: the compile artifact, integers only, independent of Lava.

A :class:`ChipNet` is populations (groups of neurons sharing one model) connected by synapse
groups. Every synapse hop costs one time step (docs/architecture.md §2); per-synapse delays add more.
Populations keep NIR's layout (``(C, H, W)`` or ``(N,)``, flattened row-major); the Lava back
end alone converts to Lava's WHC layout.

Parameters are the exact integers handed to the chip: Dense/Sparse ``weights`` as Lava's
``Dense(weights=...)`` takes them (the hardware clips them to 8 bits and drops the low
``8 - num_weight_bits`` bits, one more for mixed signs, then shifts the summed input by
``weight_exp``); Conv ``weights`` are the effective integer kernel with ``weight_exp`` 0 (Lava's
CPU Conv ignores exponents), or, with a negative ``weight_exp``, a kernel of mantissas that
acts as its explicit synapses (:func:`conv_as_sparse`) do in a sparse group; LIF ``du, dv, vth,
bias_mant, bias_exp`` as Lava's ``LIF``.

Saved to one HDF5 file with a format version by :mod:`snn2chip.chip.format`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Mapping, get_args

import numpy as np

from snn2chip.chip import loihi
from snn2chip.frontend import shapes
from snn2chip.errors import InternalError

FORMAT_VERSION = 5  # 3: roles, depths and outputs as fields; 4: the readout role; 5: the pool role; 1 to 4 still load

#: Population kinds. ``input``: values injected from outside (spikes, or graded payloads);
#: ``lif``: Loihi's CUBA leaky integrate-and-fire neuron; ``relay``: forwards its summed input
#: as a graded spike when ``|input| > vth`` (Lava ``GradedVec``). A ``lif`` resets v to 0 after a
#: spike (Loihi's stock neuron) or, with ``reset="subtract"``, subtracts ``vsub << 6`` (the
#: neuron of ANN-converted networks: a Loihi 2 microcode neuron,
#: :mod:`snn2chip.backends.lava_neurons.subtractive`).
Kind = Literal["input", "lif", "relay"]
Reset = Literal["zero", "subtract"]
GroupKind = Literal["dense", "sparse", "conv"]
KINDS, RESETS, GROUP_KINDS = get_args(Kind), get_args(Reset), get_args(GroupKind)
#: What a population is for. ``model``: it stands for a NIR neuron node (``source``);
#: ``readout``: the graded read-out of an Output fed by a stateless chain (``source``, the
#: Output), not a neuron of the model; ``relay``: a sum the shortcut passes carry as a graded
#: payload; ``delay``: a one-hop copy of ``origin`` in a delay line; ``pool``: a stage of a
#: converted max pool (a helper the converter wrote); ``bias``: the always-on neuron that feeds
#: input biases.
Role = Literal["model", "readout", "relay", "delay", "pool", "bias"]
ROLES = get_args(Role)


def readout_name(output: str) -> str:
    """The population that reads out Output node ``output`` when a stateless chain feeds it."""
    return f"{output}.readout"


class IRError(InternalError):
    """A chip network that breaks an invariant of the IR: a bug in the compiler, or (when read
    from a file) a broken file. ``node`` names the population or synapse group."""

    def __init__(self, problem: str, node: str | None = None):
        super().__init__(f"node '{node}': {problem}" if node else problem)
        self.problem, self.node = problem, node


def _readonly(value):
    """``value`` as a read-only array (None stays None)."""
    if value is None:
        return None
    arr = np.array(value)
    arr.flags.writeable = False
    return arr


def _same(a, b) -> bool:
    """Field-wise equality of two IR dataclasses, arrays compared by value."""
    if type(a) is not type(b):
        return NotImplemented
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or not np.array_equal(x, y):
                return False
        elif x != y:
            return False
    return True


@dataclasses.dataclass(frozen=True, eq=False)
class Population:
    """A group of neurons of one model, validated when built (:class:`IRError`).

    ``payload_bits`` is the width of the graded payload the population sends (0: binary
    spikes). For ``input``, ``input_scale`` maps user values to payloads: ``round(x * scale)``.
    ``bias_mant`` (read-only) has the population's shape. ``scale`` is the chip units per float
    unit of the membrane (``v_chip = 64 * scale * v_float`` for mapped NIR neurons), kept for
    decoding. ``reset`` 'zero' or 'subtract' (then a spike removes ``vsub << 6`` from v).
    ``role`` (one of :data:`ROLES`) says what it is for; ``origin`` is the population a delay
    copy repeats.
    """

    name: str
    kind: Kind
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
    reset: Reset = "zero"
    vsub: int = 0
    role: Role = "model"
    origin: str = ""

    def __post_init__(self):
        object.__setattr__(self, "bias_mant", _readonly(self.bias_mant))
        _check_population(self)

    __eq__ = _same

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclasses.dataclass(frozen=True, eq=False)
class SynapseGroup:
    """Synapses from population ``src`` to ``dst``; one time step per hop plus ``delays``;
    validated when built (:class:`IRError`), arrays read-only.

    ``dense``: ``weights`` ``(dst.size, src.size)``; ``sparse``: ``weights`` with ``rows`` (dst
    index) and ``cols`` (src index); ``conv``: ``weights`` ``(C_out, C_in/groups, kH, kW)``
    applied as cross-correlation (PyTorch's convention) with ``stride``, ``padding``,
    ``dilation`` as ``(H, W)`` pairs. ``delays`` (dense, sparse): extra steps per synapse, shape of
    ``weights``.
    """

    name: str
    kind: GroupKind
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

    def __post_init__(self):
        for field in ("weights", "rows", "cols", "delays"):
            object.__setattr__(self, field, _readonly(getattr(self, field)))
        _check_group(self)

    __eq__ = _same

    @property
    def synapses(self) -> int:
        """Stored synapses (for conv: the shared kernel's entries)."""
        return int(np.size(self.weights))

    @property
    def weight_memory_bytes(self) -> int:
        """Bytes of its non-zero weights at ``num_weight_bits`` each (a conv kernel counts once)."""
        return int(np.count_nonzero(self.weights)) * self.num_weight_bits // 8


@dataclasses.dataclass(frozen=True, eq=False)
class ChipNet:
    """Populations (in evaluation order), synapse groups, inputs and outputs; validated when
    built (:class:`IRError`): references, kinds, shapes and every field's range.

    ``pipeline_depth`` D: chip output at step ``t + D`` corresponds to the float output at
    step ``t``; ``depth``: per population its hop depth (its step ``t + depth`` is float step
    ``t``); ``output_of``: per NIR Output node the population holding its values; ``dt`` the
    time step and ``source`` the model file it was compiled from.
    """

    populations: Mapping[str, Population]
    groups: tuple[SynapseGroup, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    pipeline_depth: int = 0
    depth: Mapping[str, int] = dataclasses.field(default_factory=dict)
    output_of: Mapping[str, str] = dataclasses.field(default_factory=dict)
    dt: float = 1.0
    source: str = ""

    def __post_init__(self):
        _check_net(self)

    __eq__ = _same

    def incoming(self, name: str) -> list[SynapseGroup]:
        return [g for g in self.groups if g.dst == name]


def _check_net(net: ChipNet) -> None:
    _integer(net.pipeline_depth, 0, MAX_DEPTH, "pipeline_depth", None)
    for end in (*net.inputs, *net.outputs, *net.output_of.values(), *net.depth):
        if end not in net.populations:
            raise IRError(f"input/output/depth population '{end}' does not exist", node=end)
    for name, pop in net.populations.items():
        if name != pop.name:
            raise IRError(f"is stored under the name '{name}'", node=pop.name)
        if pop.role == "delay" and pop.origin not in net.populations:
            raise IRError(f"delay copy of '{pop.origin}', which does not exist", node=name)
    for g in net.groups:
        for end in (g.src, g.dst):
            if end not in net.populations:
                raise IRError(f"synapse group refers to population '{end}', which does not exist", node=g.name)
        if net.populations[g.dst].kind == "input":
            raise IRError("synapse group leads into an input population", node=g.name)
        _check_connection(g, net.populations[g.src], net.populations[g.dst])


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
    """``value`` if it is an integer in ``[low, high]``, else an :class:`IRError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise IRError(f"field '{what}' is {value!r}; expected an integer in [{low}, {high}]", node=node)
    return int(value)


def _integers(values, low: int, high: int, what: str, node: str) -> None:
    """An integer array with every entry in ``[low, high]``, else an :class:`IRError`."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise IRError(f"field '{what}' holds {arr.dtype} values; expected integers", node=node)
    if arr.size and (arr.min() < low or arr.max() > high):
        raise IRError(f"field '{what}' holds values in [{arr.min()}, {arr.max()}]; expected [{low}, {high}]", node=node)


def _choice(value, allowed: tuple[str, ...], what: str, node: str) -> None:
    if value not in allowed:
        raise IRError(f"{what} '{value}' is not one of {', '.join(allowed)}", node=node)


def _check_population(pop: Population) -> None:
    name = pop.name
    _choice(pop.kind, KINDS, "population kind", name)
    _choice(pop.role, ROLES, "population role", name)
    if not isinstance(pop.shape, tuple) or not pop.shape or any(
            isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in pop.shape):
        raise IRError(f"field 'shape' is {pop.shape!r}; expected positive integers", node=name)
    for field in ("du", "dv"):
        _integer(getattr(pop, field), *U12, field, name)
    _integer(pop.vth, 0, loihi.VTH_MAX if pop.kind == "lif" else loihi.MAX_UV - 1, "vth", name)
    _integer(pop.vsub, 0, loihi.VTH_MAX, "vsub", name)
    _integer(pop.bias_exp, *BIAS_EXP, "bias_exp", name)
    _integer(pop.payload_bits, *PAYLOAD_BITS, "payload_bits", name)
    for field in ("input_scale", "scale"):
        value = getattr(pop, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise IRError(f"field '{field}' is {value!r}; expected a positive number", node=name)
    if pop.reset not in RESETS or (pop.vsub > 0) != (pop.reset == "subtract") or (pop.vsub and pop.kind != "lif"):
        raise IRError(f"reset '{pop.reset}' (vsub {pop.vsub}) is not 'zero', or 'subtract' on a lif with vsub > 0",
                      node=name)
    if (pop.role == "delay") != bool(pop.origin):
        raise IRError(f"role '{pop.role}' with origin '{pop.origin}': a delay copy, and only one, names its origin",
                      node=name)
    if pop.bias_mant is not None:
        if np.shape(pop.bias_mant) != pop.shape:
            raise IRError(f"bias_mant shape {np.shape(pop.bias_mant)} is not the population shape {pop.shape}", node=name)
        _integers(pop.bias_mant, *BIAS_MANT, "bias_mant", name)


def _check_group(g: SynapseGroup) -> None:
    name = g.name
    _choice(g.kind, GROUP_KINDS, "synapse group kind", name)
    _integer(g.weight_exp, *WEIGHT_EXP, "weight_exp", name)
    _integer(g.num_weight_bits, 1, loihi.WEIGHT_BITS, "num_weight_bits", name)
    if g.kind == "conv" and g.weight_exp > 0:
        raise IRError(f"conv weight_exp {g.weight_exp} > 0: a conv stores its effective kernel at exponent 0",
                      node=name)
    _integers(g.weights, *(CONV_WEIGHT if g.kind == "conv" and not g.weight_exp else DENSE_WEIGHT), "weights", name)
    if g.kind == "sparse" and (g.rows is None or g.cols is None or np.ndim(g.weights) != 1
                               or not np.shape(g.rows) == np.shape(g.cols) == np.shape(g.weights)):
        raise IRError("sparse weights need 'rows' and 'cols' of the same length", node=name)
    if g.kind == "conv":
        for field, least in (("stride", 1), ("padding", 0), ("dilation", 1)):
            value = getattr(g, field)
            if not isinstance(value, tuple) or len(value) != 2:
                raise IRError(f"field '{field}' is {value!r}; expected two integers", node=name)
            for v in value:
                _integer(v, least, 1 << 16, field, name)
        _integer(g.groups, 1, 1 << 16, "groups", name)
    if g.delays is not None:
        if g.kind == "conv" or np.shape(g.delays) != np.shape(g.weights):
            raise IRError("delays are supported on dense and sparse groups, one per synapse", node=name)
        _integers(g.delays, 0, loihi.MAX_DELAY, "delays", name)


def conv_synapses(weights: np.ndarray, stride, padding, dilation, groups: int, src_shape: tuple[int, ...],
                  dst_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The explicit synapses ``(rows, cols, values)`` of a conv kernel ``weights`` (PyTorch's
    ``(O, I/groups, kH, kW)``) between populations of ``src_shape`` and ``dst_shape``: zero taps
    and taps on the padding left out, sorted by destination then source, one synapse per pair."""
    o, per_group, kh, kw = weights.shape
    height, width = src_shape[1:] if len(src_shape) == 3 else (1, 1)
    out_h, out_w = dst_shape[1:] if len(dst_shape) == 3 else (1, 1)
    (sy, sx), (py, px), (dy, dx) = stride, padding, dilation
    taps = np.nonzero(weights)
    k_o, k_c, k_y, k_x = (a[:, None, None] for a in taps)
    y, x = np.arange(out_h)[:, None], np.arange(out_w)[None, :]
    iy, ix = y * sy - py + k_y * dy, x * sx - px + k_x * dx
    channel = k_o // (o // groups) * per_group + k_c
    inside = np.broadcast_to((iy >= 0) & (iy < height) & (ix >= 0) & (ix < width), (len(k_o), out_h, out_w))
    rows = np.broadcast_to((k_o * out_h + y) * out_w + x, inside.shape)[inside]
    cols = np.broadcast_to((channel * height + iy) * width + ix, inside.shape)[inside]
    values = np.broadcast_to(weights[taps][:, None, None], inside.shape)[inside]
    order = np.lexsort((cols, rows))
    return rows[order], cols[order], values[order]


def conv_as_sparse(g: SynapseGroup, src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> SynapseGroup:
    """Conv group ``g`` between populations of ``src_shape`` and ``dst_shape`` as the sparse group
    of its explicit synapses (:func:`conv_synapses`; same name, weights and exponent)."""
    rows, cols, values = conv_synapses(g.weights, g.stride, g.padding, g.dilation, g.groups, src_shape, dst_shape)
    return SynapseGroup(g.name, "sparse", g.src, g.dst, values, weight_exp=g.weight_exp,
                        num_weight_bits=g.num_weight_bits, rows=rows, cols=cols, source=g.source)


def _check_connection(g: SynapseGroup, src: Population, dst: Population) -> None:
    """The group's weights connect ``src`` to ``dst``."""
    if g.kind == "dense" and g.weights.shape != (dst.size, src.size):
        raise IRError(f"dense weights {g.weights.shape} do not connect {src.size} -> {dst.size}", node=g.name)
    if g.kind == "sparse":
        _integers(g.rows, 0, dst.size - 1, "rows", g.name)
        _integers(g.cols, 0, src.size - 1, "cols", g.name)
        flat = np.asarray(g.rows, dtype=np.int64) * src.size + np.asarray(g.cols, dtype=np.int64)
        if np.unique(flat).size != flat.size:  # Lava's CSR would sum them; keep one synapse per pair
            raise IRError("sparse synapses repeat a (row, col) pair", node=g.name)
    if g.kind == "conv" and not _conv_fits(g, src.shape, dst.shape):
        raise IRError(f"conv weights {np.shape(g.weights)} (groups {g.groups}) do not connect {src.shape} -> {dst.shape}",
                      node=g.name)


def _conv_fits(g: SynapseGroup, src: tuple[int, ...], dst: tuple[int, ...]) -> bool:
    """Whether conv group ``g`` maps a ``src`` (C, H, W) population onto ``dst``: its output
    (C_out, oH, oW) is ``dst``, or ``dst`` is (C_out,) and oH = oW = 1."""
    w = np.shape(g.weights)
    if len(w) != 4 or len(src) != 3 or src[0] != w[1] * g.groups:
        return False
    out = (w[0], *shapes.window_size(src[1:], w[2:], g.stride, g.padding, g.dilation))
    return dst == out or (dst == out[:1] and out[1:] == (1, 1))
