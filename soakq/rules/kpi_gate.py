"""KPI gate: OK / WARN / FAIL per iteration, with structured reasons (docs/gates.md).

Fail closed: a missing, non-finite or out-of-range KPI (``soakq.rules.ranges``) is a FAIL, and so
is an iteration with fewer than ``min_fills`` fills. Each reason is a typed value (metric, value,
threshold, op, level) with a one-line text for humans; code decides on the level, never on text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from soakq.jsonio import is_finite_number
from soakq.rules.ranges import ValidRange, ranges
from soakq.rules.thresholds import GateLevel, Threshold, default_min_fills, fmt_num


class Verdict(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


class ReasonLevel(StrEnum):
    """How bad a reason is. Every level but ``soft`` makes the iteration a FAIL."""

    SOFT = "soft"  # beyond the soft bound: WARN
    HARD = "hard"  # beyond the hard bound: FAIL
    UNUSABLE = "unusable"  # missing, not a finite number, or out of its valid range: FAIL
    INSUFFICIENT_FILLS = "insufficient_fills"  # fewer fills than min_fills: FAIL
    SOURCE_ERROR = "source_error"  # a symbol's metric source gave no usable result: FAIL


class GateReason(BaseModel):
    """One reason of a KPI-gate verdict, as written under ``summary.kpi_reasons``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    level: ReasonLevel
    metric: str | None  # None for a source error (it concerns a symbol, not one KPI)
    value: int | float | None  # None when missing or not a finite number
    threshold: int | float | None
    op: Literal[">=", "<="] | None
    text: str
    symbol: str | None = None

    @property
    def fails(self) -> bool:
        """True when this reason makes the iteration a FAIL (every level but soft)."""
        return self.level != ReasonLevel.SOFT

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class GateResult:
    verdict: Verdict
    reasons: tuple[GateReason, ...]

    @property
    def hard_failures(self) -> tuple[GateReason, ...]:
        """The reasons that make this a FAIL (empty unless the verdict is FAIL)."""
        return hard_failures(self.reasons)

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(r.text for r in self.reasons)


def hard_failures(reasons: Iterable[GateReason]) -> tuple[GateReason, ...]:
    """The reasons among ``reasons`` that make an iteration a FAIL, in order."""
    return tuple(r for r in reasons if r.fails)


def verdict_of(reasons: Iterable[GateReason]) -> Verdict:
    """FAIL if any reason fails, WARN if any (soft) reason is left, else OK."""
    items = tuple(reasons)
    if any(r.fails for r in items):
        return Verdict.FAIL
    return Verdict.WARN if items else Verdict.OK


def unusable(metric: str, value: Any, why: str) -> GateReason:
    """The reason for a KPI that cannot be judged (``why`` from its valid range)."""
    return GateReason(
        level=ReasonLevel.UNUSABLE,
        metric=metric,
        value=value if is_finite_number(value) else None,
        threshold=None,
        op=None,
        text=f"{metric} {why} (fail closed)",
    )


def source_error(symbol: str, message: str) -> GateReason:
    """The reason for a symbol whose metric source failed (no result, an invalid report...)."""
    return GateReason(
        level=ReasonLevel.SOURCE_ERROR,
        metric=None,
        value=None,
        threshold=None,
        op=None,
        text=f"{symbol}: {message}",
        symbol=symbol,
    )


def _beyond(threshold: Threshold, value: float, level: ReasonLevel) -> GateReason:
    return GateReason(
        level=level,
        metric=threshold.metric,
        value=value,
        threshold=threshold.bound,
        op=">=" if threshold.op == ">=" else "<=",
        text=f"{threshold.describe(value)} ({level})",
    )


def _insufficient(value: float, min_fills: int) -> GateReason:
    return GateReason(
        level=ReasonLevel.INSUFFICIENT_FILLS,
        metric="fills",
        value=value,
        threshold=min_fills,
        op=">=",
        text=f"fills {fmt_num(value)} < {min_fills}: insufficient fills",
    )


def kpi_gate(
    summary: Mapping[str, Any],
    levels: tuple[GateLevel, ...],
    required: Iterable[str] = (),
    *,
    min_fills: int | None = None,
) -> GateResult:
    """Judge one iteration's KPIs.

    Gated metrics (``levels``), ``required`` ones (e.g. slippage, fills) and ``fills`` when
    ``min_fills`` > 0 must be present and valid; any other ranged KPI that is present must be
    valid too. ``min_fills`` defaults to the table's (20).
    """
    floor = default_min_fills() if min_fills is None else min_fills
    gated = {level.metric: level for level in levels}
    needed = set(gated) | set(required) | ({"fills"} if floor > 0 else set())
    table = ranges()
    present = {m for m in table if summary.get(m) is not None}
    fails: list[GateReason] = []
    warns: list[GateReason] = []
    for metric in sorted(needed | present):
        value = summary.get(metric)
        rng = table.get(metric) or ValidRange(metric, None, None)  # no range: any finite number
        why = rng.explain(value)
        if why is not None:
            fails.append(unusable(metric, value, why))
            continue
        number: float = summary[metric]  # a valid number from here on
        if metric == "fills" and number < floor:
            fails.append(_insufficient(number, floor))
        level = gated.get(metric)
        if level is None:
            continue
        if not level.hard_threshold.passes(number):
            fails.append(_beyond(level.hard_threshold, number, ReasonLevel.HARD))
        elif not level.soft_threshold.passes(number):
            warns.append(_beyond(level.soft_threshold, number, ReasonLevel.SOFT))
    reasons = tuple(fails + warns)
    return GateResult(verdict_of(reasons), reasons)
