"""What the quantization passes report: per synapse group, per population and for the whole
network (the ``layers``, ``range_clamps``, ``unaligned_joins`` … keys of ``report.json``).

Errors are relative RMS errors (0.01 = 1 %) unless named otherwise; weights in float units.
"""

from __future__ import annotations

import dataclasses

from snn2chip.passes.shortcuts import Join
from snn2chip.records import Record, flat, optional


@dataclasses.dataclass(frozen=True)
class GroupReport(Record):
    """One chip synapse group: its kind, exponent, sign mode and weight rounding error
    (``weight_max_error`` in float weight units); for model paths the NIR chain it stands for
    (``through``), whether it crosses a recurrent edge and how it was rounded; with calibration
    the input error it causes (``input_rel_rms_error``); for bias groups their ``delay``."""

    name: str
    kind: str
    source: str
    synapses: int
    weight_exp: int
    sign_mode: str
    weight_rel_rms_error: float
    weight_max_error: float
    through: tuple[str, ...] | None = optional()
    recurrent: bool | None = optional()
    rounding: str | None = optional()
    input_rel_rms_error: float | None = optional()
    delay: int | None = optional()


@dataclasses.dataclass(frozen=True)
class Delayed(Record):
    """A path into a population that waits ``steps`` steps, ``by`` synaptic delay or delay line."""

    source: str
    steps: int
    by: str


@dataclasses.dataclass(frozen=True)
class NeuronReport(Record):
    """A population's integer neuron parameters and their rounding errors (LIF: decays
    ``du``/``dv``, bias exponent, threshold and reset; a relay has ``vth`` 0 only)."""

    kind: str
    vth: int
    du: int | None = optional()
    dv: int | None = optional()
    decay_error: float | None = optional()
    syn_decay_error: float | None = optional()
    bias_exp: int | None = optional()
    bias_rel_rms_error: float | None = optional()
    threshold: float | None = optional()
    threshold_exact: bool | None = optional()
    threshold_error: float | None = optional()
    reset: str | None = optional()
    vsub: int | None = optional()
    reset_error: float | None = optional()


@dataclasses.dataclass(frozen=True)
class RangeClamp(Record):
    """A scale chosen to resolve the threshold, which guarantees only ``guaranteed_fraction`` of
    the worst-case input (float membrane units per step)."""

    population: str
    scale: float
    worst_case_input: float
    guaranteed_fraction: float


@dataclasses.dataclass(frozen=True)
class UnalignedJoin(Record):
    """A population whose inputs arrive after different hop counts (``--no-align``)."""

    population: str
    path_hops: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LayerReport(Record):
    """One model population: its size, scale (chip units per float unit / 64), neuron
    parameters, incoming groups, the paths that wait, its range clamp and, with calibration,
    the RMS of its bias correction (float units per step)."""

    population: str
    nir_node: str
    neurons: int
    scale: float
    groups: tuple[GroupReport, ...]
    neuron: NeuronReport = flat()
    delayed: tuple[Delayed, ...] | None = optional()
    range_clamped: bool | None = optional()
    worst_case_input: float | None = optional()
    guaranteed_fraction: float | None = optional()
    bias_correction_rms: float | None = optional()

    @property
    def kind(self) -> str:
        return self.neuron.kind


@dataclasses.dataclass(frozen=True)
class Quantization(Record):
    """What :func:`~snn2chip.passes.quantize.compile_graph` reports: per layer, the joins that
    stay unaligned, the range clamps, the pipeline depth and the options that shaped it."""

    layers: tuple[LayerReport, ...]
    unaligned_joins: tuple[UnalignedJoin, ...]
    range_clamps: tuple[RangeClamp, ...]
    pipeline_depth: int
    strategy: str
    split_signs: bool
    calibration_samples: int
    rounding: str
    joins: tuple[Join, ...]
    strategy_costs: dict | None = optional()

    def layer(self, population: str) -> LayerReport:
        """The entry of ``population``."""
        return next(entry for entry in self.layers if entry.population == population)
