"""The ``snn2chip`` command line.

Exit codes: 0 success; 1 a problem with the user's model, data, options or output path (one
line on stderr naming the file or option, no traceback) or a failed ``verify`` check; 2 a
usage error (one line); 3 an internal error, i.e. a bug in snn2chip (one line; ``--debug``
shows the traceback). Every command runs inside :func:`main`'s one handler; outputs are
checked before any work (:mod:`snn2chip.files`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from snn2chip import files, memory
from snn2chip.arguments import build_parser
from snn2chip.errors import ModelError

EXIT_MODEL_ERROR = 1
EXIT_INTERNAL = 3
#: run outputs carry this entry (JSON: format, version), so that a later run may replace them
RUN_MARK = "snn2chip"
RUN_FORMAT = "snn2chip-run"
#: the entries a run output holds beside the recorded names
RESERVED = ("dt", "pipeline_depth", RUN_MARK)


def _inspect(args) -> int:
    from snn2chip import frontend
    from snn2chip.frontend import summary
    from snn2chip.report import text

    report = summary.summarize(frontend.load(args.model))
    print(json.dumps(report) if args.json else text.inspect_table(report))
    return 0


def _is_build(path: str) -> bool:
    return Path(path).is_dir() or Path(path).suffix == ".h5"


def _is_run_output(path: Path) -> bool:
    return (files.npz_json(path, RUN_MARK) or {}).get("format") == RUN_FORMAT


def _recorded(names: list[str], output: Path | None) -> list[str]:
    """``names`` to record, checked (before any work) not to clash with the entries a run output
    stores beside them."""
    clash = sorted(set(names) & set(RESERVED)) if output is not None else []
    if clash:
        raise ModelError(f"recorded name '{clash[0]}' clashes with an entry snn2chip stores beside the outputs",
                         option="--record")
    return list(names)


def _run(args) -> int:
    import torch

    from snn2chip import compiler, frontend
    from snn2chip.verify import data
    from snn2chip.frontend import reference
    from snn2chip.backends import simulator

    backend = args.backend or ("sim" if _is_build(args.model) else "float")
    if (backend == "float") == _is_build(args.model):
        raise ModelError(f"backend '{backend}' runs {'NIR files' if backend == 'float' else 'build folders'}", file=args.model)
    output = files.check_file(args.output, [args.model, args.input], ours=_is_run_output) if args.output else None
    show = sys.stderr.isatty()
    if backend == "float":
        graph = frontend.load(args.model)
        record = _recorded(args.record or graph.outputs, output)
        inputs = data.read_inputs(args.input, graph.inputs)
        dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
        try:
            results = reference.run(graph, inputs, args.steps, dt=args.dt, record=record, dtype=dtype,
                                    batch_size=args.batch_size, show_progress=show)
        except ModelError as e:
            raise e.in_file(args.input) from None
        dt, dt_source = reference.resolve_dt(graph, args.dt)
        extra, note = {"dt": np.float64(dt)}, f"float backend, dt {dt:g} from {dt_source}"
    else:
        net = compiler.load_build(args.model)
        inputs = data.read_inputs(args.input, list(net.inputs))
        kwargs = dict(record=_recorded(args.record or list(net.outputs), output), probe=args.probe or [],
                      show_progress=show)
        try:
            if backend == "sim":
                results = simulator.simulate(net, inputs, args.steps, batch_size=args.batch_size, **kwargs)
            else:
                from snn2chip.backends.lava import run_lava

                results = run_lava(net, inputs, args.steps, **kwargs)
        except ModelError as e:
            raise e.in_file(args.input) from None
        extra, note = {"pipeline_depth": np.int64(net.pipeline_depth)}, f"{backend} backend, pipeline depth {net.pipeline_depth}"
    for name, values in results.items():
        batch, steps = values.shape[:2]
        print(f"{name}: {batch} samples x {steps} steps x {values[0, 0].size} values, "
              f"mean {values.mean():.4g}, sum per sample {values.sum() / batch:.4g}")
    if output is not None:
        mark = json.dumps({"format": RUN_FORMAT, "version": 1, "model": str(args.model), "backend": backend})
        files.write_npz(output, {**results, **extra, RUN_MARK: np.array(mark)})
        print(f"wrote {output} ({note})")
    return 0


def _check_inputs(spec: str, net) -> np.ndarray:
    """Inputs for --check: an .npy/.npz file, or 'random:N' binary spikes (:func:`snn2chip.verify.data.random_spikes`)."""
    from snn2chip.verify import data

    (name,) = net.inputs
    pop = net.populations[name]
    if spec.startswith("random:"):
        if pop.payload_bits:
            raise ModelError("random:N makes binary spikes; graded inputs need a data file", option="--check")
        return data.random_spikes(int(spec.split(":", 1)[1]), pop.shape, "--check")
    x = data.read_inputs(spec, list(net.inputs))
    if isinstance(x, dict):
        x = x[name]
    return x


def _compile_inputs(args) -> list:
    """The files a compile reads (an output may never replace or contain them)."""
    check = args.check if args.check and not args.check.startswith("random:") else None
    return [args.model, args.calib, args.target_file, args.target if str(args.target).endswith(".toml") else None, check]


def _compile(args) -> int:
    from snn2chip import compiler
    from snn2chip.chip import targets
    from snn2chip.report import text
    from snn2chip.verify import fidelity

    calibration = _model_calibration(args)
    files.check_dir(args.output, "build", _compile_inputs(args))
    target = targets.resolve(args.target_file or args.target)
    graph, net, report = compiler.compile_file(args.model, target, _options(args), system=args.system,
                                               packing=args.packing)
    report = dataclasses.replace(report, calibration=calibration)
    if args.check:
        x = _check_inputs(args.check, net)
        try:
            fid = fidelity.fidelity(graph, net, x, args.steps, dt=args.dt)
        except ModelError as e:
            raise e.in_file(args.check) from None
        # place again with the measured firing rates weighting the traffic
        placement = compiler.partition_report(net, target, report.partition.system, fid.rates(), args.packing)
        report = dataclasses.replace(report.placed(placement), fidelity=fid)
    compiler.write_build(args.output, net, report, inputs=_compile_inputs(args))
    print(text.compile_summary(report, args.output, verbose=args.verbose))
    return 0


def _is_golden(path: Path) -> bool:
    from snn2chip import verify

    return (files.npz_json(path, "meta") or {}).get("format") == verify.GOLDEN_FORMAT


def _executor(args):
    """Where verify's shards run: this process, or with --ray a Ray cluster (connected for the block)."""
    from snn2chip.verify import Local, cluster

    return contextlib.nullcontext(Local()) if args.ray is None else cluster.connect(args.ray or None)


def _golden(args, inputs: list, options, target, result, report):
    """``report`` with the golden-file check (or the file written) when --golden is given."""
    from snn2chip import verify

    if not args.golden:
        return report
    meta = verify.golden_meta(args.model, target.name, options, result)
    if args.update_golden:
        files.write_npz(files.check_file(args.golden, inputs, ours=_is_golden), verify.golden_arrays(meta, result))
        golden = verify.Golden(args.golden, "written", f"wrote {args.golden} ({result.report.samples} samples)")
    else:
        diff = verify.check_golden(args.golden, meta, result)
        golden = verify.Golden(args.golden, "mismatch" if diff else "match", diff or f"outputs equal {args.golden}")
    return dataclasses.replace(report, golden=golden)


def _verify_data(args):
    """The model's graph and the samples verify runs (options checked against both)."""
    from snn2chip import frontend
    from snn2chip.verify import data

    graph = frontend.load(args.model)
    if len(graph.inputs) != 1:
        raise ModelError(f"verify feeds one input ('x'); the model has {len(graph.inputs)}", file=args.model)
    dataset = data.load(args.data, graph.out_shapes[graph.inputs[0]])
    dataset.check_labels(math.prod(graph.out_shapes[graph.outputs[0]]))
    samples = len(dataset.x) if args.samples is None else args.samples
    if samples > len(dataset.x):
        raise ModelError(f"asks for {samples} samples; the data has {len(dataset.x)}", file=dataset.name,
                         option="--samples")
    if args.lava_populations and not args.lava_samples:
        args.lava_samples = 1
    if args.lava_samples > samples:
        raise ModelError(f"asks for {args.lava_samples} samples; verify runs {samples}", option="--lava-samples")
    return graph, dataset.head(samples)


def _verify(args) -> int:
    from snn2chip import compiler, verify
    from snn2chip.report import text
    from snn2chip.verify import resume, shards
    from snn2chip.chip import targets

    calibration = _model_calibration(args)
    if args.update_golden and not args.golden:
        raise ModelError("needs --golden FILE (the file to write)", option="--update-golden")
    inputs = [args.model, None if args.data == "digits" or args.data.startswith("random:") else args.data, args.calib,
              args.target_file]
    if args.output:
        files.check_dir(args.output, "verify", inputs + [args.golden])
    if args.update_golden:
        files.check_file(args.golden, inputs, ours=_is_golden)
    graph, dataset = _verify_data(args)
    samples = len(dataset.x)
    setup = verify.settings(graph, dataset, args.data, args.steps, args.input_bits, args.input_scale)
    options = _options(argparse.Namespace(**{**vars(args), "steps": setup.steps, "input_bits": setup.input_bits,
                                             "input_scale": setup.input_scale}))
    target = targets.resolve(args.target_file or args.target)
    args.shard_size = args.shard_size or shards.DEFAULT_SIZE
    with _executor(args) as executor:
        graph, net, compiled = compiler.compile_file(args.model, target, options, system=args.system,
                                                     packing=args.packing)
        key = {**verify.identity(args.model, target.name, options), "samples": samples, "steps": setup.steps,
               "shard_size": args.shard_size, "inputs_sha256": verify.inputs_sha256(dataset.digests)}
        store = resume.Store.beside(args.output, key) if args.output else None
        finished, note = store.load() if store else ({}, None)
        if note:
            print(f"snn2chip verify: {note}", file=sys.stderr)
        try:
            result = verify.run(graph, net, dataset, setup, target=target.name, dt=args.dt,
                                lava_samples=args.lava_samples, lava_populations=args.lava_populations,
                                show_progress=sys.stderr.isatty(), shard_size=args.shard_size, executor=executor,
                                finished=finished, keep=store.save if store else None)
        except ModelError as e:
            raise e.in_file(dataset.name) from None
    if result.report.execution.retried:
        print(f"snn2chip verify: {result.report.execution.retried} shard(s) ran again after their Ray worker died; "
              "the result is unaffected", file=sys.stderr)
    report = dataclasses.replace(result.report, strategy=compiled.quantization.strategy, compile=compiled.totals,
                                 calibration=calibration)
    report = _golden(args, inputs, options, target, result, report)
    report = verify.judged(report, args.min_agreement)
    if args.output:
        verify.write_dir(args.output, report, result, inputs=inputs + [args.golden])
        store.remove()
    print(json.dumps(report.to_json()) if args.json else text.verify_table(report))
    if not report.passed:
        failed = "; ".join(c.detail for c in report.checks if not c.passed)
        print(f"snn2chip verify: failed: {failed}", file=sys.stderr)
        return EXIT_MODEL_ERROR
    return 0


def _convert(args) -> int:
    from snn2chip import convert
    from snn2chip.verify import data

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
    from snn2chip.chip import targets
    from snn2chip.report import text

    chosen = [targets.load_file(args.target_file)] if args.target_file else [targets.resolve(n) for n in targets.builtin()]
    print(text.targets_list(chosen))
    return 0


def _model_calibration(args) -> str:
    """Resolve the calibration set: --calib; without it (and --no-calib) the file the model's
    metadata 'calibration' names (relative to the model file) becomes --calib. Returns where it
    came from, for the reports."""
    from snn2chip.frontend.read import file_metadata

    if args.calib and args.no_calib:
        raise ModelError("cannot be combined with --calib", option="--no-calib")
    named = None if args.calib or args.no_calib else file_metadata(args.model).get("calibration")
    if isinstance(named, str) and named.strip():
        args.calib = str(Path(args.model).parent / named)
        if not Path(args.calib).is_file():
            raise ModelError(f"metadata 'calibration' names {named!r}, but {args.calib} is not a file "
                             "(--no-calib: compile without calibration)", file=args.model)
        return f"{args.calib} (named by the model's metadata 'calibration'; --no-calib: none)"
    return f"{args.calib} (--calib)" if args.calib else "none"


def _options(args):
    """Compile :class:`~snn2chip.passes.quantize.Options` from the parsed shared options."""
    from snn2chip.passes.quantize import Options

    from snn2chip.verify import data

    calibration = data.load_samples(args.calib) if args.calib else None
    return Options(dt=args.dt, input_scale=args.input_scale, input_bits=args.input_bits, steps=args.steps,
                   strategy=args.strategy, align=not args.no_align, split_signs=not args.no_split_signs,
                   calibration=calibration, rounding=args.rounding)


COMMANDS = {"inspect": _inspect, "run": _run, "compile": _compile, "verify": _verify, "convert": _convert,
            "targets": _targets}


def main(argv: list[str] | None = None) -> int:
    """Run one command; the one place that turns errors into a line on stderr and an exit code."""
    args = build_parser(COMMANDS).parse_args(argv)
    try:
        with warnings.catch_warnings():
            if not args.debug:  # libraries' warnings are not the user's concern; --debug shows them
                warnings.simplefilter("ignore")
            with memory.limited(getattr(args, "memory_limit", None)):
                return args.func(args)
    except ModelError as e:
        if not e.placed and getattr(args, "model", None):
            e = e.in_file(args.model)
        print(f"snn2chip: error: {e}", file=sys.stderr)
        return EXIT_MODEL_ERROR
    except KeyboardInterrupt:
        print("snn2chip: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (e.g. `| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
