r"""ANN→SNN conversion by the S-ResNet method: a trained ReLU network (ONNX) to an IF network (NIR).

Method (Hu, Tang, Pan, "Spiking Deep Residual Networks", IEEE TNNLS 2021, arXiv 1805.01352, and
the authors' code github.com/yangfan-hu/spiking-deep-residual-networks, files
``examples/cifar10/ann2snn.m``, ``examples/imagenet/validate_res*_centre_comp_pt.m``,
``find_activation_single_gpu.m``, ``+dagnn/If.m``, ``+dagnn/SPooling.m``):

1. read the ONNX graph, fold batch norm (:mod:`.onnx_graph`);
2. run calibration samples through the ANN (onnxruntime) and take per ReLU (and for the logits)
   λ = the 99.9th percentile of its activations (:mod:`.calibrate`);
3. emit NIR (:mod:`.emit`): ReLU → IF (threshold 1, ``v >= 1``, reset by subtraction, the
   ``metadata["reset"] = "subtract"`` extension), weights ``W·λ_{l−1}/λ_l``, biases ``b/λ_l``,
   identity shortcuts through a ``Scale(λ_in/λ_out)`` node, projection shortcuts normalised as
   convolutions, max pooling by IF neurons, and an ``I`` read-out integrating the logits. The
   input is the data itself (λ_0 = 1), held as a constant current.

**Compensation** (``compensation = c``). The paper proposes a compensation mechanism for the
error that discretisation causes: an IF neuron with reset by subtraction over T steps emits
``floor(T·z)`` spikes for a constant drive z, so its rate undershoots z by up to 1/T; deeper
layers receive these lowered rates and fall further below the ANN. We could not retrieve the
paper's exact formulation; the authors' code implements it as one factor ``compensation`` that
multiplies every normalised weight and every shortcut scale (``W·λ_{l−1}/λ_l·c``,
``λ_in/λ_out·c``; biases unchanged), which is what is implemented here (``c = 1``: off). A c
slightly above 1 raises every layer's drive by c, offsetting the systematic undershoot; its
effect on the zoo ANN is measured in ``benchmarks/conversion.py`` (README table). The authors'
neurons also start at half the threshold (``init_m = 0.5`` in ``If.m``), which rounds instead of
flooring; NIR has no initial membrane potential, so that is not expressible here.

**Max pooling.** The authors' ``SPooling`` passes a window's spikes only while the window's
largest accumulated input count exceeds the output's count (its output count tracks the max of
the input counts). That gate is not an IF neuron nor a linear map, so it cannot be written in
NIR; :func:`.emit.maxpool` computes the same quantity, the running maximum of the window's spike
counts, from IF neurons and one-hot depthwise convolutions, which the compiler lowers like any
other layer: balanced trees of pairwise maxima, over the window's rows and then its columns
where that takes fewer neurons, and one IF population that fires the pool's value (a 3×3 pool of
stride 2: 5 populations, 6 output sizes of neurons before the output, 5 deep; a chain of running
maxima was 9 populations of the output's size, 9 deep, and its value a sum of all 9).

Unsupported operators fail with their name and node (``node 'X' (op LRN): unsupported operator``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nir
import numpy as np

from snn2chip.convert import calibrate, emit, onnx_graph
from snn2chip.errors import ModelError
from snn2chip.files import atomic_file
from snn2chip.frontend.read import file_metadata

DEFAULT_PERCENTILE = 99.9
#: metadata 'generator' of converted files: an existing file with it may be replaced by ``convert -o``
GENERATOR = "snn2chip convert"


@dataclasses.dataclass(frozen=True)
class Conversion:
    """The converted network (``graph``) and what was scaled how (``report``: per node λ or factor)."""

    graph: nir.NIRGraph
    report: dict


def convert(model: str | Path, samples: np.ndarray, *, percentile: float = DEFAULT_PERCENTILE,
            compensation: float = 1.0, shortcut_norm: bool = True, time_steps: int | None = None,
            samples_file: str = "calibration data") -> Conversion:
    """Convert the ReLU ANN in ONNX file ``model`` with calibration ``samples`` ``(n, *input shape)``.

    ``compensation``: the weight and shortcut gain c (module docstring; 1 = off).
    ``shortcut_norm=False``: identity shortcuts carry unscaled spikes (the naive conversion).
    ``time_steps``: stored as graph metadata ``time_steps`` (``snn2chip verify``'s default).
    """
    if not compensation > 0 or not np.isfinite(compensation):
        raise ModelError(f"the compensation factor must be a positive number, got {compensation:g}")
    ann = onnx_graph.load(model)
    x = calibrate.check_inputs(ann, samples, samples_file)
    scaled = [op.output for op in ann.ops if op.kind == "relu"] + [ann.output]
    calib = calibrate.calibrate(ann, x, scaled, percentile)
    em = emit.Emitter(ann, calib, compensation, shortcut_norm)
    try:
        em.emit()
    except ModelError as e:
        raise e.in_file(str(model)) from None
    metadata = {"generator": GENERATOR, "dt": 1.0, "converted_from": Path(model).name, "percentile": float(percentile),
                "compensation": float(compensation), "shortcut_norm": bool(shortcut_norm)}
    if time_steps is not None:
        metadata["time_steps"] = int(time_steps)
    graph = nir.NIRGraph(nodes=em.nodes, edges=em.edges, metadata=metadata, type_check=False)
    report = {"percentile": percentile, "compensation": compensation, "shortcut_norm": shortcut_norm,
              "samples": int(len(x)), "layers": em.report}
    return Conversion(graph, report)


def describe(layer: dict) -> str:
    """One line of a conversion report entry: the node and its λ or scaling factor."""
    if layer["kind"] == "IF":
        return f"{layer['node']}: IF, lambda {layer['lambda']:.4g}"
    if layer["kind"] == "maxpool":
        return (f"{layer['node']}: spiking max pooling, {layer['populations']} IF populations {layer['depth']} deep, "
                f"lambda {layer['lambda']:.4g}")
    text = f"{layer['node']}: {layer['kind']}, x {layer['factor']:.4g}"
    return text + (f" (lambda {layer['lambda_in']:.4g} -> {layer['lambda_out']:.4g})" if "lambda_in" in layer else "")


def write(graph: nir.NIRGraph, path: str | Path) -> None:
    """Write ``graph`` to ``path`` (checked with :func:`snn2chip.files.check_file`) completely or not at all."""
    with atomic_file(path) as tmp:
        nir.write(tmp, graph)


def is_converted(path: Path) -> bool:
    """Whether ``path`` is a NIR file written by :func:`write` (its metadata names the generator)."""
    return file_metadata(path).get("generator") == GENERATOR


def graph_of(conversion: Conversion, source: str = "<converted>"):
    """The converted network as a checked :class:`~snn2chip.frontend.graph.Graph` (runnable by the float reference)."""
    from snn2chip.frontend.graph import make_graph

    g = conversion.graph
    return make_graph(g.nodes, g.edges, metadata=g.metadata, source=source)


def agreement(conversion: Conversion, model: str | Path, x: np.ndarray, steps: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Run the converted net in the float reference for ``steps`` steps on ``x``: the fraction of
    samples whose prediction (argmax of the read-out at the last step) equals the ANN's (argmax
    of its output), and both predictions."""
    from snn2chip.frontend import reference

    if steps < 1:
        raise ModelError(f"--steps must be at least 1, got {steps}")
    snn = reference.run(graph_of(conversion), x, steps, record=["readout"])["readout"][:, -1]
    snn_pred = snn.reshape(len(x), -1).argmax(1)
    ann_pred = ann_logits(model, x).reshape(len(x), -1).argmax(1)
    return float((snn_pred == ann_pred).mean()), ann_pred, snn_pred


def ann_logits(model: str | Path, x: np.ndarray) -> np.ndarray:
    """The ANN's output on ``x`` (onnxruntime)."""
    ann = onnx_graph.load(model)
    return calibrate.run(ann, calibrate.check_inputs(ann, x, "inputs"), [ann.output])[ann.output]
