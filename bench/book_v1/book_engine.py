"""The book simulator's market and quoting passes: market path, position target, quote schedule.

Everything the market does (mid path, jumps) comes from one RNG stream and everything else that
is random (other traders' arrivals and sizes, latency jitter, the bot's position signal) from a
second one; both are drawn in full, in a fixed order and size, before the bot's parameters are
looked at. Two runs that differ only in the parameters therefore see the same market and the same
counterparties (common random numbers), which keeps paired comparisons clean.

Units: time in ms, prices in bp relative to the opening mid, sizes in units of the inventory limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.book_v1.book_config import BookConfig, Regime, SymbolSpec
from soakq.metrics.base import derive_seed

Array = np.ndarray


@dataclass(frozen=True)
class Market:
    """One symbol-iteration's market: mid path (steps + markout horizon) and what others do."""

    mid: Array  # bp, length steps + markout_steps
    jump_count: int
    gap_count: int
    u_latency: Array  # (steps,) uniforms giving the round-trip jitter of an action at that step
    u_fill: Array  # (steps, 2) uniforms deciding uninformed fills; column 0 bid, 1 ask
    u_informed: Array  # (steps,) uniforms deciding informed arrivals
    u_size: Array  # (steps,) uniforms giving an uninformed taker's size
    jump_at: Array  # (steps,) bool: the mid jumped into this step
    jump_steps: Array  # the same, as sorted step indices
    signal: list[float]  # per target tick, in [-1, 1]: the bot's position signal (see bot config)


def _rng(kind: str, seed: int, mode: str, symbol: str, iteration: int) -> np.random.Generator:
    seed64 = derive_seed("book", kind, seed, mode, symbol, iteration)
    return np.random.Generator(np.random.PCG64(seed64))


def build_market(
    cfg: BookConfig,
    regime: Regime,
    spec: SymbolSpec,
    *,
    seed: int,
    mode: str,
    symbol: str,
    iteration: int,
    sigma_scale: float,
    jumps_per_min: float,
    jump_bps: float,
) -> Market:
    """Draw the market and the counterparties' randomness; independent of the bot's parameters."""
    clock = cfg.clock
    n, h = clock.steps, clock.markout_steps
    dt_s = clock.step_ms / 1000.0

    mrng = _rng("market", seed, mode, symbol, iteration)
    z = mrng.standard_normal(n + h)
    u_jump = mrng.random(n + h)
    p_jump = min(1.0, max(0.0, jumps_per_min) * clock.step_ms / 60_000.0)
    at = np.flatnonzero(u_jump < p_jump)
    # Mean size jump_bps, never below half of it: a jump or gap is a real move, not noise.
    size = jump_bps * (0.5 + 0.5 * mrng.exponential(1.0, at.size))
    size = np.where(mrng.random(at.size) < 0.5, size, -size)
    steps_bp = regime.sigma_bps_sqrt_s * spec.vol_scale * sigma_scale * math.sqrt(dt_s) * z
    steps_bp[at] += size
    mid = np.cumsum(steps_bp)

    frng = _rng("flow", seed, mode, symbol, iteration)
    u_fill = frng.random((n, 2))
    u_informed = frng.random(n)
    u_size = frng.random(n)
    u_lat = np.clip(frng.random(n), 1e-9, 1.0 - 1e-9)  # keeps the log-logistic jitter finite
    signal = _signal(frng, cfg)

    jump_steps = at[at < n]
    jump_at = np.zeros(n, dtype=bool)
    jump_at[jump_steps] = True
    run_sizes = np.abs(size[at < n])
    return Market(
        mid=mid,
        jump_count=int(run_sizes.size),
        gap_count=int(np.count_nonzero(run_sizes >= cfg.gap_threshold_bps)),
        u_latency=u_lat,
        u_fill=u_fill,
        u_informed=u_informed,
        u_size=u_size,
        jump_at=jump_at,
        jump_steps=jump_steps,
        signal=signal,
    )


def _signal(rng: np.random.Generator, cfg: BookConfig) -> list[float]:
    """AR(1) signal with unit variance and time constant ``signal_tau_s``, clipped to [-1, 1]."""
    bot = cfg.bot
    ticks = cfg.clock.steps * cfg.clock.step_ms // bot.target_tick_ms + 1
    decay = bot.target_tick_ms / (1000.0 * bot.signal_tau_s)  # -ln(rho)
    rho = math.exp(-decay)
    shocks = rng.standard_normal(ticks) * math.sqrt(1.0 - rho * rho)
    shocks[0] /= math.sqrt(1.0 - rho * rho)  # start in the stationary distribution
    # x_k = rho^k * sum_{j<=k} rho^-j e_j, in chunks short enough that rho^-j stays below 1e12.
    chunk = max(1, int(27.0 / decay))
    out = np.empty(ticks)
    carry = 0.0
    for start in range(0, ticks, chunk):
        e = shocks[start : start + chunk]
        k = np.arange(e.size)
        x = np.exp(-decay * k) * (rho * carry + np.cumsum(e * np.exp(decay * k)))
        out[start : start + e.size] = x
        carry = float(x[-1])
    return np.clip(out / bot.signal_full_scale, -1.0, 1.0).tolist()


def position_target(signal: list[float], *, cap: float, step_cap: float) -> list[float]:
    """The bot's position target per tick: ``cap * signal``, moved at most ``step_cap`` per tick."""
    out = []
    p = 0.0
    for x in signal:
        move = cap * x - p
        if move > step_cap:
            move = step_cap
        elif move < -step_cap:
            move = -step_cap
        p += move
        out.append(p)
    return out


@dataclass(frozen=True)
class Schedule:
    """The bot's quote actions (each replaces both sides: two messages)."""

    decided_ms: Array
    ref_step: Array  # step whose mid the quotes are centred on
    latency_ms: Array
    live_ms: Array  # (actions, 2): when the new bid / ask rest on the book (FIFO per side)


def schedule_quotes(
    mid: list[float],
    *,
    steps: int,
    step_ms: float,
    requote_bps: float,
    tail_age_ms: float,
    min_interval_ms: float,
    replace_rate_per_min: float,
    burst_s: float,
    urgent_bps: float,
) -> Array:
    """Decision times (ms) of the bot's requotes; sequential by nature, one cheap step per action.

    The bot requotes when the mid moved ``requote_bps`` from its quotes' mid or when they are
    ``tail_age_ms`` old (by its own clock, from sending). An action is two messages (one per side)
    ``min_interval_ms`` apart, starts ``min_interval_ms`` after the previous message at the
    earliest, and needs two replacement tokens of a bucket refilled at ``replace_rate_per_min``
    and ``burst_s`` seconds deep. A move of ``requote_bps + urgent_bps`` or more (a jump through the
    quotes) does not wait for tokens, as pulling a crossed quote must not queue behind routine
    refreshes; the bucket goes into debt instead.
    """
    end_ms = steps * step_ms
    inv_step = 1.0 / step_ms
    refill_per_ms = replace_rate_per_min / 60_000.0
    bucket = max(2.0, replace_rate_per_min * burst_s / 60.0)
    # An action's second message goes min_interval_ms after its first; the next action's first
    # message min_interval_ms after that.
    gap_ms = 2.0 * min_interval_ms
    decided: list[float] = []
    record = decided.append
    tokens = bucket
    t = 0.0
    while t < end_ms:
        n = int(t * inv_step)
        record(t)
        tokens -= 2.0
        ref = mid[n]
        lo = ref - requote_bps
        hi = ref + requote_bps
        tail_ms = t + tail_age_ms
        jmax = int(tail_ms * inv_step) + 1
        if jmax > steps:
            jmax = steps
        j = n + 1
        while j < jmax and lo < mid[j] < hi:
            j += 1
        if j < jmax:
            nxt = j * step_ms
            urgent = not lo - urgent_bps < mid[j] < hi + urgent_bps
        else:
            nxt = tail_ms
            urgent = False
        if nxt < t + gap_ms:
            nxt = t + gap_ms
        tokens += (nxt - t) * refill_per_ms
        if tokens > bucket:
            tokens = bucket
        elif tokens < 2.0 and not urgent:
            nxt += (2.0 - tokens) / refill_per_ms
            tokens = 2.0
        t = nxt
    return np.asarray(decided)


def add_latency(
    decided_ms: Array,
    market: Market,
    regime: Regime,
    spec: SymbolSpec,
    *,
    step_ms: float,
    min_interval_ms: float,
    exchange_limit_per_min: float,
    rate_window_ms: float,
) -> Schedule:
    """Latency and live times of each action's two messages.

    Latency = idle round trip (log-logistic jitter around ``latency_ms``, raised for a while after
    a jump) times ``1 + gain*u/(1-u)``, u = the symbol's message rate over the trailing
    ``rate_window_ms`` / the venue limit: it grows as the bot's action rate nears the limit.
    The first message of action i goes to the bid when i is even, to the ask otherwise (the bot
    alternates so neither side is always the stale one); the second follows min_interval_ms later.
    """
    ref_step = (decided_ms / step_ms).astype(np.int64)
    u_lat = market.u_latency[ref_step]
    scale = regime.latency_jitter * math.sqrt(3.0) / math.pi
    base = (regime.latency_ms * spec.latency_scale) * np.exp(scale * np.log(u_lat / (1.0 - u_lat)))
    if regime.jump_latency_boost > 0.0 and market.jump_steps.size:
        prev = np.searchsorted(market.jump_steps, ref_step, side="right") - 1
        since_ms = decided_ms - market.jump_steps[np.maximum(prev, 0)] * step_ms
        boost = regime.jump_latency_boost * np.exp(-since_ms / regime.jump_latency_decay_ms)
        base *= 1.0 + np.where(prev >= 0, boost, 0.0)
    first = np.searchsorted(decided_ms, decided_ms - rate_window_ms, side="right")
    in_window = np.arange(decided_ms.size) - first + 1
    per_min = 2.0 * in_window * (60_000.0 / rate_window_ms)
    u = np.minimum(per_min / exchange_limit_per_min, 0.95)
    lat = base * (1.0 + regime.congestion_gain * u / (1.0 - u))
    early = decided_ms + lat
    late = early + min_interval_ms
    bid_first = (np.arange(decided_ms.size) & 1) == 0
    live = np.empty((decided_ms.size, 2))
    live[:, 0] = np.maximum.accumulate(np.where(bid_first, early, late))
    live[:, 1] = np.maximum.accumulate(np.where(bid_first, late, early))
    return Schedule(decided_ms=decided_ms, ref_step=ref_step, latency_ms=lat, live_ms=live)
