"""Back ends that run a chip network: the bit-accurate simulator (:mod:`.simulator`) and Lava
(:mod:`.lava`, with snn2chip's own neuron processes in :mod:`.lava_neurons`)."""
