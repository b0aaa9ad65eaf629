"""RedisStore on a real redis-server (the session fixture), with real processes.

The whole contract suite also runs on the real server (``harness`` param ``redis``); this file
adds what needs separate processes: mutual exclusion under contention, and a lock holder that is
stopped (SIGSTOP) past its TTL.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soakq.store import CommitOutcome
from workers.store import RedisStore

pytestmark = pytest.mark.redis

CONTENDER = Path(__file__).with_name("_contender.py")
REPO = Path(__file__).resolve().parents[2]
PROCESS_LIMIT_S = 90.0


def _spawn(*args: str, stdin: int | None = None) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, str(CONTENDER), *args],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )


def _read_json(proc: subprocess.Popen[str], timeout_s: float) -> object:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
    if not ready:
        pytest.fail(f"process {proc.pid} printed nothing within {timeout_s}s")
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        pytest.fail(f"process {proc.pid} ended early (rc={proc.poll()}): {err}")
    return json.loads(line)


def _reap(procs: list[subprocess.Popen[str]]) -> None:
    """Kill by pid whatever is still running (continuing it first if stopped)."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _process_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def test_eight_processes_increment_without_loss(redis_url):
    processes, per_process = 8, 200
    store = RedisStore.from_url(redis_url)
    assert store.create_run("race", {"status": "queued"}, {"n": 0})
    procs = [
        _spawn("contend", redis_url, "race", str(per_process), f"p{i}", stdin=subprocess.PIPE)
        for i in range(processes)
    ]
    try:
        for proc in procs:
            assert _read_json(proc, 30) == "ready"
        for proc in procs:  # start together, so they really contend
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = []
        deadline = time.monotonic() + PROCESS_LIMIT_S
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert proc.returncode == 0, err
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        _reap(procs)

    total = processes * per_process
    assert store.get_state("race") == ({"n": total}, total)
    all_tokens = []
    for report in reports:
        tokens = report["tokens"]
        assert len(tokens) == per_process
        assert all(a < b for a, b in zip(tokens, tokens[1:], strict=False)), report["owner"]
        assert report["lost_updates"] == 0 and report["refused"] == 0
        all_tokens.extend(tokens)
    assert len(set(all_tokens)) == total  # one token per critical section, never shared
    # Contended for real: more lock attempts than critical sections.
    assert sum(r["attempts"] for r in reports) > total
    store.close()


def test_holder_stopped_past_its_ttl_cannot_commit(redis_url, wait_for):
    ttl_ms = 300
    store = RedisStore.from_url(redis_url)
    assert store.create_run("paused", {"status": "queued"}, {"writer": None})
    proc = _spawn("stale", redis_url, "paused", str(ttl_ms))
    try:
        got = _read_json(proc, 30)
        assert isinstance(got, dict) and got["version"] == 0
        wait_for(lambda: _process_state(proc.pid) == "T", "the holder to be stopped")

        # Another process (this one) takes the lock once the stopped holder's TTL has run out.
        taken = []
        wait_for(
            lambda: taken.append(store.acquire_lock("paused", "other", 10_000)) or taken[-1],
            "the lock to be free again",
        )
        lease = taken[-1]
        assert lease.token > got["token"]
        outcome = store.cas_state("paused", lease, 0, {"writer": "other"})
        assert outcome is CommitOutcome.COMMITTED
        assert _process_state(proc.pid) == "T"  # still stopped the whole time

        os.kill(proc.pid, signal.SIGCONT)
        result = _read_json(proc, 30)
        assert proc.wait(timeout=30) == 0
    finally:
        _reap([proc])

    assert isinstance(result, dict)
    # Redis times the TTL with its cached per-command clock, a few ms coarse: allow 5 ms.
    assert result["paused_s"] * 1000 > ttl_ms - 5
    assert result["cas"] == CommitOutcome.STALE_LOCK.value
    assert result["commit"] == CommitOutcome.STALE_LOCK.value
    assert result["extend"] is False and result["release"] is False
    assert store.get_state("paused") == ({"writer": "other"}, 1)
    assert store.get_iteration("paused", 0) is None
    assert store.release_lock("paused", lease) is True
    store.close()


def test_scripts_survive_script_flush_on_a_real_server(redis_url):
    store = RedisStore.from_url(redis_url)
    assert store.create_run("r", {"status": "queued"}, {})
    store.client.script_flush()
    lease = store.acquire_lock("r", "w", 1000)
    assert lease is not None
    assert store.cas_state("r", lease, 0, {"n": 1}) is CommitOutcome.COMMITTED
    store.close()


def test_the_server_fixture_is_private_and_volatile(redis_server, redis_url):
    store = RedisStore.from_url(redis_url)
    client = store.client
    assert client.config_get("save")["save"] in (b"", "")
    assert client.config_get("appendonly")["appendonly"] in (b"no", "no")
    assert client.config_get("bind")["bind"] in (b"127.0.0.1", "127.0.0.1")
    assert int(client.info("server")["tcp_port"]) == redis_server.port != 6379
    assert int(client.info("server")["process_id"]) == redis_server.pid
    store.close()
