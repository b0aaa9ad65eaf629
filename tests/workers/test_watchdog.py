"""The watchdog's decision, as a table (pure: no Redis, no worker)."""

from __future__ import annotations

from typing import Any

import pytest

from soakq.documents import Drive
from soakq.lifecycle import Action, watchdog_action

NOW = 10_000.0


def drive(
    iteration: int, attempt: int = 0, *, enqueued: float | None = NOW - 5, deadline: float = NOW - 1
) -> Drive:
    return Drive(
        attempt=attempt,
        deadline_ts=deadline,
        due_ts=NOW - 5,
        enqueued_ts=enqueued,
        iteration=iteration,
    )


CASES = [
    # (done, planned, stopped, drive, last_ts, interval_s) -> kind, iteration, attempt
    ((3, 6, False, drive(4, deadline=NOW + 1), NOW, 0.0), ("wait", 0, 0)),  # in flight, on time
    ((3, 6, False, drive(4), NOW, 0.0), ("drive", 4, 1)),  # in flight, overdue: re-drive
    ((3, 6, False, drive(4, 1), NOW, 0.0), ("drive", 4, 2)),
    ((3, 6, False, drive(4, 2), NOW, 0.0), ("lose", 4, 3)),  # max_redrives = 2: give up
    ((3, 6, False, drive(4, enqueued=None, deadline=NOW + 1), NOW, 60.0), ("wait", 0, 0)),
    ((3, 6, False, drive(4, enqueued=None), NOW, 60.0), ("drive", 4, 0)),  # due, never sent
    ((3, 6, False, drive(3), NOW - 100, 0.0), ("drive", 4, 0)),  # committed 3, 4 never scheduled
    ((3, 6, False, drive(3), NOW - 5, 0.0), ("wait", 0, 0)),  # ...but give the body its time
    ((3, 6, False, drive(3), NOW - 100, 3600.0), ("wait", 0, 0)),  # ...and the interval
    ((0, 6, False, None, NOW - 100, 0.0), ("drive", 1, 0)),  # submitted, never started
    ((6, 6, False, drive(6), NOW, 0.0), ("complete", 0, 0)),  # all committed, not closed
    ((2, 6, True, drive(3), NOW, 0.0), ("complete", 0, 0)),  # a stop committed, not closed
]


@pytest.mark.parametrize(("args", "want"), CASES)
def test_watchdog_action(args: tuple[Any, ...], want: tuple[str, int, int]) -> None:
    done, planned, stopped, drv, last_ts, interval_s = args
    action = watchdog_action(
        done=done,
        planned=planned,
        stopped=stopped,
        drive=drv,
        now=NOW,
        deadline_s=30.0,
        max_redrives=2,
        last_ts=last_ts,
        interval_s=interval_s,
    )
    assert isinstance(action, Action)
    assert (action.kind, action.iteration, action.attempt) == want
    assert (action.reason == "") == (action.kind == "wait")
