"""Why cores exceed the volume bound: how much of a core each tile takes, what other packing
orders of the same whole tiles would give, and what gap filling gives.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tile_shares.py out/scale/sew_resnet50.nir [--target loihi2]

Compiles like ``benchmarks/scale_compile.py`` (relay on Loihi 2, expand on Loihi 1; binary inputs),
tiles the network as the partitioner does, and prints: cores packed first-fit in network order
(the partitioner's first packing), first-fit decreasing by a tile's largest share of a core and
by its summed share; the tiles above half and above 90 % of a core in some resource; the cores
with gap filling (:mod:`snn2chip.chip.fill`, what ``compile`` keeps when it uses fewer); per
binding resource the tiles it binds and their mean share of a core's neurons.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from snn2chip import compiler  # noqa: E402
from snn2chip.chip import partition, targets, tiling  # noqa: E402
from snn2chip.passes.quantize import Options  # noqa: E402


def cores(demands: list, order, cap: dict) -> int:
    """Cores used by first-fit packing of ``demands`` in ``order`` onto cores of capacity ``cap``."""
    return partition._pack([demands[i] for i in order], cap)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--target", default="loihi2")
    args = parser.parse_args()
    target = targets.resolve(args.target)
    cap = target.capacity
    strategy = "relay" if target.payload_bits else "expand"
    _, net, _ = compiler.compile_file(args.model, args.target, Options(strategy=strategy))
    demands = partition._tile_demands(*tiling.tile_network(net, target))
    share = np.array([d / tiling.limits(cap) for _, _, d in demands])
    print(f"{len(demands):,} tiles; first-fit in network order: {cores(demands, range(len(demands)), cap):,} cores; "
          f"decreasing by largest share: {cores(demands, np.argsort(-share.max(1), kind='stable'), cap):,}; "
          f"by summed share: {cores(demands, np.argsort(-share.sum(1), kind='stable'), cap):,}")
    print(f"tiles above half a core in some resource: {(share.max(1) > 0.5).sum():,}; above 90 %: "
          f"{(share.max(1) > 0.9).sum():,}")
    print(f"with gap filling (relays and delay lines cut into slabs, what compile does): "
          f"{partition.partition(net, target).cores:,} cores")
    binding = share.argmax(1)
    for i, resource in enumerate(tiling.RESOURCES):
        mine = binding == i
        if mine.any():
            print(f"  {resource} binds {mine.sum():,} tiles (mean share {share[mine, i].mean():.2f}; "
                  f"their neurons: {share[mine, 0].mean():.2f} of a core)")


if __name__ == "__main__":
    main()
