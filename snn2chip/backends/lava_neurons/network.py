"""A compiled network as one hierarchical Lava process: the ports a Lava application connects to.

:func:`snn2chip.backends.lava.build` creates the network's neuron and synapse processes, connects
them, and wraps them in a :class:`ChipNetwork`, whose ports stand for the network's edges: one
``InPort`` ``in_<i>`` per input population (what a spike source's ``s_out`` connects to; inside,
it fans out to every synapse process the population feeds, flattened where the synapse takes a
vector) and one ``OutPort`` ``out_<i>`` per output population (fed by its ``s_out``), in Lava's
``(W, H, C)`` shape. This is the structure of lava-dl's ``netx.hdf5.Network``: the children exist
and are connected when the process is created, so its sub-process model has nothing left to
build, and Lava's compiler reaches them through the ports (also when the network is run through a
source or sink connected to it, rather than through this process).

Importing this module imports Lava. Lava finds a process's models by importing every module in
the process's folder, so this folder holds Lava processes and models only.
"""

from __future__ import annotations

from lava.magma.core.decorator import implements
from lava.magma.core.model.sub.model import AbstractSubProcessModel
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class ChipNetwork(AbstractProcess):
    """Ports ``in_<i>`` (shapes ``in_shapes``) and ``out_<i>`` (shapes ``out_shapes``) of a built network."""

    def __init__(self, *, in_shapes: tuple[tuple[int, ...], ...], out_shapes: tuple[tuple[int, ...], ...], **kwargs):
        super().__init__(in_shapes=in_shapes, out_shapes=out_shapes, **kwargs)
        for i, shape in enumerate(in_shapes):
            setattr(self, f"in_{i}", InPort(shape=tuple(shape)))
        for i, shape in enumerate(out_shapes):
            setattr(self, f"out_{i}", OutPort(shape=tuple(shape)))


@implements(proc=ChipNetwork, protocol=LoihiProtocol)
class ChipNetworkModel(AbstractSubProcessModel):
    """The sub-process model of :class:`ChipNetwork`: its sub-processes were built and connected
    with it, so there is nothing to do (as ``netx.hdf5.PyNetworkModel``)."""

    def __init__(self, proc: ChipNetwork):
        pass
