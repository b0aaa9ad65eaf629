"""A worker process for the real-Redis store tests (run as a script, not collected).

    _contender.py contend URL RUN_ID N OWNER   prints "ready", waits for a line on stdin, then
                                               N times: lock, read, CAS n+1, unlock; prints JSON
    _contender.py stale URL RUN_ID TTL_MS      takes the lock, prints JSON, stops itself
                                               (SIGSTOP); once continued, tries to commit and
                                               prints JSON
Every loop is bounded; an exceeded bound exits non-zero.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time

from soakq.store import CommitOutcome
from workers.store import RedisStore

DEADLINE_S = 60.0
LOCK_TTL_MS = 5000


def _say(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def contend(url: str, run_id: str, n: int, owner: str) -> int:
    store = RedisStore.from_url(url)
    _say("ready")
    sys.stdin.readline()
    deadline = time.monotonic() + DEADLINE_S
    tokens: list[int] = []
    lost_updates = refused = attempts = 0
    for _ in range(n):
        while (lease := store.acquire_lock(run_id, owner, LOCK_TTL_MS)) is None:
            attempts += 1
            if time.monotonic() > deadline:
                _say({"error": "deadline", "tokens": tokens})
                return 2
            time.sleep(random.uniform(0.0002, 0.002))
        attempts += 1
        tokens.append(lease.token)
        state, version = store.get_state(run_id)
        if state["n"] != version:
            lost_updates += 1
        outcome = store.cas_state(run_id, lease, version, {"n": state["n"] + 1})
        if outcome is not CommitOutcome.COMMITTED:
            refused += 1
        store.release_lock(run_id, lease)
    _say(
        {
            "owner": owner,
            "tokens": tokens,
            "lost_updates": lost_updates,
            "refused": refused,
            "attempts": attempts,
        }
    )
    return 0


def stale(url: str, run_id: str, ttl_ms: int) -> int:
    store = RedisStore.from_url(url)
    lease = store.acquire_lock(run_id, "stale", ttl_ms)
    # The lock's TTL runs from here, so the pause is measured from here too.
    before = time.monotonic()
    if lease is None:
        _say({"error": "lock busy"})
        return 2
    _, version = store.get_state(run_id)
    _say({"token": lease.token, "version": version})
    os.kill(os.getpid(), signal.SIGSTOP)  # the pause: resumed only by the test's SIGCONT
    paused_s = time.monotonic() - before
    cas = store.cas_state(run_id, lease, version, {"writer": "stale"})
    commit = store.commit_iteration(
        run_id, 0, {"writer": "stale"}, {"writer": "stale"}, lease, version
    )
    _say(
        {
            "paused_s": paused_s,
            "cas": cas.value,
            "commit": commit.value,
            "extend": store.extend_lock(run_id, lease, ttl_ms),
            "release": store.release_lock(run_id, lease),
        }
    )
    return 0


def main(argv: list[str]) -> int:
    mode, url, run_id, *rest = argv
    if mode == "contend":
        return contend(url, run_id, int(rest[0]), rest[1])
    if mode == "stale":
        return stale(url, run_id, int(rest[0]))
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
