"""The book simulator's two sequential kernels, in plain Python over lists.

Everything that can be computed for all steps at once is vectorised elsewhere; what is left here
is inherently sequential (each action depends on the previous one's time and the token bucket;
each fill's size on the inventory the previous fills left) and runs once per action or per
candidate fill, a few thousand cheap iterations. A compiled kernel (numba) was measured and not
taken: importing numba and loading its cached machine code costs more per process than the whole
simulator spends in an embedded 24-iteration soak (docs/simulator.md, "Speed").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INF = math.inf


def walk_schedule(
    code: np.ndarray, urgent: set[int], n: int, *, interval: float, tolerance: float
) -> np.ndarray:
    """Steps of the bot's quote actions: follow the trigger table from step 0 under a budget.

    ``code[a] = 2 * next + price`` (``quotes.trigger_table``): the step the next action wants
    after one at ``a``, and whether the mid (1) or the orders' age (0) triggers it. The budget is
    a GCRA (the virtual-scheduling form of a token bucket): one action per ``interval`` steps on
    average, bursts ``tolerance`` steps ahead of that schedule. A requote the budget does not
    allow yet waits for it; a routine (age) refresh also leaves one action of budget in reserve
    for the next requote the mid may force; a requote forced by a jump (``a`` in ``urgent``)
    goes at once and the schedule runs late for it.
    """
    table = code.data  # a memoryview: Python ints without converting the whole table
    steps = np.empty(n, dtype=np.int64)
    out = steps.data
    ceil = math.ceil
    reserve = tolerance - interval  # an age refresh keeps one interval of burst in hand
    k = 0
    tat = 0.0  # theoretical arrival time of the next action under the budget
    a = 0
    while a < n:
        out[k] = a
        k += 1
        c = table[a]
        earliest = tat - (tolerance if c & 1 else reserve)
        c >>= 1
        if earliest > c and a not in urgent:
            c = ceil(earliest)
        tat = (tat if tat > c else c) + interval
        a = c
    return steps[:k]


@dataclass(frozen=True)
class LoopParams:
    """Scalars of the fill loop (see ``fill_loop``); times in ms, sizes in inventory limits."""

    step_ms: float
    tick_steps: int  # steps per position-target tick
    end_ms: float
    clip: float  # shown size per side before the size skew
    size_skew: float
    hard: float
    soft: float
    hold_ms: float
    back: float
    max_delta: float  # hedge slice per step
    wait_ms: float  # re-post delay after a fill, before the latency
    queue_floor: float
    queue_tau_ms: float
    report_ms: float  # fill report delay before a hedge is sent


@dataclass
class LoopResult:
    """What the fill loop decided: accepted candidates, hedge slices, inventory, messages."""

    taken: list[int] = field(default_factory=list)  # candidate indices that filled
    size: list[float] = field(default_factory=list)
    born_ms: list[float] = field(default_factory=list)  # when the filled order went live
    rearmed_act: list[int] = field(default_factory=list)  # action whose side a fill emptied
    # until the next action replaced it (no re-post, no cancel)
    repost_act: list[int] = field(default_factory=list)  # action whose filled side was re-posted
    hedge_step: list[int] = field(default_factory=list)  # decision step of each hedge slice
    hedge_exec: list[int] = field(default_factory=list)  # execution step of each slice
    hedge_size: list[float] = field(default_factory=list)
    hedge_dir: list[float] = field(default_factory=list)  # +1 buy, -1 sell
    hedge_act: list[int] = field(default_factory=list)  # action whose latency the slice took
    area: float = 0.0  # integral of |inventory| dt, inventory-limit x ms


def _refill_prob(kind: int, x: float, q: float) -> float:
    """Fill probability of a candidate on a re-posted order with queue priority ``q``."""
    if kind == 0:  # sweep: the jump takes the quote if our order is reached
        return q
    return 1.0 - math.exp(-x * q)  # informed and uninformed: x = intensity * dt


def _hedge(
    res: LoopResult, p: LoopParams, inv: float, goal: float, step: int, act: int, lat: float
) -> float:
    """Taker orders back to ``back`` from the target, ``max_delta`` per step; the new inventory."""
    dev = inv - goal
    new_inv = goal + (p.back if dev > 0 else -p.back)
    direction = -1.0 if dev > 0 else 1.0
    excess = abs(inv - new_inv)
    first = step + int((p.report_ms + lat) // p.step_ms) + 1
    j = 0
    while excess > 1e-12:
        sl = excess if excess < p.max_delta else p.max_delta
        excess -= sl
        res.hedge_step.append(step)
        res.hedge_exec.append(first + j)
        res.hedge_size.append(sl)
        res.hedge_dir.append(direction)
        res.hedge_act.append(act)
        j += 1
    return new_inv


def _hold_hedge(
    res: LoopResult,
    p: LoopParams,
    inv: float,
    t_prev: float,
    over_since: float,
    target: list[float],
    act: int,
    lat: float,
) -> tuple[float, float]:
    """The hedge of a soft breach at the end of its hold: (new inventory, its time)."""
    t_h = over_since + p.hold_ms
    res.area += abs(inv) * (t_h - t_prev)
    step = int(t_h // p.step_ms)
    return _hedge(res, p, inv, target[step // p.tick_steps], step, act, lat), t_h


def fill_loop(
    cand: tuple[list[Any], ...],
    live: tuple[memoryview, memoryview],
    act_latency: memoryview,
    target: list[float],
    p: LoopParams,
) -> LoopResult:
    """Walk the candidate fills in time order with the real inventory, re-posts and hedges.

    ``cand`` = (step, side, action, kind, uniform, x, wanted size) per candidate (see
    ``fills.candidates``); ``live`` the bid and ask live times per action. A fill empties its
    side until the re-post (``wait_ms`` + latency later, with a fresh queue) or the next action.
    The side that adds to ``|inventory - target|`` shows ``clip * (1 - size_skew * |dev|)``. The
    risk manager checks after each fill: beyond ``hard`` it hedges at once, beyond ``soft`` once
    the breach has lasted ``hold_ms`` (checked at the next fill and at the end).
    """
    c_step, c_side, c_act, c_kind, c_u, c_x, c_want = cand
    res = LoopResult()
    take, took_size, took_born = res.taken.append, res.size.append, res.born_ms.append
    rearm, repost = res.rearmed_act.append, res.repost_act.append
    step_ms, wait_ms, hold_ms, tick = p.step_ms, p.wait_ms, p.hold_ms, p.tick_steps
    clip, skew, hard, soft = p.clip, p.size_skew, p.hard, p.soft
    n_act = len(act_latency)
    inv = t_prev = area = 0.0
    over_since = INF
    last_fill = [-INF, -INF]
    for i in range(len(c_step)):
        n, s, a = c_step[i], c_side[i], c_act[i]
        t = n * step_ms
        born = live[s][a]
        if last_fill[s] >= born:  # already filled: a re-post, wait_ms + latency after that fill
            born = last_fill[s] + wait_ms + act_latency[a]
            q = 1.0 - (1.0 - p.queue_floor) * math.exp((born - t) / p.queue_tau_ms)
            if t < born or c_u[i] >= _refill_prob(c_kind[i], c_x[i], q):
                continue
        if t - over_since >= hold_ms:  # a soft breach outlasted its hold before this fill
            res.area = area
            inv, t_prev = _hold_hedge(res, p, inv, t_prev, over_since, target, a, act_latency[a])
            area, over_since = res.area, INF
        goal = target[n // tick]
        dev = inv - goal
        adds = dev if s == 0 else -dev  # > 0: this fill would add to the deviation
        shown = clip * (1.0 - skew * adds) if adds > 0.0 else clip
        if shown <= 0.0:
            continue
        size = shown if c_kind[i] < 2 or c_want[i] > shown else c_want[i]
        area += abs(inv) * (t - t_prev)
        t_prev = t
        inv += size if s == 0 else -size
        take(i)
        took_size(size)
        took_born(born)
        last_fill[s] = t
        if a + 1 < n_act and live[s][a + 1] <= t + wait_ms + act_latency[a]:
            rearm(a)
        else:
            repost(a)
        dev = inv - goal
        if dev > hard or dev < -hard:
            inv = _hedge(res, p, inv, goal, n, a, act_latency[a])
            over_since = INF
        elif dev > soft or dev < -soft:
            if over_since == INF:
                over_since = t
        else:
            over_since = INF
    res.area = area
    if over_since + hold_ms <= p.end_ms:
        last_lat = act_latency[-1] if act_latency else 0.0
        inv, t_prev = _hold_hedge(res, p, inv, t_prev, over_since, target, n_act - 1, last_lat)
    res.area += abs(inv) * (p.end_ms - t_prev)
    return res
