"""Micro-tuner v2: defensive and harvest rules, as data, giving relative deltas (docs/tuner.md).

*Defensive* rules act on the current iteration whenever their condition holds; the first one to
set a key wins. *Harvest* rules give back safety margin: they act only when no defensive rule
fired and each of the last ``harvest_window`` iterations had KPI verdict OK, and they read the
mean of those iterations, so one lucky draw never relaxes anything. A cap or floor in
``key_limits`` applies to its key whichever rule moves it. When a defensive rule's condition
holds but every key it would move is pinned, the proposal records it as *exhausted*.

The rules live in ``soakq/data/tuner_rules.json``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from statistics import fmean
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from soakq.errors import ConfigError
from soakq.jsonio import is_finite_number, loads
from soakq.params import PARAMS, Number, fmt
from soakq.rules.thresholds import fmt_num

TUNED_KPIS = (
    "risk_ratio",
    "net_bps",
    "maker_taker_ratio",
    "p95_latency_ms",
    "adverse_bps_p95",
    "slippage_bps_p95",
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Limit(_Frozen):
    """A tuning cap (upper) and/or floor (lower) for one key."""

    cap: float | None = None
    floor: float | None = None


class Move(_Frozen):
    """One key moved by ``add`` (absolute) or ``mul`` (factor), within its cap or floor."""

    key: str
    add: float | None = None
    mul: float | None = Field(default=None, gt=0)
    cap: float | None = None
    floor: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Move:
        if self.key not in PARAMS:
            raise ValueError(f"unknown parameter {self.key!r}")
        if (self.add is None) == (self.mul is None):
            raise ValueError(f"{self.key}: give exactly one of add or mul")
        if self.add == 0 or self.mul == 1:
            raise ValueError(f"{self.key}: a move must change the value")
        return self

    @property
    def intent(self) -> int:
        """+1 for an increase, -1 for a decrease."""
        return 1 if (self.add is not None and self.add > 0) or (self.mul or 0) > 1 else -1


Condition = tuple[str, Literal[">=", ">", "<=", "<"], float]


class Rule(_Frozen):
    """``moves`` apply when every ``when`` condition holds; ``metric`` is what the rule fixes."""

    rule: str
    metric: str
    when: tuple[Condition, ...] = Field(min_length=1)
    moves: tuple[Move, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_metrics(self) -> Rule:
        for name in (self.metric, *(c[0] for c in self.when)):
            if name not in TUNED_KPIS:
                raise ValueError(f"rule {self.rule}: unknown metric {name!r}")
        return self

    def holds(self, kpis: Mapping[str, float | None]) -> bool:
        """True when every condition holds; a missing metric makes a condition false."""
        for metric, op, bound in self.when:
            value = kpis.get(metric)
            if value is None or not _OPS[op](value, bound):
                return False
        return True

    def describe(self, kpis: Mapping[str, float | None]) -> str:
        return " and ".join(
            f"{metric} {fmt_num(kpis[metric] or 0.0)} {op} {fmt_num(bound)}"
            for metric, op, bound in self.when
        )


class TunerRules(_Frozen):
    """The whole rule table (``soakq/data/tuner_rules.json``)."""

    description: str = ""
    defensive: tuple[Rule, ...]
    harvest: tuple[Rule, ...]
    harvest_window: int = Field(ge=1, le=100)
    key_limits: dict[str, Limit]

    @model_validator(mode="after")
    def _known_keys(self) -> TunerRules:
        unknown = sorted(set(self.key_limits) - set(PARAMS))
        if unknown:
            raise ValueError(f"key_limits: unknown parameter(s) {', '.join(unknown)}")
        return self

    def limits(self, move: Move) -> tuple[float | None, float | None]:
        """The move's cap and floor after the key-wide limit (the tighter of the two wins)."""
        key = self.key_limits.get(move.key, Limit())
        caps = [c for c in (move.cap, key.cap) if c is not None]
        floors = [f for f in (move.floor, key.floor) if f is not None]
        return (min(caps) if caps else None, max(floors) if floors else None)


@cache
def load_rules() -> TunerRules:
    """The packaged rule table, validated; ConfigError naming the problem otherwise."""
    text = resources.files("soakq.data").joinpath("tuner_rules.json").read_text("utf-8")
    try:
        return TunerRules.model_validate(loads(text, what="tuner_rules.json"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"tuner_rules.json {where}: {first['msg']}") from None


@dataclass(frozen=True)
class Exhaustion:
    """A defensive rule held, but every key it would move is pinned at its cap or floor."""

    rule: str
    metric: str
    value: float
    pinned: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "pinned": list(self.pinned),
            "rule": self.rule,
            "value": self.value,
        }

    @property
    def text(self) -> str:
        return (
            f"tuning cannot fix {self.metric} further (rule {self.rule}: "
            f"{', '.join(self.pinned)} pinned)"
        )


@dataclass(frozen=True)
class Proposal:
    """Deltas by parameter, a one-line rationale for each, and what happened on the whole.

    ``kind`` is ``defensive``, ``harvest`` or ``""`` (nothing proposed); ``fired`` lists the
    rules whose condition held, in table order.
    """

    deltas: dict[str, Number] = field(default_factory=dict)
    rationale: dict[str, str] = field(default_factory=dict)
    note: str = ""
    kind: str = ""
    fired: tuple[str, ...] = ()
    exhausted: tuple[Exhaustion, ...] = ()


def relative_move(
    key: str,
    old: Number,
    *,
    add: float | None = None,
    mul: float | None = None,
    cap: float | None = None,
    floor: float | None = None,
) -> Number | None:
    """The delta that moves ``key`` from ``old`` by ``add`` or ``×mul``, capped/floored/bounded.

    A cap bounds an increase and a floor bounds a decrease: a cap never makes a decrease
    larger than its step (nor a floor an increase). Returns None when the move would be zero
    or would go against its intent (a cap below the current value would turn an increase into
    a decrease).
    """
    p = PARAMS[key]
    if add is not None:
        target, intent = old + add, (1 if add > 0 else -1)
    else:
        if mul is None:
            raise ValueError("relative_move needs add or mul")
        target, intent = old * mul, (1 if mul > 1 else -1)
    if cap is not None and intent > 0:
        target = min(target, cap)
    if floor is not None and intent < 0:
        target = max(target, floor)
    new = p.normalize(p.clamp(target))
    delta = p.normalize(new - old)
    if delta == 0 or (delta > 0) != (intent > 0):
        return None
    return delta


def _kpis(doc: Mapping[str, Any]) -> dict[str, float | None]:
    return {k: float(doc[k]) if is_finite_number(doc.get(k)) else None for k in TUNED_KPIS}


def _window_means(window: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Per KPI, the mean over the window; None when any iteration lacks it."""
    rows = [_kpis(d) for d in window]
    out: dict[str, float | None] = {}
    for key in TUNED_KPIS:
        values = [r[key] for r in rows]
        present = [v for v in values if v is not None]
        out[key] = fmean(present) if len(present) == len(values) else None
    return out


def _move_delta(rules: TunerRules, move: Move, old: Number) -> Number | None:
    cap, floor = rules.limits(move)
    return relative_move(move.key, old, add=move.add, mul=move.mul, cap=cap, floor=floor)


def _defensive(
    rules: TunerRules, kpis: Mapping[str, float | None], overrides: Mapping[str, Number]
) -> Proposal:
    deltas: dict[str, Number] = {}
    rationale: dict[str, str] = {}
    fired: list[str] = []
    exhausted: list[Exhaustion] = []
    for rule in rules.defensive:
        if not rule.holds(kpis):
            continue
        fired.append(rule.rule)
        pinned: list[str] = []
        for move in rule.moves:
            if move.key in deltas:
                continue
            delta = _move_delta(rules, move, overrides[move.key])
            if delta is None:
                pinned.append(move.key)
                continue
            deltas[move.key] = delta
            rationale[move.key] = _why(rule, "defensive", rule.describe(kpis), move.key, delta)
        if len(pinned) == len(rule.moves):
            exhausted.append(
                Exhaustion(rule.rule, rule.metric, kpis[rule.metric] or 0.0, tuple(pinned))
            )
    if not fired:
        return Proposal()
    note = f"defensive rule(s) {', '.join(fired)}: {len(deltas)} change(s) proposed"
    return Proposal(deltas, rationale, note, "defensive", tuple(fired), tuple(exhausted))


def _harvest(
    rules: TunerRules, history: Sequence[Mapping[str, Any]], overrides: Mapping[str, Number]
) -> Proposal:
    window = list(history[-rules.harvest_window :])
    if len(window) < rules.harvest_window:
        return Proposal(note=f"no rule fired (harvest needs {rules.harvest_window} iterations)")
    not_ok = [d.get("iteration") for d in window if d.get("kpi_verdict") != "OK"]
    if not_ok:
        return Proposal(note=f"no rule fired (harvest waits: iteration {not_ok[-1]} not OK)")
    means = _window_means(window)
    span = f"mean of iterations {window[0].get('iteration')}-{window[-1].get('iteration')}"
    for rule in rules.harvest:
        if not rule.holds(means):
            continue
        deltas: dict[str, Number] = {}
        rationale: dict[str, str] = {}
        for move in rule.moves:
            delta = _move_delta(rules, move, overrides[move.key])
            if delta is not None:
                deltas[move.key] = delta
                condition = f"{span}: {rule.describe(means)}"
                rationale[move.key] = _why(rule, "harvest", condition, move.key, delta)
        if deltas:
            note = f"harvest rule {rule.rule}: {len(deltas)} change(s) proposed"
            return Proposal(deltas, rationale, note, "harvest", (rule.rule,))
    return Proposal(note="no rule fired")


def _why(rule: Rule, kind: str, condition: str, key: str, delta: Number) -> str:
    sign = "+" if delta > 0 else ""
    return f"rule {rule.rule} ({kind}): {condition} -> {key} {sign}{fmt(key, delta)}"


def propose(
    summary: Mapping[str, Any],
    overrides: Mapping[str, Number],
    history: Sequence[Mapping[str, Any]] = (),
    *,
    rules: TunerRules | None = None,
) -> Proposal:
    """Deltas for the next iteration.

    ``summary`` holds the current iteration's aggregate KPIs; ``history`` the iterations up to
    and including the current one, oldest first, each a mapping with ``iteration``,
    ``kpi_verdict`` and the KPIs of ``TUNED_KPIS`` (only the last ``harvest_window`` are read).
    Defensive rules win; harvest rules are tried only when no defensive rule fired.
    """
    rules = rules or load_rules()
    defensive = _defensive(rules, _kpis(summary), overrides)
    if defensive.fired:
        return defensive
    return _harvest(rules, history, overrides)
