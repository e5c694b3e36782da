"""NIR export of the zoo's networks (BatchNorm folded first), and nothing silently dropped.

:func:`export` walks a folded network (:func:`models.layers.fold_bn`): each network and block
class has an ``export(builder, x)`` method that states its topology by naming its submodules;
the :class:`Builder` (the package's :class:`snn2chip.importers.builder.Builder`, plus the zoo's
neurons) turns each named leaf module into NIR nodes (named by module path, e.g.
``layer1.0.conv1``) and wires edges. A value flowing between nodes is a :class:`Value`: the *sum*
of the outputs of one or more nodes, because NIR sums the edges arriving at a node. A residual
sum is therefore either several edges into every consumer (the flattened form) or, with
``residual_nodes=True``, one identity ``nir.Scale`` node receiving the terms.

Refusals (:class:`ExportError`, naming the module): a module type without NIR equivalent (for
example an unfolded BatchNorm, ReLU, Dropout), max pooling of non-binary values, AND/IAND of
non-binary values, and any module of the network that the export did not visit.

Conventions (shared with snn2chip's compiler, see models/README.md):

- ``dt = 1`` is stored in the graph metadata;
- IF neurons that spike at ``v >= θ`` get the strict NIR threshold :func:`strict_threshold` (θ);
- the MS-ResNet neuron is ``nir.LIF(tau = r = 4/3, v_leak = 0, v_threshold = 0.5, v_reset = 0)`` (the
  threshold is the module's: :mod:`models.balance` sets others);
- the readout is ``nir.I(r = 1)`` after the classifier's ``nir.Affine``.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
from torch import nn

from models.layers import ConvBN, Integrator, IFNode, MSNode
from snn2chip.importers import builder as base
from snn2chip.importers.builder import DT, ExportError, Value, if_node, lif_node, strict_threshold

__all__ = ["Builder", "DT", "ExportError", "MS_TAU", "Value", "export", "strict_threshold"]

# MS-ResNet neuron m <- 0.25*m*(1-s) + x as nir.LIF at dt = 1: decay = 1 - dt/tau = 0.25 and
# gain = dt/tau*r = 1 need tau = r = 4/3, stored in float64 (float32(4/3) would give a decay
# that rounds to 0.25000003 in float32).
MS_TAU = np.float64(4.0) / np.float64(3.0)


class Builder(base.Builder):
    """The package's builder plus the zoo's modules: :class:`IFNode` (IF, ``v >= θ``),
    :class:`MSNode` (LIF, decay 0.25, ``v > θ``), :class:`Integrator` (``nir.I``); an unfolded
    :class:`ConvBN` or BatchNorm is refused."""

    supported = "Conv2d, folded ConvBN, IFNode, MSNode, Integrator, AvgPool2d, MaxPool2d on spikes, Flatten, Linear"

    def leaf(self, path: str, m: nn.Module, x: Value) -> Value | None:
        if isinstance(m, (ConvBN, nn.BatchNorm2d, nn.BatchNorm1d)):
            raise ExportError(f"module '{path}' ({type(m).__name__}): BatchNorm is not folded; export fold_bn(model)")
        if isinstance(m, IFNode):
            return self.neuron(path, if_node(x.shape, strict_threshold(m.v_threshold)), x)
        if isinstance(m, MSNode):
            assert m.decay == 0.25
            return self.neuron(path, lif_node(x.shape, MS_TAU, MS_TAU, np.float64(m.v_threshold)), x)
        if isinstance(m, Integrator):
            return self.node(path, nir.I(r=np.ones(x.shape, dtype=np.float32)), [x], x.shape, neurons=True)
        return super().leaf(path, m, x)


def export(model: nn.Module, path: str | Path | None = None, *, residual_nodes: bool | None = None,
           metadata: dict | None = None, rng: np.random.Generator | None = None, stream: bool = False):
    """Export a folded network to NIR; returns the ``nir.NIRGraph`` (and writes ``path`` if given).

    ``residual_nodes``: represent residual sums by identity Scale nodes (default: the family's
    choice, ``model.residual_nodes_default``). ``stream=True`` writes nodes to ``path`` while
    building (peak memory one layer) and returns the path instead of a graph.
    ``metadata`` is added to ``{"dt": 1.0}``.
    """
    if residual_nodes is None:
        residual_nodes = getattr(model, "residual_nodes_default", False)
    if stream and path is None:
        raise ValueError("stream=True needs a path")
    builder = Builder(model, residual_nodes=residual_nodes, rng=rng, stream_to=path if stream else None)
    meta = {"dt": DT, **(metadata or {})}
    try:
        x = builder.input(model.input_shape)
        builder.output(model.export(builder, x))
        builder.check_complete()
    except BaseException:
        builder.abort()
        raise
    return builder.finish(path, meta)
