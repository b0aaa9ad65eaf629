"""Micro-tuner rules 1-8 (DESIGN §4): exact deltas, caps, first-rule-wins, rule 7/8.

Two findings are pinned here (see the report): rule 7 makes rule 3 unreachable (rule 3 needs
risk < 0.35 and net >= 3.0; rule 7 then says "stable: no change"), and so rule 8 can never act
(the only min_interval decrease is rule 3's, which needs risk < 0.35, while rule 8 needs
risk >= 0.40).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soakq_testkit import GOOD_KPIS, PROPERTY

from soakq.params import PARAMS
from soakq.profiles import load_profile
from soakq.tuner import propose

pytestmark = pytest.mark.usefixtures("clean_env")

STEADY = dict(load_profile("steady_safe").overrides)
DEFAULT = dict(load_profile("default").overrides)
ULTRA = dict(load_profile("ultra_safe").overrides)

# DESIGN §4, rule by rule: (rule, key) -> (kind, amount, limit kind, limit).
MOVES: dict[tuple[str, str], tuple[str, float, str | None, float | None]] = {
    ("1", "min_interval_ms"): ("add", 5, "cap", 80),
    ("1", "impact_cap_ratio"): ("add", -0.01, "floor", 0.04),
    ("1", "tail_age_ms"): ("add", 30, "cap", 800),
    ("2", "min_interval_ms"): ("add", 5, "cap", 80),
    ("2", "impact_cap_ratio"): ("add", -0.005, "floor", 0.04),
    ("3", "min_interval_ms"): ("add", -3, "floor", 50),
    ("3", "impact_cap_ratio"): ("add", 0.005, "cap", 0.10),
    ("4", "base_spread_bps_delta"): ("add", 0.015, None, None),
    ("4", "replace_rate_per_min"): ("mul", 0.85, None, None),
    ("4", "min_interval_ms"): ("add", 25, "cap", 100),
    ("5", "replace_rate_per_min"): ("mul", 0.9, None, None),
    ("6", "impact_cap_ratio"): ("add", -0.01, None, None),
    ("6", "max_delta_ratio"): ("add", -0.01, None, None),
    ("6", "base_spread_bps_delta"): ("add", 0.02, "cap", 0.25),
    ("6", "tail_age_ms"): ("add", 30, None, None),
}


def move_for(rule: str, key: str, summary: dict[str, Any]) -> tuple[str, float, str | None, Any]:
    if (rule, key) == ("5", "tail_age_ms"):  # 5 has two steps for tail_age, same cap
        return ("add", 50 if summary["p95_latency_ms"] <= 360 else 75, "cap", 800)
    return MOVES[(rule, key)]


def tune(overrides: dict[str, Any] = STEADY, **kpis: Any) -> Any:
    return propose({**GOOD_KPIS, **kpis}, overrides)


CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # id, overrides, KPI changes, expected deltas
    (
        "r1",
        STEADY,
        {"risk_ratio": 0.65},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 30},
    ),
    (
        "r1-at-0.60",
        STEADY,
        {"risk_ratio": 0.60},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 30},
    ),
    ("r2", STEADY, {"risk_ratio": 0.50}, {"min_interval_ms": 5, "impact_cap_ratio": -0.005}),
    (
        "r2-at-0.40",
        STEADY,
        {"risk_ratio": 0.40},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005},
    ),
    (
        "r2-below-0.60",
        STEADY,
        {"risk_ratio": 0.5999},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005},
    ),
    ("below-r2", STEADY, {"risk_ratio": 0.3999}, {}),
    (
        "r4",
        DEFAULT,
        {"maker_taker_ratio": 0.80, "net_bps": 2.8},
        {"base_spread_bps_delta": 0.015, "replace_rate_per_min": -42, "min_interval_ms": 25},
    ),
    (
        "r4-at-net-2.7",
        DEFAULT,
        {"maker_taker_ratio": 0.80, "net_bps": 2.7},
        {"base_spread_bps_delta": 0.015, "replace_rate_per_min": -42, "min_interval_ms": 25},
    ),
    (
        "r4-capped-min-interval",
        ULTRA,
        {"maker_taker_ratio": 0.80, "net_bps": 2.8},
        {"base_spread_bps_delta": 0.015, "replace_rate_per_min": -33, "min_interval_ms": 20},
    ),
    ("r4-net-too-low", DEFAULT, {"maker_taker_ratio": 0.80, "net_bps": 2.69}, {}),
    ("r4-mt-at-0.85", DEFAULT, {"maker_taker_ratio": 0.85, "net_bps": 2.8}, {}),
    (
        "r4-risk-too-high",
        DEFAULT,
        {"maker_taker_ratio": 0.80, "risk_ratio": 0.41},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005},
    ),
    ("r5-at-330", STEADY, {"p95_latency_ms": 330}, {"tail_age_ms": 50}),
    ("r5-at-360", STEADY, {"p95_latency_ms": 360}, {"tail_age_ms": 50}),
    ("r5-below", STEADY, {"p95_latency_ms": 329.99}, {}),
    (
        "r5-above-360-capped",
        STEADY,
        {"p95_latency_ms": 360.01},
        {"tail_age_ms": 60, "replace_rate_per_min": -25},
    ),
    (
        "r5-above-360",
        DEFAULT,
        {"p95_latency_ms": 400},
        {"tail_age_ms": 75, "replace_rate_per_min": -28},
    ),
    ("r5-at-cap", {**STEADY, "tail_age_ms": 800}, {"p95_latency_ms": 340}, {}),
    ("r5-above-cap", {**STEADY, "tail_age_ms": 900}, {"p95_latency_ms": 340}, {}),
    (
        "r6-adverse",
        STEADY,
        {"adverse_bps_p95": 3.6},
        {"impact_cap_ratio": -0.01, "max_delta_ratio": -0.01},
    ),
    ("r6-adverse-at-3.5", STEADY, {"adverse_bps_p95": 3.5}, {}),
    (
        "r6-slippage",
        STEADY,
        {"slippage_bps_p95": 2.6},
        {"base_spread_bps_delta": 0.02, "tail_age_ms": 30},
    ),
    ("r6-slippage-at-2.5", STEADY, {"slippage_bps_p95": 2.5}, {}),
    (
        "r6-spread-capped",
        {**STEADY, "base_spread_bps_delta": 0.24},
        {"slippage_bps_p95": 3.0},
        {"base_spread_bps_delta": 0.01, "tail_age_ms": 30},
    ),
    (
        "r6-spread-above-cap",
        {**STEADY, "base_spread_bps_delta": 0.30},
        {"slippage_bps_p95": 3.0},
        {"tail_age_ms": 30},
    ),
    (
        "r6-at-bounds",
        {**STEADY, "impact_cap_ratio": 0.04, "max_delta_ratio": 0.10},
        {"adverse_bps_p95": 5.0},
        {},
    ),
    # caps of rule 1: never against intent
    (
        "cap-78",
        {**STEADY, "min_interval_ms": 78},
        {"risk_ratio": 0.65},
        {"min_interval_ms": 2, "impact_cap_ratio": -0.01, "tail_age_ms": 30},
    ),
    (
        "cap-80",
        {**STEADY, "min_interval_ms": 80},
        {"risk_ratio": 0.65},
        {"impact_cap_ratio": -0.01, "tail_age_ms": 30},
    ),
    (
        "cap-85",
        {**STEADY, "min_interval_ms": 85},
        {"risk_ratio": 0.65},
        {"impact_cap_ratio": -0.01, "tail_age_ms": 30},
    ),
    (
        "floor-impact",
        {**STEADY, "impact_cap_ratio": 0.045},
        {"risk_ratio": 0.65},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005, "tail_age_ms": 30},
    ),
    (
        "floor-impact-at",
        {**STEADY, "impact_cap_ratio": 0.04},
        {"risk_ratio": 0.65},
        {"min_interval_ms": 5, "tail_age_ms": 30},
    ),
    (
        "tail-cap-790",
        {**STEADY, "tail_age_ms": 790},
        {"risk_ratio": 0.65},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 10},
    ),
    # first rule to set a key wins
    (
        "first-wins-tail",
        STEADY,
        {"risk_ratio": 0.65, "p95_latency_ms": 340},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 30},
    ),
    (
        "first-wins-impact",
        STEADY,
        {"risk_ratio": 0.5, "adverse_bps_p95": 3.6},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005, "max_delta_ratio": -0.01},
    ),
    (
        "first-wins-replace",
        DEFAULT,
        {"risk_ratio": 0.3, "maker_taker_ratio": 0.8, "p95_latency_ms": 400},
        {
            "base_spread_bps_delta": 0.015,
            "replace_rate_per_min": -42,
            "min_interval_ms": 25,
            "tail_age_ms": 75,
        },
    ),
    (
        "r2-and-r4-at-0.40",
        DEFAULT,
        {"risk_ratio": 0.40, "maker_taker_ratio": 0.8},
        {
            "min_interval_ms": 5,
            "impact_cap_ratio": -0.005,
            "base_spread_bps_delta": 0.015,
            "replace_rate_per_min": -42,
        },
    ),
    # a rule whose cap gives nothing leaves the key to a later rule (as implemented)
    (
        "capped-rule-yields",
        {**DEFAULT, "min_interval_ms": 80},
        {"risk_ratio": 0.40, "maker_taker_ratio": 0.8},
        {
            "impact_cap_ratio": -0.005,
            "base_spread_bps_delta": 0.015,
            "replace_rate_per_min": -42,
            "min_interval_ms": 20,
        },
    ),
    # rule 7
    ("r7-stable", STEADY, {"risk_ratio": 0.30, "net_bps": 3.2}, {}),
    (
        "r7-stable-risk-0.39",
        STEADY,
        {"risk_ratio": 0.39, "net_bps": 3.2, "p95_latency_ms": 340},
        {},
    ),
    (
        "r7-stable-drops-r5-r6",
        STEADY,
        {"risk_ratio": 0.30, "net_bps": 3.0, "p95_latency_ms": 340, "adverse_bps_p95": 3.8},
        {},
    ),
    (
        "r7-keeps-risk-0.40",
        STEADY,
        {"risk_ratio": 0.40, "net_bps": 3.2},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005},
    ),
    (
        "r7-keeps-net-below-3",
        STEADY,
        {"risk_ratio": 0.30, "net_bps": 2.99, "p95_latency_ms": 340},
        {"tail_age_ms": 50},
    ),
    (
        "r7-unknown-risk-keeps",
        STEADY,
        {"risk_ratio": None, "net_bps": 3.2, "p95_latency_ms": 340},
        {"tail_age_ms": 50},
    ),
    ("nothing", STEADY, {}, {}),
]


@pytest.mark.parametrize(
    ("overrides", "kpis", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_table(overrides: dict, kpis: dict, expected: dict) -> None:
    proposal = tune(overrides, **kpis)
    assert proposal.deltas == pytest.approx(expected, abs=1e-12)
    assert set(proposal.deltas) == set(expected)
    for key, delta in proposal.deltas.items():
        assert type(delta) is (int if PARAMS[key].is_int else float)
    assert set(proposal.rationale) == set(proposal.deltas)
    for line in proposal.rationale.values():
        assert line.startswith("rule ") and "\n" not in line


def test_rationale_names_the_rule_that_won() -> None:
    p = tune(STEADY, risk_ratio=0.5, adverse_bps_p95=3.6)
    assert p.rationale["impact_cap_ratio"].startswith("rule 2:")
    assert p.rationale["max_delta_ratio"].startswith("rule 6:")
    assert "0.5" in p.rationale["impact_cap_ratio"]  # the condition's value is quoted


def test_rule7_note() -> None:
    p = tune(STEADY, risk_ratio=0.30, net_bps=3.2)
    assert p.deltas == {} and p.note.startswith("stable: no change")


def test_rule3_is_unreachable_example() -> None:
    """Rule 3's own example (risk 0.30, net 3.2) ends as "stable: no change" (rule 7)."""
    p = tune(STEADY, risk_ratio=0.30, net_bps=3.2)
    assert "min_interval_ms" not in p.deltas and "impact_cap_ratio" not in p.deltas


# --- properties ------------------------------------------------------------------------------


def _value(key: str) -> st.SearchStrategy[Any]:
    p = PARAMS[key]
    if p.is_int:
        return st.integers(int(p.lo), int(p.hi))
    return st.floats(p.lo, p.hi).map(lambda v: round(v, p.precision))


overrides_st = st.fixed_dictionaries({k: _value(k) for k in PARAMS})


def _maybe(lo: float, hi: float, points: list[float]) -> st.SearchStrategy[Any]:
    return st.one_of(st.floats(lo, hi), st.sampled_from(points), st.none())


summary_st = st.fixed_dictionaries(
    {
        "risk_ratio": _maybe(0.0, 1.0, [0.35, 0.40, 0.60]),
        "net_bps": _maybe(-5.0, 6.0, [2.7, 3.0]),
        "maker_taker_ratio": _maybe(0.5, 1.0, [0.85]),
        "p95_latency_ms": _maybe(100.0, 600.0, [330.0, 360.0]),
        "adverse_bps_p95": _maybe(0.0, 10.0, [3.5]),
        "slippage_bps_p95": _maybe(0.0, 6.0, [2.5]),
    }
)


def _expected_new(key: str, old: float, move: tuple[str, float, str | None, Any]) -> float:
    kind, amount, limit_kind, limit = move
    target = old + amount if kind == "add" else old * amount
    if limit_kind == "cap":
        target = min(target, limit)
    elif limit_kind == "floor":
        target = max(target, limit)
    p = PARAMS[key]
    return round(min(max(target, p.lo), p.hi), p.precision)


@PROPERTY
@given(summary_st, overrides_st)
def test_proposals_respect_bounds_caps_and_intent(summary: dict, overrides: dict) -> None:
    proposal = propose(summary, overrides)
    for key, delta in proposal.deltas.items():
        p = PARAMS[key]
        rule = proposal.rationale[key].split()[1].rstrip(":")
        kind, amount, limit_kind, limit = move_for(rule, key, summary)
        intent = 1 if (amount > 0 if kind == "add" else amount > 1) else -1
        new = round(overrides[key] + delta, p.precision)  # what the applier will write
        assert delta != 0 and (delta > 0) == (intent > 0), (key, rule, delta)
        assert p.lo <= new <= p.hi
        if limit_kind == "cap":
            assert new <= limit
        if limit_kind == "floor":
            assert new >= limit
        assert new == _expected_new(key, overrides[key], (kind, amount, limit_kind, limit))
        assert round(delta, p.precision) == delta  # deltas carry the parameter's precision


@PROPERTY
@given(
    summary_st,
    st.floats(0.0, 0.35, exclude_max=True),
    st.one_of(st.just(3.0), st.floats(3.0, 50.0)),
    overrides_st,
)
def test_rule3_never_changes_anything(
    summary: dict, risk: float, net: float, overrides: dict
) -> None:
    """Pinned contradiction: under rule 3's condition rule 7 always says "stable"."""
    summary = {**summary, "risk_ratio": risk, "net_bps": net}
    proposal = propose(summary, overrides)
    assert proposal.deltas == {}
    assert proposal.note.startswith(("stable: no change", "no rule fired"))


@PROPERTY
@given(summary_st, overrides_st)
def test_rule8_has_nothing_to_drop(summary: dict, overrides: dict) -> None:
    """Pinned contradiction: no reachable proposal shortens min_interval at all, so rule 8
    (drop the min_interval decrease when widening at risk >= 0.40) never acts."""
    proposal = propose(summary, overrides)
    assert proposal.deltas.get("min_interval_ms", 0) >= 0
    assert proposal.deltas.get("impact_cap_ratio", 0) <= 0  # rule 3's +0.005 never survives
