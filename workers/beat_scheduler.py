"""redbeat's scheduler, made to ride out a Redis restart or pause instead of exiting.

``redbeat.RedBeatScheduler.tick`` extends its lock with redis-py's ``Lock`` first; on a
connection error, a timeout or a lost lock (Redis restarted without the key, or paused past the
lock timeout) that raises straight out of Celery beat's loop and beat exits (CRITICAL). Its
``retry_period`` option does not cover the lock (sibson/redbeat#314). Here a Redis error in a
tick is logged and the tick tried again a second later; a lost lock is taken again when it is
free (another beat holding it means this one stands by), and then the static schedule is
installed again in case Redis lost it. There is no other retry layer: the redbeat client
reconnects once on a dropped connection (``workers.store.one_reconnect``) and times out after
``SOAKQ_SOCKET_TIMEOUT_S``.

Run beat with ``celery -A workers.app beat -S workers.beat_scheduler:Scheduler``.
"""

from __future__ import annotations

import logging
from typing import Any

from redbeat import schedulers as rb
from redis import exceptions as rx

from workers.store import one_reconnect

log = logging.getLogger("celery.beat")

#: Errors that mean "Redis is not answering right now": wait and try again.
REDIS_TROUBLE: tuple[type[Exception], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.ReadOnlyError,
    rx.TryAgainError,
)


class Scheduler(rb.RedBeatScheduler):  # type: ignore[misc]
    """RedBeatScheduler that never exits on a Redis restart or pause."""

    #: Seconds between attempts while Redis is unavailable, and while another beat is active.
    retry_s = 1.0
    standby_s = 5.0
    _schedule_installed = False
    lock: Any = None

    def setup_schedule(self) -> None:
        self._client_policy()
        try:
            super().setup_schedule()
            self._schedule_installed = True
        except REDIS_TROUBLE as exc:
            log.warning("beat: redis unavailable while installing the schedule (%s); retrying", exc)

    def _client_policy(self) -> None:
        client = rb.get_redis(self.app)
        if hasattr(client, "set_retry"):
            client.set_retry(one_reconnect())

    def _new_lock(self) -> Any:
        client = rb.get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(rb.LUA_EXTEND_TO_SCRIPT)
        return lock

    def _regained(self) -> None:
        log.warning("beat: lock %s taken (again); re-installing the schedule", self.lock_key)
        self._schedule_installed = False
        self.setup_schedule()

    def _hold_lock(self) -> bool:
        """Keep (or take back) the single-beat lock; False when another beat holds it."""
        if self.lock is None:  # never taken: Redis was down when beat started
            lock = self._new_lock()
            if not lock.acquire(blocking=False):
                return False
            self.lock = lock
            self._regained()
            return True
        try:
            self.lock.extend(int(self.lock_timeout))
            return True
        except rx.LockError:  # not owned any more: expired during a pause, or Redis restarted
            if not self.lock.acquire(blocking=False):
                log.warning("beat: another beat holds %s; standing by", self.lock_key)
                return False
            self._regained()
            return True

    def tick(self, min: Any = min, **kwargs: Any) -> float:
        try:
            if self.lock_key and not self._hold_lock():
                return self.standby_s
            if not self._schedule_installed:
                self.setup_schedule()
            remaining = []
            for entry in self.schedule.values():
                next_time_to_run = self.maybe_due(entry, **self._maybe_due_kwargs)
                if next_time_to_run:
                    remaining.append(next_time_to_run)
            return float(min([*remaining, self.max_interval]))
        except REDIS_TROUBLE as exc:
            log.warning("beat: redis unavailable (%s); trying again in %gs", exc, self.retry_s)
            return self.retry_s

    def close(self) -> None:
        try:
            super().close()
        except (rx.ConnectionError, rx.TimeoutError, rx.LockError) as exc:
            log.warning("beat: could not release the lock on the way out (%s)", exc)
