"""Store harnesses: one RunStore plus a way to let its lock run out, for each implementation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import fakeredis
import pytest

from soakq.store import Lease, MemoryStore, RunStore
from workers.store import RedisStore

# Every wait in these tests is bounded by this.
WAIT_LIMIT_S = 5.0


class FakeClock:
    """A monotonic clock that moves only when told (seconds)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(predicate: Callable[[], object], what: str, limit_s: float = WAIT_LIMIT_S) -> None:
    """Poll ``predicate`` every 2 ms until true; fail after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit_s}s waiting for {what}")
        time.sleep(0.002)


@dataclass
class Harness:
    """A store under test, the TTL to use when a test wants a lock to lapse, and how to wait."""

    name: str
    store: RunStore
    short_ttl_ms: int
    clock: FakeClock | None = None
    redis: RedisStore | None = field(default=None, repr=False)

    def let_lock_expire(self, run_id: str, lease: Lease) -> None:
        """Return once ``lease`` (taken with ``short_ttl_ms``) has expired."""
        if self.clock is not None:
            self.clock.advance(self.short_ttl_ms / 1000.0 + 0.001)
            return
        assert self.redis is not None
        key = self.redis.key(run_id, "lock")
        client = self.redis.client
        wait_for(lambda: not client.exists(key), f"lock of {run_id} held by {lease} to expire")


def memory_harness() -> Harness:
    clock = FakeClock()
    return Harness("memory", MemoryStore(clock=clock), short_ttl_ms=1000, clock=clock)


def redis_harness(name: str, store: RedisStore) -> Harness:
    # Real TTLs: short enough to keep tests fast, long enough that a check made right after
    # acquiring still sees the lock held on a loaded machine.
    return Harness(name, store, short_ttl_ms=150, redis=store)


def fake_redis_store() -> RedisStore:
    return RedisStore(fakeredis.FakeRedis(server=fakeredis.FakeServer()))


@pytest.fixture(
    params=["memory", "fakeredis", pytest.param("redis", marks=pytest.mark.redis)],
)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    """The contract suite's store: MemoryStore, RedisStore on fakeredis, on a real server."""
    if request.param == "memory":
        yield memory_harness()
    elif request.param == "fakeredis":
        yield redis_harness("fakeredis", fake_redis_store())
    else:
        store = RedisStore.from_url(request.getfixturevalue("redis_url"))
        try:
            yield redis_harness("redis", store)
        finally:
            store.close()


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., None]:
    """``wait_for(predicate, what, limit_s=5)``: bounded polling for tests in this folder."""
    return wait_for


@pytest.fixture
def fake_redis() -> RedisStore:
    """A RedisStore on a fresh fakeredis server."""
    return fake_redis_store()
