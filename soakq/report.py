"""STEADY_TREND.md and trend.png (placeholder until the report lands)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def write_report(out: Path, docs: list[Mapping[str, Any]], record: Mapping[str, Any]) -> None:
    return None


def report_from_dir(run_dir: Path) -> list[Path]:
    return []
