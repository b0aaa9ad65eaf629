"""Freeze: 3 stable iterations freeze the overrides; a FAIL unfreezes; snapshots.

Documented in docs/tuner.md ("Freeze") and docs/artifacts.md (PRODUCTION_SNAPSHOT.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from soakq_testkit import (
    GOOD_KPIS,
    contract_hash,
    iteration_docs,
    make_spec,
    read,
    run_spec,
    write_reports,
)

from soakq.profiles import load_profile
from soakq.rules.freeze import (
    STABLE_ITERATIONS,
    FreezeState,
    signature,
    unfreeze_on_fail,
    update_freeze,
)
from soakq.rules.kpi_gate import Verdict

pytestmark = pytest.mark.usefixtures("clean_env")

STEADY = dict(load_profile("steady_safe").overrides)
OK, WARN, FAIL = Verdict.OK, Verdict.WARN, Verdict.FAIL


def walk(steps: list[tuple[Verdict, bool]]) -> list[FreezeState]:
    state, out = FreezeState(), []
    for i, (verdict, applied) in enumerate(steps, start=1):
        state = update_freeze(
            state,
            iteration=i,
            verdict=verdict,
            applied_any=applied,
            overrides_after=STEADY,
            fail_reasons=("risk_ratio 0.7 > 0.5 (hard)",),
        )
        out.append(state)
    return out


@pytest.mark.parametrize(
    ("steps", "frozen_at"),
    [
        ([(OK, False)] * 3, 3),
        ([(OK, False)] * 2, None),
        ([(OK, True), (OK, False), (OK, False), (OK, False)], 4),  # an applied delta resets
        ([(OK, False), (WARN, False), (OK, False), (OK, False)], None),  # WARN resets
        ([(OK, False), (OK, False), (FAIL, False), (OK, False), (OK, False), (OK, False)], 6),
        ([(WARN, False)] * 5, None),
    ],
)
def test_freeze_table(steps: list, frozen_at: int | None) -> None:
    states = walk(steps)
    last = states[-1]
    if frozen_at is None:
        assert not any(s.active for s in states)
        assert last.signature_hash == ""
    else:
        assert last.active and last.frozen_at == frozen_at
        assert last.proving == tuple(range(frozen_at - 2, frozen_at + 1))
        assert last.signature_hash == contract_hash(STEADY)
        assert "3 consecutive" in last.reason


def test_frozen_stays_frozen_on_warn_and_unfreezes_on_fail() -> None:
    states = walk([(OK, False)] * 3 + [(WARN, False), (OK, False), (FAIL, False)])
    assert [s.active for s in states] == [False, False, True, True, True, False]
    gone = states[-1]
    assert "unfrozen at iteration 6" in gone.reason and "risk_ratio" in gone.reason
    assert gone.signature_hash == "" and gone.stable_streak == ()


FROZEN = FreezeState(
    active=True,
    reason="3 consecutive iterations with KPI OK and no applied delta (iterations 1, 2, 3)",
    signature_hash=contract_hash(STEADY),
    frozen_at=3,
    stable_streak=(1, 2, 3),
    proving=(1, 2, 3),
)


def test_freeze_state_is_an_immutable_value() -> None:
    import dataclasses

    assert FreezeState() == FreezeState(False, "", "", 0, (), ())
    assert hash(FROZEN) == hash(FreezeState.from_json(FROZEN.as_json()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        FROZEN.active = False  # type: ignore[misc]


def test_three_stable_iterations_is_the_documented_number() -> None:
    assert STABLE_ITERATIONS == 3
    assert signature(STEADY) == contract_hash(STEADY)


@pytest.mark.parametrize("verdict", [OK, WARN])
def test_unfreeze_on_fail_ignores_ok_and_warn(verdict: Verdict) -> None:
    assert unfreeze_on_fail(FROZEN, iteration=4, verdict=verdict) == FROZEN


def test_unfreeze_on_fail_ignores_a_run_that_is_not_frozen() -> None:
    state = FreezeState(reason="earlier", stable_streak=(5,))
    assert unfreeze_on_fail(state, iteration=6, verdict=FAIL, fail_reasons=("x",)) == state


def test_unfreeze_on_fail_clears_the_freeze_and_says_why() -> None:
    gone = unfreeze_on_fail(
        FROZEN,
        iteration=7,
        verdict=FAIL,
        fail_reasons=("risk_ratio 0.7 > 0.5 (hard)", "p95_latency_ms 450 > 400 (hard)"),
    )
    assert gone == FreezeState(
        active=False,
        reason=(
            "unfrozen at iteration 7: KPI gate FAIL (risk_ratio 0.7 > 0.5 (hard); "
            "p95_latency_ms 450 > 400 (hard))"
        ),
    )
    assert gone.signature_hash == "" and gone.proving == () and gone.stable_streak == ()
    plain = unfreeze_on_fail(FROZEN, iteration=7, verdict=FAIL)
    assert plain.reason == "unfrozen at iteration 7: KPI gate FAIL (KPI gate FAIL)"


def test_update_after_unfreeze_in_the_same_iteration_keeps_the_reason() -> None:
    """The step unfreezes before tuning, then updates the freeze after apply: the reason
    recorded by the first call survives the second, and nothing refreezes."""
    early = unfreeze_on_fail(FROZEN, iteration=4, verdict=FAIL, fail_reasons=("risk_ratio",))
    late = update_freeze(early, iteration=4, verdict=FAIL, applied_any=True, overrides_after=STEADY)
    assert late == FreezeState(reason=early.reason)
    # update_freeze alone (no earlier unfreeze) ends in the same state
    alone = update_freeze(
        FROZEN,
        iteration=4,
        verdict=FAIL,
        applied_any=True,
        overrides_after=STEADY,
        fail_reasons=("risk_ratio",),
    )
    assert alone == late


def test_refreeze_after_an_unfreeze_signs_the_new_overrides() -> None:
    moved = {**STEADY, "tail_age_ms": 770}
    state = update_freeze(
        FROZEN, iteration=4, verdict=FAIL, applied_any=True, overrides_after=moved
    )
    for i in (5, 6):
        state = update_freeze(
            state, iteration=i, verdict=OK, applied_any=False, overrides_after=moved
        )
        assert not state.active and state.reason.startswith("unfrozen at iteration 4")
    state = update_freeze(state, iteration=7, verdict=OK, applied_any=False, overrides_after=moved)
    assert state.active and state.frozen_at == 7 and state.proving == (5, 6, 7)
    assert state.signature_hash == contract_hash(moved) != FROZEN.signature_hash
    assert state.reason == (
        "3 consecutive iterations with KPI OK and no applied delta (iterations 5, 6, 7)"
    )


def test_frozen_state_is_kept_as_is_until_a_fail() -> None:
    other = {**STEADY, "tail_age_ms": 700}
    for verdict in (OK, WARN, OK):
        after = update_freeze(
            FROZEN, iteration=4, verdict=verdict, applied_any=False, overrides_after=other
        )
        assert after == FROZEN  # same signature, same proving iterations


def test_a_long_stable_streak_proves_with_its_last_three() -> None:
    states = walk([(OK, True)] + [(OK, False)] * 3)
    assert states[-1].stable_streak == (2, 3, 4) and states[-1].proving == (2, 3, 4)
    assert [s.stable_streak for s in states[:-1]] == [(), (2,), (2, 3)]


def test_freeze_state_json_round_trip() -> None:
    state = walk([(OK, False)] * 3)[-1]
    assert FreezeState.from_json(json.loads(json.dumps(state.as_json()))) == state
    assert FreezeState.from_json(None) == FreezeState()


# --- in a run (file source: exact, deterministic) --------------------------------------------


def file_run(
    clean_env: Path, reports: dict[int, Any], iterations: int, **kw: Any
) -> tuple[dict, Path]:
    rdir = write_reports(clean_env / "reports", reports)
    spec = make_spec(
        source="file", report_dir=str(rdir), symbols=["BTCUSDT"], iterations=iterations, **kw
    )
    return run_spec(spec, clean_env / "art")


def test_run_freezes_then_tuner_proposes_nothing(clean_env: Path) -> None:
    # Iterations 1-3 stable; 4-6 have latency 340 (still OK) which would fire rule 5.
    reports = {i: dict(GOOD_KPIS) for i in (1, 2, 3)}
    reports.update({i: {**GOOD_KPIS, "p95_latency_ms": 340.0} for i in (4, 5, 6)})
    record, run_dir = file_run(clean_env, reports, 6)
    assert record["status"] == "succeeded"
    docs = iteration_docs(run_dir)
    assert [d["summary"]["freeze_active"] for d in docs] == [False, False, True, True, True, True]
    for d in docs[3:]:
        assert d["summary"]["kpi_verdict"] == "OK"
        assert d["tuning"]["proposed_deltas"] == {} and d["tuning"]["applied_deltas"] == {}
    overrides = read(run_dir / "runtime_overrides.json")
    sig = contract_hash(overrides)
    assert docs[-1]["summary"]["signature_hash"] == sig == docs[-1]["summary"]["state_hash"]

    report = read(run_dir / "TUNING_REPORT.json")
    assert [e["freeze_active"] for e in report["iterations"]] == [
        False,
        False,
        True,
        True,
        True,
        True,
    ]
    assert report["iterations"][2]["freeze_reason"] and report["iterations"][2]["signature_hash"]

    snap = read(run_dir / "PRODUCTION_SNAPSHOT.json")
    assert snap["profile"] == "steady_safe" and snap["overrides"] == overrides
    assert snap["signature_hash"] == sig and snap["run_id"] == record["run_id"]
    assert snap["proving_iterations"] == [1, 2, 3] and snap["frozen_at_iteration"] == 3
    assert snap["mock"] is False and snap["source"] == "file"


def test_same_reports_without_freeze_do_tune(clean_env: Path) -> None:
    """Control for the test above: latency 340 at iteration 1 makes the tuner act."""
    reports = {i: {**GOOD_KPIS, "p95_latency_ms": 340.0} for i in (1, 2)}
    _, run_dir = file_run(clean_env, reports, 2)
    assert iteration_docs(run_dir)[0]["tuning"]["applied_deltas"] == {"tail_age_ms": 50}


def test_fail_while_frozen_unfreezes_in_run(clean_env: Path) -> None:
    """A hard FAIL while frozen unfreezes in that iteration, before tuning: the same
    iteration's summary is unfrozen, says why, and the tuner's deltas are already applied."""
    reports = {i: dict(GOOD_KPIS) for i in (1, 2, 3)}
    reports[4] = {**GOOD_KPIS, "risk_ratio": 0.7}
    record, run_dir = file_run(clean_env, reports, 4, kpi_gate="soft")
    docs = iteration_docs(run_dir)
    assert [d["summary"]["freeze_active"] for d in docs] == [False, False, True, False]
    last = docs[-1]["summary"]
    assert last["kpi_verdict"] == "FAIL" and last["freeze_active"] is False
    assert last["freeze_reason"].startswith("unfrozen at iteration 4: KPI gate FAIL (")
    assert "risk_ratio" in last["freeze_reason"] and last["signature_hash"] == ""
    tuning = docs[-1]["tuning"]
    rule1 = {"min_interval_ms": 5, "impact_cap_ratio": -0.01, "tail_age_ms": 30}
    assert tuning["proposed_deltas"] == rule1 and tuning["applied_deltas"] == rule1
    assert tuning["overrides_before"] == STEADY
    assert read(run_dir / "runtime_overrides.json") == {
        **STEADY,
        "min_interval_ms": 80,
        "impact_cap_ratio": 0.07,
        "tail_age_ms": 770,
    }
    assert not (run_dir / "PRODUCTION_SNAPSHOT.json").exists()
    assert record["status"] == "succeeded"


def test_hard_gate_fail_while_frozen_stops_without_tuning(clean_env: Path) -> None:
    """With the hard gate (limit 1) the FAIL stops the run: unfrozen, nothing changed."""
    reports = {i: dict(GOOD_KPIS) for i in (1, 2, 3)}
    reports[4] = {**GOOD_KPIS, "risk_ratio": 0.7}
    record, run_dir = file_run(clean_env, reports, 6, kpi_gate="hard")
    docs = iteration_docs(run_dir)
    assert [d["iteration"] for d in docs] == [1, 2, 3, 4]
    assert docs[-1]["summary"]["freeze_active"] is False
    assert docs[-1]["tuning"]["applied_deltas"] == {}
    assert record["status"] == "failed"


def test_fail_while_frozen_with_failure_limit_tunes_and_refreezes(clean_env: Path) -> None:
    """failure_limit 2: one FAIL while frozen unfreezes and tunes; 3 stable OK iterations
    later the run freezes again, signing the tuned overrides."""
    reports = {i: dict(GOOD_KPIS) for i in range(1, 9)}
    reports[4] = {**GOOD_KPIS, "risk_ratio": 0.7}
    record, run_dir = file_run(clean_env, reports, 8, kpi_gate="hard", failure_limit=2)
    docs = iteration_docs(run_dir)
    assert record["status"] == "succeeded"
    assert [d["summary"]["freeze_active"] for d in docs] == [
        False,
        False,
        True,
        False,
        False,
        False,
        True,
        True,
    ]
    tuned = {**STEADY, "min_interval_ms": 80, "impact_cap_ratio": 0.07, "tail_age_ms": 770}
    assert docs[3]["tuning"]["overrides_after"] == tuned
    assert docs[6]["summary"]["signature_hash"] == contract_hash(tuned)
    assert docs[6]["summary"]["freeze_reason"] == (
        "3 consecutive iterations with KPI OK and no applied delta (iterations 5, 6, 7)"
    )


def test_mock_run_snapshot_says_mock(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kpi-source run frozen by hand-fed OK metrics says mock in its snapshot."""
    import soakq.engine as engine_mod

    def measure(spec: Any, iteration: int, symbol: str, overrides: Any) -> dict[str, Any]:
        return {
            "symbol": symbol,
            "metrics": {
                **GOOD_KPIS,
                "mock_mode": spec.mode,
                "mock_seed": spec.seed,
                "spike_count": 0,
                "gap_events": 0,
            },
        }

    monkeypatch.setattr(engine_mod, "measure_symbol", measure)
    record, run_dir = run_spec(make_spec(iterations=3, seed=5), clean_env / "art")
    snap = read(run_dir / "PRODUCTION_SNAPSHOT.json")
    assert snap["mock"] is True and snap["mock_seed"] == 5 and snap["source"] == "kpi"
