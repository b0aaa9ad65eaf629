"""Valid ranges of the KPIs (one table, package data ``data/ranges.json``; docs/gates.md).

A value outside its range is *unusable*, exactly like a missing or non-finite one: the KPI gate
fails closed on it, a metric source reports it as an error, and ``soakq gate`` refuses it. Counts
(``fills``, ``snipes``) are non-negative integers: a fractional count is malformed, never rounded
(an integral float such as ``3.0`` is a valid count). Booleans and strings are not numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from soakq.errors import ConfigError
from soakq.jsonio import is_finite_number, loads


@dataclass(frozen=True)
class ValidRange:
    """The values one KPI may take: ``lo <= value <= hi`` (None: unbounded), whole if integer."""

    metric: str
    lo: float | None
    hi: float | None
    integer: bool = False
    unit: str = ""

    def describe(self) -> str:
        """The allowed values in words, e.g. ``[0, 1]``, ``>= 0``, ``an integer >= 0``."""
        if self.lo is not None and self.hi is not None:
            text = f"[{_num(self.lo)}, {_num(self.hi)}]"
        elif self.lo is not None:
            text = f">= {_num(self.lo)}"
        elif self.hi is not None:
            text = f"<= {_num(self.hi)}"
        else:
            text = "any finite number"
        return f"an integer {text}" if self.integer else text

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is unusable (one short phrase), or None when it is a valid value."""
        if value is None:
            return "missing"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"not a number ({value!r})"
        if not is_finite_number(value):
            return f"not a finite number ({_repr(value)})"
        if self.integer and not float(value).is_integer():
            return f"{_num(value)} is not a whole count"
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            if self.unit == "ratio" and 1 < value <= 100:
                return f"{_num(value)} is out of range (a percentage? a ratio is a fraction)"
            return f"{_num(value)} is out of range"
        return None

    def explain(self, value: Any) -> str | None:
        """``problem`` with the allowed values, e.g. ``-5 is out of range; allowed [0, 1]``."""
        why = self.problem(value)
        return None if why is None else f"{why}; allowed {self.describe()}"


def _num(value: float) -> str:
    """Stable short form of a finite number (``3``, ``0.5``, ``-0.001``, ``1e12``)."""
    if float(value).is_integer():
        digits = repr(int(value))
        if abs(value) >= 1e6 and digits.lstrip("-").rstrip("0") == "1":  # a bound: 1e9, 1e12
            return f"{'-' if value < 0 else ''}1e{len(digits.lstrip('-')) - 1}"
        return digits if abs(value) < 1e16 else repr(float(value))
    return repr(float(value))


def _repr(value: Any) -> str:
    if isinstance(value, int):  # a huge JSON int: its digits are no use to anybody
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


def _bound(row: dict[str, Any], name: str, metric: str) -> float | None:
    value = row.get(name)
    if value is None:
        return None
    if not is_finite_number(value):
        raise ConfigError(f"ranges.{metric}.{name}: expected a finite number or null")
    return float(value)


@cache
def ranges() -> dict[str, ValidRange]:
    """The whole table, validated when loaded."""
    text = resources.files("soakq.data").joinpath("ranges.json").read_text("utf-8")
    return build_table(loads(text, what="soakq/data/ranges.json"))


def build_table(table: dict[str, Any]) -> dict[str, ValidRange]:
    """The ranges of a table document (``{metric: {min, max, integer, unit}}``), by metric."""
    out: dict[str, ValidRange] = {}
    for metric in sorted(table):
        row = table[metric]
        if not isinstance(row.get("integer"), bool) or not isinstance(row.get("unit"), str):
            raise ConfigError(f"ranges.{metric}: needs 'integer' (bool) and 'unit' (text)")
        lo, hi = _bound(row, "min", metric), _bound(row, "max", metric)
        if lo is not None and hi is not None and lo > hi:
            raise ConfigError(f"ranges.{metric}: min {lo} is above max {hi}")
        out[metric] = ValidRange(metric, lo, hi, row["integer"], row["unit"])
    return out


def valid_range(metric: str) -> ValidRange:
    """The range of ``metric``; KeyError for a name the table does not know."""
    return ranges()[metric]


def problem(metric: str, value: Any) -> str | None:
    """Why ``value`` is not a usable ``metric``, with the allowed values (None: it is usable)."""
    return valid_range(metric).explain(value)


def is_usable(metric: str, value: Any) -> bool:
    return problem(metric, value) is None


def range_problems(values: dict[str, Any], *, skip_missing: bool) -> dict[str, str]:
    """``{metric: problem}`` for every ranged metric in ``values`` that is unusable.

    With ``skip_missing`` a metric that is absent or None is not a problem (a diagnostic a
    source could not measure); a present but unusable value always is.
    """
    out: dict[str, str] = {}
    for metric, rng in ranges().items():
        value = values.get(metric)
        if value is None and skip_missing:
            continue
        why = rng.explain(value)
        if why is not None:
            out[metric] = why
    return out
