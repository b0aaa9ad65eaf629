"""Freeze detection: N stable iterations freeze the overrides; a hard FAIL unfreezes them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from soakq.jsonio import sha256_of
from soakq.params import Number
from soakq.rules.kpi_gate import Verdict

STABLE_ITERATIONS = 3


@dataclass(frozen=True)
class FreezeState:
    active: bool = False
    reason: str = ""
    signature_hash: str = ""
    frozen_at: int = 0
    stable_streak: tuple[int, ...] = ()  # consecutive OK iterations without an applied delta
    proving: tuple[int, ...] = ()  # the iterations that proved stability for the active freeze

    def as_json(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "frozen_at": self.frozen_at,
            "proving": list(self.proving),
            "reason": self.reason,
            "signature_hash": self.signature_hash,
            "stable_streak": list(self.stable_streak),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> FreezeState:
        if not doc:
            return cls()
        return cls(
            active=bool(doc["active"]),
            reason=str(doc["reason"]),
            signature_hash=str(doc["signature_hash"]),
            frozen_at=int(doc["frozen_at"]),
            stable_streak=tuple(doc["stable_streak"]),
            proving=tuple(doc["proving"]),
        )


def signature(overrides: Mapping[str, Number]) -> str:
    """Signature of a configuration: the SHA-256 of its canonical form (same as state_hash)."""
    return sha256_of(dict(overrides))


def unfreeze_on_fail(
    state: FreezeState, *, iteration: int, verdict: Verdict, fail_reasons: tuple[str, ...] = ()
) -> FreezeState:
    """A hard FAIL while frozen unfreezes in that iteration, before tuning, and says why."""
    if not (state.active and verdict == Verdict.FAIL):
        return state
    why = "; ".join(fail_reasons) or "KPI gate FAIL"
    return FreezeState(
        active=False, reason=f"unfrozen at iteration {iteration}: KPI gate FAIL ({why})"
    )


def update_freeze(
    state: FreezeState,
    *,
    iteration: int,
    verdict: Verdict,
    applied_any: bool,
    overrides_after: Mapping[str, Number],
    fail_reasons: tuple[str, ...] = (),
) -> FreezeState:
    """The freeze state after ``iteration`` (unfreezing on a FAIL first, if not done yet)."""
    state = unfreeze_on_fail(state, iteration=iteration, verdict=verdict, fail_reasons=fail_reasons)
    if state.active:
        return state
    stable = verdict == Verdict.OK and not applied_any
    streak = (*state.stable_streak, iteration) if stable else ()
    if len(streak) >= STABLE_ITERATIONS:
        proving = streak[-STABLE_ITERATIONS:]
        return FreezeState(
            active=True,
            reason=(
                f"{STABLE_ITERATIONS} consecutive iterations with KPI OK and no applied "
                f"delta (iterations {', '.join(map(str, proving))})"
            ),
            signature_hash=signature(overrides_after),
            frozen_at=iteration,
            stable_streak=streak,
            proving=proving,
        )
    return FreezeState(reason=state.reason, stable_streak=streak)
