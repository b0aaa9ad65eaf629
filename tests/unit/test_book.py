"""The `book` metric source: determinism, output contract, errors, and that parameters matter.

Sign properties are checked on paired seeds (same seed, one parameter changed, steady_safe
otherwise, iteration 1, no tuning, no guards): each asserts the sign of the mean paired response
of a per-symbol KPI over SIGN_SEEDS seeds x the three symbols. The figures (n, mean difference,
t) are in docs/simulator.md; the adverse-selection responses are the weakest (t about 1.5-3),
which is why those two cases use twice the seeds.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import subprocess
import sys
import warnings
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from soakq.errors import ConfigError
from soakq.metrics.base import (
    DIAGNOSTICS,
    KPI_KEYS,
    MOCK_META_KEYS,
    MeasureRequest,
    get_source,
)
from soakq.metrics.book import BookRun, BookSimulator, kernels, simulate
from soakq.metrics.book import market as market_module
from soakq.metrics.book import simulator as simulator_module
from soakq.metrics.book.fills import KIND_SWEEP, KIND_UNINFORMED
from soakq.metrics.book.metrics import markouts, weighted_quantile
from soakq.params import PARAMS

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
# The profiles (docs/parameters.md), spelled out so these tests depend on the simulator alone.
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
SIGN_SEEDS = range(1, 21)  # 20 paired seeds x 3 symbols per sign property
ADVERSE_SEEDS = range(1, 41)  # the adverse-selection responses are small against their noise
GATE_SEEDS = range(101, 121)  # 20 seeds for the KPI-level calibration checks


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
    assert out["slippage_bps_p95"] >= 0.0
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


def test_same_request_gives_identical_bytes_in_another_process() -> None:
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
    assert there == json.dumps(here, sort_keys=True) + "\n"


@pytest.mark.parametrize(
    "change",
    [{"seed": 8}, {"iteration": 2}, {"symbol": "BTCUSDT"}, {"mode": "volatile"}],
    ids=["seed", "iteration", "symbol", "mode"],
)
def test_each_request_input_changes_the_result(change: dict[str, Any]) -> None:
    base: dict[str, Any] = {"seed": 7, "mode": "calm", "symbol": "ETHUSDT", "iteration": 1}
    sim = BookSimulator()
    assert sim.measure(req(**{**base, **change})) != sim.measure(req(**base))


def test_parameters_change_the_bot_but_never_the_market_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    markets: list[Any] = []
    real = simulator_module.build_market

    def spy(*args: Any, **kwargs: Any) -> Any:
        markets.append(real(*args, **kwargs))
        return markets[-1]

    monkeypatch.setattr(simulator_module, "build_market", spy)
    a = simulate(req(seed=4, mode="spike", overrides=STEADY_SAFE))
    b = simulate(req(seed=4, mode="spike", overrides=AGGRESSIVE))
    assert a.metrics != b.metrics and a.quote_actions != b.quote_actions
    first, second = markets
    for field in ("mid", "move_ahead", "u_fill", "aux", "phase", "burst_ms"):
        assert getattr(first, field).tobytes() == getattr(second, field).tobytes(), field
    for field in ("at", "u", "reach"):
        assert getattr(first.takers, field).tobytes() == getattr(second.takers, field).tobytes()
    assert first.signal == second.signal and first.latency_level == second.latency_level
    assert first.jump_count > 0


@pytest.mark.parametrize("mode", ["calm", "volatile", "spike"])
def test_the_extreme_allowed_knobs_run_without_numeric_warnings(mode: str) -> None:
    """--mock-sigma 100 --spike-prob 1 --gap-bps 10000: mids far through the quotes (an exp
    overflowed into a RuntimeWarning on the user's terminal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = BookSimulator().measure(
            req(mode=mode, sigma_scale=100.0, spike_prob=1.0, gap_bps=10_000.0)
        )
    json.dumps(out, allow_nan=False)


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
    ("key", "value", "allowed"),
    [
        ("replace_rate_per_min", 1e-16, "120..360"),  # once a segfault in the C walk
        ("replace_rate_per_min", 0.0, "120..360"),  # once a ZeroDivisionError
        ("max_delta_ratio", -1.0, "0.1..0.2"),  # once an endless hedge loop
        ("min_interval_ms", 1e12, "50..300"),  # once an OverflowError
        ("tail_age_ms", float("nan"), "400..1000"),
        ("tail_age_ms", float("inf"), "400..1000"),
    ],
)
def test_an_override_outside_its_bounds_is_a_config_error_naming_them(
    key: str, value: float, allowed: str
) -> None:
    with pytest.raises(ConfigError, match=f"book source: override: {key}.*; allowed {allowed}"):
        BookSimulator().measure(req(overrides={**STEADY_SAFE, key: value}))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"overrides": None}, "overrides must be a mapping"),
        ({"overrides": {**STEADY_SAFE, "TAIL_AGE_MS": 5000}}, "unknown override TAIL_AGE_MS"),
        ({"overrides": {**STEADY_SAFE, "tail_age_ms": 10**400}}, "tail_age_ms=1.00000e+400"),
        ({"overrides": {**STEADY_SAFE, "tail_age_ms": 700.5}}, "whole number of ms"),
        ({"seed": "x"}, "seed must be an integer >= 0"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"seed": 1.5}, "seed must be an integer >= 0"),
        ({"iteration": 0}, "iteration must be an integer >= 1"),
        ({"iteration": None}, "iteration must be an integer >= 1"),
        ({"sigma_scale": 10**400}, "sigma_scale must be a number in 0.001..100"),
        ({"sigma_scale": "x"}, "sigma_scale must be a number in 0.001..100"),
        ({"sigma_scale": 0.0}, "sigma_scale must be a number in 0.001..100"),
        ({"spike_prob": 1e300}, "spike_prob must be a number in 0..1"),
        ({"gap_bps": 1e6}, "gap_bps must be a number in 0..10000"),
    ],
)
def test_a_request_the_cli_would_refuse_is_a_config_error(
    change: dict[str, Any], needle: str
) -> None:
    """What the CLI refuses, `simulate` refuses too, in a ConfigError naming the field (it
    raised OverflowError, AttributeError or numpy's ValueError, or returned net_bps=-4e90)."""
    base = {"seed": 7, "mode": "calm", "symbol": "ETHUSDT", "iteration": 1}
    request = MeasureRequest(**{**base, "overrides": STEADY_SAFE, **change})
    with pytest.raises(ConfigError, match=re.escape(needle)):
        simulate(request)


def test_numpy_numbers_are_numbers() -> None:
    numpy_overrides = {k: np.float64(v) for k, v in STEADY_SAFE.items()}
    numpy_overrides["tail_age_ms"] = np.int64(740)
    plain = simulate(req()).metrics
    assert simulate(req(seed=np.int64(7), overrides=numpy_overrides)).metrics == plain


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
    assert out["slippage_bps_p95"] >= 0.0 and 0 <= out["snipes"] <= out["fills"]


@pytest.mark.parametrize("mode", ["calm", "volatile", "spike"])
def test_uninformed_pre_filter_is_exact(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the pre-filter switched off (every step a candidate) the result is the same."""
    request = req(seed=21, mode=mode, overrides=AGGRESSIVE)
    fast = simulate(request).metrics

    def everything(mid: np.ndarray, u_fill: np.ndarray, *_: Any) -> market_module.Takers:
        n = u_fill.shape[1]
        side = np.repeat(np.arange(2), n)
        reach = np.where(side == 0, -np.inf, np.inf)  # any bid is above, any ask below
        steps = np.tile(np.arange(n), 2)
        return market_module.Takers(np.arange(2 * n), steps, side, u_fill.ravel(), reach, n)

    monkeypatch.setattr(market_module, "uninformed_takers", everything)
    assert simulate(request).metrics == fast


# ---------------------------------------------------------------- adverse selection definition


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3000),
    rate=st.sampled_from([30.0, 120.0, 250.0, 306.7, 600.0, 3000.0]),
    burst_s=st.sampled_from([0.0, 1.0, 4.0]),
    urgent_share=st.sampled_from([0.0, 0.02, 0.5]),
)
def test_vectorised_requote_walk_matches_the_sequential_rule(
    seed: int, n: int, rate: float, burst_s: float, urgent_share: float
) -> None:
    rng = np.random.default_rng(seed)
    nxt = np.arange(n) + rng.integers(1, 17, n)  # the trigger table: 1..16 steps ahead
    code = nxt * 2 + (rng.random(n) < 0.3)
    urgent = rng.random(n) < urgent_share
    per_step = rate * 100.0 / 60_000.0
    depth = max(2.0, rate * burst_s / 60.0)
    budget = {
        "interval": kernels.dyadic(2.0 / per_step),
        "tolerance": kernels.dyadic((depth - 2.0) / per_step),
    }
    fast = kernels.walk_schedule(code, urgent, n, **budget)
    assert fast.tolist() == kernels.walk_reference(code, urgent, n, **budget).tolist()


def test_markout_is_from_the_mid_signed_against_the_maker_and_excludes_the_spread() -> None:
    """s * (M_t - M_{t+h}) / M_t * 1e4 on log-mids in bp; a sweep is marked from the pre-jump
    mid; the captured half-spread is reported separately."""
    mid = np.array([0.0, 0.0, -3.0, -3.0, -11.0, -11.0])  # bp of log price
    market = SimpleNamespace(mid=mid)
    sched = SimpleNamespace(step=np.array([0, 3]))
    fills = SimpleNamespace(
        side=np.array([0, 1, 0]),  # buy, sell, buy
        step=np.array([1, 1, 4]),
        kind=np.array([KIND_UNINFORMED, KIND_UNINFORMED, KIND_SWEEP]),
        act=np.array([0, 0, 1]),
    )
    captured, adverse = markouts(market, sched, fills, 2.0, 1)  # type: ignore[arg-type]
    fell = -math.expm1(-3.0 / 1e4) * 1e4  # the mid fell 3 bp after t
    assert adverse[0] == pytest.approx(fell)  # bought, then the mid fell: against the maker
    assert adverse[1] == pytest.approx(-fell)  # sold, then it fell: in the maker's favour
    # The bid swept at step 4 (the mid gapped 8 bp down into it) is marked from the pre-jump
    # mid -3, not from the post-jump -11: the whole gap is adverse selection.
    assert adverse[2] == pytest.approx(-math.expm1(-8.0 / 1e4) * 1e4)
    assert captured[0] == pytest.approx(-math.expm1(-2.0 / 1e4) * 1e4)  # bid 2 bp below mid


def test_weighted_quantile_is_the_volume_weighted_lower_quantile() -> None:
    values = np.array([5.0, 1.0, 3.0, 2.0])
    weights = np.array([1.0, 1.0, 1.0, 7.0])
    assert weighted_quantile(values, weights, 0.5) == 2.0
    assert weighted_quantile(values, weights, 0.95) == 5.0
    assert weighted_quantile(values, np.ones(4), 0.25) == 1.0
    assert weighted_quantile(np.array([]), np.array([]), 0.95) == 0.0


@pytest.mark.parametrize("overrides", [STEADY_SAFE, AGGRESSIVE], ids=["steady_safe", "aggr"])
def test_adverse_p95_on_calm_is_never_negative(overrides: Mapping[str, float]) -> None:
    values = [
        simulate(req(seed=s, symbol=sym, overrides=overrides)).metrics["adverse_bps_p95"]
        for s in SIGN_SEEDS
        for sym in SYMBOLS
    ]
    assert min(values) >= 0.0
    assert 0.5 <= statistics.fmean(values) <= 3.0


# ---------------------------------------------------------------- sign properties


def paired_mean(
    key: str, low: float, high: float, mode: str, metric: str, seeds: range = SIGN_SEEDS
) -> float:
    """Mean over seeds x symbols of metric(high) - metric(low), steady_safe otherwise."""
    diffs = []
    for seed in seeds:
        for sym in SYMBOLS:
            lo = simulate(
                req(seed=seed, mode=mode, symbol=sym, overrides={**STEADY_SAFE, key: low})
            )
            hi = simulate(
                req(seed=seed, mode=mode, symbol=sym, overrides={**STEADY_SAFE, key: high})
            )
            diffs.append(_metric(hi, metric) - _metric(lo, metric))
    return statistics.fmean(diffs)


def _metric(run: BookRun, metric: str) -> float:
    if metric in ("quote_actions", "edge_bps_per_fill"):
        return float(getattr(run, metric))
    return float(run.metrics[metric])


def test_longer_tail_age_raises_adverse_selection_on_volatile() -> None:
    assert paired_mean("tail_age_ms", 400, 1000, "volatile", "adverse_bps_p95", ADVERSE_SEEDS) > 0


def test_longer_tail_age_keeps_queue_priority_more_fills_on_calm() -> None:
    assert paired_mean("tail_age_ms", 400, 1000, "calm", "fills") > 0


@pytest.mark.parametrize("mode", ["calm", "volatile"])
def test_longer_tail_age_cuts_messages(mode: str) -> None:
    assert paired_mean("tail_age_ms", 400, 1000, mode, "quote_actions") < 0


def test_longer_min_interval_raises_adverse_selection_on_volatile() -> None:
    diff = paired_mean("min_interval_ms", 50, 200, "volatile", "adverse_bps_p95", ADVERSE_SEEDS)
    assert diff > 0


def test_longer_min_interval_costs_captured_spread_on_volatile() -> None:
    """Where min_interval's staleness is paid (docs/simulator.md, "Parameter responses"): the
    quotes it leaves stale are filled at or through the mid (snipes), so the maker's edge per
    unit of volume falls; the markout from the mid, which starts after the move, hardly sees it."""
    assert paired_mean("min_interval_ms", 50, 200, "volatile", "snipes", ADVERSE_SEEDS) > 0
    edge = paired_mean("min_interval_ms", 50, 200, "volatile", "edge_bps_per_fill", ADVERSE_SEEDS)
    assert edge < 0


@pytest.mark.parametrize("mode", ["calm", "volatile", "spike"])
def test_longer_min_interval_lowers_p95_latency(mode: str) -> None:
    assert paired_mean("min_interval_ms", 50, 200, mode, "p95_latency_ms") < 0


@pytest.mark.parametrize("mode", ["calm", "volatile"])
def test_wider_spread_fewer_fills(mode: str) -> None:
    assert paired_mean("base_spread_bps_delta", 0.05, 0.45, mode, "fills") < 0


@pytest.mark.parametrize("mode", ["calm", "volatile", "spike"])
def test_higher_impact_cap_more_risk(mode: str) -> None:
    assert paired_mean("impact_cap_ratio", 0.05, 0.12, mode, "risk_ratio") > 0


@pytest.mark.parametrize("mode", ["volatile", "spike"])
def test_higher_replace_rate_raises_latency(mode: str) -> None:
    assert paired_mean("replace_rate_per_min", 200, 340, mode, "p95_latency_ms") > 0


# ---------------------------------------------------------------- tuner moves help


def _aggregate(seed: int, mode: str, overrides: Mapping[str, float]) -> dict[str, float]:
    """The iteration summary's aggregation: fill-weighted means, p95s as the max."""
    runs = [simulate(req(seed=seed, mode=mode, symbol=s, overrides=overrides)) for s in SYMBOLS]
    fills = [r.metrics["fills"] for r in runs]
    out = {
        k: sum(r.metrics[k] * w for r, w in zip(runs, fills, strict=True)) / sum(fills)
        for k in ("net_bps", "risk_ratio", "maker_taker_ratio")
    }
    for k in ("p95_latency_ms", "adverse_bps_p95"):
        out[k] = max(r.metrics[k] for r in runs)
    return out


@pytest.mark.parametrize("mode", ["volatile", "spike"])
@pytest.mark.parametrize(
    ("rule", "change", "metric"),
    [
        ("2: risk", {"min_interval_ms": 55, "impact_cap_ratio": 0.115}, "risk_ratio"),
        ("5b: latency", {"tail_age_ms": 525, "replace_rate_per_min": 306}, "p95_latency_ms"),
        ("6a x2: adverse", {"impact_cap_ratio": 0.10, "max_delta_ratio": 0.18}, "adverse_bps_p95"),
    ],
    ids=["risk", "latency", "adverse"],
)
def test_tuner_moves_from_aggressive_lower_the_kpi_they_target(
    mode: str, rule: str, change: dict[str, float], metric: str
) -> None:
    """docs/tuner.md moves applied to `aggressive`: the KPI they aim at goes down."""
    diffs = [
        _aggregate(seed, mode, {**AGGRESSIVE, **change})[metric]
        - _aggregate(seed, mode, AGGRESSIVE)[metric]
        for seed in SIGN_SEEDS
    ]
    assert statistics.fmean(diffs) < 0, rule


# ---------------------------------------------------------------- KPI-level calibration


def test_steady_safe_on_calm_passes_the_release_thresholds_on_most_seeds() -> None:
    passed = 0
    for seed in GATE_SEEDS:
        a = _aggregate(seed, "calm", STEADY_SAFE)
        passed += (
            a["net_bps"] >= 2.7
            and a["risk_ratio"] <= 0.42
            and a["maker_taker_ratio"] >= 0.85
            and a["p95_latency_ms"] <= 350
        )
    assert passed >= 0.9 * len(GATE_SEEDS)


@pytest.mark.parametrize("mode", ["volatile", "spike"])
def test_aggressive_fails_the_hard_kpi_gate_at_iteration_1(mode: str) -> None:
    failed = 0
    for seed in GATE_SEEDS:
        a = _aggregate(seed, mode, AGGRESSIVE)
        failed += (
            a["net_bps"] < 2.0
            or a["risk_ratio"] > 0.50
            or a["maker_taker_ratio"] < 0.85
            or a["p95_latency_ms"] > 400
            or a["adverse_bps_p95"] > 6.0
        )
    assert failed >= 0.9 * len(GATE_SEEDS)
