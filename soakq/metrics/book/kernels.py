"""The book simulator's two sequential kernels: the requote walk and the fill loop.

Everything that can be computed for all steps at once is vectorised elsewhere; what is left here
is sequential by nature (each action depends on the previous one's time and the token bucket;
each fill's size on the inventory the previous fills left). The requote walk is vectorised by
pointer doubling along the chain the trigger table implies, stepping in Python only around the
few actions the budget delays; ``walk_reference`` is the one-action-at-a-time rule it must
match (tested). When the C extension ``_requote`` was built, ``quotes.requote_steps`` walks in C
instead, with the same bits (docs/simulator.md, "Speed"); this is the path without it. The fill
loop runs once per candidate fill (a few hundred) in plain Python.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INF = math.inf


HOPS = 5  # the unconstrained chain is followed in Python 2**HOPS actions at a time


def dyadic(x: float) -> float:
    """``x`` rounded to a multiple of 2**-20, so sums of a few thousand of them are exact."""
    return round(x * 1048576.0) / 1048576.0


def chain(nxt: np.ndarray, n: int) -> np.ndarray:
    """The unconstrained chain 0, nxt[0], nxt[nxt[0]], ... below ``n`` (``nxt[n] = n``).

    Pointer doubling: the chain is walked in Python 2**HOPS links at a time, then each stretch
    is filled in with the 2**k-link tables, one numpy gather per level.
    """
    levels = [nxt]
    for _ in range(HOPS):
        levels.append(np.take(levels[-1], levels[-1]))
    far = levels[-1].data
    stride = []
    a = 0
    while a < n:
        stride.append(a)
        a = far[a]
    path = np.array(stride, dtype=np.int32)
    for table in reversed(levels[:-1]):
        both = np.empty(2 * path.size, dtype=np.int32)
        both[0::2] = path
        both[1::2] = np.take(table, path)
        path = both
    return path[: int(np.searchsorted(path, n))]


def _chain_budget(
    code: np.ndarray, n: int, path: np.ndarray, interval: float, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """Along the chain: the budget's theoretical arrival time before each action (a running
    maximum, exact for dyadic ``interval``) and the earliest step the budget allows it."""
    want = np.minimum(code[path] >> 1, n)
    price = (code[path] & 1).astype(bool)
    at = np.arange(path.size) * interval
    ahead = np.empty(path.size)
    ahead[:1] = 0.0
    np.subtract(want[:-1], at[:-1], out=ahead[1:])
    tats = np.maximum.accumulate(ahead)
    tats += at
    earliest = tats - np.where(price, tolerance, tolerance - interval)
    return tats, earliest


def walk_schedule(
    code: np.ndarray, urgent: np.ndarray, n: int, *, interval: float, tolerance: float
) -> np.ndarray:
    """Steps of the bot's quote actions: follow the trigger table from step 0 under a budget.

    ``code[a] = 2 * next + price`` (``quotes.trigger_table``): the step the next action wants
    after one at ``a``, and whether the mid (1) or the orders' age (0) triggers it. The budget is
    a GCRA (the virtual-scheduling form of a token bucket): one action per ``interval`` steps on
    average, bursts ``tolerance`` steps ahead of that schedule. A requote the budget does not
    allow yet waits for it; a routine (age) refresh also leaves one action of budget in reserve
    for the next requote the mid may force; a requote forced by a jump (``urgent[a]``) goes at
    once and the schedule runs late for it.

    The sequential rule is ``walk_reference``; this computes the same steps without a Python
    step per action: the chain the trigger table alone implies is built by pointer doubling,
    the budget's theoretical arrival times along it by a running maximum, and only around the
    few actions the budget delays (until the real schedule rejoins that chain with the same
    budget state) does it step in Python. ``interval`` and ``tolerance`` must be ``dyadic``:
    then both orders of summation give the same bits.
    """
    nxt = np.empty(n + 1, dtype=np.int32)
    np.right_shift(code, 1, out=nxt[:n])
    np.minimum(nxt[:n], n, out=nxt[:n])
    nxt[n] = n
    path = chain(nxt, n)
    tats, earliest = _chain_budget(code, n, path, interval, tolerance)
    late = np.flatnonzero((earliest > nxt[path]) & ~urgent[path]).tolist()
    pos = np.full(n, -1, dtype=np.int32)
    pos[path] = np.arange(path.size)
    table, where, blocked, ceil = code.data, pos.data, urgent.data, math.ceil
    chain_tat, chain_earliest = tats.data, earliest.data
    reserve = tolerance - interval
    out: list[np.ndarray] = []
    off: list[int] = []  # actions off the chain since the last jump ahead
    a, tat = 0, 0.0
    while a < n:
        j = where[a]
        if j >= 0 and chain_tat[j] == tat:  # back on the chain, same budget: jump ahead
            if off:
                out.append(np.array(off, dtype=np.int64))
                off = []
            k = bisect_left(late, j)
            if k == len(late):
                out.append(path[j:])
                break
            v = late[k]
            out.append(path[j : v + 1])
            a = ceil(chain_earliest[v])
            tat = max(chain_tat[v], a) + interval
            continue
        off.append(a)  # off the chain: one step of walk_reference
        c = table[a]
        e = tat - (tolerance if c & 1 else reserve)
        c >>= 1
        if e > c and not blocked[a]:
            c = ceil(e)
        tat = (tat if tat > c else c) + interval
        a = c
    out.append(np.array(off, dtype=np.int64))
    return np.concatenate(out)


def walk_reference(
    code: np.ndarray, urgent: np.ndarray, n: int, *, interval: float, tolerance: float
) -> np.ndarray:
    """``walk_schedule`` one action at a time: the rule it implements (kept for the tests)."""
    table = code.tolist()
    steps = []
    reserve = tolerance - interval  # an age refresh keeps one interval of burst in hand
    tat = 0.0  # theoretical arrival time of the next action under the budget
    a = 0
    while a < n:
        steps.append(a)
        c = table[a]
        earliest = tat - (tolerance if c & 1 else reserve)
        c >>= 1
        if earliest > c and not urgent[a]:
            c = math.ceil(earliest)
        tat = max(tat, c) + interval
        a = c
    return np.array(steps, dtype=np.int64)


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
    res = LoopResult()
    take, took_size, took_born = res.taken.append, res.size.append, res.born_ms.append
    rearm, repost = res.rearmed_act.append, res.repost_act.append
    step_ms, wait_ms, hold_ms, tick = p.step_ms, p.wait_ms, p.hold_ms, p.tick_steps
    clip, skew, hard, soft = p.clip, p.size_skew, p.hard, p.soft
    n_act = len(act_latency)
    inv = t_prev = area = 0.0
    over_since = INF
    last_fill = [-INF, -INF]
    for i, (n, s, a, kind, u, x, want) in enumerate(zip(*cand, strict=True)):
        t = n * step_ms
        side_live = live[s]
        born = side_live[a]
        if last_fill[s] >= born:  # already filled: a re-post, wait_ms + latency after that fill
            born = last_fill[s] + wait_ms + act_latency[a]
            q = 1.0 - (1.0 - p.queue_floor) * math.exp((born - t) / p.queue_tau_ms)
            if t < born or u >= _refill_prob(kind, x, q):
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
        size = shown if kind < 2 or want > shown else want
        area += abs(inv) * (t - t_prev)
        t_prev = t
        inv += size if s == 0 else -size
        take(i)
        took_size(size)
        took_born(born)
        last_fill[s] = t
        if a + 1 < n_act and side_live[a + 1] <= t + wait_ms + act_latency[a]:
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
