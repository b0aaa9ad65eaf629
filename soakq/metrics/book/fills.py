"""Who trades with the bot's quotes: candidate fills (vectorised), then the sequential fill loop.

Once the schedule is known, so is the quote resting on each side at each step and its queue
priority ``1 - (1 - floor) * exp(-age / queue_tau_ms)``. Three kinds of takers can fill it:

- **Sweeps**: a jump that carries the mid through the quote takes it with probability = queue
  priority. The mid just before such a fill is the pre-jump mid.
- **Informed** takers know the mid's diffusive move over the next markout horizon. While it
  exceeds ``informed_move_bps`` toward a quote, they take it at ``informed_per_s`` x the quote's
  price age in seconds (time since its price was set; a re-post keeps the old price) x queue
  priority x shown size / ``informed_ref_clip``: the older the price, the likelier it predates
  the information they trade on, so the stalest quotes are picked off first.
- **Uninformed** takers fill at ``A * exp(-k * delta)`` (capped) times queue priority, delta the
  quote's distance from the *current* mid (``crossed_rate_per_s`` for a quote the mid moved
  through); their size is exponential with mean ``taker_size_mean``, capped by the shown size.

Every candidate compares a pre-drawn uniform with a probability at the order's original queue
priority; the loop (``kernels.fill_loop``) re-checks candidates on a re-posted order, whose
priority is lower, with the same uniform, so the thinning is exact and paired runs keep their
common random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soakq.metrics.book import kernels
from soakq.metrics.book.config import BookConfig, Regime, SymbolSpec
from soakq.metrics.book.market import AUX_INFORMED, AUX_SIZE, Market, aux_uniform
from soakq.metrics.book.quotes import Schedule

Array = np.ndarray
KIND_SWEEP, KIND_INFORMED, KIND_UNINFORMED = 0, 1, 2


@dataclass(frozen=True)
class Book:
    """The bot's quotes as the takers see them: which action rests where, at what price."""

    market: Market
    sched: Schedule
    live_step: Array  # (2, actions): first step each action's bid / ask rests (non-decreasing)
    price: Array  # (2, actions): log-price of each action's bid and ask
    quoted: Array  # (2, steps): log-price of the bid / ask resting at each step (NaN: none yet)
    step_ms: float
    queue_floor: float
    queue_tau_ms: float
    offset: int  # past every step and every bid's live step
    lives: Array  # both sides' live steps in one sorted array, the ask's shifted by offset

    def act_at(self, sd: Array, st: Array) -> Array:
        """Action whose quote rests on side ``sd`` at step ``st`` (-1 before the first)."""
        found = np.searchsorted(self.lives, st + sd * self.offset, side="right")
        return found - 1 - sd * self.live_step.shape[1]

    def dist(self, sd: Array, st: Array) -> Array:
        """Distance of that quote from the current mid, bp (< 0: the mid moved through it)."""
        sign = 1.0 - 2.0 * sd
        return sign * (self.market.mid[st] - self.quoted[sd, st])

    def queue(self, sd: Array, st: Array, act: Array) -> Array:
        """Queue priority of that quote at that step."""
        born = self.sched.live_ms[sd, act]
        age = st * self.step_ms - born
        return 1.0 - (1.0 - self.queue_floor) * np.exp(-age / self.queue_tau_ms)


@dataclass(frozen=True)
class Fills:
    """What happened to the bot's orders in one symbol-iteration (maker fills, then hedges)."""

    step: Array  # maker fills: step, side (0 bid: the bot buys, 1 ask), kind, action
    side: Array
    kind: Array
    act: Array
    size: Array  # inventory-limit units
    born_ms: Array  # when the filled order went live (age at fill = step * step_ms - born)
    hedge_step: Array  # hedge slices: decision step, execution step, size, direction, action
    hedge_exec: Array
    hedge_size: Array
    hedge_dir: Array
    hedge_act: Array
    rearmed_act: Array  # actions whose side a fill emptied until the next action (no cancel)
    repost_act: Array  # actions whose filled side was re-posted (one more order each)
    mean_abs_inventory: float  # time average of |inventory|, in inventory-limit units


def build_book(cfg: BookConfig, market: Market, sched: Schedule, half_spread_bps: float) -> Book:
    """Where and when each action's quotes rest, and the price resting on each side per step.

    An action's quote rests from the first step at or after its live time (FIFO per side, so
    those steps never decrease) until the next action's does; before the first: none (NaN).
    """
    n, step_ms = cfg.clock.steps, float(cfg.clock.step_ms)
    live_step = np.ceil(sched.live_ms / step_ms).astype(np.int64)
    centre = market.mid[sched.step]  # the bot prices off the mid it sees then
    acts = centre.size
    price = np.empty((2, acts))
    np.subtract(centre, half_spread_bps, out=price[0])
    np.add(centre, half_spread_bps, out=price[1])
    first = np.minimum(live_step, n)
    counts = np.empty((2, acts + 1), dtype=np.int64)  # steps each action rests (none first)
    counts[:, 0] = first[:, 0]
    np.subtract(first[:, 1:], first[:, :-1], out=counts[:, 1:acts])
    np.subtract(n, first[:, -1], out=counts[:, acts])
    quoted = np.empty((2, n))
    for s in (0, 1):
        quoted[s] = np.repeat(np.concatenate(([np.nan], price[s])), counts[s])
    bot = cfg.bot
    offset = max(int(live_step[0, -1]), n) + 1
    lives = (live_step + np.array([[0], [offset]])).ravel()
    return Book(
        market,
        sched,
        live_step,
        price,
        quoted,
        step_ms,
        bot.queue_floor,
        bot.queue_tau_ms,
        offset,
        lives,
    )


def _pack(st: Array, sd: Array, act: Array, kind: int, u: Array, x: Array, want: Array) -> tuple:
    return st, sd, act, np.full(st.size, kind), u, x, want


def _uninformed(book: Book, regime: Regime, spec: SymbolSpec) -> tuple:
    """Fills by uninformed takers: ``u < 1 - exp(-lambda(delta) * queue * dt)``."""
    takers = book.market.takers  # the exact pre-filter (market.uninformed_takers)
    quoted = book.quoted.ravel()[takers.at]  # NaN (no quote yet): never within reach
    within = np.empty(quoted.size, dtype=bool)
    b, reach = takers.bids, takers.reach
    np.greater(quoted[:b], reach[:b], out=within[:b])
    np.less(quoted[b:], reach[b:], out=within[b:])
    st, sd, u = takers.step[within], takers.side[within], takers.u[within]
    dt_s = book.step_ms / 1000.0
    act = book.act_at(sd, st)
    dist = book.dist(sd, st)
    a_dt = regime.fill_a_per_s * spec.depth_scale * dt_s
    # A crossed quote (dist < 0) takes the crossed rate below; its exp is not needed (and would
    # overflow for a mid far through it).
    depth = np.maximum(dist, 0.0)
    lam = np.minimum(
        a_dt * np.exp(-regime.fill_k_per_bp * depth), regime.max_fill_rate_per_s * dt_s
    )
    x = np.where(dist < 0.0, regime.crossed_rate_per_s * dt_s, lam)
    keep = u < -np.expm1(-x * book.queue(sd, st, act))
    st, sd = st[keep], sd[keep]
    want = -regime.taker_size_mean * np.log(aux_uniform(book.market.aux[st], AUX_SIZE))
    return _pack(st, sd, act[keep], KIND_UNINFORMED, u[keep], x[keep], want)


def _informed(book: Book, regime: Regime, shown_ratio: float) -> tuple:
    """Informed takers (see module): rate x price age x queue before a move toward the quote."""
    market = book.market
    move = market.move_ahead
    st = np.flatnonzero(np.abs(move) > regime.informed_move_bps)
    sd = (move[st] > 0.0).astype(np.int64)  # the mid will rise: takers lift the ask
    act = book.act_at(sd, st)
    ok = act >= 0
    st, sd, act = st[ok], sd[ok], act[ok]
    age_s = (st * book.step_ms - book.sched.decided_ms[act]) / 1000.0  # since it was priced
    x = (regime.informed_per_s * shown_ratio * book.step_ms / 1000.0) * age_s
    u = aux_uniform(market.aux[st], AUX_INFORMED)
    keep = u < -np.expm1(-x * book.queue(sd, st, act))
    st = st[keep]
    return _pack(st, sd[keep], act[keep], KIND_INFORMED, u[keep], x[keep], st * 0.0)


def _sweeps(book: Book) -> tuple:
    """A jump through a resting quote takes it with probability = its queue priority."""
    jumps = book.market.jump_steps
    st = np.repeat(jumps, 2)
    sd = np.arange(st.size) & 1
    act = book.act_at(sd, st)
    hit = (act >= 0) & (book.dist(sd, st) < 0.0)
    st, sd, act = st[hit], sd[hit], act[hit]
    u = book.market.u_fill[sd, st]
    keep = u < book.queue(sd, st, act)
    st = st[keep]
    zeros = st * 0.0
    return _pack(st, sd[keep], act[keep], KIND_SWEEP, u[keep], zeros, zeros)


def candidates(
    cfg: BookConfig, regime: Regime, spec: SymbolSpec, book: Book, shown: float
) -> tuple[Array, ...]:
    """All possible fills at the orders' original queue priority, in time order (see module)."""
    shown_ratio = shown / cfg.bot.informed_ref_clip  # informed go where the size is
    parts = (
        _sweeps(book),
        _informed(book, regime, shown_ratio),
        _uninformed(book, regime, spec),
    )
    cols = tuple(np.concatenate(col) for col in zip(*parts, strict=True))
    st, sd, _, kind = cols[:4]
    order = np.argsort((st * 3 + kind) * 2 + sd, kind="stable")
    return tuple(col[order] for col in cols)


def simulate_fills(
    cfg: BookConfig,
    regime: Regime,
    spec: SymbolSpec,
    market: Market,
    sched: Schedule,
    target: list[float],
    *,
    half_spread_bps: float,
    clip: float,
    max_delta: float,
    min_interval_ms: float,
) -> Fills:
    """Candidate fills, then the loop over them with inventory, size skew, re-posts and hedges."""
    clock, bot = cfg.clock, cfg.bot
    n, step_ms = clock.steps, float(clock.step_ms)
    book = build_book(cfg, market, sched, half_spread_bps)
    shown = min(clip, max_delta)
    cols = candidates(cfg, regime, spec, book, shown)
    params = kernels.LoopParams(
        step_ms=step_ms,
        tick_steps=bot.target_tick_ms // clock.step_ms,
        end_ms=n * step_ms,
        clip=shown,
        size_skew=bot.size_skew_per_limit,
        hard=bot.deviation_hard_ratio,
        soft=bot.deviation_soft_ratio,
        hold_ms=bot.soft_hold_ms,
        back=bot.deviation_target_ratio,
        max_delta=max_delta,
        wait_ms=max(bot.fill_report_ms, min_interval_ms),
        queue_floor=bot.queue_floor,
        queue_tau_ms=bot.queue_tau_ms,
        report_ms=bot.fill_report_ms,
    )
    res = kernels.fill_loop(
        tuple(col.tolist() for col in cols),
        (sched.live_ms[0].data, sched.live_ms[1].data),  # memoryviews: no conversion
        sched.latency_ms[0].data,
        target,
        params,
    )
    taken = np.asarray(res.taken, dtype=np.int64)

    def ints(xs: list[int]) -> Array:
        return np.asarray(xs, dtype=np.int64)

    return Fills(
        step=cols[0][taken],
        side=cols[1][taken],
        kind=cols[3][taken],
        act=cols[2][taken],
        size=np.asarray(res.size, dtype=np.float64),
        born_ms=np.asarray(res.born_ms, dtype=np.float64),
        hedge_step=ints(res.hedge_step),
        hedge_exec=ints(res.hedge_exec),
        hedge_size=np.asarray(res.hedge_size, dtype=np.float64),
        hedge_dir=np.asarray(res.hedge_dir, dtype=np.float64),
        hedge_act=ints(res.hedge_act),
        rearmed_act=ints(res.rearmed_act),
        repost_act=ints(res.repost_act),
        mean_abs_inventory=res.area / (n * step_ms),
    )
