"""Wall-clock cost of one `book` symbol-iteration (BookSimulator.measure), in ms.

Run from the repository root:  python bench/bench_book.py [--calls 200] [--warmup 10]

Cycles through the three modes, the three symbols and the four profiles with fresh seeds, one
measure() call per symbol-iteration, and prints median / p95 / mean per mode and overall.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from itertools import cycle, product
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from soakq.metrics.base import MeasureRequest  # noqa: E402
from soakq.metrics.book import BookSimulator  # noqa: E402

PROFILES_DIR = Path(__file__).resolve().parents[1] / "soakq" / "data" / "profiles"
PROFILES = ("steady_safe", "default", "ultra_safe", "aggressive")
MODES = ("calm", "volatile", "spike")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200, help="timed measure() calls (default 200)")
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args(argv)

    overrides = {
        name: json.loads((PROFILES_DIR / f"{name}.json").read_text())["overrides"]
        for name in PROFILES
    }
    sim = BookSimulator()
    combos = cycle(product(MODES, SYMBOLS, PROFILES))
    for seed in range(args.warmup):
        sim.measure(MeasureRequest(10_000 + seed, "calm", "ETHUSDT", 1, overrides["default"]))

    per_mode: dict[str, list[float]] = {m: [] for m in MODES}
    for seed in range(args.calls):
        mode, symbol, profile = next(combos)
        req = MeasureRequest(seed, mode, symbol, 1, overrides[profile])
        t0 = time.perf_counter()
        sim.measure(req)
        per_mode[mode].append((time.perf_counter() - t0) * 1000.0)

    every = [x for xs in per_mode.values() for x in xs]
    print(f"book simulator: {len(every)} symbol-iterations (20 simulated minutes at 100 ms each)")
    print(f"{'mode':<10}{'calls':>6}{'median ms':>11}{'p95 ms':>9}{'mean ms':>9}")
    for mode, xs in [*per_mode.items(), ("all", every)]:
        print(
            f"{mode:<10}{len(xs):>6}{statistics.median(xs):>11.2f}{_p95(xs):>9.2f}"
            f"{statistics.fmean(xs):>9.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
