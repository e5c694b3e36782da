"""Scale generators: NIR graphs of full-size residual SNNs with random weights, for tests at scale.

The networks are the zoo's own definitions (:mod:`models.sew_resnet`, :mod:`models.ms_resnet`) built
on PyTorch's ``meta`` device (shapes only), BatchNorm-folded, with He-normal float32 weights
(``std = sqrt(2 / fan_in)``, zero biases, from ``numpy.random.default_rng(seed)``).

By default they are **activity-balanced** (:mod:`models.balance`): the weights are materialised,
the network runs once on random binary inputs (those of ``snn2chip verify --data random:N``) and
every spiking layer gets the threshold at which it fires 15 % of the time, so that a verification
at scale compares real activity. ``--no-balance`` instead streams the graph out as it is built
(weights drawn and written node by node, peak memory about one layer; the compile-scale
benchmarks use these), with unit thresholds, under which deep layers go silent or saturate.

================== ================================================== ======== =====
name               network                                            input    depth
================== ================================================== ======== =====
sew_resnet18       SEW-ResNet-18 (basic 2/2/2/2), ADD                 3x224x224   18
sew_resnet34       SEW-ResNet-34 (basic 3/4/6/3), ADD                 3x224x224   34
sew_resnet50       SEW-ResNet-50 (bottleneck 3/4/6/3), ADD            3x224x224   50
sew_resnet101      SEW-ResNet-101 (bottleneck 3/4/23/3), ADD          3x224x224  101
sew_resnet152      SEW-ResNet-152 (bottleneck 3/8/36/3), ADD          3x224x224  152
ms_resnet18        MS-ResNet-18 (conv7x7 stem, 2/2/2/2)               3x224x224   18
ms_resnet34        MS-ResNet-34 (conv7x7 stem, 3/4/6/3)               3x224x224   34
ms_resnet104       MS-ResNet-104 (3/8/32/8, avgpool downsample)       3x224x224  104
sew_resnet18_32    SEW-ResNet-18, CIFAR form: conv3x3 stem, no pool   3x32x32     18
sew_resnet34_32    SEW-ResNet-34, CIFAR form                          3x32x32     34
ms_resnet18_32     MS-ResNet-18, CIFAR form: conv3x3 stem             3x32x32     18
ms_resnet34_32     MS-ResNet-34, CIFAR form                           3x32x32     34
ms_resnet482       MS-ResNet CIFAR 6n+2 with n = 80                   3x32x32    482
================== ================================================== ======== =====

The CIFAR forms follow the usual CIFAR adaptation of the ImageNet layout (as in the MS-ResNet and
spikingjelly CIFAR code): a conv3x3/1 stem without max pooling, stages of 64/128/256/512 channels
with strides 1/2/2/2, 10 classes.

Command line (from the repository root)::

    python -m models.scale [NAME ...] [--out-dir out/scale] [--no-balance] [--check] [--width W] [--connect ADD|AND|IAND]

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
from torch import nn

from models.balance import TARGET_RATE, balance
from models.export import export
from models.layers import fold_bn
from models.ms_resnet import IMAGENET_LAYOUTS, MSResNet, ms_resnet, ms_resnet_cifar
from models.sew_resnet import LAYOUTS, SEWResNet, sew_resnet

STEPS = 4
#: random inputs the balancing runs on (samples)
BALANCE_SAMPLES = 2
SCALE_MODELS = {
    "sew_resnet18": ("SEW-ResNet-18", 224),
    "sew_resnet34": ("SEW-ResNet-34", 224),
    "sew_resnet50": ("SEW-ResNet-50", 224),
    "sew_resnet101": ("SEW-ResNet-101", 224),
    "sew_resnet152": ("SEW-ResNet-152", 224),
    "ms_resnet18": ("MS-ResNet-18", 224),
    "ms_resnet34": ("MS-ResNet-34", 224),
    "ms_resnet104": ("MS-ResNet-104", 224),
    "sew_resnet18_32": ("SEW-ResNet-18 (CIFAR form)", 32),
    "sew_resnet34_32": ("SEW-ResNet-34 (CIFAR form)", 32),
    "ms_resnet18_32": ("MS-ResNet-18 (CIFAR form)", 32),
    "ms_resnet34_32": ("MS-ResNet-34 (CIFAR form)", 32),
    "ms_resnet482": ("MS-ResNet-482 (CIFAR, n = 80)", 32),
}


def _network(name: str, width: int | None, connect: str) -> nn.Module:
    """The unfolded network ``name`` (on the current default device)."""
    family, _, rest = name.partition("_resnet")
    depth = int(rest.split("_")[0])
    if name.endswith("_32"):  # CIFAR form of an ImageNet layout
        w = width or 64
        widths = (w, 2 * w, 4 * w, 8 * w)
        if family == "sew":
            block, layers = LAYOUTS[depth]
            return SEWResNet(block, layers, widths, connect, STEPS, input_shape=(3, 32, 32), stem="small")
        return MSResNet(IMAGENET_LAYOUTS[depth], widths, (1, 2, 2, 2), STEPS, input_shape=(3, 32, 32), stem="small")
    if family == "sew":
        return sew_resnet(depth, connect, STEPS, width=width or 64)
    if depth == 482:
        w = width or 16
        return ms_resnet_cifar(80, STEPS, widths=(w, 2 * w, 4 * w))
    return ms_resnet(depth, STEPS, width=width or 64)


def build_meta(name: str, *, width: int | None = None, connect: str = "ADD") -> torch.nn.Module:
    """The folded network ``name`` on the meta device (no weights allocated).

    ``width`` overrides the base width (64 for the ImageNet layouts, 16 for the 6n+2 one; the other
    stages scale with it), e.g. to build the same topology cheaply.
    """
    if name not in SCALE_MODELS:
        raise ValueError(f"unknown scale model {name!r}; choose from {', '.join(SCALE_MODELS)}")
    with torch.device("meta"):
        model = _network(name, width, connect)
    return fold_bn(model, inplace=True)


def materialise(model: nn.Module, rng: np.random.Generator) -> nn.Module:
    """``model`` (folded, on the meta device) on the CPU with He-normal weights and zero biases."""
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            else:
                fan_in = p[0].numel()
                w = rng.standard_normal(tuple(p.shape), dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
                p.copy_(torch.from_numpy(w))
    return model


def input_shape(name: str) -> tuple[int, int, int]:
    """The input of scale model ``name``: 3 colour channels at its resolution."""
    size = SCALE_MODELS[name][1]
    return 3, size, size


def generate(name: str, path: str | Path, *, seed: int = 0, width: int | None = None, connect: str = "ADD",
             residual_nodes: bool | None = None, balanced: bool = True, trace_memory: bool = False) -> dict:
    """Write the random-weight NIR graph ``name`` to ``path`` (activity-balanced unless not
    ``balanced``); returns build statistics.

    ``trace_memory`` measures the build's peak of numpy and Python allocations with tracemalloc
    (``traced_peak_bytes``; HDF5's own buffers are not included); it slows the build down.
    """
    from snn2chip.verify.data import random_spikes

    start = time.perf_counter()
    if trace_memory:
        tracemalloc.start()
    model = build_meta(name, width=width, connect=connect)
    params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(seed)
    metadata = {
        "model": name,
        "generator": "models.scale",
        "weights": f"random: He-normal float32 (std sqrt(2/fan_in)), zero biases, numpy default_rng({seed})",
        "time_steps": STEPS,
    }
    if balanced:
        model = materialise(model, rng)
        x = torch.from_numpy(random_spikes(BALANCE_SAMPLES, input_shape(name)))
        thresholds = balance(model, x)
        metadata["thresholds"] = (f"activity-balanced: each spiking layer fires {TARGET_RATE:g} of the time on "
                                  f"{BALANCE_SAMPLES} random binary inputs (snn2chip verify --data random:N)")
        export(model, path, metadata=metadata, residual_nodes=residual_nodes)
    else:
        thresholds = {}
        export(model, path, metadata=metadata, rng=rng, residual_nodes=residual_nodes, stream=True)
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
        "balanced_layers": len(thresholds),
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
    parser.add_argument("--balance", action=argparse.BooleanOptionalAction, default=True,
                        help="set thresholds so every spiking layer fires 15%% of the time on random inputs (default); "
                             "--no-balance streams the graph out with unit thresholds (less memory)")
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
                         residual_nodes=args.residual_nodes, balanced=args.balance, trace_memory=args.trace_memory)
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
