"""MS-ResNet synapse memory against depth: *expand* grows quadratically, *relay* linearly.

A single-stage MS-ResNet (8 channels, 8x8 input, random weights, BatchNorm folded) with 5, 10
and 20 blocks, compiled with both shortcut strategies. Under *expand* the k-th block's first
neuron receives one convolution per earlier block (the membrane stream flattened); under *relay*
a graded relay per block carries the stream once.

Run: .venv/bin/python benchmarks/ms_depth.py   (prints a Markdown table; results in the README)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # models/ lives beside the package
from models.export import export  # noqa: E402
from models.layers import fold_bn  # noqa: E402
from models.ms_resnet import ms_resnet_small  # noqa: E402
from snn2chip import compiler  # noqa: E402
from snn2chip.chip.totals import totals  # noqa: E402
from snn2chip.passes.quantize import Options  # noqa: E402


def main() -> None:
    print("| blocks | strategy | populations | neurons | synapse groups | synapses | weight bytes | D |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for blocks in (5, 10, 20):
            with torch.device("meta"):
                model = fold_bn(ms_resnet_small(4, layers=(blocks,), widths=(8,)), inplace=True)
            path = Path(tmp) / f"ms{blocks}.nir"
            export(model, path, metadata={"generator": "benchmarks/ms_depth.py"}, rng=np.random.default_rng(0), stream=True)
            for strategy in ("expand", "relay"):
                _, net, _ = compiler.compile_file(path, options=Options(input_bits=6, input_scale=16, strategy=strategy))
                t = totals(net)
                print(f"| {blocks} | {strategy} | {t.populations} | {t.neurons:,} | {t.synapse_groups} | "
                      f"{t.synapses:,} | {t.weight_memory_bytes:,} | {net.pipeline_depth} |", flush=True)


if __name__ == "__main__":
    main()
