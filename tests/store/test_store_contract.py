"""One RunStore contract, run against MemoryStore, RedisStore on fakeredis and on a real server.

The ``harness`` fixture (conftest) picks the implementation; the real-server variant carries the
``redis`` marker. A Hypothesis state machine at the end drives MemoryStore and RedisStore in
lockstep with two competing lock holders.
"""

from __future__ import annotations

import threading

import fakeredis
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from soakq.store import CommitOutcome, Lease, MemoryStore
from workers.store import RedisStore

RUN = "run-1"
TTL_MS = 10_000
RECORD = {"profile": "steady_safe", "status": "queued", "spec": {"iterations": 6}}
STATE0 = {"overrides": {"min_interval_ms": 75}, "ledger": []}


def _created(h, run_id=RUN, record=None, state=None):
    record = RECORD if record is None else record
    state = STATE0 if state is None else state
    assert h.store.create_run(run_id, record, state) is True
    return h.store


# -- records -------------------------------------------------------------------------------
def test_create_is_set_if_absent(harness):
    store = _created(harness)
    assert store.create_run(RUN, {"other": True, "status": "queued"}, {"other": True}) is False
    assert store.get_record(RUN) == RECORD
    assert store.get_state(RUN) == (STATE0, 0)


def test_restore_puts_back_record_state_version_and_documents(harness):
    store = harness.store
    record = {**RECORD, "status": "running"}
    state = {**STATE0, "iteration": 2}
    docs = [{"iteration": 1, "v": "a"}, {"iteration": 2, "v": "b"}]
    assert store.restore_run(RUN, record, state, 5, docs) is True
    assert store.get_record(RUN) == record
    assert store.get_state(RUN) == (state, 5)
    assert store.iterations(RUN) == docs
    assert store.get_iteration(RUN, 2) == docs[1]
    assert RUN in store.active_runs() and RUN in store.list_runs()
    # The next commit continues from the restored version; a restored document is a duplicate.
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    assert store.commit_iteration(RUN, 2, {"iteration": 2}, state, lease, 5) == (
        CommitOutcome.DUPLICATE
    )
    assert store.commit_iteration(RUN, 3, {"iteration": 3}, state, lease, 4) == (
        CommitOutcome.VERSION_MISMATCH
    )
    assert store.commit_iteration(RUN, 3, {"iteration": 3}, state, lease, 5) == (
        CommitOutcome.COMMITTED
    )
    assert store.get_state(RUN)[1] == 6


def test_restore_is_set_if_absent(harness):
    store = _created(harness)
    assert store.restore_run(RUN, {**RECORD, "status": "running"}, {}, 3, [{"iteration": 1}]) is (
        False
    )
    assert store.get_record(RUN) == RECORD
    assert store.get_state(RUN) == (STATE0, 0)
    assert store.iterations(RUN) == []


def test_missing_run(harness):
    store = harness.store
    assert store.get_record("nope") is None
    with pytest.raises(KeyError):
        store.get_state("nope")
    with pytest.raises(KeyError):
        store.update_record("nope", {"profile": "x"})
    assert store.list_runs() == []


def test_update_record_merges_top_level_fields(harness):
    store = _created(harness)
    new = store.update_record(RUN, {"profile": "other", "spec": {"iterations": 8}})
    expected = {"profile": "other", "status": "queued", "spec": {"iterations": 8}}
    assert new == expected
    assert store.get_record(RUN) == expected
    assert store.get_state(RUN) == (STATE0, 0)  # the state is not the record


def test_update_record_never_changes_the_status(harness):
    store = _created(harness)
    with pytest.raises(ValueError, match="transition"):
        store.update_record(RUN, {"status": "succeeded"})
    assert store.get_record(RUN) == RECORD


def test_concurrent_record_updates_lose_nothing(harness):
    store = _created(harness, record={"status": "queued"})
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                store.update_record(RUN, {f"w{n}_{i}": i})
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert not any(t.is_alive() for t in threads)
    assert len(store.get_record(RUN)) == 101  # 100 fields and the status


def test_list_runs_in_creation_order(harness):
    store = harness.store
    for run_id in ["c", "a", "weekly:2025-01-05T00:00Z", "b"]:
        assert store.create_run(run_id, {"id": run_id, "status": "queued"}, {})
    assert store.create_run("a", {"status": "queued"}, {}) is False  # a repeat does not move it
    assert store.list_runs() == ["c", "a", "weekly:2025-01-05T00:00Z", "b"]


def test_documents_round_trip_exactly(harness):
    doc = {"f": 0.1 + 0.2, "big": 2**62, "neg": -1.5e-9, "s": "é\u2603", "n": None, "l": [1, {}]}
    store = _created(harness, record={**doc, "status": "queued"}, state=doc)
    assert store.get_record(RUN) == {**doc, "status": "queued"}
    assert store.get_state(RUN) == (doc, 0)


# -- lock ----------------------------------------------------------------------------------
def test_lock_is_exclusive_and_tokens_strictly_increase(harness):
    store = _created(harness)
    tokens = []
    for i in range(5):
        lease = store.acquire_lock(RUN, f"w{i % 2}", TTL_MS)
        assert lease is not None and lease.owner == f"w{i % 2}"
        assert store.acquire_lock(RUN, "intruder", TTL_MS) is None
        assert store.acquire_lock(RUN, lease.owner, TTL_MS) is None  # not re-entrant
        tokens.append(lease.token)
        assert store.release_lock(RUN, lease) is True
    assert tokens == sorted(set(tokens))


def test_tokens_are_per_run_and_busy_attempts_burn_none(harness):
    store = _created(harness)
    store.create_run("run-2", {"status": "queued"}, {})
    first = store.acquire_lock(RUN, "w", TTL_MS)
    assert first is not None
    for _ in range(3):
        assert store.acquire_lock(RUN, "x", TTL_MS) is None
    assert store.release_lock(RUN, first)
    second = store.acquire_lock(RUN, "x", TTL_MS)
    assert second is not None and second.token == first.token + 1
    other = store.acquire_lock("run-2", "w", TTL_MS)
    assert other is not None and other.token == 1


def test_release_and_extend_only_by_the_holder(harness):
    store = _created(harness)
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    forged = [Lease("x", lease.token), Lease("w", lease.token + 1), Lease("w", lease.token - 1)]
    for bad in forged:
        assert store.release_lock(RUN, bad) is False
        assert store.extend_lock(RUN, bad, TTL_MS) is False
    assert store.extend_lock(RUN, lease, TTL_MS) is True
    assert store.release_lock(RUN, lease) is True
    assert store.release_lock(RUN, lease) is False
    assert store.extend_lock(RUN, lease, TTL_MS) is False


def test_lock_expires(harness):
    store = _created(harness)
    old = store.acquire_lock(RUN, "a", harness.short_ttl_ms)
    assert old is not None
    assert store.acquire_lock(RUN, "b", TTL_MS) is None
    harness.let_lock_expire(RUN, old)
    assert store.extend_lock(RUN, old, TTL_MS) is False
    new = store.acquire_lock(RUN, "b", TTL_MS)
    assert new is not None and new.token > old.token
    assert store.release_lock(RUN, old) is False
    assert store.release_lock(RUN, new) is True


def test_extend_keeps_the_lock_past_its_first_ttl(harness):
    store = _created(harness)
    lease = store.acquire_lock(RUN, "a", harness.short_ttl_ms)
    assert lease is not None
    assert store.extend_lock(RUN, lease, TTL_MS) is True
    if harness.clock is not None:
        harness.clock.advance(harness.short_ttl_ms / 1000.0 * 2)
    else:
        assert harness.redis is not None
        assert harness.redis.client.pttl(harness.redis.key(RUN, "lock")) > harness.short_ttl_ms
    assert store.acquire_lock(RUN, "b", TTL_MS) is None
    assert store.cas_state(RUN, lease, 0, {"n": 1}) is CommitOutcome.COMMITTED


# -- fenced state writes -------------------------------------------------------------------
def test_cas_commits_and_bumps_version(harness):
    store = _created(harness)
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    assert store.cas_state(RUN, lease, 0, {"n": 1}) is CommitOutcome.COMMITTED
    assert store.cas_state(RUN, lease, 1, {"n": 2}) is CommitOutcome.COMMITTED
    assert store.get_state(RUN) == ({"n": 2}, 2)


def test_cas_refuses_a_wrong_version(harness):
    store = _created(harness)
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    for wrong in (1, -1, 7):
        assert store.cas_state(RUN, lease, wrong, {"n": 9}) is CommitOutcome.VERSION_MISMATCH
    assert store.get_state(RUN) == (STATE0, 0)


def test_cas_refuses_without_the_lock(harness):
    store = _created(harness)
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    assert store.cas_state(RUN, Lease("x", lease.token), 0, {}) is CommitOutcome.STALE_LOCK
    assert store.cas_state(RUN, Lease("w", lease.token + 1), 0, {}) is CommitOutcome.STALE_LOCK
    assert store.release_lock(RUN, lease)
    assert store.cas_state(RUN, lease, 0, {"n": 1}) is CommitOutcome.STALE_LOCK
    assert store.get_state(RUN) == (STATE0, 0)


def test_stale_lock_beats_version_mismatch(harness):
    store = _created(harness)
    assert store.cas_state(RUN, Lease("w", 1), 5, {}) is CommitOutcome.STALE_LOCK


def test_expired_holder_is_fenced_after_another_takes_over(harness):
    store = _created(harness)
    old = store.acquire_lock(RUN, "a", harness.short_ttl_ms)
    assert old is not None
    _, version = store.get_state(RUN)
    harness.let_lock_expire(RUN, old)
    # Expired and nobody took it yet: already refused.
    assert store.cas_state(RUN, old, version, {"by": "a"}) is CommitOutcome.STALE_LOCK
    new = store.acquire_lock(RUN, "b", TTL_MS)
    assert new is not None
    assert store.cas_state(RUN, new, version, {"by": "b"}) is CommitOutcome.COMMITTED
    # The old holder, resuming with what it read before: refused whatever version it names.
    for v in (version, version + 1):
        assert store.cas_state(RUN, old, v, {"by": "a"}) is CommitOutcome.STALE_LOCK
        outcome = store.commit_iteration(RUN, 0, {"i": 0}, {"by": "a"}, old, v)
        assert outcome is CommitOutcome.STALE_LOCK
    assert store.get_state(RUN) == ({"by": "b"}, version + 1)
    assert store.get_iteration(RUN, 0) is None


def test_cas_on_a_missing_run_raises(harness):
    store = harness.store
    lease = store.acquire_lock("ghost", "w", TTL_MS)
    assert lease is not None
    with pytest.raises(KeyError):
        store.cas_state("ghost", lease, 0, {})


# -- iterations ----------------------------------------------------------------------------
def test_commit_iteration_writes_doc_and_state_together(harness):
    store = _created(harness)
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    outcome = store.commit_iteration(RUN, 0, {"i": 0}, {"n": 1}, lease, 0)
    assert outcome is CommitOutcome.COMMITTED
    assert store.get_iteration(RUN, 0) == {"i": 0}
    assert store.get_state(RUN) == ({"n": 1}, 1)


def test_commit_iteration_duplicate_changes_nothing(harness):
    store = _created(harness)
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    assert store.commit_iteration(RUN, 0, {"i": 0}, {"n": 1}, lease, 0) is CommitOutcome.COMMITTED
    # A valid lease and the right version still cannot overwrite an iteration.
    again = store.commit_iteration(RUN, 0, {"i": "dup"}, {"n": 99}, lease, 1)
    assert again is CommitOutcome.DUPLICATE
    assert store.get_iteration(RUN, 0) == {"i": 0}
    assert store.get_state(RUN) == ({"n": 1}, 1)
    # DUPLICATE wins over a stale lease: a re-driven body after its lock lapsed is a no-op.
    assert not store.release_lock(RUN, lease)  # the commit released it
    late = store.commit_iteration(RUN, 0, {"i": "dup"}, {"n": 99}, lease, 0)
    assert late is CommitOutcome.DUPLICATE
    assert store.get_state(RUN) == ({"n": 1}, 1)


def test_commit_releases_the_lock_and_writes_the_record_only_if_unchanged(harness):
    store = _created(harness)
    record = store.get_record(RUN)
    assert record is not None
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    planned = {**record, "drive": {"iteration": 2}}
    outcome = store.commit_iteration(RUN, 1, {"i": 1}, {"n": 1}, lease, 0, record=(record, planned))
    assert outcome is CommitOutcome.COMMITTED and outcome.committed
    assert store.get_record(RUN) == planned
    assert store.read_run(RUN) == (planned, {"n": 1}, 1)
    assert not store.release_lock(RUN, lease)  # released by the commit
    # Someone annotates the record between the read and the commit: the commit still lands,
    # the record keeps the annotation and the caller is told.
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    noted = store.update_record(RUN, {"watchdog": ["a note"]})
    stale = {**planned, "drive": {"iteration": 3}}
    outcome = store.commit_iteration(RUN, 2, {"i": 2}, {"n": 2}, lease, 1, record=(planned, stale))
    assert outcome is CommitOutcome.COMMITTED_RECORD_CHANGED and outcome.committed
    assert store.get_record(RUN) == noted
    assert store.get_state(RUN) == ({"n": 2}, 2) and store.get_iteration(RUN, 2) == {"i": 2}
    assert store.acquire_lock(RUN, "x", TTL_MS) is not None
    with pytest.raises(KeyError):
        store.read_run("nope")


def test_commit_iteration_refusals_write_no_doc(harness):
    store = _created(harness)
    lease = store.acquire_lock(RUN, "w", TTL_MS)
    assert lease is not None
    bad_version = store.commit_iteration(RUN, 0, {"i": 0}, {"n": 1}, lease, 3)
    assert bad_version is CommitOutcome.VERSION_MISMATCH
    forged = store.commit_iteration(RUN, 0, {"i": 0}, {"n": 1}, Lease("x", lease.token), 0)
    assert forged is CommitOutcome.STALE_LOCK
    assert store.get_iteration(RUN, 0) is None
    assert store.iterations(RUN) == []
    assert store.get_state(RUN) == (STATE0, 0)


def test_iterations_in_numeric_order(harness):
    store = _created(harness)
    for version, i in enumerate([2, 0, 10, 1]):
        lease = store.acquire_lock(RUN, "w", TTL_MS)
        assert lease is not None
        outcome = store.commit_iteration(RUN, i, {"i": i}, {"v": version + 1}, lease, version)
        assert outcome is CommitOutcome.COMMITTED
    assert [d["i"] for d in store.iterations(RUN)] == [0, 1, 2, 10]
    assert store.get_iteration(RUN, 3) is None
    assert store.iterations("other") == []


# -- extras --------------------------------------------------------------------------------
def test_extras_are_set_if_absent(harness):
    store = _created(harness)
    assert store.get_extra(RUN, "release_gate") is None
    assert store.put_extra(RUN, "release_gate", {"passed": True}) is True
    assert store.put_extra(RUN, "release_gate", {"passed": False}) is False
    assert store.get_extra(RUN, "release_gate") == {"passed": True}
    assert store.put_extra(RUN, "snapshot", {"sig": "abc"}) is True
    assert store.get_extra("other", "release_gate") is None


# -- schedule ------------------------------------------------------------------------------
def test_claim_due_takes_only_due_entries_earliest_first(harness):
    store = harness.store
    store.schedule("r1", 3, 130.0)
    store.schedule("r2", 0, 100.5)
    store.schedule("r1", 2, 120.0)
    store.schedule("r3", 1, 200.0)
    assert store.claim_due(99.0) == []
    assert store.claim_due(130.0) == [("r2", 0), ("r1", 2), ("r1", 3)]  # due at now: included
    assert store.claim_due(150.0) == []  # claimed entries are gone
    assert store.claim_due(1e12) == [("r3", 1)]


def test_claim_due_respects_limit_and_rescheduling(harness):
    store = harness.store
    for i in range(5):
        store.schedule("r", i, 10.0 + i)
    store.schedule("r", 0, 50.0)  # moved later: one entry, the new time
    assert store.claim_due(20.0, limit=2) == [("r", 1), ("r", 2)]
    assert store.claim_due(20.0, limit=10) == [("r", 3), ("r", 4)]
    assert store.claim_due(60.0) == [("r", 0)]


def test_claim_due_keeps_odd_run_ids(harness):
    store = harness.store
    store.schedule("weekly|2025:01", 7, 1.0)
    store.schedule("plain", 12, 2.0)
    assert store.claim_due(5.0) == [("weekly|2025:01", 7), ("plain", 12)]


def test_claim_due_never_hands_an_entry_out_twice(harness):
    store = harness.store
    for i in range(300):
        store.schedule(f"r{i % 7}", i, float(i % 13))
    claimed: list[list[tuple[str, int]]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def claimer(slot: int) -> None:
        start.wait(timeout=10)
        while batch := store.claim_due(100.0, limit=7):
            claimed[slot].extend(batch)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    everything = [entry for batch in claimed for entry in batch]
    assert len(everything) == 300
    assert set(everything) == {(f"r{i % 7}", i) for i in range(300)}


# -- two holders, any interleaving, both implementations in lockstep -----------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TwoHolders(RuleBasedStateMachine):
    """Two workers fight over one run; the lock may lapse at any moment.

    Properties: MemoryStore and RedisStore give the same answer to every call and hold the
    same state; a commit succeeds only with the newest lease ever granted; the version counts
    the commits.
    """

    TTL_MS = 1000

    def __init__(self) -> None:
        super().__init__()
        self.clock = _Clock()
        self.mem = MemoryStore(clock=self.clock)
        self.red = RedisStore(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
        for store in (self.mem, self.red):
            assert store.create_run(RUN, {"status": "queued"}, {"n": 0})
        self.leases: dict[str, Lease] = {}
        self.seen_version: dict[str, int] = {}
        self.newest_token = 0
        self.commits = 0

    def _both(self, call):
        a, b = call(self.mem), call(self.red)
        assert a == b
        return a

    @rule(who=st.sampled_from(["a", "b"]))
    def acquire(self, who):
        lease = self._both(lambda s: s.acquire_lock(RUN, who, self.TTL_MS))
        if lease is not None:
            assert lease.token > self.newest_token
            self.newest_token = lease.token
            self.leases[who] = lease
            self.seen_version[who] = self._both(lambda s: s.get_state(RUN))[1]

    @rule()
    def lock_lapses(self):
        self.clock.now += self.TTL_MS / 1000.0 + 0.001
        # What a TTL does on the server, without waiting for it.
        self.red.client.delete(self.red.key(RUN, "lock"))

    @precondition(lambda self: self.leases)
    @rule(who=st.sampled_from(["a", "b"]), bump=st.integers(-1, 1))
    def cas(self, who, bump):
        lease = self.leases.get(who, Lease(who, 1))
        expected = self.seen_version.get(who, 0) + bump
        outcome = self._both(lambda s: s.cas_state(RUN, lease, expected, {"n": expected + 1}))
        self._check(who, lease, expected, outcome)

    @precondition(lambda self: self.leases)
    @rule(who=st.sampled_from(["a", "b"]), iteration=st.integers(0, 3))
    def commit(self, who, iteration):
        lease = self.leases.get(who, Lease(who, 1))
        expected = self.seen_version.get(who, 0)
        outcome = self._both(
            lambda s: s.commit_iteration(
                RUN, iteration, {"i": iteration, "by": who}, {"n": expected + 1}, lease, expected
            )
        )
        if outcome is not CommitOutcome.DUPLICATE:
            self._check(who, lease, expected, outcome)

    @rule(who=st.sampled_from(["a", "b"]))
    def release(self, who):
        if who in self.leases:
            self._both(lambda s: s.release_lock(RUN, self.leases[who]))

    def _check(self, who, lease, expected, outcome):
        if outcome is CommitOutcome.COMMITTED:
            assert lease.token == self.newest_token, "a stale token committed"
            self.commits += 1
            self.seen_version[who] = expected + 1

    @invariant()
    def same_state_and_version_counts_commits(self):
        state, version = self._both(lambda s: s.get_state(RUN))
        assert version == self.commits
        self._both(lambda s: s.iterations(RUN))


TestTwoHolders = TwoHolders.TestCase
TestTwoHolders.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
