"""The run-store port and its in-memory twin.

A store keeps, per run: the run record (spec + status), the run state (overrides, guard ledger,
freeze) with a version, the iteration documents (set-if-absent) and a lock with fencing tokens.
It also keeps the schedule of due iterations. Documents are opaque JSON objects to the store.

`MemoryStore` is a real implementation (used by the embedded runner and fast tests);
`workers.store.RedisStore` is the production one. One contract test suite runs against both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from soakq.jsonio import canonical, loads

JsonDict = dict[str, Any]


class CommitOutcome(StrEnum):
    """What a fenced commit did."""

    COMMITTED = "committed"
    DUPLICATE = "duplicate"  # the iteration document already exists: nothing written
    STALE_LOCK = "stale_lock"  # caller no longer holds the lock, or its token is older
    VERSION_MISMATCH = "version_mismatch"  # the state moved since the caller read it


@dataclass(frozen=True)
class Lease:
    """A held lock: who holds it and the fencing token it was granted."""

    owner: str
    token: int


class RunStore(Protocol):
    """Where runs live. Every method is atomic on its own."""

    def create_run(self, run_id: str, record: JsonDict, state: JsonDict) -> bool:
        """Create record + state (version 0) if the run does not exist; False if it does."""
        ...

    def get_record(self, run_id: str) -> JsonDict | None: ...

    def update_record(self, run_id: str, changes: JsonDict) -> JsonDict:
        """Merge top-level ``changes`` into the record; return the new record."""
        ...

    def list_runs(self) -> list[str]:
        """Run ids in creation order."""
        ...

    def get_state(self, run_id: str) -> tuple[JsonDict, int]:
        """The run state and its version."""
        ...

    def acquire_lock(self, run_id: str, owner: str, ttl_ms: int) -> Lease | None:
        """Take the run lock with a fresh, strictly increasing fencing token, or None if held."""
        ...

    def extend_lock(self, run_id: str, lease: Lease, ttl_ms: int) -> bool: ...

    def release_lock(self, run_id: str, lease: Lease) -> bool: ...

    def cas_state(
        self, run_id: str, lease: Lease, expected_version: int, state: JsonDict
    ) -> CommitOutcome:
        """Replace the state if ``lease`` still holds the lock and the version matches."""
        ...

    def commit_iteration(
        self,
        run_id: str,
        iteration: int,
        doc: JsonDict,
        state: JsonDict,
        lease: Lease,
        expected_version: int,
    ) -> CommitOutcome:
        """Atomically: write the iteration doc (set-if-absent) and the new state (fenced CAS)."""
        ...

    def get_iteration(self, run_id: str, iteration: int) -> JsonDict | None: ...

    def iterations(self, run_id: str) -> list[JsonDict]:
        """All iteration documents of the run, by iteration number."""
        ...

    def put_extra(self, run_id: str, name: str, doc: JsonDict) -> bool:
        """Store a named run-level document (e.g. release gate) set-if-absent."""
        ...

    def get_extra(self, run_id: str, name: str) -> JsonDict | None: ...

    def schedule(self, run_id: str, iteration: int, due_ts: float) -> None:
        """Mark iteration ``iteration`` of the run due at ``due_ts`` (epoch seconds)."""
        ...

    def claim_due(self, now_ts: float, limit: int = 100) -> list[tuple[str, int]]:
        """Atomically remove and return the entries due at or before ``now_ts``."""
        ...


class MemoryStore:
    """In-process RunStore: a real implementation on dicts, guarded by one mutex."""

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
        self._due: dict[tuple[str, int], float] = {}

    # -- records ---------------------------------------------------------------------------
    def create_run(self, run_id: str, record: JsonDict, state: JsonDict) -> bool:
        with self._mu:
            if run_id in self._records:
                return False
            self._records[run_id] = canonical(record)
            self._states[run_id] = (canonical(state), 0)
            return True

    def get_record(self, run_id: str) -> JsonDict | None:
        with self._mu:
            raw = self._records.get(run_id)
        return None if raw is None else loads(raw)

    def update_record(self, run_id: str, changes: JsonDict) -> JsonDict:
        with self._mu:
            raw = self._records.get(run_id)
            if raw is None:
                raise KeyError(run_id)
            record = loads(raw)
            record.update(changes)
            self._records[run_id] = canonical(record)
            return dict(record)

    def list_runs(self) -> list[str]:
        with self._mu:
            return list(self._records)

    # -- state + lock ----------------------------------------------------------------------
    def get_state(self, run_id: str) -> tuple[JsonDict, int]:
        with self._mu:
            raw, version = self._states[run_id]
        return loads(raw), version

    def _holder(self, run_id: str) -> Lease | None:
        held = self._locks.get(run_id)
        if held is None:
            return None
        lease, expires = held
        if self._clock() >= expires:
            del self._locks[run_id]
            return None
        return lease

    def acquire_lock(self, run_id: str, owner: str, ttl_ms: int) -> Lease | None:
        with self._mu:
            if self._holder(run_id) is not None:
                return None
            token = self._fence.get(run_id, 0) + 1
            self._fence[run_id] = token
            lease = Lease(owner, token)
            self._locks[run_id] = (lease, self._clock() + ttl_ms / 1000.0)
            return lease

    def extend_lock(self, run_id: str, lease: Lease, ttl_ms: int) -> bool:
        with self._mu:
            if self._holder(run_id) != lease:
                return False
            self._locks[run_id] = (lease, self._clock() + ttl_ms / 1000.0)
            return True

    def release_lock(self, run_id: str, lease: Lease) -> bool:
        with self._mu:
            if self._holder(run_id) != lease:
                return False
            del self._locks[run_id]
            return True

    def _fenced(self, run_id: str, lease: Lease, expected_version: int) -> CommitOutcome | None:
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
