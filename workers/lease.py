"""A run's liveness lease, held by whichever task works on one of its iterations.

A task says "I work on iteration i of this run" (``RunStore.touch_lease``) when it starts and a
keeper thread renews that every third of the lease while it runs. A worker killed mid-task stops
renewing, the lease lapses, and the tick's watchdog re-drives the iteration after one lease
period (default three ticks) instead of waiting for the iteration deadline.

One keeper thread per process, started on first use (so again in each forked pool child).
Renewal errors are logged and skipped: a lapsed lease only costs a redundant re-drive, which
the fenced, set-if-absent commit makes harmless.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from soakq.errors import StoreError
from soakq.store import RunStore

log = logging.getLogger(__name__)


@dataclass
class _Held:
    store: RunStore
    run_id: str
    iteration: int
    ttl_ms: int
    renew_at: float
    queue: str | None


class LeaseKeeper:
    """Renews the leases of the tasks running in this process."""

    def __init__(self) -> None:
        self._reset()
        self._ids = itertools.count()
        # A forked pool child inherits the entries and maybe a held lock, never the thread.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._cv = threading.Condition()
        self._held: dict[int, _Held] = {}
        self._pid: int | None = None

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        threading.Thread(target=self._loop, name="soakq-lease", daemon=True).start()

    @contextlib.contextmanager
    def hold(
        self,
        store: RunStore,
        run_id: str,
        iteration: int,
        ttl_s: float,
        *,
        touched_ts: float | None = None,
        queue: str | None = None,
    ) -> Iterator[None]:
        """Hold the run's lease for ``iteration`` while the block runs. ``touched_ts``: when
        (epoch seconds) the lease was last set for this iteration, if the caller knows (the
        chord body: when its chord was sent); within a third of the TTL, the first renewal
        waits for its turn instead of writing now. ``queue``: the task's queue when it is not the
        run's default one (``RunStore.touch_lease``)."""
        ttl_ms = max(1, round(ttl_s * 1000))
        fresh_s = 0.0 if touched_ts is None else touched_ts + ttl_s / 3 - time.time()
        if not 0 < fresh_s <= ttl_s / 3:
            store.touch_lease(run_id, iteration, ttl_ms, queue)
            fresh_s = ttl_s / 3
        with self._cv:
            self._ensure_thread()
            key = next(self._ids)
            self._held[key] = _Held(
                store, run_id, iteration, ttl_ms, time.monotonic() + fresh_s, queue
            )
            self._cv.notify()
        try:
            yield
        finally:
            with self._cv:
                self._held.pop(key, None)

    def _loop(self) -> None:
        while True:
            with self._cv:
                now = time.monotonic()
                due = [h for h in self._held.values() if h.renew_at <= now]
                if not due:
                    nxt = min((h.renew_at for h in self._held.values()), default=now + 60.0)
                    self._cv.wait(max(0.01, nxt - now))
                    continue
                for h in due:
                    h.renew_at = now + h.ttl_ms / 3000
            for h in due:
                try:
                    h.store.touch_lease(h.run_id, h.iteration, h.ttl_ms, h.queue)
                except StoreError as exc:
                    log.warning("lease of run %s not renewed: %s", h.run_id, exc)


KEEPER = LeaseKeeper()
