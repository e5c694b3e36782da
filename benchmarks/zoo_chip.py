"""The residual zoo on chip: accuracy and resources per model and shortcut strategy, and what
switching latency alignment off costs. Whole digits test split, compiled simulator; calibrated
on the set each model's metadata names (64 training images, what ``verify`` does with no flags),
mixed-sign weights split (the default). "chip / model": neurons on chip per neuron of the NIR model.

Run: .venv/bin/python benchmarks/zoo_chip.py   (prints a Markdown table; results in the README)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # models/ lives beside the package
from models.data import test_set  # noqa: E402
from snn2chip import compiler  # noqa: E402
from snn2chip.frontend import summary  # noqa: E402
from snn2chip.frontend.read import file_metadata  # noqa: E402
from snn2chip.verify import data  # noqa: E402
from snn2chip.chip.totals import totals  # noqa: E402
from snn2chip.verify import fidelity  # noqa: E402
from snn2chip.passes.quantize import Options  # noqa: E402

ZOO = Path(__file__).resolve().parents[1] / "models" / "zoo"
MODELS = ["sew_add", "sew_and", "sew_iand", "ms_resnet", "spiking_resnet"]


def main() -> None:
    manifest = json.loads((ZOO / "zoo.json").read_text())["models"]
    x, y = (np.asarray(a) for a in test_set())
    print("| model | strategy | float acc. | chip acc. | agreement | neurons | chip / model | synapses | weight bytes | D |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        steps = manifest[name]["time_steps"]
        calibration = data.load_samples(str(ZOO / file_metadata(ZOO / f"{name}.nir")["calibration"]))
        for strategy, align in (("expand", True), ("relay", True), ("expand", False)):
            options = Options(input_bits=6, input_scale=16, steps=steps, strategy=strategy, align=align,
                              calibration=calibration)
            graph, net, _ = compiler.compile_file(ZOO / f"{name}.nir", options=options)
            fid = fidelity.fidelity(graph, net, x, steps, labels=y)
            t = totals(net)
            label = strategy if align else "expand, not aligned"
            print(f"| {name} | {label} | {100 * fid.float_accuracy:.2f} % | {100 * fid.chip_accuracy:.2f} % | "
                  f"{100 * fid.output_agreement:.2f} % | {t.neurons:,} | {t.neurons / summary.model_neurons(graph):.2f}× | "
                  f"{t.synapses:,} | "
                  f"{t.weight_memory_bytes:,} | {net.pipeline_depth} |", flush=True)


if __name__ == "__main__":
    main()
