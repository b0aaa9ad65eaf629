"""Run status vocabulary and its legal transitions."""

from __future__ import annotations

from enum import StrEnum

from soakq.errors import StoreError


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST})

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.LOST}
    ),
    RunStatus.RUNNING: frozenset(
        {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST}
    ),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.LOST: frozenset(),
}


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    return target == current or target in TRANSITIONS[current]


def transition(current: RunStatus, target: RunStatus) -> RunStatus:
    """The new status, or StoreError for an illegal move (staying put is always legal)."""
    if not can_transition(current, target):
        raise StoreError(f"illegal run status transition {current} -> {target}")
    return target


class StopReason(StrEnum):
    """Why a run ended early (recorded in the run outcome)."""

    KPI_GATE = "kpi_gate"
    METRICS_ERROR = "metrics_error"
    CANCELLED = "cancelled"
    LOST = "lost"
