"""Front end: read and validate NIR (:mod:`.read`), the flat graph (:mod:`.graph`), shapes
(:mod:`.shapes`), neuron discretisation (:mod:`.neurons`), the float reference
(:mod:`.reference`) and the ``inspect`` summary (:mod:`.summary`). Imports nothing from the
later stages."""

from snn2chip.frontend.read import load

__all__ = ["load"]
