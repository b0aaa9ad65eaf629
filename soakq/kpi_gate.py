"""KPI gate: OK / WARN / FAIL per iteration, fail-closed on missing or non-finite metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def _unusable(metric: str, value: Any) -> str:
    what = "missing" if value is None else f"not a finite number ({value!r})"
    return f"{metric} {what} (fail closed)"


def kpi_gate(
    summary: Mapping[str, Any], levels: tuple[GateLevel, ...], required: Iterable[str] = ()
) -> GateResult:
    """Judge one iteration's KPIs. A missing, NaN or infinite metric is a FAIL.

    ``required`` names further KPIs without bounds (e.g. slippage, fills) that must still be
    present and finite: a report that lacks one must not pass.
    """
    fails: list[str] = []
    warns: list[str] = []
    gated = {level.metric for level in levels}
    for metric in sorted(set(required) - gated):
        if not is_finite_number(summary.get(metric)):
            fails.append(_unusable(metric, summary.get(metric)))
    for level in levels:
        value = summary.get(level.metric)
        if not is_finite_number(value):
            fails.append(_unusable(level.metric, value))
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
