"""One iteration, pure: hand-made state and symbol results in, summary and new state out.

aggregate -> KPI gate -> (unfreeze on a hard FAIL) -> tuner v2 -> guards -> apply -> freeze
(docs/tuner.md). The tuning facts are pinned exactly; KPI reasons only by the metric they name.
"""

from __future__ import annotations

from typing import Any

import pytest
from soakq_testkit import GOOD_KPIS, contract_hash, make_spec
from tuner_contract import drive_scripted

from soakq.aggregate import aggregate
from soakq.iteration import finalize_iteration, history_entry, initial_state
from soakq.profiles import load_profile
from soakq.rules.freeze import FreezeState
from soakq.rules.guards import empty_ledger, record_changes
from soakq.states import StopReason

pytestmark = pytest.mark.usefixtures("clean_env")

STEADY = dict(load_profile("steady_safe").overrides)
CALM = {**GOOD_KPIS, "net_bps": 3.5, "risk_ratio": 0.30}  # OK, and comfortable for rule 3
TUNED = (
    "risk_ratio",
    "net_bps",
    "maker_taker_ratio",
    "p95_latency_ms",
    "adverse_bps_p95",
    "slippage_bps_p95",
)


def results(spec: Any, **kpis: Any) -> list[dict[str, Any]]:
    return [{"symbol": s, "metrics": {**GOOD_KPIS, **kpis}} for s in spec.symbols]


def state_at(
    iteration: int, history: dict[int, dict[str, Any]], minutes: float = 20.0, **extra: Any
) -> dict[str, Any]:
    """The state after ``iteration``, its ledger recorded iteration by iteration."""
    ledger = empty_ledger()
    for i in range(1, iteration + 1):
        ledger = record_changes(ledger, i, history.get(i, {}), minutes_per_iteration=minutes)
    return {
        "fail_streak": 0,
        "freeze": FreezeState().as_json(),
        "iteration": iteration,
        "ledger": ledger,
        "overrides": dict(STEADY),
        "recent": [],
        **extra,
    }


def recent(*verdict_kpis: tuple[str, dict[str, Any]], first: int = 1) -> list[dict[str, Any]]:
    return [
        history_entry(i, v, {**CALM, **k}) for i, (v, k) in enumerate(verdict_kpis, start=first)
    ]


# Iteration 3 of a run whose ledger makes every guard act on rule 2 + rule 5a proposals:
# min_interval -3 at 2 (a +5 reverses it: oscillation), tail_age +60 at 2 (>= half of 100:
# cooldown), impact_cap -0.009 and -0.008 (0.017 of 0.02 used: -0.005 trimmed to -0.003).
HISTORY = {
    1: {"impact_cap_ratio": -0.009},
    2: {"min_interval_ms": -3, "impact_cap_ratio": -0.008, "tail_age_ms": 60},
}
WARN_KPIS = {"risk_ratio": 0.45, "p95_latency_ms": 340.0}  # WARN; rules 2 and 5a fire


def test_guard_flags_and_suppressed_in_summary() -> None:
    spec = make_spec(iterations=10)
    step = finalize_iteration(spec, state_at(2, HISTORY), 3, results(spec, **WARN_KPIS))
    s, t = step.doc["summary"], step.doc["tuning"]
    assert s["kpi_verdict"] == "WARN" and step.stop is None
    assert t["proposed_deltas"] == {
        "min_interval_ms": 5,
        "impact_cap_ratio": -0.005,
        "tail_age_ms": 50,
    }
    assert t["fired_rules"] == ["2", "5a"] and t["kind"] == "defensive"
    assert t["suppressed"] == {"min_interval_ms": "oscillation", "tail_age_ms": "cooldown"}
    assert t["trimmed"] == {"impact_cap_ratio": "velocity"}
    assert t["applied_deltas"] == {"impact_cap_ratio": -0.003}
    assert t["overrides_after"] == {**STEADY, "impact_cap_ratio": 0.077}
    assert t["changes"] == {
        "impact_cap_ratio": {"old": 0.08, "delta": -0.003, "new": 0.077, "clamped": False}
    }
    assert (s["oscillation_detected"], s["velocity_violation"], s["cooldown_active"]) == (
        True,
        True,
        True,
    )
    assert s["guards_enabled"] is True
    assert s["state_hash"] == contract_hash(t["overrides_after"])
    assert t["overrides_before"] == STEADY
    assert step.state["overrides"] == t["overrides_after"]
    assert step.state["iteration"] == 3
    assert step.state["ledger"]["changes"]["impact_cap_ratio"][-1] == {
        "delta": -0.003,
        "iteration": 3,
        "reversal": False,
    }


def test_no_flags_when_guards_do_nothing() -> None:
    spec = make_spec(iterations=10)
    step = finalize_iteration(spec, state_at(2, {}), 3, results(spec, **WARN_KPIS))
    s, t = step.doc["summary"], step.doc["tuning"]
    assert t["suppressed"] == {} and t["trimmed"] == {}
    assert t["applied_deltas"] == t["proposed_deltas"]
    assert not (s["oscillation_detected"] or s["velocity_violation"] or s["cooldown_active"])


def test_guards_disabled_apply_everything() -> None:
    spec = make_spec(iterations=10, guards=False)
    step = finalize_iteration(spec, state_at(2, HISTORY), 3, results(spec, **WARN_KPIS))
    s, t = step.doc["summary"], step.doc["tuning"]
    assert s["guards_enabled"] is False
    assert t["suppressed"] == {} and t["trimmed"] == {} and t["guard_decisions"] == []
    assert t["applied_deltas"] == t["proposed_deltas"]
    assert t["overrides_after"] == {
        **STEADY,
        "min_interval_ms": 80,
        "impact_cap_ratio": 0.075,
        "tail_age_ms": 790,
    }
    assert not (s["oscillation_detected"] or s["velocity_violation"] or s["cooldown_active"])


def test_safety_bypass_under_soft_fail() -> None:
    spec = make_spec(iterations=10, kpi_gate="soft")
    state = state_at(2, {2: {"min_interval_ms": -3}})
    step = finalize_iteration(spec, state, 3, results(spec, risk_ratio=0.65))
    s, t = step.doc["summary"], step.doc["tuning"]
    assert s["kpi_verdict"] == "FAIL" and step.stop is None
    assert t["applied_deltas"]["min_interval_ms"] == 5
    assert {"action": "bypassed", "guard": "oscillation", "param": "min_interval_ms"}.items() <= (
        t["guard_decisions"][0].items()
    )
    assert s["oscillation_detected"] is False  # bypassed: the guard changed nothing


def test_hard_gate_stops_and_changes_nothing() -> None:
    spec = make_spec(iterations=10, kpi_gate="hard")
    step = finalize_iteration(spec, state_at(0, {}), 1, results(spec, risk_ratio=0.65))
    assert step.stop == StopReason.KPI_GATE and "risk_ratio" in step.stop_detail
    t = step.doc["tuning"]
    assert t["proposed_deltas"] == {} and t["applied_deltas"] == {}
    assert t["overrides_after"] == STEADY


def test_soft_gate_records_fail_and_goes_on() -> None:
    spec = make_spec(iterations=10, kpi_gate="soft")
    step = finalize_iteration(spec, state_at(0, {}), 1, results(spec, risk_ratio=0.65))
    assert step.stop is None and step.doc["summary"]["kpi_verdict"] == "FAIL"
    assert step.doc["summary"]["kpi_gate_mode"] == "soft"
    assert step.doc["tuning"]["applied_deltas"]  # rule 1 acted


@pytest.mark.parametrize("broken", ["missing", "error"])
def test_symbol_problem_is_a_metrics_error(broken: str) -> None:
    spec = make_spec(iterations=10)
    res = results(spec)
    victim = res.pop()["symbol"]
    if broken == "error":
        res.append({"symbol": victim, "error": "KPI report unreadable"})
    step = finalize_iteration(spec, state_at(0, {}), 1, res)
    s = step.doc["summary"]
    assert step.stop == StopReason.METRICS_ERROR and victim in step.stop_detail
    assert s["kpi_verdict"] == "FAIL" and victim in s["symbol_errors"]
    assert s["net_bps"] is None  # never zeros
    assert victim not in s["symbols"]
    assert step.doc["tuning"]["applied_deltas"] == {}


def test_wrong_iteration_refused() -> None:
    spec = make_spec(iterations=10)
    with pytest.raises(ValueError, match="iteration"):
        finalize_iteration(spec, state_at(1, {}), 3, results(spec))


def test_auto_tune_off_proposes_nothing() -> None:
    spec = make_spec(iterations=10, auto_tune=False)
    step = finalize_iteration(spec, state_at(0, {}), 1, results(spec, risk_ratio=0.65))
    assert step.doc["tuning"]["proposed_deltas"] == {}
    assert "auto-tune off" in step.doc["tuning"]["note"]


def test_frozen_state_proposes_nothing() -> None:
    spec = make_spec(iterations=10)
    frozen = FreezeState(
        active=True,
        reason="r",
        signature_hash=contract_hash(STEADY),
        frozen_at=3,
        stable_streak=(1, 2, 3),
        proving=(1, 2, 3),
    )
    state = state_at(3, {}, freeze=frozen.as_json())
    step = finalize_iteration(spec, state, 4, results(spec, p95_latency_ms=340.0))
    assert step.doc["tuning"]["proposed_deltas"] == {}
    assert step.doc["summary"]["freeze_active"] is True
    assert step.doc["summary"]["signature_hash"] == contract_hash(STEADY)


def test_v1_rule7_case_is_fixed_now() -> None:
    """risk .30, net 3.5, latency 420, adverse 10: v1 said "stable: no change"."""
    spec = make_spec(iterations=10)
    kpis = {"risk_ratio": 0.30, "net_bps": 3.5, "p95_latency_ms": 420.0, "adverse_bps_p95": 10.0}
    step = finalize_iteration(spec, state_at(0, {}), 1, results(spec, **kpis))
    t = step.doc["tuning"]
    assert step.doc["summary"]["kpi_verdict"] == "FAIL" and step.stop is None
    assert t["fired_rules"] == ["5b", "6a"]
    expected = {
        "tail_age_ms": 60,
        "replace_rate_per_min": -25,
        "impact_cap_ratio": -0.01,
        "max_delta_ratio": -0.01,
    }
    assert t["proposed_deltas"] == expected and t["applied_deltas"] == expected
    assert t["overrides_after"] == {
        **STEADY,
        "tail_age_ms": 800,
        "replace_rate_per_min": 225,
        "impact_cap_ratio": 0.07,
        "max_delta_ratio": 0.14,
    }
    assert t["rationale"]["tail_age_ms"].startswith("rule 5b (defensive)")
    assert t["rationale"]["max_delta_ratio"].startswith("rule 6a (defensive)")


def test_harvest_in_the_step_after_three_ok_iterations() -> None:
    spec = make_spec(iterations=10)
    state = state_at(2, {}, recent=recent(("OK", {}), ("OK", {})))
    step = finalize_iteration(spec, state, 3, results(spec, **CALM))
    t = step.doc["tuning"]
    assert step.doc["summary"]["kpi_verdict"] == "OK"
    assert t["kind"] == "harvest" and t["fired_rules"] == ["3"]
    assert t["proposed_deltas"] == {"min_interval_ms": -3, "impact_cap_ratio": 0.005}
    assert t["applied_deltas"] == {"min_interval_ms": -3, "impact_cap_ratio": 0.005}
    assert t["overrides_after"] == {**STEADY, "min_interval_ms": 72, "impact_cap_ratio": 0.085}
    assert t["rationale"]["min_interval_ms"].startswith("rule 3 (harvest): mean of iterations 1-3")
    assert t["exhausted"] == []
    # the harvest is an applied change: no freeze streak
    assert step.state["freeze"]["stable_streak"] == []


@pytest.mark.parametrize("bad", ["WARN", "FAIL"])
def test_no_harvest_in_the_step_when_one_of_three_was_not_ok(bad: str) -> None:
    spec = make_spec(iterations=10)
    state = state_at(2, {}, recent=recent((bad, {}), ("OK", {})))
    t = finalize_iteration(spec, state, 3, results(spec, **CALM)).doc["tuning"]
    assert t["proposed_deltas"] == {} and t["applied_deltas"] == {} and t["kind"] == ""


def test_recent_keeps_the_last_three_iterations() -> None:
    spec = make_spec(iterations=10)
    state = state_at(3, {}, recent=recent(("FAIL", {}), ("OK", {}), ("OK", {})))
    step = finalize_iteration(spec, state, 4, results(spec, **CALM))
    assert [e["iteration"] for e in step.state["recent"]] == [2, 3, 4]
    newest = step.state["recent"][-1]
    assert newest["kpi_verdict"] == "OK"
    assert {k: newest[k] for k in TUNED} == {k: CALM[k] for k in TUNED}
    assert step.doc["tuning"]["kind"] == "harvest"  # 2, 3, 4 are OK


def test_scripted_run_harvests_from_iteration_3_until_pinned_then_freezes() -> None:
    """Calm, comfortable KPIs every iteration: iterations 1-2 cannot harvest (fewer than 3),
    then rule 3 gives back margin each iteration until impact_cap reaches its cap 0.10 and
    min_interval its floor 50; only then 3 stable iterations freeze the run."""
    spec = make_spec(iterations=16)
    steps = drive_scripted(spec, [CALM] * 16)
    applied = [s.doc["tuning"]["applied_deltas"] for s in steps]
    assert applied[:2] == [{}, {}]
    impact = [a.get("impact_cap_ratio") for a in applied[2:]]
    interval = [a.get("min_interval_ms") for a in applied[2:]]
    # 0.08 -> 0.10 in four steps of +0.005; 75 -> 50 in eight steps of -3 and one of -1
    assert impact[:4] == [0.005] * 4 and all(v is None for v in impact[4:])
    assert interval[:9] == [-3] * 8 + [-1] and all(v is None for v in interval[9:])
    final = steps[-1].doc["tuning"]["overrides_after"]
    assert final == {**STEADY, "min_interval_ms": 50, "impact_cap_ratio": 0.1}
    frozen = [s.doc["summary"]["freeze_active"] for s in steps]
    assert frozen == [False] * 13 + [True] * 3  # stable 12, 13, 14 -> frozen at 14
    assert steps[13].state["freeze"]["proving"] == [12, 13, 14]
    assert all(s.doc["tuning"]["kind"] == "harvest" for s in steps[2:11])


def test_exhaustion_is_in_the_summary() -> None:
    spec = make_spec(iterations=10)
    state = state_at(0, {}, overrides={**STEADY, "tail_age_ms": 800})
    t = finalize_iteration(spec, state, 1, results(spec, p95_latency_ms=345.0)).doc["tuning"]
    assert t["exhausted"] == [
        {"metric": "p95_latency_ms", "pinned": ["tail_age_ms"], "rule": "5a", "value": 345.0}
    ]
    assert t["proposed_deltas"] == {} and t["fired_rules"] == ["5a"]


def test_a_hard_fail_while_frozen_unfreezes_before_tuning() -> None:
    spec = make_spec(iterations=10, kpi_gate="soft")
    frozen = FreezeState(
        active=True,
        reason="r",
        signature_hash=contract_hash(STEADY),
        frozen_at=3,
        stable_streak=(1, 2, 3),
        proving=(1, 2, 3),
    )
    state = state_at(3, {}, freeze=frozen.as_json())
    step = finalize_iteration(spec, state, 4, results(spec, risk_ratio=0.65))
    s, t = step.doc["summary"], step.doc["tuning"]
    assert s["kpi_verdict"] == "FAIL" and s["freeze_active"] is False
    assert s["freeze_reason"].startswith("unfrozen at iteration 4: KPI gate FAIL (")
    assert "risk_ratio" in s["freeze_reason"] and s["signature_hash"] == ""
    # the tuner reacted in the same iteration
    assert t["proposed_deltas"] == {
        "min_interval_ms": 5,
        "impact_cap_ratio": -0.01,
        "tail_age_ms": 30,
    }
    assert t["applied_deltas"] == t["proposed_deltas"]
    assert step.state["freeze"]["active"] is False


def test_a_warn_while_frozen_stays_frozen() -> None:
    spec = make_spec(iterations=10)
    frozen = FreezeState(True, "r", contract_hash(STEADY), 3, (1, 2, 3), (1, 2, 3))
    state = state_at(3, {}, freeze=frozen.as_json())
    step = finalize_iteration(spec, state, 4, results(spec, risk_ratio=0.45))
    assert step.doc["summary"]["freeze_active"] is True
    assert step.doc["tuning"]["proposed_deltas"] == {}
    assert step.doc["tuning"]["note"] == "frozen since iteration 3: no change"


# --- the hard gate and its failure limit --------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "streak_before", "stops"),
    [(1, 0, True), (2, 0, False), (2, 1, True), (3, 0, False), (3, 1, False), (3, 2, True)],
)
def test_failure_limit(limit: int, streak_before: int, stops: bool) -> None:
    spec = make_spec(iterations=10, kpi_gate="hard", failure_limit=limit)
    state = state_at(streak_before, {}, fail_streak=streak_before)
    step = finalize_iteration(spec, state, streak_before + 1, results(spec, risk_ratio=0.65))
    assert step.state["fail_streak"] == streak_before + 1
    t = step.doc["tuning"]
    if stops:
        assert step.stop == StopReason.KPI_GATE and "risk_ratio" in step.stop_detail
        assert t["proposed_deltas"] == {} and t["applied_deltas"] == {}
        if limit > 1:
            assert step.stop_detail.startswith(f"{limit} consecutive KPI FAILs (limit {limit}): ")
    else:
        assert step.stop is None
        assert t["applied_deltas"] == {
            "min_interval_ms": 5,
            "impact_cap_ratio": -0.01,
            "tail_age_ms": 30,
        }


@pytest.mark.parametrize("verdict_kpis", [{}, {"risk_ratio": 0.45}])
def test_ok_or_warn_resets_the_fail_streak(verdict_kpis: dict) -> None:
    spec = make_spec(iterations=10, kpi_gate="hard", failure_limit=3)
    step = finalize_iteration(
        spec, state_at(2, {}, fail_streak=2), 3, results(spec, **verdict_kpis)
    )
    assert step.state["fail_streak"] == 0 and step.stop is None


def test_soft_gate_never_stops_on_fails() -> None:
    spec = make_spec(iterations=10, kpi_gate="soft")
    step = finalize_iteration(
        spec, state_at(5, {}, fail_streak=5), 6, results(spec, risk_ratio=0.65)
    )
    assert step.stop is None and step.state["fail_streak"] == 6


def test_scripted_hard_run_with_limit_3_tunes_through_two_fails() -> None:
    spec = make_spec(iterations=8, kpi_gate="hard", failure_limit=3)
    fail, ok = {**GOOD_KPIS, "risk_ratio": 0.65}, dict(GOOD_KPIS)
    steps = drive_scripted(spec, [fail, fail, ok, fail, fail, fail, ok, ok])
    assert [s.state["fail_streak"] for s in steps] == [1, 2, 0, 1, 2, 3]
    assert steps[-1].stop == StopReason.KPI_GATE
    assert [s.doc["iteration"] for s in steps] == [1, 2, 3, 4, 5, 6]
    # iteration 1 tuned; iteration 2's min_interval +5 is rule 1's cap 80 (75 -> 80 already)
    assert steps[0].doc["tuning"]["applied_deltas"] == {
        "min_interval_ms": 5,
        "impact_cap_ratio": -0.01,
        "tail_age_ms": 30,
    }
    assert steps[1].doc["tuning"]["proposed_deltas"] == {
        "impact_cap_ratio": -0.01,
        "tail_age_ms": 30,
    }
    assert steps[-1].doc["tuning"]["applied_deltas"] == {}


# --- the velocity hour comes from the spec ------------------------------------------------------


@pytest.mark.parametrize(("minutes", "expected"), [(20.0, 75), (5.0, 10), (1.0, 10)])
def test_velocity_hour_follows_minutes_per_iteration(minutes: float, expected: int) -> None:
    """tail_age +90 at iteration 1; at iteration 10 rule 5b proposes +75. With 20-minute
    iterations the hour is 3 iterations and iteration 1 is long gone; with 5- or 1-minute ones
    it is inside the hour (12 or 60 iterations) and only 10 of the 100 ms/h are left."""
    spec = make_spec(iterations=20).model_copy(update={"minutes_per_iteration": minutes})
    state = state_at(9, {1: {"tail_age_ms": 90}}, minutes=minutes)
    state["overrides"] = {**STEADY, "tail_age_ms": 700}
    step = finalize_iteration(spec, state, 10, results(spec, p95_latency_ms=365.0))
    t = step.doc["tuning"]
    assert t["proposed_deltas"]["tail_age_ms"] == 75
    assert t["applied_deltas"]["tail_age_ms"] == expected


def test_mock_metadata() -> None:
    spec = make_spec(iterations=10, mode="spike", seed=9)
    res = [
        {
            "symbol": s,
            "metrics": {
                **GOOD_KPIS,
                "mock_mode": "spike",
                "mock_seed": 9,
                "spike_count": 1,
                "gap_events": 0,
            },
        }
        for s in spec.symbols
    ]
    s = finalize_iteration(spec, initial_state(spec), 1, res).doc["summary"]
    assert s["mock"] is True and s["source"] == "kpi"
    assert (s["mock_mode"], s["mock_seed"], s["spike_count"], s["gap_events"]) == (
        "spike",
        9,
        len(spec.symbols),
        0,
    )


def test_live_source_is_not_mock(clean_env: Any) -> None:
    spec = make_spec(iterations=10, source="file", report_dir=str(clean_env))
    s = finalize_iteration(spec, initial_state(spec), 1, results(spec)).doc["summary"]
    assert s["mock"] is False and s["source"] == "file" and "mock_mode" not in s


def test_doc_shape() -> None:
    spec = make_spec(iterations=10)
    doc = finalize_iteration(spec, initial_state(spec), 1, results(spec)).doc
    assert set(doc) == {"iteration", "run_id", "summary", "tuning"}  # runtime added by runner
    assert {
        "proposed_deltas",
        "applied_deltas",
        "suppressed",
        "rationale",
        "changes",
        "overrides_before",
        "overrides_after",
    } <= set(doc["tuning"])
    assert {
        "symbols",
        "kpi_verdict",
        "kpi_reasons",
        "state_hash",
        "freeze_active",
        "oscillation_detected",
        "velocity_violation",
        "cooldown_active",
    } <= set(doc["summary"])


# --- aggregation (docs/kpis.md) -----------------------------------------------------------------


def test_aggregate_fill_weighted_max_and_sum() -> None:
    a = {
        **GOOD_KPIS,
        "fills": 100,
        "net_bps": 2.0,
        "risk_ratio": 0.2,
        "p95_latency_ms": 200.0,
        "adverse_bps_p95": 5.0,
        "snipes": 1,
    }
    b = {
        **GOOD_KPIS,
        "fills": 300,
        "net_bps": 4.0,
        "risk_ratio": 0.4,
        "p95_latency_ms": 310.0,
        "adverse_bps_p95": 1.0,
        "snipes": 2,
    }
    out = aggregate({"A": a, "B": b})
    assert out["net_bps"] == pytest.approx((2.0 * 100 + 4.0 * 300) / 400)
    assert out["risk_ratio"] == pytest.approx((0.2 * 100 + 0.4 * 300) / 400)
    assert out["p95_latency_ms"] == 310.0 and out["adverse_bps_p95"] == 5.0
    assert out["fills"] == 400 and out["snipes"] == 3


@pytest.mark.parametrize("bad", [None, float("nan"), "x"])
def test_aggregate_missing_input_is_missing(bad: Any) -> None:
    out = aggregate({"A": {**GOOD_KPIS, "net_bps": bad}, "B": dict(GOOD_KPIS)})
    assert out["net_bps"] is None
    assert out["risk_ratio"] == GOOD_KPIS["risk_ratio"]


def test_aggregate_zero_fills_gives_no_weighted_kpis() -> None:
    out = aggregate({"A": {**GOOD_KPIS, "fills": 0}})
    assert out["net_bps"] is None and out["fills"] == 0
