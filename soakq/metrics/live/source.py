"""The live source: write the handshake for an iteration, wait for the bot's answer, read it.

One call measures every symbol of the iteration from one report, so the handshake is written by
the same step that waits for its answer. The wait is bounded by the handshake's ``deadline_ts``
(window + report timeout) and polls the file (stat first, read only when it changed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from soakq.config import RunSpec
from soakq.errors import InputError, MetricsError
from soakq.jsonio import read_json
from soakq.metrics.live.fieldmap import field_map
from soakq.metrics.live.handshake import (
    Handshake,
    make_handshake,
    report_name,
    write_handshake,
)
from soakq.metrics.live.reports import (
    freshness_problem,
    read_kpis,
    stale_reason,
    window_problem,
)
from soakq.rules.thresholds import fmt_num

log = logging.getLogger(__name__)

POLL_S = 0.05
ABANDON_CHECK_S = 1.0  # how often a waiting live step asks whether its run still wants it


def _error_results(spec: RunSpec, message: str) -> list[dict[str, Any]]:
    return [{"error": message, "symbol": s} for s in spec.symbols]


def measure_live(
    spec: RunSpec,
    iteration: int,
    overrides: Mapping[str, Any],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = POLL_S,
    abandon: Callable[[], str | None] | None = None,
) -> list[dict[str, Any]]:
    """Handshake, wait, read: one result per symbol (``metrics`` or ``error``, never zeros).

    ``abandon``, asked every ``ABANDON_CHECK_S`` while the step waits for the report: a reason
    to stop waiting (the run was cancelled), or None. The step then ends at once with that
    reason as its error, and frees the bot's worker for the next run."""
    assert spec.bot_dir is not None
    fixed = spec.report_path is not None
    path = Path(spec.report_path or "") if fixed else Path(spec.bot_dir) / report_name(iteration)
    # A fixed-path report answers only once the bot has rewritten it after this handshake: the
    # file as it stands now (a previous iteration's answer, or a dead bot's last) never counts,
    # whatever time it claims.
    before = _file_version(path) if fixed else None
    written_ts = clock()
    flat, hs = make_handshake(
        spec.run_id,
        iteration,
        overrides,
        window_s=spec.window_s,
        report_timeout_s=spec.report_timeout_s,
        now=written_ts,
    )
    try:
        write_handshake(spec.bot_dir, flat, hs)
    except OSError as exc:  # e.g. the directory is not mounted on this worker's host
        return _error_results(
            spec, f"cannot write the handshake in {spec.bot_dir}: {exc.strerror or exc}"
        )
    log.info("run %s iteration %s: handshake written (%s)", spec.run_id, iteration, hs.state_hash)
    try:
        doc, info = _wait(
            spec,
            hs,
            path,
            written_ts,
            fixed=fixed,
            before=before,
            clock=clock,
            sleep=sleep,
            poll_s=poll_s,
            abandon=abandon,
        )
    except MetricsError as exc:
        log.warning("run %s iteration %s: %s", spec.run_id, iteration, exc)
        return _error_results(spec, str(exc))
    try:
        kpis = read_kpis(doc, field_map(spec.report_map), spec.symbols, where=path.name)
    except MetricsError as exc:
        return _error_results(spec, str(exc))
    return [
        {"absent": list(k.absent), "live": info, "metrics": k.metrics, "symbol": sym}
        for sym, k in sorted(kpis.items())
    ]


def _file_version(path: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the file, None when there is none (or it cannot be read yet)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _wait(
    spec: RunSpec,
    hs: Handshake,
    path: Path,
    written_ts: float,
    *,
    fixed: bool,
    before: tuple[int, int] | None,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    poll_s: float,
    abandon: Callable[[], str | None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answering report and facts about the wait; MetricsError at the deadline.

    ``before``: the report file's (mtime_ns, size) when the handshake was written; a file still
    like that is not read at all."""
    seen = before
    stale: list[str] = []
    problem = ""
    next_check = clock() + ABANDON_CHECK_S
    while True:
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise MetricsError(f"{path}: cannot read ({exc.strerror})") from None
        if st is not None and (st.st_mtime_ns, st.st_size) != seen:
            seen = (st.st_mtime_ns, st.st_size)
            try:
                doc = read_json(path)
            except InputError as exc:  # a bot writing in place: read it again when it changes
                doc, problem = None, f"invalid report: {exc}"
            if isinstance(doc, dict):
                why = stale_reason(doc, hs, required=not fixed) or window_problem(doc, clock())
                if why is None and fixed:
                    why = freshness_problem(doc, st.st_mtime, written_ts, clock())
                if why is None:
                    info = {
                        "report": path.name,
                        "stale_ignored": len(stale),
                        "window_end_ts": doc.get("window_end_ts"),
                        "window_start_ts": doc.get("window_start_ts"),
                    }
                    return doc, info
                stale.append(why)
                problem = ""
                log.info(
                    "run %s iteration %s: stale report ignored: %s", hs.run_id, hs.iteration, why
                )
            elif doc is not None:
                problem = f"invalid report: {path.name} is not a JSON object"
        now = clock()
        if now >= hs.deadline_ts:
            break
        if abandon is not None and now >= next_check:
            next_check = now + ABANDON_CHECK_S
            why = abandon()
            if why is not None:
                raise MetricsError(f"{why}: stopped waiting for {path.name} from the bot")
        sleep(min(poll_s, max(0.0, hs.deadline_ts - now)))
    waited = (
        f"within the {fmt_num(spec.window_s)} s window + {fmt_num(spec.report_timeout_s)} s "
        "report timeout"
    )
    if problem:
        raise MetricsError(f"{path.name}: {problem} (still invalid {waited})")
    tail = f"; {len(stale)} stale report(s) ignored, last: {stale[-1]}" if stale else ""
    what = "no fresh report" if fixed else "no report"
    raise MetricsError(f"{what} {path.name} from the bot {waited}{tail}")
