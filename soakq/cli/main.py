"""`soakq` entry point: one sub-command per action; user errors exit 2 without a traceback."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer

from soakq.cli.output import err, out
from soakq.cli.params import PATH
from soakq.cli.signals import sigterm_as_ctrl_c
from soakq.errors import ExitCode, InputError, SoakqError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: markup would eat the "[default: ...]" in help texts
    help="soakq: soak-test orchestrator for a market-making bot's runtime parameters.",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("soakq")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from soakq import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        print(f"soakq {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print soakq's version and exit.",
        ),
    ] = False,
) -> None:
    """soakq: soak-test orchestrator for a market-making bot's runtime parameters."""


class ModeOpt(StrEnum):
    calm = "calm"
    volatile = "volatile"
    spike = "spike"


class SourceOpt(StrEnum):
    book = "book"
    kpi = "kpi"
    file = "file"


class GateOpt(StrEnum):
    soft = "soft"
    hard = "hard"


def handles_errors(fn: F) -> F:
    """Turn soakq errors into a one-line message and their exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SoakqError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(int(exc.exit_code)) from None
        except BrokenPipeError:
            # Whoever read our output went away (`soakq submit | head`): not bad input, and
            # nothing left to print to. The run did not finish under our eyes: exit 1.
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the exit flush
            raise typer.Exit(int(ExitCode.FAILED)) from None
        except PermissionError as exc:
            err.print(f"error: permission denied: {exc.filename}", markup=False)
            raise typer.Exit(int(ExitCode.BAD_INPUT)) from None
        except OSError as exc:  # a path we were given is unusable (a file, a directory, ...)
            path = exc.filename2 or exc.filename  # a rename names the target second
            where = f"{path}: " if path else ""
            err.print(f"error: {where}{exc.strerror or exc}", markup=False)
            raise typer.Exit(int(ExitCode.BAD_INPUT)) from None

    return wrapper  # type: ignore[return-value]


def _settings() -> Any:
    from soakq.settings import load_settings

    return load_settings()


def _artifacts(settings: Any, artifacts: Path | None, *, create: bool = False) -> Path:
    """The artifacts root: ``--artifacts``, else SOAKQ_ARTIFACTS_DIR. ``create`` (the commands
    that write there) makes it now, so an unusable root is refused naming where it came from."""
    root = artifacts if artifacts is not None else Path(settings.artifacts_dir)
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            what = "--artifacts" if artifacts is not None else "SOAKQ_ARTIFACTS_DIR"
            why = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror or exc
            why = str(why)[:1].lower() + str(why)[1:]
            raise InputError(
                f"{what} {root}: cannot hold the artifacts ({why}); give a writable directory"
            ) from None
    return root


@app.command()
@handles_errors
def submit(
    profile: Annotated[
        str, typer.Option(help="Profile to start from (see `soakq profiles`).")
    ] = "default",
    iterations: Annotated[int, typer.Option(help="Number of iterations (1-10000).")] = 24,
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between iterations.  [default: SOAK_SLEEP_SECONDS or 0]"),
    ] = None,
    mode: Annotated[
        ModeOpt | None,
        typer.Option(help="Simulated market regime.  [default: SOAK_MOCK_MODE or calm]"),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the simulation.  [default: SOAK_MOCK_SEED or 42]", min=0, metavar="SEED"
        ),
    ] = None,
    source: Annotated[
        SourceOpt | None,
        typer.Option(
            help="Metric source: book (simulated order book), kpi (simulated KPIs) or file "
            "(recorded or live bot reports).  [default: file with --bot-dir, else "
            "SOAKQ_SOURCE, else book (file when USE_MOCK=0)]"
        ),
    ] = None,
    symbols: Annotated[
        str | None,
        typer.Option(help="Comma-separated symbols.  [default: the profile's symbols]"),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a parameter (repeatable).  [default: no override]",
        ),
    ] = None,
    kpi_gate: Annotated[
        GateOpt | None,
        typer.Option(
            help="soft: record verdicts; hard: a FAIL stops the run (exit 3).  "
            "[default: KPI_GATE_MODE or soft]"
        ),
    ] = None,
    guards: Annotated[
        bool | None,
        typer.Option(
            "--guards/--no-guards",
            help="Safety guards on the tuner's moves (docs/tuner.md).  "
            "[default: ENABLE_GUARDS or on]",
        ),
    ] = None,
    auto_tune: Annotated[
        bool,
        typer.Option(
            "--auto-tune/--no-auto-tune",
            help="Let the tuner change parameters between iterations (off: measure only).",
        ),
    ] = True,
    failure_limit: Annotated[
        int,
        typer.Option(
            help="With --kpi-gate hard: this many consecutive KPI FAILs stop the run (exit 3)."
        ),
    ] = 1,
    artifacts: Annotated[
        Path | None,
        typer.Option(
            parser=PATH,
            help="Artifacts root directory.  [default: SOAKQ_ARTIFACTS_DIR or ./artifacts]",
        ),
    ] = None,
    run_id: Annotated[
        str | None, typer.Option(help="Run id.  [default: derived from the config]")
    ] = None,
    wait: Annotated[
        bool | None,
        typer.Option(
            "--wait/--no-wait",
            help="Follow a distributed run to its end (an embedded run is always followed).  "
            "[default: no-wait]",
        ),
    ] = None,
    mock_sigma: Annotated[
        float | None,
        typer.Option(
            help="Volatility scale, 0.001-100.  [default: SOAK_MOCK_SIGMA, else 1]",
        ),
    ] = None,
    spike_prob: Annotated[
        float | None,
        typer.Option(
            help="Spike probability, 0-1.  "
            "[default: SOAK_MOCK_SPIKE_PROB, else the simulator's own (docs/simulator.md)]"
        ),
    ] = None,
    gap_bps: Annotated[
        float | None,
        typer.Option(
            help="Gap size, 0-10000 bp.  "
            "[default: SOAK_MOCK_GAP_BPS, else the simulator's own (docs/simulator.md)]"
        ),
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            parser=PATH,
            help="Replay recorded KPI_REPORT_<i>.json from DIR (no live bot).  "
            "[default: SOAKQ_REPORT_DIR]",
        ),
    ] = None,
    bot_dir: Annotated[
        Path | None,
        typer.Option(
            parser=PATH,
            help="Live bot directory: the handshake (docs/live-bot.md).  "
            "[default: SOAKQ_BOT_DIR, else no live bot]",
        ),
    ] = None,
    bot_name: Annotated[
        str | None,
        typer.Option(
            help="Names the bot's worker queue soakq.bot.NAME.  "
            "[default: SOAKQ_BOT_NAME, else the bot dir's name]"
        ),
    ] = None,
    report_path: Annotated[
        Path | None,
        typer.Option(
            parser=PATH,
            help="The bot's fixed report file (bots that do not stamp their reports).  "
            "[default: SOAKQ_REPORT_PATH, else stamped reports in the bot dir]",
        ),
    ] = None,
    report_map: Annotated[
        Path | None,
        typer.Option(
            parser=PATH,
            help="Report field map (JSON) over the built-in one.  [default: the built-in one]",
        ),
    ] = None,
    window: Annotated[
        float | None,
        typer.Option(help="Seconds the bot measures per iteration.  [default: 60]"),
    ] = None,
    report_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for the report after the window.  [default: 60]"),
    ] = None,
    consecutive_error_limit: Annotated[
        int | None,
        typer.Option(help="Live iterations in error in a row that fail the run.  [default: 3]"),
    ] = None,
) -> None:
    """Run a soak: embedded with no Redis configured, on the workers with SOAKQ_REDIS_URL."""
    from soakq.config import build_spec

    settings = _settings()
    spec = build_spec(
        settings,
        profile=profile,
        iterations=iterations,
        interval_s=interval,
        mode=mode.value if mode else None,
        seed=seed,
        source=source.value if source else None,
        symbols=symbols.split(",") if symbols is not None else None,
        sets=set_ or [],
        kpi_gate=kpi_gate.value if kpi_gate else None,
        guards=guards,
        auto_tune=auto_tune,
        failure_limit=failure_limit,
        run_id=run_id,
        sigma_scale=mock_sigma,
        spike_prob=spike_prob,
        gap_bps=gap_bps,
        report_dir=str(report_dir.resolve()) if report_dir else None,
        bot_dir=str(bot_dir.resolve()) if bot_dir else None,
        bot_name=bot_name,
        report_path=str(report_path.resolve()) if report_path else None,
        report_map=str(report_map) if report_map else None,
        window_s=window,
        report_timeout_s=report_timeout,
        consecutive_error_limit=consecutive_error_limit,
    )
    # Embedded, this process writes the run: an unusable root is refused before it starts.
    root = _artifacts(settings, artifacts, create=not settings.redis_url)
    if settings.redis_url:
        from soakq.cli.distributed import submit_distributed

        raise typer.Exit(
            submit_distributed(
                settings, spec, root, wait=bool(wait), explicit_id=run_id is not None
            )
        )
    raise typer.Exit(_submit_embedded(spec, root, explicit_id=run_id is not None))


@contextlib.contextmanager
def interruptible(run_id: str, root: Path) -> Iterator[None]:
    """SIGTERM acts as Ctrl-C; either leaves the run ``interrupted`` (the embedded driver
    records it) and ends the command with one line and exit 130 (docs/resume.md)."""

    try:
        with sigterm_as_ctrl_c():
            yield
    except KeyboardInterrupt:
        from soakq.checkpoint import local_run
        from soakq.jsonio import read_json

        directory = root / "soak" / run_id
        path = directory / "RUN.json"
        if path.exists():
            view = local_run(root, read_json(path))
            err.print(
                f"run {run_id}: {view.status} after {view.completed}/{view.planned} iterations"
                + (
                    f"; `soakq resume {run_id}` continues it"
                    if view.status == "interrupted"
                    else ""
                ),
                markup=False,
            )
        else:  # stopped before it started: nothing to resume, nothing left behind
            with contextlib.suppress(OSError):
                for leftover in directory.glob(".*"):
                    leftover.unlink()
                directory.rmdir()
            err.print(
                f"run {run_id}: interrupted before it started; nothing was kept", markup=False
            )
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _submit_embedded(spec: Any, root: Path, *, explicit_id: bool) -> int:
    """The run on the production tasks, served by a Celery worker inside this process."""
    from soakq.artifacts import run_dir
    from soakq.cli.output import RunProgress, run_line
    from soakq.engine import free_run_id
    from soakq.errors import ConfigError
    from workers.embedded import run_embedded_celery

    spec = free_run_id(spec, root, explicit_id)
    if spec.bot_dir is not None and not Path(spec.bot_dir).is_dir():
        raise ConfigError(f"--bot-dir {spec.bot_dir}: not a directory; create it or fix the path")
    # An unusable artifacts root is refused before the run's first line is printed.
    run_dir(root, spec.run_id).mkdir(parents=True, exist_ok=True)
    print(run_line(spec, "embedded"), flush=True)
    with interruptible(spec.run_id, root), RunProgress(spec.iterations, spec.run_id) as bar:
        record, directory = run_embedded_celery(spec, root, progress=bar.update)
    return embedded_verdict(record, directory)


def embedded_verdict(record: Any, directory: Path) -> int:
    """Print the closing lines of an embedded run; its exit code."""
    from soakq.cli.output import verdict_lines
    from soakq.documents import check_record
    from soakq.jsonio import read_json
    from soakq.runner import exit_code_of

    final_path = directory / "ITER_SUMMARY_final.json"
    gate_path = directory / "RELEASE_GATE.json"
    final = read_json(final_path) if final_path.exists() else None
    gate = read_json(gate_path) if gate_path.exists() else None
    for line in verdict_lines(record, final, gate, str(directory)):
        print(line)
    return exit_code_of(check_record(record, str(record.get("run_id"))))


@app.command()
@handles_errors
def gate(
    path: Annotated[
        Path,
        typer.Argument(
            parser=PATH,
            metavar="PATH",
            help="A run directory, or one ITER_SUMMARY_<i>.json file.",
        ),
    ],
) -> None:
    """Release gate: on a run directory its window (exit 0 PASSED, 1 FAILED, 4 INCONCLUSIVE);
    on one ITER_SUMMARY file its four KPIs (exit 0 / 1). Unusable input: exit 2."""
    from soakq.rules.release_gate import check_path

    where, result = check_path(path)
    print(f"release gate: {where}")
    for line in result.lines():
        print(line)
    raise typer.Exit(int(result.exit_code))


@app.command()
@handles_errors
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(parser=PATH, metavar="RUN_DIR", help="The run directory to report on."),
    ],
) -> None:
    """Write STEADY_TREND.md and trend.png for a run directory."""
    from soakq.report import report_from_dir

    written = report_from_dir(run_dir)
    for p in written:
        print(f"wrote {p}")


@app.command()
@handles_errors
def freeze(
    input_: Annotated[
        Path,
        typer.Option("--input", parser=PATH, help="Run directory, or its runtime_overrides.json."),
    ],
    output: Annotated[Path, typer.Option(parser=PATH, help="PRODUCTION_SNAPSHOT.json to write.")],
    profile: Annotated[
        str | None,
        typer.Option(help="Profile the overrides belong to.  [default: the run's]"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Freeze despite a refusal (needs --reason).")
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(help="Why the refusal is overridden (recorded in the snapshot)."),
    ] = None,
) -> None:
    """Freeze a run's overrides into a production snapshot. Refused (exit 2, nothing written)
    unless the run's release gate PASSED on them under that profile, or --force --reason."""
    from soakq.snapshot import freeze_snapshot

    snap = freeze_snapshot(input_, output, profile=profile, force=force, reason=reason)
    gate = (snap.get("release_gate") or {}).get("verdict", "none")
    forced = " FORCED: " + str(snap["force_reason"]) if snap["forced"] else ""
    print(
        f"wrote {output} (profile {snap['profile']}, signature {snap['signature_hash']}, "
        f"release gate {gate}){forced}"
    )
    if snap["mock"]:
        print(
            f"NOTE: mock data (source={snap['source']}, mode={snap['mock_mode']}, "
            f"seed={snap['mock_seed']}): not a production verdict"
        )


@app.command()
@handles_errors
def config(
    profile: Annotated[
        str | None,
        typer.Option(
            help="Profile layer over the built-in defaults (see `soakq profiles`).  "
            "[default: no profile layer]"
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a parameter on top of the profile and MM_RUNTIME_OVERRIDES_JSON "
            "(repeatable).  [default: no override]",
        ),
    ] = None,
) -> None:
    """Print the effective overrides with `_sources`, as JSON."""
    from soakq.config import effective_config
    from soakq.jsonio import dumps

    settings = _settings()
    doc = effective_config(profile, settings.runtime_overrides_json, set_ or [])
    out.print(dumps(doc), end="", markup=False)


@app.command()
@handles_errors
def profiles() -> None:
    """List the profiles and their overrides."""
    from soakq.cli.output import print_table
    from soakq.params import KEYS, fmt
    from soakq.profiles import load_profile, profile_names

    short = {
        "base_spread_bps_delta": "spread",
        "min_interval_ms": "min_int",
        "replace_rate_per_min": "repl_rate",
        "tail_age_ms": "tail_age",
        "impact_cap_ratio": "impact_cap",
        "max_delta_ratio": "max_delta",
    }
    rows = []
    for name in profile_names():
        p = load_profile(name)
        rows.append((name, *(fmt(k, p.overrides[k]) for k in KEYS), p.description))
    heads = ("profile", *(short[k] for k in KEYS), "description")
    print_table(heads, rows, right=tuple(short.values()))


@app.command()
@handles_errors
def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, solo or threads.")] = "prefork",
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Node name (w1@%h).  [default: celery@HOSTNAME]"),
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues", "-Q", help="Queues to consume, e.g. soakq.bot.NAME.  [default: soakq]"
        ),
    ] = None,
) -> None:
    """Run a Celery worker for distributed runs (same as `celery -A workers.app worker`)."""
    from soakq.cli.distributed import check_reachable
    from soakq.errors import UserError

    settings = _settings()
    if not settings.redis_url:
        raise UserError(
            "a worker serves distributed runs: set SOAKQ_REDIS_URL "
            "(embedded runs bring their own worker)"
        )
    check_reachable(settings)  # bounded by SOAKQ_SOCKET_TIMEOUT_S, before Celery retries
    from workers.app import app as celery_app

    argv = ["worker", f"--pool={pool}", f"--concurrency={concurrency}", f"--loglevel={loglevel}"]
    if name:
        argv.append(f"--hostname={name}")
    if queues:
        argv.append(f"--queues={queues}")
    celery_app.worker_main(argv)


def _register_run_commands() -> None:
    from soakq.cli import resume as resume_cmd
    from soakq.cli import runs as run_cmds
    from soakq.cli import sweep as sweep_cmd

    run_cmds.register(app, handles_errors)
    resume_cmd.register(app, handles_errors)
    sweep_cmd.register(app, handles_errors)


_register_run_commands()


# The parser's errors: click's, and typer's own copies of them (typer >= 0.20 vendors click).
_PARSE_ERRORS = tuple(
    {click.ClickException, getattr(typer, "TyperException", click.ClickException)}
)
_ABORTS = tuple({click.exceptions.Abort, typer.Abort})


def main() -> None:
    """Console-script entry point: every error is one line on stderr, the parser's included."""
    if len(sys.argv) <= 1:
        app()  # `soakq` alone: the help, as typer prints it
        return
    try:
        code = app(standalone_mode=False)
    except _PARSE_ERRORS as exc:
        from soakq.cli.usage import usage_line

        err.print(f"error: {usage_line(exc, sys.argv[1:])}", markup=False)
        raise SystemExit(int(getattr(exc, "exit_code", ExitCode.BAD_INPUT))) from None
    except _ABORTS:
        err.print("error: aborted", markup=False)
        raise SystemExit(int(ExitCode.FAILED)) from None
    raise SystemExit(code if isinstance(code, int) else 0)
