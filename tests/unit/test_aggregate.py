"""Aggregation of per-symbol KPIs (docs/gates.md): fill-weighted, p95 as max, counts summed;
an unusable input is carried through (so the KPI gate names it), never laundered."""

from __future__ import annotations

import math
from typing import Any

import pytest
from soakq_testkit import GOOD_KPIS

from soakq.aggregate import aggregate

pytestmark = pytest.mark.usefixtures("clean_env")

BTC = {**GOOD_KPIS, "fills": 100, "net_bps": 2.0, "risk_ratio": 0.2, "p95_latency_ms": 300.0}
ETH = {**GOOD_KPIS, "fills": 300, "net_bps": 4.0, "risk_ratio": 0.4, "p95_latency_ms": 280.0}


def agg(**rows: dict[str, Any]) -> dict[str, Any]:
    return aggregate(rows)


def test_fill_weighted_max_and_sum_by_hand() -> None:
    out = agg(BTC=BTC, ETH={**ETH, "snipes": 2, "adverse_bps_p95": 3.5})
    assert out["net_bps"] == 3.5  # (2*100 + 4*300) / 400
    assert out["risk_ratio"] == 0.35  # (0.2*100 + 0.4*300) / 400
    assert out["maker_taker_ratio"] == 0.95 and out["cancel_ratio"] == 0.5
    assert out["p95_latency_ms"] == 300.0 and out["adverse_bps_p95"] == 3.5
    assert out["slippage_bps_p95"] == 1.5 and out["order_age_p95_ms"] == 600.0
    assert out["fills"] == 400 and isinstance(out["fills"], int)
    assert out["snipes"] == 2
    assert "spike_count" not in out and "gap_events" not in out


def test_rounding_to_4_places() -> None:
    out = agg(A={**BTC, "net_bps": 1.0, "fills": 1}, B={**BTC, "net_bps": 2.0, "fills": 2})
    assert out["net_bps"] == 1.6667
    assert agg(A={**BTC, "p95_latency_ms": 300.123456})["p95_latency_ms"] == 300.1235


def test_symbol_order_does_not_matter() -> None:
    assert agg(BTC=BTC, ETH=ETH) == agg(ETH=ETH, BTC=BTC)


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("risk_ratio", -5),
        ("maker_taker_ratio", 93.3),
        ("p95_latency_ms", -3.0),
        ("slippage_bps_p95", -0.02),
        ("snipes", 1.5),
    ],
)
def test_an_out_of_range_value_is_carried_through(key: str, bad: float) -> None:
    out = agg(BTC=BTC, ETH={**ETH, key: bad})
    assert out[key] == bad


def test_negative_fills_are_named_not_hidden() -> None:
    out = agg(BTC=BTC, ETH={**ETH, "fills": -5})
    assert out["fills"] == -5
    assert out["net_bps"] is None and out["risk_ratio"] is None  # cannot be weighted


def test_fractional_fills_are_not_rounded() -> None:
    assert agg(BTC={**BTC, "fills": 0.001})["fills"] == 0.001
    assert agg(BTC=BTC, ETH={**ETH, "fills": 2.5})["fills"] == 2.5


def test_integral_float_fills_count() -> None:
    out = agg(BTC={**BTC, "fills": 100.0}, ETH={**ETH, "fills": 300.0})
    assert out["fills"] == 400 and out["net_bps"] == 3.5


@pytest.mark.parametrize("bad", [None, math.nan, True, "7"])
def test_missing_or_non_numbers_make_the_aggregate_missing(bad: Any) -> None:
    out = agg(BTC=BTC, ETH={**ETH, "net_bps": bad, "p95_latency_ms": bad, "fills": bad})
    assert out["net_bps"] is None and out["p95_latency_ms"] is None and out["fills"] is None


def test_first_offending_number_is_named() -> None:
    out = agg(A={**BTC, "risk_ratio": None}, B={**BTC, "risk_ratio": 2.0}, C=BTC)
    assert out["risk_ratio"] == 2.0


def test_zero_total_fills_cannot_weight_several_symbols() -> None:
    out = agg(BTC={**BTC, "fills": 0}, ETH={**ETH, "fills": 0})
    assert out["fills"] == 0 and out["net_bps"] is None


def test_one_symbol_with_unusable_fills_keeps_its_own_values() -> None:
    for fills in (None, -3, 0.5):
        out = agg(BTC={**BTC, "fills": fills})
        assert out["net_bps"] == 2.0 and out["risk_ratio"] == 0.2, fills
    assert agg(BTC={**BTC, "fills": -3})["fills"] == -3
    zero = agg(BTC={**BTC, "fills": 0})  # no fills: nothing to weight, nothing to judge
    assert zero["fills"] == 0 and zero["net_bps"] is None


def test_no_symbols() -> None:
    out = aggregate({})
    assert out["fills"] == 0 and out["net_bps"] is None and out["p95_latency_ms"] is None


def test_mock_events_summed_when_given() -> None:
    a, b = {**BTC, "spike_count": 1, "gap_events": 0}, {**ETH, "spike_count": 2, "gap_events": 1}
    out = agg(BTC=a, ETH=b)
    assert (out["spike_count"], out["gap_events"]) == (3, 1)
    partial = agg(BTC=a, ETH={**ETH, "spike_count": None, "gap_events": None})
    assert partial["spike_count"] is None and partial["gap_events"] is None
