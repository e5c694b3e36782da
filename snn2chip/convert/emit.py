r"""NIR emission of a normalised spiking network from an :class:`~snn2chip.convert.onnx_graph.AnnGraph`.

Every ANN tensor is represented by a sum of NIR node outputs, each with a scale: ``ANN value ≈
Σ scale_i · output_i`` (a :class:`Term` per node; an IF node's output is its firing rate, so its
scale is its λ). Each operator is emitted from the representation of its inputs:

- ReLU → ``nir.IF`` (r = 1, threshold 1 with ``v >= 1`` written as ``v > nextafter(1, -inf)``,
  reset by subtraction: ``metadata["reset"] = "subtract"``); its input is rescaled to λ_l, so
  its rate approximates ``a_l / λ_l``.
- Conv / Gemm → ``nir.Conv2d`` / ``nir.Affine`` with ``W · λ_{l−1}/λ_l · c`` and ``b / λ_l``
  (c the compensation factor, 1 by default), λ_l the λ of the ReLU (or output) its result feeds.
- Add → no node (NIR sums the edges into a node); a spike term of the sum (an identity shortcut)
  reaches the next neuron through a ``nir.Scale`` of ``λ_in/λ_out · c`` named
  ``<neuron>.shortcut`` (with ``shortcut_norm=False``: no Scale, the naive conversion). A
  projection shortcut is a Conv and is normalised as above.
- AveragePool / GlobalAveragePool / Flatten / Reshape → ``nir.AvgPool2d`` / ``nir.Flatten``.
- MaxPool → the spiking max pooling of :func:`_maxpool`.
- The graph output → ``readout = nir.I(r = 1)`` integrating the normalised logits (prediction:
  argmax at the last step), then ``output``.
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from snn2chip.convert.calibrate import Calibration
from snn2chip.convert.onnx_graph import AnnGraph, Op
from snn2chip.errors import ModelError
from snn2chip.frontend import neurons, shapes

#: ``v > IF_THRESHOLD`` is ``v >= 1`` in float32 (S-ResNet's neurons fire at the threshold).
IF_THRESHOLD = np.nextafter(np.float32(1), np.float32(-np.inf))


@dataclasses.dataclass(frozen=True)
class Term:
    """``scale`` times the output of NIR node ``node``; ``shortcut``: reached a join unweighted."""

    node: str
    scale: float
    shortcut: bool = False


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def if_node(shape, **metadata) -> nir.IF:
    """An IF neuron of threshold 1 (fires at ``v >= 1``) with reset by subtraction; ``metadata``: more entries."""
    return nir.IF(r=np.ones(shape, np.float32), v_threshold=np.full(shape, IF_THRESHOLD, np.float32),
                  v_reset=np.zeros(shape, np.float32), metadata={"reset": "subtract", **metadata})


def nir_name(onnx_name: str) -> str:
    """A NIR node name from an ONNX node name (HDF5 groups cannot contain '/')."""
    return onnx_name.strip("/").replace("/", ".") or "node"


class Emitter:
    """Builds the NIR nodes and edges; ``report`` lists every scaling decision."""

    def __init__(self, ann: AnnGraph, calib: Calibration, compensation: float, shortcut_norm: bool):
        self.ann, self.calib, self.c, self.shortcut_norm = ann, calib, compensation, shortcut_norm
        self.nodes: dict[str, nir.NIRNode] = {}
        self.edges: list[tuple[str, str]] = []
        self.values: dict[str, tuple[Term, ...]] = {}
        self.report: list[dict] = []
        self._shapes: dict[str, tuple[int, ...]] = {}  # NIR node -> output shape

    # --- helpers ----------------------------------------------------------------------------------

    def put(self, name: str, node: nir.NIRNode, sources: list[str], shape) -> str:
        """Add ``node`` (output ``shape``) with one edge from each source."""
        if name in self.nodes:
            raise ModelError(f"two NIR nodes would be named '{name}'")
        if len(set(sources)) != len(sources):
            raise ModelError(f"node '{name}' would receive two edges from the same node {sources}: NIR cannot express that")
        self.nodes[name] = node
        self._shapes[name] = tuple(int(s) for s in shape)
        self.edges.extend((s, name) for s in sources)
        return name

    def feed(self, value: tuple[Term, ...], scale: float, consumer: str) -> list[str]:
        """Sources whose sum is ``ANN value / scale``: terms whose own scale differs go through a
        Scale node (one per factor, summing its terms; on shortcut terms ``λ_in/λ_out · c``, or
        nothing without shortcut normalisation), named ``<consumer>.shortcut`` / ``.scale``."""
        groups: dict[tuple[float, bool], list[str]] = {}
        for term in value:
            factor = term.scale / scale
            if term.shortcut:
                factor = factor * self.c if self.shortcut_norm else 1.0
            groups.setdefault((factor, term.shortcut and factor != 1.0), []).append(term.node)
        sources = []
        for i, ((factor, shortcut), nodes) in enumerate(groups.items()):
            if factor == 1.0:
                sources.extend(nodes)
                continue
            kind = "shortcut" if shortcut else "scale"
            name = f"{consumer}.{kind}" + (str(i) if len(groups) > 2 else "")
            shape = self._shapes[nodes[0]]
            sources.append(self.put(name, nir.Scale(scale=np.full(shape, factor, np.float32)), nodes, shape))
            self.report.append(dict(node=name, kind=kind, factor=factor))
        return sources

    def target(self, tensor: str) -> float | None:
        """The scale the consumers of ``tensor`` want it in: λ of the ReLU (or output) it feeds
        through pass-through ops and joins; None when a weighted layer or several readers follow."""
        if tensor == self.ann.output:
            return self.calib.scales[tensor]
        users = self.ann.consumers(tensor)
        if len(users) != 1:
            return None
        if users[0].kind == "relu":
            return self.calib.scales[users[0].output]
        if users[0].kind in ("add", "avgpool", "flatten"):
            return self.target(users[0].output)
        return None

    # --- the graph --------------------------------------------------------------------------------

    def emit(self) -> None:
        ann, sizes = self.ann, self.calib.shapes
        self.put("input", nir.Input(input_type={"input": np.array(sizes[ann.input])}), [], sizes[ann.input])
        self.values[ann.input] = (Term("input", 1.0),)
        for op in ann.ops:
            try:
                self.values[op.output] = getattr(self, f"_{op.kind}")(op, nir_name(op.name))
            except ModelError as e:
                raise (e if e.node else ModelError(e.problem, node=op.name)) from None
        out = self.values[ann.output]
        shape = sizes[ann.output]
        self.put("readout", nir.I(r=np.ones(shape, np.float32)), self.feed(out, self.calib.scales[ann.output], "readout"), shape)
        self.put("output", nir.Output(output_type={"output": np.array(shape)}), ["readout"], shape)

    def _in(self, op: Op) -> tuple[tuple[Term, ...], float]:
        """The op's input value and the scale its terms are brought to (the first term's)."""
        value = self.values[op.inputs[0]]
        return value, value[0].scale

    def _relu(self, op: Op, name: str):
        lam = self.calib.scales[op.output]
        shape = self.calib.shapes[op.output]
        self.put(name, if_node(shape), self.feed(self.values[op.inputs[0]], lam, name), shape)
        self.report.append(dict(node=name, kind="IF", **{"lambda": lam}))
        return (Term(name, lam),)

    def _weighted(self, op: Op, name: str, make) -> tuple[Term, ...]:
        value, s_in = self._in(op)
        s_out = self.target(op.output) or s_in
        factor = s_in / s_out * self.c
        shape = self.calib.shapes[op.output]
        node = make(_f32(op.params["weight"] * factor), _f32(op.params["bias"] / s_out))
        self.put(name, node, self.feed(value, s_in, name), shape)
        self.report.append(dict(node=name, kind=op.kind, lambda_in=s_in, lambda_out=s_out, factor=factor))
        return (Term(name, s_out),)

    def _conv(self, op: Op, name: str):
        p, in_shape = op.params, self.calib.shapes[op.inputs[0]]
        return self._weighted(op, name, lambda w, b: nir.Conv2d(
            input_shape=np.array(in_shape[1:]), weight=w, stride=np.array(p["stride"]), padding=np.array(p["padding"]),
            dilation=np.array(p["dilation"]), groups=p["groups"], bias=b))

    def _gemm(self, op: Op, name: str):
        if len(self.calib.shapes[op.inputs[0]]) != 1:
            raise ModelError(f"Gemm/MatMul of a tensor of shape {self.calib.shapes[op.inputs[0]]} per sample: "
                             "only vectors (after Flatten) are supported")
        return self._weighted(op, name, lambda w, b: nir.Affine(weight=w, bias=b))

    def _add(self, op: Op, name: str):
        terms = []
        for tensor in op.inputs:
            for term in self.values[tensor]:
                spikes = isinstance(self.nodes[term.node], (nir.IF, nir.Input))
                terms.append(dataclasses.replace(term, shortcut=term.shortcut or spikes))
        return tuple(terms)

    def _linear(self, op: Op, name: str, node) -> tuple[Term, ...]:
        value, s_in = self._in(op)
        scale = self.target(op.output) or s_in
        self.put(name, node, self.feed(value, scale, name), self.calib.shapes[op.output])
        return (Term(name, scale),)

    def _avgpool(self, op: Op, name: str):
        in_shape = self.calib.shapes[op.inputs[0]]
        if len(in_shape) != 3:
            raise ModelError(f"average pooling of a tensor of shape {in_shape}: only (C, H, W) is supported")
        p = op.params
        kernel = in_shape[1:] if p["kernel"] is None else p["kernel"]
        stride = kernel if p["kernel"] is None else p["stride"]
        padding = (0, 0) if p["kernel"] is None else p["padding"]
        return self._linear(op, name, nir.AvgPool2d(kernel_size=np.array(kernel), stride=np.array(stride),
                                                    padding=np.array(padding)))

    def _flatten(self, op: Op, name: str):
        in_shape, out_shape = self.calib.shapes[op.inputs[0]], self.calib.shapes[op.output]
        if out_shape != (int(np.prod(in_shape)),):
            raise ModelError(f"reshapes {in_shape} to {out_shape} per sample: only flattening to a vector is supported")
        return self._linear(op, name, nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1))

    def _maxpool(self, op: Op, name: str):
        value = self.values[op.inputs[0]]
        if len(value) != 1 or not isinstance(self.nodes[value[0].node], (nir.IF, nir.Input)):
            raise ModelError("MaxPool is converted only on spikes or the input (put it after a Relu)")
        return maxpool(self, name, value[0], op.params, self.calib.shapes[op.inputs[0]], self.calib.shapes[op.output])


def maxpool(em: Emitter, name: str, src: Term, p: dict, in_shape, out_shape) -> tuple[Term, ...]:
    r"""Spiking max pooling: the running maximum of the window's spike counts, built from IF neurons
    in balanced trees of pairwise maxima, and one IF population ``name`` that fires it.

    A tree over values ``X_lo..X_{hi-1}`` (each the summed counts of some nodes) splits them at
    ``m``; with ``A`` and ``B`` the nodes whose summed counts are the maxima of the two halves, IF
    neurons ``<stage>{m}`` (threshold 1, reset by subtraction) receive ``B − A`` (``A`` through
    ``nir.Scale(−1)`` nodes ``<node>.neg``), and ``A + <stage>{m}`` is the maximum of the whole.
    With counts up to step t, ``<stage>{m}`` fires ``R = max(0, max_{τ≤t} (B − A)(τ))``, so
    ``A + R ≥ max(A, B)``, equal whenever the count difference is monotone (exceeding it by the
    count fluctuation otherwise, a few spikes independent of t). A tree over k values is
    ``ceil(log2 k)`` deep, and no fewer hops can do: with integer weights, a ReLU network needs
    ``ceil(log2 k)`` hidden layers to compute the maximum of k numbers (Haase, Hertrich and Loho,
    ICLR 2023).

    - **One tree** over the window's ``k = kh·kw`` positions: ``name.sel{j}`` (a depthwise
      ``nir.Conv2d`` with a one-hot kernel, the pool's stride and padding) picks position ``j``;
      stages ``name.max{m}``, ``k − 1`` populations of the output's size.
    - **Rows, then columns** where that takes fewer neurons (kernel rows above the stride, as a
      3×3 pool of stride 2): a tree over ``kw`` one-hot ``1×kw`` selections of every input row
      (stages ``name.hmax{m}``, ``kw − 1`` populations of ``C × H_in × W_out``), then a tree over
      the ``kh`` rows of its result (stages ``name.vmax{m}``, ``kh − 1`` of the output's size),
      each row's value read through one-hot ``kh×1`` selections (``<node>.row{r}``; for the
      input's own term, the one-hot ``kh×kw`` selection ``name.sel{r·kw}``). For a 3×3 pool of
      stride 2: 6 output sizes of stages instead of 8, as deep (2 + 2 = ``ceil(log2 9)``).

    The pool's value is the maximum's nodes summed (the trees' left spines and one selection);
    IF neurons ``name`` fire it as one spike train, as for any ReLU of the network (a running
    maximum of spike counts grows by at most one per step; an excess fires on later steps), so
    its consumers read one population. Every stage is marked a pool stage
    (:data:`neurons.POOL_STAGE`): a helper, not a layer of the model. The value is scaled like
    the input (max pooling commutes with the positive scale λ).
    """
    (kh, kw), (sh, sw), (ph, pw) = p["kernel"], p["stride"], p["padding"]
    channels, rows = in_shape[0], in_shape[1]
    pool = _Pool(em, name)
    if kh > 1 and kw > 1 and (kw - 1) * rows < kh * (kw - 1) * out_shape[1]:  # rows, then columns
        cols = pool.maximum([[pool.onehot(f"{name}.hsel{c}", src.node, in_shape, (1, kw), (0, c), (1, sw), (0, pw))]
                             for c in range(kw)], "hmax", (channels, rows, out_shape[2]))

        def row(r: int) -> list[str]:  # row r of the window: the column maximum's terms, selected
            first = pool.onehot(f"{name}.sel{r * kw}", src.node, in_shape, (kh, kw), (r, 0), (sh, sw), (ph, pw))
            return [first, *(pool.onehot(f"{t}.row{r}", t, (channels, rows, out_shape[2]), (kh, 1), (r, 0), (sh, 1),
                                         (ph, 0)) for t in cols[1:])]

        terms = pool.maximum([row(r) for r in range(kh)], "vmax", out_shape)
    else:
        terms = pool.maximum([[pool.onehot(f"{name}.sel{j}", src.node, in_shape, (kh, kw), divmod(j, kw), (sh, sw),
                                           (ph, pw))] for j in range(kh * kw)], "max", out_shape)
    node = em.put(name, if_node(out_shape), terms, out_shape)
    em.report.append(dict(node=name, kind="maxpool", populations=pool.stages + 1, depth=pool.depth + 1,
                          **{"lambda": src.scale}))
    return (Term(node, src.scale),)


class _Pool:
    """The nodes of one spiking max pool (:func:`maxpool`): one-hot selections, stages, negations."""

    def __init__(self, em: Emitter, name: str):
        self.em, self.name = em, name
        self.negated: dict[str, str] = {}
        self.stages = self.depth = 0  # IF stages built; hops of the trees built, in a row

    def onehot(self, name: str, src: str, shape, kernel, at, stride, padding) -> str:
        """A depthwise conv of ``src`` (``shape``) picking kernel position ``at`` of ``kernel``."""
        channels = shape[0]
        weight = np.zeros((channels, 1, *kernel), np.float32)
        weight[:, 0, at[0], at[1]] = 1
        conv = nir.Conv2d(input_shape=np.array(shape[1:]), weight=weight, stride=np.array(stride),
                          padding=np.array(padding), dilation=np.array((1, 1)), groups=channels,
                          bias=np.zeros(channels, np.float32))
        out = (channels, *shapes.window_size(shape[1:], kernel, stride, padding, (1, 1)))
        return self.em.put(name, conv, [src], out)

    def negate(self, node: str, shape) -> str:
        if node not in self.negated:
            minus = nir.Scale(scale=np.full(shape, -1, np.float32))
            self.negated[node] = self.em.put(f"{node}.neg", minus, [node], shape)
        return self.negated[node]

    def maximum(self, values: list[list[str]], stage: str, shape) -> list[str]:
        """The nodes whose summed counts are the maximum of ``values`` (each: nodes whose counts
        sum to it), by a balanced tree of IF stages ``name.{stage}{m}`` of ``shape``."""
        self.depth += (len(values) - 1).bit_length()

        def tree(lo: int, hi: int) -> list[str]:
            if hi - lo == 1:
                return values[lo]
            mid = lo + (hi - lo + 1) // 2
            a, b = tree(lo, mid), tree(mid, hi)
            self.stages += 1
            node = if_node(shape, **{neurons.POOL_STAGE: self.name})
            inputs = [*b, *(self.negate(x, shape) for x in a)]
            return [*a, self.em.put(f"{self.name}.{stage}{mid}", node, inputs, shape)]

        return tree(0, len(values))
