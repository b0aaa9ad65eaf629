"""The production RunStore on Redis: fenced locks and commits as Lua scripts (DESIGN §6).

Key layout, with the default prefix ``soakq``. The run id sits in a hash tag (``{...}``) so all
keys of one run share a cluster slot, which per-run scripts need on a cluster:

    soakq:run:{<run_id>}:record        run record, canonical JSON
    soakq:run:{<run_id>}:state         run state, canonical JSON
    soakq:run:{<run_id>}:version       integer: 0 at creation, +1 per committed state write
    soakq:run:{<run_id>}:iter:<i>      iteration document, canonical JSON, written once
    soakq:run:{<run_id>}:iters         ZSET of the committed iteration numbers
    soakq:run:{<run_id>}:extra:<name>  run-level document, canonical JSON, written once
    soakq:run:{<run_id>}:lock          "owner:token", with a TTL
    soakq:run:{<run_id>}:fence         the last fencing token granted
    soakq:run:{<run_id>}:fence_seen    the highest token that ever committed
    soakq:runs                         ZSET of run ids scored by creation sequence
    soakq:runs:seq                     that sequence
    soakq:due                          ZSET "run_id|iteration" scored by due time (epoch s)

Every method is one atomic server-side step, except ``update_record`` (an optimistic
read-merge-replace loop) and ``iterations`` (index then documents; documents are write-once).

Retries: a command that timed out may still have run. Re-running a script is safe, and the
answer then tells the truth about the store, not about the first attempt: a repeated
``commit_iteration`` says DUPLICATE, a repeated ``cas_state`` says VERSION_MISMATCH, a repeated
``create_run`` says False. Callers re-read on those answers.

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
from urllib.parse import urlsplit, urlunsplit

import redis
from redis import exceptions as rx
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from soakq.errors import ConfigError, InputError, StoreError, TransientStoreError
from soakq.jsonio import canonical, loads
from soakq.store import CommitOutcome, JsonDict, Lease

logger = logging.getLogger(__name__)

_SCRIPTS = (
    "acquire",
    "extend",
    "release",
    "cas",
    "commit_iteration",
    "create_run",
    "replace_if",
    "claim_due",
)

# Connection-level failures worth retrying; bad credentials are a ConnectionError subclass in
# redis-py but retrying them cannot help.
_TRANSIENT: tuple[type[Exception], ...] = (
    rx.ConnectionError,
    rx.TimeoutError,
    rx.ReadOnlyError,  # a replica during failover
    rx.TryAgainError,
)
_PERMANENT: tuple[type[Exception], ...] = (rx.AuthenticationError, rx.AuthorizationError)

# Optimistic update_record retries before giving up as contended.
_UPDATE_ATTEMPTS = 100

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


def _redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


@contextmanager
def _guard(op: str) -> Iterator[None]:
    """Translate redis-py errors into the soakq error tree."""
    try:
        yield
    except _PERMANENT as exc:
        raise StoreError(
            f"redis refused {op}: {exc} (check the password in the Redis URL)"
        ) from exc
    except _TRANSIENT as exc:
        raise TransientStoreError(f"redis unavailable during {op}: {exc}") from exc
    except rx.RedisError as exc:
        raise StoreError(f"redis failed {op}: {exc}") from exc


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


class RedisStore:
    """RunStore over a redis-py client (``redis.Redis`` or ``fakeredis.FakeRedis`` with Lua)."""

    def __init__(self, client: redis.Redis, prefix: str = "soakq") -> None:
        self._r = client
        self._prefix = prefix
        self._scripts = {name: client.register_script(lua_source(name)) for name in _SCRIPTS}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "soakq",
        socket_timeout: float = 5.0,
        socket_connect_timeout: float = 5.0,
        retries: int = 3,
    ) -> RedisStore:
        """Connect to ``url`` with explicit socket timeouts (s) and a short bounded retry.

        Raises ConfigError when the URL is not a Redis URL.
        """
        try:
            client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_connect_timeout,
                retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.5), retries),
                health_check_interval=30,
            )
        except ValueError as exc:
            raise ConfigError(
                f"invalid Redis URL {_redacted(url)!r}: {exc}; "
                "expected redis://[:password@]host:port/db"
            ) from None
        return cls(client, prefix=prefix)

    @property
    def client(self) -> redis.Redis:
        return self._r

    def key(self, run_id: str, part: str) -> str:
        """The Redis key of ``part`` (``record``, ``state``, ``iter:3``, …) of a run."""
        return f"{self._prefix}:run:{{{run_id}}}:{part}"

    @property
    def runs_key(self) -> str:
        return f"{self._prefix}:runs"

    @property
    def due_key(self) -> str:
        return f"{self._prefix}:due"

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=args)

    @_guarded
    def ping(self) -> None:
        """Raise TransientStoreError unless the server answers."""
        self._r.ping()

    def close(self) -> None:
        self._r.close()

    # -- records ---------------------------------------------------------------------------
    @_guarded
    def create_run(self, run_id: str, record: JsonDict, state: JsonDict) -> bool:
        keys = [
            self.key(run_id, "record"),
            self.key(run_id, "state"),
            self.key(run_id, "version"),
            self.runs_key,
            f"{self._prefix}:runs:seq",
        ]
        return bool(self._run("create_run", keys, [run_id, canonical(record), canonical(state)]))

    @_guarded
    def get_record(self, run_id: str) -> JsonDict | None:
        raw = _text(self._r.get(self.key(run_id, "record")))
        return None if raw is None else _decode(raw, f"record of run {run_id}")

    @_guarded
    def update_record(self, run_id: str, changes: JsonDict) -> JsonDict:
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
    def list_runs(self) -> list[str]:
        return [str(_text(m)) for m in self._r.zrange(self.runs_key, 0, -1)]

    # -- state + lock ----------------------------------------------------------------------
    @_guarded
    def get_state(self, run_id: str) -> tuple[JsonDict, int]:
        raw, version = self._r.mget([self.key(run_id, "state"), self.key(run_id, "version")])
        text = _text(raw)
        if text is None or version is None:
            raise KeyError(run_id)
        return _decode(text, f"state of run {run_id}"), int(version)

    @_guarded
    def acquire_lock(self, run_id: str, owner: str, ttl_ms: int) -> Lease | None:
        keys = [self.key(run_id, "lock"), self.key(run_id, "fence")]
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
        args = [_lock_value(lease), lease.token, int(expected_version), canonical(state)]
        return _outcome(self._run("cas", self._fence_keys(run_id), args), run_id)

    @_guarded
    def commit_iteration(
        self,
        run_id: str,
        iteration: int,
        doc: JsonDict,
        state: JsonDict,
        lease: Lease,
        expected_version: int,
    ) -> CommitOutcome:
        i = int(iteration)
        keys = [*self._fence_keys(run_id), self.key(run_id, f"iter:{i}"), self.key(run_id, "iters")]
        args = [
            _lock_value(lease),
            lease.token,
            int(expected_version),
            canonical(state),
            canonical(doc),
            i,
        ]
        return _outcome(self._run("commit_iteration", keys, args), run_id)

    # -- documents -------------------------------------------------------------------------
    @_guarded
    def get_iteration(self, run_id: str, iteration: int) -> JsonDict | None:
        raw = _text(self._r.get(self.key(run_id, f"iter:{int(iteration)}")))
        return None if raw is None else _decode(raw, f"iteration {iteration} of run {run_id}")

    @_guarded
    def iterations(self, run_id: str) -> list[JsonDict]:
        numbers = [int(str(_text(m))) for m in self._r.zrange(self.key(run_id, "iters"), 0, -1)]
        if not numbers:
            return []
        raws = self._r.mget([self.key(run_id, f"iter:{i}") for i in numbers])
        docs = []
        for i, raw in zip(numbers, raws, strict=True):
            text = _text(raw)
            if text is None:  # written once and never deleted: an absent one is data loss
                raise StoreError(f"iteration {i} of run {run_id} is indexed but missing")
            docs.append(_decode(text, f"iteration {i} of run {run_id}"))
        return docs

    @_guarded
    def put_extra(self, run_id: str, name: str, doc: JsonDict) -> bool:
        return bool(self._r.set(self.key(run_id, f"extra:{name}"), canonical(doc), nx=True))

    @_guarded
    def get_extra(self, run_id: str, name: str) -> JsonDict | None:
        raw = _text(self._r.get(self.key(run_id, f"extra:{name}")))
        return None if raw is None else _decode(raw, f"{name} of run {run_id}")

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
