"""KPI-gate and release-gate threshold tables and ``min_fills``, loaded from package data.

The tables live in ``soakq/data/thresholds.json`` (docs/gates.md); they are validated when
loaded, so a bad table fails at import of the first gate, naming the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from soakq.errors import ConfigError
from soakq.jsonio import is_finite_number, loads

OPS = (">=", "<=")


@dataclass(frozen=True)
class Threshold:
    """``value op bound`` passes; e.g. ``net_bps >= 2.7``."""

    metric: str
    op: str
    bound: float

    def passes(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value <= self.bound

    @property
    def broken(self) -> str:
        """The comparison that states a violation (``<`` for a ``>=`` threshold)."""
        return "<" if self.op == ">=" else ">"

    def describe(self, value: float) -> str:
        return f"{self.metric} {fmt_num(value)} {self.broken} {fmt_num(self.bound)}"


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


@dataclass(frozen=True)
class ReleaseRules:
    """The run-level release gate's settings: thresholds, minimum window, confidence."""

    thresholds: tuple[Threshold, ...]
    min_window: int
    confidence: float


def fmt_num(value: float) -> str:
    """Short, stable number formatting for reasons and gate lines."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _number(value: Any, where: str) -> float:
    if not is_finite_number(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _op(value: Any, where: str) -> str:
    if value not in OPS:
        raise ConfigError(f"{where}: op must be one of {', '.join(OPS)}, got {value!r}")
    return str(value)


@cache
def _table() -> dict[str, Any]:
    text = resources.files("soakq.data").joinpath("thresholds.json").read_text("utf-8")
    table: dict[str, Any] = loads(text, what="soakq/data/thresholds.json")
    return table


def check_min_fills(value: Any, *, layer: str) -> int:
    """A ``min_fills`` value: a whole number >= 0 (ConfigError naming ``layer`` otherwise)."""
    if (
        isinstance(value, bool)
        or not is_finite_number(value)
        or not float(value).is_integer()
        or value < 0
    ):
        raise ConfigError(f"{layer}: min_fills must be a whole number >= 0, got {value!r}")
    return int(value)


def default_min_fills() -> int:
    """Fewest fills an iteration may have and still be judged (profiles may set their own)."""
    return check_min_fills(_table()["min_fills"], layer="thresholds.json")


def kpi_gate_levels(overrides: dict[str, Any] | None = None) -> tuple[GateLevel, ...]:
    """The KPI-gate table, with a profile's own targets (``{metric: {soft, hard}}``) on top."""
    base = {k: dict(v) for k, v in _table()["kpi_gate"].items()}
    for metric, levels in (overrides or {}).items():
        if metric not in base or not isinstance(levels, dict):
            raise ConfigError(
                f"profile kpi_gate: unknown metric {metric!r}; allowed: {', '.join(sorted(base))}"
            )
        for name, value in levels.items():
            if name not in ("soft", "hard") or not is_finite_number(value):
                raise ConfigError(
                    f"profile kpi_gate.{metric}.{name}: expected soft/hard numbers, got {value!r}"
                )
            base[metric][name] = value
    levels_out = []
    for metric in sorted(base):
        row = base[metric]
        where = f"kpi_gate.{metric}"
        level = GateLevel(
            metric,
            _op(row["op"], where),
            _number(row["soft"], where + ".soft"),
            _number(row["hard"], where + ".hard"),
        )
        stricter = level.soft >= level.hard if level.op == ">=" else level.soft <= level.hard
        if not stricter:
            raise ConfigError(f"{where}: soft bound must be stricter than hard bound")
        levels_out.append(level)
    return tuple(levels_out)


def release_thresholds() -> tuple[Threshold, ...]:
    """Release-gate thresholds in their display order."""
    return release_rules().thresholds


def release_rules() -> ReleaseRules:
    """The release gate's thresholds, ``min_window`` and one-sided confidence level."""
    table = _table()["release_gate"]
    thresholds = tuple(
        Threshold(
            str(row["metric"]),
            _op(row["op"], f"release_gate.{row['metric']}"),
            _number(row["value"], f"release_gate.{row['metric']}.value"),
        )
        for row in table["thresholds"]
    )
    min_window = table["min_window"]
    if isinstance(min_window, bool) or not isinstance(min_window, int) or min_window < 2:
        raise ConfigError(f"release_gate.min_window: a whole number >= 2, got {min_window!r}")
    confidence = _number(table["confidence"], "release_gate.confidence")
    if not 0.5 < confidence < 1:
        raise ConfigError(f"release_gate.confidence: between 0.5 and 1, got {confidence!r}")
    return ReleaseRules(thresholds, min_window, confidence)
