"""The ``snn2chip`` command line.

Exit codes: 0 success; 1 a problem with the user's model or data (one line on stderr, no
traceback); 2 a usage error or a command that is not implemented yet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from snn2chip.errors import ModelError

EXIT_MODEL_ERROR = 1
EXIT_USAGE = 2


def _inspect(args) -> int:
    from snn2chip import frontend, summary

    report = summary.summarize(frontend.load(args.model))
    print(json.dumps(report) if args.json else summary.format_summary(report))
    return 0


def _read_inputs(path: str, input_names: list[str]):
    """Inputs from ``.npy`` (one array) or ``.npz`` (``x``, or one array per Input node name)."""
    if not Path(path).is_file():
        raise ModelError("no such file", file=path)
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ModelError(f"not a .npy or .npz file ({e})", file=path) from None
    if isinstance(data, np.ndarray):
        return data
    with data:
        if "x" in data.files:
            return data["x"]
        if set(input_names) <= set(data.files):
            return {name: data[name] for name in input_names}
    raise ModelError(f"no array 'x' (nor arrays named after the Input nodes {input_names}) in the file", file=path)


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz so that ``path`` is either the complete file or untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _run(args) -> int:
    import torch

    from snn2chip import frontend, reference

    graph = frontend.load(args.model)
    inputs = _read_inputs(args.input, graph.inputs)
    record = args.record or graph.outputs
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    results = reference.run(
        graph, inputs, args.steps, dt=args.dt, record=record, dtype=dtype,
        batch_size=args.batch_size, show_progress=sys.stderr.isatty(),
    )
    dt, dt_source = reference.resolve_dt(graph, args.dt)
    for name, values in results.items():
        batch, steps = values.shape[:2]
        print(f"{name}: {batch} samples x {steps} steps x {values[0, 0].size} values, "
              f"mean {values.mean():.4g}, sum per sample {values.sum() / batch:.4g}")
    if args.output:
        _write_atomic(Path(args.output), {**results, "dt": np.float64(dt)})
        print(f"wrote {args.output} (dt {dt:g} from {dt_source})")
    return 0


def _not_implemented(args) -> int:
    print(f"snn2chip {args.command}: not implemented yet", file=sys.stderr)
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snn2chip",
        description="Compile residual spiking neural networks (NIR or ONNX) to Loihi through Lava.",
        epilog="Exit codes: 0 success, 1 a problem with the model or data, 2 usage error or not implemented yet.",
    )
    from snn2chip import __version__

    parser.add_argument("--version", action="version", version=f"snn2chip {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="list a NIR model's nodes, shapes, joins and recurrent edges",
                       description="Read and validate a NIR file and list its nodes in topological order with type, "
                                   "input and output shape, parameter and neuron counts; then its joins (residual "
                                   "merges), recurrent edges and totals.")
    p.add_argument("model", metavar="MODEL.nir", help="NIR file (HDF5, as written by nir.write)")
    p.add_argument("--json", action="store_true", help="print the same as one JSON object on stdout")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("run", help="run a NIR model in the float reference executor",
                       description="Run MODEL.nir in the float reference executor (discrete time, forward Euler at "
                                   "step dt, DESIGN.md section 2) on the inputs in FILE and print per recorded node "
                                   "its mean output.")
    p.add_argument("model", metavar="MODEL.nir", help="NIR file")
    p.add_argument("--input", required=True, metavar="FILE",
                   help=".npy array or .npz with 'x' (or one array per Input node): (samples, *shape) held constant "
                        "for --steps steps, or (samples, time, *shape)")
    p.add_argument("--steps", type=int, metavar="T", help="time steps (required for constant inputs)")
    p.add_argument("--dt", type=float, help="time step in the unit of the model's time constants "
                                           "(default: graph metadata 'dt', else 1)")
    p.add_argument("--record", nargs="+", metavar="NODE", help="nodes whose outputs to keep (default: Output nodes)")
    p.add_argument("--batch-size", type=int, metavar="N", help="samples per batch (default: all at once)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="arithmetic (default float32)")
    p.add_argument("-o", "--output", metavar="OUT.npz",
                   help="write the recorded outputs, (samples, time, *shape) per node, and dt")
    p.set_defaults(func=_run)

    p = sub.add_parser("compile", help="compile a NIR model for a target chip (not implemented yet)",
                       description="Quantize, lower residual shortcuts, partition and emit MODEL.nir for a target. "
                                   "Not implemented yet: exits with code 2.")
    p.add_argument("model", metavar="MODEL.nir", help="NIR file")
    p.add_argument("--target", default="loihi2", help="target name or TOML file (default loihi2)")
    p.add_argument("-o", "--output", metavar="DIR", help="output directory for the compiled artifact and report")
    p.set_defaults(func=_not_implemented)

    p = sub.add_parser("verify", help="compare float reference, chip simulator and Lava (not implemented yet)",
                       description="Compile MODEL.nir and compare the float reference, the bit-accurate simulator and "
                                   "Lava on data. Not implemented yet: exits with code 2.")
    p.add_argument("model", metavar="MODEL.nir", help="NIR file")
    p.add_argument("--target", default="loihi2", help="target name or TOML file (default loihi2)")
    p.add_argument("--data", metavar="digits|FILE.npz", help="input data")
    p.set_defaults(func=_not_implemented)

    p = sub.add_parser("convert", help="convert a trained ReLU ANN (ONNX) to a spiking NIR model (not implemented yet)",
                       description="Convert ANN.onnx to an IF spiking network in NIR by the S-ResNet method. "
                                   "Not implemented yet: exits with code 2.")
    p.add_argument("model", metavar="ANN.onnx", help="ONNX file of a ReLU network")
    p.add_argument("--calib", metavar="SAMPLES.npy", help="calibration inputs")
    p.add_argument("-o", "--output", metavar="SNN.nir", help="output NIR file")
    p.set_defaults(func=_not_implemented)

    p = sub.add_parser("targets", help="list the known target chips and systems (not implemented yet)",
                       description="List target chips and systems with their resources. Not implemented yet: "
                                   "exits with code 2.")
    p.set_defaults(func=_not_implemented)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ModelError as e:
        print(f"snn2chip: error: {e}", file=sys.stderr)
        return EXIT_MODEL_ERROR
    except KeyboardInterrupt:
        return 130
