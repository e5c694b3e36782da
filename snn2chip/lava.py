"""A compiled network inside your own Lava application: the public Lava builder.

::

    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from snn2chip import lava as snn2chip_lava

    network = snn2chip_lava.build("build")               # a build folder, its network.h5, or a ChipNet
    source.s_out.connect(network.inputs["input"])        # Lava shape network.shapes["input"]: (W, H, C)
    network.outputs["output_pop"].connect(sink.a_in)
    network.process.run(condition=RunSteps(num_steps=T), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    network.process.stop()

:class:`LavaNetwork` says what each field holds; ``encode`` turns inputs (NIR layout, as for
``snn2chip run``) into the payloads a source sends, ``decode`` a sink's record into the
simulator's layout. Lava's shapes are NIR's ``(C, H, W)`` reversed, ``(W, H, C)``. Which of
the processes are Lava's own and which are snn2chip's (the subtractive-reset LIF), and what a
Loihi 2 hardware run would still need: README, "Embedding the network in a Lava application".

Lava is imported only when a network is built; without it, :func:`build` raises a
:class:`~snn2chip.errors.ModelError` saying how to install it.
"""

from __future__ import annotations

from pathlib import Path

from snn2chip.backends.lava import LavaNetwork, from_lava, lava_shape, run_lava, to_lava
from snn2chip.backends.lava import build as _build
from snn2chip.chip.ir import ChipNet

__all__ = ["LavaNetwork", "build", "run_lava", "lava_shape", "to_lava", "from_lava"]


def build(network: ChipNet | str | Path) -> LavaNetwork:
    """The Lava processes of ``network`` (a :class:`~snn2chip.chip.ChipNet`, a build folder written
    by ``snn2chip compile`` or its ``network.h5``), connected and wrapped in one process with a port
    per input and output population. Every call builds new processes (Lava runs a process once)."""
    if not isinstance(network, ChipNet):
        from snn2chip.compiler import load_build

        network = load_build(network)
    return _build(network)
