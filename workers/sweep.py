"""A sweep's runs on the workers (docs/sweeps.md): each run is an ordinary distributed run, so
the runs spread over every worker while each run's iterations stay sequential; the coordinator
only submits and polls the records (no process per run)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from soakq.config import RunSpec
from soakq.documents import RunRecord, load_record, load_run
from soakq.errors import ConfigError, Pending, StoreError
from soakq.runner import start_run
from soakq.states import RunStatus, StopReason
from soakq.sweep import RunFacts, Submitter, facts_of
from workers.executor import send_start

POLL_S = 0.2


class RedisSubmitter(Submitter):
    """Submits to Redis and the workers; a run of the same id and spec already there (an earlier
    coordinator of the same sweep) is followed instead of started again."""

    def __init__(
        self,
        app: Any,
        store: Any,
        *,
        poll_s: float = POLL_S,
        unserved: Callable[[], str | None] = lambda: None,
        grace_s: float = float("inf"),
    ) -> None:
        """``unserved``: a bounded check that says, in one line, that no worker consumes the
        runs' queue (None when one does, or when it cannot tell); asked once no run has ended
        for ``grace_s``, so the coordinator never waits in silence (docs/sweeps.md)."""
        self.app = app
        self.store = store
        self.poll_s = poll_s
        self.unserved = unserved
        self.grace_s = grace_s
        self._pending: list[str] = []
        self._progress = time.monotonic()
        self._specs: dict[str, RunSpec] = {}

    def submit(self, spec: RunSpec) -> None:
        self._specs[spec.run_id] = spec
        now = time.time()
        run_id = spec.run_id
        if not start_run(self.store, spec, now=now, mode="distributed", report=False):
            record, _ = load_record(self.store, run_id)
            if record.spec.as_json() != spec.as_json():
                raise ConfigError(
                    f"run {run_id} is in Redis with another config; choose another --sweep-id"
                )
            if _redo(record):
                self.store.discard_run(run_id)  # a run the sweep cannot judge: run it again
                self.submit(spec)
                return
        else:
            send_start(self.app, self.store, run_id, 1, now=now)
        self._pending.append(run_id)

    def next_done(self) -> tuple[str, RunFacts]:
        while True:
            for run_id in list(self._pending):
                loaded = load_run(self.store, run_id)
                if loaded is None:  # pruned before we read it: runs are deterministic, redo it
                    self._pending.remove(run_id)
                    self.submit(self._specs[run_id])
                    continue
                record, state = loaded
                if not record.status.terminal:
                    continue
                if _redo(record):
                    raise StoreError(
                        f"run {run_id} ended {record.status} ({record.outcome.detail});"
                        " run the same sweep again to redo it"
                    )
                self._pending.remove(run_id)
                self._progress = time.monotonic()
                facts = facts_of(
                    self.store.iterations(run_id),
                    self.store.get_extra(run_id, "release_gate"),
                    state.overrides,
                )
                return run_id, facts
            if time.monotonic() - self._progress > self.grace_s:
                why = self.unserved()
                if why is not None:
                    raise Pending(why)
                self._progress = time.monotonic()  # served: look again after another grace
            time.sleep(self.poll_s)


def _redo(record: RunRecord) -> bool:
    """A run the sweep cannot judge (cancelled, lost, or never started): run it again."""
    not_started = record.outcome.stop_reason == StopReason.NOT_STARTED
    return record.status in (RunStatus.CANCELLED, RunStatus.LOST) or not_started
