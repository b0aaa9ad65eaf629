"""What the command line says (issue #11, "a CLI that speaks one line"): parser errors in plain
words, help that shows every default and describes every option, `--version`. Every check runs
the real console script."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest
import typer.main
from soakq_testkit import assert_clean_user_error

from soakq.cli.main import app

pytestmark = pytest.mark.usefixtures("clean_env")

BOX = set("│─╭╮╰╯┃━┏┓┗┛")


def _flat(text: str) -> str:
    return " ".join(text.split())


# --- parser errors -------------------------------------------------------------------------

PARSER_ERRORS: list[tuple[list[str], str]] = [
    (["submit", "--iterations", "abc"], "error: --iterations: 'abc' is not a whole number"),
    (["submit", "--iterations=abc"], "error: --iterations: 'abc' is not a whole number"),
    (["submit", "--seed", "1.5"], "error: --seed: '1.5' is not a whole number"),
    (["submit", "--interval", "soon"], "error: --interval: 'soon' is not a number"),
    (["submit", "--spike-prob", "x"], "error: --spike-prob: 'x' is not a number"),
    (["submit", "--mode", "calmm"], "error: --mode: 'calmm' is not one of calm, volatile, spike"),
    (["submit", "--kpi-gate", "maybe"], "error: --kpi-gate: 'maybe' is not one of soft, hard"),
    (["submit", "--source", "db"], "error: --source: 'db' is not one of book, kpi, file"),
    (["submit", "--seed", "-1"], "error: --seed: '-1' is too small: the minimum is 0"),
    (["worker", "--concurrency", "0"], "error: --concurrency: '0' is too small: the minimum is 1"),
    (["prune", "--older-than", "-1"], "error: --older-than: '-1' is too small: the minimum is 0"),
    (["watch", "x", "--timeout", "abc"], "error: --timeout: 'abc' is not a number"),
    (
        ["submit", "--no-such-flag"],
        "error: no such option --no-such-flag (see soakq submit --help)",
    ),
    (
        ["submit", "--iteration", "3"],
        "error: no such option --iteration; did you mean --interval or --iterations? "
        "(see soakq submit --help)",
    ),
    (["submit", "--iterations"], "error: --iterations: needs a value (see soakq submit --help)"),
    (["status", "--json=yes", "x"], "error: --json: takes no value (see soakq status --help)"),
    (
        ["gate"],
        "error: soakq gate: missing argument PATH "
        "(a run directory, or one ITER_SUMMARY_<i>.json file)",
    ),
    (
        ["status"],
        "error: soakq status: missing argument RUN_ID "
        "(the run's id, as `soakq submit` printed it; `soakq runs` lists them)",
    ),
    (
        ["freeze", "--input", "x"],
        "error: soakq freeze: missing option --output (PRODUCTION_SNAPSHOT.json to write)",
    ),
    (["nocommand"], "error: soakq: no such command 'nocommand' (see soakq --help)"),
]


@pytest.mark.parametrize(
    ("args", "line"), PARSER_ERRORS, ids=[" ".join(a) for a, _ in PARSER_ERRORS]
)
def test_parser_errors_in_plain_words(run_cli, clean_env: Path, args: list[str], line: str):
    proc = run_cli(*args, cwd=clean_env)
    assert assert_clean_user_error(proc) == line
    assert not BOX & set(proc.stderr)
    for jargon in ("Input should", "Value error", "Invalid value", "Usage"):
        assert jargon not in proc.stderr
    assert proc.stdout == ""
    assert not (clean_env / "artifacts").exists()


# --- help ------------------------------------------------------------------------------------


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def test_every_option_and_argument_has_help() -> None:
    missing = [
        f"{name} {param.name}"
        for name, cmd in _commands().items()
        for param in cmd.params  # type: ignore[attr-defined]
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert missing == []
    assert len(_commands()) >= 13


@pytest.mark.parametrize("command", sorted(_commands()))
def test_help_shows_every_help_text(run_cli, command: str) -> None:
    """Each parameter's help text reaches `--help` whole (markup would eat `[default: ...]`)."""
    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert not BOX & set(proc.stdout)
    shown = _flat(proc.stdout)
    for param in _commands()[command].params:  # type: ignore[attr-defined]
        assert _flat(param.help) in shown, (param.name, param.help)


def test_submit_help_shows_the_defaults(run_cli) -> None:
    shown = _flat(run_cli("submit", "--help").stdout)
    for default in (
        "[default: SOAK_MOCK_MODE or calm]",
        "[default: SOAK_MOCK_SEED or 42]",
        "[default: SOAK_SLEEP_SECONDS or 0]",
        "[default: SOAKQ_ARTIFACTS_DIR or ./artifacts]",
        "[default: KPI_GATE_MODE or soft]",
        "[default: ENABLE_GUARDS or on]",
        "[default: derived from the config]",
        "[default: 24]",
        "[default: default]",
        "[default: auto-tune]",
    ):
        assert default in shown, default
    assert not re.search(r"\s\.(\s|$)", shown), "a markup-eaten [default: ...] leaves ' .'"


def test_version(run_cli) -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"soakq {version('soakq')}\n"
    assert proc.stderr == ""


# --- a bad RUN_ID is named as the user typed it ----------------------------------------------


@pytest.mark.parametrize("command", ["status", "watch", "cancel", "export"])
@pytest.mark.parametrize("run_id", ["../x", "a/b", ".."])
def test_bad_run_id_argument_is_named_as_typed(run_cli, command: str, run_id: str) -> None:
    """Checked before anything else: also with a Redis URL that nothing answers on."""
    for env in ({}, {"SOAKQ_REDIS_URL": "redis://127.0.0.1:9/0"}):
        line = assert_clean_user_error(run_cli(command, run_id, env=env))
        assert line.startswith(f"error: {command}: run id {run_id!r}: use 1-128 letters"), line
        assert "--run-id" not in line and "SOAKQ_REDIS_URL" not in line
