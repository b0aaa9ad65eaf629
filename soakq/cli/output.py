"""What the CLI shows: progress, one-line iteration reports, the closing verdict."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from soakq.thresholds import fmt_num

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def iteration_line(i: int, total: int, doc: Mapping[str, Any]) -> str:
    s, t = doc["summary"], doc["tuning"]
    kpis = " ".join(
        f"{k}={fmt_num(s[k]) if s.get(k) is not None else 'n/a'}"
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


class RunProgress:
    """A progress bar on a terminal, plain lines otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.tty = sys.stdout.isatty()
        self._bar: Progress | None = None
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

    def __enter__(self) -> RunProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, i: int, doc: Mapping[str, Any]) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=i, verdict=doc["summary"]["kpi_verdict"])
            self._bar.console.print(iteration_line(i, self.total, doc))
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
