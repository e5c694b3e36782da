"""What every pass reads: the graph with its shortcuts lowered, the compile options, the target's
capabilities and the float model's outputs on calibration data (:class:`Context`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from snn2chip.errors import ModelError
from snn2chip.frontend import reference
from snn2chip.frontend.graph import Graph
from snn2chip.passes import lower, relays, shortcuts

ROUNDINGS = ("compensated", "nearest")
#: a relay's graded payload when the target carries none (the partitioner then refuses it)
RELAY_BITS = 24


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """The target facts the passes need: the largest synaptic delay (steps), the graded payload
    width (bits; 0: binary spikes only), the weight mantissa width (bits), and what a core holds:
    neurons, synaptic memory (bits), the bits of one stored synapse and whether conv kernels are
    stored once per core. Defaults: Loihi 2."""

    max_delay: int = 63
    payload_bits: int = 24
    weight_bits: int = 8
    core_neurons: int = 8192
    core_memory_bits: int = 1048576
    synapse_bits: int = 21
    shared_conv_kernels: bool = True

    @classmethod
    def of(cls, target) -> "Capabilities":
        """The capabilities of a :class:`snn2chip.chip.targets.Target`."""
        return cls(max_delay=target.max_delay, payload_bits=target.payload_bits, weight_bits=target.weight_bits,
                   core_neurons=target.neurons, core_memory_bits=target.synaptic_memory_bits,
                   synapse_bits=target.synapse_bits, shared_conv_kernels=target.shared_conv_kernels)

    def synapses_cheaper(self, synapses: int, neurons: int) -> bool:
        """Whether a conv's ``synapses`` explicit synapses take less of a core than ``neurons``
        delay-line neurons (a target without shared kernels stores them anyway)."""
        extra_bits = synapses * self.synapse_bits if self.shared_conv_kernels else 0
        return extra_bits * self.core_neurons < neurons * self.core_memory_bits

    @property
    def strategies(self) -> tuple[str, ...]:
        """The shortcut strategies this target can carry (relays need graded payloads)."""
        return shortcuts.STRATEGIES if self.payload_bits else ("expand",)

    @property
    def relay_bits(self) -> int:
        """The payload width of a relay population."""
        return self.payload_bits or RELAY_BITS


@dataclasses.dataclass(frozen=True)
class Options:
    """Compile options. ``input_bits`` 0: inputs are binary spikes; else graded payloads of that
    width, ``round(x * input_scale)``. ``steps``: horizon for the range of integrating read-outs.
    ``align``: equalise the hop counts of paths into a population (switch off only to measure
    what misalignment costs). ``strategy``: how residual joins reach the chip
    (:mod:`snn2chip.passes.shortcuts`). ``split_signs``: mixed-sign weights become an excitatory
    and an inhibitory group (8-bit magnitudes) instead of one mixed group (7 bits and a sign).
    ``calibration``: inputs (samples, *input shape), held for ``steps`` steps, on which the float
    model's source outputs are measured for bias correction and, with ``rounding``
    'compensated', for error-compensating weight rounding (:mod:`snn2chip.passes.quantize`);
    'nearest' rounds every weight to nearest."""

    dt: float | None = None
    input_scale: float = 1.0
    input_bits: int = 0
    steps: int = 100
    align: bool = True
    strategy: str = "expand"
    split_signs: bool = True
    calibration: np.ndarray | None = None
    rounding: str = "compensated"


@dataclasses.dataclass(frozen=True)
class Context:
    """A compile's fixed inputs. ``graph``: shortcuts and other relays inserted; ``pops``:
    population -> NIR node, in build order; ``dt``: the time step; ``calibrated``: per population
    the float outputs (samples, steps, neurons) on the calibration inputs, ``means`` their mean
    per neuron (both None without calibration)."""

    graph: Graph
    options: Options
    caps: Capabilities
    dt: float
    pops: dict[str, str]
    calibrated: dict[str, np.ndarray] | None
    means: dict[str, np.ndarray] | None


def make(graph: Graph, options: Options, caps: Capabilities) -> Context:
    """The context of compiling ``graph``: lowers its shortcuts (strategy ``options.strategy``)
    and runs the float model on the calibration inputs."""
    dt, _ = reference.resolve_dt(graph, options.dt)
    if options.rounding not in ROUNDINGS:
        raise ModelError(f"unknown rounding '{options.rounding}' (known: {', '.join(ROUNDINGS)})")
    graph = relays.insert(shortcuts.apply(graph, options.strategy), caps)
    pops = lower.populations(graph)
    calibrated = _calibration_outputs(graph, pops, options, dt)
    means = None if calibrated is None else {pop: out.mean((0, 1)) for pop, out in calibrated.items()}
    return Context(graph, options, caps, dt, pops, calibrated, means)


def _calibration_outputs(graph: Graph, pops: dict[str, str], options: Options, dt: float) -> dict[str, np.ndarray] | None:
    """Per population the float model's outputs (samples, steps, neurons) on the calibration inputs."""
    if options.calibration is None:
        return None
    nodes = sorted(set(pops.values()))
    try:
        outputs = reference.run(graph, options.calibration, options.steps, dt=dt, record=nodes, dtype=torch.float64)
    except ModelError as e:
        raise ModelError(f"calibration inputs: {e.problem}", node=e.node, option="--calib") from None
    return {pop: outputs[node].reshape(*outputs[node].shape[:2], -1) for pop, node in pops.items()}
