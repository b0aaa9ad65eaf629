"""What a follower watches for so it never waits in silence (pure: fake clock, fake pings)."""

from __future__ import annotations

from typing import Any

import pytest
from soakq_worker_harness import spec_for

from soakq.documents import RunRecord, RunState, check_record, check_state
from soakq.iteration import initial_state
from workers.presence import (
    Lookout,
    parked_iteration,
    run_queues,
    status_notes,
    unserved,
)

WHERE = "SOAKQ_REDIS_URL=redis://h:6379/0"
RUNNING: Any = {"status": "running", "drive": {"iteration": 2, "enqueued_ts": 5.0}}
PARKED: Any = {"status": "running", "drive": {"iteration": 2, "enqueued_ts": None, "due_ts": 9.0}}
AFTER_1: Any = {"iteration": 1}


def typed(record: dict[str, Any], state: dict[str, Any]) -> tuple[RunRecord, RunState]:
    """A whole record and state around the fields a test gives."""
    spec = spec_for(iterations=4, run_id="r1")
    drive = record.get("drive")
    if drive is not None:
        drive = {"attempt": 0, "due_ts": 1.0, "deadline_ts": 600.0, **drive}
    full_record = {
        "run_id": "r1",
        "spec": spec.as_json(),
        "outcome": {},
        "runtime": {},
        **record,
        "drive": drive,
    }
    full_state = {**initial_state(spec), **state}
    return check_record(full_record, "r1"), check_state(full_state, "r1")


def waiting(record: dict[str, Any], state: dict[str, Any]) -> int | None:
    return parked_iteration(*typed(record, state))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lookout(
    clock: Clock,
    answers: list[dict[str, set[str]] | None],
    *,
    heartbeat: dict[str, Any] | None = None,
    queues: list[str] | None = None,
    grace_s: float = 20.0,
    leased: str | None = None,
) -> tuple[Lookout, list[float]]:
    """A Lookout whose pings answer ``answers`` in turn (the last one for ever); also returns
    the times it pinged."""
    pings: list[float] = []

    def ping() -> dict[str, set[str]] | None:
        pings.append(clock.now)
        return answers[min(len(pings), len(answers)) - 1]

    look = Lookout(
        run_id="r1",
        queues=queues or ["soakq"],
        default_queue="soakq",
        where=WHERE,
        ping=ping,
        heartbeat=lambda: heartbeat,
        leased=lambda: leased,
        grace_s=grace_s,
        tick_every_s=10.0,
        clock=clock,
    )
    return look, pings


def follow(look: Lookout, clock: Clock, until: float, record=RUNNING, state=AFTER_1, step=0.5):
    """Poll as the follower does until ``until``; the first line said and when, or None."""
    while clock.now <= until:
        line = look.check(waiting(record, state), progressed=False)
        if line is not None:
            return line, clock.now
        clock.now += step
    return None


def test_no_worker_is_said_after_the_grace_in_one_line() -> None:
    clock = Clock()
    look, pings = lookout(clock, [{}])
    line, at = follow(look, clock, 200.0)
    assert at - 100.0 == pytest.approx(20.0, abs=0.6)  # the grace, from the first ping
    assert pings[0] == 100.0  # pinged at once
    assert "\n" not in line
    assert line.startswith("run r1: no worker consumes queue 'soakq' on " + WHERE)
    assert "start one with `soakq worker -n w1@%h`" in line
    assert "`soakq watch r1` follows it again" in line


def test_a_worker_that_answers_within_the_grace_keeps_the_follower_waiting() -> None:
    clock = Clock()
    look, pings = lookout(clock, [{}, {}, {"w1@h": {"soakq"}}])
    assert follow(look, clock, 300.0) is None
    assert len(pings) > 3  # it kept asking every few seconds, never more often
    assert all(b - a >= look.ping_every_s for a, b in zip(pings, pings[1:], strict=False))


def test_a_worker_on_other_queues_only_is_no_worker_for_the_run() -> None:
    clock = Clock()
    look, _ = lookout(
        clock,
        [{"bot1@h": {"soakq.bot.paper"}, "x@h": {"celery"}}],
        queues=run_queues("soakq", "soakq.bot.paper"),
    )
    line, _ = follow(look, clock, 200.0)
    assert "no worker consumes queue 'soakq' on" in line and "bot.paper'" not in line


def test_a_live_run_without_its_bot_worker_names_the_bot_queue() -> None:
    clock = Clock()
    look, _ = lookout(clock, [{"w1@h": {"soakq"}}], queues=run_queues("soakq", "soakq.bot.paper"))
    line, _ = follow(look, clock, 200.0)
    assert "no worker consumes queue 'soakq.bot.paper'" in line
    assert "`soakq worker -Q soakq.bot.paper --concurrency 1 -n bot-paper@%h`" in line


def test_progress_means_somebody_works_and_no_ping_is_needed() -> None:
    clock = Clock()
    look, pings = lookout(clock, [{}])
    for _ in range(200):  # an iteration every half second for 100 s
        assert look.check(waiting(RUNNING, AFTER_1), progressed=True) is None
        clock.now += 0.5
    assert pings == []
    # ...then nothing: pings resume, and the grace counts from the first unanswered one.
    line, at = follow(look, clock, clock.now + 100)
    assert pings[0] == pytest.approx(100.0 + 100.0 + look.ping_every_s, abs=0.6)
    assert at - pings[0] == pytest.approx(20.0, abs=0.6)
    assert "no worker consumes" in line


def test_a_worker_too_busy_to_answer_holds_the_runs_lease() -> None:
    clock = Clock()
    look, pings = lookout(clock, [{}], leased="soakq")  # a solo pool in a long task
    assert follow(look, clock, 300.0) is None
    assert len(pings) > 5


LIVE_QUEUES = ["soakq", "soakq.bot.paper"]


def test_a_lease_from_the_default_queue_does_not_explain_a_missing_bot_queue() -> None:
    """A live run's start holds the lease; nobody consumes the bot's queue: said after the grace,
    naming that queue and how to start its worker (it used to wait until the run failed)."""
    clock = Clock()
    look, pings = lookout(clock, [{"w1@h": {"soakq"}}], queues=LIVE_QUEUES, leased="soakq")
    line, at = follow(look, clock, 200.0)
    assert at - pings[0] == pytest.approx(20.0, abs=0.6)
    assert "no worker consumes queue 'soakq.bot.paper'" in line
    assert "soakq worker -Q soakq.bot.paper --concurrency 1 -n bot-paper@%h" in line
    notes = status_notes(
        found={"w1@h": {"soakq"}},
        queues=LIVE_QUEUES,
        heartbeat={"ts": 1.0},
        paced=False,
        tick_every_s=10,
        leased="soakq",
    )
    assert notes == ["waiting for a worker (none consumes 'soakq.bot.paper')"]


def test_a_lease_from_the_bots_queue_explains_every_queue() -> None:
    """A live step waits for the bot in a worker that cannot answer (a solo pool): not absent."""
    clock = Clock()
    look, _ = lookout(clock, [{}], queues=LIVE_QUEUES, leased="soakq.bot.paper")
    assert follow(look, clock, 300.0) is None
    assert (
        status_notes(
            found={},
            queues=LIVE_QUEUES,
            heartbeat=None,
            paced=False,
            tick_every_s=10,
            leased="soakq.bot.paper",
        )
        == []
    )


def test_a_ping_that_cannot_be_asked_is_not_an_absence() -> None:
    clock = Clock()
    look, pings = lookout(clock, [None])
    assert follow(look, clock, 200.0) is None
    assert len(pings) > 5


def test_no_beat_tick_is_said_when_the_next_iteration_waits_for_one() -> None:
    clock = Clock()
    look, _ = lookout(clock, [{"w1@h": {"soakq"}}])
    line, at = follow(look, clock, 200.0, record=PARKED)
    assert at - 100.0 == pytest.approx(30.0, abs=0.6)  # three tick periods
    assert "\n" not in line
    assert line.startswith("run r1: no beat tick seen for 30 s and iteration 2 waits for one")
    assert "start `celery -A workers.app beat -S workers.beat_scheduler:Scheduler`" in line


@pytest.mark.parametrize(
    ("record", "heartbeat"),
    [
        (RUNNING, None),  # no beat, but the next iteration is sent already: it needs none
        (PARKED, {"at_ts": 1.0, "every_s": 10.0}),  # beat ticks
    ],
)
def test_beat_is_not_blamed_when_the_run_does_not_wait_for_it(record, heartbeat) -> None:
    clock = Clock()
    look, _ = lookout(clock, [{"w1@h": {"soakq"}}], heartbeat=heartbeat)
    assert follow(look, clock, 300.0, record=record) is None


@pytest.mark.parametrize(
    ("record", "state", "want"),
    [
        (PARKED, AFTER_1, 2),
        (RUNNING, AFTER_1, None),  # sent (with a countdown or at once)
        (PARKED, {"iteration": 2}, None),  # committed since: the drive is old
        ({**PARKED, "status": "succeeded", "outcome": {"exit_code": 0}}, AFTER_1, None),  # ended
        ({"status": "queued"}, {"iteration": 0}, None),
    ],
)
def test_parked_iteration(record, state, want) -> None:
    assert waiting(record, state) == want


def test_status_notes() -> None:
    fresh = {"at_ts": 1.0, "every_s": 10.0}
    worker = {"w1@h": {"soakq"}}
    assert status_notes(
        found=worker, queues=["soakq"], heartbeat=fresh, paced=True, tick_every_s=10
    ) == ([])
    assert status_notes(
        found={}, queues=["soakq"], heartbeat=None, paced=True, tick_every_s=10
    ) == [
        "waiting for a worker (none consumes 'soakq')",
        "no beat tick for over 30 s",
    ]
    # An unpaced run does not need beat; an unanswerable ping blames nobody.
    assert status_notes(
        found=None, queues=["soakq"], heartbeat=None, paced=False, tick_every_s=10
    ) == ([])
    assert status_notes(
        found={}, queues=["soakq"], heartbeat=fresh, paced=True, tick_every_s=10, leased="soakq"
    ) == ([])
    assert unserved({"a": {"x"}, "b": {"soakq"}}, ["soakq", "soakq.bot.b"]) == ["soakq.bot.b"]
