"""Parameter responses of the `book` simulator: the sign table docs/simulator.md carries.

Run from the repository root:  python bench/book_responses.py [--jobs 2] [--seed-offset 0]

Paired seeds: steady_safe with one parameter moved low -> high, iteration 1, no tuning or guards,
every symbol; per pair the KPI's difference (high - low). Prints, per row, the claimed direction,
n (seeds x symbols), the mean difference and t = mean / (sd / sqrt(n)), as a markdown table. The
seeds are the ones tests/unit/test_book.py uses (1-20; 1-40 for the weaker staleness responses),
so the table and the tests agree by construction; ``--seed-offset 200`` repeats it on seeds the
tests never saw.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from soakq.metrics.base import MeasureRequest  # noqa: E402
from soakq.metrics.book import simulate  # noqa: E402
from soakq.metrics.book.metrics import BookRun  # noqa: E402

PROFILE = Path(__file__).resolve().parents[1] / "soakq" / "data" / "profiles" / "steady_safe.json"
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
SIGN, ADVERSE = range(1, 21), range(1, 41)
EDGE = "edge_bps_per_fill"  # a BookRun diagnostic: the maker's edge per unit of maker volume

# (parameter, low, high, regime, KPI, claimed direction, seeds); "(+)" / "(-)": shown, not asserted
ROWS = (
    ("tail_age_ms", 400, 1000, "volatile", "adverse_bps_p95", "+", ADVERSE),
    ("tail_age_ms", 400, 1000, "calm", "adverse_bps_p95", "(+)", SIGN),
    ("tail_age_ms", 400, 1000, "calm", "fills", "+", SIGN),
    ("tail_age_ms", 400, 1000, "volatile", "quote_actions", "-", SIGN),
    ("min_interval_ms", 50, 200, "volatile", "adverse_bps_p95", "+", ADVERSE),
    ("min_interval_ms", 50, 200, "volatile", "snipes", "+", ADVERSE),
    ("min_interval_ms", 50, 200, "volatile", EDGE, "-", ADVERSE),
    ("min_interval_ms", 50, 200, "volatile", "net_bps", "(-)", ADVERSE),
    ("min_interval_ms", 50, 200, "calm", "p95_latency_ms", "-", SIGN),
    ("min_interval_ms", 50, 200, "volatile", "p95_latency_ms", "-", SIGN),
    ("min_interval_ms", 50, 200, "spike", "p95_latency_ms", "-", SIGN),
    ("base_spread_bps_delta", 0.05, 0.45, "calm", "fills", "-", SIGN),
    ("base_spread_bps_delta", 0.05, 0.45, "volatile", "fills", "-", SIGN),
    ("impact_cap_ratio", 0.05, 0.12, "calm", "risk_ratio", "+", SIGN),
    ("impact_cap_ratio", 0.05, 0.12, "volatile", "risk_ratio", "+", SIGN),
    ("impact_cap_ratio", 0.05, 0.12, "spike", "risk_ratio", "+", SIGN),
    ("replace_rate_per_min", 200, 340, "volatile", "p95_latency_ms", "+", SIGN),
    ("replace_rate_per_min", 200, 340, "spike", "p95_latency_ms", "+", SIGN),
)
ARROWS = {"+": "↑", "-": "↓", "(+)": "(↑)", "(-)": "(↓)"}


def _metric(run: BookRun, kpi: str) -> float:
    if kpi in ("quote_actions", EDGE):
        return float(getattr(run, kpi))
    return float(run.metrics[kpi])


def _pair(job: tuple[dict[str, float], str, float, float, str, str, int, str]) -> float:
    base, key, low, high, mode, kpi, seed, symbol = job
    runs = [
        simulate(MeasureRequest(seed, mode, symbol, 1, {**base, key: value}))
        for value in (low, high)
    ]
    return _metric(runs[1], kpi) - _metric(runs[0], kpi)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--seed-offset", type=int, default=0, help="added to every seed (default 0)")
    args = ap.parse_args(argv)
    base = json.loads(PROFILE.read_text())["overrides"]
    print("| parameter low → high | regime | KPI | claimed | n | mean diff | t |")
    print("|---|---|---|---|---|---|---|")
    with Pool(args.jobs) as pool:
        for key, low, high, mode, kpi, claim, seeds in ROWS:
            jobs = [
                (base, key, low, high, mode, kpi, s + args.seed_offset, y)
                for s in seeds
                for y in SYMBOLS
            ]
            diffs = pool.map(_pair, jobs)
            mean = statistics.fmean(diffs)
            sd = statistics.stdev(diffs)
            t = mean / (sd / math.sqrt(len(diffs))) if sd > 0 else math.inf
            label = "edge per unit of maker volume (bp)" if kpi == EDGE else kpi
            print(
                f"| `{key}` {low} → {high} | {mode} | {label} | {ARROWS[claim]} | "
                f"{len(diffs)} | {mean:+.3f} | {t:+.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
