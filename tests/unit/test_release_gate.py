"""Release gate (DESIGN §4): thresholds, output lines, exit codes 0 / 1 / 2, mock notes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from soakq_testkit import assert_clean_user_error, invoke

from soakq.errors import InputError
from soakq.release_gate import check_path, check_summary

pytestmark = pytest.mark.usefixtures("clean_env")

# DESIGN §4: metric -> (op, threshold), in display order.
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


def test_run_directory_resolves_to_final(clean_env: Path) -> None:
    run = clean_env / "run"
    run.mkdir()
    write(run / "ITER_SUMMARY_final.json", doc(PASSING))
    write(run / "ITER_SUMMARY_3.json", doc(FAILING))
    where, result = check_path(run)
    assert where.name == "ITER_SUMMARY_final.json" and result.passed


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
    ("string-kpi", doc({**PASSING, "risk_ratio": "0.3"}), ["risk_ratio"]),
    ("bool-kpi", doc({**PASSING, "maker_taker_ratio": True}), ["maker_taker_ratio"]),
    ("null-kpi", doc({**PASSING, "net_bps": None}), ["net_bps"]),
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


def test_directory_without_final_is_exit_2(clean_env: Path) -> None:
    run = clean_env / "run"
    run.mkdir()
    write(run / "ITER_SUMMARY_1.json", doc(PASSING))
    assert_clean_user_error(invoke(["gate", str(run)]), "ITER_SUMMARY_final.json")


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
    assert result.lines()[-1] == "RELEASE GATE PASSED"


def test_mock_note_on_failure_too() -> None:
    result = check_summary(doc(FAILING, mock=True, mock_mode="calm", mock_seed=1))
    assert not result.passed and "not a production verdict" in result.lines()[-1]
