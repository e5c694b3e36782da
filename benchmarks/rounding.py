"""What each rounding lever buys on the zoo (expand strategy, whole digits test split).

Table 1, per model and variant: chip minus float accuracy, prediction agreement, and the mean
spike agreement over the spiking layers (a low-noise measure: millions of spikes, where 450
predictions move by 0.22 points an image). Variants: no calibration; ``--calib`` (training
split) with nearest rounding; with compensated rounding (the default); and, for comparison, the
default with one 8-bit bias group instead of a coarse and a fine one (``bias.BIAS_TERMS``).
Table 2: SEW-AND with calibration sets of several sizes, nearest vs compensated rounding.
Table 3: the float model's own sensitivity, no chip involved: SEW-AND in the float reference with
every weight map rounded to b bits (per map and sign, like the chip's groups), prediction agreement
with the unrounded model.

Run: .venv/bin/python benchmarks/rounding.py   (about 15 minutes on 2 cores; results in the README)
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import nir
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # models/ lives beside the package
from models.data import test_set, train_set  # noqa: E402
import snn2chip  # noqa: E402
from snn2chip import compiler  # noqa: E402
from snn2chip.verify import fidelity  # noqa: E402
from snn2chip.passes import bias, quantize  # noqa: E402
from snn2chip.frontend import reference  # noqa: E402

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"
MODELS = ["sew_add", "sew_and", "sew_iand", "ms_resnet", "spiking_resnet"]
MANIFEST = json.loads((ZOO / "zoo.json").read_text())["models"]


def measure(name: str, calibration, rounding: str = "compensated", bias_terms: int = 2) -> str:
    """Markdown cells: chip - float accuracy, agreement, mean spike agreement."""
    x, y = (np.asarray(a) for a in test_set())
    steps = MANIFEST[name]["time_steps"]
    options = quantize.Options(input_bits=6, input_scale=16, steps=steps, calibration=calibration, rounding=rounding)
    default_terms, bias.BIAS_TERMS = bias.BIAS_TERMS, bias_terms
    try:
        graph, net, _ = compiler.compile_file(ZOO / f"{name}.nir", options=options)
    finally:
        bias.BIAS_TERMS = default_terms
    fid = fidelity.fidelity(graph, net, x, steps, labels=y)
    spikes = np.mean([layer.spike_agreement for layer in fid.layers])
    return (f"{100 * (fid.chip_accuracy - fid.float_accuracy):+.2f} / {100 * fid.output_agreement:.2f} % / "
            f"{100 * spikes:.2f} %")


def _rounded(w: np.ndarray, bits: int) -> np.ndarray:
    """``w`` with each sign's magnitudes rounded to ``bits`` bits of its largest magnitude."""
    out = np.zeros(w.shape)
    for sign in (w > 0, w < 0):
        if sign.any():
            step = np.abs(w[sign]).max() / (2**bits - 1)
            out[sign] = np.round(w[sign] / step) * step
    return out.astype(w.dtype)


def sensitivity(name: str = "sew_and", bits=(8, 9, 10, 12)) -> None:
    """Table 3: float predictions with rounded weight maps vs unrounded."""
    x = np.asarray(test_set()[0])
    steps = MANIFEST[name]["time_steps"]
    graph = snn2chip.load(ZOO / f"{name}.nir")
    readout = graph.predecessors(graph.outputs[0])[0]

    def predict(g):
        return reference.run(g, x, steps, record=[readout])[readout][:, -1].reshape(len(x), -1).argmax(1)

    base = predict(graph)
    print(f"\n{name}, float model with weight maps rounded to b bits: prediction agreement with the unrounded model\n")
    print("| bits | " + " | ".join(str(b) for b in bits) + " |")
    print("|---|" + "---|" * len(bits))
    cells = []
    for b in bits:
        nodes = {k: dataclasses.replace(n, weight=_rounded(np.asarray(n.weight), b))
                 if isinstance(n, (nir.Conv2d, nir.Affine, nir.Linear)) else n for k, n in graph.nodes.items()}
        cells.append(f"{100 * np.mean(predict(dataclasses.replace(graph, nodes=nodes)) == base):.2f} %")
    print("| agreement | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    train = np.asarray(train_set()[0])
    variants = {
        "no calibration": dict(calibration=None),
        "`--calib`, nearest": dict(calibration=train, rounding="nearest"),
        "`--calib`, compensated (default)": dict(calibration=train),
        "default, one bias group": dict(calibration=train, bias_terms=1),
    }
    print("chip − float accuracy (points) / prediction agreement / mean spike agreement\n")
    print("| variant | " + " | ".join(MODELS) + " |")
    print("|---|" + "---|" * len(MODELS))
    for label, kwargs in variants.items():
        print(f"| {label} | " + " | ".join(measure(name, **kwargs) for name in MODELS) + " |", flush=True)
    shipped = np.load(ZOO / "resnet_ann_calib.npy")
    sets = {"64 shipped": shipped, "200": train[:200], "500": train[:500], "1,000": train[:1000],
            f"all {len(train):,}": train}
    print("\nsew_and, calibration set vs rounding (same cells)\n")
    print("| calibration images | nearest | compensated |")
    print("|---|---|---|")
    for label, calibration in sets.items():
        cells = [measure("sew_and", calibration, rounding) for rounding in ("nearest", "compensated")]
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    sensitivity()


if __name__ == "__main__":
    main()
