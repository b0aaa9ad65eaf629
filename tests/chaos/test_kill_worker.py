"""kill -9 while a chord is in flight: the run still completes, nothing lost, nothing applied twice.

Two ways a worker dies, two recovery paths:

* the pool child executing a task is killed: the worker's main process notices (a few seconds
  later) and, as the task is ``reject_on_worker_lost``, requeues its message at once
  (WorkerLostError); a job the child had not started yet goes to the replacement child;
* the whole worker (main process and child) is killed: its unacked message stays in Redis until
  ``visibility_timeout`` (10 s in the test cluster, above its 8 s task time limit) has passed and
  the surviving worker's restore sweep (every ``unacked_restore_interval`` = 1 s) redelivers it.

The tick watchdog is the third line: it re-drives an iteration whose body died between its
commit and scheduling the successor (deadline 15 s in the chaos cluster, above the visibility
timeout, so redelivery always acts first). The child-kill test runs a real beat for it; the
watchdog's decisions are also tested in tests/workers/test_distributed.py and test_watchdog.py.

A chord body near the end is the target: the test watches the run's lock in Redis and kills the
child holding it while it commits one of the last iterations (the first it catches from 20 on).
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
    # The watchdog's deadline sits above the visibility timeout (10 s), so redelivery is always
    # the first recovery and the watchdog only rescues what redelivery cannot.
    c = new_cluster(redis_server, tmp_path / "cluster", SOAKQ_ITERATION_DEADLINE_S="15")
    try:
        c.start_two_workers()
        yield c
    finally:
        c.close()


def executing(cluster: Cluster, task_id_prefix: str) -> tuple[str, dict[str, Any]] | None:
    """(worker, task) for a task whose id starts with the prefix, running right now."""
    nodes = [f"{name}@{HOST}" for name in cluster.procs if name.startswith("w")]
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


def finalize_holder(
    cluster: Cluster, run_id: str, iteration: int, *, upto: int | None = None
) -> tuple[str, int, int]:
    """(node name, pid, iteration) of the pool child committing an iteration from ``iteration``
    to ``upto`` (default: that one only): the one holding the run lock with a token newer than
    any taken before the previous iteration was committed.

    The lock value is ``<host>:<pid>:<token>`` (the finalize task's owner and fencing token),
    so polling the key finds the body in the middle of its commit, without racing ``inspect``.
    The lock is held for a few milliseconds: on a loaded machine a poll can miss it, so a body
    that commits unseen moves the target to the next iteration, up to ``upto``.
    """
    client = cluster.store.client
    for i in range(iteration, (upto or iteration) + 1):
        wait_for(
            lambda i=i: cluster.store.get_state(run_id)[0]["iteration"] >= i - 1,
            f"iteration {i - 1}",
            limit_s=60,
            every_s=0.001,
        )
        if cluster.store.get_state(run_id)[0]["iteration"] != i - 1:
            continue  # already past it
        before = int(client.get(cluster.store.key(run_id, "fence")) or 0)

        def holder(i: int = i, before: int = before) -> tuple[str, int] | bool | None:
            raw = client.get(cluster.store.key(run_id, "lock"))
            if raw is not None:
                owner, token = (raw.decode() if isinstance(raw, bytes) else raw).rsplit(":", 1)
                if int(token) > before:
                    return owner, int(token)
            return cluster.store.get_state(run_id)[0]["iteration"] >= i  # committed unseen

        found = wait_for(holder, f"the body of iteration {i} to hold the lock", every_s=0.0)
        if isinstance(found, tuple):
            host, pid = found[0].rsplit(":", 1)
            return str(host.split("@")[0]), int(pid), i
    pytest.fail(f"no body of iterations {iteration}..{upto or iteration} was seen holding the lock")


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
    # The first kill lands on any task, possibly a body between its commit and scheduling the
    # successor: only the watchdog recovers that, so this test runs beat.
    c.start_beat(SOAKQ_TICK_INTERVAL_S="1")  # the watchdog ticks every second
    c.submit(spec)
    # First a child busy with some task of an iteration in the middle of the run (whether it
    # had started that task or not, the run must not notice)...
    wait_for(lambda: c.store.get_state(spec.run_id)[0]["iteration"] >= 2, "iteration 2")
    node, task = wait_executing(c, f"{spec.run_id}:")
    os.kill(task["worker_pid"], signal.SIGKILL)
    # (Its worker notices a few seconds later; the run goes on meanwhile.)
    # ...then the child committing one of the last iterations, caught holding the run lock.
    node, pid, caught = finalize_holder(c, spec.run_id, ITERATIONS - 4, upto=ITERATIONS)
    last_body = names.finalize_id(spec.run_id, caught, 0)
    os.kill(pid, signal.SIGKILL)

    record = c.wait_run(spec.run_id, limit_s=60)
    assert record["status"] == "succeeded"
    # The run may end (the watchdog closes a fully committed run) before a worker notices its
    # dead child, so the evidence of the requeue is waited for, boundedly.
    wait_for(
        lambda: all_logs(c).count("exited with 'signal 9 (SIGKILL)'") == 2,
        "both workers to report the children they lost",
    )
    wait_for(lambda: "WorkerLostError" in c.log(node, tail=None), f"{node} to log WorkerLostError")
    # Requeued by reject_on_worker_lost; killed before its commit, the redelivered body then
    # retries (LOCKED) until the dead holder's lock expires, so it may be received more often.
    # Exactly-once is what assert_chain checks: one state version per iteration.
    wait_for(
        lambda: all_logs(c).count(f"[{last_body}] received") >= 2,
        "the killed body's message to be delivered again",
    )
    assert_chain(c, spec.run_id)
    assert_same_artifacts(c.run_dir(spec.run_id), embedded_twin(spec))


def test_kill_whole_worker_mid_chord(chaos_cluster: Cluster, embedded_twin) -> None:
    c = chaos_cluster
    # Beat runs, as in production: if the kill lands after the body's commit but before it
    # scheduled the successor (a few-ms window a loaded machine widens), redelivery finds a
    # duplicate and only the watchdog can drive the next iteration (docs/architecture.md).
    c.start_beat(SOAKQ_TICK_INTERVAL_S="1")
    spec = spec_for(iterations=ITERATIONS, mode="volatile", symbols=SYMBOLS, run_id="chaos-worker")
    c.submit(spec)
    node, _, caught = finalize_holder(c, spec.run_id, ITERATIONS - 4, upto=ITERATIONS)
    last_body = names.finalize_id(spec.run_id, caught, 0)
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


# The product's own knobs, not the fast test cluster's: 600 s iteration deadline, 10 s tick,
# 900 s visibility timeout, 30 s lock. Only the lease (three ticks, 30 s) can bring the run back
# within a minute.
DEFAULT_KNOBS = {
    "SOAKQ_TASK_TIME_LIMIT_S": "300",
    "SOAKQ_VISIBILITY_TIMEOUT_S": "900",
    "SOAKQ_UNACKED_RESTORE_INTERVAL_S": "10",
    "SOAKQ_LOCK_TTL_MS": "30000",
    "SOAKQ_ITERATION_DEADLINE_S": "600",
    "SOAKQ_MAX_REDRIVES": "3",
}


def test_whole_worker_killed_with_default_deadlines_run_goes_on_within_60s(
    redis_server: Any, tmp_path: Path, embedded_twin
) -> None:
    c = new_cluster(redis_server, tmp_path / "cluster", **DEFAULT_KNOBS)
    try:
        c.start_two_workers()
        c.start_beat()  # the product's 10 s tick
        spec = spec_for(iterations=8, mode="volatile", symbols=SYMBOLS, run_id="default-knobs")
        c.submit(spec)
        node, _, _ = finalize_holder(c, spec.run_id, 3, upto=6)
        c.kill(node)  # that body dies holding the run lock, unacked
        killed_at = time.monotonic()
        state, _ = c.store.get_state(spec.run_id)
        at_kill = state["iteration"]
        wait_for(
            lambda: c.store.get_state(spec.run_id)[0]["iteration"] > at_kill,
            "the run to commit again after the kill",
            limit_s=60,
        )
        took = time.monotonic() - killed_at
        print(f"run went on {took:.1f}s after its worker was SIGKILLed (default deadlines)")
        record = c.wait_run(spec.run_id, limit_s=120)
        assert record["status"] == "succeeded"
        assert any("lease lapsed" in e["reason"] for e in record.get("watchdog", [])), record
        state, version = c.store.get_state(spec.run_id)
        assert state["iteration"] == version == 8
        assert_same_artifacts(c.run_dir(spec.run_id), embedded_twin(spec))
    finally:
        c.close()
