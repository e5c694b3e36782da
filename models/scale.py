"""Scale generators: NIR graphs of full-size residual SNNs with random weights, for compile-scale tests.

The networks are the zoo's own definitions (:mod:`models.sew_resnet`, :mod:`models.ms_resnet`) built
on PyTorch's ``meta`` device (shapes only, no memory), BatchNorm-folded, and exported by the zoo's
exporter (:mod:`models.export`) in streaming mode: each node's weights are drawn (He-normal float32,
``std = sqrt(2 / fan_in)``, zero biases, from ``numpy.random.default_rng(seed)``) and written to the
``.nir`` file as soon as the node is built, so peak memory is about one layer. Neuron parameter
arrays are constant and written gzip-compressed; weights are written uncompressed (random floats do
not compress, and compressing them would dominate the time).

============== ================================================== ======== =====
name           network                                            input    depth
============== ================================================== ======== =====
sew_resnet50   SEW-ResNet-50 (bottleneck 3/4/6/3), ADD            3x224x224   50
sew_resnet101  SEW-ResNet-101 (bottleneck 3/4/23/3), ADD          3x224x224  101
sew_resnet152  SEW-ResNet-152 (bottleneck 3/8/36/3), ADD          3x224x224  152
ms_resnet104   MS-ResNet-104 (3/8/32/8, avgpool downsample)       3x224x224  104
ms_resnet482   MS-ResNet CIFAR 6n+2 with n = 80                   3x32x32    482
============== ================================================== ======== =====

Command line (from the repository root)::

    python -m models.scale [NAME ...] [--out-dir out/scale] [--check] [--width W] [--connect ADD|AND|IAND]

writes ``NAME.nir`` files and prints build time, peak memory (RSS of this process so far; with
``--trace-memory`` also the numpy/Python peak of the build), file size and parameters; ``--check``
also loads each file with ``snn2chip.load`` and summarises it as ``snn2chip inspect`` does (nodes,
edges, neurons). Build one model per process to read its own peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

from models.export import export
from models.layers import fold_bn
from models.ms_resnet import ms_resnet, ms_resnet_cifar
from models.sew_resnet import sew_resnet

STEPS = 4
SCALE_MODELS = {
    "sew_resnet50": ("SEW-ResNet-50", 224),
    "sew_resnet101": ("SEW-ResNet-101", 224),
    "sew_resnet152": ("SEW-ResNet-152", 224),
    "ms_resnet104": ("MS-ResNet-104", 224),
    "ms_resnet482": ("MS-ResNet-482 (CIFAR, n = 80)", 32),
}


def build_meta(name: str, *, width: int | None = None, connect: str = "ADD") -> torch.nn.Module:
    """The folded network ``name`` on the meta device (no weights allocated).

    ``width`` overrides the base width (64 for the ImageNet models, 16 for the CIFAR one; the other
    stages scale with it), e.g. to build the same topology cheaply.
    """
    if name not in SCALE_MODELS:
        raise ValueError(f"unknown scale model {name!r}; choose from {', '.join(SCALE_MODELS)}")
    with torch.device("meta"):
        if name.startswith("sew_resnet"):
            model = sew_resnet(int(name[len("sew_resnet"):]), connect, STEPS, width=width or 64)
        elif name == "ms_resnet104":
            model = ms_resnet(104, STEPS, width=width or 64)
        else:
            w = width or 16
            model = ms_resnet_cifar(80, STEPS, widths=(w, 2 * w, 4 * w))
    return fold_bn(model, inplace=True)


def generate(name: str, path: str | Path, *, seed: int = 0, width: int | None = None, connect: str = "ADD",
             residual_nodes: bool | None = None, trace_memory: bool = False) -> dict:
    """Write the random-weight NIR graph ``name`` to ``path``; returns build statistics.

    ``trace_memory`` measures the build's peak of numpy and Python allocations with tracemalloc
    (``traced_peak_bytes``; HDF5's own buffers are not included); it slows the build down.
    """
    start = time.perf_counter()
    if trace_memory:
        tracemalloc.start()
    model = build_meta(name, width=width, connect=connect)
    params = sum(p.numel() for p in model.parameters())
    metadata = {
        "model": name,
        "generator": "models.scale",
        "weights": f"random: He-normal float32 (std sqrt(2/fan_in)), zero biases, numpy default_rng({seed})",
        "time_steps": STEPS,
    }
    export(model, path, metadata=metadata, rng=np.random.default_rng(seed), residual_nodes=residual_nodes, stream=True)
    peak = None
    if trace_memory:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {
        "name": name,
        "path": str(path),
        "seconds": time.perf_counter() - start,
        "traced_peak_bytes": peak,
        "file_bytes": Path(path).stat().st_size,
        "parameters": params,
    }


def max_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.scale", description="Build random-weight scale NIR graphs.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"models to build (default all: {', '.join(SCALE_MODELS)})")
    parser.add_argument("--out-dir", type=Path, default=Path("out/scale"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, help="base width override (smaller = same topology, fewer weights)")
    parser.add_argument("--connect", default="ADD", choices=["ADD", "AND", "IAND"], help="SEW connect function")
    parser.add_argument("--residual-nodes", action=argparse.BooleanOptionalAction, default=None,
                        help="identity nodes for residual sums (default: the family's choice: MS yes, SEW ADD no)")
    parser.add_argument("--check", action="store_true", help="load each file with snn2chip and summarise it")
    parser.add_argument("--trace-memory", action="store_true", help="also measure the build's numpy/Python peak (slower)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in SCALE_MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(SCALE_MODELS)}")
    torch.set_num_threads(2)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name in args.names or list(SCALE_MODELS):
        stats = generate(name, args.out_dir / f"{name}.nir", seed=args.seed, width=args.width, connect=args.connect,
                         residual_nodes=args.residual_nodes, trace_memory=args.trace_memory)
        traced = "" if stats["traced_peak_bytes"] is None else f"traced peak {stats['traced_peak_bytes'] / 2**20:.0f} MiB, "
        line = (f"{name}: built in {stats['seconds']:.1f} s, {traced}process peak RSS {max_rss_bytes() / 2**20:.0f} MiB, "
                f"file {stats['file_bytes'] / 2**20:.0f} MiB, {stats['parameters']:,} parameters")
        if args.check:
            import snn2chip
            from snn2chip.frontend.summary import summarize

            t = time.perf_counter()
            totals = summarize(snn2chip.load(stats["path"]))["totals"]
            line += (f"; snn2chip load+inspect {time.perf_counter() - t:.1f} s: {totals['nodes']:,} nodes, "
                     f"{totals['edges']:,} edges, {totals['neurons']:,} neurons, {totals['params']:,} NIR values "
                     f"(process peak RSS now {max_rss_bytes() / 2**20:.0f} MiB)")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
