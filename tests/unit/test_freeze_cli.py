"""`soakq freeze` (docs/gates.md): a snapshot only from a run whose run-level release gate
PASSED on exactly those overrides under that profile; refusals are exit 2 with nothing written;
`--force --reason` overrides a refusal and the snapshot records it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from soakq_testkit import (
    GOOD_KPIS,
    assert_clean_user_error,
    contract_hash,
    invoke,
    make_spec,
    read,
    run_spec,
    write_reports,
)

from soakq.errors import InputError
from soakq.profiles import load_profile
from soakq.snapshot import freeze_snapshot

pytestmark = pytest.mark.usefixtures("clean_env")

STEADY = dict(load_profile("steady_safe").overrides)
AGGRESSIVE = dict(load_profile("aggressive").overrides)


def file_run(root: Path, kpis: dict[str, Any], iterations: int = 8, **kw: Any) -> Path:
    """A live-bot (file source) run fed the same report every iteration; its directory."""
    rdir = write_reports(root / "reports", {i: kpis for i in range(1, iterations + 1)})
    spec = make_spec(
        source="file", report_dir=str(rdir), symbols=["BTCUSDT"], iterations=iterations, **kw
    )
    _, run_dir = run_spec(spec, root / "art")
    return run_dir


@pytest.fixture
def passed(clean_env: Path) -> Path:
    run_dir = file_run(clean_env / "p", GOOD_KPIS)
    assert read(run_dir / "RELEASE_GATE.json")["verdict"] == "PASSED"
    return run_dir


@pytest.fixture
def failed(clean_env: Path) -> Path:
    """Every iteration WARN with net 2.5: the window mean is below 2.7, the run succeeded."""
    run_dir = file_run(clean_env / "f", {**GOOD_KPIS, "net_bps": 2.5})
    assert read(run_dir / "RUN.json")["status"] == "succeeded"
    assert read(run_dir / "RELEASE_GATE.json")["verdict"] == "FAILED"
    return run_dir


def freeze(*args: str) -> Any:
    return invoke(["freeze", *args])


# --- a PASSED run ---------------------------------------------------------------------------


@pytest.mark.parametrize("as_file", [False, True], ids=["run-dir", "overrides-file"])
def test_passed_run_freezes(passed: Path, clean_env: Path, as_file: bool) -> None:
    src = passed / "runtime_overrides.json" if as_file else passed
    out = clean_env / "snap" / "PRODUCTION_SNAPSHOT.json"
    refused = freeze("--input", str(src), "--output", str(out))
    assert refused.exit_code == 2 and "does not exist" in refused.stderr  # no dirs made up
    assert not out.parent.exists()
    out.parent.mkdir()
    result = freeze("--input", str(src), "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert "mock data" not in result.stdout  # a file-source (live) run is not mock
    snap = read(out)
    overrides = read(passed / "runtime_overrides.json")
    gate = read(passed / "RELEASE_GATE.json")
    assert snap["overrides"] == overrides == STEADY
    assert snap["profile"] == "steady_safe"  # the run's, when --profile is not given
    assert snap["signature_hash"] == contract_hash(overrides)
    assert snap["run_id"] == passed.name
    assert (snap["forced"], snap["force_reason"], snap["overridden_refusals"]) == (False, None, [])
    assert snap["release_gate"] == gate
    assert snap["release_gate"]["verdict"] == "PASSED"
    assert snap["release_gate"]["window"]["iterations"] == list(range(1, 9))
    assert [k["n"] for k in snap["release_gate"]["kpis"]] == [8, 8, 8, 8]
    assert (snap["mock"], snap["mock_mode"], snap["mock_seed"], snap["source"]) == (
        False,
        None,
        None,
        "file",
    )
    assert snap["frozen_at_iteration"] == 3 and snap["proving_iterations"] == [1, 2, 3]
    assert result.stdout.strip() == (
        f"wrote {out} (profile steady_safe, signature {snap['signature_hash']}, "
        "release gate PASSED)"
    )


def test_the_run_written_snapshot_carries_the_gate(passed: Path) -> None:
    snap = read(passed / "PRODUCTION_SNAPSHOT.json")
    assert snap["release_gate"] == read(passed / "RELEASE_GATE.json")
    assert (snap["forced"], snap["force_reason"], snap["overridden_refusals"]) == (False, None, [])
    assert snap["mock"] is False


def test_same_profile_named_explicitly(passed: Path, clean_env: Path) -> None:
    out = clean_env / "s.json"
    result = freeze("--input", str(passed), "--output", str(out), "--profile", "steady_safe")
    assert result.exit_code == 0, result.stderr
    assert read(out)["profile"] == "steady_safe"


# --- refusals: exit 2, one line, nothing written --------------------------------------------


def test_profile_mismatch_is_refused(passed: Path, clean_env: Path) -> None:
    out = clean_env / "s.json"
    result = freeze("--input", str(passed), "--output", str(out), "--profile", "aggressive")
    line = assert_clean_user_error(
        result, "refused", "--profile aggressive is not run", "(steady_safe)", "--force --reason"
    )
    assert "release gate" not in line  # the run itself is fine
    assert not out.exists()


def test_failed_run_is_refused_by_dir_and_by_file(failed: Path, clean_env: Path) -> None:
    out = clean_env / "s.json"
    for src in (failed, failed / "runtime_overrides.json"):
        result = freeze("--input", str(src), "--output", str(out))
        assert_clean_user_error(result, "refused", "release gate is FAILED, not PASSED")
        assert not out.exists()


def test_overrides_edited_after_the_run_are_refused(passed: Path, clean_env: Path) -> None:
    edited = {**STEADY, "tail_age_ms": 800}
    (passed / "runtime_overrides.json").write_text(json.dumps(edited))
    out = clean_env / "s.json"
    result = freeze("--input", str(passed), "--output", str(out))
    assert_clean_user_error(
        result, "the overrides differ from the configuration the release gate judged (tail_age_ms)"
    )
    assert not out.exists()


def test_a_recorded_pass_the_iterations_contradict_is_refused(
    failed: Path, clean_env: Path
) -> None:
    gate = read(failed / "RELEASE_GATE.json")
    (failed / "RELEASE_GATE.json").write_text(json.dumps({**gate, "verdict": "PASSED"}))
    out = clean_env / "s.json"
    result = freeze("--input", str(failed), "--output", str(out))
    assert_clean_user_error(result, "iterations give release gate FAILED")
    assert not out.exists()


def test_a_run_without_its_gate_is_refused(passed: Path, clean_env: Path) -> None:
    (passed / "RELEASE_GATE.json").unlink()
    result = freeze("--input", str(passed), "--output", str(clean_env / "s.json"))
    assert_clean_user_error(result, "release gate is missing, not PASSED")


def test_a_run_without_iterations_is_refused(passed: Path, clean_env: Path) -> None:
    for p in passed.glob("ITER_SUMMARY_*.json"):
        p.unlink()
    result = freeze("--input", str(passed), "--output", str(clean_env / "s.json"))
    assert_clean_user_error(result, "has no ITER_SUMMARY files to prove its verdict")


def test_a_run_that_did_not_succeed_is_refused(passed: Path, clean_env: Path) -> None:
    run = read(passed / "RUN.json")
    (passed / "RUN.json").write_text(json.dumps({**run, "status": "cancelled"}))
    result = freeze("--input", str(passed), "--output", str(clean_env / "s.json"))
    assert_clean_user_error(result, "ended cancelled, not succeeded")


def test_a_bare_overrides_file_is_refused(clean_env: Path) -> None:
    src = clean_env / "bare" / "runtime_overrides.json"
    src.parent.mkdir()
    src.write_text(json.dumps(STEADY))
    out = clean_env / "s.json"
    result = freeze("--input", str(src), "--output", str(out), "--profile", "steady_safe")
    assert_clean_user_error(result, "has no run beside it", "no release gate PASSED verdict")
    assert not out.exists()


def test_the_issue_aggressive_hard_fail_as_steady_safe(run_cli, clean_env: Path) -> None:
    """The README command after an aggressive spike run that failed the hard gate."""
    spec = make_spec(
        profile="aggressive", mode="spike", spike_prob=1.0, iterations=5, kpi_gate="hard"
    )
    record, run_dir = run_spec(spec, clean_env / "art")
    assert record["status"] == "failed"
    out = clean_env / "PRODUCTION_SNAPSHOT.json"
    proc = run_cli(
        "freeze",
        "--input",
        str(run_dir / "runtime_overrides.json"),
        "--output",
        str(out),
        "--profile",
        "steady_safe",
    )
    line = assert_clean_user_error(proc, "refused", "ended failed", "release gate is FAILED")
    assert "--profile steady_safe is not run" in line and "(aggressive)" in line
    assert not out.exists()
    assert proc.stdout == ""


# --- --force --reason -----------------------------------------------------------------------


def test_force_records_the_reason_and_the_refusals(failed: Path, clean_env: Path) -> None:
    out = clean_env / "s.json"
    result = freeze(
        "--input", str(failed), "--output", str(out), "--force", "--reason", "hotfix INC-42"
    )
    assert result.exit_code == 0, result.stderr
    snap = read(out)
    assert (snap["forced"], snap["force_reason"]) == (True, "hotfix INC-42")
    assert len(snap["overridden_refusals"]) == 1
    assert "release gate is FAILED, not PASSED" in snap["overridden_refusals"][0]
    assert snap["release_gate"]["verdict"] == "FAILED"
    assert result.stdout.rstrip().endswith("release gate FAILED) FORCED: hotfix INC-42")


def test_force_on_a_passed_run_records_no_refusal(passed: Path, clean_env: Path) -> None:
    out = clean_env / "s.json"
    result = freeze("--input", str(passed), "--output", str(out), "--force", "--reason", "again")
    assert result.exit_code == 0, result.stderr
    snap = read(out)
    assert (snap["forced"], snap["force_reason"], snap["overridden_refusals"]) == (
        True,
        "again",
        [],
    )


def test_force_a_bare_file_needs_a_profile(clean_env: Path) -> None:
    src = clean_env / "bare.json"
    src.write_text(json.dumps(AGGRESSIVE))
    out = clean_env / "s.json"
    args = ["--input", str(src), "--output", str(out), "--force", "--reason", "lab"]
    assert_clean_user_error(freeze(*args), "--profile NAME is needed")
    assert not out.exists()
    result = freeze(*args, "--profile", "aggressive")
    assert result.exit_code == 0, result.stderr
    snap = read(out)
    assert snap["profile"] == "aggressive" and snap["overrides"] == AGGRESSIVE
    assert snap["run_id"] is None and snap["release_gate"] is None
    assert (snap["mock"], snap["source"], snap["frozen_at_iteration"]) == (None, None, None)
    assert snap["proving_iterations"] == []
    assert snap["overridden_refusals"] == [
        f"{src} has no run beside it (RUN.json / RELEASE_GATE.json): no release gate PASSED verdict"
    ]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--force"], "--force needs --reason TEXT"),
        (["--force", "--reason", "   "], "--force needs --reason TEXT"),
        (["--reason", "because"], "--reason goes with --force"),
    ],
)
def test_force_and_reason_go_together(
    passed: Path, clean_env: Path, args: list[str], needle: str
) -> None:
    out = clean_env / "s.json"
    assert_clean_user_error(freeze("--input", str(passed), "--output", str(out), *args), needle)
    assert not out.exists()


def test_force_console_script(run_cli, failed: Path, clean_env: Path) -> None:
    out = clean_env / "forced.json"
    proc = run_cli("freeze", "--input", str(failed), "--output", str(out))
    assert_clean_user_error(proc, "refused")
    assert not out.exists()
    proc = run_cli(
        "freeze", "--input", str(failed), "--output", str(out), "--force", "--reason", "drill"
    )
    assert proc.returncode == 0, proc.stderr
    assert read(out)["force_reason"] == "drill"


# --- unusable input -------------------------------------------------------------------------

BAD_FREEZE = [
    ("missing", None, "steady_safe", ["file not found"]),
    ("garbled", "{", "steady_safe", ["not valid JSON"]),
    ("nan", '{"min_interval_ms": NaN}', "steady_safe", ["NaN"]),
    ("duplicate-key", '{"min_interval_ms": 75, "min_interval_ms": 80}', "steady_safe", ["dup"]),
    ("array", "[]", "steady_safe", ["JSON object"]),
    ("unknown-key", json.dumps({**STEADY, "junk": 1}), "steady_safe", ["'junk'"]),
    (
        "missing-key",
        json.dumps({k: v for k, v in STEADY.items() if k != "tail_age_ms"}),
        "steady_safe",
        ["tail_age_ms"],
    ),
    (
        "out-of-bounds",
        json.dumps({**STEADY, "tail_age_ms": 5000}),
        "steady_safe",
        ["tail_age_ms", "bounds"],
    ),
    ("bool", json.dumps({**STEADY, "min_interval_ms": True}), "steady_safe", ["min_interval_ms"]),
    ("unknown-profile", json.dumps(STEADY), "nope", ["unknown profile"]),
]


@pytest.mark.parametrize(
    ("body", "profile", "needles"), [c[1:] for c in BAD_FREEZE], ids=[c[0] for c in BAD_FREEZE]
)
def test_bad_input_is_exit_2_even_forced(
    clean_env: Path, body: str | None, profile: str, needles: list[str]
) -> None:
    src = clean_env / "in.json"
    if body is not None:
        src.write_text(body)
    out = clean_env / "out.json"
    result = freeze(
        "--input", str(src), "--output", str(out), "--profile", profile, "--force", "--reason", "x"
    )
    assert_clean_user_error(result, *needles)
    assert not out.exists()


def test_directory_without_overrides(clean_env: Path) -> None:
    (clean_env / "empty").mkdir()
    result = freeze("--input", str(clean_env / "empty"), "--output", str(clean_env / "s.json"))
    assert_clean_user_error(result, "no runtime_overrides.json")


def test_output_may_not_overwrite_the_input(passed: Path) -> None:
    src = passed / "runtime_overrides.json"
    before = src.read_bytes()
    result = freeze("--input", str(src), "--output", str(src))
    assert_clean_user_error(result, "would overwrite the input")
    assert src.read_bytes() == before


def test_malformed_run_evidence_is_exit_2(passed: Path, clean_env: Path) -> None:
    (passed / "RUN.json").write_text("[1]")
    assert_clean_user_error(
        freeze("--input", str(passed), "--output", str(clean_env / "s.json")), "RUN.json"
    )
    (passed / "RUN.json").unlink()
    (passed / "RELEASE_GATE.json").write_text('{"passed": true}')
    with pytest.raises(InputError, match="RELEASE_GATE"):
        freeze_snapshot(passed, clean_env / "s.json")


@pytest.mark.parametrize("where", ["directory", "under-a-file"])
def test_unusable_output_path(passed: Path, clean_env: Path, where: str) -> None:
    if where == "directory":
        out = clean_env / "outdir"
        out.mkdir()
    else:
        (clean_env / "afile").write_text("x")
        out = clean_env / "afile" / "snap.json"
    result = freeze("--input", str(passed), "--output", str(out))
    assert_clean_user_error(result, out.name if where == "directory" else "afile")
    if where == "directory":
        assert list(out.iterdir()) == []


def test_a_mock_run_snapshot_says_mock_on_stdout(clean_env: Path) -> None:
    spec = make_spec(iterations=24, profile="steady_safe", seed=42, source="book")
    _, run_dir = run_spec(spec, clean_env / "art")
    assert read(run_dir / "RELEASE_GATE.json")["verdict"] == "PASSED"  # the README's run
    result = freeze("--input", str(run_dir), "--output", str(clean_env / "S.json"))
    assert result.exit_code == 0, result.stderr
    assert "NOTE: mock data (source=book, mode=calm, seed=42): not a production verdict" in (
        result.stdout
    )
