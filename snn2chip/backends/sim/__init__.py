"""The parts of the bit-accurate simulator (:mod:`snn2chip.backends.simulator`): ``ops`` (synapse
groups as operations), ``neurons`` (population dynamics), ``schedule`` (step and layer orders)
and ``footprint`` (memory estimates)."""
