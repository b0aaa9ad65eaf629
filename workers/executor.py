"""The Celery side of the life-cycle's Executor port (soakq/lifecycle.py, docs/architecture.md):
an iteration's start goes to the workers by task name, with a deterministic id keyed by
``(run_id, iteration, attempt)``; ``launch`` is what a start does (send the iteration's chord);
``publish`` writes a run's directory on this worker. The tasks (workers/tasks.py) import this
module, never the reverse."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery, chord, group
from celery.exceptions import SoftTimeLimitExceeded

from soakq import lifecycle, runner
from soakq.artifacts import export_run, iteration_file, run_dir
from soakq.config import RunSpec
from soakq.documents import check_record, load_run
from soakq.errors import TransientStoreError
from soakq.states import RunStatus
from soakq.store import RunStore
from workers import names
from workers.beat import gate_for
from workers.context import artifacts_of, settings_of
from workers.lease import KEEPER

log = logging.getLogger(__name__)

LIVE_MARGIN_S = 30.0  # the live step's time limit: window + report timeout + this


def timing_of(app: Celery) -> lifecycle.Timing:
    """The life-cycle clocks of this app's settings. Countdown starts only on Redis: the
    embedded memory:// worker does not run countdown messages (its driver ticks instead)."""
    ws = settings_of(app)
    return lifecycle.Timing(
        deadline_s=ws.iteration_deadline_s,
        tick_s=ws.tick_interval_s,
        countdowns=bool(ws.redis_url),
        max_redrives=ws.max_redrives,
        lease_ttl_s=ws.lease_ttl,
    )


class CeleryExecutor:
    """Starts go to the workers as ``soakq.iteration.start`` messages. ``inline_run``: inside
    the chord body of that run, its successor due now sends its chord from here instead of
    through a start message: one hop less per iteration (``launch``). Other runs' due
    iterations the body claims go out as messages, so a failure on one of them never makes
    this body retry; an inline launch that fails falls back to the message."""

    def __init__(self, app: Celery, store: RunStore, *, inline_run: str | None = None) -> None:
        self.app = app
        self.store = store
        self.timing = timing_of(app)
        self.inline_run = inline_run

    def enqueue_start(
        self,
        run_id: str,
        iteration: int,
        attempt: int,
        countdown_s: float,
        ready: runner.Ready | None = None,
    ) -> None:
        if run_id == self.inline_run and countdown_s <= 0:
            try:
                if ready is None:
                    launch(self.app, self.store, run_id, iteration, attempt)
                else:  # the body that just committed: nothing to read back
                    send_chord(self.app, self.store, ready, run_id, iteration, attempt)
                return
            except Exception:
                log.warning(
                    "run %s: starting iteration %s inline failed; sending its start instead",
                    run_id,
                    iteration,
                    exc_info=True,
                )
        options: dict[str, Any] = {"countdown": countdown_s} if countdown_s > 0 else {}
        self.app.send_task(
            names.ITERATION_START,
            args=[run_id, iteration],
            kwargs={"attempt": attempt},
            task_id=names.start_id(run_id, iteration, attempt),
            ignore_result=True,
            **options,
        )

    def publish(self, run_id: str) -> None:
        publish(self.app, self.store, run_id)


def send_start(
    app: Celery, store: RunStore, run_id: str, iteration: int, *, now: float, **kw: Any
) -> None:
    """``lifecycle.send_start`` through this app's workers (the CLI, beat and tests use it)."""
    lifecycle.send_start(store, CeleryExecutor(app, store), run_id, iteration, now=now, **kw)


def publish(app: Any, store: RunStore, run_id: str) -> None:
    """Write the run directory from the store (same bytes every time), all but the trend report,
    which the ``soakq.run.report`` task renders from the report queue, off the iteration path;
    that task then says so in the record (``published``, which RUN.json leaves out) for whoever
    waits on the files. A weekly run that ended without a release gate gets its failed gate
    here, when it ends."""
    doc = store.get_record(run_id)
    if doc is None:
        return
    record = check_record(doc, run_id)
    weekly = record.runtime.get("execution") == "weekly"
    if record.status.terminal and weekly and store.get_extra(run_id, "release_gate") is None:
        store.put_extra(run_id, "release_gate", gate_for(doc, store.iterations(run_id)))
    out = export_run(store, run_id, artifacts_of(app), report=False)
    status = str(record.status)
    if record.runtime.get("report", True) and iteration_file(out, 1).exists():
        app.send_task(names.RUN_REPORT, args=[run_id, status], ignore_result=True)
    else:
        note_published(store, run_id, status)


def render_report(app: Any, store: RunStore, run_id: str, status: str) -> None:
    """The trend report of the run's directory (the ``soakq.run.report`` task), then the
    ``published`` mark for ``status``."""
    from soakq.report import write_report

    record = store.get_record(run_id)
    if record is None:
        return
    docs: list[Mapping[str, Any]] = [*store.iterations(run_id)]
    if docs:
        try:
            write_report(run_dir(artifacts_of(app), run_id), docs, record)
        except (TransientStoreError, SoftTimeLimitExceeded):
            raise  # retried by the task: a report cut short by its time limit is late, not broken
        except Exception:  # the run's files are written; a broken chart must not hide them
            log.exception("run %s: the trend report failed; published without it", run_id)
    note_published(store, run_id, status)


def note_published(store: RunStore, run_id: str, status: str) -> None:
    published = {"at": runner.iso(time.time()), "status": status}
    if RunStatus(status).terminal:
        store.note_published(run_id, published)
    else:
        store.update_record(run_id, {"published": published})


def launch(app: Any, store: RunStore, run_id: str, iteration: int, attempt: int) -> str:
    """The start of ``iteration`` (attempt ``attempt``): send its chord, unless the run moved on
    or ended. Run by the start task, or inline by the previous chord body (CeleryExecutor)."""
    loaded = load_run(store, run_id)
    if loaded is None or not lifecycle.should_start(*loaded, iteration):
        return "skipped"
    record, state = loaded
    send_chord(app, store, runner.Ready(record.spec, state.overrides), run_id, iteration, attempt)
    return "started"


def send_chord(
    app: Any, store: RunStore, ready: runner.Ready, run_id: str, iteration: int, attempt: int
) -> None:
    """Send the chord of ``iteration`` (attempt ``attempt``) with the spec and the overrides in
    force, holding the run's lease while it goes out."""
    ws = settings_of(app)
    spec = ready.spec
    with KEEPER.hold(store, run_id, iteration, ws.lease_ttl):
        sig = app.signature
        if spec.live:
            # One task writes the handshake and reads the bot's one report for every symbol; it
            # runs on the bot's queue, served by a worker on the host that sees the bot directory.
            steps = [
                sig(
                    names.LIVE_MEASURE,
                    args=(run_id, iteration),
                    task_id=names.live_measure_id(run_id, iteration, attempt),
                    **live_options(app, spec),
                )
            ]
        else:
            # The spec and the overrides in force travel with the message: they cannot change
            # before this iteration commits, and the measure then reads nothing from Redis.
            given = {"spec": spec.as_json(), "overrides": dict(ready.overrides)}
            steps = [
                sig(
                    names.METRICS_MEASURE,
                    args=(run_id, iteration, s),
                    kwargs=given,
                    task_id=names.measure_id(run_id, iteration, attempt, s),
                )
                for s in spec.symbols
            ]
        header = group(steps, task_id=names.header_group_id(run_id, iteration, attempt))
        # Nobody reads a body's or a start's result (the store is the record): not stored.
        body = sig(
            names.ITERATION_FINALIZE,
            args=(run_id, iteration),
            kwargs={"started_ts": time.time()},
            ignore_result=True,
        )
        chord(header, body).apply_async(task_id=names.finalize_id(run_id, iteration, attempt))


def live_options(app: Any, spec: RunSpec) -> dict[str, Any]:
    """Where and how long the live step runs: the bot's queue (the embedded worker serves its
    own), and a time limit that covers the window and the report timeout."""
    limit = spec.window_s + spec.report_timeout_s + LIVE_MARGIN_S
    opts: dict[str, Any] = {"time_limit": limit, "soft_time_limit": limit - 1}
    if not getattr(app.conf, "soakq_embedded", False) and spec.bot_queue:
        opts["queue"] = spec.bot_queue
    return opts
