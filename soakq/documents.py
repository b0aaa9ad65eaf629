"""The run's stored documents as typed models, validated whenever they are read from a store.

A run store holds, per run, a **record** (``RunRecord``: status, spec, outcome, runtime, the
drive of the iteration it waits for, the watchdog's events) and a **state** (``RunState``: the
overrides in force, the guards' ledger, the freeze, the streaks, the stop). Both are plain JSON in
Redis or in memory; ``load_record`` / ``load_state`` validate them with these models, so a
document that does not have the one schema (a corrupted key, a record of another version) is a
StoreError naming the run and the field, whatever the mode — never a KeyError in iteration 17.
Field meanings: docs/architecture.md ("Run record and state") and docs/artifacts.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soakq.config import RunSpec
from soakq.errors import StoreError
from soakq.states import RunStatus
from soakq.store import RunStore


class _Doc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class LedgerChange(_Doc):
    """One applied change the guards remember: its effective delta, its iteration, and whether
    it reversed the key's previous direction."""

    delta: float
    iteration: int = Field(ge=1)
    reversal: bool


class Ledger(_Doc):
    """The guards' memory: applied changes per key within the ledger window, and each key's last
    direction (+1 / -1)."""

    changes: dict[str, list[LedgerChange]] = Field(default_factory=dict)
    last_dir: dict[str, int] = Field(default_factory=dict)


class Freeze(_Doc):
    """The freeze: active or not, why, the frozen overrides' signature, when it froze, the
    current stable streak and the iterations that proved the active freeze."""

    active: bool
    frozen_at: int = Field(ge=0)
    proving: list[int]
    reason: str
    signature_hash: str
    stable_streak: list[int]


class Stop(_Doc):
    """Why the run stops early (``kpi_gate``, ``metrics_error``), and the detail."""

    reason: str
    detail: str


class RunState(_Doc):
    """The state after ``iteration`` committed iterations: what the next one runs with."""

    iteration: int = Field(ge=0)
    overrides: dict[str, int | float]
    ledger: Ledger
    freeze: Freeze
    fail_streak: int = Field(ge=0)
    recent: list[dict[str, int | float | str | None]]
    error_streak: int = Field(0, ge=0)
    stop: Stop | None = None


class Drive(_Doc):
    """The start of the iteration the run waits for: its attempt, when it is due, when it was
    enqueued (None while it waits in the due set for the tick), and the deadline after which the
    watchdog re-drives it. Epoch seconds."""

    iteration: int = Field(ge=1)
    attempt: int = Field(ge=0)
    due_ts: float
    enqueued_ts: float | None
    deadline_ts: float

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Drive | None:
        """The drive of a record document (None before the first start)."""
        doc = record.get("drive")
        return None if not doc else cls.model_validate(doc)

    def as_json(self) -> dict[str, Any]:
        return self.model_dump()

    def in_flight(self, iteration: int, now: float) -> bool:
        """Started for ``iteration`` and not past its deadline."""
        return (
            self.iteration == iteration and self.enqueued_ts is not None and now < self.deadline_ts
        )


class WatchdogEvent(_Doc):
    attempt: int = Field(ge=0)
    at_ts: float
    iteration: int = Field(ge=1)
    reason: str


class Outcome(_Doc):
    """How the run ended (empty while it runs)."""

    detail: str | None = None
    exit_code: int | None = None
    iterations_completed: int | None = Field(None, ge=0)
    iterations_planned: int | None = Field(None, ge=1)
    release_gate: str | None = None
    stop_reason: str | None = None


class Published(_Doc):
    at: str
    status: RunStatus


class RunRecord(_Doc):
    """A run's record."""

    run_id: str
    status: RunStatus
    spec: RunSpec
    outcome: Outcome
    runtime: dict[str, Any]
    drive: Drive | None = None
    published: Published | None = None
    watchdog: list[WatchdogEvent] = Field(default_factory=list)


def _checked(model: type[_Doc], doc: Mapping[str, Any], what: str) -> Any:
    try:
        return model.model_validate(dict(doc))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "document"
        raise StoreError(f"{what}: {where}: {err['msg']}") from None


def check_record(doc: Mapping[str, Any], run_id: str) -> RunRecord:
    """``doc`` as a RunRecord; StoreError naming the run and the field when it is not one."""
    record: RunRecord = _checked(RunRecord, doc, f"record of run {run_id}")
    return record


def check_state(doc: Mapping[str, Any], run_id: str) -> RunState:
    """``doc`` as a RunState; StoreError naming the run and the field when it is not one."""
    state: RunState = _checked(RunState, doc, f"state of run {run_id}")
    return state


def load_record(store: RunStore, run_id: str) -> tuple[RunRecord, dict[str, Any]]:
    """The run's record, validated, and the document as stored; StoreError when missing."""
    doc = store.get_record(run_id)
    if doc is None:
        raise StoreError(f"run {run_id!r} not found")
    return check_record(doc, run_id), doc


def load_run(store: RunStore, run_id: str) -> tuple[RunRecord, RunState] | None:
    """The run's record and state, validated, read together; None when the run does not
    exist. StoreError when either is not the one schema."""
    try:
        record, state, _ = store.read_run(run_id)
    except KeyError:
        return None
    return check_record(record, run_id), check_state(state, run_id)


def load_state(store: RunStore, run_id: str) -> tuple[RunState, dict[str, Any], int]:
    """The run's state, validated, the document as stored, and its version."""
    doc, version = store.get_state(run_id)
    return check_state(doc, run_id), doc, version
