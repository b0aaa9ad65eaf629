"""The run life-cycle on real workers: cancels that stick, published by the workers, and a
Redis whose cost follows the active runs, not the history."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from soakq_worker_harness import (
    Cluster,
    PrivateRedis,
    assert_same_artifacts,
    spec_for,
    wait_for,
)

from soakq import runner
from soakq.iteration import measure_symbol
from soakq.states import RunStatus

pytestmark = [pytest.mark.workers, pytest.mark.redis, pytest.mark.slow]


def _cancel(c: Cluster, run_id: str) -> None:
    """What `soakq cancel RUN_ID` does (in this process, so the moment is ours)."""
    from soakq.cli.distributed import cancel_distributed

    assert cancel_distributed(c.settings(), run_id) == 0


def _moments(c: Cluster) -> list[tuple[str, dict, Callable[[str], object]]]:
    def committed(n: int) -> Callable[[str], object]:
        return lambda run_id: wait_for(
            lambda: c.store.get_state(run_id)[0]["iteration"] >= n, f"{run_id}: iteration {n}"
        )

    def drive_of(n: int) -> Callable[[str], object]:
        return lambda run_id: wait_for(
            lambda: (c.store.get_record(run_id).get("drive") or {}).get("iteration") == n,
            f"{run_id}: iteration {n} to be driven",
        )

    return [
        ("at-once", {"iterations": 6}, lambda run_id: None),  # before iteration 1 commits
        ("after-1", {"iterations": 6}, committed(1)),
        ("mid-run", {"iterations": 40, "symbols": [f"S{i}" for i in range(8)]}, committed(3)),
        ("parked", {"iterations": 4, "interval_s": 3600.0}, drive_of(2)),
        ("counting-down", {"iterations": 4, "interval_s": 2.0}, drive_of(2)),
    ]


def test_five_cancels_stick_and_are_published_by_the_workers(
    cluster: Cluster, tmp_path: Path
) -> None:
    from soakq.cli.distributed import export_distributed

    for name, changes, moment in _moments(cluster):
        spec = spec_for(run_id=f"cancel-{name}", **changes)
        cluster.submit(spec)
        moment(spec.run_id)
        _cancel(cluster, spec.run_id)
        record = cluster.wait_run(spec.run_id)  # cancelled, and a worker wrote the directory
        assert record["status"] == RunStatus.CANCELLED, name
        done = record["outcome"]["iterations_completed"]
        # Whatever was in flight finishes as a no-op: give it time to try, then nothing moved.
        time.sleep(1.5)
        state, version = cluster.store.get_state(spec.run_id)
        assert state["iteration"] == version == done, (name, state["iteration"], done)
        assert cluster.store.get_record(spec.run_id)["status"] == RunStatus.CANCELLED
        directory = cluster.run_dir(spec.run_id)
        run_json = json.loads((directory / "RUN.json").read_text())
        assert (
            run_json["status"] == "cancelled" and run_json["outcome"]["stop_reason"] == "cancelled"
        )
        files = sorted(p.name for p in directory.glob("ITER_SUMMARY_[0-9]*.json"))
        assert len(files) == done, (name, files)
        out = tmp_path / "export"
        assert export_distributed(cluster.settings(), spec.run_id, out) == 0
        assert_same_artifacts(directory, out / "soak" / spec.run_id, with_runtime=True)
    assert cluster.store.active_runs() == []


def _finish_runs(store, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` finished one-iteration runs written the way the workers write them."""
    ids = []
    for k in range(n):
        spec = spec_for(iterations=1, seed=k, run_id=f"old-{k:03d}")
        assert runner.start_run(store, spec, now=time.time(), mode="distributed")
        store.claim_due(time.time() + 1)
        state, _ = store.get_state(spec.run_id)
        results = [measure_symbol(spec, 1, s, state["overrides"]) for s in spec.symbols]
        got = runner.finalize(store, spec.run_id, 1, results, owner="test")
        assert got.completed
        store.note_published(spec.run_id, {"status": "succeeded"})
        ids.append(spec.run_id)
    return ids


def _command_rate(client, window_s: float = 10.0) -> float:  # type: ignore[no-untyped-def]
    """Commands per second the server processed over ``window_s`` (our two INFO calls aside)."""
    before = client.info("stats")["total_commands_processed"]
    time.sleep(window_s)  # the measurement window itself
    after = client.info("stats")["total_commands_processed"]
    return (after - before - 1) / window_s


def test_idle_redis_cost_does_not_grow_with_finished_runs(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    c = Cluster(private_redis.url(0), tmp_path / "cluster", {"SOAKQ_TICK_INTERVAL_S": "1"})
    c.workdir.mkdir()
    client = private_redis.client()
    try:
        c.start_worker("w1")
        c.start_beat()
        wait_for(lambda: "soakq.schedule.tick[" in c.log("w1", None), "a first tick", 60)
        idle = _command_rate(client)
        ids = _finish_runs(c.store, 120)
        wait_for(lambda: c.log("w1", None).count("soakq.schedule.tick[") >= 3, "ticks")
        loaded = _command_rate(client)
        print(f"idle redis commands/s with a 1 s tick: none {idle:.1f}, 120 finished {loaded:.1f}")
        assert loaded <= 1.5 * idle, (idle, loaded)
        # Every key of every finished run expires (what `redis-cli --scan` lists, with TTLs).
        keys = list(client.scan_iter(match="soakq:run:*", count=1000))
        assert len(keys) >= 120 * 6
        assert all(client.ttl(k) > 0 for k in keys), [k for k in keys if client.ttl(k) <= 0][:5]
        assert {k.decode().split("{")[1].split("}")[0] for k in keys} == set(ids)
        assert client.scard("soakq:runs:active") == 0
        # `soakq prune` deletes them now, and says how many.
        from soakq.cli.distributed import prune_distributed

        assert prune_distributed(c.settings(), 0.0) == 0
        assert list(client.scan_iter(match="soakq:run:*")) == []
        assert client.zcard("soakq:runs") == 0
    finally:
        c.close()
        client.close()
