"""verify's shards on a local Ray cluster against one process: speedup and identical reports.

Run: .venv/bin/python benchmarks/ray_verify.py [--model out/scale/sew_resnet18_32.nir] [--samples 256]
     [--steps 4] [--shard-size 16] [--workers 2]

On one compiled network (a scale model, made with ``python -m models.scale`` when missing) and
the same random binary inputs, in this process and side by side:

1. ``one process``: :func:`snn2chip.verify.run` with its default executor, torch with its
   default threads (both cores here) — what ``verify`` without ``--ray`` does;
2. ``one process, 1 thread``: the same with ``torch.set_num_threads(1)``, the work one core does;
3. ``ray``: a local Ray instance of ``--workers`` CPUs (each worker process one torch thread, Ray's
   default); its start-up (``ray.init``) is timed apart, and run twice: ``ray, first run``
   includes each worker building the network once, ``ray, warm`` runs again on warm workers.

Times are the wall seconds of ``verify.run`` (the shards; compile not included). The reports
are asserted equal apart from ``execution``. Results are written in benchmarks/README.md and the
README ("Verifying on a cluster").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from snn2chip import compiler, frontend, verify
from snn2chip.passes.quantize import Options
from snn2chip.verify import cluster, data

ROOT = Path(__file__).resolve().parents[1]


def _timed(run) -> tuple[float, verify.Result]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "out" / "scale" / "sew_resnet18_32.nir")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.model.exists():
        subprocess.run([sys.executable, "-m", "models.scale", args.model.stem, "--out-dir", str(args.model.parent)],
                       cwd=ROOT, check=True)
    graph = frontend.load(args.model)
    dataset = data.load(f"random:{args.samples}", graph.out_shapes[graph.inputs[0]])
    setup = verify.settings(graph, dataset, f"random:{args.samples}", args.steps, None, None)
    graph, net, _ = compiler.compile_file(args.model, "loihi2", Options(steps=args.steps))
    run = lambda **kw: verify.run(graph, net, dataset, setup, shard_size=args.shard_size, **kw)

    rows = [("one process", *_timed(run))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows.append(("one process, 1 thread", *_timed(run)))
    torch.set_num_threads(threads)
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    startup = time.perf_counter() - started
    with cluster.connect(None) as executor:
        rows.append(("ray, first run", *_timed(lambda: run(executor=executor))))
        rows.append(("ray, warm", *_timed(lambda: run(executor=executor))))
    ray.shutdown()

    strip = lambda r: {k: v for k, v in r.report.to_json().items() if k != "execution"}
    for name, _, result in rows[1:]:
        assert strip(result) == strip(rows[0][2]), f"{name}: the report differs from one process's"
    base = rows[0][1]
    neurons = sum(p.size for p in net.populations.values() if p.kind != "input")
    print(f"{args.model.name}: {neurons:,} neurons on chip, {args.samples} samples x {args.steps} steps, "
          f"shards of {args.shard_size}; torch threads {threads}; reports equal apart from 'execution'")
    print(f"  ray.init with {args.workers} CPUs: {startup:.1f} s (not in the times below)")
    print(f"  {'run':26}{'seconds':>9}{'samples/s':>11}{'speedup':>9}")
    for name, seconds, _ in rows:
        print(f"  {name:26}{seconds:9.1f}{args.samples / seconds:11.2f}{base / seconds:8.2f}x")


if __name__ == "__main__":
    main()
