"""KPI gate: OK / WARN / FAIL per iteration, fail-closed on missing or non-finite metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from soakq.jsonio import is_finite_number
from soakq.thresholds import GateLevel


class Verdict(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class GateResult:
    verdict: Verdict
    reasons: tuple[str, ...]


def kpi_gate(summary: Mapping[str, Any], levels: tuple[GateLevel, ...]) -> GateResult:
    """Judge one iteration's KPIs. A missing, NaN or infinite metric is a FAIL."""
    fails: list[str] = []
    warns: list[str] = []
    for level in levels:
        value = summary.get(level.metric)
        if not is_finite_number(value):
            what = "missing" if value is None else f"not a finite number ({value!r})"
            fails.append(f"{level.metric} {what} (fail closed)")
            continue
        value = float(value)
        if not level.hard_threshold.passes(value):
            fails.append(f"{level.hard_threshold.describe(value)} (hard)")
        elif not level.soft_threshold.passes(value):
            warns.append(f"{level.soft_threshold.describe(value)} (soft)")
    if fails:
        return GateResult(Verdict.FAIL, tuple(fails + warns))
    if warns:
        return GateResult(Verdict.WARN, tuple(warns))
    return GateResult(Verdict.OK, ())
