"""Throughput of the float reference executor on the sinabs N-MNIST CNN fixture.

Run: .venv/bin/python benchmarks/reference_speed.py [--samples 300] [--steps 30]
Prints sample-steps per second for float32 and float64 at a few batch sizes; results are
written down in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import snn2chip

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "cnn_sinabs.nir"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    graph = snn2chip.load(FIXTURE)
    x = (np.random.default_rng(0).random((args.samples, args.steps, 2, 34, 34)) < 0.1).astype(np.float32)
    print(f"{FIXTURE.name}: {args.samples} samples x {args.steps} steps, torch threads {torch.get_num_threads()}")
    for dtype in (torch.float32, torch.float64):
        for batch in (32, 100, args.samples):
            start = time.perf_counter()
            snn2chip.run(graph, x, record=["output"], dtype=dtype, batch_size=batch)
            seconds = time.perf_counter() - start
            rate = args.samples * args.steps / seconds
            print(f"  {str(dtype):14s} batch {batch:4d}: {seconds:6.2f} s  {rate:9.0f} sample-steps/s")


if __name__ == "__main__":
    main()
