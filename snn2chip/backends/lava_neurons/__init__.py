"""Custom Lava neuron processes with their bit-accurate CPU models (imports nothing itself)."""
