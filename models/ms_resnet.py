r"""MS-ResNet: membrane-shortcut residual networks (Hu, Deng, Wu, Yao, Li, "Advancing Spiking Neural
Networks towards Deep Residual Learning", arXiv:2112.08954, IEEE TNNLS; code: the MS-ResNet
repository's ``BasicBlock_18``/``BasicBlock_104``/``ResNet_104`` and ``mem_update``).

Neuron: :class:`models.layers.MSNode`, ``m[t] = 0.25·m[t−1]·(1 − s[t−1]) + x[t]``,
``s[t] = [m[t] > 0.5]``, hard reset to 0.

Block (the paper's membrane-shortcut block; ``residual_function`` of the code):

    ``x_{l+1} = x_l + BN(conv(SN(BN(conv(SN(x_l))))))``

so every convolution of the residual function sees spikes while the shortcut carries the real-valued
pre-activation ("membrane") stream. When the shape changes the shortcut is ``BN(conv1x1/stride(x_l))``
(18/34 and CIFAR layouts) or ``BN(conv1x1(avgpool2x2(x_l)))`` (the 104-layer variant): in both, as
in the original code, the downsample shortcut reads the real-valued stream, not spikes.

Network: stem ``BN(conv(x))`` without a neuron (the stream starts real-valued), stages of blocks, a
final neuron (``sn_out``, the code's last ``mem_update``), global average pooling, classifier; the
logits are summed over time by the readout integrator (the code averages the pooled spikes over
time before ``fc``, which has the same argmax). Layouts:

- CIFAR ``6n+2`` (He et al.'s CIFAR ResNets): conv3x3 stem with 16 channels, three stages of ``n``
  blocks with 16/32/64 channels, strides 1/2/2; ``n = 80`` gives 482 layers;
- ImageNet 18/34 (``ResNet_origin_18``): conv7x7/2 stem, stages 64/128/256/512, all with stride 2
  (the code defines a max pool but never calls it);
- ImageNet 104 (``ResNet_104``, layout 3/8/32/8): stem of three conv3x3 (the first with stride 2,
  biases, no BN between them) and one BN, avgpool + conv1x1 + BN downsample shortcuts;
- ``small`` layouts for 8x8 digits: conv3x3 stem, stages with strides 1/2/...

BatchNorm initialisation follows the code: the residual function's first BN and the shortcut BN
start with scale 0.5 (the threshold), its last BN with scale 0.

NIR export: by default one identity node ``<block>.stream`` (``nir.Scale`` of ones) per block receives
the shortcut and the block's last convolution, so fan-in stays 2 at any depth; with
``residual_nodes=False`` the stream is flattened as nirtorch would (each consumer receives an edge
from the stem or downsample convolution and from every later block's last convolution).
"""

from __future__ import annotations

from torch import nn

from models.layers import ConvBN, Integrator, MSNode
from models.network import SpikingNetwork, global_pool_size

IMAGENET_LAYOUTS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 104: (3, 8, 32, 8)}


class MSBlock(nn.Module):
    """``x + BN(conv3x3(SN(BN(conv3x3/stride(SN(x))))))``, shortcut ``x`` or a downsample (see module doc)."""

    def __init__(self, in_planes: int, planes: int, stride: int, downsample: str = "conv"):
        super().__init__()
        self.sn1 = MSNode()
        self.conv1 = ConvBN(in_planes, planes, 3, stride, 1, bn_weight=0.5)
        self.sn2 = MSNode()
        self.conv2 = ConvBN(planes, planes, 3, 1, 1, bn_weight=0.0)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            if downsample == "avgpool" and stride != 1:
                self.downsample = nn.Sequential(nn.AvgPool2d(stride, stride), ConvBN(in_planes, planes, 1, 1, 0, bn_weight=0.5))
            elif downsample in ("conv", "avgpool"):
                self.downsample = nn.Sequential(ConvBN(in_planes, planes, 1, stride, 0, bn_weight=0.5))
            else:
                raise ValueError(f"downsample must be 'conv' or 'avgpool', got {downsample!r}")

    residual_path = ("sn1", "conv1", "sn2", "conv2")

    def forward(self, x):
        r = x
        for name in self.residual_path:
            r = getattr(self, name)(r)
        shortcut = x if self.downsample is None else self.downsample(x)
        return shortcut + r

    def export(self, b, path, x):
        r = b.chain(path, self.residual_path, x)
        shortcut = x
        if self.downsample is not None:
            shortcut = b.chain(path, [f"downsample.{i}" for i in range(len(self.downsample))], x)
        return b.residual_sum(f"{path}.stream", shortcut, r)


class MSResNet(SpikingNetwork):
    """MS-ResNet with any stage layout (see the module docstring).

    ``stem``: ``"small"`` (conv3x3/1 + BN), ``"imagenet"`` (conv7x7/2 + BN) or ``"104"``
    (conv3x3/2, conv3x3, conv3x3 + BN). ``strides``: per stage. ``downsample``: ``"conv"`` or ``"avgpool"``.
    """

    family = "MS-ResNet"
    residual_nodes_default = True

    def __init__(self, layers, widths, strides, steps: int, *, input_shape=(1, 8, 8), num_classes: int = 10,
                 stem: str = "small", stem_width: int | None = None, downsample: str = "conv"):
        super().__init__(steps)
        if not len(layers) == len(widths) == len(strides):
            raise ValueError("layers, widths and strides need one entry per stage")
        self.input_shape = tuple(input_shape)
        in_channels, size = input_shape[0], input_shape[1]
        stem_width = stem_width or widths[0]
        if stem == "small":
            self.conv1 = nn.Sequential(ConvBN(in_channels, stem_width, 3, 1, 1, bn_weight=0.5))
        elif stem == "imagenet":
            self.conv1 = nn.Sequential(ConvBN(in_channels, stem_width, 7, 2, 3, bn_weight=0.5))
            size = global_pool_size(size, (7, 2, 3))
        elif stem == "104":
            self.conv1 = nn.Sequential(
                nn.Conv2d(in_channels, stem_width, 3, 2, 1, bias=True),
                nn.Conv2d(stem_width, stem_width, 3, 1, 1, bias=True),
                ConvBN(stem_width, stem_width, 3, 1, 1, bn_weight=0.5),
            )
            size = global_pool_size(size, (3, 2, 1))
        else:
            raise ValueError(f"stem must be 'small', 'imagenet' or '104', got {stem!r}")
        planes_in = stem_width
        self.stage_names = []
        for i, (count, width, stride) in enumerate(zip(layers, widths, strides)):
            blocks = []
            for j in range(count):
                blocks.append(MSBlock(planes_in, width, stride if j == 0 else 1, downsample))
                planes_in = width
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            if stride != 1:
                size = global_pool_size(size, (3, stride, 1))
        self.sn_out = MSNode()
        self.avgpool = nn.AvgPool2d(size)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(planes_in, num_classes)
        self.readout = Integrator()

    def step(self, x):
        x = self.conv1(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.readout(self.fc(self.flatten(self.avgpool(self.sn_out(x)))))

    def export(self, b, x):
        x = b.chain("", [f"conv1.{i}" for i in range(len(self.conv1))], x)
        for name in self.stage_names:
            for j, block in enumerate(getattr(self, name)):
                x = block.export(b, f"{name}.{j}", x)
        return b.chain("", ("sn_out", "avgpool", "flatten", "fc", "readout"), x)


def ms_resnet(depth: int, steps: int = 4, *, input_size: int = 224, num_classes: int = 1000, in_channels: int = 3,
              width: int = 64) -> MSResNet:
    """MS-ResNet-18/34 (conv7x7 stem, conv1x1 downsample) or -104 (3-conv stem, avgpool downsample)."""
    if depth not in IMAGENET_LAYOUTS:
        raise ValueError(f"MS-ResNet ImageNet depth must be one of {sorted(IMAGENET_LAYOUTS)}, got {depth}")
    widths = (width, 2 * width, 4 * width, 8 * width)
    return MSResNet(IMAGENET_LAYOUTS[depth], widths, (2, 2, 2, 2), steps, input_shape=(in_channels, input_size, input_size),
                    num_classes=num_classes, stem="104" if depth == 104 else "imagenet",
                    downsample="avgpool" if depth == 104 else "conv")


def ms_resnet_cifar(n: int, steps: int = 4, *, input_size: int = 32, num_classes: int = 10, in_channels: int = 3,
                    widths=(16, 32, 64)) -> MSResNet:
    """The CIFAR ``6n+2``-layer MS-ResNet (``n = 80``: 482 layers)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return MSResNet((n, n, n), widths, (1, 2, 2), steps, input_shape=(in_channels, input_size, input_size),
                    num_classes=num_classes, stem="small")


def ms_resnet_small(steps: int = 4, *, layers=(2, 2), widths=(16, 32), input_shape=(1, 8, 8), num_classes: int = 10) -> MSResNet:
    """A small MS-ResNet for 8x8 inputs (conv3x3 stem; stage strides 1, 2, 2, ...)."""
    strides = tuple(1 if i == 0 else 2 for i in range(len(layers)))
    return MSResNet(layers, widths, strides, steps, input_shape=input_shape, num_classes=num_classes, stem="small")
