"""The parameter table (docs/parameters.md) and the one formula that changes a value."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soakq_testkit import DOC_VELOCITY_PER_H, PROPERTY

from soakq.errors import ConfigError
from soakq.params import KEYS, PARAMS, apply_delta, validate_overrides, validate_value
from soakq.profiles import load_profile, profile_names

pytestmark = pytest.mark.usefixtures("clean_env")

# docs/parameters.md, written out again: key -> (lo, hi, precision).
DOC_BOUNDS = {
    "base_spread_bps_delta": (0.0, 0.6, 4),
    "min_interval_ms": (50, 300, 0),
    "replace_rate_per_min": (120, 360, 0),
    "tail_age_ms": (400, 1000, 0),
    "impact_cap_ratio": (0.04, 0.12, 4),
    "max_delta_ratio": (0.10, 0.20, 4),
}
DOC_VELOCITY = DOC_VELOCITY_PER_H
# docs/parameters.md profiles: spread, min_interval, replace_rate, tail_age, impact_cap, max_delta.
DOC_PROFILES = {
    "default": (0.14, 65, 280, 620, 0.09, 0.14),
    "steady_safe": (0.15, 75, 250, 740, 0.08, 0.15),
    "ultra_safe": (0.16, 80, 220, 700, 0.08, 0.12),
    "aggressive": (0.05, 50, 340, 450, 0.12, 0.20),
}
ORDER = (
    "base_spread_bps_delta",
    "min_interval_ms",
    "replace_rate_per_min",
    "tail_age_ms",
    "impact_cap_ratio",
    "max_delta_ratio",
)


def spec_formula(key: str, old: float, delta: float) -> float:
    """``round(clamp(old + delta, lo, hi), precision)`` straight from docs/parameters.md."""
    lo, hi, prec = DOC_BOUNDS[key]
    return round(min(max(old + delta, lo), hi), prec)


def test_schema_is_the_design_table() -> None:
    assert set(KEYS) == set(DOC_BOUNDS)
    for key, (lo, hi, prec) in DOC_BOUNDS.items():
        p = PARAMS[key]
        assert (p.lo, p.hi, p.precision) == (lo, hi, prec), key
        assert p.velocity_per_h == DOC_VELOCITY[key], key


def test_safe_directions() -> None:
    """Safety (docs/parameters.md): wider spread, lower impact cap, longer min_interval."""
    assert PARAMS["base_spread_bps_delta"].is_safe_move(0.01)
    assert not PARAMS["base_spread_bps_delta"].is_safe_move(-0.01)
    assert PARAMS["min_interval_ms"].is_safe_move(5)
    assert not PARAMS["min_interval_ms"].is_safe_move(-5)
    assert PARAMS["impact_cap_ratio"].is_safe_move(-0.01)
    assert not PARAMS["impact_cap_ratio"].is_safe_move(0.01)
    for key in ("replace_rate_per_min", "tail_age_ms", "max_delta_ratio"):
        assert not PARAMS[key].is_safe_move(1) and not PARAMS[key].is_safe_move(-1)


@pytest.mark.parametrize("name", sorted(DOC_PROFILES))
def test_profiles_are_the_design_table(name: str) -> None:
    prof = load_profile(name)
    assert prof.overrides == dict(zip(ORDER, DOC_PROFILES[name], strict=True))
    for key, value in prof.overrides.items():
        assert isinstance(value, int) == (DOC_BOUNDS[key][2] == 0), key


def test_profile_names() -> None:
    assert set(profile_names()) == set(DOC_PROFILES)


@pytest.mark.parametrize(
    ("key", "old", "delta", "new", "clamped"),
    [
        ("min_interval_ms", 75, 5, 80, False),
        ("min_interval_ms", 298, 5, 300, True),
        ("min_interval_ms", 52, -5, 50, True),
        ("tail_age_ms", 990, 30, 1000, True),
        ("replace_rate_per_min", 125, -38, 120, True),
        ("base_spread_bps_delta", 0.15, 0.015, 0.165, False),
        ("base_spread_bps_delta", 0.59, 0.02, 0.6, True),
        ("base_spread_bps_delta", 0.005, -0.01, 0.0, True),
        ("impact_cap_ratio", 0.08, -0.005, 0.075, False),
        ("impact_cap_ratio", 0.045, -0.01, 0.04, True),
        ("impact_cap_ratio", 0.1, 0.00004, 0.1, False),  # rounds back to 4 dp
        ("max_delta_ratio", 0.15, -0.01, 0.14, False),
        ("max_delta_ratio", 0.19, 0.03, 0.2, True),
    ],
)
def test_apply_delta_table(key: str, old: float, delta: float, new: float, clamped: bool) -> None:
    value, was_clamped = apply_delta(key, old, delta)
    assert value == new
    assert was_clamped is clamped
    assert type(value) is (int if DOC_BOUNDS[key][2] == 0 else float)


@st.composite
def key_old_delta(draw: st.DrawFn) -> tuple[str, float, float]:
    key = draw(st.sampled_from(sorted(DOC_BOUNDS)))
    lo, hi, prec = DOC_BOUNDS[key]
    if prec == 0:
        old = draw(st.integers(int(lo), int(hi)))
        delta = draw(st.integers(-int(hi), int(hi)))
    else:
        old = round(draw(st.floats(lo, hi)), prec)
        delta = round(draw(st.floats(-hi, hi)), prec)
    return key, old, delta


@PROPERTY
@given(key_old_delta())
def test_apply_delta_is_the_formula(case: tuple[str, float, float]) -> None:
    key, old, delta = case
    lo, hi, prec = DOC_BOUNDS[key]
    value, _ = apply_delta(key, old, delta)
    assert value == spec_formula(key, old, delta)
    assert lo <= value <= hi
    if prec == 0:
        assert type(value) is int
    else:
        assert type(value) is float and round(value, prec) == value


@pytest.mark.parametrize(
    ("key", "value", "needles"),
    [
        ("nope", 1, ["unknown parameter", "'nope'"]),
        ("min_interval_ms", True, ["min_interval_ms", "must be a number"]),
        ("min_interval_ms", "75", ["min_interval_ms", "must be a number"]),
        ("min_interval_ms", None, ["min_interval_ms", "must be a number"]),
        ("impact_cap_ratio", math.nan, ["impact_cap_ratio", "finite"]),
        ("impact_cap_ratio", math.inf, ["impact_cap_ratio", "finite"]),
        ("min_interval_ms", 75.5, ["min_interval_ms", "whole number"]),
        ("min_interval_ms", 49, ["min_interval_ms", "out of bounds"]),
        ("tail_age_ms", 1001, ["tail_age_ms", "out of bounds"]),
        ("base_spread_bps_delta", -0.0001, ["base_spread_bps_delta", "out of bounds"]),
        ("max_delta_ratio", 0.2001, ["max_delta_ratio", "out of bounds"]),
        ("min_interval_ms", 10**400, ["min_interval_ms=1.00000e+400 is out of bounds"]),
        ("impact_cap_ratio", -(10**400), ["impact_cap_ratio=-1.00000e+400 is out of bounds"]),
        ("tail_age_ms", 1e300, ["tail_age_ms=1.00000e+300 is out of bounds"]),  # not 301 digits
    ],
)
def test_validate_value_rejects(key: str, value: object, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        validate_value(key, value, layer="LAYER-X")
    msg = str(info.value)
    assert msg.startswith("LAYER-X") and "\n" not in msg
    for needle in needles:
        assert needle in msg


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("min_interval_ms", 75.0, 75),  # whole float becomes an int
        ("base_spread_bps_delta", 0, 0.0),  # an int becomes a float
        ("impact_cap_ratio", 0.04, 0.04),  # bounds are inclusive
        ("impact_cap_ratio", 0.12, 0.12),
        ("tail_age_ms", 1000, 1000),
    ],
)
def test_validate_value_accepts_and_normalizes(key: str, value: float, expected: float) -> None:
    got = validate_value(key, value, layer="t")
    assert got == expected and type(got) is type(expected)


def test_validate_overrides_needs_an_object() -> None:
    with pytest.raises(ConfigError, match="LAYER-Y"):
        validate_overrides([1, 2], layer="LAYER-Y")


def test_negative_zero_normalizes_to_zero() -> None:
    p = PARAMS["base_spread_bps_delta"]
    for value in (-0.0, -0.00001, -0.00004):  # given, or rounded to zero at 4 places
        got = p.normalize(value)
        assert got == 0.0 and math.copysign(1.0, got) == 1.0, value
    assert p.normalize(-0.00005) == -0.0001  # a real negative survives
    assert math.copysign(1.0, p.normalize(0.0)) == 1.0
    assert validate_value("base_spread_bps_delta", -0.0, layer="L") == 0.0
    assert math.copysign(1.0, validate_value("base_spread_bps_delta", -0.0, layer="L")) == 1.0
    assert PARAMS["min_interval_ms"].normalize(-0.0) == 0


# The whole table, every field, as the docs state it (docs/parameters.md):
# key -> (unit, meaning, min step, safe sign).
TABLE = {
    "base_spread_bps_delta": ("bp", "extra quoted half-spread on top of the base", 0.001, +1),
    "min_interval_ms": ("ms", "minimum time between two quote actions for one symbol", 1, +1),
    "replace_rate_per_min": ("1/min", "cap on quote replacements per minute", 1, 0),
    "tail_age_ms": ("ms", "resting orders older than this are cancelled and requoted", 1, 0),
    "impact_cap_ratio": (
        "ratio",
        "cap on how far a signal may move the position target",
        0.001,
        -1,
    ),
    "max_delta_ratio": ("ratio", "max change of the position target per tick", 0.001, 0),
}


def test_every_field_of_the_table() -> None:
    assert KEYS == ORDER
    for key, (unit, meaning, step, sign) in TABLE.items():
        p = PARAMS[key]
        assert (p.key, p.unit, p.meaning, p.min_step, p.safe_sign) == (
            key,
            unit,
            meaning,
            step,
            sign,
        ), key
        assert p.is_int is (p.precision == 0)


@pytest.mark.parametrize(
    ("key", "delta", "safe"),
    [
        ("base_spread_bps_delta", 0.0001, True),
        ("base_spread_bps_delta", 0.0, False),  # no move is not a move toward safety
        ("base_spread_bps_delta", -0.0001, False),
        ("impact_cap_ratio", -0.0001, True),
        ("impact_cap_ratio", 0.0, False),
        ("impact_cap_ratio", 0.0001, False),
        ("tail_age_ms", 0, False),
    ],
)
def test_safe_move_boundaries(key: str, delta: float, safe: bool) -> None:
    assert PARAMS[key].is_safe_move(delta) is safe


def test_params_are_frozen() -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        PARAMS["tail_age_ms"].hi = 2000  # type: ignore[misc]


def test_normalize_overrides_keeps_known_keys_in_table_order() -> None:
    from soakq.params import normalize_overrides

    got = normalize_overrides({"tail_age_ms": 740.0, "junk": 1, "base_spread_bps_delta": 0.15001})
    assert got == {"base_spread_bps_delta": 0.15, "tail_age_ms": 740}
    assert list(got) == ["base_spread_bps_delta", "tail_age_ms"]
    assert type(got["tail_age_ms"]) is int
    assert normalize_overrides({}) == {}


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        ("base_spread_bps_delta", 0.15, "0.15"),
        ("base_spread_bps_delta", 0.1, "0.1"),
        ("base_spread_bps_delta", 0.0, "0"),
        ("impact_cap_ratio", 0.0875, "0.0875"),
        ("min_interval_ms", 75.4, "75"),
        ("tail_age_ms", 740, "740"),
    ],
)
def test_fmt(key: str, value: float, text: str) -> None:
    from soakq.params import fmt

    assert fmt(key, value) == text


@pytest.mark.parametrize(
    ("key", "value", "text"),
    [
        (
            "nope",
            1,
            "L: unknown parameter 'nope'; allowed: base_spread_bps_delta, min_interval_ms, "
            "replace_rate_per_min, tail_age_ms, impact_cap_ratio, max_delta_ratio",
        ),
        (
            "min_interval_ms",
            "75",
            "L: min_interval_ms must be a number, got '75'; allowed 50..300 ms",
        ),
        (
            "impact_cap_ratio",
            math.nan,
            "L: impact_cap_ratio must be finite, got nan; allowed 0.04..0.12 ratio",
        ),
        (
            "min_interval_ms",
            75.5,
            "L: min_interval_ms must be a whole number of ms, got 75.5; allowed 50..300 ms",
        ),
        (
            "tail_age_ms",
            1001,
            "L: tail_age_ms=1001 is out of bounds; allowed 400..1000 ms",
        ),
        (
            "impact_cap_ratio",
            0.2,
            "L: impact_cap_ratio=0.2 is out of bounds; allowed 0.04..0.12 ratio",
        ),
    ],
)
def test_validate_messages_exactly(key: str, value: object, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_value(key, value, layer="L")
    assert str(err.value) == text
    with pytest.raises(ConfigError) as err:
        validate_overrides("x", layer="L")
    assert str(err.value) == "L: expected a JSON object of parameter values, got 'x'"
