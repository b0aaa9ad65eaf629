"""The embedded driver: a whole run in this process, on an in-memory store."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from soakq.artifacts import export_run, run_dir, write_iteration
from soakq.config import RunSpec
from soakq.errors import ConfigError, StoreError
from soakq.iteration import measure_iteration, measure_symbol
from soakq.runner import FinalizeStatus, finalize, start_run
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


def run_iteration_local(
    store: RunStore, spec: RunSpec, iteration: int, *, clock: Callable[[], float]
) -> Any:
    """Header (every symbol) then body, in this thread."""
    started = clock()
    state, _ = store.get_state(spec.run_id)
    results: list[Mapping[str, Any]]
    if spec.live:  # one step: the handshake, the wait and the report for every symbol
        results = list(measure_iteration(spec, iteration, state["overrides"]))
    else:
        results = [measure_symbol(spec, iteration, s, state["overrides"]) for s in spec.symbols]
    return finalize(
        store,
        spec.run_id,
        iteration,
        results,
        owner=f"embedded:{os.getpid()}",
        clock=clock,
        started_ts=started,
    )


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
    """Run ``spec`` to the end; return the final run record and the run directory."""
    store = store or MemoryStore()
    if not start_run(store, spec, now=clock(), mode="embedded"):
        raise ConfigError(f"run {spec.run_id} already exists in the store")
    while True:
        due = store.claim_due(clock() + 365 * 86_400.0)
        if not due:
            break
        for run_id, iteration in due:
            result = run_iteration_local(store, spec, iteration, clock=clock)
            if result.status != FinalizeStatus.COMMITTED:
                raise StoreError(f"iteration {iteration} was not committed ({result.status})")
            write_iteration(store, run_id, iteration, artifacts_root)
            if progress is not None:
                doc = store.get_iteration(run_id, iteration)
                assert doc is not None
                progress(iteration, doc)
            if result.next_due_ts is not None:
                wait = result.next_due_ts - clock()
                if wait > 0:
                    sleep(wait)
    out = export_run(store, spec.run_id, artifacts_root, report=report)
    record = store.get_record(spec.run_id)
    assert record is not None
    return record, out
