"""Compile the random-weight scale models (quantize, lower shortcuts, partition; no simulation).

    .venv/bin/python -m models.scale sew_resnet152 ms_resnet104 ms_resnet482 --out-dir out/scale
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale_compile.py NAME [--strategy relay] [--target loihi2] [--system S]
        [--packing cores|local]

One model per process (peak RSS is the process's). Prints wall time, peak RSS, the neurons on chip
by population role against the NIR model's, and the partition:
cores, bounds, cores/bound, chips, traffic, range clamps (:mod:`snn2chip.quantize`) and the
smallest threshold; or the compile error, verbatim. NAME may also be a path to a ``.nir`` file.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from snn2chip import compiler  # noqa: E402
from snn2chip.chip import fill  # noqa: E402
from snn2chip.errors import ModelError  # noqa: E402
from snn2chip.passes.quantize import Options  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="scale model: out/scale/NAME.nir, or a .nir path")
    parser.add_argument("--strategy", default="relay", choices=("expand", "relay", "auto"))
    parser.add_argument("--target", default="loihi2")
    parser.add_argument("--system", help="named system (default: the smallest that fits)")
    parser.add_argument("--packing", default="cores", choices=fill.PACKINGS)
    args = parser.parse_args()
    path = Path(args.name) if args.name.endswith(".nir") else ROOT / "out" / "scale" / f"{args.name}.nir"
    start = time.perf_counter()
    try:
        _, net, report = compiler.compile_file(path, args.target, Options(strategy=args.strategy), system=args.system,
                                               packing=args.packing)
        outcome = None
    except ModelError as e:
        outcome = str(e)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{args.name} ({args.strategy}, {args.target}, packing {args.packing}): {seconds:.1f} s, peak RSS {peak:.2f} GiB")
    if outcome:
        print(f"  compile failed: {outcome}")
        return 1
    part, t = report.partition, report.totals
    print(f"  {t.neurons:,} neurons, {t.synapses:,} stored synapses, {t.populations:,} populations")
    roles = ", ".join(f"{role} {n:,}" for role, n in t.neurons_by_role.items())
    print(f"  neurons on chip / in the NIR model: {t.neurons / report.model_neurons:.2f}x ({report.model_neurons:,} "
          f"in the model; by role: {roles})")
    print(f"  {part.cores:,} cores on {part.chips_used:,} chips of system {part.system} ({part.system_chips:,}); "
          f"volume bound {part.bounds['volume']['cores']:,}, one-layer-per-core bound "
          f"{part.bounds['one_layer_per_core']['cores']:,}; cores/bound {part.cores_to_bound_ratio:.3f}")
    print(f"  traffic ({part.traffic.weighting}): between cores {part.traffic.inter_core:,.0f}, "
          f"between chips {part.traffic.inter_chip:,.0f}")
    clamps = report.quantization.range_clamps
    vth = min(p.vth for p in net.populations.values() if p.kind == "lif" and p.vth > 0)
    print(f"  {len(clamps)} range-clamped populations (guaranteed fraction down to "
          f"{min((c.guaranteed_fraction for c in clamps), default=1):.2g}); smallest threshold vth {vth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
