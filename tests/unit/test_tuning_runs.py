"""Tuner v2 and guards v2 on real runs of the ``book`` simulator (docs/tuner.md).

The simulator's numbers are not pinned here (it is calibrated elsewhere): each test asserts
contract properties of whatever sequence of verdicts the run produced. Every run goes through
the same pure iteration step as the embedded driver (``tuner_contract.drive``); seeds where an
event happens are found by searching, and the search must find one.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
from soakq_testkit import contract_hash, make_spec
from tuner_contract import (
    DEFENSIVE,
    HARVEST,
    KEY_LIMITS,
    contract_move,
    contract_propose,
    defensive_conditions,
    drive,
    window_means,
)

from soakq.params import PARAMS
from soakq.rules.apply import apply_deltas
from soakq.states import StopReason

pytestmark = pytest.mark.usefixtures("clean_env")

ITERATIONS = 24
DEFAULT_SEED = 42  # what `soakq submit` uses without --seed
SEEDS = (1, 2, 3, 4, 5, 6)


@cache
def _run(profile: str, mode: str, seed: int, iterations: int, **kw: Any) -> tuple[Any, ...]:
    spec = make_spec(
        profile=profile, mode=mode, seed=seed, iterations=iterations, source="book", **kw
    )
    return tuple(drive(spec))


def run(profile: str, mode: str, seed: int, iterations: int = ITERATIONS, **kw: Any) -> list:
    """The run's StepResults (each run computed once per test session)."""
    return list(_run(profile, mode, seed, iterations, **kw))


def docs_of(steps: list) -> list[dict[str, Any]]:
    return [s.doc for s in steps]


def entry(doc: dict[str, Any]) -> dict[str, Any]:
    s = doc["summary"]
    return {"iteration": doc["iteration"], "kpi_verdict": s["kpi_verdict"], **s}


def check_chain(steps: list) -> None:
    """Each iteration starts where the last ended; after = apply(before, applied); the hash is
    the hash of after; the ledger records exactly the applied deltas."""
    previous = None
    for step in steps:
        t, s = step.doc["tuning"], step.doc["summary"]
        if previous is not None:
            assert t["overrides_before"] == previous.doc["tuning"]["overrides_after"]
        result = apply_deltas(t["overrides_before"], t["applied_deltas"])
        assert result.overrides == t["overrides_after"] == step.state["overrides"]
        assert result.applied == t["applied_deltas"]
        assert s["state_hash"] == contract_hash(t["overrides_after"])
        for key, delta in t["applied_deltas"].items():
            last = step.state["ledger"]["changes"][key][-1]
            assert (last["iteration"], last["delta"]) == (step.doc["iteration"], delta)
        previous = step


def check_tuner_followed_the_contract(steps: list) -> None:
    """Every iteration that tuned proposed exactly what the contract gives for its KPIs, its
    start values and the verdicts of the last 3 iterations as they really happened."""
    docs = docs_of(steps)
    for i, doc in enumerate(docs):
        t = doc["tuning"]
        if t["note"].startswith(("frozen since", "run stopped", "auto-tune off")):
            assert t["proposed_deltas"] == {}
            continue
        history = [entry(d) for d in docs[max(0, i - 2) : i + 1]]
        want = contract_propose(doc["summary"], t["overrides_before"], history)
        assert t["proposed_deltas"] == want.deltas, doc["iteration"]
        assert (t["kind"], t["fired_rules"]) == (want.kind, want.fired), doc["iteration"]


# --- steady_safe on a calm market: the harvest gives margin back, then the run freezes ---------


def check_harvests(steps: list) -> list[int]:
    """Every applied harvest comes after 3 OK iterations (in the run's own verdicts), in an
    iteration where no defensive condition held, on a mean under the rule's thresholds."""
    docs = docs_of(steps)
    harvested = []
    for i, doc in enumerate(docs):
        t = doc["tuning"]
        rule3 = [k for k, line in t["rationale"].items() if line.startswith("rule 3 (harvest)")]
        if t["kind"] != "harvest":
            assert rule3 == []
            continue
        assert set(rule3) == set(t["proposed_deltas"])
        window = docs[i - 2 : i + 1]
        assert i >= 2 and [d["summary"]["kpi_verdict"] for d in window] == ["OK"] * 3
        assert defensive_conditions(doc["summary"]) == []
        assert HARVEST.holds(window_means([d["summary"] for d in window]))
        assert set(t["proposed_deltas"]) <= {"min_interval_ms", "impact_cap_ratio"}
        assert t["proposed_deltas"].get("min_interval_ms", -1) < 0
        assert t["proposed_deltas"].get("impact_cap_ratio", 1) > 0
        if t["applied_deltas"]:
            harvested.append(doc["iteration"])
    return harvested


def check_ends_frozen_after_harvest(steps: list) -> None:
    assert len(steps) == ITERATIONS and steps[-1].stop is None, steps[-1].stop_detail
    assert len(steps) == ITERATIONS and steps[-1].stop is None
    check_chain(steps)
    check_tuner_followed_the_contract(steps)
    harvested = check_harvests(steps)
    assert harvested, "no harvest move was applied"
    last = steps[-1]
    assert last.doc["summary"]["freeze_active"] is True
    freeze = last.state["freeze"]
    # the proving iterations were OK and changed nothing; the signature is the final config
    docs = {d["iteration"]: d for d in docs_of(steps)}
    for i in freeze["proving"]:
        assert docs[i]["summary"]["kpi_verdict"] == "OK"
        assert docs[i]["tuning"]["applied_deltas"] == {}
    assert freeze["proving"][0] > max(harvested)
    assert freeze["signature_hash"] == contract_hash(last.doc["tuning"]["overrides_after"])
    # the harvest really gave margin back: min_interval shorter or impact_cap larger
    start, end = steps[0].doc["tuning"]["overrides_before"], last.doc["tuning"]["overrides_after"]
    assert end["min_interval_ms"] < start["min_interval_ms"] or (
        end["impact_cap_ratio"] > start["impact_cap_ratio"]
    )


def test_steady_safe_calm_default_seed_harvests_and_ends_frozen() -> None:
    check_ends_frozen_after_harvest(run("steady_safe", "calm", DEFAULT_SEED))


def test_steady_safe_calm_runs_harvest_then_end_frozen() -> None:
    """Among seeds 1-10, most runs that complete end frozen; each either harvested first, or
    froze on proving iterations whose means did not meet the harvest condition (the harvest
    goes first only when it applies)."""
    complete = [s for s in range(1, 11) if len(run("steady_safe", "calm", s)) == ITERATIONS]
    frozen = [s for s in complete if run("steady_safe", "calm", s)[-1].state["freeze"]["active"]]
    assert frozen and 2 * len(frozen) > len(complete), (complete, frozen)
    harvested = [s for s in frozen if check_harvests(run("steady_safe", "calm", s))]
    assert 2 * len(harvested) > len(frozen), (frozen, harvested)
    for seed in frozen:
        steps = run("steady_safe", "calm", seed)
        if seed in harvested:
            check_ends_frozen_after_harvest(steps)
            continue
        docs = {d["iteration"]: d for d in docs_of(steps)}
        proving = steps[-1].state["freeze"]["proving"][:3]
        means = window_means([entry(docs[i]) for i in proving])
        t = docs[proving[-1]]["tuning"]
        if HARVEST.holds(means):
            # the harvest went first but applied nothing: pinned, or refused by a guard
            assert t["applied_deltas"] == {}, (seed, proving)
            assert set(t["proposed_deltas"]) <= set(t["suppressed"]), (seed, proving, t)


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_steady_safe_calm_harvests_only_after_three_ok(seed: int) -> None:
    steps = run("steady_safe", "calm", seed)
    check_chain(steps)
    check_tuner_followed_the_contract(steps)
    assert check_harvests(steps), f"seed {seed}: no harvest move was applied"


# --- aggressive on a spike market: tuning never pushes tail_age past 800 -----------------------


def check_key_limits(steps: list) -> None:
    for step in steps:
        t = step.doc["tuning"]
        for key, delta in t["proposed_deltas"].items():
            floor, cap = KEY_LIMITS.get(key, (None, None))
            new = t["overrides_before"][key] + delta
            if delta > 0 and cap is not None:
                assert new <= cap + 1e-9, (step.doc["iteration"], key, delta)
            if delta < 0 and floor is not None:
                assert new >= floor - 1e-9, (step.doc["iteration"], key, delta)
        for e in t["exhausted"]:  # every key of the rule is pinned where its move runs into
            (rule,) = [r for r in DEFENSIVE if r.rule == e["rule"]]
            assert e["metric"] == rule.metric and e["value"] == step.doc["summary"][e["metric"]]
            assert e["pinned"] == [m[0] for m in rule.moves]
            for move in rule.moves:
                assert contract_move(move, t["overrides_before"][move[0]]) is None


def test_aggressive_spike_tail_age_never_above_800() -> None:
    top, exhausted = [], 0
    for seed in SEEDS:
        steps = run("aggressive", "spike", seed)
        check_chain(steps)
        check_tuner_followed_the_contract(steps)
        check_key_limits(steps)
        tails = [s.doc["tuning"]["overrides_after"]["tail_age_ms"] for s in steps]
        assert max(tails) <= 800, (seed, tails)
        top.append(max(tails))
        exhausted += sum(
            "tail_age_ms" in e["pinned"] for s in steps for e in s.doc["tuning"]["exhausted"]
        )
    # not vacuous: the cap was reached and a rule asking for more tail_age was exhausted
    assert 800 in top and exhausted > 0


# --- reversals and the oscillation guard on real runs -------------------------------------------


def reversal_facts(steps: list) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Applied reversals and oscillation suppressions, each checked against the contract:
    a reversal never comes within 3 iterations of the key's last change nor within 6 of its
    last reversal, unless it is a safer move under a hard FAIL (and says it bypassed)."""
    last: dict[str, tuple[int, int]] = {}  # key -> (iteration, sign) of the last applied change
    last_rev: dict[str, int] = {}
    reversals, suppressions = [], []
    for step in steps:
        doc = step.doc
        i, t = doc["iteration"], doc["tuning"]
        hard = doc["summary"]["kpi_verdict"] == "FAIL"
        bypassed = {
            (d["param"])
            for d in t["guard_decisions"]
            if (d["guard"], d["action"]) == ("oscillation", "bypassed")
        }
        for key, reason in t["suppressed"].items():
            if reason != "oscillation":
                continue
            sign = 1 if t["proposed_deltas"][key] > 0 else -1
            assert key in last and last[key][1] != sign  # it would have reversed
            assert i - last[key][0] <= 3 or i - last_rev.get(key, -99) < 6
            assert doc["summary"]["oscillation_detected"] is True
            suppressions.append((i, key))
        for key, delta in sorted(t["applied_deltas"].items()):
            sign = 1 if delta > 0 else -1
            recorded = step.state["ledger"]["changes"][key][-1]
            is_rev = key in last and last[key][1] != sign
            assert recorded["reversal"] is is_rev
            if is_rev:
                too_soon = i - last[key][0] <= 3 or i - last_rev.get(key, -99) < 6
                if too_soon:
                    assert hard and PARAMS[key].is_safe_move(delta) and key in bypassed
                reversals.append((i, key))
                last_rev[key] = i
            last[key] = (i, sign)
    return reversals, suppressions


def test_reversals_and_oscillation_suppressions_happen_and_obey_the_guards() -> None:
    found_rev, found_osc = [], []
    for profile, mode in (("steady_safe", "calm"), ("aggressive", "spike")):
        for seed in SEEDS:
            steps = run(profile, mode, seed)
            reversals, suppressions = reversal_facts(steps)
            found_rev += [(profile, seed, *r) for r in reversals]
            found_osc += [(profile, seed, *s) for s in suppressions]
    assert found_rev, "no parameter reversal in any run"
    assert found_osc, "no oscillation suppression in any run"


def test_without_guards_reversals_are_not_held_back() -> None:
    """Control: the same calm runs without guards apply every proposal (nothing suppressed)."""
    for seed in SEEDS[:3]:
        steps = run("steady_safe", "calm", seed, guards=False)
        check_chain(steps)
        for s in steps:
            t = s.doc["tuning"]
            assert t["suppressed"] == {} and t["guard_decisions"] == []
            assert s.doc["summary"]["guards_enabled"] is False
            expected = apply_deltas(t["overrides_before"], t["proposed_deltas"]).applied
            assert t["applied_deltas"] == expected


# --- a hard FAIL while frozen: unfrozen and tuned in the same iteration -------------------------


def test_a_fail_while_frozen_unfreezes_and_tunes_in_that_iteration() -> None:
    found = []
    # The premise (a frozen run that later fails hard) is rare by design on a calm market; the
    # spike market provides it too (book simulator v2: seed 1, iteration 22).
    for mode, seed in [(m, s) for m in ("calm", "spike") for s in range(1, 13)]:
        steps = run("steady_safe", mode, seed)
        docs = docs_of(steps)
        for prev, doc in zip(docs, docs[1:], strict=False):
            if not (prev["summary"]["freeze_active"] and doc["summary"]["kpi_verdict"] == "FAIL"):
                continue
            i, s, t = doc["iteration"], doc["summary"], doc["tuning"]
            assert s["freeze_active"] is False and s["signature_hash"] == ""
            assert s["freeze_reason"].startswith(f"unfrozen at iteration {i}: KPI gate FAIL (")
            assert not t["note"].startswith("frozen since")
            history = [entry(d) for d in docs[max(0, i - 3) : i]]
            want = contract_propose(s, t["overrides_before"], history)
            assert t["proposed_deltas"] == want.deltas
            found.append((seed, i, bool(t["proposed_deltas"])))
    assert any(tuned for *_, tuned in found), f"no FAIL while frozen with a proposal: {found}"


# --- the hard gate's failure limit ------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_failure_limit_3_keeps_a_hard_gate_run_going(seed: int) -> None:
    one = run("aggressive", "spike", seed, 12, kpi_gate="hard")
    assert one[0].doc["summary"]["kpi_verdict"] == "FAIL"  # the premise: FAIL at iteration 1
    assert len(one) == 1 and one[0].stop == StopReason.KPI_GATE
    assert one[0].doc["tuning"]["applied_deltas"] == {}

    three = run("aggressive", "spike", seed, 12, kpi_gate="hard", failure_limit=3)
    check_chain(three)
    verdicts = [s.doc["summary"]["kpi_verdict"] for s in three]
    assert len(three) > 1 and three[0].doc["tuning"]["applied_deltas"]
    streak = 0
    for step, verdict in zip(three, verdicts, strict=True):
        streak = streak + 1 if verdict == "FAIL" else 0
        assert step.state["fail_streak"] == streak
        assert (step.stop == StopReason.KPI_GATE) == (streak >= 3)
    assert three[-1].stop is not None or len(three) == 12
