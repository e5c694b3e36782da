"""The command line's arguments: one parser per command, numeric options range-checked by their
argparse types, and usage errors as one line (exit code 2)."""

from __future__ import annotations

import argparse
import math

EXIT_USAGE = 2


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


def _size(text: str) -> int:
    """``--memory-limit``: a positive size in bytes, or with K, M, G, T."""
    from snn2chip.memory import parse_size

    value = parse_size(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a size such as 8G, 500M or 1000000, got {text!r}")
    return value


def _batch(text: str) -> int | None:
    """``--batch-size``: ``auto`` (None: the largest that fits the memory budget) or N >= 1."""
    return None if text == "auto" else _at_least(1)(text)


def _data_spec(text: str) -> str:
    """``--check`` and ``--data``: a data file (or ``digits``), or ``random:N`` with N >= 1."""
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
    p.add_argument("--packing", choices=("cores", "local"), default="cores",
                   help="cores (default): the fewest cores, with conv layers cut into slabs that fill room left on "
                        "any core (more axons between chips); local: only relays and delay lines fill that room, "
                        "near their neighbours (fewer axons between chips, more cores)")
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
                        "error that rounding leaves (default: the file the model's metadata 'calibration' names, "
                        "relative to the model, as the zoo's models do; else no calibration, weights rounded to "
                        "nearest)")
    p.add_argument("--no-calib", action="store_true",
                   help="no calibration, even when the model's metadata names a calibration file")
    p.add_argument("--rounding", choices=("compensated", "nearest"), default="compensated",
                   help="with --calib: compensated (default; GPTQ: each weight's rounding error is offset on the "
                        "inputs not yet rounded, as they co-vary on the calibration data) or nearest")
    p.add_argument("--no-split-signs", action="store_true",
                   help="keep mixed-sign weights in one group (7-bit magnitudes) instead of an excitatory and an "
                        "inhibitory group (8-bit magnitudes each)")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line (and exit code 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {' '.join(message.split())} (see '{self.prog} --help')\n")


def build_parser(commands: dict) -> argparse.ArgumentParser:
    """The parser of every command; ``commands`` maps a command name to the function running it."""
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
    parser.add_argument("--memory-limit", type=_size, metavar="SIZE", help="memory budget, e.g. 8G (see COMMAND --help)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("inspect", help="list a NIR model's nodes, shapes, joins and recurrent edges",
                       description="Read and validate a NIR file and list its nodes in topological order with type, "
                                   "input and output shape, parameter and neuron counts; then its joins (residual "
                                   "merges), recurrent edges and totals.")
    p.add_argument("model", metavar="MODEL.nir", help="NIR file (HDF5, as written by nir.write)")
    p.add_argument("--json", action="store_true", help="print the same as one JSON object on stdout")
    p.set_defaults(func=commands["inspect"])

    p = sub.add_parser("run", help="run a NIR model (float reference) or a compiled build (simulator or Lava)",
                       description="Run MODEL on the inputs in FILE and print per recorded node or population its mean "
                                   "output. A .nir file runs in the float reference executor (discrete time, forward "
                                   "Euler at step dt, docs/architecture.md section 2); a build folder (or its network.h5) runs in "
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
    p.add_argument("--batch-size", type=_batch, metavar="N|auto",
                   help="float, sim: samples per batch (default auto: sim takes as many as fit the memory budget, "
                        "float all at once)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="float backend arithmetic (default float32)")
    p.add_argument("-o", "--output", metavar="OUT.npz",
                   help="write the recorded outputs, (samples, steps, *shape) per name, and dt or pipeline_depth")
    p.set_defaults(func=commands["run"])

    p = sub.add_parser("compile", help="compile a NIR model for a target chip",
                       description="Lower residual shortcuts, quantize and partition MODEL.nir for the target and "
                                   "write BUILD/network.h5 (the chip IR), BUILD/report.json (resources, per-layer "
                                   "quantization errors, pipeline depth, cores and chips against their lower bounds), "
                                   "BUILD/report.md and BUILD/core_utilisation.png. A failed compile leaves no BUILD "
                                   "folder behind.")
    p.add_argument("model", metavar="MODEL.nir", help="NIR file")
    p.add_argument("-o", "--output", required=True, metavar="BUILD", help="output folder")
    _add_compile_options(p)
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print per population its scale, threshold and its groups' quantization errors, and per "
                        "layer the --check figures (always in BUILD/report.md and report.json)")
    p.add_argument("--check", metavar="FILE|random:N", type=_data_spec,
                   help="measure float-vs-chip fidelity on these inputs (or N random spike trains) into report.json; "
                        "the measured firing rates then weight the traffic when cores are placed on chips")
    p.set_defaults(func=commands["compile"])

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
    p.add_argument("--data", required=True, metavar="digits|random:N|FILE.npz", type=_data_spec,
                   help="'digits': the bundled scikit-learn digits test split (450 images, labels); 'random:N': N "
                        "random binary inputs (10%% on, no labels); or an .npz with 'x' (samples, *input shape) held "
                        "constant, or (samples, steps, *input shape), and optional integer labels 'y' (samples,)")
    p.add_argument("--samples", type=_at_least(1), metavar="N", help="use the first N samples (default: all)")
    p.add_argument("--lava-samples", type=_at_least(0), default=0, metavar="M",
                   help="also run the first M samples in Lava and require bit-exact equality with the simulator "
                        "(default 0, or 1 with --lava-populations; Lava takes seconds per sample)")
    p.add_argument("--lava-populations", metavar="all|N|NAME,...",
                   help="instead of the whole network, replay these populations in Lava one at a time, each fed what "
                        "its sources sent in the simulator (any network size): all, N chosen to cover every kind of "
                        "population and synapse first, or comma-separated names")
    p.add_argument("--min-agreement", type=_number(0, 1, low_open=False), default=0.95, metavar="A",
                   help="fail unless float and chip predictions agree on at least this fraction of samples (default 0.95)")
    p.add_argument("--golden", metavar="REF.npz",
                   help="compare the simulator's outputs with this reference file; fail with a diff summary if they differ")
    p.add_argument("--update-golden", action="store_true", help="write the --golden file from this run instead")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="write report.json, rates.png (per-layer rates float vs chip), raster.png (one sample on chip); "
                        "while the run goes, finished shards are kept in DIR.shards, so that the same command "
                        "resumes an interrupted run")
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the shards as tasks on a Ray cluster: without ADDRESS on a local Ray instance using "
                        "every CPU, with ADDRESS (HOST:PORT, ray://HOST:PORT or auto) on that cluster. The report "
                        "equals a one-process run's, apart from 'execution'. Needs the 'ray' extra")
    p.add_argument("--shard-size", type=_at_least(1), metavar="N",
                   help="samples per shard, the unit of work and of --ray's tasks (default 64)")
    p.set_defaults(func=commands["verify"])

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
    p.set_defaults(func=commands["convert"])

    p = sub.add_parser("targets", help="list the known target chips and systems",
                       description="List the built-in target chips (targets/*.toml) with their per-core resources, "
                                   "limits and named systems, or check and list one target file of your own.")
    p.add_argument("--target-file", metavar="FILE.toml", help="check and list this target file instead")
    p.set_defaults(func=commands["targets"])
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="show the traceback of an internal error")
        command.add_argument("--memory-limit", type=_size, default=argparse.SUPPRESS, metavar="SIZE",
                             help="memory budget, e.g. 8G or 500M (default: $SNN2CHIP_MEMORY_LIMIT, else 80%% of "
                                  "the memory available): work that needs more is refused with one line naming "
                                  "the largest consumer, and batches are sized to fit")
    return parser
