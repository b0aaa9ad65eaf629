"""The trend report's "previous runs" comparison: TREND_HISTORY.md and trend_history.png.

This run's release-window means next to those of the last ``HISTORY_RUNS`` earlier runs of the same
profile, mode and source found in the same artifacts root (``<root>/soak/*/RUN.json``).

Determinism (docs/report.md): what these two files say depends on which other runs the artifacts
root holds, not only on this run's configuration and seed, so they are kept **out** of
STEADY_TREND.md and trend.png (which stay byte-identical for the same config and seed) and the
tests that compare two run directories skip them (``HISTORY_FILES``). The selection itself is
deterministic for one root: runs ordered by their start time in ``runtime`` (``started_at``, else
``submitted_at``), then by run id; a run without a readable time sorts first, by run id.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soakq.errors import InputError
from soakq.jsonio import is_finite_number, read_json
from soakq.report.markdown import HISTORY_MD, HISTORY_PNG
from soakq.report.model import Trend, fmt_kpi, kpi_unit
from soakq.rules.thresholds import release_thresholds
from soakq.states import TERMINAL

HISTORY_RUNS = 5
HISTORY_FILES = (HISTORY_MD, HISTORY_PNG)
LATEST = "latest"  # the symlink soakq/artifacts.py keeps; never a run of its own


@dataclass(frozen=True)
class PastRun:
    """One run as the history shows it: release-window means of the gated KPIs."""

    run_id: str
    started: datetime | None
    status: str
    verdict: str | None
    window_n: int | None
    means: dict[str, float | None]
    current: bool = False

    @property
    def date(self) -> str:
        return self.started.strftime("%Y-%m-%d %H:%M UTC") if self.started else "n/a"


def gated_metrics() -> tuple[str, ...]:
    return tuple(th.metric for th in release_thresholds())


def _started(runtime: Any) -> datetime | None:
    """The run's start time from ``runtime`` (``started_at``, else ``submitted_at``), in UTC."""
    if not isinstance(runtime, Mapping):
        return None
    for key in ("started_at", "submitted_at"):
        value = runtime.get(key)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    return None


def _window(gate: Any) -> tuple[int | None, dict[str, float | None]]:
    """(window n, {metric: window mean}) of a RELEASE_GATE document; Nones when unusable."""
    means: dict[str, float | None] = dict.fromkeys(gated_metrics())
    if not isinstance(gate, Mapping):
        return None, means
    for k in gate.get("kpis") or []:
        if isinstance(k, Mapping) and k.get("metric") in means:
            mean = k.get("mean")
            means[str(k["metric"])] = float(mean) if is_finite_number(mean) else None
    window = gate.get("window")
    n = window.get("n") if isinstance(window, Mapping) else None
    return (int(n) if is_finite_number(n) else None), means


def _past_run(run_dir: Path) -> tuple[PastRun, Mapping[str, Any]] | None:
    """The run in ``run_dir`` and its config, or None when it has no usable RUN.json."""
    try:
        doc = read_json(run_dir / "RUN.json")
    except (InputError, OSError):
        return None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("config"), Mapping):
        return None
    gate: Any = None
    if (run_dir / "RELEASE_GATE.json").is_file():
        try:
            gate = read_json(run_dir / "RELEASE_GATE.json")
        except (InputError, OSError):
            gate = None
    n, means = _window(gate)
    outcome = doc.get("outcome") if isinstance(doc.get("outcome"), Mapping) else {}
    verdict = outcome.get("release_gate") if isinstance(outcome, Mapping) else None
    run = PastRun(
        run_id=str(doc.get("run_id") or run_dir.name),
        started=_started(doc.get("runtime")),
        status=str(doc.get("status") or "unknown"),
        verdict=str(verdict) if verdict else None,
        window_n=n,
        means=means,
    )
    return run, doc["config"]


def _order(run: PastRun) -> tuple[bool, datetime, str]:
    return (run.started is not None, run.started or datetime.min.replace(tzinfo=UTC), run.run_id)


def previous_runs(
    soak_root: str | os.PathLike[str],
    *,
    run_id: str,
    profile: Any,
    mode: Any,
    source: Any,
    limit: int = HISTORY_RUNS,
) -> list[PastRun]:
    """The last ``limit`` finished runs of ``profile``/``mode``/``source`` under ``soak_root``,
    oldest first; ``run_id`` itself, the ``latest`` symlink, unfinished runs and directories
    without a readable RUN.json are skipped."""
    root = Path(soak_root)
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        if entry.name == LATEST or entry.is_symlink() or not entry.is_dir():
            continue
        got = _past_run(entry)
        if got is None:
            continue
        run, config = got
        if run.run_id == run_id or entry.name == run_id or run.status not in TERMINAL:
            continue
        if (config.get("profile"), config.get("mode"), config.get("source")) != (
            profile,
            mode,
            source,
        ):
            continue
        found.append(run)
    found.sort(key=_order)
    return found[-limit:] if limit > 0 else []


def current_run(t: Trend, runtime: Any) -> PastRun:
    """This run as a history row (its release window recomputed in the Trend)."""
    n, means = _window(t.release)
    return PastRun(
        run_id=t.run_id,
        started=_started(runtime),
        status=t.status,
        verdict=str(t.outcome.get("release_gate")) if t.outcome.get("release_gate") else None,
        window_n=n if t.release is not None else None,
        means=means,
        current=True,
    )


def render_history_markdown(t: Trend, past: list[PastRun], current: PastRun) -> str:
    """TREND_HISTORY.md: a table of the earlier runs and this one, and the sparkline chart."""
    spec = t.spec
    what = (
        f"profile `{spec.get('profile')}`, mode `{spec.get('mode')}`, source `{spec.get('source')}`"
    )
    metrics = gated_metrics()
    lines = [
        f"# Previous runs: {t.run_id}",
        "",
        f"The last {HISTORY_RUNS} (at most) earlier finished runs of {what} in this artifacts "
        "root, oldest first, then this run. Window mean: the mean of each release-gate KPI over "
        "the release gate's window (RELEASE_GATE.json); `n/a` when the run has none. This file "
        "depends on the other runs in the artifacts root, so it is not part of the run's "
        "deterministic artifacts (docs/report.md).",
        "",
    ]
    if not past:
        lines += [f"No earlier finished run of {what} in this artifacts root.", ""]
    header = [
        "run",
        "started",
        "status",
        "release gate",
        "window n",
        *(f"{m} ({kpi_unit(m)})" for m in metrics),
    ]
    align = ["---", "---", "---", ":---:", "---:", *["---:"] * len(metrics)]
    rows = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
    ]
    for r in [*past, current]:
        name = f"**{r.run_id}** (this run)" if r.current else r.run_id
        cells = [
            name,
            r.date,
            r.status,
            r.verdict or "not run",
            "n/a" if r.window_n is None else str(r.window_n),
            *(fmt_kpi(m, r.means.get(m)) for m in metrics),
        ]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += [*rows, "", f"![Window means of the previous runs]({HISTORY_PNG})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
