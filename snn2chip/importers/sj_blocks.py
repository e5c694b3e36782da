"""How spikingjelly 2.0's residual networks compute: one walker per model and block class.

Each walker restates, in :class:`~snn2chip.importers.builder.Builder` calls, what the class's
``forward`` in ``spikingjelly/activation_based/model/`` does, naming its submodules; the builder
exports every leaf and refuses what it cannot express exactly. Node names are module paths; the
nodes without a module are ``<block>.connect`` (a SEW connect function, the block's output),
``<block>.stream`` (an MS-ResNet block's sum, with residual nodes), ``<maxpool>.sum``,
``<connect>.neg`` and ``flatten`` (``torch.flatten`` before the classifier).
"""

from __future__ import annotations

from typing import Callable

from snn2chip.importers.builder import Value


def sub(path: str, name: str) -> str:
    """The path of child ``name`` of the module at ``path`` (the root is ``""``)."""
    return f"{path}.{name}" if path else name


def _stages(b, path: str, m, x: Value) -> Value:
    for name in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(m, name, None)
        if stage is not None:
            x = b.walk(sub(path, name), stage, x)
    return x


def resnet(b, path: str, m, x: Value) -> Value:
    """``SEWResNet`` and ``SpikingResNet`` (``_forward_impl``): conv1-bn1-sn1, maxpool, layer1..4,
    avgpool, flatten, fc; the classifier's output at every step is the network's output."""
    x = b.conv_bn(sub(path, "conv1"), sub(path, "bn1"), x)
    x = b.walk(sub(path, "sn1"), m.sn1, x)
    x = b.walk(sub(path, "maxpool"), m.maxpool, x)
    x = _stages(b, path, m, x)
    x = b.walk(sub(path, "avgpool"), m.avgpool, x)
    return b.walk(sub(path, "fc"), m.fc, b.flatten(sub(path, "flatten"), x))


def _main_path(b, path: str, m, x: Value, depth: int, last_neuron: bool) -> Value:
    """conv_i-bn_i-sn_i for i = 1..depth (without the last neuron unless ``last_neuron``)."""
    for i in range(1, depth + 1):
        x = b.conv_bn(sub(path, f"conv{i}"), sub(path, f"bn{i}"), x)
        if i < depth or last_neuron:
            x = b.walk(sub(path, f"sn{i}"), getattr(m, f"sn{i}"), x)
    return x


def _sew_shortcut(b, path: str, m, x: Value) -> Value:
    if m.downsample is None:
        return x
    s = b.walk(sub(path, "downsample"), m.downsample, x)
    return b.walk(sub(path, "downsample_sn"), m.downsample_sn, s)


def _where(path: str, m) -> str:
    return f"module '{path}' ({type(m).__name__}, sew_function {m.cnf})"


def sew_basic(b, path: str, m, x: Value) -> Value:
    """SEW ``BasicBlock``: ``sew_function(identity, out, cnf)``, identity first."""
    out = _main_path(b, path, m, x, 2, last_neuron=True)
    return b.connect(sub(path, "connect"), m.cnf, _sew_shortcut(b, path, m, x), out, _where(path, m))


def sew_bottleneck(b, path: str, m, x: Value) -> Value:
    """SEW ``Bottleneck``: ``sew_function(out, identity, cnf)``, the block's output first (so its
    IAND is ``out·(1 − identity)``, where the BasicBlock's is ``identity·(1 − out)``)."""
    out = _main_path(b, path, m, x, 3, last_neuron=True)
    return b.connect(sub(path, "connect"), m.cnf, out, _sew_shortcut(b, path, m, x), _where(path, m))


def spiking_block(b, path: str, m, x: Value) -> Value:
    """Spiking ResNet ``BasicBlock``/``Bottleneck``: ``sn_last(bn(conv(...)) + identity)``, the
    identity being the input spikes or ``downsample`` (conv1x1-BN, real-valued)."""
    depth = 3 if hasattr(m, "conv3") else 2
    out = _main_path(b, path, m, x, depth, last_neuron=False)
    identity = x if m.downsample is None else b.walk(sub(path, "downsample"), m.downsample, x)
    return b.walk(sub(path, f"sn{depth}"), getattr(m, f"sn{depth}"), b.join(out, identity))


def ms_resnet(b, path: str, m, x: Value) -> Value:
    """``MSResNet``/``MaxResNet``: stem (conv-BN, optionally max pooling), layer1..3(4), head_lif,
    avgpool, flatten, head. The network's ``forward`` then averages the head over time; the NIR
    output is the head at every step (average it, or sum it: same argmax)."""
    x = b.walk(sub(path, "stem"), m.stem, x)
    x = _stages(b, path, m, x)
    x = b.walk(sub(path, "head_lif"), m.head_lif, x)
    x = b.walk(sub(path, "avgpool"), m.avgpool, x)
    return b.walk(sub(path, "head"), m.head, b.flatten(sub(path, "flatten"), x))


def ms_block(b, path: str, m, x: Value) -> Value:
    """MS-ResNet block: ``bn2(conv2(spike2(bn1(conv1(spike1(x)))))) + identity`` (identity: the
    real-valued stream or ``downsample``, conv1x1-BN), with ``max_pool`` after bn1 in MaxResNet's
    transition block (refused by the builder: max pooling of real values)."""
    identity = x if m.downsample is None else b.walk(sub(path, "downsample"), m.downsample, x)
    out = b.walk(sub(path, "spike1"), m.spike1, x)
    out = b.conv_bn(sub(path, "conv1"), sub(path, "bn1"), out)
    if hasattr(m, "max_pool"):
        out = b.walk(sub(path, "max_pool"), m.max_pool, out)
    out = b.walk(sub(path, "spike2"), m.spike2, out)
    out = b.conv_bn(sub(path, "conv2"), sub(path, "bn2"), out)
    # identity first: flattened, the terms then sum in spikingjelly's association order
    return b.residual_sum(sub(path, "stream"), identity, out)


def walkers() -> dict[type, Callable]:
    """Model and block class -> walker, for the classes of spikingjelly 2.0 this module reads."""
    from spikingjelly.activation_based.model import ms_resnet as ms
    from spikingjelly.activation_based.model import sew_resnet as sew
    from spikingjelly.activation_based.model import spiking_resnet as spk

    return {
        sew.SEWResNet: resnet, spk.SpikingResNet: resnet,
        sew.BasicBlock: sew_basic, sew.Bottleneck: sew_bottleneck,
        spk.BasicBlock: spiking_block, spk.Bottleneck: spiking_block,
        ms.MSResNet: ms_resnet, ms.MaxResNet: ms_resnet,
        ms._MSBlock: ms_block, ms._MaxResNetBlock: ms_block, ms._MaxResNetMaxBlock: ms_block,
    }


#: residual sums as identity nodes by default: MS-ResNet's real-valued stream (fan-in 2 at any depth)
RESIDUAL_NODES_BY_DEFAULT = ("MSResNet", "MaxResNet")
