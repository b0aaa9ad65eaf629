"""The in-memory twin: a whole run in this thread, on an in-memory store, driven by the same
life-cycle functions as the workers (soakq/lifecycle.py) through ``LocalExecutor``."""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from soakq.artifacts import export_run, run_dir, write_iteration
from soakq.config import RunSpec
from soakq.documents import load_record, load_run, load_state
from soakq.errors import ConfigError, StoreError
from soakq.iteration import measure_iteration, measure_symbol
from soakq.lifecycle import Timing, after_commit, planner, send_start, should_start
from soakq.runner import FinalizeResult, FinalizeStatus, Ready, finalize, start_run
from soakq.store import MemoryStore, RunStore

Progress = Callable[[int, Mapping[str, Any]], None]


def free_run_id(spec: RunSpec, artifacts_root: str | os.PathLike[str], explicit: bool) -> RunSpec:
    """Keep the run id unless its directory exists: then refuse (explicit) or take the next
    suffix after the highest ``-N`` already on disk (one directory listing, not a probe each)."""
    base = run_dir(artifacts_root, spec.run_id)
    if not base.exists():
        return spec
    if explicit:
        raise ConfigError(
            f"--run-id {spec.run_id}: {base} already exists; "
            "choose another run id or remove that directory"
        )
    prefix = f"{spec.run_id}-"
    with os.scandir(base.parent) as entries:
        taken = [
            int(e.name[len(prefix) :])
            for e in entries
            if e.name.startswith(prefix) and e.name[len(prefix) :].isdigit()
        ]
    return spec.model_copy(update={"run_id": f"{spec.run_id}-{max(taken, default=1) + 1}"})


#: No watchdog runs in the calling thread (nothing can die but the whole process): a year is
#: "never"; starts wait in the executor's queue until due.
LOCAL_TIMING = Timing(deadline_s=365 * 86_400.0, tick_s=float("inf"), countdowns=True)


def run_iteration_local(
    store: RunStore,
    spec: RunSpec,
    iteration: int,
    *,
    clock: Callable[[], float],
    timing: Timing = LOCAL_TIMING,
) -> FinalizeResult:
    """Header (every symbol) then body, in this thread."""
    started = clock()
    overrides = load_state(store, spec.run_id)[0].overrides
    results: list[Mapping[str, Any]]
    if spec.live:  # one step: the handshake, the wait and the report for every symbol
        results = list(measure_iteration(spec, iteration, overrides))
    else:
        results = [measure_symbol(spec, iteration, s, overrides) for s in spec.symbols]
    return finalize(
        store,
        spec.run_id,
        iteration,
        results,
        owner=f"embedded:{os.getpid()}",
        clock=clock,
        started_ts=started,
        successor=planner(timing),
    )


class LocalExecutor:
    """The life-cycle's Executor in the calling thread (soakq/lifecycle.py): starts wait in a
    queue ordered by due time; ``run_next`` sleeps until the first is due and runs the whole
    iteration (every symbol, then the commit) here; ``publish`` writes the run directory."""

    timing = LOCAL_TIMING

    def __init__(
        self,
        store: RunStore,
        artifacts_root: str | os.PathLike[str],
        *,
        report: bool,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.store = store
        self.root = artifacts_root
        self.report = report
        self.clock = clock
        self.sleep = sleep
        self._queue: list[tuple[float, int, str, int, int]] = []
        self._seq = 0

    def enqueue_start(
        self,
        run_id: str,
        iteration: int,
        attempt: int,
        countdown_s: float,
        ready: Ready | None = None,
    ) -> None:
        self._seq += 1
        heapq.heappush(
            self._queue,
            (self.clock() + max(0.0, countdown_s), self._seq, run_id, iteration, attempt),
        )

    def publish(self, run_id: str) -> None:
        export_run(self.store, run_id, self.root, report=self.report)

    def run(self, progress: Progress | None) -> None:
        """Carry out every start until none is left."""
        store = self.store
        while self._queue:
            due, _, run_id, iteration, _attempt = heapq.heappop(self._queue)
            wait = due - self.clock()
            if wait > 0:
                self.sleep(wait)
            loaded = load_run(store, run_id)
            if loaded is None or not should_start(*loaded, iteration):
                continue
            result = run_iteration_local(store, loaded[0].spec, iteration, clock=self.clock)
            if result.status not in (FinalizeStatus.COMMITTED, FinalizeStatus.DUPLICATE):
                raise StoreError(f"iteration {iteration} was not committed ({result.status})")
            write_iteration(store, run_id, iteration, self.root, doc=result.doc)
            if progress is not None:
                doc = result.doc or store.get_iteration(run_id, iteration)
                assert doc is not None
                progress(iteration, doc)
            after_commit(store, self, run_id, iteration, result, self.clock())


def run_embedded(
    spec: RunSpec,
    artifacts_root: str | os.PathLike[str],
    *,
    store: RunStore | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    report: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Run ``spec`` to the end in this thread through the same life-cycle as the workers
    (soakq/lifecycle.py); return the final run record and the run directory."""
    store = store or MemoryStore()
    now = clock()
    if not start_run(store, spec, now=now, mode="embedded"):
        raise ConfigError(f"run {spec.run_id} already exists in the store")
    ex = LocalExecutor(store, artifacts_root, report=report, clock=clock, sleep=sleep)
    send_start(store, ex, spec.run_id, 1, now=now)
    ex.run(progress)
    record, doc = load_record(store, spec.run_id)
    if not record.status.terminal:
        raise StoreError(f"run {spec.run_id} stopped {record.status} with nothing left to run")
    return doc, run_dir(artifacts_root, spec.run_id)
