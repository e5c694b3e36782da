r"""Building blocks shared by the zoo's networks: neurons, surrogate gradients, Conv+BN, readout.

Time. A network is run for ``T`` steps on a constant input current. Two modes compute the same
function:

- **multi-step** (training, :func:`set_multi_step`): time is folded into the batch axis, so every
  convolution and BatchNorm runs once on ``(T*B, C, H, W)`` (BatchNorm's statistics are taken over
  time and batch, as tdBN does); each neuron unfolds ``(T, B, ...)`` and loops over time;
- **single-step** (:func:`set_single_step`, the default): every module sees one step ``(B, ...)``
  and neurons keep their state between calls, exactly as a NIR executor steps a graph. This is the
  mode the NIR export is compared against (same tensor shapes as ``snn2chip.run``, so the same
  float32 arithmetic).

Neurons follow the discrete model of Fang et al. (NeurIPS 2021, "Deep Residual Learning in Spiking
Neural Networks", their neuron equations ``H[t] = f(V[t-1], X[t])``, ``S[t] = Θ(H[t] - V_th)``,
``V[t] = H[t](1 - S[t]) + V_reset S[t]``):

- :class:`IFNode` (SEW-ResNet and Spiking ResNet): ``H = V + X``, spike when ``H >= 1``
  (``Θ(0) = 1``), hard reset to 0. NIR's threshold is strict, so the export stores the largest
  float32 below 1 (:func:`models.export.strict_threshold`).
- :class:`MSNode` (MS-ResNet, Hu et al.): ``m <- 0.25·m·(1 - s) + x``, spike when ``m > 0.5``,
  hard reset to 0 (the ``mem_update`` of the MS-ResNet code). Exported as a NIR LIF with
  ``dt = 1, tau = r = 4/3`` (decay 0.25 and gain 1 exactly).

Both are written so that the forward pass in float32 is bit-identical to the NIR float executor
(``v + x``; ``0.25*v + x``; reset by ``h*(1 - s)``, which is exactly ``0`` or ``h``).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

# --- surrogate gradients --------------------------------------------------------------------------


class _ATanSpike(torch.autograd.Function):
    """Heaviside forward; arctan surrogate backward (spikingjelly's ``surrogate.ATan``, alpha = 2)."""

    @staticmethod
    def forward(ctx, x, alpha: float, strict: bool):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        return grad * (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2), None, None


class _RectSpike(torch.autograd.Function):
    """Heaviside forward; rectangular surrogate backward, ``1/(2·lens)`` on ``|x| < lens``
    (the ``ActFun`` of the MS-ResNet code, lens = 0.5)."""

    @staticmethod
    def forward(ctx, x, lens: float, strict: bool):
        ctx.save_for_backward(x)
        ctx.lens = lens
        return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() < ctx.lens).to(grad.dtype) / (2 * ctx.lens), None, None


SURROGATES = {"atan": (_ATanSpike, 2.0), "rect": (_RectSpike, 0.5)}


def heaviside(x: torch.Tensor, surrogate: str, strict: bool) -> torch.Tensor:
    """``x > 0`` (``strict``) or ``x >= 0`` as 0/1 of ``x``'s dtype, with the named surrogate gradient."""
    function, parameter = SURROGATES[surrogate]
    return function.apply(x, parameter, strict)


# --- stateful modules -----------------------------------------------------------------------------


class Stateful(nn.Module):
    """A module with state over time: single-step (state kept between calls) or multi-step."""

    def __init__(self):
        super().__init__()
        self.multi_steps: int | None = None  # T in multi-step mode, None in single-step mode
        self.state: torch.Tensor | None = None

    def reset(self) -> None:
        self.state = None

    def update(self, state: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step: ``(output, new state)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.multi_steps is None:
            if self.state is None:
                self.state = torch.zeros_like(x)
            out, self.state = self.update(self.state, x)
            return out
        steps = self.multi_steps
        xs = x.reshape(steps, x.shape[0] // steps, *x.shape[1:])
        state = torch.zeros_like(xs[0])
        outs = []
        for t in range(steps):
            out, state = self.update(state, xs[t])
            outs.append(out)
        return torch.stack(outs).reshape(x.shape)


class IFNode(Stateful):
    """Integrate-and-fire neuron of SEW-ResNet / Spiking ResNet (Fang et al. 2021, IF case
    ``H[t] = V[t-1] + X[t]``): threshold 1, spike when ``H >= 1``, hard reset to ``V_reset = 0``.

    ``detach_reset`` (as in the SEW-ResNet training code) stops the gradient through the reset.
    """

    v_threshold = 1.0
    v_reset = 0.0

    def __init__(self, surrogate: str = "atan", detach_reset: bool = True):
        super().__init__()
        self.surrogate = surrogate
        self.detach_reset = detach_reset

    def update(self, v, x):
        h = v + x
        s = heaviside(h - self.v_threshold, self.surrogate, strict=False)
        keep = 1.0 - (s.detach() if self.detach_reset else s)
        return s, h * keep

    def extra_repr(self) -> str:
        return f"v_threshold={self.v_threshold}, spike when v >= threshold, surrogate={self.surrogate}"


class MSNode(Stateful):
    """MS-ResNet neuron (Hu et al., the ``mem_update`` module of the MS-ResNet code):
    ``m[t] = 0.25·m[t-1]·(1 - s[t-1]) + x[t]``, ``s[t] = [m[t] > 0.5]``; the reset's gradient is
    detached (``spike.detach()`` in the original). Rectangular surrogate (``ActFun``, lens 0.5)."""

    decay = 0.25
    v_threshold = 0.5

    def __init__(self, surrogate: str = "rect"):
        super().__init__()
        self.surrogate = surrogate

    def update(self, m, x):
        h = self.decay * m + x
        s = heaviside(h - self.v_threshold, self.surrogate, strict=True)
        return s, h * (1.0 - s.detach())

    def extra_repr(self) -> str:
        return f"decay={self.decay}, v_threshold={self.v_threshold} (strict), surrogate={self.surrogate}"


class Integrator(Stateful):
    """Readout: a non-spiking integrator ``v <- v + x`` over the classifier's output (NIR ``I``, r = 1).

    Its value at the last step is the sum over time of the logits; prediction = argmax of it.
    """

    def update(self, v, x):
        v = v + x
        return v, v


def stateful_modules(model: nn.Module) -> list[Stateful]:
    return [m for m in model.modules() if isinstance(m, Stateful)]


def set_multi_step(model: nn.Module, steps: int) -> None:
    for m in stateful_modules(model):
        m.multi_steps = int(steps)
        m.reset()


def set_single_step(model: nn.Module) -> None:
    for m in stateful_modules(model):
        m.multi_steps = None
        m.reset()


def reset(model: nn.Module) -> None:
    for m in stateful_modules(model):
        m.reset()


# --- convolution + BatchNorm ------------------------------------------------------------------------


class ConvBN(nn.Module):
    """``BN(conv(x))`` with a bias-free convolution; :func:`fold_bn` turns it into one biased conv.

    ``bn_weight`` initialises BN's scale (MS-ResNet initialises the last BN of each residual
    function to 0, the others to the threshold 0.5).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bn_weight: float | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        if bn_weight is not None:
            nn.init.constant_(self.bn.weight, bn_weight)

    def forward(self, x):
        return self.bn(self.conv(x))

    def folded(self) -> nn.Conv2d:
        """The equivalent eval-mode convolution: ``w·γ/√(σ²+ε)``, bias ``β + (b − μ)·γ/√(σ²+ε)``.

        Computed in float64 and rounded once to the convolution's dtype. On the meta device (scale
        generators) only the shapes are produced.
        """
        conv, bn = self.conv, self.bn
        folded = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype,
        )
        if conv.weight.is_meta:
            return folded
        with torch.no_grad():
            w = conv.weight.detach().double()
            b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
            scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
            folded.weight.copy_((w * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype))
            folded.bias.copy_((bn.bias.detach().double() + (b - bn.running_mean.detach().double()) * scale).to(conv.weight.dtype))
        return folded


def fold_bn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """A deep copy of ``model`` (``model`` itself if ``inplace``) in eval mode with every
    :class:`ConvBN` replaced by its folded convolution.

    The folded model computes what the exported NIR file says; its accuracy is the one reported.
    """
    model = (model if inplace else copy.deepcopy(model)).eval()

    def replace(parent: nn.Module):
        for name, child in parent.named_children():
            if isinstance(child, ConvBN):
                setattr(parent, name, child.folded())
            else:
                replace(child)

    replace(model)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch and numpy, select deterministic algorithms; a generator for data shuffling."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(seed)
