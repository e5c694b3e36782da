r"""SEW-ResNet: spike-element-wise residual networks (Fang et al., "Deep Residual Learning in Spiking
Neural Networks", NeurIPS 2021; code: spikingjelly ``sew_resnet.py``).

Neuron: :class:`models.layers.IFNode` (IF, threshold 1, hard reset to 0, spike when ``V >= 1``).

Block (the paper's SEW residual block, Fig. 1(c)): with ``S^l`` the block input and ``F^l`` the
residual function conv-BN-IF-conv-BN,

    ``A^l = SN(F^l(S^l))``,   ``O^l = g(A^l, S^l)``

where the element-wise connect function ``g`` is one of (the paper's Table 1)

    ADD   ``g = A + S``            (outputs integers, up to k+1 after k identity blocks)
    AND   ``g = A ∧ S = A·S``
    IAND  ``g = (¬A) ∧ S = (1 − A)·S``

When the block changes shape, ``S^l`` is replaced by the downsample shortcut ``SN(BN(conv1x1(S^l)))``
(conv1x1-BN-IF: the shortcut carries spikes). The bottleneck block's ``F^l`` is
conv1x1-BN-IF-conv3x3-BN-IF-conv1x1-BN (expansion 4) before the last IF.

Network (spikingjelly's ``SEWResNet``): stem conv7x7/2-BN-IF and max pooling 3x3/2 (ImageNet),
four stages with widths 64/128/256/512 and strides 1/2/2/2, global average pooling, fully connected
classifier; the per-step logits are summed over time by the readout integrator. ``small`` layouts
for 8x8 digits use a conv3x3/1-BN-IF stem without max pooling.

NIR export (:mod:`models.export`): ADD is two or more edges into each consumer (NIR sums joins) or,
with ``residual_nodes=True``, an identity node ``<block>.connect``; AND is
``nir.Threshold(1.5)`` fed by A and S; IAND is ``nir.Threshold(0.5)`` fed by S and by A through
``nir.Scale(-1)`` (``<block>.connect.neg``). Max pooling of the stem's spikes is
``SumPool2d > 0.5`` (exact for spikes).
"""

from __future__ import annotations

import torch
from torch import nn

from models.layers import ConvBN, IFNode, Integrator
from models.network import SpikingResNetBody, add_stages, add_stem

CONNECTS = ("ADD", "AND", "IAND")

#: ImageNet layouts: depth -> (block, blocks per stage)
LAYOUTS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class Connect(nn.Module):
    """The element-wise connect function ``g(A, S)`` of the SEW block (ADD, AND, IAND)."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in CONNECTS:
            raise ValueError(f"connect function must be one of {CONNECTS}, got {kind!r}")
        self.kind = kind

    def forward(self, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.kind == "ADD":
            return s + a
        if self.kind == "AND":
            return s * a
        return s * (1.0 - a)

    def export(self, b, path: str, a, s):
        """NIR nodes of ``g(A, S)`` (see the module docstring; :meth:`snn2chip.importers.builder.Builder.connect`
        with spikingjelly's argument order ``g(S, A)``)."""
        b.mark(path)
        return b.connect(path, self.kind, s, a)

    def extra_repr(self) -> str:
        return self.kind


class BasicBlock(nn.Module):
    """SEW basic block: ``g(IF(BN(conv3x3(IF(BN(conv3x3(S)))))), S')`` with ``S'`` = S or IF(BN(conv1x1(S)))."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, connect: str):
        super().__init__()
        self.conv1 = ConvBN(in_planes, planes, 3, stride, 1)
        self.sn1 = IFNode()
        self.conv2 = ConvBN(planes, planes, 3, 1, 1)
        self.sn2 = IFNode()
        self.downsample = self.downsample_sn = None
        if stride != 1 or in_planes != planes * self.expansion:
            self.downsample = ConvBN(in_planes, planes * self.expansion, 1, stride, 0)
            self.downsample_sn = IFNode()
        self.connect = Connect(connect)

    main_path = ("conv1", "sn1", "conv2", "sn2")

    def forward(self, x):
        a = x
        for name in self.main_path:
            a = getattr(self, name)(a)
        s = x if self.downsample is None else self.downsample_sn(self.downsample(x))
        return self.connect(a, s)

    def export(self, b, path, x):
        a = b.chain(path, self.main_path, x)
        s = x if self.downsample is None else b.chain(path, ("downsample", "downsample_sn"), x)
        return self.connect.export(b, f"{path}.connect", a, s)


class Bottleneck(BasicBlock):
    """SEW bottleneck block: ``F`` = conv1x1-BN-IF-conv3x3(stride)-BN-IF-conv1x1-BN, then IF and ``g``."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, connect: str):
        nn.Module.__init__(self)
        self.conv1 = ConvBN(in_planes, planes, 1, 1, 0)
        self.sn1 = IFNode()
        self.conv2 = ConvBN(planes, planes, 3, stride, 1)
        self.sn2 = IFNode()
        self.conv3 = ConvBN(planes, planes * self.expansion, 1, 1, 0)
        self.sn3 = IFNode()
        self.downsample = self.downsample_sn = None
        if stride != 1 or in_planes != planes * self.expansion:
            self.downsample = ConvBN(in_planes, planes * self.expansion, 1, stride, 0)
            self.downsample_sn = IFNode()
        self.connect = Connect(connect)

    main_path = ("conv1", "sn1", "conv2", "sn2", "conv3", "sn3")


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class SEWResNet(SpikingResNetBody):
    """SEW-ResNet with any block type, stage layout and widths (see the module docstring).

    ``stem``: ``"imagenet"`` (conv7x7/2-BN-IF + maxpool 3x3/2) or ``"small"`` (conv3x3/1-BN-IF).
    Stage ``i`` has ``layers[i]`` blocks of width ``widths[i]``; stride 1 for the first stage, 2 after.
    """

    family = "SEW-ResNet"
    residual_nodes_default = False

    def __init__(self, block: str, layers, widths, connect: str, steps: int, *, input_shape=(1, 8, 8),
                 num_classes: int = 10, stem: str = "small", stem_width: int | None = None):
        super().__init__(steps)
        if len(layers) != len(widths):
            raise ValueError("layers and widths need one entry per stage")
        self.input_shape = tuple(input_shape)
        self.connect_kind = connect
        block_cls = BLOCKS[block]
        in_channels, size = input_shape[0], input_shape[1]
        stem_width = stem_width or widths[0]
        size = add_stem(self, stem, in_channels, stem_width, size)
        self.sn1 = IFNode()
        planes_in, size = add_stages(self, lambda cin, width, stride: block_cls(cin, width, stride, connect),
                                     layers, widths, stem_width, size)
        self.avgpool = nn.AvgPool2d(size)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(planes_in, num_classes)
        self.readout = Integrator()


def sew_resnet(depth: int, connect: str = "ADD", steps: int = 4, *, input_size: int = 224, num_classes: int = 1000,
               in_channels: int = 3, width: int = 64) -> SEWResNet:
    """SEW-ResNet-18/34/50/101/152 (ImageNet layout; ``width`` scales all stages, 64 in the paper)."""
    if depth not in LAYOUTS:
        raise ValueError(f"SEW-ResNet depth must be one of {sorted(LAYOUTS)}, got {depth}")
    block, layers = LAYOUTS[depth]
    return SEWResNet(block, layers, (width, 2 * width, 4 * width, 8 * width), connect, steps,
                     input_shape=(in_channels, input_size, input_size), num_classes=num_classes, stem="imagenet")


def sew_resnet_small(connect: str = "ADD", steps: int = 4, *, layers=(2, 2), widths=(16, 32), block: str = "basic",
                     input_shape=(1, 8, 8), num_classes: int = 10) -> SEWResNet:
    """A small SEW-ResNet for 8x8 inputs (conv3x3 stem, no max pooling)."""
    return SEWResNet(block, layers, widths, connect, steps, input_shape=input_shape, num_classes=num_classes, stem="small")
