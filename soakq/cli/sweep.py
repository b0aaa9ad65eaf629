"""`soakq sweep`: arm A against arm B over paired seeds (docs/sweeps.md)."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from soakq.checkpoint import DirectoryLock, held_or_refused
from soakq.cli.output import TerminalBar, err, out
from soakq.cli.params import PATH
from soakq.errors import ConfigError, ExitCode


def register(app: typer.Typer, handles_errors: Callable[[Any], Any]) -> None:
    @app.command()
    @handles_errors
    def sweep(
        profiles: Annotated[
            str, typer.Option(help="Comma-separated profiles, one cell row each.")
        ] = "aggressive",
        modes: Annotated[
            str, typer.Option(help="Comma-separated market regimes: calm, volatile, spike.")
        ] = "calm,volatile,spike",
        seeds: Annotated[
            str, typer.Option(help="Paired seeds, e.g. 1-20 or 1,4,7-9 (each runs in both arms).")
        ] = "1-10",
        iterations: Annotated[int, typer.Option(help="Iterations per run.")] = 24,
        compare: Annotated[
            str,
            typer.Option(
                help="What the two arms differ in: auto-tune (on/off), guards (on/off) or "
                "profile:NAME (each profile against NAME)."
            ),
        ] = "auto-tune",
        holdout_seeds: Annotated[
            str,
            typer.Option(
                help="Re-measure each run's final overrides, untuned, on these seeds "
                "(e.g. 101-105) [default: none]."
            ),
        ] = "",
        holdout_iterations: Annotated[
            int, typer.Option(help="Iterations of each hold-out run.")
        ] = 8,
        jobs: Annotated[
            int | None,
            typer.Option(
                help="Embedded: local processes [default: the CPUs this process may use]."
            ),
        ] = None,
        artifacts: Annotated[
            Path | None,
            typer.Option(
                parser=PATH,
                help="Artifacts root [default: SOAKQ_ARTIFACTS_DIR or ./artifacts].",
            ),
        ] = None,
        sweep_id: Annotated[
            str | None,
            typer.Option(help="Sweep id [default: derived from the sweep's config]."),
        ] = None,
        wait: Annotated[
            bool,
            typer.Option(
                "--wait/--no-wait",
                help="On the workers: follow the sweep to its end (--no-wait submits the arm "
                "runs and returns; the same command with --wait collects them later).",
            ),
        ] = True,
    ) -> None:
        """Run every (profile, mode, seed) cell in two arms that differ only in --compare, on the
        same seeds; write SWEEP.json, SWEEP.md and sweep.png under ARTIFACTS/sweeps/SWEEP_ID:
        pass rates with Wilson intervals, exact McNemar and Wilcoxon p-values, hold-out pass
        rates. Embedded on local processes, or on the workers with SOAKQ_REDIS_URL."""
        from soakq.cli.main import _artifacts, _settings
        from soakq.sweep import Plan, SweepConfig, parse_seeds

        settings = _settings()
        if jobs is not None and not 1 <= jobs <= 256:
            raise ConfigError(f"--jobs {jobs}: must be 1..256 processes")
        config = SweepConfig(
            profiles=tuple(p.strip() for p in profiles.split(",") if p.strip()),
            modes=tuple(m.strip() for m in modes.split(",") if m.strip()),
            seeds=parse_seeds(seeds, "--seeds"),
            iterations=iterations,
            compare=compare,
            holdout_seeds=parse_seeds(holdout_seeds, "--holdout-seeds") if holdout_seeds else (),
            holdout_iterations=holdout_iterations,
            sweep_id=sweep_id,
        )
        plan = Plan(config, settings)
        root = _artifacts(settings, artifacts, create=not settings.redis_url)
        directory = root / "sweeps" / plan.sweep_id
        if settings.redis_url:
            from soakq.cli.distributed import sweep_distributed

            raise typer.Exit(sweep_distributed(settings, plan, directory, wait=wait))
        from soakq.sweep.local import default_jobs

        n = jobs or default_jobs()
        directory.mkdir(parents=True, exist_ok=True)
        # Its runs' directories are cleared and rewritten: one process per sweep.
        refusal = f"sweep {plan.sweep_id}: another process is running it in {root} right now"
        with held_or_refused(DirectoryLock(directory), refusal):
            code = sweep_embedded(plan, directory, n)
        raise typer.Exit(code)


def sweep_embedded(plan: Any, directory: Path, jobs: int) -> int:
    """The sweep on a pool of ``jobs`` local processes. SIGTERM acts as Ctrl-C: the first of
    either interrupts the sweep (one line, exit 130; the same command continues it); later ones
    are ignored while the pool is stopped (its processes terminated, every wait bounded) and
    the command ends."""
    from soakq.sweep.local import LocalSubmitter

    signals = (signal.SIGINT, signal.SIGTERM)
    handlers = {sig: signal.getsignal(sig) for sig in signals}
    stopped: list[int] = []

    def ignore_signals() -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)

    def on_signal(signum: int, frame: Any) -> None:
        stopped.append(signum)
        ignore_signals()
        raise KeyboardInterrupt(signal.Signals(signum).name)

    submitter = LocalSubmitter(directory, jobs)
    try:
        for sig in signals:
            signal.signal(sig, on_signal)
        return run_sweep(plan, submitter, directory, {"execution": "embedded", "jobs": jobs})
    except KeyboardInterrupt:  # outside the runs (run_sweep says how many had finished)
        interrupted(plan, None)
        return int(ExitCode.INTERRUPTED)
    finally:
        ignore_signals()  # nothing cuts the pool's stop short
        try:
            submitter.close()
        finally:
            if not stopped:
                for sig, handler in handlers.items():
                    signal.signal(sig, handler)


def interrupted(plan: Any, done: int | None, *, distributed: bool = False) -> None:
    """The one line of an interrupted sweep (distributed: its submitted runs go on)."""
    after = f" after {done} runs" if done is not None else ""
    going_on = "; its submitted runs go on on the workers" if distributed else ""
    err.print(
        f"sweep {plan.sweep_id}: interrupted{after}{going_on}; the same command continues it "
        "(finished runs are not run again)",
        markup=False,
    )


def run_sweep(plan: Any, submitter: Any, directory: Path, runtime: dict[str, Any]) -> int:
    """Execute the plan with a progress view, write the sweep's files, print the comparisons.
    An interrupt (KeyboardInterrupt) while the runs go: one line, exit 130."""
    from soakq.runner import iso
    from soakq.sweep import execute, sweep_document
    from soakq.sweep.report import write_sweep

    total = plan.total_runs
    started = time.time()
    done = [0]

    def progress(run: Any, facts: Any, n: int, of: int) -> None:
        done[0] = n
        bar.update(run, facts, n, of)

    try:  # from the first line to the last file, an interrupt is said (typer: a silent 130)
        print(
            f"sweep {plan.sweep_id}: {total} runs ({len(plan.arm_runs())} in two arms"
            f"{', the rest hold-out' if plan.config.holdout_seeds else ''}), "
            f"compare {plan.config.compare} ({runtime['execution']})",
            flush=True,
        )
        with SweepProgress(total) as bar:
            facts = execute(plan, submitter, progress=progress)
        finished = time.time()
        runtime = {
            **runtime,
            "finished_at": iso(finished),
            "started_at": iso(started),
            "wall_s": round(finished - started, 3),
        }
        doc = sweep_document(plan, facts, runtime)
        directory.mkdir(parents=True, exist_ok=True)
        write_sweep(directory, doc)  # atomic writes: a file is whole or absent
    except KeyboardInterrupt:
        interrupted(plan, done[0], distributed=runtime["execution"] == "distributed")
        return int(ExitCode.INTERRUPTED)
    for cmp in doc["comparisons"]:
        print(comparison_line(doc, cmp))
    print(f"artifacts: {directory} (SWEEP.json, SWEEP.md, sweep.png)")
    return 0


def comparison_line(doc: dict[str, Any], cmp: dict[str, Any]) -> str:
    cells = {(c["profile"], c["mode"], c["arm"]): c for c in doc["cells"]}
    a, b = (cells[(cmp["profile"], cmp["mode"], arm)] for arm in cmp["arms"])

    def rate(c: dict[str, Any]) -> str:
        return (
            f"{c['arm']} {c['passed']}/{c['runs']} "
            f"[{100 * c['wilson_low']:.0f}-{100 * c['wilson_high']:.0f} %]"
        )

    line = (
        f"{cmp['profile']} {cmp['mode']}: {rate(a)} vs {rate(b)}; "
        f"McNemar p={cmp['mcnemar_p']:.4g}, Wilcoxon p="
        f"{'-' if cmp['wilcoxon_p'] is None else format(cmp['wilcoxon_p'], '.4g')}"
    )
    if cmp["holdout_pass_rate_diff"] is not None:
        line += (
            f"; hold-out {a['holdout_passed']}/{a['holdout_runs']} vs "
            f"{b['holdout_passed']}/{b['holdout_runs']} "
            f"({100 * cmp['holdout_pass_rate_diff']:+.0f} pt, "
            f"Fisher p={cmp['holdout_fisher_p']:.4g})"
        )
    return line


class SweepProgress(TerminalBar):
    """A progress bar over runs on a terminal; a line per finished run otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._bar = (
            Progress(BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=out)
            if sys.stdout.isatty()
            else None
        )
        self._task = self._bar.add_task("runs", total=total) if self._bar else None

    def update(self, run: Any, facts: Any, done: int, total: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total)
            return
        print(f"run {done}/{total} {run.run_id}: {facts.verdict}", flush=True)
