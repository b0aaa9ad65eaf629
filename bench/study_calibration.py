"""The calibration study of the `book` simulator (issue 3), readable output.

    python bench/study_calibration.py [--seeds 20] [--iterations 24]

For steady_safe and aggressive on calm / volatile / spike, 24 iterations, guards on, KPI gate soft:
the share of seeds passing the release gate on the final summary with auto-tune on and off, and
the share failing the KPI gate at iteration 1.
"""

from __future__ import annotations

import argparse
import os
import time

from soakq.metrics import MODES
from soakq.study import study, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=24)
    ap.add_argument("--profiles", default="steady_safe,aggressive")
    args = ap.parse_args()
    for k in [
        k
        for k in os.environ
        if k.startswith(("SOAK", "KPI_GATE", "ENABLE_GUARDS", "MM_RUNTIME", "USE_MOCK"))
    ]:
        del os.environ[k]
    t0 = time.perf_counter()
    cells = study(
        args.profiles.split(","),
        MODES,
        range(args.first_seed, args.first_seed + args.seeds),
        iterations=args.iterations,
    )
    for line in table(cells):
        print(line)
    print(
        f"({args.seeds} seeds from {args.first_seed}, {args.iterations} iterations, "
        f"{time.perf_counter() - t0:.1f} s)"
    )


if __name__ == "__main__":
    main()
