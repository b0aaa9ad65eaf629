"""KPI-gate and release-gate threshold tables, loaded from package data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from soakq.errors import ConfigError

OPS = (">=", "<=")


@dataclass(frozen=True)
class Threshold:
    """``value op bound`` passes; e.g. ``net_bps >= 2.7``."""

    metric: str
    op: str
    bound: float

    def passes(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def describe(self, value: float) -> str:
        broken = "<" if self.op == ">=" else ">"
        return f"{self.metric} {fmt_num(value)} {broken} {fmt_num(self.bound)}"


@dataclass(frozen=True)
class GateLevel:
    """Soft (WARN beyond) and hard (FAIL beyond) bounds of one KPI-gate metric."""

    metric: str
    op: str
    soft: float
    hard: float

    @property
    def soft_threshold(self) -> Threshold:
        return Threshold(self.metric, self.op, self.soft)

    @property
    def hard_threshold(self) -> Threshold:
        return Threshold(self.metric, self.op, self.hard)


def fmt_num(value: float) -> str:
    """Short, stable number formatting for reasons and gate lines."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".")


@cache
def _table() -> dict[str, Any]:
    text = resources.files("soakq.data").joinpath("thresholds.json").read_text("utf-8")
    table: dict[str, Any] = json.loads(text)
    return table


def kpi_gate_levels(overrides: dict[str, Any] | None = None) -> tuple[GateLevel, ...]:
    """The KPI-gate table, with a profile's own targets (``{metric: {soft, hard}}``) on top."""
    base = {k: dict(v) for k, v in _table()["kpi_gate"].items()}
    for metric, levels in (overrides or {}).items():
        if metric not in base or not isinstance(levels, dict):
            raise ConfigError(
                f"profile kpi_gate: unknown metric {metric!r}; allowed: {', '.join(sorted(base))}"
            )
        for name, value in levels.items():
            if (
                name not in ("soft", "hard")
                or isinstance(value, bool)
                or not isinstance(value, (int, float))
            ):
                raise ConfigError(
                    f"profile kpi_gate.{metric}.{name}: expected soft/hard numbers, got {value!r}"
                )
            base[metric][name] = value
    levels_out = []
    for metric in sorted(base):
        row = base[metric]
        level = GateLevel(metric, row["op"], float(row["soft"]), float(row["hard"]))
        stricter = level.soft >= level.hard if level.op == ">=" else level.soft <= level.hard
        if not stricter:
            raise ConfigError(f"kpi_gate.{metric}: soft bound must be stricter than hard bound")
        levels_out.append(level)
    return tuple(levels_out)


def release_thresholds() -> tuple[Threshold, ...]:
    """Release-gate thresholds in their display order."""
    order = ("net_bps", "risk_ratio", "maker_taker_ratio", "p95_latency_ms")
    table = _table()["release_gate"]
    return tuple(Threshold(m, table[m]["op"], float(table[m]["value"])) for m in order)
