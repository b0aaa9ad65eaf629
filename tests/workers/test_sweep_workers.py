"""A sweep on two real workers gives the embedded sweep's SWEEP.json (docs/sweeps.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from soakq_worker_harness import Cluster, read_line

pytestmark = [pytest.mark.workers, pytest.mark.redis]

SWEEP = [
    "sweep",
    "--profiles",
    "aggressive,steady_safe",
    "--modes",
    "volatile",
    "--seeds",
    "1-2",
    "--iterations",
    "6",
    "--holdout-seeds",
    "101",
    "--holdout-iterations",
    "6",
]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soakq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _doc(directory: Path) -> dict:
    (sweep,) = (directory / "sweeps").iterdir()
    doc = json.loads((sweep / "SWEEP.json").read_text())
    return doc


def test_distributed_sweep_matches_embedded(cluster: Cluster, tmp_path: Path) -> None:
    local_env = {k: v for k, v in os.environ.items() if not k.startswith(("SOAKQ_", "SOAK_"))}
    embedded = _run([*SWEEP, "--artifacts", str(tmp_path / "emb")], local_env)
    assert embedded.returncode == 0, embedded.stderr
    distributed = _run([*SWEEP, "--artifacts", str(tmp_path / "dist")], cluster.env())
    assert distributed.returncode == 0, distributed.stderr
    a, b = _doc(tmp_path / "emb"), _doc(tmp_path / "dist")
    assert a.pop("runtime")["execution"] == "embedded"
    assert b.pop("runtime")["execution"] == "distributed"
    assert a == b
    # 8 arm runs; each untuned cell measures its profile once per hold-out seed (shared).
    assert len(a["comparisons"]) == 2
    assert len(a["runs"]) == 8 + sum(c["holdout_runs"] for c in a["cells"]) < 16
    # Every run of the sweep was an ordinary run on the workers, spread over both of them.
    ran = set()
    for run_id in b["runs"]:
        record = cluster.store.get_record(run_id)
        assert record["status"] == "succeeded"
        ran |= {d["runtime"]["worker"].split(":")[0] for d in cluster.store.iterations(run_id)}
    assert ran == {"w1@test", "w2@test"}
    # The same command again follows the runs already in Redis: nothing runs twice.
    again = _run([*SWEEP, "--artifacts", str(tmp_path / "dist2")], cluster.env())
    assert again.returncode == 0, again.stderr
    c = _doc(tmp_path / "dist2")
    c.pop("runtime")
    assert c == a


def test_sigterm_stops_the_coordinator_in_one_line_and_the_runs_go_on(
    cluster: Cluster, tmp_path: Path
) -> None:
    """SIGTERM on a distributed sweep acts as Ctrl-C: one line, exit 130 (it was a silent 143);
    the runs it submitted go on on the workers, and the same command continues the sweep."""
    args = [*SWEEP[:5], "--seeds", "7", "--iterations", "30", "--artifacts", str(tmp_path)]
    argv = [sys.executable, "-m", "soakq", *args]
    proc = subprocess.Popen(
        argv, env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        header = read_line(proc, "sweep ")  # the runs are submitted right after this line
        assert "(distributed)" in header, header
        sweep_id = header.split(":")[0].removeprefix("sweep ")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert err.strip() == (
        f"sweep {sweep_id}: interrupted after 0 runs; its submitted runs go on on the workers; "
        "the same command continues it (finished runs are not run again)"
    )
    assert not (tmp_path / "sweeps" / sweep_id / "SWEEP.json").exists()


def test_a_coordinator_whose_workers_vanish_says_so_and_stops() -> None:
    """No run ends for the grace and no worker consumes the queue: one line, exit 5 (Pending),
    within a bounded time; while the check says the queue is served, it keeps waiting."""
    import time

    from soakq.config import build_spec
    from soakq.errors import ExitCode, Pending
    from soakq.settings import Settings
    from soakq.store import MemoryStore
    from workers.app import make_app
    from workers.celeryconfig import WorkerSettings
    from workers.sweep import RedisSubmitter

    app = make_app(WorkerSettings(redis_url=None), main="sweep-stall")  # memory://, no worker
    asked: list[float] = []

    def unserved() -> str | None:
        asked.append(time.monotonic())
        return None if len(asked) < 2 else "no worker consumes queue 'soakq'"

    sub = RedisSubmitter(app, MemoryStore(), poll_s=0.01, unserved=unserved, grace_s=0.1)
    sub.submit(build_spec(Settings(), profile="aggressive", iterations=2, run_id="stall-1"))
    t0 = time.monotonic()
    with pytest.raises(Pending, match="no worker consumes") as exc:
        sub.next_done()
    assert exc.value.exit_code == ExitCode.PENDING == 5
    assert len(asked) == 2 and asked[1] - asked[0] >= 0.1  # served: asked again after a grace
    assert time.monotonic() - t0 < 10
