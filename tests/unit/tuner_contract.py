"""The tuner v2 contract (docs/tuner.md), written out independently of soakq.rules.tuner, and a
driver that runs a whole run through the pure iteration step.

``contract_propose`` is a second, plain implementation of the rule table from the documented
numbers: the tests compare soakq's tuner with it on hand-picked and on random inputs, so a rule,
a number, a comparison or an order that drifts from the contract shows up as a difference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from soakq.params import PARAMS

Kpis = Mapping[str, Any]
# (key, "add" | "mul", amount, the move's own cap, the move's own floor)
MoveSpec = tuple[str, str, float, float | None, float | None]

TUNED = (
    "risk_ratio",
    "net_bps",
    "maker_taker_ratio",
    "p95_latency_ms",
    "adverse_bps_p95",
    "slippage_bps_p95",
)


def _num(kpis: Kpis, name: str) -> float | None:
    v = kpis.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _all(*checks: Callable[[Kpis], bool]) -> Callable[[Kpis], bool]:
    return lambda k: all(c(k) for c in checks)


def _cmp(name: str, op: str, bound: float) -> Callable[[Kpis], bool]:
    def check(k: Kpis) -> bool:
        v = _num(k, name)
        if v is None:
            return False
        return {">=": v >= bound, ">": v > bound, "<=": v <= bound, "<": v < bound}[op]

    return check


@dataclass(frozen=True)
class ContractRule:
    rule: str
    metric: str
    holds: Callable[[Kpis], bool]
    moves: tuple[MoveSpec, ...]


# Defensive rules, in table order (the first rule to set a key wins).
DEFENSIVE: tuple[ContractRule, ...] = (
    ContractRule(
        "1",
        "risk_ratio",
        _cmp("risk_ratio", ">=", 0.60),
        (
            ("min_interval_ms", "add", 5, 80, None),
            ("impact_cap_ratio", "add", -0.01, None, 0.04),
            ("tail_age_ms", "add", 30, 800, None),
        ),
    ),
    ContractRule(
        "2",
        "risk_ratio",
        _all(_cmp("risk_ratio", ">=", 0.40), _cmp("risk_ratio", "<", 0.60)),
        (
            ("min_interval_ms", "add", 5, 80, None),
            ("impact_cap_ratio", "add", -0.005, None, 0.04),
        ),
    ),
    ContractRule(
        "4",
        "maker_taker_ratio",
        _all(
            _cmp("risk_ratio", "<=", 0.40),
            _cmp("maker_taker_ratio", "<", 0.85),
            _cmp("net_bps", ">=", 2.7),
        ),
        (
            ("base_spread_bps_delta", "add", 0.015, None, None),
            ("replace_rate_per_min", "mul", 0.85, None, None),
            ("min_interval_ms", "add", 25, 100, None),
        ),
    ),
    ContractRule(
        "5a",
        "p95_latency_ms",
        _all(_cmp("p95_latency_ms", ">=", 330), _cmp("p95_latency_ms", "<=", 360)),
        (("tail_age_ms", "add", 50, 800, None),),
    ),
    ContractRule(
        "5b",
        "p95_latency_ms",
        _cmp("p95_latency_ms", ">", 360),
        (("tail_age_ms", "add", 75, 800, None), ("replace_rate_per_min", "mul", 0.9, None, None)),
    ),
    ContractRule(
        "6a",
        "adverse_bps_p95",
        _cmp("adverse_bps_p95", ">", 3.5),
        (
            ("impact_cap_ratio", "add", -0.01, None, None),
            ("max_delta_ratio", "add", -0.01, None, None),
        ),
    ),
    ContractRule(
        "6b",
        "slippage_bps_p95",
        _cmp("slippage_bps_p95", ">", 2.5),
        (("base_spread_bps_delta", "add", 0.02, 0.25, None), ("tail_age_ms", "add", 30, 800, None)),
    ),
)

HARVEST = ContractRule(
    "3",
    "risk_ratio",
    _all(_cmp("risk_ratio", "<", 0.35), _cmp("net_bps", ">=", 3.0)),
    (("min_interval_ms", "add", -3, None, 50), ("impact_cap_ratio", "add", 0.005, 0.10, None)),
)
HARVEST_WINDOW = 3

# A cap (upper) and floor (lower) per key, whichever rule moves it: (floor, cap).
KEY_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "base_spread_bps_delta": (None, 0.25),
    "impact_cap_ratio": (0.04, 0.10),
    "min_interval_ms": (50, 100),
    "tail_age_ms": (None, 800),
}


def defensive_conditions(kpis: Kpis) -> list[str]:
    """The defensive rules whose condition holds on these KPIs, in table order."""
    return [r.rule for r in DEFENSIVE if r.holds(kpis)]


def contract_move(move: MoveSpec, old: float) -> int | float | None:
    """The delta the contract gives for one move from ``old``; None when it proposes nothing."""
    key, kind, amount, own_cap, own_floor = move
    p = PARAMS[key]
    intent = (1 if amount > 0 else -1) if kind == "add" else (1 if amount > 1 else -1)
    target = old + amount if kind == "add" else old * amount
    key_floor, key_cap = KEY_LIMITS.get(key, (None, None))
    caps = [c for c in (own_cap, key_cap) if c is not None]
    floors = [f for f in (own_floor, key_floor) if f is not None]
    if intent > 0 and caps:  # a cap bounds an increase, a floor a decrease
        target = min(target, min(caps))
    if intent < 0 and floors:
        target = max(target, max(floors))
    target = min(max(target, p.lo), p.hi)
    if p.precision == 0:
        new: float = int(round(target))
        delta: int | float = int(round(new - old))
    else:
        new = round(target, p.precision)
        delta = round(new - old, p.precision)
    if delta == 0 or (delta > 0) != (intent > 0):
        return None
    return delta


@dataclass
class ContractProposal:
    deltas: dict[str, int | float] = field(default_factory=dict)
    winner: dict[str, str] = field(default_factory=dict)  # key -> rule that set it
    kind: str = ""
    fired: list[str] = field(default_factory=list)
    exhausted: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)


def window_means(window: Sequence[Kpis]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in TUNED:
        values = [_num(d, name) for d in window]
        present = [v for v in values if v is not None]
        out[name] = math.fsum(present) / len(present) if len(present) == len(values) else None
    return out


def contract_propose(
    summary: Kpis, overrides: Mapping[str, Any], history: Sequence[Kpis] = ()
) -> ContractProposal:
    out = ContractProposal()
    for rule in DEFENSIVE:
        if not rule.holds(summary):
            continue
        out.fired.append(rule.rule)
        pinned: list[str] = []
        for move in rule.moves:
            key = move[0]
            if key in out.deltas:
                continue
            delta = contract_move(move, overrides[key])
            if delta is None:
                pinned.append(key)
            else:
                out.deltas[key], out.winner[key] = delta, rule.rule
        if len(pinned) == len(rule.moves):
            out.exhausted.append((rule.rule, rule.metric, tuple(pinned)))
    if out.fired:
        out.kind = "defensive"
        return out
    window = list(history[-HARVEST_WINDOW:])
    if len(window) < HARVEST_WINDOW or any(d.get("kpi_verdict") != "OK" for d in window):
        return out
    if not HARVEST.holds(window_means(window)):
        return out
    for move in HARVEST.moves:
        delta = contract_move(move, overrides[move[0]])
        if delta is not None:
            out.deltas[move[0]], out.winner[move[0]] = delta, "3"
    if out.deltas:
        out.kind, out.fired = "harvest", ["3"]
    return out


def history_entry(iteration: int, verdict: str, **kpis: Any) -> dict[str, Any]:
    return {"iteration": iteration, "kpi_verdict": verdict, **kpis}


# --- whole runs through the pure iteration step ------------------------------------------------


def drive(spec: Any) -> list[Any]:
    """Run ``spec`` as the embedded driver does (measure every symbol, then the chord-body step),
    without a store or artifacts; the StepResults in order, ending where the run stops."""
    from soakq.iteration import finalize_iteration, initial_state, measure_symbol

    state = initial_state(spec)
    steps = []
    for i in range(1, spec.iterations + 1):
        results = [measure_symbol(spec, i, s, state["overrides"]) for s in spec.symbols]
        step = finalize_iteration(spec, state, i, results)
        steps.append(step)
        state = step.state
        if step.stop is not None:
            break
    return steps


def drive_scripted(spec: Any, kpis_per_iteration: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Like ``drive`` but every symbol reports the given KPIs in iteration i (exact, no source)."""
    from soakq.iteration import finalize_iteration, initial_state

    state = initial_state(spec)
    steps = []
    for i, kpis in enumerate(kpis_per_iteration, start=1):
        results = [{"symbol": s, "metrics": dict(kpis)} for s in spec.symbols]
        step = finalize_iteration(spec, state, i, results)
        steps.append(step)
        state = step.state
        if step.stop is not None:
            break
    return steps
