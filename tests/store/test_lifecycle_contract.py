"""The run life-cycle contract, on MemoryStore, RedisStore on fakeredis and on a real server.

One state machine applied atomically where the status lives: a transition checks the table at
the moment it applies, a terminal status is never left, a commit is refused once the run has
ended, and the indexes (active, finished, unpublished) follow the transitions.
"""

from __future__ import annotations

import random
import threading

import pytest

from soakq.states import TRANSITIONS, RunStatus, allowed_from
from soakq.store import CommitOutcome, TransitionOutcome

TTL_MS = 10_000
NOW = 1_700_000_000.0
QUEUED = {"status": "queued", "spec": {"iterations": 6}}
TERMINALS = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST]


def _run(store, run_id="run-1", state=None):
    assert store.create_run(run_id, dict(QUEUED), {"n": 0} if state is None else state)
    return run_id


def _commit(store, run_id, i):
    lease = store.acquire_lock(run_id, "w", TTL_MS)
    assert lease is not None
    try:
        _, version = store.get_state(run_id)
        return store.commit_iteration(run_id, i, {"i": i}, {"n": i}, lease, version)
    finally:
        store.release_lock(run_id, lease)


# -- the table ----------------------------------------------------------------------------
def test_allowed_from_is_the_table_read_backwards():
    for target in RunStatus:
        assert allowed_from(target) == {s for s, nxt in TRANSITIONS.items() if target in nxt}
    assert allowed_from(RunStatus.QUEUED) == set()
    assert allowed_from(RunStatus.RUNNING) == {RunStatus.QUEUED}  # resume restores, never moves
    assert allowed_from(RunStatus.INTERRUPTED) == {RunStatus.QUEUED, RunStatus.RUNNING}
    # A step past its check may still commit the last iteration of an interrupted run.
    assert allowed_from(RunStatus.SUCCEEDED) == {RunStatus.RUNNING, RunStatus.INTERRUPTED}
    for t in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST):
        assert allowed_from(t) == {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.INTERRUPTED}
    working = {s for s in RunStatus if s.accepts_work}
    assert working == {RunStatus.QUEUED, RunStatus.RUNNING}


@pytest.mark.parametrize("target", list(RunStatus))
@pytest.mark.parametrize(
    "start", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.INTERRUPTED, *TERMINALS]
)
def test_every_move_follows_the_table(harness, start, target):
    store = harness.store
    run_id = _run(store)
    if start != RunStatus.QUEUED:
        if start.terminal or start == RunStatus.INTERRUPTED:
            store.transition(run_id, RunStatus.RUNNING, now_ts=NOW)
        assert store.transition(run_id, start, now_ts=NOW).applied
    got = store.transition(run_id, target, lambda r, s: {"moved": True}, now_ts=NOW)
    record = store.get_record(run_id)
    if target == start:
        assert (got.outcome, got.status) == (TransitionOutcome.ALREADY, start)
        assert "moved" not in record
    elif target in TRANSITIONS[start]:
        assert (got.outcome, got.status) == (TransitionOutcome.APPLIED, target)
        assert got.record == record and record["moved"] is True
    else:
        assert (got.outcome, got.status) == (TransitionOutcome.REFUSED, start)
        assert "moved" not in record
    assert record["status"] == got.status


def test_changes_see_the_record_and_state_the_transition_applies_to(harness):
    store = harness.store
    run_id = _run(store, state={"n": 7})
    store.update_record(run_id, {"drive": {"iteration": 8}})
    seen = []

    def changes(record, state):
        seen.append((record["drive"], state))
        return {"outcome": {"done": state["n"]}}

    got = store.transition(run_id, RunStatus.CANCELLED, changes, now_ts=NOW)
    assert got.applied and seen[-1] == ({"iteration": 8}, {"n": 7})
    assert store.get_record(run_id)["outcome"] == {"done": 7}
    other = _run(store, "run-2")
    with pytest.raises(ValueError, match="transition"):
        store.transition(other, RunStatus.RUNNING, lambda r, s: {"status": "lost"}, now_ts=NOW)
    assert store.get_record(other)["status"] == "queued"


def test_transition_of_a_missing_run_raises(harness):
    with pytest.raises(KeyError):
        harness.store.transition("ghost", RunStatus.CANCELLED, now_ts=NOW)


# -- after the end ------------------------------------------------------------------------
@pytest.mark.parametrize("end", TERMINALS)
def test_a_terminal_run_takes_no_commit_and_keeps_its_status(harness, end):
    store = harness.store
    run_id = _run(store)
    assert _commit(store, run_id, 1) is CommitOutcome.COMMITTED
    assert store.transition(run_id, RunStatus.RUNNING, now_ts=NOW).applied
    assert store.transition(run_id, end, now_ts=NOW).applied
    assert _commit(store, run_id, 2) is CommitOutcome.RUN_ENDED
    assert _commit(store, run_id, 1) is CommitOutcome.DUPLICATE  # a replay is still a no-op
    lease = store.acquire_lock(run_id, "w", TTL_MS)
    assert store.cas_state(run_id, lease, 1, {"n": 99}) is CommitOutcome.RUN_ENDED
    assert store.get_state(run_id) == ({"n": 1}, 1)
    assert [d["i"] for d in store.iterations(run_id)] == [1]
    for other in RunStatus:
        got = store.transition(run_id, other, lambda r, s: {"x": 1}, now_ts=NOW)
        assert got.status == end and not got.applied
    assert store.get_record(run_id)["status"] == end and "x" not in store.get_record(run_id)


def test_indexes_follow_the_transitions(harness):
    store = harness.store
    for run_id in ("a", "b", "c"):
        _run(store, run_id)
    assert store.active_runs() == ["a", "b", "c"]
    assert store.unpublished() == []
    store.transition("b", RunStatus.RUNNING, now_ts=NOW)
    assert store.active_runs() == ["a", "b", "c"]
    store.transition("b", RunStatus.SUCCEEDED, now_ts=NOW + 10)
    store.transition("a", RunStatus.CANCELLED, now_ts=NOW + 20)
    assert store.active_runs() == ["c"]
    assert store.unpublished() == ["a", "b"]
    store.note_published("b", {"status": "succeeded"})
    assert store.unpublished() == ["a"]
    assert store.get_record("b")["published"] == {"status": "succeeded"}
    assert store.get_record("b")["status"] == "succeeded"
    # prune: finished at or before the cutoff, nothing else
    assert store.prune(NOW + 5) == []
    assert store.prune(NOW + 10) == ["b"]
    assert store.get_record("b") is None and store.iterations("b") == []
    assert store.list_runs() == ["a", "c"]
    assert store.prune(NOW + 1e9) == ["a"]
    assert store.list_runs() == ["c"] and store.active_runs() == ["c"]
    assert store.unpublished() == []


def test_discard_removes_a_run_whatever_its_status(harness):
    store = harness.store
    run_id = _run(store)
    _commit(store, run_id, 1)
    store.put_extra(run_id, "x", {"y": 1})
    store.touch_lease(run_id, 2, TTL_MS)
    assert store.discard_run(run_id) is True
    assert store.get_record(run_id) is None
    assert store.get_iteration(run_id, 1) is None and store.get_extra(run_id, "x") is None
    assert store.leased_iteration(run_id) is None
    assert store.list_runs() == [] and store.active_runs() == []
    assert store.discard_run(run_id) is False
    assert store.create_run(run_id, dict(QUEUED), {"n": 0})  # the id is free again


def test_suffix_counter_counts_per_base(harness):
    store = harness.store
    assert [store.next_suffix("cfg-a") for _ in range(3)] == [1, 2, 3]
    assert store.next_suffix("cfg-b") == 1


def test_lease_names_the_iteration_until_it_lapses(harness, wait_for):
    store = harness.store
    run_id = _run(store)
    assert store.leased_iteration(run_id) is None
    store.touch_lease(run_id, 3, TTL_MS)
    assert store.leased_iteration(run_id) == 3
    store.touch_lease(run_id, 4, harness.short_ttl_ms)
    assert store.leased_iteration(run_id) == 4
    if harness.clock is not None:
        harness.clock.advance(harness.short_ttl_ms / 1000 + 0.001)
    else:
        key = harness.redis.key(run_id, "lease")
        wait_for(lambda: not harness.redis.client.exists(key), "the lease to lapse")
    assert store.leased_iteration(run_id) is None


def test_lease_names_the_queue_of_a_task_off_the_default_one(harness):
    store = harness.store
    run_id = _run(store)
    assert store.lease(run_id) is None
    store.touch_lease(run_id, 2, TTL_MS)
    assert store.lease(run_id) == (2, None)
    store.touch_lease(run_id, 2, TTL_MS, "soakq.bot.paper")
    assert store.lease(run_id) == (2, "soakq.bot.paper")
    assert store.leased_iteration(run_id) == 2


def test_mutex_is_exclusive_until_released_or_lapsed(harness):
    store = harness.store
    assert store.try_mutex("tick", "a", harness.short_ttl_ms)
    assert not store.try_mutex("tick", "b", harness.short_ttl_ms)
    assert store.try_mutex("other", "b", TTL_MS)
    assert not store.release_mutex("tick", "b")
    assert store.release_mutex("tick", "a") and not store.release_mutex("tick", "a")
    assert store.try_mutex("tick", "b", harness.short_ttl_ms)
    if harness.clock is not None:
        harness.clock.advance(harness.short_ttl_ms / 1000 + 0.001)
        assert store.try_mutex("tick", "c", TTL_MS)
    assert store.list_runs() == []  # a mutex is no run


def test_heartbeat_is_the_latest_one_until_it_lapses(harness, wait_for):
    store = harness.store
    assert store.get_heartbeat("tick") is None
    store.put_heartbeat("tick", {"at_ts": NOW, "every_s": 10.0}, TTL_MS)
    assert store.get_heartbeat("tick") == {"at_ts": NOW, "every_s": 10.0}
    assert store.get_heartbeat("other") is None
    store.put_heartbeat("tick", {"at_ts": NOW + 10, "every_s": 10.0}, harness.short_ttl_ms)
    assert store.get_heartbeat("tick") == {"at_ts": NOW + 10, "every_s": 10.0}  # replaced
    assert store.list_runs() == [] and store.active_runs() == []  # a heartbeat is no run
    if harness.clock is not None:
        harness.clock.advance(harness.short_ttl_ms / 1000 + 0.001)
    else:
        wait_for(lambda: store.get_heartbeat("tick") is None, "the heartbeat to lapse")
    assert store.get_heartbeat("tick") is None


# -- races --------------------------------------------------------------------------------
ROUNDS = 12


def _race(store, run_id, enders, delays):
    """Start the enders and a committer together; return each ender's Transition."""
    start = threading.Barrier(len(enders) + 1)
    results = {}
    errors: list[BaseException] = []

    def ender(target, delay):
        try:
            start.wait(5)
            threading.Event().wait(delay)
            results[target] = store.transition(
                run_id, target, lambda r, s: {"seen": s["n"]}, now_ts=NOW
            )
        except BaseException as exc:
            errors.append(exc)

    def committer():
        try:
            start.wait(5)
            i = 1
            while i < 1000:
                lease = store.acquire_lock(run_id, "c", TTL_MS)
                if lease is None:
                    continue
                try:
                    _, version = store.get_state(run_id)
                    out = store.commit_iteration(run_id, i, {"i": i}, {"n": i}, lease, version)
                finally:
                    store.release_lock(run_id, lease)
                if out is CommitOutcome.RUN_ENDED:
                    return
                assert out is CommitOutcome.COMMITTED, out
                i += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=ender, args=(t, d)) for t, d in zip(enders, delays, strict=True)
    ]
    threads.append(threading.Thread(target=committer))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    return results


def test_cancel_complete_and_lost_race_one_terminal_wins(harness):
    """Three enders and a committer start together, each ender after a random few
    milliseconds: exactly one terminal status wins and stays, and its outcome counts every
    committed iteration (none is committed after it). Odd rounds start from running (complete
    is a move to succeeded), even rounds from queued (complete there is a failure)."""
    store = harness.store
    rng = random.Random(10)
    winners = set()
    for n in range(ROUNDS):
        run_id = _run(store, f"race-{n}")
        done = RunStatus.FAILED
        if n % 2:
            assert store.transition(run_id, RunStatus.RUNNING, now_ts=NOW).applied
            done = RunStatus.SUCCEEDED
        enders = (done, RunStatus.CANCELLED, RunStatus.LOST)
        results = _race(store, run_id, enders, [rng.uniform(0, 0.004) for _ in enders])
        applied = [t for t, r in results.items() if r.applied]
        assert len(applied) == 1, results
        winner = applied[0]
        winners.add(winner)
        for t, r in results.items():
            if t != winner:
                assert (r.outcome, r.status) == (TransitionOutcome.REFUSED, winner)
        record = store.get_record(run_id)
        state, version = store.get_state(run_id)
        assert record["status"] == winner
        assert record["seen"] == state["n"] == version == len(store.iterations(run_id))
        assert run_id not in store.active_runs() and run_id in store.unpublished()
        for t in RunStatus:  # and it stays
            assert not store.transition(run_id, t, now_ts=NOW).applied
        assert store.get_record(run_id) == record
    # the race is real: more than one ender won across the rounds
    assert len(winners) >= 2, winners


def test_a_waiting_step_is_abandoned_once_its_run_takes_no_more_work(harness):
    """What a live step waiting for the bot asks once a second (runner.abandon_reason)."""
    from soakq.runner import abandon_reason

    store = harness.store
    run_id = _run(store)
    assert abandon_reason(store, run_id) is None  # queued
    store.transition(run_id, RunStatus.RUNNING, now_ts=NOW)
    assert abandon_reason(store, run_id) is None
    store.transition(run_id, RunStatus.CANCELLED, now_ts=NOW)
    assert abandon_reason(store, run_id) == f"run {run_id} is cancelled"
    assert abandon_reason(store, "no-such-run") is None


def test_a_store_that_cannot_answer_does_not_abandon_the_step():
    """A Redis blip mid-window is no reason to throw the window away."""
    from soakq.errors import TransientStoreError
    from soakq.runner import abandon_reason

    class Unreachable:
        def get_record(self, run_id):
            raise TransientStoreError("redis unavailable during get_record")

    assert abandon_reason(Unreachable(), "run-1") is None  # type: ignore[arg-type]
