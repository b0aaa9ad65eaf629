"""KPI valid ranges (docs/gates.md): the table, every boundary, counts, non-numbers, percentages."""

from __future__ import annotations

import math
from typing import Any

import pytest

from soakq.errors import ConfigError
from soakq.rules import ranges as ranges_mod
from soakq.rules.ranges import (
    ValidRange,
    build_table,
    is_usable,
    problem,
    range_problems,
    ranges,
    valid_range,
)

pytestmark = pytest.mark.usefixtures("clean_env")

# The contract's table, written out independently: metric -> (lo, hi, integer).
TABLE = {
    "risk_ratio": (0.0, 1.0, False),
    "maker_taker_ratio": (0.0, 1.0, False),
    "cancel_ratio": (0.0, 1.0, False),
    "p95_latency_ms": (0.0, 1e9, False),
    "order_age_p95_ms": (0.0, 1e9, False),
    "slippage_bps_p95": (0.0, 1e4, False),
    "fills": (0.0, 1e12, True),
    "snipes": (0.0, 1e12, True),
    "net_bps": (-1e4, 1e4, False),
    "adverse_bps_p95": (-1e4, 1e4, False),
}


def test_table_is_the_contract() -> None:
    assert {m: (r.lo, r.hi, r.integer) for m, r in ranges().items()} == TABLE
    assert list(ranges()) == sorted(TABLE)


@pytest.mark.parametrize(
    ("metric", "value", "usable"),
    [
        # [0, 1] ratios: both ends in, just outside out
        ("risk_ratio", 0.0, True),
        ("risk_ratio", 1.0, True),
        ("risk_ratio", 0, True),
        ("risk_ratio", 1, True),
        ("risk_ratio", -1e-9, False),
        ("risk_ratio", 1.000001, False),
        ("risk_ratio", -5, False),
        ("maker_taker_ratio", 0.999, True),
        ("maker_taker_ratio", 7, False),
        ("maker_taker_ratio", 93.3, False),  # a percentage is never a ratio
        ("cancel_ratio", 1.5, False),
        ("cancel_ratio", 0.5, True),
        # >= 0, up to a bound no real figure reaches (1e9 ms, 1e4 bp, 1e12 fills)
        ("p95_latency_ms", 0.0, True),
        ("p95_latency_ms", -0.001, False),
        ("p95_latency_ms", -3, False),
        ("p95_latency_ms", 1e9, True),
        ("p95_latency_ms", 1.0000001e9, False),
        ("slippage_bps_p95", 10_000.5, False),
        ("fills", 10**12, True),
        ("fills", 10**12 + 1, False),
        ("fills", 10**400, False),  # a JSON integer of 401 digits
        ("order_age_p95_ms", -1, False),
        ("slippage_bps_p95", -0.017, False),
        ("slippage_bps_p95", 0, True),
        # -0.0 is zero, in range
        ("p95_latency_ms", -0.0, True),
        # counts: whole and >= 0; an integral float is a count, a fraction is malformed
        ("fills", 0, True),
        ("fills", 20, True),
        ("fills", 3.0, True),
        ("fills", 0.001, False),
        ("fills", 19.5, False),
        ("fills", -1, False),
        ("fills", -1.0, False),
        ("snipes", 2, True),
        ("snipes", 0.5, False),
        # any sign, within the whole price
        ("net_bps", -40.0, True),
        ("net_bps", 10_000, True),
        ("net_bps", -10_000, True),
        ("net_bps", 1e6, False),
        ("net_bps", 1e308, False),  # finite, but would overflow the fill-weighted means
        ("adverse_bps_p95", -3.0, True),
        ("adverse_bps_p95", -1e300, False),
    ],
)
def test_boundaries(metric: str, value: float, usable: bool) -> None:
    assert is_usable(metric, value) is usable
    assert (problem(metric, value) is None) is usable


@pytest.mark.parametrize("metric", sorted(TABLE))
@pytest.mark.parametrize(
    ("value", "phrase"),
    [
        (None, "missing"),
        (True, "not a number (True)"),
        (False, "not a number (False)"),
        ("0.3", "not a number ('0.3')"),
        ([1], "not a number ([1])"),
        (math.nan, "not a finite number (nan)"),
        (math.inf, "not a finite number (inf)"),
        (-math.inf, "not a finite number (-inf)"),
        (10**400, "not a finite number (an integer of 401 digits)"),
    ],
)
def test_non_numbers_are_unusable_everywhere(metric: str, value: Any, phrase: str) -> None:
    rng = valid_range(metric)
    assert rng.problem(value) == phrase
    assert rng.explain(value) == f"{phrase}; allowed {rng.describe()}"


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("risk_ratio", -5, "-5 is out of range; allowed [0, 1]"),
        (
            "risk_ratio",
            1.5,
            "1.5 is out of range (a percentage? a ratio is a fraction); allowed [0, 1]",
        ),
        (
            "maker_taker_ratio",
            93.3,
            "93.3 is out of range (a percentage? a ratio is a fraction); allowed [0, 1]",
        ),
        (
            "risk_ratio",
            100,
            "100 is out of range (a percentage? a ratio is a fraction); allowed [0, 1]",
        ),
        ("risk_ratio", 100.5, "100.5 is out of range; allowed [0, 1]"),
        ("p95_latency_ms", -3, "-3 is out of range; allowed [0, 1e9]"),
        ("p95_latency_ms", 150.0, None),
        ("fills", 0.001, "0.001 is not a whole count; allowed an integer [0, 1e12]"),
        ("fills", -5, "-5 is out of range; allowed an integer [0, 1e12]"),
        ("fills", -2.5, "-2.5 is not a whole count; allowed an integer [0, 1e12]"),
        ("net_bps", math.nan, "not a finite number (nan); allowed [-10000, 10000]"),
    ],
)
def test_explanations(metric: str, value: Any, text: str | None) -> None:
    assert problem(metric, value) == text


@pytest.mark.parametrize(
    ("rng", "text"),
    [
        (ValidRange("x", 0.0, 1.0, False, "ratio"), "[0, 1]"),
        (ValidRange("x", 0.0, None, False, "ms"), ">= 0"),
        (ValidRange("x", None, 5.5, False, "ms"), "<= 5.5"),
        (ValidRange("x", None, None, False, "bp"), "any finite number"),
        (ValidRange("x", 0.0, None, True, "count"), "an integer >= 0"),
        (ValidRange("x", 1.0, 3.0, True, "count"), "an integer [1, 3]"),
    ],
)
def test_describe(rng: ValidRange, text: str) -> None:
    assert rng.describe() == text


def test_upper_bound_only_range() -> None:
    rng = ValidRange("x", None, 5.0, False, "ms")
    assert rng.problem(5.0) is None
    assert rng.problem(5.01) == "5.01 is out of range"
    assert rng.problem(-100) is None


def test_percent_hint_only_for_ratios() -> None:
    assert ValidRange("x", 0.0, 1.0, False, "ms").problem(50) == "50 is out of range"
    ratio = ValidRange("x", 0.0, 1.0, False, "ratio")
    hint = " (a percentage? a ratio is a fraction)"
    assert ratio.problem(1.0000001) == "1.0000001 is out of range" + hint
    assert ratio.problem(100) == "100 is out of range" + hint
    assert ratio.problem(100.01) == "100.01 is out of range"
    assert ratio.problem(-50) == "-50 is out of range"


def test_unknown_metric_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        valid_range("nope")


def test_range_problems() -> None:
    good = {"net_bps": 3.0, "risk_ratio": 0.3, "fills": 100}
    assert range_problems(good, skip_missing=True) == {}
    bad = {**good, "risk_ratio": -5, "snipes": 0.5}
    assert range_problems(bad, skip_missing=True) == {
        "risk_ratio": "-5 is out of range; allowed [0, 1]",
        "snipes": "0.5 is not a whole count; allowed an integer [0, 1e12]",
    }
    missing = range_problems(good, skip_missing=False)
    assert set(missing) == set(TABLE) - set(good)
    assert missing["snipes"] == "missing; allowed an integer [0, 1e12]"
    assert range_problems({**good, "cancel_ratio": None}, skip_missing=True) == {}


def test_defaults_and_immutability() -> None:
    import dataclasses

    rng = ValidRange("x", None, None)
    assert (rng.integer, rng.unit) == (False, "")
    assert rng.problem(1.5) is None and rng.describe() == "any finite number"
    with pytest.raises(dataclasses.FrozenInstanceError):
        rng.lo = 0.0  # type: ignore[misc]
    assert ranges() is ranges()  # read once


def test_build_table() -> None:
    table = build_table(
        {
            "b": {"integer": True, "max": None, "min": 0, "unit": "count"},
            "a": {"integer": False, "max": 1, "min": 1, "unit": "ratio"},  # a single point
        }
    )
    assert list(table) == ["a", "b"]
    assert table["a"] == ValidRange("a", 1.0, 1.0, False, "ratio")
    assert table["b"] == ValidRange("b", 0.0, None, True, "count")
    assert type(table["b"].lo) is float


@pytest.mark.parametrize(
    ("row", "text"),
    [
        ({"integer": 1, "unit": "ms"}, "ranges.m: needs 'integer' (bool) and 'unit' (text)"),
        ({"integer": True, "unit": 3}, "ranges.m: needs 'integer' (bool) and 'unit' (text)"),
        ({"integer": True}, "ranges.m: needs 'integer' (bool) and 'unit' (text)"),
        (
            {"integer": False, "unit": "ms", "min": "0"},
            "ranges.m.min: expected a finite number or null",
        ),
        (
            {"integer": False, "unit": "ms", "max": math.inf},
            "ranges.m.max: expected a finite number or null",
        ),
        (
            {"integer": False, "unit": "ms", "min": 2, "max": 1},
            "ranges.m: min 2.0 is above max 1.0",
        ),
    ],
)
def test_bad_table_rows(row: dict[str, Any], text: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_table({"m": row})
    assert str(err.value) == text


def test_one_sided_bounds_are_not_compared() -> None:
    assert build_table({"m": {"integer": False, "unit": "ms", "min": 5}})["m"].hi is None
    assert build_table({"m": {"integer": False, "unit": "ms", "max": -5}})["m"].lo is None


def test_module_reads_the_package_table() -> None:
    assert ranges_mod.ranges()["fills"].unit == "count"
