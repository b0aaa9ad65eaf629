"""KPI gate: OK / WARN / FAIL per metric at and beyond its bounds; fail closed (DESIGN §4)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soakq_testkit import GOOD_KPIS, PROPERTY

from soakq.errors import ConfigError
from soakq.kpi_gate import Verdict, kpi_gate
from soakq.metrics import KPI_KEYS
from soakq.thresholds import kpi_gate_levels

pytestmark = pytest.mark.usefixtures("clean_env")

LEVELS = kpi_gate_levels()
# DESIGN §4 table: metric -> (direction, soft, hard); ">=" means higher is better.
DESIGN = {
    "net_bps": (">=", 2.7, 2.0),
    "risk_ratio": ("<=", 0.40, 0.50),
    "maker_taker_ratio": (">=", 0.90, 0.85),
    "p95_latency_ms": ("<=", 350, 400),
    "adverse_bps_p95": ("<=", 4.0, 6.0),
}


def judge(**changes: Any) -> Any:
    return kpi_gate({**GOOD_KPIS, **changes}, LEVELS)


def test_table_is_the_design_table() -> None:
    assert {lv.metric: (lv.op, lv.soft, lv.hard) for lv in LEVELS} == DESIGN


def test_good_kpis_are_ok() -> None:
    assert judge() == judge()  # pure
    result = judge()
    assert result.verdict == Verdict.OK and result.reasons == ()


def _cases() -> list[tuple[str, float, Verdict]]:
    """At the soft bound OK; just past it WARN; at the hard bound WARN; past it FAIL."""
    rows = []
    for metric, (op, soft, hard) in DESIGN.items():
        worse = -1 if op == ">=" else 1  # direction in which the metric gets worse
        eps = 0.001
        rows += [
            (metric, soft, Verdict.OK),
            (metric, soft + worse * eps, Verdict.WARN),
            (metric, hard, Verdict.WARN),
            (metric, hard + worse * eps, Verdict.FAIL),
            (metric, hard + worse * 100 * eps, Verdict.FAIL),
        ]
    return rows


@pytest.mark.parametrize(("metric", "value", "verdict"), _cases())
def test_bounds_table(metric: str, value: float, verdict: Verdict) -> None:
    result = judge(**{metric: value})
    assert result.verdict == verdict
    if verdict == Verdict.OK:
        assert result.reasons == ()
    else:
        (reason,) = result.reasons
        op, soft, hard = DESIGN[metric]
        level = "(hard)" if verdict == Verdict.FAIL else "(soft)"
        bound = hard if verdict == Verdict.FAIL else soft
        assert reason.startswith(metric) and reason.endswith(level)
        assert ("<" if op == ">=" else ">") in reason
        assert f"{bound:g}" in reason  # the threshold is named
        assert f"{value:g}"[:5] in reason  # so is the value


@pytest.mark.parametrize("metric", sorted(DESIGN))
@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf, True, False, "3.0", [1]])
def test_fail_closed(metric: str, bad: Any) -> None:
    result = judge(**{metric: bad})
    assert result.verdict == Verdict.FAIL
    (reason,) = result.reasons
    assert reason.startswith(metric) and "fail closed" in reason


@pytest.mark.parametrize("metric", sorted(DESIGN))
def test_absent_key_fails_closed(metric: str) -> None:
    summary = {k: v for k, v in GOOD_KPIS.items() if k != metric}
    result = kpi_gate(summary, LEVELS)
    assert result.verdict == Verdict.FAIL
    assert result.reasons == (f"{metric} missing (fail closed)",)


@pytest.mark.parametrize("metric", ["slippage_bps_p95", "fills"])
@pytest.mark.parametrize("bad", [None, math.nan, True])
def test_required_metrics_without_bounds_fail_closed(metric: str, bad: Any) -> None:
    assert kpi_gate(GOOD_KPIS, LEVELS, required=KPI_KEYS).verdict == Verdict.OK
    result = kpi_gate({**GOOD_KPIS, metric: bad}, LEVELS, required=KPI_KEYS)
    assert result.verdict == Verdict.FAIL
    (reason,) = result.reasons
    assert reason.startswith(metric) and "fail closed" in reason


def test_fail_keeps_warn_reasons() -> None:
    result = judge(risk_ratio=0.45, p95_latency_ms=450)
    assert result.verdict == Verdict.FAIL
    assert len(result.reasons) == 2
    assert any(r.startswith("p95_latency_ms") and "(hard)" in r for r in result.reasons)
    assert any(r.startswith("risk_ratio") and "(soft)" in r for r in result.reasons)


def test_empty_summary_fails_every_metric() -> None:
    result = kpi_gate({}, LEVELS)
    assert result.verdict == Verdict.FAIL
    assert sorted(r.split()[0] for r in result.reasons) == sorted(DESIGN)


def test_profile_targets_override_the_table() -> None:
    levels = kpi_gate_levels({"net_bps": {"soft": 3.5, "hard": 3.0}})
    assert kpi_gate({**GOOD_KPIS, "net_bps": 2.9}, levels).verdict == Verdict.FAIL
    assert kpi_gate({**GOOD_KPIS, "net_bps": 3.2}, levels).verdict == Verdict.WARN
    assert kpi_gate({**GOOD_KPIS, "net_bps": 3.5}, levels).verdict == Verdict.OK


@pytest.mark.parametrize(
    "targets",
    [
        {"nope": {"soft": 1, "hard": 2}},
        {"net_bps": {"soft": "x"}},
        {"net_bps": {"medium": 1.0}},
        {"net_bps": {"soft": 1.0, "hard": 2.0}},  # soft must be stricter than hard
        {"risk_ratio": {"soft": 0.6}},
    ],
)
def test_bad_profile_targets(targets: dict) -> None:
    with pytest.raises(ConfigError, match="kpi_gate"):
        kpi_gate_levels(targets)


def _within(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def _oracle(summary: dict[str, Any]) -> Verdict:
    """DESIGN §4 in a few lines: any hard breach or unusable value FAILs, else any soft WARNs."""
    worst = Verdict.OK
    for metric, (op, soft, hard) in DESIGN.items():
        v = summary.get(metric)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return Verdict.FAIL
        if not _within(v, op, hard):
            return Verdict.FAIL
        if not _within(v, op, soft):
            worst = Verdict.WARN
    return worst


metric_value = st.one_of(
    st.floats(-20, 1000, allow_nan=False),
    st.sampled_from([2.7, 2.0, 0.40, 0.50, 0.90, 0.85, 350, 400, 4.0, 6.0]),
    st.sampled_from([None, math.nan, math.inf, True]),
)


@PROPERTY
@given(st.fixed_dictionaries({m: metric_value for m in DESIGN}))
def test_verdict_matches_design(summary: dict[str, Any]) -> None:
    result = kpi_gate(summary, LEVELS)
    assert result.verdict == _oracle(summary)
    assert (result.verdict == Verdict.OK) == (result.reasons == ())
