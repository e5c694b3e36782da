r"""From spikingjelly 2.0 (``spikingjelly.activation_based``) to NIR, exactly where NIR can say it.

:func:`from_spikingjelly` walks the network (:mod:`snn2chip.importers.sj_blocks` restates the
``forward`` of SEW-ResNet, Spiking ResNet and MS-ResNet and their blocks; ``nn.Sequential``,
``SeqToANNContainer`` and ``MultiStepContainer`` are read child by child) and exports each module
with the :class:`~snn2chip.importers.builder.Builder`. Topology is read from the classes, not
traced: torch.fx cannot trace BatchNorm's and the models' data-dependent control flow, and a
hook trace would not see the functions between modules (``sew_function``, ``+``, ``flatten``).
Nodes are named by module path (``layer1.0.sn1``); see :mod:`~snn2chip.importers.sj_blocks`.

Semantics (spikingjelly 2.0.0's CPU kernels, ``_ops/*/cpu.py``, against the float reference of
:mod:`snn2chip.frontend.neurons`: ``v <- decay·v + gain·x``, dt = 1, spike ``v > θ``, then reset):

=====================================  ======================================================
spikingjelly                           NIR
=====================================  ======================================================
IFNode ``h = v + x``                   IF, r = 1 (the same float32 addition: bit-exact)
LIFNode decay_input ``h = v + (x −     LIF, τ, r = 1 (decay 1 − 1/τ, gain 1/τ; the same
v)/τ``                                 real numbers; float32 rounding differs, ≤ 1 ulp a step)
LIFNode not decay_input ``h = v −      LIF, τ, r = τ (gain 1); bit-exact when 1/τ is a power
v/τ + x``                              of two (τ = 2), ≤ 1 ulp a step otherwise (MS-ResNet's 4/3)
ParametricLIFNode ``q = sigmoid(w)``   LIF as LIFNode with τ = 1/q (float64 of the float32 q)
fire ``h ≥ V_th``                      strict threshold ``nextafter(float32(V_th), −∞)``
hard reset to 0                        NIR reset to v_reset = 0
soft reset ``v = h − V_th`` (v_reset   reset by subtraction (``metadata["reset"] =
None)                                  "subtract"``), threshold float32(V_th): it is also the
                                       amount subtracted, so ``h == V_th`` exactly does not fire
conv + BatchNorm2d (eval statistics)   one Conv2d, folded by ``torch.nn.utils.fusion``
MaxPool2d of spikes                    SumPool2d > 0.5 (an OR, exact)
AdaptiveAvgPool2d to 1x1, flatten      AvgPool2d over the map, Flatten
Linear (the head, no output neuron)    Affine: the NIR output is the head at every step
sew_function ADD / AND / IAND          sum / Threshold(x + y > 1.5) / Threshold(x − y > 0.5)
=====================================  ======================================================

"Bit-exact" is relative to the model with BatchNorm folded the same way (:func:`fold_batchnorm`,
what spikingjelly's own ``fuse_conv_bn_eval_modules`` computes); unfolded, BatchNorm rounds
differently in float32. Refused with one line naming the module: non-zero ``v_reset`` (spikingjelly
starts the membrane at it, NIR at 0), neuron and layer types not listed (including subclasses,
which may change the equations), non-spiking surrogates, low-precision neurons, max pooling of
real values (MaxResNet), adaptive pooling to other sizes, a BatchNorm that follows no convolution,
mixed step modes, and any module the walk does not reach.
"""

from __future__ import annotations

import copy
import importlib.metadata
from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from snn2chip.importers import sj_blocks
from snn2chip.importers.builder import DT, Builder, ExportError, Value, if_node, lif_node, strict_threshold
from snn2chip.importers.sj_blocks import sub

from spikingjelly.activation_based import base, layer, neuron  # imported with this module only (see snn2chip/__init__.py)

#: containers whose children run one after another, each per step
SEQUENCES = (nn.Sequential, layer.SeqToANNContainer, layer.MultiStepContainer)
CONVS = (nn.Conv2d, layer.Conv2d)
NORMS = (nn.BatchNorm2d, layer.BatchNorm2d)
STATELESS = (*CONVS, nn.AvgPool2d, layer.AvgPool2d, nn.AdaptiveAvgPool2d, layer.AdaptiveAvgPool2d, nn.MaxPool2d,
             layer.MaxPool2d, nn.Flatten, layer.Flatten, nn.Linear, layer.Linear)
PASS_THROUGH = (nn.Identity, nn.Dropout, layer.Dropout)  # identities in evaluation
NEURONS = (neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode, neuron.SimpleIFNode, neuron.SimpleLIFNode)


class SpikingjellyBuilder(Builder):
    """The :class:`Builder` with spikingjelly's neurons, layers and containers; folds BatchNorm."""

    supported = ("IFNode, LIFNode, ParametricLIFNode (and their Simple variants), Conv2d (+ BatchNorm2d), AvgPool2d, "
                 "AdaptiveAvgPool2d to 1x1, MaxPool2d on spikes, Flatten, Linear, Dropout, Identity; nn.Sequential, "
                 "SeqToANNContainer, MultiStepContainer; SEW-ResNet, Spiking ResNet, MS-ResNet and their blocks")

    def __init__(self, model: nn.Module, mode: str = "s", **kwargs):
        super().__init__(model, **kwargs)
        self.mode = mode
        self.walkers = sj_blocks.walkers()
        #: (conv path, BatchNorm path, fused weight, fused bias) of every fold, in walk order
        self.folds: list[tuple[str, str, torch.Tensor, torch.Tensor]] = []

    def walk(self, path: str, m: nn.Module, x: Value) -> Value:
        """Export module ``m`` at ``path`` applied to ``x``: a known model or block, a container, a leaf."""
        walker = self.walkers.get(type(m))
        if walker is not None:
            return walker(self, path, m, x)
        if type(m) in SEQUENCES:
            return self.sequence(path, m, x)
        return self.module(path, x)

    def sequence(self, path: str, m: nn.Sequential, x: Value) -> Value:
        """Children in order; a convolution followed by a BatchNorm2d is one folded convolution."""
        children = list(m.named_children())
        i = 0
        while i < len(children):
            name, child = children[i]
            if type(child) in CONVS and i + 1 < len(children) and isinstance(children[i + 1][1], nn.modules.batchnorm._BatchNorm):
                x = self.conv_bn(sub(path, name), sub(path, children[i + 1][0]), x)
                i += 2
            else:
                x = self.walk(sub(path, name), child, x)
                i += 1
        return x

    def _visit(self, path: str) -> nn.Module:
        m = self.submodule(path)
        if path in self.visited:
            raise ExportError(f"module '{path}' is applied twice: NIR nodes are not shared, export it once")
        self.visited.add(path)
        return m

    def conv_bn(self, conv_path: str, bn_path: str, x: Value) -> Value:
        """``bn(conv(x))`` as one ``nir.Conv2d`` named ``conv_path`` (the BatchNorm's running
        statistics folded in by ``torch.nn.utils.fusion.fuse_conv_bn_weights``)."""
        conv, bn = self._visit(conv_path), self._visit(bn_path)
        if type(conv) not in CONVS:
            raise ExportError(f"module '{conv_path}' ({type(conv).__name__}): only Conv2d is exported "
                              f"(the convolution before '{bn_path}')")
        if type(bn) not in NORMS:
            raise ExportError(f"module '{bn_path}' ({type(bn).__name__}): only BatchNorm2d is folded into a convolution")
        if bn.running_mean is None or bn.running_var is None:
            raise ExportError(f"module '{bn_path}' (BatchNorm2d): track_running_stats=False has no evaluation statistics to fold")
        with torch.no_grad():
            weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                                bn.weight, bn.bias)
        weight, bias = weight.detach(), bias.detach()
        self.folds.append((conv_path, bn_path, weight, bias))
        return self.conv(conv_path, conv, x, weight=self.array(weight, None), bias=self.array(bias, None))

    def leaf(self, path: str, m: nn.Module, x: Value) -> Value | None:
        kind = type(m)
        if kind in NEURONS:
            return self.neuron(path, neuron_node(path, m, x.shape), x)
        if kind in PASS_THROUGH:
            return x
        if kind in NORMS:
            return super().leaf(path, m, x)  # refused: a BatchNorm that follows no convolution
        if kind is nn.Flatten and self.mode == "m" and not _per_step(self.model, path):
            raise ExportError(f"module '{path}' (Flatten): torch.nn.Flatten in a multi-step network flattens time "
                              "steps and samples together; use layer.Flatten or wrap it in SeqToANNContainer")
        if kind in STATELESS:
            return super().leaf(path, m, x)
        if next((c for c in m.children() if not _is_surrogate(c)), None) is not None:
            raise ExportError(f"module '{path}' ({kind.__name__}) is a block this exporter does not know, so its "
                              f"forward cannot be read (supported: {self.supported})")
        return None


def _per_step(model: nn.Module, path: str) -> bool:
    """Whether the module at ``path`` is inside a container that runs its children per step."""
    parts = path.split(".")
    return any(isinstance(model.get_submodule(".".join(parts[:i])), (layer.SeqToANNContainer, layer.MultiStepContainer))
               for i in range(1, len(parts)))


def _is_surrogate(m: nn.Module) -> bool:
    from spikingjelly.activation_based import surrogate

    return isinstance(m, surrogate.SurrogateFunctionBase)


def neuron_node(path: str, m: nn.Module, shape) -> nir.NIRNode:
    """The NIR node of spikingjelly neuron ``m`` (see the module docstring's table)."""
    name = type(m).__name__

    def refuse(why: str):
        raise ExportError(f"module '{path}' ({name}): {why}")

    if not getattr(m.surrogate_function, "spiking", True):
        refuse("its surrogate function is in non-spiking mode (spiking=False): the forward pass is not a spike")
    if getattr(m, "_neuron_precision", None) is not None:
        refuse("low-precision neuron arithmetic (set_neuron_precision) is not float32 and is not exported")
    if m.v_reset is not None and float(m.v_reset) != 0.0:
        refuse(f"v_reset = {m.v_reset}: spikingjelly starts the membrane at v_reset, NIR (and Loihi) at 0; "
               "only v_reset 0.0 (hard reset) or None (soft reset) are exported")
    theta = float(m.v_threshold)
    subtract = m.v_reset is None
    # v >= θ: strict threshold just below θ; soft reset: θ itself, the amount subtracted
    threshold = np.float32(theta) if subtract else strict_threshold(theta)
    if isinstance(m, (neuron.IFNode, neuron.SimpleIFNode)):
        return if_node(shape, threshold, subtract=subtract)
    if isinstance(m, neuron.ParametricLIFNode):
        q = float(m.w.detach().float().sigmoid().cpu())
        tau = 1.0 / q
    else:
        tau = float(m.tau)
    if not tau >= 1.0:
        refuse(f"tau = {tau:g} < 1: forward Euler at dt = 1 needs tau >= 1")
    # decay_input: v + (x - v)/τ, gain 1/τ (r = 1); otherwise v - v/τ + x, gain 1 (r = τ)
    return lif_node(shape, tau, 1.0 if m.decay_input else tau, threshold, subtract=subtract)


def _step_modules(model: nn.Module):
    """(path, module) of every StepModule that runs in the model's own step mode: not inside a
    container that runs its children per step (their children are single-step by construction)."""
    inside: list[str] = []
    for path, m in model.named_modules():
        if any(path.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, (layer.SeqToANNContainer, layer.MultiStepContainer)):
            inside.append(path)
            continue
        if isinstance(m, base.StepModule) and type(m) not in SEQUENCES:
            yield path, m


def mode_of(model: nn.Module) -> tuple[str, str]:
    """The network's step mode ('s' or 'm', the same for every module) and a module that has it."""
    modes: dict[str, str] = {}
    for path, m in _step_modules(model):
        modes.setdefault(m.step_mode, path)
    if not modes:
        raise ExportError("the network has no spikingjelly modules, so no step mode: nothing to export")
    if len(modes) > 1:
        detail = ", ".join(f"'{p}' has step_mode '{s}'" for s, p in sorted(modes.items()))
        raise ExportError(f"the network mixes step modes ({detail}): set one with "
                          "spikingjelly.activation_based.functional.set_step_mode")
    return next(iter(modes.items()))


def step_mode(model: nn.Module, example_input) -> tuple[str, int | None, tuple[int, ...]]:
    """``(mode, steps, input shape)``: the network's step mode, its time steps when known and the
    shape of one sample at one step, from the input its ``forward`` takes."""
    shape = tuple(int(s) for s in example_input.shape)
    mode, path = mode_of(model)
    if mode == "m" and type(model).__name__ in sj_blocks.RESIDUAL_NODES_BY_DEFAULT and len(shape) == 4:
        return mode, int(model.T), shape[1:]  # MSResNet repeats an image over its T steps
    if mode == "m":
        if len(shape) < 3:
            raise ExportError(f"example input of shape {shape}: a multi-step network ('{path}' has step_mode 'm') "
                              "takes (T, N, *sample shape)")
        return mode, shape[0], shape[2:]
    if len(shape) < 2:
        raise ExportError(f"example input of shape {shape}: a single-step network takes (N, *sample shape)")
    return mode, None, shape[1:]


def version() -> str:
    """spikingjelly's version; the semantics above were read from 2.0.0's source."""
    found = importlib.metadata.version("spikingjelly")
    if not found.startswith("2."):
        raise ExportError(f"from_spikingjelly reads spikingjelly 2.x (activation_based); spikingjelly {found} is installed")
    return found


def _export(model: nn.Module, example_input, residual_nodes: bool | None, stream_to=None):
    found = version()
    mode, steps, shape = step_mode(model, example_input)
    if residual_nodes is None:
        residual_nodes = type(model).__name__ in sj_blocks.RESIDUAL_NODES_BY_DEFAULT
    b = SpikingjellyBuilder(model, mode, residual_nodes=residual_nodes, stream_to=stream_to)
    try:
        b.output(b.walk("", model, b.input(shape)))
        b.check_complete()
    except BaseException:
        b.abort()
        raise
    meta = {"dt": DT, "source": f"spikingjelly {found} {type(model).__name__}", "step_mode": mode}
    if steps is not None:
        meta["time_steps"] = int(steps)
    return b, meta


def from_spikingjelly(model: nn.Module, example_input, path: str | Path | None = None, *,
                      residual_nodes: bool | None = None, metadata: dict | None = None) -> nir.NIRGraph:
    """The NIR graph of a spikingjelly 2.0 network (and the ``.nir`` file ``path``, if given).

    ``example_input``: what the model's ``forward`` takes (only its shape is read): ``(N, C, H, W)``
    for a single-step network, ``(T, N, C, H, W)`` for a multi-step one (MS-ResNet also takes an
    image ``(N, C, H, W)``, repeated over its ``T`` steps); ``T`` becomes the graph's metadata
    ``time_steps``. The NIR input is one sample at one step, the NIR output the network's last
    layer at every step. ``residual_nodes``: residual sums as identity nodes (default: for
    MS-ResNet, whose sums are real-valued) or as several edges. ``metadata`` is added to the
    graph's (``dt`` = 1, ``source``, ``step_mode``, ``time_steps``).
    Raises :class:`~snn2chip.importers.builder.ExportError` (one line) for what NIR cannot say.
    """
    b, meta = _export(model, example_input, residual_nodes)
    return b.finish(path, {**meta, **(metadata or {})})


def fold_batchnorm(model: nn.Module, example_input) -> nn.Module:
    """A copy of ``model`` with every BatchNorm the export folds folded into its convolution (the
    same float32 weights as the NIR graph) and replaced by ``nn.Identity``: spikingjelly runs it
    exactly as the NIR graph says (for IF neurons bit for bit; see the module docstring)."""
    b, _ = _export(model, example_input, residual_nodes=None)
    folded = copy.deepcopy(model)
    with torch.no_grad():
        for conv_path, bn_path, weight, bias in b.folds:
            conv = folded.get_submodule(conv_path)
            conv.weight = nn.Parameter(weight.clone(), requires_grad=conv.weight.requires_grad)
            conv.bias = nn.Parameter(bias.clone(), requires_grad=conv.weight.requires_grad)
            parent, _, name = bn_path.rpartition(".")
            setattr(folded.get_submodule(parent), name, nn.Identity())
    return folded
