"""After a commit: the successor's drive is written by the commit itself, the start carries what
the body already holds, and every fallback still records the drive (docs/architecture.md)."""

from __future__ import annotations

from typing import Any

import pytest
from soakq_testkit import make_spec

from soakq.documents import Drive
from soakq.iteration import measure_symbol
from soakq.lifecycle import Timing, after_commit, planner, watchdog_action
from soakq.runner import FinalizeStatus, Ready, finalize, start_run
from soakq.store import CommitOutcome, MemoryStore

pytestmark = pytest.mark.usefixtures("clean_env")

NOW = 1_800_000_000.0
TIMING = Timing(deadline_s=600.0, tick_s=10.0, countdowns=True, lease_ttl_s=30.0)


class Recorder:
    """An Executor that records what it is asked to do."""

    timing = TIMING

    def __init__(self) -> None:
        self.starts: list[tuple[str, int, int, float, Ready | None]] = []
        self.published: list[str] = []

    def enqueue_start(
        self, run_id: str, iteration: int, attempt: int, countdown_s: float, ready: Any = None
    ) -> None:
        self.starts.append((run_id, iteration, attempt, countdown_s, ready))

    def publish(self, run_id: str) -> None:
        self.published.append(run_id)


def _first_commit(store: MemoryStore, interval_s: float) -> tuple[Any, Any]:
    spec = make_spec(iterations=3, interval_s=interval_s, run_id="lc")
    assert start_run(store, spec, now=NOW, mode="embedded")
    assert store.claim_due(NOW) == [("lc", 1)]  # iteration 1, as a submit or a tick takes it
    state, _ = store.get_state("lc")
    results = [measure_symbol(spec, 1, s, state["overrides"]) for s in spec.symbols]
    result = finalize(
        store, "lc", 1, results, owner="t", clock=lambda: NOW, successor=planner(TIMING)
    )
    return spec, result


def test_the_commit_records_the_drive_and_the_start_reads_nothing_back() -> None:
    store = MemoryStore()
    spec, result = _first_commit(store, interval_s=0.0)
    assert result.status == FinalizeStatus.COMMITTED and result.next_iteration == 2
    record = store.get_record("lc")
    assert record is not None and record["status"] == "running"
    assert Drive.of(record) == Drive(
        iteration=2, attempt=0, due_ts=NOW, enqueued_ts=NOW, deadline_ts=NOW + 600.0
    )
    assert result.drive is not None and result.drive.as_json() == record["drive"]
    assert result.doc == store.get_iteration("lc", 1)
    assert store.acquire_lock("lc", "next", 1000) is not None  # the commit released the lock

    ex = Recorder()
    after_commit(store, ex, "lc", 1, result, NOW)
    ((run_id, iteration, attempt, countdown, ready),) = ex.starts
    assert (run_id, iteration, attempt, countdown) == ("lc", 2, 0, 0.0)
    assert ready is not None and ready.spec == spec
    assert ready.overrides == store.get_state("lc")[0]["overrides"]
    assert store.claim_due(NOW + 3600) == []  # nothing parked: the body started it


def test_a_successor_within_a_tick_gets_a_countdown_and_a_later_one_is_parked() -> None:
    store = MemoryStore()
    _, soon = _first_commit(store, interval_s=4.0)
    ex = Recorder()
    after_commit(store, ex, "lc", 1, soon, NOW)
    assert [(s[1], s[3]) for s in ex.starts] == [(2, 4.0)]

    store = MemoryStore()
    _, later = _first_commit(store, interval_s=3600.0)
    record = store.get_record("lc")
    assert record is not None and record["drive"]["enqueued_ts"] is None
    assert record["drive"]["due_ts"] == NOW + 3600.0
    ex = Recorder()
    after_commit(store, ex, "lc", 1, later, NOW)
    assert ex.starts == []
    assert store.claim_due(NOW + 3600.0) == [("lc", 2)]  # the tick's


class AnnotatingStore(MemoryStore):
    """Someone annotates the record between the body's read and its commit."""

    def commit_iteration(self, run_id: str, *args: Any, **kwargs: Any) -> CommitOutcome:
        self.update_record(run_id, {"watchdog": []})
        return super().commit_iteration(run_id, *args, **kwargs)


def test_a_record_that_changed_under_the_commit_still_gets_its_drive() -> None:
    store = AnnotatingStore()
    _, result = _first_commit(store, interval_s=0.0)
    assert result.status == FinalizeStatus.COMMITTED and result.drive is None
    record = store.get_record("lc")
    assert record is not None and "drive" not in record  # the commit wrote none
    ex = Recorder()
    after_commit(store, ex, "lc", 1, result, NOW)
    record = store.get_record("lc")
    assert record is not None and record["drive"]["iteration"] == 2
    assert record["watchdog"] == []  # the annotation survives
    assert [(s[1], s[2]) for s in ex.starts] == [(2, 0)]


def test_a_body_that_dies_after_its_commit_is_redriven_by_the_lease_rule() -> None:
    store = MemoryStore()
    _, result = _first_commit(store, interval_s=0.0)
    record = store.get_record("lc")
    assert record is not None
    # No after_commit: the worker died. Nobody holds the lease for iteration 2.
    action = watchdog_action(
        done=1,
        planned=3,
        stopped=False,
        drive=Drive.of(record),
        now=NOW + TIMING.lease_ttl_s,
        deadline_s=TIMING.deadline_s,
        max_redrives=3,
        last_ts=NOW,
        interval_s=0.0,
        leased=None,
        lease_ttl_s=TIMING.lease_ttl_s,
    )
    assert (action.kind, action.iteration, action.attempt) == ("drive", 2, 1)
