"""The trend report of a run: STEADY_TREND.md and trend.png, TREND_HISTORY.md and
trend_history.png (docs/report.md describes every section).

``write_report`` is called by the exporter with the store's documents; ``report_from_dir`` rebuilds
the same inputs from a run directory, so both give the same bytes.

Determinism: STEADY_TREND.md and trend.png are a pure function of the run's documents (no
``runtime`` field, no clock), so the same config and seed give byte-identical files. The
comparison with earlier runs of the same profile, mode and source depends on what else the
artifacts root holds, so it lives in the separate TREND_HISTORY.md and trend_history.png
(``HISTORY_FILES``), which tests comparing two run directories leave out (docs/report.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soakq.artifacts import iteration_files
from soakq.errors import InputError
from soakq.jsonio import read_json, write_bytes, write_text
from soakq.report.history import HISTORY_FILES, HISTORY_RUNS, current_run, previous_runs
from soakq.report.markdown import HISTORY_MD, HISTORY_PNG
from soakq.report.model import build_trend

REPORT_MD = "STEADY_TREND.md"
TREND_PNG = "trend.png"
__all__ = [
    "HISTORY_FILES",
    "HISTORY_MD",
    "HISTORY_PNG",
    "REPORT_MD",
    "TREND_PNG",
    "report_from_dir",
    "write_report",
]


def write_report(
    out: Path,
    docs: list[Mapping[str, Any]],
    record: Mapping[str, Any],
    *,
    history_root: Path | None = None,
) -> list[Path]:
    """Write STEADY_TREND.md, trend.png, TREND_HISTORY.md and trend_history.png into ``out``
    atomically; return their paths. The history compares with the runs in ``history_root``
    (default: ``out``'s parent, the ``soak`` directory of the artifacts root)."""
    from soakq.report.chart import render_history_png, render_png
    from soakq.report.history import render_history_markdown
    from soakq.report.markdown import render_markdown

    out = Path(out)
    trend = build_trend(docs, record)
    spec = trend.spec
    past = previous_runs(
        history_root if history_root is not None else out.parent,
        run_id=trend.run_id,
        profile=spec.get("profile"),
        mode=spec.get("mode"),
        source=spec.get("source"),
        limit=HISTORY_RUNS,
    )
    current = current_run(trend, record.get("runtime"))
    title = (
        f"{trend.run_id} vs {len(past)} earlier run(s) of {spec.get('profile')} / "
        f"{spec.get('mode')} / {spec.get('source')}: release-window means (R: release limit)"
    )
    # Render everything before writing anything.
    text, png = render_markdown(trend), render_png(trend)
    history_text = render_history_markdown(trend, past, current)
    history_png = render_history_png(past, current, title)
    return [
        write_text(out / REPORT_MD, text),
        write_bytes(out / TREND_PNG, png),
        write_text(out / HISTORY_MD, history_text),
        write_bytes(out / HISTORY_PNG, history_png),
    ]


def _load_iteration(path: Path, iteration: int) -> dict[str, Any]:
    doc = read_json(path)
    if not isinstance(doc, dict) or not all(
        isinstance(doc.get(k), dict) for k in ("summary", "tuning")
    ):
        raise InputError(f"{path}: not an ITER_SUMMARY document (needs 'summary' and 'tuning')")
    if doc.get("iteration") != iteration:
        raise InputError(
            f"{path}: says iteration {doc.get('iteration')!r}, file name says {iteration}"
        )
    return doc


def _load_record(path: Path) -> dict[str, Any]:
    """The record ``write_report`` needs, rebuilt from RUN.json (``_sources`` -> ``sources``)."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("config"), dict):
        raise InputError(f"{path}: not a RUN.json document (needs a 'config' object)")
    spec = {k: v for k, v in doc["config"].items() if k != "_sources"}
    spec["sources"] = doc["config"].get("_sources", {})
    outcome = doc.get("outcome") or {}
    if not isinstance(outcome, dict):
        raise InputError(f"{path}: 'outcome' must be an object")
    return {
        "outcome": outcome,
        "run_id": doc.get("run_id") or spec.get("run_id"),
        "runtime": doc.get("runtime") or {},  # only the history's date column reads it
        "spec": spec,
        "status": doc.get("status", "unknown"),
    }


def report_from_dir(run_dir: Path) -> list[Path]:
    """Rewrite the report of a run directory; InputError (exit 2) when it is not usable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "not found" if not run_dir.exists() else "not a directory"
        raise InputError(f"{run_dir}: {what}; expected a run directory (artifacts/soak/<run_id>)")
    files = iteration_files(run_dir)
    if not files:
        raise InputError(f"{run_dir}: no ITER_SUMMARY_<i>.json files; is this a run directory?")
    docs: list[Mapping[str, Any]] = [_load_iteration(p, i) for i, p in files]
    record = _load_record(run_dir / "RUN.json")
    for (_, p), doc in zip(files, docs, strict=True):
        if doc.get("run_id") != record["run_id"]:
            raise InputError(
                f"{p}: belongs to run {doc.get('run_id')!r}, RUN.json to {record['run_id']!r}"
            )
    return write_report(run_dir, docs, record)
