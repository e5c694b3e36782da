"""spikingjelly 2.0 networks exported by ``snn2chip.from_spikingjelly``: the NIR float reference
against spikingjelly's own forward pass, every spiking layer at every step, and the head.

The networks, weights and inputs of ``tests/test_spikingjelly.py`` (spikingjelly's constructors,
Kaiming-initialised convolutions, random BatchNorm statistics, 3x32x32 input currents, 4 steps,
2 samples). Per network and step mode: the spiking layers compared and their spikes, whether all
are equal and the largest head difference, against the model with BatchNorm folded as the export
folds it (``fold_batchnorm``) and against the unfolded model; with ``--chip``, also the compile
for Loihi 2 (3x16x16, relay strategy) and the simulator's spike agreement with the float reference
on ``random:2`` inputs.

    /tmp/sjvenv/bin/python benchmarks/spikingjelly_exactness.py [--chip]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from snn2chip import compiler, verify  # noqa: E402
from snn2chip.errors import ModelError  # noqa: E402
from snn2chip.importers.sj_check import compare  # noqa: E402
from snn2chip.importers.spikingjelly import fold_batchnorm, from_spikingjelly  # noqa: E402
from snn2chip.passes.quantize import Options  # noqa: E402
from snn2chip.verify import data  # noqa: E402
from tests.test_spikingjelly import CASES, STEPS, build, example, inputs  # noqa: E402

CONNECT = {"add": "ADD", "and": "AND", "iand": "IAND"}


def exactness(name: str, mode: str, folder: Path) -> list[str]:
    model, x = build(name, mode), inputs()
    path = folder / f"{name}-{mode}.nir"
    from_spikingjelly(model, example(x, mode), path)
    folded = compare(fold_batchnorm(model, example(x, mode)), path, x)
    unfolded = compare(model, path, x)
    spikes = sum(n.spikes for n in folded.spiking)
    differing = sum(n.mismatches for n in unfolded.spiking)
    equal = "yes" if folded.spikes_equal else f"no ({sum(n.mismatches for n in folded.spiking):,} differ)"
    return [f"{len(folded.spiking)}", f"{spikes:,} of {sum(n.values for n in folded.spiking):,}", equal,
            f"{folded.head_difference:.1e}", "equal" if differing == 0 else f"{differing:,} differ",
            f"{unfolded.head_difference:.1e}"]


def chip(name: str, folder: Path) -> list[str]:
    mode = "m" if name == "ms_resnet18" else "s"
    x = inputs(16)
    path = folder / f"{name}-16.nir"
    from_spikingjelly(build(name, mode), example(x, mode), path)
    start = time.perf_counter()
    try:
        graph, net, report = compiler.compile_file(path, "loihi2", Options(steps=STEPS, strategy="relay"))
    except ModelError as e:
        return [f"not compiled: {e.problem}", "", ""]
    seconds = time.perf_counter() - start
    dataset = data.load("random:2", graph.out_shapes["input"])
    result = verify.run(graph, net, dataset, verify.settings(graph, dataset, "random:2", STEPS, None, None))
    agreement = np.mean([layer.spike_agreement for layer in result.report.layers])
    neurons = sum(p.size for p in net.populations.values() if p.kind != "input")
    return [f"{neurons:,} neurons, D = {net.pipeline_depth}", f"{seconds:.1f} s", f"{100 * agreement:.2f} %"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chip", action="store_true", help="also compile for Loihi 2 and verify on the simulator")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    header = ["model", "connect", "step mode", "spiking layers", "spikes", "spikes equal (BN folded)",
              "max head diff.", "unfolded BN: spikes", "unfolded: max head diff."]
    if args.chip:
        header += ["on Loihi 2 (3x16x16, relay)", "compile", "mean spike agreement, chip vs float"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name, mode in CASES:
            connect = CONNECT.get(name.rsplit("_", 1)[-1], "")
            row = [name.rsplit("_", 1)[0] if connect else name, connect or "–", mode, *exactness(name, mode, Path(tmp))]
            if args.chip:
                row += chip(name, Path(tmp)) if mode == ("m" if name == "ms_resnet18" else "s") else ["", "", ""]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
