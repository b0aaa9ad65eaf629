"""Run orchestration on a RunStore: start, finalize an iteration under the fenced lock, complete.

These functions are the whole life of a run. The embedded driver and the Celery tasks both call
them, so both produce the same records (and so the same artifacts). Every status change is one
``RunStore.transition``: the store checks the transition table where the status lives, so a
cancel, a completion and the watchdog's "lost" can race and exactly one terminal status wins
(docs/architecture.md, "Run life-cycle").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from soakq.config import RunSpec
from soakq.documents import (
    Drive,
    RunRecord,
    RunState,
    check_record,
    check_state,
    load_record,
    load_run,
)
from soakq.errors import ExitCode, SoakqError, StoreError
from soakq.iteration import finalize_iteration, initial_state
from soakq.rules.release_gate import failed_gate, run_gate
from soakq.states import RunStatus, StopReason
from soakq.store import CommitOutcome, JsonDict, RunStore, Transition

log = logging.getLogger(__name__)

Clock = Callable[[], float]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FinalizeStatus(StrEnum):
    COMMITTED = "committed"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"  # the run takes no work: it ended, or it is interrupted
    LOCKED = "locked"  # someone else holds the lock: retry later
    REFUSED = "refused"  # fence or version refused the commit: retry later
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True)
class Ready:
    """What a start of the next iteration needs, held by the chord body that committed the
    previous one: the spec and the overrides in force (neither can change before that next
    iteration commits), so the start reads nothing from the store."""

    spec: RunSpec
    overrides: Mapping[str, Any]


@dataclass(frozen=True)
class FinalizeResult:
    status: FinalizeStatus
    next_iteration: int | None = None  # the successor, when the run goes on
    next_due_ts: float | None = None
    completed: bool = False
    doc: JsonDict | None = None  # the document this call committed
    ready: Ready | None = None  # what starting the successor needs
    drive: Drive | None = None  # the successor's drive, when the commit recorded it


def load_spec(store: RunStore, run_id: str) -> tuple[RunSpec, dict[str, Any]]:
    """The run's spec and record, the record validated (soakq/documents.py)."""
    typed, record = load_record(store, run_id)
    return typed.spec, record


def new_record(spec: RunSpec, *, now: float, mode: str, report: bool = True) -> dict[str, Any]:
    """A queued run's record. ``report=False``: its directory gets no trend report (a sweep's
    runs: hundreds of them; ``soakq report DIR`` draws one on demand)."""
    runtime: dict[str, Any] = {"execution": mode, "submitted_at": iso(now)}
    if not report:
        runtime["report"] = False
    return {
        "outcome": {},
        "run_id": spec.run_id,
        "runtime": runtime,
        "spec": spec.as_json(),
        "status": str(RunStatus.QUEUED),
    }


def start_run(
    store: RunStore, spec: RunSpec, *, now: float, mode: str, report: bool = True
) -> bool:
    """Record the run and schedule iteration 1 now. False if the run id already exists."""
    created = store.create_run(
        spec.run_id, new_record(spec, now=now, mode=mode, report=report), initial_state(spec)
    )
    if created:
        store.schedule(spec.run_id, 1, now)
    return created


#: How many taken ids ``start_run_unique`` steps over before giving up (a counter that expired
#: while runs it numbered live on is the only way to meet one).
SUFFIX_ATTEMPTS = 1000


def start_run_unique(store: RunStore, spec: RunSpec, *, now: float, mode: str) -> RunSpec:
    """Start ``spec`` under its derived id, or ``<id>-2``, ``<id>-3``, ... when re-submitted:
    the suffix comes from the store's counter (O(1)), not from probing."""
    base = spec.run_id
    for _ in range(SUFFIX_ATTEMPTS):
        n = store.next_suffix(base)
        candidate = spec if n == 1 else spec.model_copy(update={"run_id": f"{base}-{n}"})
        if start_run(store, candidate, now=now, mode=mode):
            return candidate
    raise StoreError(f"no free run id after {base}-{n}; choose one with --run-id")


def set_status(
    store: RunStore, run_id: str, target: RunStatus, *, clock: Clock = time.time, **changes: Any
) -> dict[str, Any] | None:
    """Move the run to ``target`` with ``changes`` if the table allows it from the status the
    run has at that moment (atomic in the store); the new record, or None (nothing written)."""
    return transition(store, run_id, target, lambda _record, _state: changes, clock=clock).record


def transition(
    store: RunStore,
    run_id: str,
    target: RunStatus,
    changes: Callable[[JsonDict, JsonDict], JsonDict] | None = None,
    *,
    clock: Clock = time.time,
) -> Transition:
    """``store.transition``; a missing run is a StoreError."""
    try:
        return store.transition(run_id, target, changes, now_ts=clock())
    except KeyError:
        raise StoreError(f"run {run_id!r} not found") from None


#: Plans the drive of the successor a commit leaves due: (next iteration, its due time, now) ->
#: the drive to record with the commit (soakq/lifecycle.py, ``planner``).
Successor = Callable[[int, float, float], Drive]


def finalize(
    store: RunStore,
    run_id: str,
    iteration: int,
    results: list[Mapping[str, Any]],
    *,
    owner: str,
    clock: Clock = time.time,
    lock_ttl_ms: int = 30_000,
    started_ts: float | None = None,
    successor: Successor | None = None,
) -> FinalizeResult:
    """The chord body: judge, tune, guard, apply and commit iteration ``iteration`` once.

    Under the run's fenced lock: one read of record, state and version, the pure step, then one
    commit that writes the document and the state, releases the lock and (``successor`` given)
    records the successor's drive in the record, all in one store step. A record that changed
    meanwhile (a watchdog note, a cancel) leaves the drive to ``lifecycle.after_commit``."""
    lease = store.acquire_lock(run_id, owner, lock_ttl_ms)
    if lease is None:
        return FinalizeResult(FinalizeStatus.LOCKED)
    outcome = None
    try:
        try:
            record_doc, state_doc, version = store.read_run(run_id)
        except KeyError:
            raise StoreError(f"run {run_id!r} not found") from None
        record = check_record(record_doc, run_id)  # validated: one schema, every mode
        state = check_state(state_doc, run_id)
        if not record.status.accepts_work:  # ended, or interrupted (docs/resume.md)
            return FinalizeResult(FinalizeStatus.SKIPPED)
        if state.iteration >= iteration:
            return FinalizeResult(FinalizeStatus.DUPLICATE)
        if state.iteration != iteration - 1:
            return FinalizeResult(FinalizeStatus.OUT_OF_ORDER)
        spec = record.spec
        step = finalize_iteration(spec, state_doc, iteration, list(results))
        now = clock()
        doc = dict(step.doc)
        doc["runtime"] = {
            "finished_at": iso(now),
            "started_at": iso(started_ts if started_ts is not None else now),
            "worker": owner,
        }
        new_state = dict(step.state)
        new_state["stop"] = (
            {"detail": step.stop_detail, "reason": str(step.stop)} if step.stop else None
        )
        finished = step.stop is not None or iteration >= spec.iterations
        due = now + spec.interval_s
        drive = None if finished or successor is None else successor(iteration + 1, due, now)
        update = None if drive is None else (record_doc, {**record_doc, "drive": drive.as_json()})
        outcome = store.commit_iteration(
            run_id, iteration, doc, new_state, lease, version, record=update
        )
    finally:
        if outcome is None or not outcome.committed:
            store.release_lock(run_id, lease)  # a commit releases it itself
    if outcome == CommitOutcome.DUPLICATE:
        return FinalizeResult(FinalizeStatus.DUPLICATE)
    if outcome == CommitOutcome.RUN_ENDED:
        return FinalizeResult(FinalizeStatus.SKIPPED)
    if not outcome.committed:
        log.warning("run %s iteration %s: commit refused (%s)", run_id, iteration, outcome)
        return FinalizeResult(FinalizeStatus.REFUSED)
    if record.status == RunStatus.QUEUED:
        transition(store, run_id, RunStatus.RUNNING, clock=clock)
    if finished:
        complete_run(store, run_id, clock=clock, known=(spec, check_state(new_state, run_id)))
        return FinalizeResult(FinalizeStatus.COMMITTED, completed=True, doc=doc)
    return FinalizeResult(
        FinalizeStatus.COMMITTED,
        iteration + 1,
        due,
        doc=doc,
        ready=Ready(spec, new_state["overrides"]),
        drive=drive if outcome == CommitOutcome.COMMITTED else None,
    )


def outcome_of(spec: RunSpec, state: RunState, status: RunStatus) -> dict[str, Any]:
    """The record's ``outcome`` for a run ending with ``status`` after ``state``."""
    reason = None if state.stop is None else state.stop.reason
    if status == RunStatus.SUCCEEDED:
        code = ExitCode.OK
    elif reason == StopReason.KPI_GATE:
        code = ExitCode.KPI_GATE
    else:
        code = ExitCode.FAILED
    return {
        "detail": "" if state.stop is None else state.stop.detail,
        "exit_code": int(code),
        "iterations_completed": state.iteration,
        "iterations_planned": spec.iterations,
        "stop_reason": reason,
    }


def release_gate_of(spec: RunSpec, docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run-level RELEASE_GATE document of a run's iterations (None without any)."""
    if not docs:
        return None
    try:
        return run_gate(docs, spec.as_json(), where=f"run {spec.run_id}").as_json()
    except SoakqError as exc:  # documents the gate cannot read are a failed gate, said plainly
        return failed_gate(str(exc))


def complete_run(
    store: RunStore,
    run_id: str,
    *,
    clock: Clock = time.time,
    known: tuple[RunSpec, RunState] | None = None,
) -> None:
    """Close the run: run-level release gate on its window, final status. Idempotent.
    ``known``: the spec and the final state, when the caller holds them (the body that
    committed the last iteration); else they are read."""
    if known is None:
        record, state = _loaded(store, run_id)
        if record.status.terminal:
            return
        spec = record.spec
    else:
        spec, state = known
    gate = release_gate_of(spec, store.iterations(run_id)) if state.iteration else None
    if gate is not None and not store.put_extra(run_id, "release_gate", gate):
        gate = store.get_extra(run_id, "release_gate") or gate  # a racing closer's, first
    status = RunStatus.FAILED if state.stop is not None else RunStatus.SUCCEEDED
    outcome = outcome_of(spec, state, status)
    outcome["release_gate"] = None if gate is None else gate["verdict"]
    now = clock()

    def changes(record: JsonDict, _state: JsonDict) -> JsonDict:
        runtime = check_record(record, run_id).runtime
        return {"outcome": outcome, "runtime": {**runtime, "finished_at": iso(now)}}

    transition(store, run_id, status, changes, clock=lambda: now)


def close_if_finished(store: RunStore, run_id: str, *, clock: Clock = time.time) -> bool:
    """Close a run whose last iteration is committed when whoever committed it died before
    closing it (``complete_run`` is idempotent). True when the run is finished."""
    record, state = _loaded(store, run_id)
    if state.stop is None and state.iteration < record.spec.iterations:
        return False
    complete_run(store, run_id, clock=clock)
    return True


def _loaded(store: RunStore, run_id: str) -> tuple[RunRecord, RunState]:
    loaded = load_run(store, run_id)
    if loaded is None:
        raise StoreError(f"run {run_id!r} not found")
    return loaded


def _end_early(
    store: RunStore, run_id: str, status: RunStatus, why: StopReason, detail: str, clock: Clock
) -> bool:
    now = clock()

    def changes(record: JsonDict, state: JsonDict) -> JsonDict:
        # Computed from the record and state the transition applies to, so the outcome counts
        # exactly the iterations committed before the run ended (none can follow it).
        typed = check_record(record, run_id)
        outcome = outcome_of(typed.spec, check_state(state, run_id), status)
        outcome.update(
            stop_reason=str(why), detail=detail, exit_code=int(ExitCode.FAILED), release_gate=None
        )
        return {"outcome": outcome, "runtime": {**typed.runtime, "finished_at": iso(now)}}

    return transition(store, run_id, status, changes, clock=lambda: now).applied


def cancel_run(store: RunStore, run_id: str, *, reason: str, clock: Clock = time.time) -> bool:
    """Cancel a run that has not ended; True when this call cancelled it."""
    return _end_early(store, run_id, RunStatus.CANCELLED, StopReason.CANCELLED, reason, clock)


def interrupt_run(store: RunStore, run_id: str, *, detail: str, clock: Clock = time.time) -> bool:
    """Mark an embedded run interrupted (its process is being stopped); True when this call did.
    Tasks take no more work on it; ``resume_record`` puts it back (docs/resume.md)."""

    def changes(record: JsonDict, state: JsonDict) -> JsonDict:
        spec = check_record(record, run_id).spec
        outcome = outcome_of(spec, check_state(state, run_id), RunStatus.INTERRUPTED)
        outcome.update(
            stop_reason=str(StopReason.INTERRUPTED),
            detail=detail,
            exit_code=int(ExitCode.INTERRUPTED),
            release_gate=None,
        )
        return {"outcome": outcome}

    return transition(store, run_id, RunStatus.INTERRUPTED, changes, clock=clock).applied


def resume_record(
    record: Mapping[str, Any], *, iterations_done: int, now: float, execution: str
) -> dict[str, Any]:
    """The record a resumed run starts from: ``running`` (``queued`` before its first
    iteration), no outcome, and the resume noted under ``runtime`` (outside the artifacts'
    byte-identity)."""
    runtime = dict(record.get("runtime", {}))
    runtime["execution"] = execution
    runtime["resumed_at"] = [*runtime.get("resumed_at", []), iso(now)]
    runtime.pop("finished_at", None)
    status = RunStatus.RUNNING if iterations_done else RunStatus.QUEUED
    kept = {k: v for k, v in record.items() if k not in ("drive", "published")}
    return {**kept, "outcome": {}, "runtime": runtime, "status": str(status)}


def fail_unstarted(store: RunStore, run_id: str, *, reason: str, clock: Clock = time.time) -> bool:
    """Mark failed a run whose first message could not be sent, with the reason."""
    return _end_early(store, run_id, RunStatus.FAILED, StopReason.NOT_STARTED, reason, clock)


def mark_lost(store: RunStore, run_id: str, *, reason: str, clock: Clock = time.time) -> bool:
    """Mark a run lost (the watchdog gave up on it), with the reason in the record."""
    return _end_early(store, run_id, RunStatus.LOST, StopReason.LOST, reason, clock)


def abandon_reason(store: RunStore, run_id: str) -> str | None:
    """Why a step of ``run_id`` still waiting (a live step, for the bot's report) should stop:
    the run no longer takes work (cancelled, lost, interrupted, ended); None while it does, and
    while the store cannot be asked (a Redis blip must not cut a long window short)."""
    try:
        record = store.get_record(run_id)
    except StoreError:
        return None
    if record is None:
        return None
    status = RunStatus(record["status"])
    return None if status.accepts_work else f"run {run_id} is {status.value}"


def exit_code_of(record: RunRecord) -> int:
    """The process exit code a run's end stands for (a run that has not ended: FAILED)."""
    if not record.status.terminal or record.outcome.exit_code is None:
        return int(ExitCode.FAILED)
    return record.outcome.exit_code
