"""Release gate on one ITER_SUMMARY file (docs/gates.md): thresholds, output lines, exit codes
0 / 1 / 2, valid ranges, mock notes; and `soakq gate RUN_DIR` through the console script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from soakq_testkit import assert_clean_user_error, invoke

from soakq.artifacts import iteration_files
from soakq.errors import InputError
from soakq.rules.release_gate import (
    SINGLE_NOTE,
    check_path,
    check_summary,
    failed_gate,
    load_run_dir,
    mock_note,
    run_gate,
)

pytestmark = pytest.mark.usefixtures("clean_env")

# The contract: metric -> (op, threshold), in display order.
THRESHOLDS = {
    "net_bps": (">=", 2.7),
    "risk_ratio": ("<=", 0.42),
    "maker_taker_ratio": (">=", 0.85),
    "p95_latency_ms": ("<=", 350),
}
PASSING = {"net_bps": 3.1, "risk_ratio": 0.31, "maker_taker_ratio": 0.93, "p95_latency_ms": 280.5}
AT_THRESHOLD = {m: t for m, (_, t) in THRESHOLDS.items()}
FAILING = {
    "net_bps": 2.69,
    "risk_ratio": 0.4201,
    "maker_taker_ratio": 0.849,
    "p95_latency_ms": 350.01,
}


def doc(summary: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"iteration": 3, "run_id": "r", "summary": {**summary, **extra}}


def write(path: Path, obj: Any) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


def check_lines(lines: list[str], summary: dict[str, Any], violations: list[str]) -> None:
    """One line per KPI (value and threshold), then the verdict, then each violation."""
    for i, (metric, (op, threshold)) in enumerate(THRESHOLDS.items()):
        line = lines[i]
        assert metric in line and f"{summary[metric]:g}" in line and f"{op} {threshold:g}" in line
        assert ("FAIL" in line.split()[0]) == (metric in violations)
    verdict = lines[len(THRESHOLDS)]
    if violations:
        assert verdict == f"RELEASE GATE FAILED ({len(violations)} violations)"
        rest = lines[len(THRESHOLDS) + 1 : len(THRESHOLDS) + 1 + len(violations)]
        assert [r.strip().lstrip("- ").split()[0] for r in rest] == violations
        for r in rest:
            metric = r.strip().lstrip("- ").split()[0]
            assert f"{summary[metric]:g}" in r and f"{THRESHOLDS[metric][1]:g}" in r
    else:
        assert verdict == "RELEASE GATE PASSED"
    note = lines[len(THRESHOLDS) + 1 + len(violations)]
    assert note == SINGLE_NOTE
    assert "not statistical evidence" in note and "soakq gate RUN_DIR" in note


CASES = [
    ("pass", PASSING, []),
    ("at-threshold", AT_THRESHOLD, []),
    *[(f"fail-{m}", {**PASSING, m: FAILING[m]}, [m]) for m in THRESHOLDS],
    ("fail-all", FAILING, list(THRESHOLDS)),
    ("fail-two", {**PASSING, "net_bps": 1.0, "p95_latency_ms": 900}, ["net_bps", "p95_latency_ms"]),
]


@pytest.mark.parametrize(
    ("summary", "violations"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_gate_table(summary: dict, violations: list[str]) -> None:
    result = check_summary(doc(summary))
    assert result.passed is (not violations)
    assert [v.split()[0] for v in result.violations] == violations
    check_lines(result.lines(), summary, violations)
    js = result.as_json()
    assert js["passed"] is result.passed and js["verdict"] == ("FAILED" if violations else "PASSED")
    assert [c["metric"] for c in js["checks"]] == list(THRESHOLDS)
    assert [c["passed"] for c in js["checks"]] == [m not in violations for m in THRESHOLDS]
    assert js["form"] == "summary" and js["note"] == SINGLE_NOTE
    assert int(result.exit_code) == (1 if violations else 0)


@pytest.mark.parametrize(
    ("summary", "violations"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_gate_command(clean_env: Path, summary: dict, violations: list[str]) -> None:
    path = write(clean_env / "ITER_SUMMARY_3.json", doc(summary))
    result = invoke(["gate", str(path)])
    assert result.exit_code == (1 if violations else 0), result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert str(path) in lines[0]
    check_lines(lines[1:], summary, violations)


def test_gate_console_script_pass_and_fail(run_cli, clean_env: Path) -> None:
    ok = write(clean_env / "ok.json", doc(PASSING))
    bad = write(clean_env / "bad.json", doc({**PASSING, "risk_ratio": 0.5}))
    proc = run_cli("gate", str(ok))
    assert proc.returncode == 0 and "RELEASE GATE PASSED" in proc.stdout
    proc = run_cli("gate", str(bad))
    assert proc.returncode == 1 and "RELEASE GATE FAILED (1 violations)" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_the_final_summary_file_is_judged_as_one_file(clean_env: Path) -> None:
    path = write(clean_env / "ITER_SUMMARY_final.json", doc(PASSING))
    where, result = check_path(path)
    assert where == path and result.passed and result.as_json()["form"] == "summary"


# --- unusable input: exit 2, said plainly ---------------------------------------------------

BAD_INPUTS: list[tuple[str, Any, list[str]]] = [
    ("missing-file", None, ["file not found"]),
    ("garbled", '{"summary": {', ["not valid JSON"]),
    ("not-an-object", "[1, 2]", ["summary"]),
    ("no-summary", {"iteration": 1}, ["summary"]),
    ("summary-not-object", {"summary": [1]}, ["summary"]),
    (
        "missing-kpi",
        doc({k: v for k, v in PASSING.items() if k != "p95_latency_ms"}),
        ["p95_latency_ms", "missing"],
    ),
    (
        "nan-token",
        '{"summary": {"net_bps": NaN, "risk_ratio": 0.3, "maker_taker_ratio": 0.9, '
        '"p95_latency_ms": 200}}',
        ["NaN"],
    ),
    (
        "infinity-token",
        '{"summary": {"net_bps": 3, "risk_ratio": Infinity, '
        '"maker_taker_ratio": 0.9, "p95_latency_ms": 200}}',
        ["Infinity"],
    ),
    (
        "overflow-to-inf",
        '{"summary": {"net_bps": 1e999, "risk_ratio": 0.3, '
        '"maker_taker_ratio": 0.9, "p95_latency_ms": 200}}',
        ["net_bps", "inf"],
    ),
    (
        "huge-int",
        '{"summary": {"net_bps": 1' + "0" * 400 + ', "risk_ratio": 0.3, '
        '"maker_taker_ratio": 0.9, "p95_latency_ms": 200}}',
        ["net_bps", "finite"],
    ),
    ("string-kpi", doc({**PASSING, "risk_ratio": "0.3"}), ["summary.risk_ratio", "[0, 1]"]),
    (
        "bool-kpi",
        doc({**PASSING, "maker_taker_ratio": True}),
        ["summary.maker_taker_ratio", "not a number", "[0, 1]"],
    ),
    ("null-kpi", doc({**PASSING, "net_bps": None}), ["summary.net_bps", "missing"]),
    (
        "the-issue-example",
        {"summary": {"net_bps": 3, "risk_ratio": -5, "maker_taker_ratio": 7, "p95_latency_ms": -3}},
        ["summary.risk_ratio", "-5", "out of range", "[0, 1]"],
    ),
    (
        "negative-risk",
        doc({**PASSING, "risk_ratio": -0.01}),
        ["summary.risk_ratio", "-0.01", "[0, 1]"],
    ),
    (
        "risk-above-one",
        doc({**PASSING, "risk_ratio": 1.2}),
        ["summary.risk_ratio", "1.2", "[0, 1]"],
    ),
    (
        "percent-maker-taker",
        doc({**PASSING, "maker_taker_ratio": 93.3}),
        ["summary.maker_taker_ratio", "93.3", "percentage", "[0, 1]"],
    ),
    (
        "negative-latency",
        doc({**PASSING, "p95_latency_ms": -3}),
        ["summary.p95_latency_ms", "-3", "[0, 1e9]"],
    ),
    ("string-net", doc({**PASSING, "net_bps": "3.1"}), ["summary.net_bps", "[-10000, 10000]"]),
    ("number-document", "42", ["not a JSON object"]),
    ("string-document", '"summary"', ["not a JSON object"]),
]


@pytest.mark.parametrize(
    ("body", "needles"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_unusable_input_is_exit_2(clean_env: Path, body: Any, needles: list[str]) -> None:
    path = clean_env / "ITER_SUMMARY_9.json"
    if body is not None:
        write(path, body)
    with pytest.raises(InputError):
        check_path(path)
    result = invoke(["gate", str(path)])
    assert_clean_user_error(result, str(path), *needles)
    assert "RELEASE GATE" not in result.stdout


def test_directory_without_iterations_is_exit_2(clean_env: Path) -> None:
    run = clean_env / "run"
    run.mkdir()
    write(run / "ITER_SUMMARY_final.json", doc(PASSING))
    assert_clean_user_error(invoke(["gate", str(run)]), str(run), "no ITER_SUMMARY_<i>.json")


@pytest.mark.parametrize("case", ["missing", "nan", "no-kpi", "dir"])
def test_unusable_input_console_script(run_cli, clean_env: Path, case: str) -> None:
    target = clean_env / f"{case}.json"
    if case == "nan":
        write(target, '{"summary": {"net_bps": NaN}}')
    elif case == "no-kpi":
        write(target, doc({"net_bps": 3.0}))
    elif case == "dir":
        target = clean_env / "emptyrun"
        target.mkdir()
    proc = run_cli("gate", str(target))
    assert_clean_user_error(proc, str(target))


# --- mock runs say so ------------------------------------------------------------------------


def test_mock_summary_says_mock() -> None:
    result = check_summary(doc(PASSING, mock=True, mock_mode="spike", mock_seed=7, source="kpi"))
    assert result.mock and result.passed
    note = result.lines()[-1]
    assert "mock" in note.lower() and "spike" in note and "7" in note
    assert "not a production verdict" in note
    assert result.as_json()["mock"] is True


def test_live_summary_has_no_mock_note() -> None:
    result = check_summary(doc(PASSING, mock=False, source="file"))
    assert not result.mock and result.mock_note == ""
    assert result.lines()[-2:] == ["RELEASE GATE PASSED", SINGLE_NOTE]
    assert result.as_json()["mock"] is False


@pytest.mark.parametrize(
    ("flags", "mock"),
    [
        ({"mock": True}, True),
        ({"mock_mode": "calm"}, True),
        ({"mock": True, "mock_mode": "calm"}, True),
        ({"mock": False, "mock_mode": None}, False),
        ({}, False),
    ],
)
def test_either_mock_flag_marks_mock(flags: dict[str, Any], mock: bool) -> None:
    result = check_summary(doc(PASSING, **flags))
    assert result.mock is mock
    assert (result.lines()[-1] == SINGLE_NOTE) is (not mock)
    assert (result.mock_note != "") is mock


def test_failed_gate_document() -> None:
    assert failed_gate("run lost: watchdog") == {
        "error": "run lost: watchdog",
        "exit_code": 1,
        "form": "run",
        "passed": False,
        "reasons": ["run lost: watchdog"],
        "verdict": "FAILED",
    }


def test_mock_note_on_failure_too() -> None:
    result = check_summary(doc(FAILING, mock=True, mock_mode="calm", mock_seed=1))
    assert not result.passed and "not a production verdict" in result.lines()[-1]


# --- `soakq gate RUN_DIR`: the run-level verdict through the console script ---------------

OVR = {"min_interval_ms": 75, "tail_age_ms": 740}


def iteration(i: int, before: dict, after: dict | None = None, **kpis: Any) -> dict[str, Any]:
    summary = {**PASSING, "kpi_verdict": "OK", "kpi_reasons": [], **kpis}
    return {
        "iteration": i,
        "run_id": "r",
        "summary": summary,
        "tuning": {"overrides_before": before, "overrides_after": after or before},
    }


def run_dir(
    root: Path,
    docs: list[dict[str, Any]],
    config: dict | None = None,
    *,
    status: str = "succeeded",
) -> Path:
    root.mkdir()
    for d in docs:
        write(root / f"ITER_SUMMARY_{d['iteration']}.json", d)
    if config is not None:
        config = {"iterations": len(docs), **config}
        write(root / "RUN.json", {"config": config, "run_id": "r", "status": status})
    return root


@pytest.mark.parametrize(
    ("config", "status", "planned", "why"),
    [
        (None, "succeeded", None, "no RUN.json, 6 iterations"),
        ({}, "running", None, "status running, 6 of 6 iterations"),
        ({"iterations": 200}, "succeeded", 200, "status succeeded, 6 of 200 iterations"),
        ({}, "cancelled", None, "status cancelled, 6 of 6 iterations"),
    ],
)
def test_an_unfinished_run_is_never_passed(
    run_cli, clean_env: Path, config: dict | None, status: str, planned: int | None, why: str
) -> None:
    """An interrupted, cancelled or short run proves nothing: INCONCLUSIVE (exit 4)."""
    if config is not None:
        config = {"source": "book", "mode": "calm", "seed": 5, **config}
    docs = [iteration(i, OVR) for i in range(1, 7)]
    target = run_dir(clean_env / "run", docs, config, status=status)
    proc = run_cli("gate", str(target))
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    assert "RELEASE GATE INCONCLUSIVE" in proc.stdout
    assert f"the run has not finished ({why})" in proc.stdout


def test_unusable_required_kpi_outside_the_four_vetoes(run_cli, clean_env: Path) -> None:
    """fills, slippage, adverse are checked in a window iteration too, not only the four."""
    docs = [iteration(i, OVR) for i in range(1, 7)]
    docs[3]["summary"]["fills"] = -5
    target = run_dir(clean_env / "run", docs, {"source": "book", "mode": "calm", "seed": 5})
    proc = run_cli("gate", str(target))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "iteration 4 is a hard KPI FAIL (critical veto): fills" in proc.stdout


@pytest.mark.parametrize("value", [-5, 1.5, "x"])
def test_single_file_refuses_a_bad_count_beside_good_kpis(
    run_cli, clean_env: Path, value: Any
) -> None:
    doc = iteration(1, OVR)
    doc["summary"]["fills"] = value
    path = clean_env / "one.json"
    write(path, doc)
    proc = run_cli("gate", str(path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "summary.fills" in proc.stderr


RUN_CASES = [
    ("passed", [iteration(i, OVR) for i in range(1, 7)], 0, "RELEASE GATE PASSED"),
    (
        "failed-mean",
        [iteration(i, OVR, net_bps=2.6) for i in range(1, 7)],
        1,
        "RELEASE GATE FAILED",
    ),
    (
        "failed-veto",
        [
            *[iteration(i, OVR) for i in range(1, 7)],
            iteration(7, OVR, kpi_verdict="FAIL", adverse_bps_p95=40.0),
        ],
        1,
        "iteration 7 is a hard KPI FAIL (critical veto)",
    ),
    ("too-short", [iteration(i, OVR) for i in range(1, 6)], 4, "RELEASE GATE INCONCLUSIVE"),
    (
        "still-moving",
        [*[iteration(i, OVR) for i in range(1, 8)], iteration(8, OVR, {**OVR, "tail_age_ms": 770})],
        4,
        "the final configuration was never measured",
    ),
]


@pytest.mark.parametrize(
    ("docs", "code", "needle"), [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES]
)
def test_gate_run_dir_console_script(
    run_cli, clean_env: Path, docs: list, code: int, needle: str
) -> None:
    target = run_dir(clean_env / "run", docs, {"source": "book", "mode": "calm", "seed": 5})
    proc = run_cli("gate", str(target))
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == f"release gate: {target}"
    assert lines[1].startswith("window: ")
    assert [ln.split()[1] for ln in lines[2:6]] == list(THRESHOLDS)
    assert needle in proc.stdout
    assert "RELEASE GATE" not in " ".join(lines[:6])
    assert lines[-1] == "NOTE: mock data (source=book, mode=calm, seed=5): not a production verdict"


@pytest.mark.parametrize(
    ("setup", "needles"),
    [
        ("missing", ["not found"]),
        ("empty", ["no ITER_SUMMARY_<i>.json"]),
        ("gap", ["ITER_SUMMARY_2.json: not found", "without a gap"]),
        ("wrong-number", ["ITER_SUMMARY_2.json", "not the ITER_SUMMARY document of iteration 2"]),
        ("garbled", ["ITER_SUMMARY_1.json", "not valid JSON"]),
        ("bad-run-json", ["RUN.json", "config"]),
        ("no-verdict", ["kpi_verdict"]),
    ],
)
def test_gate_run_dir_unusable_is_exit_2(
    run_cli, clean_env: Path, setup: str, needles: list[str]
) -> None:
    target = clean_env / "run"
    docs = [iteration(i, OVR) for i in range(1, 4)]
    if setup == "empty":
        target.mkdir()
    elif setup == "gap":
        run_dir(target, [docs[0], docs[2]])
    elif setup == "wrong-number":
        run_dir(target, docs)
        write(target / "ITER_SUMMARY_2.json", docs[0])
    elif setup == "garbled":
        run_dir(target, docs)
        write(target / "ITER_SUMMARY_1.json", '{"iteration": 1,')
    elif setup == "bad-run-json":
        run_dir(target, docs)
        write(target / "RUN.json", [1])
    elif setup == "no-verdict":
        del docs[1]["summary"]["kpi_verdict"]
        run_dir(target, docs)
    proc = run_cli("gate", str(target))
    assert_clean_user_error(proc, *needles)
    assert "RELEASE GATE" not in proc.stdout


# --- exact texts, documents and the run-directory reader, in process -----------------------


def test_single_file_lines_exactly() -> None:
    result = check_summary(doc({**PASSING, "net_bps": 2.5}))
    assert result.lines() == [
        "FAIL net_bps                   2.5  (threshold >= 2.7)",
        "ok   risk_ratio               0.31  (threshold <= 0.42)",
        "ok   maker_taker_ratio        0.93  (threshold >= 0.85)",
        "ok   p95_latency_ms          280.5  (threshold <= 350)",
        "RELEASE GATE FAILED (1 violations)",
        "  - net_bps 2.5 < 2.7",
        SINGLE_NOTE,
    ]
    assert SINGLE_NOTE == (
        "NOTE: a single iteration is not statistical evidence; the release verdict is "
        "`soakq gate RUN_DIR` (the run's window of iterations)"
    )


def test_single_file_document_exactly() -> None:
    result = check_summary(doc(PASSING, mock=True, mock_mode="calm", mock_seed=3, source="kpi"))
    assert result.as_json() == {
        "checks": [
            {"metric": "net_bps", "op": ">=", "passed": True, "threshold": 2.7, "value": 3.1},
            {"metric": "risk_ratio", "op": "<=", "passed": True, "threshold": 0.42, "value": 0.31},
            {
                "metric": "maker_taker_ratio",
                "op": ">=",
                "passed": True,
                "threshold": 0.85,
                "value": 0.93,
            },
            {
                "metric": "p95_latency_ms",
                "op": "<=",
                "passed": True,
                "threshold": 350.0,
                "value": 280.5,
            },
        ],
        "form": "summary",
        "mock": True,
        "mock_note": "NOTE: mock data (source=kpi, mode=calm, seed=3): not a production verdict",
        "note": SINGLE_NOTE,
        "passed": True,
        "verdict": "PASSED",
        "violations": [],
    }
    assert result.verdict == "PASSED" and int(result.exit_code) == 0


def test_single_file_result_is_frozen() -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        check_summary(doc(PASSING)).passed = False  # type: ignore[misc]


def test_mock_note_without_a_source_says_mock() -> None:
    assert check_summary(doc(PASSING, mock=True)).mock_note == (
        "NOTE: mock data (source=mock, mode=None, seed=None): not a production verdict"
    )


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ([1], "input: not a JSON object; expected an ITER_SUMMARY with a 'summary'"),
        ({"summary": 3}, "input: no 'summary' object; expected an ITER_SUMMARY file"),
        (
            doc({**PASSING, "risk_ratio": 2}),
            "input: summary.risk_ratio 2 is out of range (a percentage? a ratio is a fraction); "
            "allowed [0, 1]",
        ),
        (
            doc({k: v for k, v in PASSING.items() if k != "p95_latency_ms"}),
            "input: summary.p95_latency_ms missing; allowed [0, 1e9]",
        ),
    ],
)
def test_single_file_errors_exactly(body: Any, text: str) -> None:
    with pytest.raises(InputError) as err:
        check_summary(body)
    assert str(err.value) == text


def _docs(n: int, **summary: Any) -> list[dict[str, Any]]:
    return [iteration(i, OVR, **summary) for i in range(1, n + 1)]


def test_run_gate_takes_mock_facts_from_the_spec() -> None:
    gate = run_gate(_docs(6), {"source": "book", "mode": "spike", "seed": 9, "run_id": "R"})
    assert (gate.mock, gate.run_id) == (True, "R")
    assert gate.mock_note == mock_note("book", "spike", 9)
    assert mock_note("book", "spike", 9) == (
        "NOTE: mock data (source=book, mode=spike, seed=9): not a production verdict"
    )
    live = run_gate(_docs(6), {"source": "file", "mode": "calm", "seed": 1, "run_id": "L"})
    assert (live.mock, live.mock_note, live.run_id) == (False, "", "L")


def test_run_gate_without_a_spec_reads_the_last_summary() -> None:
    docs = _docs(6, source="kpi", mock_mode="calm", mock_seed=1)
    docs[-1]["summary"].update(source="book", mock_mode="spike", mock_seed=7)
    docs[-1]["run_id"] = "last"
    docs[-2]["run_id"] = "other"
    gate = run_gate(docs, None)
    assert gate.mock is True and gate.run_id == "last"
    assert gate.mock_note == mock_note("book", "spike", 7)


@pytest.mark.parametrize(
    ("where", "flags", "mock"),
    [
        (0, {"mock": True}, True),
        (0, {"mock_mode": "calm"}, True),
        (5, {"mock": True}, True),
        (5, {"mock": False, "mock_mode": None}, False),
    ],
)
def test_run_gate_any_mock_summary_makes_the_run_mock(
    where: int, flags: dict[str, Any], mock: bool
) -> None:
    docs = _docs(6)
    docs[where]["summary"].update(flags)
    gate = run_gate(docs, None)
    assert gate.mock is mock
    assert (gate.mock_note == mock_note("mock", None, None)) is mock


def test_iteration_files_are_found_and_sorted_numerically(clean_env: Path) -> None:
    for name in ("ITER_SUMMARY_10.json", "ITER_SUMMARY_2.json", "ITER_SUMMARY_final.json"):
        write(clean_env / name, {})
    write(clean_env / "ITER_SUMMARY_3.json.tmp", {})
    write(clean_env / "xITER_SUMMARY_4.json", {})
    (clean_env / "ITER_SUMMARY_5.json").mkdir()
    found = iteration_files(clean_env)
    assert found == [
        (2, clean_env / "ITER_SUMMARY_2.json"),
        (10, clean_env / "ITER_SUMMARY_10.json"),
    ]


def test_load_run_dir(clean_env: Path) -> None:
    target = run_dir(clean_env / "run", _docs(3), {"source": "file", "profile": "p"})
    docs, spec = load_run_dir(target)
    assert [d["iteration"] for d in docs] == [1, 2, 3]
    assert spec == {"iterations": 3, "source": "file", "profile": "p"}
    (target / "RUN.json").unlink()
    assert load_run_dir(target)[1] is None
    where, gate = check_path(target)
    assert where == target and gate.verdict == "INCONCLUSIVE" and gate.exit_code == 4


@pytest.mark.parametrize(
    ("setup", "text"),
    [
        ("missing", "{t}: not found; expected a run directory or an ITER_SUMMARY file"),
        ("file", "{t}: not a directory; expected a run directory or an ITER_SUMMARY file"),
        ("empty", "{t}: no ITER_SUMMARY_<i>.json files; is this a run directory?"),
        ("mismatch", "{t}/ITER_SUMMARY_2.json: not the ITER_SUMMARY document of iteration 2"),
        (
            "gap",
            "{t}/ITER_SUMMARY_2.json: not found; a run directory holds iterations 1 to 3 "
            "without a gap",
        ),
        ("not-object", "{t}/ITER_SUMMARY_1.json: not the ITER_SUMMARY document of iteration 1"),
        ("run-json", "{t}/RUN.json: not a RUN.json document (needs a 'config' object)"),
        ("run-config", "{t}/RUN.json: not a RUN.json document (needs a 'config' object)"),
    ],
)
def test_load_run_dir_errors_exactly(clean_env: Path, setup: str, text: str) -> None:
    t = clean_env / "run"
    if setup == "file":
        write(t, "{}")
    elif setup == "empty":
        t.mkdir()
    elif setup == "mismatch":
        run_dir(t, _docs(2))
        write(t / "ITER_SUMMARY_2.json", iteration(1, OVR))
    elif setup == "gap":
        run_dir(t, _docs(3))
        (t / "ITER_SUMMARY_2.json").unlink()
    elif setup == "not-object":
        run_dir(t, [])
        write(t / "ITER_SUMMARY_1.json", "[1]")
    elif setup in ("run-json", "run-config"):
        run_dir(t, _docs(1))
        write(t / "RUN.json", "[1]" if setup == "run-json" else {"config": [1]})
    with pytest.raises(InputError) as err:
        load_run_dir(t)
    assert str(err.value) == text.format(t=t)


def test_check_path_errors_exactly(clean_env: Path) -> None:
    with pytest.raises(InputError) as err:
        check_path(clean_env / "nope.json")
    assert str(err.value) == f"{clean_env / 'nope.json'}: file not found"


# --- an unfinished run is never PASSED (in process) ----------------------------------------

BOOK = {"source": "book", "mode": "calm", "seed": 5}


@pytest.mark.parametrize(
    ("config", "status", "verdict", "reason"),
    [
        ({"iterations": 6}, "succeeded", "PASSED", None),
        ({"iterations": 5}, "succeeded", "PASSED", None),  # more than planned is finished
        (
            {"iterations": 7},
            "succeeded",
            "INCONCLUSIVE",
            "the run has not finished (status succeeded, 6 of 7 iterations): not a release verdict",
        ),
        (
            {"iterations": 6},
            "cancelled",
            "INCONCLUSIVE",
            "the run has not finished (status cancelled, 6 of 6 iterations): not a release verdict",
        ),
        (
            {"iterations": "6"},
            "succeeded",
            "INCONCLUSIVE",
            "the run has not finished (status succeeded, 6 iterations): not a release verdict",
        ),
        (
            None,
            None,
            "INCONCLUSIVE",
            "the run has not finished (no RUN.json, 6 iterations): not a release verdict",
        ),
    ],
)
def test_unfinished_in_process(
    clean_env: Path, config: dict | None, status: str | None, verdict: str, reason: str | None
) -> None:
    target = clean_env / "run"
    run_dir(target, _docs(6), None if config is None else {**BOOK, **config}, status=status or "")
    _, gate = check_path(target)
    assert gate.verdict == verdict
    if reason is not None:
        assert gate.reasons == (reason,)
        assert int(gate.exit_code) == 4


def test_an_unfinished_run_keeps_a_failure() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "run"
        run_dir(target, _docs(6, net_bps=2.0), {**BOOK, "iterations": 9}, status="cancelled")
        _, gate = check_path(target)
    assert gate.verdict == "FAILED"
    assert gate.reasons == ("net_bps window mean 2 is on the bad side of >= 2.7",)


def test_single_file_checks_every_kpi_it_carries() -> None:
    with pytest.raises(InputError) as err:
        check_summary(doc({**PASSING, "fills": -5}))
    assert str(err.value) == "input: summary.fills -5 is out of range; allowed an integer [0, 1e12]"
    with pytest.raises(InputError) as err:
        check_summary(doc({**PASSING, "cancel_ratio": 1.5}))
    assert str(err.value).startswith("input: summary.cancel_ratio 1.5 is out of range")
    assert check_summary(doc({**PASSING, "fills": None, "snipes": 2})).passed
