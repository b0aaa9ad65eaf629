"""RedisStore specifics the contract cannot see: keys, stored bytes, scripts, errors, timeouts."""

from __future__ import annotations

import socket
import time

import fakeredis
import pytest
from redis import exceptions as rx

from soakq.errors import ConfigError, StoreError, StoreRefused, TransientStoreError
from soakq.jsonio import canonical
from soakq.store import CommitOutcome, Lease
from workers import store as store_module
from workers.store import RedisStore

RUN = "r1"


def test_key_layout_and_canonical_bytes(fake_redis):
    s = fake_redis
    record, state = {"b": 1, "a": [1.5, "x"], "status": "queued"}, {"z": {"y": 2}}
    assert s.create_run(RUN, record, state)
    lease = s.acquire_lock(RUN, "w", 5000)
    assert lease is not None
    assert s.commit_iteration(RUN, 4, {"i": 4}, {"n": 1}, lease, 0) is CommitOutcome.COMMITTED
    lease = s.acquire_lock(RUN, "w", 5000)  # the commit released the first one
    assert lease is not None
    assert s.put_extra(RUN, "release_gate", {"ok": True})
    s.touch_lease(RUN, 5, 3000)
    s.schedule(RUN, 5, 42.0)
    r = s.client
    p = "soakq:run:{r1}:"
    assert {k.decode() for k in r.keys("*")} == {
        p + "record",
        p + "status",
        p + "state",
        p + "version",
        p + "iters",
        p + "extras",
        p + "lock",
        p + "fence",
        p + "fence_seen",
        p + "lease",
        "soakq:runs",
        "soakq:runs:seq",
        "soakq:runs:active",
        "soakq:due",
    }
    assert set(s.run_keys(RUN)) == {k for k in (x.decode() for x in r.keys(p + "*"))}
    assert r.get(p + "record") == canonical(record).encode()
    assert r.get(p + "status") == b"queued"
    assert r.get(p + "state") == canonical({"n": 1}).encode()
    assert r.hgetall(p + "iters") == {b"4": b'{"i":4}'}
    assert r.hgetall(p + "extras") == {b"release_gate": b'{"ok":true}'}
    assert r.get(p + "version") == b"1"
    assert r.get(p + "lock") == f"w:{lease.token}".encode()
    assert r.get(p + "fence") == str(lease.token).encode() and r.get(p + "fence_seen") == b"1"
    assert r.get(p + "lease") == b"5" and 0 < r.pttl(p + "lease") <= 3000
    assert 0 < r.pttl(p + "lock") <= 5000
    assert r.smembers("soakq:runs:active") == {b"r1"}
    assert r.zrange("soakq:due", 0, -1, withscores=True) == [(b"r1|5", 42.0)]
    # No key of a live run expires on its own (the lock and the lease aside).
    assert all(r.ttl(k) == -1 for k in r.keys("*") if not k.endswith((b":lock", b":lease")))


def test_prefixes_isolate_stores_on_one_server():
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    a, b = RedisStore(client, prefix="soakq-a"), RedisStore(client, prefix="soakq-b")
    assert a.create_run(RUN, {"status": "queued", "who": "a"}, {})
    assert b.create_run(RUN, {"status": "queued", "who": "b"}, {})
    assert a.get_record(RUN)["who"] == "a" and b.get_record(RUN)["who"] == "b"
    a.schedule(RUN, 0, 1.0)
    assert b.claim_due(10.0) == []
    assert a.claim_due(10.0) == [(RUN, 0)]


def test_works_on_a_decoding_client():
    s = RedisStore(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    assert s.create_run(RUN, {"r": 1, "status": "queued"}, {"n": 0})
    lease = s.acquire_lock(RUN, "w", 1000)
    assert lease is not None
    assert s.cas_state(RUN, lease, 0, {"n": 1}) is CommitOutcome.COMMITTED
    assert s.get_state(RUN) == ({"n": 1}, 1)
    assert s.list_runs() == [RUN]
    s.schedule(RUN, 3, 1.0)
    assert s.claim_due(2.0) == [(RUN, 3)]


def test_fence_refuses_a_resurrected_old_lock(fake_redis):
    """Defence in depth: if a failover brought back an old lock value, the old token still
    cannot commit once a newer token has."""
    s = fake_redis
    assert s.create_run(RUN, {"status": "queued"}, {"by": None})
    old = s.acquire_lock(RUN, "a", 5000)
    assert old is not None and s.release_lock(RUN, old)
    new = s.acquire_lock(RUN, "b", 5000)
    assert new is not None
    assert s.cas_state(RUN, new, 0, {"by": "b"}) is CommitOutcome.COMMITTED
    s.client.set(s.key(RUN, "lock"), f"a:{old.token}", px=5000)  # the resurrected lock
    assert s.cas_state(RUN, old, 1, {"by": "a"}) is CommitOutcome.STALE_LOCK
    outcome = s.commit_iteration(RUN, 0, {}, {"by": "a"}, old, 1)
    assert outcome is CommitOutcome.STALE_LOCK
    assert s.get_state(RUN) == ({"by": "b"}, 1)


def test_scripts_are_reloaded_after_script_flush(fake_redis):
    s = fake_redis
    assert s.create_run(RUN, {"status": "queued"}, {})
    s.client.script_flush()
    lease = s.acquire_lock(RUN, "w", 1000)
    assert lease is not None
    assert s.cas_state(RUN, lease, 0, {"n": 1}) is CommitOutcome.COMMITTED


def test_every_script_is_package_data():
    for name in store_module._SCRIPTS:
        assert "redis.call" in store_module.lua_source(name)


def test_ttl_must_be_positive(fake_redis):
    with pytest.raises(ValueError):
        fake_redis.acquire_lock(RUN, "w", 0)


def test_corrupt_stored_json_is_a_store_error(fake_redis):
    fake_redis.client.set(fake_redis.key(RUN, "record"), b"{not json")
    with pytest.raises(StoreError, match="corrupt"):
        fake_redis.get_record(RUN)


def test_claim_due_with_no_room_claims_nothing(fake_redis):
    fake_redis.schedule(RUN, 0, 1.0)
    assert fake_redis.claim_due(5.0, limit=0) == []
    assert fake_redis.claim_due(5.0) == [(RUN, 0)]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (rx.ConnectionError("reset"), TransientStoreError),
        (rx.TimeoutError("slow"), TransientStoreError),
        (rx.BusyLoadingError("loading"), TransientStoreError),
        (rx.ReadOnlyError("replica"), TransientStoreError),
        (rx.AuthenticationError("bad password"), StoreRefused),
        (rx.ResponseError("OOM command not allowed"), StoreRefused),
        (rx.OutOfMemoryError("command not allowed"), StoreRefused),
        (rx.ResponseError("WRONGTYPE"), StoreError),
    ],
)
def test_redis_errors_map_onto_the_error_tree(fake_redis, monkeypatch, error, expected):
    def boom(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(fake_redis.client, "get", boom)
    with pytest.raises(expected) as info:
        fake_redis.get_record(RUN)
    if expected is not TransientStoreError:
        assert not isinstance(info.value, TransientStoreError)
    assert info.value.exit_code == (2 if expected is StoreRefused else 1)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_transient_and_fails_fast():
    s = RedisStore.from_url(
        f"redis://127.0.0.1:{_closed_port()}/0",
        socket_timeout=0.2,
        socket_connect_timeout=0.2,
    )
    started = time.monotonic()
    with pytest.raises(TransientStoreError):
        s.ping()
    with pytest.raises(TransientStoreError):
        s.acquire_lock(RUN, "w", 1000)
    with pytest.raises(TransientStoreError):
        s.cas_state(RUN, Lease("w", 1), 0, {})
    assert time.monotonic() - started < 5.0


def test_from_url_sets_socket_timeouts_explicitly():
    s = RedisStore.from_url("redis://:pw@127.0.0.1:6399/2", socket_timeout=1.5)
    kwargs = s.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 1.5
    assert kwargs["socket_connect_timeout"] == 5.0
    assert kwargs["password"] == "pw" and kwargs["db"] == 2


def test_bad_url_is_a_config_error_without_the_password():
    with pytest.raises(ConfigError) as info:
        RedisStore.from_url("http://:hunter2@example/0")
    assert "hunter2" not in str(info.value)
    assert "redis://" in str(info.value)


def _ttls(s, run_id):
    r = s.client
    return {k.decode(): r.ttl(k) for k in r.scan_iter(match=s.key(run_id, "*"))}


def test_ending_a_run_gives_every_key_the_retention_ttl():
    from soakq.states import RunStatus

    s = RedisStore(fakeredis.FakeRedis(server=fakeredis.FakeServer()), retention_s=3600)
    assert s.create_run(RUN, {"status": "queued"}, {"n": 0})
    lease = s.acquire_lock(RUN, "w", 5000)
    assert s.commit_iteration(RUN, 1, {"i": 1}, {"n": 1}, lease, 0) is CommitOutcome.COMMITTED
    s.release_lock(RUN, lease)
    s.touch_lease(RUN, 2, 60_000)
    assert all(ttl == -1 for k, ttl in _ttls(s, RUN).items() if not k.endswith(":lease"))
    assert s.transition(RUN, RunStatus.CANCELLED, now_ts=1000.0).applied
    ttls = _ttls(s, RUN)
    assert set(ttls) >= {s.key(RUN, p) for p in ("record", "status", "state", "iters")}
    assert all(0 < ttl <= 3600 for k, ttl in ttls.items() if not k.endswith(":lease")), ttls
    # Written after the end, still bounded: an annotation, a late gate, a lock and its counter.
    s.note_published(RUN, {"status": "cancelled"})
    assert s.put_extra(RUN, "release_gate", {"verdict": "FAILED"})
    lease = s.acquire_lock(RUN, "late", 5000)
    assert lease is not None and s.release_lock(RUN, lease)
    ttls = _ttls(s, RUN)
    assert s.key(RUN, "extras") in ttls and s.key(RUN, "fence") in ttls
    assert all(0 < ttl <= 3600 for ttl in ttls.values()), ttls
    assert s.client.zscore(s.finished_key, RUN) == 1000.0
    # A run that never took the lock gets a counter later: it inherits the TTL too.
    assert s.create_run("r2", {"status": "queued"}, {})
    assert s.transition("r2", RunStatus.LOST, now_ts=1.0).applied
    assert s.acquire_lock("r2", "late", 5000) is not None
    assert 0 < s.client.ttl(s.key("r2", "fence")) <= 3600


def test_run_id_counter_expires_after_twice_the_retention():
    s = RedisStore(fakeredis.FakeRedis(server=fakeredis.FakeServer()), retention_s=100)
    assert s.next_suffix("cfg") == 1 and s.next_suffix("cfg") == 2
    assert 100 < s.client.ttl("soakq:runid:cfg") <= 200


def test_retention_must_be_positive():
    with pytest.raises(ValueError):
        RedisStore(fakeredis.FakeRedis(server=fakeredis.FakeServer()), retention_s=0)
