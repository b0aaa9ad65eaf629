"""Threshold tables as data (docs/gates.md): values, comparisons, validation of the table."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from soakq import thresholds
from soakq.errors import ConfigError
from soakq.thresholds import (
    GateLevel,
    ReleaseRules,
    Threshold,
    check_min_fills,
    default_min_fills,
    fmt_num,
    kpi_gate_levels,
    release_rules,
    release_thresholds,
)

pytestmark = pytest.mark.usefixtures("clean_env")


def test_release_rules_are_the_contract() -> None:
    rules = release_rules()
    assert rules == ReleaseRules(
        thresholds=(
            Threshold("net_bps", ">=", 2.7),
            Threshold("risk_ratio", "<=", 0.42),
            Threshold("maker_taker_ratio", ">=", 0.85),
            Threshold("p95_latency_ms", "<=", 350.0),
        ),
        min_window=6,
        confidence=0.95,
    )
    assert release_thresholds() == rules.thresholds


def test_default_min_fills_is_20() -> None:
    assert default_min_fills() == 20


@pytest.mark.parametrize(
    ("t", "value", "passes"),
    [
        (Threshold("m", ">=", 2.7), 2.7, True),
        (Threshold("m", ">=", 2.7), 2.6999, False),
        (Threshold("m", ">=", 2.7), 9.0, True),
        (Threshold("m", "<=", 0.42), 0.42, True),
        (Threshold("m", "<=", 0.42), 0.4201, False),
        (Threshold("m", "<=", 0.42), -1.0, True),
    ],
)
def test_threshold_passes(t: Threshold, value: float, passes: bool) -> None:
    assert t.passes(value) is passes


def test_threshold_describe_names_the_broken_comparison() -> None:
    assert Threshold("net_bps", ">=", 2.7).broken == "<"
    assert Threshold("risk_ratio", "<=", 0.42).broken == ">"
    assert Threshold("net_bps", ">=", 2.7).describe(2.5) == "net_bps 2.5 < 2.7"
    assert Threshold("risk_ratio", "<=", 0.42).describe(0.5) == "risk_ratio 0.5 > 0.42"


def test_gate_level_thresholds() -> None:
    lv = GateLevel("net_bps", ">=", 2.7, 2.0)
    assert lv.soft_threshold == Threshold("net_bps", ">=", 2.7)
    assert lv.hard_threshold == Threshold("net_bps", ">=", 2.0)


@pytest.mark.parametrize(
    ("value", "text"),
    [(3, "3"), (3.0, "3"), (2.5, "2.5"), (0.123456, "0.1235"), (-0.5, "-0.5"), (350.0, "350")],
)
def test_fmt_num(value: float, text: str) -> None:
    assert fmt_num(value) == text


@pytest.mark.parametrize("value", [0, 1, 20, 20.0, 1000])
def test_check_min_fills_accepts(value: Any) -> None:
    assert check_min_fills(value, layer="L") == int(value)
    assert isinstance(check_min_fills(value, layer="L"), int)


@pytest.mark.parametrize("value", [-1, 2.5, True, "20", None, math.nan, math.inf])
def test_check_min_fills_refuses(value: Any) -> None:
    with pytest.raises(ConfigError, match="^L: min_fills must be a whole number >= 0"):
        check_min_fills(value, layer="L")


# --- the table file itself is validated when read -------------------------------------------


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A private copy of the table that the loaders read instead of the package data."""
    doc = copy.deepcopy(thresholds._table())
    monkeypatch.setattr(thresholds, "_table", lambda: doc)
    return doc


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"min_window": 1}, "min_window"),
        ({"min_window": 2.0}, "min_window"),
        ({"min_window": True}, "min_window"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.5}, "confidence"),
        ({"confidence": "x"}, "confidence"),
    ],
)
def test_bad_release_settings(table: dict[str, Any], change: dict, needle: str) -> None:
    table["release_gate"].update(change)
    with pytest.raises(ConfigError, match=f"release_gate.{needle}"):
        release_rules()


def test_release_settings_edges_accepted(table: dict[str, Any]) -> None:
    table["release_gate"].update(min_window=2, confidence=0.999)
    rules = release_rules()
    assert (rules.min_window, rules.confidence) == (2, 0.999)
    table["release_gate"].update(confidence=0.51)
    assert release_rules().confidence == 0.51


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"metric": "net_bps", "op": "=>", "value": 2.7}, "op must be one of"),
        ({"metric": "net_bps", "op": ">=", "value": "2.7"}, "net_bps.value"),
        ({"metric": "net_bps", "op": ">=", "value": math.inf}, "net_bps.value"),
    ],
)
def test_bad_release_threshold_rows(table: dict[str, Any], row: dict, needle: str) -> None:
    table["release_gate"]["thresholds"][0] = row
    with pytest.raises(ConfigError, match=needle):
        release_rules()


def test_bad_kpi_gate_rows(table: dict[str, Any]) -> None:
    table["kpi_gate"]["net_bps"]["op"] = "<"
    with pytest.raises(ConfigError, match="kpi_gate.net_bps: op"):
        kpi_gate_levels()
    table["kpi_gate"]["net_bps"].update(op=">=", soft=None)
    with pytest.raises(ConfigError, match="kpi_gate.net_bps.soft"):
        kpi_gate_levels()
    table["kpi_gate"]["net_bps"].update(soft=2.7, hard="2")
    with pytest.raises(ConfigError, match="kpi_gate.net_bps.hard"):
        kpi_gate_levels()


def test_bad_default_min_fills(table: dict[str, Any]) -> None:
    table["min_fills"] = -3
    with pytest.raises(ConfigError, match="thresholds.json: min_fills"):
        default_min_fills()
    table["min_fills"] = 7
    assert default_min_fills() == 7
