"""Chip simulator speed against the float reference: the model zoo, the scale models, a ResNet-18.

The ResNet-18 is a converted torchvision one; same inputs and batch per model.

Run: .venv/bin/python benchmarks/sim_speed.py [--batch 64] [--repeats 5] [--threads N] [--no-memory]
         [--no-zoo] [--scale [NAME ...]] [--scale-dir out/scale] [--check-batch N] [--no-resnet18]

**Zoo rows**: every ``models/zoo/*.nir`` compiled as ``benchmarks/zoo_chip.py`` does (``--input-bits 6
--input-scale 16``, the model's time steps T); inputs: the first ``--batch`` digits test images.

**Scale rows** (``--scale NAME ...``; default :data:`DEFAULT_SCALE`, ``--scale`` alone: none): the
random-weight, activity-balanced ``models.scale`` graphs ``SCALE_DIR/NAME.nir`` (made with
``python -m models.scale NAME --out-dir SCALE_DIR`` first where missing; its output is printed),
compiled with the options ``snn2chip verify --data random:N`` uses (binary input spikes:
``--input-bits 0 --input-scale 1``, T = the model's metadata ``time_steps``, 4), on
``verify.data.random_spikes(4, shape)`` (batch 4 x 4 steps, as ``snn2chip verify ... --data random:4
--steps 4``).

**ResNet-18 row** (unless ``--no-resnet18``): ``models.torchvision_resnet`` (torchvision's ResNet-18,
10 classes, 3x64x64, seed 0) exported to ONNX in a temporary folder, converted by ``snn2chip
convert`` (16 calibration images) and compiled with ``--input-bits 6 --input-scale 16 --steps 32``;
inputs: 4 images ``k / 16``, T = 32.

The float reference runs T steps (``snn2chip.frontend.reference.run``, float32, recording the
Output nodes), the simulator T + D steps (``fidelity.chip_inputs``: the input, then D zero steps
while the last values leave the chip) in its ``step`` and ``layer`` schedules, recording the
network outputs and (for integrating read-outs) probing their u and v; the two schedules'
outputs are asserted equal, on the whole batch, or for scale and ResNet-18 rows on its first
``--check-batch`` samples when that is given (the step schedule is slow on the big models: then
its timing cell shows "-"). Both schedules run with the batch given explicitly, so the simulator
never falls back to another schedule or smaller chunks for memory.

Times are the best of ``--repeats`` runs (scale and ResNet-18 rows: ``--scale-repeats``, default
1) after a warm-up (zoo: one untimed run per executor; other rows: the equality check is the
simulator's warm-up, one untimed float run the float reference's); the simulator's plan, built
on a network's first run and cached, is not timed (its build time is printed). Sample-steps/s
count each executor's own steps: ``batch * T / s`` for the float reference, ``batch * (T + D) /
s`` for the chip; "x float" is the ratio of those rates, "inference" the ratio of the times of
one batch (float time / chip time).

Peak memory (unless ``--no-memory``): each executor runs once more in a fresh process that first
loads the model (``frontend.load``), the compiled network (``chip.load``) and the inputs, then
resets its peak resident set (``/proc/self/clear_refs``) and runs; reported is the peak resident
set during the run (``VmHWM``) minus the resident set before it (``VmRSS``), i.e. what the run
itself added at its peak (a first run: the simulator's plan build included). The step schedule's
child is skipped where its timing is.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from snn2chip import chip, compiler, convert, frontend  # noqa: E402
from snn2chip.backends.sim.schedule import Plan  # noqa: E402
from snn2chip.backends.simulator import simulate  # noqa: E402
from snn2chip.frontend import reference  # noqa: E402
from snn2chip.passes.quantize import Options  # noqa: E402
from snn2chip.verify import data, fidelity  # noqa: E402

ZOO = ROOT / "models" / "zoo"
EXECUTORS = ("float", "step", "layer")
#: scale models measured by default: the CIFAR-size ones that fit this 2-core, 23 GiB machine quickly
DEFAULT_SCALE = ("sew_resnet18_32", "ms_resnet18_32", "ms_resnet34_32")
SCALE_BATCH = SCALE_STEPS = 4
RESNET = {"size": 64, "classes": 10, "seed": 0, "calib": 16, "batch": 4, "steps": 32}


@dataclasses.dataclass
class Case:
    """One table row: a NIR model, how to compile it, its float inputs ``x`` and steps T."""

    name: str
    nir: Path
    options: Options
    x: np.ndarray
    steps: int
    check_batch: int | None = None  # step-vs-layer equality on this many samples (None: all)
    repeats: int = 1
    warm: bool = True  # an untimed warm-up run of every executor (else: float only)


def record_of(net) -> dict:
    """What the simulator keeps: the outputs, and u and v of integrating (LIF) outputs."""
    return {"record": list(net.outputs), "probe": [p for p in net.outputs if net.populations[p].kind == "lif"]}


def runner(executor: str, graph, net, x: np.ndarray, steps: int):
    """A function running one batch on ``executor``, returning its outputs."""
    if executor == "float":
        return lambda: reference.run(graph, x, steps, record=list(graph.outputs))
    chip_x = fidelity.chip_inputs(net, x, steps)
    return lambda: simulate(net, chip_x, schedule=executor, batch_size=len(x), **record_of(net))


def best_time(run, repeats: int, warm: bool = True) -> float:
    """Seconds of the fastest of ``repeats`` runs, after one warm-up run if ``warm``."""
    if warm:
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def status_kib(key: str) -> int:
    """A ``/proc/self/status`` entry in KiB: ``VmRSS`` (resident now) or ``VmHWM`` (its peak)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def child(executor: str, nir: str, h5: str, x: str, steps: int) -> None:
    """In a fresh process: run ``executor`` once; print the MiB its run added at peak."""
    graph, net = frontend.load(nir), chip.load(h5)
    run = runner(executor, graph, net, np.load(x), steps)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the resident set now
    before = status_kib("VmRSS")
    run()
    print(json.dumps({"peak_mib": (status_kib("VmHWM") - before) / 1024}))


def peak_mib(executors, case: Case, net, threads: int) -> dict[str, float]:
    """Per executor the MiB its run adds at peak, each in a fresh process."""
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        chip.save(net, Path(tmp) / "net.h5")
        np.save(Path(tmp) / "x.npy", case.x)
        for e in executors:
            done = subprocess.run([sys.executable, __file__, "--child", e, str(case.nir), str(Path(tmp) / "net.h5"),
                                   str(Path(tmp) / "x.npy"), "--steps", str(case.steps), "--threads", str(threads)],
                                  capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"{case.name}: the {e} child failed ({done.returncode}): {done.stderr.strip()}")
            peaks[e] = json.loads(done.stdout.splitlines()[-1])["peak_mib"]
    return peaks


def measure(case: Case, args) -> str:
    """One table row."""
    graph, net, _ = compiler.compile_file(case.nir, options=case.options)
    x, steps, batch = case.x, case.steps, len(case.x)
    start = time.perf_counter()
    Plan(net)  # what a network's first simulator run builds (ops from groups) and caches
    build = time.perf_counter() - start
    checked = x if case.check_batch is None else x[: case.check_batch]
    outputs = {s: runner(s, graph, net, checked, steps)() for s in ("step", "layer")}
    for key, values in outputs["step"].items():
        np.testing.assert_array_equal(outputs["layer"][key], values, err_msg=f"{case.name}: {key}")
    timed = [e for e in EXECUTORS if e != "step" or len(checked) == batch]
    seconds = {e: best_time(runner(e, graph, net, x, steps), case.repeats, case.warm or e == "float") for e in timed}
    chip_steps = steps + net.pipeline_depth
    rate = {e: batch * (steps if e == "float" else chip_steps) / s for e, s in seconds.items()}
    cells = [case.name, f"{steps} / {chip_steps}", f"{rate['float']:,.0f}"]
    cells += [f"{rate[e]:,.0f} ({rate[e] / rate['float']:.2f}x; inference {seconds['float'] / seconds[e]:.2f}x)"
              if e in rate else f"- (equal on {len(checked)} of {batch})" for e in ("step", "layer")]
    cells.append(f"{build:.2f} s")
    if args.memory:
        peaks = peak_mib(timed, case, net, args.threads)
        cells.append(" / ".join(f"{peaks[e]:.0f}" if e in peaks else "-" for e in EXECUTORS))
    return "| " + " | ".join(cells) + " |"


def zoo_cases(args) -> list[Case]:
    manifest = json.loads((ZOO / "zoo.json").read_text())["models"]
    x = np.asarray(data.digits_split()[2][: args.batch])
    return [Case(nir.stem, nir, Options(steps=manifest[nir.stem]["time_steps"], input_bits=6, input_scale=16), x,
                 manifest[nir.stem]["time_steps"], repeats=args.repeats) for nir in sorted(ZOO.glob("*.nir"))]


def scale_case(name: str, args) -> Case:
    """A scale model (generated first if its file is missing), as ``verify --data random:4`` runs it."""
    nir = args.scale_dir / f"{name}.nir"
    if not nir.exists():
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "models.scale", name, "--out-dir", str(args.scale_dir)], cwd=ROOT,
                              check=True, capture_output=True, text=True)
        print(f"<!-- generated {nir} in {time.perf_counter() - start:.0f} s: {done.stdout.strip()} -->", flush=True)
    graph = frontend.load(nir)
    steps = int(graph.metadata.get("time_steps", SCALE_STEPS))
    x = data.random_spikes(SCALE_BATCH, tuple(graph.out_shapes[graph.inputs[0]]))
    return Case(name, nir, Options(steps=steps, input_bits=0, input_scale=1.0), x, steps, args.check_batch,
                args.scale_repeats, warm=False)


def resnet18_case(tmp: Path, args) -> Case:
    """The converted torchvision ResNet-18 of ``models.torchvision_resnet``, built in ``tmp``."""
    from models import torchvision_resnet as tv

    r = RESNET
    start = time.perf_counter()
    onnx_file = tv.export(tmp / "resnet18.onnx", r["size"], r["classes"], r["seed"])
    calib = tv.images(r["calib"], r["size"], r["seed"] + 1)
    convert.write(convert.convert(onnx_file, calib, time_steps=r["steps"]).graph, tmp / "resnet18.nir")
    print(f"<!-- resnet18: exported and converted in {time.perf_counter() - start:.0f} s -->", flush=True)
    x = tv.images(r["batch"], r["size"], r["seed"] + 2)
    name = f"resnet18 (torchvision, converted, {r['size']}x{r['size']})"
    return Case(name, tmp / "resnet18.nir", Options(steps=r["steps"], input_bits=6, input_scale=16), x, r["steps"],
                args.check_batch, args.scale_repeats, warm=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="zoo rows: digits per batch (default 64)")
    parser.add_argument("--repeats", type=int, default=5, help="zoo rows: timed runs (default 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--no-zoo", dest="zoo", action="store_false")
    parser.add_argument("--scale", nargs="*", default=list(DEFAULT_SCALE), metavar="NAME",
                        help=f"scale models (default {' '.join(DEFAULT_SCALE)}; none if given without names)")
    parser.add_argument("--scale-dir", type=Path, default=ROOT / "out" / "scale")
    parser.add_argument("--scale-repeats", type=int, default=1, help="scale and ResNet-18 rows: timed runs (default 1)")
    parser.add_argument("--check-batch", type=int, help="scale and ResNet-18 rows: check step == layer on this many "
                                                        "samples only, and do not time the step schedule")
    parser.add_argument("--no-resnet18", dest="resnet18", action="store_false")
    parser.add_argument("--child", nargs=4, metavar=("EXECUTOR", "NIR", "H5", "X"), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(*args.child, args.steps)
        return
    rows = [f"zoo: batch {args.batch}, best of {args.repeats}"] if args.zoo else []
    if args.scale or args.resnet18:
        rows.append(f"scale: batch {SCALE_BATCH} random spikes, ResNet-18: batch {RESNET['batch']} images, "
                    f"best of {args.scale_repeats}")
    print("; ".join(rows + [f"torch threads {args.threads}"]) + "; sample-steps/s (ratio to the float reference's "
          "sample-steps/s; inference: float time / chip time)\n")
    header = ["model", "T / T+D", "float reference", "simulator, step", "simulator, layer", "plan build"]
    header += ["peak MiB float / step / layer"] if args.memory else []
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    for case in zoo_cases(args) if args.zoo else []:
        print(measure(case, args), flush=True)
    for name in args.scale:
        print(measure(scale_case(name, args), args), flush=True)
    if args.resnet18:
        with tempfile.TemporaryDirectory() as tmp:
            print(measure(resnet18_case(Path(tmp), args), args), flush=True)


if __name__ == "__main__":
    main()
