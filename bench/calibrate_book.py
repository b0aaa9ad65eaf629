"""Calibration table of the `book` simulator: profiles x regimes x seeds, one iteration each.

Run from the repository root:  python bench/calibrate_book.py [--seeds 20] [--markdown]

For every (profile, regime) it simulates the three symbols per seed (iteration 1, the profile's
overrides, no tuning), aggregates them the way the iteration summary does (soakq.aggregate:
fill-weighted means, p95s as the max across symbols, counts summed), and prints the mean and
standard deviation over seeds of each KPI, the share of seeds whose KPIs meet the release-gate
thresholds on this single iteration, and the shares the KPI gate would call WARN or FAIL
(thresholds as in docs/gates.md). ``--markdown`` prints the table docs/simulator.md carries.
The run-level verdicts (24 iterations, tuner on) are bench/study_calibration.py's job.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from soakq.aggregate import aggregate  # noqa: E402
from soakq.metrics.base import MeasureRequest  # noqa: E402
from soakq.metrics.book import BookSimulator  # noqa: E402

PROFILES_DIR = Path(__file__).resolve().parents[1] / "soakq" / "data" / "profiles"
PROFILES = ("steady_safe", "default", "ultra_safe", "aggressive")
MODES = ("calm", "volatile", "spike")
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")

# docs/gates.md: (metric, direction, soft, hard); direction +1 means "at least", -1 "at most".
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
COLUMNS = (
    ("net_bps", "net bp", 2),
    ("adverse_bps_p95", "adverse p95 bp", 2),
    ("slippage_bps_p95", "slippage p95 bp", 2),
    ("risk_ratio", "risk", 3),
    ("maker_taker_ratio", "maker/taker", 3),
    ("p95_latency_ms", "latency p95 ms", 0),
    ("fills", "fills", 0),
    ("cancel_ratio", "cancel", 3),
    ("order_age_p95_ms", "order age p95 ms", 0),
    ("snipes", "snipes", 1),
)


def load_profile(name: str) -> dict[str, float]:
    return json.loads((PROFILES_DIR / f"{name}.json").read_text())["overrides"]


def _ok(value: float, direction: int, threshold: float) -> bool:
    return value >= threshold if direction > 0 else value <= threshold


def kpi_verdict(agg: dict[str, Any]) -> str:
    if any(not _ok(agg[k], d, hard) for k, d, _, hard in KPI_GATE):
        return "FAIL"
    if any(not _ok(agg[k], d, soft) for k, d, soft, _ in KPI_GATE):
        return "WARN"
    return "OK"


def run_cell(overrides: dict[str, float], mode: str, seeds: range) -> dict[str, Any]:
    """Per-seed aggregates of one (profile, regime) cell, and their summary."""
    sim = BookSimulator()
    aggs = [
        aggregate({s: sim.measure(MeasureRequest(seed, mode, s, 1, overrides)) for s in SYMBOLS})
        for seed in seeds
    ]
    n = len(aggs)
    verdicts = [kpi_verdict(a) for a in aggs]
    return {
        "mean": {k: statistics.fmean(a[k] for a in aggs) for k, _, _ in COLUMNS},
        "sd": {k: statistics.stdev(a[k] for a in aggs) if n > 1 else 0.0 for k, _, _ in COLUMNS},
        "release": sum(all(_ok(a[k], d, t) for k, d, t in RELEASE_GATE) for a in aggs) / n,
        "warn": verdicts.count("WARN") / n,
        "fail": verdicts.count("FAIL") / n,
    }


def _markdown(cells: dict[tuple[str, str], dict[str, Any]], seeds: int) -> list[str]:
    head = ["profile", "regime", *(label for _, label, _ in COLUMNS), "KPI OK/WARN/FAIL"]
    lines = [
        f"Iteration 1, {seeds} seeds, 3 symbols aggregated per seed; mean ± sd over seeds.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for (profile, mode), c in cells.items():
        row = [profile, mode]
        row += [f"{c['mean'][k]:.{p}f} ± {c['sd'][k]:.{p}f}" for k, _, p in COLUMNS]
        ok = 1.0 - c["warn"] - c["fail"]
        row.append(f"{ok:.0%} / {c['warn']:.0%} / {c['fail']:.0%}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20, help="seeds per cell (default 20)")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--profiles", default=",".join(PROFILES))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--markdown", action="store_true", help="print the docs table")
    args = ap.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    cells = {
        (p, m): run_cell(load_profile(p), m, seeds)
        for p in args.profiles.split(",")
        for m in args.modes.split(",")
    }
    if args.markdown:
        print("\n".join(_markdown(cells, args.seeds)))
        return 0
    print(f"book calibration: {args.seeds} seeds x 3 symbols, iteration 1 (mean; sd in --markdown)")
    print(
        f"{'profile':<12}{'mode':<9}{'net':>7}{'adv95':>7}{'risk':>7}{'m/t':>7}{'lat95':>8}"
        f"{'fills':>7}{'cancel':>8}{'rel.pass':>9}{'warn':>6}{'FAIL':>6}"
    )
    for (profile, mode), c in cells.items():
        m = c["mean"]
        print(
            f"{profile:<12}{mode:<9}{m['net_bps']:>7.2f}{m['adverse_bps_p95']:>7.2f}"
            f"{m['risk_ratio']:>7.3f}{m['maker_taker_ratio']:>7.3f}{m['p95_latency_ms']:>8.0f}"
            f"{m['fills']:>7.0f}{m['cancel_ratio']:>8.3f}{c['release']:>9.0%}"
            f"{c['warn']:>6.0%}{c['fail']:>6.0%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
