"""The resume point of an embedded run: checkpoint file, committed documents, the run lock and
how a listing reads a run directory (docs/resume.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from soakq_testkit import make_spec

from soakq.checkpoint import (
    RunLock,
    clear_after,
    committed_docs,
    is_running,
    local_run,
    read_checkpoint,
    write_checkpoint,
)
from soakq.errors import InputError
from soakq.iteration import initial_state
from soakq.jsonio import write_json
from soakq.runner import new_record
from soakq.store import MemoryStore

RUN = "r-1"


def _dir(root: Path) -> Path:
    d = root / "soak" / RUN
    d.mkdir(parents=True, exist_ok=True)
    return d


def _documents(status: str, iteration: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A whole record and state, as a run's store holds them."""
    spec = make_spec(iterations=12, run_id=RUN)
    record = {**new_record(spec, now=1_800_000_000.0, mode="embedded"), "status": status}
    return record, {**initial_state(spec), "iteration": iteration}


@pytest.mark.usefixtures("clean_env")
def test_checkpoint_round_trips_what_the_store_holds(tmp_path: Path) -> None:
    store = MemoryStore()
    record, state = _documents("running", 2)
    assert store.restore_run(RUN, record, state, 7, [])
    _dir(tmp_path)
    write_checkpoint(store, RUN, tmp_path)
    cp = read_checkpoint(tmp_path / "soak" / RUN)
    assert (cp.record, cp.state, cp.version, cp.iteration) == (record, state, 7, 2)


@pytest.mark.usefixtures("clean_env")
def test_a_finished_run_gets_no_checkpoint(tmp_path: Path) -> None:
    store = MemoryStore()
    store.restore_run(RUN, *_documents("succeeded", 1), 1, [])
    _dir(tmp_path)
    write_checkpoint(store, RUN, tmp_path)
    assert not (tmp_path / "soak" / RUN / "CHECKPOINT.json").exists()


@pytest.mark.parametrize(
    ("doc", "said"),
    [
        ({"format": 2, "record": {}, "state": {"iteration": 0}, "version": 0}, "format 2"),
        ({"format": 1, "record": {}, "state": {}, "version": 0}, "record of run r-1"),
        ({"format": 1, "record": {}, "state": {"iteration": 0}}, "not a soakq checkpoint"),
    ],
)
@pytest.mark.usefixtures("clean_env")
def test_unusable_checkpoints_are_named(tmp_path: Path, doc: dict, said: str) -> None:
    d = _dir(tmp_path)
    write_json(d / "CHECKPOINT.json", doc)
    with pytest.raises(InputError, match=said) as exc:
        read_checkpoint(d)
    assert str(d / "CHECKPOINT.json") in str(exc.value)


def test_committed_docs_must_all_be_there_and_in_place(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    for i in (1, 2):
        write_json(d / f"ITER_SUMMARY_{i}.json", {"iteration": i})
    assert committed_docs(d, 2) == [{"iteration": 1}, {"iteration": 2}]
    with pytest.raises(InputError, match="ITER_SUMMARY_3.json: missing"):
        committed_docs(d, 3)
    write_json(d / "ITER_SUMMARY_2.json", {"iteration": 5})
    with pytest.raises(InputError, match="holds iteration 5, not 2"):
        committed_docs(d, 2)


def test_clear_after_keeps_only_what_the_resume_continues_from(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    names = [
        "ITER_SUMMARY_1.json",
        "ITER_SUMMARY_2.json",
        "ITER_SUMMARY_3.json",
        "ITER_SUMMARY_10.json",
        "ITER_SUMMARY_final.json",
        "TUNING_REPORT.json",
        "PRODUCTION_SNAPSHOT.json",
        "trend.png",
        "RUN.json",
        "CHECKPOINT.json",
        ".lock",
    ]
    for n in names:
        (d / n).write_text("x")
    clear_after(d, 2)
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [".lock", "CHECKPOINT.json", "ITER_SUMMARY_1.json", "ITER_SUMMARY_2.json", "RUN.json"]
    )


def test_the_lock_is_exclusive_and_dies_with_its_process(tmp_path: Path) -> None:
    _dir(tmp_path)
    assert not is_running(tmp_path, RUN)
    lock = RunLock(tmp_path, RUN)
    assert lock.acquire()
    assert is_running(tmp_path, RUN)
    assert not RunLock(tmp_path, RUN).acquire()  # a second holder, even in this process
    lock.release()
    assert not is_running(tmp_path, RUN)
    # Another process holds it, then dies without releasing: the lock goes with it.
    code = (
        "import sys, time; from soakq.checkpoint import RunLock; "
        f"assert RunLock(sys.argv[1], {RUN!r}).acquire(); print('held', flush=True); "
        "time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        assert is_running(tmp_path, RUN)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert not is_running(tmp_path, RUN)


def _embedded_run_json(status: str) -> dict[str, Any]:
    """The RUN.json of a 12-iteration embedded run, as written at its start."""
    return {
        "config": {"iterations": 12},
        "outcome": {},
        "run_id": RUN,
        "runtime": {"execution": "embedded"},
        "status": status,
    }


def _checkpoint_at(d: Path, iteration: int) -> None:
    record, state = _documents("running", iteration)
    doc = {"format": 1, "record": record, "state": state, "version": iteration}
    write_json(d / "CHECKPOINT.json", doc)


@pytest.mark.usefixtures("clean_env")
def test_local_run_calls_an_abandoned_embedded_run_interrupted(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    doc = _embedded_run_json("running")
    _checkpoint_at(d, 5)
    view = local_run(tmp_path, doc)
    assert (view.status, view.completed, view.planned, view.release_gate) == (
        "interrupted",
        5,
        12,
        None,
    )
    lock = RunLock(tmp_path, RUN)
    assert lock.acquire()
    try:
        assert local_run(tmp_path, doc).status == "running"
    finally:
        lock.release()
    distributed = {**doc, "runtime": {"execution": "distributed"}}
    assert local_run(tmp_path, distributed).status == "running"  # Redis knows, not the lock
    done = {
        **doc,
        "status": "succeeded",
        "outcome": {"iterations_completed": 12, "release_gate": "PASSED"},
    }
    (d / "CHECKPOINT.json").unlink()
    assert local_run(tmp_path, done) == type(view)("succeeded", 12, 12, "PASSED")


@pytest.mark.usefixtures("clean_env")
def test_local_run_reads_a_running_run_from_its_checkpoint(tmp_path: Path) -> None:
    d = _dir(tmp_path)
    doc = _embedded_run_json("queued")  # as RUN.json says from the start until the end
    _checkpoint_at(d, 4)
    lock = RunLock(tmp_path, RUN)
    assert lock.acquire()
    try:
        view = local_run(tmp_path, doc)
        assert (view.status, view.completed) == ("running", 4)
    finally:
        lock.release()
    assert local_run(tmp_path, doc).status == "interrupted"
    stopped = {**doc, "status": "interrupted"}
    assert local_run(tmp_path, stopped).status == "interrupted"


@pytest.mark.usefixtures("clean_env")
def test_a_run_handed_to_the_workers_is_not_interrupted_here(tmp_path: Path) -> None:
    """`soakq resume` with SOAKQ_REDIS_URL rewrites RUN.json (execution distributed); a stale
    checkpoint saying "interrupted" must not make it resumable a second time."""
    d = _dir(tmp_path)
    doc = {**_embedded_run_json("running"), "runtime": {"execution": "distributed"}}
    # A whole checkpoint (a partial one would be ignored as unreadable: the test could not fail).
    record, state = _documents("interrupted", 4)
    write_json(d / "CHECKPOINT.json", {"format": 1, "record": record, "state": state, "version": 4})
    assert local_run(tmp_path, doc).status == "running"


def test_a_lock_taken_on_a_released_file_is_not_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A taker whose flock landed on a file its holder meanwhile unlinked (released) does not
    count it as the lock; release removes the file; the next taker gets a fresh one."""
    import soakq.checkpoint as checkpoint

    _dir(tmp_path)
    real_stat = checkpoint.os.stat
    gone = {"n": 0}

    def unlinked_meanwhile(path: object, *a: object, **k: object) -> object:
        gone["n"] += 1
        raise FileNotFoundError(path)

    monkeypatch.setattr(checkpoint.os, "stat", unlinked_meanwhile)
    assert not RunLock(tmp_path, RUN).acquire(attempts=3, pause_s=0.0)
    assert gone["n"] == 3  # every attempt re-checked the path
    monkeypatch.setattr(checkpoint.os, "stat", real_stat)
    a = RunLock(tmp_path, RUN)
    assert a.acquire()
    assert not RunLock(tmp_path, RUN).acquire(attempts=2, pause_s=0.0)
    a.release()
    assert not (tmp_path / "soak" / RUN / ".lock").exists()
    b = RunLock(tmp_path, RUN)
    assert b.acquire()
    b.release()


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        (lambda r, s: r.update(status="bogus"), "status"),
        (lambda r, s: s["overrides"].update(tail_age_ms=99999), "tail_age_ms=99999 is out of"),
        (lambda r, s: r["spec"].update(iterations=3), "beyond the run's 3 planned"),
        (lambda r, s: r.update(run_id="other"), "checkpoint of run 'other', not 'r-1'"),
        (lambda r, s: s.update(iteration="x"), "state of run r-1: iteration"),
    ],
)
def test_a_checkpoint_that_contradicts_itself_is_refused(tmp_path: Path, tamper, said) -> None:
    d = _dir(tmp_path)
    record, state = _documents("interrupted", 6)
    tamper(record, state)
    write_json(d / "CHECKPOINT.json", {"format": 1, "record": record, "state": state, "version": 6})
    with pytest.raises(InputError, match=re.escape(said)) as exc:
        read_checkpoint(d)
    assert str(d / "CHECKPOINT.json") in str(exc.value)


def test_held_or_refused_holds_for_the_block_and_refuses_a_second_holder(tmp_path: Path) -> None:
    from soakq.checkpoint import DirectoryLock, held_or_refused
    from soakq.errors import ConfigError

    with held_or_refused(DirectoryLock(tmp_path), "busy"):
        assert not DirectoryLock(tmp_path).acquire(attempts=1)
        with (
            pytest.raises(ConfigError, match="^busy$"),
            held_or_refused(DirectoryLock(tmp_path), "busy"),
        ):
            pytest.fail("entered a block whose lock another holder keeps")
    again = DirectoryLock(tmp_path)
    assert again.acquire(attempts=1)  # released when the block ended
    again.release()
