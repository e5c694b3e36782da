"""What ``verify`` (and ``compile --check``) report: float-vs-chip fidelity, chip activity, the
Lava and golden checks (the keys of ``verify --json`` and of ``report.json``).

Rates are spikes per neuron per step; agreements and accuracies are fractions (1.0 = 100 %).
"""

from __future__ import annotations

import dataclasses

from snn2chip.chip.totals import Totals
from snn2chip.records import Record, optional
from snn2chip.verify.energy import Energy


@dataclasses.dataclass(frozen=True)
class LayerFidelity(Record):
    """One spiking population: float and chip firing rates, their difference, and the fraction
    of (sample, step, neuron) where both spike or both stay silent."""

    population: str
    float_rate: float
    chip_rate: float
    rate_error: float
    spike_agreement: float


@dataclasses.dataclass(frozen=True)
class Fidelity(Record):
    """Float reference against chip simulator on ``samples`` inputs of ``steps`` steps: per
    spiking layer, prediction agreement, and with labels both accuracies."""

    samples: int
    steps: int
    layers: tuple[LayerFidelity, ...]
    output_agreement: float
    float_accuracy: float | None = optional()
    chip_accuracy: float | None = optional()

    def rates(self) -> dict[str, float]:
        """Chip firing rate per population (weights the partition's traffic)."""
        return {layer.population: layer.chip_rate for layer in self.layers}


@dataclasses.dataclass(frozen=True)
class PopulationActivity(Record):
    """One chip population: size, spikes per neuron and synaptic operations per sample, and for
    spiking layers their fidelity figures."""

    population: str
    kind: str
    neurons: int
    spikes_per_neuron: float
    synops_per_sample: float
    float_rate: float | None = optional()
    chip_rate: float | None = optional()
    rate_error: float | None = optional()
    spike_agreement: float | None = optional()


@dataclasses.dataclass(frozen=True)
class Latency(Record):
    """One inference in chip steps: input steps plus pipeline depth (``seconds``: None, see ``note``)."""

    steps: int
    input_steps: int
    pipeline_depth: int
    seconds: float | None
    note: str


@dataclasses.dataclass(frozen=True)
class LavaCheck(Record):
    """Lava against the simulator on the first ``samples``, the whole ``network`` or by ``replay``
    of ``populations`` one at a time: bit-exact, what was compared, or the first difference."""

    samples: int
    bit_exact: bool
    mode: str
    populations: int | None = optional()
    compared: tuple[str, ...] | None = optional()
    first_difference: str | None = optional()


@dataclasses.dataclass(frozen=True)
class Golden(Record):
    """The golden-file check: ``status`` ``match``, ``mismatch`` or ``written``."""

    file: str
    status: str
    detail: str


@dataclasses.dataclass(frozen=True)
class Check(Record):
    """One pass/fail check of a verify run."""

    check: str
    passed: bool
    detail: str


@dataclasses.dataclass(frozen=True)
class Execution(Record):
    """How a verify run was carried out, the only part of its report that depends on it:
    ``mode`` ``local`` (one process) or ``ray``, with ``workers`` (CPUs); ``shards`` of
    ``shard_size`` samples, of which ``resumed`` were read back from an interrupted run and
    ``retried`` ran again after their worker died; the wall ``seconds`` and ``samples_per_second``
    of the shards run (None when all were resumed)."""

    mode: str
    workers: int
    shards: int
    shard_size: int
    resumed: int
    retried: int
    seconds: float
    samples_per_second: float | None


@dataclasses.dataclass(frozen=True)
class VerifyReport(Record):
    """A verify run: data and encoding used, accuracies and agreement, chip activity and energy
    per sample, per layer and population, the checks and whether all passed."""

    model: str | None
    data: str
    samples: int
    steps: int
    steps_source: str
    input_bits: int
    input_scale: float
    input_source: str
    float_accuracy: float | None
    chip_accuracy: float | None
    agreement: float
    lava_samples: int
    lava_bit_exact: bool | None
    pipeline_depth: int
    latency_steps: int
    latency: Latency
    neurons: int
    spikes_per_neuron: float
    spikes_per_sample: float
    synops_per_sample: float
    neuron_updates_per_sample: int
    energy_per_inference_j: float
    energy: Energy
    layers: tuple[LayerFidelity, ...]
    populations: tuple[PopulationActivity, ...]
    target: str
    lava: LavaCheck | None = optional()
    strategy: str | None = optional()
    calibration: str | None = optional()
    compile: Totals | None = optional()
    golden: Golden | None = optional()
    execution: Execution | None = optional()
    checks: tuple[Check, ...] = ()
    passed: bool | None = None
