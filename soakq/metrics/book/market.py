"""The market of one symbol-iteration: mid path, jumps, venue slowdowns and what others do.

Everything random (the mid and its jumps, the venue's latency, other traders' arrivals and
sizes, the bot's timer phase and position signal) comes from one RNG stream seeded by (seed,
mode, symbol, iteration), drawn in full, in a fixed order and size, before the bot's parameters
are looked at: two runs that differ only in the parameters see the same market and the same
counterparties (common random numbers), which keeps paired comparisons clean and makes "a
parameter never changes the market path" true by construction. The draws whose count depends on
the market knobs (jumps, hiccups) come last, so a knob never shifts the others.

Units: time in ms, prices in bp of log-price relative to the opening mid (a price is
``P0 * exp(x / 1e4)``), sizes in units of the inventory limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from soakq.metrics.base import derive_seed
from soakq.metrics.book.config import BookConfig, Regime, SymbolSpec

Array = np.ndarray

# Fields of the per-step auxiliary random word (16-bit uniforms), see ``aux_uniform``.
AUX_SIZE, AUX_LAT_1, AUX_LAT_2, AUX_INFORMED = 0, 1, 2, 3


@dataclass(frozen=True)
class Market:
    """One symbol-iteration's market and counterparties; independent of the bot's parameters."""

    mid: Array  # (steps + markout_steps,) log-mid in bp
    move_ahead: Array  # (steps,) the mid's diffusive move over the next markout horizon (bp):
    # what informed takers know (a jump is news to everyone)
    jump_steps: Array  # sorted steps whose mid jumped (the jump happens going into that step)
    jump_count: int
    gap_count: int
    u_fill: Array  # (2, steps) uniforms deciding uninformed fills and sweeps, [side, step]
    takers: Takers  # the (side, step)s whose uninformed taker could fill some quote
    aux: Array  # (steps,) uint64: 16-bit uniforms per step (taker size, jitters, informed)
    phase: Array  # (steps,) the bot's timer phase at each step, uniform in [0, 1)
    burst_ms: Array  # sorted start times of venue latency bursts (jumps and hiccups)
    burst_boost: Array  # their boost: latency *= 1 + boost * exp(-dt / burst_decay_ms)
    latency_level: float  # the venue's load in this window: idle latency *= this (lognormal)
    signal: list[float]  # per target tick, in [-1, 1]: the bot's position signal


def _rng(seed: int, mode: str, symbol: str, iteration: int) -> np.random.Generator:
    seed64 = derive_seed("book-v2", seed, mode, symbol, iteration)
    return np.random.Generator(np.random.SFC64(seed64))


def logistic_increments(rng: np.random.Generator, n: int) -> Array:
    """``n`` logistic draws with mean 0 and variance 1 (``sqrt(3)/pi * log(u / (1 - u))``).

    The mid's per-step shocks: a little fatter-tailed than Gaussian at one step, Gaussian to the
    eye after ten (central limit), and three times cheaper to draw than numpy's normals.
    """
    u = rng.random(n)
    np.divide(u, 1.0 - u, out=u)
    np.log(u, out=u)
    u *= math.sqrt(3.0) / math.pi
    return u


def aux_uniform(aux: Array, field: int) -> Array:
    """The 16-bit uniform ``field`` of each auxiliary word, in (0, 1) (never 0 or 1)."""
    bits = (aux >> np.uint64(16 * field)) & np.uint64(0xFFFF)
    return (bits.astype(np.float64) + 0.5) * (1.0 / 65536.0)


@dataclass(frozen=True)
class Takers:
    """The uninformed takers that could fill some quote (see ``uninformed_takers``), step order
    within each side, bids first. Every other (side, step) fills nothing, whatever the quotes."""

    at: Array  # flat index side * steps + step into (2, steps) arrays
    step: Array
    side: Array  # 0: the taker sells to the bot's bid, 1: buys from its ask
    u: Array  # the taker's uniform (market.u_fill)
    reach: Array  # the deepest quote it could fill: a bid above it, an ask below it (log-price)
    bids: int  # how many of them face the bid (they come first)


def uninformed_takers(
    mid: Array, u_fill: Array, regime: Regime, spec: SymbolSpec, step_ms: float
) -> Takers:
    """The (side, step)s whose uninformed taker could fill a quote: an exact pre-filter.

    No quote fills at more than ``cap = max(max_fill_rate, crossed_rate)`` per second, and
    ``1 - exp(-x) <= x``, so a uniform ``u >= cap * dt`` fills nothing (kept with a 1e-9 margin
    against rounding). A quote at distance delta fills with probability ``1 - exp(-lambda * q *
    dt) <= A * dt * exp(-k * delta)`` (queue q <= 1, lambda <= A * exp(-k * delta), a crossed
    quote's rate at most A), so ``delta < log(A * dt / u) / k`` is necessary too: the reach.
    Neither needs the bot's quotes, so both are drawn with the market.
    """
    dt_s = step_ms / 1e3
    cap_dt = max(regime.max_fill_rate_per_s, regime.crossed_rate_per_s) * dt_s * (1.0 + 1e-9)
    at = np.flatnonzero(u_fill < cap_dt)
    u = u_fill.ravel()[at]
    n = u_fill.shape[1]
    side = (at >= n).astype(np.int64)
    step = at - n * side
    a_dt = max(regime.fill_a_per_s * spec.depth_scale, regime.crossed_rate_per_s) * dt_s
    reach = np.log(u)
    np.subtract(math.log(a_dt), reach, out=reach)
    reach *= 1.0 / regime.fill_k_per_bp  # the depth each taker reaches
    bids = int(np.searchsorted(at, n))
    np.subtract(mid[step[:bids]], reach[:bids], out=reach[:bids])
    np.add(mid[step[bids:]], reach[bids:], out=reach[bids:])
    return Takers(at, step, side, u, reach, bids)


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
    """Draw the market and the counterparties' randomness; independent of the bot's parameters.

    One RNG stream; the draws whose count depends on the market knobs (jumps, hiccups) come
    last, so a knob never shifts the counterparties' draws.
    """
    clock = cfg.clock
    n, h = clock.steps, clock.markout_steps
    rng = _rng(seed, mode, symbol, iteration)
    u_fill = rng.random((2, n))
    aux = rng.bit_generator.random_raw(n)
    phase = rng.random(n)
    signal = _signal(rng, cfg)
    sigma_step = regime.sigma_bps_sqrt_s * spec.vol_scale * sigma_scale
    diffusion = logistic_increments(rng, n + h)
    diffusion *= sigma_step * math.sqrt(clock.step_ms / 1000.0)
    np.cumsum(diffusion, out=diffusion)
    jump_steps, sizes, signed = _jumps(
        rng, n + h, jumps_per_min * clock.step_ms / 60_000.0, jump_bps
    )
    mid = _with_jumps(diffusion, jump_steps, signed)
    latency_level = math.exp(regime.latency_level_sigma * float(rng.standard_normal()))
    burst_ms, burst_boost = _bursts(rng, cfg, regime, jump_steps[jump_steps < n])
    in_run = jump_steps < n
    return Market(
        mid=mid,
        move_ahead=diffusion[h:] - diffusion[:n],
        jump_steps=jump_steps[in_run],
        jump_count=int(np.count_nonzero(in_run)),
        gap_count=int(np.count_nonzero(sizes[in_run] >= cfg.gap_threshold_bps)),
        u_fill=u_fill,
        takers=uninformed_takers(mid, u_fill, regime, spec, float(clock.step_ms)),
        aux=aux,
        phase=phase,
        burst_ms=burst_ms,
        burst_boost=burst_boost,
        latency_level=latency_level,
        signal=signal,
    )


def _jumps(
    rng: np.random.Generator, size: int, per_step: float, jump_bps: float
) -> tuple[Array, Array, Array]:
    """Jumps (Poisson, ``per_step`` per step): (steps, absolute sizes, signed sizes)."""
    count = int(rng.poisson(max(0.0, per_step) * size))
    if count == 0:  # draws of size 0 take nothing from the stream: skipping them changes nothing
        none = np.empty(0)
        return np.empty(0, dtype=np.int64), none, none
    at = np.unique(rng.integers(1, size, count))
    # Mean size jump_bps, never below half of it: a jump or gap is a real move, not noise.
    sizes = jump_bps * (0.5 + 0.5 * rng.exponential(1.0, at.size))
    signed = np.where(rng.random(at.size) < 0.5, sizes, -sizes)
    return at, sizes, signed


def _with_jumps(diffusion: Array, at: Array, signed: Array) -> Array:
    """The mid: the diffusion plus the cumulative jump since each jump step (one add each)."""
    if at.size == 0:
        return diffusion
    mid = diffusion.copy()
    bounds = [*at.tolist(), diffusion.size]
    for k, level in enumerate(np.cumsum(signed).tolist()):
        lo, hi = bounds[k], bounds[k + 1]
        np.add(diffusion[lo:hi], level, out=mid[lo:hi])
    return mid


def _bursts(
    rng: np.random.Generator, cfg: BookConfig, regime: Regime, jump_steps: Array
) -> tuple[Array, Array]:
    """Venue latency bursts: one per jump, plus Poisson hiccups; (start ms, boost), sorted."""
    end_ms = cfg.clock.steps * cfg.clock.step_ms
    count = int(rng.poisson(regime.hiccups_per_min * end_ms / 60_000.0))
    start = np.concatenate((jump_steps * float(cfg.clock.step_ms), rng.random(count) * end_ms))
    boost = np.concatenate(
        (
            np.full(jump_steps.size, regime.jump_latency_boost),
            rng.exponential(regime.hiccup_boost, count),
        )
    )
    order = np.argsort(start, kind="stable")
    return start[order], boost[order]


def _signal(rng: np.random.Generator, cfg: BookConfig) -> list[float]:
    """AR(1) signal with unit variance and time constant ``signal_tau_s``, clipped to [-1, 1].

    ``x_k = rho^k * (x_0 + sum_{j=1..k} rho^-j e_j)``, evaluated in chunks short enough that
    ``rho^-j`` stays below e^27.
    """
    bot = cfg.bot
    ticks = cfg.clock.steps * cfg.clock.step_ms // bot.target_tick_ms + 1
    decay = bot.target_tick_ms / (1000.0 * bot.signal_tau_s)  # -ln(rho)
    rho = math.exp(-decay)
    shocks = rng.standard_normal(ticks) * math.sqrt(1.0 - rho * rho)
    shocks[0] /= math.sqrt(1.0 - rho * rho)  # start in the stationary distribution
    chunk = max(1, int(27.0 / decay))
    down, up = _ar1_weights(decay, min(chunk, ticks))
    out = np.empty(ticks)
    carry = 0.0
    for start in range(0, ticks, chunk):
        e = shocks[start : start + chunk]
        x = down[: e.size] * (rho * carry + np.cumsum(e * up[: e.size]))
        out[start : start + e.size] = x
        carry = float(x[-1])
    out /= bot.signal_full_scale
    np.clip(out, -1.0, 1.0, out=out)
    return out.tolist()


@lru_cache(maxsize=8)
def _ar1_weights(decay: float, size: int) -> tuple[Array, Array]:
    """``exp(-decay * k)`` and ``exp(decay * k)`` for k < size (cached: config constants)."""
    k = np.arange(size)
    return np.exp(-decay * k), np.exp(decay * k)


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


def burst_factor(market: Market, times_ms: Array, decay_ms: float) -> Array:
    """Venue slowdown at each time: ``1 + boost * exp(-(t - start) / decay)``, latest burst."""
    if market.burst_ms.size == 0 or decay_ms <= 0.0:
        return np.ones(times_ms.size)
    last = np.searchsorted(market.burst_ms, times_ms, side="right") - 1
    since = times_ms - market.burst_ms[np.maximum(last, 0)]
    boost = market.burst_boost[np.maximum(last, 0)] * np.exp(-since / decay_ms)
    return 1.0 + np.where(last >= 0, boost, 0.0)
