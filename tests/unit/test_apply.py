"""Applying deltas: relative, clamped, rounded, known keys only; idempotent (docs/parameters.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soakq_testkit import PROPERTY, contract_hash

from soakq.errors import ConfigError
from soakq.jsonio import read_json, sha256_of, write_json
from soakq.params import KEYS, PARAMS
from soakq.profiles import load_profile, profile_names
from soakq.rules.apply import apply_deltas

pytestmark = pytest.mark.usefixtures("clean_env")

STEADY = dict(load_profile("steady_safe").overrides)


@pytest.mark.parametrize(
    ("deltas", "changes"),
    [
        ({"min_interval_ms": 5}, {"min_interval_ms": (75, 5, 80, False)}),
        ({"min_interval_ms": 500}, {"min_interval_ms": (75, 500, 300, True)}),
        ({"tail_age_ms": -1000}, {"tail_age_ms": (740, -1000, 400, True)}),
        ({"impact_cap_ratio": -0.005}, {"impact_cap_ratio": (0.08, -0.005, 0.075, False)}),
        ({"impact_cap_ratio": -0.1}, {"impact_cap_ratio": (0.08, -0.1, 0.04, True)}),
        ({"base_spread_bps_delta": 0.00004}, {}),  # rounds to no change
        (
            {"base_spread_bps_delta": 0.01234},
            {"base_spread_bps_delta": (0.15, 0.0123, 0.1623, False)},
        ),
        ({"replace_rate_per_min": 0}, {}),
        (
            {"max_delta_ratio": 0.01, "replace_rate_per_min": -25},
            {
                "max_delta_ratio": (0.15, 0.01, 0.16, False),
                "replace_rate_per_min": (250, -25, 225, False),
            },
        ),
    ],
)
def test_apply_table(deltas: dict, changes: dict) -> None:
    result = apply_deltas(STEADY, deltas)
    assert set(result.changes) == set(changes)
    for key, (old, delta, new, clamped) in changes.items():
        c = result.changes[key]
        assert c == {"old": old, "delta": pytest.approx(delta), "new": new, "clamped": clamped}
        assert result.overrides[key] == new
        assert result.applied[key] == pytest.approx(new - old)
    for key in KEYS:
        if key not in changes:
            assert result.overrides[key] == STEADY[key]
    assert list(result.overrides) == list(KEYS)


@pytest.mark.parametrize(
    ("start", "deltas", "applied"),
    [
        # impact_cap_ratio is already at its floor bound 0.04: a no-op; tail_age sorts after it
        (
            {**STEADY, "impact_cap_ratio": 0.04},
            {"impact_cap_ratio": -0.01, "tail_age_ms": 30},
            {"tail_age_ms": 30},
        ),
        # the first key in sorted order is the no-op; every later one is still applied
        (
            {**STEADY, "base_spread_bps_delta": 0.6},
            {"base_spread_bps_delta": 0.02, "min_interval_ms": 5, "tail_age_ms": -40},
            {"min_interval_ms": 5, "tail_age_ms": -40},
        ),
        # a zero delta and one that rounds to nothing, before real ones
        (
            STEADY,
            {"base_spread_bps_delta": 0.00004, "impact_cap_ratio": 0.0, "max_delta_ratio": -0.01},
            {"max_delta_ratio": -0.01},
        ),
        # no-ops between real ones
        (
            {**STEADY, "min_interval_ms": 300, "replace_rate_per_min": 120},
            {
                "base_spread_bps_delta": 0.01,
                "min_interval_ms": 10,
                "replace_rate_per_min": -25,
                "tail_age_ms": 20,
            },
            {"base_spread_bps_delta": 0.01, "tail_age_ms": 20},
        ),
    ],
)
def test_a_no_op_delta_does_not_stop_later_ones(start: dict, deltas: dict, applied: dict) -> None:
    result = apply_deltas(start, deltas)
    assert result.applied == applied
    assert set(result.changes) == set(applied)
    for key in KEYS:
        assert result.overrides[key] == PARAMS[key].normalize(start[key] + applied.get(key, 0))


def test_apply_result_is_an_immutable_value() -> None:
    import dataclasses

    result = apply_deltas(STEADY, {"tail_age_ms": 30})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.overrides = {}  # type: ignore[misc]


def test_applied_is_the_effective_change() -> None:
    result = apply_deltas({**STEADY, "min_interval_ms": 298}, {"min_interval_ms": 5})
    assert result.applied == {"min_interval_ms": 2}


def test_unknown_key_refused_and_never_written() -> None:
    with pytest.raises(ConfigError, match="unknown parameter.*nope"):
        apply_deltas(STEADY, {"nope": 1})


def test_delta_for_missing_value_refused() -> None:
    partial = {k: v for k, v in STEADY.items() if k != "tail_age_ms"}
    with pytest.raises(ConfigError, match="tail_age_ms"):
        apply_deltas(partial, {"tail_age_ms": 5})


def test_unknown_keys_in_overrides_are_dropped() -> None:
    result = apply_deltas({**STEADY, "junk": 1}, {})
    assert set(result.overrides) == set(KEYS)


def test_input_is_not_mutated() -> None:
    before = dict(STEADY)
    apply_deltas(STEADY, {"min_interval_ms": 5})
    assert before == STEADY


@pytest.mark.parametrize("profile", profile_names())
def test_apply_nothing_100_times_keeps_the_hash(profile: str) -> None:
    overrides: Any = dict(load_profile(profile).overrides)
    first = sha256_of(overrides)
    assert first == contract_hash(overrides)
    for _ in range(100):
        result = apply_deltas(overrides, {})
        assert result.changes == {} and result.applied == {}
        overrides = result.overrides
        assert sha256_of(overrides) == first


def test_write_read_100_times_keeps_bytes_and_hash(clean_env: Path) -> None:
    overrides = apply_deltas(STEADY, {"impact_cap_ratio": -0.0035, "tail_age_ms": 30}).overrides
    path = clean_env / "runtime_overrides.json"
    write_json(path, overrides)
    first_bytes, first_hash = path.read_bytes(), contract_hash(overrides)
    for _ in range(100):
        doc = read_json(path)
        doc = apply_deltas(doc, {}).overrides
        write_json(path, doc)
        assert path.read_bytes() == first_bytes
        assert contract_hash(read_json(path)) == first_hash
    assert sorted(p.name for p in clean_env.iterdir()) == ["runtime_overrides.json"]


def _value(key: str) -> st.SearchStrategy[Any]:
    p = PARAMS[key]
    if p.is_int:
        return st.integers(int(p.lo), int(p.hi))
    return st.floats(p.lo, p.hi).map(lambda v: round(v, p.precision))


overrides_st = st.fixed_dictionaries({k: _value(k) for k in KEYS})
deltas_st = st.fixed_dictionaries(
    {}, optional={k: st.floats(-2 * PARAMS[k].hi, 2 * PARAMS[k].hi) for k in KEYS}
)


@PROPERTY
@given(overrides_st, deltas_st)
def test_apply_is_the_formula_and_idempotent(overrides: dict, deltas: dict) -> None:
    result = apply_deltas(overrides, deltas)
    for key in KEYS:
        p = PARAMS[key]
        new = result.overrides[key]
        assert p.lo <= new <= p.hi
        assert type(new) is (int if p.is_int else float)
        assert round(new, p.precision) == new
        if key in result.changes:
            c = result.changes[key]
            assert new == round(min(max(c["old"] + c["delta"], p.lo), p.hi), p.precision)
            assert c["old"] == overrides[key]
        else:
            assert new == overrides[key]
    again = apply_deltas(result.overrides, {})
    assert again.overrides == result.overrides
    assert sha256_of(again.overrides) == sha256_of(result.overrides)


@PROPERTY
@given(overrides_st, deltas_st)
def test_applying_together_equals_applying_one_by_one(overrides: dict, deltas: dict) -> None:
    together = apply_deltas(overrides, deltas)
    current = dict(overrides)
    applied = {}
    for key in sorted(deltas, reverse=True):  # any order: each key is independent
        step = apply_deltas(current, {key: deltas[key]})
        current = step.overrides
        applied.update(step.applied)
    assert together.overrides == current
    assert together.applied == applied
