"""A lock holder that stalls past its TTL cannot commit once another holder took over.

Threads stand in for workers; the stalled one is parked on an Event while its lock runs out on
the store's own clock (fakeredis key expiry, or MemoryStore's monotonic clock).
"""

from __future__ import annotations

import threading

import fakeredis
import pytest

from soakq.store import CommitOutcome, MemoryStore
from workers.store import RedisStore

RUN = "run-threads"
SHORT_TTL_MS = 100


def _two_clients(kind: str):
    if kind == "memory":
        store = MemoryStore()
        return store, store
    server = fakeredis.FakeServer()  # one server, two clients: as two worker processes
    return RedisStore(fakeredis.FakeRedis(server=server)), RedisStore(
        fakeredis.FakeRedis(server=server)
    )


@pytest.mark.parametrize("kind", ["fakeredis", "memory"])
def test_paused_holder_cannot_commit_after_takeover(kind, wait_for):
    stalled, other = _two_clients(kind)
    assert stalled.create_run(RUN, {"status": "queued"}, {"by": None})
    holding = threading.Event()
    resume = threading.Event()
    seen: dict[str, object] = {}

    def stalled_worker() -> None:
        lease = stalled.acquire_lock(RUN, "stalled", SHORT_TTL_MS)
        assert lease is not None
        _, version = stalled.get_state(RUN)
        seen["lease"] = lease
        holding.set()
        resume.wait(timeout=10)  # the "GC pause": the lock runs out meanwhile
        seen["cas"] = stalled.cas_state(RUN, lease, version, {"by": "stalled"})
        seen["commit0"] = stalled.commit_iteration(
            RUN, 0, {"by": "stalled"}, {"by": "stalled"}, lease, version
        )
        seen["commit1"] = stalled.commit_iteration(
            RUN, 1, {"by": "stalled"}, {"by": "stalled"}, lease, version
        )
        seen["extend"] = stalled.extend_lock(RUN, lease, SHORT_TTL_MS)
        seen["release"] = stalled.release_lock(RUN, lease)

    thread = threading.Thread(target=stalled_worker, name="stalled")
    thread.start()
    try:
        assert holding.wait(timeout=5)
        taken = []
        wait_for(
            lambda: taken.append(other.acquire_lock(RUN, "other", 10_000)) or taken[-1],
            "the other worker to get the lock after the stalled one's TTL",
        )
        lease = taken[-1]
        assert lease.token > seen["lease"].token
        _, version = other.get_state(RUN)
        outcome = other.commit_iteration(RUN, 0, {"by": "other"}, {"by": "other"}, lease, version)
        assert outcome is CommitOutcome.COMMITTED
    finally:
        resume.set()
        thread.join(timeout=10)
    assert not thread.is_alive()

    assert seen["cas"] is CommitOutcome.STALE_LOCK
    assert seen["commit0"] is CommitOutcome.DUPLICATE  # the other already wrote iteration 0
    assert seen["commit1"] is CommitOutcome.STALE_LOCK
    assert seen["extend"] is False and seen["release"] is False
    assert other.get_state(RUN) == ({"by": "other"}, 1)
    assert other.iterations(RUN) == [{"by": "other"}]
    third = other.acquire_lock(RUN, "third", 1000)  # the other's commit released the lock
    assert third is not None and third.token == lease.token + 1
