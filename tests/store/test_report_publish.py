"""The report task's failure modes: a broken chart publishes the run without its trend report;
a report cut short by its soft time limit is late, not broken, so it is retried unpublished."""

from __future__ import annotations

from pathlib import Path

import pytest
from celery.exceptions import SoftTimeLimitExceeded

import soakq.report
import workers.executor as executor
from soakq.states import RunStatus
from soakq.store import MemoryStore
from workers import names
from workers.tasks import report_run

NOW = 1_700_000_000.0


def _ended_run(store: MemoryStore, run_id: str = "r1") -> str:
    assert store.create_run(run_id, {"status": "queued", "spec": {"iterations": 1}}, {"n": 0})
    store.transition(run_id, RunStatus.RUNNING, now_ts=NOW)
    lease = store.acquire_lock(run_id, "w", 10_000)
    assert lease is not None
    _, version = store.get_state(run_id)
    assert store.commit_iteration(run_id, 1, {"iteration": 1}, {"n": 1}, lease, version).committed
    store.transition(run_id, RunStatus.SUCCEEDED, now_ts=NOW + 1)
    return run_id


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MemoryStore:
    monkeypatch.setattr(executor, "artifacts_of", lambda app: tmp_path)
    return MemoryStore()


def _failing(exc: BaseException):
    def write_report(*_: object) -> None:
        raise exc

    return write_report


def test_a_broken_chart_publishes_without_the_report(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _ended_run(store)
    monkeypatch.setattr(soakq.report, "write_report", _failing(ValueError("bad chart")))
    executor.render_report(None, store, run_id, "succeeded")
    assert store.get_record(run_id)["published"]["status"] == "succeeded"
    assert store.unpublished() == []


def test_a_report_cut_by_its_time_limit_is_retried_unpublished(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _ended_run(store)
    monkeypatch.setattr(soakq.report, "write_report", _failing(SoftTimeLimitExceeded()))
    with pytest.raises(SoftTimeLimitExceeded):
        executor.render_report(None, store, run_id, "succeeded")
    assert "published" not in store.get_record(run_id)
    assert store.unpublished() == [run_id]
    # ... and the task retries on it (as on a Redis hiccup) instead of failing for good.
    assert report_run.name == names.RUN_REPORT
    assert SoftTimeLimitExceeded in report_run.autoretry_for
