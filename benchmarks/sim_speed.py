"""Chip simulator speed against the float reference on the model zoo, same inputs and batch.

Run: .venv/bin/python benchmarks/sim_speed.py [--batch 64] [--repeats 5] [--threads N] [--no-memory]

Every ``models/zoo/*.nir`` compiled as ``benchmarks/zoo_chip.py`` does (``--input-bits 6
--input-scale 16``, the model's time steps T); inputs: the first ``--batch`` digits test images.
The float reference runs T steps (``snn2chip.frontend.reference.run``, float32, recording the
Output nodes), the simulator T + D steps (``fidelity.chip_inputs``: the input, then D zero steps
while the last values leave the chip) in its ``step`` and ``layer`` schedules, recording the
network outputs; the two schedules' outputs are asserted equal. Times are the best of
``--repeats`` runs after a warm-up (the simulator's plan, built on a network's first run and
cached, is not timed; its build time is printed). Sample-steps/s count each executor's own steps:
``batch * T / s`` for the float reference, ``batch * (T + D) / s`` for the chip; "x float" is the
ratio of those rates, "inference" the ratio of the times of one batch (float time / chip time).

Peak memory (unless ``--no-memory``): each executor runs once more in a fresh process that first
loads the model (``frontend.load``) and the compiled network (``chip.load``) and prepares the
inputs, then resets its peak resident set (``/proc/self/clear_refs``) and runs; reported is the
peak resident set during the run (``VmHWM``) minus the resident set before it (``VmRSS``), i.e.
what the run itself added at its peak (a first run: the simulator's plan build included).
"""

from __future__ import annotations

import argparse
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
from snn2chip import chip, compiler, frontend  # noqa: E402
from snn2chip.backends.sim.schedule import Plan  # noqa: E402
from snn2chip.backends.simulator import simulate  # noqa: E402
from snn2chip.frontend import reference  # noqa: E402
from snn2chip.passes.quantize import Options  # noqa: E402
from snn2chip.verify import data, fidelity  # noqa: E402

ZOO = ROOT / "models" / "zoo"
EXECUTORS = ("float", "step", "layer")


def runner(executor: str, graph, net, x: np.ndarray, steps: int):
    """A function running one batch on ``executor``, returning its outputs."""
    if executor == "float":
        return lambda: reference.run(graph, x, steps, record=list(graph.outputs))
    chip_x = fidelity.chip_inputs(net, x, steps)
    return lambda: simulate(net, chip_x, schedule=executor)


def best_time(run, repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` runs, after one warm-up run."""
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


def child(executor: str, nir: str, h5: str, batch: int, steps: int) -> None:
    """In a fresh process: run ``executor`` once; print the MiB its run added at peak."""
    graph, net = frontend.load(nir), chip.load(h5)
    run = runner(executor, graph, net, np.asarray(data.digits_split()[2][:batch]), steps)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the resident set now
    before = status_kib("VmRSS")
    run()
    print(json.dumps({"peak_mib": (status_kib("VmHWM") - before) / 1024}))


def peak_mib(executor: str, nir: Path, net, batch: int, steps: int, threads: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        chip.save(net, Path(tmp) / "net.h5")
        out = subprocess.run([sys.executable, __file__, "--child", executor, str(nir), str(Path(tmp) / "net.h5"),
                              "--batch", str(batch), "--steps", str(steps), "--threads", str(threads)],
                             check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])["peak_mib"]


def measure(nir: Path, steps: int, args) -> str:
    """One table row for the zoo model ``nir``."""
    graph, net, _ = compiler.compile_file(nir, options=Options(steps=steps, input_bits=6, input_scale=16))
    x = np.asarray(data.digits_split()[2][: args.batch])
    start = time.perf_counter()
    Plan(net)  # what a network's first simulator run builds (ops from groups) and caches
    build = time.perf_counter() - start
    outputs = {s: runner(s, graph, net, x, steps)() for s in ("step", "layer")}
    for key, values in outputs["step"].items():
        np.testing.assert_array_equal(outputs["layer"][key], values, err_msg=f"{nir.stem}: {key}")
    seconds = {e: best_time(runner(e, graph, net, x, steps), args.repeats) for e in EXECUTORS}
    chip_steps = steps + net.pipeline_depth
    rate = {e: args.batch * (steps if e == "float" else chip_steps) / s for e, s in seconds.items()}
    cells = [nir.stem, f"{steps} / {chip_steps}", f"{rate['float']:,.0f}"]
    cells += [f"{rate[e]:,.0f} ({rate[e] / rate['float']:.2f}x; inference {seconds['float'] / seconds[e]:.2f}x)"
              for e in ("step", "layer")]
    cells.append(f"{build:.2f} s")
    if args.memory:
        cells.append(" / ".join(f"{peak_mib(e, nir, net, args.batch, steps, args.threads):.0f}" for e in EXECUTORS))
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--child", nargs=3, metavar=("EXECUTOR", "NIR", "H5"), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        child(*args.child, args.batch, args.steps)
        return
    manifest = json.loads((ZOO / "zoo.json").read_text())["models"]
    print(f"batch {args.batch}, torch threads {args.threads}, best of {args.repeats}; sample-steps/s "
          "(ratio to the float reference's sample-steps/s; inference: float time / chip time)\n")
    header = ["model", "T / T+D", "float reference", "simulator, step", "simulator, layer", "plan build"]
    header += ["peak MiB float / step / layer"] if args.memory else []
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for nir in sorted(ZOO.glob("*.nir")):
        print(measure(nir, manifest[nir.stem]["time_steps"], args), flush=True)


if __name__ == "__main__":
    main()
