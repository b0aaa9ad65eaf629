"""Beat: the weekly soak and its release gate in UTC, one run per slot, redbeat for real."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from soakq_worker_harness import Cluster, result_of, spec_for, wait_for

from soakq.runner import cancel_run, start_run
from workers import names
from workers.beat import (
    WEEKLY,
    beat_schedule,
    parse_slot,
    slot_text,
    weekly_run_id,
    weekly_slot,
    weekly_spec,
)
from workers.celeryconfig import WorkerSettings

SLOT = "2026-11-29T0000Z"  # a Sunday


def ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def test_schedule_fires_in_utc() -> None:
    from workers.app import make_app

    app = make_app(WorkerSettings(redis_url=None))
    assert app.conf.timezone == "UTC" and app.conf.enable_utc
    schedule = app.conf.beat_schedule
    assert schedule == beat_schedule(WorkerSettings(redis_url=None))

    weekly = schedule["soakq-weekly-soak"]
    assert weekly["task"] == names.WEEKLY_START
    cron = weekly["schedule"]
    assert (cron.minute, cron.hour, cron.day_of_week) == ({0}, {0}, {0})  # Sunday 00:00
    gate = schedule["soakq-weekly-release-gate"]
    assert gate["task"] == names.RELEASE_GATE_CHECK
    cron = gate["schedule"]
    assert (cron.minute, cron.hour, cron.day_of_week) == ({0}, {1}, {1})  # Monday 01:00

    tick = schedule["soakq-tick"]
    assert tick["task"] == names.SCHEDULE_TICK and tick["schedule"] == 10.0
    assert tick["options"]["expires"] == 10.0
    assert tick["kwargs"] == {"every_s": 10.0}  # the tick's heartbeat records beat's period


@pytest.mark.parametrize(
    ("now", "max_late_s", "slot"),
    [
        ("2026-11-29 00:00:00", WEEKLY.max_late_s, "2026-11-29T0000Z"),  # on time
        ("2026-11-29 00:00:07", WEEKLY.max_late_s, "2026-11-29T0000Z"),  # beat a bit late
        ("2026-11-29 06:00:00", WEEKLY.max_late_s, "2026-11-29T0000Z"),  # as late as allowed
        ("2026-11-29 06:00:01", WEEKLY.max_late_s, None),  # too late: skip, not mid-week
        ("2026-11-28 23:59:59", WEEKLY.max_late_s, None),  # Saturday: last week's slot
        ("2026-11-28 23:59:59", None, "2026-11-22T0000Z"),
        ("2026-11-30 01:00:00", None, "2026-11-29T0000Z"),  # the release gate's view
        ("2026-12-02 12:00:00", None, "2026-11-29T0000Z"),
    ],
)
def test_weekly_slot(now: str, max_late_s: float | None, slot: str | None) -> None:
    got = weekly_slot(ts(now), max_late_s=max_late_s)
    assert (slot_text(got) if got else None) == slot


def test_weekly_spec_is_the_designed_soak() -> None:
    spec = weekly_spec(WorkerSettings(redis_url=None), parse_slot(SLOT))
    assert spec.run_id == "weekly-steady_safe-2026-11-29T0000Z"
    assert (spec.profile, spec.iterations, spec.interval_s) == ("steady_safe", 24, 3600.0)
    assert (spec.kpi_gate, spec.guards, spec.auto_tune) == ("hard", True, True)


@pytest.mark.workers
@pytest.mark.redis
def test_two_fires_of_one_slot_start_one_run(cluster: Cluster) -> None:
    fires = [cluster.app.send_task(names.WEEKLY_START, kwargs={"slot": SLOT}) for _ in range(2)]
    results = [result_of(f) for f in fires]
    run_id = weekly_run_id(parse_slot(SLOT))
    assert sorted(r["created"] for r in results) == [False, True]
    assert {r["run_id"] for r in results} == {run_id}
    assert cluster.store.list_runs().count(run_id) == 1

    def parked() -> dict | None:  # iteration 1 done, iteration 2 an hour away
        record = cluster.store.get_record(run_id)
        return record if (record.get("drive") or {}).get("iteration") == 2 else None

    record = wait_for(parked, "the weekly run to park after iteration 1")
    assert record["runtime"]["execution"] == "weekly"
    assert record["drive"]["enqueued_ts"] is None
    assert cluster.store.get_iteration(run_id, 1) is not None
    assert cancel_run(cluster.store, run_id, reason="test over")


@pytest.mark.workers
@pytest.mark.redis
def test_release_gate_task(cluster: Cluster) -> None:
    # No run for the slot: said so, nothing written.
    missing = result_of(
        cluster.app.send_task(names.RELEASE_GATE_CHECK, kwargs={"slot": "2026-11-15T0000Z"})
    )
    assert missing == {"run_id": "weekly-steady_safe-2026-11-15T0000Z", "verdict": "MISSING"}

    # A finished run under a weekly id (short, so the test does not take a day).
    slot = "2026-11-08T0000Z"
    run_id = weekly_run_id(parse_slot(slot))
    spec = spec_for(iterations=2, run_id=run_id)
    cluster.submit(spec)
    cluster.wait_run(run_id)
    got = result_of(cluster.app.send_task(names.RELEASE_GATE_CHECK, kwargs={"slot": slot}))
    gate = json.loads((cluster.run_dir(run_id) / "RELEASE_GATE.json").read_text())
    assert got == {"run_id": run_id, "verdict": gate["verdict"]}
    # the run-level gate: 2 iterations are never enough evidence to pass (min_window 6)
    assert gate["form"] == "run" and gate["iterations"] == 2
    assert gate["verdict"] in ("FAILED", "INCONCLUSIVE") and gate["passed"] is False

    # A weekly run that ended without a final summary fails its gate, with the reason.
    slot = "2026-11-01T0000Z"
    run_id = weekly_run_id(parse_slot(slot))
    assert start_run(
        cluster.store,
        spec_for(iterations=2, interval_s=3600, run_id=run_id),
        now=time.time(),
        mode="weekly",
    )
    cancel_run(cluster.store, run_id, reason="operator stopped it")
    got = result_of(cluster.app.send_task(names.RELEASE_GATE_CHECK, kwargs={"slot": slot}))
    assert got == {"run_id": run_id, "verdict": "FAILED"}
    gate = json.loads((cluster.run_dir(run_id) / "RELEASE_GATE.json").read_text())
    assert gate["passed"] is False and "operator stopped it" in gate["error"]


@pytest.mark.workers
@pytest.mark.redis
@pytest.mark.slow
def test_redbeat_runs_the_schedule(cluster: Cluster) -> None:
    client = cluster.store.client
    prefix = f"{cluster.settings().key_prefix}:redbeat:"
    beat = cluster.start_beat(SOAKQ_TICK_INTERVAL_S="1")  # the beat's own tick, for speed
    try:
        wait_for(
            lambda: client.exists(f"{prefix}soakq-weekly-soak", f"{prefix}:lock") == 2,
            "redbeat to write its schedule and take its lock",
        )
        definition = json.loads(client.hget(f"{prefix}soakq-weekly-soak", "definition"))
        assert definition["task"] == names.WEEKLY_START
        cron = definition["schedule"]
        assert [str(cron[k]) for k in ("minute", "hour", "day_of_week")] == ["0", "0", "0"]
        gate = json.loads(client.hget(f"{prefix}soakq-weekly-release-gate", "definition"))
        assert [str(gate["schedule"][k]) for k in ("hour", "day_of_week")] == ["1", "1"]

        # The tick (every second here, 10 s by default) reaches a worker.
        def ticked() -> bool:
            return "soakq.schedule.tick[" in cluster.log("w1", None) + cluster.log("w2", None)

        wait_for(ticked, "beat's first tick to be executed")
    finally:
        cluster.stop("beat")
    assert beat.returncode is not None


@pytest.mark.workers
@pytest.mark.redis
def test_release_gate_of_a_weekly_run_is_recorded_when_it_ends(cluster: Cluster) -> None:
    """The gate task fires while the weekly run still goes (it is late): nothing to wait for,
    and no retry budget to run out; whoever ends the run records its gate, however late."""
    from soakq.cli.distributed import cancel_distributed

    slot = "2026-10-25T0000Z"
    run_id = weekly_run_id(parse_slot(slot))
    spec = spec_for(iterations=3, interval_s=3600, run_id=run_id)
    assert start_run(cluster.store, spec, now=time.time(), mode="weekly")
    got = result_of(cluster.app.send_task(names.RELEASE_GATE_CHECK, kwargs={"slot": slot}))
    assert got == {"run_id": run_id, "verdict": "PENDING"}
    assert cluster.store.get_extra(run_id, "release_gate") is None
    # ...days later the run ends (here: an operator cancels it).
    assert cancel_distributed(cluster.settings(), run_id) == 0
    cluster.wait_run(run_id)
    gate = json.loads((cluster.run_dir(run_id) / "RELEASE_GATE.json").read_text())
    assert gate["passed"] is False and "cancelled" in gate["error"]
    assert cluster.store.get_extra(run_id, "release_gate") == gate
