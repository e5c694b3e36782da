"""The compile driver: NIR file -> chip network + report, written atomically to a build folder.

A build folder holds ``network.h5`` (the chip IR, :mod:`snn2chip.chip`) and ``report.json``
(totals, per-layer quantization errors, pipeline depth, and the float-vs-chip fidelity when
check inputs were given). It is written to a temporary sibling and renamed into place, so a
failed compile leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Iterable

import nir
import numpy as np

from snn2chip import chip, frontend, memory
from snn2chip.chip import partition
from snn2chip.chip import targets as target_files
from snn2chip.chip.ir import ChipNet
from snn2chip.chip.partition import PartitionReport
from snn2chip.chip.totals import Totals, totals
from snn2chip.errors import ModelError
from snn2chip.files import atomic_dir
from snn2chip.frontend import summary
from snn2chip.frontend.graph import Graph
from snn2chip.passes import lower
from snn2chip.passes.quantize import Capabilities, Options, OverBudget, compile_graph
from snn2chip.passes.reports import Quantization
from snn2chip.records import Record, flat, optional
from snn2chip.report import build as report_md
from snn2chip.verify.reports import Fidelity

@dataclasses.dataclass(frozen=True)
class CompileReport(Record):
    """``report.json`` of a build: the model and target, the NIR model's neurons (its neuron and
    Threshold nodes' elements; ``neurons`` / ``model_neurons`` is the helper overhead), resource
    totals, the calibration set's file and where it was named (the command line's), what quantization
    reports (per layer and group), the partition and, with ``--check``, the fidelity."""

    model: str
    target: str
    dt: float
    chip_ir_format: int
    model_neurons: int
    totals: Totals = flat()
    inputs: tuple[str, ...]
    outputs: dict[str, str]
    quantization: Quantization = flat()
    cores_to_bound_ratio: float
    partition: PartitionReport
    fidelity: Fidelity | None = optional()
    calibration: str | None = optional()

    @property
    def pipeline_depth(self) -> int:
        return self.quantization.pipeline_depth

    def placed(self, placement: PartitionReport) -> CompileReport:
        """This report with another partition."""
        return dataclasses.replace(self, partition=placement, cores_to_bound_ratio=placement.cores_to_bound_ratio)


def partition_report(net: ChipNet, target: target_files.Target, system: str | None = None,
                     rates: dict | None = None, packing: str = "cores") -> PartitionReport:
    """Partition ``net`` on ``target`` (:mod:`snn2chip.chip.partition`) and return its report entry."""
    return partition.partition(net, target, system, rates, packing).summary()


#: compile's peak memory per value of the graph (a node's output per sample): at most 170 bytes on the
#: scale models (``benchmarks/scale_compile.py``), with a margin; each parameter adds 8 bytes
COMPILE_BYTES_PER_VALUE = 200


def check_size(graph: Graph, target: target_files.Target, system: str | None) -> None:
    """Before quantizing: the network's neurons must fit the given system (else the largest
    one of the target), and the memory compiling it needs must fit the budget."""
    neurons = sum(math.prod(graph.out_shapes[n]) for n, node in graph.nodes.items()
                  if lower.is_population(node) and not isinstance(node, nir.Input))
    name, chips = (system, target.chips(system)) if system else target.systems[-1]
    capacity = chips * target.cores_per_chip * target.neurons
    if neurons > capacity:
        raise graph.error(f"has {neurons:,} neurons; system '{name}' of target '{target.name}' ({chips:,} chips x "
                          f"{target.cores_per_chip} cores x {target.neurons:,} neurons){'' if system else ', the largest,'} "
                          f"holds {capacity:,}")
    values = sum(math.prod(graph.out_shapes[n]) for n in graph.nodes)
    params = sum(np.size(v) for node in graph.nodes.values() for v in vars(node).values() if isinstance(v, np.ndarray))
    memory.check(COMPILE_BYTES_PER_VALUE * values + 8 * params,
                 f"compiling it ({values:,} values per step, {params:,} parameters; an estimate)", file=graph.source)


def _cheapest(graph: Graph, options: Options, caps: Capabilities) -> tuple[ChipNet, Quantization]:
    """The compile, among the shortcut strategies the target carries, with the least weight memory
    (expand on ties: fewer hops). Relays first: a deep network's expanded shortcuts can need far
    more memory, so a later strategy is abandoned as soon as it exceeds the best so far."""
    best, costs = None, {}
    for strategy in sorted(caps.strategies, key=lambda s: s != "relay"):
        budget = None if best is None else costs[best[1].strategy]["weight_memory_bytes"]
        try:
            candidate = compile_graph(graph, dataclasses.replace(options, strategy=strategy), caps, budget)
        except OverBudget as over:
            costs[strategy] = {"weight_memory_bytes_above": over.budget}
            continue
        costs[strategy] = {"weight_memory_bytes": totals(candidate[0]).weight_memory_bytes}
        best = candidate  # within the budget: no more than the best so far, and expand wins ties
    net, quantized = best
    return net, dataclasses.replace(quantized, strategy_costs=costs)


def compile_file(model: str | Path, target: str | Path | target_files.Target = "loihi2", options: Options = Options(),
                 system: str | None = None, packing: str = "cores") -> tuple[Graph, ChipNet, dict]:
    """Load, lower, quantize and partition a NIR file for ``target`` (a built-in name, a ``.toml``
    file or a Target) on its named ``system`` (None: the smallest that fits) with ``packing``
    (:data:`snn2chip.chip.fill.PACKINGS`); return the graph, the chip network and its report."""
    chip_target = target_files.resolve(target)
    graph = frontend.load(model)
    check_size(graph, chip_target, system)
    caps = Capabilities.of(chip_target)
    try:
        if options.strategy == "auto":
            net, quantized = _cheapest(graph, options, caps)
        else:
            net, quantized = compile_graph(graph, options, caps)
        placement = partition_report(net, chip_target, system, packing=packing)
    except ModelError as e:
        raise e.in_file(str(model)) from None
    report = CompileReport(str(model), chip_target.name, net.dt, chip.FORMAT_VERSION,
                           summary.model_neurons(graph), totals(net), tuple(net.inputs),
                           dict(net.output_of), quantized, placement.cores_to_bound_ratio, placement)
    return graph, net, report


def write_build(out_dir: str | Path, net: ChipNet, report: CompileReport, inputs: Iterable = ()) -> None:
    """Write ``network.h5``, ``report.json``, ``report.md`` and
    ``core_utilisation.png`` into ``out_dir`` when complete; an existing ``out_dir`` is replaced
    only if it is a previous build (:func:`snn2chip.files.atomic_dir`) and holds none of ``inputs``."""
    with atomic_dir(out_dir, "build", inputs) as tmp:
        chip.save(net, tmp / "network.h5")
        (tmp / "report.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
        (tmp / "report.md").write_text(report_md.markdown(report))
        report_md.utilisation_png(report.partition, tmp / report_md.PNG)


def load_build(path: str | Path) -> ChipNet:
    """The chip network of a build folder (or of a ``network.h5`` file)."""
    path = Path(path)
    return chip.load(path / "network.h5" if path.is_dir() else path)
