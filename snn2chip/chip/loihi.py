"""Loihi fixed-point arithmetic as Lava 0.10.0's ``fixed_pt`` CPU models compute it.

The one place that states the chip's integer arithmetic (docs/architecture.md §3); the simulator calls
these functions on ``torch.int64`` tensors (batch first), and a target with other arithmetic
would swap this module. Sources: ``lava/proc/lif/models.py`` (``AbstractPyLifModelFixed``,
``PyLifModelBitAcc``), ``lava/proc/dense/models.py`` and ``sparse/models.py`` (``...BitAcc``),
``lava/proc/conv/models.py`` and ``utils.py`` (``PyConvModelFixed``, ``signed_clamp``),
``lava/proc/graded/models.py`` (``PyGradedVecModelFixed``), ``lava/utils/weightutils.py``.
"""

from __future__ import annotations

import numpy as np
import torch

UV_BITS = 24
MAX_UV = 2 ** (UV_BITS - 1)
DECAY_SHIFT = 12
DECAY_UNITY = 2**DECAY_SHIFT
ACT_SHIFT = 6  # synaptic input and threshold are MSB-aligned by 6 bits
VTH_MAX = 2**17 - 1
WEIGHT_BITS = 8
MAX_DELAY = 63


def wrap(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap of int64 values to ``bits`` bits (numpy's int32 overflow, Conv's 24-bit clamp).

    Shifting the low ``bits`` bits to the top and back sign-extends them (checked against
    ``(x + 2**(bits-1)) mod 2**bits - 2**(bits-1)`` in the tests)."""
    return (x << (64 - bits)) >> (64 - bits)


def conv_output(total: torch.Tensor) -> torch.Tensor:
    """Lava's CPU Conv result from its float64 sum: cast to int32, then wrapped to 24 bits.

    The cast of a sum outside int32 is undefined in C; numpy on x86-64 gives -2**31 (which the
    24-bit wrap turns into 0). Compiled networks stay far from it (their ranges are checked).
    """
    total = total.round().to(torch.int64)
    outside = (total >= 2**31) | (total < -(2**31))
    return wrap(total.masked_fill(outside, -(2**31)), UV_BITS).to(torch.int32)


def shift(x: torch.Tensor, exp: int) -> torch.Tensor:
    """``x * 2**exp``: left shift, or arithmetic (flooring) right shift for negative ``exp``."""
    return x << exp if exp > 0 else x >> -exp


def trunc_decay(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``x * factor / 4096`` truncated toward zero (Lava: sign times the shifted magnitude).

    Lava forms the product in int64; for int32 ``x`` (the neuron state) it is formed here in
    float64, which is exact and faster (``|x * factor| < 2**43``, and dividing by 4096 is exact),
    for wider integers in int64. The result has ``x``'s dtype."""
    if factor == 0:
        return torch.zeros_like(x)
    if factor == DECAY_UNITY:
        return x
    if x.dtype == torch.int32:
        return (x.to(torch.float64) * (factor / DECAY_UNITY)).trunc_().to(x.dtype)
    return torch.div(x.to(torch.int64) * factor, DECAY_UNITY, rounding_mode="trunc").to(x.dtype)


def sign_mode(weights: np.ndarray) -> str:
    """Lava's ``determine_sign_mode``: 'excitatory' (all >= 0), 'inhibitory' (all <= 0) or 'mixed'."""
    if np.min(weights, initial=0) >= 0:
        return "excitatory"
    if np.max(weights, initial=0) <= 0:
        return "inhibitory"
    return "mixed"


def effective_weights(weights: np.ndarray, num_weight_bits: int = WEIGHT_BITS) -> np.ndarray:
    """Dense/Sparse weights as the chip uses them: clipped to 8 bits, low bits dropped.

    Mixed signs: clip to [-256, 255] and drop ``8 - bits + 1`` low bits (floor), so 8-bit mixed
    weights lose their LSB; excitatory [0, 255] and inhibitory [-255, 0] drop ``8 - bits``.
    """
    w = np.asarray(weights, dtype=np.int64)
    mode = sign_mode(w)
    sign = -1 if mode == "inhibitory" else 1
    w = sign * w
    low = -(2**WEIGHT_BITS) if mode == "mixed" else 0
    w = np.clip(w, low, 2**WEIGHT_BITS - 1)
    drop = WEIGHT_BITS - num_weight_bits + (mode == "mixed")
    return sign * ((w >> drop) << drop)


def lif_step(u, v, a_in, du: int, dv: int, bias: torch.Tensor | None, vth: int, vsub: int = 0):
    """One step of Lava's bit-accurate CUBA LIF on int32 tensors: returns ``(u, v, spikes)``.

    ``u <- trunc0(u*(4096-(du+1))/4096) + (a_in << 6)``, wrapped once at +-2**23 (2**23 itself
    stays); ``v <- clip(trunc0(v*(4096-dv)/4096) + u + bias, +-(2**23-1))``; spike where
    ``v > vth << 6`` (strict), then v <- 0, or v <- v - (vsub << 6) when ``vsub`` > 0 (reset by
    subtraction); ``u`` is not reset. As in Lava, state and sums are int32 (wrapping on
    overflow) and only the decay products are computed in int64. ``bias`` None means no bias.
    """
    current = a_in << ACT_SHIFT
    if du != 4095:
        current = current + trunc_decay(u, DECAY_UNITY - (du + 1))
    u = current
    low, high = torch.aminmax(current) if current.numel() else (0, 0)
    if high > MAX_UV or low <= -MAX_UV:
        wrapped = torch.where(current > MAX_UV, current - 2 * MAX_UV, current)
        u = torch.where(wrapped <= -MAX_UV, current + 2 * MAX_UV, wrapped)
    v = trunc_decay(v, DECAY_UNITY - dv) + u
    if bias is not None:
        v = v + bias
    v = torch.clamp(v, -MAX_UV + 1, MAX_UV - 1)
    spikes = v > (vth << ACT_SHIFT)
    if vsub:
        return u, torch.where(spikes, v - (vsub << ACT_SHIFT), v), spikes
    return u, v.masked_fill(spikes, 0), spikes


def effective_bias(bias_mant: np.ndarray, bias_exp: int) -> np.ndarray:
    """Per-neuron bias added to v each step: ``bias_mant << bias_exp`` (arithmetic >> if negative)."""
    mant = np.asarray(bias_mant, dtype=np.int64)
    return mant << bias_exp if bias_exp >= 0 else mant >> -bias_exp


def relay_step(a_in: torch.Tensor, vth: int) -> torch.Tensor:
    """GradedVec: the summed input is sent as a graded spike where ``|a_in| > vth``."""
    return torch.where(a_in.abs() > vth, a_in, torch.zeros_like(a_in))
