"""Simulator vs Lava (and the float reference) throughput on the same compiled artifact (the sinabs N-MNIST CNN), outputs asserted equal.

Run: .venv/bin/python benchmarks/sim_vs_lava.py [--batch 64] [--steps 30] [--lava-samples 2]
Lava runs one sample at a time (its CPU runtime has no batch), so its sample-steps per second
are measured on a few samples (network build and start-up included, as a user pays them) and
the simulator on a batch. Results are written down in benchmarks/README.md and the README.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import snn2chip
from snn2chip.backends.lava import run_lava
from snn2chip.passes.quantize import compile_graph
from snn2chip.backends.simulator import simulate
from snn2chip.frontend import reference

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "cnn_sinabs.nir"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lava-samples", type=int, default=2)
    args = parser.parse_args()
    graph = snn2chip.load(FIXTURE)
    net, _ = compile_graph(graph)
    x = (np.random.default_rng(0).random((args.batch, args.steps, 2, 34, 34)) < 0.1).astype(np.float32)
    record = [p for p, pop in net.populations.items() if pop.kind == "lif"]
    simulate(net, x[:2], record=record)  # warm-up
    start = time.perf_counter()
    sim = simulate(net, x, record=record)
    sim_rate = args.batch * args.steps / (time.perf_counter() - start)
    reference.run(graph, x[:2])  # warm-up
    start = time.perf_counter()
    reference.run(graph, x)
    float_rate = args.batch * args.steps / (time.perf_counter() - start)
    start = time.perf_counter()
    lava = run_lava(net, x[: args.lava_samples], record=record)
    lava_rate = args.lava_samples * args.steps / (time.perf_counter() - start)
    for name in record:
        np.testing.assert_array_equal(sim[name][: args.lava_samples], lava[name], err_msg=name)
    seconds = []
    for repeat in (1, 3):  # one sample for T and 3T steps: the difference is Lava's cost of 2T running steps
        start = time.perf_counter()
        run_lava(net, np.concatenate([x[:1]] * repeat, axis=1), record=record[-1:])
        seconds.append(time.perf_counter() - start)
    marginal = 2 * args.steps / (seconds[1] - seconds[0])
    print(f"{FIXTURE.name}: {args.steps} steps; outputs of {len(record)} populations equal on {args.lava_samples} samples")
    print(f"  simulator, batch {args.batch}: {sim_rate:10.1f} sample-steps/s")
    print(f"  float reference, batch {args.batch}: {float_rate:10.1f} sample-steps/s (simulator {sim_rate / float_rate:.2f}x)")
    print(f"  Lava (fixed_pt, one sample at a time, build and start-up included): {lava_rate:10.1f} sample-steps/s")
    print(f"  Lava per extra step once running: {marginal:10.1f} steps/s")
    print(f"  ratio: {sim_rate / lava_rate:.0f}x (start-up included), {sim_rate / marginal:.0f}x (Lava's running rate)")


if __name__ == "__main__":
    main()
