"""snn2chip's own Lava processes: the subtractive-reset LIF with its bit-accurate CPU model
(:mod:`.subtractive`) and the hierarchical process a built network sits in (:mod:`.network`).
Imports nothing itself."""
