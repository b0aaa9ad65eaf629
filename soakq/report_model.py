"""What the trend report shows, extracted once from the iteration documents and the run record.

Pure: documents in, a frozen ``Trend`` out. The Markdown and the chart both render this one value,
so they never disagree. Only deterministic fields are read (never ``runtime``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from soakq.errors import SoakqError
from soakq.jsonio import is_finite_number
from soakq.params import KEYS, PARAMS, Number
from soakq.thresholds import GateLevel, kpi_gate_levels

TABLE_KPIS = ("net_bps", "risk_ratio", "maker_taker_ratio", "p95_latency_ms", "adverse_bps_p95")
# All five KPI-gate metrics: without adverse_bps_p95 a FAIL caused by it looks unexplained.
CHART_KPIS = TABLE_KPIS
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
    kpis: dict[str, float | None]  # None: missing or not finite
    fills: int | None
    applied: dict[str, Number]
    suppressed: dict[str, str]  # param -> guard
    trimmed: dict[str, str]  # param -> guard
    flags: tuple[str, ...]  # guard names whose flag is set
    frozen: bool
    overrides_after: dict[str, Number]


@dataclass(frozen=True)
class Event:
    """A guard decision or a freeze transition, in iteration order."""

    iteration: int
    kind: str  # "guard" | "freeze" | "unfreeze"
    text: str
    param: str = ""
    guard: str = ""
    action: str = ""  # suppressed | trimmed | bypassed (guard events)
    signature: str = ""  # freeze events


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


def _num(value: Any) -> float | None:
    return float(value) if is_finite_number(value) else None


def _row(doc: Mapping[str, Any]) -> Row:
    s, t = doc["summary"], doc["tuning"]
    fills = s.get("fills")
    return Row(
        iteration=int(doc["iteration"]),
        verdict=str(s.get("kpi_verdict") or "n/a"),
        kpis={k: _num(s.get(k)) for k in TABLE_KPIS},
        fills=int(fills) if is_finite_number(fills) else None,
        applied=dict(t.get("applied_deltas") or {}),
        suppressed=dict(t.get("suppressed") or {}),
        trimmed=dict(t.get("trimmed") or {}),
        flags=tuple(name for key, name in GUARD_FLAGS if s.get(key)),
        frozen=bool(s.get("freeze_active")),
        overrides_after=dict(t.get("overrides_after") or {}),
    )


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
    from soakq.release_gate import run_gate

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
        [e for d in docs for e in _guard_events(d)] + _freeze_events(docs),
        key=lambda e: (e.iteration, e.kind != "guard"),
    )
    last = docs[-1]["summary"] if docs else {}
    guards_enabled = bool(spec.get("guards", last.get("guards_enabled", True)))
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
    )


def normalised(key: str, value: float) -> float:
    """``value`` as its position between the parameter's bounds (0 = lo, 1 = hi)."""
    p = PARAMS[key]
    return (value - p.lo) / (p.hi - p.lo)
