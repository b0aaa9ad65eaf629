"""A live run on real workers: the handshake step runs only on the worker of the bot's queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from soakq_worker_harness import Cluster, new_cluster, wait_for

from soakq.config import RunSpec, build_spec
from soakq.jsonio import sha256_of
from soakq.settings import Settings
from workers import names

pytestmark = [pytest.mark.workers, pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def live_cluster(redis_server: object, tmp_path: Path) -> Iterator[Cluster]:
    """w1 on the default queue, bot1 on the paper bot's queue only."""
    c = new_cluster(redis_server, tmp_path / "cluster")
    try:
        c.start_worker("w1", wait=False)
        c.start_worker("bot1", wait=False, queues="soakq.bot.paper")
        c.wait_workers("w1", "bot1")
        yield c
    finally:
        c.close()


def live_spec(bot_dir: Path, *, window_s: float, run_id: str) -> RunSpec:
    """Three iterations of one symbol on the bot in ``bot_dir``, 5 s report timeout."""
    return build_spec(
        Settings(),
        profile="aggressive",
        iterations=3,
        symbols=["BTCUSDT"],
        bot_dir=str(bot_dir),
        window_s=window_s,
        report_timeout_s=5.0,
        run_id=run_id,
    )


def test_live_run_on_the_bots_queue(live_cluster: Cluster, tmp_path: Path) -> None:
    bot_dir = tmp_path / "paper"
    bot_dir.mkdir()
    journal = tmp_path / "journal.jsonl"
    bot = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "paper_bot.py"),
            "--bot-dir",
            str(bot_dir),
            "--window",
            "0.2",
            "--idle-exit",
            "20",
            "--journal",
            str(journal),
            "--mode",
            "volatile",
            "--ready-file",
            str(tmp_path / "ready"),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=(tmp_path / "bot.log").open("wb"),
    )
    try:
        wait_for(lambda: (tmp_path / "ready").exists(), "the paper bot to warm up")
        spec = live_spec(bot_dir, window_s=0.2, run_id="live-dist")
        assert spec.bot_queue == "soakq.bot.paper"
        live_cluster.submit(spec)
        record = live_cluster.wait_run(spec.run_id, limit_s=60)
    finally:
        bot.terminate()
        bot.wait(timeout=10)
    assert record["status"] == "succeeded", record["outcome"]
    docs = live_cluster.store.iterations(spec.run_id)
    got = {x["iteration"]: x for x in map(json.loads, journal.read_text().splitlines())}
    for doc in docs:
        t = doc["tuning"]
        assert doc["summary"]["iteration_status"] == "measured"
        assert got[doc["iteration"]]["overrides"] == t["overrides_before"]
        assert got[doc["iteration"]]["state_hash"] == sha256_of(t["overrides_before"])
    ran = f"Task {names.LIVE_MEASURE}["  # the worker's "received" / "succeeded" log lines
    assert ran in live_cluster.log("bot1", tail=None)
    assert ran not in live_cluster.log("w1", tail=None)


def test_a_cancelled_live_run_frees_the_bots_worker(live_cluster: Cluster, tmp_path: Path) -> None:
    """Cancelling a live run while its step waits out a long window ends the step within a
    couple of seconds: the bot's worker is free for the next run (it waited the whole window +
    report timeout)."""
    from soakq.runner import cancel_run

    bot_dir = tmp_path / "paper"  # bot1's queue; no bot answers here: the step would wait 305 s
    bot_dir.mkdir()
    spec = live_spec(bot_dir, window_s=300.0, run_id="live-cancelled")
    live_cluster.submit(spec)
    wait_for(lambda: (bot_dir / "SOAK_ITERATION.json").exists(), "the live step's handshake")
    assert cancel_run(live_cluster.store, spec.run_id, reason="test")
    cancelled = time.monotonic()
    wait_for(
        lambda: " succeeded in " in live_cluster.log("bot1", tail=None), "the step to end", 15.0
    )
    assert time.monotonic() - cancelled < 10.0
    assert live_cluster.store.get_record(spec.run_id)["status"] == "cancelled"
