"""Frozen v1 of the `book` source (baseline for bench/bench_book.py): parameters matter.

Per symbol and iteration it simulates ``clock.minutes`` of market at ``clock.step_ms`` steps
(docs/simulator.md, v1); constants live in ``soakq/data/regimes.json`` and ``symbols.json``.

- Market (``book_engine``): a random-walk mid in bp with jumps ("gaps"); per regime volatility,
  jump rate and size, depth (fill intensity) and venue latency.
- Quotes (``book_engine``): both sides at the regime's half-spread + ``base_spread_bps_delta``
  from the mid the bot saw. It requotes when the mid has moved ``requote_bps`` or the quotes are
  ``tail_age_ms`` old; an action is two messages ``min_interval_ms`` apart and spends two tokens
  of a ``replace_rate_per_min`` bucket. Latency grows as the message rate nears the venue limit.
- Fills (``book_fills``): uninformed flow at ``A*exp(-k*delta)`` (delta from the *current* mid)
  times queue priority, which grows with order age and resets on every replace or re-post;
  informed takers who know the mid one markout horizon ahead; sweeps at jumps and snipes of
  quotes the mid already moved through. Informed takers take the whole clip, and come more often
  to bigger clips.
- Position (``book_fills``): a target that follows a slow signal within ``impact_cap_ratio``
  (scaled), moving at most ``max_delta_ratio`` (scaled) per tick; quotes skew against the
  deviation from it; a deviation beyond a hard limit, or beyond a soft one for too long, is hedged
  with taker orders (fee, touch, impact and the drift during the round trip) sliced to
  ``max_delta_ratio`` per step. Quote clip is ``impact_cap_ratio`` (scaled).

Metrics: net_bps = (maker markout after ``clock.markout_ms`` + rebate - taker fee - slippage) per
unit of filled volume; adverse_bps_p95 = volume-weighted p95 over maker fills of the mid's move
past the fill price over the markout horizon; slippage_bps_p95 = volume-weighted p95 of hedge
slippage vs the mid at the hedge decision; risk_ratio = time-average |inventory| / limit;
maker_taker_ratio = maker volume / all volume; p95_latency_ms over all order messages;
cancel_ratio = cancels / placements; order_age_p95_ms at fill or cancel; snipes = maker fills on
quotes the mid had moved through.

``simulate`` returns the full result (with diagnostics the tests use); ``BookSimulator.measure``
returns the flat, JSON-safe dict of the MetricsSource port.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.book_v1.book_config import BookConfig, load_book_config
from bench.book_v1.book_engine import add_latency, build_market, position_target, schedule_quotes
from bench.book_v1.book_fills import Fills, simulate_fills
from soakq.errors import ConfigError, MetricsError
from soakq.metrics.base import MeasureRequest
from soakq.params import KEYS

P95 = 0.95


@dataclass(frozen=True)
class BookRun:
    """One simulated symbol-iteration: the port's metrics plus diagnostics for tests and tuning."""

    metrics: dict[str, Any]  # exactly what BookSimulator.measure returns
    quote_actions: int  # requotes (each replaces both sides)
    edge_bps_per_fill: float  # maker markout + rebate per unit of maker volume
    maker_volume: float  # in inventory-limit units
    taker_volume: float
    informed_fills: int
    hedge_orders: int


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """Smallest value whose cumulative weight reaches ``q`` of the total; 0.0 when empty."""
    if values.size == 0:
        return 0.0
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    pos = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[order][min(pos, values.size - 1)])


def quantile(values: np.ndarray, q: float) -> float:
    """Linear-interpolated quantile (numpy's default method) by partial sort; 0.0 when empty."""
    if values.size == 0:
        return 0.0
    pos = q * (values.size - 1)
    lo = int(pos)
    hi = min(lo + 1, values.size - 1)
    part = np.partition(values, (lo, hi))
    return float(part[lo] + (part[hi] - part[lo]) * (pos - lo))


def _overrides(overrides: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key in KEYS:
        value = overrides.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"book source: override {key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"book source: override {key} must be finite, got {value!r}")
        out[key] = float(value)
    return out


def _knob(name: str, value: float | None, default: float) -> float:
    """A market knob of the request (None: the regime's own value); finite and >= 0."""
    if value is None:
        return default
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"book source: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def simulate(req: MeasureRequest, cfg: BookConfig | None = None) -> BookRun:
    """Simulate one symbol-iteration, deterministic in the request.

    Raises ConfigError for an unknown mode or symbol or a bad override or knob.
    """
    cfg = cfg or load_book_config()
    regime = cfg.regime(req.mode)
    spec = cfg.symbol(req.symbol)
    p = _overrides(req.overrides)
    clock, bot = cfg.clock, cfg.bot
    step_ms = float(clock.step_ms)

    market = build_market(
        cfg,
        regime,
        spec,
        seed=req.seed,
        mode=req.mode,
        symbol=req.symbol,
        iteration=req.iteration,
        sigma_scale=_knob("sigma_scale", req.sigma_scale, 1.0),
        jumps_per_min=_knob("spike_prob", req.spike_prob, regime.jumps_per_min),
        jump_bps=_knob("gap_bps", req.gap_bps, regime.jump_bps),
    )
    mid_l = market.mid.tolist()
    decided = schedule_quotes(
        mid_l,
        steps=clock.steps,
        step_ms=step_ms,
        requote_bps=regime.requote_bps,
        tail_age_ms=p["tail_age_ms"],
        min_interval_ms=p["min_interval_ms"],
        replace_rate_per_min=p["replace_rate_per_min"],
        burst_s=bot.burst_s,
        urgent_bps=regime.half_spread_bps,
    )
    sched = add_latency(
        decided,
        market,
        regime,
        spec,
        step_ms=step_ms,
        min_interval_ms=p["min_interval_ms"],
        exchange_limit_per_min=bot.exchange_limit_per_min,
        rate_window_ms=bot.rate_window_ms,
    )
    target = position_target(
        market.signal,
        cap=p["impact_cap_ratio"] * bot.target_per_impact_cap,
        step_cap=p["max_delta_ratio"] * bot.target_step_per_max_delta,
    )
    fills = simulate_fills(
        cfg,
        regime,
        spec,
        market,
        sched,
        mid_l,
        target,
        half_spread_bps=regime.half_spread_bps + p["base_spread_bps_delta"],
        clip=p["impact_cap_ratio"] * bot.clip_per_impact_cap,
        max_delta=p["max_delta_ratio"],
        min_interval_ms=p["min_interval_ms"],
    )
    return _summarise(
        req, cfg, market.jump_count, market.gap_count, sched.latency_ms, sched.live_ms, fills
    )


def _summarise(
    req: MeasureRequest,
    cfg: BookConfig,
    jump_count: int,
    gap_count: int,
    action_latency_ms: np.ndarray,
    live_ms: np.ndarray,
    fills: Fills,
) -> BookRun:
    fees = cfg.fees
    maker_vol = float(fills.maker_size.sum())
    taker_vol = float(fills.hedge_size.sum())
    total_vol = maker_vol + taker_vol
    maker_pnl = float(fills.maker_size @ (fills.maker_markout_bps + fees.maker_rebate_bps))
    taker_pnl = -float(fills.hedge_size @ (fills.hedge_slippage_bps + fees.taker_fee_bps))
    n_act = int(action_latency_ms.size)
    # Every action sends two messages; re-posts and hedge orders have their own latencies.
    latencies = np.concatenate([action_latency_ms, action_latency_ms, fills.extra_latency_ms])
    ages = np.concatenate([np.diff(live_ms, axis=0).ravel(), fills.maker_age_ms])
    # Each action after the first cancels both resting orders, except a side a fill had emptied.
    cancels = max(0, 2 * (n_act - 1) - fills.rearmed)
    placements = 2 * n_act + fills.reposts

    values = {
        "net_bps": (maker_pnl + taker_pnl) / total_vol if total_vol > 0 else 0.0,
        "adverse_bps_p95": weighted_quantile(-fills.maker_markout_bps, fills.maker_size, P95),
        "slippage_bps_p95": weighted_quantile(fills.hedge_slippage_bps, fills.hedge_size, P95),
        "risk_ratio": min(1.0, fills.mean_abs_inventory),
        "maker_taker_ratio": maker_vol / total_vol if total_vol > 0 else 1.0,
        "p95_latency_ms": quantile(latencies, P95),
        "cancel_ratio": cancels / placements if placements else 0.0,
        "order_age_p95_ms": quantile(ages, P95),
    }
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:  # a bug, never a market outcome: fail the iteration rather than report a number
        raise MetricsError(
            f"book simulator produced non-finite {', '.join(bad)} for "
            f"{req.symbol} {req.mode} seed {req.seed} iteration {req.iteration}"
        )
    metrics: dict[str, Any] = {k: _r(v) for k, v in values.items()}
    metrics.update(
        fills=int(fills.maker_size.size + fills.hedge_size.size),
        snipes=int(fills.snipes),
        mock_mode=req.mode,
        mock_seed=req.seed,
        spike_count=int(jump_count),
        gap_events=int(gap_count),
    )
    return BookRun(
        metrics=metrics,
        quote_actions=n_act,
        edge_bps_per_fill=_r(maker_pnl / maker_vol) if maker_vol > 0 else 0.0,
        maker_volume=_r(maker_vol),
        taker_volume=_r(taker_vol),
        informed_fills=int(fills.informed_fills),
        hedge_orders=int(fills.hedge_size.size),
    )


def _r(x: float) -> float:
    return round(float(x), 4) + 0.0  # + 0.0 turns -0.0 into 0.0


class BookSimulator:
    """MetricsSource ``book``: the seeded market-making simulator (mock: no real bot involved)."""

    name = "book"
    mock = True

    def measure(self, req: MeasureRequest) -> dict[str, Any]:
        """KPI_KEYS + DIAGNOSTICS + MOCK_META_KEYS for one symbol-iteration.

        Raises ConfigError (bad mode, symbol, override or knob) or MetricsError.
        """
        return simulate(req).metrics
