"""Shared pieces of the distributed benchmarks (bench_distributed.py, bench_sweep.py): a private
redis-server on a free loopback port, N prefork worker processes (concurrency 1), the raw no-op
chord of an iteration's shape (3 header + 1 body ``soakq.bench.noop`` tasks), and small helpers.
Everything started here is stopped by pid in ``Cluster.close``."""

from __future__ import annotations

import gc
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def ms(values: list[float]) -> str:
    return (
        f"p50 {pct(values, 50) * 1000:6.2f} ms  p99 {pct(values, 99) * 1000:6.2f} ms  "
        f"mean {statistics.fmean(values) * 1000:6.2f} ms  (n={len(values)})"
    )


def iso_ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def wait(predicate: Any, what: str, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {limit_s:g}s waiting for {what}")
        time.sleep(0.01)


def clean_env() -> dict[str, str]:
    """This process's environment without any SOAKQ_* setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SOAKQ_")}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


class Cluster:
    """redis-server + ``workers`` prefork workers (concurrency 1, ``w<n>@bench``), each worker's
    log in ``workdir/w<n>.log``."""

    def __init__(self, workdir: Path, workers: int, *, loglevel: str = "WARNING") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.env = clean_env()
        self.env.update(SOAKQ_REDIS_URL=self.url, SOAKQ_ARTIFACTS_DIR=str(workdir / "artifacts"))
        from workers.app import make_app, store_of
        from workers.celeryconfig import WorkerSettings

        self.app = make_app(WorkerSettings(redis_url=self.url, artifacts_dir=workdir / "artifacts"))
        self.store = store_of(self.app)
        wait(self._pong, "redis-server", 10)
        for n in range(1, workers + 1):
            path = workdir / f"w{n}.log"
            self.logs.append(path)
            log = open(path, "ab")  # noqa: SIM115
            argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker",
                    "--pool=prefork", "--concurrency=1", "-n", f"w{n}@bench",
                    f"--loglevel={loglevel}", "--without-mingle", "--without-gossip"]  # fmt: skip
            self.procs.append(
                subprocess.Popen(
                    argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
            log.close()
        names = {f"w{n}@bench" for n in range(1, workers + 1)}
        wait(lambda: names <= {h for r in self.app.control.ping(timeout=0.3) or [] for h in r},
             "the workers", 60)  # fmt: skip

    def _pong(self) -> bool:
        try:
            self.store.ping()
            return True
        except Exception:
            return False

    def worker_cpu_s(self) -> float:
        """CPU seconds used so far by the worker processes (main + pool children)."""
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def redis_cpu_s(self) -> float:
        info = self.store.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def close(self) -> None:
        # Results still tracked by the backend would unsubscribe when collected at exit, after
        # redis-server is gone; let them go while it still answers.
        for mapping in getattr(self.app.backend, "_pending_results", ()):
            mapping.clear()
        gc.collect()
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.redis.terminate()
        self.redis.wait(timeout=10)


def send_raw_chord(c: Cluster) -> Any:
    """One raw no-op chord of an iteration's shape: 3 header + 1 body ``soakq.bench.noop``."""
    from celery import chord, group

    from workers import names

    sig = c.app.signature
    return chord(group([sig(names.BENCH_NOOP) for _ in range(3)]), sig(names.BENCH_NOOP))()


def raw_chords(c: Cluster, n: int) -> list[float]:
    """``n`` raw chords sent and waited on one after another: each one's latency."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        send_raw_chord(c).get(timeout=30, interval=0.0005)
        out.append(time.perf_counter() - t0)
    return out


def commands(c: Cluster) -> int:
    return int(c.store.client.info("stats")["total_commands_processed"])


def raw_chains(c: Cluster, chains: int, length: int) -> tuple[float, int]:
    """``chains`` client-driven chains of ``length`` raw chords, all at once: seconds taken, and
    how many result polls (one GET each) this client made, to leave out of the command count."""
    t0 = time.perf_counter()
    current = [send_raw_chord(c) for _ in range(chains)]
    left = [length - 1] * chains
    polls = 0
    while any(r is not None for r in current):
        for n, res in enumerate(current):
            if res is None:
                continue
            polls += 1
            if res.ready():
                if left[n]:
                    left[n] -= 1
                    current[n] = send_raw_chord(c)
                else:
                    current[n] = None
        time.sleep(0.001)
    return time.perf_counter() - t0, polls
