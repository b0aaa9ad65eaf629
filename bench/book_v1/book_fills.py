"""Fills and hedges of the book simulator: a vectorised candidate pass, then a short event loop.

Once the schedule is known, so is the quote resting on each side at each step. From it every
step and side gets a fill probability for uninformed flow, ``A*exp(-k*delta)`` (capped) times
queue priority; a sweep probability at a jump through the quote; and a test for informed flow
(takers who know the mid one markout horizon ahead and trade when the move beats the quote by
``informed_edge_bps``). These are evaluated at the most favourable skew the loop could apply,
which leaves a few hundred *candidates*; the loop walks only those, in time order, with the real
inventory and skew, sides emptied by a fill until their re-post (whose queue priority starts
again), the position target, and the hedges. Each fill compares the same pre-drawn uniform with
a probability the loop can only lower, so this thinning is exact (a test walks every step and
gets the same result), and paired runs keep their common random numbers. The risk manager's
limit checks run on a fixed time grid and after each fill, never at candidate times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bench.book_v1.book_config import BookConfig, Regime, SymbolSpec
from bench.book_v1.book_engine import Market, Schedule

Array = np.ndarray


@dataclass(frozen=True)
class Fills:
    """What happened to the bot's orders in one symbol-iteration."""

    maker_size: Array
    maker_markout_bps: Array  # (mid after the markout horizon - fill price), signed for the bot
    maker_age_ms: Array
    maker_dist_bps: Array  # quote distance from the mid at the fill (< 0: sniped)
    snipes: int  # maker fills on quotes the mid had already moved through
    informed_fills: int
    hedge_size: Array
    hedge_slippage_bps: Array  # taker execution price vs the mid when the hedge was decided
    extra_latency_ms: Array  # latency of re-posts and hedge orders (quote actions are separate)
    reposts: int  # orders re-posted after a fill before the next quote action
    rearmed: int  # sides emptied by a fill and re-armed by the next quote action (no cancel)
    mean_abs_inventory: float  # time average of |inventory|, in inventory-limit units


def _in_force(live_ms: Array, n: int, step: float) -> Array:
    """Per step, the index of the last action live by then on one side (-1 before the first)."""
    live_step = np.ceil(live_ms / step).astype(np.int64)
    # live_ms is non-decreasing: keep the last action of each run of equal steps.
    last = np.flatnonzero(np.diff(live_step, append=np.iinfo(np.int64).max) != 0)
    last = last[live_step[last] < n]
    marks = np.full(n, -1, dtype=np.int64)
    marks[live_step[last]] = last
    return np.maximum.accumulate(marks)


def simulate_fills(
    cfg: BookConfig,
    regime: Regime,
    spec: SymbolSpec,
    market: Market,
    sched: Schedule,
    mid_l: list[float],
    target: list[float],
    *,
    half_spread_bps: float,
    clip: float,
    max_delta: float,
    min_interval_ms: float,
    exhaustive: bool = False,
) -> Fills:
    """Candidate fills (vectorised), then the event loop over candidates in time order.

    ``mid_l`` is ``market.mid`` as a list (the caller already has it for the schedule);
    ``target`` is the bot's position target per target tick (see ``position_target``).
    ``exhaustive`` walks every step and side instead of the candidates: slow, and identical
    by construction; it exists to check that the candidate filter is exact.
    """
    clock, bot = cfg.clock, cfg.bot
    n, h = clock.steps, clock.markout_steps
    step = float(clock.step_ms)
    dt_s = step / 1000.0
    mid = market.mid

    a_fill = regime.fill_a_per_s * spec.depth_scale
    informed_size = min(clip, max_delta)  # an informed taker takes all the bot shows
    # Informed traders go where they can get size: their arrival rate scales with the clip.
    a_inf = regime.informed_per_s * spec.depth_scale * informed_size / bot.informed_ref_clip
    k = regime.fill_k_per_bp
    lam_max = regime.max_fill_rate_per_s
    cross_rate = regime.crossed_rate_per_s
    skew_cap = bot.skew_cap_bps
    edge = regime.informed_edge_bps

    # Keys step*2 + side (0 bid, 1 ask) that could fill at all whatever the quote: the uniform is
    # below the largest possible fill probability, a jump, or an informed arrival. Exact, and it
    # keeps the per-parameter work to about a quarter of the steps.
    u_fill = market.u_fill.ravel()
    pre = u_fill < -math.expm1(-max(lam_max, cross_rate) * dt_s)
    if exhaustive:
        pre[:] = True
    informed_steps = np.flatnonzero(market.u_informed < -math.expm1(-a_inf * dt_s))
    for extra in (market.jump_steps, informed_steps):
        pre[2 * extra] = True
        pre[2 * extra + 1] = True
    keys = np.flatnonzero(pre)
    st = keys >> 1
    sd = keys & 1

    # The action whose quote rests on that side at that step, or -1 before the first one.
    bid_act = _in_force(sched.live_ms[:, 0], n, step)
    ask_act = _in_force(sched.live_ms[:, 1], n, step)
    act = np.where(sd == 0, bid_act[st], ask_act[st])
    ok = act >= 0
    keys, st, sd, act = keys[ok], st[ok], sd[ok], act[ok]
    born = sched.live_ms.ravel()[2 * act + sd]
    queue = 1.0 - (1.0 - bot.queue_floor) * np.exp((born - st * step) / bot.queue_tau_ms)
    sign = 1.0 - 2.0 * sd  # +1 bid (the bot buys), -1 ask
    dist = half_spread_bps + sign * (mid[st] - mid[sched.ref_step[act]])  # quote to mid, bp
    against = sign * (mid[st] - mid[st + h])  # mid move against a fill over the markout horizon
    near = dist - skew_cap  # the closest the quote can be once skewed
    crossed = near < 0.0
    # Upper bounds of the loop's rates: a quote that may be crossed once skewed may also end up
    # just outside the mid, so it gets the larger of both rates.
    lam_crossed = max(cross_rate, min(a_fill, lam_max))
    lam = np.where(crossed, lam_crossed, np.minimum(a_fill * np.exp(-k * near), lam_max)) * queue
    # At a jump, the sweep reaches a crossed quote with probability = its queue priority.
    swept = np.where(market.jump_at[st] & crossed, queue, 0.0)
    u_key = u_fill[keys]
    u_inf = market.u_informed[st]
    cand = u_key < 1.0 - (1.0 - swept) * np.exp(-lam * dt_s)
    cand |= (u_inf < -np.expm1(-a_inf * queue * dt_s)) & (against > near + edge)
    pick = np.flatnonzero(cand | exhaustive)
    c_n = st[pick]

    c_step = c_n.tolist()
    c_side = sd[pick].tolist()
    c_act = act[pick].tolist()
    c_queue = queue[pick].tolist()
    c_dist = dist[pick].tolist()
    c_against = against[pick].tolist()
    c_ufill = u_key[pick].tolist()
    c_uinf = u_inf[pick].tolist()
    c_jump = market.jump_at[c_n].tolist()
    c_taker = (-regime.taker_size_mean * np.log1p(-market.u_size[c_n])).tolist()
    live_ms = (sched.live_ms[:, 0].tolist(), sched.live_ms[:, 1].tolist())
    act_lat = sched.latency_ms.tolist()
    n_act = len(act_lat)
    last_step = len(mid_l) - 1

    exp = math.exp
    qf, qtau = bot.queue_floor, bot.queue_tau_ms
    gamma = bot.skew_bps_per_limit
    hard, soft = bot.deviation_hard_ratio, bot.deviation_soft_ratio
    back = bot.deviation_target_ratio
    hold_ms = bot.soft_hold_ms
    tick_steps = bot.target_tick_ms // clock.step_ms
    sweep = min(bot.sweep_clips * clip, max_delta)
    taker_cap = min(clip, max_delta)
    wait_ms = max(bot.fill_report_ms, min_interval_ms)
    impact = regime.impact_bps_per_limit / spec.depth_scale
    touch = regime.touch_bps
    end_ms = n * step

    m_size: list[float] = []
    m_mark: list[float] = []
    m_age: list[float] = []
    m_dist: list[float] = []
    h_size: list[float] = []
    h_slip: list[float] = []
    x_lat: list[float] = []
    snipes = informed = reposts = rearmed = 0
    inv = 0.0
    area = 0.0
    t_prev = 0.0
    over_since = math.inf  # since when |inventory - target| has been above the soft limit
    last_fill = [-math.inf, -math.inf]
    lat_now = act_lat[0] if act_lat else 0.0

    def hedge(at_ms: float, at_step: int) -> None:
        """Taker orders back to ``back`` from the target, max_delta per step after a round trip."""
        nonlocal inv, area, t_prev, over_since
        goal = target[at_step // tick_steps]
        dev = inv - goal
        new_inv = goal + (back if dev > 0 else -back)
        area += abs(inv) * (at_ms - t_prev)
        t_prev = at_ms
        dh = -1.0 if dev > 0 else 1.0
        excess = abs(inv - new_inv)
        n0 = at_step + int((bot.fill_report_ms + lat_now) // step) + 1
        m0 = mid_l[at_step]
        j = 0
        while excess > 1e-12:
            sl = excess if excess < max_delta else max_delta
            excess -= sl
            ne = n0 + j if n0 + j < last_step else last_step
            h_size.append(sl)
            h_slip.append(touch + impact * sl + dh * (mid_l[ne] - m0))
            x_lat.append(lat_now)
            j += 1
        inv = new_inv
        over_since = math.inf

    check_steps = bot.risk_check_ms // clock.step_ms
    next_check = 0  # the risk manager's checks run on a fixed grid, whatever the fills

    def risk_checks(until_step: int) -> None:
        """The risk manager's checks of |inventory - target| due up to ``until_step``."""
        nonlocal next_check, over_since
        while next_check <= until_step:
            at_ms = next_check * step
            dev = inv - target[next_check // tick_steps]
            if dev > hard or dev < -hard:
                hedge(at_ms, next_check)
            elif dev > soft or dev < -soft:
                if over_since == math.inf:
                    over_since = at_ms
                elif at_ms - over_since >= hold_ms:
                    hedge(at_ms, next_check)
            else:
                over_since = math.inf
            next_check += check_steps

    for c in range(len(c_step)):
        n_c = c_step[c]
        if next_check <= n_c:
            risk_checks(n_c)
        tn = n_c * step
        goal = target[n_c // tick_steps]
        dev = inv - goal
        s = c_side[c]
        a = c_act[c]
        live_a = live_ms[s][a]
        lf = last_fill[s]
        if lf >= live_a:  # emptied by a fill after this quote went live: re-posted later
            b_ms = lf + wait_ms + act_lat[a]
            if tn < b_ms:
                continue
            q = 1.0 - (1.0 - qf) * exp((b_ms - tn) / qtau)
        else:
            q = c_queue[c]
            b_ms = live_a
        sk = gamma * dev  # long versus the target: lower both quotes (buy less, sell more)
        if sk > skew_cap:
            sk = skew_cap
        elif sk < -skew_cap:
            sk = -skew_cap
        d = c_dist[c] + sk if s == 0 else c_dist[c] - sk
        ag = c_against[c]
        if c_uinf[c] < -math.expm1(-a_inf * q * dt_s) and ag > d + edge:
            informed += 1
            size = sweep if d < 0.0 else informed_size
        else:
            if d < 0.0:
                p_fill = 1.0 - exp(-cross_rate * q * dt_s)
                if c_jump[c]:
                    p_fill = 1.0 - (1.0 - q) * (1.0 - p_fill)
            else:
                lam_c = a_fill * exp(-k * d)
                if lam_c > lam_max:
                    lam_c = lam_max
                p_fill = 1.0 - exp(-lam_c * q * dt_s)
            if c_ufill[c] >= p_fill:
                continue
            if d < 0.0:
                size = sweep
            else:
                size = c_taker[c]
                if size > taker_cap:
                    size = taker_cap
        if d < 0.0:
            snipes += 1
        area += abs(inv) * (tn - t_prev)
        t_prev = tn
        inv += size if s == 0 else -size
        m_size.append(size)
        m_mark.append(d - ag)
        m_age.append(tn - b_ms)
        m_dist.append(d)
        last_fill[s] = tn
        lat_now = act_lat[a]
        if a + 1 < n_act and live_ms[s][a + 1] <= tn + wait_ms + lat_now:
            rearmed += 1
        else:
            reposts += 1
            x_lat.append(lat_now)
        dev = inv - goal
        if dev > hard or dev < -hard:
            hedge(tn, n_c)
        elif (dev > soft or dev < -soft) and over_since == math.inf:
            over_since = tn
    risk_checks(n - 1)
    area += abs(inv) * (end_ms - t_prev)

    return Fills(
        maker_size=np.asarray(m_size),
        maker_markout_bps=np.asarray(m_mark),
        maker_age_ms=np.asarray(m_age),
        maker_dist_bps=np.asarray(m_dist),
        snipes=snipes,
        informed_fills=informed,
        hedge_size=np.asarray(h_size),
        hedge_slippage_bps=np.asarray(h_slip),
        extra_latency_ms=np.asarray(x_lat),
        reposts=reposts,
        rearmed=rearmed,
        mean_abs_inventory=area / end_ms,
    )
