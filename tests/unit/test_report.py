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
from soakq.report import (
    HISTORY_FILES,
    HISTORY_MD,
    HISTORY_PNG,
    REPORT_MD,
    TREND_PNG,
    report_from_dir,
    write_report,
)
from soakq.report.chart import render_history_png, render_png, trend_figure
from soakq.report.history import current_run, previous_runs
from soakq.report.markdown import render_markdown
from soakq.report.model import build_trend
from soakq.settings import Settings

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The report's one precision per KPI, written out here (not imported) so the test checks it.
DECIMALS = {  # bp and ratios as the console prints them; a WARN never rounds onto its limit
    "net_bps": 4,
    "risk_ratio": 4,
    "maker_taker_ratio": 4,
    "p95_latency_ms": 2,
    "adverse_bps_p95": 4,
    "fills": 0,
}
KPIS = ("net_bps", "risk_ratio", "maker_taker_ratio", "p95_latency_ms", "adverse_bps_p95")
UNITS = {
    "net_bps": "bp",
    "risk_ratio": "ratio",
    "maker_taker_ratio": "ratio",
    "p95_latency_ms": "ms",
    "adverse_bps_p95": "bp",
}
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
        assert row[2] == f"{s['net_bps']:.4f}"
        assert row[3] == f"{s['risk_ratio']:.4f}"
        assert row[5] == f"{s['p95_latency_ms']:.2f}"
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


def test_a_recorded_verdict_the_documents_do_not_give_is_called_out(run: Run) -> None:
    """RUN.json's verdict edited after the run: the report says the documents disagree, rather
    than print the edited verdict beside reasons that contradict it."""
    gate = run.record["outcome"]["release_gate"]
    forged = "FAILED" if gate == "PASSED" else "PASSED"
    record = copy.deepcopy(run.record)
    record["outcome"]["release_gate"] = forged
    verdict = _section(render_markdown(build_trend(run.docs, record)), "Verdict")
    assert f"Release gate: **{forged}**" in verdict
    assert f"but the iteration documents give {gate}" in verdict
    assert "changed after the run" not in _section(run.md, "Verdict")  # the untouched run


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
        assert cells[4] == f"{k['op']} {k['threshold']:.{DECIMALS[k['metric']]}f}"
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


def test_out_of_range_kpis_show_as_na_and_never_break_the_chart(run: Run) -> None:
    """A finite but impossible value (a tampered or broken report) is unusable, as the gates
    say, so the report shows it as n/a; plotted, 1.7e308 broke matplotlib's transforms."""
    docs = copy.deepcopy(run.docs)
    docs[0]["summary"]["net_bps"] = 1.7e308
    docs[0]["summary"]["p95_latency_ms"] = -3.0
    trend = build_trend(docs, run.record)
    row = _table_rows(_section(render_markdown(trend), "Iterations"))[0]
    assert row[2] == "n/a" and row[5] == "n/a"
    assert render_png(trend).startswith(PNG_SIGNATURE)


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
    assert written == [
        run.directory / REPORT_MD,
        run.directory / TREND_PNG,
        run.directory / HISTORY_MD,
        run.directory / HISTORY_PNG,
    ]
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
    assert [p.name for p in paths] == [REPORT_MD, TREND_PNG, HISTORY_MD, HISTORY_PNG]
    assert paths[1].read_bytes().startswith(PNG_SIGNATURE)
    assert paths[3].read_bytes().startswith(PNG_SIGNATURE)


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
    assert "| net_bps | 8 | 2.9000 ± 0.0000 | lower 2.9000 | >= 2.7000 | pass |" in section
    assert "| risk_ratio | 8 | 0.3000 ± 0.0000 | upper 0.3000 | <= 0.4200 | pass |" in section
    assert "| p95_latency_ms | 8 | 300.00 ± 0.00 | upper 300.00 | <= 350.00 | pass |" in section
    assert "**PASSED**: every 95% bound is on the good side" in section
    assert "mock" not in md.lower()


# --- trend report v2: statistics, symbols, bounds, events, decimals, history ----------------


@pytest.fixture(scope="module")
def steady(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """steady_safe/calm/kpi, 12 iterations: the release gate has a (short) window."""
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if _soak_env(name):
                mp.delenv(name)
        spec = build_spec(
            Settings(), profile="steady_safe", mode="calm", source="kpi", iterations=12
        )
        record, directory = run_embedded(spec, tmp_path_factory.mktemp("steady"), report=True)
    docs = [read_json(directory / f"ITER_SUMMARY_{i}.json") for i in range(1, 13)]
    yield Run(record, directory, docs)


def _tables(section: str) -> list[list[dict[str, str]]]:
    """Every Markdown table of ``section`` as a list of {header: cell} rows."""
    out: list[list[dict[str, str]]] = []
    lines = section.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|-"):
            header = [c.strip() for c in lines[i].strip().strip("|").split(" | ")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("| "):
                cells = [c.strip() for c in lines[i].strip().strip("|").split(" | ")]
                rows.append(dict(zip(header, cells, strict=True)))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def _fixed(metric: str, value: float) -> str:
    return f"{value:.{DECIMALS[metric]}f}"


@pytest.mark.parametrize("which", ["run", "steady"])
def test_kpi_statistics_match_the_documents_and_release_gate(
    which: str, request: pytest.FixtureRequest
) -> None:
    import numpy as np

    r: Run = request.getfixturevalue(which)
    gate = read_json(r.directory / "RELEASE_GATE.json")
    gated = {k["metric"]: k for k in gate["kpis"]}
    (table,) = _tables(_section(r.md, "KPI statistics"))
    assert [row["KPI"] for row in table] == list(KPIS)
    for row in table:
        m = row["KPI"]
        values = np.array([d["summary"][m] for d in r.docs], dtype=float)
        assert row["unit"] == UNITS[m]
        assert row["n"] == str(len(values))
        assert row["mean"] == _fixed(m, float(values.mean()))
        assert row["min"] == _fixed(m, float(values.min()))
        assert row["max"] == _fixed(m, float(values.max()))
        assert row["p95"] == _fixed(m, float(np.percentile(values, 95)))
        if m in gated:
            k = gated[m]
            assert row["release limit"] == f"{k['op']} {_fixed(m, k['threshold'])}"
            assert row["window n"] == str(k["n"]) == str(gate["window"]["n"])
            mean = "n/a" if k["mean"] is None else _fixed(m, k["mean"])
            bound = "n/a" if k["bound"] is None else f"{k['bound_kind']} {_fixed(m, k['bound'])}"
            assert row["window mean"] == mean and row["window 95 % bound"] == bound
        else:
            assert row["release limit"] == row["window n"] == row["window mean"] == "-"
    if which == "steady":
        assert gate["window"]["n"] >= 2  # the window figures are real numbers here
        assert "n/a" not in table[0]["window 95 % bound"]
    # KPI-gate limits from the threshold table (docs/gates.md), e.g. risk WARN 0.4 / FAIL 0.5
    risk = next(row for row in table if row["KPI"] == "risk_ratio")
    assert risk["KPI gate WARN / FAIL"] == "<= 0.4000 / <= 0.5000"
    assert risk["release limit"] == "<= 0.4200"


def test_per_symbol_table_matches_the_summaries(steady: Run) -> None:
    (table,) = _tables(_section(steady.md, "Per-symbol KPIs"))
    symbols = sorted(steady.docs[0]["summary"]["symbols"])
    assert [row["symbol"] for row in table] == symbols and len(symbols) == 3
    for row in table:
        per = [d["summary"]["symbols"][row["symbol"]] for d in steady.docs]
        assert row["iterations"] == str(len(per))
        assert row["fills"] == str(sum(p["fills"] for p in per))
        for m in KPIS:
            mean = sum(p[m] for p in per) / len(per)
            assert row[f"{m} ({UNITS[m]})"] == _fixed(m, mean), (row["symbol"], m)


STAT_COLUMNS = (
    "mean",
    "min",
    "max",
    "p95",
    "KPI gate WARN / FAIL",
    "release limit",
    "window mean",
    "window 95 % bound",
    "mean ± sd",
    "95 % bound",
    "threshold",
)


def test_decimals_are_consistent_per_kpi(run: Run, steady: Run) -> None:
    """Every KPI cell of every table has that KPI's one number of decimals."""
    for r in (run, steady):
        checked = 0
        for title in ("KPI statistics", "Per-symbol KPIs", "Iterations", "Release gate"):
            for table in _tables(_section(r.md, title)):
                for row in table:
                    for head, cell in row.items():
                        m = next((k for k in KPIS if head.startswith(k)), None)
                        if head in STAT_COLUMNS:
                            m = row["KPI"]
                        if m is None or cell in ("n/a", "-"):
                            continue
                        for number in re.findall(r"-?\d+(?:\.\d+)?", cell):
                            decimals = len(number.split(".")[1]) if "." in number else 0
                            assert decimals == DECIMALS[m], (title, head, cell)
                            checked += 1
        assert checked > 5 * len(r.docs) + 40


def test_parameters_ending_at_a_bound_are_flagged(run: Run) -> None:
    docs = copy.deepcopy(run.docs)
    last = docs[-1]["tuning"]
    last["overrides_after"] = {
        **last["overrides_after"],
        "impact_cap_ratio": 0.04,  # lower bound (params.py)
        "max_delta_ratio": 0.2,  # upper bound
        "tail_age_ms": 999,  # one below the upper bound: not flagged
        "min_interval_ms": 51,
    }
    md = render_markdown(build_trend(docs, run.record))
    section = _section(md, "Parameter trajectory").split("### Final overrides", 1)[1]
    (table,) = _tables(section)
    flags = {row["parameter"]: row["at bound"] for row in table}
    assert [row["parameter"] for row in table] == list(KEYS)
    assert flags["impact_cap_ratio"] == "**lower bound**"
    assert flags["max_delta_ratio"] == "**upper bound**"
    assert flags["tail_age_ms"] == flags["min_interval_ms"] == "-"
    assert "`impact_cap_ratio` (lower), `max_delta_ratio` (upper)" in section
    final = {row["parameter"]: row["final"] for row in table}
    assert final["impact_cap_ratio"] == "0.04" and final["tail_age_ms"] == "999"
    fig = trend_figure(build_trend(docs, run.record))
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert "impact_cap_ratio [0.04, 0.12] ends at lower bound" in labels


def test_event_summary_and_exhaustion(run: Run) -> None:
    docs = copy.deepcopy(run.docs)
    for d in docs:
        d["summary"].update(
            oscillation_detected=False, velocity_violation=False, cooldown_active=False
        )
        d["tuning"]["exhausted"] = []
    docs[1]["summary"]["oscillation_detected"] = True
    docs[2]["summary"]["velocity_violation"] = True
    docs[2]["summary"]["cooldown_active"] = True
    docs[5]["summary"]["cooldown_active"] = True
    docs[3]["tuning"]["exhausted"] = [
        {"metric": "p95_latency_ms", "pinned": ["tail_age_ms"], "rule": "5a", "value": 354.5405}
    ]
    for i in (5, 6):
        docs[i]["summary"].update(freeze_active=True, freeze_reason="3 OK", signature_hash="s")
    md = render_markdown(build_trend(docs, run.record))
    events = _section(md, "Guard and freeze events")
    table = {row["event"]: row for row in _tables(events)[0]}
    assert table["oscillation guard"]["iterations"] == "2"
    assert table["velocity guard"]["iterations"] == "3"
    assert (
        table["cooldown guard"]["iterations"] == "3, 6" and table["cooldown guard"]["count"] == "2"
    )
    assert table["freeze"]["iterations"] == "6" and table["unfreeze"]["iterations"] == "8"
    assert table["exhausted"]["iterations"] == "4"
    assert table["iteration error"]["count"] == "0"
    assert (
        "- iteration 4: rule 5a: p95_latency_ms 354.54; tuning cannot fix p95_latency_ms further "
        "(tail_age_ms pinned)"
    ) in events


def test_chart_draws_both_gates_units_and_the_release_window(steady: Run) -> None:
    trend = build_trend(steady.docs, steady.record)
    gate = read_json(steady.directory / "RELEASE_GATE.json")
    fig = trend_figure(trend)
    panels = {ax.get_title(loc="left").split(" ")[0]: ax for ax in fig.axes[:5]}
    assert list(panels) == list(KPIS)
    risk = panels["risk_ratio"]
    assert risk.get_ylabel() == "ratio" and risk.get_xlabel() == "iteration"
    assert "W≤0.4000 F≤0.5000 R≤0.4200" in risk.get_title(loc="left")
    flat = {
        (round(line.get_ydata()[0], 6), line.get_linestyle())
        for line in risk.get_lines()
        if len(set(line.get_ydata())) == 1
    }
    assert {(0.4, "--"), (0.5, "-"), (0.42, "-.")} <= flat
    k = next(k for k in gate["kpis"] if k["metric"] == "risk_ratio")
    assert (round(k["bound"], 6), ":") in flat  # the window's 95 % bound
    its = gate["window"]["iterations"]
    spans = [p.get_x() for p in risk.patches]
    assert its[0] - 0.5 in spans  # the window shaded from its first iteration
    assert panels["p95_latency_ms"].get_ylabel() == "ms"
    assert panels["net_bps"].get_ylabel() == "bp"
    legend = [t.get_text() for t in fig.axes[5].get_legend().get_texts()]
    for label in ("KPI gate WARN (W)", "KPI gate FAIL (F)", "release-gate limit (R)"):
        assert label in legend
    assert "release window" in legend and "window 95 % bound" in legend


# --- previous runs --------------------------------------------------------------------------


def _fake_run(
    soak: Path,
    run_id: str,
    *,
    profile: str = "aggressive",
    mode: str = "volatile",
    source: str = "kpi",
    status: str = "succeeded",
    started: str | None = "2026-01-01T00:00:00Z",
    net: float | None = 3.0,
    verdict: str = "PASSED",
) -> dict[str, Any]:
    d = soak / run_id
    d.mkdir(parents=True)
    runtime = {"submitted_at": started} if started else {}
    (d / "RUN.json").write_text(
        dumps(
            {
                "config": {"profile": profile, "mode": mode, "source": source},
                "outcome": {"release_gate": verdict},
                "run_id": run_id,
                "runtime": runtime,
                "status": status,
            }
        )
    )
    gate = {
        "kpis": [
            {"metric": "net_bps", "mean": net},
            {"metric": "risk_ratio", "mean": 0.25},
            {"metric": "maker_taker_ratio", "mean": 0.9512},
            {"metric": "p95_latency_ms", "mean": 301.25},
        ],
        "verdict": verdict,
        "window": {"n": 7},
    }
    (d / "RELEASE_GATE.json").write_text(dumps(gate))
    return gate


def _history_root(tmp_path: Path, this: str) -> Path:
    soak = tmp_path / "soak"
    # seven matching finished runs; names out of time order, so the order is by time
    times = {
        "m-a": "2026-01-07T00:00:00Z",
        "m-b": "2026-01-02T00:00:00Z",
        "m-c": "2026-01-05T00:00:00Z",
        "m-d": "2026-01-03T00:00:00Z",
        "m-e": "2026-01-06T00:00:00Z",
        "m-f": "2026-01-04T00:00:00Z",
    }
    for n, (name, t) in enumerate(sorted(times.items())):
        _fake_run(soak, name, started=t, net=2.0 + n / 10)
    _fake_run(soak, "m-notime", started=None)  # no time: sorts first, so it is cut
    _fake_run(soak, "x-mode", mode="calm", started="2026-02-01T00:00:00Z")
    _fake_run(soak, "x-profile", profile="steady_safe", started="2026-02-01T00:00:00Z")
    _fake_run(soak, "x-source", source="book", started="2026-02-01T00:00:00Z")
    _fake_run(soak, "x-running", status="running", started="2026-02-01T00:00:00Z")
    _fake_run(soak, this, started="2026-02-02T00:00:00Z")
    (soak / "x-empty").mkdir()  # no RUN.json
    (soak / "x-garbled").mkdir()
    (soak / "x-garbled" / "RUN.json").write_text("{")
    os.symlink("m-a", soak / "latest")
    return soak


EXPECTED_HISTORY = ["m-d", "m-f", "m-c", "m-e", "m-a"]  # the 5 latest by start time, oldest first


def test_previous_runs_filter_order_and_limit(tmp_path: Path) -> None:
    soak = _history_root(tmp_path, "this-run")
    past = previous_runs(
        soak, run_id="this-run", profile="aggressive", mode="volatile", source="kpi"
    )
    assert [p.run_id for p in past] == EXPECTED_HISTORY
    assert [
        p.run_id
        for p in previous_runs(
            soak, run_id="this-run", profile="aggressive", mode="volatile", source="kpi", limit=2
        )
    ] == ["m-e", "m-a"]
    # without any time the name decides
    everything = previous_runs(
        soak, run_id="this-run", profile="aggressive", mode="volatile", source="kpi", limit=99
    )
    assert [p.run_id for p in everything] == ["m-notime", "m-b", *EXPECTED_HISTORY]
    assert (
        previous_runs(
            tmp_path / "nowhere", run_id="x", profile="aggressive", mode="volatile", source="kpi"
        )
        == []
    )


def test_history_files_written_beside_the_report(tmp_path: Path, run: Run) -> None:
    spec = run.record["spec"]
    soak = _history_root(tmp_path, run.record["run_id"])
    for p in soak.iterdir():  # give the fake runs the real run's profile/mode/source
        if p.is_symlink() or not (p / "RUN.json").is_file():
            continue
        try:
            doc = read_json(p / "RUN.json")
        except InputError:
            continue
        cfg = doc["config"]
        if cfg == {"profile": "aggressive", "mode": "volatile", "source": "kpi"}:
            doc["config"] = {k: spec[k] for k in ("profile", "mode", "source")}
            (p / "RUN.json").write_text(dumps(doc))
    out = soak / run.record["run_id"]
    write_report(out, run.docs, run.record)
    md = (out / HISTORY_MD).read_text("utf-8")
    (table,) = _tables(md)
    assert [row["run"] for row in table] == [
        *EXPECTED_HISTORY,
        f"**{run.record['run_id']}** (this run)",
    ]
    first = table[0]
    gate = read_json(soak / "m-d" / "RELEASE_GATE.json")
    means = {k["metric"]: k["mean"] for k in gate["kpis"]}
    assert first["started"] == "2026-01-03 00:00 UTC"
    assert first["status"] == "succeeded" and first["release gate"] == "PASSED"
    assert first["window n"] == "7"
    assert first["net_bps (bp)"] == _fixed("net_bps", means["net_bps"])
    assert first["maker_taker_ratio (ratio)"] == "0.9512"
    assert first["p95_latency_ms (ms)"] == "301.25"  # 0.01 ms
    this_gate = read_json(run.directory / "RELEASE_GATE.json")
    this = table[-1]
    assert this["release gate"] == this_gate["verdict"]
    assert this["window n"] == str(this_gate["window"]["n"])
    png = (out / HISTORY_PNG).read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000
    # STEADY_TREND.md and trend.png do not depend on the other runs in the root
    assert (out / REPORT_MD).read_bytes() == (run.directory / REPORT_MD).read_bytes()
    assert (out / TREND_PNG).read_bytes() == (run.directory / TREND_PNG).read_bytes()
    assert (out / HISTORY_MD).read_bytes() != (run.directory / HISTORY_MD).read_bytes()
    assert "## Previous runs" in run.md and f"[{HISTORY_MD}]({HISTORY_MD})" in run.md
    assert set(HISTORY_FILES) == {HISTORY_MD, HISTORY_PNG}


def test_history_png_is_deterministic(tmp_path: Path, run: Run) -> None:
    soak = _history_root(tmp_path, "this-run")
    past = previous_runs(
        soak, run_id="this-run", profile="aggressive", mode="volatile", source="kpi"
    )
    current = current_run(build_trend(run.docs, run.record), {})
    first = render_history_png(past, current, "t")
    assert first.startswith(PNG_SIGNATURE) and first == render_history_png(past, current, "t")
    empty = render_history_png([], current, "t")  # no earlier run: still a chart
    assert empty.startswith(PNG_SIGNATURE) and empty != first
