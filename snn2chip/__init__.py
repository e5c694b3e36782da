"""snn2chip: compile residual spiking neural networks to neuromorphic hardware.

Public API of the front end and the float reference:

- :func:`snn2chip.frontend.load` reads a ``.nir`` file into a :class:`snn2chip.frontend.graph.Graph`;
- :func:`snn2chip.frontend.reference.run` executes a graph in discrete time on a batch of inputs.
"""

from snn2chip.errors import ModelError
from snn2chip.frontend.read import load
from snn2chip.frontend.graph import Graph
from snn2chip.frontend.reference import run

__version__ = "0.2.0"
__all__ = ["Graph", "ModelError", "load", "run", "__version__"]
