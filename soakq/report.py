"""The trend report of a run: STEADY_TREND.md and trend.png (README, artifacts).

``write_report`` is called by the exporter with the store's documents; ``report_from_dir`` rebuilds
the same inputs from a run directory, so both give the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soakq.errors import InputError
from soakq.jsonio import read_json, write_bytes, write_text
from soakq.report_model import build_trend

REPORT_MD = "STEADY_TREND.md"
TREND_PNG = "trend.png"
_ITER_FILE = re.compile(r"ITER_SUMMARY_(\d+)\.json")


def write_report(out: Path, docs: list[Mapping[str, Any]], record: Mapping[str, Any]) -> list[Path]:
    """Write STEADY_TREND.md and trend.png into ``out`` atomically; return their paths."""
    from soakq.report_chart import render_png
    from soakq.report_md import render_markdown

    trend = build_trend(docs, record)
    text, png = render_markdown(trend), render_png(trend)  # render both before writing either
    out = Path(out)
    return [write_text(out / REPORT_MD, text), write_bytes(out / TREND_PNG, png)]


def _iteration_files(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for p in run_dir.iterdir():
        m = _ITER_FILE.fullmatch(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


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
        "spec": spec,
        "status": doc.get("status", "unknown"),
    }


def report_from_dir(run_dir: Path) -> list[Path]:
    """Rewrite the report of a run directory; InputError (exit 2) when it is not usable."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "not found" if not run_dir.exists() else "not a directory"
        raise InputError(f"{run_dir}: {what}; expected a run directory (artifacts/soak/<run_id>)")
    files = _iteration_files(run_dir)
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
