"""`file`: KPIs from the report a live bot writes each iteration.

The bot writes ``<report_dir>/KPI_REPORT_<iteration>.json``: either per symbol,
``{"symbols": {"BTCUSDT": {"net_bps": ..., ...}, ...}}``, or one total (flat KPI names), which is
accepted for a run of one symbol. A missing or malformed report is an error, never zeros, and so
is a KPI outside its valid range (docs/gates.md): the error names the field and the range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soakq.errors import InputError, MetricsError
from soakq.jsonio import read_json
from soakq.metrics.base import DIAGNOSTICS, KPI_KEYS, MeasureRequest
from soakq.rules.ranges import problem


def report_path(report_dir: str | Path, iteration: int) -> Path:
    return Path(report_dir) / f"KPI_REPORT_{iteration}.json"


class FileSource:
    """Reads the live bot's per-iteration KPI report."""

    name = "file"
    mock = False

    def measure(self, req: MeasureRequest) -> dict[str, Any]:
        if not req.report_dir:
            raise MetricsError("file source: no report directory configured")
        path = report_path(req.report_dir, req.iteration)
        try:
            doc = read_json(path)
        except InputError as exc:
            raise MetricsError(f"iteration {req.iteration}: KPI report {exc}") from None
        if not isinstance(doc, dict):
            raise MetricsError(f"{path}: expected a JSON object")
        if "symbols" in doc:
            symbols = doc["symbols"]
            if not isinstance(symbols, dict) or req.symbol not in symbols:
                raise MetricsError(f"{path}: no entry for symbol {req.symbol!r} under 'symbols'")
            row = symbols[req.symbol]
        else:
            if req.extra.get("symbol_count", 1) != 1:
                raise MetricsError(
                    f"{path}: a total report (no 'symbols') needs a run of exactly one symbol"
                )
            row = doc
        if not isinstance(row, dict):
            raise MetricsError(f"{path}: the entry for {req.symbol} is not an object")
        out: dict[str, Any] = {}
        for key in (*KPI_KEYS, *DIAGNOSTICS):
            value = row.get(key)
            if value is None:
                out[key] = None  # missing: the KPI gate fails closed on it
                continue
            why = problem(key, value)
            if why is not None:  # out of its valid range, or not a number: the report is invalid
                raise MetricsError(f"{path}: {req.symbol}.{key} {why}")
            out[key] = value
        return out
