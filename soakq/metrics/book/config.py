"""Constants of the `book` simulator, loaded once from package data (regimes.json, symbols.json).

Every field is documented where it is declared, with its unit; the model that uses them is
described in ``docs/simulator.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources
from typing import Any

from soakq.errors import ConfigError
from soakq.jsonio import loads


@dataclass(frozen=True)
class Clock:
    """Simulated time: ``minutes`` of market per symbol-iteration at ``step_ms`` resolution."""

    step_ms: int  # one market-data tick: the mid moves and the bot decides once per step
    minutes: int
    markout_ms: int  # horizon h of the adverse-selection markout and of informed flow

    @property
    def steps(self) -> int:
        return self.minutes * 60_000 // self.step_ms

    @property
    def markout_steps(self) -> int:
        return max(1, self.markout_ms // self.step_ms)


@dataclass(frozen=True)
class Fees:
    """Venue fees in bp of notional."""

    maker_rebate_bps: float
    taker_fee_bps: float


@dataclass(frozen=True)
class Bot:
    """The bot's fixed behaviour; the six runtime parameters act on top of it.

    Sizes are in units of the inventory limit (risk_ratio = time-average |inventory| / 1.0).
    """

    clip_per_impact_cap: float  # quote clip = impact_cap_ratio * this (shown size per side)
    informed_ref_clip: float  # informed takers come at informed_per_s at this clip, pro rata
    signal_tau_s: float  # time constant of the bot's position signal (an AR(1), unit variance)
    signal_full_scale: float  # signal value at which the target reaches its cap
    target_tick_ms: int  # the position target is re-evaluated once per tick
    target_per_impact_cap: float  # |target| <= impact_cap_ratio * this
    target_step_per_max_delta: float  # target moves at most max_delta_ratio * this per tick
    size_skew_per_limit: float  # shown size on the side that adds to |inventory - target|
    # is clip * (1 - this * |inventory - target|), floored at 0 (size skew)
    deviation_hard_ratio: float  # |inventory - target| above this is hedged at once ...
    deviation_soft_ratio: float  # ... above this, once it has stayed there soft_hold_ms ...
    soft_hold_ms: float
    deviation_target_ratio: float  # ... with taker orders, back to this deviation
    queue_tau_ms: float  # queue priority = 1 - (1 - floor) * exp(-age / tau); reset on re-post
    queue_floor: float
    fill_report_ms: float  # a filled side is re-posted max(this, min_interval_ms) + latency later
    exchange_limit_per_min: float  # venue message limit per symbol: latency blows up near it
    rate_window_ms: float  # trailing window of the message-rate estimate driving congestion
    session_service_ms: float  # the venue serves a session's messages in order, this apart
    burst_s: float  # token-bucket depth of replace_rate_per_min, in seconds of budget


@dataclass(frozen=True)
class Regime:
    """Market regime: volatility, jumps, flow, depth and venue latency."""

    sigma_bps_sqrt_s: float  # volatility of the (log) mid, bp per sqrt(second)
    jumps_per_min: float
    jump_bps: float  # jump size = jump_bps * (0.5 + 0.5 * Exp(1)), random sign
    fill_a_per_s: float  # uninformed fill intensity A in A*exp(-k*delta), per side (depth)
    fill_k_per_bp: float
    max_fill_rate_per_s: float  # cap on A*exp(-k*delta) for a quote at or near the mid
    crossed_rate_per_s: float  # rate at which a quote the mid moved through is taken (x queue)
    informed_per_s: float  # informed takers know the mid's move over the markout horizon; when it
    # exceeds informed_move_bps toward a quote, they take it at this rate per second of the
    # quote's price age (x queue, at the reference clip): the stalest quotes go first
    informed_move_bps: float
    taker_size_mean: float  # mean size an uninformed taker wants, in inventory-limit units
    half_spread_bps: float  # the bot's base quoted half-spread in this regime (vol-adaptive)
    requote_bps: float  # the bot requotes when the mid moved beyond this from its quotes' mid
    touch_bps: float  # half the market spread a taker hedge crosses
    impact_bps_per_limit: float  # hedge impact per unit of inventory limit traded in one step
    latency_ms: float  # median venue round trip at idle
    latency_sigma: float  # lognormal sigma of one message's round trip around the window's level
    latency_level_sigma: float  # lognormal sigma of the venue's load level from window to window
    congestion_gain: float  # latency *= 1 + gain * u / (1 - u), u = message rate / venue limit
    jump_latency_boost: float  # latency *= 1 + boost * exp(-dt / burst_decay_ms) after a jump
    hiccups_per_min: float  # venue slowdowns unrelated to price (Poisson), same decay ...
    hiccup_boost: float  # ... with a boost drawn Exp(mean hiccup_boost)
    burst_decay_ms: float


@dataclass(frozen=True)
class SymbolSpec:
    """Per-symbol scaling of the regime (symbols.json)."""

    depth_scale: float  # scales fill intensity A and divides hedge impact
    latency_scale: float
    vol_scale: float


@dataclass(frozen=True)
class BookConfig:
    """Everything the simulator reads from package data."""

    clock: Clock
    fees: Fees
    bot: Bot
    gap_threshold_bps: float  # a jump at least this large counts as a gap event
    regimes: dict[str, Regime]
    symbols: dict[str, SymbolSpec]

    def regime(self, mode: str) -> Regime:
        """The regime named ``mode``; ConfigError naming the allowed ones otherwise."""
        try:
            return self.regimes[mode]
        except KeyError:
            raise ConfigError(
                f"unknown market mode {mode!r} for the book source; "
                f"allowed: {', '.join(self.regimes)}"
            ) from None

    def symbol(self, symbol: str) -> SymbolSpec:
        """The symbol's scaling; ConfigError naming the allowed symbols otherwise."""
        try:
            return self.symbols[symbol]
        except KeyError:
            raise ConfigError(
                f"unknown symbol {symbol!r} for the book source; "
                f"allowed: {', '.join(self.symbols)} (see soakq/data/symbols.json)"
            ) from None


def _build(cls: type, raw: Any, where: str) -> Any:
    """Build a frozen dataclass from a JSON object, naming the file section on any mismatch.

    Keys starting with "_" are notes and ignored. Every value must be a finite number >= 0;
    fields typed ``int`` must be whole numbers.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object, got {raw!r}")
    raw = {k: v for k, v in raw.items() if not k.startswith("_")}
    types = {f.name: f.type for f in fields(cls)}
    missing, unknown = types.keys() - raw.keys(), raw.keys() - types.keys()
    if missing or unknown:
        raise ConfigError(
            f"{where}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}"
        )
    values: dict[str, int | float] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}.{key}: expected a finite number >= 0, got {value!r}")
        if types[key] in ("int", int):
            if value != int(value):
                raise ConfigError(f"{where}.{key}: expected a whole number, got {value!r}")
            values[key] = int(value)
        else:
            values[key] = float(value)
    return cls(**values)


def _read(name: str) -> Any:
    text = resources.files("soakq.data").joinpath(name).read_text(encoding="utf-8")
    return loads(text, what=name)  # duplicate keys are refused, not last-wins


@lru_cache(maxsize=1)
def load_book_config() -> BookConfig:
    """The simulator's constants, read once per process. Raises ConfigError naming the key."""
    raw = _read("regimes.json")
    symbols = _read("symbols.json")
    if not isinstance(raw, dict) or not isinstance(symbols, dict):
        raise ConfigError("regimes.json and symbols.json must each hold a JSON object")
    try:
        cfg = BookConfig(
            clock=_build(Clock, raw["clock"], "regimes.json:clock"),
            fees=_build(Fees, raw["fees"], "regimes.json:fees"),
            bot=_build(Bot, raw["bot"], "regimes.json:bot"),
            gap_threshold_bps=float(raw["gap_threshold_bps"]),
            regimes={
                name: _build(Regime, r, f"regimes.json:regimes.{name}")
                for name, r in raw["regimes"].items()
            },
            symbols={
                name: _build(SymbolSpec, s, f"symbols.json:{name}") for name, s in symbols.items()
            },
        )
    except KeyError as exc:
        raise ConfigError(f"regimes.json: missing section {exc}") from None
    clock = cfg.clock
    if clock.step_ms <= 0 or 60_000 % clock.step_ms:
        raise ConfigError("regimes.json: clock.step_ms must be a positive divisor of 60000")
    tick = cfg.bot.target_tick_ms
    if tick <= 0 or tick % clock.step_ms:
        raise ConfigError("regimes.json: bot.target_tick_ms must be a positive multiple of step_ms")
    return cfg
