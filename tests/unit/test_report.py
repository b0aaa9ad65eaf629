"""The trend report (STEADY_TREND.md, trend.png) from a real embedded run and from its directory."""

from __future__ import annotations

import copy
import io
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from soakq.config import build_spec
from soakq.engine import run_embedded
from soakq.errors import InputError
from soakq.jsonio import dumps, read_json
from soakq.params import KEYS
from soakq.report import REPORT_MD, TREND_PNG, report_from_dir, write_report
from soakq.report_chart import render_png
from soakq.report_md import render_markdown
from soakq.report_model import build_trend
from soakq.settings import Settings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ENV_NAMES = ("USE_MOCK", "KPI_GATE_MODE", "ENABLE_GUARDS", "MM_RUNTIME_OVERRIDES_JSON")
ITERATIONS = 8


def _soak_env(name: str) -> bool:
    return name.startswith(("SOAK_", "SOAKQ_")) or name in ENV_NAMES


@dataclass(frozen=True)
class Run:
    record: dict[str, Any]
    directory: Path
    docs: list[dict[str, Any]]

    @property
    def md(self) -> str:
        return (self.directory / REPORT_MD).read_text("utf-8")

    @property
    def png(self) -> bytes:
        return (self.directory / TREND_PNG).read_bytes()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """One real embedded run (aggressive/volatile/kpi, 8 iterations) with its report."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if _soak_env(name):
                mp.delenv(name)
        spec = build_spec(
            Settings(), profile="aggressive", mode="volatile", source="kpi", iterations=ITERATIONS
        )
        record, directory = run_embedded(spec, tmp_path_factory.mktemp("art"), report=True)
    docs = [read_json(directory / f"ITER_SUMMARY_{i}.json") for i in range(1, ITERATIONS + 1)]
    yield Run(record, directory, docs)


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _table_rows(section: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split(" | ")]
        for line in section.splitlines()
        if re.match(r"\| (\d+|start) \|", line)
    ]


# --- STEADY_TREND.md ------------------------------------------------------------------------


def test_export_writes_both_files(run: Run) -> None:
    assert (run.directory / REPORT_MD).is_file()
    assert (run.directory / TREND_PNG).is_file()


def test_table_has_one_row_per_iteration_with_its_kpis(run: Run) -> None:
    rows = _table_rows(_section(run.md, "Iterations"))
    assert [int(r[0]) for r in rows] == list(range(1, ITERATIONS + 1))
    for row, doc in zip(rows, run.docs, strict=True):
        s, t = doc["summary"], doc["tuning"]
        assert row[1] == s["kpi_verdict"]
        assert float(row[2]) == s["net_bps"]
        assert float(row[3]) == s["risk_ratio"]
        assert int(row[7]) == s["fills"]
        for key in t["applied_deltas"]:
            assert key in row[8]
        assert row[-1] == ("yes" if s["freeze_active"] else "no")


def test_title_marks_mock_and_names_the_verdict(run: Run) -> None:
    md = run.md
    spec = run.record["spec"]
    assert md.startswith(f"# Soak trend: {run.record['run_id']}\n")
    assert "mock data — not a production verdict" in md.lower()
    assert f"`{spec['profile']}`" in md and f"seed {spec['seed']}" in md
    verdict = _section(md, "Verdict")
    assert f"Run: **{run.record['status']}**" in verdict
    gate = run.record["outcome"]["release_gate"]
    assert gate in ("PASSED", "FAILED", "INCONCLUSIVE")
    assert f"Release gate: **{gate}**" in verdict
    assert "Freeze: **" in verdict


def test_release_gate_section_shows_the_window_statistics(run: Run) -> None:
    """The report's release-gate section is the run's RELEASE_GATE.json, in a table."""
    gate = read_json(run.directory / "RELEASE_GATE.json")
    section = _section(run.md, "Release gate")
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert rows[0] == "| KPI | n | mean ± sd | 95 % bound | threshold | result |"
    assert [r.split("|")[1].strip() for r in rows[1:]] == [k["metric"] for k in gate["kpis"]]
    for row, k in zip(rows[1:], gate["kpis"], strict=True):
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1] == str(k["n"])
        assert cells[4] == f"{k['op']} {k['threshold']:g}"
    assert f"**{gate['verdict']}**: " + "; ".join(gate["reasons"]) in section
    verdict = _section(run.md, "Verdict")
    assert "; ".join(gate["reasons"]) in verdict


def test_markdown_has_no_wall_clock_time(run: Run) -> None:
    md = run.md
    assert not re.search(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", md)
    assert "embedded:" not in md  # the worker name lives in `runtime`, not in the report


def test_trajectory_lists_only_changed_parameters(run: Run) -> None:
    start = run.docs[0]["tuning"]["overrides_before"]
    changed = [
        k for k in KEYS if any(d["tuning"]["overrides_after"][k] != start[k] for d in run.docs)
    ]
    assert changed, "the aggressive profile on a volatile market is expected to be tuned"
    section = _section(run.md, "Parameter trajectory")
    header = next(line for line in section.splitlines() if line.startswith("| iter |"))
    assert [c.split(" [")[0] for c in header.strip("| ").split(" | ")[1:]] == changed
    rows = _table_rows(section)
    assert [r[0] for r in rows] == ["start", *map(str, range(1, ITERATIONS + 1))]


def test_guard_and_freeze_events_are_listed_with_iteration_and_reason(run: Run) -> None:
    docs = copy.deepcopy(run.docs)
    t = docs[1]["tuning"]
    t["suppressed"] = {"tail_age_ms": "oscillation"}
    t["guard_decisions"] = [
        {
            "action": "suppressed",
            "detail": "reverses the change of iter 1",
            "guard": "oscillation",
            "param": "tail_age_ms",
        }
    ]
    t["trimmed"] = {"impact_cap_ratio": "velocity"}  # no decision recorded: still listed
    for i in (4, 5):  # iterations 5 and 6 frozen, 7 unfrozen
        docs[i]["summary"].update(
            freeze_active=True, freeze_reason="3 OK in a row", signature_hash="abc123"
        )
    docs[6]["summary"].update(freeze_active=False, freeze_reason="unfrozen at iteration 7: FAIL")
    docs[7]["summary"].update(freeze_active=False, freeze_reason="unfrozen at iteration 7: FAIL")
    md = render_markdown(build_trend(docs, run.record))
    events = _section(md, "Guard and freeze events")
    assert (
        "iteration 2: oscillation guard suppressed `tail_age_ms`: reverses the change of iter 1"
    ) in events
    assert "iteration 2: velocity guard trimmed `impact_cap_ratio`" in events
    assert "iteration 5: **freeze**: 3 OK in a row; signature `abc123`" in events
    assert "iteration 7: **unfreeze**: unfrozen at iteration 7: FAIL" in events
    assert events.count("**unfreeze**") == 1  # the sticky reason on iteration 8 is no new event
    row2 = _table_rows(_section(md, "Iterations"))[1]
    assert "tail_age_ms:oscillation" in row2


def test_missing_kpis_show_as_na(run: Run) -> None:
    docs = copy.deepcopy(run.docs)
    docs[0]["summary"]["net_bps"] = None
    docs[0]["summary"]["p95_latency_ms"] = None
    md = render_markdown(build_trend(docs, run.record))
    row = _table_rows(_section(md, "Iterations"))[0]
    assert row[2] == "n/a" and row[5] == "n/a"
    render_png(build_trend(docs, run.record))  # a gap in the chart, not an error


def test_file_source_is_not_marked_mock(run: Run) -> None:
    record = copy.deepcopy(run.record)
    record["spec"]["source"] = "file"
    md = render_markdown(build_trend(run.docs, record))
    assert "mock" not in md.lower()


# --- trend.png ------------------------------------------------------------------------------


def test_png_is_valid_and_readable(run: Run) -> None:
    import matplotlib.image

    data = run.png
    assert data.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert image.shape[:2] == (800, 1000)  # 10 x 8 in at 100 dpi
    assert b"Software" not in data and b"tIME" not in data  # nothing that varies per render


def test_png_is_byte_identical_when_rendered_twice(run: Run) -> None:
    trend = build_trend(run.docs, run.record)
    first, second = render_png(trend), render_png(trend)
    assert first == second == run.png


# --- report_from_dir ------------------------------------------------------------------------


def test_report_from_dir_rewrites_identical_bytes(run: Run) -> None:
    md, png = run.md, run.png
    written = report_from_dir(run.directory)
    assert written == [run.directory / REPORT_MD, run.directory / TREND_PNG]
    assert run.md == md and run.png == png


def _minimal_dir(tmp_path: Path, iterations: list[int]) -> Path:
    """A run directory whose documents carry only what the report cannot do without."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i in iterations:
        doc = {
            "iteration": i,
            "run_id": "r1",
            "summary": {"kpi_verdict": "OK", "net_bps": 3.0},
            "tuning": {},
        }
        (tmp_path / f"ITER_SUMMARY_{i}.json").write_text(dumps(doc))
    (tmp_path / "ITER_SUMMARY_final.json").write_text(dumps({"not": "read"}))
    run_json = {
        "config": {
            "_sources": {},
            "profile": "default",
            "source": "kpi",
            "mode": "calm",
            "seed": 1,
            "iterations": len(iterations),
        },
        "outcome": {},
        "run_id": "r1",
        "status": "running",
    }
    (tmp_path / "RUN.json").write_text(dumps(run_json))
    return tmp_path


def test_report_from_dir_sorts_iterations_numerically(tmp_path: Path) -> None:
    report_from_dir(_minimal_dir(tmp_path, [10, 2, 1]))
    md = (tmp_path / REPORT_MD).read_text("utf-8")
    rows = _table_rows(_section(md, "Iterations"))
    assert [r[0] for r in rows] == ["1", "2", "10"]
    assert rows[0][3] == "n/a"  # risk_ratio absent from the summary
    assert "Release gate: **not run**" in md


def _garble(path: Path) -> None:
    path.write_text('{"iteration": 1, "summary": ')


def _remove(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    ("case", "culprit"),
    [
        ("missing directory", "nope"),
        ("a file, not a directory", "RUN.json"),
        ("no ITER_SUMMARY files", ""),
        ("garbled ITER_SUMMARY", "ITER_SUMMARY_1.json"),
        ("ITER_SUMMARY not an object", "ITER_SUMMARY_2.json"),
        ("iteration does not match file name", "ITER_SUMMARY_2.json"),
        ("RUN.json missing", "RUN.json"),
        ("RUN.json garbled", "RUN.json"),
    ],
)
def test_bad_input_raises_input_error_naming_the_path(
    tmp_path: Path, case: str, culprit: str
) -> None:
    d = _minimal_dir(tmp_path / "run", [1, 2])
    target = d / culprit if culprit else d
    if case == "no ITER_SUMMARY files":
        for p in d.glob("ITER_SUMMARY_*.json"):
            p.unlink()
    elif case == "garbled ITER_SUMMARY":
        _garble(target)
    elif case == "ITER_SUMMARY not an object":
        target.write_text("[]\n")
    elif case == "iteration does not match file name":
        target.write_text(dumps({"iteration": 3, "summary": {}, "tuning": {}}))
    elif case == "RUN.json missing":
        _remove(target)
    elif case == "RUN.json garbled":
        _garble(target)
    given = target if case in ("missing directory", "a file, not a directory") else d
    with pytest.raises(InputError) as info:
        report_from_dir(given)
    message = str(info.value)
    assert str(target) in message, message
    assert "\n" not in message
    assert not (d / REPORT_MD).exists() and not (d / TREND_PNG).exists()


def test_write_report_with_no_iterations(tmp_path: Path, run: Run) -> None:
    paths = write_report(tmp_path, [], run.record)
    assert [p.name for p in paths] == [REPORT_MD, TREND_PNG]
    assert paths[1].read_bytes().startswith(PNG_SIGNATURE)


# --- the real command line ------------------------------------------------------------------


RunCli = Callable[..., subprocess.CompletedProcess[str]]


def test_cli_report_rewrites_identical_bytes_in_another_process(run: Run, run_cli: RunCli) -> None:
    """The real console script (conftest ``run_cli``: fresh HOME, so a cold matplotlib cache)."""
    md, png = run.md, run.png
    proc = run_cli("report", str(run.directory))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {run.directory / TREND_PNG}" in proc.stdout
    assert run.md == md and run.png == png


def test_cli_report_on_missing_directory_exits_2_with_one_line(
    tmp_path: Path, run_cli: RunCli
) -> None:
    missing = tmp_path / "nonexistent"
    proc = run_cli("report", str(missing))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]


def test_release_gate_table_of_a_passed_run(tmp_path: Path) -> None:
    """A live-bot run fed the same good report 8 times: PASSED, each KPI's row exact."""
    import json as _json

    from soakq_testkit import GOOD_KPIS

    reports = tmp_path / "reports"
    reports.mkdir()
    for i in range(1, 9):
        (reports / f"KPI_REPORT_{i}.json").write_text(_json.dumps(GOOD_KPIS))
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if _soak_env(name):
                mp.delenv(name)
        spec = build_spec(
            Settings(),
            profile="steady_safe",
            source="file",
            report_dir=str(reports),
            symbols=["BTCUSDT"],
            iterations=8,
        )
        record, directory = run_embedded(spec, tmp_path / "art", report=False)
    docs = [read_json(directory / f"ITER_SUMMARY_{i}.json") for i in range(1, 9)]
    md = render_markdown(build_trend(docs, record))
    section = _section(md, "Release gate")
    assert "Window: iterations 1-8 (n = 8, at least 6 needed)" in section
    assert "| net_bps | 8 | 2.9 ± 0 | lower 2.9 | >= 2.7 | pass |" in section
    assert "| risk_ratio | 8 | 0.3 ± 0 | upper 0.3 | <= 0.42 | pass |" in section
    assert "| p95_latency_ms | 8 | 300 ± 0 | upper 300 | <= 350 | pass |" in section
    assert "**PASSED**: every 95% bound is on the good side" in section
    assert "mock" not in md.lower()
