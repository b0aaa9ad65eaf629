"""What the command line says (issue #11, "a CLI that speaks one line"): parser errors in plain
words, help that shows every default and describes every option, `--version`. Every check runs
the real console script."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import typer.main
from soakq_testkit import assert_clean_user_error, make_spec

from soakq.cli.main import app
from soakq.cli.output import RUN_COLUMNS, run_row, table_text

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
    (["prune", "--older-than", "-1"], "error: --older-than: '-1' is out of range: use 0 to 36500"),
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


# --- tables ----------------------------------------------------------------------------------

RUN_JSON = {
    "config": {"profile": "steady_safe", "mode": "volatile", "source": "book", "iterations": 24},
    "outcome": {"iterations_completed": 24, "iterations_planned": 24, "release_gate": "PASSED"},
    "run_id": "weekly-1",
    "runtime": {"submitted_at": "2024-06-02T00:00:01.500000Z"},
    "status": "succeeded",
}


def test_run_row_of_a_run_json() -> None:
    assert run_row(RUN_JSON) == (
        "weekly-1",
        "2024-06-02T00:00:01Z",
        "steady_safe",
        "volatile",
        "succeeded",
        "24/24",
        "PASSED",
    )
    assert len(run_row(RUN_JSON)) == len(RUN_COLUMNS)


def test_run_row_of_a_redis_record_still_going() -> None:
    """The Redis record has the spec under `spec` and no outcome until it ends; the caller
    passes how far it got. Without a release gate the cell is '-', never 'None'."""
    record = {
        "outcome": {},
        "run_id": "r-2",
        "runtime": {"execution": "distributed", "submitted_at": "2024-06-03T10:20:30.000001Z"},
        "spec": {"profile": "aggressive", "mode": "spike", "source": "kpi", "iterations": 8},
        "status": "running",
    }
    assert run_row(record, done=3) == (
        "r-2",
        "2024-06-03T10:20:30Z",
        "aggressive",
        "spike",
        "running",
        "3/8",
        "-",
    )
    assert run_row(dict(record, outcome={"release_gate": None}))[5:] == ("0/8", "-")


@pytest.mark.parametrize(
    ("spec", "mode"),
    [
        ({"source": "file", "mode": None, "bot_dir": "/srv/bot"}, "live"),
        ({"source": "file", "mode": None, "bot_dir": None, "report_dir": "/r"}, "file"),
        ({"source": "kpi", "mode": "calm"}, "calm"),
        ({"source": "book"}, "-"),
    ],
)
def test_run_row_mode_column(spec: dict[str, object], mode: str) -> None:
    assert run_row(dict(RUN_JSON, config=spec))[3] == mode


def test_run_row_shows_any_status_and_missing_fields_as_dashes() -> None:
    """The status is the record's own string (a status this version does not know included);
    a record without timestamps or profile has '-' there."""
    row = run_row({"run_id": "x", "status": "interrupted", "config": {"iterations": 5}})
    assert row == ("x", "-", "-", "-", "interrupted", "0/5", "-")
    started = {"started_at": "2024-01-01T01:02:03.000000Z"}
    assert run_row(dict(RUN_JSON, runtime=started))[1] == "2024-01-01T01:02:03Z"


def test_table_text_plain_when_not_a_terminal() -> None:
    long_id = "x" * 128
    partial = {"iterations_completed": 3, "iterations_planned": 24}
    rows = [run_row(RUN_JSON), run_row(dict(RUN_JSON, run_id=long_id, outcome=partial))]
    text = table_text(RUN_COLUMNS, rows, tty=False, right=("iterations",))
    lines = text.splitlines()
    assert len(lines) == 3  # a heading and one line per run: a 128-char id is not wrapped
    assert [ln.split() for ln in lines] == [list(RUN_COLUMNS), list(rows[0]), list(rows[1])]
    assert "\x1b" not in text and not BOX & set(text)
    assert all(ln == ln.rstrip() for ln in lines)
    assert lines[1].index("24/24") + 5 == lines[2].index("3/24") + 4  # right-aligned column


def test_table_cells_are_text_not_markup() -> None:
    text = table_text(("a", "b"), [("[bold]x", "[frozen]")], tty=False)
    assert text.splitlines()[1].split() == ["[bold]x", "[frozen]"]


def test_table_text_ruled_on_a_terminal() -> None:
    text = table_text(RUN_COLUMNS, [run_row(RUN_JSON)], tty=True)
    assert "\x1b[1m" in text  # bold heading
    assert "─" in text.splitlines()[1]
    assert "weekly-1" in text.splitlines()[2]


@pytest.mark.redis
def test_distributed_runs_table_and_status_without_gate(run_cli, redis_url: str) -> None:
    """A queued run in Redis (no worker): `runs` lists it as a table row like a local run,
    `status` says 'release gate none', never 'None'."""
    from soakq.runner import start_run
    from workers.store import RedisStore

    spec = make_spec(run_id="queued-1", mode="spike", iterations=8, profile="aggressive")
    store = RedisStore.from_url(redis_url)
    try:
        assert start_run(store, spec, now=1_717_286_400.25, mode="distributed")
    finally:
        store.close()
    env = {"SOAKQ_REDIS_URL": redis_url}
    listing = run_cli("runs", env=env)
    assert listing.returncode == 0, listing.stderr
    assert [ln.split() for ln in listing.stdout.splitlines()] == [
        list(RUN_COLUMNS),
        ["queued-1", "2024-06-02T00:00:00Z", "aggressive", "spike", "queued", "0/8", "-"],
    ]
    status = run_cli("status", "queued-1", env=env)
    assert status.returncode == 0, status.stderr
    # No worker serves this Redis: status says so after the counts (docs/architecture.md).
    assert status.stdout.splitlines()[0] == (
        "run queued-1: queued (0/8 iterations, release gate none); "
        "waiting for a worker (none consumes 'soakq')"
    )
    assert "None" not in status.stdout + listing.stdout


def test_local_status_without_gate_says_none(run_cli, clean_env: Path) -> None:
    run_dir = clean_env / "soak" / "weekly-1"
    run_dir.mkdir(parents=True)
    doc = dict(RUN_JSON, status="running", outcome={"iterations_completed": 2})
    (run_dir / "RUN.json").write_text(json.dumps(doc))
    proc = run_cli("status", "weekly-1", "--artifacts", str(clean_env))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "run weekly-1: running (2/24 iterations, release gate none)\n"
    listing = run_cli("runs", "--artifacts", str(clean_env))
    assert listing.stdout.splitlines()[1].split()[-3:] == ["running", "2/24", "-"]


# --- Redis trouble: one line naming SOAKQ_REDIS_URL, exit 2, for every command that uses it ----

REDIS_COMMANDS = [
    ["submit", "--source", "kpi", "--iterations", "1"],
    ["status", "some-run"],
    ["watch", "some-run"],
    ["runs"],
    ["cancel", "some-run"],
    ["export", "some-run"],
    ["prune"],
    ["worker", "--pool", "solo"],
]


def _closed_port() -> int:
    """A loopback port nothing listens on (free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("args", REDIS_COMMANDS, ids=[a[0] for a in REDIS_COMMANDS])
def test_unreachable_redis_is_one_line_exit_2(run_cli, clean_env: Path, args: list[str]):
    """`soakq worker` included: it checks Redis first instead of letting Celery retry for ever."""
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    started = time.monotonic()
    proc = run_cli(*args, env={"SOAKQ_REDIS_URL": url}, cwd=clean_env)
    assert time.monotonic() - started < 30
    line = assert_clean_user_error(proc, f"SOAKQ_REDIS_URL={url}", "is not reachable")
    assert line.startswith("error: Redis at SOAKQ_REDIS_URL=")
    assert proc.stdout == "" and "celery" not in proc.stderr.lower()
    assert not (clean_env / "artifacts").exists()


MALFORMED_URLS = [
    ("notaurl", "notaurl"),
    ("redis://127.0.0.1:notaport/0", "notaport"),
    ("redis://:secret@127.0.0.1:99999/0", "redis://:***@127.0.0.1:99999/0"),
]


@pytest.mark.parametrize("args", REDIS_COMMANDS, ids=[a[0] for a in REDIS_COMMANDS])
@pytest.mark.parametrize(("url", "shown"), MALFORMED_URLS, ids=["scheme", "port", "range"])
def test_malformed_redis_url_is_one_line_exit_2(
    run_cli, clean_env: Path, args: list[str], url: str, shown: str
) -> None:
    proc = run_cli(*args, env={"SOAKQ_REDIS_URL": url}, cwd=clean_env)
    line = assert_clean_user_error(proc, "SOAKQ_REDIS_URL=", shown, "is not a Redis URL")
    assert "redis://[:password@]host:port/db" in line
    assert "secret" not in proc.stderr and proc.stdout == ""


# --- the progress bar on a terminal keeps each iteration's annotations --------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _run_on_a_pty(argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> str:
    """Run ``argv`` with its stdout on a pseudo-terminal; the text it wrote, escapes removed."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, env=env, cwd=cwd
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    text = b"".join(chunks).decode("utf-8", "replace")
    return ANSI.sub("", text).replace("\r", "\n")


def test_progress_bar_keeps_the_annotations(soakq_exe: str, clean_env: Path) -> None:
    """On a terminal the bar runs, and above it every iteration's line is exactly the plain
    line, with its `[applied ...; suppressed ...]` annotations (rich markup must not eat them)."""
    from soakq.cli.output import iteration_line
    from soakq.jsonio import read_json

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(clean_env),
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "COLUMNS": "400",
        "PYTHONDONTWRITEBYTECODE": "1",
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
    }
    argv = [soakq_exe, "submit", "--profile", "aggressive", "--mode", "volatile"]
    argv += ["--iterations", "8", "--artifacts", str(clean_env / "art")]
    text = _run_on_a_pty(argv, env, clean_env, timeout_s=90)
    lines = {ln.strip() for ln in text.splitlines()}
    run_dir = clean_env / "art" / "soak" / "latest"
    expected = [
        iteration_line(i, 8, read_json(run_dir / f"ITER_SUMMARY_{i}.json")) for i in range(1, 9)
    ]
    for line in expected:
        assert line in lines, (line, text[-3000:])
    assert sum("[applied " in ln for ln in expected) >= 4
    assert sum("; suppressed " in ln for ln in expected) >= 2
    assert "━" in text  # it was the bar, not the plain lines
    assert any(ln.startswith("KPI verdicts: ") for ln in lines)
    assert any(ln.startswith("release gate: ") for ln in lines)


@pytest.mark.redis
@pytest.mark.workers
def test_worker_starts_when_redis_answers(soakq_exe: str, redis_url: str, clean_env: Path):
    """The reachability check does not stand in the way of a Redis that answers."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(clean_env),
        "LANG": "C.UTF-8",
        "SOAKQ_REDIS_URL": redis_url,
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
    }
    proc = subprocess.Popen(
        [soakq_exe, "worker", "--pool", "solo", "-n", "uxcheck@%h"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=clean_env,
    )
    assert proc.stdout is not None
    seen: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    break
                seen.append(line)
                if b" ready." in line:
                    break
            elif proc.poll() is not None:
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert any(b"uxcheck@" in ln and b" ready." in ln for ln in seen), b"".join(seen)[-2000:]


@pytest.mark.parametrize(
    ("args", "env", "needles"),
    [
        # `latest` is the link to the newest run: a run by that name would overwrite another's.
        (["submit", "--run-id", "latest"], {}, ["--run-id 'latest'", "reserved"]),
        (["runs"], {"SOAKQ_REDIS_URL": "redis://127.0.0.1:1/abc"}, ["SOAKQ_REDIS_URL", "'abc'"]),
        (
            ["runs"],
            {"SOAKQ_REDIS_URL": "redis://127.0.0.1:1/0", "SOAKQ_SOCKET_TIMEOUT_S": "inf"},
            ["SOAKQ_SOCKET_TIMEOUT_S"],
        ),
        (
            ["runs"],
            {"SOAKQ_REDIS_URL": "redis://127.0.0.1:1/0", "SOAKQ_SOCKET_TIMEOUT_S": "1e9"},
            ["SOAKQ_SOCKET_TIMEOUT_S", "300"],
        ),
        (["submit"], {"SOAKQ_MOCK_MODE": "wild"}, ["environment SOAKQ_MOCK_MODE='wild'"]),
        (["submit"], {"SOAK_MOCK_MODE": "wild"}, ["environment SOAK_MOCK_MODE='wild'"]),
        (
            ["runs"],
            {"SOAKQ_REDIS_URL": "redis://:hunter2@127.0.0.1:1/x"},
            ["redis://:***@127.0.0.1:1/x"],
        ),
        # An empty path is the current directory: it wrote the handshake into it.
        (["submit", "--iterations", "1"], {"SOAKQ_BOT_DIR": ""}, ["SOAKQ_BOT_DIR", "empty path"]),
        (["runs"], {"SOAKQ_ARTIFACTS_DIR": ""}, ["SOAKQ_ARTIFACTS_DIR", "empty path"]),
        (["submit", "--bot-dir", ""], {}, ["--bot-dir", "empty path"]),
        (["submit", "--artifacts="], {}, ["--artifacts", "empty path"]),
        (["freeze", "--input", "x", "--output", ""], {}, ["--output", "empty path"]),
        (["gate", ""], {}, ["PATH", "empty path"]),
        # Two names of one setting that disagree: neither silently wins.
        (
            ["submit"],
            {"SOAK_MOCK_MODE": "calm", "SOAKQ_MOCK_MODE": "spike"},
            ["SOAK_MOCK_MODE='calm' and SOAKQ_MOCK_MODE='spike' disagree"],
        ),
        # A flag nothing reads is refused, not recorded (it changed the run id).
        (["submit", "--report-dir", "x"], {}, ["--report-dir", "--source book reads no reports"]),
        (
            ["submit", "--source", "kpi", "--report-dir", "x"],
            {},
            ["--report-dir", "--source kpi reads no reports"],
        ),
        # A rule across settings names the variables, not the fields.
        (
            ["submit", "--iterations", "1"],
            {"SOAKQ_REDIS_URL": "redis://127.0.0.1:1/0", "SOAKQ_VISIBILITY_TIMEOUT_S": "10"},
            ["environment: SOAKQ_VISIBILITY_TIMEOUT_S (10 s) must exceed", "TIME_LIMIT_S"],
        ),
    ],
)
def test_settings_and_ids_that_cannot_work_are_one_line(
    run_cli, clean_env: Path, args: list[str], env: dict[str, str], needles: list[str]
) -> None:
    proc = run_cli(*args, env=env, cwd=clean_env)
    line = assert_clean_user_error(proc, *needles)
    assert "hunter2" not in line


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["worker", "-n", "bad@%h"], {"SOAKQ_MAX_REDRIVES": "abc"}),
        (["beat", "-S", "workers.beat_scheduler:Scheduler"], {"SOAKQ_TICK_INTERVAL_S": "abc"}),
    ],
)
def test_celery_commands_say_a_bad_setting_in_one_line(
    clean_env: Path, args: list[str], env: dict[str, str]
) -> None:
    # The README's `celery -A workers.app worker|beat` import the app before soakq can speak.
    full = {**os.environ, **env, "SOAKQ_REDIS_URL": "redis://127.0.0.1:1/0"}
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", *args],
        env=full,
        cwd=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clean_user_error(proc, f"environment {next(iter(env))}")
