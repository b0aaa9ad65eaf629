"""Threshold tables as data (docs/gates.md): values, comparisons, validation of the table."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from soakq.errors import ConfigError
from soakq.rules import thresholds
from soakq.rules.thresholds import (
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
    ("change", "text"),
    [
        ({"min_window": 1}, "release_gate.min_window: a whole number >= 2, got 1"),
        ({"min_window": 2.0}, "release_gate.min_window: a whole number >= 2, got 2.0"),
        ({"min_window": True}, "release_gate.min_window: a whole number >= 2, got True"),
        ({"confidence": 1.0}, "release_gate.confidence: between 0.5 and 1, got 1.0"),
        ({"confidence": 0.5}, "release_gate.confidence: between 0.5 and 1, got 0.5"),
        ({"confidence": "x"}, "release_gate.confidence: expected a finite number, got 'x'"),
    ],
)
def test_bad_release_settings(table: dict[str, Any], change: dict, text: str) -> None:
    table["release_gate"].update(change)
    with pytest.raises(ConfigError) as err:
        release_rules()
    assert str(err.value) == text


def test_release_settings_edges_accepted(table: dict[str, Any]) -> None:
    table["release_gate"].update(min_window=2, confidence=0.999)
    rules = release_rules()
    assert (rules.min_window, rules.confidence) == (2, 0.999)
    table["release_gate"].update(confidence=0.51)
    assert release_rules().confidence == 0.51


@pytest.mark.parametrize(
    ("row", "text"),
    [
        (
            {"metric": "net_bps", "op": "=>", "value": 2.7},
            "release_gate.net_bps: op must be one of >=, <=, got '=>'",
        ),
        (
            {"metric": "net_bps", "op": ">=", "value": "2.7"},
            "release_gate.net_bps.value: expected a finite number, got '2.7'",
        ),
        (
            {"metric": "net_bps", "op": ">=", "value": math.inf},
            "release_gate.net_bps.value: expected a finite number, got inf",
        ),
    ],
)
def test_bad_release_threshold_rows(table: dict[str, Any], row: dict, text: str) -> None:
    table["release_gate"]["thresholds"][0] = row
    with pytest.raises(ConfigError) as err:
        release_rules()
    assert str(err.value) == text


def _levels_error() -> str:
    with pytest.raises(ConfigError) as err:
        kpi_gate_levels()
    return str(err.value)


def test_bad_kpi_gate_rows(table: dict[str, Any]) -> None:
    table["kpi_gate"]["net_bps"]["op"] = "<"
    assert _levels_error() == "kpi_gate.net_bps: op must be one of >=, <=, got '<'"
    table["kpi_gate"]["net_bps"].update(op=">=", soft=None)
    assert _levels_error() == "kpi_gate.net_bps.soft: expected a finite number, got None"
    table["kpi_gate"]["net_bps"].update(soft=2.7, hard="2")
    assert _levels_error() == "kpi_gate.net_bps.hard: expected a finite number, got '2'"
    table["kpi_gate"]["net_bps"].update(soft=1.0, hard=2.0)
    assert _levels_error() == "kpi_gate.net_bps: soft bound must be stricter than hard bound"


@pytest.mark.parametrize(
    ("targets", "text"),
    [
        (
            {"nope": {"soft": 1}},
            "profile kpi_gate: unknown metric 'nope'; allowed: adverse_bps_p95, "
            "maker_taker_ratio, net_bps, p95_latency_ms, risk_ratio",
        ),
        (
            {"net_bps": {"soft": "x"}},
            "profile kpi_gate.net_bps.soft: expected soft/hard numbers, got 'x'",
        ),
        (
            {"net_bps": {"medium": 1}},
            "profile kpi_gate.net_bps.medium: expected soft/hard numbers, got 1",
        ),
    ],
)
def test_profile_target_messages(targets: dict, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        kpi_gate_levels(targets)
    assert str(err.value) == text


def test_values_are_frozen_and_the_table_is_read_once() -> None:
    import dataclasses

    for value, field in (
        (Threshold("m", ">=", 1.0), "bound"),
        (GateLevel("m", ">=", 2.0, 1.0), "soft"),
        (release_rules(), "min_window"),
    ):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, 0)
    assert thresholds._table() is thresholds._table()


def test_bad_default_min_fills(table: dict[str, Any]) -> None:
    table["min_fills"] = -3
    with pytest.raises(ConfigError, match="thresholds.json: min_fills"):
        default_min_fills()
    table["min_fills"] = 7
    assert default_min_fills() == 7
