"""Celery configuration derived from soakq's settings (docs/architecture.md).

``WorkerSettings`` is soakq's ``Settings`` plus the knobs only the Celery side reads (same
``SOAKQ_`` prefix). ``celery_config`` turns it into the ``app.conf`` dict: Redis broker and result
backend when ``SOAKQ_REDIS_URL`` is set, ``memory://`` + ``cache+memory://`` (embedded) otherwise.

Time budget, in one place because the pieces depend on each other::

    task hard time limit  <  visibility_timeout      (else a running task is redelivered)
    retry countdowns      <  visibility_timeout      (an ETA message is held unacked too)
    iteration deadline    >  one iteration's work    (else the watchdog re-drives a live one)
    lease ttl             >  a tick, < the deadline  (a dead worker's iteration is re-driven
                                                      after the lease lapses, not the deadline)
"""

from __future__ import annotations

from typing import Any

from kombu import Queue
from pydantic import Field, ValidationError, model_validator

from soakq.settings import Settings, environment_error
from workers import names

#: kombu/Celery retry policy: one immediate reconnect, nothing more (see celery_config).
_ONE_RECONNECT = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}

#: Embedded transport poll period: with kombu's default (1 s) a chord waits a second per hop.
EMBEDDED_POLL_S = 0.001


class WorkerSettings(Settings):
    """Settings of the Celery side. Every duration in seconds."""

    key_prefix: str = Field("soakq", min_length=1)
    task_time_limit_s: float = Field(300.0, gt=0)
    visibility_timeout_s: float = Field(900.0, gt=0)
    # How often a worker looks for messages whose consumer died (kombu's default is ~100 s).
    unacked_restore_interval_s: float = Field(10.0, gt=0)
    retry_countdown_s: float = Field(0.05, ge=0, le=240)
    iteration_deadline_s: float = Field(600.0, gt=0)
    max_redrives: int = Field(3, ge=0)
    tick_interval_s: float = Field(10.0, gt=0)
    # A task renews its run's lease while it runs; the watchdog re-drives an iteration nobody
    # holds a lease on for this long. Default: three tick intervals.
    lease_ttl_s: float | None = Field(None, gt=0)
    result_expires_s: int = Field(86_400, gt=0)
    task_events: bool = True
    beat_lock_timeout_s: int = Field(60, gt=0)

    @property
    def task_soft_time_limit_s(self) -> float:
        return self.task_time_limit_s * 0.9

    @property
    def lease_ttl(self) -> float:
        """Seconds a run's lease lasts without renewal."""
        return self.lease_ttl_s or 3 * self.tick_interval_s

    @model_validator(mode="after")
    def _time_budget(self) -> WorkerSettings:
        if self.visibility_timeout_s <= self.task_time_limit_s + self.retry_countdown_s:
            raise ValueError(
                f"SOAKQ_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s:g} s) must exceed "
                f"SOAKQ_TASK_TIME_LIMIT_S + SOAKQ_RETRY_COUNTDOWN_S ({self.task_time_limit_s:g} + "
                f"{self.retry_countdown_s:g} s), or running tasks get redelivered"
            )
        return self


def worker_settings(base: Settings | None = None) -> WorkerSettings:
    """Read the worker knobs from the environment; fields of ``base`` win over the environment."""
    if isinstance(base, WorkerSettings):
        return base
    try:
        ws = WorkerSettings()
    except ValidationError as exc:
        raise environment_error(exc, WorkerSettings) from None
    if base is None:
        return ws
    return ws.model_copy(update={name: getattr(base, name) for name in Settings.model_fields})


def celery_config(ws: WorkerSettings) -> dict[str, Any]:
    """The ``app.conf`` mapping for ``ws``."""
    from workers.beat import beat_schedule

    conf: dict[str, Any] = {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        # Reject-on-lost is set per task, on the idempotent ones only (workers.tasks).
        "task_reject_on_worker_lost": False,
        "task_time_limit": ws.task_time_limit_s,
        "task_soft_time_limit": ws.task_soft_time_limit_s,
        "task_default_queue": names.DEFAULT_QUEUE,
        "result_expires": ws.result_expires_s,
        "result_chord_join_timeout": 30.0,
        "broker_connection_retry_on_startup": True,
        "worker_send_task_events": ws.task_events,
        # "task-sent" events would double the cost of every publish; Flower does without.
        "task_send_sent_event": False,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "beat_schedule": beat_schedule(ws),
        "beat_max_loop_interval": 5,
    }
    if not ws.redis_url:
        conf.update(
            broker_url="memory://",
            result_backend="cache+memory://",
            broker_transport_options={"polling_interval": EMBEDDED_POLL_S},
            worker_send_task_events=False,
            task_send_sent_event=False,
        )
        return conf
    timeout = ws.socket_timeout_s
    conf.update(
        broker_url=ws.redis_url,
        # kombu's Redis transport, but a malformed message is set aside, not fatal.
        broker_transport="workers.transport:Transport",
        result_backend=ws.redis_url,
        broker_transport_options={
            "dead_letter_key": f"{ws.key_prefix}:dead-letters",
            "visibility_timeout": ws.visibility_timeout_s,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "socket_keepalive": True,
            "unacked_restore_interval": ws.unacked_restore_interval_s,
            "unacked_restore_throttle": 1,
            # Poll the queues in name order: "soakq" (iteration work) before "soakq.report".
            "queue_order_strategy": "sorted",
        },
        # A worker started without -Q consumes both; the report queue takes the trend reports
        # off the iteration path (docs/architecture.md, "Throughput").
        task_queues=(Queue(names.DEFAULT_QUEUE), Queue(names.REPORT_QUEUE)),
        task_routes={names.RUN_REPORT: {"queue": names.REPORT_QUEUE}},
        # One retry layer: the task's (autoretry on TransientStoreError, workers.tasks). Below
        # it, a dropped connection is re-opened once and a timeout is not retried, so a task
        # on an unresponsive Redis fails within a few socket timeouts, far inside its limit.
        task_publish_retry_policy=_ONE_RECONNECT,
        result_backend_transport_options={"retry_policy": _ONE_RECONNECT},
        redis_socket_timeout=timeout,
        redis_socket_connect_timeout=timeout,
        redis_socket_keepalive=True,
        redis_retry_on_timeout=False,
        redis_backend_health_check_interval=30,
        redbeat_redis_url=ws.redis_url,
        redbeat_key_prefix=f"{ws.key_prefix}:redbeat:",
        redbeat_lock_timeout=ws.beat_lock_timeout_s,
        # No redbeat retry_period: it would stack a 30 s retry on every redbeat call and still
        # miss the lock; workers.beat_scheduler rides out Redis trouble tick by tick instead.
        redbeat_redis_options={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "socket_keepalive": True,
        },
        beat_scheduler="workers.beat_scheduler:Scheduler",
    )
    return conf
