"""Guards on proposed deltas: deadband, oscillation, cooldown, velocity (docs/tuner.md).

The guard ledger (the applied changes of recent iterations) is part of the run state, so the
guards survive restarts. Everything here is pure: ledger in, decisions and a new ledger out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from soakq.params import PARAMS, Number, fmt

EPS = 1e-9
OSCILLATION_WINDOW = 3  # a reversal within this many iterations of the last change is A->B->A
REVERSAL_WINDOW = 6  # at most one reversal per parameter per this many iterations
COOLDOWN_ITERATIONS = 2  # after a change of at least half the hourly cap


@dataclass(frozen=True)
class GuardDecision:
    param: str
    guard: str  # deadband | oscillation | cooldown | velocity
    action: str  # suppressed | trimmed | bypassed
    detail: str

    def as_json(self) -> dict[str, str]:
        return {
            "action": self.action,
            "detail": self.detail,
            "guard": self.guard,
            "param": self.param,
        }


@dataclass(frozen=True)
class GuardOutcome:
    accepted: dict[str, Number]
    suppressed: dict[str, str]  # param -> guard name
    trimmed: dict[str, str]  # param -> guard name (velocity); the trimmed delta is accepted
    decisions: tuple[GuardDecision, ...] = field(default_factory=tuple)

    def flag(self, guard: str) -> bool:
        return any(d.guard == guard and d.action != "bypassed" for d in self.decisions)


def empty_ledger() -> dict[str, Any]:
    return {"changes": {}, "last_dir": {}}


def _entries(ledger: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    return list(ledger.get("changes", {}).get(key, []))


def _sign(x: float) -> int:
    return 1 if x > 0 else -1


def window_iterations(minutes_per_iteration: float) -> int:
    """How many iterations (the current one included) one rolling hour spans.

    ``minutes_per_iteration`` is the time one iteration covers: the simulator's clock for mock
    sources, the measured window for a live bot. ValueError unless it is finite and > 0.
    """
    if not (math.isfinite(minutes_per_iteration) and minutes_per_iteration > 0):
        raise ValueError(
            f"minutes_per_iteration must be finite and > 0, got {minutes_per_iteration}"
        )
    return max(1, math.ceil(60.0 / minutes_per_iteration - EPS))


def ledger_keep(minutes_per_iteration: float) -> int:
    """Iterations of history the ledger must keep: every guard window, the velocity hour too."""
    return max(
        OSCILLATION_WINDOW + 1,
        REVERSAL_WINDOW,
        COOLDOWN_ITERATIONS + 1,
        window_iterations(minutes_per_iteration),
    )


def _oscillation(
    key: str, delta: Number, entries: list[dict[str, Any]], last_dir: int | None, iteration: int
) -> str | None:
    """Why a reversal of ``key`` is an oscillation, or None (not a reversal, or allowed)."""
    if last_dir is None or _sign(delta) == last_dir or not entries:
        return None
    last = entries[-1]
    if iteration - last["iteration"] <= OSCILLATION_WINDOW and _sign(last["delta"]) != _sign(delta):
        return (
            f"reverses the change of iteration {last['iteration']} "
            f"({fmt(key, last['delta'])}) within {OSCILLATION_WINDOW} iterations"
        )
    reversals = [
        e for e in entries if e.get("reversal") and iteration - e["iteration"] < REVERSAL_WINDOW
    ]
    if reversals:
        return (
            f"already reversed at iteration {reversals[-1]['iteration']}; "
            f"at most 1 reversal per {REVERSAL_WINDOW} iterations"
        )
    return None


def _cooldown(key: str, entries: list[dict[str, Any]], iteration: int) -> str | None:
    """Why ``key`` is cooling down after a large change, or None."""
    half_cap = PARAMS[key].velocity_per_h / 2
    hot = [
        e
        for e in entries
        if iteration - e["iteration"] <= COOLDOWN_ITERATIONS and abs(e["delta"]) >= half_cap - EPS
    ]
    if not hot:
        return None
    return (
        f"changed by {fmt(key, hot[-1]['delta'])} at iteration {hot[-1]['iteration']} "
        f"(>= half the hourly cap {fmt(key, half_cap)}); cooling down "
        f"{COOLDOWN_ITERATIONS} iterations"
    )


def _velocity(
    key: str, delta: Number, entries: list[dict[str, Any]], iteration: int, hour: int
) -> tuple[Number | None, GuardDecision | None]:
    """The delta the hourly budget allows (None: nothing left) and the decision, if any."""
    p = PARAMS[key]
    used = sum(abs(e["delta"]) for e in entries if iteration - e["iteration"] < hour)
    left = p.velocity_per_h - used
    if abs(delta) <= left + EPS:
        return delta, None
    allowed = _floor_to_precision(key, max(left, 0.0))
    if allowed < p.min_step - EPS:
        detail = (
            f"hourly budget {fmt(key, p.velocity_per_h)} used "
            f"({fmt(key, used)} in the last hour of iterations)"
        )
        return None, GuardDecision(key, "velocity", "suppressed", detail)
    new_delta = p.normalize(_sign(delta) * allowed)
    detail = (
        f"{fmt(key, delta)} trimmed to {fmt(key, new_delta)}: "
        f"{fmt(key, left)} left of the hourly budget {fmt(key, p.velocity_per_h)}"
    )
    return new_delta, GuardDecision(key, "velocity", "trimmed", detail)


def guard(
    deltas: Mapping[str, Number],
    ledger: Mapping[str, Any],
    iteration: int,
    *,
    hard_fail: bool,
    minutes_per_iteration: float,
    enabled: bool = True,
) -> GuardOutcome:
    """Filter ``deltas`` through the guards; ``hard_fail`` enables the safety bypass.

    Per parameter, in order: deadband, oscillation, cooldown (both bypassed by a safety move
    under a hard KPI failure), velocity (trims to the hourly budget). docs/tuner.md.
    """
    if not enabled:
        return GuardOutcome(dict(deltas), {}, {}, ())
    accepted: dict[str, Number] = {}
    suppressed: dict[str, str] = {}
    trimmed: dict[str, str] = {}
    decisions: list[GuardDecision] = []
    hour = window_iterations(minutes_per_iteration)
    for key in sorted(deltas):
        p = PARAMS[key]
        delta = deltas[key]
        if abs(delta) < p.min_step - EPS:
            detail = f"|{fmt(key, delta)}| below minimum step {fmt(key, p.min_step)}"
            suppressed[key] = "deadband"
            decisions.append(GuardDecision(key, "deadband", "suppressed", detail))
            continue
        entries = _entries(ledger, key)
        bypass = hard_fail and p.is_safe_move(delta)
        last_dir = ledger.get("last_dir", {}).get(key)
        checks = (
            ("oscillation", _oscillation(key, delta, entries, last_dir, iteration)),
            ("cooldown", _cooldown(key, entries, iteration)),
        )
        blocked = False
        for name, reason in checks:
            if reason is None:
                continue
            if not bypass:
                suppressed[key] = name
                decisions.append(GuardDecision(key, name, "suppressed", reason))
                blocked = True
                break
            detail = "safety move under hard KPI failure: " + reason
            decisions.append(GuardDecision(key, name, "bypassed", detail))
        if blocked:
            continue
        allowed, decision = _velocity(key, delta, entries, iteration, hour)
        if decision is not None:
            decisions.append(decision)
        if allowed is None:
            suppressed[key] = "velocity"
            continue
        if decision is not None:
            trimmed[key] = "velocity"
        accepted[key] = allowed
    return GuardOutcome(accepted, suppressed, trimmed, tuple(decisions))


def _floor_to_precision(key: str, value: float) -> float:
    p = PARAMS[key]
    scale = 10**p.precision
    return math.floor(value * scale + EPS) / scale


def record_changes(
    ledger: Mapping[str, Any],
    iteration: int,
    applied: Mapping[str, Number],
    *,
    minutes_per_iteration: float,
) -> dict[str, Any]:
    """The ledger after ``applied`` (effective deltas) took effect at ``iteration``.

    Entries older than ``ledger_keep(minutes_per_iteration)`` iterations are dropped: the
    ledger always covers the velocity hour, however short an iteration is.
    """
    keep = ledger_keep(minutes_per_iteration)
    changes = {k: [dict(e) for e in v] for k, v in ledger.get("changes", {}).items()}
    last_dir = dict(ledger.get("last_dir", {}))
    for key in sorted(applied):
        delta = applied[key]
        if delta == 0:
            continue
        reversal = key in last_dir and _sign(delta) != last_dir[key]
        changes.setdefault(key, []).append(
            {"delta": delta, "iteration": iteration, "reversal": reversal}
        )
        last_dir[key] = _sign(delta)
    pruned = {k: [e for e in v if iteration - e["iteration"] < keep] for k, v in changes.items()}
    return {"changes": {k: v for k, v in sorted(pruned.items()) if v}, "last_dir": last_dir}
