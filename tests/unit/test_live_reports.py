"""Pure pieces of the live handshake: handshake hash, stale/fresh reports, field maps."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from soakq.errors import ConfigError, MetricsError
from soakq.jsonio import read_json, sha256_of, write_json
from soakq.metrics.live.fieldmap import field_map, load_user_map
from soakq.metrics.live.handshake import make_handshake, write_handshake
from soakq.metrics.live.reports import (
    freshness_problem,
    read_kpis,
    stale_reason,
    window_problem,
)
from soakq.profiles import load_profile

OVR = load_profile("steady_safe").overrides
_, HS = make_handshake("r1", 2, OVR, window_s=1.0, report_timeout_s=2.0, now=100.0)
GOOD = {
    "net_bps": 3.0,
    "adverse_bps_p95": 1.0,
    "slippage_bps_p95": 0.5,
    "risk_ratio": 0.3,
    "maker_taker_ratio": 0.95,
    "p95_latency_ms": 200.0,
    "fills": 50,
}


def test_handshake_files(tmp_path: Path) -> None:
    flat, hs = make_handshake(
        "r1", 2, {**OVR, "tail_age_ms": 740.0}, window_s=1.0, report_timeout_s=2.0, now=100.0
    )
    write_handshake(tmp_path, flat, hs)
    assert read_json(tmp_path / "runtime_overrides.json") == OVR
    doc = read_json(tmp_path / "SOAK_ITERATION.json")
    assert doc == {
        "run_id": "r1",
        "iteration": 2,
        "state_hash": sha256_of(OVR),
        "window_s": 1.0,
        "deadline_ts": 103.0,
    }


@pytest.mark.parametrize(
    ("doc", "required", "stale"),
    [
        ({"run_id": "r1", "iteration": 2, "state_hash": HS.state_hash}, True, False),
        ({"run_id": "other", "iteration": 2, "state_hash": HS.state_hash}, True, True),
        ({"run_id": "r1", "iteration": 1, "state_hash": HS.state_hash}, True, True),
        ({"run_id": "r1", "iteration": 2, "state_hash": "0" * 64}, True, True),
        ({"run_id": "r1", "iteration": 2}, True, True),
        ({}, False, False),
        ({"run_id": "other"}, False, True),
    ],
)
def test_stale_reason(doc: dict[str, Any], required: bool, stale: bool) -> None:
    assert (stale_reason(doc, HS, required=required) is not None) is stale


@pytest.mark.parametrize(
    ("utc", "mtime", "fresh"),
    [
        ("1970-01-01T00:01:40.5Z", 0.0, True),  # 100.5 > 100
        ("1970-01-01T00:01:39Z", 999.0, False),  # utc wins over a newer mtime
        (None, 101.0, True),
        (None, 99.0, False),
        ("garbage", 101.0, True),  # unparsable: the mtime decides
        ("1970-01-01T00:02:50Z", 101.0, True),  # 170: 60 s ahead of now (110) is allowed
        ("1970-01-01T00:02:51Z", 101.0, False),  # 171: a clock too far ahead (or a planted file)
        ("2099-01-01T00:00:00Z", 101.0, False),
        (None, 171.0, False),
    ],
)
def test_fixed_path_freshness(utc: str | None, mtime: float, fresh: bool) -> None:
    doc: dict[str, Any] = {"runtime": {"utc": utc}} if utc else {}
    assert (freshness_problem(doc, mtime, 100.0, 110.0) is None) is fresh


@pytest.mark.parametrize(
    ("window", "problem"),
    [
        ({}, None),
        ({"window_start_ts": 40.0, "window_end_ts": 100.0}, None),
        ({"window_end_ts": 170}, None),  # 60 s ahead of now (110) is allowed
        ({"window_start_ts": 101.0, "window_end_ts": 100.0}, "is after window_end_ts"),
        ({"window_start_ts": 0.0, "window_end_ts": 171.0}, "ahead of this host's clock"),
        ({"window_end_ts": "soon"}, "not a time"),
        ({"window_start_ts": True}, "not a time"),
        ({"window_start_ts": float("nan")}, "not a time"),
    ],
)
def test_impossible_report_windows(window: dict[str, Any], problem: str | None) -> None:
    got = window_problem(window, 110.0)
    assert (got is None) if problem is None else (got is not None and problem in got)


def test_edge_report_fields_and_absent_kpis() -> None:
    doc = {
        "runtime": {"utc": "x"},
        "symbols": {
            "BTCUSDT": {"net_bps": 3.1, "fills": 3.0, "adverse_bps": 1.0, "maker_share_pct": 93.3}
        },
    }
    (k,) = read_kpis(doc, field_map(None), ["BTCUSDT"], where="r").values()
    assert k.metrics["maker_taker_ratio"] == 0.933 and k.metrics["fills"] == 3.0
    assert set(k.absent) == {"adverse_bps_p95", "slippage_bps_p95", "risk_ratio", "p95_latency_ms"}


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ({**GOOD, "fills": 3.5}, "fills"),
        ({**GOOD, "fills": -1}, "fills"),
        ({**GOOD, "maker_taker_ratio": 93.3}, "maker_taker_ratio"),  # percent never accepted
        ({**GOOD, "risk_ratio": "high"}, "risk_ratio"),
    ],
)
def test_invalid_values_are_an_error(row: dict[str, Any], why: str) -> None:
    with pytest.raises(MetricsError, match=why):
        read_kpis({"symbols": {"BTCUSDT": row}}, field_map(None), ["BTCUSDT"], where="r")


def test_flat_form_only_for_one_symbol() -> None:
    assert read_kpis({**GOOD, "run_id": "r1"}, field_map(None), ["A"], where="r")["A"].absent == ()
    with pytest.raises(MetricsError, match="one symbol"):
        read_kpis(GOOD, field_map(None), ["A", "B"], where="r")
    with pytest.raises(MetricsError, match="no symbol 'B'"):
        read_kpis({"symbols": {"A": GOOD}}, field_map(None), ["A", "B"], where="r")


def test_user_map_points_kpis_at_other_fields(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "map.json",
        {
            "fields": {
                "risk_ratio": [{"from": "inventory_risk_pct", "scale": 0.01}],
                "adverse_bps_p95": [{"from": "adverse_bps"}],
            }
        },
    )
    fmap = field_map(load_user_map(path))
    row = {**GOOD, "inventory_risk_pct": 31.0, "adverse_bps": 2.0}
    del row["risk_ratio"], row["adverse_bps_p95"]
    (k,) = read_kpis({"symbols": {"A": row}}, fmap, ["A"], where="r").values()
    assert k.metrics["risk_ratio"] == 0.31 and k.metrics["adverse_bps_p95"] == 2.0
    assert fmap.total_keys == ("totals", "total")  # the built-in sections are kept


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({"fields": {"nope": [{"from": "x"}]}}, "unknown KPI 'nope'"),
        ({"fields": {"risk_ratio": []}}, "risk_ratio: give at least one candidate"),
        ([], "expected a JSON object such as"),
    ],
)
def test_bad_user_map_is_a_config_error(tmp_path: Path, doc: Any, says: str) -> None:
    path = write_json(tmp_path / "map.json", doc)
    with pytest.raises(ConfigError, match=re.escape(says)) as err:
        load_user_map(path)
    assert "Value error" not in str(err.value) and ": :" not in str(err.value)
