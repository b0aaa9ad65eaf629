"""One symbol-iteration of the `book` simulator, and the MetricsSource that serves it.

The passes, each in its own module: ``market`` (mid path, jumps, venue bursts, counterparties'
randomness; independent of the parameters), ``quotes`` (when the bot requotes and when its orders
rest), ``fills`` (who trades with them; inventory, re-posts and hedges), ``metrics`` (KPIs and
their definitions). The model is documented in ``docs/simulator.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from soakq.config import GAP_BPS, SIGMA_SCALE, SPIKE_PROB
from soakq.errors import ConfigError
from soakq.metrics.base import MeasureRequest
from soakq.metrics.book.config import BookConfig, load_book_config
from soakq.metrics.book.fills import simulate_fills
from soakq.metrics.book.market import build_market, position_target
from soakq.metrics.book.metrics import BookRun, summarise
from soakq.metrics.book.quotes import schedule_quotes
from soakq.params import KEYS, PARAMS, validate_value


def _overrides(overrides: Any) -> dict[str, float]:
    """The six overrides as floats, checked as the CLI checks them (``params.validate_value``:
    a number, whole where the parameter is, within its bounds: the range the simulator is
    calibrated on); an unknown key is refused too (a typo would silently do nothing)."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"book source: overrides must be a mapping of {', '.join(KEYS)}, got {overrides!r}"
        )
    unknown = sorted(str(k) for k in overrides if k not in PARAMS)
    if unknown:
        raise ConfigError(
            f"book source: unknown override {', '.join(unknown)}; allowed: {', '.join(KEYS)}"
        )
    out = {}
    for key in KEYS:
        value = overrides.get(key)
        if isinstance(value, np.generic):  # numpy's scalars are numbers too
            value = value.item()
        validate_value(key, value, layer="book source: override")
        assert isinstance(value, (int, float))
        out[key] = float(value)  # as given: the engine passes them normalized already
    return out


def _count(name: str, value: Any, least: int) -> int:
    """The request's seed or iteration: an int >= ``least``."""
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(f"book source: {name} must be an integer >= {least}, got {value!r}")
    return value


def _knob(name: str, value: Any, default: float, bounds: tuple[float, float]) -> float:
    """A market knob of the request (None: the regime's own value), within the bounds the CLI
    allows for it (soakq.config)."""
    if value is None:
        return default
    lo, hi = bounds
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not ok or not lo <= value <= hi:  # NaN fails the comparison
        raise ConfigError(f"book source: {name} must be a number in {lo:g}..{hi:g}, got {value!r}")
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
        seed=_count("seed", req.seed, 0),
        mode=req.mode,
        symbol=req.symbol,
        iteration=_count("iteration", req.iteration, 1),
        sigma_scale=_knob("sigma_scale", req.sigma_scale, 1.0, SIGMA_SCALE),
        jumps_per_min=_knob("spike_prob", req.spike_prob, regime.jumps_per_min, SPIKE_PROB),
        jump_bps=_knob("gap_bps", req.gap_bps, regime.jump_bps, GAP_BPS),
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
