"""The production RunStore on Redis: transitions, fenced locks and commits as Lua scripts.

Key layout, with the default prefix ``soakq``. The run id sits in a hash tag (``{...}``) so all
keys of one run share a cluster slot, which per-run scripts need on a cluster:

    soakq:run:{<run_id>}:record        run record, canonical JSON
    soakq:run:{<run_id>}:status        the record's status alone (what the scripts check)
    soakq:run:{<run_id>}:state         run state, canonical JSON
    soakq:run:{<run_id>}:version       integer: 0 at creation, +1 per committed state write
    soakq:run:{<run_id>}:iters         HASH iteration number -> document, each written once
    soakq:run:{<run_id>}:extras        HASH name -> run-level document, each written once
    soakq:run:{<run_id>}:lock          "owner:token", with a TTL
    soakq:run:{<run_id>}:fence         the last fencing token granted
    soakq:run:{<run_id>}:fence_seen    the highest token that ever committed
    soakq:run:{<run_id>}:lease         the iteration a worker is busy with, with a short TTL
    soakq:runs                         ZSET of run ids scored by creation sequence
    soakq:runs:seq                     that sequence
    soakq:runs:active                  SET of the runs that have not ended
    soakq:runs:finished                ZSET of ended runs scored by finish time (epoch s)
    soakq:runs:unpublished             SET of ended runs whose artifacts are not written yet
    soakq:runid:<base>                 counter numbering re-submitted run ids (with a TTL)
    soakq:due                          ZSET "run_id|iteration" scored by due time (epoch s)
    soakq:mutex:<name>                 a plain mutex with a TTL (the tick's watchdog pass)
    soakq:heartbeat:<name>             JSON {at_ts, every_s} with a TTL (beat's tick: "tick")
    soakq:dead-letters                 malformed queue messages set aside (workers.transport)

Bounded: the transition that ends a run gives every key of the run a TTL of the retention
(``SOAKQ_RETENTION_DAYS``), and keys written afterwards keep or inherit it; the tick drops
expired runs from the indexes (``prune``). Only active runs are ever walked.

Every method is one atomic server-side step, except ``update_record`` and ``transition``
(optimistic read-merge-replace loops whose check happens in the script) and ``iterations``.

Retries: redis-py retries nothing but a dropped connection, once (``from_url``); the one retry
layer above that is the task's (workers.tasks) or, for the CLI, none: an unresponsive Redis is
an error within about the socket timeout. A command that timed out may still have run.
Re-running a script is safe, and the answer then tells the truth about the store, not about
the first attempt: a repeated ``commit_iteration`` says DUPLICATE, a repeated ``cas_state``
says VERSION_MISMATCH, a repeated ``create_run`` says False, a repeated ``transition`` says
ALREADY. Callers re-read on those answers.

Errors: connection trouble raises ``TransientStoreError`` (the only retried kind); any other
Redis error raises ``StoreError``. A missing run raises ``KeyError``, as ``MemoryStore`` does.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, TypeVar

import redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from soakq.errors import ConfigError, InputError, StoreError, StoreRefused, TransientStoreError
from soakq.jsonio import canonical, loads
from soakq.settings import redacted
from soakq.states import TERMINAL, RunStatus, allowed_from
from soakq.store import (
    Changes,
    CommitOutcome,
    JsonDict,
    Lease,
    Transition,
    TransitionOutcome,
    check_changes,
    record_status,
)

logger = logging.getLogger(__name__)

_SCRIPTS = (
    "acquire",
    "extend",
    "release",
    "cas",
    "commit_iteration",
    "restore_run",
    "replace_if",
    "claim_due",
    "transition",
    "put_extra",
    "discard_run",
)

#: Every key of one run, by its part name (what ends up with the retention TTL).
RUN_PARTS = (
    "record",
    "status",
    "state",
    "version",
    "iters",
    "extras",
    "lock",
    "fence",
    "fence_seen",
    "lease",
)

DEFAULT_RETENTION_S = 30 * 86_400

# Connection-level failures worth retrying; bad credentials are a ConnectionError subclass in
# redis-py but retrying them cannot help.
_TRANSIENT: tuple[type[Exception], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.ReadOnlyError,  # a replica during failover
    rx.TryAgainError,
)
_PERMANENT: tuple[type[Exception], ...] = (rx.AuthenticationError, rx.AuthorizationError)

# Optimistic update_record / transition retries before giving up as contended.
_UPDATE_ATTEMPTS = 100

_TERMINAL_ARGS = sorted(str(s) for s in TERMINAL)

_T = TypeVar("_T")


@functools.cache
def lua_source(name: str) -> str:
    """The text of ``workers/lua/<name>.lua`` (package data)."""
    return (resources.files("workers") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def _text(value: Any) -> str | None:
    """A reply as text, whether or not the client decodes responses."""
    if value is None or isinstance(value, str):
        return value
    return bytes(value).decode("utf-8")


def _decode(raw: str, what: str) -> Any:
    """Parse a stored document; unparsable stored data is a store fault, not user input."""
    try:
        return loads(raw, what=what)
    except InputError as exc:
        raise StoreError(f"corrupt data in redis: {exc}") from None


_redacted = redacted


@contextmanager
def _guard(op: str) -> Iterator[None]:
    """Translate redis-py errors into the soakq error tree."""
    try:
        yield
    except _PERMANENT as exc:
        raise StoreRefused(
            f"redis refused {op}: {exc} (check the password in SOAKQ_REDIS_URL)"
        ) from exc
    except _TRANSIENT as exc:
        raise TransientStoreError(f"redis unavailable during {op}: {exc}") from exc
    except rx.RedisError as exc:
        if is_out_of_memory(exc):
            raise StoreRefused(
                f"redis is out of memory ({op}: {exc}); raise maxmemory or free memory "
                "(`soakq prune` removes finished runs)"
            ) from exc
        if "DB index is out of range" in str(exc):
            raise StoreRefused(
                f"redis refused {op}: {exc} (check the database number in SOAKQ_REDIS_URL)"
            ) from exc
        raise StoreError(f"redis failed {op}: {exc}") from exc


def is_out_of_memory(exc: BaseException) -> bool:
    """Redis refused a write because it reached ``maxmemory`` (under ``noeviction``)."""
    return isinstance(exc, rx.OutOfMemoryError) or (
        isinstance(exc, rx.ResponseError) and str(exc).startswith("OOM")
    )


def _guarded(method: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(method)
    def wrapper(self: RedisStore, *args: Any, **kwargs: Any) -> _T:
        with _guard(method.__name__):
            return method(self, *args, **kwargs)

    return wrapper


def _positive_ttl(ttl_ms: int) -> int:
    ttl = int(ttl_ms)
    if ttl < 1:
        raise ValueError(f"lock ttl must be at least 1 ms, got {ttl_ms!r}")
    return ttl


def one_reconnect() -> Retry:
    """redis-py's retry policy for every soakq client: a dropped connection (a Redis restart)
    is re-opened once, at once; a timeout is never retried here. Without this redis-py retries
    3 times with backoff at two nested levels, and a Redis that never answers holds one
    command for minutes."""
    return Retry(NoBackoff(), 1, supported_errors=(rx.ConnectionError,))


def client_options(socket_timeout: float, socket_connect_timeout: float) -> dict[str, Any]:
    """The connection options of every redis-py client soakq opens."""
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "socket_keepalive": True,
        "retry": one_reconnect(),
        "retry_on_error": [],
        "health_check_interval": 0,
    }


class RedisStore:
    """RunStore over a redis-py client (``redis.Redis`` or ``fakeredis.FakeRedis`` with Lua)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "soakq",
        *,
        retention_s: int = DEFAULT_RETENTION_S,
    ) -> None:
        if int(retention_s) < 1:
            raise ValueError(f"retention must be at least 1 s, got {retention_s!r}")
        self._r = client
        self._prefix = prefix
        self.retention_s = int(retention_s)
        self._scripts = {name: client.register_script(lua_source(name)) for name in _SCRIPTS}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "soakq",
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 5.0,
        retention_s: int = DEFAULT_RETENTION_S,
    ) -> RedisStore:
        """Connect to ``url`` with explicit socket timeouts (s) and one reconnect, no other
        retry (``one_reconnect``). Raises ConfigError when the URL is not a Redis URL."""
        try:
            client = redis.Redis.from_url(
                url, **client_options(socket_timeout, socket_connect_timeout)
            )
        except ValueError as exc:
            why = " ".join(str(exc).split()).rstrip(".")
            raise ConfigError(
                f"SOAKQ_REDIS_URL={redacted(url)!r} is not a Redis URL ({why}); "
                "expected redis://[:password@]host:port/db"
            ) from None
        return cls(client, prefix=prefix, retention_s=retention_s)

    @property
    def client(self) -> redis.Redis:
        return self._r

    def key(self, run_id: str, part: str) -> str:
        """The Redis key of ``part`` (``record``, ``state``, ``iters``, …) of a run."""
        return f"{self._prefix}:run:{{{run_id}}}:{part}"

    def run_keys(self, run_id: str) -> list[str]:
        """Every key one run may have."""
        return [self.key(run_id, part) for part in RUN_PARTS]

    @property
    def runs_key(self) -> str:
        return f"{self._prefix}:runs"

    @property
    def active_key(self) -> str:
        return f"{self._prefix}:runs:active"

    @property
    def finished_key(self) -> str:
        return f"{self._prefix}:runs:finished"

    @property
    def unpublished_key(self) -> str:
        return f"{self._prefix}:runs:unpublished"

    @property
    def due_key(self) -> str:
        return f"{self._prefix}:due"

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=args)

    @_guarded
    def ping(self) -> None:
        """Raise TransientStoreError unless the server answers."""
        self._r.ping()

    @_guarded
    def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy``, or None when CONFIG is not allowed to us."""
        try:
            reply = self._r.config_get("maxmemory-policy")
        except rx.ResponseError:
            return None
        for name, value in dict(reply).items():
            if _text(name) == "maxmemory-policy":
                return _text(value)
        return None

    def close(self) -> None:
        self._r.close()

    # -- records ---------------------------------------------------------------------------
    def create_run(self, run_id: str, record: JsonDict, state: JsonDict) -> bool:
        return self.restore_run(run_id, record, state, 0, [])  # one script: version 0, no docs

    @_guarded
    def restore_run(
        self,
        run_id: str,
        record: JsonDict,
        state: JsonDict,
        version: int,
        docs: list[JsonDict],
    ) -> bool:
        status = record_status(record)
        keys = [
            self.key(run_id, "record"),
            self.key(run_id, "status"),
            self.key(run_id, "state"),
            self.key(run_id, "version"),
            self.runs_key,
            f"{self._prefix}:runs:seq",
            self.active_key,
            self.key(run_id, "iters"),
        ]
        args: list[Any] = [run_id, canonical(record), str(status), canonical(state), int(version)]
        for doc in docs:
            args += [int(doc["iteration"]), canonical(doc)]
        return bool(self._run("restore_run", keys, args))

    @_guarded
    def next_suffix(self, base: str) -> int:
        key = f"{self._prefix}:runid:{base}"
        pipe = self._r.pipeline(transaction=True)
        pipe.incr(key)
        # Outlives the runs it numbered by a retention: a reused suffix then finds no record.
        pipe.expire(key, 2 * self.retention_s)
        n, _ = pipe.execute()
        return int(n)

    @_guarded
    def get_record(self, run_id: str) -> JsonDict | None:
        raw = _text(self._r.get(self.key(run_id, "record")))
        return None if raw is None else _decode(raw, f"record of run {run_id}")

    @_guarded
    def update_record(self, run_id: str, changes: JsonDict) -> JsonDict:
        check_changes(changes)
        key = self.key(run_id, "record")
        for _ in range(_UPDATE_ATTEMPTS):
            raw = _text(self._r.get(key))
            if raw is None:
                raise KeyError(run_id)
            record = _decode(raw, f"record of run {run_id}")
            record.update(changes)
            replaced = self._run("replace_if", [key], [raw, canonical(record)])
            if replaced == 1:
                return dict(record)
            if replaced == -1:
                raise KeyError(run_id)
        raise TransientStoreError(
            f"record of run {run_id} changed {_UPDATE_ATTEMPTS} times while updating it; retry"
        )

    @_guarded
    def transition(
        self,
        run_id: str,
        target: RunStatus,
        changes: Changes | None = None,
        *,
        now_ts: float,
    ) -> Transition:
        target = RunStatus(target)
        keys = [
            self.key(run_id, "record"),
            self.key(run_id, "status"),
            self.key(run_id, "version"),
            self.active_key,
            self.finished_key,
            self.unpublished_key,
            *self.run_keys(run_id),
        ]
        allowed = sorted(str(s) for s in allowed_from(target))
        for _ in range(_UPDATE_ATTEMPTS):
            raw, version, state_raw = (
                _text(v) for v in self._r.mget([keys[0], keys[2], self.key(run_id, "state")])
            )
            if raw is None or version is None or state_raw is None:
                raise KeyError(run_id)
            record = _decode(raw, f"record of run {run_id}")
            if changes is not None:
                state = _decode(state_raw, f"state of run {run_id}")
                record.update(check_changes(changes(dict(record), state)))
            record["status"] = str(target)
            args = [
                str(target),
                raw,
                version,
                canonical(record),
                "1" if target.terminal else "0",
                self.retention_s,
                run_id,
                repr(float(now_ts)),
                *allowed,
            ]
            outcome, status = (str(_text(v)) for v in self._run("transition", keys, args))
            if outcome == "RETRY":
                continue
            if outcome == "NO_RUN":
                raise KeyError(run_id)
            if outcome == "APPLIED":
                return Transition(TransitionOutcome.APPLIED, target, record)
            return Transition(TransitionOutcome(outcome.lower()), RunStatus(status))
        raise TransientStoreError(
            f"run {run_id} changed {_UPDATE_ATTEMPTS} times while moving it to {target}; retry"
        )

    @_guarded
    def list_runs(self) -> list[str]:
        return [str(_text(m)) for m in self._r.zrange(self.runs_key, 0, -1)]

    @_guarded
    def active_runs(self) -> list[str]:
        return sorted(str(_text(m)) for m in self._r.smembers(self.active_key))

    # -- state + lock ----------------------------------------------------------------------
    @_guarded
    def get_state(self, run_id: str) -> tuple[JsonDict, int]:
        raw, version = self._r.mget([self.key(run_id, "state"), self.key(run_id, "version")])
        text = _text(raw)
        if text is None or version is None:
            raise KeyError(run_id)
        return _decode(text, f"state of run {run_id}"), int(version)

    @_guarded
    def read_run(self, run_id: str) -> tuple[JsonDict, JsonDict, int]:
        keys = [self.key(run_id, "record"), self.key(run_id, "state"), self.key(run_id, "version")]
        raw, state, version = (_text(v) for v in self._r.mget(keys))
        if raw is None or state is None or version is None:
            raise KeyError(run_id)
        return (
            _decode(raw, f"record of run {run_id}"),
            _decode(state, f"state of run {run_id}"),
            int(version),
        )

    @_guarded
    def acquire_lock(self, run_id: str, owner: str, ttl_ms: int) -> Lease | None:
        keys = [self.key(run_id, "lock"), self.key(run_id, "fence"), self.key(run_id, "status")]
        token = self._run("acquire", keys, [owner, _positive_ttl(ttl_ms)])
        return None if token is None else Lease(owner, int(token))

    @_guarded
    def extend_lock(self, run_id: str, lease: Lease, ttl_ms: int) -> bool:
        args = [_lock_value(lease), _positive_ttl(ttl_ms)]
        return self._run("extend", [self.key(run_id, "lock")], args) == 1

    @_guarded
    def release_lock(self, run_id: str, lease: Lease) -> bool:
        return self._run("release", [self.key(run_id, "lock")], [_lock_value(lease)]) == 1

    def _fence_keys(self, run_id: str) -> list[str]:
        return [
            self.key(run_id, "lock"),
            self.key(run_id, "fence_seen"),
            self.key(run_id, "version"),
            self.key(run_id, "state"),
        ]

    @_guarded
    def cas_state(
        self, run_id: str, lease: Lease, expected_version: int, state: JsonDict
    ) -> CommitOutcome:
        keys = [*self._fence_keys(run_id), self.key(run_id, "status")]
        args = [
            _lock_value(lease),
            lease.token,
            int(expected_version),
            canonical(state),
            *_TERMINAL_ARGS,
        ]
        return _outcome(self._run("cas", keys, args), run_id)

    @_guarded
    def commit_iteration(
        self,
        run_id: str,
        iteration: int,
        doc: JsonDict,
        state: JsonDict,
        lease: Lease,
        expected_version: int,
        *,
        record: tuple[JsonDict, JsonDict] | None = None,
    ) -> CommitOutcome:
        i = int(iteration)
        keys = [
            *self._fence_keys(run_id),
            self.key(run_id, "iters"),
            self.key(run_id, "status"),
            self.key(run_id, "record"),
        ]
        read, new = ("", "") if record is None else (canonical(record[0]), canonical(record[1]))
        args = [
            _lock_value(lease),
            lease.token,
            int(expected_version),
            canonical(state),
            canonical(doc),
            i,
            read,
            new,
            *_TERMINAL_ARGS,
        ]
        return _outcome(self._run("commit_iteration", keys, args), run_id)

    # -- documents -------------------------------------------------------------------------
    @_guarded
    def get_iteration(self, run_id: str, iteration: int) -> JsonDict | None:
        raw = _text(self._r.hget(self.key(run_id, "iters"), str(int(iteration))))
        return None if raw is None else _decode(raw, f"iteration {iteration} of run {run_id}")

    @_guarded
    def iterations(self, run_id: str) -> list[JsonDict]:
        raws = self._r.hgetall(self.key(run_id, "iters"))
        items = sorted((int(str(_text(i))), str(_text(raw))) for i, raw in raws.items())
        return [_decode(raw, f"iteration {i} of run {run_id}") for i, raw in items]

    @_guarded
    def put_extra(self, run_id: str, name: str, doc: JsonDict) -> bool:
        keys = [self.key(run_id, "extras"), self.key(run_id, "status")]
        return bool(self._run("put_extra", keys, [name, canonical(doc)]))

    @_guarded
    def get_extra(self, run_id: str, name: str) -> JsonDict | None:
        raw = _text(self._r.hget(self.key(run_id, "extras"), name))
        return None if raw is None else _decode(raw, f"{name} of run {run_id}")

    # -- liveness, publishing, retention ---------------------------------------------------
    @_guarded
    def touch_lease(
        self, run_id: str, iteration: int, ttl_ms: int, queue: str | None = None
    ) -> None:
        value = str(int(iteration)) if queue is None else f"{int(iteration)} {queue}"
        self._r.set(self.key(run_id, "lease"), value, px=_positive_ttl(ttl_ms))

    @_guarded
    def lease(self, run_id: str) -> tuple[int, str | None] | None:
        raw = _text(self._r.get(self.key(run_id, "lease")))
        if raw is None:
            return None
        iteration, _, queue = raw.partition(" ")  # "3", or "3 soakq.bot.paper"
        return int(iteration), queue or None

    def leased_iteration(self, run_id: str) -> int | None:
        held = self.lease(run_id)
        return None if held is None else held[0]

    @_guarded
    def unpublished(self) -> list[str]:
        return sorted(str(_text(m)) for m in self._r.smembers(self.unpublished_key))

    def _mutex_key(self, name: str) -> str:
        return f"{self._prefix}:mutex:{name}"

    @_guarded
    def try_mutex(self, name: str, owner: str, ttl_ms: int) -> bool:
        return bool(self._r.set(self._mutex_key(name), owner, nx=True, px=_positive_ttl(ttl_ms)))

    @_guarded
    def release_mutex(self, name: str, owner: str) -> bool:
        return self._run("release", [self._mutex_key(name)], [owner]) == 1

    def _heartbeat_key(self, name: str) -> str:
        return f"{self._prefix}:heartbeat:{name}"

    @_guarded
    def put_heartbeat(self, name: str, doc: JsonDict, ttl_ms: int) -> None:
        self._r.set(self._heartbeat_key(name), canonical(doc), px=_positive_ttl(ttl_ms))

    @_guarded
    def get_heartbeat(self, name: str) -> JsonDict | None:
        raw = _text(self._r.get(self._heartbeat_key(name)))
        return None if raw is None else _decode(raw, f"heartbeat {name}")

    def note_published(self, run_id: str, published: JsonDict) -> None:
        self.update_record(run_id, {"published": published})
        with _guard("note_published"):
            self._r.srem(self.unpublished_key, run_id)

    @_guarded
    def prune(self, finished_before_ts: float) -> list[str]:
        ids = [
            str(_text(m))
            for m in self._r.zrangebyscore(
                self.finished_key, "-inf", repr(float(finished_before_ts))
            )
        ]
        for run_id in ids:
            self.discard_run(run_id)
        return ids

    @_guarded
    def prune_unreadable(self) -> int:
        """Delete the runs of the index that have no status key (written by an earlier soakq,
        in another key layout, without a TTL); return how many. Walks the index: an operator's
        command (`soakq prune`), never a periodic one."""
        gone = 0
        for run_id in self.list_runs():
            if self._r.exists(self.key(run_id, "status")):
                continue
            keys = list(self._r.scan_iter(match=self.key(run_id, "*"), count=100))
            pipe = self._r.pipeline(transaction=False)
            for key in keys:
                pipe.delete(key)
            pipe.zrem(self.runs_key, run_id)
            pipe.execute()
            gone += 1
        return gone

    @_guarded
    def discard_run(self, run_id: str) -> bool:
        keys = [
            self.runs_key,
            self.active_key,
            self.finished_key,
            self.unpublished_key,
            *self.run_keys(run_id),
        ]
        return int(self._run("discard_run", keys, [run_id])) > 0

    # -- schedule --------------------------------------------------------------------------
    @_guarded
    def schedule(self, run_id: str, iteration: int, due_ts: float) -> None:
        self._r.zadd(self.due_key, {f"{run_id}|{int(iteration)}": float(due_ts)})

    @_guarded
    def claim_due(self, now_ts: float, limit: int = 100) -> list[tuple[str, int]]:
        if limit < 1:
            return []
        flat = self._run("claim_due", [self.due_key], [repr(float(now_ts)), int(limit)])
        claimed = []
        for member, score in zip(flat[::2], flat[1::2], strict=True):
            run_id, _, iteration = str(_text(member)).rpartition("|")
            claimed.append((float(str(_text(score))), run_id, int(iteration)))
        # Same order as MemoryStore: due time, then run id, then iteration number.
        claimed.sort()
        return [(run_id, iteration) for _, run_id, iteration in claimed]


def _lock_value(lease: Lease) -> str:
    return f"{lease.owner}:{lease.token}"


def _outcome(reply: bytes | str, run_id: str) -> CommitOutcome:
    text = _text(reply)
    if text == "NO_RUN":
        raise KeyError(run_id)
    try:
        return CommitOutcome(str(text).lower())
    except ValueError:
        raise StoreError(f"unexpected reply {text!r} from a commit script") from None
