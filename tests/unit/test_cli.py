"""The command line (docs/cli.md): real console script end to end, exit codes, bad input."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from soakq_testkit import (
    GOOD_KPIS,
    RUN_JSON_FILES,
    assert_clean_user_error,
    contract_hash,
    invoke,
    iteration_docs,
    read,
    strip_runtime,
    write_reports,
)

from soakq.jsonio import dumps
from soakq.params import KEYS
from soakq.profiles import load_profile

pytestmark = pytest.mark.usefixtures("clean_env")

SUBMIT_24 = ["submit", "--profile", "steady_safe", "--source", "kpi", "--iterations", "24"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def submitted(soakq_exe: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two identical 24-iteration runs through the real console script (shared by tests)."""
    base = tmp_path_factory.mktemp("cli24")
    out: dict[str, Any] = {}
    for name in ("a", "b"):
        root = base / name
        proc = subprocess.run(
            [soakq_exe, *SUBMIT_24, "--artifacts", str(root)],
            env=_env(base),
            cwd=base,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        out[name] = (proc, root)
    out["home"] = base
    return out


def test_submit_24_leaves_every_file(submitted: dict[str, Any]) -> None:
    proc, root = submitted["a"]
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    soak = root / "soak"
    runs = [p for p in soak.iterdir() if not p.is_symlink()]
    assert len(runs) == 1
    run_dir = runs[0]
    names = {p.name for p in run_dir.iterdir()}
    expected = {f"ITER_SUMMARY_{i}.json" for i in range(1, 25)} | set(RUN_JSON_FILES)
    assert expected <= names, expected - names
    assert not [n for n in names if n.startswith(".") or n.endswith(".tmp")]
    latest = soak / "latest"
    assert latest.is_symlink() and os.readlink(latest) == run_dir.name
    assert latest.resolve() == run_dir.resolve()
    run_json = read(run_dir / "RUN.json")
    assert run_json["status"] == "succeeded" and run_json["outcome"]["exit_code"] == 0
    assert run_json["outcome"]["iterations_completed"] == 24
    final = read(run_dir / "ITER_SUMMARY_final.json")
    assert final["iteration"] == 24
    assert final["summary"]["state_hash"] == contract_hash(read(run_dir / "runtime_overrides.json"))
    assert read(run_dir / "RELEASE_GATE.json")["mock"] is True
    assert (run_dir / "PRODUCTION_SNAPSHOT.json").exists() == final["summary"]["freeze_active"]


def test_submit_plain_progress_when_not_a_tty(submitted: dict[str, Any]) -> None:
    proc, root = submitted["a"]
    lines = proc.stdout.splitlines()
    progress = [ln for ln in lines if ln.startswith("iteration ")]
    assert [ln.split()[1] for ln in progress] == [f"{i}/24" for i in range(1, 25)]
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout  # no bar, no colour codes
    assert any("mock" in ln.lower() for ln in lines)  # the verdict says it was mock
    assert any(ln.startswith("artifacts: ") for ln in lines)


def test_cli_runs_are_byte_identical_outside_runtime(submitted: dict[str, Any]) -> None:
    (_, a_root), (_, b_root) = submitted["a"], submitted["b"]
    a, b = a_root / "soak" / "latest", b_root / "soak" / "latest"
    names = sorted(p.name for p in a.glob("*.json"))
    assert names == sorted(p.name for p in b.glob("*.json")) and len(names) >= 30
    for name in names:
        da, db = read(a / name), read(b / name)
        assert dumps(strip_runtime(da)) == dumps(strip_runtime(db)), name
        if "runtime" not in da:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_runs_and_status_read_the_artifacts_dir(run_cli, submitted: dict[str, Any]) -> None:
    _, root = submitted["a"]
    run_id = os.readlink(root / "soak" / "latest")
    proc = run_cli("runs", "--artifacts", str(root))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == [
        "run_id",
        "started_utc",
        "profile",
        "mode",
        "status",
        "iterations",
        "release_gate",
    ]
    doc = read(root / "soak" / run_id / "RUN.json")
    started = doc["runtime"]["submitted_at"][:19] + "Z"
    gate = doc["outcome"]["release_gate"]
    assert [ln.split() for ln in lines[1:]] == [  # `latest` is not listed
        [run_id, started, "steady_safe", "calm", "succeeded", "24/24", gate]
    ]
    proc = run_cli("status", run_id, env={"SOAKQ_ARTIFACTS_DIR": str(root)})
    assert proc.returncode == 0, proc.stderr
    assert run_id in proc.stdout and "succeeded" in proc.stdout and "24/24" in proc.stdout
    proc = run_cli("status", run_id, "--json", "--artifacts", str(root))
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == read(root / "soak" / run_id / "RUN.json")


def test_gate_on_latest(run_cli, submitted: dict[str, Any]) -> None:
    """`soakq gate RUN_DIR` says what the run's RELEASE_GATE.json says, with its exit code."""
    proc0, root = submitted["a"]
    gate = read(root / "soak" / "latest" / "RELEASE_GATE.json")
    assert gate["form"] == "run" and gate["verdict"] in ("PASSED", "FAILED", "INCONCLUSIVE")
    proc = run_cli("gate", str(root / "soak" / "latest"))
    assert proc.returncode == {"PASSED": 0, "FAILED": 1, "INCONCLUSIVE": 4}[gate["verdict"]]
    assert proc.returncode == gate["exit_code"]
    assert f"RELEASE GATE {gate['verdict']}" in proc.stdout
    assert "mock" in proc.stdout.lower()
    run_json = read(root / "soak" / "latest" / "RUN.json")
    assert run_json["outcome"]["release_gate"] == gate["verdict"]
    assert f"release gate: {gate['verdict']}" in proc0.stdout


def test_status_unknown_run_is_exit_2(run_cli, clean_env: Path) -> None:
    assert_clean_user_error(run_cli("status", "nope", "--artifacts", str(clean_env)), "nope")
    proc = run_cli("status", "../x", "--artifacts", str(clean_env))
    line = assert_clean_user_error(proc, "status: run id '../x': use 1-128 letters")
    assert "--run-id" not in line


@pytest.mark.parametrize("under", ["", "x"])
def test_unusable_artifacts_root_names_its_flag_or_variable(clean_env: Path, under: str) -> None:
    """A file as the artifacts root (or under it) is refused before the run starts."""
    blocker = clean_env / "a-file"
    blocker.write_text("not a directory")
    root = blocker / under if under else blocker
    submit = ["submit", "--source", "kpi", "--iterations", "1"]
    result = invoke([*submit, "--artifacts", str(root)])
    assert_clean_user_error(result, "--artifacts", str(root), "not a directory")
    result = invoke(submit, env={"SOAKQ_ARTIFACTS_DIR": str(root)})
    assert_clean_user_error(result, "SOAKQ_ARTIFACTS_DIR", str(root))
    assert blocker.read_text() == "not a directory"


def test_runs_on_empty_dir(run_cli, clean_env: Path) -> None:
    proc = run_cli("runs", "--artifacts", str(clean_env / "none"))
    assert proc.returncode == 0 and len(proc.stdout.strip().splitlines()) == 1


def test_profiles_command(run_cli) -> None:
    proc = run_cli("profiles")
    assert proc.returncode == 0, proc.stderr
    rows = {ln.split()[0]: ln.split()[1:7] for ln in proc.stdout.splitlines()[1:] if ln.strip()}
    assert set(rows) == {"aggressive", "default", "steady_safe", "ultra_safe"}
    for name, cells in rows.items():
        prof = load_profile(name).overrides
        assert [float(c) for c in cells] == [float(prof[k]) for k in KEYS], name


# --- exit codes 1 and 3, guards and gate from flags and environment --------------------------

HARD_SPIKE = [
    "submit",
    "--profile",
    "aggressive",
    "--source",
    "kpi",
    "--mode",
    "spike",
    "--spike-prob",
    "1.0",
    "--iterations",
    "5",
]


def _check_hard_stop(root: Path, stdout: str) -> None:
    run_json = read(root / "soak" / "latest" / "RUN.json")
    assert run_json["status"] == "failed" and run_json["outcome"]["exit_code"] == 3
    assert run_json["outcome"]["stop_reason"] == "kpi_gate"
    assert run_json["config"]["kpi_gate"] == "hard"
    assert "kpi_gate" in stdout


def test_hard_gate_flag_exit_3(run_cli, clean_env: Path) -> None:
    proc = run_cli(*HARD_SPIKE, "--kpi-gate", "hard", "--artifacts", str(clean_env))
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    _check_hard_stop(clean_env, proc.stdout)


def test_hard_gate_env_exit_3(clean_env: Path) -> None:
    result = invoke([*HARD_SPIKE, "--artifacts", str(clean_env)], env={"KPI_GATE_MODE": "hard"})
    assert result.exit_code == 3, result.stderr
    _check_hard_stop(clean_env, result.stdout)


def test_soft_gate_exit_0_with_fails_recorded(clean_env: Path) -> None:
    result = invoke([*HARD_SPIKE, "--kpi-gate", "soft", "--artifacts", str(clean_env)])
    assert result.exit_code == 0, result.stderr
    docs = iteration_docs(clean_env / "soak" / "latest")
    assert len(docs) == 5 and docs[0]["summary"]["kpi_verdict"] == "FAIL"


GUARDS_RUN = ["submit", "--profile", "steady_safe", "--source", "kpi", "--iterations", "2"]


def _check_guards_off(root: Path) -> None:
    docs = iteration_docs(root / "soak" / "latest")
    assert len(docs) == 2
    for doc in docs:
        assert doc["summary"]["guards_enabled"] is False


def test_guards_off_by_env(run_cli, clean_env: Path) -> None:
    proc = run_cli(*GUARDS_RUN, "--artifacts", str(clean_env), env={"ENABLE_GUARDS": "0"})
    assert proc.returncode == 0, proc.stderr
    _check_guards_off(clean_env)


def test_guards_off_by_flag(clean_env: Path) -> None:
    result = invoke([*GUARDS_RUN, "--no-guards", "--artifacts", str(clean_env)])
    assert result.exit_code == 0, result.stderr
    _check_guards_off(clean_env)


def test_file_source_missing_report_exit_1(clean_env: Path) -> None:
    reports = write_reports(clean_env / "reports", {1: GOOD_KPIS})
    result = invoke(
        [
            "submit",
            "--profile",
            "steady_safe",
            "--source",
            "file",
            "--report-dir",
            str(reports),
            "--symbols",
            "BTCUSDT",
            "--iterations",
            "3",
            "--artifacts",
            str(clean_env / "art"),
        ]
    )
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr
    run_json = read(clean_env / "art" / "soak" / "latest" / "RUN.json")
    assert run_json["status"] == "failed"
    assert run_json["outcome"]["stop_reason"] == "metrics_error"
    assert "KPI_REPORT_2.json" in run_json["outcome"]["detail"]


# --- bad input: exit 2, one line, no traceback, no run directory -----------------------------

BASE = ["submit", "--profile", "steady_safe", "--source", "kpi", "--iterations", "2"]
BAD_SUBMITS: list[tuple[str, list[str], dict[str, str], list[str]]] = [
    ("unknown-profile", ["--profile", "nope"], {}, ["unknown profile", "nope"]),
    ("set-unknown-key", ["--set", "foo=1"], {}, ["--set", "foo"]),
    (
        "env-unknown-key",
        [],
        {"MM_RUNTIME_OVERRIDES_JSON": '{"foo": 1}'},
        ["MM_RUNTIME_OVERRIDES_JSON", "foo"],
    ),
    ("set-out-of-bounds", ["--set", "min_interval_ms=1000"], {}, ["min_interval_ms", "bounds"]),
    (
        "env-out-of-bounds",
        [],
        {"MM_RUNTIME_OVERRIDES_JSON": '{"tail_age_ms": 10}'},
        ["MM_RUNTIME_OVERRIDES_JSON", "tail_age_ms"],
    ),
    ("set-non-numeric", ["--set", "min_interval_ms=fast"], {}, ["min_interval_ms", "number"]),
    ("set-nan", ["--set", "min_interval_ms=nan"], {}, ["min_interval_ms"]),
    ("set-inf", ["--set", "tail_age_ms=inf"], {}, ["tail_age_ms"]),
    ("set-no-equals", ["--set", "min_interval_ms"], {}, ["KEY=VALUE"]),
    (
        "env-bool",
        [],
        {"MM_RUNTIME_OVERRIDES_JSON": '{"min_interval_ms": true}'},
        ["MM_RUNTIME_OVERRIDES_JSON", "min_interval_ms"],
    ),
    (
        "env-malformed",
        [],
        {"MM_RUNTIME_OVERRIDES_JSON": '{"min_interval_ms": 80'},
        ["MM_RUNTIME_OVERRIDES_JSON", "not valid JSON"],
    ),
    ("env-not-object", [], {"MM_RUNTIME_OVERRIDES_JSON": "80"}, ["MM_RUNTIME_OVERRIDES_JSON"]),
    (
        "env-nan",
        [],
        {"MM_RUNTIME_OVERRIDES_JSON": '{"min_interval_ms": NaN}'},
        ["MM_RUNTIME_OVERRIDES_JSON", "NaN"],
    ),
    ("iterations-0", ["--iterations", "0"], {}, ["--iterations 0"]),
    ("iterations-negative", ["--iterations", "-3"], {}, ["--iterations -3"]),
    ("iterations-huge", ["--iterations", "20000"], {}, ["--iterations 20000", "1..10000"]),
    ("seed-huge", ["--seed", str(2**63)], {}, [f"--seed {2**63}"]),
    ("run-id-dotdot-slash", ["--run-id", "../x"], {}, ["--run-id", "../x"]),
    ("run-id-slash", ["--run-id", "a/b"], {}, ["--run-id", "a/b"]),
    ("run-id-dotdot", ["--run-id", ".."], {}, ["--run-id", ".."]),
    ("run-id-newline", ["--run-id", "ok\n"], {}, ["--run-id"]),
    ("bad-mock-mode-env", [], {"SOAK_MOCK_MODE": "wild"}, ["SOAK_MOCK_MODE", "wild"]),
    ("bad-gate-env", [], {"KPI_GATE_MODE": "medium"}, ["KPI_GATE_MODE", "medium"]),
    ("bad-guards-env", [], {"ENABLE_GUARDS": "perhaps"}, ["ENABLE_GUARDS"]),
    ("bad-seed-env", [], {"SOAK_MOCK_SEED": "abc"}, ["SOAK_MOCK_SEED"]),
    ("file-source-no-dir", ["--source", "file"], {}, ["--report-dir"]),
    ("duplicate-symbol", ["--symbols", "BTCUSDT,BTCUSDT"], {}, ["--symbols"]),
    ("bad-symbol", ["--symbols", "BTC/USDT"], {}, ["--symbols"]),
    (
        "unknown-symbol-book",
        ["--source", "book", "--symbols", "NOPE"],
        {},
        ["--symbols NOPE", "unknown to the book source", "BTCUSDT"],
    ),
    ("interval-inf", ["--interval", "inf"], {}, ["--interval inf", "finite", "86400"]),
    ("interval-nan", ["--interval", "nan"], {}, ["--interval nan", "finite"]),
    ("interval-negative", ["--interval", "-1"], {}, ["--interval -1.0", "from 0"]),
    ("mock-sigma-inf", ["--mock-sigma", "inf"], {}, ["--mock-sigma inf", "0.001 to 100"]),
    ("mock-sigma-nan", ["--mock-sigma", "nan"], {}, ["--mock-sigma nan"]),
    ("gap-bps-nan", ["--gap-bps", "nan"], {}, ["--gap-bps nan", "0 to 10000"]),
    ("gap-bps-negative", ["--gap-bps", "-2"], {}, ["--gap-bps -2.0"]),
    ("spike-prob-high", ["--spike-prob", "1.5"], {}, ["--spike-prob 1.5", "0 to 1"]),
    ("spike-prob-negative", ["--spike-prob", "-0.5"], {}, ["--spike-prob -0.5"]),
    ("spike-prob-nan", ["--spike-prob", "nan"], {}, ["--spike-prob nan"]),
    (
        "env-duplicate-key",
        [],
        {"MM_RUNTIME_OVERRIDES_JSON": '{"tail_age_ms": 700, "tail_age_ms": 720}'},
        ["MM_RUNTIME_OVERRIDES_JSON", "duplicate key 'tail_age_ms'"],
    ),
]


@pytest.mark.parametrize(
    ("args", "env", "needles"), [c[1:] for c in BAD_SUBMITS], ids=[c[0] for c in BAD_SUBMITS]
)
def test_bad_submit_in_process(
    clean_env: Path, args: list[str], env: dict[str, str], needles: list[str]
) -> None:
    art = clean_env / "art"
    result = invoke([*BASE, *args, "--artifacts", str(art)], env=env)
    assert_clean_user_error(result, *needles)
    assert not art.exists() or not any((art / "soak").glob("*"))
    assert not (clean_env / "artifacts").exists()
    assert result.stdout == ""


@pytest.mark.parametrize(
    "case",
    [
        "unknown-profile",
        "env-nan",
        "iterations-0",
        "run-id-dotdot-slash",
        "bad-mock-mode-env",
        "set-nan",
        "unknown-symbol-book",
        "interval-inf",
        "interval-nan",
        "mock-sigma-inf",
        "gap-bps-nan",
        "spike-prob-high",
        "env-duplicate-key",
        "iterations-huge",
        "seed-huge",
    ],
)
def test_bad_submit_console_script(run_cli, clean_env: Path, case: str) -> None:
    _, args, env, needles = next(c for c in BAD_SUBMITS if c[0] == case)
    proc = run_cli(*BASE, *args, env=env, cwd=clean_env)
    assert_clean_user_error(proc, *needles)
    assert not (clean_env / "artifacts").exists()


def test_explicit_run_id_collision_is_exit_2(clean_env: Path) -> None:
    args = [*BASE, "--run-id", "weekly-1", "--artifacts", str(clean_env)]
    assert invoke(args).exit_code == 0
    before = sorted(p.name for p in (clean_env / "soak" / "weekly-1").iterdir())
    assert_clean_user_error(invoke(args), "weekly-1", "already exists")
    assert sorted(p.name for p in (clean_env / "soak" / "weekly-1").iterdir()) == before


def test_derived_run_id_collision_gets_a_suffix(clean_env: Path) -> None:
    args = [*BASE, "--artifacts", str(clean_env)]
    assert invoke(args).exit_code == 0 and invoke(args).exit_code == 0
    runs = sorted(p.name for p in (clean_env / "soak").iterdir() if not p.is_symlink())
    assert len(runs) == 2 and runs[1] == f"{runs[0]}-2"
    assert os.readlink(clean_env / "soak" / "latest") == runs[1]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--mode", "wild"], "--mode"),
        (["--source", "db"], "--source"),
        (["--kpi-gate", "medium"], "--kpi-gate"),
        (["--seed", "-1"], "--seed"),
        (["--iterations", "many"], "--iterations"),
        (["--spike-prob", "2"], "--spike-prob"),
    ],
)
def test_flag_parse_errors_are_exit_2(clean_env: Path, args: list[str], option: str) -> None:
    """Errors caught by the option parser itself: exit 2, the option named, no traceback."""
    result = invoke([*BASE, *args, "--artifacts", str(clean_env / "art")])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stderr and option in result.stderr
    assert not (clean_env / "art").exists()


def test_artifacts_root_that_is_a_file_is_exit_2(clean_env: Path) -> None:
    blocker = clean_env / "afile"
    blocker.write_text("not a directory")
    result = invoke([*BASE, "--artifacts", str(blocker)])
    assert_clean_user_error(result, "afile")
    assert blocker.read_text() == "not a directory"


def test_closed_stdout_pipe_exits_1_quietly(soakq_exe, tmp_path):
    """`soakq submit | head -1`: the reader leaves; no traceback, not reported as bad input."""
    import os
    import subprocess

    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        [
            soakq_exe,
            "submit",
            "--source",
            "kpi",
            "--iterations",
            "24",
            "--artifacts",
            str(tmp_path / "a"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # like `head -1` exiting
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert first.startswith(b"run ")
    assert rc == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["submit", "--mode", "wild"], ["--mode:", "'wild'", "calm, volatile, spike"]),
        (["submit", "--iterations", "many"], ["--iterations:", "'many'", "whole number"]),
        (["submit", "--seed", "-1"], ["--seed:", "'-1'", "minimum is 0"]),
        (["submit", "--nope"], ["no such option --nope", "soakq submit --help"]),
        (["gate"], ["soakq gate:", "missing argument PATH"]),
        (["freeze", "--input", "x"], ["soakq freeze:", "missing option --output"]),
        (["nocommand"], ["nocommand"]),
    ],
)
def test_parser_errors_are_one_line(run_cli, clean_env: Path, args: list[str], needles: list[str]):
    """The option parser's own errors: exit 2, one line, no usage block, no traceback."""
    proc = run_cli(*args, cwd=clean_env)
    line = assert_clean_user_error(proc, *needles)
    assert line.startswith("error: ") and "Usage" not in proc.stderr
    assert not (clean_env / "artifacts").exists()


def test_no_arguments_prints_the_help(run_cli) -> None:
    proc = run_cli()
    assert "Usage" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_help_exits_0(run_cli) -> None:
    proc = run_cli("gate", "--help")
    assert proc.returncode == 0 and "INCONCLUSIVE" in proc.stdout


def test_watch_timeout_must_be_finite(run_cli) -> None:
    for bad in ("inf", "nan", "0"):
        proc = run_cli("watch", "some-run", "--timeout", bad)
        assert_clean_user_error(proc, f"--timeout {float(bad)!r}", "finite")


def test_negative_zero_gives_identical_overrides_and_hash(clean_env: Path) -> None:
    """`--set base_spread_bps_delta=-0.0` and `=0.0`: the same bytes and the same state_hash."""
    dirs = []
    for text in ("-0.0", "0.0"):
        root = clean_env / f"art{text}"
        args = [*BASE, "--set", f"base_spread_bps_delta={text}", "--artifacts", str(root)]
        result = invoke(args)
        assert result.exit_code == 0, result.stderr
        dirs.append(root / "soak" / "latest")
    neg, pos = dirs
    assert (neg / "runtime_overrides.json").read_bytes() == (
        pos / "runtime_overrides.json"
    ).read_bytes()
    assert b"-0.0" not in (neg / "runtime_overrides.json").read_bytes()
    hashes = [iteration_docs(d)[-1]["summary"]["state_hash"] for d in dirs]
    assert hashes[0] == hashes[1] == contract_hash(read(neg / "runtime_overrides.json"))
    assert os.readlink(neg) == os.readlink(pos)  # the same derived run id
