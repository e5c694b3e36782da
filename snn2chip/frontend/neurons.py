r"""Discrete-time meaning of NIR's neuron nodes: the one place where ``dt`` enters.

NIR states continuous dynamics. snn2chip integrates them with forward Euler at step ``dt``
(the convention of snnTorch's and norse's exporters, which write ``tau = dt / (1 - beta)``),
and within one step evaluates, in this order, for input ``x`` (the sum of all incoming edges):

=========  ===========================================================  ===========
node       update (all element-wise)                                    output
=========  ===========================================================  ===========
I          v <- v + dt*r*x                                              v
IF         v <- v + dt*r*x;  spike, reset                               s
LI         v <- v + dt/tau*(v_leak - v + r*x)                           v
LIF        v <- v + dt/tau*(v_leak - v + r*x);  spike, reset            s
CubaLI     i <- i + dt/tau_syn*(w_in*x - i);  v <- v + dt/tau_mem*(v_leak - v + r*i)   v
CubaLIF    as CubaLI (v uses the new i);  spike, reset                  s
=========  ===========================================================  ===========

spike: ``s = 1 if v > v_threshold else 0`` (NIR's strict threshold); reset: ``v <- v_reset``
where ``s = 1`` (NIR), or ``v <- v - v_threshold`` with ``metadata["reset"] = "subtract"``.
States start at 0. All six are one update: ``v <- decay*v + lam*v_leak + gain*i`` with
``i = x`` when there is no synaptic current, which :class:`NeuronParams` holds.

For IF with ``dt = 1, r = 1`` this is ``v <- v + x`` (sinabs' IAF); for LIF exported by
snnTorch at ``dt = 1e-4`` it is ``v <- beta*v + x``. Euler is only meaningful for
``dt/tau <= 1``; larger steps are rejected (the time constants are then usually in seconds and
the user must pass the exporter's ``dt``).
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from snn2chip.errors import ModelError

NEURONS = (nir.I, nir.IF, nir.LI, nir.LIF, nir.CubaLI, nir.CubaLIF)
#: Neuron nodes that spike and reset.
RESETTING = (nir.IF, nir.LIF, nir.CubaLIF)
#: Metadata key (value: the pool's node name) of a neuron node that is a stage of a converted max
#: pool: a helper the converter wrote, not a layer of the model (population role ``pool``).
POOL_STAGE = "snn2chip_pool_stage"


def pool_stage(node: nir.NIRNode) -> bool:
    """Whether ``node`` is a stage of a converted max pool (:data:`POOL_STAGE`)."""
    return isinstance(node, NEURONS) and bool(node.metadata.get(POOL_STAGE))


def spikes(node: nir.NIRNode) -> bool:
    """Whether a node outputs spikes (a spiking neuron or a Threshold) rather than a value."""
    return isinstance(node, (*RESETTING, nir.Threshold))


@dataclasses.dataclass(frozen=True)
class NeuronParams:
    """Per-element discrete parameters of one neuron node (arrays broadcast to its shape).

    ``syn_decay`` is ``None`` without synaptic current (then ``i = x``); ``v_threshold`` is
    ``None`` for non-spiking nodes. ``subtract`` selects reset by subtraction.
    """

    decay: np.ndarray
    lam_v_leak: np.ndarray
    gain: np.ndarray
    syn_decay: np.ndarray | None = None
    syn_gain: np.ndarray | None = None
    v_threshold: np.ndarray | None = None
    v_reset: np.ndarray | None = None
    subtract: bool = False

    @property
    def spiking(self) -> bool:
        return self.v_threshold is not None


def _f64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def _step_ratio(dt: float, tau, field: str, name: str) -> np.ndarray:
    ratio = dt / _f64(tau)
    if np.any(ratio > 1):
        raise ModelError(
            f"dt/{field} = {ratio.max():g} > 1 at dt = {dt:g}: forward Euler overshoots; "
            "the time constants look like seconds, pass the exporter's dt (e.g. --dt 1e-4)",
            node=name,
        )
    return ratio


def discretise(node: nir.NIRNode, dt: float, name: str) -> NeuronParams:
    """Discrete parameters of neuron ``node`` at time step ``dt`` (see the module docstring)."""
    r = _f64(node.r)
    if isinstance(node, (nir.I, nir.IF)):
        decay, lam_v_leak, gain = np.ones_like(r), np.zeros_like(r), dt * r
    else:
        tau, field = (node.tau, "tau") if isinstance(node, (nir.LI, nir.LIF)) else (node.tau_mem, "tau_mem")
        lam = _step_ratio(dt, tau, field, name)
        decay, lam_v_leak, gain = 1.0 - lam, lam * _f64(node.v_leak), lam * r
    syn_decay = syn_gain = None
    if isinstance(node, (nir.CubaLI, nir.CubaLIF)):
        lam_syn = _step_ratio(dt, node.tau_syn, "tau_syn", name)
        syn_decay, syn_gain = 1.0 - lam_syn, lam_syn * _f64(node.w_in)
    spiking = isinstance(node, RESETTING)
    return NeuronParams(
        decay=decay,
        lam_v_leak=lam_v_leak,
        gain=gain,
        syn_decay=syn_decay,
        syn_gain=syn_gain,
        v_threshold=_f64(node.v_threshold) if spiking else None,
        v_reset=_f64(node.v_reset) if spiking else None,
        subtract=spiking and node.metadata.get("reset") == "subtract",
    )


def delay_steps(node: nir.Delay, dt: float, name: str) -> np.ndarray:
    """Whole-step delays of a Delay node (``delay`` is in the same unit as ``dt``)."""
    steps = np.asarray(node.delay, dtype=np.float64) / dt
    whole = np.round(steps)
    if np.any(np.abs(steps - whole) > 1e-6 * np.maximum(1.0, np.abs(whole))) or np.any(whole < 0):
        raise ModelError(
            f"delay {np.asarray(node.delay).reshape(-1)[:4].tolist()} is not a whole, non-negative number "
            f"of dt = {dt:g} steps: discrete-time hardware delays by whole steps only",
            node=name,
        )
    return whole.astype(np.int64)
