"""The chip: its IR (:mod:`.ir`) and file format (:mod:`.format`), Loihi's fixed-point
arithmetic (:mod:`.loihi`), target files (:mod:`.targets`) and the partitioner
(:mod:`.partition`).
Imports nothing from the passes, backends or verification."""

from snn2chip.chip.format import load, save
from snn2chip.chip.ir import FORMAT_VERSION, ChipNet, IRError, Population, SynapseGroup

__all__ = ["FORMAT_VERSION", "ChipNet", "IRError", "Population", "SynapseGroup", "load", "save"]
