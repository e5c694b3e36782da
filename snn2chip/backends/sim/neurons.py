"""Population dynamics over a run: Lava's bit-accurate CUBA LIF and GradedVec relay
(:mod:`snn2chip.chip.loihi`), one step of the whole batch at a time (step schedule) or every
step of a slice of the samples at a time (layer schedule; relays, memoryless, all steps at once).

Tensors are time-major: inputs and outputs ``(steps, batch, *shape)``. LIF outputs are spikes
(bool), relay outputs graded int32 payloads.
"""

from __future__ import annotations

import numpy as np
import torch

from snn2chip.chip import loihi
from snn2chip.chip.ir import Population


CACHE_ELEMENTS = 2**17  # neurons x samples a layer-schedule LIF update works on (its int32 state: 512 KiB)


def output_dtype(pop: Population) -> torch.dtype:
    """What a population sends: spikes (bool) or payloads (int32)."""
    return torch.bool if pop.kind == "lif" else torch.int32


class Neurons:
    """The state of one non-input population for ``batch`` samples (1 for a population whose
    activity does not depend on the inputs); ``probes``: its u and v per step, when probed.

    ``resting``: the neurons carry nothing into the next step, so Lava's update reduces to the
    one from zero state (dv no longer matters): with ``du = 4095`` the current forgets, and the
    voltage carries ``trunc(v * keep / 4096)`` (``keep = 4096 - dv``), zero while ``|v| * keep <
    4096``. Checked after every step of a LIF whose sub-threshold voltages can rest
    (``keep * vth * 64 < 4096``); None for the others.
    """

    def __init__(self, pop: Population, batch: int, steps: int, probed: bool):
        self.pop, self.batch, self.steps = pop, batch, steps
        shape = (batch, *pop.shape)
        self.zero = torch.zeros(shape, dtype=torch.int32)
        self.u = self.v = self.zero
        self.bias = None
        if pop.kind == "lif" and pop.bias_mant is not None:
            effective = loihi.effective_bias(pop.bias_mant, pop.bias_exp).astype(np.int32)
            self.bias = torch.as_tensor(effective) if effective.any() else None
        self.keep = loihi.DECAY_UNITY - pop.dv
        can_rest = pop.kind == "lif" and pop.du == 4095 and self.keep * (pop.vth << loihi.ACT_SHIFT) < loihi.DECAY_UNITY
        self.resting = True if can_rest else None
        self.probes = {var: torch.zeros((steps, *shape), dtype=torch.int32) for var in "uv"} if probed else {}

    def step(self, t: int, a_in: torch.Tensor) -> torch.Tensor:
        """Step ``t`` with the summed input ``a_in`` ``(batch, *shape)``: what the population sends."""
        if self.pop.kind == "relay":
            return loihi.relay_step(a_in, self.pop.vth)
        self.u, self.v, spikes, self.resting = self._update(t, self.u, self.v, a_in, self.resting, slice(None))
        return spikes

    def run(self, a_in: torch.Tensor, start: int) -> torch.Tensor:
        """Every step, from the inputs ``a_in`` ``(steps - start, batch, *shape)`` of the steps from
        ``start`` on (zero before): until then, without bias, the state stays zero and nothing is
        sent. LIF neurons run a slice of the samples at a time through every step, sized so that
        their state stays in the processor's cache (``CACHE_ELEMENTS``)."""
        if self.pop.kind == "relay":
            out = torch.zeros((self.steps, *self.zero.shape), dtype=torch.int32)
            out[start:] = loihi.relay_step(a_in, self.pop.vth)
            return out
        out = torch.zeros((self.steps, *self.zero.shape), dtype=torch.bool)
        rows = max(1, CACHE_ELEMENTS // self.pop.size)
        for first in range(0, self.batch, rows):
            part = slice(first, first + rows)
            u = v = zero = self.zero[part]
            resting = self.resting
            for t in range(start if self.bias is None else 0, self.steps):
                a = a_in[t - start, part] if t >= start else zero
                u, v, out[t, part], resting = self._update(t, u, v, a, resting, part)
        return out

    def _update(self, t: int, u, v, a_in, resting: bool | None, part: slice):
        """Lava's LIF update of the samples ``part`` at step ``t``: ``(u, v, spikes, resting)``."""
        pop = self.pop
        dv = 0 if resting else pop.dv  # at rest v is zero in effect; dv = 0 skips its decay
        u, v, spikes = loihi.lif_step(u, v, a_in, pop.du, dv, self.bias, pop.vth, pop.vsub)
        if resting is not None:
            low, high = torch.aminmax(v) if v.numel() else (0, 0)
            resting = max(-int(low), int(high)) * self.keep < loihi.DECAY_UNITY
        if self.probes:
            self.probes["u"][t, part], self.probes["v"][t, part] = u, v
        return u, v, spikes, resting
