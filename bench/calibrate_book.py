"""Calibration table of the `book` simulator: profiles x regimes x seeds, one iteration each.

Run from the repository root:  python bench/calibrate_book.py [--seeds 40] [--iteration 1]

For every (profile, regime) it simulates the three symbols per seed, aggregates them the way the
iteration summary does (fill-weighted means, p95s as the max across symbols, fills summed), and
prints the mean aggregate KPIs, the share of seeds that pass the release gate, and the shares that
the KPI gate would call WARN or FAIL. The thresholds below copy DESIGN §4; this script is a bench
tool and does not import the project's gate modules, so it runs on the simulator alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from soakq.metrics.base import MeasureRequest  # noqa: E402
from soakq.metrics.book import BookSimulator  # noqa: E402

PROFILES_DIR = Path(__file__).resolve().parents[1] / "soakq" / "data" / "profiles"
PROFILES = ("steady_safe", "default", "ultra_safe", "aggressive")
MODES = ("calm", "volatile", "spike")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")

# DESIGN §4: (metric, direction, soft, hard); direction +1 means "at least", -1 "at most".
KPI_GATE = (
    ("net_bps", +1, 2.7, 2.0),
    ("risk_ratio", -1, 0.40, 0.50),
    ("maker_taker_ratio", +1, 0.90, 0.85),
    ("p95_latency_ms", -1, 350.0, 400.0),
    ("adverse_bps_p95", -1, 4.0, 6.0),
)
RELEASE_GATE = (
    ("net_bps", +1, 2.7),
    ("risk_ratio", -1, 0.42),
    ("maker_taker_ratio", +1, 0.85),
    ("p95_latency_ms", -1, 350.0),
)
WEIGHTED = ("net_bps", "risk_ratio", "maker_taker_ratio", "cancel_ratio")
MAXED = ("adverse_bps_p95", "slippage_bps_p95", "p95_latency_ms", "order_age_p95_ms")
SUMMED = ("fills", "snipes")
COLUMNS = (
    "net_bps",
    "risk_ratio",
    "maker_taker_ratio",
    "p95_latency_ms",
    "adverse_bps_p95",
    "slippage_bps_p95",
    "fills",
    "snipes",
)


def load_profile(name: str) -> dict[str, float]:
    return json.loads((PROFILES_DIR / f"{name}.json").read_text())["overrides"]


def aggregate(per_symbol: list[dict[str, Any]]) -> dict[str, float]:
    """Fill-weighted means, p95s as the max across symbols, counts summed."""
    total = sum(m["fills"] for m in per_symbol)
    out: dict[str, float] = {}
    for key in WEIGHTED:
        out[key] = (
            sum(m[key] * m["fills"] for m in per_symbol) / total
            if total
            else statistics.fmean(m[key] for m in per_symbol)
        )
    for key in MAXED:
        out[key] = max(m[key] for m in per_symbol)
    for key in SUMMED:
        out[key] = sum(m[key] for m in per_symbol)
    return out


def _ok(value: float, direction: int, threshold: float) -> bool:
    return value >= threshold if direction > 0 else value <= threshold


def kpi_verdict(agg: dict[str, float]) -> str:
    if any(not _ok(agg[k], d, hard) for k, d, _, hard in KPI_GATE):
        return "FAIL"
    if any(not _ok(agg[k], d, soft) for k, d, soft, _ in KPI_GATE):
        return "WARN"
    return "OK"


def release_passes(agg: dict[str, float]) -> bool:
    return all(_ok(agg[k], d, t) for k, d, t in RELEASE_GATE)


def run_cell(
    overrides: dict[str, float], mode: str, seeds: range, iteration: int
) -> tuple[dict[str, float], float, float, float]:
    sim = BookSimulator()
    aggs = []
    for seed in seeds:
        per_symbol = [
            sim.measure(MeasureRequest(seed, mode, sym, iteration, overrides)) for sym in SYMBOLS
        ]
        aggs.append(aggregate(per_symbol))
    n = len(aggs)
    mean = {k: statistics.fmean(a[k] for a in aggs) for k in COLUMNS}
    release = sum(release_passes(a) for a in aggs) / n
    verdicts = [kpi_verdict(a) for a in aggs]
    return mean, release, verdicts.count("WARN") / n, verdicts.count("FAIL") / n


def parse_set(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = float(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40, help="seeds per cell (default 40)")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--iteration", type=int, default=1)
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one parameter on top of every profile (repeatable)",
    )
    args = ap.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    extra = parse_set(args.set)

    head = (
        f"{'profile':<12}{'mode':<9}{'net':>7}{'risk':>7}{'m/t':>7}{'lat95':>8}{'adv95':>7}"
        f"{'slip95':>7}{'fills':>7}{'snipe':>6}{'rel.pass':>9}{'warn':>6}{'FAIL':>6}"
    )
    print(f"book calibration: {args.seeds} seeds x 3 symbols, iteration {args.iteration}")
    print(head)
    print("-" * len(head))
    for profile in args.profiles.split(","):
        overrides = {**load_profile(profile), **extra}
        for mode in args.modes.split(","):
            m, rel, warn, fail = run_cell(overrides, mode, seeds, args.iteration)
            print(
                f"{profile:<12}{mode:<9}{m['net_bps']:>7.2f}{m['risk_ratio']:>7.3f}"
                f"{m['maker_taker_ratio']:>7.3f}{m['p95_latency_ms']:>8.0f}"
                f"{m['adverse_bps_p95']:>7.2f}{m['slippage_bps_p95']:>7.2f}{m['fills']:>7.0f}"
                f"{m['snipes']:>6.1f}{rel:>9.0%}{warn:>6.0%}{fail:>6.0%}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
