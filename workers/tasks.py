"""The tasks: thin adapters from a message to one soakq function (docs/architecture.md).

Iteration i of a run is a chord::

    start(run_id, i)  ->  chord([measure(run_id, i, s) for s in symbols], finalize(run_id, i))

``finalize`` commits once (set-if-absent document + fenced CAS), so every task here may run twice:
all are ``acks_late`` and ``reject_on_worker_lost`` (a message whose worker died is redelivered).
No task waits on another's result. A task working on an iteration holds the run's lease
(workers.lease) so the watchdog can tell a dead worker from a slow one.

Time limits are the executing worker's (``SOAKQ_TASK_TIME_LIMIT_S``): ``SoakqTask`` keeps them
out of the messages, which would otherwise carry the sender's. The one exception is explicit: a
live step carries the limit its run's window needs (``workers.executor.live_options``).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded

from soakq import lifecycle, runner
from soakq.artifacts import write_iteration
from soakq.checkpoint import write_checkpoint
from soakq.config import RunSpec
from soakq.documents import check_record, load_state
from soakq.errors import TransientStoreError
from soakq.iteration import measure_iteration, measure_symbol
from soakq.runner import FinalizeResult, FinalizeStatus
from soakq.store import RunStore
from workers import names
from workers.beat import gate_for, parse_slot, weekly_run_id, weekly_slot, weekly_spec
from workers.context import artifacts_of, settings_of, store_of
from workers.executor import (
    CeleryExecutor,
    launch,
    publish,
    render_report,
    send_start,
    timing_of,
)
from workers.lease import KEEPER

log = logging.getLogger(__name__)


class SoakqTask(Task):  # type: ignore[misc]
    """A task whose messages never carry time limits: the worker that runs it applies its own
    ``task_time_limit`` / ``task_soft_time_limit`` (Celery otherwise copies the sender's
    configured limits into every message, and the message's limits win)."""

    def _get_exec_options(self) -> dict[str, Any]:
        options = dict(super()._get_exec_options())
        options.pop("time_limit", None)
        options.pop("soft_time_limit", None)
        return options


# Every task is idempotent: ack only when it is done, redeliver it when its worker dies, and
# retry it (with backoff, a few seconds at most: well under visibility_timeout) when Redis
# blinked; a TransientStoreError is the only error worth a retry.
IDEMPOTENT: dict[str, Any] = {
    "base": SoakqTask,
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (TransientStoreError,),
    "retry_backoff": 1,
    "retry_backoff_max": 8,
    "retry_jitter": True,
}
_RETRY_CAP_S = 2.0


@shared_task(name=names.ITERATION_START, max_retries=8, **IDEMPOTENT)
def start(self: Task, run_id: str, iteration: int, attempt: int = 0) -> str:
    """Send the chord of ``iteration`` unless the run moved on or ended."""
    return launch(self.app, store_of(self.app), run_id, iteration, attempt)


@shared_task(name=names.METRICS_MEASURE, max_retries=8, **IDEMPOTENT)
def measure(
    self: Task,
    run_id: str,
    iteration: int,
    symbol: str,
    spec: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One symbol's metrics under the overrides the run has after ``iteration - 1``: given by
    the start that sent this step (read from the store for a message that carries none). A
    simulated step takes milliseconds and holds no lease; the start and the commit do."""
    if spec is None or overrides is None:
        store = store_of(self.app)
        run_spec, _ = runner.load_spec(store, run_id)
        overrides = store.get_state(run_id)[0]["overrides"]
    else:
        run_spec = RunSpec.model_validate(spec)
    return measure_symbol(run_spec, iteration, symbol, overrides)


@shared_task(name=names.LIVE_MEASURE, max_retries=8, **IDEMPOTENT)
def live_measure(self: Task, run_id: str, iteration: int) -> list[dict[str, Any]]:
    """Handshake for ``iteration`` with the overrides in force, wait, read the bot's report."""
    store, ws = store_of(self.app), settings_of(self.app)
    spec, _ = runner.load_spec(store, run_id)
    state, _, _ = load_state(store, run_id)
    # The lease is renewed for the whole window: the watchdog must not take a live step that
    # waits for the bot for a dead one, nor a follower say nobody serves the bot's queue.
    with KEEPER.hold(store, run_id, iteration, ws.lease_ttl, queue=spec.bot_queue):
        return measure_iteration(
            spec, iteration, state.overrides, abandon=lambda: runner.abandon_reason(store, run_id)
        )


@shared_task(name=names.ITERATION_FINALIZE, max_retries=8, **IDEMPOTENT)
def finalize(
    self: Task,
    results: list[Mapping[str, Any]],
    run_id: str,
    iteration: int,
    started_ts: float | None = None,
) -> str:
    """Commit the iteration once, then write its file and drive what comes next."""
    app, store, ws = self.app, store_of(self.app), settings_of(self.app)
    with KEEPER.hold(store, run_id, iteration, ws.lease_ttl, touched_ts=started_ts):
        result = runner.finalize(
            store,
            run_id,
            iteration,
            results,
            owner=f"{self.request.hostname}:{os.getpid()}",
            lock_ttl_ms=ws.lock_ttl_ms,
            started_ts=started_ts,
            successor=lifecycle.planner(timing_of(app)),
        )
    if result.status in (FinalizeStatus.LOCKED, FinalizeStatus.REFUSED):
        # Long enough in total to outlive a dead holder's lock.
        budget = 10 + math.ceil(2 * ws.lock_ttl_ms / 1000 / _RETRY_CAP_S)
        countdown = min(ws.retry_countdown_s * 2**self.request.retries, _RETRY_CAP_S)
        raise self.retry(countdown=countdown, max_retries=budget)
    after_finalize(app, store, run_id, iteration, result)
    return str(result.status)


def after_finalize(
    app: Any, store: RunStore, run_id: str, iteration: int, result: FinalizeResult
) -> None:
    """The iteration's file and what the life-cycle says comes next (soakq/lifecycle.py); all
    repeatable, so a duplicate body redoes them safely. On the workers the successor goes out
    first and the file (an fsync) after it, off the iteration's critical path: a file lost to a
    crash in between is rewritten when the run is published. Embedded, the file and the resume
    point that refers back to it come first (docs/resume.md)."""
    written = result.status in (FinalizeStatus.COMMITTED, FinalizeStatus.DUPLICATE)
    embedded = getattr(app.conf, "soakq_embedded", False)
    if written and embedded:
        write_iteration(store, run_id, iteration, artifacts_of(app), doc=result.doc)
        write_checkpoint(store, run_id, artifacts_of(app))
    ex = CeleryExecutor(app, store, inline_run=run_id)
    lifecycle.after_commit(store, ex, run_id, iteration, result, time.time())
    if written and not embedded:
        write_iteration(store, run_id, iteration, artifacts_of(app), doc=result.doc)


@shared_task(
    name=names.RUN_REPORT,
    max_retries=8,
    **{**IDEMPOTENT, "autoretry_for": (TransientStoreError, SoftTimeLimitExceeded)},
)
def report_run(self: Task, run_id: str, status: str) -> str:
    """Render a run's trend report (from the report queue), then mark its directory published."""
    render_report(self.app, store_of(self.app), run_id, status)
    return "rendered"


@shared_task(name=names.RUN_PUBLISH, max_retries=8, **IDEMPOTENT)
def publish_run(self: Task, run_id: str) -> str:
    """Write a run's directory (sent by `soakq cancel`; the tick does it too, as a fallback)."""
    store = store_of(self.app)
    if store.get_record(run_id) is None:
        return "missing"
    publish(self.app, store, run_id)
    return "published"


@shared_task(name=names.SCHEDULE_TICK, max_retries=8, **IDEMPOTENT)
def tick(self: Task, every_s: float | None = None) -> dict[str, Any]:
    """Record beat's heartbeat; start due iterations; then, under a short lock, the watchdog
    over the active runs, the artifacts of runs that ended unpublished, and the index entries
    of expired runs. ``every_s``: beat's period for this tick (beat sends it; a tick sent by
    hand falls back to this worker's ``SOAKQ_TICK_INTERVAL_S``)."""
    app, store, ws = self.app, store_of(self.app), settings_of(self.app)
    ex = CeleryExecutor(app, store)
    now = time.time()
    lifecycle.note_tick(store, now, float(every_s or ws.tick_interval_s))
    sent = lifecycle.drive_due(store, ex, now)
    owner = f"{self.request.hostname}:{os.getpid()}:{self.request.id}"
    if not store.try_mutex(lifecycle.TICK_LOCK, owner, int(ws.tick_interval_s * 3000)):
        return {"sent": len(sent), "watchdog": "busy"}
    try:
        taken = lifecycle.watchdog(store, ex, now)
        published = store.unpublished()
        for run_id in published:
            publish(app, store, run_id)
        pruned = store.prune(now - ws.retention_s)
    finally:
        store.release_mutex(lifecycle.TICK_LOCK, owner)
    return {
        "sent": len(sent),
        "watchdog": [[r, a.kind, a.reason] for r, a in taken],
        "published": published,
        "pruned": len(pruned),
    }


@shared_task(name=names.WEEKLY_START, max_retries=8, **IDEMPOTENT)
def weekly_start(self: Task, slot: str | None = None) -> dict[str, Any]:
    """Start this week's soak; the run id is the slot's, so a second fire starts nothing."""
    app, store = self.app, store_of(self.app)
    now = time.time()
    when = parse_slot(slot) if slot else weekly_slot(now)
    if when is None:
        return {"created": False, "run_id": None, "reason": "too late for this week's slot"}
    spec = weekly_spec(settings_of(app), when)
    created = runner.start_run(store, spec, now=now, mode="weekly")
    if created:
        send_start(app, store, spec.run_id, 1, now=now)
    return {"created": created, "run_id": spec.run_id}


@shared_task(name=names.RELEASE_GATE_CHECK, max_retries=8, **IDEMPOTENT)
def release_gate_check(self: Task, slot: str | None = None) -> dict[str, Any]:
    """Record RELEASE_GATE for the latest weekly run. A run still going is not waited for:
    whatever ends it publishes it, and publishing a weekly run records its gate."""
    app, store = self.app, store_of(self.app)
    when = parse_slot(slot) if slot else weekly_slot(time.time(), max_late_s=None)
    assert when is not None
    run_id = weekly_run_id(when)
    doc = store.get_record(run_id)
    if doc is None:
        log.error("release gate: no weekly run %s", run_id)
        return {"run_id": run_id, "verdict": "MISSING"}
    status = check_record(doc, run_id).status
    if not status.terminal:
        log.info("release gate: weekly run %s still %s; recorded when it ends", run_id, status)
        return {"run_id": run_id, "verdict": "PENDING"}
    store.put_extra(run_id, "release_gate", gate_for(doc, store.iterations(run_id)))
    publish(app, store, run_id)
    gate = store.get_extra(run_id, "release_gate") or {}
    return {"run_id": run_id, "verdict": gate.get("verdict")}


@shared_task(name=names.BENCH_NOOP, max_retries=8, **IDEMPOTENT)
def noop(self: Task, *args: Any, **kwargs: Any) -> None:
    """Does nothing: the benchmark's raw chord is made of these."""
    return None
