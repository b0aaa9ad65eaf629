"""No silent waits: `soakq submit --wait` / `watch` / `status` on real redis-server, workers and
beat say when nobody consumes the run's queue or beat does not tick, and exit (the run goes on)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from soakq_worker_harness import Cluster, new_cluster, wait_for

pytestmark = [pytest.mark.workers, pytest.mark.redis, pytest.mark.slow]

BOUND_S = 90.0  # every CLI call below is killed after this (what it must do takes far less)


def soakq(cluster: Cluster, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """The installed `soakq` console script on the cluster's Redis; also how long it took."""
    script = shutil.which("soakq", path=str(Path(sys.executable).parent))
    assert script is not None, "the soakq console script is not installed next to python"
    began = time.monotonic()
    done = subprocess.run(
        [script, *args],
        env={**cluster.env(), **env},
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        check=False,
        cwd=cluster.workdir,
    )
    return done, time.monotonic() - began


WARNINGS = ("no worker consumes", "no beat tick", "waiting for a worker")


def test_no_worker_submit_wait_says_so_and_exits(redis_server, tmp_path: Path) -> None:
    cluster = new_cluster(redis_server, tmp_path / "cluster")
    try:
        done, took = soakq(
            cluster, "submit", "--iterations", "2", "--wait", SOAKQ_WORKER_GRACE_S="2"
        )
        assert done.returncode == 5, done.stdout + done.stderr
        assert took < 45.0, f"took {took:.1f} s"  # the grace is 2 s; generous for a loaded box
        run_id = done.stdout.splitlines()[0]
        said = done.stderr.strip().splitlines()
        assert len(said) == 1, done.stderr
        assert said[0].startswith(
            f"run {run_id}: no worker consumes queue 'soakq' on "
            f"SOAKQ_REDIS_URL={cluster.redis_url}; start one with `soakq worker -n w1@%h`"
        )
        # The exit cancelled nothing: the run waits, and `status` says for what.
        assert cluster.store.get_record(run_id)["status"] == "queued"
        status, _ = soakq(cluster, "status", run_id)
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines() == [
            f"run {run_id}: queued (0/2 iterations, release gate none); "
            "waiting for a worker (none consumes 'soakq')"
        ]

        # A worker comes: `watch` follows the same run to its end.
        cluster.start_worker("w1")
        watched, _ = soakq(cluster, "watch", run_id)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert f"run {run_id}: succeeded (2/2 iterations)" in watched.stdout
        assert not any(w in watched.stdout + watched.stderr for w in WARNINGS)
        status, _ = soakq(cluster, "status", run_id)
        assert "waiting for a worker" not in status.stdout
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def paced_cluster(redis_server, tmp_path_factory) -> Iterator[Cluster]:
    """One worker, no beat yet; a 1 s tick for the worker, beat and the CLI alike, so an
    iteration due 3 s after the last one waits in the due set for beat's tick."""
    c = new_cluster(redis_server, tmp_path_factory.mktemp("paced"), SOAKQ_TICK_INTERVAL_S="1")
    try:
        c.start_worker("w1")
        yield c
    finally:
        c.close()


PACED = ("submit", "--iterations", "3", "--interval", "3", "--wait")
_parked: list[str] = []


def test_worker_without_beat_a_paced_run_says_no_beat_tick(paced_cluster: Cluster) -> None:
    done, took = soakq(paced_cluster, *PACED)
    assert done.returncode == 5, done.stdout + done.stderr
    assert took < 45.0, f"took {took:.1f} s"
    run_id = done.stdout.splitlines()[0]
    assert "1/3" in done.stdout  # iteration 1 ran: the worker is there
    said = done.stderr.strip().splitlines()
    assert len(said) == 1, done.stderr
    assert said[0].startswith(f"run {run_id}: no beat tick seen for ")
    assert "iteration 2 waits for one; start `celery -A workers.app beat " in said[0]
    assert "no worker" not in said[0]
    record = paced_cluster.store.get_record(run_id)
    assert record["status"] == "running" and record["drive"]["enqueued_ts"] is None
    status, _ = soakq(paced_cluster, "status", run_id)
    assert status.returncode == 0, status.stderr
    line = status.stdout.strip()
    assert line.startswith(f"run {run_id}: running (1/3 iterations, release gate none); ")
    assert "iteration 2 due " in line and line.endswith("; no beat tick for over 3 s")
    _parked.append(run_id)


def test_worker_and_beat_a_paced_run_completes_without_warnings(paced_cluster: Cluster) -> None:
    paced_cluster.start_beat()
    store = paced_cluster.store
    heartbeat = wait_for(lambda: store.get_heartbeat("tick"), "beat's first tick", 30.0)
    assert heartbeat["every_s"] == 1.0  # beat's own period, sent with the tick
    done, took = soakq(paced_cluster, *PACED)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = done.stdout.splitlines()[0]
    assert f"run {run_id}: succeeded (3/3 iterations)" in done.stdout
    assert not any(w in done.stdout + done.stderr for w in WARNINGS), done.stdout + done.stderr
    assert took >= 6.0  # two 3 s intervals: it was paced, not run back to back
    # The run parked without beat goes on now that beat ticks: `watch` follows it to its end.
    if _parked:
        watched, _ = soakq(paced_cluster, "watch", _parked[0])
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert f"run {_parked[0]}: succeeded (3/3 iterations)" in watched.stdout
