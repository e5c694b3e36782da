"""What each model costs on chip, by the command line: neurons of the NIR model and on chip by role,
synapses, cores against both lower bounds, and the compile's wall time and peak resident memory.

    .venv/bin/python benchmarks/footprint.py [--only zoo|scale|resnet18] [--out-dir out/footprint]

One ``snn2chip compile`` process per row, timed from the outside (wall clock; peak RSS of that
process from ``wait4``), its ``report.json`` read back. Rows:

- zoo: ``models/zoo/*.nir`` on ``loihi2`` (``--input-bits 6 --input-scale 16 --steps T``, T from
  ``models/zoo/zoo.json``) and on ``loihi1`` (binary input spikes, ``--steps T``); calibration: the
  set the model names; strategy auto (Loihi 1: expand, it has no graded spikes);
- scale: ``models.scale`` graphs (random weights, binary inputs; strategy auto), built into
  ``out/scale/`` with ``python -m models.scale NAME`` when missing;
- resnet18: torchvision ResNet-18 at 64x64 (``models/torchvision_resnet.py``, seed 0), converted on
  16 calibration images (``snn2chip convert --steps 32``) when ``out/scale/resnet18_64.nir`` is
  missing, compiled with ``--input-bits 6 --input-scale 16 --steps 32``.

Prints a Markdown table (the README's "Footprint on chip").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "models" / "zoo"
SCALE = ROOT / "out" / "scale"
ZOO_MODELS = ["sew_add", "sew_and", "sew_iand", "ms_resnet", "spiking_resnet"]
SCALE_MODELS = ["sew_resnet18", "sew_resnet50", "sew_resnet152", "ms_resnet18", "ms_resnet104", "ms_resnet482"]
CLI = [sys.executable, "-m", "snn2chip"]


def timed(command: list, **kwargs) -> tuple[float, float]:
    """Run ``command``; its wall time (s) and peak resident set (GiB). Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in command], cwd=ROOT, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"failed ({code}): {' '.join(map(str, command))}")
    return time.perf_counter() - start, usage.ru_maxrss / 2**20


def resnet18() -> Path:
    """The converted ResNet-18 at 64x64, made once."""
    nir_path = SCALE / "resnet18_64.nir"
    if not nir_path.exists():
        work = SCALE / "resnet18_64"
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "models.torchvision_resnet", work / "r18.onnx", "--size", "64",
                        "--calib", work / "calib.npy", "--calib-samples", "16"], cwd=ROOT, check=True, stdout=sys.stderr)
        subprocess.run([*CLI, "convert", work / "r18.onnx", "--calib", work / "calib.npy", "--steps", "32",
                        "-o", nir_path], cwd=ROOT, check=True, stdout=sys.stderr)
    return nir_path


def scale(name: str) -> Path:
    """Scale model ``name``'s NIR file, built when missing."""
    path = SCALE / f"{name}.nir"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "models.scale", name, "--out-dir", SCALE], cwd=ROOT, check=True, stdout=sys.stderr)
    return path


def rows(only: str | None):
    """(label, target, model path, extra compile arguments) per row."""
    if only in (None, "zoo"):
        manifest = json.loads((ZOO / "zoo.json").read_text())["models"]
        for name in ZOO_MODELS:
            steps = ["--steps", manifest[name]["time_steps"]]
            yield name, "loihi2", ZOO / f"{name}.nir", ["--input-bits", 6, "--input-scale", 16, *steps]
            yield name, "loihi1", ZOO / f"{name}.nir", steps  # binary input spikes: Loihi 1 has no graded ones
    if only in (None, "scale"):
        for name in SCALE_MODELS:
            yield name, "loihi2", scale(name), []
    if only in (None, "resnet18"):
        yield "resnet18 (converted, 64x64)", "loihi2", resnet18(), ["--input-bits", 6, "--input-scale", 16,
                                                                     "--steps", 32]


def line(label: str, target: str, report: dict, seconds: float, gib: float) -> str:
    roles = report["neurons_by_role"]
    part = report["partition"]
    volume, layer = part["bounds"]["volume"]["cores"], part["bounds"]["one_layer_per_core"]["cores"]
    model = report["model_neurons"]
    return (f"| {label} | {target} | {report['strategy']} | {model:,} | {report['neurons']:,} "
            f"({report['neurons'] / model:.2f}×) | {roles.get('relay', 0):,} | {roles.get('delay', 0):,} | "
            f"{roles.get('pool', 0):,} | "
            f"{report['synapses']:,} | {part['cores']:,} | {volume:,} ({part['cores'] / volume:.3f}) | "
            f"{layer:,} ({part['cores'] / layer:.3f}) | {seconds:.1f} s | {gib:.2f} GiB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("zoo", "scale", "resnet18"))
    parser.add_argument("--out-dir", type=Path, default=ROOT / "out" / "footprint")
    args = parser.parse_args()
    print("| model | target | strategy | model neurons | chip neurons | relay | delay | pool | synapses | cores | "
          "volume bound (cores/bound) | one-layer bound (cores/bound) | compile | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, target, path, extra in rows(args.only):
        build = args.out_dir / f"{path.stem}-{target}"
        shutil.rmtree(build, ignore_errors=True)
        seconds, gib = timed([*CLI, "compile", path, "--target", target, "-o", build, *extra],
                             stdout=subprocess.DEVNULL)
        report = json.loads((build / "report.json").read_text())
        print(line(label, target, report, seconds, gib), flush=True)


if __name__ == "__main__":
    main()
