"""Counting chip activity while a batch runs, without keeping the outputs.

Per counted population, per sample: its messages (non-zero outputs: spikes, or graded payloads)
over all steps, and their weighted sum, each message weighted by its neuron's ``weights`` entry
(e.g. the synapses it reaches: then the sum is the synaptic operations it causes).
"""

from __future__ import annotations

import torch


class Tally:
    """Messages and weighted messages per sample, ``(batch,)`` int64 and float64, per population."""

    def __init__(self, weights: dict[str, torch.Tensor], batch: int):
        self.weights = weights  # per population (size,) float64
        self.messages = {p: torch.zeros(batch, dtype=torch.int64) for p in weights}
        self.weighted = {p: torch.zeros(batch, dtype=torch.float64) for p in weights}

    def add(self, name: str, out: torch.Tensor) -> None:
        """Count ``out`` ``(steps, batch or 1, *shape)`` of population ``name`` (if counted)."""
        if name not in self.weights:
            return
        per_neuron = (out != 0).flatten(2).sum(0, dtype=torch.int64)  # (batch or 1, size): exact counts
        self.messages[name] += per_neuron.sum(1)
        self.weighted[name] += per_neuron.to(torch.float64) @ self.weights[name]  # integers below 2**53: exact

    def results(self) -> dict[str, torch.Tensor]:
        """``NAME:messages`` and ``NAME:weighted`` per counted population."""
        return {**{f"{p}:messages": v for p, v in self.messages.items()},
                **{f"{p}:weighted": v for p, v in self.weighted.items()}}
