"""Aggregate per-symbol KPIs into the iteration summary (fill-weighted; p95s as max; counts summed).

An unusable input is never laundered: a symbol's value outside its valid range is carried into
the summary as it is (the KPI gate then names it), and a missing one makes the aggregate missing.
Fill-weighted KPIs need every symbol's fills valid and a positive total (with one symbol whose
fills are unusable, its own values stand and the fills are named) (docs/gates.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from soakq.jsonio import is_finite_number
from soakq.rules.ranges import ranges

WEIGHTED = ("net_bps", "risk_ratio", "maker_taker_ratio", "cancel_ratio")
MAXED = ("adverse_bps_p95", "slippage_bps_p95", "p95_latency_ms", "order_age_p95_ms")
SUMMED = ("fills", "snipes")
EVENTS = ("spike_count", "gap_events")  # mock metadata: summed when the source gives them


def _valid(key: str, values: Sequence[Any]) -> tuple[list[float] | None, Any]:
    """(the values as floats if every one is valid, else None; the first offending value).

    The offending value is kept only when it is a finite number (JSON-safe and worth naming).
    """
    rng = ranges()[key]
    bad = [v for v in values if rng.problem(v) is not None]
    if not bad:
        return [float(v) for v in values], None
    named = next((v for v in bad if is_finite_number(v)), None)
    return None, named


def aggregate(symbols: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One summary from per-symbol metrics (symbols in name order)."""
    rows = [symbols[s] for s in sorted(symbols)]
    out: dict[str, Any] = {}
    for key in SUMMED:
        vals, bad = _valid(key, [r.get(key) for r in rows])
        out[key] = int(sum(vals)) if vals is not None else bad
    fills, _ = _valid("fills", [r.get("fills") for r in rows])
    total = sum(fills) if fills is not None else 0.0
    for key in WEIGHTED:
        vals, bad = _valid(key, [r.get(key) for r in rows])
        if vals is None:
            out[key] = bad
        elif len(vals) == 1 and fills is None:
            # One symbol needs no weight: its value stands while its unusable fills are named.
            out[key] = round(vals[0], 4)
        elif fills is None or total <= 0:
            out[key] = None  # cannot be weighted: the fills say why (unusable or none)
        else:
            acc = sum(v * f for v, f in zip(vals, fills, strict=True))
            out[key] = round(acc / total, 4)
    for key in MAXED:
        vals, bad = _valid(key, [r.get(key) for r in rows])
        out[key] = round(max(vals), 4) if vals else bad
    for key in EVENTS:
        events = [r.get(key) for r in rows]
        if all(v is None for v in events):
            continue
        counted = [v for v in events if is_finite_number(v)]
        out[key] = int(sum(counted)) if len(counted) == len(events) else None
    return out
