"""The run life-cycle's decisions, once, for every driver (docs/architecture.md, "One driver").

What happens after a commit, which due iterations to start, how a re-drive is numbered and what
the watchdog does about a late run are decided here. The decisions that need nothing but values
are pure functions (``successor_action``, ``next_attempt``, ``watchdog_action``); the functions
that carry them out (``after_commit``, ``drive_due``, ``watchdog``) read and write the run store
and hand work to an ``Executor`` port:

* ``workers.executor.CeleryExecutor`` sends an iteration's start task by name (with a countdown
  when it is due within a tick) and runs ``publish`` on the worker;
* ``soakq.engine.LocalExecutor`` keeps starts in an in-memory queue ordered by due time and runs
  each iteration in the calling thread.

Both drive a run through the same records: every start is recorded in the run's ``drive`` field
first (``soakq.documents.Drive``), then enqueued with a deterministic id keyed by ``(run_id,
iteration, attempt)``; a start sent twice for one attempt is harmless (the chord's results are
de-duplicated and the body commits once); a re-drive takes the next attempt number so it gets a
fresh chord.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from soakq.documents import Drive, RunRecord, RunState, WatchdogEvent, load_record, load_run
from soakq.runner import (
    FinalizeResult,
    FinalizeStatus,
    Ready,
    Successor,
    close_if_finished,
    mark_lost,
)
from soakq.store import RunStore

log = logging.getLogger(__name__)

#: The mutex the tick's watchdog pass runs under (one pass at a time).
TICK_LOCK = "tick"
#: The heartbeat every tick records ({at_ts, every_s}); it lapses after HEARTBEAT_TICKS periods.
TICK_HEARTBEAT = "tick"
HEARTBEAT_TICKS = 3


@dataclass(frozen=True)
class Timing:
    """The life-cycle's clocks. ``deadline_s``: how long an iteration may take from its start
    before the watchdog re-drives it; ``tick_s``: the tick's period; ``countdowns``: whether the
    executor can hold a start until it is due (else a start due later waits in the due set for
    the tick); ``max_redrives``; ``lease_ttl_s``: a task of the iteration renews the run's lease
    this often, so a lease that lapsed means its worker died."""

    deadline_s: float
    tick_s: float
    countdowns: bool
    max_redrives: int = 3
    lease_ttl_s: float = float("inf")


class Executor(Protocol):
    """Where iterations run: Celery workers, or the calling thread."""

    timing: Timing

    def enqueue_start(
        self,
        run_id: str,
        iteration: int,
        attempt: int,
        countdown_s: float,
        ready: Ready | None = None,
    ) -> None:
        """Have ``start(run_id, iteration, attempt)`` run once ``countdown_s`` have passed.
        ``ready``: the spec and overrides, when the caller holds them (the start may then read
        nothing from the store)."""
        ...

    def publish(self, run_id: str) -> None:
        """Write the run's directory from the store (and say so in the record)."""
        ...


def parse_iso(text: str | None) -> float | None:
    """Epoch seconds of a ``runner.iso`` timestamp; None when absent or unparsable."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def note_tick(store: RunStore, now: float, every_s: float) -> None:
    """Record that beat's tick ran at ``now`` (wall time), ``every_s`` apart: followers of a
    paced run tell a missing beat from a quiet one by it (docs/architecture.md)."""
    ttl_ms = max(1, math.ceil(HEARTBEAT_TICKS * every_s * 1000))
    store.put_heartbeat(TICK_HEARTBEAT, {"at_ts": now, "every_s": every_s}, ttl_ms)


def should_start(record: RunRecord, state: RunState, iteration: int) -> bool:
    """Whether a start of ``iteration`` still has work: the run takes work and has committed
    exactly the iterations before it (a late or repeated start does nothing)."""
    return record.status.accepts_work and state.iteration == iteration - 1


# -- starting iterations ---------------------------------------------------------------------
def send_start(
    store: RunStore,
    ex: Executor,
    run_id: str,
    iteration: int,
    *,
    now: float,
    attempt: int = 0,
    reason: str | None = None,
    due_ts: float | None = None,
) -> None:
    """Record the drive, then enqueue the start (``due_ts`` later than ``now``: with that
    countdown). ``reason``: why the watchdog re-drives, kept in the record's ``watchdog`` list."""
    due = now if due_ts is None else max(now, due_ts)
    drive = Drive(
        iteration=iteration,
        attempt=attempt,
        due_ts=due,
        enqueued_ts=now,
        deadline_ts=due + ex.timing.deadline_s,
    )
    changes: dict[str, Any] = {"drive": drive.as_json()}
    if reason:
        record, _ = load_record(store, run_id)
        event = WatchdogEvent(attempt=attempt, at_ts=now, iteration=iteration, reason=reason)
        changes["watchdog"] = [e.model_dump() for e in (*record.watchdog, event)]
    store.update_record(run_id, changes)
    ex.enqueue_start(run_id, iteration, attempt, due - now)


def note_pending(store: RunStore, ex: Executor, run_id: str, iteration: int, due_ts: float) -> None:
    """Say in the record that ``iteration`` waits in the due set (the watchdog's reference)."""
    drive = Drive(
        iteration=iteration,
        attempt=0,
        due_ts=due_ts,
        enqueued_ts=None,
        deadline_ts=due_ts + ex.timing.deadline_s,
    )
    store.update_record(run_id, {"drive": drive.as_json()})


SuccessorKind = Literal["due", "countdown", "park"]


def planned_drive(iteration: int, due_ts: float, now: float, timing: Timing) -> Drive:
    """The drive of a successor, recorded with the commit that leaves it due: started now (due
    now, or within a tick with a countdown) or waiting in the due set for the tick (parked,
    ``enqueued_ts`` None). The same document ``send_start`` / ``note_pending`` write. Pure."""
    parked = successor_action(due_ts, now, timing) == "park"
    due = max(now, due_ts)
    return Drive(
        iteration=iteration,
        attempt=0,
        due_ts=due,
        enqueued_ts=None if parked else now,
        deadline_ts=due + timing.deadline_s,
    )


def planner(timing: Timing) -> Successor:
    """``runner.finalize``'s ``successor``: the planned drive."""
    return lambda iteration, due_ts, now: planned_drive(iteration, due_ts, now, timing)


def successor_action(due_ts: float, now: float, timing: Timing) -> SuccessorKind:
    """After a commit, the next iteration is due now (start what is due), within a tick and the
    executor can count down (start it with a countdown, so ``--interval`` holds to within a
    second whatever the tick), or later (park it in the due set for the tick). Pure."""
    if due_ts <= now:
        return "due"
    if due_ts - now <= timing.tick_s and timing.countdowns:
        return "countdown"
    return "park"


def next_attempt(drive: Drive | None, iteration: int) -> int:
    """The attempt number of a start of ``iteration`` claimed from the due set: the next one
    when that iteration was started before (so its chord gets fresh ids), else 0. Pure."""
    if drive is not None and drive.iteration == iteration and drive.enqueued_ts is not None:
        return drive.attempt + 1
    return 0


def drive_due(store: RunStore, ex: Executor, now: float, limit: int = 100) -> list[tuple[str, int]]:
    """Claim the due iterations (atomically) and start them; return what was started."""
    sent = []
    for run_id, iteration in store.claim_due(now, limit):
        loaded = load_run(store, run_id)
        if loaded is None or not loaded[0].status.accepts_work:
            continue
        record, state = loaded
        drive = record.drive
        if state.iteration >= iteration or (drive and drive.in_flight(iteration, now)):
            continue
        send_start(store, ex, run_id, iteration, now=now, attempt=next_attempt(drive, iteration))
        sent.append((run_id, iteration))
    return sent


def after_commit(
    store: RunStore, ex: Executor, run_id: str, iteration: int, result: FinalizeResult, now: float
) -> None:
    """What follows a finalize: drive the successor, or close and publish a run that ended.
    Every step is repeatable, so a duplicate chord body redoes them safely."""
    if result.status == FinalizeStatus.OUT_OF_ORDER:
        log.warning(
            "run %s: finalize %s arrived out of order; the watchdog re-drives", run_id, iteration
        )
        return
    if result.status == FinalizeStatus.COMMITTED and not result.completed:
        assert result.next_iteration is not None and result.next_due_ts is not None
        nxt, due = result.next_iteration, result.next_due_ts
        if result.drive is not None:  # recorded by the commit: start it, or park it for the tick
            if result.drive.enqueued_ts is None:
                store.schedule(run_id, nxt, due)
            else:
                ex.enqueue_start(run_id, nxt, 0, max(0.0, due - now), result.ready)
            return
        # The record changed under the commit (or nobody planned): record the drive here.
        store.schedule(run_id, nxt, due)
        kind = successor_action(due, now, ex.timing)
        if kind == "due":
            drive_due(store, ex, now)  # claims the successor (and whatever else is due)
        elif kind == "countdown":
            send_start(store, ex, run_id, result.next_iteration, now=now, due_ts=result.next_due_ts)
        else:
            note_pending(store, ex, run_id, result.next_iteration, result.next_due_ts)
        return
    if result.completed:  # this body closed the run (or found it closed)
        ex.publish(run_id)
        return
    if result.status == FinalizeStatus.DUPLICATE:
        close_if_finished(store, run_id)  # the first delivery may have died before
    loaded = load_run(store, run_id)
    if loaded is None or loaded[0].status.terminal:
        ex.publish(run_id)
    else:
        drive_due(store, ex, now)


# -- the watchdog ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """What the watchdog does about one run."""

    kind: Literal["wait", "drive", "complete", "lose"]
    iteration: int = 0
    attempt: int = 0
    reason: str = ""


def watchdog_action(
    *,
    done: int,
    planned: int,
    stopped: bool,
    drive: Drive | None,
    now: float,
    deadline_s: float,
    max_redrives: int,
    last_ts: float | None,
    interval_s: float,
    leased: int | None = None,
    lease_ttl_s: float = float("inf"),
) -> Action:
    """Decide for a run that has not ended. ``last_ts``: when the last iteration finished
    (or the run was submitted); ``done``: iterations committed; ``leased``: the iteration a
    worker holds the run's lease for, if any. Pure."""
    if stopped or done >= planned:
        return Action("complete", reason=f"{done}/{planned} iterations committed, not closed")
    nxt = done + 1
    if drive is not None and drive.iteration == nxt:
        attempt = drive.attempt
        if now < drive.deadline_ts:
            started = drive.enqueued_ts
            if (
                started is not None
                and leased != nxt
                and now >= max(started, drive.due_ts) + lease_ttl_s
                and attempt < max_redrives
            ):
                # Its worker died (or its message was lost): no task of the iteration has held
                # the lease for a lease period. Re-drive now, not at the deadline.
                return Action(
                    "drive",
                    nxt,
                    attempt + 1,
                    f"no worker held iteration {nxt} attempt {attempt} for {lease_ttl_s:g}s "
                    "(lease lapsed)",
                )
            return Action("wait")
        if drive.enqueued_ts is None:
            return Action(
                "drive",
                nxt,
                attempt,
                f"iteration {nxt} was due but never started within {deadline_s:g}s",
            )
        if attempt + 1 > max_redrives:
            return Action(
                "lose",
                nxt,
                attempt + 1,
                f"iteration {nxt} did not finish within {deadline_s:g}s of its start, "
                f"{max_redrives} re-drives given up",
            )
        return Action(
            "drive",
            nxt,
            attempt + 1,
            f"iteration {nxt} attempt {attempt} passed its {deadline_s:g}s deadline",
        )
    # Nobody drives the successor: a crash between commit and drive.
    if last_ts is None or now < last_ts + interval_s + deadline_s:
        return Action("wait")
    return Action("drive", nxt, 0, f"iteration {nxt} was never scheduled after iteration {done}")


def watchdog(store: RunStore, ex: Executor, now: float) -> list[tuple[str, Action]]:
    """Look at every active run; re-drive, close or give up on it (the tick runs this)."""
    t = ex.timing
    taken = []
    for run_id in store.active_runs():
        loaded = load_run(store, run_id)
        if loaded is None or not loaded[0].status.accepts_work:
            continue
        record, state = loaded
        spec, done = record.spec, state.iteration
        if done:
            last = store.get_iteration(run_id, done) or {}  # an ITER_SUMMARY document
            last_ts = parse_iso(last.get("runtime", {}).get("finished_at"))
        else:
            last_ts = parse_iso(record.runtime.get("submitted_at"))
        action = watchdog_action(
            done=done,
            planned=spec.iterations,
            stopped=state.stop is not None,
            drive=record.drive,
            now=now,
            deadline_s=t.deadline_s,
            max_redrives=t.max_redrives,
            last_ts=last_ts,
            interval_s=spec.interval_s,
            leased=store.leased_iteration(run_id),
            lease_ttl_s=t.lease_ttl_s,
        )
        if action.kind == "wait":
            continue
        log.warning("watchdog: run %s: %s (%s)", run_id, action.kind, action.reason)
        if action.kind == "drive":
            send_start(
                store, ex, run_id, action.iteration, now=now, attempt=action.attempt,
                reason=action.reason,
            )  # fmt: skip
        elif action.kind == "complete":
            close_if_finished(store, run_id)
            ex.publish(run_id)
        else:
            mark_lost(store, run_id, reason=action.reason)
            ex.publish(run_id)
        taken.append((run_id, action))
    return taken
