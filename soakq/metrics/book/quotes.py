"""The bot's quoting: when it requotes, and when its orders rest on the book.

The bot reacts to market data, one decision per step (``clock.step_ms``). Its quotes (both sides,
centred on the mid it saw) are refreshed when the mid has moved beyond the regime's requote
tolerance from that centre, **or** when they are ``tail_age_ms`` old, whichever comes first, and
never sooner than ``2 * min_interval_ms`` after the previous refresh (an action is two messages
``min_interval_ms`` apart). Each action spends two tokens of a bucket refilled at
``replace_rate_per_min`` and ``burst_s`` seconds deep; an action without tokens waits for them,
except a requote forced by a jump through the quotes (pulling a crossed quote never queues). While
it waits, or until the next trigger, the quote goes stale against the drifting mid.

Timers are checked on market-data steps: a duration of ``x`` ms becomes ``floor(x / step + u)``
steps with ``u`` the bot's timer phase at that step (a market draw), so the mean is exactly
``x / step`` and every millisecond of a parameter counts on average.

Message latency is the venue's (``market.burst_factor``: a lognormal round trip around the
regime's median, raised in bursts around jumps and venue hiccups) times a congestion factor
``1 + gain * u / (1 - u)``, u = the symbol's message rate over the trailing ``rate_window_ms`` /
the venue limit.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from statistics import NormalDist
from types import ModuleType

import numpy as np

from soakq.metrics.book import kernels
from soakq.metrics.book.config import BookConfig, Regime, SymbolSpec
from soakq.metrics.book.market import (
    AUX_LAT_1,
    AUX_LAT_2,
    Market,
    burst_factor,
)


def _compiled() -> ModuleType | None:
    """The C requote walk, built at install when a C compiler was there (setup.py); None
    without it, or (with a warning) when ``_requote.c`` has changed since it was built (an
    editable checkout after a pull: the build would not be the code)."""
    try:
        from soakq.metrics.book import _requote
    except ImportError:  # no compiler at install: the numpy path, same outputs
        return None
    source = Path(__file__).with_name("_requote.c")
    if source.is_file():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        if getattr(_requote, "SOURCE_SHA256", None) != digest:
            warnings.warn(
                f"soakq: {_requote.__file__} was built from another _requote.c; the simulator "
                "takes its numpy path (same outputs, slower) until `pip install -e .` rebuilds it",
                RuntimeWarning,
                stacklevel=1,
            )
            return None
    return _requote


_requote = _compiled()
COMPILED = _requote is not None  # the requote walk runs compiled (docs/simulator.md, "Speed")

Array = np.ndarray
MAX_CONGESTION_U = 0.95  # the venue throttles beyond this share of its limit
MAX_SCAN_STEPS = 16  # the band scan looks at most this many steps ahead
JITTER_BITS = 12  # resolution of the lognormal jitter's normal quantile table


@dataclass(frozen=True)
class Schedule:
    """The bot's quote actions (each replaces both sides: two messages)."""

    step: Array  # decision step of each action
    decided_ms: Array
    price_driven: Array  # bool: the action's quotes were replaced because the mid moved
    latency_ms: Array  # (2, actions): round trip of the action's first and second message
    live_ms: Array  # (2, actions): when the new bid / ask rest on the book (FIFO per side)


def timer_steps(phase: Array, steps: float) -> Array:
    """(n,) int32: ``floor(phase + steps)``, at least 1: a timer of ``steps`` (a duration / the
    step) checked on steps."""
    out = (phase + steps).astype(np.int32)
    np.maximum(out, 1, out=out)
    return out


@lru_cache(maxsize=4)
def step_index(n: int) -> Array:
    """(n + 1,) int32 ``0, 1, ..., n``, read-only (shared by every call)."""
    idx = np.arange(n + 1, dtype=np.int32)
    idx.flags.writeable = False
    return idx


@dataclass(frozen=True)
class Triggers:
    """What the market implies for the next action after one at each step (see trigger_table)."""

    code: Array  # (steps,) int32: 2 * step of the next action wanted + price (1: the mid moved)
    exit_j: Array  # (steps,) int8: steps until the mid left the band (width + 1: it stayed in)
    width: int  # how many steps ahead the mid was scanned


def exit_steps(mid: Array, n: int, tol_bps: float, width: int) -> Array:
    """(n,) int8: per step a, the first j in 1..width with ``|mid[a + j] - mid[a]| > tol_bps``.

    Compared as ``mid[a + j] > mid[a] + tol`` or ``< mid[a] - tol``; ``width + 1`` when the mid
    stayed inside. One pass per j: two comparisons and a running "still inside" mask, whose
    count of steps is the exit.
    """
    base = mid[:n]
    hi = base + tol_bps
    lo = base - tol_bps
    exit_j = np.ones(n, dtype=np.int8)
    inside = np.ones(n, dtype=bool)  # still inside the band at every step so far
    within = np.empty(n, dtype=bool)
    for j in range(1, width + 1):
        ahead = mid[j : n + j]
        np.less_equal(ahead, hi, out=within)
        inside &= within
        np.greater_equal(ahead, lo, out=within)
        inside &= within
        exit_j += inside  # the first exit is 1 + the number of steps it stayed inside
    return exit_j


def trigger_table(mid: Array, n: int, *, tol_bps: float, tail: Array, gap: Array) -> Triggers:
    """Per step a: ``2 * next + price`` and how soon the mid left the band around ``mid[a]``.

    The next action after one at a comes at the first step the mid is more than ``tol_bps`` from
    ``mid[a]`` (price = 1), or at ``a + tail[a]`` (age, price = 0), whichever is first, but not
    before ``a + gap[a]``. The mid is scanned at most ``min(len(mid) - n, 16)`` steps ahead; the
    exit is past that when it stayed inside.
    """
    width = int(min(tail.max(), mid.size - n, MAX_SCAN_STEPS))
    exit_j = exit_steps(mid, n, tol_bps, width)
    code = np.minimum(exit_j, tail, dtype=np.int32)
    np.maximum(code, gap, out=code)
    code += step_index(n)[:n]
    code <<= 1
    code += exit_j <= tail  # price: the mid left the band before the age refresh
    return Triggers(code, exit_j, width)


def urgent_steps(trig: Triggers, jump_steps: Array, tail: Array) -> Array:
    """Per step: is its next action forced by a jump (its trigger step is a jump step)?"""
    urgent = np.zeros(trig.exit_j.size, dtype=bool)
    if jump_steps.size == 0:
        return urgent
    a = (jump_steps[:, None] - np.arange(1, trig.width + 1)).ravel()
    a = a[a >= 0]
    exit_j = trig.exit_j[a]
    hit = (exit_j <= tail[a]) & np.isin(a + exit_j, jump_steps)
    urgent[a[hit]] = True
    return urgent


def requote_steps(
    market: Market,
    n: int,
    *,
    tol_bps: float,
    tail_steps: float,
    gap_steps: float,
    interval: float,
    tolerance: float,
    compiled: bool | None = None,
) -> tuple[Array, Array]:
    """(actions,) int64 decision steps and (actions,) bool "the mid triggered it" of the quote
    actions: the trigger table walked under the replace budget (``kernels.walk_schedule``).

    ``tail_steps`` / ``gap_steps``: tail_age_ms and 2 x min_interval_ms in steps; ``interval``
    and ``tolerance``: the GCRA in steps, ``kernels.dyadic``. ``compiled`` takes the C walk
    (``_requote.c``: the same rule evaluated only at the steps it visits) instead of the numpy
    one, None (default) when it was built (``COMPILED``); both give the same bits
    (tests/unit/test_book_compiled.py). Raises RuntimeError when ``compiled`` is asked for and
    the extension was not built.
    """
    if compiled is None:
        compiled = COMPILED
    # A timer past the window acts as one of the whole window (the age refresh never comes first,
    # the gap ends the walk): clamped, both paths stay in int32 for any finite parameter.
    tail_steps = min(max(tail_steps, 0.0), float(n))
    gap_steps = min(max(gap_steps, 0.0), float(n))
    if compiled:
        if _requote is None:
            raise RuntimeError("the compiled requote walk was not built at install")
        raw_steps, raw_price = _requote.walk(
            market.mid,
            market.phase,
            np.ascontiguousarray(market.jump_steps, dtype=np.int64),
            n,
            tol_bps,
            tail_steps,
            gap_steps,
            interval,
            tolerance,
        )
        return np.frombuffer(raw_steps, dtype=np.int64), np.frombuffer(raw_price, dtype=bool)
    tail = timer_steps(market.phase, tail_steps)
    trig = trigger_table(
        market.mid, n, tol_bps=tol_bps, tail=tail, gap=timer_steps(market.phase, gap_steps)
    )
    steps = kernels.walk_schedule(
        trig.code,
        urgent_steps(trig, market.jump_steps, tail),
        n,
        interval=interval,
        tolerance=tolerance,
    )
    return steps, (trig.code[steps] & 1).astype(bool)


def schedule_quotes(
    cfg: BookConfig,
    regime: Regime,
    spec: SymbolSpec,
    market: Market,
    *,
    min_interval_ms: float,
    replace_rate_per_min: float,
    tail_age_ms: float,
) -> Schedule:
    """The bot's quote actions, their message latencies and live times for one symbol-iteration."""
    clock, bot = cfg.clock, cfg.bot
    n, step_ms = clock.steps, float(clock.step_ms)
    # The replace budget as a GCRA (virtual-scheduling form of the token bucket): an action
    # costs two replacements, the bucket holds max(2, rate * burst_s / 60) of them.
    per_step = replace_rate_per_min * step_ms / 60_000.0
    depth = max(2.0, replace_rate_per_min * bot.burst_s / 60.0)
    steps, price_driven = requote_steps(
        market,
        n,
        tol_bps=regime.requote_bps,
        tail_steps=tail_age_ms / step_ms,
        gap_steps=2.0 * min_interval_ms / step_ms,
        interval=kernels.dyadic(2.0 / per_step),
        tolerance=kernels.dyadic((depth - 2.0) / per_step),
    )
    decided_ms = steps * step_ms
    latency = action_latency(cfg, regime, spec, market, steps, decided_ms, min_interval_ms)
    # The bot alternates the side it sends first, so neither side is always the stale one:
    # even actions send the bid first, odd ones the ask; the second goes min_interval later.
    live = decided_ms + latency
    live[1] += min_interval_ms
    live[:, 1::2] = live[::-1, 1::2]
    np.maximum.accumulate(live, axis=1, out=live)
    return Schedule(
        step=steps,
        decided_ms=decided_ms,
        price_driven=price_driven,
        latency_ms=latency,
        live_ms=live,
    )


@lru_cache(maxsize=8)
def _jitter_table(sigma: float) -> Array:
    """``exp(sigma * z)`` at the standard normal quantiles z of the midpoints of 2**JITTER_BITS
    equal probability bins: the lognormal jitter of one message, by its 12-bit uniform."""
    size = 1 << JITTER_BITS
    inv = NormalDist().inv_cdf
    z = np.array([inv((i + 0.5) / size) for i in range(size)])
    return np.exp(sigma * z)


def action_latency(
    cfg: BookConfig,
    regime: Regime,
    spec: SymbolSpec,
    market: Market,
    steps: Array,
    decided_ms: Array,
    min_interval_ms: float,
) -> Array:
    """(2, actions) round trips in ms of each action's first and second message (see module)."""
    bot = cfg.bot
    aux = market.aux[steps]
    venue = (regime.latency_ms * spec.latency_scale * market.latency_level) * burst_factor(
        market, decided_ms, regime.burst_decay_ms
    )
    first = np.searchsorted(decided_ms, decided_ms - bot.rate_window_ms, side="right")
    in_window = np.arange(decided_ms.size) - first + 1
    per_min = 2.0 * in_window * (60_000.0 / bot.rate_window_ms)
    u = np.minimum(per_min / bot.exchange_limit_per_min, MAX_CONGESTION_U)
    common = venue * (1.0 + regime.congestion_gain * u / (1.0 - u))
    fields = aux >> np.array(
        [[16 * AUX_LAT_1 + 16 - JITTER_BITS], [16 * AUX_LAT_2 + 16 - JITTER_BITS]], dtype=np.uint64
    )
    fields &= np.uint64((1 << JITTER_BITS) - 1)
    out = _jitter_table(regime.latency_sigma)[fields]
    out *= common
    # The venue handles a session's messages in order: the second message, sent
    # min_interval_ms after the first, completes no sooner than service_ms after it.
    np.maximum(out[1], out[0] + (bot.session_service_ms - min_interval_ms), out=out[1])
    return out
