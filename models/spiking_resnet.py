r"""Plain Spiking ResNet (the baseline of Fang et al. 2021) and the ReLU ANN ResNet of the same shape.

**Spiking ResNet** (spikingjelly ``spiking_resnet.py``; the "Spiking ResNet" block that Fang et al.,
NeurIPS 2021, compare SEW against, their Fig. 1(b)): the ANN residual block with ReLU replaced by
IF neurons,

    ``O^l = SN(F^l(S^l) + S^l)``,   ``F^l`` = conv-BN-IF-conv-BN (basic) or
    conv1x1-BN-IF-conv3x3-BN-IF-conv1x1-BN (bottleneck, expansion 4),

with the downsample shortcut conv1x1-BN (no neuron: its real-valued output is summed into the input
current of the block's last neuron). IF neurons: threshold 1, hard reset to 0, spike when ``V >= 1``.

**ReLU ANN ResNet** (He et al. 2016): the same layers with ReLU instead of IF and no time,
``y = ReLU(F(x) + shortcut(x))``, trained as an ordinary CNN; the ANN->SNN conversion issue converts
it (Hu, Tang, Wang, Pan, "Spiking Deep Residual Networks", S-ResNet). Exported as ONNX.

Stems: ``"imagenet"`` conv7x7/2-BN-act + maxpool 3x3/2; ``"small"`` (8x8 digits) conv3x3/1-BN-act.
Stages: widths per stage, stride 1 for the first stage and 2 after; global average pooling,
classifier (the SNN sums the per-step logits with the readout integrator).
"""

from __future__ import annotations

from torch import nn

from models.layers import ConvBN, IFNode, Integrator
from models.network import SpikingResNetBody, add_stages, add_stem
from models.sew_resnet import LAYOUTS  # the same ImageNet layouts



class Block(nn.Module):
    """``act_n(F(x) + shortcut(x))``; ``F`` = conv1-act1-...-conv_n (see the module docstring).

    The Spiking ResNet's activations are IF neurons named ``sn1..sn_n``; the ANN's are ReLUs
    named ``relu1..relu_n``.
    """

    act_prefix = "sn"

    @staticmethod
    def make_act() -> nn.Module:
        return IFNode()

    def __init__(self, in_planes: int, planes: int, stride: int, bottleneck: bool):
        super().__init__()
        self.expansion = 4 if bottleneck else 1
        if bottleneck:
            convs = [(in_planes, planes, 1, 1, 0), (planes, planes, 3, stride, 1), (planes, planes * 4, 1, 1, 0)]
        else:
            convs = [(in_planes, planes, 3, stride, 1), (planes, planes, 3, 1, 1)]
        self.depth = len(convs)
        for i, args in enumerate(convs, 1):
            self.add_module(f"conv{i}", ConvBN(*args))
            self.add_module(f"{self.act_prefix}{i}", self.make_act())
        out_planes = planes * self.expansion
        self.downsample = ConvBN(in_planes, out_planes, 1, stride, 0) if stride != 1 or in_planes != out_planes else None

    def residual_path(self) -> list[str]:
        names = []
        for i in range(1, self.depth + 1):
            names.append(f"conv{i}")
            if i < self.depth:
                names.append(f"{self.act_prefix}{i}")
        return names

    def forward(self, x):
        out = x
        for name in self.residual_path():
            out = getattr(self, name)(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return getattr(self, f"{self.act_prefix}{self.depth}")(out + shortcut)

    def export(self, b, path, x):
        out = b.chain(path, self.residual_path(), x)
        shortcut = x if self.downsample is None else b.module(f"{path}.downsample", x)
        return b.module(f"{path}.{self.act_prefix}{self.depth}", b.join(out, shortcut))


class ReLUBlock(Block):
    act_prefix = "relu"

    @staticmethod
    def make_act() -> nn.Module:
        return nn.ReLU()


def _build(self, block_cls, block: str, layers, widths, input_shape, num_classes, stem, stem_width):
    """The common skeleton: stem, stages ``layer1..``, avgpool, flatten, fc. Returns nothing."""
    if len(layers) != len(widths):
        raise ValueError("layers and widths need one entry per stage")
    self.input_shape = tuple(input_shape)
    in_channels, size = input_shape[0], input_shape[1]
    stem_width = stem_width or widths[0]
    act = block_cls.act_prefix
    size = add_stem(self, stem, in_channels, stem_width, size)
    self.add_module(f"{act}1", block_cls.make_act())
    planes_in, size = add_stages(self, lambda cin, width, stride: block_cls(cin, width, stride, block == "bottleneck"),
                                 layers, widths, stem_width, size)
    self.avgpool = nn.AvgPool2d(size)
    self.flatten = nn.Flatten()
    self.fc = nn.Linear(planes_in, num_classes)


class SpikingResNet(SpikingResNetBody):
    """The plain Spiking ResNet (IF neurons; see the module docstring)."""

    family = "Spiking ResNet"
    residual_nodes_default = False

    def __init__(self, block: str, layers, widths, steps: int, *, input_shape=(1, 8, 8), num_classes: int = 10,
                 stem: str = "small", stem_width: int | None = None):
        super().__init__(steps)
        _build(self, Block, block, layers, widths, input_shape, num_classes, stem, stem_width)
        self.readout = Integrator()


class ResNetANN(nn.Module):
    """The ReLU ANN ResNet with the same layers as :class:`SpikingResNet` (no time steps)."""

    family = "ReLU ANN ResNet"

    def __init__(self, block: str, layers, widths, *, input_shape=(1, 8, 8), num_classes: int = 10,
                 stem: str = "small", stem_width: int | None = None):
        super().__init__()
        _build(self, ReLUBlock, block, layers, widths, input_shape, num_classes, stem, stem_width)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(self.flatten(self.avgpool(x)))


def spiking_resnet(depth: int, steps: int = 4, *, input_size: int = 224, num_classes: int = 1000, in_channels: int = 3,
                   width: int = 64) -> SpikingResNet:
    """Spiking ResNet-18/34/50/101/152 (ImageNet layout)."""
    block, layers = LAYOUTS[depth]
    return SpikingResNet(block, layers, (width, 2 * width, 4 * width, 8 * width), steps,
                         input_shape=(in_channels, input_size, input_size), num_classes=num_classes, stem="imagenet")


def spiking_resnet_small(steps: int = 4, *, layers=(2, 2), widths=(16, 32), block: str = "basic",
                         input_shape=(1, 8, 8), num_classes: int = 10) -> SpikingResNet:
    return SpikingResNet(block, layers, widths, steps, input_shape=input_shape, num_classes=num_classes, stem="small")


def resnet_ann(depth: int, *, input_size: int = 224, num_classes: int = 1000, in_channels: int = 3, width: int = 64) -> ResNetANN:
    """ReLU ResNet-18/34/50/101/152 (ImageNet layout, torchvision's shapes)."""
    block, layers = LAYOUTS[depth]
    return ResNetANN(block, layers, (width, 2 * width, 4 * width, 8 * width),
                     input_shape=(in_channels, input_size, input_size), num_classes=num_classes, stem="imagenet")


def resnet_ann_small(*, layers=(2, 2), widths=(16, 32), block: str = "basic", input_shape=(1, 8, 8),
                     num_classes: int = 10) -> ResNetANN:
    return ResNetANN(block, layers, widths, input_shape=input_shape, num_classes=num_classes, stem="small")
