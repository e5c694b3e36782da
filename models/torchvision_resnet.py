"""A torchvision ResNet-18 exported to ONNX as a user would, for ``snn2chip convert`` at scale.

``torchvision.models.resnet18(weights=None, num_classes=C)`` (nothing is downloaded), seeded;
its BatchNorm running statistics are made non-trivial by a few forward passes in train mode on
seeded random images (cumulative averages), so that BN folding in ``convert`` is exercised; then
eval mode and ``torch.onnx.export(..., dynamic_axes={batch})`` (opset 17, constant folding on,
as by default), or with ``--fixed-batch N`` as ``torch.onnx.export(model, x, f)`` writes it
without ``dynamic_axes``: the batch fixed at N (``snn2chip convert`` takes either).

Images (:func:`images`) are ``k / 16`` for ``k = 0..16``: values in [0, 1] that compile exactly
as graded inputs with ``snn2chip compile --input-bits 6 --input-scale 16`` (payloads 0..16).

Command line (from the repository root)::

    python -m models.torchvision_resnet OUT.onnx [--size 64] [--classes 10] [--seed 0] [--fixed-batch N]
        [--calib CALIB.npy --calib-samples 16] [--inputs X.npy --samples 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torchvision

#: forward passes in train mode that set the BatchNorm running statistics
BN_PASSES = 4
BN_BATCH = 8


def images(count: int, size: int, seed: int) -> np.ndarray:
    """``count`` random images ``(count, 3, size, size)``, float32 values ``k / 16`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 17, (count, 3, size, size)) / 16).astype(np.float32)


def build(classes: int = 10, size: int = 64, seed: int = 0) -> torch.nn.Module:
    """ResNet-18 (random weights from ``seed``) in eval mode, with BatchNorm statistics taken
    from :data:`BN_PASSES` train-mode passes over random ``size``×``size`` images."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=classes)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the passes
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.1, 0.1)
    model.train()
    with torch.no_grad():
        for i in range(BN_PASSES):
            model(torch.from_numpy(images(BN_BATCH, size, seed + 1000 + i)))
    return model.eval()


def export(path: str | Path, size: int = 64, classes: int = 10, seed: int = 0, batch: int | None = None) -> Path:
    """Write the model of :func:`build` to ONNX ``path`` with a dynamic batch axis, or with
    ``batch`` given as ``torch.onnx.export(model, x, path)`` writes it by default: the batch fixed
    at ``len(x) = batch`` and torch's own tensor names."""
    model = build(classes, size, seed)
    if batch is not None:
        torch.onnx.export(model, torch.from_numpy(images(batch, size, seed)), str(path), opset_version=17)
        return Path(path)
    x = torch.from_numpy(images(1, size, seed))
    torch.onnx.export(model, x, str(path), input_names=["x"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", metavar="OUT.onnx")
    parser.add_argument("--size", type=int, default=64, help="input height and width (default 64)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fixed-batch", type=int, metavar="N",
                        help="export with the batch fixed at N (torch.onnx.export's default), not a dynamic batch axis")
    parser.add_argument("--calib", metavar="CALIB.npy", help="also write calibration images (seed + 1)")
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--inputs", metavar="X.npy", help="also write input images (seed + 2)")
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args(argv)
    path = export(args.out, args.size, args.classes, args.seed, args.fixed_batch)
    batch = "dynamic batch" if args.fixed_batch is None else f"batch fixed at {args.fixed_batch}"
    print(f"wrote {path} (torchvision resnet18, {args.classes} classes, 3x{args.size}x{args.size}, seed {args.seed}, {batch})")
    for file, count, seed in ((args.calib, args.calib_samples, args.seed + 1), (args.inputs, args.samples, args.seed + 2)):
        if file:
            np.save(file, images(count, args.size, seed))
            print(f"wrote {file} ({count} images, values k/16 in [0, 1])")


if __name__ == "__main__":
    main()
