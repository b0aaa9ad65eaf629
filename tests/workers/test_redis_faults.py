"""Redis misbehaving under the CLI and the workers: unresponsive, out of memory, evicting, a
malformed message on the queue. Each answer is one line, exit 2, or the worker carries on."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from soakq_worker_harness import Cluster, PrivateRedis, new_cluster, spec_for, wait_for

from soakq.errors import StoreRefused
from soakq.states import RunStatus

SUBMIT = ["submit", "--profile", "steady_safe", "--source", "kpi", "--iterations", "1"]


def soakq_cli(env: dict[str, str], *args: str, timeout_s: float = 60.0):
    argv = [sys.executable, "-c", "from soakq.cli.main import main; main()", *args]
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )


def base_env(tmp_path: Path, **env: str) -> dict[str, str]:
    import os

    out = {k: v for k, v in os.environ.items() if not k.startswith("SOAKQ_")}
    out.update(SOAKQ_ARTIFACTS_DIR=str(tmp_path / "artifacts"), **env)
    return out


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on loopback that accepts every connection and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("args", [["status", "some-run"], ["runs"], SUBMIT, ["prune"]])
def test_unresponsive_redis_is_one_line_exit_2_within_6s(
    silent_server: int, tmp_path: Path, args: list[str]
) -> None:
    url = f"redis://127.0.0.1:{silent_server}/0"
    env = base_env(tmp_path, SOAKQ_REDIS_URL=url, SOAKQ_SOCKET_TIMEOUT_S="1")
    started = time.monotonic()
    done = soakq_cli(env, *args, timeout_s=30)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stdout + done.stderr
    assert took < 6.0, took
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"SOAKQ_REDIS_URL={url}" in lines[0] and "did not answer within 1s" in lines[0]


@pytest.mark.redis
def test_refused_connection_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = base_env(tmp_path, SOAKQ_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    done = soakq_cli(env, "runs", timeout_s=30)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "SOAKQ_REDIS_URL" in done.stderr and "is not reachable" in done.stderr


# -- the first message ------------------------------------------------------------------------
def _settings(url: str):  # type: ignore[no-untyped-def]
    from workers.celeryconfig import WorkerSettings

    return WorkerSettings(redis_url=url, source="kpi")


@pytest.mark.redis
def test_first_message_not_sent_marks_the_run_failed(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kombu.exceptions import OperationalError

    from soakq.cli.distributed import submit_distributed
    from workers.app import Celery

    def refuse(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("Error 111 connecting to broker. Connection refused.")

    monkeypatch.setattr(Celery, "send_task", refuse)
    settings = _settings(redis_url)
    spec = spec_for(iterations=2)
    with pytest.raises(StoreRefused) as info:
        submit_distributed(settings, spec, tmp_path, wait=False, explicit_id=False)
    assert info.value.exit_code == 2
    message = str(info.value)
    assert "\n" not in message and "SOAKQ_REDIS_URL" in message and "marked failed" in message
    from workers.store import RedisStore

    store = RedisStore.from_url(redis_url)
    record = store.get_record(spec.run_id)
    assert record["status"] == RunStatus.FAILED
    assert record["outcome"]["stop_reason"] == "not_started"
    assert "Connection refused" in record["outcome"]["detail"]
    assert store.active_runs() == []
    store.close()


@pytest.mark.redis
def test_redis_out_of_memory_at_the_first_message(
    private_redis: PrivateRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """noeviction and full: the record was written, the message is refused (OOM); the run is
    not left queued (Redis refuses to mark it failed too, so it is removed) and the CLI says
    so in one line."""
    from soakq import runner
    from soakq.cli.distributed import submit_distributed

    client = private_redis.client()
    real = runner.start_run_unique

    def then_fill(*args, **kwargs):  # type: ignore[no-untyped-def]
        spec = real(*args, **kwargs)
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)  # anything in use is over it: writes are refused
        return spec

    monkeypatch.setattr(runner, "start_run_unique", then_fill)
    spec = spec_for(iterations=2)
    with pytest.raises(StoreRefused) as info:
        submit_distributed(
            _settings(private_redis.url()), spec, tmp_path, wait=False, explicit_id=False
        )
    message = str(info.value)
    print(message)
    assert "\n" not in message and "out of memory" in message and spec.run_id in message
    client.config_set("maxmemory", 0)
    from workers.store import RedisStore

    store = RedisStore.from_url(private_redis.url())
    record = store.get_record(spec.run_id)
    assert record is None or record["status"] == RunStatus.FAILED, record
    assert store.active_runs() == []
    store.close()
    client.close()


@pytest.mark.redis
def test_a_database_the_server_does_not_have_is_one_line_exit_2(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    env = base_env(tmp_path, SOAKQ_REDIS_URL=private_redis.url(db=99))
    done = soakq_cli(env, "runs", timeout_s=30)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "DB index is out of range" in done.stderr and "SOAKQ_REDIS_URL" in done.stderr


# -- workers ------------------------------------------------------------------------------------
@pytest.mark.workers
@pytest.mark.redis
def test_worker_refuses_an_evicting_redis(private_redis: PrivateRedis, tmp_path: Path) -> None:
    client = private_redis.client()
    client.config_set("maxmemory-policy", "allkeys-lru")
    c = Cluster(private_redis.url(1), tmp_path / "cluster")
    c.workdir.mkdir()
    try:
        proc = c.start_worker("w1", wait=False)
        assert proc.wait(timeout=60) == 2
        lines = [line for line in c.log("w1").splitlines() if "maxmemory-policy" in line]
        assert len(lines) == 1 and "allkeys-lru" in lines[0] and "noeviction" in lines[0]
        assert "SOAKQ_REDIS_URL" in lines[0]
        assert "Traceback" not in c.log("w1")
    finally:
        c.close()
        client.close()


@pytest.mark.workers
@pytest.mark.redis
@pytest.mark.slow
def test_malformed_messages_are_set_aside_and_the_worker_goes_on(
    redis_server, tmp_path: Path
) -> None:
    c = new_cluster(redis_server, tmp_path / "cluster")
    try:
        c.start_worker("w1")
        client = c.store.client
        for junk in (b"this is not json", b'{"json": "but not a message"}', b"[1, 2]"):
            client.lpush("soakq", junk)
        dead = f"{c.settings().key_prefix}:dead-letters"
        wait_for(lambda: client.llen(dead) == 3, "the worker to set the three aside")
        assert client.llen("soakq") == 0
        assert c.procs["w1"].poll() is None, c.log("w1")
        assert c.log("w1", None).count("malformed message on queue 'soakq'") == 3
        c.wait_workers("w1")
        spec = spec_for(iterations=2, run_id="after-junk")
        c.submit(spec)
        assert c.wait_run(spec.run_id)["status"] == "succeeded"
    finally:
        c.close()


def test_time_limits_stay_out_of_the_messages() -> None:
    """The sender's task_time_limit never travels: the worker applies its own."""
    from celery import signals

    from workers import names
    from workers.app import make_app
    from workers.celeryconfig import WorkerSettings

    app = make_app(WorkerSettings(redis_url=None, task_time_limit_s=123.0))
    seen: list[dict] = []

    def grab(sender=None, headers=None, **_):  # type: ignore[no-untyped-def]
        seen.append(dict(headers or {}))

    signals.before_task_publish.connect(grab, weak=False)
    try:
        app.send_task(names.ITERATION_START, args=["r", 1], queue="soakq.limits-test")
        sig = app.signature(names.METRICS_MEASURE, args=("r", 1, "X"))
        sig.apply_async(queue="soakq.limits-test")
    finally:
        signals.before_task_publish.disconnect(grab)
    assert len(seen) == 2
    assert all(h["timelimit"] in ([None, None], (None, None)) for h in seen), seen
    # ...while the worker side still has its limits configured.
    assert app.conf.task_time_limit == 123.0
    assert app.tasks[names.METRICS_MEASURE].time_limit == 123.0
