"""snn2chip: compile residual spiking neural networks to neuromorphic hardware.

Public API of the front end and the float reference:

- :func:`snn2chip.frontend.load` reads a ``.nir`` file into a :class:`snn2chip.frontend.graph.Graph`;
- :func:`snn2chip.frontend.reference.run` executes a graph in discrete time on a batch of inputs;
- :func:`snn2chip.from_spikingjelly` exports a spikingjelly 2.0 network to NIR
  (:mod:`snn2chip.importers.spikingjelly`; imported on first use, with spikingjelly).
"""

from snn2chip.errors import ModelError
from snn2chip.frontend.read import load
from snn2chip.frontend.graph import Graph
from snn2chip.frontend.reference import run

__version__ = "0.2.0"
__all__ = ["Graph", "ModelError", "load", "run", "__version__"]


def __getattr__(name: str):
    # Lazy: importing snn2chip must not import spikingjelly (absent from most environments).
    if name == "from_spikingjelly":
        try:
            from snn2chip.importers.spikingjelly import from_spikingjelly
        except ModuleNotFoundError as e:
            if e.name != "spikingjelly":
                raise
            raise ImportError("snn2chip.from_spikingjelly needs spikingjelly 2.x (Python >= 3.11): "
                              "pip install 'spikingjelly>=2'") from None
        return from_spikingjelly
    raise AttributeError(f"module 'snn2chip' has no attribute {name!r}")
