"""Population dynamics over a run: Lava's bit-accurate CUBA LIF and GradedVec relay
(:mod:`snn2chip.chip.loihi`), one step of the whole batch at a time (step schedule) or every
step of a slice of the samples at a time (layer schedule; relays, memoryless, all steps at once).
Both schedules run the same integer operations.

The LIF update is Lava's (:func:`~snn2chip.chip.loihi.lif_step`) in two passes: the currents
``u`` of all steps first (they do not depend on v; all steps at once when ``du = 4095``), then
the voltages step by step from ``w = u + bias``. Everything is int32, as in Lava, and no sum
wraps: Lava wraps u once at +-2**23, which leaves |u| <= 2**31 - 2**24; |bias| <= 2**19 (the IR's
``bias_mant`` and ``bias_exp`` ranges); |v| < 2**23 after the clip and after a reset, and its
decay shrinks it. So ``trunc_decay(v) + u + bias`` stays inside int32 (below 2**31 - 2**23) and
``w`` may be summed first. The decay ``trunc(v * keep / 4096)`` (``keep = 4096 - dv``) is the
product in float32 when ``keep`` is a power of two (exact: |v| < 2**24), else float64 (exact:
below 2**35), truncated toward zero by the conversion back to int32.

Tensors are time-major: inputs and outputs ``(steps, batch, *shape)``. LIF outputs are spikes
(bool), relay outputs graded int32 payloads.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

from snn2chip.chip import loihi
from snn2chip.chip.ir import Population

GRAIN = 2**15  # torch runs elementwise ops on fewer elements in the calling thread, without thread synchronisation
REST_KEEP = 64  # try the resting shortcut for LIF neurons keeping at most 64/4096 of their voltage per step
CURRENT_LIMIT = 2**17  # |a_in| < CURRENT_LIMIT: a_in << 6 is below 2**23, so Lava's wraps of u do nothing
V_LIMIT = loihi.MAX_UV - 1  # Lava's clip of v


def output_dtype(pop: Population) -> torch.dtype:
    """What a population sends: spikes (bool) or payloads (int32)."""
    return torch.bool if pop.kind == "lif" else torch.int32


def row_slices(batch: int, size: int) -> list[slice]:
    """The batch in slices of about equal rows, each of fewer than ``GRAIN`` samples x ``size``
    neurons (one row at least)."""
    parts = -(-batch * size // (GRAIN - 1))
    rows = -(-batch // parts)
    return [slice(first, first + rows) for first in range(0, batch, rows)]


def wrap_once(current: torch.Tensor) -> torch.Tensor:
    """Lava's wrap of the int32 current at +-2**23, applied once (2**23 itself stays): values above
    2**23 lose 2**24, values at or below -2**23 gain it; |result| <= 2**31 - 2**24."""
    current = torch.where(current > loihi.MAX_UV, current - 2 * loihi.MAX_UV, current)
    return torch.where(current <= -loihi.MAX_UV, current + 2 * loihi.MAX_UV, current)


class Neurons:
    """The state of one non-input population for ``batch`` samples (1 for a population whose
    activity does not depend on the inputs): flat ``(batch, size)`` int32 ``u`` and ``v``, made
    by the first :meth:`step` (:meth:`run` starts from rest and keeps none). ``probes``: its u and
    v per step, ``(steps, batch, *shape)``, when probed. ``biased``: a LIF with a non-zero bias
    (it changes before its first input)."""

    def __init__(self, pop: Population, batch: int, steps: int, probed: bool):
        self.pop, self.batch, self.steps = pop, batch, steps
        self.shape = (batch, *pop.shape)
        self.probes = {var: torch.zeros((steps, *self.shape), dtype=torch.int32) for var in "uv"} if probed else {}
        self.state: tuple[torch.Tensor | None, torch.Tensor] | None = None
        self.biased = False
        if pop.kind != "lif":
            return
        bias = np.zeros(pop.size, np.int64)
        if pop.bias_mant is not None:
            bias = loihi.effective_bias(pop.bias_mant, pop.bias_exp).reshape(-1)
        self.bias, self.biased = torch.as_tensor(bias.astype(np.int32)), bool(bias.any())
        self.keep = loihi.DECAY_UNITY - pop.dv
        product = torch.float32 if self.keep & (self.keep - 1) == 0 else torch.float64
        self.decay = torch.tensor(self.keep / loihi.DECAY_UNITY, dtype=product)  # its dtype sets the product's
        self.threshold, self.vsub = pop.vth << loihi.ACT_SHIFT, pop.vsub << loihi.ACT_SHIFT

    @functools.cached_property
    def zero(self) -> torch.Tensor:
        """No input, ``(batch, *shape)`` int32."""
        return torch.zeros(self.shape, dtype=torch.int32)

    def step(self, t: int, a_in: torch.Tensor) -> torch.Tensor:
        """Step ``t`` with the summed input ``a_in`` ``(batch, *shape)``: what the population sends."""
        if self.pop.kind == "relay":
            return loihi.relay_step(a_in, self.pop.vth)
        if self.state is None:
            flat = (self.batch, self.pop.size)
            self.state = torch.zeros(flat, dtype=torch.int32) if self.pop.du != 4095 else None, torch.zeros(flat, dtype=torch.int32)
        u, v = self.state
        out = torch.empty((1, *self.shape), dtype=torch.bool)
        a, spikes = a_in.reshape(1, self.batch, -1), out.view(1, self.batch, -1)
        for rows in row_slices(self.batch, self.pop.size):
            self._advance(a[:, rows], spikes[:, rows], rows, t, None if u is None else u[rows], v[rows])
        return out[0]

    def run(self, inputs: Callable[[slice], torch.Tensor], start: int) -> torch.Tensor:
        """Every step from rest; ``inputs(rows)``: the summed inputs ``(steps - start, rows, *shape)``
        of the samples ``rows`` in the steps from ``start`` on (a new tensor; zero before ``start``,
        0 for a biased population, which changes before then). A slice of the samples at a time
        (:func:`row_slices`) runs through every step."""
        assert not (start and self.biased), "a biased population runs from step 0"
        out = torch.empty((self.steps, *self.shape), dtype=output_dtype(self.pop))
        out[:start] = 0
        spikes = out.view(self.steps, self.batch, -1)[start:]
        for rows in row_slices(self.batch, self.pop.size):
            if self.pop.kind == "relay":
                out[start:, rows] = loihi.relay_step(inputs(rows), self.pop.vth)
            else:
                self._advance(inputs(rows).flatten(2), spikes[:, rows], rows, start, None, None)
        return out

    def _advance(self, a: torch.Tensor, out: torch.Tensor, rows: slice, first: int, u: torch.Tensor | None,
                 v: torch.Tensor | None) -> None:
        """Steps ``first, first + 1, ...`` of the samples ``rows`` from their inputs ``a`` ``(k,
        rows, size)`` int32: spikes into ``out`` (same shape, bool), probes written. ``u``, ``v``:
        the samples' state, updated in place; None: at rest (``u`` also when ``du = 4095``: then
        the current does not depend on it)."""
        u, w = self._currents(a, u, inplace=v is None)
        probes = {var: p.view(self.steps, self.batch, -1)[first : first + len(a), rows] for var, p in self.probes.items()}
        if probes:
            probes["u"].copy_(u)
        if v is None and self.keep <= REST_KEEP and self._rests(w, out, probes):
            return
        decays, product = self.keep != loihi.DECAY_UNITY, None
        for t in range(len(a)):
            if v is None:  # at rest: no decay, no sum
                v = w[0].clamp(-V_LIMIT, V_LIMIT)
            else:
                if decays:
                    product = torch.mul(v, self.decay, out=product)
                    v.copy_(product)  # the int32 conversion truncates toward zero
                v.add_(w[t]).clamp_(-V_LIMIT, V_LIMIT)
            self._reset(v, torch.gt(v, self.threshold, out=w[t]))  # w[t] is read: it now holds the spikes, 0 or 1
            if probes:
                probes["v"][t] = v
        out.copy_(w)

    def _currents(self, a: torch.Tensor, u: torch.Tensor | None, inplace: bool) -> tuple[torch.Tensor | None, torch.Tensor]:
        """``u`` (int32; None when ``du = 4095``, unprobed and computed on the fly) and ``w = u +
        bias`` of every step of ``a`` ``(k, rows, size)``: Lava's ``u <- trunc_decay(u, 4095 - du)
        + (a << 6)``, wrapped once at +-2**23, from the state ``u`` (updated; None: zero).
        ``inplace``: ``w`` may overwrite ``a``."""
        if self.pop.du == 4095:
            low, high = torch.aminmax(a) if a.numel() else (0, 0)
            if -CURRENT_LIMIT < low and high < CURRENT_LIMIT:  # no wrap: one operation
                u = a * (1 << loihi.ACT_SHIFT) if self.probes else None
                return u, torch.add(self.bias, a, alpha=1 << loihi.ACT_SHIFT, out=a if inplace else None)
            currents = wrap_once(a << loihi.ACT_SHIFT)
        else:
            currents = torch.empty_like(a)
            u = torch.zeros(a.shape[1:], dtype=torch.int32) if u is None else u
            for t in range(len(a)):
                u.copy_(wrap_once(loihi.trunc_decay(u, loihi.DECAY_UNITY - (self.pop.du + 1)) + (a[t] << loihi.ACT_SHIFT)))
                currents[t] = u
        return currents, currents + self.bias

    def _rests(self, w: torch.Tensor, out: torch.Tensor, probes: dict[str, torch.Tensor]) -> bool:
        """The resting shortcut, from rest: if every step's voltage decays to zero by the next step,
        each step starts at rest and all steps update at once. Computes them so; keeps them (spikes
        in ``out``, probes) and returns True if all but the last satisfy ``|v| * keep < 4096``."""
        v = w.clamp(-V_LIMIT, V_LIMIT)
        spikes = torch.gt(v, self.threshold, out=torch.empty_like(v))
        self._reset(v, spikes)
        low, high = torch.aminmax(v[:-1]) if len(v) > 1 else (0, 0)
        if max(-int(low), int(high)) * self.keep >= loihi.DECAY_UNITY:
            return False
        out.copy_(spikes)
        if probes:
            probes["v"].copy_(v)
        return True

    def _reset(self, v: torch.Tensor, spikes: torch.Tensor) -> None:
        """Lava's reset of the voltages ``v`` where ``spikes`` (int32, 0 or 1), in place: to zero,
        or by subtraction. (Integer arithmetic on int32 masks: much faster than bool masks.)"""
        if self.vsub:
            v.sub_(spikes, alpha=self.vsub)
        else:
            v.addcmul_(v, spikes, value=-1)
