"""The six runtime parameters: units, bounds, precision and guard limits (docs/tuner.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from soakq.errors import ConfigError

Number = int | float
Overrides = dict[str, Number]


@dataclass(frozen=True)
class Param:
    """One runtime parameter and everything the rules need to know about it."""

    key: str
    unit: str
    meaning: str
    lo: float
    hi: float
    precision: int  # decimal places; 0 means the value is an int
    min_step: float  # deadband: smaller deltas are dropped
    velocity_per_h: float  # max absolute change within any rolling simulated hour
    safe_sign: int  # +1: increasing is the safe direction, -1: decreasing, 0: neither

    @property
    def is_int(self) -> bool:
        return self.precision == 0

    def normalize(self, value: float) -> Number:
        """Round to this parameter's precision and give it its JSON type (int or float)."""
        if self.is_int:
            return int(round(value))
        rounded = float(round(value, self.precision))
        # -0.0 (given, or a tiny negative rounded away) is 0.0: the hash must not see the sign.
        return 0.0 if rounded == 0.0 else rounded

    def clamp(self, value: float) -> float:
        return min(max(value, self.lo), self.hi)

    def is_safe_move(self, delta: float) -> bool:
        return self.safe_sign != 0 and delta * self.safe_sign > 0


PARAMS: dict[str, Param] = {
    p.key: p
    for p in (
        Param(
            "base_spread_bps_delta",
            "bp",
            "extra quoted half-spread on top of the base",
            0.0,
            0.6,
            4,
            0.001,
            0.10,
            +1,
        ),
        Param(
            "min_interval_ms",
            "ms",
            "minimum time between two quote actions for one symbol",
            50,
            300,
            0,
            1,
            30,
            +1,
        ),
        Param(
            "replace_rate_per_min",
            "1/min",
            "cap on quote replacements per minute",
            120,
            360,
            0,
            1,
            60,
            0,
        ),
        Param(
            "tail_age_ms",
            "ms",
            "resting orders older than this are cancelled and requoted",
            400,
            1000,
            0,
            1,
            100,
            0,
        ),
        Param(
            "impact_cap_ratio",
            "ratio",
            "cap on how far a signal may move the position target",
            0.04,
            0.12,
            4,
            0.001,
            0.02,
            -1,
        ),
        Param(
            "max_delta_ratio",
            "ratio",
            "max change of the position target per tick",
            0.10,
            0.20,
            4,
            0.001,
            0.03,
            0,
        ),
    )
}

KEYS: tuple[str, ...] = tuple(PARAMS)


def apply_delta(key: str, old: Number, delta: Number) -> tuple[Number, bool]:
    """``new = round(clamp(old + delta, lo, hi), precision)``; also whether clamping acted."""
    p = PARAMS[key]
    raw = old + delta
    clamped = p.clamp(raw)
    return p.normalize(clamped), clamped != raw


def _shown(value: Number) -> str:
    """A number as an error message shows it: short, even for ``1e300`` turned into an int."""
    if abs(value) < 1e15:
        return repr(value)
    return format(Decimal(value), ".6g")  # exact for any int, with no limit on its digits


def validate_value(key: Any, value: Any, *, layer: str) -> Number:
    """Check one override from ``layer``; return it normalized or raise ConfigError."""
    if not isinstance(key, str) or key not in PARAMS:
        raise ConfigError(f"{layer}: unknown parameter {key!r}; allowed: {', '.join(KEYS)}")
    p = PARAMS[key]
    allowed = f"allowed {fmt(key, p.lo)}..{fmt(key, p.hi)} {p.unit}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{layer}: {key} must be a number, got {value!r}; {allowed}")
    # An int is finite; math.isfinite would raise OverflowError on one too large for a float.
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{layer}: {key} must be finite, got {value!r}; {allowed}")
    if not p.lo <= value <= p.hi:
        raise ConfigError(f"{layer}: {key}={_shown(value)} is out of bounds; {allowed}")
    if p.is_int and value != int(value):
        raise ConfigError(
            f"{layer}: {key} must be a whole number of {p.unit}, got {value!r}; {allowed}"
        )
    return p.normalize(value)


def validate_overrides(values: Any, *, layer: str) -> Overrides:
    """Validate a whole (partial) override mapping from one layer."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{layer}: expected a JSON object of parameter values, got {values!r}")
    return {k: validate_value(k, v, layer=layer) for k, v in values.items()}


def normalize_overrides(values: Mapping[str, Number]) -> Overrides:
    """Canonical form of a full override set: known keys only, each at its precision."""
    return {k: PARAMS[k].normalize(values[k]) for k in KEYS if k in values}


def fmt(key: str, value: float) -> str:
    """Human formatting at the parameter's precision."""
    p = PARAMS[key]
    return (
        str(int(round(value))) if p.is_int else f"{value:.{p.precision}f}".rstrip("0").rstrip(".")
    )
