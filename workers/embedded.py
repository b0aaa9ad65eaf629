"""Embedded mode: the production tasks on a Celery worker in this process (docs/architecture.md).

Broker ``memory://`` polled every millisecond, results ``cache+memory://``, a solo-pool worker on a
daemon thread, and the run store on an in-process ``fakeredis`` with Lua through ``RedisStore``.
Nothing is eager: every task is serialized to JSON, queued and executed by the worker, and the
chord body fires from the header results exactly as it does on Redis.

One worker serves the process; runs go through it one at a time (each on a fresh store).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import fakeredis
from celery import Celery, signals
from celery.worker import WorkController

from soakq.artifacts import export_run, run_dir, run_json
from soakq.checkpoint import Checkpoint, RunLock, clear_after, held_or_refused, write_checkpoint
from soakq.config import RunSpec
from soakq.documents import load_record, load_run, load_state
from soakq.errors import ConfigError, StoreError
from soakq.jsonio import write_json
from soakq.runner import (
    cancel_run,
    close_if_finished,
    interrupt_run,
    resume_record,
    start_run,
)
from soakq.settings import Settings
from workers import names
from workers.app import context_of, make_app
from workers.celeryconfig import worker_settings
from workers.executor import publish, send_start
from workers.store import RedisStore

log = logging.getLogger(__name__)

Progress = Callable[[int, Mapping[str, Any]], None]
_START_TIMEOUT_S = 30.0
_INTERRUPT_GRACE_S = 10.0  # how long Ctrl-C lets a step in progress finish before checkpointing
_WAKING = frozenset({names.ITERATION_FINALIZE, names.RUN_REPORT})  # tasks that wake the driver


class EmbeddedWorker:
    """An app on ``memory://`` and its solo worker thread, serving runs one at a time."""

    def __init__(self, settings: Settings | None = None) -> None:
        ws = worker_settings(settings).model_copy(update={"redis_url": None})
        self.app: Celery = make_app(ws, main="soakq-embedded")
        # The memory transport's queues are process-wide: keep ours apart from any other app.
        self.queue = f"soakq.embedded.{os.getpid()}.{id(self)}"
        self.app.conf.task_default_queue = self.queue
        self.app.conf.task_routes = {names.RUN_REPORT: {"queue": self.queue}}
        self.app.conf.soakq_embedded = True  # live steps stay on this worker's own queue
        self._mu = threading.Lock()  # one run at a time
        self._cv = threading.Condition()
        self._running = 0
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._worker: WorkController | None = None

    # -- worker --------------------------------------------------------------------------------
    def start(self) -> None:
        ready = threading.Event()
        self._worker = WorkController(
            app=self.app,
            hostname=f"embedded-{os.getpid()}@{socket.gethostname()}",
            pool="solo",
            concurrency=1,
            queues=[self.queue],
            loglevel="WARNING",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=lambda consumer: ready.set(),
        )
        for sig, fn in (
            (signals.task_prerun, self._on_prerun),
            (signals.task_postrun, self._on_postrun),
            (signals.task_failure, self._on_failure),
        ):
            sig.connect(fn, weak=False)
        self._thread = threading.Thread(
            target=self._serve, name="soakq-embedded-worker", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_S):
            raise StoreError(f"the embedded worker did not start within {_START_TIMEOUT_S:g}s")

    def _serve(self) -> None:
        # The solo pool looks tasks up in the thread's current app: make it ours, in this
        # thread only (other apps in the process keep theirs).
        self.app.set_current()
        assert self._worker is not None
        self._worker.start()

    def _ours(self, sender: Any) -> bool:
        return getattr(sender, "app", None) is self.app

    def _on_prerun(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            with self._cv:
                self._running += 1

    def _on_postrun(self, sender: Any = None, **_: Any) -> None:
        if self._ours(sender):
            with self._cv:
                self._running -= 1
                # Only a commit (a progress line) or the report (the end) wakes the driver: every
                # wake-up takes the GIL from the next task (0.2-0.5 ms per symbol-iteration of
                # `book`); anything else it sees within its polling period.
                if sender.name in _WAKING:
                    self._cv.notify_all()

    def _on_failure(
        self, sender: Any = None, exception: BaseException | None = None, **_: Any
    ) -> None:
        if self._ours(sender):
            with self._cv:
                self._failure = exception or StoreError(f"task {sender.name} failed")
                self._cv.notify_all()

    # -- runs ----------------------------------------------------------------------------------
    def _fresh(self, artifacts_root: str | os.PathLike[str]) -> RedisStore:
        """A new store for the next run; leftovers of an aborted run are dropped first."""
        with self.app.connection_for_write() as conn:
            conn.default_channel.queue_purge(self.queue)
        ctx = context_of(self.app)
        store = RedisStore(
            fakeredis.FakeRedis(server=fakeredis.FakeServer()), prefix=ctx.settings.key_prefix
        )
        ctx.use(store, artifacts_root)
        self._failure = None
        return store

    def run(
        self,
        spec: RunSpec,
        artifacts_root: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> tuple[dict[str, Any], Path]:
        """Run ``spec`` to its end on the worker; return the final record and the run directory.

        KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by the CLI) leaves the run
        ``interrupted`` with its report so far and its checkpoint, then propagates."""
        with self._mu, self._locked(artifacts_root, spec.run_id):
            store = self._fresh(artifacts_root)
            now = time.time()
            if not start_run(store, spec, now=now, mode="embedded"):
                raise ConfigError(f"run {spec.run_id} already exists in the store")
            self._write_start(store, spec.run_id, artifacts_root)
            send_start(self.app, store, spec.run_id, 1, now=now)  # start_run scheduled it
            return self._drive(store, spec, artifacts_root, progress, shown=0)

    def resume(
        self,
        checkpoint: Checkpoint,
        docs: list[dict[str, Any]],
        artifacts_root: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> tuple[dict[str, Any], Path]:
        """Continue an interrupted run from its checkpoint and its first ``checkpoint.iteration``
        documents; the files it ends with are the ones the uninterrupted run writes (outside
        ``runtime``). Interruptible again, like ``run``."""
        spec = RunSpec.model_validate(checkpoint.record["spec"])
        done = checkpoint.iteration
        with self._mu, self._locked(artifacts_root, spec.run_id):
            store = self._fresh(artifacts_root)
            now = time.time()
            record = resume_record(
                checkpoint.record, iterations_done=done, now=now, execution="embedded"
            )
            state, version = checkpoint.state, checkpoint.version
            if not store.restore_run(spec.run_id, record, state, version, docs):
                raise ConfigError(f"run {spec.run_id} already exists in the store")
            directory = run_dir(artifacts_root, spec.run_id)
            clear_after(directory, done)
            self._write_start(store, spec.run_id, artifacts_root)
            if close_if_finished(store, spec.run_id):  # killed after its last commit
                publish(self.app, store, spec.run_id)
            else:
                store.schedule(spec.run_id, done + 1, now)  # the tick's fallback, as start_run's
                send_start(self.app, store, spec.run_id, done + 1, now=now)
            return self._drive(store, spec, artifacts_root, progress, shown=done)

    @contextlib.contextmanager
    def _locked(self, artifacts_root: str | os.PathLike[str], run_id: str) -> Iterator[None]:
        # An unusable artifacts root fails here, in the caller's thread, not in a task.
        run_dir(artifacts_root, run_id).mkdir(parents=True, exist_ok=True)
        refusal = f"run {run_id}: another process is running it in {artifacts_root} right now"
        with held_or_refused(RunLock(artifacts_root, run_id), refusal):
            yield

    def _write_start(
        self, store: RedisStore, run_id: str, artifacts_root: str | os.PathLike[str]
    ) -> None:
        """RUN.json and the checkpoint before the first step: a run killed at once is listed
        (``interrupted``) and resumable."""
        record = store.get_record(run_id)
        assert record is not None
        write_json(run_dir(artifacts_root, run_id) / "RUN.json", run_json(record))
        write_checkpoint(store, run_id, artifacts_root)

    def _drive(
        self,
        store: RedisStore,
        spec: RunSpec,
        root: str | os.PathLike[str],
        progress: Progress | None,
        *,
        shown: int,
    ) -> tuple[dict[str, Any], Path]:
        tick_every = (
            min(context_of(self.app).settings.tick_interval_s, max(0.01, spec.interval_s / 10))
            if spec.interval_s > 0
            else None
        )
        try:
            return self._follow(store, spec, root, progress, tick_every, shown)
        except KeyboardInterrupt as exc:
            self._interrupt(store, spec.run_id, root, detail=str(exc) or "SIGINT")
            raise
        except BaseException:
            cancel_run(store, spec.run_id, reason="embedded driver interrupted")
            raise

    def _interrupt(
        self, store: RedisStore, run_id: str, root: str | os.PathLike[str], *, detail: str
    ) -> None:
        """Stop taking work, let a step in progress end (bounded), then leave the report so far
        and the checkpoint of what the store holds now."""
        interrupt_run(store, run_id, detail=f"interrupted by {detail}")
        with self.app.connection_for_write() as conn:
            conn.default_channel.queue_purge(self.queue)
        deadline = time.monotonic() + _INTERRUPT_GRACE_S
        with self._cv:
            while self._running and time.monotonic() < deadline:
                self._cv.wait(timeout=0.05)
        loaded = load_run(store, run_id)
        if loaded is not None and not loaded[0].status.terminal:
            write_checkpoint(store, run_id, root)
            export_run(store, run_id, root)

    def _follow(
        self,
        store: RedisStore,
        spec: RunSpec,
        root: str | os.PathLike[str],
        progress: Progress | None,
        tick_every: float | None,
        shown: int,
    ) -> tuple[dict[str, Any], Path]:
        next_tick = time.monotonic() + (tick_every or 0.0)
        while True:
            with self._cv:
                if self._failure is not None:
                    # Same process: the task's own exception, so the CLI reports it as the
                    # in-memory driver would (a SoakqError keeps its exit code, a bad path is 2).
                    raise self._failure
                self._cv.wait(timeout=tick_every or 0.05)
            state, _, _ = load_state(store, spec.run_id)
            while shown < state.iteration:
                shown += 1
                doc = store.get_iteration(spec.run_id, shown)
                if progress is not None and doc is not None:
                    progress(shown, doc)
            record, raw = load_record(store, spec.run_id)
            # Whatever ends a run publishes its directory, and the report task marks it
            # published: once that mark is read and no task is running, the directory is complete.
            published = record.published is not None and record.published.status == record.status
            if record.status.terminal and published:
                with self._cv:
                    if self._running == 0:
                        return raw, run_dir(root, spec.run_id)
            if tick_every is not None and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + tick_every
                self.app.send_task(names.SCHEDULE_TICK)


_shared: EmbeddedWorker | None = None
_shared_mu = threading.Lock()


def embedded_worker(settings: Settings | None = None) -> EmbeddedWorker:
    """The process's embedded worker, started on first use."""
    global _shared
    with _shared_mu:
        if _shared is None:
            worker = EmbeddedWorker(settings)
            worker.start()
            _shared = worker
            # Everything loaded so far (Celery, kombu, numpy, the app) lives as long as the
            # process: out of the collector's way, so the collections a run's own allocations
            # trigger stay short (about a tenth of an embedded run's wall time otherwise).
            gc.collect()
            gc.freeze()
        return _shared


def run_embedded_celery(
    spec: RunSpec,
    artifacts_root: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run ``spec`` through the production tasks in this process."""
    return embedded_worker(settings).run(spec, artifacts_root, progress=progress)
