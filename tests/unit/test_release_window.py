"""Run-level release gate (docs/gates.md): the window, Student-t bounds checked by hand,
PASSED / FAILED / INCONCLUSIVE at their boundaries, the hard-FAIL veto, unusable input."""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest

from soakq.errors import ExitCode, InputError
from soakq.rules.kpi_gate import ReasonLevel
from soakq.rules.release_gate import run_gate
from soakq.rules.release_window import (
    ASSUMPTION,
    GateVerdict,
    KpiStats,
    final_window,
    judge_run,
    kpi_stats,
    veto_of,
)
from soakq.rules.thresholds import ReleaseRules, Threshold, release_rules

pytestmark = pytest.mark.usefixtures("clean_env")

# One-sided 95 % Student t quantiles t(0.95, df), from a printed table.
T95 = {1: 6.313752, 3: 2.353363, 5: 2.015048, 6: 1.943180, 7: 1.894579}
A = {"min_interval_ms": 75, "tail_age_ms": 740}
B = {"min_interval_ms": 80, "tail_age_ms": 740}
C = {"min_interval_ms": 80, "tail_age_ms": 770}
GOOD = {"net_bps": 3.2, "risk_ratio": 0.30, "maker_taker_ratio": 0.95, "p95_latency_ms": 250.0}
NET = Threshold("net_bps", ">=", 2.7)
LATENCY = Threshold("p95_latency_ms", "<=", 350.0)


def hard(metric: str, text: str) -> dict[str, Any]:
    return {
        "level": "hard",
        "metric": metric,
        "op": "<=",
        "symbol": None,
        "text": text,
        "threshold": 6.0,
        "value": 10.0,
    }


def doc(
    i: int,
    before: dict[str, Any],
    after: dict[str, Any] | None = None,
    verdict: str = "OK",
    reasons: list[dict[str, Any]] | None = None,
    **kpis: Any,
) -> dict[str, Any]:
    return {
        "iteration": i,
        "run_id": "r",
        "summary": {**GOOD, **kpis, "kpi_verdict": verdict, "kpi_reasons": reasons or []},
        "tuning": {"overrides_before": before, "overrides_after": after or before},
    }


def steady(n: int, overrides: dict[str, Any] = A, **columns: list[float]) -> list[dict[str, Any]]:
    """``n`` iterations under one configuration; ``columns`` give a KPI's value per iteration."""
    return [doc(i + 1, overrides, **{k: v[i] for k, v in columns.items()}) for i in range(n)]


def by_metric(gate: Any) -> dict[str, KpiStats]:
    return {s.metric: s for s in gate.stats}


# --- hand-checked statistics -----------------------------------------------------------------

NET6 = [2.9, 3.1, 2.8, 3.0, 3.2, 2.9]


def test_six_iteration_window_by_hand() -> None:
    gate = judge_run(steady(6, net_bps=NET6))
    s = by_metric(gate)["net_bps"]
    mean = sum(NET6) / 6  # 2.983333...
    sd = math.sqrt(sum((x - mean) ** 2 for x in NET6) / 5)  # sample sd, ddof=1: 0.147196
    assert s.n == 6
    assert s.mean == pytest.approx(2.9833333333, abs=1e-9)
    assert s.sd == pytest.approx(sd, rel=1e-12) and s.sd == pytest.approx(0.1471960, abs=1e-6)
    lower = mean - T95[5] * sd / math.sqrt(6)
    assert s.bound == pytest.approx(lower, abs=1e-5)
    assert s.bound == pytest.approx(2.862243, abs=1e-5)
    assert s.bound_kind == "lower" and s.bound_good and s.mean_good
    assert gate.verdict == GateVerdict.PASSED and gate.passed
    assert gate.exit_code == ExitCode.OK
    assert gate.window == (1, 2, 3, 4, 5, 6)


def test_upper_bound_for_a_ceiling() -> None:
    lat = [250.0, 300.0, 270.0, 330.0]
    gate = judge_run(steady(4, p95_latency_ms=lat), rules=_rules(min_window=4))
    s = by_metric(gate)["p95_latency_ms"]
    mean, sd = statistics.fmean(lat), statistics.stdev(lat)  # 287.5, 35
    assert (mean, round(sd, 9)) == (287.5, 35.0)
    assert s.bound == pytest.approx(287.5 + T95[3] * 35.0 / 2, abs=1e-4)  # 328.684
    assert s.bound_kind == "upper" and s.bound_good
    assert gate.verdict == GateVerdict.PASSED


def test_constant_values_have_zero_sd_and_the_mean_as_bound() -> None:
    s = kpi_stats(NET, [2.8] * 6, 0.95)
    assert (s.n, s.sd) == (6, 0.0)
    assert s.mean == pytest.approx(2.8) and s.bound == pytest.approx(2.8)


def test_one_value_has_no_sd_and_no_bound() -> None:
    s = kpi_stats(NET, [3.0], 0.95)
    assert (s.n, s.mean, s.sd, s.bound) == (1, 3.0, None, None)
    assert s.mean_good and not s.bound_good and s.mark == "open"
    empty = kpi_stats(NET, [], 0.95)
    assert (empty.n, empty.mean, empty.sd, empty.bound) == (0, None, None, None)
    assert not empty.mean_good and not empty.bound_good and empty.mark == "open"


def test_two_values_use_df_1() -> None:
    s = kpi_stats(NET, [3.0, 3.2], 0.95)
    sd = statistics.stdev([3.0, 3.2])
    assert s.bound == pytest.approx(3.1 - T95[1] * sd / math.sqrt(2), abs=1e-5)  # 2.2071


def test_confidence_is_a_parameter() -> None:
    s90 = kpi_stats(NET, NET6, 0.90)
    s95 = kpi_stats(NET, NET6, 0.95)
    assert s90.bound is not None and s95.bound is not None
    assert s90.bound > s95.bound  # a lower confidence gives a tighter bound
    assert s90.bound == pytest.approx(2.983333 - 1.475884 * 0.147196 / math.sqrt(6), abs=1e-5)


# --- verdict boundaries ---------------------------------------------------------------------

DEV = [-0.1, 0.1, -0.05, 0.05, 0.0, 0.0]  # mean 0


def _half_width(dev: list[float]) -> float:
    return T95[len(dev) - 1] * statistics.stdev(dev) / math.sqrt(len(dev))


@pytest.mark.parametrize(
    ("shift", "verdict"), [(1e-4, GateVerdict.PASSED), (-1e-4, GateVerdict.INCONCLUSIVE)]
)
def test_lower_bound_at_the_threshold(shift: float, verdict: GateVerdict) -> None:
    """The mean is above 2.7 in both; only the bound moves from just above to just below."""
    values = [2.7 + _half_width(DEV) + shift + d for d in DEV]
    gate = judge_run(steady(6, net_bps=values))
    assert gate.verdict == verdict
    s = by_metric(gate)["net_bps"]
    assert s.mean_good and s.bound_good is (verdict == GateVerdict.PASSED)
    if verdict == GateVerdict.INCONCLUSIVE:
        assert gate.exit_code == ExitCode.INCONCLUSIVE
        assert gate.reasons == (
            f"net_bps mean {s.mean:.4f}".rstrip("0")
            + f" passes but its 95% lower bound {s.bound:.4f}".rstrip("0")
            + " crosses >= 2.7",
        )


@pytest.mark.parametrize(
    ("shift", "verdict"), [(1e-3, GateVerdict.PASSED), (-1e-3, GateVerdict.INCONCLUSIVE)]
)
def test_upper_bound_at_the_threshold(shift: float, verdict: GateVerdict) -> None:
    dev = [d * 100 for d in DEV]
    values = [350.0 - _half_width(dev) - shift + d for d in dev]
    gate = judge_run(steady(6, p95_latency_ms=values))
    assert gate.verdict == verdict
    assert by_metric(gate)["p95_latency_ms"].mean_good


@pytest.mark.parametrize(
    ("metric", "value", "verdict"),
    [
        ("net_bps", 2.7, GateVerdict.PASSED),  # at the threshold is on the good side
        ("net_bps", 2.6999, GateVerdict.FAILED),
        ("risk_ratio", 0.42, GateVerdict.PASSED),
        ("risk_ratio", 0.4201, GateVerdict.FAILED),
        ("maker_taker_ratio", 0.85, GateVerdict.PASSED),
        ("maker_taker_ratio", 0.8499, GateVerdict.FAILED),
        ("p95_latency_ms", 350, GateVerdict.PASSED),
        ("p95_latency_ms", 350.01, GateVerdict.FAILED),
    ],
)
def test_mean_at_and_beyond_each_threshold(metric: str, value: float, verdict: GateVerdict) -> None:
    gate = judge_run(steady(6, **{metric: [value] * 6}))
    assert gate.verdict == verdict
    if verdict == GateVerdict.FAILED:
        assert gate.exit_code == ExitCode.FAILED and not gate.passed
        (why,) = gate.reasons
        assert why.startswith(f"{metric} window mean ") and "is on the bad side of" in why


def test_bad_mean_fails_even_in_a_short_window() -> None:
    gate = judge_run(steady(2, net_bps=[2.5, 2.6]))
    assert gate.verdict == GateVerdict.FAILED
    assert gate.reasons == ("net_bps window mean 2.55 is on the bad side of >= 2.7",)


def test_bad_mean_wins_over_a_crossing_bound() -> None:
    gate = judge_run(steady(6, net_bps=[2.0, 3.0, 2.5, 2.9, 2.6, 2.8]))  # mean 2.633
    assert gate.verdict == GateVerdict.FAILED


@pytest.mark.parametrize(
    ("n", "verdict"),
    [(5, GateVerdict.INCONCLUSIVE), (6, GateVerdict.PASSED), (7, GateVerdict.PASSED)],
)
def test_min_window_boundary(n: int, verdict: GateVerdict) -> None:
    gate = judge_run(steady(n, net_bps=[3.0 + 0.01 * (i % 2) for i in range(n)]))
    assert gate.verdict == verdict
    if verdict == GateVerdict.INCONCLUSIVE:
        assert gate.reasons == (
            "only 5 iteration(s) measured the final configuration; at least 6 are needed",
        )


def test_min_window_is_a_rule() -> None:
    docs = steady(3, net_bps=[3.0, 3.1, 3.2])
    assert judge_run(docs).verdict == GateVerdict.INCONCLUSIVE
    assert judge_run(docs, rules=_rules(min_window=3)).verdict == GateVerdict.PASSED


def test_too_short_and_crossing_both_named() -> None:
    gate = judge_run(steady(3, net_bps=[2.71, 3.5, 2.72]))
    assert gate.verdict == GateVerdict.INCONCLUSIVE
    assert len(gate.reasons) == 2
    assert gate.reasons[0].startswith("only 3 iteration(s)")
    assert gate.reasons[1].startswith("net_bps mean 2.9767 passes but its 95% lower bound")


def test_single_iteration_window_has_no_bound() -> None:
    gate = judge_run(steady(1), rules=_rules(min_window=2))
    assert gate.verdict == GateVerdict.INCONCLUSIVE
    assert "net_bps: too few values for a confidence bound" in gate.reasons


# --- the window -----------------------------------------------------------------------------


def test_window_is_the_trailing_run_of_the_final_config() -> None:
    docs = [doc(1, A), doc(2, A, B), *[doc(i, B) for i in range(3, 9)]]
    window, final, changed = final_window(docs)
    assert [d["iteration"] for d in window] == [3, 4, 5, 6, 7, 8]
    assert final == B and changed == ()
    assert judge_run(docs).window == (3, 4, 5, 6, 7, 8)


def test_a_config_measured_earlier_does_not_count() -> None:
    """A -> B -> A: only the trailing A iterations measured the final configuration."""
    docs = [
        *[doc(i, A) for i in range(1, 6)],
        doc(6, A, B),
        doc(7, B, A),
        doc(8, A),
        doc(9, A),
    ]
    gate = judge_run(docs)
    assert gate.window == (8, 9)
    assert gate.verdict == GateVerdict.INCONCLUSIVE


def test_last_iteration_changed_is_inconclusive() -> None:
    docs = [*[doc(i, A) for i in range(1, 10)], doc(10, A, C)]
    gate = judge_run(docs)
    assert gate.verdict == GateVerdict.INCONCLUSIVE
    assert gate.window == () and gate.changed_at_end == ("min_interval_ms", "tail_age_ms")
    assert gate.overrides == C
    assert gate.reasons == (
        "the last iteration (10) still changed min_interval_ms, tail_age_ms: "
        "the final configuration was never measured",
    )
    assert all(s.n == 0 for s in gate.stats)


def test_last_iteration_changed_even_with_bad_kpis_is_inconclusive() -> None:
    docs = [doc(1, A, B, verdict="FAIL", reasons=[hard("adverse_bps_p95", "x")], net_bps=1.0)]
    assert judge_run(docs).verdict == GateVerdict.INCONCLUSIVE


def test_overrides_compare_by_value_not_by_type() -> None:
    docs = steady(6, {"min_interval_ms": 75, "impact_cap_ratio": 0.08})
    docs[-1]["tuning"]["overrides_after"] = {"min_interval_ms": 75.0, "impact_cap_ratio": 0.08}
    assert judge_run(docs).window == (1, 2, 3, 4, 5, 6)


# --- the critical veto ----------------------------------------------------------------------


def test_hard_fail_in_the_window_vetoes_good_means() -> None:
    docs = steady(8)
    docs[4] = doc(
        5,
        A,
        verdict="FAIL",
        reasons=[hard("adverse_bps_p95", "adverse_bps_p95 40 > 6 (hard)")],
        adverse_bps_p95=40.0,
    )
    gate = judge_run(docs)
    assert gate.verdict == GateVerdict.FAILED
    assert all(s.bound_good for s in gate.stats)  # the means alone would pass
    assert gate.reasons == (
        "iteration 5 is a hard KPI FAIL (critical veto): adverse_bps_p95 40 > 6 (hard)",
    )
    assert [v.as_json() for v in gate.vetoes] == [
        {"iteration": 5, "reasons": ["adverse_bps_p95 40 > 6 (hard)"]}
    ]


def test_hard_fail_before_the_window_does_not_veto() -> None:
    docs = [
        doc(1, A, B, verdict="FAIL", reasons=[hard("adverse_bps_p95", "old")]),
        *[doc(i, B) for i in range(2, 8)],
    ]
    gate = judge_run(docs)
    assert gate.verdict == GateVerdict.PASSED and gate.vetoes == ()


def test_warn_in_the_window_is_no_veto() -> None:
    docs = steady(6)
    docs[2]["summary"]["kpi_verdict"] = "WARN"
    assert judge_run(docs).verdict == GateVerdict.PASSED


def test_unusable_kpi_in_a_window_iteration_is_a_veto() -> None:
    docs = steady(6)
    docs[3]["summary"]["risk_ratio"] = -5  # a verdict that disagrees with its values
    gate = judge_run(docs)
    assert gate.verdict == GateVerdict.FAILED
    assert gate.reasons == (
        "iteration 4 is a hard KPI FAIL (critical veto): "
        "risk_ratio -5 is out of range; allowed [0, 1]",
    )
    assert by_metric(gate)["risk_ratio"].n == 5  # the unusable value is not averaged


def test_missing_kpi_in_a_window_iteration_is_a_veto() -> None:
    docs = steady(6)
    del docs[0]["summary"]["net_bps"]
    gate = judge_run(docs)
    assert gate.verdict == GateVerdict.FAILED
    assert by_metric(gate)["net_bps"].n == 5


def test_veto_names_the_cause_first_and_counts_the_rest() -> None:
    def r(level: str, text: str) -> dict[str, Any]:
        return {**hard("x", text), "level": level}

    reasons = [
        r("unusable", "u1"),
        r("insufficient_fills", "f"),
        r("unusable", "u2"),
        r("soft", "s"),
        r("hard", "h"),
        r("source_error", "e"),
    ]
    veto = veto_of(doc(3, A, verdict="FAIL", reasons=reasons), release_rules().thresholds)
    assert veto is not None
    assert veto.reasons == ("e", "h", "f", "(+2 more)")
    exactly = veto_of(
        doc(3, A, verdict="FAIL", reasons=[reasons[1], *reasons[3:]]), release_rules().thresholds
    )
    assert exactly is not None and exactly.reasons == ("e", "h", "f")
    order = veto_of(doc(3, A, verdict="FAIL", reasons=reasons[:3]), release_rules().thresholds)
    assert order is not None and order.reasons == ("f", "u1", "u2")


def test_fail_without_reasons_still_vetoes() -> None:
    veto = veto_of(doc(2, A, verdict="FAIL"), release_rules().thresholds)
    assert veto is not None and veto.reasons == ("KPI gate FAIL",)
    assert veto_of(doc(2, A), release_rules().thresholds) is None


# --- unusable input -------------------------------------------------------------------------


def _broken(change: Any) -> list[dict[str, Any]]:
    docs = steady(3)
    change(docs)
    return docs


@pytest.mark.parametrize(
    ("docs", "needle"),
    [
        ([], "no iterations to judge"),
        (_broken(lambda d: d.pop(1)), "iteration number 3 where 2 was expected"),
        (_broken(lambda d: d[0].update(iteration="1")), "iteration number '1'"),
        (_broken(lambda d: d.__setitem__(1, [2])), "iteration number [2]"),
        (_broken(lambda d: d[1].pop("tuning")), "needs 'summary' and 'tuning' objects"),
        (_broken(lambda d: d[1].update(summary=[1])), "needs 'summary' and 'tuning' objects"),
        (
            _broken(lambda d: d[2]["tuning"].update(overrides_after=None)),
            "tuning.overrides_after is not an object",
        ),
        (
            _broken(lambda d: d[2]["tuning"].update(overrides_before=[])),
            "tuning.overrides_before is not an object",
        ),
        (
            _broken(lambda d: d[0]["summary"].update(kpi_verdict="PASS")),
            "summary.kpi_verdict 'PASS' is not OK, WARN or FAIL",
        ),
        (
            _broken(lambda d: d[0]["summary"].pop("kpi_verdict")),
            "summary.kpi_verdict None",
        ),
        (
            _broken(lambda d: d[0]["summary"].update(kpi_reasons="x")),
            "summary.kpi_reasons is not a list",
        ),
        (
            _broken(lambda d: d[0]["summary"].update(kpi_reasons=["net_bps 1 < 2 (hard)"])),
            "summary.kpi_reasons holds an invalid reason",
        ),
    ],
)
def test_malformed_documents_are_input_errors(docs: list[Any], needle: str) -> None:
    with pytest.raises(InputError, match=None) as err:
        judge_run(docs, where="RUN")
    assert str(err.value).startswith("RUN")
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (lambda d: d.pop(1), "run iteration 2: iteration number 3 where 2 was expected"),
        (lambda d: d[1].pop("tuning"), "run iteration 2: needs 'summary' and 'tuning' objects"),
        (
            lambda d: d[2]["tuning"].update(overrides_after=None),
            "run iteration 3: tuning.overrides_after is not an object",
        ),
        (
            lambda d: d[0]["summary"].update(kpi_verdict="PASS"),
            "run iteration 1: summary.kpi_verdict 'PASS' is not OK, WARN or FAIL",
        ),
        (
            lambda d: d[0]["summary"].update(kpi_reasons={}),
            "run iteration 1: summary.kpi_reasons is not a list",
        ),
        (
            lambda d: d[0]["summary"].update(kpi_reasons=["x"]),
            "run iteration 1: summary.kpi_reasons holds an invalid reason (Input should be a "
            "valid dictionary or instance of GateReason)",
        ),
    ],
)
def test_malformed_messages_exactly(change: Any, text: str) -> None:
    with pytest.raises(InputError) as err:
        judge_run(_broken(change))  # the default `where` is "run"
    assert str(err.value) == f"{text}; expected the ITER_SUMMARY documents of one run"
    with pytest.raises(InputError) as empty:
        judge_run([])
    assert str(empty.value) == "run: no iterations to judge (no ITER_SUMMARY_<i>.json)"


# --- documents and lines --------------------------------------------------------------------


def test_document() -> None:
    gate = run_gate(steady(6, net_bps=NET6), {"source": "book", "mode": "calm", "seed": 7})
    js = gate.as_json()
    assert set(js) == {
        "assumption",
        "confidence",
        "exit_code",
        "form",
        "iterations",
        "kpis",
        "mock",
        "mock_note",
        "passed",
        "reasons",
        "run_id",
        "verdict",
        "vetoes",
        "window",
    }
    assert (js["verdict"], js["passed"], js["exit_code"], js["form"]) == ("PASSED", True, 0, "run")
    assert js["assumption"] == ASSUMPTION == "iterations treated as independent draws"
    assert js["window"] == {
        "changed_at_end": [],
        "iterations": [1, 2, 3, 4, 5, 6],
        "min_window": 6,
        "n": 6,
        "overrides": A,
    }
    net = js["kpis"][0]
    assert net == {
        "bound": 2.862244,
        "bound_kind": "lower",
        "bound_passes": True,
        "mean": 2.983333,
        "mean_passes": True,
        "metric": "net_bps",
        "n": 6,
        "op": ">=",
        "sd": 0.147196,
        "threshold": 2.7,
    }
    assert [k["metric"] for k in js["kpis"]] == [
        "net_bps",
        "risk_ratio",
        "maker_taker_ratio",
        "p95_latency_ms",
    ]
    assert js["mock"] is True
    assert js["mock_note"] == (
        "NOTE: mock data (source=book, mode=calm, seed=7): not a production verdict"
    )


def test_live_run_has_no_mock_note() -> None:
    gate = run_gate(steady(6), {"source": "file", "mode": "calm", "seed": 7, "run_id": "live"})
    assert (gate.mock, gate.mock_note, gate.run_id) == (False, "", "live")
    assert not any("mock" in line for line in gate.lines())


@pytest.mark.parametrize(
    ("flags", "mock"),
    [
        ({"mock": True}, True),
        ({"mock_mode": "calm"}, True),
        ({"mock": True, "mock_mode": "spike"}, True),
        ({"mock": False}, False),
        ({}, False),
    ],
)
def test_mock_from_the_summaries_without_a_spec(flags: dict[str, Any], mock: bool) -> None:
    docs = steady(6)
    docs[-1]["summary"].update(flags, source="kpi", mock_seed=3)
    gate = run_gate(docs, None)
    assert gate.mock is mock and gate.run_id == "r"
    assert (gate.mock_note != "") is mock
    if mock:
        assert "source=kpi" in gate.mock_note and "seed=3" in gate.mock_note


def test_lines() -> None:
    gate = run_gate(steady(6, net_bps=NET6), {"source": "book", "mode": "calm", "seed": 7})
    lines = gate.lines()
    assert lines[0] == "window: iterations 1-6 of 6 (n=6), the final config"
    assert lines[1] == (
        "pass net_bps            n=6  mean 2.9833 ± 0.1472  lower 95% bound 2.8622  "
        "threshold >= 2.7"
    )
    assert lines[4].startswith("pass p95_latency_ms     n=6  mean 250 ± 0  upper 95% bound 250")
    assert lines[5] == "RELEASE GATE PASSED"
    assert lines[6].startswith("  - every 95% bound is on the good side")
    assert lines[-2] == "NOTE: one-sided bounds assume iterations treated as independent draws"
    assert lines[-1].startswith("NOTE: mock data")


def test_lines_of_an_empty_window_and_a_failure() -> None:
    changed = judge_run([doc(1, A, B)])
    assert changed.lines()[0].startswith("window: empty")
    assert "n=0  (no value in the window)" in changed.lines()[1]
    failed = judge_run(steady(2, net_bps=[2.0, 2.1]))
    assert failed.lines()[1].startswith("FAIL net_bps")
    assert "RELEASE GATE FAILED" in failed.lines()


def test_defaults_say_not_mock_and_no_run() -> None:
    gate = judge_run(steady(6))
    assert (gate.mock, gate.mock_note, gate.run_id) == (False, "", None)
    assert judge_run(steady(6), mock=False, mock_note="ignored").mock_note == ""
    assert judge_run(steady(6), mock=True, mock_note="M").mock_note == "M"
    assert gate.rules == release_rules() and gate.iterations == 6


def test_values_are_frozen() -> None:
    import dataclasses

    gate = judge_run([doc(1, A, verdict="FAIL"), *[doc(i, A) for i in range(2, 7)]])
    for value, field in ((gate, "verdict"), (gate.stats[0], "n"), (gate.vetoes[0], "iteration")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, 0)
    assert [v.value for v in GateVerdict] == ["PASSED", "FAILED", "INCONCLUSIVE"]


def test_exact_lines_without_values() -> None:
    empty = judge_run([doc(1, A, B)])
    assert empty.lines()[0] == (
        "window: empty (the final configuration was never measured; 1 iterations)"
    )
    assert empty.lines()[1] == (
        "open net_bps            n=0  (no value in the window)  threshold >= 2.7"
    )
    one = judge_run(steady(1, net_bps=[3.0]))
    assert one.lines()[1] == (
        "open net_bps            n=1  mean 3 ± n/a  lower 95% bound n/a  threshold >= 2.7"
    )


def test_a_key_added_or_dropped_by_the_last_iteration_is_a_change() -> None:
    docs = [*[doc(i, A) for i in range(1, 7)], doc(7, A, {**A, "impact_cap_ratio": 0.09})]
    gate = judge_run(docs)
    assert gate.changed_at_end == ("impact_cap_ratio",) and gate.window == ()
    dropped = [*[doc(i, A) for i in range(1, 7)], doc(7, A, {"min_interval_ms": 75})]
    assert judge_run(dropped).changed_at_end == ("tail_age_ms",)


def test_verdict_exit_codes() -> None:
    assert GateVerdict.PASSED.exit_code == ExitCode.OK == 0
    assert GateVerdict.FAILED.exit_code == ExitCode.FAILED == 1
    assert GateVerdict.INCONCLUSIVE.exit_code == ExitCode.INCONCLUSIVE == 4


def test_reason_levels_are_read_from_documents() -> None:
    """A reworded text changes nothing: the veto follows the level."""
    soft_only = doc(2, A, verdict="FAIL", reasons=[{**hard("x", "(hard)"), "level": "soft"}])
    veto = veto_of(soft_only, release_rules().thresholds)
    assert veto is not None and veto.reasons == ("KPI gate FAIL",)
    assert ReasonLevel("soft") == ReasonLevel.SOFT


def _rules(**change: Any) -> ReleaseRules:
    base = release_rules()
    return ReleaseRules(
        change.get("thresholds", base.thresholds),
        change.get("min_window", base.min_window),
        change.get("confidence", base.confidence),
    )
