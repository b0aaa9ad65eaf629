"""The `book` metric source: determinism, output contract, errors, and that parameters matter.

Sign properties are checked on paired seeds (same seed, one parameter changed) with the three
symbols aggregated per seed the way the iteration summary does it (fill-weighted means, p95s as
the max, counts summed); each asserts the sign of the mean paired response over SIGN_SEEDS seeds.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soakq.errors import ConfigError
from soakq.metrics import book as book_module
from soakq.metrics import book_fills
from soakq.metrics.base import (
    DIAGNOSTICS,
    KPI_KEYS,
    MOCK_META_KEYS,
    MeasureRequest,
    get_source,
)
from soakq.metrics.book import BookRun, BookSimulator, simulate
from soakq.params import PARAMS

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
# DESIGN §2 profiles, spelled out so these tests depend on the simulator alone.
STEADY_SAFE = {
    "base_spread_bps_delta": 0.15,
    "min_interval_ms": 75,
    "replace_rate_per_min": 250,
    "tail_age_ms": 740,
    "impact_cap_ratio": 0.08,
    "max_delta_ratio": 0.15,
}
AGGRESSIVE = {
    "base_spread_bps_delta": 0.05,
    "min_interval_ms": 50,
    "replace_rate_per_min": 340,
    "tail_age_ms": 450,
    "impact_cap_ratio": 0.12,
    "max_delta_ratio": 0.20,
}
SIGN_SEEDS = range(1, 21)  # 20 paired seeds per sign property
GATE_SEEDS = range(101, 121)  # 20 seeds for the calibration checks


def req(
    seed: int = 7,
    mode: str = "calm",
    symbol: str = "ETHUSDT",
    iteration: int = 1,
    overrides: Mapping[str, float] | None = None,
    **kw: Any,
) -> MeasureRequest:
    return MeasureRequest(seed, mode, symbol, iteration, dict(overrides or STEADY_SAFE), **kw)


# ---------------------------------------------------------------- contract and determinism


def test_get_source_returns_the_book_simulator() -> None:
    source = get_source("book")
    assert isinstance(source, BookSimulator)
    assert source.name == "book" and source.mock is True


@pytest.mark.parametrize("mode", ["calm", "volatile", "spike"])
def test_output_has_exactly_the_port_keys_with_json_safe_values(mode: str) -> None:
    out = BookSimulator().measure(req(mode=mode, seed=3))
    assert set(out) == set(KPI_KEYS) | set(DIAGNOSTICS) | set(MOCK_META_KEYS)
    json.dumps(out, allow_nan=False)
    for key in ("fills", "snipes", "spike_count", "gap_events", "mock_seed"):
        assert type(out[key]) is int, key
    assert out["mock_mode"] == mode and out["mock_seed"] == 3
    for key in (set(KPI_KEYS) | set(DIAGNOSTICS)) - {"fills", "snipes"}:
        value = out[key]
        assert type(value) is float, key
        assert math.isfinite(value) and round(value, 4) == value, key
    assert 0.0 <= out["risk_ratio"] <= 1.0
    assert 0.0 <= out["maker_taker_ratio"] <= 1.0
    assert 0.0 <= out["cancel_ratio"] <= 1.0
    assert out["fills"] > 0 and out["snipes"] >= 0
    assert out["p95_latency_ms"] > 0 and out["order_age_p95_ms"] > 0
    assert out["gap_events"] <= out["spike_count"]


def test_same_request_gives_identical_output_whatever_the_call_order() -> None:
    sim = BookSimulator()
    a, b = req(seed=11), req(seed=12, mode="spike", overrides=AGGRESSIVE)
    first = sim.measure(a)
    sim.measure(b)
    assert sim.measure(a) == first
    assert BookSimulator().measure(a) == first


def test_same_request_gives_identical_output_in_another_process() -> None:
    code = (
        "import json; from soakq.metrics.base import MeasureRequest;"
        "from soakq.metrics.book import BookSimulator;"
        f"r = MeasureRequest(5, 'volatile', 'SOLUSDT', 3, {STEADY_SAFE!r});"
        "print(json.dumps(BookSimulator().measure(r), sort_keys=True))"
    )
    here = BookSimulator().measure(req(seed=5, mode="volatile", symbol="SOLUSDT", iteration=3))
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(there) == here


@pytest.mark.parametrize(
    "change",
    [{"seed": 8}, {"iteration": 2}, {"symbol": "BTCUSDT"}, {"mode": "volatile"}],
    ids=["seed", "iteration", "symbol", "mode"],
)
def test_each_request_input_changes_the_result(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {"seed": 7, "mode": "calm", "symbol": "ETHUSDT", "iteration": 1}
    sim = BookSimulator()
    assert sim.measure(req(**{**base, **change})) != sim.measure(req(**base))


def test_parameters_change_the_bot_but_not_the_market() -> None:
    sim = BookSimulator()
    a = sim.measure(req(seed=4, mode="spike", overrides=STEADY_SAFE))
    b = sim.measure(req(seed=4, mode="spike", overrides=AGGRESSIVE))
    assert (a["spike_count"], a["gap_events"]) == (b["spike_count"], b["gap_events"])
    assert a["spike_count"] > 0
    assert a != b


def test_market_knobs_sigma_spike_prob_and_gap_size() -> None:
    sim = BookSimulator()
    quiet = sim.measure(req(mode="spike", spike_prob=0.0))
    assert quiet["spike_count"] == 0 and quiet["gap_events"] == 0
    calm_jumps = sim.measure(req(mode="calm", spike_prob=1.0))
    assert calm_jumps["spike_count"] > 5  # about one per simulated minute
    small = sim.measure(req(mode="spike", gap_bps=5.0))
    assert small["spike_count"] > 0 and small["gap_events"] == 0  # no jump reaches 20 bp
    assert sim.measure(req(sigma_scale=3.0)) != sim.measure(req(sigma_scale=1.0))


@pytest.mark.parametrize(
    ("change", "allowed"),
    [({"symbol": "DOGEUSDT"}, "BTCUSDT"), ({"mode": "crash"}, "volatile")],
    ids=["symbol", "mode"],
)
def test_unknown_symbol_or_mode_is_a_config_error_naming_allowed_values(
    change: dict[str, Any], allowed: str
) -> None:
    with pytest.raises(ConfigError, match=allowed):
        BookSimulator().measure(req(**change))


def test_missing_override_is_a_config_error() -> None:
    partial = {k: v for k, v in STEADY_SAFE.items() if k != "tail_age_ms"}
    with pytest.raises(ConfigError, match="tail_age_ms"):
        BookSimulator().measure(req(overrides=partial))


@pytest.mark.parametrize(
    "knob", [{"sigma_scale": -1.0}, {"spike_prob": float("nan")}, {"gap_bps": float("inf")}]
)
def test_bad_market_knob_is_a_config_error(knob: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=next(iter(knob))):
        BookSimulator().measure(req(**knob))


def _param(key: str) -> st.SearchStrategy[float]:
    p = PARAMS[key]
    if p.is_int:
        return st.integers(int(p.lo), int(p.hi)).map(float)
    return st.floats(p.lo, p.hi).map(p.normalize)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**63 - 1),
    mode=st.sampled_from(["calm", "volatile", "spike"]),
    symbol=st.sampled_from(SYMBOLS),
    iteration=st.integers(1, 500),
    overrides=st.fixed_dictionaries({k: _param(k) for k in PARAMS}),
)
def test_any_valid_request_is_deterministic_and_in_range(
    seed: int, mode: str, symbol: str, iteration: int, overrides: dict[str, float]
) -> None:
    request = req(seed=seed, mode=mode, symbol=symbol, iteration=iteration, overrides=overrides)
    out = BookSimulator().measure(request)
    assert BookSimulator().measure(request) == out
    json.dumps(out, allow_nan=False)
    assert 0.0 <= out["risk_ratio"] <= 1.0 and 0.0 <= out["maker_taker_ratio"] <= 1.0
    assert 0.0 <= out["cancel_ratio"] <= 1.0 and out["p95_latency_ms"] > 0
    assert 0 <= out["snipes"] <= out["fills"]


# ---------------------------------------------------------------- sign properties

Metric = Callable[[list[BookRun]], float]


def _weighted(key: str) -> Metric:
    def f(runs: list[BookRun]) -> float:
        fills = [r.metrics["fills"] for r in runs]
        return sum(r.metrics[key] * w for r, w in zip(runs, fills, strict=True)) / sum(fills)

    return f


def _maxed(key: str) -> Metric:
    return lambda runs: max(r.metrics[key] for r in runs)


def _summed(key: str) -> Metric:
    return lambda runs: sum(r.metrics[key] for r in runs)


def _edge(runs: list[BookRun]) -> float:
    vol = sum(r.maker_volume for r in runs)
    return sum(r.edge_bps_per_fill * r.maker_volume for r in runs) / vol


METRICS: dict[str, Metric] = {
    "net_bps": _weighted("net_bps"),
    "risk_ratio": _weighted("risk_ratio"),
    "maker_taker_ratio": _weighted("maker_taker_ratio"),
    "adverse_bps_p95": _maxed("adverse_bps_p95"),
    "slippage_bps_p95": _maxed("slippage_bps_p95"),
    "p95_latency_ms": _maxed("p95_latency_ms"),
    "fills": _summed("fills"),
    "snipes": _summed("snipes"),
    "quote_actions": lambda runs: sum(r.quote_actions for r in runs),
    "edge_bps_per_fill": _edge,
}


def _runs(seed: int, mode: str, overrides: Mapping[str, float]) -> list[BookRun]:
    return [simulate(req(seed=seed, mode=mode, symbol=s, overrides=overrides)) for s in SYMBOLS]


def paired_mean(
    key: str, low: float, high: float, mode: str, metrics: tuple[str, ...]
) -> dict[str, float]:
    """Mean over SIGN_SEEDS of metric(high) - metric(low), steady_safe otherwise."""
    diffs: dict[str, list[float]] = {m: [] for m in metrics}
    for seed in SIGN_SEEDS:
        lo = _runs(seed, mode, {**STEADY_SAFE, key: low})
        hi = _runs(seed, mode, {**STEADY_SAFE, key: high})
        for m in metrics:
            diffs[m].append(METRICS[m](hi) - METRICS[m](lo))
    return {m: statistics.fmean(d) for m, d in diffs.items()}


@pytest.mark.parametrize("mode", ["calm", "volatile"])
def test_wider_spread_fewer_fills_more_edge_less_adverse(mode: str) -> None:
    d = paired_mean(
        "base_spread_bps_delta",
        0.05,
        0.45,
        mode,
        ("fills", "edge_bps_per_fill", "adverse_bps_p95", "net_bps"),
    )
    assert d["fills"] < 0
    assert d["edge_bps_per_fill"] > 0
    assert d["adverse_bps_p95"] < 0
    assert d["net_bps"] > 0


@pytest.mark.parametrize("mode", ["calm", "volatile", "spike"])
def test_longer_tail_age_raises_maker_share_and_cuts_latency(mode: str) -> None:
    d = paired_mean(
        "tail_age_ms", 450, 950, mode, ("maker_taker_ratio", "p95_latency_ms", "quote_actions")
    )
    assert d["maker_taker_ratio"] > 0
    assert d["p95_latency_ms"] < 0
    assert d["quote_actions"] < 0


def test_longer_tail_age_in_spike_gets_sniped_more() -> None:
    d = paired_mean("tail_age_ms", 450, 950, "spike", ("snipes",))
    assert d["snipes"] > 0


@pytest.mark.parametrize("mode", ["volatile", "spike"])
def test_longer_min_interval_fewer_actions_lower_latency_more_snipes(mode: str) -> None:
    d = paired_mean("min_interval_ms", 50, 200, mode, ("quote_actions", "p95_latency_ms", "snipes"))
    assert d["quote_actions"] < 0
    assert d["p95_latency_ms"] < 0
    assert d["snipes"] > 0


@pytest.mark.parametrize("mode", ["calm", "volatile", "spike"])
def test_higher_impact_cap_more_risk_less_maker_share(mode: str) -> None:
    d = paired_mean("impact_cap_ratio", 0.05, 0.12, mode, ("risk_ratio", "maker_taker_ratio"))
    assert d["risk_ratio"] > 0
    assert d["maker_taker_ratio"] < 0


@pytest.mark.parametrize("mode", ["volatile", "spike"])
def test_higher_replace_rate_toward_the_limit_raises_latency(mode: str) -> None:
    d = paired_mean("replace_rate_per_min", 200, 340, mode, ("p95_latency_ms",))
    assert d["p95_latency_ms"] > 0


# ---------------------------------------------------------------- tuner moves help


@pytest.mark.parametrize(
    ("rule", "change", "metric"),
    [
        ("2: risk", {"min_interval_ms": 55, "impact_cap_ratio": 0.115}, "risk_ratio"),
        ("5b: latency", {"tail_age_ms": 525, "replace_rate_per_min": 306}, "p95_latency_ms"),
        ("6a x2: adverse", {"impact_cap_ratio": 0.10, "max_delta_ratio": 0.18}, "adverse_bps_p95"),
    ],
    ids=["risk", "latency", "adverse"],
)
def test_tuner_moves_from_aggressive_in_spike_lower_the_kpi_they_target(
    rule: str, change: dict[str, float], metric: str
) -> None:
    """DESIGN §4 moves applied to `aggressive` in spike: the KPI they aim at goes down."""
    diffs = [
        METRICS[metric](_runs(seed, "spike", {**AGGRESSIVE, **change}))
        - METRICS[metric](_runs(seed, "spike", AGGRESSIVE))
        for seed in SIGN_SEEDS
    ]
    assert statistics.fmean(diffs) < 0, rule


# ---------------------------------------------------------------- calibration against the gates


def _aggregate(seed: int, mode: str, overrides: Mapping[str, float]) -> dict[str, float]:
    runs = _runs(seed, mode, overrides)
    return {
        k: METRICS[k](runs)
        for k in ("net_bps", "risk_ratio", "maker_taker_ratio", "p95_latency_ms", "adverse_bps_p95")
    }


def test_steady_safe_on_calm_passes_the_release_gate_on_most_seeds() -> None:
    passed = 0
    for seed in GATE_SEEDS:
        a = _aggregate(seed, "calm", STEADY_SAFE)
        passed += (
            a["net_bps"] >= 2.7
            and a["risk_ratio"] <= 0.42
            and a["maker_taker_ratio"] >= 0.85
            and a["p95_latency_ms"] <= 350
        )
    assert passed >= 0.8 * len(GATE_SEEDS)


def test_aggressive_on_spike_fails_the_hard_kpi_gate_on_most_seeds() -> None:
    failed = 0
    for seed in GATE_SEEDS:
        a = _aggregate(seed, "spike", AGGRESSIVE)
        failed += (
            a["net_bps"] < 2.0
            or a["risk_ratio"] > 0.50
            or a["maker_taker_ratio"] < 0.85
            or a["p95_latency_ms"] > 400
            or a["adverse_bps_p95"] > 6.0
        )
    assert failed >= 0.8 * len(GATE_SEEDS)


@pytest.mark.parametrize("mode", ["calm", "volatile", "spike"])
def test_candidate_filter_is_exact(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Walking every step and side gives the very same result as walking only the candidates."""
    request = req(seed=21, mode=mode, overrides=AGGRESSIVE)
    fast = BookSimulator().measure(request)
    real = book_fills.simulate_fills
    monkeypatch.setattr(book_module, "simulate_fills", functools.partial(real, exhaustive=True))
    assert BookSimulator().measure(request) == fast
