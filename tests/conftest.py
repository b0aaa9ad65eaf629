"""Shared fixtures: a private redis-server on a free loopback port.

``redis_server`` (session) starts one server for the whole test session and stops it by pid;
``redis_url`` (function) hands a test that server's URL after FLUSHALL. Neither touches any
other Redis on the machine. Without ``redis-server`` on PATH the tests that need it are skipped,
except under CI (``CI`` set), where that is a failure: CI must have it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# A shell without job control starts a background job with SIGINT ignored, and an ignored signal
# stays ignored across fork and exec: every soakq process a test spawns would then shrug off the
# Ctrl-C the signal tests send. A handled signal is reset to the default at exec, so handling it
# here gives the children the disposition a terminal would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_START_ATTEMPTS = 3  # a free port can be taken between probing it and binding it


@dataclass(frozen=True)
class RedisServer:
    """A redis-server this session started."""

    host: str
    port: int
    pid: int
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    """One RESP PING over a raw socket; True on +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=_STOP_TIMEOUT_S)


def _start(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    log = workdir / "redis.log"
    for _ in range(_START_ATTEMPTS):
        port = _free_port()
        # Own dir, no persistence, loopback only: nothing leaks into or out of the machine.
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(log),
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            if _ping(port):
                return proc, port
            time.sleep(0.02)
        _stop(proc)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"redis-server did not answer PING within {_START_TIMEOUT_S}s:\n{tail}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server on a free 127.0.0.1 port for the whole session."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not on PATH (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must provide it", pytrace=False)
        pytest.skip(reason)
    workdir = tmp_path_factory.mktemp("redis")
    proc, port = _start(binary, workdir)
    try:
        yield RedisServer(host="127.0.0.1", port=port, pid=proc.pid, dir=workdir)
    finally:
        _stop(proc)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied (FLUSHALL) before the test."""
    import redis

    client = redis.Redis.from_url(redis_server.url, socket_timeout=5.0, socket_connect_timeout=5.0)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
