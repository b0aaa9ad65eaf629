"""The run-store port and its in-memory twin.

A store keeps, per run: the run record (spec + status), the run state (overrides, guard ledger,
freeze) with a version, the iteration documents (set-if-absent), a lock with fencing tokens and a
liveness lease. It also keeps the schedule of due iterations and three indexes maintained by the
status transitions: the active runs, the finished runs (by finish time) and the finished runs
whose artifacts are not published yet. Documents are opaque JSON objects to the store, except the
record's ``status``, which only ``transition`` changes (docs/architecture.md, "Run life-cycle").

`MemoryStore` is a real implementation (used by the in-process driver and fast tests);
`workers.store.RedisStore` is the production one. One contract test suite runs against both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from soakq.jsonio import canonical, loads
from soakq.states import IllegalTransition, RunStatus, transition

JsonDict = dict[str, Any]
_V = TypeVar("_V")
#: What a transition writes besides the status: top-level record fields, computed from the
#: record and the run state as they are at the moment the transition applies.
Changes = Callable[[JsonDict, JsonDict], JsonDict]


class CommitOutcome(StrEnum):
    """What a fenced commit did."""

    COMMITTED = "committed"
    #: committed (document, state, lock released), but the run record had changed since the
    #: caller read it, so the record it gave was not written: the caller updates it itself
    COMMITTED_RECORD_CHANGED = "committed_record_changed"
    DUPLICATE = "duplicate"  # the iteration document already exists: nothing written
    STALE_LOCK = "stale_lock"  # caller no longer holds the lock, or its token is older
    VERSION_MISMATCH = "version_mismatch"  # the state moved since the caller read it
    RUN_ENDED = "run_ended"  # the run is terminal: nothing is committed any more

    @property
    def committed(self) -> bool:
        """The document and the state were written."""
        return self in (CommitOutcome.COMMITTED, CommitOutcome.COMMITTED_RECORD_CHANGED)


class TransitionOutcome(StrEnum):
    """What a status transition did."""

    APPLIED = "applied"  # this call moved the run (and wrote its changes)
    ALREADY = "already"  # the run already had the target status: nothing written
    REFUSED = "refused"  # the table does not allow the move from the current status


@dataclass(frozen=True)
class Transition:
    """The answer of ``RunStore.transition``: the outcome and the status the run has now."""

    outcome: TransitionOutcome
    status: RunStatus
    record: JsonDict | None = None  # the record as written, when applied

    @property
    def applied(self) -> bool:
        return self.outcome == TransitionOutcome.APPLIED


@dataclass(frozen=True)
class Lease:
    """A held lock: who holds it and the fencing token it was granted."""

    owner: str
    token: int


def record_status(record: JsonDict) -> RunStatus:
    """The status a new record starts with; a record must carry a valid one."""
    try:
        return RunStatus(record["status"])
    except (KeyError, ValueError):
        raise ValueError(f"a run record needs a status in {list(RunStatus)}") from None


def check_changes(changes: JsonDict) -> JsonDict:
    if "status" in changes:
        raise ValueError("the status changes only through RunStore.transition")
    return changes


class RunStore(Protocol):
    """Where runs live. Every method is atomic on its own."""

    def create_run(self, run_id: str, record: JsonDict, state: JsonDict) -> bool:
        """Create record + state (version 0) if the run does not exist; False if it does.
        The run joins the active runs."""
        ...

    def restore_run(
        self,
        run_id: str,
        record: JsonDict,
        state: JsonDict,
        version: int,
        docs: list[JsonDict],
    ) -> bool:
        """Create a run as a checkpoint left it: record, state at ``version`` and the committed
        iteration documents (each carries its ``iteration``), in one step, if the run does not
        exist; False if it does (nothing written). The run joins the active runs
        (``soakq resume``, docs/resume.md)."""
        ...

    def next_suffix(self, base: str) -> int:
        """1, 2, 3, ... per ``base``: the counter that numbers re-submitted run ids (O(1))."""
        ...

    def get_record(self, run_id: str) -> JsonDict | None: ...

    def update_record(self, run_id: str, changes: JsonDict) -> JsonDict:
        """Merge top-level ``changes`` (never ``status``) into the record; return it."""
        ...

    def transition(
        self,
        run_id: str,
        target: RunStatus,
        changes: Changes | None = None,
        *,
        now_ts: float,
    ) -> Transition:
        """Move the run to ``target`` if the transition table allows it from the status it has
        at that moment, writing ``changes(record, state)`` with it, atomically. Entering a
        terminal status takes the run out of the active runs, files it as finished at
        ``now_ts`` (epoch s) and as not yet published, and starts its retention clock."""
        ...

    def list_runs(self) -> list[str]:
        """Run ids in creation order (finished runs until they are pruned or expire)."""
        ...

    def active_runs(self) -> list[str]:
        """Ids of the runs that have not ended, sorted."""
        ...

    def get_state(self, run_id: str) -> tuple[JsonDict, int]:
        """The run state and its version."""
        ...

    def read_run(self, run_id: str) -> tuple[JsonDict, JsonDict, int]:
        """The record, the state and the state's version, read together (one round trip).
        KeyError when the run does not exist."""
        ...

    def acquire_lock(self, run_id: str, owner: str, ttl_ms: int) -> Lease | None:
        """Take the run lock with a fresh, strictly increasing fencing token, or None if held."""
        ...

    def extend_lock(self, run_id: str, lease: Lease, ttl_ms: int) -> bool: ...

    def release_lock(self, run_id: str, lease: Lease) -> bool: ...

    def cas_state(
        self, run_id: str, lease: Lease, expected_version: int, state: JsonDict
    ) -> CommitOutcome:
        """Replace the state if ``lease`` still holds the lock, the version matches and the run
        has not ended."""
        ...

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
        """Atomically: write the iteration doc (set-if-absent) and the new state (fenced CAS),
        unless the run has ended (RUN_ENDED), and release the lock. ``record``: (the record as
        the caller read it, the record to write): written in the same step if the record is
        still the one read, else the outcome is COMMITTED_RECORD_CHANGED."""
        ...

    def get_iteration(self, run_id: str, iteration: int) -> JsonDict | None: ...

    def iterations(self, run_id: str) -> list[JsonDict]:
        """All iteration documents of the run, by iteration number."""
        ...

    def put_extra(self, run_id: str, name: str, doc: JsonDict) -> bool:
        """Store a named run-level document (e.g. release gate) set-if-absent."""
        ...

    def get_extra(self, run_id: str, name: str) -> JsonDict | None: ...

    def touch_lease(
        self, run_id: str, iteration: int, ttl_ms: int, queue: str | None = None
    ) -> None:
        """Say that someone is working on ``iteration`` of the run, for ``ttl_ms``; ``queue``:
        the queue their task came from when it is not the run's default one (a live step on the
        bot's queue)."""
        ...

    def lease(self, run_id: str) -> tuple[int, str | None] | None:
        """(iteration, queue) of the lease someone holds on the run, while it lasts."""
        ...

    def leased_iteration(self, run_id: str) -> int | None:
        """The iteration someone said they work on, while that lease lasts."""
        ...

    def unpublished(self) -> list[str]:
        """Finished runs whose artifacts nobody has published yet, sorted."""
        ...

    def try_mutex(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Take the named process-wide mutex (no fencing: for efficiency only) if it is free."""
        ...

    def release_mutex(self, name: str, owner: str) -> bool: ...

    def put_heartbeat(self, name: str, doc: JsonDict, ttl_ms: int) -> None:
        """Say that process ``name`` (beat's tick) is alive, with ``doc`` (its wall time and
        period), for ``ttl_ms``; a later heartbeat replaces it."""
        ...

    def get_heartbeat(self, name: str) -> JsonDict | None:
        """The last heartbeat of ``name`` while it lasts, else None."""
        ...

    def note_published(self, run_id: str, published: JsonDict) -> None:
        """Record ``published`` in the run record and drop the run from ``unpublished``."""
        ...

    def prune(self, finished_before_ts: float) -> list[str]:
        """Delete every key of the runs that finished before ``finished_before_ts`` (epoch s);
        return their ids."""
        ...

    def discard_run(self, run_id: str) -> bool:
        """Delete every key of one run whatever its status (a run that never got going)."""
        ...

    def schedule(self, run_id: str, iteration: int, due_ts: float) -> None:
        """Mark iteration ``iteration`` of the run due at ``due_ts`` (epoch seconds)."""
        ...

    def claim_due(self, now_ts: float, limit: int = 100) -> list[tuple[str, int]]:
        """Atomically remove and return the entries due at or before ``now_ts``."""
        ...


class MemoryStore:
    """In-process RunStore: a real implementation on dicts, guarded by one mutex.

    ``clock`` (monotonic seconds) times locks and leases; finish times are the epoch seconds
    callers pass to ``transition``. Nothing expires on its own: ``prune`` deletes.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._mu = threading.RLock()
        self._clock = clock
        self._records: dict[str, str] = {}
        self._states: dict[str, tuple[str, int]] = {}
        self._iters: dict[tuple[str, int], str] = {}
        self._extras: dict[tuple[str, str], str] = {}
        self._locks: dict[str, tuple[Lease, float]] = {}
        self._fence: dict[str, int] = {}
        self._fence_seen: dict[str, int] = {}
        self._leases: dict[str, tuple[tuple[int, str | None], float]] = {}
        self._due: dict[tuple[str, int], float] = {}
        self._active: set[str] = set()
        self._finished: dict[str, float] = {}
        self._unpublished: set[str] = set()
        self._suffixes: dict[str, int] = {}
        self._mutexes: dict[str, tuple[str, float]] = {}
        self._heartbeats: dict[str, tuple[str, float]] = {}

    # -- records ---------------------------------------------------------------------------
    def create_run(self, run_id: str, record: JsonDict, state: JsonDict) -> bool:
        return self.restore_run(run_id, record, state, 0, [])  # version 0, no documents yet

    def restore_run(
        self,
        run_id: str,
        record: JsonDict,
        state: JsonDict,
        version: int,
        docs: list[JsonDict],
    ) -> bool:
        status = record_status(record)
        with self._mu:
            if run_id in self._records:
                return False
            self._records[run_id] = canonical(record)
            self._states[run_id] = (canonical(state), int(version))
            for doc in docs:
                self._iters[(run_id, int(doc["iteration"]))] = canonical(doc)
            if not status.terminal:
                self._active.add(run_id)
            return True

    def next_suffix(self, base: str) -> int:
        with self._mu:
            n = self._suffixes.get(base, 0) + 1
            self._suffixes[base] = n
            return n

    def get_record(self, run_id: str) -> JsonDict | None:
        with self._mu:
            raw = self._records.get(run_id)
        return None if raw is None else loads(raw)

    def update_record(self, run_id: str, changes: JsonDict) -> JsonDict:
        check_changes(changes)
        with self._mu:
            raw = self._records.get(run_id)
            if raw is None:
                raise KeyError(run_id)
            record = loads(raw)
            record.update(changes)
            self._records[run_id] = canonical(record)
            return dict(record)

    def transition(
        self,
        run_id: str,
        target: RunStatus,
        changes: Changes | None = None,
        *,
        now_ts: float,
    ) -> Transition:
        target = RunStatus(target)
        with self._mu:
            raw = self._records.get(run_id)
            if raw is None:
                raise KeyError(run_id)
            record = loads(raw)
            current = RunStatus(record["status"])
            if current == target:
                return Transition(TransitionOutcome.ALREADY, current)
            try:
                transition(current, target)
            except IllegalTransition:
                return Transition(TransitionOutcome.REFUSED, current)
            if changes is not None:
                state, _ = self.get_state(run_id)
                record.update(check_changes(changes(dict(record), state)))
            record["status"] = str(target)
            self._records[run_id] = canonical(record)
            if target.terminal:
                self._active.discard(run_id)
                self._finished[run_id] = float(now_ts)
                self._unpublished.add(run_id)
            return Transition(TransitionOutcome.APPLIED, target, dict(record))

    def list_runs(self) -> list[str]:
        with self._mu:
            return list(self._records)

    def active_runs(self) -> list[str]:
        with self._mu:
            return sorted(self._active)

    def _ended(self, run_id: str) -> bool:
        raw = self._records.get(run_id)
        return raw is not None and RunStatus(loads(raw)["status"]).terminal

    # -- state + lock ----------------------------------------------------------------------
    def get_state(self, run_id: str) -> tuple[JsonDict, int]:
        with self._mu:
            raw, version = self._states[run_id]
        return loads(raw), version

    def read_run(self, run_id: str) -> tuple[JsonDict, JsonDict, int]:
        with self._mu:
            raw, (state, version) = self._records[run_id], self._states[run_id]
        return loads(raw), loads(state), version

    def _until(self, ttl_ms: int) -> float:
        """When an entry set now with ``ttl_ms`` lapses (on ``clock``)."""
        return self._clock() + ttl_ms / 1000.0

    def _live(self, table: dict[str, tuple[_V, float]], key: str) -> _V | None:
        """``table[key]``'s value unless absent or lapsed (a lapsed entry is dropped)."""
        held = table.get(key)
        if held is None:
            return None
        if self._clock() >= held[1]:
            del table[key]
            return None
        return held[0]

    def _holder(self, run_id: str) -> Lease | None:
        return self._live(self._locks, run_id)

    def acquire_lock(self, run_id: str, owner: str, ttl_ms: int) -> Lease | None:
        with self._mu:
            if self._holder(run_id) is not None:
                return None
            token = self._fence.get(run_id, 0) + 1
            self._fence[run_id] = token
            lease = Lease(owner, token)
            self._locks[run_id] = (lease, self._until(ttl_ms))
            return lease

    def extend_lock(self, run_id: str, lease: Lease, ttl_ms: int) -> bool:
        with self._mu:
            if self._holder(run_id) != lease:
                return False
            self._locks[run_id] = (lease, self._until(ttl_ms))
            return True

    def release_lock(self, run_id: str, lease: Lease) -> bool:
        with self._mu:
            if self._holder(run_id) != lease:
                return False
            del self._locks[run_id]
            return True

    def _fenced(self, run_id: str, lease: Lease, expected_version: int) -> CommitOutcome | None:
        if run_id not in self._states:
            raise KeyError(run_id)
        if self._ended(run_id):
            return CommitOutcome.RUN_ENDED
        if self._holder(run_id) != lease or lease.token < self._fence_seen.get(run_id, 0):
            return CommitOutcome.STALE_LOCK
        if self._states[run_id][1] != expected_version:
            return CommitOutcome.VERSION_MISMATCH
        return None

    def cas_state(
        self, run_id: str, lease: Lease, expected_version: int, state: JsonDict
    ) -> CommitOutcome:
        with self._mu:
            refused = self._fenced(run_id, lease, expected_version)
            if refused is not None:
                return refused
            self._states[run_id] = (canonical(state), expected_version + 1)
            self._fence_seen[run_id] = lease.token
            return CommitOutcome.COMMITTED

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
        with self._mu:
            if (run_id, iteration) in self._iters:
                return CommitOutcome.DUPLICATE
            refused = self._fenced(run_id, lease, expected_version)
            if refused is not None:
                return refused
            self._iters[(run_id, iteration)] = canonical(doc)
            self._states[run_id] = (canonical(state), expected_version + 1)
            self._fence_seen[run_id] = lease.token
            del self._locks[run_id]
            if record is None:
                return CommitOutcome.COMMITTED
            if self._records[run_id] != canonical(record[0]):
                return CommitOutcome.COMMITTED_RECORD_CHANGED
            self._records[run_id] = canonical(record[1])
            return CommitOutcome.COMMITTED

    # -- documents -------------------------------------------------------------------------
    def get_iteration(self, run_id: str, iteration: int) -> JsonDict | None:
        with self._mu:
            raw = self._iters.get((run_id, iteration))
        return None if raw is None else loads(raw)

    def iterations(self, run_id: str) -> list[JsonDict]:
        with self._mu:
            items = sorted((i, raw) for (r, i), raw in self._iters.items() if r == run_id)
        return [loads(raw) for _, raw in items]

    def put_extra(self, run_id: str, name: str, doc: JsonDict) -> bool:
        with self._mu:
            if (run_id, name) in self._extras:
                return False
            self._extras[(run_id, name)] = canonical(doc)
            return True

    def get_extra(self, run_id: str, name: str) -> JsonDict | None:
        with self._mu:
            raw = self._extras.get((run_id, name))
        return None if raw is None else loads(raw)

    # -- liveness, publishing, retention ---------------------------------------------------
    def touch_lease(
        self, run_id: str, iteration: int, ttl_ms: int, queue: str | None = None
    ) -> None:
        with self._mu:
            self._leases[run_id] = ((int(iteration), queue), self._until(ttl_ms))

    def lease(self, run_id: str) -> tuple[int, str | None] | None:
        with self._mu:
            return self._live(self._leases, run_id)

    def leased_iteration(self, run_id: str) -> int | None:
        held = self.lease(run_id)
        return None if held is None else held[0]

    def unpublished(self) -> list[str]:
        with self._mu:
            return sorted(self._unpublished)

    def try_mutex(self, name: str, owner: str, ttl_ms: int) -> bool:
        with self._mu:
            if self._live(self._mutexes, name) is not None:
                return False
            self._mutexes[name] = (owner, self._until(ttl_ms))
            return True

    def release_mutex(self, name: str, owner: str) -> bool:
        with self._mu:
            if self._live(self._mutexes, name) != owner:
                return False
            del self._mutexes[name]
            return True

    def put_heartbeat(self, name: str, doc: JsonDict, ttl_ms: int) -> None:
        with self._mu:
            self._heartbeats[name] = (canonical(doc), self._until(ttl_ms))

    def get_heartbeat(self, name: str) -> JsonDict | None:
        with self._mu:
            raw = self._live(self._heartbeats, name)
        return None if raw is None else loads(raw)

    def note_published(self, run_id: str, published: JsonDict) -> None:
        with self._mu:
            self.update_record(run_id, {"published": published})
            self._unpublished.discard(run_id)

    def prune(self, finished_before_ts: float) -> list[str]:
        with self._mu:
            gone = sorted(r for r, ts in self._finished.items() if ts <= finished_before_ts)
            for run_id in gone:
                self.discard_run(run_id)
            return gone

    def discard_run(self, run_id: str) -> bool:
        with self._mu:
            existed = self._records.pop(run_id, None) is not None
            self._states.pop(run_id, None)
            for i in [k for k in self._iters if k[0] == run_id]:
                del self._iters[i]
            for x in [k for k in self._extras if k[0] == run_id]:
                del self._extras[x]
            for d in [k for k in self._due if k[0] == run_id]:
                del self._due[d]
            for per_run in (self._locks, self._fence, self._fence_seen, self._leases):
                per_run.pop(run_id, None)  # type: ignore[attr-defined]
            self._finished.pop(run_id, None)
            self._active.discard(run_id)
            self._unpublished.discard(run_id)
            return existed

    # -- schedule --------------------------------------------------------------------------
    def schedule(self, run_id: str, iteration: int, due_ts: float) -> None:
        with self._mu:
            self._due[(run_id, iteration)] = due_ts

    def claim_due(self, now_ts: float, limit: int = 100) -> list[tuple[str, int]]:
        with self._mu:
            ready = sorted((ts, key) for key, ts in self._due.items() if ts <= now_ts)[:limit]
            for _, key in ready:
                del self._due[key]
            return [key for _, key in ready]
