"""KPI gate (docs/gates.md): OK / WARN / FAIL at and beyond each bound; fail closed on missing,
non-finite and out-of-range KPIs; min_fills; structured reasons."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soakq_testkit import GOOD_KPIS, PROPERTY

from soakq.errors import ConfigError
from soakq.metrics import KPI_KEYS
from soakq.rules.kpi_gate import (
    GateReason,
    GateResult,
    ReasonLevel,
    Verdict,
    hard_failures,
    kpi_gate,
    source_error,
    unusable,
    verdict_of,
)
from soakq.rules.thresholds import kpi_gate_levels

pytestmark = pytest.mark.usefixtures("clean_env")

LEVELS = kpi_gate_levels()
# The contract's table: metric -> (direction, soft, hard); ">=" means higher is better.
DOC_LEVELS = {
    "net_bps": (">=", 2.7, 2.0),
    "risk_ratio": ("<=", 0.40, 0.50),
    "maker_taker_ratio": (">=", 0.90, 0.85),
    "p95_latency_ms": ("<=", 350, 400),
    "adverse_bps_p95": ("<=", 4.0, 6.0),
}
RANGED = {  # what each gated metric may be, as the reasons say it
    "net_bps": "[-10000, 10000]",
    "risk_ratio": "[0, 1]",
    "maker_taker_ratio": "[0, 1]",
    "p95_latency_ms": "[0, 1e9]",
    "adverse_bps_p95": "[-10000, 10000]",
}


def judge(**changes: Any) -> GateResult:
    return kpi_gate({**GOOD_KPIS, **changes}, LEVELS, required=KPI_KEYS)


def reason(**fields: Any) -> GateReason:
    base: dict[str, Any] = {"value": None, "threshold": None, "op": None, "symbol": None}
    return GateReason(**{**base, **fields})


def test_vocabularies() -> None:
    assert [v.value for v in Verdict] == ["OK", "WARN", "FAIL"]
    assert [lv.value for lv in ReasonLevel] == [
        "soft",
        "hard",
        "unusable",
        "insufficient_fills",
        "source_error",
    ]


def test_results_and_reasons_are_immutable() -> None:
    import dataclasses

    from pydantic import ValidationError

    result = judge(net_bps=1.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.verdict = Verdict.OK  # type: ignore[misc]
    with pytest.raises(ValidationError):
        result.reasons[0].text = "reworded"  # type: ignore[misc]


def test_table_is_the_design_table() -> None:
    assert {lv.metric: (lv.op, lv.soft, lv.hard) for lv in LEVELS} == DOC_LEVELS


def test_good_kpis_are_ok() -> None:
    result = judge()
    assert result == judge()  # pure
    assert result.verdict == Verdict.OK and result.reasons == ()
    assert result.hard_failures == () and result.texts == ()


def _cases() -> list[tuple[str, float, Verdict]]:
    """At the soft bound OK; just past it WARN; at the hard bound WARN; past it FAIL."""
    rows = []
    for metric, (op, soft, hard) in DOC_LEVELS.items():
        worse = -1 if op == ">=" else 1  # direction in which the metric gets worse
        eps = 0.001
        rows += [
            (metric, soft, Verdict.OK),
            (metric, soft + worse * eps, Verdict.WARN),
            (metric, hard, Verdict.WARN),
            (metric, hard + worse * eps, Verdict.FAIL),
            (metric, hard + worse * 50 * eps, Verdict.FAIL),
        ]
    return rows


@pytest.mark.parametrize(("metric", "value", "verdict"), _cases())
def test_bounds_table(metric: str, value: float, verdict: Verdict) -> None:
    result = judge(**{metric: value})
    assert result.verdict == verdict
    if verdict == Verdict.OK:
        assert result.reasons == ()
        return
    op, soft, hard = DOC_LEVELS[metric]
    level = ReasonLevel.HARD if verdict == Verdict.FAIL else ReasonLevel.SOFT
    bound = hard if verdict == Verdict.FAIL else soft
    broken = "<" if op == ">=" else ">"
    (got,) = result.reasons
    assert got == reason(
        level=level,
        metric=metric,
        value=value,
        threshold=bound,
        op=op,
        text=f"{metric} {value:.4f}".rstrip("0").rstrip(".") + f" {broken} {bound:g} ({level})",
    )
    assert got.fails is (verdict == Verdict.FAIL)
    assert result.hard_failures == ((got,) if verdict == Verdict.FAIL else ())


def test_exact_reason_texts() -> None:
    assert judge(risk_ratio=0.45).texts == ("risk_ratio 0.45 > 0.4 (soft)",)
    assert judge(net_bps=1.5).texts == ("net_bps 1.5 < 2 (hard)",)
    assert judge(p95_latency_ms=401).texts == ("p95_latency_ms 401 > 400 (hard)",)


@pytest.mark.parametrize("metric", sorted(DOC_LEVELS))
@pytest.mark.parametrize(
    ("bad", "phrase"),
    [
        (None, "missing"),
        (math.nan, "not a finite number (nan)"),
        (math.inf, "not a finite number (inf)"),
        (-math.inf, "not a finite number (-inf)"),
        (True, "not a number (True)"),
        (False, "not a number (False)"),
        ("3.0", "not a number ('3.0')"),
        ([1], "not a number ([1])"),
    ],
)
def test_fail_closed(metric: str, bad: Any, phrase: str) -> None:
    result = judge(**{metric: bad})
    assert result.verdict == Verdict.FAIL
    assert result.reasons == (
        reason(
            level=ReasonLevel.UNUSABLE,
            metric=metric,
            text=f"{metric} {phrase}; allowed {RANGED[metric]} (fail closed)",
        ),
    )


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("risk_ratio", -5, "risk_ratio -5 is out of range; allowed [0, 1] (fail closed)"),
        ("risk_ratio", 1.01, "risk_ratio 1.01 is out of range"),
        ("maker_taker_ratio", 7, "maker_taker_ratio 7 is out of range"),
        ("maker_taker_ratio", 93.3, "maker_taker_ratio 93.3 is out of range (a percentage?"),
        ("p95_latency_ms", -3, "p95_latency_ms -3 is out of range; allowed [0, 1e9]"),
        ("slippage_bps_p95", -0.5, "slippage_bps_p95 -0.5 is out of range; allowed [0, 10000]"),
        ("cancel_ratio", 1.5, "cancel_ratio 1.5 is out of range"),
        ("order_age_p95_ms", -1, "order_age_p95_ms -1 is out of range"),
        ("snipes", 1.5, "snipes 1.5 is not a whole count"),
        ("snipes", -1, "snipes -1 is out of range"),
    ],
)
def test_out_of_range_fails_closed_with_the_value(metric: str, value: float, text: str) -> None:
    result = judge(**{metric: value})
    assert result.verdict == Verdict.FAIL
    (got,) = result.reasons
    assert got.level == ReasonLevel.UNUSABLE and got.metric == metric
    assert got.value == value and got.threshold is None and got.op is None
    assert got.text.startswith(text) and got.text.endswith("(fail closed)")


def test_impossible_kpis_of_the_issue_fail() -> None:
    result = judge(net_bps=3, risk_ratio=-5, maker_taker_ratio=7, p95_latency_ms=-3)
    assert result.verdict == Verdict.FAIL
    assert [(r.metric, r.level) for r in result.reasons] == [
        ("maker_taker_ratio", ReasonLevel.UNUSABLE),
        ("p95_latency_ms", ReasonLevel.UNUSABLE),
        ("risk_ratio", ReasonLevel.UNUSABLE),
    ]


# --- fills: counts, min_fills ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fills", "verdict", "level"),
    [
        (20, Verdict.OK, None),
        (20.0, Verdict.OK, None),  # an integral float is a count
        (21, Verdict.OK, None),
        (19, Verdict.FAIL, ReasonLevel.INSUFFICIENT_FILLS),
        (19.0, Verdict.FAIL, ReasonLevel.INSUFFICIENT_FILLS),
        (0, Verdict.FAIL, ReasonLevel.INSUFFICIENT_FILLS),
        (0.001, Verdict.FAIL, ReasonLevel.UNUSABLE),  # never rounded to 0
        (19.5, Verdict.FAIL, ReasonLevel.UNUSABLE),
        (-1, Verdict.FAIL, ReasonLevel.UNUSABLE),
        (True, Verdict.FAIL, ReasonLevel.UNUSABLE),
        (None, Verdict.FAIL, ReasonLevel.UNUSABLE),
    ],
)
def test_fills_and_min_fills_boundary(fills: Any, verdict: Verdict, level: Any) -> None:
    result = kpi_gate({**GOOD_KPIS, "fills": fills}, LEVELS, required=KPI_KEYS, min_fills=20)
    assert result.verdict == verdict
    assert [r.level for r in result.reasons] == ([level] if level else [])


def test_insufficient_fills_reason() -> None:
    result = kpi_gate({**GOOD_KPIS, "fills": 19}, LEVELS, min_fills=20)
    assert result.reasons == (
        reason(
            level=ReasonLevel.INSUFFICIENT_FILLS,
            metric="fills",
            value=19,
            threshold=20,
            op=">=",
            text="fills 19 < 20: insufficient fills",
        ),
    )


def test_negative_fills_say_so() -> None:
    (got,) = kpi_gate({**GOOD_KPIS, "fills": -5}, LEVELS).reasons
    assert got.text == "fills -5 is out of range; allowed an integer [0, 1e12] (fail closed)"
    assert got.value == -5


def test_min_fills_defaults_to_20() -> None:
    assert kpi_gate({**GOOD_KPIS, "fills": 19}, LEVELS).verdict == Verdict.FAIL
    assert kpi_gate({**GOOD_KPIS, "fills": 20}, LEVELS).verdict == Verdict.OK


def test_min_fills_is_a_parameter() -> None:
    assert kpi_gate({**GOOD_KPIS, "fills": 5}, LEVELS, min_fills=5).verdict == Verdict.OK
    assert kpi_gate({**GOOD_KPIS, "fills": 4}, LEVELS, min_fills=5).verdict == Verdict.FAIL
    assert kpi_gate({**GOOD_KPIS, "fills": 100}, LEVELS, min_fills=101).verdict == Verdict.FAIL


def test_min_fills_zero_does_not_require_fills() -> None:
    no_fills = {k: v for k, v in GOOD_KPIS.items() if k != "fills"}
    assert kpi_gate(no_fills, LEVELS, min_fills=0).verdict == Verdict.OK
    assert kpi_gate({**GOOD_KPIS, "fills": 0}, LEVELS, min_fills=0).verdict == Verdict.OK
    assert kpi_gate(no_fills, LEVELS, min_fills=1).verdict == Verdict.FAIL
    # still judged when present, and fractional is still malformed
    assert kpi_gate({**GOOD_KPIS, "fills": 0.5}, LEVELS, min_fills=0).verdict == Verdict.FAIL


# --- required and diagnostic metrics --------------------------------------------------------


@pytest.mark.parametrize("metric", ["slippage_bps_p95", "fills"])
@pytest.mark.parametrize("bad", [None, math.nan, True])
def test_required_metrics_without_bounds_fail_closed(metric: str, bad: Any) -> None:
    result = judge(**{metric: bad})
    assert result.verdict == Verdict.FAIL
    (got,) = result.reasons
    assert got.metric == metric and got.level == ReasonLevel.UNUSABLE


def test_slippage_needed_only_when_required() -> None:
    no_slip = {k: v for k, v in GOOD_KPIS.items() if k != "slippage_bps_p95"}
    assert kpi_gate(no_slip, LEVELS).verdict == Verdict.OK
    assert kpi_gate(no_slip, LEVELS, required=["slippage_bps_p95"]).verdict == Verdict.FAIL


def test_missing_diagnostics_are_fine_but_bad_ones_fail() -> None:
    diag = ("cancel_ratio", "order_age_p95_ms", "snipes")
    lean = {k: v for k, v in GOOD_KPIS.items() if k not in diag}
    assert kpi_gate(lean, LEVELS, required=KPI_KEYS).verdict == Verdict.OK
    assert kpi_gate({**lean, "cancel_ratio": None}, LEVELS).verdict == Verdict.OK
    assert kpi_gate({**lean, "cancel_ratio": 2.0}, LEVELS).verdict == Verdict.FAIL


def test_unknown_required_metric_needs_a_finite_number() -> None:
    assert kpi_gate({**GOOD_KPIS, "extra": -4.0}, LEVELS, required=["extra"]).verdict == (
        Verdict.OK
    )
    result = kpi_gate({**GOOD_KPIS, "extra": math.nan}, LEVELS, required=["extra"])
    assert result.texts == (
        "extra not a finite number (nan); allowed any finite number (fail closed)",
    )


def test_absent_key_fails_closed() -> None:
    for metric in DOC_LEVELS:
        summary = {k: v for k, v in GOOD_KPIS.items() if k != metric}
        result = kpi_gate(summary, LEVELS)
        assert result.verdict == Verdict.FAIL
        assert result.texts == (f"{metric} missing; allowed {RANGED[metric]} (fail closed)",)


def test_fail_keeps_warn_reasons_fails_first_then_by_metric() -> None:
    result = judge(risk_ratio=0.45, p95_latency_ms=450, net_bps=2.5, adverse_bps_p95=7.0)
    assert result.verdict == Verdict.FAIL
    assert [(r.metric, r.level) for r in result.reasons] == [
        ("adverse_bps_p95", ReasonLevel.HARD),
        ("p95_latency_ms", ReasonLevel.HARD),
        ("net_bps", ReasonLevel.SOFT),
        ("risk_ratio", ReasonLevel.SOFT),
    ]
    assert [r.metric for r in result.hard_failures] == ["adverse_bps_p95", "p95_latency_ms"]


def test_empty_summary_fails_every_metric() -> None:
    result = kpi_gate({}, LEVELS)
    assert result.verdict == Verdict.FAIL
    assert sorted(r.metric or "" for r in result.reasons) == sorted([*DOC_LEVELS, "fills"])


# --- reasons as values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "fails"),
    [
        (ReasonLevel.SOFT, False),
        (ReasonLevel.HARD, True),
        (ReasonLevel.UNUSABLE, True),
        (ReasonLevel.INSUFFICIENT_FILLS, True),
        (ReasonLevel.SOURCE_ERROR, True),
    ],
)
def test_every_level_but_soft_fails(level: ReasonLevel, fails: bool) -> None:
    r = reason(level=level, metric="m", text="t")
    assert r.fails is fails
    assert verdict_of([r]) == (Verdict.FAIL if fails else Verdict.WARN)
    assert hard_failures([r]) == ((r,) if fails else ())


def test_verdict_of() -> None:
    soft = reason(level=ReasonLevel.SOFT, metric="a", text="a")
    hard = reason(level=ReasonLevel.HARD, metric="b", text="b")
    assert verdict_of([]) == Verdict.OK
    assert verdict_of([soft, soft]) == Verdict.WARN
    assert verdict_of([soft, hard]) == Verdict.FAIL
    assert verdict_of(iter([hard, soft])) == Verdict.FAIL
    assert hard_failures([soft, hard, soft, hard]) == (hard, hard)


def test_reason_json_round_trip() -> None:
    (got,) = judge(net_bps=1.5).reasons
    doc = got.as_json()
    assert doc == {
        "level": "hard",
        "metric": "net_bps",
        "op": ">=",
        "symbol": None,
        "text": "net_bps 1.5 < 2 (hard)",
        "threshold": 2.0,
        "value": 1.5,
    }
    assert GateReason.model_validate(doc) == got
    assert type(doc["level"]) is str  # plain JSON types, not enum members


def test_reasons_are_validated() -> None:
    with pytest.raises(ValueError):
        GateReason.model_validate(
            {
                "level": "medium",
                "metric": "x",
                "value": None,
                "threshold": None,
                "op": None,
                "text": "t",
            }
        )
    with pytest.raises(ValueError):
        GateReason.model_validate(
            {
                "level": "hard",
                "metric": "x",
                "value": None,
                "threshold": None,
                "op": "==",
                "text": "t",
            }
        )
    with pytest.raises(ValueError):
        GateReason.model_validate(
            {
                "level": "hard",
                "metric": "x",
                "value": None,
                "threshold": None,
                "op": None,
                "text": "t",
                "extra": 1,
            }
        )


def test_source_error_and_unusable_helpers() -> None:
    r = source_error("BTCUSDT", "no result")
    assert r == reason(
        level=ReasonLevel.SOURCE_ERROR, metric=None, text="BTCUSDT: no result", symbol="BTCUSDT"
    )
    assert r.fails
    u = unusable("risk_ratio", math.nan, "why")
    assert u.value is None and u.text == "risk_ratio why (fail closed)"
    assert unusable("fills", -2, "why").value == -2
    assert unusable("x", "7", "why").value is None


# --- profile targets ------------------------------------------------------------------------


def test_profile_targets_override_the_table() -> None:
    levels = kpi_gate_levels({"net_bps": {"soft": 3.5, "hard": 3.0}})
    assert kpi_gate({**GOOD_KPIS, "net_bps": 2.9}, levels).verdict == Verdict.FAIL
    assert kpi_gate({**GOOD_KPIS, "net_bps": 3.2}, levels).verdict == Verdict.WARN
    assert kpi_gate({**GOOD_KPIS, "net_bps": 3.5}, levels).verdict == Verdict.OK


@pytest.mark.parametrize(
    "targets",
    [
        {"nope": {"soft": 1, "hard": 2}},
        {"net_bps": [1, 2]},
        {"net_bps": {"soft": "x"}},
        {"net_bps": {"soft": True}},
        {"net_bps": {"soft": math.nan}},
        {"net_bps": {"medium": 1.0}},
        {"net_bps": {"soft": 1.0, "hard": 2.0}},  # soft must be stricter than hard
        {"risk_ratio": {"soft": 0.6}},
    ],
)
def test_bad_profile_targets(targets: dict) -> None:
    with pytest.raises(ConfigError, match="kpi_gate"):
        kpi_gate_levels(targets)


def test_equal_soft_and_hard_are_allowed() -> None:
    levels = kpi_gate_levels({"net_bps": {"soft": 2.0}, "risk_ratio": {"soft": 0.5}})
    by = {lv.metric: lv for lv in levels}
    assert (by["net_bps"].soft, by["net_bps"].hard) == (2.0, 2.0)
    assert (by["risk_ratio"].soft, by["risk_ratio"].hard) == (0.5, 0.5)


# --- the contract in a few lines, against many summaries ------------------------------------


def _within(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def _in_range(metric: str, v: float) -> bool:
    if metric in ("risk_ratio", "maker_taker_ratio"):
        return 0 <= v <= 1
    if metric == "p95_latency_ms":
        return v >= 0
    return True


def _oracle(summary: dict[str, Any]) -> Verdict:
    """Any unusable value or hard breach FAILs, else any soft breach WARNs."""
    worst = Verdict.OK
    for metric, (op, soft, hard) in DOC_LEVELS.items():
        v = summary.get(metric)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return Verdict.FAIL
        if not _in_range(metric, v) or not _within(v, op, hard):
            return Verdict.FAIL
        if not _within(v, op, soft):
            worst = Verdict.WARN
    return worst


metric_value = st.one_of(
    st.floats(-20, 1000, allow_nan=False),
    st.floats(0, 1),
    st.sampled_from([2.7, 2.0, 0.40, 0.50, 0.90, 0.85, 350, 400, 4.0, 6.0, 0.0, 1.0, -0.0]),
    st.sampled_from([None, math.nan, math.inf, True]),
)


@PROPERTY
@given(st.fixed_dictionaries({m: metric_value for m in DOC_LEVELS}))
def test_verdict_matches_design(summary: dict[str, Any]) -> None:
    result = kpi_gate({**summary, "fills": 100}, LEVELS)
    assert result.verdict == _oracle(summary)
    assert (result.verdict == Verdict.OK) == (result.reasons == ())
    assert (result.verdict == Verdict.FAIL) == bool(result.hard_failures)
