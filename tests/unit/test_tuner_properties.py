"""Tuner v2 properties over random KPIs, overrides and histories (docs/tuner.md).

- no proposed delta moves a key past its cap or floor, or out of its bounds; a start within
  the key limits stays within them;
- the harvest never proposes when a defensive condition holds, or without 3 OK iterations;
- deltas are exactly representable at the parameter's precision (what the applier writes);
- the whole proposal equals the contract written out independently (tuner_contract).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from soakq_testkit import PROPERTY
from tuner_contract import (
    DEFENSIVE,
    HARVEST,
    KEY_LIMITS,
    contract_propose,
    defensive_conditions,
    window_means,
)

from soakq.params import PARAMS
from soakq.rules.apply import apply_deltas
from soakq.rules.tuner import propose

pytestmark = pytest.mark.usefixtures("clean_env")

MANY = settings(PROPERTY, max_examples=120)
MOST = settings(PROPERTY, max_examples=250)
MOVES = {
    rule.rule: {m[0]: m for m in rule.moves} for rule in (*DEFENSIVE, HARVEST)
}  # rule -> key -> move


def _value(key: str, within_limits: bool) -> st.SearchStrategy[Any]:
    p = PARAMS[key]
    lo, hi = p.lo, p.hi
    if within_limits:
        floor, cap = KEY_LIMITS.get(key, (None, None))
        lo, hi = (
            max(lo, floor if floor is not None else lo),
            min(hi, cap if cap is not None else hi),
        )
    edges = sorted(
        {lo, hi, *(v for v in KEY_LIMITS.get(key, ()) if v is not None and lo <= v <= hi)}
    )
    if p.is_int:
        near = [int(e) + d for e in edges for d in (-3, -1, 0, 1, 3) if lo <= int(e) + d <= hi]
        return st.one_of(st.integers(int(lo), int(hi)), st.sampled_from(near))
    scale = 10**p.precision
    units = st.integers(round(lo * scale), round(hi * scale)).map(
        lambda n: round(n / scale, p.precision)
    )
    near = [
        round(e + d, p.precision)
        for e in edges
        for d in (-0.005, -0.001, 0.0, 0.001, 0.005)
        if lo <= round(e + d, p.precision) <= hi
    ]
    return st.one_of(units, st.sampled_from(near))


def overrides_st(within_limits: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({k: _value(k, within_limits) for k in PARAMS})


def _kpi(lo: float, hi: float, edges: list[float], missing: bool = True) -> st.SearchStrategy[Any]:
    near = [e + d for e in edges for d in (-1e-4, 0.0, 1e-4)]
    options = [st.floats(lo, hi), st.sampled_from(near)]
    if missing:
        options.append(st.none())
    return st.one_of(*options)


def kpis_st(missing: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "risk_ratio": _kpi(0.0, 1.0, [0.35, 0.40, 0.60], missing),
            "net_bps": _kpi(-3.0, 6.0, [2.7, 3.0], missing),
            "maker_taker_ratio": _kpi(0.5, 1.0, [0.85], missing),
            "p95_latency_ms": _kpi(100.0, 600.0, [330.0, 360.0], missing),
            "adverse_bps_p95": _kpi(0.0, 10.0, [3.5], missing),
            "slippage_bps_p95": _kpi(0.0, 6.0, [2.5], missing),
        }
    )


# Calm-ish KPIs: no defensive condition is likely, so the harvest branch is reached often.
calm_st = st.fixed_dictionaries(
    {
        "risk_ratio": st.floats(0.0, 0.45),
        "net_bps": st.floats(2.0, 5.0),
        "maker_taker_ratio": st.floats(0.84, 1.0),
        "p95_latency_ms": st.floats(200.0, 340.0),
        "adverse_bps_p95": st.floats(0.0, 3.6),
        "slippage_bps_p95": st.floats(0.0, 2.6),
    }
)
verdict_st = st.sampled_from(["OK", "OK", "OK", "WARN", "FAIL"])


@st.composite
def case_st(draw: Any, within_limits: bool = False) -> tuple[dict, dict, list[dict]]:
    """(current KPIs, overrides, history whose last entry is the current iteration)."""
    kpi_source = draw(st.sampled_from([kpis_st(), calm_st]))
    n = draw(st.integers(0, 5))
    past = [
        {"iteration": i, "kpi_verdict": draw(verdict_st), **draw(kpi_source)} for i in range(1, n)
    ]
    current = draw(kpi_source)
    history = [*past, {"iteration": n, "kpi_verdict": draw(verdict_st), **current}] if n else []
    return current, draw(overrides_st(within_limits)), history


def _limits(key: str) -> tuple[float, float]:
    p = PARAMS[key]
    floor, cap = KEY_LIMITS.get(key, (None, None))
    return (p.lo if floor is None else floor, p.hi if cap is None else cap)


@MANY
@given(case_st())
def test_no_delta_moves_a_key_past_its_cap_floor_or_bounds(case: tuple) -> None:
    summary, overrides, history = case
    p = propose(summary, overrides, history)
    applied = apply_deltas(overrides, p.deltas)
    for key, delta in p.deltas.items():
        prm = PARAMS[key]
        floor, cap = KEY_LIMITS.get(key, (None, None))
        new = applied.overrides[key]
        assert delta != 0
        assert applied.applied[key] == delta  # the applier writes exactly the proposed move
        assert prm.lo <= new <= prm.hi
        if delta > 0 and cap is not None:
            assert new <= cap, (key, overrides[key], delta)
        if delta < 0 and floor is not None:
            assert new >= floor, (key, overrides[key], delta)
        # the move's own direction and size: never against its intent, never beyond its step
        rule = p.rationale[key].split()[1]
        _, kind, amount, own_cap, own_floor = MOVES[rule][key]
        step = amount if kind == "add" else overrides[key] * (amount - 1)
        assert (delta > 0) == (step > 0)
        assert abs(delta) <= abs(step) + 10**-prm.precision / 2
        if delta > 0 and own_cap is not None:
            assert new <= own_cap
        if delta < 0 and own_floor is not None:
            assert new >= own_floor


@MANY
@given(case_st(within_limits=True))
def test_a_start_within_the_key_limits_stays_within(case: tuple) -> None:
    summary, overrides, history = case
    p = propose(summary, overrides, history)
    after = apply_deltas(overrides, p.deltas).overrides
    for key in PARAMS:
        lo, hi = _limits(key)
        assert lo <= after[key] <= hi, (key, overrides[key], p.deltas.get(key))


@MANY
@given(case_st())
def test_deltas_are_exact_at_the_parameter_precision(case: tuple) -> None:
    summary, overrides, history = case
    for key, delta in propose(summary, overrides, history).deltas.items():
        prm = PARAMS[key]
        assert type(delta) is (int if prm.is_int else float)
        assert prm.normalize(delta) == delta
        assert round(delta, prm.precision) == delta
        # and the start plus the delta is a value at the precision: nothing left to round away
        assert round(overrides[key] + delta, prm.precision) == prm.normalize(overrides[key] + delta)


@MANY
@given(case_st())
def test_harvest_needs_three_ok_and_no_defensive_condition(case: tuple) -> None:
    summary, overrides, history = case
    p = propose(summary, overrides, history)
    if p.kind != "harvest":
        return
    window = history[-3:]
    assert len(window) == 3 and all(d["kpi_verdict"] == "OK" for d in window)
    assert defensive_conditions(summary) == []
    means = window_means(window)
    assert means["risk_ratio"] is not None and means["risk_ratio"] < 0.35
    assert means["net_bps"] is not None and means["net_bps"] >= 3.0
    assert p.fired == ("3",) and set(p.deltas) <= {"min_interval_ms", "impact_cap_ratio"}
    assert p.deltas.get("min_interval_ms", -1) < 0 and p.deltas.get("impact_cap_ratio", 1) > 0


@MANY
@given(case_st())
def test_a_defensive_condition_always_answers_defensively(case: tuple) -> None:
    summary, overrides, history = case
    p = propose(summary, overrides, history)
    held = defensive_conditions(summary)
    if held:
        assert p.kind == "defensive" and list(p.fired) == held
        assert all(p.rationale[k].split()[1] in held for k in p.deltas)
    else:
        assert p.kind in ("", "harvest") and p.exhausted == ()


@MOST
@given(case_st())
def test_proposal_equals_the_contract(case: tuple) -> None:
    summary, overrides, history = case
    p = propose(summary, overrides, history)
    want = contract_propose(summary, overrides, history)
    assert p.deltas == want.deltas
    assert (p.kind, list(p.fired)) == (want.kind, want.fired)
    assert [(e.rule, e.metric, e.pinned) for e in p.exhausted] == want.exhausted
    for e in p.exhausted:
        assert e.value == summary[e.metric]
    for key, rule in want.winner.items():
        assert p.rationale[key].startswith(f"rule {rule} ")
    assert set(p.rationale) == set(p.deltas)


@PROPERTY
@given(overrides_st(within_limits=True), st.lists(calm_st, min_size=3, max_size=3))
def test_harvest_fires_whenever_the_contract_says_so(overrides: dict, kpis: list) -> None:
    """Three OK iterations, no defensive condition now, a good mean, a key not pinned."""
    history = [{"iteration": i, "kpi_verdict": "OK", **k} for i, k in enumerate(kpis, start=1)]
    assume(defensive_conditions(kpis[-1]) == [])
    assume(HARVEST.holds(window_means(history)))
    assume(overrides["min_interval_ms"] > 50 or overrides["impact_cap_ratio"] < 0.10)
    p = propose(kpis[-1], overrides, history)
    assert p.kind == "harvest" and p.deltas
    # one WARN among the three, or one entry fewer, and it never fires
    assert propose(kpis[-1], overrides, history[1:]).deltas == {}
    warned = [dict(history[0], kpi_verdict="WARN"), *history[1:]]
    assert propose(kpis[-1], overrides, warned).deltas == {}
