"""One symbol-iteration of the `book` simulator, and the MetricsSource that serves it.

The passes, each in its own module: ``market`` (mid path, jumps, venue bursts, counterparties'
randomness; independent of the parameters), ``quotes`` (when the bot requotes and when its orders
rest), ``fills`` (who trades with them; inventory, re-posts and hedges), ``metrics`` (KPIs and
their definitions). The model is documented in ``docs/simulator.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from soakq.errors import ConfigError
from soakq.metrics.base import MeasureRequest
from soakq.metrics.book.config import BookConfig, load_book_config
from soakq.metrics.book.fills import simulate_fills
from soakq.metrics.book.market import build_market, position_target
from soakq.metrics.book.metrics import BookRun, summarise
from soakq.metrics.book.quotes import schedule_quotes
from soakq.params import KEYS, PARAMS


def _overrides(overrides: Mapping[str, Any]) -> dict[str, float]:
    """The six overrides as floats, each within its parameter's bounds (``params.PARAMS``, the
    range the simulator is calibrated on and the CLI and the tuner keep to)."""
    out = {}
    for key in KEYS:
        value = overrides.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"book source: override {key} must be a number, got {value!r}")
        p = PARAMS[key]
        if not p.lo <= value <= p.hi:  # NaN fails this too
            raise ConfigError(
                f"book source: override {key} must be within {p.lo:g}..{p.hi:g}, got {value:.6g}"
            )
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
    bot = cfg.bot
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
    sched = schedule_quotes(
        cfg,
        regime,
        spec,
        market,
        min_interval_ms=p["min_interval_ms"],
        replace_rate_per_min=p["replace_rate_per_min"],
        tail_age_ms=p["tail_age_ms"],
    )
    target = position_target(
        market.signal,
        cap=p["impact_cap_ratio"] * bot.target_per_impact_cap,
        step_cap=p["max_delta_ratio"] * bot.target_step_per_max_delta,
    )
    half_spread = regime.half_spread_bps + p["base_spread_bps_delta"]
    fills = simulate_fills(
        cfg,
        regime,
        spec,
        market,
        sched,
        target,
        half_spread_bps=half_spread,
        clip=p["impact_cap_ratio"] * bot.clip_per_impact_cap,
        max_delta=p["max_delta_ratio"],
        min_interval_ms=p["min_interval_ms"],
    )
    return summarise(req, cfg, regime, spec, market, sched, fills, half_spread)


class BookSimulator:
    """MetricsSource ``book``: the seeded market-making simulator (mock: no real bot involved)."""

    name = "book"
    mock = True

    def measure(self, req: MeasureRequest) -> dict[str, Any]:
        """KPI_KEYS + DIAGNOSTICS + MOCK_META_KEYS for one symbol-iteration.

        Raises ConfigError (bad mode, symbol, override or knob) or MetricsError.
        """
        return simulate(req).metrics
