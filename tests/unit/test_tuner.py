"""Tuner v2 (docs/tuner.md): defensive rules on the current iteration whatever net_bps is,
the harvest rule on the mean of 3 OK iterations, one cap per key, exhaustion. Exact deltas.

Every table row states the KPIs, the start values and the exact deltas the contract gives; the
rows are also checked against ``tuner_contract.contract_propose``, the contract written out
independently, so a row with a wrong expectation cannot pass silently either.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError
from soakq_testkit import GOOD_KPIS
from tuner_contract import contract_propose, defensive_conditions, history_entry

import soakq.rules.tuner as tuner_mod
from soakq.errors import ConfigError
from soakq.params import PARAMS
from soakq.profiles import load_profile
from soakq.rules.kpi_gate import Verdict, kpi_gate
from soakq.rules.thresholds import kpi_gate_levels
from soakq.rules.tuner import Exhaustion, Proposal, TunerRules, load_rules, propose, relative_move

pytestmark = pytest.mark.usefixtures("clean_env")

STEADY = dict(load_profile("steady_safe").overrides)
DEFAULT = dict(load_profile("default").overrides)
ULTRA = dict(load_profile("ultra_safe").overrides)
AGGRESSIVE = dict(load_profile("aggressive").overrides)

# Comfortable KPIs with net >= 3: under v1 rule 7 nothing at all would have been proposed here.
CALM: dict[str, Any] = {**GOOD_KPIS, "net_bps": 3.5, "risk_ratio": 0.30}
# Three OK iterations whose mean satisfies the harvest rule: a defensive rule must beat it.
OK3 = [history_entry(i, "OK", **CALM) for i in (1, 2, 3)]


def verdict_of(kpis: dict[str, Any]) -> Verdict:
    return kpi_gate(kpis, kpi_gate_levels({})).verdict


def tune(overrides: dict[str, Any], kpis: dict[str, Any], history: Any = ()) -> Proposal:
    return propose({**CALM, **kpis}, overrides, list(history))


def check_against_contract(
    p: Proposal, overrides: dict[str, Any], kpis: dict[str, Any], history: Any = ()
) -> None:
    want = contract_propose({**CALM, **kpis}, overrides, list(history))
    assert p.deltas == want.deltas
    assert p.kind == want.kind and list(p.fired) == want.fired
    assert [(e.rule, e.metric, e.pinned) for e in p.exhausted] == want.exhausted
    for key, rule in want.winner.items():
        assert p.rationale[key].startswith(f"rule {rule} ("), p.rationale[key]


def assert_exact(p: Proposal, expected: dict[str, Any]) -> None:
    """Same keys, same values, the parameter's JSON type (int keys are ints)."""
    assert p.deltas == expected
    for key, delta in p.deltas.items():
        assert type(delta) is (int if PARAMS[key].is_int else float), (key, delta)
    assert set(p.rationale) == set(p.deltas)


# --- each defensive rule at FAIL-level KPIs with net >= 3 -------------------------------------

FIRES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[str, ...], dict[str, Any], str]] = [
    # id, start, KPI changes, rules that hold, exact deltas, KPI gate verdict of those KPIs
    (
        "r1",
        STEADY,
        {"risk_ratio": 0.65},
        ("1",),
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 30},
        "FAIL",
    ),
    (
        "r2",
        STEADY,
        {"risk_ratio": 0.55},
        ("2",),
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005},
        "FAIL",
    ),
    (
        "r4",
        DEFAULT,
        {"maker_taker_ratio": 0.80},
        ("4",),
        {"base_spread_bps_delta": 0.015, "replace_rate_per_min": -42, "min_interval_ms": 25},
        "FAIL",
    ),
    ("r5a", STEADY, {"p95_latency_ms": 355.0}, ("5a",), {"tail_age_ms": 50}, "WARN"),
    (
        "r5b",
        DEFAULT,
        {"p95_latency_ms": 420.0},
        ("5b",),
        {"tail_age_ms": 75, "replace_rate_per_min": -28},
        "FAIL",
    ),
    (
        "r6a",
        STEADY,
        {"adverse_bps_p95": 8.0},
        ("6a",),
        {"impact_cap_ratio": -0.01, "max_delta_ratio": -0.01},
        "FAIL",
    ),
    (
        "r6b",
        STEADY,
        {"slippage_bps_p95": 3.0, "adverse_bps_p95": 6.5},
        ("6a", "6b"),
        {
            "impact_cap_ratio": -0.01,
            "max_delta_ratio": -0.01,
            "base_spread_bps_delta": 0.02,
            "tail_age_ms": 30,
        },
        "FAIL",
    ),
    # The case v1 answered with "stable: no change": risk .30, net 3.5, latency 420, adverse 10.
    (
        "v1-rule7-case",
        STEADY,
        {"risk_ratio": 0.30, "net_bps": 3.5, "p95_latency_ms": 420.0, "adverse_bps_p95": 10.0},
        ("5b", "6a"),
        {
            "tail_age_ms": 60,  # 740 + 75 capped at 800
            "replace_rate_per_min": -25,
            "impact_cap_ratio": -0.01,
            "max_delta_ratio": -0.01,
        },
        "FAIL",
    ),
]


@pytest.mark.parametrize(
    ("start", "kpis", "fired", "expected", "verdict"),
    [c[1:] for c in FIRES],
    ids=[c[0] for c in FIRES],
)
def test_defensive_rule_fires_whatever_net(
    start: dict, kpis: dict, fired: tuple, expected: dict, verdict: str
) -> None:
    full = {**CALM, **kpis}
    assert full["net_bps"] >= 3.0 and verdict_of(full) == verdict  # the premise of the row
    p = tune(start, kpis, OK3)
    assert_exact(p, expected)
    assert p.kind == "defensive" and p.fired == fired and p.exhausted == ()
    assert p.note.startswith("defensive rule(s) " + ", ".join(fired))
    for key, delta in expected.items():
        line = p.rationale[key]
        assert line.startswith("rule ") and " (defensive): " in line and "\n" not in line
        assert line.endswith(f"-> {key} {'+' if delta > 0 else ''}{delta}")
    check_against_contract(p, start, kpis, OK3)


# --- boundaries of every condition, on both sides ----------------------------------------------

BOUNDARIES: list[tuple[str, dict[str, Any], dict[str, Any], tuple[str, ...], dict[str, Any]]] = [
    (
        "risk-0.60",
        STEADY,
        {"risk_ratio": 0.60},
        ("1",),
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 30},
    ),
    (
        "risk-under-0.60",
        STEADY,
        {"risk_ratio": 0.5999},
        ("2",),
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005},
    ),
    (
        "risk-0.40",
        STEADY,
        {"risk_ratio": 0.40},
        ("2",),
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005},
    ),
    ("risk-under-0.40", STEADY, {"risk_ratio": 0.3999}, (), {}),
    # rule 4: risk <= 0.40 (both rule 2 and rule 4 hold at exactly 0.40)
    (
        "r4-risk-0.40",
        DEFAULT,
        {"risk_ratio": 0.40, "maker_taker_ratio": 0.80},
        ("2", "4"),
        {
            "min_interval_ms": 5,  # rule 2 set it first; rule 4's +25 loses
            "impact_cap_ratio": -0.005,
            "base_spread_bps_delta": 0.015,
            "replace_rate_per_min": -42,
        },
    ),
    (
        "r4-risk-over-0.40",
        DEFAULT,
        {"risk_ratio": 0.4001, "maker_taker_ratio": 0.80},
        ("2",),
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005},
    ),
    ("r4-mt-0.85", DEFAULT, {"maker_taker_ratio": 0.85}, (), {}),
    (
        "r4-mt-under-0.85",
        DEFAULT,
        {"maker_taker_ratio": 0.8499},
        ("4",),
        {"base_spread_bps_delta": 0.015, "replace_rate_per_min": -42, "min_interval_ms": 25},
    ),
    (
        "r4-net-2.7",
        DEFAULT,
        {"maker_taker_ratio": 0.80, "net_bps": 2.7},
        ("4",),
        {"base_spread_bps_delta": 0.015, "replace_rate_per_min": -42, "min_interval_ms": 25},
    ),
    ("r4-net-under-2.7", DEFAULT, {"maker_taker_ratio": 0.80, "net_bps": 2.6999}, (), {}),
    ("lat-under-330", STEADY, {"p95_latency_ms": 329.99}, (), {}),
    ("lat-330", STEADY, {"p95_latency_ms": 330.0}, ("5a",), {"tail_age_ms": 50}),
    ("lat-360", STEADY, {"p95_latency_ms": 360.0}, ("5a",), {"tail_age_ms": 50}),
    (
        "lat-over-360",
        DEFAULT,
        {"p95_latency_ms": 360.01},
        ("5b",),
        {"tail_age_ms": 75, "replace_rate_per_min": -28},
    ),
    ("adverse-3.5", STEADY, {"adverse_bps_p95": 3.5}, (), {}),
    (
        "adverse-over-3.5",
        STEADY,
        {"adverse_bps_p95": 3.5001},
        ("6a",),
        {"impact_cap_ratio": -0.01, "max_delta_ratio": -0.01},
    ),
    ("slip-2.5", STEADY, {"slippage_bps_p95": 2.5}, (), {}),
    (
        "slip-over-2.5",
        STEADY,
        {"slippage_bps_p95": 2.5001},
        ("6b",),
        {"base_spread_bps_delta": 0.02, "tail_age_ms": 30},
    ),
    # a missing metric never makes a condition true
    ("risk-missing", STEADY, {"risk_ratio": None}, (), {}),
    ("latency-missing", STEADY, {"p95_latency_ms": None}, (), {}),
    ("mt-missing", DEFAULT, {"maker_taker_ratio": None}, (), {}),
]


@pytest.mark.parametrize(
    ("start", "kpis", "fired", "expected"),
    [c[1:] for c in BOUNDARIES],
    ids=[c[0] for c in BOUNDARIES],
)
def test_condition_boundaries(start: dict, kpis: dict, fired: tuple, expected: dict) -> None:
    p = tune(start, kpis)  # no history: harvest cannot act, so {} means "no rule fired"
    assert_exact(p, expected)
    assert p.fired == fired
    assert p.kind == ("defensive" if fired else "")
    assert tuple(defensive_conditions({**CALM, **kpis})) == fired
    check_against_contract(p, start, kpis)


# --- first rule to set a key wins ---------------------------------------------------------------

FIRST_WINS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, str]]] = [
    # id, start, KPIs, deltas, key -> rule named in its rationale
    (
        "r1-before-r5a-tail",
        STEADY,
        {"risk_ratio": 0.65, "p95_latency_ms": 340.0},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 30},
        {"tail_age_ms": "1"},
    ),
    (
        "r2-before-r6a-impact",
        STEADY,
        {"risk_ratio": 0.5, "adverse_bps_p95": 3.6},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005, "max_delta_ratio": -0.01},
        {"impact_cap_ratio": "2", "max_delta_ratio": "6a"},
    ),
    (
        "r4-before-r5b-replace",
        DEFAULT,
        {"maker_taker_ratio": 0.8, "p95_latency_ms": 400.0},
        {
            "base_spread_bps_delta": 0.015,
            "replace_rate_per_min": -42,
            "min_interval_ms": 25,
            "tail_age_ms": 75,
        },
        {"replace_rate_per_min": "4", "tail_age_ms": "5b"},
    ),
    (
        "r4-before-r6b-spread",
        DEFAULT,
        {"maker_taker_ratio": 0.8, "slippage_bps_p95": 3.0},
        {
            "base_spread_bps_delta": 0.015,
            "replace_rate_per_min": -42,
            "min_interval_ms": 25,
            "tail_age_ms": 30,
        },
        {"base_spread_bps_delta": "4", "tail_age_ms": "6b"},
    ),
    (
        "r5b-before-r6b-tail",
        STEADY,
        {"p95_latency_ms": 380.0, "slippage_bps_p95": 3.0},
        {"tail_age_ms": 60, "replace_rate_per_min": -25, "base_spread_bps_delta": 0.02},
        {"tail_age_ms": "5b", "base_spread_bps_delta": "6b"},
    ),
    # a rule whose cap leaves nothing for a key does not set it: a later rule may move it
    (
        "r2-capped-leaves-min-interval-to-r4",
        {**DEFAULT, "min_interval_ms": 80},
        {"risk_ratio": 0.40, "maker_taker_ratio": 0.8},
        {
            "impact_cap_ratio": -0.005,
            "base_spread_bps_delta": 0.015,
            "replace_rate_per_min": -42,
            "min_interval_ms": 20,
        },
        {"min_interval_ms": "4", "impact_cap_ratio": "2"},
    ),
]


@pytest.mark.parametrize(
    ("start", "kpis", "expected", "winners"),
    [c[1:] for c in FIRST_WINS],
    ids=[c[0] for c in FIRST_WINS],
)
def test_first_rule_wins(start: dict, kpis: dict, expected: dict, winners: dict) -> None:
    p = tune(start, kpis, OK3)
    assert_exact(p, expected)
    for key, rule in winners.items():
        assert p.rationale[key].startswith(f"rule {rule} (defensive)"), p.rationale[key]
    check_against_contract(p, start, kpis, OK3)


def test_rationale_quotes_the_condition_values() -> None:
    p = tune(STEADY, {"risk_ratio": 0.55})
    line = p.rationale["impact_cap_ratio"]
    assert line.startswith("rule 2 (defensive): risk_ratio 0.55 >= 0.4 and risk_ratio 0.55 < 0.6")
    assert line.endswith("-> impact_cap_ratio -0.005")


# --- one cap per key, whichever rule moves it ---------------------------------------------------

CAPS: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # tail_age <= 800 for every rule that raises it (1, 5a, 5b, 6b)
    (
        "6b-tail-790",
        {**STEADY, "tail_age_ms": 790},
        {"slippage_bps_p95": 3.0},
        {"base_spread_bps_delta": 0.02, "tail_age_ms": 10},
    ),
    (
        "6b-tail-800",
        {**STEADY, "tail_age_ms": 800},
        {"slippage_bps_p95": 3.0},
        {"base_spread_bps_delta": 0.02},
    ),
    (
        "6b-tail-900",
        {**STEADY, "tail_age_ms": 900},
        {"slippage_bps_p95": 3.0},
        {"base_spread_bps_delta": 0.02},
    ),
    (
        "1-tail-790",
        {**STEADY, "tail_age_ms": 790},
        {"risk_ratio": 0.65},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 10},
    ),
    (
        "1-tail-800",
        {**STEADY, "tail_age_ms": 800},
        {"risk_ratio": 0.65},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01},
    ),
    ("5a-tail-790", {**STEADY, "tail_age_ms": 790}, {"p95_latency_ms": 340.0}, {"tail_age_ms": 10}),
    (
        "5b-tail-790",
        {**STEADY, "tail_age_ms": 790},
        {"p95_latency_ms": 380.0},
        {"tail_age_ms": 10, "replace_rate_per_min": -25},
    ),
    (
        "5b-tail-800",
        {**STEADY, "tail_age_ms": 800},
        {"p95_latency_ms": 380.0},
        {"replace_rate_per_min": -25},
    ),
    # spread <= 0.25 (rule 6b's own cap, and rule 4 through the key's cap)
    (
        "6b-spread-0.24",
        {**STEADY, "base_spread_bps_delta": 0.24},
        {"slippage_bps_p95": 3.0},
        {"base_spread_bps_delta": 0.01, "tail_age_ms": 30},
    ),
    (
        "6b-spread-0.30",
        {**STEADY, "base_spread_bps_delta": 0.30},
        {"slippage_bps_p95": 3.0},
        {"tail_age_ms": 30},
    ),
    (
        "4-spread-0.245",
        {**DEFAULT, "base_spread_bps_delta": 0.245},
        {"maker_taker_ratio": 0.8},
        {"base_spread_bps_delta": 0.005, "replace_rate_per_min": -42, "min_interval_ms": 25},
    ),
    (
        "4-spread-0.25",
        {**DEFAULT, "base_spread_bps_delta": 0.25},
        {"maker_taker_ratio": 0.8},
        {"replace_rate_per_min": -42, "min_interval_ms": 25},
    ),
    # min_interval: rules 1/2 cap at 80 (tighter than the key's 100), rule 4 at 100
    (
        "1-mi-78",
        {**STEADY, "min_interval_ms": 78},
        {"risk_ratio": 0.65},
        {"min_interval_ms": 2, "impact_cap_ratio": -0.01, "tail_age_ms": 30},
    ),
    (
        "1-mi-80",
        {**STEADY, "min_interval_ms": 80},
        {"risk_ratio": 0.65},
        {"impact_cap_ratio": -0.01, "tail_age_ms": 30},
    ),
    (
        "2-mi-85",
        {**STEADY, "min_interval_ms": 85},
        {"risk_ratio": 0.45},
        {"impact_cap_ratio": -0.005},
    ),
    (
        "4-mi-90",
        {**DEFAULT, "min_interval_ms": 90},
        {"maker_taker_ratio": 0.8},
        {"base_spread_bps_delta": 0.015, "replace_rate_per_min": -42, "min_interval_ms": 10},
    ),
    (
        "4-mi-100",
        {**DEFAULT, "min_interval_ms": 100},
        {"maker_taker_ratio": 0.8},
        {"base_spread_bps_delta": 0.015, "replace_rate_per_min": -42},
    ),
    (
        "4-mi-ultra",
        ULTRA,
        {"maker_taker_ratio": 0.8},
        {"base_spread_bps_delta": 0.015, "replace_rate_per_min": -33, "min_interval_ms": 20},
    ),
    # impact_cap >= 0.04 for every rule that lowers it (1, 2 and 6a through the key's floor)
    (
        "1-impact-0.045",
        {**STEADY, "impact_cap_ratio": 0.045},
        {"risk_ratio": 0.65},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005, "tail_age_ms": 30},
    ),
    (
        "2-impact-0.042",
        {**STEADY, "impact_cap_ratio": 0.042},
        {"risk_ratio": 0.45},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.002},
    ),
    (
        "6a-impact-0.045",
        {**STEADY, "impact_cap_ratio": 0.045},
        {"adverse_bps_p95": 5.0},
        {"impact_cap_ratio": -0.005, "max_delta_ratio": -0.01},
    ),
    (
        "6a-impact-0.04",
        {**STEADY, "impact_cap_ratio": 0.04},
        {"adverse_bps_p95": 5.0},
        {"max_delta_ratio": -0.01},
    ),
    # bounds: max_delta >= 0.10, replace_rate >= 120 (a factor is clamped to the bound)
    (
        "6a-max-delta-0.105",
        {**STEADY, "max_delta_ratio": 0.105},
        {"adverse_bps_p95": 5.0},
        {"impact_cap_ratio": -0.01, "max_delta_ratio": -0.005},
    ),
    (
        "5b-replace-130",
        {**STEADY, "replace_rate_per_min": 130},
        {"p95_latency_ms": 380.0},
        {"tail_age_ms": 60, "replace_rate_per_min": -10},
    ),
    (
        "5b-replace-120",
        {**STEADY, "replace_rate_per_min": 120},
        {"p95_latency_ms": 380.0},
        {"tail_age_ms": 60},
    ),
    # a decrease that starts above a key's cap moves by its own step, never further
    (
        "2-impact-above-cap",
        AGGRESSIVE,
        {"risk_ratio": 0.45},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.005},
    ),
    (
        "6a-impact-above-cap",
        AGGRESSIVE,
        {"adverse_bps_p95": 5.0},
        {"impact_cap_ratio": -0.01, "max_delta_ratio": -0.01},
    ),
]


@pytest.mark.parametrize(
    ("start", "kpis", "expected"), [c[1:] for c in CAPS], ids=[c[0] for c in CAPS]
)
def test_key_caps_and_floors(start: dict, kpis: dict, expected: dict) -> None:
    p = tune(start, kpis)
    assert_exact(p, expected)
    assert p.exhausted == ()  # each row still moves something for every rule that held
    check_against_contract(p, start, kpis)


# --- exhaustion -----------------------------------------------------------------------------

EXHAUSTED: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], list[Exhaustion]]] = [
    (
        "5a-tail-800",
        {**STEADY, "tail_age_ms": 800},
        {"p95_latency_ms": 345.0},
        {},
        [Exhaustion("5a", "p95_latency_ms", 345.0, ("tail_age_ms",))],
    ),
    (
        "6b-spread-and-tail-pinned",
        {**STEADY, "tail_age_ms": 800, "base_spread_bps_delta": 0.25},
        {"slippage_bps_p95": 3.1},
        {},
        [Exhaustion("6b", "slippage_bps_p95", 3.1, ("base_spread_bps_delta", "tail_age_ms"))],
    ),
    (
        "6a-at-bounds",
        {**STEADY, "impact_cap_ratio": 0.04, "max_delta_ratio": 0.10},
        {"adverse_bps_p95": 7.0},
        {},
        [Exhaustion("6a", "adverse_bps_p95", 7.0, ("impact_cap_ratio", "max_delta_ratio"))],
    ),
    (
        "5b-pinned",
        {**STEADY, "tail_age_ms": 800, "replace_rate_per_min": 120},
        {"p95_latency_ms": 450.0},
        {},
        [Exhaustion("5b", "p95_latency_ms", 450.0, ("tail_age_ms", "replace_rate_per_min"))],
    ),
    (
        "1-pinned",
        {**STEADY, "min_interval_ms": 80, "impact_cap_ratio": 0.04, "tail_age_ms": 800},
        {"risk_ratio": 0.7},
        {},
        [
            Exhaustion(
                "1", "risk_ratio", 0.7, ("min_interval_ms", "impact_cap_ratio", "tail_age_ms")
            )
        ],
    ),
    (
        "4-pinned",
        {
            **DEFAULT,
            "base_spread_bps_delta": 0.25,
            "replace_rate_per_min": 120,
            "min_interval_ms": 100,
        },
        {"maker_taker_ratio": 0.7},
        {},
        [
            Exhaustion(
                "4",
                "maker_taker_ratio",
                0.7,
                ("base_spread_bps_delta", "replace_rate_per_min", "min_interval_ms"),
            )
        ],
    ),
    # one rule exhausted, another still acting: both are reported as they are
    (
        "5a-pinned-6a-acts",
        {**STEADY, "tail_age_ms": 800},
        {"p95_latency_ms": 345.0, "adverse_bps_p95": 4.5},
        {"impact_cap_ratio": -0.01, "max_delta_ratio": -0.01},
        [Exhaustion("5a", "p95_latency_ms", 345.0, ("tail_age_ms",))],
    ),
    # a key already moved by an earlier rule is not "pinned": rule 5a is not exhausted
    (
        "5a-key-taken-by-1",
        STEADY,
        {"risk_ratio": 0.65, "p95_latency_ms": 345.0},
        {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 30},
        [],
    ),
]


@pytest.mark.parametrize(
    ("start", "kpis", "expected", "exhausted"),
    [c[1:] for c in EXHAUSTED],
    ids=[c[0] for c in EXHAUSTED],
)
def test_exhaustion(start: dict, kpis: dict, expected: dict, exhausted: list) -> None:
    # 3 OK iterations with a good mean: a defensive rule that held still blocks the harvest
    p = tune(start, kpis, OK3)
    assert_exact(p, expected)
    assert list(p.exhausted) == exhausted
    assert p.kind == "defensive"
    check_against_contract(p, start, kpis, OK3)


def test_proposal_and_exhaustion_are_immutable_values() -> None:
    import dataclasses

    empty = Proposal()
    assert (empty.deltas, empty.rationale, empty.note, empty.kind) == ({}, {}, "", "")
    assert (empty.fired, empty.exhausted) == ((), ())
    e = Exhaustion("5a", "p95_latency_ms", 345.0, ("tail_age_ms",))
    assert hash(e) == hash(Exhaustion("5a", "p95_latency_ms", 345.0, ("tail_age_ms",)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        empty.note = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.rule = "1"  # type: ignore[misc]


def test_exhaustion_json_and_text() -> None:
    e = tune({**STEADY, "tail_age_ms": 800}, {"p95_latency_ms": 345.0}).exhausted[0]
    assert e.as_json() == {
        "metric": "p95_latency_ms",
        "pinned": ["tail_age_ms"],
        "rule": "5a",
        "value": 345.0,
    }
    assert json.loads(json.dumps(e.as_json())) == e.as_json()
    assert e.text == "tuning cannot fix p95_latency_ms further (rule 5a: tail_age_ms pinned)"


def test_exhausted_note_says_nothing_proposed() -> None:
    p = tune({**STEADY, "tail_age_ms": 800}, {"p95_latency_ms": 345.0}, OK3)
    assert p.note == "defensive rule(s) 5a: 0 change(s) proposed"
    assert p.fired == ("5a",) and p.rationale == {}


# --- harvest (rule 3) -----------------------------------------------------------------------

HARVEST_DELTAS = {"min_interval_ms": -3, "impact_cap_ratio": 0.005}


def hist(*rows: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """History entries 1..n, each with its verdict and CALM KPIs changed by the given ones."""
    return [history_entry(i, v, **{**CALM, **k}) for i, (v, k) in enumerate(rows, start=1)]


def harvest(history: list[dict[str, Any]], start: dict[str, Any] = STEADY) -> Proposal:
    """Propose with the last history entry as the current iteration's KPIs."""
    current = {k: v for k, v in history[-1].items() if k not in ("iteration", "kpi_verdict")}
    p = propose(current, start, history)
    want = contract_propose(current, start, history)
    assert (p.deltas, p.kind, list(p.fired)) == (want.deltas, want.kind, want.fired)
    return p


def test_harvest_after_three_ok_iterations() -> None:
    p = harvest(hist(("OK", {}), ("OK", {}), ("OK", {})))
    assert_exact(p, HARVEST_DELTAS)
    assert p.kind == "harvest" and p.fired == ("3",) and p.exhausted == ()
    assert p.note == "harvest rule 3: 2 change(s) proposed"
    line = p.rationale["min_interval_ms"]
    assert line.startswith("rule 3 (harvest): mean of iterations 1-3: risk_ratio 0.3 < 0.35")
    assert line.endswith("-> min_interval_ms -3")
    assert p.rationale["impact_cap_ratio"].endswith("-> impact_cap_ratio +0.005")


@pytest.mark.parametrize("n", [0, 1, 2])
def test_no_harvest_with_fewer_than_three_entries(n: int) -> None:
    history = hist(*[("OK", {})] * n)
    p = propose(CALM, STEADY, history)
    assert p.deltas == {} and p.kind == "" and p.fired == ()
    assert p.note == "no rule fired (harvest needs 3 iterations)"


@pytest.mark.parametrize("bad", ["WARN", "FAIL"])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_no_harvest_when_one_of_three_not_ok(bad: str, position: int) -> None:
    rows = [("OK", {})] * 3
    rows[position] = (bad, {})
    p = harvest(hist(*rows))
    assert p.deltas == {} and p.kind == ""
    assert p.note == f"no rule fired (harvest waits: iteration {position + 1} not OK)"


def test_only_the_last_three_entries_count() -> None:
    p = harvest(
        hist(("FAIL", {"risk_ratio": 0.9, "net_bps": -5.0}), ("OK", {}), ("OK", {}), ("OK", {}))
    )
    assert_exact(p, HARVEST_DELTAS)
    assert p.rationale["min_interval_ms"].startswith("rule 3 (harvest): mean of iterations 2-4")


def test_the_newest_not_ok_iteration_is_named() -> None:
    p = harvest(hist(("OK", {}), ("WARN", {}), ("WARN", {}), ("OK", {})))
    assert p.note == "no rule fired (harvest waits: iteration 3 not OK)"


@pytest.mark.parametrize(
    ("current", "why"),
    [
        ({"p95_latency_ms": 335.0}, "5a"),  # latency 330-360 is still KPI OK (soft 350)
        ({"adverse_bps_p95": 3.8}, "6a"),  # adverse 3.5-4.0 is still OK
        ({"slippage_bps_p95": 2.6}, "6b"),  # slippage is not gated at all
    ],
)
def test_no_harvest_when_a_defensive_rule_held(current: dict, why: str) -> None:
    history = hist(("OK", {}), ("OK", {}), ("OK", current))
    assert verdict_of(history[-1]) == Verdict.OK  # the 3 really were OK
    p = harvest(history)
    assert p.kind == "defensive" and p.fired == (why,)
    assert not set(p.deltas) & {"min_interval_ms"} and p.deltas.get("impact_cap_ratio", 0) <= 0


def test_no_harvest_when_the_defensive_rule_is_exhausted() -> None:
    history = hist(("OK", {}), ("OK", {}), ("OK", {"p95_latency_ms": 335.0}))
    p = harvest(history, {**STEADY, "tail_age_ms": 800})
    assert p.deltas == {} and p.kind == "defensive" and len(p.exhausted) == 1


@pytest.mark.parametrize(
    ("rows", "fires"),
    [
        # a lucky current iteration with a bad mean: no harvest
        ([{"net_bps": 2.8}, {"net_bps": 2.8}, {"net_bps": 3.3}], False),  # mean 2.967
        ([{"risk_ratio": 0.39}, {"risk_ratio": 0.39}, {"risk_ratio": 0.28}], False),  # .3533
        # a mediocre current iteration with a good mean: harvest
        ([{"net_bps": 3.3}, {"net_bps": 3.3}, {"net_bps": 2.9}], True),  # mean 3.167
        ([{"risk_ratio": 0.2}, {"risk_ratio": 0.2}, {"risk_ratio": 0.37}], True),  # .2567
        # the mean at the thresholds: net >= 3.0 holds, risk < 0.35 does not
        ([{"net_bps": 2.75}, {"net_bps": 3.25}, {"net_bps": 3.0}], True),  # exactly 3.0
        ([{"net_bps": 2.75}, {"net_bps": 3.25}, {"net_bps": 2.9990}], False),
        ([{"risk_ratio": 0.375}, {"risk_ratio": 0.3125}, {"risk_ratio": 0.3625}], False),
        ([{"risk_ratio": 0.375}, {"risk_ratio": 0.3125}, {"risk_ratio": 0.3624}], True),
        # a KPI missing in one of the 3: no mean, no harvest
        ([{"net_bps": None}, {}, {}], False),
    ],
)
def test_harvest_reads_the_mean(rows: list, fires: bool) -> None:
    p = harvest(hist(*[("OK", r) for r in rows]))
    assert p.deltas == (HARVEST_DELTAS if fires else {})


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ({**STEADY, "min_interval_ms": 52}, {"min_interval_ms": -2, "impact_cap_ratio": 0.005}),
        ({**STEADY, "min_interval_ms": 50}, {"impact_cap_ratio": 0.005}),
        ({**STEADY, "impact_cap_ratio": 0.098}, {"min_interval_ms": -3, "impact_cap_ratio": 0.002}),
        ({**STEADY, "impact_cap_ratio": 0.10}, {"min_interval_ms": -3}),
        ({**STEADY, "impact_cap_ratio": 0.12}, {"min_interval_ms": -3}),  # above the cap
        ({**STEADY, "min_interval_ms": 150}, {"min_interval_ms": -3, "impact_cap_ratio": 0.005}),
        ({**STEADY, "min_interval_ms": 50, "impact_cap_ratio": 0.10}, {}),
    ],
)
def test_harvest_floor_and_cap(start: dict, expected: dict) -> None:
    p = harvest(hist(("OK", {}), ("OK", {}), ("OK", {})), start)
    assert_exact(p, expected)
    if not expected:
        assert p.kind == "" and p.note == "no rule fired"


# --- relative_move and the rule table as data ----------------------------------------------


@pytest.mark.parametrize(
    ("key", "old", "kw", "expected"),
    [
        ("tail_age_ms", 740, {"add": 30}, 30),
        ("tail_age_ms", 790, {"add": 30, "cap": 800}, 10),
        ("tail_age_ms", 800, {"add": 30, "cap": 800}, None),
        ("tail_age_ms", 810, {"add": 30, "cap": 800}, None),  # would be a decrease
        ("tail_age_ms", 990, {"add": 30}, 10),  # bound 1000
        ("impact_cap_ratio", 0.12, {"add": -0.01, "cap": 0.10}, -0.01),  # cap: increases only
        ("min_interval_ms", 60, {"add": -3, "floor": 50}, -3),
        ("min_interval_ms", 51, {"add": -3, "floor": 50}, -1),
        ("min_interval_ms", 75, {"add": 5, "floor": 90}, 5),  # floor: decreases only
        ("replace_rate_per_min", 250, {"mul": 0.85}, -38),  # 212.5 rounds to 212
        ("replace_rate_per_min", 250, {"mul": 1.1}, 25),
        ("replace_rate_per_min", 121, {"mul": 0.9}, -1),
        ("base_spread_bps_delta", 0.15, {"add": 0.00004}, None),  # below the precision
        ("base_spread_bps_delta", 0.15, {"add": 0.015}, 0.015),
    ],
)
def test_relative_move(key: str, old: Any, kw: dict, expected: Any) -> None:
    got = relative_move(key, old, **kw)
    assert got == expected
    if expected is not None:
        assert type(got) is type(expected)


def test_relative_move_needs_add_or_mul() -> None:
    with pytest.raises(ValueError, match="add or mul"):
        relative_move("tail_age_ms", 700)


def test_packaged_rules_are_the_documented_table() -> None:
    rules = load_rules()
    assert [r.rule for r in rules.defensive] == ["1", "2", "4", "5a", "5b", "6a", "6b"]
    assert [r.rule for r in rules.harvest] == ["3"] and rules.harvest_window == 3
    limits = {k: (v.floor, v.cap) for k, v in rules.key_limits.items()}
    assert limits == {
        "base_spread_bps_delta": (None, 0.25),
        "impact_cap_ratio": (0.04, 0.10),
        "min_interval_ms": (50, 100),
        "tail_age_ms": (None, 800),
    }
    assert [r.metric for r in rules.defensive] == [
        "risk_ratio",
        "risk_ratio",
        "maker_taker_ratio",
        "p95_latency_ms",
        "p95_latency_ms",
        "adverse_bps_p95",
        "slippage_bps_p95",
    ]


def _table() -> dict[str, Any]:
    return load_rules().model_dump(mode="json")


def test_rules_are_data_the_window_comes_from_the_table() -> None:
    doc = _table()
    doc["harvest_window"] = 2
    rules = TunerRules.model_validate(doc)
    history = hist(("WARN", {}), ("OK", {}), ("OK", {}))
    assert propose(CALM, STEADY, history, rules=rules).deltas == HARVEST_DELTAS
    assert propose(CALM, STEADY, history).deltas == {}


def test_rules_are_data_a_changed_number_changes_the_delta() -> None:
    doc = _table()
    doc["key_limits"]["tail_age_ms"]["cap"] = 760
    rules = TunerRules.model_validate(doc)
    p = propose({**CALM, "slippage_bps_p95": 3.0}, STEADY, rules=rules)
    assert p.deltas == {"base_spread_bps_delta": 0.02, "tail_age_ms": 20}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["defensive"][0]["moves"][0].update(key="nope"), "unknown parameter"),
        (lambda d: d["defensive"][0]["moves"][0].update(mul=2.0), "exactly one of add or mul"),
        (lambda d: d["defensive"][0]["moves"][0].update(add=0), "must change the value"),
        (lambda d: d["defensive"][0]["moves"][0].update(add=None), "exactly one of add or mul"),
        (lambda d: d["defensive"][0].update(metric="pnl"), "unknown metric"),
        (lambda d: d["defensive"][0]["when"][0].__setitem__(0, "pnl"), "unknown metric"),
        (lambda d: d["defensive"][0].update(when=[]), "at least 1"),
        (lambda d: d["key_limits"].update(junk={"cap": 1}), "unknown parameter"),
        (lambda d: d.update(harvest_window=0), "greater than or equal to 1"),
        (lambda d: d.update(harvest_window=101), "less than or equal to 100"),
        (lambda d: d["defensive"][0].update(moves=[]), "at least 1"),
        (
            lambda d: d["defensive"][0]["moves"][0].update(add=None, mul=1.0),
            "must change the value",
        ),
        (lambda d: d["defensive"][0]["moves"][0].update(add=None, mul=-0.5), "greater than 0"),
        (lambda d: d["defensive"][0]["moves"][0].update(add=None, mul=0.0), "greater than 0"),
        (lambda d: d["defensive"][0].update(typo=1), "Extra inputs are not permitted"),
        (lambda d: d["key_limits"]["tail_age_ms"].update(max=1), "Extra inputs are not permitted"),
    ],
)
def test_bad_rule_tables_are_refused(change: Any, needle: str) -> None:
    doc = _table()
    change(doc)
    with pytest.raises(ValidationError, match=needle):
        TunerRules.model_validate(doc)


@pytest.mark.parametrize(
    ("move", "intent"),
    [
        ({"add": 30}, 1),
        ({"add": 0.5}, 1),
        ({"add": 0.005}, 1),
        ({"add": -3}, -1),
        ({"add": -0.005}, -1),
        ({"mul": 1.1}, 1),
        ({"mul": 0.85}, -1),
        ({"mul": 0.5}, -1),
    ],
)
def test_move_intent(move: dict, intent: int) -> None:
    assert tuner_mod.Move(key="tail_age_ms", **move).intent == intent


def test_limits_merge_the_key_limit_and_the_moves_own() -> None:
    rules = load_rules()
    move = tuner_mod.Move
    assert rules.limits(move(key="tail_age_ms", add=30)) == (800, None)
    assert rules.limits(move(key="tail_age_ms", add=30, cap=900)) == (800, None)
    assert rules.limits(move(key="tail_age_ms", add=30, cap=760)) == (760, None)
    assert rules.limits(move(key="min_interval_ms", add=-3)) == (100, 50)
    assert rules.limits(move(key="min_interval_ms", add=-3, floor=60)) == (100, 60)
    assert rules.limits(move(key="min_interval_ms", add=-3, floor=40)) == (100, 50)
    assert rules.limits(move(key="impact_cap_ratio", add=0.005, cap=0.11)) == (0.10, 0.04)
    assert rules.limits(move(key="max_delta_ratio", add=0.01)) == (None, None)
    assert rules.limits(move(key="replace_rate_per_min", mul=1.1, floor=200)) == (None, 200)


def test_rule_tables_are_immutable_and_the_description_optional() -> None:
    rules = load_rules()
    with pytest.raises(ValidationError):
        rules.defensive[0].moves[0].add = 10  # type: ignore[misc]
    with pytest.raises(ValidationError):
        rules.harvest_window = 5  # type: ignore[misc]
    doc = _table()
    doc.pop("description")
    assert TunerRules.model_validate(doc).description == ""


def test_a_zero_value_is_quoted_as_zero() -> None:
    rows = [("OK", {"risk_ratio": 0.0})] * 3
    p = harvest(hist(*rows))
    assert "risk_ratio 0 < 0.35" in p.rationale["min_interval_ms"]
    e = tune(
        {**STEADY, "tail_age_ms": 800, "base_spread_bps_delta": 0.25}, {"slippage_bps_p95": 3.1}
    ).exhausted[0]
    assert e.text == (
        "tuning cannot fix slippage_bps_p95 further "
        "(rule 6b: base_spread_bps_delta, tail_age_ms pinned)"
    )


def test_every_harvest_rule_is_tried_in_order() -> None:
    """Harvest rules are data: a first rule that does not hold leaves the next one its turn."""
    doc = _table()
    never = json.loads(json.dumps(doc["harvest"][0]))
    never.update(rule="3x", when=[["risk_ratio", "<", 0.01]])
    doc["harvest"] = [never, doc["harvest"][0]]
    rules = TunerRules.model_validate(doc)
    p = propose(CALM, STEADY, hist(("OK", {}), ("OK", {}), ("OK", {})), rules=rules)
    assert p.deltas == HARVEST_DELTAS and p.fired == ("3",)


def test_exhaustion_records_a_zero_value_as_zero() -> None:
    start = {**DEFAULT, "base_spread_bps_delta": 0.25, "replace_rate_per_min": 120}
    start["min_interval_ms"] = 100
    (e,) = tune(start, {"maker_taker_ratio": 0.0}).exhausted
    assert (e.rule, e.metric, e.value) == ("4", "maker_taker_ratio", 0.0)


def test_broken_packaged_table_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = _table()
    doc["defensive"][1]["moves"][0]["key"] = "nope"

    class Files:
        def joinpath(self, name: str) -> Files:
            assert name == "tuner_rules.json"
            return self

        def read_text(self, encoding: str) -> str:
            return json.dumps(doc)

    load_rules.cache_clear()
    try:
        with monkeypatch.context() as m:
            m.setattr(tuner_mod.resources, "files", lambda pkg: Files())
            with pytest.raises(ConfigError, match=r"^tuner_rules.json defensive.1.moves.0: .*nope"):
                load_rules()
    finally:
        load_rules.cache_clear()
    assert load_rules().defensive[1].moves[0].key == "min_interval_ms"
