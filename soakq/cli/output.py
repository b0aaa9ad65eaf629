"""What the CLI shows: progress, one-line iteration reports, the closing verdict."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, Self

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def iteration_line(i: int, total: int, doc: Mapping[str, Any]) -> str:
    s, t = doc["summary"], doc["tuning"]
    # Four decimals for every KPI, trailing zeros kept, so the columns line up.
    kpis = " ".join(
        f"{k}={s[k]:.4f}" if s.get(k) is not None else f"{k}=n/a"
        for k in ("net_bps", "risk_ratio", "maker_taker_ratio", "p95_latency_ms")
    )
    extra = []
    if t["applied_deltas"]:
        extra.append("applied " + ",".join(sorted(t["applied_deltas"])))
    if t["suppressed"]:
        extra.append(
            "suppressed " + ",".join(f"{k}:{v}" for k, v in sorted(t["suppressed"].items()))
        )
    if s["freeze_active"]:
        extra.append("frozen")
    tail = f" [{'; '.join(extra)}]" if extra else ""
    return f"iteration {i}/{total} {s['kpi_verdict']:<4} {kpis}{tail}"


class TerminalBar:
    """A rich progress bar shown while the ``with`` block runs, on a terminal only
    (``_bar`` None otherwise: the subclass prints plain lines)."""

    _bar: Progress | None = None

    def __enter__(self) -> Self:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


class RunProgress(TerminalBar):
    """A progress bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.tty = sys.stdout.isatty()
        if self.tty:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[verdict]}"),
                TimeElapsedColumn(),
                console=out,
            )
            self._task = self._bar.add_task(label, total=total, verdict="")

    def update(self, i: int, doc: Mapping[str, Any]) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=i, verdict=doc["summary"]["kpi_verdict"])
            # markup=False: "[applied ...; suppressed ...]" and "[frozen]" are text, not markup
            self._bar.console.print(iteration_line(i, self.total, doc), markup=False)
        else:
            print(iteration_line(i, self.total, doc), flush=True)


def verdict_lines(
    record: Mapping[str, Any],
    final: Mapping[str, Any] | None,
    gate: Mapping[str, Any] | None,
    where: str | None,
) -> list[str]:
    o = record.get("outcome", {})
    lines = [
        f"run {record['run_id']}: {record['status']} "
        f"({o.get('iterations_completed', 0)}/{o.get('iterations_planned', '?')} iterations)"
    ]
    if o.get("stop_reason"):
        lines.append(f"stopped: {o['stop_reason']}: {o.get('detail', '')}")
    if final is not None:
        run = final.get("run", {})
        v = run.get("kpi_verdicts", {})
        lines.append(
            f"KPI verdicts: OK {v.get('OK', 0)}, WARN {v.get('WARN', 0)}, FAIL {v.get('FAIL', 0)}; "
            f"applied changes {run.get('applied_changes', 0)}; "
            f"suppressed {run.get('suppressed_deltas', 0)}"
        )
        s = final["summary"]
        if s.get("freeze_active"):
            lines.append(f"frozen: {s['freeze_reason']} (signature {s['signature_hash'][:12]})")
        else:
            lines.append("not frozen")
    if gate is not None:
        lines.extend(gate_lines(gate))
    if where:
        lines.append(f"artifacts: {where}")
    return lines


def gate_lines(gate: Mapping[str, Any]) -> list[str]:
    """The run-level release gate in a few lines: verdict, window, why; mock runs say so."""
    window = gate.get("window") or {}
    its = window.get("iterations") or []
    head = f"release gate: {gate.get('verdict')}"
    if its:
        head += f" (window: iterations {its[0]}-{its[-1]}, n={len(its)})"
    lines = [head, *(f"  - {r}" for r in gate.get("reasons") or [])]
    if gate.get("mock"):
        lines.append(gate.get("mock_note") or "mock data: not a production verdict")
    return lines


def run_line(spec: Any, execution: str) -> str:
    """The first line of a run: what it soaks, and how."""
    head = (
        f"run {spec.run_id}: {spec.iterations} iterations x {len(spec.symbols)} symbols, "
        f"profile {spec.profile}, source {spec.source}"
    )
    if spec.live:
        return (
            f"{head}, live bot {spec.bot_name} ({spec.bot_dir}), window {spec.window_s:g} s "
            f"({execution})"
        )
    if spec.mock:
        return f"{head}, mode {spec.mode}, seed {spec.seed} ({execution})"
    return f"{head} ({execution})"


# --- tables: `soakq runs`, `soakq profiles` ----------------------------------------------------

# One token per heading, like every cell: `awk '{print $5}'` is the status column.
RUN_COLUMNS = ("run_id", "started_utc", "profile", "mode", "status", "iterations", "release_gate")
NONE = "-"  # an empty cell: a run without a release gate (yet), a record without a timestamp


def _utc(text: Any) -> str:
    """``2024-06-02T00:00:00Z`` from a record's ISO timestamp (``runner.iso``), to the second."""
    if not isinstance(text, str) or len(text) < 19:
        return NONE
    return text[:19] + "Z"


def run_row(doc: Mapping[str, Any], *, done: int | None = None) -> tuple[str, ...]:
    """One row of `soakq runs` (``RUN_COLUMNS``) from a run record: a run directory's RUN.json
    (the spec under ``config``) or the Redis record (under ``spec``). ``done``: iterations
    finished, when the caller knows better than the record's outcome (a run still going).
    The status is shown as the record has it, whatever it is."""
    spec = doc.get("config") or doc.get("spec") or {}
    outcome = doc.get("outcome") or {}
    runtime = doc.get("runtime") or {}
    if spec.get("bot_dir"):
        mode = "live"
    elif spec.get("source") == "file":
        mode = "file"
    else:
        mode = str(spec.get("mode") or NONE)
    if done is None:
        done = outcome.get("iterations_completed", 0)
    planned = outcome.get("iterations_planned", spec.get("iterations", "?"))
    return (
        str(doc.get("run_id", NONE)),
        _utc(runtime.get("submitted_at") or runtime.get("started_at")),
        str(spec.get("profile") or NONE),
        mode,
        str(doc.get("status") or NONE),
        f"{done}/{planned}",
        str(outcome.get("release_gate") or NONE),
    )


def table_text(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    tty: bool,
    right: Sequence[str] = (),
) -> str:
    """A table as text, one row per line however wide (never wrapped or cut, so scripts can
    split it): ruled on a terminal, plain aligned columns otherwise (no box, no colour)."""
    table = Table(
        box=box.SIMPLE_HEAD if tty else None,
        show_edge=False,
        header_style="bold" if tty else "",
        pad_edge=False,
    )
    for name in columns:
        table.add_column(name, no_wrap=True, justify="right" if name in right else "left")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: a "[...]" in a cell is not markup
    wide = Console(width=100_000, color_system="auto" if tty else None, force_terminal=tty)
    width = Measurement.get(wide, wide.options, table).maximum
    console = Console(
        width=width,
        color_system="auto" if tty else None,
        force_terminal=tty,
        highlight=False,
    )
    with console.capture() as captured:
        console.print(table)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[str] = ()
) -> None:
    print(table_text(columns, rows, tty=sys.stdout.isatty(), right=right), flush=True)
