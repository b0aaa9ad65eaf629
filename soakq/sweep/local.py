"""A sweep's runs on local processes (embedded sweeps, docs/sweeps.md).

Each run goes through the in-memory driver (``soakq.engine.run_embedded``: the same iteration
code as the workers, byte-identical results) in a process of a pool of ``jobs``. Its directory is
written under ``<sweep dir>/soak/<run_id>/`` (without the trend report: a sweep has hundreds of
runs; ``soakq report DIR`` draws one). A run whose directory already holds its finished record
for the same spec is read back instead of run again, so an interrupted sweep re-run with the same
config continues where it stopped. Any other directory (a run cut off before its RUN.json, with
the temporary files of the writes the kill interrupted, or another config's run) is emptied and
the run is run again from scratch: same spec, same bytes.

The pool stops whole: ``close`` with runs still going (an interrupt, an error) terminates its
processes (SIGTERM, then SIGKILL), each wait bounded, so nothing is left behind running; on
Linux a pool process also dies with the sweep's process when that one is killed outright.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from soakq.artifacts import iteration_file, run_dir
from soakq.config import RunSpec
from soakq.errors import InputError
from soakq.jsonio import read_json
from soakq.sweep import RunFacts, Submitter, facts_of


def finished_facts(directory: Path, spec: RunSpec) -> RunFacts | None:
    """The facts of a run directory left by an earlier sweep with the same spec, if it ended."""
    try:
        record = read_json(directory / "RUN.json")
        config = dict(record["config"])
        config["sources"] = config.pop("_sources")
        if config != spec.as_json() or record["status"] not in ("succeeded", "failed"):
            return None
        done = int(record["outcome"]["iterations_completed"])
        docs = [read_json(iteration_file(directory, i)) for i in range(1, done + 1)]
        gate_path = directory / "RELEASE_GATE.json"
        gate = read_json(gate_path) if gate_path.exists() else None
        if (gate or {}).get("verdict") != record["outcome"].get("release_gate"):
            return None  # cut off while it was written: run it again
        return facts_of(docs, gate, read_json(directory / "runtime_overrides.json"))
    except (OSError, KeyError, TypeError, ValueError, InputError):
        return None  # missing, unreadable or partial: run it again (same bytes)


def clear_run(directory: Path) -> None:
    """Remove every file a run left in its directory (its documents so far, the temporary
    files of writes cut off by a kill), so that it is run again into an empty directory."""
    for path in directory.iterdir():
        if path.is_file() or path.is_symlink():
            path.unlink(missing_ok=True)


def run_one(spec_json: dict[str, Any], root: str) -> tuple[str, dict[str, Any]]:
    """Run one sweep run in this process (pool entry point); its id and facts as JSON."""
    from soakq.engine import run_embedded
    from soakq.store import MemoryStore

    spec = RunSpec.model_validate(spec_json)
    directory = run_dir(root, spec.run_id)
    if directory.is_dir():
        known = finished_facts(directory, spec)
        if known is not None:
            return spec.run_id, known.as_json()
        clear_run(directory)  # not finished (or another config's): from scratch
    store = MemoryStore()
    run_embedded(spec, root, store=store, report=False)
    state, _ = store.get_state(spec.run_id)
    facts = facts_of(
        store.iterations(spec.run_id),
        store.get_extra(spec.run_id, "release_gate"),
        state["overrides"],
    )
    return spec.run_id, facts.as_json()


_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
STOP_GRACE_S = 5.0  # how long terminated pool processes get to exit before SIGKILL


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(parent: int) -> None:
    """Linux: have the kernel SIGKILL this process when the one that forked it dies, however
    it dies (``kill -9``, the OOM killer), so that a pool process is not left orphaned waiting
    for work forever. Elsewhere, or without prctl: nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os._exit(1)


def _pool_process_init(parent: int) -> None:
    """Pool initializer. Ctrl-C on a terminal reaches the whole process group, and a forked
    process starts with the parent's handlers: a pool process ignores SIGINT (the parent decides
    what an interrupt does) and ends on SIGTERM (how the parent stops it); then the two signals,
    blocked while the parent forked it, are let through. It dies with its parent."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


@contextlib.contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait (blocked in this thread) until the block ends: a process forked
    inside starts with them blocked, until ``_pool_process_init`` has set its handlers."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class LocalSubmitter(Submitter):
    """``jobs`` local processes; results come back as runs end."""

    def __init__(self, root: Path, jobs: int) -> None:
        self.root = str(root)
        self.jobs = jobs
        self._pool = ProcessPoolExecutor(
            max_workers=jobs, initializer=_pool_process_init, initargs=(os.getpid(),)
        )
        self._pending: set[Future[tuple[str, dict[str, Any]]]] = set()
        self._done: list[tuple[str, RunFacts]] = []

    def submit(self, spec: RunSpec) -> None:
        with _stop_signals_deferred():  # the pool forks its processes on the first submit
            self._pending.add(self._pool.submit(run_one, spec.as_json(), self.root))

    def next_done(self) -> tuple[str, RunFacts]:
        while not self._done:
            finished, self._pending = wait(self._pending, return_when=FIRST_COMPLETED)
            for fut in finished:  # facts are keyed by run id: arrival order does not matter
                run_id, facts = fut.result()
                self._done.append((run_id, RunFacts.from_json(facts)))
        return self._done.pop(0)

    def _processes(self) -> list[Any]:
        return list((self._pool._processes or {}).values())  # shutdown() forgets them

    def close(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the pool and wait (bounded) for its processes to exit. Runs still going (an
        interrupt, an error) are cut off: SIGTERM, and SIGKILL after ``grace_s``; a cut-off run
        left no RUN.json, so the next sweep runs it again."""
        processes = self._processes()
        # The pool's thread that feeds and reaps its processes: done before we return, so that
        # the interpreter's exit does not race it (shutdown() forgets it too).
        manager = getattr(self._pool, "_executor_manager_thread", None)
        cut_off = any(not fut.done() for fut in self._pending)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if cut_off:
            for p in processes:
                with contextlib.suppress(ValueError):  # closed by the pool meanwhile: gone
                    p.terminate()
        deadline = time.monotonic() + grace_s
        for p in processes:
            with contextlib.suppress(ValueError):
                p.join(max(0.0, deadline - time.monotonic()))
                if p.is_alive():
                    p.kill()
                    p.join(1.0)
        if isinstance(manager, threading.Thread):
            manager.join(max(0.0, deadline - time.monotonic()) + 1.0)


def default_jobs() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
