"""Wall-clock cost of one `book` symbol-iteration (simulate), in ms, beside the v1 baseline.

Run from the repository root:  python bench/bench_book.py [--calls 240] [--warmup 10]

Cycles through the three modes, the three symbols and the four profiles with fresh seeds. Each
request is simulated by the current simulator and by the frozen v1 copy in bench/book_v1/,
alternately, so both see the same machine load; prints median / p95 / mean per mode and overall
for both, and the speed-up (v1 median / current median). The target was a median of 1.5 ms on a
machine where v1 took 3.7 ms, i.e. a speed-up of 2.5x: the speed-up is the figure that carries
from one machine to another (docs/simulator.md, "Speed").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from itertools import cycle, product
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.book_v1.book import simulate as simulate_v1  # noqa: E402
from soakq.metrics.base import MeasureRequest  # noqa: E402
from soakq.metrics.book import simulate  # noqa: E402
from soakq.metrics.book.quotes import COMPILED  # noqa: E402

PROFILES_DIR = Path(__file__).resolve().parents[1] / "soakq" / "data" / "profiles"
PROFILES = ("steady_safe", "default", "ultra_safe", "aggressive")
MODES = ("calm", "volatile", "spike")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


def _timed(fn: Callable[[MeasureRequest], Any], req: MeasureRequest) -> float:
    t0 = time.perf_counter()
    fn(req)
    return (time.perf_counter() - t0) * 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--calls", type=int, default=240, help="timed requests (default 240)")
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args(argv)

    overrides = {
        name: json.loads((PROFILES_DIR / f"{name}.json").read_text())["overrides"]
        for name in PROFILES
    }
    for seed in range(args.warmup):
        warm = MeasureRequest(10_000 + seed, "calm", "ETHUSDT", 1, overrides["default"])
        simulate(warm)
        simulate_v1(warm)

    runs: dict[str, dict[str, list[float]]] = {"v2": {}, "v1": {}}
    combos = cycle(product(MODES, SYMBOLS, PROFILES))
    for seed in range(args.calls):
        mode, symbol, profile = next(combos)
        req = MeasureRequest(seed, mode, symbol, 1, overrides[profile])
        # Alternate which goes first so neither always runs on a warmer cache.
        order = (("v2", simulate), ("v1", simulate_v1))
        for name, fn in order if seed % 2 == 0 else order[::-1]:
            runs[name].setdefault(mode, []).append(_timed(fn, req))

    print(f"book simulator: {args.calls} symbol-iterations (20 simulated minutes at 100 ms each)")
    walk = "compiled (C)" if COMPILED else "numpy (the C extension was not built)"
    print(f"requote walk: {walk}")
    print("current (v2) beside the v1 baseline, same requests, alternated, same run")
    print(
        f"{'mode':<10}{'calls':>6}{'v2 median':>11}{'v2 p95':>8}{'v2 mean':>9}"
        f"{'v1 median':>11}{'v1 p95':>8}{'speed-up':>10}"
    )
    for mode in (*MODES, "all"):
        v2 = [x for m, xs in runs["v2"].items() for x in xs if mode in ("all", m)]
        v1 = [x for m, xs in runs["v1"].items() for x in xs if mode in ("all", m)]
        print(
            f"{mode:<10}{len(v2):>6}{statistics.median(v2):>11.2f}{_p95(v2):>8.2f}"
            f"{statistics.fmean(v2):>9.2f}{statistics.median(v1):>11.2f}{_p95(v1):>8.2f}"
            f"{statistics.median(v1) / statistics.median(v2):>9.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
