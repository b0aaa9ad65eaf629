"""Driving runs on the queue: send an iteration's start, claim due iterations, the watchdog.

Used by the CLI (start iteration 1), the chord body (an immediate successor, or one due within a
tick, sent with a short countdown) and the beat tick (due iterations, overdue ones). Every start
goes out with a deterministic task id keyed by ``(run_id, iteration, attempt)``, after the run
record says so in its ``drive`` field::

    drive = {"iteration": i, "attempt": a, "due_ts": ..., "enqueued_ts": ... | None,
             "deadline_ts": ...}

``enqueued_ts`` is None while the iteration waits in the due set for the tick. A start sent
twice for the same attempt is harmless (the chord's header results are de-duplicated by task id
and the body commits once); a re-drive takes the next attempt number so it gets a fresh chord.

The watchdog visits the active runs only (a set the status transitions maintain), so its cost
follows what is running, never the history (docs/architecture.md).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from celery import Celery

from soakq.runner import close_if_finished, load_spec, mark_lost
from soakq.states import RunStatus
from soakq.store import RunStore
from workers import names
from workers.app import settings_of

log = logging.getLogger(__name__)

#: The mutex the tick's watchdog pass runs under (one pass at a time).
TICK_LOCK = "tick"
#: The heartbeat every tick records ({at_ts, every_s}); it lapses after HEARTBEAT_TICKS periods.
TICK_HEARTBEAT = "tick"
HEARTBEAT_TICKS = 3


def note_tick(store: RunStore, now: float, every_s: float) -> None:
    """Record that beat's tick ran at ``now`` (wall time), ``every_s`` apart: followers of a
    paced run tell a missing beat from a quiet one by it (docs/architecture.md)."""
    ttl_ms = max(1, math.ceil(HEARTBEAT_TICKS * every_s * 1000))
    store.put_heartbeat(TICK_HEARTBEAT, {"at_ts": now, "every_s": every_s}, ttl_ms)


def parse_iso(text: str | None) -> float | None:
    """Epoch seconds of a ``runner.iso`` timestamp; None when absent or unparsable."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def send_start(
    app: Celery,
    store: RunStore,
    run_id: str,
    iteration: int,
    *,
    now: float,
    attempt: int = 0,
    reason: str | None = None,
    due_ts: float | None = None,
) -> str:
    """Record the drive, then enqueue ``start(run_id, iteration)``; return the task id.

    ``due_ts`` later than ``now`` (at most a tick away) sends the start with that countdown."""
    due = now if due_ts is None else max(now, due_ts)
    deadline = due + settings_of(app).iteration_deadline_s
    changes: dict[str, Any] = {
        "drive": {
            "attempt": attempt,
            "deadline_ts": deadline,
            "due_ts": due,
            "enqueued_ts": now,
            "iteration": iteration,
        }
    }
    if reason:
        record = store.get_record(run_id) or {}
        events = list(record.get("watchdog", []))
        events.append({"attempt": attempt, "at_ts": now, "iteration": iteration, "reason": reason})
        changes["watchdog"] = events
    store.update_record(run_id, changes)
    task_id = names.start_id(run_id, iteration, attempt)
    options: dict[str, Any] = {"countdown": due - now} if due > now else {}
    app.send_task(
        names.ITERATION_START,
        args=[run_id, iteration],
        kwargs={"attempt": attempt},
        task_id=task_id,
        **options,
    )
    return task_id


def note_pending(app: Celery, store: RunStore, run_id: str, iteration: int, due_ts: float) -> None:
    """Say in the record that ``iteration`` waits in the due set (the watchdog's reference)."""
    deadline = due_ts + settings_of(app).iteration_deadline_s
    store.update_record(
        run_id,
        {
            "drive": {
                "attempt": 0,
                "deadline_ts": deadline,
                "due_ts": due_ts,
                "enqueued_ts": None,
                "iteration": iteration,
            }
        },
    )


def drive_successor(
    app: Celery, store: RunStore, run_id: str, iteration: int, due_ts: float, now: float
) -> None:
    """After a commit: start ``iteration`` now, or with a countdown when it is due within a
    tick (so ``--interval`` holds to within a second whatever the tick), or leave it to the
    tick. The due-set entry stays as the tick's fallback; the tick skips what is in flight."""
    ws = settings_of(app)
    if due_ts <= now:
        drive_due(app, store, now)  # claims the successor (and whatever else is due)
    elif due_ts - now <= ws.tick_interval_s and ws.redis_url:
        send_start(app, store, run_id, iteration, now=now, due_ts=due_ts)
    else:
        # (Embedded, the in-process driver ticks every tenth of the interval instead: its
        # memory:// worker does not run countdown messages.)
        note_pending(app, store, run_id, iteration, due_ts)


def in_flight(drive: Mapping[str, Any] | None, iteration: int, now: float) -> bool:
    return (
        drive is not None
        and drive.get("iteration") == iteration
        and drive.get("enqueued_ts") is not None
        and now < drive["deadline_ts"]
    )


def drive_due(app: Celery, store: RunStore, now: float, limit: int = 100) -> list[tuple[str, int]]:
    """Claim the due iterations (atomically) and send their starts; return what was sent."""
    sent = []
    for run_id, iteration in store.claim_due(now, limit):
        record = store.get_record(run_id)
        if record is None or not RunStatus(record["status"]).accepts_work:
            continue
        state, _ = store.get_state(run_id)
        drive = record.get("drive")
        if state["iteration"] >= iteration or in_flight(drive, iteration, now):
            continue
        # Sent before and overdue: a fresh attempt, so the chord gets fresh ids.
        drive = drive or {}
        sent_before = drive.get("iteration") == iteration and drive.get("enqueued_ts")
        attempt = int(drive["attempt"]) + 1 if sent_before else 0
        send_start(app, store, run_id, iteration, now=now, attempt=attempt)
        sent.append((run_id, iteration))
    return sent


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
    drive: Mapping[str, Any] | None,
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
    if drive is not None and drive.get("iteration") == nxt:
        attempt = int(drive["attempt"])
        if now < drive["deadline_ts"]:
            started = drive.get("enqueued_ts")
            if (
                started is not None
                and leased != nxt
                and now >= max(started, drive.get("due_ts", started)) + lease_ttl_s
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
        if drive.get("enqueued_ts") is None:
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


def watchdog(app: Celery, store: RunStore, now: float) -> list[tuple[str, Action]]:
    """Look at every active run; re-drive, close or give up on it."""
    from workers.tasks import publish

    ws = settings_of(app)
    taken = []
    for run_id in store.active_runs():
        record = store.get_record(run_id)
        if record is None or not RunStatus(record["status"]).accepts_work:
            continue
        spec, _ = load_spec(store, run_id)
        state, _ = store.get_state(run_id)
        done = int(state["iteration"])
        if done:
            last = store.get_iteration(run_id, done) or {}
            last_ts = parse_iso(last.get("runtime", {}).get("finished_at"))
        else:
            last_ts = parse_iso(record.get("runtime", {}).get("submitted_at"))
        action = watchdog_action(
            done=done,
            planned=spec.iterations,
            stopped=bool(state.get("stop")),
            drive=record.get("drive"),
            now=now,
            deadline_s=ws.iteration_deadline_s,
            max_redrives=ws.max_redrives,
            last_ts=last_ts,
            interval_s=spec.interval_s,
            leased=store.leased_iteration(run_id),
            lease_ttl_s=ws.lease_ttl,
        )
        if action.kind == "wait":
            continue
        log.warning("watchdog: run %s: %s (%s)", run_id, action.kind, action.reason)
        if action.kind == "drive":
            send_start(
                app,
                store,
                run_id,
                action.iteration,
                now=now,
                attempt=action.attempt,
                reason=action.reason,
            )
        elif action.kind == "complete":
            close_if_finished(store, run_id)
            publish(app, store, run_id)
        else:
            mark_lost(store, run_id, reason=action.reason)
            publish(app, store, run_id)
        taken.append((run_id, action))
    return taken
