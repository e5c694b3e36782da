"""ANN→SNN conversion (S-ResNet) of the zoo's ReLU ResNet: test accuracy versus time steps T.

Columns: the ANN (onnxruntime), the converted SNN in the float reference, and compiled for Loihi 2
on the bit-accurate simulator (inputs ``--input-bits 6 --input-scale 16``: image/16 as exact
payloads; calibrated, i.e. compensated rounding and bias correction, on the calibration samples),
for T in 8..256, with and without shortcut normalisation and compensation. The float columns come from one 256-step run per variant
(states start at 0 and the input is constant, so the read-out at step T-1 is the T-step result);
the chip is compiled per T (the read-out's range depends on T) and run by ``fidelity.predictions``.

Run: .venv/bin/python benchmarks/conversion.py [--out build/conversion] [--no-chip]
Writes OUT/table.md (also printed), OUT/accuracy_vs_steps.png and the converted NIR files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # models/ lives beside the package
from models.data import test_set  # noqa: E402
from snn2chip import compiler, convert, progress  # noqa: E402
from snn2chip.verify import fidelity  # noqa: E402
from snn2chip.frontend import reference  # noqa: E402
from snn2chip.report.plots import _pyplot  # noqa: E402
from snn2chip.passes.quantize import Options  # noqa: E402

ANN = ROOT / "models" / "zoo" / "resnet_ann.onnx"
CALIB = ROOT / "models" / "zoo" / "resnet_ann_calib.npy"
STEPS = (8, 16, 32, 64, 128, 256)
COMPENSATION = 1.05
CHUNK = 50  # samples per chip run
#: (label, file stem, shortcut normalisation, compensation)
VARIANTS = (
    ("S-ResNet (shortcut norm.)", "snn", True, 1.0),
    (f"+ compensation {COMPENSATION:g}", "snn_comp", True, COMPENSATION),
    ("no shortcut norm.", "snn_noshort", False, 1.0),
    (f"no shortcut norm. + comp. {COMPENSATION:g}", "snn_noshort_comp", False, COMPENSATION),
)


def smallest_within(acc: dict[int, float], target: float, points: float = 1.0) -> str:
    ok = [t for t in STEPS if t in acc and acc[t] >= target - points / 100]
    return str(min(ok)) if ok else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "conversion"))
    parser.add_argument("--no-chip", action="store_true", help="float columns only")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = (np.asarray(a) for a in test_set())
    calib = np.load(CALIB)
    ann_acc = float((convert.ann_logits(ANN, x).argmax(1) == y).mean())
    show = sys.stderr.isatty()
    rows = []
    for label, stem, norm, comp in VARIANTS:
        result = convert.convert(ANN, calib, compensation=comp, shortcut_norm=norm)
        path = out / f"{stem}.nir"
        convert.write(result.graph, path)
        readout = reference.run(convert.graph_of(result), x, max(STEPS), record=["readout"])["readout"]
        floats = {t: float((readout[:, t - 1].argmax(1) == y).mean()) for t in STEPS}
        rows.append((label, "float", floats))
        if not args.no_chip:
            chips = {}
            for t in progress.bar(STEPS, f"chip {stem}", "T", show):
                options = Options(input_bits=6, input_scale=16, steps=t, calibration=calib)
                graph, net, _ = compiler.compile_file(path, "loihi2", options)
                pred = np.concatenate([fidelity.predictions(graph, net, x[i : i + CHUNK], t)[3]
                                       for i in range(0, len(x), CHUNK)])  # chunks: it records every layer
                chips[t] = float((pred == y).mean())
            rows.append((label, "chip (simulator)", chips))
        print(f"done: {label}", file=sys.stderr, flush=True)
    lines = [f"ANN (onnxruntime): {100 * ann_acc:.2f} % on the {len(y)} test images.", "",
             "| variant | executor | " + " | ".join(f"T={t}" for t in STEPS) + " | smallest T within 1 point |",
             "|---|---|" + "---|" * len(STEPS) + "---|"]
    for label, where, acc in rows:
        cells = " | ".join(f"{100 * acc[t]:.2f} %" for t in STEPS)
        lines.append(f"| {label} | {where} | {cells} | {smallest_within(acc, ann_acc)} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    print(table)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, where, acc in rows:
        ax.plot(STEPS, [100 * acc[t] for t in STEPS], marker="o", linestyle="-" if where == "float" else "--",
                label=f"{label}, {where}")
    ax.axhline(100 * ann_acc, color="black", linewidth=1, label="ANN")
    ax.set_xscale("log", base=2)
    ax.set_xticks(STEPS, [str(t) for t in STEPS])
    ax.set_xlabel("time steps T")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Converted zoo ResNet (digits): accuracy vs time steps")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_steps.png", dpi=120)
    print(f"wrote {out / 'table.md'} and {out / 'accuracy_vs_steps.png'}")


if __name__ == "__main__":
    main()
