"""Run-level release gate: the final configuration, judged on its window (docs/gates.md).

The **window** is the trailing run of iterations whose ``tuning.overrides_before`` equal the
final overrides: the iterations measured under exactly the configuration that would ship. A run
whose last iteration still changed the overrides never measured its final configuration.

Per gated KPI the window gives n, the mean, the sample standard deviation (ddof=1) and the
one-sided confidence bound of the mean from Student's t (``scipy.stats.t``): ``mean - t·sd/√n``
for a ``>=`` threshold (a lower bound), ``mean + t·sd/√n`` for ``<=`` (an upper bound), with
``t = t.ppf(confidence, n - 1)``. Assumption: iterations are treated as independent draws from
one distribution (same configuration, fresh market each iteration); positive serial correlation
would make the bound optimistic.

Verdict: PASSED when every bound is on the good side of its threshold, the window has at least
``min_window`` iterations and none of them is a hard KPI FAIL; FAILED when any window mean is on
the bad side or any window iteration is a hard FAIL (a critical veto); INCONCLUSIVE otherwise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from soakq.errors import ExitCode, InputError
from soakq.metrics.base import KPI_KEYS
from soakq.params import normalize_overrides
from soakq.rules.kpi_gate import GateReason, ReasonLevel, Verdict
from soakq.rules.ranges import valid_range
from soakq.rules.thresholds import ReleaseRules, Threshold, fmt_num, release_rules

ASSUMPTION = "iterations treated as independent draws"
DIGITS = 6  # statistics are written rounded, so the bytes do not depend on the last ulp


class GateVerdict(StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    INCONCLUSIVE = "INCONCLUSIVE"

    @property
    def exit_code(self) -> ExitCode:
        return {
            GateVerdict.PASSED: ExitCode.OK,
            GateVerdict.FAILED: ExitCode.FAILED,
            GateVerdict.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
        }[self]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


@dataclass(frozen=True)
class KpiStats:
    """One gated KPI over the window. ``sd`` and ``bound`` are None below 2 values."""

    threshold: Threshold
    n: int
    mean: float | None
    sd: float | None
    bound: float | None
    confidence: float

    @property
    def metric(self) -> str:
        return self.threshold.metric

    @property
    def bound_kind(self) -> str:
        return "lower" if self.threshold.op == ">=" else "upper"

    @property
    def mean_good(self) -> bool:
        """The mean is on the good side of the threshold (False without values)."""
        return self.mean is not None and self.threshold.passes(self.mean)

    @property
    def bound_good(self) -> bool:
        """The confidence bound is on the good side of the threshold (False without one)."""
        return self.bound is not None and self.threshold.passes(self.bound)

    @property
    def mark(self) -> str:
        if self.bound_good:
            return "pass"
        return "open" if self.mean_good or self.n == 0 else "FAIL"

    def line(self) -> str:
        t = self.threshold
        where = f"threshold {t.op} {fmt_num(t.bound)}"
        if self.mean is None:
            return f"{self.mark:<4} {self.metric:<18} n=0  (no value in the window)  {where}"
        sd = "n/a" if self.sd is None else fmt_num(self.sd)
        bound = "n/a" if self.bound is None else fmt_num(self.bound)
        pct = fmt_num(self.confidence * 100)
        return (
            f"{self.mark:<4} {self.metric:<18} n={self.n}  mean {fmt_num(self.mean)} ± {sd}  "
            f"{self.bound_kind} {pct}% bound {bound}  {where}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "bound": _round(self.bound),
            "bound_kind": self.bound_kind,
            "bound_passes": self.bound_good,
            "mean": _round(self.mean),
            "mean_passes": self.mean_good,
            "metric": self.metric,
            "n": self.n,
            "op": self.threshold.op,
            "sd": _round(self.sd),
            "threshold": self.threshold.bound,
        }


def kpi_stats(threshold: Threshold, values: Sequence[float], confidence: float) -> KpiStats:
    """n, mean, sample sd and the one-sided ``confidence`` bound of the mean (Student t)."""
    n = len(values)
    if n == 0:
        return KpiStats(threshold, 0, None, None, None, confidence)
    # statistics computes exactly (constant data has sd 0.0, not 1e-16); scipy gives t.
    mean = statistics.fmean(values)
    if n == 1:
        return KpiStats(threshold, 1, mean, None, None, confidence)
    from scipy import stats

    sd = statistics.stdev(values)  # sample standard deviation, ddof=1
    half = float(stats.t.ppf(confidence, n - 1)) * sd / math.sqrt(n)
    bound = mean - half if threshold.op == ">=" else mean + half
    return KpiStats(threshold, n, mean, sd, bound, confidence)


@dataclass(frozen=True)
class Veto:
    """A window iteration that is a hard KPI FAIL, with its failing reasons."""

    iteration: int
    reasons: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class RunGate:
    """The run-level release gate's result (written as RELEASE_GATE.json)."""

    verdict: GateVerdict
    reasons: tuple[str, ...]
    stats: tuple[KpiStats, ...]
    window: tuple[int, ...]
    overrides: dict[str, Any]
    changed_at_end: tuple[str, ...]  # keys the last iteration still changed (never measured)
    vetoes: tuple[Veto, ...]
    rules: ReleaseRules
    iterations: int
    mock: bool
    mock_note: str
    run_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.verdict == GateVerdict.PASSED

    @property
    def exit_code(self) -> ExitCode:
        return self.verdict.exit_code

    def lines(self) -> list[str]:
        if self.window:
            span = f"iterations {self.window[0]}-{self.window[-1]}"
            head = f"window: {span} of {self.iterations} (n={len(self.window)}), the final config"
        else:
            head = f"window: empty (the final configuration was never measured; {self.iterations}"
            head += " iterations)"
        out = [head, *(s.line() for s in self.stats)]
        out.append(f"RELEASE GATE {self.verdict}")
        out.extend(f"  - {r}" for r in self.reasons)
        out.append(f"NOTE: one-sided bounds assume {ASSUMPTION}")
        if self.mock:
            out.append(self.mock_note)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "assumption": ASSUMPTION,
            "confidence": self.rules.confidence,
            "exit_code": int(self.exit_code),
            "form": "run",
            "iterations": self.iterations,
            "kpis": [s.as_json() for s in self.stats],
            "mock": self.mock,
            "mock_note": self.mock_note,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "run_id": self.run_id,
            "verdict": str(self.verdict),
            "vetoes": [v.as_json() for v in self.vetoes],
            "window": {
                "changed_at_end": list(self.changed_at_end),
                "iterations": list(self.window),
                "min_window": self.rules.min_window,
                "n": len(self.window),
                "overrides": self.overrides,
            },
        }


def _fail(where: str, what: str) -> InputError:
    return InputError(f"{where}: {what}; expected the ITER_SUMMARY documents of one run")


def _checked(docs: Sequence[Any], where: str) -> list[Mapping[str, Any]]:
    """The documents, validated: iterations 1..N in order, each with what the gate reads."""
    if not docs:
        raise InputError(f"{where}: no iterations to judge (no ITER_SUMMARY_<i>.json)")
    out = []
    for i, doc in enumerate(docs, start=1):
        it = f"{where} iteration {i}"
        if not isinstance(doc, Mapping) or doc.get("iteration") != i:
            got = doc.get("iteration") if isinstance(doc, Mapping) else doc
            raise _fail(it, f"iteration number {got!r} where {i} was expected")
        summary, tuning = doc.get("summary"), doc.get("tuning")
        if not isinstance(summary, Mapping) or not isinstance(tuning, Mapping):
            raise _fail(it, "needs 'summary' and 'tuning' objects")
        for key in ("overrides_before", "overrides_after"):
            if not isinstance(tuning.get(key), Mapping):
                raise _fail(it, f"tuning.{key} is not an object")
        verdict = summary.get("kpi_verdict")
        if verdict not in tuple(Verdict):
            raise _fail(it, f"summary.kpi_verdict {verdict!r} is not OK, WARN or FAIL")
        reasons = summary.get("kpi_reasons")
        if not isinstance(reasons, list):
            raise _fail(it, "summary.kpi_reasons is not a list")
        try:
            for r in reasons:
                GateReason.model_validate(r)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise _fail(it, f"summary.kpi_reasons holds an invalid reason ({msg})") from None
        out.append(doc)
    return out


def final_window(
    docs: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], dict[str, Any], tuple[str, ...]]:
    """(window documents, final overrides, keys the last iteration changed).

    The window is empty when the last iteration changed the overrides: its result was never
    measured.
    """
    last = docs[-1]["tuning"]
    final = normalize_overrides(last["overrides_after"])
    before = normalize_overrides(last["overrides_before"])
    changed = tuple(sorted(k for k in set(final) | set(before) if final.get(k) != before.get(k)))
    if changed:
        return [], final, changed
    window: list[Mapping[str, Any]] = []
    for doc in reversed(docs):
        if normalize_overrides(doc["tuning"]["overrides_before"]) != final:
            break
        window.append(doc)
    return window[::-1], final, ()


# The order in which a veto names failing reasons: the cause before its consequences (a source
# error leaves the aggregated KPIs missing, and those are reasons too).
_FIRST = (
    ReasonLevel.SOURCE_ERROR,
    ReasonLevel.HARD,
    ReasonLevel.INSUFFICIENT_FILLS,
    ReasonLevel.UNUSABLE,
)
VETO_REASONS = 3  # reasons a veto names; the rest are counted


def veto_of(doc: Mapping[str, Any], thresholds: Sequence[Threshold]) -> Veto | None:
    """A veto when the iteration is a hard KPI FAIL, or a gated or required KPI in it is
    unusable (a document whose verdict disagrees with its values is not trusted)."""
    summary = doc["summary"]
    if summary["kpi_verdict"] == Verdict.FAIL:
        parsed = [GateReason.model_validate(r) for r in summary["kpi_reasons"]]
        failing = sorted((r for r in parsed if r.fails), key=lambda r: _FIRST.index(r.level))
        texts = [r.text for r in failing] or ["KPI gate FAIL"]
    else:
        texts = []
        gated = [t.metric for t in thresholds]
        # A gated KPI must be usable; any other KPI the document carries must be too.
        present = [k for k in KPI_KEYS if k not in gated and summary.get(k) is not None]
        for metric in (*gated, *present):
            why = valid_range(metric).explain(summary.get(metric))
            if why is not None:
                texts.append(f"{metric} {why}")
    if not texts:
        return None
    shown = texts[:VETO_REASONS]
    if len(texts) > VETO_REASONS:
        shown.append(f"(+{len(texts) - VETO_REASONS} more)")
    return Veto(int(doc["iteration"]), tuple(shown))


def judge_run(
    docs: Sequence[Mapping[str, Any]],
    *,
    rules: ReleaseRules | None = None,
    mock: bool = False,
    mock_note: str = "",
    run_id: str | None = None,
    where: str = "run",
) -> RunGate:
    """The run-level release gate on ``docs`` (iterations 1..N). InputError when unusable."""
    rules = rules or release_rules()
    docs = _checked(docs, where)
    window, final, changed = final_window(docs)
    vetoes = tuple(v for v in (veto_of(d, rules.thresholds) for d in window) if v is not None)
    stats = tuple(
        kpi_stats(
            t,
            [
                float(d["summary"][t.metric])
                for d in window
                if valid_range(t.metric).problem(d["summary"].get(t.metric)) is None
            ],
            rules.confidence,
        )
        for t in rules.thresholds
    )
    verdict, reasons = _verdict(docs, window, changed, vetoes, stats, rules)
    return RunGate(
        verdict=verdict,
        reasons=tuple(reasons),
        stats=stats,
        window=tuple(int(d["iteration"]) for d in window),
        overrides=final,
        changed_at_end=changed,
        vetoes=vetoes,
        rules=rules,
        iterations=len(docs),
        mock=mock,
        mock_note=mock_note if mock else "",
        run_id=run_id,
    )


def _verdict(
    docs: Sequence[Mapping[str, Any]],
    window: Sequence[Mapping[str, Any]],
    changed: tuple[str, ...],
    vetoes: tuple[Veto, ...],
    stats: tuple[KpiStats, ...],
    rules: ReleaseRules,
) -> tuple[GateVerdict, list[str]]:
    if changed:
        return GateVerdict.INCONCLUSIVE, [
            f"the last iteration ({len(docs)}) still changed {', '.join(changed)}: "
            "the final configuration was never measured"
        ]
    failed = [
        f"iteration {v.iteration} is a hard KPI FAIL (critical veto): {'; '.join(v.reasons)}"
        for v in vetoes
    ]
    failed += [
        f"{s.metric} window mean {fmt_num(s.mean)} is on the bad side of "
        f"{s.threshold.op} {fmt_num(s.threshold.bound)}"
        for s in stats
        if s.mean is not None and not s.mean_good
    ]
    if failed:
        return GateVerdict.FAILED, failed
    open_: list[str] = []
    if len(window) < rules.min_window:
        open_.append(
            f"only {len(window)} iteration(s) measured the final configuration; "
            f"at least {rules.min_window} are needed"
        )
    pct = fmt_num(rules.confidence * 100)
    for s in stats:
        if s.bound_good:
            continue
        if s.bound is None:
            open_.append(f"{s.metric}: too few values for a confidence bound")
        else:
            open_.append(
                f"{s.metric} mean {fmt_num(s.mean or 0.0)} passes but its {pct}% {s.bound_kind} "
                f"bound {fmt_num(s.bound)} crosses {s.threshold.op} {fmt_num(s.threshold.bound)}"
            )
    if open_:
        return GateVerdict.INCONCLUSIVE, open_
    return GateVerdict.PASSED, [
        f"every {pct}% bound is on the good side of its threshold over the {len(window)} "
        f"iterations of the final configuration (>= {rules.min_window}); no hard KPI FAIL"
    ]
