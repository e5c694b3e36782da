"""What every zoo network shares: time steps, the readout rule, recording spikes, evaluation.

A :class:`SpikingNetwork` receives a constant input current ``x`` of shape ``(B, C, H, W)`` for
``steps`` time steps. Its :meth:`~SpikingNetwork.step` is one time step through all layers, ending
in the readout integrator (:class:`models.layers.Integrator`) that sums the classifier's logits
over time. The prediction is the argmax of that sum at the last step (:data:`READOUT_RULE`).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from models.layers import ConvBN, Stateful, reset, set_multi_step, set_single_step

READOUT_RULE = (
    "prediction = argmax over classes of the readout node (nir.I, r = 1, fed by the classifier Affine) "
    "at the last time step, i.e. of the sum over time of the logits"
)


def global_pool_size(size: int, *downsamplings: tuple[int, int, int]) -> int:
    """Spatial size after a chain of ``(kernel, stride, padding)`` windows (for the final average pool)."""
    for kernel, stride, padding in downsamplings:
        size = (size + 2 * padding - kernel) // stride + 1
    return size


class SpikingNetwork(nn.Module):
    """Base of the zoo's spiking networks: ``steps`` steps of constant input, integrator readout.

    ``forward(x)`` returns the readout at the last step (the summed logits, ``(B, classes)``). It
    runs in multi-step mode after :meth:`multi_step` (training: time folded into the batch) and in
    single-step mode otherwise (the exact, executor-like loop over time). Subclasses implement
    :meth:`step` (one time step; ``x`` may be ``(T*B, ...)`` in multi-step mode) and :meth:`export`.
    """

    family = ""

    def __init__(self, steps: int):
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self._multi = False

    def step(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def export(self, builder, x):
        raise NotImplementedError

    def multi_step(self) -> "SpikingNetwork":
        set_multi_step(self, self.steps)
        self._multi = True
        return self

    def single_step(self) -> "SpikingNetwork":
        set_single_step(self)
        self._multi = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reset(self)
        if self._multi:
            batch = x.shape[0]
            xs = x.unsqueeze(0).expand(self.steps, *x.shape).reshape(self.steps * batch, *x.shape[1:])
            out = self.step(xs)
            return out.reshape(self.steps, batch, *out.shape[1:])[-1]
        out = None
        for _ in range(self.steps):
            out = self.step(x)
        return out


def stateful_names(model: nn.Module) -> list[str]:
    """Module paths of the neurons and the readout, in definition order."""
    return [name for name, m in model.named_modules() if isinstance(m, Stateful)]


def record(model: SpikingNetwork, x: np.ndarray | torch.Tensor, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Run ``model`` single-step on ``x`` and return the output of each named module (any module
    path: neurons, convolutions, blocks) per step, ``(batch, steps, *shape)`` (default: every neuron
    and the readout), like ``snn2chip.run``."""
    names = stateful_names(model) if names is None else list(names)
    model.single_step().eval()
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    hooks = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, _inp, out, name=name: outputs[name].append(out.detach().clone())
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            model(torch.as_tensor(np.array(x, dtype=np.float32)))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: torch.stack(values, dim=1).numpy() for name, values in outputs.items()}


def predict(model: nn.Module, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """Class predictions of ``model`` (single-step for spiking networks) on ``x``."""
    if isinstance(model, SpikingNetwork):
        model.single_step()
    model.eval()
    batch_size = batch_size or len(x)
    preds = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(torch.as_tensor(np.array(x[start : start + batch_size], dtype=np.float32)))
            preds.append(logits.argmax(dim=1).numpy())
    return np.concatenate(preds)


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


class SpikingResNetBody(SpikingNetwork):
    """Shared forward step and export of the spike-shortcut ResNets (SEW and plain): stem
    ``conv1``-``sn1`` (and ``maxpool``), the stages named in ``stage_names``, then
    ``avgpool``-``flatten``-``fc``-``readout``."""

    def step(self, x):
        x = self.sn1(self.conv1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.readout(self.fc(self.flatten(self.avgpool(x))))

    def export(self, b, x):
        x = b.chain("", ("conv1", "sn1"), x)
        if self.maxpool is not None:
            x = b.module("maxpool", x)
        for name in self.stage_names:
            for j, block in enumerate(getattr(self, name)):
                x = block.export(b, f"{name}.{j}", x)
        return b.chain("", ("avgpool", "flatten", "fc", "readout"), x)


def add_stem(model: nn.Module, stem: str, in_channels: int, width: int, size: int) -> int:
    """Give ``model`` its stem ``conv1`` (and ``maxpool``); return the spatial size after it.

    ``"imagenet"``: conv7x7/2-BN then max pool 3x3/2; ``"small"``: conv3x3/1-BN, no pool.
    """
    if stem == "imagenet":
        model.conv1 = ConvBN(in_channels, width, 7, 2, 3)
        model.maxpool = nn.MaxPool2d(3, 2, 1)
        return global_pool_size(size, (7, 2, 3), (3, 2, 1))
    if stem == "small":
        model.conv1 = ConvBN(in_channels, width, 3, 1, 1)
        model.maxpool = None
        return size
    raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")


def add_stages(model: nn.Module, make_block, layers, widths, planes_in: int, size: int) -> tuple[int, int]:
    """Give ``model`` its stages ``layer1, layer2, ...`` (listed in ``model.stage_names``).

    Stage ``i`` has ``layers[i]`` blocks ``make_block(in_channels, width, stride)`` of width
    ``widths[i]``; the first block of every stage after the first has stride 2. Returns the
    output channels and spatial size after the last stage.
    """
    model.stage_names = []
    for i, (count, width) in enumerate(zip(layers, widths)):
        stride = 1 if i == 0 else 2
        blocks = []
        for j in range(count):
            blocks.append(make_block(planes_in, width, stride if j == 0 else 1))
            planes_in = blocks[-1].expansion * width
        name = f"layer{i + 1}"
        model.add_module(name, nn.Sequential(*blocks))
        model.stage_names.append(name)
        if stride != 1:
            size = global_pool_size(size, (3, 2, 1))
    return planes_in, size
