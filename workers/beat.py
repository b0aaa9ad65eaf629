"""What beat fires, in UTC: the weekly 24-hour soak, its gate and the tick (docs/architecture.md).

Run beat with ``celery -A workers.app beat -S workers.beat_scheduler:Scheduler``: redbeat keeps the
schedule in Redis and holds a lock there, so a second beat waits instead of firing twice. A
double fire is harmless anyway: the weekly run id is the slot's, and starting it is set-if-absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import crontab

from soakq.config import RunSpec, build_spec
from soakq.rules.release_gate import failed_gate
from soakq.runner import release_gate_of
from soakq.settings import Settings
from soakq.states import RunStatus
from workers import names


@dataclass(frozen=True)
class WeeklySoak:
    """The weekly soak: Sunday 00:00 UTC, 24 iterations an hour apart; gate Monday 01:00 UTC."""

    profile: str = "steady_safe"
    iterations: int = 24
    interval_s: float = 3600.0
    kpi_gate: str = "hard"
    guards: bool = True
    auto_tune: bool = True
    weekday: int = 6  # datetime.weekday(): Monday 0 ... Sunday 6
    hour: int = 0
    gate_weekday: int = 0
    gate_hour: int = 1
    # A slot fired later than this (beat down for a day) is skipped, not started mid-week.
    max_late_s: float = 6 * 3600.0


WEEKLY = WeeklySoak()


def _cron_dow(weekday: int) -> int:
    """datetime's weekday (Monday 0) as crontab's day_of_week (Sunday 0)."""
    return (weekday + 1) % 7


def beat_schedule(settings: Any, weekly: WeeklySoak = WEEKLY) -> dict[str, dict[str, Any]]:
    """The ``beat_schedule`` mapping; crontabs are in the app's timezone, which is UTC."""
    tick_s = float(getattr(settings, "tick_interval_s", 10.0))
    return {
        "soakq-tick": {
            "task": names.SCHEDULE_TICK,
            "schedule": tick_s,
            # The tick's heartbeat records the period, so followers judge it by beat's own.
            "kwargs": {"every_s": tick_s},
            # A tick queued during an outage is worthless once the next one is due.
            "options": {"expires": tick_s},
        },
        "soakq-weekly-soak": {
            "task": names.WEEKLY_START,
            "schedule": crontab(minute=0, hour=weekly.hour, day_of_week=_cron_dow(weekly.weekday)),
        },
        "soakq-weekly-release-gate": {
            "task": names.RELEASE_GATE_CHECK,
            "schedule": crontab(
                minute=0, hour=weekly.gate_hour, day_of_week=_cron_dow(weekly.gate_weekday)
            ),
        },
    }


def weekly_slot(
    now_ts: float, *, weekly: WeeklySoak = WEEKLY, max_late_s: float | None = WEEKLY.max_late_s
) -> datetime | None:
    """The latest weekly slot at or before ``now_ts`` (UTC); None if it is more than
    ``max_late_s`` ago. Pure."""
    now = datetime.fromtimestamp(now_ts, UTC)
    day = now.replace(hour=weekly.hour, minute=0, second=0, microsecond=0)
    slot = day - timedelta(days=(now.weekday() - weekly.weekday) % 7)
    if slot > now:
        slot -= timedelta(days=7)
    if max_late_s is not None and (now - slot).total_seconds() > max_late_s:
        return None
    return slot


def slot_text(slot: datetime) -> str:
    return slot.astimezone(UTC).strftime("%Y-%m-%dT%H%MZ")


def parse_slot(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H%MZ").replace(tzinfo=UTC)


def weekly_run_id(slot: datetime, weekly: WeeklySoak = WEEKLY) -> str:
    return f"weekly-{weekly.profile}-{slot_text(slot)}"


def weekly_spec(settings: Settings, slot: datetime, weekly: WeeklySoak = WEEKLY) -> RunSpec:
    return build_spec(
        settings,
        profile=weekly.profile,
        iterations=weekly.iterations,
        interval_s=weekly.interval_s,
        kpi_gate=weekly.kpi_gate,
        guards=weekly.guards,
        auto_tune=weekly.auto_tune,
        run_id=weekly_run_id(slot, weekly),
    )


def gate_for(record: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """RELEASE_GATE of a finished run: the run-level gate on its window of iterations.

    A run that ended without being judged (cancelled, lost, or no iteration) is FAILED, with why:
    an interrupted soak never counts as evidence.
    """
    gate = None
    if record["status"] in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        gate = release_gate_of(RunSpec.model_validate(record["spec"]), docs)
    if gate is not None:
        return gate
    outcome = record.get("outcome", {})
    why = outcome.get("detail") or outcome.get("stop_reason") or "no iteration to judge"
    return failed_gate(f"run {record['status']}: {why}")
