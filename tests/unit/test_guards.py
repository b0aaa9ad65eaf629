"""Guards: deadband, oscillation, velocity, cooldown, the safety bypass (DESIGN §4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soakq_testkit import DESIGN_VELOCITY_PER_H, PROPERTY

from soakq.apply import apply_deltas
from soakq.guards import empty_ledger, guard, record_changes
from soakq.params import PARAMS
from soakq.profiles import load_profile

pytestmark = pytest.mark.usefixtures("clean_env")

MIN_PER_ITER = 20.0  # 3 iterations = one simulated hour
STEADY = dict(load_profile("steady_safe").overrides)
CAP = DESIGN_VELOCITY_PER_H


def ledger_of(history: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """A ledger built the way the run builds it: record_changes per iteration, in order."""
    ledger = empty_ledger()
    for i in sorted(history):
        ledger = record_changes(ledger, i, history[i])
    return ledger


def run_guard(
    deltas: dict[str, Any],
    history: Mapping[int, Mapping[str, Any]],
    iteration: int,
    *,
    hard_fail: bool = False,
    enabled: bool = True,
) -> Any:
    return guard(
        deltas,
        ledger_of(history),
        iteration,
        hard_fail=hard_fail,
        minutes_per_iteration=MIN_PER_ITER,
        enabled=enabled,
    )


def only_decision(outcome: Any, key: str) -> Any:
    (d,) = [d for d in outcome.decisions if d.param == key]
    return d


# --- oscillation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "iteration", "delta", "suppressed"),
    [
        ({1: {"tail_age_ms": 30}}, 2, -30, True),  # A -> B -> A next iteration
        ({1: {"tail_age_ms": 30}}, 4, -30, True),  # 3 iterations later: still within
        ({1: {"tail_age_ms": 30}}, 5, -30, False),  # 4 later: allowed
        ({1: {"tail_age_ms": 30}}, 2, 30, False),  # same direction is no reversal
        ({1: {"tail_age_ms": 30}, 3: {"tail_age_ms": 20}}, 6, -10, True),  # last change at 3
        # at most 1 reversal per 6 iterations: reversal at 5 blocks another until 11
        ({1: {"tail_age_ms": 30}, 5: {"tail_age_ms": -20}}, 9, 10, True),
        ({1: {"tail_age_ms": 30}, 5: {"tail_age_ms": -20}}, 10, 10, True),
        ({1: {"tail_age_ms": 30}, 5: {"tail_age_ms": -20}}, 11, 10, False),
    ],
)
def test_oscillation_table(history: dict, iteration: int, delta: int, suppressed: bool) -> None:
    out = run_guard({"tail_age_ms": delta}, history, iteration)
    if suppressed:
        assert out.suppressed == {"tail_age_ms": "oscillation"}
        assert out.accepted == {}
        assert out.flag("oscillation")
        d = only_decision(out, "tail_age_ms")
        assert (d.guard, d.action) == ("oscillation", "suppressed") and d.detail
    else:
        assert out.accepted == {"tail_age_ms": delta}
        assert out.suppressed == {} and not out.flag("oscillation")


def test_a_b_a_suppressed_with_reason() -> None:
    out = run_guard(
        {"min_interval_ms": 5}, {1: {"min_interval_ms": 5}, 2: {"min_interval_ms": -3}}, 3
    )
    assert out.suppressed == {"min_interval_ms": "oscillation"}
    assert "iteration 2" in only_decision(out, "min_interval_ms").detail


def test_reversal_counted_once_per_six() -> None:
    """One reversal is allowed once the direction has held for more than 3 iterations."""
    h: dict[int, dict[str, int]] = {1: {"tail_age_ms": 30}}
    first = run_guard({"tail_age_ms": -20}, h, 5)
    assert first.accepted == {"tail_age_ms": -20}
    h[5] = first.accepted
    assert ledger_of(h)["changes"]["tail_age_ms"][-1]["reversal"] is True
    second = run_guard({"tail_age_ms": 10}, h, 9)
    assert second.suppressed == {"tail_age_ms": "oscillation"}
    assert "at most 1 reversal" in only_decision(second, "tail_age_ms").detail


# --- velocity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "history", "iteration", "delta", "accepted", "suppressed"),
    [
        # budget left: 30 - (10 + 12) = 8 -> 15 trimmed to 8
        (
            "min_interval_ms",
            {1: {"min_interval_ms": 10}, 2: {"min_interval_ms": 12}},
            3,
            15,
            8,
            False,
        ),
        # the change of iteration 1 has left the window at iteration 4
        (
            "min_interval_ms",
            {1: {"min_interval_ms": 10}, 2: {"min_interval_ms": 12}},
            4,
            15,
            15,
            False,
        ),
        # budget used up -> suppressed
        (
            "min_interval_ms",
            {1: {"min_interval_ms": 15}, 2: {"min_interval_ms": 15}},
            3,
            5,
            None,
            True,
        ),
        # a single delta above the cap is trimmed to the cap
        ("base_spread_bps_delta", {}, 1, 0.15, 0.1, False),
        (
            "impact_cap_ratio",
            {1: {"impact_cap_ratio": -0.01}, 2: {"impact_cap_ratio": -0.008}},
            3,
            -0.005,
            -0.002,
            False,
        ),
        (
            "impact_cap_ratio",
            {1: {"impact_cap_ratio": -0.01}, 2: {"impact_cap_ratio": -0.01}},
            3,
            -0.005,
            None,
            True,
        ),
        ("tail_age_ms", {1: {"tail_age_ms": 50}, 2: {"tail_age_ms": 30}}, 3, 75, 20, False),
        ("replace_rate_per_min", {}, 1, -100, -60, False),
        ("max_delta_ratio", {2: {"max_delta_ratio": -0.01}}, 3, -0.03, -0.02, False),
    ],
)
def test_velocity_table(
    key: str, history: dict, iteration: int, delta: float, accepted: float | None, suppressed: bool
) -> None:
    out = run_guard({key: delta}, history, iteration)
    if suppressed:
        assert out.suppressed == {key: "velocity"} and out.accepted == {}
    else:
        assert out.accepted == pytest.approx({key: accepted}, abs=1e-12)
        assert round(out.accepted[key], PARAMS[key].precision) == out.accepted[key]
        if accepted != delta:
            assert out.trimmed == {key: "velocity"}
            assert only_decision(out, key).action == "trimmed"
    assert out.flag("velocity") == (suppressed or accepted != delta)


# --- cooldown -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "iteration", "delta", "cooling"),
    [
        ({1: {"min_interval_ms": 20}}, 2, 5, True),  # 20 > 15 = half of 30
        ({1: {"min_interval_ms": 20}}, 3, 5, True),
        ({1: {"min_interval_ms": 20}}, 4, 5, False),  # 2 iterations have passed
        ({1: {"min_interval_ms": 15}}, 2, 5, False),  # exactly half is not "more than half"
        ({1: {"tail_age_ms": 60}}, 2, 0, None),
    ],
)
def test_cooldown_table(history: dict, iteration: int, delta: int, cooling: bool | None) -> None:
    if cooling is None:  # the tail_age row: a different parameter is not cooling
        out = run_guard({"min_interval_ms": 5}, history, iteration)
        assert out.accepted == {"min_interval_ms": 5}
        return
    out = run_guard({"min_interval_ms": delta}, history, iteration)
    if cooling:
        assert out.suppressed == {"min_interval_ms": "cooldown"} and out.flag("cooldown")
        assert "iteration 1" in only_decision(out, "min_interval_ms").detail
    else:
        assert out.accepted == {"min_interval_ms": delta} and not out.flag("cooldown")


# --- deadband -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "delta", "dropped"),
    [
        ("base_spread_bps_delta", 0.0005, True),
        ("base_spread_bps_delta", -0.0009, True),
        ("base_spread_bps_delta", 0.001, False),
        ("impact_cap_ratio", 0.0002, True),
        ("impact_cap_ratio", -0.001, False),
        ("max_delta_ratio", 0.0001, True),
        ("min_interval_ms", 0.5, True),
        ("min_interval_ms", 1, False),
    ],
)
def test_deadband(key: str, delta: float, dropped: bool) -> None:
    out = run_guard({key: delta}, {}, 1)
    if dropped:
        assert out.suppressed == {key: "deadband"} and out.accepted == {}
    else:
        assert out.accepted == {key: delta}


# --- safety bypass --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "history", "iteration", "delta", "guard_name"),
    [
        ("min_interval_ms", {1: {"min_interval_ms": -3}}, 2, 5, "oscillation"),
        ("base_spread_bps_delta", {1: {"base_spread_bps_delta": -0.01}}, 2, 0.02, "oscillation"),
        ("impact_cap_ratio", {1: {"impact_cap_ratio": 0.005}}, 2, -0.005, "oscillation"),
        ("min_interval_ms", {1: {"min_interval_ms": 20}}, 2, 5, "cooldown"),
        ("base_spread_bps_delta", {1: {"base_spread_bps_delta": 0.06}}, 2, 0.02, "cooldown"),
        ("impact_cap_ratio", {1: {"impact_cap_ratio": -0.015}}, 2, -0.005, "cooldown"),
    ],
)
def test_safety_bypass(
    key: str, history: dict, iteration: int, delta: float, guard_name: str
) -> None:
    blocked = run_guard({key: delta}, history, iteration, hard_fail=False)
    assert blocked.suppressed == {key: guard_name}
    passed = run_guard({key: delta}, history, iteration, hard_fail=True)
    assert passed.accepted == {key: delta} and passed.suppressed == {}
    d = only_decision(passed, key)
    assert (d.guard, d.action) == (guard_name, "bypassed")
    assert not passed.flag(guard_name)  # a bypassed guard changed nothing


@pytest.mark.parametrize(
    ("key", "history", "iteration", "delta"),
    [
        ("min_interval_ms", {1: {"min_interval_ms": 3}}, 2, -3),  # shorter: not safe
        ("base_spread_bps_delta", {1: {"base_spread_bps_delta": 0.01}}, 2, -0.01),
        ("impact_cap_ratio", {1: {"impact_cap_ratio": -0.005}}, 2, 0.005),
        ("tail_age_ms", {1: {"tail_age_ms": 30}}, 2, -30),  # no safe direction at all
        ("tail_age_ms", {1: {"tail_age_ms": -30}}, 2, 30),
    ],
)
def test_no_bypass_for_unsafe_moves(key: str, history: dict, iteration: int, delta: float) -> None:
    out = run_guard({key: delta}, history, iteration, hard_fail=True)
    assert out.suppressed == {key: "oscillation"}


def test_bypass_never_skips_velocity() -> None:
    history = {1: {"min_interval_ms": 20}, 2: {"min_interval_ms": 8}}
    out = run_guard({"min_interval_ms": 5}, history, 3, hard_fail=True)
    assert out.accepted == {"min_interval_ms": 2}  # 30 - 28 left
    assert out.trimmed == {"min_interval_ms": "velocity"}
    spent = {1: {"min_interval_ms": 20}, 2: {"min_interval_ms": 10}}
    out = run_guard({"min_interval_ms": 5}, spent, 3, hard_fail=True)
    assert out.suppressed == {"min_interval_ms": "velocity"}


def test_disabled_passes_everything() -> None:
    history = {1: {"min_interval_ms": 20, "tail_age_ms": 30}, 2: {"impact_cap_ratio": -0.02}}
    deltas = {
        "min_interval_ms": 25,
        "tail_age_ms": -30,
        "impact_cap_ratio": -0.01,
        "base_spread_bps_delta": 0.0001,
        "replace_rate_per_min": -500,
    }
    out = run_guard(deltas, history, 3, enabled=False)
    assert out.accepted == deltas
    assert out.suppressed == {} and out.trimmed == {} and out.decisions == ()


def test_independent_parameters_are_judged_apart() -> None:
    history = {1: {"min_interval_ms": 20}}
    out = run_guard(
        {"min_interval_ms": 5, "tail_age_ms": 30, "base_spread_bps_delta": 0.0001}, history, 2
    )
    assert out.accepted == {"tail_age_ms": 30}
    assert out.suppressed == {"min_interval_ms": "cooldown", "base_spread_bps_delta": "deadband"}


def test_record_changes_is_pure_and_skips_zero() -> None:
    ledger = ledger_of({1: {"tail_age_ms": 30}})
    snapshot = repr(ledger)
    after = record_changes(ledger, 2, {"tail_age_ms": 0, "min_interval_ms": 5})
    assert repr(ledger) == snapshot
    assert [e["iteration"] for e in after["changes"]["tail_age_ms"]] == [1]
    assert after["last_dir"] == {"tail_age_ms": 1, "min_interval_ms": 1}


# --- property: velocity and bounds over random sequences ----------------------------------------


def _delta(key: str) -> st.SearchStrategy[Any]:
    p = PARAMS[key]
    if p.is_int:
        return st.integers(-int(2 * CAP[key]), int(2 * CAP[key]))
    scale = 10**p.precision
    return st.integers(-int(2 * CAP[key] * scale), int(2 * CAP[key] * scale)).map(
        lambda n: n / scale
    )


step_st = st.tuples(
    st.fixed_dictionaries({}, optional={k: _delta(k) for k in PARAMS}),
    st.booleans(),  # hard_fail
)


def _units(key: str, value: float) -> int:
    return round(abs(value) * 10 ** PARAMS[key].precision)


@PROPERTY
@given(st.lists(step_st, min_size=1, max_size=14), st.sampled_from(["steady_safe", "aggressive"]))
def test_velocity_window_and_bounds_hold(steps: list, profile: str) -> None:
    overrides = dict(load_profile(profile).overrides)
    ledger = empty_ledger()
    applied_by_iter: list[dict[str, Any]] = []
    for i, (raw, hard_fail) in enumerate(steps, start=1):
        deltas = dict(raw)
        out = guard(deltas, ledger, i, hard_fail=hard_fail, minutes_per_iteration=MIN_PER_ITER)
        assert set(out.accepted) | set(out.suppressed) == set(deltas)
        result = apply_deltas(overrides, out.accepted)
        ledger = record_changes(ledger, i, result.applied)
        overrides = result.overrides
        applied_by_iter.append(result.applied)
        for key, value in overrides.items():
            p = PARAMS[key]
            assert p.lo <= value <= p.hi
            assert round(value, p.precision) == value
    for end in range(len(applied_by_iter)):
        window = applied_by_iter[max(0, end - 2) : end + 1]  # 3 iterations = 1 simulated hour
        for key in PARAMS:
            used = sum(_units(key, a.get(key, 0)) for a in window)
            assert used <= _units(key, CAP[key]), (key, end + 1, window)


@PROPERTY
@given(st.lists(step_st, min_size=1, max_size=10))
def test_disabled_guards_accept_everything(steps: list) -> None:
    ledger = empty_ledger()
    for i, (deltas, hard_fail) in enumerate(steps, start=1):
        out = guard(
            deltas,
            ledger,
            i,
            hard_fail=hard_fail,
            minutes_per_iteration=MIN_PER_ITER,
            enabled=False,
        )
        assert out.accepted == deltas and out.suppressed == {}
        ledger = record_changes(ledger, i, deltas)
