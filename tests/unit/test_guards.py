"""Guards v2 (docs/tuner.md): deadband, oscillation (A->B->A within 3 iterations, at most one
reversal per parameter per 6), velocity per rolling hour of the time the iterations cover,
cooldown after a change of at least half the hourly cap, the safety bypass under a hard FAIL.

Every ledger here is built the way a run builds it: ``record_changes`` once per iteration.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soakq_testkit import DOC_VELOCITY_PER_H, PROPERTY

from soakq.params import PARAMS
from soakq.profiles import load_profile
from soakq.rules.apply import apply_deltas
from soakq.rules.guards import (
    GuardDecision,
    GuardOutcome,
    empty_ledger,
    guard,
    ledger_keep,
    record_changes,
    window_iterations,
)

pytestmark = pytest.mark.usefixtures("clean_env")

MIN_PER_ITER = 20.0  # the simulator's clock: 3 iterations = one hour
CAP = DOC_VELOCITY_PER_H
HALF = {k: v / 2 for k, v in CAP.items()}


def ledger_of(
    history: Mapping[int, Mapping[str, Any]], *, upto: int | None = None, minutes: float = 20.0
) -> dict[str, Any]:
    """record_changes for every iteration 1..upto (default: the last one in ``history``)."""
    ledger = empty_ledger()
    last = upto if upto is not None else max(history, default=0)
    for i in range(1, last + 1):
        ledger = record_changes(ledger, i, history.get(i, {}), minutes_per_iteration=minutes)
    return ledger


def run_guard(
    deltas: dict[str, Any],
    history: Mapping[int, Mapping[str, Any]],
    iteration: int,
    *,
    hard_fail: bool = False,
    enabled: bool = True,
    minutes: float = MIN_PER_ITER,
) -> Any:
    return guard(
        deltas,
        ledger_of(history, upto=iteration - 1, minutes=minutes),
        iteration,
        hard_fail=hard_fail,
        minutes_per_iteration=minutes,
        enabled=enabled,
    )


def only_decision(outcome: Any, key: str) -> Any:
    (d,) = [d for d in outcome.decisions if d.param == key]
    return d


def assert_suppressed(out: Any, key: str, name: str) -> Any:
    assert out.suppressed == {key: name} and out.accepted == {} and out.trimmed == {}
    assert out.flag(name)
    d = only_decision(out, key)
    assert (d.param, d.guard, d.action) == (key, name, "suppressed") and d.detail
    return d


# --- the hour and the ledger --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minutes", "hour", "keep"),
    [
        (1, 60, 60),
        (0.5, 120, 120),
        (5, 12, 12),
        (7, 9, 9),
        (10, 6, 6),
        (12, 5, 6),
        (20, 3, 6),
        (45, 2, 6),
        (60, 1, 6),
        (90, 1, 6),
        (1440, 1, 6),
    ],
)
def test_window_and_ledger_keep(minutes: float, hour: int, keep: int) -> None:
    assert window_iterations(minutes) == hour
    assert ledger_keep(minutes) == keep
    assert ledger_keep(minutes) >= window_iterations(minutes)  # the ledger covers the hour


@pytest.mark.parametrize("minutes", [0, 0.0, -1, -20.0, math.inf, -math.inf, math.nan])
def test_invalid_minutes_per_iteration_raise(minutes: float) -> None:
    with pytest.raises(ValueError, match="minutes_per_iteration must be finite and > 0"):
        window_iterations(minutes)
    with pytest.raises(ValueError, match="minutes_per_iteration"):
        ledger_keep(minutes)
    with pytest.raises(ValueError, match="minutes_per_iteration"):
        guard(
            {"tail_age_ms": 10}, empty_ledger(), 1, hard_fail=False, minutes_per_iteration=minutes
        )
    with pytest.raises(ValueError, match="minutes_per_iteration"):
        record_changes(empty_ledger(), 1, {"tail_age_ms": 10}, minutes_per_iteration=minutes)


@pytest.mark.parametrize(("minutes", "hour"), [(1, 60), (5, 12), (20, 3), (60, 1)])
def test_a_change_counts_for_exactly_one_hour(minutes: float, hour: int) -> None:
    """min_interval +14 at iteration 1 (under half the cap: no cooldown): a +20 proposal is
    trimmed to the 16 left while iteration 1 is inside the hour, and whole once it is not."""
    history = {1: {"min_interval_ms": 14}}
    last_inside = hour  # iteration 1 + hour - 1
    if hour > 1:
        inside = run_guard({"min_interval_ms": 20}, history, last_inside, minutes=minutes)
        assert inside.accepted == {"min_interval_ms": 16}
        assert inside.trimmed == {"min_interval_ms": "velocity"}
    outside = run_guard({"min_interval_ms": 20}, history, last_inside + 1, minutes=minutes)
    assert outside.accepted == {"min_interval_ms": 20} and outside.trimmed == {}


def test_one_minute_iterations_remember_a_change_59_iterations_ago() -> None:
    """A live bot's 60 s window: 60 iterations per hour. The old fixed 12-iteration ledger
    forgot the change below after 12 iterations and let the budget be spent again."""
    history = {1: {"tail_age_ms": 80}}
    ledger = ledger_of(history, upto=59, minutes=1)
    assert [e["iteration"] for e in ledger["changes"]["tail_age_ms"]] == [1]
    out = guard({"tail_age_ms": 50}, ledger, 60, hard_fail=False, minutes_per_iteration=1)
    assert out.accepted == {"tail_age_ms": 20} and out.trimmed == {"tail_age_ms": "velocity"}
    assert "20 left of the hourly budget 100" in only_decision(out, "tail_age_ms").detail
    # one iteration later the change has left the hour (and the ledger, one after that)
    ledger = record_changes(ledger, 60, {}, minutes_per_iteration=1)
    assert [e["iteration"] for e in ledger["changes"]["tail_age_ms"]] == [1]
    later = guard({"tail_age_ms": 50}, ledger, 61, hard_fail=False, minutes_per_iteration=1)
    assert later.accepted == {"tail_age_ms": 50}
    ledger = record_changes(ledger, 61, {}, minutes_per_iteration=1)
    assert ledger["changes"] == {} and ledger["last_dir"] == {"tail_age_ms": 1}


@pytest.mark.parametrize(("minutes", "keep"), [(1, 60), (5, 12), (20, 6), (60, 6)])
def test_record_changes_keeps_ledger_keep_iterations(minutes: float, keep: int) -> None:
    ledger = empty_ledger()
    for i in range(1, keep + 4):
        ledger = record_changes(
            ledger, i, {"max_delta_ratio": 0.001}, minutes_per_iteration=minutes
        )
        kept = [e["iteration"] for e in ledger["changes"]["max_delta_ratio"]]
        assert kept == list(range(max(1, i - keep + 1), i + 1))


# --- oscillation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "iteration", "delta", "suppressed"),
    [
        ({1: {"tail_age_ms": 30}}, 2, -30, True),  # A -> B -> A next iteration
        ({1: {"tail_age_ms": 30}}, 4, -30, True),  # 3 iterations later: still within
        ({1: {"tail_age_ms": 30}}, 5, -30, False),  # 4 later: allowed
        ({1: {"tail_age_ms": 30}}, 2, 30, False),  # same direction is no reversal
        ({1: {"tail_age_ms": 30}, 3: {"tail_age_ms": 20}}, 6, -10, True),  # last change at 3
        ({1: {"tail_age_ms": 30}, 3: {"tail_age_ms": 20}}, 7, -10, False),
        # at most 1 reversal per 6 iterations: a reversal at 5 blocks another until 11
        ({1: {"tail_age_ms": 30}, 5: {"tail_age_ms": -20}}, 9, 10, True),
        ({1: {"tail_age_ms": 30}, 5: {"tail_age_ms": -20}}, 10, 10, True),
        ({1: {"tail_age_ms": 30}, 5: {"tail_age_ms": -20}}, 11, 10, False),
        # a same-direction move after a reversal is no reversal: never suppressed
        ({1: {"tail_age_ms": 30}, 5: {"tail_age_ms": -20}}, 6, -10, False),
        ({1: {"tail_age_ms": 30}, 5: {"tail_age_ms": -20}}, 7, -10, False),
        ({1: {"tail_age_ms": 30}, 5: {"tail_age_ms": -20}}, 9, -10, False),
        # a parameter's history does not touch another parameter
        ({1: {"max_delta_ratio": 0.01}}, 2, -30, False),
    ],
)
def test_oscillation_table(history: dict, iteration: int, delta: int, suppressed: bool) -> None:
    out = run_guard({"tail_age_ms": delta}, history, iteration)
    if suppressed:
        assert_suppressed(out, "tail_age_ms", "oscillation")
    else:
        assert out.accepted == {"tail_age_ms": delta}
        assert out.suppressed == {} and not out.flag("oscillation") and out.decisions == ()


def test_a_b_a_reason_names_the_change_it_reverses() -> None:
    out = run_guard(
        {"min_interval_ms": 5}, {1: {"min_interval_ms": 5}, 2: {"min_interval_ms": -3}}, 3
    )
    d = assert_suppressed(out, "min_interval_ms", "oscillation")
    assert d.detail == "reverses the change of iteration 2 (-3) within 3 iterations"


def test_one_reversal_per_six_on_a_recorded_ledger() -> None:
    """One reversal is allowed once the direction has held for more than 3 iterations; the
    ledger marks it, and the next reversal waits 6 iterations."""
    history: dict[int, dict[str, int]] = {1: {"tail_age_ms": 30}}
    first = run_guard({"tail_age_ms": -20}, history, 5)
    assert first.accepted == {"tail_age_ms": -20} and first.decisions == ()
    history[5] = first.accepted
    ledger = ledger_of(history)
    assert ledger["changes"]["tail_age_ms"] == [
        {"delta": 30, "iteration": 1, "reversal": False},
        {"delta": -20, "iteration": 5, "reversal": True},
    ]
    assert ledger["last_dir"] == {"tail_age_ms": -1}
    second = run_guard({"tail_age_ms": 10}, history, 9)
    d = assert_suppressed(second, "tail_age_ms", "oscillation")
    assert d.detail == "already reversed at iteration 5; at most 1 reversal per 6 iterations"


def test_reversal_budget_counts_only_reversals() -> None:
    """Many same-direction changes inside 6 iterations are no reversals: after them, one
    reversal (more than 3 iterations after the last change) is allowed."""
    history = {1: {"tail_age_ms": 10}, 2: {"tail_age_ms": 10}, 3: {"tail_age_ms": 10}}
    assert all(not e["reversal"] for e in ledger_of(history)["changes"]["tail_age_ms"])
    assert run_guard({"tail_age_ms": -10}, history, 7).accepted == {"tail_age_ms": -10}


# --- velocity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "history", "iteration", "delta", "accepted", "minutes"),
    [
        # budget left: 30 - (10 + 12) = 8 -> 15 trimmed to 8
        ("min_interval_ms", {1: {"min_interval_ms": 10}, 2: {"min_interval_ms": 12}}, 3, 15, 8, 20),
        # the change of iteration 1 has left the hour at iteration 4
        (
            "min_interval_ms",
            {1: {"min_interval_ms": 10}, 2: {"min_interval_ms": 12}},
            4,
            15,
            15,
            20,
        ),
        # a delta of exactly what is left passes whole (not "trimmed")
        ("min_interval_ms", {1: {"min_interval_ms": 10}, 2: {"min_interval_ms": 12}}, 3, 8, 8, 20),
        ("impact_cap_ratio", {1: {"impact_cap_ratio": -0.009}}, 3, -0.011, -0.011, 20),
        # a single delta above the cap is trimmed to the cap
        ("base_spread_bps_delta", {}, 1, 0.15, 0.1, 20),
        ("replace_rate_per_min", {}, 1, -100, -60, 20),
        ("max_delta_ratio", {2: {"max_delta_ratio": -0.01}}, 3, -0.03, -0.02, 20),
        ("impact_cap_ratio", {1: {"impact_cap_ratio": -0.009}}, 3, -0.015, -0.011, 20),
        ("tail_age_ms", {1: {"tail_age_ms": 40}, 2: {"tail_age_ms": 30}}, 3, 75, 30, 20),
        # exactly one minimum step left: trimmed to that step, not suppressed
        (
            "min_interval_ms",
            {1: {"min_interval_ms": 10}, 2: {"min_interval_ms": 10}, 3: {"min_interval_ms": 9}},
            4,
            5,
            1,
            10,
        ),
        ("tail_age_ms", {1: {"tail_age_ms": 49}, 2: {"tail_age_ms": 49}}, 3, 30, 2, 20),
        (
            "tail_age_ms",
            {1: {"tail_age_ms": 49}, 2: {"tail_age_ms": 49}, 3: {"tail_age_ms": 1}},
            4,
            30,
            1,
            10,
        ),
        # ... also where the float sum leaves a hair under the step (0.1 - 0.099 < 0.001)
        (
            "base_spread_bps_delta",
            {
                1: {"base_spread_bps_delta": 0.035},
                2: {"base_spread_bps_delta": 0.0367},
                3: {"base_spread_bps_delta": 0.0273},
            },
            4,
            0.02,
            0.001,
            10,
        ),
        (
            "impact_cap_ratio",
            {
                1: {"impact_cap_ratio": -0.001},
                2: {"impact_cap_ratio": -0.0081},
                3: {"impact_cap_ratio": -0.0099},
            },
            4,
            -0.005,
            -0.001,
            10,
        ),
        # less than one step left: suppressed
        (
            "min_interval_ms",
            {1: {"min_interval_ms": 14}, 2: {"min_interval_ms": 14}, 3: {"min_interval_ms": 2}},
            4,
            5,
            None,
            10,
        ),
        (
            "base_spread_bps_delta",
            {
                1: {"base_spread_bps_delta": 0.04},
                2: {"base_spread_bps_delta": 0.04},
                3: {"base_spread_bps_delta": 0.0195},
            },
            4,
            0.01,
            None,
            10,
        ),
        (
            "impact_cap_ratio",
            {1: {"impact_cap_ratio": -0.0095}, 2: {"impact_cap_ratio": -0.0099}},
            3,
            -0.005,
            None,
            20,
        ),
    ],
)
def test_velocity_table(
    key: str,
    history: dict,
    iteration: int,
    delta: float,
    accepted: float | None,
    minutes: float,
) -> None:
    for changes in history.values():  # the rows stay under the cooldown threshold
        assert all(abs(v) < HALF[k] for k, v in changes.items())
    out = run_guard({key: delta}, history, iteration, minutes=minutes)
    if accepted is None:
        d = assert_suppressed(out, key, "velocity")
        assert d.detail.startswith(f"hourly budget {CAP[key]:g} used")
        return
    assert out.accepted == {key: accepted} and out.suppressed == {}
    assert type(out.accepted[key]) is type(accepted)
    if accepted != delta:
        assert out.trimmed == {key: "velocity"} and out.flag("velocity")
        d = only_decision(out, key)
        assert (d.guard, d.action) == ("velocity", "trimmed")
    else:
        assert out.trimmed == {} and not out.flag("velocity") and out.decisions == ()


# --- cooldown: at least half the hourly cap ----------------------------------------------------

# (key, a change of exactly half the cap, one just under it)
HALVES = [
    ("base_spread_bps_delta", 0.05, 0.0499),
    ("min_interval_ms", 15, 14),
    ("replace_rate_per_min", -30, -29),
    ("tail_age_ms", 50, 49),
    ("impact_cap_ratio", -0.01, -0.0099),
    ("max_delta_ratio", -0.015, -0.0149),
]


@pytest.mark.parametrize(("key", "half", "under"), HALVES, ids=[h[0] for h in HALVES])
def test_cooldown_fires_at_exactly_half_the_cap(key: str, half: float, under: float) -> None:
    assert abs(half) == pytest.approx(HALF[key])
    step = PARAMS[key].min_step * (1 if half > 0 else -1)
    step = PARAMS[key].normalize(step)
    for i in (2, 3):  # cooling for 2 iterations
        d = assert_suppressed(run_guard({key: step}, {1: {key: half}}, i), key, "cooldown")
        assert "at iteration 1" in d.detail and "half the hourly cap" in d.detail
    assert run_guard({key: step}, {1: {key: half}}, 4).accepted == {key: step}
    # just under half: no cooldown
    out = run_guard({key: step}, {1: {key: under}}, 2)
    assert out.accepted == {key: step} and out.decisions == ()


def test_cooldown_looks_at_every_recent_change_not_only_the_last() -> None:
    out = run_guard(
        {"min_interval_ms": 1}, {1: {"min_interval_ms": 15}, 2: {"min_interval_ms": 1}}, 3
    )
    d = assert_suppressed(out, "min_interval_ms", "cooldown")
    assert "changed by 15 at iteration 1" in d.detail


def test_cooldown_is_per_parameter() -> None:
    out = run_guard({"min_interval_ms": 5}, {1: {"tail_age_ms": 60}}, 2)
    assert out.accepted == {"min_interval_ms": 5} and out.decisions == ()


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
        ("tail_age_ms", -1, False),
    ],
)
def test_deadband(key: str, delta: float, dropped: bool) -> None:
    out = run_guard({key: delta}, {}, 1)
    if dropped:
        d = assert_suppressed(out, key, "deadband")
        assert "below minimum step" in d.detail
    else:
        assert out.accepted == {key: delta} and out.decisions == ()


# --- safety bypass --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "history", "iteration", "delta", "guard_name"),
    [
        ("min_interval_ms", {1: {"min_interval_ms": -3}}, 2, 5, "oscillation"),
        ("base_spread_bps_delta", {1: {"base_spread_bps_delta": -0.01}}, 2, 0.02, "oscillation"),
        ("impact_cap_ratio", {1: {"impact_cap_ratio": 0.005}}, 2, -0.005, "oscillation"),
        (
            "impact_cap_ratio",
            {1: {"impact_cap_ratio": -0.005}, 5: {"impact_cap_ratio": 0.005}},
            9,
            -0.005,
            "oscillation",  # the 1-per-6 reversal budget
        ),
        ("min_interval_ms", {1: {"min_interval_ms": 15}}, 2, 5, "cooldown"),
        ("base_spread_bps_delta", {1: {"base_spread_bps_delta": 0.05}}, 2, 0.02, "cooldown"),
        ("impact_cap_ratio", {1: {"impact_cap_ratio": -0.01}}, 2, -0.005, "cooldown"),
    ],
)
def test_safety_bypass(
    key: str, history: dict, iteration: int, delta: float, guard_name: str
) -> None:
    assert_suppressed(run_guard({key: delta}, history, iteration), key, guard_name)
    passed = run_guard({key: delta}, history, iteration, hard_fail=True)
    assert passed.accepted == {key: delta} and passed.suppressed == {}
    d = only_decision(passed, key)
    assert (d.guard, d.action) == (guard_name, "bypassed")
    assert d.detail.startswith("safety move under hard KPI failure: ")
    assert not passed.flag(guard_name)  # a bypassed guard changed nothing


def test_bypass_of_oscillation_and_cooldown_together() -> None:
    out = run_guard({"min_interval_ms": 5}, {1: {"min_interval_ms": -15}}, 2, hard_fail=True)
    assert out.accepted == {"min_interval_ms": 5}
    assert [(d.guard, d.action) for d in out.decisions] == [
        ("oscillation", "bypassed"),
        ("cooldown", "bypassed"),
    ]


@pytest.mark.parametrize(
    ("key", "history", "iteration", "delta", "guard_name"),
    [
        ("min_interval_ms", {1: {"min_interval_ms": 3}}, 2, -3, "oscillation"),  # not safe
        ("base_spread_bps_delta", {1: {"base_spread_bps_delta": 0.01}}, 2, -0.01, "oscillation"),
        ("impact_cap_ratio", {1: {"impact_cap_ratio": -0.005}}, 2, 0.005, "oscillation"),
        ("tail_age_ms", {1: {"tail_age_ms": 30}}, 2, -30, "oscillation"),  # no safe direction
        ("tail_age_ms", {1: {"tail_age_ms": -30}}, 2, 30, "oscillation"),
        ("replace_rate_per_min", {1: {"replace_rate_per_min": -30}}, 2, -10, "cooldown"),
        ("max_delta_ratio", {1: {"max_delta_ratio": -0.015}}, 2, -0.01, "cooldown"),
        ("min_interval_ms", {1: {"min_interval_ms": -15}}, 2, -1, "cooldown"),
    ],
)
def test_no_bypass_for_moves_that_are_not_safer(
    key: str, history: dict, iteration: int, delta: float, guard_name: str
) -> None:
    out = run_guard({key: delta}, history, iteration, hard_fail=True)
    assert_suppressed(out, key, guard_name)


def test_bypass_never_skips_velocity() -> None:
    history = {1: {"min_interval_ms": 20}, 2: {"min_interval_ms": 8}}
    out = run_guard({"min_interval_ms": 5}, history, 3, hard_fail=True)
    assert out.accepted == {"min_interval_ms": 2}  # 30 - 28 left
    assert out.trimmed == {"min_interval_ms": "velocity"}
    assert [(d.guard, d.action) for d in out.decisions] == [
        ("cooldown", "bypassed"),
        ("velocity", "trimmed"),
    ]
    spent = {1: {"min_interval_ms": 20}, 2: {"min_interval_ms": 10}}
    out = run_guard({"min_interval_ms": 5}, spent, 3, hard_fail=True)
    assert out.suppressed == {"min_interval_ms": "velocity"} and out.accepted == {}


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
    assert [d.param for d in out.decisions] == ["base_spread_bps_delta", "min_interval_ms"]


def test_guard_does_not_mutate_the_ledger() -> None:
    ledger = ledger_of({1: {"min_interval_ms": 20}, 2: {"tail_age_ms": -30}})
    snapshot = repr(ledger)
    guard(
        {"min_interval_ms": 5, "tail_age_ms": 30},
        ledger,
        3,
        hard_fail=True,
        minutes_per_iteration=MIN_PER_ITER,
    )
    assert repr(ledger) == snapshot


def test_decisions_and_outcomes_are_immutable_values() -> None:
    d = GuardDecision("tail_age_ms", "cooldown", "suppressed", "why")
    assert d.as_json() == {
        "action": "suppressed",
        "detail": "why",
        "guard": "cooldown",
        "param": "tail_age_ms",
    }
    assert hash(d) == hash(GuardDecision("tail_age_ms", "cooldown", "suppressed", "why"))
    out = GuardOutcome({}, {}, {})
    assert out.decisions == () and not out.flag("cooldown")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.param = "min_interval_ms"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.accepted = {"tail_age_ms": 1}  # type: ignore[misc]
    assert empty_ledger() == {"changes": {}, "last_dir": {}}


# --- record_changes -------------------------------------------------------------------------


def test_record_changes_is_pure_and_marks_reversals() -> None:
    ledger = ledger_of({1: {"tail_age_ms": 30}})
    snapshot = repr(ledger)
    after = record_changes(
        ledger, 2, {"tail_age_ms": -10, "min_interval_ms": 5}, minutes_per_iteration=20
    )
    assert repr(ledger) == snapshot
    assert after == {
        "changes": {
            "min_interval_ms": [{"delta": 5, "iteration": 2, "reversal": False}],
            "tail_age_ms": [
                {"delta": 30, "iteration": 1, "reversal": False},
                {"delta": -10, "iteration": 2, "reversal": True},
            ],
        },
        "last_dir": {"min_interval_ms": 1, "tail_age_ms": -1},
    }


@pytest.mark.parametrize("zero", [0, 0.0, -0.0])
def test_a_zero_delta_neither_records_nor_flips_even_when_it_sorts_first(zero: float) -> None:
    """base_spread_bps_delta sorts before every other key: a zero for it must not end the
    loop, must not add an entry, and must not turn its last direction (+1) around."""
    ledger = ledger_of({1: {"base_spread_bps_delta": 0.01}})
    after = record_changes(
        ledger,
        2,
        {"base_spread_bps_delta": zero, "impact_cap_ratio": -0.005, "tail_age_ms": 30},
        minutes_per_iteration=20,
    )
    assert after["changes"]["base_spread_bps_delta"] == [
        {"delta": 0.01, "iteration": 1, "reversal": False}
    ]
    assert after["last_dir"] == {
        "base_spread_bps_delta": 1,
        "impact_cap_ratio": -1,
        "tail_age_ms": 1,
    }
    assert after["changes"]["impact_cap_ratio"] == [
        {"delta": -0.005, "iteration": 2, "reversal": False}
    ]
    assert after["changes"]["tail_age_ms"] == [{"delta": 30, "iteration": 2, "reversal": False}]
    # and a later increase of the spread is still no reversal
    out = guard(
        {"base_spread_bps_delta": 0.01}, after, 3, hard_fail=False, minutes_per_iteration=20
    )
    assert out.accepted == {"base_spread_bps_delta": 0.01} and out.decisions == ()


# --- properties over random sequences ---------------------------------------------------------


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
@given(
    st.lists(step_st, min_size=1, max_size=16),
    st.sampled_from(["steady_safe", "aggressive"]),
    st.sampled_from([5.0, 10.0, 20.0, 30.0]),
)
def test_guards_hold_over_random_sequences(steps: list, profile: str, minutes: float) -> None:
    """Whatever is proposed, with or without a hard FAIL: bounds hold; no parameter moves more
    than its cap within any hour of iterations; no applied reversal comes within 3 iterations
    of the last change, nor within 6 of another reversal, unless it is a safer move under a
    hard FAIL; nothing changes in the 2 iterations after a change of at least half the cap
    unless it is such a move."""
    hour = window_iterations(minutes)
    overrides = dict(load_profile(profile).overrides)
    ledger = empty_ledger()
    applied_by_iter: list[dict[str, Any]] = []
    hard_by_iter: list[bool] = []
    for i, (raw, hard_fail) in enumerate(steps, start=1):
        deltas = dict(raw)
        out = guard(deltas, ledger, i, hard_fail=hard_fail, minutes_per_iteration=minutes)
        assert set(out.accepted) | set(out.suppressed) == set(deltas)
        assert not set(out.accepted) & set(out.suppressed)
        result = apply_deltas(overrides, out.accepted)
        ledger = record_changes(ledger, i, result.applied, minutes_per_iteration=minutes)
        overrides = result.overrides
        applied_by_iter.append(result.applied)
        hard_by_iter.append(hard_fail)
        for key, value in overrides.items():
            p = PARAMS[key]
            assert p.lo <= value <= p.hi and round(value, p.precision) == value
    for end in range(len(applied_by_iter)):
        window = applied_by_iter[max(0, end - hour + 1) : end + 1]
        for key in PARAMS:
            used = sum(_units(key, a.get(key, 0)) for a in window)
            assert used <= _units(key, CAP[key]), (key, end + 1, window)
    for key in PARAMS:
        p = PARAMS[key]
        moves = [(i, a[key]) for i, a in enumerate(applied_by_iter, start=1) if key in a]
        reversals: list[int] = []
        for (i0, d0), (i1, d1) in zip(moves, moves[1:], strict=False):
            bypass = hard_by_iter[i1 - 1] and p.is_safe_move(d1)
            if (d0 > 0) != (d1 > 0):
                if not bypass:
                    assert i1 - i0 > 3, (key, moves)
                    assert not reversals or i1 - reversals[-1] >= 6, (key, moves)
                reversals.append(i1)
        for i0, d0 in moves:
            if _units(key, d0) * 2 >= _units(key, CAP[key]):
                for i1, d1 in moves:
                    if i0 < i1 <= i0 + 2:
                        assert hard_by_iter[i1 - 1] and p.is_safe_move(d1), (key, moves)


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
        ledger = record_changes(ledger, i, deltas, minutes_per_iteration=MIN_PER_ITER)
