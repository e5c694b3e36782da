"""Data-free activity balancing of random-weight networks (for the scale models).

He-normal random weights leave deep spiking layers dead or saturated, so a verification at scale
would compare silence with silence. :func:`balance` runs the folded network once, in multi-step
mode, on random binary inputs (those of ``snn2chip verify --data random:N``), and at each spiking
layer, in data-flow order, sets the layer's threshold so that it fires at ``target`` spikes per
neuron per step on what actually reaches it (bisection on the threshold; the firing rate falls
as the threshold rises).

For these neurons (IF, and the MS-ResNet LIF with reset to 0 and no leak bias) the membrane is
linear in its input between spikes, so dividing the threshold by ``c`` is exactly multiplying
every weight into the layer by ``c``: the balanced network is a random-weight network whose
incoming weights are rescaled per layer, with thresholds carrying the scale.
"""

from __future__ import annotations

import torch
from torch import nn

from models.layers import IFNode, MSNode, Stateful

#: spikes per neuron per step each balanced layer aims for
TARGET_RATE = 0.15
BISECTION_STEPS = 40


def _rate(module: Stateful, x: torch.Tensor, theta: float) -> float:
    """Firing rate of ``module`` on multi-step input ``x`` with threshold ``theta``."""
    module.v_threshold = theta
    return float(Stateful.forward(module, x).mean())


def _threshold(module: Stateful, x: torch.Tensor, target: float) -> float:
    """The threshold giving rate ``target`` on ``x`` (geometric bisection), or the current one if ``x`` is zero."""
    top = float(x.abs().max())
    if top == 0:
        return module.v_threshold
    low, high = top * 1e-6, top * x.shape[0]  # all fire / none fire (a membrane sums at most T inputs)
    for _ in range(BISECTION_STEPS):
        mid = (low * high) ** 0.5
        if _rate(module, x, mid) > target:
            low = mid
        else:
            high = mid
    return (low * high) ** 0.5


def balance(model: nn.Module, x: torch.Tensor, target: float = TARGET_RATE) -> dict[str, float]:
    """Set every spiking layer's threshold of the folded ``model`` so that it fires at ``target``
    on inputs ``x`` ``(B, C, H, W)``; return the thresholds by module path."""
    thresholds: dict[str, float] = {}
    names = {m: name for name, m in model.named_modules()}

    def hook(module, args):
        thresholds[names[module]] = _threshold(module, args[0], target)
        module.v_threshold = thresholds[names[module]]

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, (IFNode, MSNode))]
    try:
        with torch.no_grad():
            model.multi_step()(x)
    finally:
        for h in handles:
            h.remove()
        model.single_step()
    return thresholds
