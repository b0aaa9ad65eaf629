"""The verdict study (issue 7): run-level release-gate verdicts per profile x regime x arm.

    python bench/study_calibration.py [--seeds 20] [--iterations 24] [--jobs 2]

For steady_safe and aggressive on calm / volatile / spike, KPI gate soft, three arms: tuner on with
guards, tuner on without guards, tuner off (guards on). Prints verdict counts (PASSED / FAILED /
INCONCLUSIVE), the share of seeds failing the KPI gate at iteration 1, applied changes per run and
parameter reversals (guards on vs off).
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

from soakq.metrics import MODES
from soakq.study import Arm, Cell, study, table

ARMS = (Arm(True, True), Arm(True, False), Arm(False, True))


def _cell(args: tuple[str, str, Arm, list[int], int]) -> list[Cell]:
    profile, mode, arm, seeds, iterations = args
    return study([profile], [mode], seeds, [arm], iterations=iterations)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--profiles", default="steady_safe,aggressive")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    for k in [
        k
        for k in os.environ
        if k.startswith(("SOAK", "KPI_GATE", "ENABLE_GUARDS", "MM_RUNTIME", "USE_MOCK"))
    ]:
        del os.environ[k]
    t0 = time.perf_counter()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    work = [
        (p, m, arm, seeds, args.iterations)
        for p in args.profiles.split(",")
        for m in MODES
        for arm in ARMS
    ]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        cells = [c for chunk in pool.map(_cell, work) for c in chunk]
    for line in table(cells):
        print(line)
    print(
        f"({args.seeds} seeds from {args.first_seed}, {args.iterations} iterations, "
        f"{time.perf_counter() - t0:.1f} s)"
    )


if __name__ == "__main__":
    main()
