"""`soakq resume` with SOAKQ_REDIS_URL: an interrupted embedded run is handed to real workers and
ends with the uninterrupted run's files (docs/resume.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from soakq_worker_harness import Cluster, assert_same_artifacts

from soakq.jsonio import read_json

pytestmark = [pytest.mark.workers, pytest.mark.redis]

RUN = ["--profile", "aggressive", "--mode", "volatile", "--iterations", "10", "--seed", "3"]
PACED = [*RUN, "--interval", "0.5"]
WAIT_S = 120.0


def _local_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOAKQ_", "SOAK_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_an_interrupted_embedded_run_finishes_on_the_workers(
    cluster: Cluster, tmp_path: Path
) -> None:
    whole = subprocess.run(
        [sys.executable, "-m", "soakq", "submit", *PACED, "--artifacts", str(tmp_path / "whole")],
        env=_local_env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    (whole_dir,) = [d for d in (tmp_path / "whole" / "soak").iterdir() if not d.is_symlink()]

    local = tmp_path / "local"
    proc = subprocess.Popen(
        [sys.executable, "-m", "soakq", "submit", *PACED, "--artifacts", str(local)],
        env=_local_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_dir = local / "soak" / whole_dir.name
    deadline = time.monotonic() + WAIT_S
    while not (run_dir / "CHECKPOINT.json").exists() or (
        read_json(run_dir / "CHECKPOINT.json")["state"]["iteration"] < 3
    ):
        assert proc.poll() is None and time.monotonic() < deadline, "no iteration 3 in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130
    done = read_json(run_dir / "RUN.json")["outcome"]["iterations_completed"]

    resumed = subprocess.run(
        [sys.executable, "-m", "soakq", "resume", whole_dir.name, "--artifacts", str(local)]
        + ["--wait"],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert resumed.returncode == whole.returncode, resumed.stderr
    assert resumed.stdout.splitlines()[0] == whole_dir.name
    assert f"resumed after {done}/10" in resumed.stdout
    record = cluster.store.get_record(whole_dir.name)
    assert record["runtime"]["execution"] == "distributed" and record["runtime"]["resumed_at"]
    ran = {d["iteration"]: d["runtime"]["worker"] for d in cluster.store.iterations(whole_dir.name)}
    on_workers = {i for i, who in ran.items() if who.split(":")[0] in ("w1@test", "w2@test")}
    assert on_workers == set(range(done + 1, 11)), ran
    assert_same_artifacts(cluster.run_dir(whole_dir.name), whole_dir)

    # Handed over once: a second resume is refused by Redis, in one line.
    local_view = subprocess.run(
        [sys.executable, "-m", "soakq", "resume", whole_dir.name, "--artifacts", str(local)],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert local_view.returncode == 2 and local_view.stderr.count("\n") == 1
