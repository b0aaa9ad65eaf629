"""One iteration, pure: hand-made state and symbol results in, summary and new state out."""

from __future__ import annotations

from typing import Any

import pytest
from soakq_testkit import GOOD_KPIS, contract_hash, make_spec

from soakq.aggregate import aggregate
from soakq.freeze import FreezeState
from soakq.guards import empty_ledger, record_changes
from soakq.iteration import finalize_iteration, initial_state
from soakq.profiles import load_profile
from soakq.states import StopReason

pytestmark = pytest.mark.usefixtures("clean_env")

STEADY = dict(load_profile("steady_safe").overrides)


def results(spec: Any, **kpis: Any) -> list[dict[str, Any]]:
    return [{"symbol": s, "metrics": {**GOOD_KPIS, **kpis}} for s in spec.symbols]


def state_at(iteration: int, history: dict[int, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    ledger = empty_ledger()
    for i in sorted(history):
        ledger = record_changes(ledger, i, history[i])
    return {
        "freeze": FreezeState().as_json(),
        "iteration": iteration,
        "ledger": ledger,
        "overrides": dict(STEADY),
        **extra,
    }


# Iteration 3 of a run whose ledger makes every guard act on rule 2 + rule 5 proposals.
HISTORY = {
    1: {"impact_cap_ratio": -0.01},
    2: {"min_interval_ms": -3, "impact_cap_ratio": -0.008, "tail_age_ms": 60},
}
WARN_KPIS = {"risk_ratio": 0.45, "p95_latency_ms": 340.0}  # WARN; rules 2 and 5 fire


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
    assert t["suppressed"] == {"min_interval_ms": "oscillation", "tail_age_ms": "cooldown"}
    assert t["trimmed"] == {"impact_cap_ratio": "velocity"}
    assert t["applied_deltas"] == pytest.approx({"impact_cap_ratio": -0.002})
    assert t["overrides_after"] == {**STEADY, "impact_cap_ratio": 0.078}
    assert t["changes"] == {
        "impact_cap_ratio": {"old": 0.08, "delta": -0.002, "new": 0.078, "clamped": False}
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
        "delta": -0.002,
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


# --- aggregation (DESIGN §3) ----------------------------------------------------------------


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
