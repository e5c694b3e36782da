"""The command-line fuzz property of ``tests/test_fuzz_cli.py``, on many more cases.

    .venv/bin/python benchmarks/fuzz_cli.py [--cases N] [--seed S]

Draws N cases (malformed NIR files, data files, option values, target files), runs every command
each one implies, and prints the number of cases and command runs, the exit codes seen, and every
case that broke the property (exit code other than 0/1/2, a traceback, more than one line, no file
or option named, a changed input or a leftover output). Exit code 1 when any did.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from tqdm import tqdm  # noqa: E402

from tests.test_fuzz_cli import cases, check  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="cases to draw (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args()
    runs: Counter = Counter()
    failures: list[str] = []
    drawn = [0]
    bar = tqdm(total=args.cases, desc="fuzz", unit="case")

    @seed(args.seed)
    @settings(max_examples=args.cases, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=["generate"])
    @given(cases)
    def property_holds(case):
        drawn[0] += 1
        bar.update(1)
        bar.set_postfix_str(f"{len(failures)} broke the property")
        try:
            check(case, runs)
        except AssertionError as e:
            failures.append(f"{case!r}: {' '.join(str(e).split())[:400]}")

    start = time.perf_counter()
    property_holds()
    bar.close()
    elapsed = time.perf_counter() - start
    print(f"{drawn[0]} cases, {sum(runs.values())} command runs in {elapsed:.0f} s; exit codes: "
          + ", ".join(f"{code}: {count}" for code, count in sorted(runs.items())))
    print(f"{len(failures)} cases broke the property")
    for failure in failures:
        print(f"  {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
