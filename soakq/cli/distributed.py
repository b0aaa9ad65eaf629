"""CLI side of distributed runs: the run store on Redis, tasks sent by name to the workers.

Imports of ``workers`` (and so of celery, kombu, redis) happen inside the functions: the domain
package never loads them at import time.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from soakq.errors import ConfigError, InputError, StoreRefused, TransientStoreError

if TYPE_CHECKING:
    from soakq.config import RunSpec
    from soakq.documents import RunRecord, RunState

POLL_S = 0.2  # how often `--wait` / `watch` look at the run record
PUBLISH_GRACE_S = 120.0  # how long a follower waits for the workers' files once the run ended

F = TypeVar("F", bound=Callable[..., Any])


def _where(settings: Any) -> str:
    from workers.store import redacted

    return f"Redis at SOAKQ_REDIS_URL={redacted(settings.redis_url)}"


def _redis_trouble(fn: F) -> F:
    """An unreachable or unresponsive Redis is a configuration problem: one line naming
    SOAKQ_REDIS_URL, exit 2 (the store already waited at most its socket timeout)."""

    @functools.wraps(fn)
    def wrapper(settings: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(settings, *args, **kwargs)
        except TransientStoreError as exc:
            from redis.exceptions import TimeoutError as RedisTimeout

            why = " ".join(str(exc.__cause__ or exc).split()).rstrip(".")
            what = (
                f"did not answer within {settings.socket_timeout_s:g}s"
                if isinstance(exc.__cause__, RedisTimeout)
                else "is not reachable"
            )
            raise ConfigError(
                f"{_where(settings)} {what} ({why}); check that it runs and that the URL is right"
            ) from None

    return wrapper  # type: ignore[return-value]


def _connect(settings: Any) -> tuple[Any, Any]:
    """A client app (sends by name, runs no task) and the run store, both on SOAKQ_REDIS_URL."""
    from workers.app import make_app, store_of
    from workers.store import RedisStore

    app = make_app(settings)
    store = store_of(app)
    assert isinstance(store, RedisStore)
    store.ping()  # unreachable Redis: TransientStoreError, said plainly by _redis_trouble
    return app, store


@_redis_trouble
def check_reachable(settings: Any) -> None:
    """Redis at SOAKQ_REDIS_URL answers a PING within the socket timeout; else the one-line
    ConfigError (a Celery worker would retry for ever, a traceback each time)."""
    _, store = _connect(settings)
    store.close()


def _loaded(store: Any, run_id: str) -> tuple[RunRecord, RunState]:
    """The run's record and state, typed and validated, in one read (soakq/documents.py)."""
    from soakq.config import check_run_id
    from soakq.documents import load_run

    check_run_id(run_id, what="run id")
    loaded = load_run(store, run_id)
    if loaded is None:
        raise _unknown(store, run_id)
    return loaded


def _record(store: Any, run_id: str) -> dict[str, Any]:
    """The run's record document as stored (what RUN.json and the verdict lines are made of)."""
    from soakq.config import check_run_id

    check_run_id(run_id, what="run id")
    record: dict[str, Any] | None = store.get_record(run_id)
    if record is None:
        raise _unknown(store, run_id)
    return record


def _unknown(store: Any, run_id: str) -> InputError:
    return InputError(
        f"run {run_id!r} is not in Redis ({store.runs_key}); `soakq runs` lists the runs it knows"
    )


def check_live_budget(spec: Any) -> None:
    """A live step blocks for the window + report timeout: the broker must not redeliver it and
    the watchdog must not re-drive it meanwhile (docs/live-bot.md)."""
    from workers.celeryconfig import worker_settings
    from workers.executor import LIVE_MARGIN_S

    ws = worker_settings()
    need = spec.window_s + spec.report_timeout_s + LIVE_MARGIN_S
    for knob, value in (
        ("SOAKQ_VISIBILITY_TIMEOUT_S", ws.visibility_timeout_s),
        ("SOAKQ_ITERATION_DEADLINE_S", ws.iteration_deadline_s),
    ):
        if value <= need:
            raise ConfigError(
                f"--window {spec.window_s:g} + --report-timeout {spec.report_timeout_s:g} "
                f"(+{LIVE_MARGIN_S:g} s margin) needs {knob} above {need:g} s (now {value:g}); "
                "raise it for the workers and this command"
            )


@_redis_trouble
def submit_distributed(
    settings: Any, spec: Any, root: Path, *, wait: bool, explicit_id: bool
) -> int:
    """Record the run, send the start of iteration 1, print the run id; follow it with ``wait``."""
    from soakq.runner import start_run, start_run_unique
    from workers.executor import send_start

    if spec.live:
        check_live_budget(spec)
    app, store = _connect(settings)
    now = time.time()
    if explicit_id:
        if not start_run(store, spec, now=now, mode="distributed"):
            raise ConfigError(
                f"--run-id {spec.run_id}: a run with this id already exists in Redis; "
                "choose another run id (or `soakq status` it)"
            )
    else:  # the derived id, or -2, -3, ... from a counter when it is taken
        spec = start_run_unique(store, spec, now=now, mode="distributed")
    try:
        send_start(app, store, spec.run_id, 1, now=now)
    except Exception as exc:  # kombu, redis or store: whatever it is, the run must not stay queued
        _not_started(settings, store, spec.run_id, exc)
    print(spec.run_id, flush=True)
    if not wait:
        return 0
    from soakq.cli.output import run_line

    print(run_line(spec, "distributed"), flush=True)
    return _follow(settings, app, store, spec.run_id, timeout_s=float("inf"))


def _not_started(settings: Any, store: Any, run_id: str, exc: BaseException) -> None:
    """The run is recorded but its first message could not be sent: mark it failed with the
    reason (or, if Redis refuses even that, remove it), then raise the one-line error."""
    from soakq.errors import StoreError
    from soakq.runner import fail_unstarted
    from workers.store import is_out_of_memory

    cause: BaseException = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        if is_out_of_memory(cause):
            break
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    why = " ".join(str(cause).split()) or type(cause).__name__
    if is_out_of_memory(cause):
        why = f"Redis is out of memory: {why}; raise maxmemory or `soakq prune` finished runs"
    try:
        fail_unstarted(store, run_id, reason=f"its first message could not be sent: {why}")
        fate = "marked failed"
    except StoreError:
        try:
            store.discard_run(run_id)
            fate = "removed (Redis refused to mark it failed)"
        except StoreError:
            fate = "left as it is (Redis refused every write; `soakq cancel` it later)"
    raise StoreRefused(
        f"run {run_id}: its first message could not be sent to {_where(settings)} ({why}); "
        f"the run is {fate}"
    ) from None


def _lookout(settings: Any, app: Any, store: Any, spec: RunSpec) -> Any:
    """What the follower of ``spec``'s run watches for: a worker on its queues, beat's tick."""
    from soakq.lifecycle import TICK_HEARTBEAT
    from workers.app import settings_of
    from workers.presence import Lookout, consumers, lease_queue, run_queues
    from workers.store import redacted

    default_queue = str(app.conf.task_default_queue)
    return Lookout(
        run_id=spec.run_id,
        queues=run_queues(default_queue, spec.bot_queue),
        default_queue=default_queue,
        where=f"SOAKQ_REDIS_URL={redacted(settings.redis_url)}",
        ping=lambda: consumers(app, settings.ping_timeout_s),
        heartbeat=lambda: store.get_heartbeat(TICK_HEARTBEAT),
        leased=lambda: lease_queue(store.lease(spec.run_id), default_queue),
        grace_s=settings.worker_grace_s,
        tick_every_s=settings_of(app).tick_interval_s,
    )


def _follow(
    settings: Any, app: Any, store: Any, run_id: str, *, timeout_s: float, shown: int = 0
) -> int:
    """Print each iteration after the first ``shown`` as it is committed, then the verdict;
    exit with the run's code. Exit 5 with one line (the run goes on) when it cannot move: no
    worker consumes its queues, its next iteration waits for a tick and beat does not tick
    (workers.presence), or Redis has not answered for ``REDIS_OUTAGE_S``. Ctrl-C or SIGTERM
    stop the follower, not the run: one line, exit 130."""
    from soakq.cli.signals import sigterm_as_ctrl_c
    from soakq.errors import ExitCode

    record, _ = _loaded(store, run_id)
    total = record.spec.iterations
    try:
        with sigterm_as_ctrl_c():
            return _follow_until_done(settings, app, store, record, shown, timeout_s)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the follower stops, the run does not
        state = _loaded(store, run_id)[1]
        print(
            f"run {run_id}: no longer followed ({state.iteration}/{total} iterations); it goes "
            f"on on the workers: `soakq watch {run_id}` follows it again",
            file=sys.stderr,
            flush=True,
        )
        return int(ExitCode.INTERRUPTED)


def _follow_until_done(
    settings: Any, app: Any, store: Any, record: RunRecord, shown: int, timeout_s: float
) -> int:
    """``_follow``'s loop: the iterations as they come, then the verdict (or exit 5)."""
    from soakq.artifacts import run_aggregates
    from soakq.cli.output import RunProgress, verdict_lines
    from soakq.errors import ExitCode
    from soakq.runner import exit_code_of
    from workers.presence import parked_iteration

    run_id, total = record.run_id, record.spec.iterations
    lookout = _lookout(settings, app, store, record.spec)
    deadline = time.monotonic() + timeout_s
    grace_until: float | None = None
    outage: float | None = None  # since when Redis has not answered the follower
    with RunProgress(total, run_id) as bar:
        while True:
            try:
                record, state = _loaded(store, run_id)  # one read: no iteration is missed
                progressed = shown < state.iteration
                while shown < state.iteration:
                    doc = store.get_iteration(run_id, shown + 1)
                    shown += 1
                    if doc is not None:
                        bar.update(shown, doc)
                if outage is not None:
                    print(f"run {run_id}: Redis answers again", file=sys.stderr, flush=True)
                    lookout.restart()  # nothing could be seen meanwhile: look afresh
                    outage = None
                ended = record.status.terminal
                if ended and _published(record, grace_until):
                    break
                if ended and grace_until is None:
                    grace_until = time.monotonic() + PUBLISH_GRACE_S
                if not ended:
                    stuck = lookout.check(parked_iteration(record, state), progressed=progressed)
                    if stuck is not None:
                        print(stuck, file=sys.stderr, flush=True)
                        return int(ExitCode.PENDING)
            except TransientStoreError as exc:
                # A Redis restart or pause: the workers ride it out, and so does the follower.
                outage = _redis_outage(settings, run_id, outage, exc)
                if outage is None:
                    return int(ExitCode.PENDING)
                time.sleep(POLL_S)
                continue
            if time.monotonic() > deadline:
                print(
                    f"run {run_id}: still {record.status} after {timeout_s:g}s "
                    f"({shown}/{total} iterations); `soakq watch {run_id}` follows it again"
                )
                return int(ExitCode.PENDING)
            time.sleep(POLL_S)
    doc, docs = _record(store, run_id), store.iterations(run_id)
    final = dict(docs[-1], run=run_aggregates(docs, doc)) if docs else None
    gate = store.get_extra(run_id, "release_gate")
    for line in verdict_lines(doc, final, gate, None):
        print(line)
    print(
        f"artifacts: written by the workers under their SOAKQ_ARTIFACTS_DIR; "
        f"`soakq export {run_id}` writes them under --artifacts"
    )
    return exit_code_of(record)


#: How long a follower keeps asking a Redis that stopped answering before it gives up (exit 5:
#: the run itself goes on; `soakq watch` follows it again).
REDIS_OUTAGE_S = 120.0


def _redis_outage(
    settings: Any, run_id: str, since: float | None, exc: TransientStoreError
) -> float | None:
    """Say once that Redis stopped answering; the outage's start, or None once it has lasted
    ``REDIS_OUTAGE_S`` (said in one more line)."""
    now = time.monotonic()
    why = " ".join(str(exc.__cause__ or exc).split()).rstrip(".")
    if since is None:
        print(
            f"run {run_id}: {_where(settings)} stopped answering ({why}); still following for up "
            f"to {REDIS_OUTAGE_S:g} s (the run goes on)",
            file=sys.stderr,
            flush=True,
        )
        return now
    if now - since < REDIS_OUTAGE_S:
        return since
    print(
        f"run {run_id}: {_where(settings)} has not answered for {REDIS_OUTAGE_S:g} s; "
        f"`soakq watch {run_id}` follows the run again once it does",
        file=sys.stderr,
        flush=True,
    )
    return None


def _published(record: RunRecord, grace_until: float | None) -> bool:
    """The workers wrote the run directory for this final status (or we stop waiting for it)."""
    if record.published is not None and record.published.status == record.status:
        return True
    return grace_until is not None and time.monotonic() > grace_until


@_redis_trouble
def resume_distributed(
    settings: Any, checkpoint: Any, docs: list[dict[str, Any]], root: Path, *, wait: bool
) -> int:
    """Hand an interrupted embedded run to the workers: its checkpoint and committed iterations
    go into Redis as they were, and its next iteration is sent (docs/resume.md)."""
    from soakq.artifacts import CHECKPOINT, run_dir, run_json
    from soakq.checkpoint import clear_after
    from soakq.config import RunSpec
    from soakq.jsonio import write_json
    from soakq.runner import close_if_finished, resume_record
    from workers import names
    from workers.executor import send_start

    spec = RunSpec.model_validate(checkpoint.record["spec"])
    if spec.live:
        check_live_budget(spec)
    app, store = _connect(settings)
    now = time.time()
    done = checkpoint.iteration
    record = resume_record(
        checkpoint.record, iterations_done=done, now=now, execution="distributed"
    )
    if not store.restore_run(spec.run_id, record, checkpoint.state, checkpoint.version, docs):
        raise ConfigError(
            f"run {spec.run_id}: a run with this id is already in Redis; "
            f"`soakq status {spec.run_id}` shows it"
        )
    directory = run_dir(root, spec.run_id)
    clear_after(directory, done)
    write_json(directory / "RUN.json", run_json(record))  # no longer interrupted here
    (directory / CHECKPOINT).unlink(missing_ok=True)  # the run lives in Redis now
    if close_if_finished(store, spec.run_id):
        app.send_task(names.RUN_PUBLISH, args=[spec.run_id])
    else:
        store.schedule(spec.run_id, done + 1, now)
        try:
            send_start(app, store, spec.run_id, done + 1, now=now)
        except Exception as exc:  # the run must not stay queued without its message
            _not_started(settings, store, spec.run_id, exc)
    print(spec.run_id, flush=True)
    if not wait:
        return 0
    from soakq.cli.output import run_line

    print(f"{run_line(spec, 'distributed')}: resumed after {done}/{spec.iterations}", flush=True)
    return _follow(settings, app, store, spec.run_id, timeout_s=float("inf"), shown=done)


@_redis_trouble
def sweep_distributed(settings: Any, plan: Any, directory: Path, *, wait: bool) -> int:
    """A sweep on the workers: every run an ordinary distributed run (docs/sweeps.md)."""
    from soakq.cli.sweep import run_sweep
    from workers.presence import consumers, unserved
    from workers.sweep import RedisSubmitter

    app, store = _connect(settings)
    queue = app.conf.task_default_queue

    def nobody() -> str | None:
        found = consumers(app, settings.ping_timeout_s)
        if found is None or not unserved(found, [queue]):
            return None
        return (
            f"sweep {plan.sweep_id}: no worker consumes queue {queue!r} on {_where(settings)}; "
            "start some with `soakq worker -n w1@%h` (and w2@%h, ...); the same command "
            "then continues the sweep"
        )

    why = nobody()
    if why is not None:
        raise StoreRefused(why)  # before anything is submitted: a configuration problem
    submitter = RedisSubmitter(app, store, unserved=nobody, grace_s=settings.worker_grace_s)
    if not wait:
        for run in plan.arm_runs():
            submitter.submit(run.spec)
        print(
            f"sweep {plan.sweep_id}: {len(plan.arm_runs())} runs submitted; the same command "
            "with --wait follows them, runs the hold-outs and writes the sweep's files"
        )
        return 0
    from soakq.cli.signals import sigterm_as_ctrl_c

    with sigterm_as_ctrl_c():  # SIGTERM stops the coordinator as Ctrl-C does: one line, 130
        return run_sweep(plan, submitter, directory, {"execution": "distributed"})


@_redis_trouble
def status_distributed(settings: Any, run_id: str, *, as_json: bool) -> int:
    from soakq.jsonio import dumps

    app, store = _connect(settings)
    if as_json:  # the RUN.json document: one schema, embedded or distributed
        from soakq.artifacts import run_json

        print(dumps(run_json(_record(store, run_id))), end="")
        return 0
    typed, state = _loaded(store, run_id)
    o, drive = typed.outcome, typed.drive
    line = (
        f"run {run_id}: {typed.status} ({state.iteration}/{typed.spec.iterations} iterations, "
        f"release gate {o.release_gate or 'none'})"
    )
    ended = typed.status.terminal
    notes = [] if ended else _notes(settings, app, store, typed.spec)
    nobody = any(n.startswith("waiting for a worker") for n in notes)  # not "in flight", then
    if not nobody and not ended and drive is not None and drive.iteration > state.iteration:
        if drive.enqueued_ts is None:  # parked in the due set for the tick
            due_in = drive.due_ts - time.time()
            when = f"in {due_in:.0f} s" if due_in >= 0 else f"{-due_in:.0f} s ago"
            line += f"; iteration {drive.iteration} due {when}"
        else:
            line += f"; iteration {drive.iteration} attempt {drive.attempt} in flight"
    print("; ".join([line, *notes]))
    if o.stop_reason:
        print(f"stopped: {o.stop_reason}: {o.detail or ''}")
    return 0


def _notes(settings: Any, app: Any, store: Any, spec: RunSpec) -> list[str]:
    """`status` of a run that has not ended: nobody consumes its queues, beat does not tick."""
    from soakq.lifecycle import TICK_HEARTBEAT
    from workers.app import settings_of
    from workers.presence import consumers, lease_queue, run_queues, status_notes

    default_queue = str(app.conf.task_default_queue)
    tick_s = settings_of(app).tick_interval_s
    return status_notes(
        found=consumers(app, settings.ping_timeout_s),
        queues=run_queues(default_queue, spec.bot_queue),
        heartbeat=store.get_heartbeat(TICK_HEARTBEAT),
        # A successor due within a tick is sent with a countdown: only longer pauses wait for
        # beat (lifecycle.successor_action).
        paced=spec.interval_s > tick_s,
        tick_every_s=tick_s,
        leased=lease_queue(store.lease(spec.run_id), default_queue),
    )


@_redis_trouble
def follow(settings: Any, run_id: str, *, timeout_s: float) -> int:
    app, store = _connect(settings)
    return _follow(settings, app, store, run_id, timeout_s=timeout_s)


@_redis_trouble
def list_distributed(settings: Any) -> int:
    from soakq.cli.output import RUN_COLUMNS, print_table, run_row

    _, store = _connect(settings)
    rows = []
    for run_id in store.list_runs():
        record = store.get_record(run_id)
        if record is None:
            continue
        state, _ = store.get_state(run_id)
        rows.append(run_row(record, done=int(state["iteration"])))
    print_table(RUN_COLUMNS, rows, right=("iterations",))
    return 0


@_redis_trouble
def cancel_distributed(settings: Any, run_id: str) -> int:
    from soakq.runner import cancel_run
    from workers import names

    app, store = _connect(settings)
    _record(store, run_id)
    if cancel_run(store, run_id, reason="cancelled with `soakq cancel`"):
        # A worker writes the cancelled run's directory now (the tick would, within a tick).
        app.send_task(names.RUN_PUBLISH, args=[run_id])
        print(f"run {run_id}: cancelled (an iteration in flight finishes its tasks as no-ops)")
        return 0
    print(f"run {run_id}: not cancelled, it already ended ({_record(store, run_id)['status']})")
    return 1


@_redis_trouble
def export_distributed(settings: Any, run_id: str, root: Path) -> int:
    from soakq.artifacts import export_run

    _, store = _connect(settings)
    _record(store, run_id)
    out = export_run(store, run_id, root)
    print(f"wrote {out}")
    return 0


@_redis_trouble
def prune_distributed(settings: Any, older_than_days: float) -> int:
    """Delete the Redis keys of runs that finished more than ``older_than_days`` ago."""
    from soakq.runner import iso

    _, store = _connect(settings)
    cutoff = time.time() - older_than_days * 86_400
    gone = store.prune(cutoff)
    legacy = store.prune_unreadable()
    print(
        f"pruned {len(gone)} finished run(s) from Redis (finished before {iso(cutoff)})"
        + (f" and {legacy} run(s) in a layout this version cannot read" if legacy else "")
        + "; their artifacts on disk are kept"
    )
    return 0
