"""kill -9 while a chord is in flight: the run still completes, nothing lost, nothing applied twice.

Two ways a worker dies, two recovery paths:

* the pool child executing a task is killed: the worker's main process notices (a few seconds
  later) and, as the task is ``reject_on_worker_lost``, requeues its message at once
  (WorkerLostError); a job the child had not started yet goes to the replacement child;
* the whole worker (main process and child) is killed: its unacked message stays in Redis until
  ``visibility_timeout`` (10 s in the test cluster, above its 8 s task time limit) has passed and
  the surviving worker's restore sweep (every ``unacked_restore_interval`` = 1 s) redelivers it.

The tick watchdog is the third line (an iteration past its deadline is re-driven); it needs no
kill and is tested in tests/workers/test_distributed.py.

The last iteration's chord body is the deterministic target: it exports the run and renders the
trend report, so it runs for most of a second.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from soakq_worker_harness import (
    HOST,
    Cluster,
    assert_same_artifacts,
    new_cluster,
    spec_for,
    wait_for,
)

from soakq.jsonio import read_json
from workers import names

pytestmark = [pytest.mark.chaos, pytest.mark.workers, pytest.mark.redis, pytest.mark.slow]

ITERATIONS = 24
SYMBOLS = [f"S{i:02d}" for i in range(16)]  # a wide chord keeps both workers busy


@pytest.fixture
def chaos_cluster(redis_server: Any, tmp_path: Path) -> Iterator[Cluster]:
    c = new_cluster(redis_server, tmp_path / "cluster")
    try:
        c.start_worker("w1", wait=False)
        c.start_worker("w2", wait=False)
        c.wait_workers("w1", "w2")
        yield c
    finally:
        c.close()


def executing(cluster: Cluster, task_id_prefix: str) -> tuple[str, dict[str, Any]] | None:
    """(worker, task) for a task whose id starts with the prefix, running right now."""
    nodes = [f"{name}@{HOST}" for name in cluster.procs]
    replies = cluster.app.control.inspect(destination=nodes, timeout=1.0).active() or {}
    for node, tasks in replies.items():
        for task in tasks:
            if task["id"].startswith(task_id_prefix) and task.get("worker_pid"):
                return node.split("@")[0], dict(task)
    return None


def wait_executing(cluster: Cluster, task_id_prefix: str) -> tuple[str, dict[str, Any]]:
    found: tuple[str, dict[str, Any]] = wait_for(
        lambda: executing(cluster, task_id_prefix),
        f"a worker to execute {task_id_prefix}*",
        every_s=0.0,
    )
    return found


def assert_chain(cluster: Cluster, run_id: str) -> None:
    """Every iteration once, in order, each starting from the previous one's overrides."""
    state, version = cluster.store.get_state(run_id)
    assert state["iteration"] == ITERATIONS
    assert version == ITERATIONS  # one committed state write per iteration, never two
    docs = [
        read_json(cluster.run_dir(run_id) / f"ITER_SUMMARY_{i}.json")
        for i in range(1, ITERATIONS + 1)
    ]
    assert [d["iteration"] for d in docs] == list(range(1, ITERATIONS + 1))
    for prev, doc in zip(docs, docs[1:], strict=False):
        assert doc["tuning"]["overrides_before"] == prev["tuning"]["overrides_after"]
    assert docs[-1]["tuning"]["overrides_after"] == state["overrides"]
    assert read_json(cluster.run_dir(run_id) / "runtime_overrides.json") == state["overrides"]


def all_logs(cluster: Cluster) -> str:
    return "".join(cluster.log(w, tail=None) for w in ("w1", "w2"))


def test_kill_pool_child_mid_chord(chaos_cluster: Cluster, embedded_twin) -> None:
    c = chaos_cluster
    spec = spec_for(iterations=ITERATIONS, mode="volatile", symbols=SYMBOLS, run_id="chaos-child")
    c.submit(spec)
    # First a child busy with some task of an iteration in the middle of the run (whether it
    # had started that task or not, the run must not notice)...
    wait_for(lambda: c.store.get_state(spec.run_id)[0]["iteration"] >= 2, "iteration 2")
    node, task = wait_executing(c, f"{spec.run_id}:")
    os.kill(task["worker_pid"], signal.SIGKILL)
    # (Its worker notices a few seconds later; the run goes on meanwhile.)
    # ...then the child running the last chord body, which is long: it renders the report.
    last_body = names.finalize_id(spec.run_id, ITERATIONS, 0)
    node, task = wait_executing(c, last_body)
    os.kill(task["worker_pid"], signal.SIGKILL)

    record = c.wait_run(spec.run_id, limit_s=60)
    assert record["status"] == "succeeded"
    wait_for(
        lambda: all_logs(c).count("exited with 'signal 9 (SIGKILL)'") == 2,
        "both workers to report the children they lost",
    )
    logs = all_logs(c)
    assert "WorkerLostError" in c.log(node, tail=None)
    assert logs.count(f"[{last_body}] received") == 2  # requeued by reject_on_worker_lost
    assert_chain(c, spec.run_id)
    assert_same_artifacts(c.run_dir(spec.run_id), embedded_twin(spec))


def test_kill_whole_worker_mid_chord(chaos_cluster: Cluster, embedded_twin) -> None:
    c = chaos_cluster
    spec = spec_for(iterations=ITERATIONS, mode="volatile", symbols=SYMBOLS, run_id="chaos-worker")
    c.submit(spec)
    last_body = names.finalize_id(spec.run_id, ITERATIONS, 0)
    node, _ = wait_executing(c, last_body)
    c.kill(node)
    killed_at = time.monotonic()
    survivor = ({"w1", "w2"} - {node}).pop()

    record = c.wait_run(spec.run_id, limit_s=60)
    assert record["status"] == "succeeded"
    # The message the dead worker held came back only after the visibility timeout.
    assert time.monotonic() - killed_at >= 9.0
    assert f"[{last_body}] received" in c.log(survivor, tail=None)
    assert_chain(c, spec.run_id)
    assert_same_artifacts(c.run_dir(spec.run_id), embedded_twin(spec))
