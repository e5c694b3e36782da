"""Reading a ReLU ANN from ONNX: supported operators only, batch norm folded, constants resolved.

The result is an :class:`AnnGraph`: a list of :class:`Op` in the file's topological order, each
a small record of one supported operator with its constant parameters as float64 numpy arrays.
Tensors are named as in the ONNX file; the batch axis is the first axis of every tensor.

**Fixed batch.** ``torch.onnx.export(model, x, f)`` without ``dynamic_axes`` fixes the batch to
``len(x)`` (often 1) in the input's declared shape and in the shape constants of its Reshape nodes
(``x.view(x.size(0), -1)`` becomes ``Reshape`` to ``[1, -1]``). :attr:`AnnGraph.batch` is that
size: calibration then runs in chunks of exactly that many samples (:mod:`.calibrate`) and the
model runs as exported; nothing in the emitted NIR has a batch axis. A Reshape whose first entry is
neither 0, -1 nor that batch is refused, as is a free input batch with Reshapes that hard-code two
different ones.

Supported (inference semantics): Conv (2-D, symmetric padding), BatchNormalization (folded
into the Conv before it), Relu, Add (two tensors: a residual join; a tensor and a constant: a
bias folded into the Conv/Gemm/MatMul before it), Gemm, MatMul (by a constant), Flatten
(axis 1), Reshape (to ``(batch, -1)``, the batch written as 0, -1 or the fixed batch),
AveragePool, GlobalAveragePool, MaxPool, Identity, Dropout, Constant. Anything else is a
:class:`ModelError` naming the node and the operator.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from snn2chip import memory
from snn2chip.errors import ModelError
from snn2chip.files import require_file

SUPPORTED = ("Conv", "BatchNormalization", "Relu", "Add", "Gemm", "MatMul", "Flatten", "Reshape", "AveragePool",
             "GlobalAveragePool", "MaxPool", "Identity", "Dropout", "Constant")
#: what an unsupported Shape node most likely is, and the way around it
SHAPE_HINT = ("; a shape computed from the batch (x.view(x.size(0), -1) exported with a dynamic batch): "
              "export with a fixed batch (torch.onnx.export without dynamic_axes) or use torch.flatten(x, 1)")
#: Operators that pass their (single) input through unchanged at inference.
PASS_THROUGH = ("Identity", "Dropout")


@dataclasses.dataclass(frozen=True)
class Op:
    """One operator: ``kind`` conv, gemm, relu, add, avgpool, maxpool, flatten; ``inputs`` and
    ``output`` tensor names; ``params`` weights (``weight``, ``bias``) and attributes
    (``stride``, ``padding``, ``dilation``, ``groups``, ``kernel``; pools with ``kernel=None``
    are global)."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    output: str
    params: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AnnGraph:
    """The ANN: ``ops`` in topological order, the single ``input`` and ``output`` tensor names,
    the input shape without batch axis (``None`` where the file leaves a dimension free) and
    ``batch``, the number of samples the file runs on at once when it fixes one (the input's
    declared batch, or for a free one the batch its Reshape nodes hard-code), else ``None``."""

    ops: tuple[Op, ...]
    input: str
    input_shape: tuple[int | None, ...]
    output: str
    source: str
    batch: int | None = None

    def consumers(self, tensor: str) -> list[Op]:
        return [op for op in self.ops if tensor in op.inputs]


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _padding(pads, name: str, op: str) -> tuple[int, int]:
    pads = [int(p) for p in (pads or [0, 0, 0, 0])]
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise ModelError(f"node '{name}' (op {op}): asymmetric padding {pads} cannot be expressed in NIR")
    return pads[0], pads[1]


def _check_auto_pad(attrs: dict, name: str, op: str) -> None:
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) != "NOTSET":
        raise ModelError(f"node '{name}' (op {op}): auto_pad is not supported (export with explicit pads)")


def load(path: str | Path) -> AnnGraph:
    """Read ``path`` and return its :class:`AnnGraph` (see the module docstring)."""
    import onnx
    from onnx import numpy_helper

    file = str(path)
    require_file(path)
    try:
        model = onnx.load(file)
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise ModelError(f"not an ONNX model ({type(e).__name__})", file=file) from None
    graph = model.graph
    try:
        consts = {t.name: _initializer(t, numpy_helper) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ModelError(f"the graph needs exactly one input and one output, has {len(inputs)} and {len(graph.output)}")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in inputs[0].type.tensor_type.shape.dim]
        if not dims:
            raise ModelError(f"the input '{inputs[0].name}' declares no shape: export it with its batch and sample axes")
        ops: list[Op] = []
        for index, node in enumerate(graph.node):
            name = node.name or f"{node.op_type}_{index}"
            if node.op_type not in SUPPORTED:
                raise ModelError(f"node '{name}' (op {node.op_type}): unsupported operator; supported: {', '.join(SUPPORTED)}"
                                 + SHAPE_HINT * (node.op_type == "Shape"))
            read = _read_node(node, name, consts)
            if isinstance(read, Op):
                ops.append(read)
            else:
                consts.update(read)
        ops, output = _fold(ops, graph.output[0].name)
        batch = _batch(ops, dims[0])
    except ModelError as e:
        raise e.in_file(file) from None
    return AnnGraph(tuple(ops), inputs[0].name, tuple(dims[1:]), output, file, batch)


def _batch(ops: list[Op], declared: int | None) -> int | None:
    """The batch the model runs on: the input's ``declared`` one, else the one its Reshape nodes
    hard-code (``[1, -1]``), else None (free); Reshapes must agree with it."""
    batch = declared
    for op in ops:
        fixed = op.params.get("batch")
        if fixed is None or fixed == batch:
            continue
        if batch is not None:
            where = "the input's declared batch" if declared is not None else "another Reshape's"
            raise ModelError(f"node '{op.name}' (op Reshape): reshapes to {list(op.params['shape'])}, whose first "
                             f"entry is not the batch ({where} is {batch}): only a reshape to (batch, -1) "
                             "is supported")
        batch = fixed
    return batch


def _initializer(tensor, numpy_helper) -> np.ndarray:
    """An initializer as float64, after checking its declared size against the memory budget
    and that it holds the data it declares (real, finite numbers)."""
    count = math.prod(tensor.dims)
    memory.check(8 * count, f"initializer '{tensor.name}' ({count:,} values)")
    try:
        values = numpy_helper.to_array(tensor)
    except Exception as e:  # onnx raises ValueError, TypeError, ... on tensors that contradict their dims
        raise ModelError(f"initializer '{tensor.name}' of shape {list(tensor.dims)} does not hold the data it "
                         f"declares ({' '.join(str(e).split())[:200]})") from None
    if values.dtype.kind not in "biuf":
        raise ModelError(f"initializer '{tensor.name}' holds {values.dtype} values; expected real numbers")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ModelError(f"initializer '{tensor.name}' holds NaN or infinite values")
    return values.astype(np.float64)


@dataclasses.dataclass(frozen=True)
class _Node:
    """One ONNX node as read: its name, operator, attributes, input and output tensor names."""

    name: str
    op: str
    attrs: dict
    ins: tuple[str, ...]
    out: str

    def const(self, consts: dict[str, np.ndarray], i: int, what: str) -> np.ndarray | None:
        """The constant fed to input ``i`` (None when the input is absent)."""
        if i >= len(self.ins) or self.ins[i] == "":
            return None
        if self.ins[i] not in consts:
            raise ModelError(f"node '{self.name}' (op {self.op}): {what} '{self.ins[i]}' must be a constant (an initializer)")
        return consts[self.ins[i]]


def _read_node(node, name: str, consts: dict[str, np.ndarray]) -> Op | dict[str, np.ndarray]:
    """The :class:`Op` of ONNX ``node``, or the constants it defines (by tensor name)."""
    n = _Node(name, node.op_type, _attrs(node), tuple(node.input), node.output[0])
    return _READERS.get(n.op, _read_pool)(n, consts)


def _read_constant(n: _Node, consts: dict) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    if "value" not in n.attrs:
        raise ModelError(f"node '{n.name}' (op Constant): only tensor constants ('value') are supported")
    return {n.out: numpy_helper.to_array(n.attrs["value"]).astype(np.float64)}


def _read_reshape(n: _Node, consts: dict) -> Op | dict[str, np.ndarray]:
    """Identity and Dropout (identities; of a constant, that constant: torch shares equal
    initializers through Identity nodes), Reshape to ``(batch, -1)`` (the batch as 0, -1 or a
    fixed number, recorded as ``params["batch"]``) and Flatten at axis 1."""
    if n.op in PASS_THROUGH and n.ins[0] in consts:
        return {n.out: consts[n.ins[0]]}
    params = {}
    if n.op == "Reshape":
        shape = n.const(consts, 1, "the target shape").astype(np.int64)
        if shape.shape != (2,) or shape[0] < -1:
            raise ModelError(f"node '{n.name}' (op Reshape): only a reshape to (batch, -1) is supported, got {shape.tolist()}")
        if shape[0] > 0:  # a batch fixed at export (torch: x.view(x.size(0), -1) without dynamic axes)
            params = dict(batch=int(shape[0]), shape=tuple(int(v) for v in shape))
    if n.op == "Flatten" and n.attrs.get("axis", 1) != 1:
        raise ModelError(f"node '{n.name}' (op Flatten): only axis=1 is supported, got {n.attrs['axis']}")
    return Op(n.name, "identity" if n.op in PASS_THROUGH else "flatten", (n.ins[0],), n.out, params)


def _read_conv(n: _Node, consts: dict) -> Op:
    _check_auto_pad(n.attrs, n.name, n.op)
    weight = n.const(consts, 1, "the weight")
    if weight.ndim != 4:
        raise ModelError(f"node '{n.name}' (op Conv): only 2-D convolutions are supported (weight of rank {weight.ndim})")
    bias = n.const(consts, 2, "the bias")
    return Op(n.name, "conv", (n.ins[0],), n.out, dict(
        weight=weight, bias=np.zeros(weight.shape[0]) if bias is None else bias,
        stride=tuple(n.attrs.get("strides", (1, 1))), padding=_padding(n.attrs.get("pads"), n.name, n.op),
        dilation=tuple(n.attrs.get("dilations", (1, 1))), groups=int(n.attrs.get("group", 1))))


def _read_batchnorm(n: _Node, consts: dict) -> Op:
    scale, beta, mean, var = (n.const(consts, i, what)
                              for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")))
    factor = scale / np.sqrt(var + n.attrs.get("epsilon", 1e-5))
    return Op(n.name, "batchnorm", (n.ins[0],), n.out, dict(factor=factor, shift=beta - mean * factor))


def _read_relu(n: _Node, consts: dict) -> Op:
    return Op(n.name, "relu", (n.ins[0],), n.out)


def _read_add(n: _Node, consts: dict) -> Op | dict[str, np.ndarray]:
    """Two constants: their sum (a constant); a tensor and a constant: a bias; else a join."""
    constant = [i for i, t in enumerate(n.ins) if t in consts]
    if len(constant) == 2:
        return {n.out: consts[n.ins[0]] + consts[n.ins[1]]}
    if constant:
        return Op(n.name, "bias", (n.ins[1 - constant[0]],), n.out, dict(bias=consts[n.ins[constant[0]]]))
    return Op(n.name, "add", n.ins, n.out)


def _read_gemm(n: _Node, consts: dict) -> Op:
    """Gemm, or MatMul by a constant."""
    if n.attrs.get("transA", 0):
        raise ModelError(f"node '{n.name}' (op Gemm): transA=1 is not supported")
    b = n.const(consts, 1, "the weight")
    if b.ndim != 2:
        raise ModelError(f"node '{n.name}' (op {n.op}): the weight must be a matrix, has shape {b.shape}")
    weight = n.attrs.get("alpha", 1.0) * (b if n.attrs.get("transB", 0) else b.T)
    c = n.const(consts, 2, "the bias") if n.op == "Gemm" else None
    bias = np.zeros(weight.shape[0]) if c is None else np.broadcast_to(n.attrs.get("beta", 1.0) * c, weight.shape[:1])
    return Op(n.name, "gemm", (n.ins[0],), n.out, dict(weight=weight, bias=np.array(bias, dtype=np.float64)))


def _read_pool(n: _Node, consts: dict) -> Op:
    """AveragePool, MaxPool and GlobalAveragePool."""
    if n.op == "GlobalAveragePool":
        return Op(n.name, "avgpool", (n.ins[0],), n.out, dict(kernel=None))
    attrs = n.attrs
    _check_auto_pad(attrs, n.name, n.op)
    if attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", (1, 1))):
        raise ModelError(f"node '{n.name}' (op {n.op}): ceil_mode and dilation are not supported")
    padding = _padding(attrs.get("pads"), n.name, n.op)
    if n.op == "AveragePool" and any(padding) and not attrs.get("count_include_pad", 0):
        raise ModelError(f"node '{n.name}' (op AveragePool): padding with count_include_pad=0 is not supported")
    kernel = tuple(attrs["kernel_shape"])
    return Op(n.name, "avgpool" if n.op == "AveragePool" else "maxpool", (n.ins[0],), n.out, dict(
        kernel=kernel, stride=tuple(attrs.get("strides", (1,) * len(kernel))), padding=padding))


#: the reader of each supported operator other than the pools (:func:`_read_pool`)
_READERS = {"Constant": _read_constant, "Identity": _read_reshape, "Dropout": _read_reshape,
            "Reshape": _read_reshape, "Flatten": _read_reshape, "Conv": _read_conv,
            "BatchNormalization": _read_batchnorm, "Relu": _read_relu, "Add": _read_add,
            "Gemm": _read_gemm, "MatMul": _read_gemm}


def _fold(ops: list[Op], output: str) -> tuple[list[Op], str]:
    """Fold BatchNormalization and constant bias additions into the Conv/Gemm before them and
    drop identities (their output tensor becomes an alias of their input). Returns the ops and
    the graph's output tensor (resolved through identities)."""
    alias: dict[str, str] = {}
    result: list[Op] = []
    for op in ops:
        op = dataclasses.replace(op, inputs=tuple(alias.get(t, t) for t in op.inputs))
        if op.kind == "identity":
            alias[op.output] = op.inputs[0]
            continue
        if op.kind in ("batchnorm", "bias"):
            producer = next((p for p in result if p.output == op.inputs[0]), None)
            users = [o for o in ops if op.inputs[0] in o.inputs]
            if producer is None or producer.kind not in ("conv", "gemm") or len(users) != 1 or op.inputs[0] == output:
                what = "BatchNormalization" if op.kind == "batchnorm" else "Add of a constant"
                raise ModelError(f"node '{op.name}' ({what}): can only be folded into the Conv/Gemm/MatMul right before it "
                                 "when nothing else reads that layer's output")
            p = dict(producer.params)
            if op.kind == "batchnorm":
                shape = (-1,) + (1,) * (p["weight"].ndim - 1)
                p["weight"] = p["weight"] * op.params["factor"].reshape(shape)
                p["bias"] = p["bias"] * op.params["factor"] + op.params["shift"]
            else:
                bias = np.asarray(op.params["bias"]).reshape(-1)
                if bias.size not in (1, p["bias"].size):
                    raise ModelError(f"node '{op.name}' (op Add): the constant of shape {op.params['bias'].shape} "
                                     "is not a per-channel bias")
                p["bias"] = p["bias"] + bias
            result[result.index(producer)] = dataclasses.replace(producer, output=op.output, params=p)
            continue
        result.append(op)
    return result, alias.get(output, output)
