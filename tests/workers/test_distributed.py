"""Distributed runs on two real workers give the embedded run's bytes (docs/artifacts.md)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from soakq_worker_harness import (
    Cluster,
    assert_same_artifacts,
    read_line,
    result_of,
    spec_for,
    strip_runtime,
    wait_for,
)

from soakq.engine import run_embedded
from soakq.iteration import measure_symbol
from soakq.lifecycle import parse_iso
from soakq.states import RunStatus
from workers import names

pytestmark = [pytest.mark.workers, pytest.mark.redis, pytest.mark.slow]


def soakq_cli(cluster: Cluster, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", "from soakq.cli.main import main; main()", *args]
    return subprocess.run(
        argv, env=cluster.env(), capture_output=True, text=True, timeout=timeout_s, check=False
    )


@pytest.mark.parametrize("source", ["kpi", "book"])
def test_distributed_run_is_byte_identical_to_embedded(
    cluster: Cluster, embedded_twin, tmp_path: Path, source: str
) -> None:
    spec = spec_for(iterations=6, mode="volatile", source=source, run_id=f"dist-6x3-{source}")
    assert len(spec.symbols) == 3
    cluster.submit(spec)
    record = cluster.wait_run(spec.run_id)
    assert record["status"] == "succeeded"

    workers_dir = cluster.run_dir(spec.run_id)
    celery_embedded = embedded_twin(spec)
    _, in_memory = run_embedded(spec, tmp_path / "engine")
    compared = assert_same_artifacts(workers_dir, celery_embedded)
    assert_same_artifacts(workers_dir, in_memory)
    assert {
        "ITER_SUMMARY_6.json",
        "ITER_SUMMARY_final.json",
        "RUN.json",
        "TUNING_REPORT.json",
        "runtime_overrides.json",
        "RELEASE_GATE.json",
    } <= set(compared)
    ran_on = {
        cluster.store.get_iteration(spec.run_id, i)["runtime"]["worker"].split(":")[0]
        for i in range(1, 7)
    }
    assert ran_on <= {"w1@test", "w2@test"}

    # `soakq export` re-writes the workers' bytes, runtime included (it is stored).
    done = soakq_cli(cluster, "export", spec.run_id, "--artifacts", str(tmp_path / "export"))
    assert done.returncode == 0, done.stderr
    assert_same_artifacts(
        workers_dir, tmp_path / "export" / "soak" / spec.run_id, with_runtime=True
    )


def test_concurrent_runs_all_succeed(cluster: Cluster, tmp_path: Path) -> None:
    specs = [
        spec_for(iterations=5, seed=seed, mode="spike", run_id=f"par-{seed}") for seed in (1, 2, 3)
    ]
    for spec in specs:
        cluster.submit(spec)
    for spec in specs:
        assert cluster.wait_run(spec.run_id)["status"] == "succeeded"
        _, twin = run_embedded(spec, tmp_path / spec.run_id)
        assert_same_artifacts(cluster.run_dir(spec.run_id), twin)


def test_finalize_delivered_100_times_applies_once(cluster: Cluster, tmp_path: Path) -> None:
    # volatile steady_safe applies three deltas at iteration 2; the hour-long interval parks
    # the run after each commit (nobody sends a tick), so iteration 2 is ours to hammer.
    spec = spec_for(iterations=3, mode="volatile", interval_s=3600, run_id="hammer")
    store = cluster.store
    cluster.submit(spec)
    wait_for(lambda: store.get_iteration(spec.run_id, 1), "iteration 1 to commit")
    state, version = store.get_state(spec.run_id)
    assert (state["iteration"], version) == (1, 1)
    results = [measure_symbol(spec, 2, s, state["overrides"]) for s in spec.symbols]

    sent = [
        cluster.app.send_task(
            names.ITERATION_FINALIZE,
            args=[results, spec.run_id, 2],
            task_id=f"hammer:2:finalize:{n}",
        )
        for n in range(100)
    ]
    outcomes = [result_of(r, 60) for r in sent]

    assert outcomes.count("committed") == 1
    assert outcomes.count("duplicate") == 99
    state, version = store.get_state(spec.run_id)
    assert (state["iteration"], version) == (2, 2)
    doc = store.get_iteration(spec.run_id, 2)
    applied = doc["tuning"]["applied_deltas"]
    assert applied, "this config must apply deltas at iteration 2"
    assert state["overrides"] == doc["tuning"]["overrides_after"]
    for key in applied:
        entries = [e for e in state["ledger"]["changes"][key] if e["iteration"] == 2]
        assert len(entries) == 1, (key, state["ledger"]["changes"][key])
    # The same document the in-memory twin commits for iteration 2.
    from soakq.store import MemoryStore

    twin = MemoryStore()
    run_embedded(
        spec.model_copy(update={"interval_s": 0.0}), tmp_path / "twin", store=twin, report=False
    )
    twin_doc = twin.get_iteration(spec.run_id, 2)
    assert strip_runtime(doc) == strip_runtime(twin_doc)


def test_cli_submit_wait_status_runs_cancel(cluster: Cluster, tmp_path: Path) -> None:
    args = [
        "submit",
        "--profile",
        "steady_safe",
        "--source",
        "kpi",
        "--iterations",
        "3",
        "--seed",
        "7",
    ]
    first = soakq_cli(cluster, *args, "--wait")
    assert first.returncode == 0, first.stdout + first.stderr
    run_id = first.stdout.splitlines()[0]
    assert "iteration 3/3" in first.stdout and f"run {run_id}: succeeded" in first.stdout

    second = soakq_cli(cluster, *args)  # same config, same derived id: it gets "-2"
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == f"{run_id}-2"
    cluster.wait_run(f"{run_id}-2")

    taken = soakq_cli(cluster, *args, "--run-id", run_id)
    assert taken.returncode == 2
    assert "already exists in Redis" in taken.stderr

    status = soakq_cli(cluster, "status", run_id, "--json")
    assert status.returncode == 0 and '"status": "succeeded"' in status.stdout
    # The same document as the run directory's RUN.json (what `status --json` prints embedded).
    assert status.stdout == (cluster.run_dir(run_id) / "RUN.json").read_text()
    listing = soakq_cli(cluster, "runs")
    assert run_id in listing.stdout and f"{run_id}-2" in listing.stdout
    cancel = soakq_cli(cluster, "cancel", run_id)
    assert cancel.returncode == 1 and "already ended" in cancel.stdout
    missing = soakq_cli(cluster, "status", "no-such-run")
    assert missing.returncode == 2 and "not in Redis" in missing.stderr


def test_cancel_stops_a_parked_run(cluster: Cluster) -> None:
    spec = spec_for(iterations=4, interval_s=3600, run_id="to-cancel")
    cluster.submit(spec)
    wait_for(lambda: cluster.store.get_iteration(spec.run_id, 1), "iteration 1 to commit")
    done = soakq_cli(cluster, "cancel", spec.run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    record = cluster.store.get_record(spec.run_id)
    assert record["status"] == "cancelled"
    assert record["outcome"]["iterations_completed"] == 1
    # A start that still arrives is a no-op.
    res = cluster.app.send_task(names.ITERATION_START, args=[spec.run_id, 2])
    assert result_of(res) == "skipped"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_a_signal_stops_the_follower_not_the_run(cluster: Cluster, sig: signal.Signals) -> None:
    """Ctrl-C or SIGTERM on `soakq watch`: one line saying the run goes on, exit 130; the run
    is untouched (it was a silent 143 for SIGTERM, a silent 130 for Ctrl-C)."""
    spec = spec_for(iterations=4, interval_s=3600, run_id=f"followed-{sig.name.lower()}")
    cluster.submit(spec)
    wait_for(lambda: cluster.store.get_iteration(spec.run_id, 1), "iteration 1 to commit")
    argv = [sys.executable, "-c", "from soakq.cli.main import main; main()", "watch", spec.run_id]
    proc = subprocess.Popen(
        argv, env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        read_line(proc, "iteration 1/4")  # the follower prints iteration 1 once it follows
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, (out, err)
    assert err.strip() == (
        f"run {spec.run_id}: no longer followed (1/4 iterations); it goes on on the workers: "
        f"`soakq watch {spec.run_id}` follows it again"
    )
    assert cluster.store.get_record(spec.run_id)["status"] == "running"
    assert soakq_cli(cluster, "cancel", spec.run_id).returncode == 0


def test_watchdog_redrives_a_lost_start(cluster: Cluster, tmp_path: Path) -> None:
    spec = spec_for(iterations=3, run_id="lost-start")
    store = cluster.store
    from soakq.runner import start_run

    now = time.time()
    assert start_run(store, spec, now=now, mode="distributed")
    store.claim_due(now + 1)  # the due entry vanished with whoever claimed it
    # ...after recording a drive whose message never reached a worker:
    store.update_record(
        spec.run_id,
        {
            "drive": {
                "attempt": 0,
                "deadline_ts": now - 1,
                "due_ts": now - 2,
                "enqueued_ts": now - 2,
                "iteration": 1,
            }
        },
    )
    result = result_of(cluster.app.send_task(names.SCHEDULE_TICK))
    assert [r[1] for r in result["watchdog"] if r[0] == spec.run_id] == ["drive"]
    record = cluster.wait_run(spec.run_id)
    assert record["status"] == "succeeded"
    assert record["watchdog"][0]["attempt"] == 1
    assert "passed its 1s deadline" in record["watchdog"][0]["reason"]
    _, twin = run_embedded(spec, tmp_path / "twin")
    assert_same_artifacts(cluster.run_dir(spec.run_id), twin)


def test_watchdog_gives_up_and_marks_the_run_lost(cluster: Cluster) -> None:
    spec = spec_for(iterations=3, run_id="given-up")
    store = cluster.store
    from soakq.runner import start_run

    now = time.time()
    assert start_run(store, spec, now=now, mode="distributed")
    store.claim_due(now + 1)
    store.update_record(
        spec.run_id,
        {
            "drive": {
                "attempt": 2,
                "deadline_ts": now - 1,
                "due_ts": now - 2,
                "enqueued_ts": now - 2,
                "iteration": 1,
            }
        },
    )
    result = result_of(cluster.app.send_task(names.SCHEDULE_TICK))
    assert [r[1] for r in result["watchdog"] if r[0] == spec.run_id] == ["lose"]
    record = cluster.wait_run(spec.run_id)
    assert record["status"] == str(RunStatus.LOST)
    assert record["outcome"]["stop_reason"] == "lost"
    assert "2 re-drives given up" in record["outcome"]["detail"]
    run_json = (cluster.run_dir(spec.run_id) / "RUN.json").read_text()
    assert '"status": "lost"' in run_json


def test_tick_drives_due_iterations(cluster: Cluster) -> None:
    # An hour-long interval parks iteration 2 in the due set for the tick...
    spec = spec_for(iterations=2, interval_s=3600.0, run_id="ticked")
    cluster.submit(spec)

    def pending() -> dict | None:
        drive = cluster.store.get_record(spec.run_id).get("drive") or {}
        return drive if drive.get("iteration") == 2 else None

    drive = wait_for(pending, "the body to leave iteration 2 to the tick")
    assert drive["enqueued_ts"] is None
    result = result_of(cluster.app.send_task(names.SCHEDULE_TICK))
    assert result["sent"] == 0  # not due yet
    # ...once it is due (moved to now here, instead of waiting an hour), a tick starts it.
    cluster.store.schedule(spec.run_id, 2, time.time())
    result = result_of(cluster.app.send_task(names.SCHEDULE_TICK))
    assert result["sent"] == 1
    assert cluster.wait_run(spec.run_id)["status"] == "succeeded"


def test_interval_shorter_than_the_tick_is_kept_without_a_tick(cluster: Cluster) -> None:
    # The tick is 10 s here and nobody sends one: the chord body sends the successor with a
    # countdown, so a 1.5 s interval holds to within a second.
    spec = spec_for(iterations=3, interval_s=1.5, run_id="paced")
    cluster.submit(spec)
    wait_for(lambda: cluster.store.get_iteration(spec.run_id, 1), "iteration 1 to commit")
    status = soakq_cli(cluster, "status", spec.run_id)  # no beat runs here, and none is needed
    assert status.returncode == 0 and "beat" not in status.stdout, status.stdout
    cluster.wait_run(spec.run_id, limit_s=30)
    docs = cluster.store.iterations(spec.run_id)
    starts = [parse_iso(d["runtime"]["started_at"]) for d in docs]
    ends = [parse_iso(d["runtime"]["finished_at"]) for d in docs]
    gaps = [b - a for a, b in zip(ends, starts[1:], strict=False)]
    assert len(gaps) == 2 and all(1.5 <= g <= 2.5 for g in gaps), gaps
