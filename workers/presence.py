"""Is anyone there? What a follower of a distributed run checks so that it never waits in
silence (docs/architecture.md, "No silent waits").

A run moves only while some worker consumes its queues (``soakq``; a live run's step also
``soakq.bot.<name>``) and, once a paced run has parked its next iteration in the due set, only
when beat's tick claims it. ``consumers`` asks the workers (one ``inspect active_queues``
broadcast whose answers are awaited for at most ``SOAKQ_PING_TIMEOUT_S``); the tick's heartbeat
(``soakq.lifecycle.note_tick``, a key that lapses after three of beat's periods) says whether
beat ticks. ``Lookout`` turns both into at most one line for `submit --wait` and `watch`;
``status_notes`` into the short notes of `soakq status`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from soakq.documents import RunRecord, RunState
from soakq.lifecycle import HEARTBEAT_TICKS

#: How to start what is missing, as the one line says it.
BEAT_COMMAND = "celery -A workers.app beat -S workers.beat_scheduler:Scheduler"
#: A follower pings at most this often (and not at all while iterations keep coming).
PING_EVERY_S = 10.0

Consumers = dict[str, set[str]]


def run_queues(default_queue: str, bot_queue: str | None) -> list[str]:
    """The queues a run needs consumed: the default one, and a live run's bot queue."""
    return [default_queue, *([bot_queue] if bot_queue else [])]


def consumers(app: Any, timeout_s: float) -> Consumers | None:
    """The queues each worker that answers within ``timeout_s`` consumes, by node name; None
    when the question could not be asked (the broker is not reachable)."""
    try:
        replies = app.control.inspect(timeout=timeout_s).active_queues() or {}
    except (OperationalError, OSError, RedisError):
        return None
    return {node: {str(q.get("name")) for q in queues or ()} for node, queues in replies.items()}


def unserved(found: Consumers, queues: Iterable[str]) -> list[str]:
    """The queues of ``queues`` no worker of ``found`` consumes."""
    served = set().union(*found.values()) if found else set()
    return [q for q in queues if q not in served]


def lease_queue(lease: tuple[int, str | None] | None, default_queue: str) -> str | None:
    """The queue of the task that holds a run's lease (``RunStore.lease``), None without one."""
    if lease is None:
        return None
    return lease[1] or default_queue


def unexplained(missing: list[str], holder: str | None, default_queue: str) -> list[str]:
    """The queues of ``missing`` (no worker answered for them) that the run's lease does not
    explain. A worker busy in a task may not answer a ping (a solo pool): a lease held from the
    default queue speaks for that queue; one held from a bot's queue (a live step waiting for the
    bot) for all of the run's queues, as everything else comes after the step. A lease only
    outlives the task that set it by its TTL, so a step nobody picks up is said after that."""
    if holder is None:
        return missing
    if holder == default_queue:
        return [q for q in missing if q != default_queue]
    return []


def worker_command(queue: str, default_queue: str) -> str:
    if queue == default_queue:
        return "soakq worker -n w1@%h"
    bot = queue.rsplit(".", 1)[-1]
    return f"soakq worker -Q {queue} --concurrency 1 -n bot-{bot}@%h"


def no_worker_line(run_id: str, missing: list[str], default_queue: str, where: str) -> str:
    names = " and ".join(repr(q) for q in missing)
    starts = " and ".join(f"`{worker_command(q, default_queue)}`" for q in missing)
    noun = "queue" if len(missing) == 1 else "queues"
    return (
        f"run {run_id}: no worker consumes {noun} {names} on {where}; start one with {starts} "
        f"(the run goes on: `soakq watch {run_id}` follows it again)"
    )


def parked_iteration(record: RunRecord, state: RunState) -> int | None:
    """The next iteration of a run that has not ended when it waits in the due set for beat's
    tick (a paced run between iterations), else None. Pure."""
    drive, nxt = record.drive, state.iteration + 1
    if record.status.terminal or drive is None:
        return None
    return nxt if drive.iteration == nxt and drive.enqueued_ts is None else None


@dataclass
class Lookout:
    """Watches, while a follower waits, for what would make the wait silent.

    ``check`` is called on every poll; it answers the one line to print before giving up, or
    None. No worker consuming the run's queues for ``grace_s`` (pinged at start, then every
    ``ping_every_s`` while no iteration completes and no task holds the run's lease), or no
    tick heartbeat for ``HEARTBEAT_TICKS`` tick periods while the run's next iteration waits
    for a tick: the run cannot move.
    """

    run_id: str
    queues: list[str]
    default_queue: str
    where: str  # "SOAKQ_REDIS_URL=…", password redacted
    ping: Callable[[], Consumers | None]
    heartbeat: Callable[[], Mapping[str, Any] | None]
    leased: Callable[[], str | None]  # the queue of the task holding the run's lease, if any
    # (workers.lease, ``lease_queue``): it is worked on from there
    grace_s: float
    tick_every_s: float
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    _next_ping: float = field(init=False)
    _absent_since: float | None = field(default=None, init=False)
    _missing: list[str] = field(default_factory=list, init=False)
    _tick_seen: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """Look afresh, as from the follower's start (after a Redis outage nothing was seen)."""
        self.started = self._next_ping = self.clock()
        self._absent_since = self._tick_seen = None

    @property
    def ping_every_s(self) -> float:
        return min(PING_EVERY_S, max(0.5, self.grace_s / 3))

    def check(self, waiting: int | None, *, progressed: bool) -> str | None:
        """``waiting``: the iteration the run waits for beat's tick to start, if any
        (``parked_iteration``); ``progressed``: an iteration completed since the last poll."""
        now = self.clock()
        if progressed:  # an iteration completed: somebody works on the run
            self._absent_since = None
            self._next_ping = now + self.ping_every_s
        elif now >= self._next_ping:
            found = self.ping()
            now = self.clock()
            self._next_ping = now + self.ping_every_s
            if found is not None:
                # A worker busy in a task may not answer (a solo pool): its lease speaks for it.
                missing = unserved(found, self.queues)
                self._missing = unexplained(missing, self.leased(), self.default_queue)
                if not self._missing:
                    self._absent_since = None
                elif self._absent_since is None:
                    self._absent_since = now
        if self._absent_since is not None and now - self._absent_since >= self.grace_s:
            return no_worker_line(self.run_id, self._missing, self.default_queue, self.where)
        if self.heartbeat() is not None:
            self._tick_seen = now
            return None
        silent = now - (self.started if self._tick_seen is None else self._tick_seen)
        if waiting is not None and silent >= HEARTBEAT_TICKS * self.tick_every_s:
            return (
                f"run {self.run_id}: no beat tick seen for {silent:.0f} s and iteration "
                f"{waiting} waits for one; start `{BEAT_COMMAND}` "
                f"(the run goes on: `soakq watch {self.run_id}` follows it again)"
            )
        return None


def status_notes(
    *,
    found: Consumers | None,
    queues: list[str],
    heartbeat: Mapping[str, Any] | None,
    paced: bool,
    tick_every_s: float,
    leased: str | None = None,
) -> list[str]:
    """What `soakq status` adds for a run that has not ended (``queues``: the run's, the default
    one first, as ``run_queues`` gives them): nobody consumes its queues and the run's lease,
    held from the queue ``leased``, does not explain it (``unexplained``); or (a paced run)
    beat's heartbeat has lapsed. Pure."""
    notes = []
    missing = unexplained(unserved(found, queues), leased, queues[0]) if found is not None else []
    if missing:
        names = ", ".join(repr(q) for q in missing)
        notes.append(f"waiting for a worker (none consumes {names})")
    if paced and heartbeat is None:
        notes.append(f"no beat tick for over {HEARTBEAT_TICKS * tick_every_s:g} s")
    return notes
