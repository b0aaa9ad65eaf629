"""Run status vocabulary and its one transition table.

::

    queued ──> running ──> succeeded
       │        │
       │        ▼
       ├──> interrupted ──> succeeded | failed | cancelled | lost
       │          │
       └──────────┴──────> failed | cancelled | lost        (terminal: never left)

``interrupted`` is an embedded run whose process was stopped (Ctrl-C, SIGTERM): nothing works on
it any more, and it is never moved back to ``running`` — ``soakq resume`` restores a fresh
record from its checkpoint into a new store (docs/resume.md). Only ``queued`` and ``running``
runs take work (``accepts_work``); a step already past that check may still commit, which is why
an interrupted run may still end.

``TRANSITIONS`` is the only place the allowed moves are written down. The stores apply it
atomically where the status lives: ``MemoryStore`` calls ``transition()`` under its lock, and the
Redis store's Lua script checks the allowed-from set that ``allowed_from()`` derives from the same
table (docs/architecture.md, "Run life-cycle").
"""

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
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def accepts_work(self) -> bool:
        """Whether a task may start or finalize an iteration of a run in this status."""
        return self in (RunStatus.QUEUED, RunStatus.RUNNING)


TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST})

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.INTERRUPTED,
            RunStatus.CANCELLED,
            RunStatus.FAILED,
            RunStatus.LOST,
        }
    ),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.SUCCEEDED,
            RunStatus.INTERRUPTED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.LOST,
        }
    ),
    RunStatus.INTERRUPTED: frozenset(
        {
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.LOST,
        }
    ),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.CANCELLED: frozenset(),
    RunStatus.LOST: frozenset(),
}


class IllegalTransition(StoreError):
    """A status change the table does not allow (a terminal status is never left)."""


def can_transition(current: RunStatus, target: RunStatus) -> bool:
    return target == current or target in TRANSITIONS[current]


def transition(current: RunStatus, target: RunStatus) -> RunStatus:
    """The new status, or IllegalTransition for an illegal move (staying put is always legal)."""
    if not can_transition(current, target):
        raise IllegalTransition(f"illegal run status transition {current} -> {target}")
    return target


def allowed_from(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses from which ``target`` may be entered (``target`` itself excluded)."""
    return frozenset(s for s, nexts in TRANSITIONS.items() if target in nexts)


class StopReason(StrEnum):
    """Why a run ended early (recorded in the run outcome)."""

    KPI_GATE = "kpi_gate"
    METRICS_ERROR = "metrics_error"
    CANCELLED = "cancelled"
    LOST = "lost"
    NOT_STARTED = "not_started"  # its first message could not be sent to the workers
    INTERRUPTED = "interrupted"  # its embedded process was stopped; `soakq resume` continues it
