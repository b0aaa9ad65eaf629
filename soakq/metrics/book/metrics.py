"""KPIs of one simulated symbol-iteration, with their definitions and units.

Prices are log-mids in bp (``P = P0 * exp(x / 1e4)``), so every bp figure below is exact:

- ``adverse_bps_p95`` (bp): the markout from the mid. For a maker fill with side sign s (+1 the
  bot bought) at mid ``M_t`` (the mid just before the fill; the pre-jump mid for a sweep),
  ``adverse_bps = s * (M_t - M_{t+h}) / M_t * 1e4`` with ``h = clock.markout_ms`` (1 s): positive
  when the mid moved against the maker. The KPI is its volume-weighted 95th percentile over the
  iteration's maker fills. The captured half-spread is not in it.
- ``net_bps`` (bp per unit of traded volume): maker fills earn the captured half-spread
  ``s * (M_t - P) / M_t * 1e4`` minus their adverse markout plus the rebate (their PnL marked to
  ``M_{t+h}``); hedges pay the taker fee and their slippage. Sum over all fills / total volume.
- ``slippage_bps_p95`` (bp): volume-weighted p95 over hedge slices of half the market spread +
  impact + the mid's drift against the hedge between its decision and its execution; a p95
  below zero (every slice improved on the mid) is reported as 0 (the KPI's range is >= 0).
- ``risk_ratio``: time-average |inventory| / inventory limit, capped at 1.
- ``maker_taker_ratio``: maker volume / (maker + hedge volume).
- ``p95_latency_ms`` (ms): 95th percentile of the round trip over all order messages
  (two per quote action, one per re-post, one per hedge slice).
- ``fills``: maker fills + hedge slices.
- ``cancel_ratio`` (diagnostic): share of the bot's placed orders that a *price-driven* requote
  cancelled (the mid moved beyond the requote tolerance or jumped), as opposed to orders that
  were filled or simply refreshed at ``tail_age_ms``: how much of the quoting is chasing the
  market. Placed orders = two per action + re-posts.
- ``order_age_p95_ms`` (diagnostic): p95 of order age at fill or cancel.
- ``snipes`` (diagnostic): maker fills on a quote at or through the mid (swept or picked off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from soakq.errors import MetricsError
from soakq.metrics.base import MeasureRequest
from soakq.metrics.book.config import BookConfig, Regime, SymbolSpec
from soakq.metrics.book.fills import KIND_INFORMED, KIND_SWEEP, Fills
from soakq.metrics.book.market import Market
from soakq.metrics.book.quotes import Schedule

Array = np.ndarray
P95 = 0.95


@dataclass(frozen=True)
class BookRun:
    """One simulated symbol-iteration: the port's metrics plus diagnostics for tests and docs."""

    metrics: dict[str, Any]  # exactly what BookSimulator.measure returns
    quote_actions: int  # requotes (each replaces both sides)
    edge_bps_per_fill: float  # captured half-spread - adverse + rebate, per unit of maker volume
    maker_volume: float  # in inventory-limit units
    taker_volume: float
    informed_fills: int
    sweep_fills: int
    hedge_orders: int
    adverse_bps_mean: float  # volume-weighted mean of the markout (the p95's centre)


def weighted_quantile(values: Array, weights: Array, q: float) -> float:
    """Smallest value whose cumulative weight reaches ``q`` of the total; 0.0 when empty."""
    if values.size == 0:
        return 0.0
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    pos = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[order][min(pos, values.size - 1)])


def quantile(values: Array, q: float) -> float:
    """Linear-interpolated quantile (numpy's default method) by partial sort; 0.0 when empty."""
    if values.size == 0:
        return 0.0
    pos = q * (values.size - 1)
    lo = int(pos)
    part = np.partition(values, lo)
    low = part[lo]
    high = part[lo + 1 :].min() if lo + 1 < values.size else low  # the next order statistic
    return float(low + (high - low) * (pos - lo))


def markouts(
    market: Market, sched: Schedule, fills: Fills, half_spread_bps: float, h: int
) -> tuple[Array, Array]:
    """Per maker fill: (captured half-spread, adverse markout), both in bp of the mid at fill."""
    mid = market.mid
    sign = 1.0 - 2.0 * fills.side
    at = mid[fills.step - (fills.kind == KIND_SWEEP)]
    price = mid[sched.step[fills.act]] - sign * half_spread_bps
    captured = sign * -np.expm1((price - at) / 1e4) * 1e4
    adverse = sign * -np.expm1((mid[fills.step + h] - at) / 1e4) * 1e4
    return captured, adverse


def hedge_slippage(market: Market, fills: Fills, regime: Regime, spec: SymbolSpec) -> Array:
    """Per hedge slice, bp: half the market spread + impact + the mid's drift against it."""
    mid = market.mid
    execute = np.minimum(fills.hedge_exec, mid.size - 1)
    drift = fills.hedge_dir * (mid[execute] - mid[fills.hedge_step])
    impact = regime.impact_bps_per_limit / spec.depth_scale
    return regime.touch_bps + impact * fills.hedge_size + drift


def _messages(sched: Schedule, fills: Fills) -> tuple[Array, Array, float]:
    """(latency of every order message, order ages at fill or cancel, cancel ratio)."""
    lat = sched.latency_ms
    latencies = np.concatenate((lat.ravel(), lat[0, fills.repost_act], lat[0, fills.hedge_act]))
    n_act = sched.step.size
    cancel_ages = (sched.decided_ms[1:] - sched.live_ms[:, :-1]).ravel()
    # Both sides of every price-driven action but the last, less the sides a fill had emptied.
    driven = sched.price_driven
    emptied = fills.rearmed_act[fills.rearmed_act < n_act - 1]
    price_cancels = float(
        2 * np.count_nonzero(driven[: n_act - 1]) - np.count_nonzero(driven[emptied])
    )
    placed = 2 * n_act + fills.repost_act.size
    return latencies, np.maximum(cancel_ages, 0.0), price_cancels / placed if placed else 0.0


def summarise(
    req: MeasureRequest,
    cfg: BookConfig,
    regime: Regime,
    spec: SymbolSpec,
    market: Market,
    sched: Schedule,
    fills: Fills,
    half_spread_bps: float,
) -> BookRun:
    """The port's metrics dict (KPIs, diagnostics, mock metadata) and the run's diagnostics."""
    fees = cfg.fees
    captured, adverse = markouts(market, sched, fills, half_spread_bps, cfg.clock.markout_steps)
    slip = hedge_slippage(market, fills, regime, spec)
    maker_vol, taker_vol = float(fills.size.sum()), float(fills.hedge_size.sum())
    total_vol = maker_vol + taker_vol
    maker_pnl = float(fills.size @ (captured - adverse + fees.maker_rebate_bps))
    taker_pnl = -float(fills.hedge_size @ (slip + fees.taker_fee_bps))
    latencies, cancel_ages, cancel_ratio = _messages(sched, fills)
    fill_ages = fills.step * float(cfg.clock.step_ms) - fills.born_ms
    values = {
        "net_bps": (maker_pnl + taker_pnl) / total_vol if total_vol > 0 else 0.0,
        "adverse_bps_p95": weighted_quantile(adverse, fills.size, P95),
        "slippage_bps_p95": max(0.0, weighted_quantile(slip, fills.hedge_size, P95)),
        "risk_ratio": min(1.0, fills.mean_abs_inventory),
        "maker_taker_ratio": maker_vol / total_vol if total_vol > 0 else 1.0,
        "p95_latency_ms": quantile(latencies, P95),
        "cancel_ratio": cancel_ratio,
        "order_age_p95_ms": quantile(np.concatenate((cancel_ages, fill_ages)), P95),
    }
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:  # a bug, never a market outcome: fail the iteration rather than report a number
        raise MetricsError(
            f"book simulator produced non-finite {', '.join(bad)} for "
            f"{req.symbol} {req.mode} seed {req.seed} iteration {req.iteration}"
        )
    metrics: dict[str, Any] = {k: _r(v) for k, v in values.items()}
    metrics.update(
        fills=int(fills.size.size + fills.hedge_size.size),
        snipes=int(np.count_nonzero(captured <= 0.0)),
        mock_mode=req.mode,
        mock_seed=req.seed,
        spike_count=int(market.jump_count),
        gap_events=int(market.gap_count),
    )
    return BookRun(
        metrics=metrics,
        quote_actions=int(sched.step.size),
        edge_bps_per_fill=_r((maker_pnl / maker_vol) if maker_vol > 0 else 0.0),
        maker_volume=_r(maker_vol),
        taker_volume=_r(taker_vol),
        informed_fills=int(np.count_nonzero(fills.kind == KIND_INFORMED)),
        sweep_fills=int(np.count_nonzero(fills.kind == KIND_SWEEP)),
        hedge_orders=int(fills.hedge_size.size),
        adverse_bps_mean=_r(float(fills.size @ adverse) / maker_vol if maker_vol > 0 else 0.0),
    )


def _r(x: float) -> float:
    return round(float(x), 4) + 0.0  # + 0.0 turns -0.0 into 0.0
