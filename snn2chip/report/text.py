"""Terminal renderers, all in one place: ``inspect``'s table, ``compile``'s summary, ``verify``'s
table and ``targets``' listing. Each takes the report the command also writes and returns text;
none computes anything of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from snn2chip.frontend import shapes
from snn2chip.passes import bias
from snn2chip.passes.reports import GroupReport, LayerReport, Quantization
from snn2chip.verify.reports import Fidelity, VerifyReport

if TYPE_CHECKING:  # the compiler imports the report package
    from snn2chip.compiler import CompileReport

#: warnings printed by a compile summary without ``-v``; the rest are counted
SHORT_WARNINGS = 3
#: a synapse group whose weights keep a relative RMS error this large is named in a warning
LOST_WEIGHTS = 0.25


def inspect_table(report: dict) -> str:
    """The inspect report as a table for the terminal."""
    header = ("#", "node", "type", "input", "output", "params", "neurons")
    body = [
        (str(i), r["name"], r["type"], shapes.fmt(tuple(r["input_shape"])),
         shapes.fmt(tuple(r["output_shape"])), f"{r['params']:,}", f"{r['neurons']:,}")
        for i, r in enumerate(report["nodes"])
    ]
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
    right = {0, 5, 6}

    def line(row):
        return "  ".join(cell.rjust(w) if c in right else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths)))

    dt = report["dt"]
    lines = [f"{report['file']}  (dt: {dt if dt is not None else 'not stored; run uses 1 unless given --dt'})", "",
             line(header), line(["-" * w for w in widths]), *map(line, body), ""]
    joins = report["joins"]
    lines.append(f"joins (residual merges, inputs summed): {len(joins) or 'none'}")
    lines += [f"  {j['node']} <- {' + '.join(j['inputs'])}" for j in joins]
    recurrent = report["recurrent_edges"]
    lines.append(f"recurrent edges (read the previous step): {len(recurrent) or 'none'}")
    lines += [f"  {src} -> {dst}" for src, dst in recurrent]
    t = report["totals"]
    lines.append(f"totals: {t['nodes']} nodes, {t['edges']} edges, {t['params']:,} parameters, {t['neurons']:,} neurons")
    return "\n".join(lines)


def _layer_line(layer: LayerReport) -> str:
    errors = ", ".join(f"{g.name} {g.kind} e={g.weight_exp} weight error {100 * g.weight_rel_rms_error:.2f}%"
                       + (f" (input error {100 * g.input_rel_rms_error:.2f}%, {g.rounding})"
                          if g.input_rel_rms_error is not None else "")
                       for g in layer.groups)
    error = layer.neuron.threshold_error
    thr = f", threshold error {100 * error:.3f}%" if error is not None else ""
    return f"  {layer.population}: {layer.kind} scale {layer.scale:g} vth {layer.neuron.vth}{thr}; {errors}"


def _model_groups(q: Quantization) -> list[tuple[LayerReport, GroupReport]]:
    """Every synapse group of the model's paths (not the bias inputs), with its layer."""
    return [(layer, g) for layer in q.layers for g in layer.groups
            if g.source != bias.BIAS and not g.source.startswith(bias.BIAS + ".")]


def _warnings(q: Quantization) -> list[str]:
    lines = [f"  warning: inputs of {join.population} arrive after different hop counts {list(join.path_hops)}"
             for join in q.unaligned_joins]
    lines += [f"  warning: {g.name}: weight error {100 * g.weight_rel_rms_error:.3g}% (relative RMS; "
              f"{g.synapses:,} synapses kept): at {layer.population}'s scale {layer.scale:g} the weights lie near "
              f"the smallest chip weight (exponent {g.weight_exp})" for layer, g in _model_groups(q)
              if g.weight_rel_rms_error >= LOST_WEIGHTS]
    lines += [f"  warning: {clamp.population}: scale {clamp.scale:g} keeps "
              f"{'its inputs' if q.layer(clamp.population).kind == 'relay' else 'the threshold'} resolved but "
              f"guarantees only {100 * clamp.guaranteed_fraction:.3g}% of the worst-case input "
              f"{clamp.worst_case_input:.4g} per step; larger inputs wrap" for clamp in q.range_clamps]
    return lines


def _fidelity_lines(fid: Fidelity, verbose: bool) -> list[str]:
    if verbose:
        lines = [f"  check {layer.population}: firing rate float {layer.float_rate:.4f} chip "
                 f"{layer.chip_rate:.4f}, spike agreement {100 * layer.spike_agreement:.2f}%" for layer in fid.layers]
    elif fid.layers:
        worst = min(fid.layers, key=lambda layer: layer.spike_agreement)
        lines = [f"  check: {len(fid.layers)} spiking layers, lowest spike agreement "
                 f"{100 * worst.spike_agreement:.2f}% ({worst.population}; per layer: -v)"]
    else:
        lines = []
    return lines + [f"  check output agreement on {fid.samples} samples: {100 * fid.output_agreement:.1f}%"]


def roles(report: CompileReport) -> str:
    """The chip's neurons by population role (the roles that have any), against the NIR model's."""
    t = report.totals
    return (f"{t.neurons / max(report.model_neurons, 1):.2f}x the NIR model's {report.model_neurons:,}; by role: "
            + ", ".join(f"{role} {n:,}" for role, n in t.neurons_by_role.items() if n))


def compile_summary(report: CompileReport, output: str, verbose: bool = False) -> str:
    """What ``compile`` prints: where the build went, the partition, totals, warnings and the
    ``--check`` fidelity; with ``verbose`` also one line per population with its groups'
    quantization errors (always in ``report.md`` and ``report.json``)."""
    part, t, q = report.partition, report.totals, report.quantization
    lines = [
        f"{report.model} -> {output}/network.h5 ({report.target}, shortcut strategy {q.strategy}"
        + (f"; calibration {report.calibration}" if report.calibration else "") + ")",
        f"  {part.cores:,} cores on {part.chips_used:,} of {part.system_chips:,} chips ({part.system}), "
        f"cores / bound {part.cores_to_bound_ratio:.3f} (bound {part.bounds['volume']['cores']:,}); "
        f"traffic between chips {part.traffic.inter_chip:,.0f} of {part.traffic.inter_core:,.0f} between "
        f"cores ({part.traffic.weighting}); {output}/report.md",
        f"  {t.populations} populations, {t.neurons:,} neurons ({roles(report)}), {t.synapses:,} synapses "
        f"({t.connections:,} connections), {t.weight_memory_bytes:,} bytes of weights, "
        f"pipeline depth {report.pipeline_depth}",
    ]
    if verbose:
        lines += [_layer_line(layer) for layer in q.layers]
    elif q.layers:
        worst = max((g for _, g in _model_groups(q)), key=lambda g: g.weight_rel_rms_error, default=None)
        lines.append(f"  {len(q.layers)} layers quantized" + (
            f"; largest weight error {100 * worst.weight_rel_rms_error:.2f}% ({worst.name})" if worst else "")
            + " (per layer: -v or report.md)")
    warnings = _warnings(q)
    shown = warnings if verbose else warnings[:SHORT_WARNINGS]
    lines += shown
    if len(shown) < len(warnings):
        lines.append(f"  ... and {len(warnings) - len(shown)} more warnings (-v or report.json)")
    if report.fidelity is not None:
        lines += _fidelity_lines(report.fidelity, verbose)
    return "\n".join(lines)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def verify_table(r: VerifyReport) -> str:
    """``verify``'s readable terminal table."""
    lines = [
        f"{r.model}: {r.data}, {r.samples} samples x {r.steps} steps",
        f"  used: steps {r.steps} ({r.steps_source}), input-bits {r.input_bits}, "
        f"input-scale {r.input_scale:g} ({r.input_source})" + (f", calibration {r.calibration}" if r.calibration else ""),
    ]
    if r.compile is not None:
        c = r.compile
        lines.append(f"  compiled for {r.target} (shortcut strategy {r.strategy}): {c.populations} populations, "
                     f"{c.neurons:,} neurons, {c.synapses:,} synapses, {c.weight_memory_bytes:,} bytes of weights")
    lines += [
        "",
        f"  {'':24}{'float':>10}{'chip':>10}",
        f"  {'accuracy':24}{_pct(r.float_accuracy):>10}{_pct(r.chip_accuracy):>10}",
        f"  {'prediction agreement':24}{'':>10}{_pct(r.agreement):>10}",
        "",
        f"  {'layer':28}{'neurons':>8}{'rate float':>12}{'rate chip':>11}{'error':>9}{'spike agr.':>12}",
    ]
    sizes = {p.population: p.neurons for p in r.populations}
    for layer in r.layers:
        lines.append(f"  {layer.population:28}{sizes[layer.population]:>8,}{layer.float_rate:>12.4f}"
                     f"{layer.chip_rate:>11.4f}{layer.rate_error:>9.4f}{_pct(layer.spike_agreement):>12}")
    e = r.energy
    lines += [
        "",
        f"  chip activity per sample: {r.spikes_per_neuron:.3f} spikes per neuron ({r.spikes_per_sample:,.0f} spikes, "
        f"{r.neurons:,} neurons), {r.synops_per_sample:,.0f} synaptic ops, {r.neuron_updates_per_sample:,} neuron updates",
        f"  energy per inference (estimate): {1e6 * e.total_j:.3f} uJ = synaptic {1e6 * e.synaptic_j:.3f} "
        f"+ neurons {1e6 * e.neuron_j:.3f} + spike messages {1e6 * e.spike_messages_j:.3f} uJ",
        f"    figures: {e.source}; {e.note}",
        f"  latency: {r.latency_steps} chip steps ({r.steps} input steps + pipeline depth {r.pipeline_depth})",
    ]
    if r.execution is not None:
        lines.append(f"  run: {_execution(r.execution)}")
    lines += [f"  {'PASS' if c.passed else 'FAIL'} {c.check}: {c.detail}" for c in r.checks]
    if r.golden is not None and r.golden.status == "written":
        lines.append(f"  golden: {r.golden.detail}")
    lines.append(f"  verify {'passed' if r.passed else 'FAILED'}")
    return "\n".join(lines)


def _execution(x) -> str:
    """How a verify run was carried out, in one line (:class:`snn2chip.verify.reports.Execution`)."""
    where = "in this process" if x.mode == "local" else f"on Ray ({x.workers} CPU{'s' * (x.workers != 1)})"
    speed = f", {x.samples_per_second:,.1f} samples/s" if x.samples_per_second else ""
    extra = [f"{x.resumed} resumed"] * bool(x.resumed) + [f"{x.retried} retried after a worker died"] * bool(x.retried)
    return (f"{x.shards} shard{'s' * (x.shards != 1)} of up to {x.shard_size} samples {where}"
            f"{' (' + ', '.join(extra) + ')' if extra else ''}, {x.seconds:.1f} s{speed}")


def targets_list(chosen: list) -> str:
    """``targets``' listing of target chips (:class:`snn2chip.chip.targets.Target`)."""
    lines = []
    for t in chosen:
        kernels = f"shared conv kernels ({t.kernel_entry_bits} bits per entry)" if t.shared_conv_kernels else \
            "conv synapses stored one by one"
        lines += [
            f"{t.name}: {t.description}  [{t.path}]",
            f"  per core: {t.neurons:,} neurons, {t.synaptic_memory_bits // 8192:,} KiB synaptic memory "
            f"({t.synapse_bits} bits per synapse; {kernels}), {t.fan_in_axons:,} fan-in / {t.fan_out_axons:,} "
            f"fan-out axons",
            f"  {t.cores_per_chip} cores per chip; {t.weight_bits}-bit weights, "
            f"{f'{t.payload_bits}-bit graded spikes' if t.payload_bits else 'binary spikes only'}, delays up to "
            f"{t.max_delay}",
            "  systems: " + ", ".join(f"{name} ({chips:,} chip{'s' * (chips > 1)}, {chips * t.cores_per_chip:,} cores)"
                                      for name, chips in t.systems),
        ]
    return "\n".join(lines)
