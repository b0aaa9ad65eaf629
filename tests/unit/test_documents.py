"""The run's stored documents have one schema, checked on every read (soakq/documents.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from soakq.config import build_spec
from soakq.documents import Drive, RunRecord, RunState, check_record, check_state, load_state
from soakq.engine import run_embedded
from soakq.errors import StoreError
from soakq.runner import load_spec
from soakq.settings import Settings
from soakq.store import MemoryStore


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[MemoryStore, str]:
    spec = build_spec(
        Settings(), profile="aggressive", mode="volatile", iterations=8, interval_s=0.0
    )
    store = MemoryStore()
    run_embedded(spec, tmp_path_factory.mktemp("docs"), store=store, report=False)
    return store, spec.run_id


def test_a_real_run_has_the_schema(finished: tuple[MemoryStore, str]) -> None:
    store, run_id = finished
    record = check_record(store.get_record(run_id) or {}, run_id)
    assert isinstance(record, RunRecord) and record.status == "succeeded"
    assert record.outcome.iterations_completed == 8 and record.drive is not None
    state, doc, version = load_state(store, run_id)
    assert isinstance(state, RunState) and state.iteration == 8 and version == 8
    assert (
        state.model_dump(exclude_none=True, exclude_defaults=False)["overrides"] == doc["overrides"]
    )
    assert state.freeze.active == doc["freeze"]["active"]
    # The ledger's entries are typed: deltas, iterations, reversal flags.
    for entries in state.ledger.changes.values():
        assert all(1 <= e.iteration <= 8 for e in entries)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"status": "paused"}, "status"),
        ({"spec": {"run_id": "x"}}, "spec"),
        (
            {
                "drive": {
                    "iteration": 0,
                    "attempt": 0,
                    "due_ts": 1.0,
                    "enqueued_ts": None,
                    "deadline_ts": 2.0,
                }
            },
            "drive.iteration",
        ),  # fmt: skip
        ({"outcome": {"iterations_completed": -1}}, "outcome.iterations_completed"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_bad_record_is_refused_naming_the_field(
    finished: tuple[MemoryStore, str], change: dict, where: str
) -> None:
    store, run_id = finished
    doc = {**(store.get_record(run_id) or {}), **change}
    with pytest.raises(StoreError, match=f"^record of run {run_id}: {where}"):
        check_record(doc, run_id)


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"iteration": -1}, "iteration"),
        ({"overrides": {"tail_age_ms": "long"}}, "overrides.tail_age_ms"),
        ({"freeze": {"active": True}}, "freeze.frozen_at"),
        ({"ledger": {"changes": {"tail_age_ms": [{"delta": 1.0}]}}}, "ledger.changes"),
        ({"stop": {"reason": "kpi_gate"}}, "stop.detail"),
    ],
)
def test_a_bad_state_is_refused_naming_the_field(
    finished: tuple[MemoryStore, str], change: dict, where: str
) -> None:
    store, run_id = finished
    doc = {**store.get_state(run_id)[0], **change}
    with pytest.raises(StoreError, match=f"^state of run {run_id}: {where}"):
        check_state(doc, run_id)


def test_reads_go_through_the_schema(finished: tuple[MemoryStore, str], tmp_path: Path) -> None:
    """A corrupted record in the store stops the run's next read with the field named, in the
    domain code every mode uses (runner.load_spec)."""
    store, run_id = finished
    other = MemoryStore()
    record = dict(store.get_record(run_id) or {})
    state, _ = store.get_state(run_id)
    other.restore_run(run_id, {**record, "status": "queued", "outcome": {}}, state, 8, [])
    assert load_spec(other, run_id)[0].run_id == run_id
    broken = MemoryStore()
    broken.restore_run(run_id, {**record, "status": "queued", "outcome": "done"}, state, 8, [])
    with pytest.raises(StoreError, match="outcome"):
        load_spec(broken, run_id)


def test_drive_round_trips() -> None:
    d = Drive(iteration=3, attempt=1, due_ts=10.0, enqueued_ts=9.5, deadline_ts=70.0)
    assert Drive.of({"drive": d.as_json()}) == d and Drive.of({}) is None
    assert d.in_flight(3, 20.0) and not d.in_flight(3, 70.0) and not d.in_flight(4, 20.0)
    parked = Drive(iteration=3, attempt=0, due_ts=10.0, enqueued_ts=None, deadline_ts=70.0)
    assert not parked.in_flight(3, 20.0)
