"""What the trend report shows, extracted once from the iteration documents and the run record.

Pure: documents in, a frozen ``Trend`` out. The Markdown and the chart both render this one value,
so they never disagree. Only deterministic fields are read (never ``runtime``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from soakq.errors import SoakqError
from soakq.jsonio import is_finite_number
from soakq.params import KEYS, PARAMS, Number
from soakq.rules.ranges import is_usable, ranges, valid_range
from soakq.rules.thresholds import GateLevel, Threshold, kpi_gate_levels, release_thresholds

TABLE_KPIS = ("net_bps", "risk_ratio", "maker_taker_ratio", "p95_latency_ms", "adverse_bps_p95")
# All five KPI-gate metrics: without adverse_bps_p95 a FAIL caused by it looks unexplained.
CHART_KPIS = TABLE_KPIS
# One precision per KPI, wherever the report prints it (values, statistics, thresholds), as fine
# as the console's 4 decimals for bp and ratios: at 0.01 bp a WARN of 2.6988 printed "2.70"
# beside its limit ">= 2.70" (docs/report.md). Milliseconds to 0.01 ms.
KPI_DECIMALS: dict[str, int] = {
    "net_bps": 4,
    "adverse_bps_p95": 4,
    "slippage_bps_p95": 4,
    "risk_ratio": 4,
    "maker_taker_ratio": 4,
    "cancel_ratio": 4,
    "p95_latency_ms": 2,
    "order_age_p95_ms": 2,
    "fills": 0,
    "snipes": 0,
}
P95 = 0.95  # the run-level percentile of the KPI statistics table


def kpi_unit(metric: str) -> str:
    """The KPI's unit from the valid-ranges table (bp, ratio, ms, count)."""
    return valid_range(metric).unit


def fmt_kpi(metric: str, value: float | None) -> str:
    """``value`` at the KPI's one precision (``KPI_DECIMALS``); ``n/a`` for None."""
    if value is None:
        return "n/a"
    text = f"{value:.{KPI_DECIMALS[metric]}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.00"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile with linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


GUARD_FLAGS = (
    ("oscillation_detected", "oscillation"),
    ("velocity_violation", "velocity"),
    ("cooldown_active", "cooldown"),
)


@dataclass(frozen=True)
class Row:
    """One iteration as the report shows it."""

    iteration: int
    verdict: str
    kpis: dict[str, float | None]  # None: unusable (missing, not finite, out of range)
    fills: int | None
    applied: dict[str, Number]
    suppressed: dict[str, str]  # param -> guard
    trimmed: dict[str, str]  # param -> guard
    flags: tuple[str, ...]  # guard names whose flag is set
    frozen: bool
    overrides_after: dict[str, Number]
    # symbol -> KPI -> value (None: unusable), from ``summary.symbols``
    symbols: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """A guard decision, a freeze transition, an exhaustion or an iteration error."""

    iteration: int
    kind: str  # "guard" | "freeze" | "unfreeze" | "exhausted" | "iteration error"
    text: str
    param: str = ""
    guard: str = ""
    action: str = ""  # suppressed | trimmed | bypassed (guard events)
    signature: str = ""  # freeze events


@dataclass(frozen=True)
class RunStat:
    """One KPI over every iteration of the run that has a value (docs/report.md)."""

    metric: str
    n: int
    mean: float | None
    min: float | None
    max: float | None
    p95: float | None


@dataclass(frozen=True)
class SymbolStat:
    """One symbol over the run: iterations it reported in, total fills, mean of each KPI."""

    symbol: str
    iterations: int
    fills: int | None
    means: dict[str, float | None]


@dataclass(frozen=True)
class Trend:
    run_id: str
    spec: Mapping[str, Any]
    status: str
    outcome: Mapping[str, Any]
    rows: tuple[Row, ...]
    events: tuple[Event, ...]
    start_overrides: dict[str, Number]
    changed_params: tuple[str, ...]  # in PARAMS order
    levels: dict[str, GateLevel]
    guards_enabled: bool
    final_signature: str
    final_freeze_reason: str
    # The run-level release gate (RELEASE_GATE.json's document), recomputed from the documents;
    # None when the run was never judged (cancelled, lost) or its documents cannot be judged.
    release: Mapping[str, Any] | None
    stats: tuple[RunStat, ...] = ()
    symbol_stats: tuple[SymbolStat, ...] = ()
    release_limits: dict[str, Threshold] = field(default_factory=dict)
    final_overrides: dict[str, Number] = field(default_factory=dict)
    at_bound: dict[str, str] = field(default_factory=dict)  # param -> "lower" | "upper"

    @property
    def mock(self) -> bool:
        return self.spec.get("source") != "file"

    @property
    def guard_events(self) -> tuple[Event, ...]:
        return tuple(e for e in self.events if e.kind == "guard")

    @property
    def freeze_events(self) -> tuple[Event, ...]:
        return tuple(e for e in self.events if e.kind in ("freeze", "unfreeze"))

    @property
    def error_events(self) -> tuple[Event, ...]:
        """Live iterations in error (no report, late, invalid): nothing was tuned in them."""
        return tuple(e for e in self.events if e.kind == "iteration error")

    @property
    def exhausted_events(self) -> tuple[Event, ...]:
        """Defensive rules that held with every key they move pinned (``tuning.exhausted``)."""
        return tuple(e for e in self.events if e.kind == "exhausted")

    @property
    def window(self) -> tuple[int, ...]:
        """The release gate's window (iterations of the final configuration); () when none."""
        its = ((self.release or {}).get("window") or {}).get("iterations") or []
        return tuple(int(i) for i in its)

    def window_kpi(self, metric: str) -> Mapping[str, Any] | None:
        """The release gate's statistics of ``metric`` (n, mean, sd, bound...), if gated."""
        for k in (self.release or {}).get("kpis") or []:
            if k.get("metric") == metric:
                return dict(k)
        return None


def _num(value: Any, metric: str) -> float | None:
    """The value as plotted and tabled; None when the KPI gate would call it unusable (missing,
    not a finite number, or out of its valid range: docs/gates.md)."""
    if metric in ranges():
        return float(value) if is_usable(metric, value) else None
    return float(value) if is_finite_number(value) else None


def _row(doc: Mapping[str, Any]) -> Row:
    s, t = doc["summary"], doc["tuning"]
    fills = s.get("fills")
    return Row(
        iteration=int(doc["iteration"]),
        verdict=str(s.get("kpi_verdict") or "n/a"),
        kpis={k: _num(s.get(k), k) for k in TABLE_KPIS},
        fills=int(fills) if _num(fills, "fills") is not None else None,
        applied=dict(t.get("applied_deltas") or {}),
        suppressed=dict(t.get("suppressed") or {}),
        trimmed=dict(t.get("trimmed") or {}),
        flags=tuple(name for key, name in GUARD_FLAGS if s.get(key)),
        frozen=bool(s.get("freeze_active")),
        overrides_after=dict(t.get("overrides_after") or {}),
        symbols=_symbols(s.get("symbols")),
    )


def _symbols(value: Any) -> dict[str, dict[str, float | None]]:
    """Per-symbol KPIs of one summary (``summary.symbols``), in symbol order."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for symbol in sorted(value):
        kpis = value[symbol]
        if isinstance(kpis, Mapping):
            out[str(symbol)] = {k: _num(kpis.get(k), k) for k in (*TABLE_KPIS, "fills")}
    return out


def _exhausted_events(doc: Mapping[str, Any]) -> list[Event]:
    """``tuning.exhausted``: a defensive rule held but every key it moves is pinned."""
    it = int(doc["iteration"])
    events = []
    for e in doc["tuning"].get("exhausted") or []:
        if not isinstance(e, Mapping):
            continue
        metric = str(e.get("metric", ""))
        value = _num(e.get("value"), metric)
        shown = fmt_kpi(metric, value) if metric in KPI_DECIMALS else str(e.get("value"))
        pinned = ", ".join(str(k) for k in e.get("pinned") or [])
        text = (
            f"rule {e.get('rule')}: {metric} {shown}; tuning cannot fix {metric} further "
            f"({pinned} pinned)"
        )
        events.append(Event(it, "exhausted", text, param=pinned))
    return events


def run_stats(rows: Sequence[Row]) -> tuple[RunStat, ...]:
    """Mean, min, max and p95 of each table KPI over the iterations that have a value."""
    out = []
    for metric in TABLE_KPIS:
        vals = [v for v in (r.kpis[metric] for r in rows) if v is not None]
        if not vals:
            out.append(RunStat(metric, 0, None, None, None, None))
            continue
        out.append(
            RunStat(
                metric,
                len(vals),
                statistics.fmean(vals),
                min(vals),
                max(vals),
                percentile(vals, P95),
            )
        )
    return tuple(out)


def symbol_stats(rows: Sequence[Row]) -> tuple[SymbolStat, ...]:
    """Per symbol: the iterations it appears in, its total fills and each KPI's mean."""
    names = sorted({s for r in rows for s in r.symbols})
    out = []
    for name in names:
        per = [r.symbols[name] for r in rows if name in r.symbols]
        fills = [p["fills"] for p in per if p.get("fills") is not None]
        means: dict[str, float | None] = {}
        for metric in TABLE_KPIS:
            vals = [v for v in (p.get(metric) for p in per) if v is not None]
            means[metric] = statistics.fmean(vals) if vals else None
        total = int(sum(v for v in fills if v is not None)) if fills else None
        out.append(SymbolStat(name, len(per), total, means))
    return tuple(out)


def bound_flags(overrides: Mapping[str, Number]) -> dict[str, str]:
    """Parameters whose value sits on a bound of the parameter table (docs/tuner.md)."""
    out = {}
    for key in KEYS:
        if key not in overrides:
            continue
        p, v = PARAMS[key], float(overrides[key])
        if math.isclose(v, p.lo, rel_tol=0, abs_tol=1e-9):
            out[key] = "lower"
        elif math.isclose(v, p.hi, rel_tol=0, abs_tol=1e-9):
            out[key] = "upper"
    return out


def _guard_events(doc: Mapping[str, Any]) -> list[Event]:
    """Every guard decision of one iteration; a suppressed/trimmed key without one still shows."""
    it, t = int(doc["iteration"]), doc["tuning"]
    events = [
        Event(
            it,
            "guard",
            str(d.get("detail", "")),
            str(d.get("param", "")),
            str(d.get("guard", "")),
            str(d.get("action", "")),
        )
        for d in t.get("guard_decisions") or []
    ]
    seen = {(e.param, e.action) for e in events}
    for action in ("suppressed", "trimmed"):
        for param, guard in sorted((t.get(action) or {}).items()):
            if (param, action) not in seen:
                events.append(Event(it, "guard", "", param, str(guard), action))
    return events


def _freeze_events(docs: Sequence[Mapping[str, Any]]) -> list[Event]:
    """Transitions only: ``freeze_reason`` stays on every later summary, the event happens once."""
    events: list[Event] = []
    was = False
    for doc in docs:
        s = doc["summary"]
        now = bool(s.get("freeze_active"))
        if now != was:
            reason = str(s.get("freeze_reason") or "")
            if now:
                sig = str(s.get("signature_hash") or "")
                events.append(Event(int(doc["iteration"]), "freeze", reason, signature=sig))
            else:
                events.append(Event(int(doc["iteration"]), "unfreeze", reason))
        was = now
        if s.get("iteration_status") == "error":
            text = f"{s.get('iteration_error')}; no tuning"
            events.append(Event(int(doc["iteration"]), "iteration error", text))
    return events


def _release(
    docs: Sequence[Mapping[str, Any]], spec: Mapping[str, Any], outcome: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The run-level release gate, recomputed on the documents the run's gate judged."""
    if outcome.get("release_gate") is None or not docs:
        return None
    from soakq.rules.release_gate import run_gate

    try:
        return run_gate(docs, spec or None).as_json()
    except SoakqError:
        return None


def build_trend(docs: Sequence[Mapping[str, Any]], record: Mapping[str, Any]) -> Trend:
    """The report's content for ``docs`` (iteration order) and the run ``record``."""
    docs = sorted(docs, key=lambda d: int(d["iteration"]))
    spec = record.get("spec") or {}
    outcome = record.get("outcome") or {}
    rows = tuple(_row(d) for d in docs)
    if docs:
        start = dict(docs[0]["tuning"].get("overrides_before") or {})
    else:
        start = dict(spec.get("overrides") or {})
    trajectory = [start, *(r.overrides_after for r in rows)]
    changed = tuple(k for k in KEYS if len({o[k] for o in trajectory if k in o}) > 1)
    events = sorted(
        [e for d in docs for e in (*_guard_events(d), *_exhausted_events(d))]
        + _freeze_events(docs),
        key=lambda e: (e.iteration, e.kind != "guard"),
    )
    last = docs[-1]["summary"] if docs else {}
    guards_enabled = bool(spec.get("guards", last.get("guards_enabled", True)))
    final = {k: trajectory[-1][k] for k in KEYS if k in trajectory[-1]}
    return Trend(
        run_id=str(record.get("run_id") or spec.get("run_id") or "?"),
        spec=spec,
        status=str(record.get("status") or "unknown"),
        outcome=outcome,
        rows=rows,
        events=tuple(events),
        start_overrides={k: start[k] for k in KEYS if k in start},
        changed_params=changed,
        levels={lv.metric: lv for lv in kpi_gate_levels(spec.get("profile_kpi_gate") or None)},
        guards_enabled=guards_enabled,
        final_signature=str(last.get("signature_hash") or ""),
        final_freeze_reason=str(last.get("freeze_reason") or ""),
        release=_release(docs, spec, outcome),
        stats=run_stats(rows),
        symbol_stats=symbol_stats(rows),
        release_limits={th.metric: th for th in release_thresholds()},
        final_overrides=final,
        at_bound=bound_flags(final),
    )


def normalised(key: str, value: float) -> float:
    """``value`` as its position between the parameter's bounds (0 = lo, 1 = hi)."""
    p = PARAMS[key]
    return (value - p.lo) / (p.hi - p.lo)
