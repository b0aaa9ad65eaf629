"""The live-bot handshake end to end: a real paper bot process, a real `soakq submit` process.

Every wait is bounded: short windows (0.2 s), short report timeouts, the bot exits on its own
after a few idle seconds and is terminated by pid at the end of each test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from soakq_testkit import GOOD_KPIS

from soakq.jsonio import read_json, sha256_of, write_json

pytestmark = pytest.mark.usefixtures("clean_env")

ROOT = Path(__file__).resolve().parents[2]
BOT = ROOT / "examples" / "paper_bot.py"
RUN_TIMEOUT_S = 90.0


def env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@pytest.fixture
def bot_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bot"
    d.mkdir()
    return d


@pytest.fixture
def start_bot(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(bot: Path, *extra: str) -> Path:
        journal = tmp_path / f"journal{len(procs)}.jsonl"
        ready = tmp_path / f"ready{len(procs)}"
        argv = [sys.executable, str(BOT), "--bot-dir", str(bot), "--window", "0.2"]
        argv += ["--idle-exit", "20", "--journal", str(journal), "--ready-file", str(ready)]
        procs.append(subprocess.Popen([*argv, *extra], env=env(), stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while not ready.exists():  # imports and the simulator's first run: not soakq's wait
            assert time.monotonic() < deadline and procs[-1].poll() is None, "bot not ready"
            time.sleep(0.02)
        return journal

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(timeout=10)


def submit(tmp_path: Path, bot: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "soakq", "submit", "--profile", "aggressive"]
    argv += ["--symbols", "BTCUSDT", "--bot-dir", str(bot), "--window", "0.2"]
    argv += ["--artifacts", str(tmp_path / "art"), *extra]
    return subprocess.run(
        argv, env=env(), cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )


def run_files(tmp_path: Path) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    (run,) = [p for p in (tmp_path / "art" / "soak").iterdir() if p.name != "latest"]
    docs = sorted(
        (read_json(p) for p in run.glob("ITER_SUMMARY_[0-9]*.json")),
        key=lambda d: d["iteration"],
    )
    return run, read_json(run / "RUN.json"), docs


def journal(path: Path) -> dict[int, dict[str, Any]]:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return {x["iteration"]: x for x in lines}


def test_live_soak_the_bot_gets_the_overrides_and_its_reports_drive_tuning(
    tmp_path: Path, bot_dir: Path, start_bot: Any
) -> None:
    # Three stale reports from another run wait in the directory: all ignored.
    for i in (1, 2, 3):
        write_json(
            bot_dir / f"KPI_REPORT_{i}.json",
            {
                "iteration": i,
                "run_id": "yesterday",
                "state_hash": "0" * 64,
                "symbols": {"BTCUSDT": {"net_bps": 99.0}},
            },
        )
    got = start_bot(bot_dir, "--mode", "volatile")
    proc = submit(tmp_path, bot_dir, "--iterations", "5", "--report-timeout", "5")
    assert proc.returncode in (0, 1), proc.stderr  # the release gate may fail; the run succeeds
    run, record, docs = run_files(tmp_path)
    assert record["status"] == "succeeded", record["outcome"]
    assert run.name.startswith("aggressive-live-")
    received = journal(got)
    assert len(docs) == 5
    for doc in docs:
        s, t = doc["summary"], doc["tuning"]
        assert s["mock"] is False and "mock_mode" not in s and "mock_seed" not in s
        assert s["iteration_status"] == "measured"
        assert received[doc["iteration"]]["overrides"] == t["overrides_before"]
        assert received[doc["iteration"]]["state_hash"] == sha256_of(t["overrides_before"])
        assert s["net_bps"] != 99.0
    assert any(d["tuning"]["applied_deltas"] for d in docs), "the reports drove no tuning"
    assert docs[0]["summary"]["live_report"]["stale_ignored"] >= 1
    config = record["config"]
    assert config["mode"] is None and config["seed"] is None and config["source"] == "file"
    assert config["minutes_per_iteration"] == pytest.approx(0.2 / 60)  # the guards' hour
    assert "NOTE: mock data" not in proc.stdout
    hs = read_json(bot_dir / "SOAK_ITERATION.json")
    assert set(hs) == {"run_id", "iteration", "state_hash", "window_s", "deadline_ts"}
    assert hs["run_id"] == run.name and hs["iteration"] == 5
    flat = read_json(bot_dir / "runtime_overrides.json")
    assert flat == docs[-1]["tuning"]["overrides_before"] and len(flat) == 6


def test_a_skipped_iteration_is_an_error_without_tuning(
    tmp_path: Path, bot_dir: Path, start_bot: Any
) -> None:
    got = start_bot(bot_dir, "--mode", "volatile", "--skip", "2")
    proc = submit(tmp_path, bot_dir, "--iterations", "4", "--report-timeout", "0.5")
    run, record, docs = run_files(tmp_path)
    assert record["status"] == "succeeded", (record["outcome"], proc.stderr)
    entry = read_json(run / "TUNING_REPORT.json")["iterations"][1]
    assert entry["iteration_status"] == "error" and "KPI_REPORT_2" in entry["iteration_error"]
    trend = (run / "STEADY_TREND.md").read_text()
    assert "### Iteration errors" in trend and "iteration 2: **iteration error**" in trend
    it2 = docs[1]["summary"]
    assert it2["iteration_status"] == "error"
    assert "no report KPI_REPORT_2.json" in it2["iteration_error"]
    assert docs[1]["tuning"]["applied_deltas"] == {}
    assert docs[1]["tuning"]["overrides_after"] == docs[1]["tuning"]["overrides_before"]
    for prev, nxt in zip(docs, docs[1:], strict=False):
        assert nxt["tuning"]["overrides_before"] == prev["tuning"]["overrides_after"]
    assert journal(got)[3]["overrides"] == docs[2]["tuning"]["overrides_before"]
    assert record["outcome"]["exit_code"] == 0 and proc.returncode == 0


def test_a_silent_bot_fails_the_run_after_three_timeouts(
    tmp_path: Path, bot_dir: Path, start_bot: Any
) -> None:
    start_bot(bot_dir, "--silent-after", "1")
    proc = submit(tmp_path, bot_dir, "--iterations", "6", "--report-timeout", "1")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    _, record, docs = run_files(tmp_path)
    assert record["status"] == "failed"
    assert len(docs) == 4
    assert [d["summary"]["iteration_status"] for d in docs] == ["measured"] + ["error"] * 3
    assert record["outcome"]["stop_reason"] == "metrics_error"
    assert "3 consecutive iteration errors (limit 3)" in record["outcome"]["detail"]
    assert "no report KPI_REPORT_4.json" in record["outcome"]["detail"]


def test_edge_report_at_a_fixed_path_fresh_used_old_not_missing_kpis_named(
    tmp_path: Path, bot_dir: Path, start_bot: Any
) -> None:
    edge = tmp_path / "artifacts" / "reports" / "EDGE_REPORT.json"
    edge.parent.mkdir(parents=True)
    # An old report (earlier runtime.utc) is already there: never used.
    write_json(
        edge,
        {
            "runtime": {"utc": "2020-01-01T00:00:00Z", "version": "old"},
            "symbols": {"BTCUSDT": {"net_bps": 42.0, "fills": 3.0}},
            "total": {},
        },
    )
    os.utime(edge, (time.time() + 3600, time.time() + 3600))  # even with a future mtime
    start_bot(bot_dir, "--edge-report", str(edge), "--skip", "1")
    proc = submit(
        tmp_path,
        bot_dir,
        "--iterations",
        "3",
        "--report-timeout",
        "0.5",
        "--report-path",
        str(edge),
    )
    _, record, docs = run_files(tmp_path)
    assert record["status"] == "succeeded", (record["outcome"], proc.stderr)
    one, two = docs[0]["summary"], docs[1]["summary"]
    assert one["iteration_status"] == "error" and "no fresh report" in one["iteration_error"]
    assert two["iteration_status"] == "measured"
    assert two["net_bps"] != 42.0
    assert isinstance(two["symbols"]["BTCUSDT"]["fills"], float)  # 3.0-style counts are valid
    texts = [r["text"] for r in two["kpi_reasons"]]
    for kpi in ("risk_ratio", "maker_taker_ratio", "p95_latency_ms", "adverse_bps_p95"):
        assert any(f"the bot's report has no {kpi}" in t for t in texts), texts
    assert two["kpi_verdict"] == "FAIL"


def test_a_fixed_report_nobody_rewrites_is_never_an_answer(tmp_path: Path, bot_dir: Path) -> None:
    """No bot at all, and a good-looking report stamped 40 s ahead of the clock (a bot's clock
    skew, or a file left behind): one unchanged file is never counted as a measurement."""
    edge = tmp_path / "EDGE.json"
    ahead = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + 40))
    write_json(edge, {"runtime": {"utc": ahead}, "symbols": {"BTCUSDT": dict(GOOD_KPIS)}})
    proc = submit(
        tmp_path,
        bot_dir,
        "--no-auto-tune",
        "--iterations",
        "6",
        "--report-timeout",
        "0.3",
        "--report-path",
        str(edge),
    )
    _, record, docs = run_files(tmp_path)
    assert proc.returncode == 1 and record["status"] == "failed", proc.stdout + proc.stderr
    assert [d["summary"]["iteration_status"] for d in docs] == ["error"] * 3
    assert all("no fresh report EDGE.json" in d["summary"]["iteration_error"] for d in docs)
    assert "release gate: PASSED" not in proc.stdout


def test_an_error_iteration_breaks_the_streak_that_proves_stability(
    tmp_path: Path, bot_dir: Path, start_bot: Any
) -> None:
    """Iterations that prove stability are consecutive: 1 OK, 2 error, 3 and 4 OK is no freeze."""
    start_bot(bot_dir, "--mode", "calm", "--skip", "2")
    proc = submit(
        tmp_path,
        bot_dir,
        "--profile",
        "steady_safe",
        "--iterations",
        "4",
        "--report-timeout",
        "0.5",
    )
    _, record, docs = run_files(tmp_path)
    assert record["status"] == "succeeded", (record["outcome"], proc.stderr)
    verdicts = [(d["summary"]["kpi_verdict"], d["tuning"]["applied_deltas"]) for d in docs]
    assert verdicts[0] == ("OK", {}) and docs[1]["summary"]["iteration_status"] == "error"
    assert [v for v, _ in verdicts[2:]] == ["OK", "OK"], verdicts
    assert not any(d["summary"]["freeze_active"] for d in docs)


def test_a_live_step_stops_waiting_once_its_run_no_longer_wants_it(bot_dir: Path) -> None:
    """A cancelled run's live step ends within ABANDON_CHECK_S instead of holding the bot's
    worker for the whole window + report timeout (a cancelled 500 s window held it 560 s)."""
    from soakq.config import build_spec
    from soakq.metrics.live.source import ABANDON_CHECK_S, measure_live
    from soakq.settings import Settings

    spec = build_spec(
        Settings(),
        profile="aggressive",
        iterations=3,
        symbols=["BTCUSDT"],
        bot_dir=str(bot_dir),
        window_s=500.0,
        report_timeout_s=60.0,
    )
    now = [1_000.0]
    asked: list[float] = []

    def abandon() -> str | None:
        asked.append(now[0])
        return "run x is cancelled" if now[0] >= 1_010.0 else None

    def sleep(s: float) -> None:
        now[0] += s

    results = measure_live(
        spec, 1, spec.overrides, clock=lambda: now[0], sleep=sleep, abandon=abandon
    )
    assert [r["error"] for r in results] == [
        "run x is cancelled: stopped waiting for KPI_REPORT_1.json from the bot"
    ]
    assert 1_010.0 <= now[0] <= 1_010.0 + ABANDON_CHECK_S + 0.1  # not 1_560
    gaps = [b - a for a, b in zip(asked, asked[1:], strict=False)]
    assert gaps and min(gaps) >= ABANDON_CHECK_S - 1e-9  # the store is asked once a second
