"""Aggregate per-symbol KPIs into the iteration summary (fill-weighted; p95s as max)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soakq.jsonio import is_finite_number

WEIGHTED = ("net_bps", "risk_ratio", "maker_taker_ratio", "cancel_ratio")
MAXED = ("adverse_bps_p95", "slippage_bps_p95", "p95_latency_ms", "order_age_p95_ms")
SUMMED = ("fills", "snipes", "spike_count", "gap_events")


def _num(v: Any) -> float | None:
    return float(v) if is_finite_number(v) else None


def aggregate(symbols: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One summary from per-symbol metrics. Any missing input makes that aggregate missing."""
    rows = [symbols[s] for s in sorted(symbols)]
    out: dict[str, Any] = {}
    fills = [_num(r.get("fills")) for r in rows]
    total = None if any(f is None for f in fills) else sum(f for f in fills if f is not None)
    for key in WEIGHTED:
        vals = [_num(r.get(key)) for r in rows]
        if total is None or total <= 0 or any(v is None for v in vals):
            out[key] = None
            continue
        acc = sum(float(v or 0.0) * float(f or 0.0) for v, f in zip(vals, fills, strict=True))
        out[key] = round(acc / total, 4)
    for key in MAXED:
        maxed = [_num(r.get(key)) for r in rows]
        present = [v for v in maxed if v is not None]
        out[key] = round(max(present), 4) if present and len(present) == len(maxed) else None
    for key in SUMMED:
        vals = [_num(r.get(key)) for r in rows]
        if key in ("spike_count", "gap_events") and all(r.get(key) is None for r in rows):
            continue
        summed = [v for v in vals if v is not None]
        out[key] = int(sum(summed)) if len(summed) == len(vals) else None
    return out
