"""Custom Lava neuron: the LIF with reset by subtraction (ANN-converted networks).

Loihi 2 runs user-defined neuron programs ("microcode neurons"); this is what such a program
would do for the neuron of converted networks: Loihi's CUBA LIF arithmetic unchanged (Lava's
``PyLifModelBitAcc``: decays, 24-bit u and v, ``v > vth << 6``), except that a spike removes
``vsub << 6`` from v instead of setting v to 0, so the charge above threshold is kept. Lava's
own processes have no such neuron; the process model below is its bit-accurate CPU model, and
:func:`snn2chip.chip.loihi.lif_step` with ``vsub`` is the simulator's.

Importing this module imports Lava. Lava finds a process's models by importing every module in
the process's folder, so this folder holds Lava processes and models only.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed
from lava.proc.lif.process import LIF


class SubtractiveLIF(LIF):
    """Lava's ``LIF`` plus ``vsub`` (unsigned 17 bits): a spike subtracts ``vsub << 6`` from v."""

    def __init__(self, *, vsub: int, **kwargs):
        super().__init__(**kwargs)
        self.vsub = Var(shape=(1,), init=vsub)


@implements(proc=SubtractiveLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PySubtractiveLifModelBitAcc(AbstractPyLifModelFixed):
    """Fixed-point model of :class:`SubtractiveLIF`: Lava's ``PyLifModelBitAcc`` with the reset
    changed. (Lava forbids subclassing a model that already implements a process, so its
    threshold handling is restated here, unchanged.)"""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    vth: int = LavaPyType(int, np.int32, precision=17)
    vsub: int = LavaPyType(int, np.int32, precision=17)

    def scale_threshold(self):
        self.effective_vth = np.left_shift(self.vth, self.vth_shift)
        self.isthrscaled = True

    def spiking_activation(self):
        return self.v > self.effective_vth

    def reset_voltage(self, spike_vector: np.ndarray):
        self.v[spike_vector] -= np.left_shift(self.vsub, self.vth_shift)
