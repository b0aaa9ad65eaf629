"""Interrupted embedded runs: Ctrl-C, SIGTERM and kill -9 leave a run that `soakq runs` lists and
`soakq resume` completes with the uninterrupted run's files (docs/resume.md). Real console script,
real signals, an in-process Celery worker (no Redis)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from soakq_worker_harness import assert_same_artifacts

from soakq.jsonio import read_json

pytestmark = pytest.mark.workers

RUN = ["--profile", "aggressive", "--mode", "volatile", "--iterations", "12", "--seed", "7"]
PACED = [*RUN, "--interval", "0.5"]
WAIT_S = 90.0


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOAKQ_", "SOAK_"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def soakq(*args: str, timeout: float = WAIT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "soakq", *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(root: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "soakq", "submit", *PACED, "--artifacts", str(root), *extra],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_iteration(root: Path, proc: subprocess.Popen[str], i: int) -> Path:
    """The run directory once ITER_SUMMARY_<i> and its checkpoint are written (bounded)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for d in (root / "soak").glob("*-*"):
            if not d.is_symlink() and (d / f"ITER_SUMMARY_{i}.json").exists():
                cp = d / "CHECKPOINT.json"
                if cp.exists() and read_json(cp)["state"]["iteration"] >= i:
                    return d
        assert proc.poll() is None, f"the run ended early: {proc.communicate()}"
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"iteration {i} not written within {WAIT_S:g}s")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("whole")
    done = soakq("submit", *PACED, "--artifacts", str(root))
    assert done.returncode in (0, 1, 3, 4), done.stderr
    (run_dir,) = [d for d in (root / "soak").iterdir() if not d.is_symlink() and d.name[0] != "."]
    assert not (run_dir / "CHECKPOINT.json").exists()  # a finished run keeps no resume point
    return run_dir, done.returncode


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_signal_leaves_an_interrupted_run_that_resume_completes(
    tmp_path: Path, uninterrupted: tuple[Path, int], sig: signal.Signals
) -> None:
    whole, whole_rc = uninterrupted
    root = tmp_path / "art"
    proc = start(root)
    run_dir = wait_for_iteration(root, proc, 3)
    proc.send_signal(sig)
    rc, out, err = finish(proc)
    assert rc == 130, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "interrupted after" in lines[0] and "soakq resume" in lines[0], err
    run_id = run_dir.name
    assert run_id == whole.name

    doc = read_json(run_dir / "RUN.json")
    assert doc["status"] == "interrupted"
    assert doc["outcome"]["stop_reason"] == "interrupted"
    assert doc["outcome"]["detail"] == f"interrupted by {sig.name}"
    done = doc["outcome"]["iterations_completed"]
    assert 3 <= done < 12
    report = read_json(run_dir / "TUNING_REPORT.json")  # the report so far
    assert [e["iteration"] for e in report["iterations"]] == list(range(1, done + 1))
    assert (run_dir / "STEADY_TREND.md").exists()
    assert not (run_dir / "RELEASE_GATE.json").exists()  # no verdict on part of a run
    assert read_json(run_dir / "CHECKPOINT.json")["state"]["iteration"] == done

    listing = soakq("runs", "--artifacts", str(root))
    assert listing.returncode == 0
    assert any(run_id in line and "interrupted" in line for line in listing.stdout.splitlines())
    status = soakq("status", run_id, "--artifacts", str(root))
    assert f"interrupted ({done}/12 iterations" in status.stdout
    assert f"soakq resume {run_id}" in status.stdout

    resumed = soakq("resume", run_id, "--artifacts", str(root))
    assert resumed.returncode == whole_rc, resumed.stderr
    assert f"resuming after {done}/12 iterations" in resumed.stdout
    shown = [line for line in resumed.stdout.splitlines() if line.startswith("iteration ")]
    assert shown and shown[0].startswith(f"iteration {done + 1}/12")
    assert not (run_dir / "CHECKPOINT.json").exists()
    assert_same_artifacts(run_dir, whole)
    assert read_json(run_dir / "RUN.json")["runtime"]["resumed_at"]


def test_kill_9_is_listed_and_resumed_identically(
    tmp_path: Path, uninterrupted: tuple[Path, int]
) -> None:
    whole, whole_rc = uninterrupted
    root = tmp_path / "art"
    proc = start(root)
    run_dir = wait_for_iteration(root, proc, 4)
    proc.kill()
    finish(proc)
    run_id = run_dir.name
    # Nothing ran at the kill: RUN.json still says what it said at the start.
    assert read_json(run_dir / "RUN.json")["status"] in ("queued", "running")
    listing = soakq("runs", "--artifacts", str(root))
    assert any(run_id in line and "interrupted" in line for line in listing.stdout.splitlines())

    resumed = soakq("resume", run_id, "--artifacts", str(root))
    assert resumed.returncode == whole_rc, resumed.stderr
    assert_same_artifacts(run_dir, whole)
    again = soakq("resume", run_id, "--artifacts", str(root))
    assert again.returncode == 2
    assert again.stderr.strip().count("\n") == 0 and "already ended" in again.stderr


def test_a_run_still_running_is_not_resumed(tmp_path: Path) -> None:
    root = tmp_path / "art"
    proc = start(root)
    try:
        run_dir = wait_for_iteration(root, proc, 1)
        listing = soakq("runs", "--artifacts", str(root))
        assert any(
            run_dir.name in line and "interrupted" not in line
            for line in listing.stdout.splitlines()
        )
        busy = soakq("resume", run_dir.name, "--artifacts", str(root))
        assert busy.returncode == 2
        assert busy.stderr.startswith("error: ") and busy.stderr.count("\n") == 1
        assert "another process" in busy.stderr
    finally:
        proc.kill()
        finish(proc)


def test_resume_refuses_what_it_cannot_resume(tmp_path: Path) -> None:
    root = tmp_path / "art"
    missing = soakq("resume", "nope-1", "--artifacts", str(root))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "no " in missing.stderr and "RUN.json" in missing.stderr
    bad = soakq("resume", "../x", "--artifacts", str(root))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    # An interrupted run whose checkpoint was removed: said, nothing written.
    proc = start(root)
    run_dir = wait_for_iteration(root, proc, 2)
    proc.kill()
    finish(proc)
    (run_dir / "CHECKPOINT.json").unlink()
    before = sorted(p.name for p in run_dir.iterdir())
    gone = soakq("resume", run_dir.name, "--artifacts", str(root))
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1
    assert "CHECKPOINT.json: no checkpoint" in gone.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_a_damaged_checkpoint_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "art"
    proc = start(root)
    run_dir = wait_for_iteration(root, proc, 2)
    proc.kill()
    finish(proc)
    cp = read_json(run_dir / "CHECKPOINT.json")
    cp["record"]["spec"]["iterations"] = "many"
    (run_dir / "CHECKPOINT.json").write_text(__import__("json").dumps(cp))
    bad = soakq("resume", run_dir.name, "--artifacts", str(root))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "CHECKPOINT.json" in bad.stderr and "spec.iterations" in bad.stderr
