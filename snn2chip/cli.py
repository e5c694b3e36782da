"""The ``snn2chip`` command line.

Exit codes: 0 success; 1 a problem with the user's model, data, options or output path (one
line on stderr naming the file or option, no traceback) or a failed ``verify`` check; 2 a
usage error (one line); 3 an internal error, i.e. a bug in snn2chip (one line; ``--debug``
shows the traceback). Every command runs inside :func:`main`'s one handler; outputs are
checked before any work (:mod:`snn2chip.files`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from snn2chip import files
from snn2chip.errors import ModelError

EXIT_MODEL_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
#: run outputs carry this entry (JSON: format, version), so that a later run may replace them
RUN_MARK = "snn2chip"
RUN_FORMAT = "snn2chip-run"


def _inspect(args) -> int:
    from snn2chip import frontend, summary

    report = summary.summarize(frontend.load(args.model))
    print(json.dumps(report) if args.json else summary.format_summary(report))
    return 0


def _is_build(path: str) -> bool:
    return Path(path).is_dir() or Path(path).suffix == ".h5"


def _is_run_output(path: Path) -> bool:
    return (files.npz_json(path, RUN_MARK) or {}).get("format") == RUN_FORMAT


def _run(args) -> int:
    import torch

    from snn2chip import compiler, data, frontend, reference, simulator

    backend = args.backend or ("sim" if _is_build(args.model) else "float")
    if (backend == "float") == _is_build(args.model):
        raise ModelError(f"backend '{backend}' runs {'NIR files' if backend == 'float' else 'build folders'}", file=args.model)
    output = files.check_file(args.output, [args.model, args.input], ours=_is_run_output) if args.output else None
    show = sys.stderr.isatty()
    if backend == "float":
        graph = frontend.load(args.model)
        inputs = data.read_inputs(args.input, graph.inputs)
        dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
        try:
            results = reference.run(graph, inputs, args.steps, dt=args.dt, record=args.record or graph.outputs,
                                    dtype=dtype, batch_size=args.batch_size, show_progress=show)
        except ModelError as e:
            raise e.in_file(args.input) from None
        dt, dt_source = reference.resolve_dt(graph, args.dt)
        extra, note = {"dt": np.float64(dt)}, f"float backend, dt {dt:g} from {dt_source}"
    else:
        net = compiler.load_build(args.model)
        inputs = data.read_inputs(args.input, list(net.inputs))
        kwargs = dict(record=args.record or list(net.outputs), probe=args.probe or [], show_progress=show)
        try:
            if backend == "sim":
                results = simulator.simulate(net, inputs, args.steps, batch_size=args.batch_size, **kwargs)
            else:
                from snn2chip.lava_backend import run_lava

                results = run_lava(net, inputs, args.steps, **kwargs)
        except ModelError as e:
            raise e.in_file(args.input) from None
        extra, note = {"pipeline_depth": np.int64(net.pipeline_depth)}, f"{backend} backend, pipeline depth {net.pipeline_depth}"
    for name, values in results.items():
        batch, steps = values.shape[:2]
        print(f"{name}: {batch} samples x {steps} steps x {values[0, 0].size} values, "
              f"mean {values.mean():.4g}, sum per sample {values.sum() / batch:.4g}")
    if output is not None:
        clash = sorted(set(results) & {*extra, RUN_MARK})
        if clash:
            raise ModelError(f"recorded name '{clash[0]}' clashes with an entry snn2chip stores beside the outputs",
                             option="--record")
        mark = json.dumps({"format": RUN_FORMAT, "version": 1, "model": str(args.model), "backend": backend})
        files.write_npz(output, {**results, **extra, RUN_MARK: np.array(mark)})
        print(f"wrote {output} ({note})")
    return 0


def _check_inputs(spec: str, net) -> np.ndarray:
    """Inputs for --check: an .npy/.npz file, or 'random:N' Bernoulli(0.1) spike trains."""
    from snn2chip import data, memory

    (name,) = net.inputs
    pop = net.populations[name]
    if spec.startswith("random:"):
        if pop.payload_bits:
            raise ModelError("random:N makes binary spikes; graded inputs need a data file", option="--check")
        count = int(spec.split(":", 1)[1])
        memory.check(count * pop.size * 4, f"{count:,} random samples", option="--check")
        return (np.random.default_rng(0).random((count, *pop.shape)) < 0.1).astype(np.float32)
    x = data.read_inputs(spec, list(net.inputs))
    if isinstance(x, dict):
        x = x[name]
    return x


def _compile_inputs(args) -> list:
    """The files a compile reads (an output may never replace or contain them)."""
    check = args.check if args.check and not args.check.startswith("random:") else None
    return [args.model, args.calib, args.target_file, args.target if str(args.target).endswith(".toml") else None, check]


def _compile(args) -> int:
    from snn2chip import compiler, targets

    files.check_dir(args.output, "build", _compile_inputs(args))
    target = targets.resolve(args.target_file or args.target)
    graph, net, report = compiler.compile_file(args.model, target, _options(args), system=args.system)
    if args.check:
        x = _check_inputs(args.check, net)
        try:
            report["fidelity"] = compiler.fidelity(graph, net, x, args.steps, dt=args.dt)
        except ModelError as e:
            raise e.in_file(args.check) from None
        # place again with the measured firing rates weighting the traffic
        report["partition"] = compiler.partition_report(net, target, report["partition"]["system"],
                                                        compiler.measured_rates(report["fidelity"]))
    compiler.write_build(args.output, net, report, inputs=_compile_inputs(args))
    print(f"{args.model} -> {args.output}/network.h5 ({target.name}, shortcut strategy {report['strategy']})")
    part = report["partition"]
    print(f"  {part['cores']:,} cores on {part['chips_used']:,} of {part['system_chips']:,} chips ({part['system']}), "
          f"cores / bound {part['cores_to_bound_ratio']:.3f} (bound {part['bounds']['volume']['cores']:,}); "
          f"traffic between chips {part['traffic']['inter_chip']:,.0f} of {part['traffic']['inter_core']:,.0f} between "
          f"cores ({part['traffic']['weighting']}); {args.output}/report.md")
    print(f"  {report['populations']} populations, {report['neurons']:,} neurons, {report['synapses']:,} synapses "
          f"({report['connections']:,} connections), {report['weight_memory_bytes']:,} bytes of weights, "
          f"pipeline depth {report['pipeline_depth']}")
    for layer in report["layers"]:
        errors = ", ".join(f"{g['name']} {g['kind']} e={g['weight_exp']} weight error {100 * g['weight_rel_rms_error']:.2f}%"
                           + (f" (input error {100 * g['input_rel_rms_error']:.2f}%, {g['rounding']})"
                              if "input_rel_rms_error" in g else "")
                           for g in layer["groups"])
        thr = f", threshold error {100 * layer['threshold_error']:.3f}%" if "threshold_error" in layer else ""
        print(f"  {layer['population']}: {layer['kind']} scale {layer['scale']:g} vth {layer['vth']}{thr}; {errors}")
    for join in report["unaligned_joins"]:
        print(f"  warning: inputs of {join['population']} arrive after different hop counts {join['path_hops']}")
    for clamp in report["range_clamps"]:
        print(f"  warning: {clamp['population']}: scale {clamp['scale']:g} keeps the threshold resolved but guarantees "
              f"only {100 * clamp['guaranteed_fraction']:.3g}% of the worst-case input {clamp['worst_case_input']:.4g} "
              "per step; larger inputs wrap")
    if "fidelity" in report:
        fid = report["fidelity"]
        for layer in fid["layers"]:
            print(f"  check {layer['population']}: firing rate float {layer['float_rate']:.4f} chip {layer['chip_rate']:.4f}, "
                  f"spike agreement {100 * layer['spike_agreement']:.2f}%")
        if "output_agreement" in fid:
            print(f"  check output agreement on {fid['samples']} samples: {100 * fid['output_agreement']:.1f}%")
    return 0


def _is_golden(path: Path) -> bool:
    from snn2chip import verify

    return (files.npz_json(path, "meta") or {}).get("format") == verify.GOLDEN_FORMAT


def _verify(args) -> int:
    from snn2chip import compiler, data, frontend, targets, verify

    if args.update_golden and not args.golden:
        raise ModelError("needs --golden FILE (the file to write)", option="--update-golden")
    inputs = [args.model, None if args.data == "digits" else args.data, args.calib, args.target_file]
    if args.output:
        files.check_dir(args.output, "verify", inputs + [args.golden])
    if args.update_golden:
        files.check_file(args.golden, inputs, ours=_is_golden)
    graph = frontend.load(args.model)
    if len(graph.inputs) != 1:
        raise ModelError(f"verify feeds one input ('x'); the model has {len(graph.inputs)}", file=args.model)
    dataset = data.load(args.data, graph.out_shapes[graph.inputs[0]])
    dataset.check_labels(math.prod(graph.out_shapes[graph.outputs[0]]))
    samples = len(dataset.x) if args.samples is None else args.samples
    if samples > len(dataset.x):
        raise ModelError(f"asks for {samples} samples; the data has {len(dataset.x)}", file=dataset.name,
                         option="--samples")
    if args.lava_samples > samples:
        raise ModelError(f"asks for {args.lava_samples} samples; verify runs {samples}", option="--lava-samples")
    dataset = dataset.head(samples)
    setup = verify.settings(graph, dataset, args.data, args.steps, args.input_bits, args.input_scale)
    options = _options(argparse.Namespace(**{**vars(args), "steps": setup.steps, "input_bits": setup.input_bits,
                                             "input_scale": setup.input_scale}))
    target = targets.resolve(args.target_file or args.target)
    graph, net, compiled = compiler.compile_file(args.model, target, options, system=args.system)
    try:
        result = verify.run(graph, net, dataset, setup, target=target.name, dt=args.dt, lava_samples=args.lava_samples,
                            show_progress=sys.stderr.isatty())
    except ModelError as e:
        raise e.in_file(dataset.name) from None
    report = {**result.report, "target": target.name, "strategy": compiled["strategy"],
              "compile": {k: compiled[k] for k in ("populations", "neurons", "synapses", "weight_memory_bytes")}}
    if args.golden:
        meta = verify.golden_meta(args.model, target.name, options, result)
        if args.update_golden:
            files.write_npz(files.check_file(args.golden, inputs, ours=_is_golden), verify.golden_arrays(meta, result))
            report["golden"] = {"file": args.golden, "status": "written",
                                "detail": f"wrote {args.golden} ({samples} samples)"}
        else:
            diff = verify.check_golden(args.golden, meta, result)
            report["golden"] = {"file": args.golden, "status": "mismatch" if diff else "match",
                                "detail": diff or f"outputs equal {args.golden}"}
    report["checks"] = verify.checks(report, args.min_agreement)
    report["passed"] = all(c["passed"] for c in report["checks"])
    if args.output:
        verify.write_dir(args.output, report, result, inputs=inputs + [args.golden])
    print(json.dumps(report) if args.json else verify.format_report(report))
    if not report["passed"]:
        failed = "; ".join(c["detail"] for c in report["checks"] if not c["passed"])
        print(f"snn2chip verify: failed: {failed}", file=sys.stderr)
        return EXIT_MODEL_ERROR
    return 0


def _convert(args) -> int:
    from snn2chip import convert, data

    output = files.check_file(args.output, [args.model, args.calib], ours=convert.is_converted)
    samples = data.load_samples(args.calib)
    result = convert.convert(args.model, samples, percentile=args.percentile, compensation=args.compensation,
                             shortcut_norm=not args.no_shortcut_norm, time_steps=args.steps, samples_file=args.calib)
    check = convert.agreement(result, args.model, samples, args.steps)[0] if args.steps is not None else None
    convert.write(result.graph, output)
    neurons = sum(int(np.prod(np.shape(node.v_threshold))) for node in result.graph.nodes.values() if hasattr(node, "v_threshold"))
    print(f"{args.model} -> {output} (S-ResNet conversion: percentile {args.percentile:g} on {result.report['samples']} "
          f"calibration samples, compensation {args.compensation:g}, shortcut normalisation "
          f"{'off' if args.no_shortcut_norm else 'on'})")
    print(f"  {len(result.graph.nodes)} NIR nodes, {neurons:,} IF neurons (threshold 1, reset by subtraction)")
    for layer in result.report["layers"]:
        print(f"  {convert.describe(layer)}")
    if check is not None:
        print(f"  check: float reference, {args.steps} steps, on the calibration samples: prediction equals the ANN's "
              f"on {100 * check:.1f}%")
    return 0


def _targets(args) -> int:
    from snn2chip import targets

    chosen = [targets.load_file(args.target_file)] if args.target_file else [targets.resolve(n) for n in targets.builtin()]
    for t in chosen:
        kernels = f"shared conv kernels ({t.kernel_entry_bits} bits per entry)" if t.shared_conv_kernels else \
            "conv synapses stored one by one"
        print(f"{t.name}: {t.description}  [{t.path}]")
        print(f"  per core: {t.neurons:,} neurons, {t.synaptic_memory_bits // 8192:,} KiB synaptic memory "
              f"({t.synapse_bits} bits per synapse; {kernels}), {t.fan_in_axons:,} fan-in / {t.fan_out_axons:,} "
              f"fan-out axons")
        print(f"  {t.cores_per_chip} cores per chip; {t.weight_bits}-bit weights, "
              f"{f'{t.payload_bits}-bit graded spikes' if t.payload_bits else 'binary spikes only'}, delays up to "
              f"{t.max_delay}")
        print("  systems: " + ", ".join(f"{name} ({chips:,} chip{'s' * (chips > 1)}, {chips * t.cores_per_chip:,} cores)"
                                        for name, chips in t.systems))
    return 0


def _at_least(least: int):
    """An argparse type: an integer ``>= least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {least}, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}, got {value}")
        return value

    return parse


def _number(low: float, high: float = math.inf, low_open: bool = True):
    """An argparse type: a finite number in ``(low, high]`` (``[low, high]`` when not ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low or (low_open and value == low) or value > high:
            span = f"{'(' if low_open else '['}{low:g}, {high:g}]" if math.isfinite(high) else f"{'> ' if low_open else '>= '}{low:g}"
            raise argparse.ArgumentTypeError(f"expected a finite number {span}, got {text!r}")
        return value

    return parse


def _input_bits(text: str) -> int:
    value = _at_least(0)(text)
    if value == 1 or value > 24:
        raise argparse.ArgumentTypeError(f"must be 0 (binary spikes) or 2..24 (signed payload bits), got {value}")
    return value


def _check_spec(text: str) -> str:
    """``--check``: a data file, or ``random:N`` with N >= 1."""
    if text.startswith("random:"):
        _at_least(1)(text.split(":", 1)[1])
    elif not text.strip():
        raise argparse.ArgumentTypeError("expected a data file or random:N")
    return text


def _add_compile_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that compiles (``compile``, ``verify``)."""
    p.add_argument("--target", default="loihi2",
                   help="target chip: a built-in name (default loihi2; 'snn2chip targets' lists them) or a .toml file")
    p.add_argument("--target-file", metavar="FILE.toml", help="a target description of your own (overrides --target; "
                                                              "see targets/README.md)")
    p.add_argument("--system", metavar="NAME", help="named system of the target (see 'snn2chip targets'; default: the "
                                                    "smallest that fits)")
    p.add_argument("--dt", type=_number(0), help="time step, > 0 (default: graph metadata 'dt', else 1)")
    p.add_argument("--input-bits", type=_input_bits, default=0, metavar="B",
                   help="0 (default): inputs are binary spikes (values 0 or 1); else graded signed payloads of B = 2..24 bits")
    p.add_argument("--input-scale", type=_number(0), default=1.0, metavar="S",
                   help="graded inputs: payload = round(x * S), S > 0 (default 1)")
    p.add_argument("--steps", type=_at_least(1), default=100, metavar="T",
                   help="time steps for --check, and the horizon that sizes integrating read-outs (default 100)")
    p.add_argument("--strategy", choices=("expand", "relay", "auto"), default="auto",
                   help="residual joins: expand (a synapse group per addend), relay (a graded relay carries the sum), "
                        "auto (default: the one needing less weight memory)")
    p.add_argument("--no-align", action="store_true",
                   help="do not equalise path lengths into joins (only to measure what misalignment costs)")
    p.add_argument("--calib", metavar="FILE",
                   help="calibration inputs (.npy, or .npz with 'x'; e.g. training samples): weights are rounded "
                        "with error compensation on them (see --rounding) and biases corrected by the mean input "
                        "error that rounding leaves (default: no calibration, weights rounded to nearest)")
    p.add_argument("--rounding", choices=("compensated", "nearest"), default="compensated",
                   help="with --calib: compensated (default; GPTQ: each weight's rounding error is offset on the "
                        "inputs not yet rounded, as they co-vary on the calibration data) or nearest")
    p.add_argument("--no-split-signs", action="store_true",
                   help="keep mixed-sign weights in one group (7-bit magnitudes) instead of an excitatory and an "
                        "inhibitory group (8-bit magnitudes each)")


def _options(args):
    """Compile :class:`~snn2chip.quantize.Options` from the parsed shared options."""
    from snn2chip.quantize import Options

    from snn2chip import data

    calibration = data.load_samples(args.calib) if args.calib else None
    return Options(dt=args.dt, input_scale=args.input_scale, input_bits=args.input_bits, steps=args.steps,
                   strategy=args.strategy, align=not args.no_align, split_signs=not args.no_split_signs,
                   calibration=calibration, rounding=args.rounding)


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (and exit code 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="snn2chip",
        description="Compile residual spiking neural networks (NIR or ONNX) to Loihi through Lava.",
        epilog="Exit codes: 0 success; 1 a problem with the model, data, options or output path (one line naming "
               "the file or option), or a failed verify check; 2 usage error; 3 internal error (a bug: rerun with "
               "--debug for the traceback).",
    )
    from snn2chip import __version__

    parser.add_argument("--version", action="version", version=f"snn2chip {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="list a NIR model's nodes, shapes, joins and recurrent edges",
                       description="Read and validate a NIR file and list its nodes in topological order with type, "
                                   "input and output shape, parameter and neuron counts; then its joins (residual "
                                   "merges), recurrent edges and totals.")
    p.add_argument("model", metavar="MODEL.nir", help="NIR file (HDF5, as written by nir.write)")
    p.add_argument("--json", action="store_true", help="print the same as one JSON object on stdout")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("run", help="run a NIR model (float reference) or a compiled build (simulator or Lava)",
                       description="Run MODEL on the inputs in FILE and print per recorded node or population its mean "
                                   "output. A .nir file runs in the float reference executor (discrete time, forward "
                                   "Euler at step dt, DESIGN.md section 2); a build folder (or its network.h5) runs in "
                                   "the bit-accurate simulator or in Lava, whose outputs are equal bit for bit.")
    p.add_argument("model", metavar="MODEL", help="NIR file, or build folder written by 'snn2chip compile'")
    p.add_argument("--input", required=True, metavar="FILE",
                   help=".npy array or .npz with 'x' (or one array per input): (samples, *shape) held constant "
                        "for --steps steps, or (samples, steps, *shape)")
    p.add_argument("--steps", type=_at_least(1), metavar="T", help="time steps (required for constant inputs)")
    p.add_argument("--backend", choices=("float", "sim", "lava"),
                   help="float for .nir files (default), sim (default) or lava for builds")
    p.add_argument("--dt", type=_number(0), help="float backend: time step in the unit of the model's time constants "
                                           "(default: graph metadata 'dt', else 1)")
    p.add_argument("--record", nargs="+", metavar="NAME",
                   help="nodes (float) or populations (sim, lava) whose outputs to keep (default: the outputs)")
    p.add_argument("--probe", nargs="+", metavar="NAME", help="sim, lava: populations whose u and v to keep as well")
    p.add_argument("--batch-size", type=_at_least(1), metavar="N", help="float, sim: samples per batch (default: all at once)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="float backend arithmetic (default float32)")
    p.add_argument("-o", "--output", metavar="OUT.npz",
                   help="write the recorded outputs, (samples, steps, *shape) per name, and dt or pipeline_depth")
    p.set_defaults(func=_run)

    p = sub.add_parser("compile", help="compile a NIR model for a target chip",
                       description="Lower residual shortcuts, quantize and partition MODEL.nir for the target and "
                                   "write BUILD/network.h5 (the chip IR), BUILD/report.json (resources, per-layer "
                                   "quantization errors, pipeline depth, cores and chips against their lower bounds), "
                                   "BUILD/report.md and BUILD/core_utilisation.png. A failed compile leaves no BUILD "
                                   "folder behind.")
    p.add_argument("model", metavar="MODEL.nir", help="NIR file")
    p.add_argument("-o", "--output", required=True, metavar="BUILD", help="output folder")
    _add_compile_options(p)
    p.add_argument("--check", metavar="FILE|random:N", type=_check_spec,
                   help="measure float-vs-chip fidelity on these inputs (or N random spike trains) into report.json; "
                        "the measured firing rates then weight the traffic when cores are placed on chips")
    p.set_defaults(func=_compile)

    p = sub.add_parser("verify", help="compile, then compare float reference, chip simulator, Lava and a golden file",
                       description="Compile MODEL.nir as 'compile' does, then run the float reference and the "
                                   "bit-accurate simulator on the data (and Lava on the first samples) and report "
                                   "accuracies, prediction agreement, per-layer firing rates, spikes per neuron, "
                                   "synaptic operations and an energy estimate per inference, latency in steps, and "
                                   "whether Lava matched the simulator bit for bit. Defaults when not given: --steps "
                                   "from the data's time axis, else the model's metadata 'time_steps', else 100; --input-bits/--input-scale 6/16 for --data digits "
                                   "(image/16 as exact payloads 0..16), else 0/1 (binary spikes). What was used is "
                                   "printed.",
                       epilog="Exit codes: 0 every requested check passed (agreement >= --min-agreement; Lava bit-exact "
                              "when --lava-samples > 0; golden match when --golden is given without --update-golden); "
                              "1 a check failed (one line on stderr says which) or a problem with the model or data; "
                              "2 usage error.")
    p.add_argument("model", metavar="MODEL.nir", help="NIR file")
    _add_compile_options(p)
    p.set_defaults(steps=None, input_bits=None, input_scale=None)  # resolved by snn2chip.verify.settings
    p.add_argument("--data", required=True, metavar="digits|FILE.npz",
                   help="'digits': the bundled scikit-learn digits test split (450 images, labels); or an .npz with "
                        "'x' (samples, *input shape) held constant, or (samples, steps, *input shape), and optional "
                        "integer labels 'y' (samples,)")
    p.add_argument("--samples", type=_at_least(1), metavar="N", help="use the first N samples (default: all)")
    p.add_argument("--lava-samples", type=_at_least(0), default=0, metavar="M",
                   help="also run the first M samples in Lava and require bit-exact equality with the simulator "
                        "(default 0; Lava takes seconds per sample)")
    p.add_argument("--min-agreement", type=_number(0, 1, low_open=False), default=0.95, metavar="A",
                   help="fail unless float and chip predictions agree on at least this fraction of samples (default 0.95)")
    p.add_argument("--golden", metavar="REF.npz",
                   help="compare the simulator's outputs with this reference file; fail with a diff summary if they differ")
    p.add_argument("--update-golden", action="store_true", help="write the --golden file from this run instead")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="write report.json, rates.png (per-layer rates float vs chip), raster.png (one sample on chip)")
    p.set_defaults(func=_verify)

    p = sub.add_parser("convert", help="convert a trained ReLU ANN (ONNX) to a spiking NIR model (S-ResNet method)",
                       description="Convert ANN.onnx to an IF spiking network in NIR by the S-ResNet method (Hu, Tang, "
                                   "Pan, TNNLS 2021): batch norm folded; per layer lambda = a percentile of its "
                                   "activations on the calibration samples (onnxruntime); IF neurons with threshold 1 "
                                   "and reset by subtraction (metadata reset='subtract'); weights W*lambda_prev/lambda, "
                                   "biases b/lambda, identity shortcuts through Scale(lambda_in/lambda_out); max pooling "
                                   "by IF neurons; an I read-out integrates the logits (prediction: its argmax at the "
                                   "last step). Inputs are the data held as a constant current. Supported ONNX "
                                   "operators: Conv, BatchNormalization, Relu, Add, Gemm, MatMul, Flatten, Reshape "
                                   "(to a vector), AveragePool, GlobalAveragePool, MaxPool, Identity, Dropout, Constant.")
    p.add_argument("model", metavar="ANN.onnx", help="ONNX file of a ReLU network (one input, one output)")
    p.add_argument("--calib", required=True, metavar="SAMPLES.npy",
                   help="calibration inputs (samples, *input shape): .npy, or .npz with 'x' (e.g. 64 training samples)")
    p.add_argument("-o", "--output", required=True, metavar="SNN.nir", help="output NIR file (written completely or not at all)")
    p.add_argument("--percentile", type=_number(0, 100), default=99.9, metavar="P",
                   help="lambda of a layer = the P-th percentile of its activations (default 99.9; 100 = the maximum)")
    p.add_argument("--steps", type=_at_least(1), metavar="T",
                   help="also run the converted net in the float reference for T steps on the calibration samples and "
                        "print how often it predicts what the ANN predicts; T is stored as metadata 'time_steps'")
    p.add_argument("--compensation", type=_number(0), default=1.0, metavar="C",
                   help="compensation factor: every normalised weight and shortcut scale times C, offsetting the rate "
                        "undershoot of IF neurons (the S-ResNet authors' mechanism; default 1 = off; e.g. 1.05)")
    p.add_argument("--no-shortcut-norm", action="store_true",
                   help="identity shortcuts carry unscaled spikes (no Scale(lambda_in/lambda_out)): the naive conversion")
    p.set_defaults(func=_convert)

    p = sub.add_parser("targets", help="list the known target chips and systems",
                       description="List the built-in target chips (targets/*.toml) with their per-core resources, "
                                   "limits and named systems, or check and list one target file of your own.")
    p.add_argument("--target-file", metavar="FILE.toml", help="check and list this target file instead")
    p.set_defaults(func=_targets)
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an internal error")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the one place that turns errors into a line on stderr and an exit code."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not args.debug:  # libraries' warnings are not the user's concern; --debug shows them
                warnings.simplefilter("ignore")
            return args.func(args)
    except ModelError as e:
        if not e.placed and getattr(args, "model", None):
            e = e.in_file(args.model)
        print(f"snn2chip: error: {e}", file=sys.stderr)
        return EXIT_MODEL_ERROR
    except KeyboardInterrupt:
        print("snn2chip: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        if args.debug:
            raise
        print(f"snn2chip: error: {getattr(args, 'model', args.command)}: ran out of memory (a size check should have "
              "caught this: please report it); try fewer samples or a smaller --batch-size", file=sys.stderr)
        return EXIT_MODEL_ERROR
    except Exception as e:  # anything else is a bug in snn2chip
        if args.debug:
            raise
        detail = " ".join(str(e).split())[:300]
        print(f"snn2chip: internal error: {type(e).__name__}{': ' + detail if detail else ''} (a bug in snn2chip; "
              f"rerun with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL
