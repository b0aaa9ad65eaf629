"""Reading a live bot's report: is it the answer to this handshake, and what KPIs does it carry.

Pure functions: the waiting loop (``soakq.metrics.live.source``) feeds them documents and times.
A stamped report (``KPI_REPORT_<i>.json``) answers a handshake when its ``run_id``, ``iteration``
and ``state_hash`` all match; a report from a fixed path (bots that do not stamp) answers when it
is fresh: the bot rewrote it after the handshake write, and its ``runtime.utc`` (else the file's
mtime) is later than that write and not ahead of this host's clock by more than a minute.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from soakq.errors import MetricsError
from soakq.metrics.live.fieldmap import FieldMap
from soakq.metrics.live.handshake import Handshake
from soakq.rules.ranges import range_problems

STAMP_KEYS: tuple[str, ...] = ("run_id", "iteration", "state_hash")
META_KEYS: frozenset[str] = frozenset(
    {*STAMP_KEYS, "window_start_ts", "window_end_ts", "runtime", "symbols", "totals", "total"}
)


def stale_reason(doc: Mapping[str, Any], hs: Handshake, *, required: bool) -> str | None:
    """Why ``doc`` does not answer ``hs`` (None: it does). Unstamped reports pass unless
    ``required`` (a ``KPI_REPORT_<i>.json`` must carry all three stamps)."""
    want = {"run_id": hs.run_id, "iteration": hs.iteration, "state_hash": hs.state_hash}
    for key, expected in want.items():
        if key not in doc:
            if required:
                return f"no {key} (expected {expected!r})"
            continue
        if doc[key] != expected:
            return f"{key} {doc[key]!r} (expected {expected!r})"
    return None


def runtime_utc_ts(doc: Mapping[str, Any]) -> float | None:
    """The epoch seconds of ``runtime.utc`` (ISO 8601, UTC), or None when absent or unparsable."""
    runtime = doc.get("runtime")
    text = runtime.get("utc") if isinstance(runtime, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:  # the predecessor writes UTC; a naive stamp is read as UTC
        from datetime import UTC

        when = when.replace(tzinfo=UTC)
    return when.timestamp()


MAX_CLOCK_AHEAD_S = 60.0  # a report stamped further ahead of our clock is refused


def freshness_problem(
    doc: Mapping[str, Any], mtime: float, written_ts: float, now_ts: float
) -> str | None:
    """Why a fixed-path report rewritten since the handshake is still not this iteration's
    answer (None: it is): its ``runtime.utc`` (else its mtime) must be after the handshake
    write and no more than MAX_CLOCK_AHEAD_S ahead of now."""
    stamp = runtime_utc_ts(doc)
    when = stamp if stamp is not None else mtime
    if when <= written_ts:
        return "not fresh: written before this iteration's handshake"
    if when > now_ts + MAX_CLOCK_AHEAD_S:
        what = "runtime.utc" if stamp is not None else "its mtime"
        return (
            f"{what} is {when - now_ts:.0f} s ahead of this host's clock "
            f"(at most {MAX_CLOCK_AHEAD_S:.0f} s allowed)"
        )
    return None


def window_problem(doc: Mapping[str, Any], now_ts: float) -> str | None:
    """Why the report's measurement window (``window_start_ts`` / ``window_end_ts``, epoch
    seconds, both optional) is impossible, or None: each a finite number, the start not after
    the end, the end not more than MAX_CLOCK_AHEAD_S ahead of now."""
    bounds = {k: doc.get(k) for k in ("window_start_ts", "window_end_ts")}
    for key, value in bounds.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (ok and math.isfinite(value)):
            return f"{key} {value!r} is not a time in epoch seconds"
    start, end = bounds["window_start_ts"], bounds["window_end_ts"]
    if start is not None and end is not None and start > end:
        return f"window_start_ts {start} is after window_end_ts {end}"
    if end is not None and end > now_ts + MAX_CLOCK_AHEAD_S:
        return (
            f"window_end_ts is {end - now_ts:.0f} s ahead of this host's clock "
            f"(at most {MAX_CLOCK_AHEAD_S:.0f} s allowed)"
        )
    return None


@dataclass(frozen=True)
class SymbolKpis:
    metrics: dict[str, Any]
    absent: tuple[str, ...]  # KPIs the bot's report does not carry (unusable: fail closed)


def _section(doc: Mapping[str, Any], keys: Sequence[str]) -> Any:
    for key in keys:
        if key in doc:
            return doc[key]
    return None


def read_kpis(
    doc: Mapping[str, Any], fmap: FieldMap, symbols: Sequence[str], *, where: str
) -> dict[str, SymbolKpis]:
    """Every run symbol's KPIs from a matching report; MetricsError when it is invalid."""
    per_symbol = _section(doc, fmap.symbols_keys)
    rows: dict[str, Any] = {}
    if isinstance(per_symbol, Mapping) and per_symbol:
        for sym in symbols:
            if sym not in per_symbol:
                raise MetricsError(f"{where}: the bot's report has no symbol {sym!r}")
            rows[sym] = per_symbol[sym]
    elif per_symbol is not None and not isinstance(per_symbol, Mapping):
        raise MetricsError(f"{where}: 'symbols' must be an object of symbol -> KPIs")
    else:
        if len(symbols) != 1:
            raise MetricsError(
                f"{where}: a report without per-symbol KPIs only serves a run of one symbol"
            )
        total = _section(doc, fmap.total_keys)
        rows[symbols[0]] = (
            total if total is not None else {k: v for k, v in doc.items() if k not in META_KEYS}
        )
    out: dict[str, SymbolKpis] = {}
    for sym, row in rows.items():
        if not isinstance(row, Mapping):
            raise MetricsError(f"{where}: the entry for {sym} is not an object")
        metrics, absent = fmap.read_row(row)
        bad = range_problems(metrics, skip_missing=True)
        if bad:
            text = "; ".join(f"{sym}.{k} {why}" for k, why in sorted(bad.items()))
            raise MetricsError(f"{where}: invalid report: {text}")
        out[sym] = SymbolKpis(metrics, absent)
    return out
