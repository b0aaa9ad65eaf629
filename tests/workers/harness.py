"""Real Celery workers for tests: ``celery -A workers.app worker`` subprocesses on the session's
redis-server, each cluster on its own Redis database so clusters never see each other's queues.

Loaded by ``tests/workers/conftest.py`` and ``tests/chaos/conftest.py`` (as module
``soakq_worker_harness``). Every wait is bounded; every process is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from soakq.config import RunSpec, build_spec
from soakq.jsonio import dumps
from soakq.report import HISTORY_FILES
from soakq.runner import start_run
from soakq.settings import Settings
from soakq.states import RunStatus

WAIT_S = 30.0
HOST = "test"  # worker node names are <name>@test
# Knobs the workers of a test cluster run with (the watchdog only acts when a test sends a tick).
TEST_ENV = {
    "SOAKQ_TASK_TIME_LIMIT_S": "8",
    "SOAKQ_VISIBILITY_TIMEOUT_S": "10",
    "SOAKQ_UNACKED_RESTORE_INTERVAL_S": "1",
    "SOAKQ_LOCK_TTL_MS": "2000",
    "SOAKQ_ITERATION_DEADLINE_S": "1",
    "SOAKQ_MAX_REDRIVES": "2",
    "SOAKQ_SOURCE": "kpi",
}
_dbs = itertools.count(1)


def wait_for(
    predicate: Callable[[], Any], what: str, limit_s: float = WAIT_S, every_s: float = 0.02
) -> Any:
    """Poll until ``predicate()`` is truthy and return it; fail the test after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit_s:g}s waiting for {what}")
        time.sleep(every_s)


def read_line(proc: subprocess.Popen[str], prefix: str, limit_s: float = WAIT_S) -> str:
    """The first line ``proc`` prints on stdout that starts with ``prefix`` (earlier lines are
    skipped); fail the test after ``limit_s`` or when stdout ends first (a bare readline would
    wait for ever on a process that prints nothing)."""
    import selectors

    assert proc.stdout is not None
    deadline = time.monotonic() + limit_s
    buffer = ""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            lines = buffer.split("\n")
            for line in lines[:-1]:
                if line.startswith(prefix):
                    return line + "\n"
            buffer = lines[-1]
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536).decode()
            if not chunk:
                pytest.fail(f"stdout ended before a line {prefix!r}: {buffer!r}")
            buffer += chunk
    pytest.fail(f"no line {prefix!r} within {limit_s:g}s: {buffer!r}")


def result_of(async_result: Any, timeout_s: float = WAIT_S) -> Any:
    """``AsyncResult.get`` from the test itself. An embedded worker started in this process
    marks every join as blocking (its guard against ``.get()`` inside a task); the test thread
    is not a task."""
    from celery.result import allow_join_result

    with allow_join_result():
        return async_result.get(timeout=timeout_s)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], *, timeout_s: float = 10.0) -> None:
    """SIGTERM (warm shutdown), then SIGKILL of the process group if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # pool children, if any survived their parent
    if proc.poll() is None:
        proc.wait(timeout=timeout_s)


def spec_for(**changes: Any) -> RunSpec:
    """A run spec the way `soakq submit` builds one (kpi source unless told otherwise)."""
    args: dict[str, Any] = {"profile": "steady_safe", "iterations": 6, "source": "kpi"}
    args.update(changes)
    return build_spec(Settings(), **args)


def strip_runtime(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: strip_runtime(v) for k, v in doc.items() if k != "runtime"}
    if isinstance(doc, list):
        return [strip_runtime(v) for v in doc]
    return doc


def assert_same_artifacts(a: Path, b: Path, *, with_runtime: bool = False) -> list[str]:
    """Same file names; JSON files byte-identical outside ``runtime`` (and canonical); every
    other file byte-identical. Returns the names compared.

    The trend report's history files (TREND_HISTORY.md, trend_history.png) are left out: they
    compare the run with the other runs of its artifacts root, which differ between the two
    roots compared (docs/report.md)."""

    def names(d: Path) -> list[str]:
        return sorted(
            p.name
            for p in d.iterdir()
            if not p.name.startswith(".") and p.name not in HISTORY_FILES
        )

    names_a, names_b = names(a), names(b)
    assert names_a == names_b, f"{a} and {b} hold different files"
    for name in names_a:
        raw_a, raw_b = (a / name).read_bytes(), (b / name).read_bytes()
        if with_runtime or not name.endswith(".json"):
            assert raw_a == raw_b, f"{name} differs between {a} and {b}"
            continue
        doc_a, doc_b = json.loads(raw_a), json.loads(raw_b)
        assert raw_a.decode() == dumps(doc_a) and raw_b.decode() == dumps(doc_b), name
        assert dumps(strip_runtime(doc_a)) == dumps(strip_runtime(doc_b)), (
            f"{name} differs outside runtime between {a} and {b}"
        )
    return names_a


@dataclass
class Cluster:
    """Worker processes on one Redis database, plus a client app and store for the test."""

    redis_url: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _app: Any = None

    @property
    def artifacts(self) -> Path:
        return self.workdir / "artifacts"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOAKQ_")}
        env.update(TEST_ENV)
        env.update(self.extra_env)
        env.update(
            SOAKQ_REDIS_URL=self.redis_url,
            SOAKQ_ARTIFACTS_DIR=str(self.artifacts),
            PYTHONUNBUFFERED="1",
        )
        return env

    def settings(self) -> Any:
        from workers.celeryconfig import WorkerSettings

        knobs = {
            k.removeprefix("SOAKQ_").lower(): v
            for k, v in self.env().items()
            if k.startswith("SOAKQ_")
        }
        return WorkerSettings(**knobs)

    @property
    def app(self) -> Any:
        if self._app is None:
            from workers.app import make_app

            self._app = make_app(self.settings())
        return self._app

    @property
    def store(self) -> Any:
        from workers.app import store_of

        return store_of(self.app)

    # -- processes -----------------------------------------------------------------------------
    def start_worker(
        self,
        name: str,
        *,
        pool: str = "prefork",
        concurrency: int = 1,
        wait: bool = True,
        queues: str | None = None,
    ) -> subprocess.Popen[bytes]:
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            "-n",
            f"{name}@{HOST}",
            "--loglevel=INFO",
            "--without-mingle",
            "--without-gossip",
            *([f"--queues={queues}"] if queues else []),
        ]
        proc = self.start_process(name, argv)
        if wait:
            self.wait_workers(name)
        return proc

    def start_process(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            argv,
            env={**self.env(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.workdir,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_beat(self, **env: str) -> subprocess.Popen[bytes]:
        """A real redbeat beat, as production runs it (``celery -A workers.app beat``)."""
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "beat",
            "-S",
            "workers.beat_scheduler:Scheduler",
            "--loglevel=INFO",
        ]
        return self.start_process("beat", argv, **env)

    def start_two_workers(self) -> None:
        """w1 and w2 (prefork, concurrency 1), started together, then awaited."""
        self.start_worker("w1", wait=False)
        self.start_worker("w2", wait=False)
        self.wait_workers("w1", "w2")

    def wait_workers(self, *names: str, limit_s: float = WAIT_S) -> None:
        wanted = {f"{n}@{HOST}" for n in names}

        def answered() -> bool:
            for name in names:
                proc = self.procs[name]
                if proc.poll() is not None:
                    pytest.fail(f"worker {name} exited with {proc.returncode}:\n{self.log(name)}")
            replies = self.app.control.ping(timeout=0.3) or []
            return wanted <= {host for reply in replies for host in reply}

        wait_for(answered, f"workers {sorted(wanted)} to answer a ping", limit_s, every_s=0.05)

    def log(self, name: str, tail: int | None = 4000) -> str:
        """The process's output (its last ``tail`` characters; all of it with None)."""
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        return text if tail is None else text[-tail:]

    def stop(self, name: str) -> None:
        stop_process(self.procs.pop(name))

    def kill(self, name: str) -> None:
        """SIGKILL the worker's whole process group (main process and pool children)."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=WAIT_S)

    def close(self) -> None:
        procs = list(self.procs.values())
        self.procs.clear()
        for proc in procs:  # all warm shutdowns at once, then wait for each
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            stop_process(proc)
        if self._app is not None:
            self.store.close()

    # -- runs ----------------------------------------------------------------------------------
    def submit(self, spec: RunSpec) -> str:
        """What `soakq submit` does on Redis: record the run, send the start of iteration 1."""
        from workers.executor import send_start

        now = time.time()
        assert start_run(self.store, spec, now=now, mode="distributed"), spec.run_id
        send_start(self.app, self.store, spec.run_id, 1, now=now)
        return spec.run_id

    def finished(self, run_id: str) -> dict[str, Any] | None:
        """The record once the run ended and the workers wrote its directory, else None."""
        record = self.store.get_record(run_id)
        if record is None or not RunStatus(record["status"]).terminal:
            return None
        published = record.get("published") or {}
        return record if published.get("status") == record["status"] else None

    def wait_run(self, run_id: str, limit_s: float = WAIT_S) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            return self.finished(run_id)

        try:
            record: dict[str, Any] = wait_for(done, f"run {run_id} to end", limit_s, every_s=0.05)
        except pytest.fail.Exception as exc:  # say where the run stood, and what the logs say
            logs = "\n".join(f"--- {n}:\n{self.log(n, 3000)}" for n in self.procs)
            raise pytest.fail.Exception(
                f"{exc}\nrecord: {self.store.get_record(run_id)}\n{logs}", pytrace=False
            ) from None
        return record

    def run_dir(self, run_id: str) -> Path:
        return self.artifacts / "soak" / run_id


def new_cluster(redis_server: Any, workdir: Path, **extra_env: str) -> Cluster:
    """A cluster on a Redis database of its own (flushed first)."""
    import redis

    db = next(_dbs)
    url = f"redis://{redis_server.host}:{redis_server.port}/{db}"
    client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        client.flushdb()
    finally:
        client.close()
    workdir.mkdir(parents=True, exist_ok=True)
    return Cluster(url, workdir, dict(extra_env))


@pytest.fixture(scope="module")
def cluster(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two worker processes (prefork, concurrency 1: w1, w2) shared by a test module."""
    c = new_cluster(redis_server, tmp_path_factory.mktemp("cluster"))
    try:
        c.start_two_workers()
        yield c
    finally:
        c.close()


@pytest.fixture
def embedded_twin(tmp_path: Path) -> Callable[[RunSpec], Path]:
    """Run a spec embedded (in-process Celery worker, fakeredis store); return its directory."""

    def run(spec: RunSpec) -> Path:
        from workers.embedded import run_embedded_celery

        root = tmp_path / f"embedded-{spec.run_id}"
        record, directory = run_embedded_celery(spec, root)
        assert RunStatus(record["status"]).terminal
        return directory

    return run


@dataclass
class PrivateRedis:
    """A redis-server of one test's own, on a fixed loopback port: it may be killed, restarted
    on the same port (empty: no persistence), paused and resumed without touching anyone else."""

    workdir: Path
    port: int = field(default_factory=free_port)
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not on PATH")
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.workdir / "redis.log"),
            *self.args,
        ]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self.answers, f"redis-server on port {self.port} to answer", 10.0)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def client(self, db: int = 0) -> Any:
        import redis

        return redis.Redis.from_url(self.url(db), socket_timeout=5.0, socket_connect_timeout=5.0)

    def kill(self) -> None:
        """kill -9: everything in memory is gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()
