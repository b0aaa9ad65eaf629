"""Every task name in one place. The CLI and the canvas send by name, never by import."""

from __future__ import annotations

ITERATION_START = "soakq.iteration.start"
METRICS_MEASURE = "soakq.metrics.measure"
LIVE_MEASURE = "soakq.live.measure"
ITERATION_FINALIZE = "soakq.iteration.finalize"
SCHEDULE_TICK = "soakq.schedule.tick"
WEEKLY_START = "soakq.weekly.start"
RELEASE_GATE_CHECK = "soakq.rules.release_gate.check"
RUN_PUBLISH = "soakq.run.publish"
RUN_REPORT = "soakq.run.report"
BENCH_NOOP = "soakq.bench.noop"

ALL = (
    ITERATION_START,
    METRICS_MEASURE,
    LIVE_MEASURE,
    ITERATION_FINALIZE,
    SCHEDULE_TICK,
    WEEKLY_START,
    RELEASE_GATE_CHECK,
    RUN_PUBLISH,
    RUN_REPORT,
    BENCH_NOOP,
)

#: The queue of iteration work, and the one trend reports are rendered from. Workers consume
#: both, iteration work first (docs/architecture.md, "Throughput").
DEFAULT_QUEUE = "soakq"
REPORT_QUEUE = "soakq.report"


def start_id(run_id: str, iteration: int, attempt: int) -> str:
    """Deterministic ids, keyed by (run, iteration, drive attempt, step)."""
    return f"{run_id}:{iteration}:{attempt}:start"


def header_group_id(run_id: str, iteration: int, attempt: int) -> str:
    return f"{run_id}:{iteration}:{attempt}:header"


def measure_id(run_id: str, iteration: int, attempt: int, symbol: str) -> str:
    return f"{run_id}:{iteration}:{attempt}:measure:{symbol}"


def live_measure_id(run_id: str, iteration: int, attempt: int) -> str:
    return f"{run_id}:{iteration}:{attempt}:live"


def finalize_id(run_id: str, iteration: int, attempt: int) -> str:
    return f"{run_id}:{iteration}:{attempt}:finalize"
