"""Redis goes away under beat and the workers: kill -9 and a restart on the same port (empty:
no persistence here), or a 20 s SIGSTOP. Beat and the worker stay up and runs complete.

The cluster runs with a 1 s tick (so the lease-based re-drive acts within ~3 s), a 60 s
iteration deadline and three re-drives: redelivery and the watchdog, not a lucky timing, carry
the run through the outage.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from soakq_worker_harness import (
    Cluster,
    PrivateRedis,
    assert_same_artifacts,
    spec_for,
    wait_for,
)

pytestmark = [pytest.mark.chaos, pytest.mark.workers, pytest.mark.redis, pytest.mark.slow]

OUTAGE_ENV = {
    # Production-like limits: a task stuck on a paused Redis fails on its socket timeouts,
    # long before its time limit (a pool child killed at its hard limit can corrupt the
    # worker's result pipe: billiard, not soakq).
    "SOAKQ_TASK_TIME_LIMIT_S": "60",
    "SOAKQ_VISIBILITY_TIMEOUT_S": "90",
    "SOAKQ_TICK_INTERVAL_S": "1",
    "SOAKQ_ITERATION_DEADLINE_S": "60",
    "SOAKQ_MAX_REDRIVES": "3",
    "SOAKQ_SOCKET_TIMEOUT_S": "2",
}


@pytest.fixture
def outage_cluster(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(private_redis.url(0), tmp_path / "cluster", dict(OUTAGE_ENV))
    c.workdir.mkdir()
    try:
        c.start_worker("w1")
        c.start_beat()
        wait_for(lambda: "soakq.schedule.tick[" in c.log("w1", None), "a first tick", 60)
        yield c
    finally:
        c.close()


def alive(c: Cluster) -> None:
    for name, proc in c.procs.items():
        assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{c.log(name)}"
    assert "CRITICAL" not in c.log("beat", None), c.log("beat")


def ticks_after(c: Cluster, count: int) -> Any:
    return lambda: c.log("w1", None).count("soakq.schedule.tick[") > count


def test_beat_and_worker_ride_out_a_redis_restart(
    outage_cluster: Cluster, private_redis: PrivateRedis, embedded_twin
) -> None:
    c = outage_cluster
    private_redis.kill()
    wait_for(lambda: "redis unavailable" in c.log("beat", None), "beat to notice", 30)
    private_redis.start()  # same port, nothing in it: no lock, no schedule, no queue
    wait_for(lambda: "taken (again)" in c.log("beat", None), "beat to take its lock again", 60)
    before = c.log("w1", None).count("soakq.schedule.tick[")
    wait_for(ticks_after(c, before), "a tick after the restart to be executed", 60)
    alive(c)
    spec = spec_for(iterations=4, interval_s=1.0, mode="volatile", run_id="after-restart")
    c.submit(spec)
    record = c.wait_run(spec.run_id, limit_s=90)
    assert record["status"] == "succeeded"
    alive(c)
    assert_same_artifacts(c.run_dir(spec.run_id), embedded_twin(spec))


def test_redis_paused_20s_mid_run(
    outage_cluster: Cluster, private_redis: PrivateRedis, embedded_twin
) -> None:
    c = outage_cluster
    spec = spec_for(iterations=10, interval_s=0.5, mode="volatile", run_id="through-a-pause")
    c.submit(spec)
    wait_for(lambda: c.store.get_state(spec.run_id)[0]["iteration"] >= 2, "iteration 2", 60)
    # A follower, as an operator runs it: it must ride the outage out too.
    watcher = subprocess.Popen(
        [sys.executable, "-m", "soakq", "watch", spec.run_id, "--timeout", "300"],
        env=c.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # The follower has read the run (it prints the iterations committed so far) before
        # Redis stops: a Redis that never answered it is a configuration problem, exit 2.
        assert watcher.stdout is not None
        ready, _, _ = select.select([watcher.stdout], [], [], 60)
        assert ready and watcher.stdout.readline(), watcher.communicate()
        private_redis.pause()
        try:
            time.sleep(20)  # the outage itself
            alive(c)
            assert watcher.poll() is None, watcher.communicate()
        finally:
            private_redis.resume()
        record = c.wait_run(spec.run_id, limit_s=120)
        out, err = watcher.communicate(timeout=180)
    finally:
        if watcher.poll() is None:
            os.killpg(watcher.pid, signal.SIGKILL)
            watcher.wait(timeout=10)
    assert record["status"] == "succeeded"
    assert watcher.returncode == 0, (out, err)
    assert "stopped answering" in err and "answers again" in err, err
    assert "Traceback" not in err
    alive(c)
    assert "redis unavailable" in c.log("beat", None)
    state, version = c.store.get_state(spec.run_id)
    assert state["iteration"] == version == 10  # every iteration applied once
    assert_same_artifacts(c.run_dir(spec.run_id), embedded_twin(spec))
