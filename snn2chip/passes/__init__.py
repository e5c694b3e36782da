"""Compiler passes: residual shortcuts (:mod:`.shortcuts`), lowering NIR chains to float synapse
maps (:mod:`.lower`), quantization to Loihi's integers with latency alignment
(:mod:`.quantize`) and compensated rounding (:mod:`.rounding`)."""
