"""One iteration, pure: symbol metrics + state in, ITER_SUMMARY document + new state out.

aggregate -> KPI gate -> tuner -> guards -> apply -> freeze -> summary. The same function runs in
the embedded runner and in the Celery chord body, so both give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from soakq.aggregate import aggregate
from soakq.config import RunSpec
from soakq.jsonio import sha256_of
from soakq.metrics.base import KPI_KEYS, MeasureRequest, get_source
from soakq.params import normalize_overrides
from soakq.rules.apply import ApplyResult, apply_deltas
from soakq.rules.freeze import FreezeState, unfreeze_on_fail, update_freeze
from soakq.rules.guards import GuardOutcome, empty_ledger, guard, record_changes
from soakq.rules.kpi_gate import (
    GateReason,
    ReasonLevel,
    Verdict,
    hard_failures,
    kpi_gate,
    source_error,
    verdict_of,
)
from soakq.rules.ranges import range_problems
from soakq.rules.thresholds import kpi_gate_levels
from soakq.rules.tuner import TUNED_KPIS, Proposal, load_rules, propose
from soakq.states import StopReason


def initial_state(spec: RunSpec) -> dict[str, Any]:
    """The run state before iteration 1."""
    return {
        "fail_streak": 0,
        "freeze": FreezeState().as_json(),
        "iteration": 0,
        "ledger": empty_ledger(),
        "overrides": normalize_overrides(spec.overrides),
        "recent": [],
    }


def history_entry(iteration: int, verdict: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """What the harvest rules remember of one iteration: its verdict and tuned KPIs."""
    return {
        "iteration": iteration,
        "kpi_verdict": verdict,
        **{k: summary.get(k) for k in TUNED_KPIS},
    }


def measure_request(
    spec: RunSpec, iteration: int, symbol: str, overrides: Mapping[str, Any]
) -> MeasureRequest:
    return MeasureRequest(
        seed=spec.seed or 0,
        mode=spec.mode or "calm",
        symbol=symbol,
        iteration=iteration,
        overrides=dict(overrides),
        sigma_scale=spec.sigma_scale,
        spike_prob=spec.spike_prob,
        gap_bps=spec.gap_bps,
        report_dir=spec.report_dir,
        extra={"symbol_count": len(spec.symbols)},
    )


def measure_symbol(
    spec: RunSpec, iteration: int, symbol: str, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The chord-header step: one symbol's metrics, or an ``error`` entry (never zeros)."""
    from soakq.errors import SoakqError

    try:
        metrics = get_source(spec.source).measure(
            measure_request(spec, iteration, symbol, overrides)
        )
    except SoakqError as exc:
        return {"error": str(exc), "symbol": symbol}
    # Every source's values are checked against the valid ranges (docs/gates.md): an unusable
    # value is an error for this symbol, never a number the gate or the tuner would act on.
    bad = range_problems(metrics, skip_missing=True)
    if bad:
        text = "; ".join(f"{k} {why}" for k, why in sorted(bad.items()))
        return {"error": f"{spec.source} source: {text}", "symbol": symbol}
    return {"metrics": metrics, "symbol": symbol}


def measure_iteration(
    spec: RunSpec,
    iteration: int,
    overrides: Mapping[str, Any],
    *,
    abandon: Callable[[], str | None] | None = None,
) -> list[dict[str, Any]]:
    """Every symbol of one iteration in one step: a live run's handshake, wait and report
    (one report answers for every symbol; ``abandon``: see ``measure_live``), else each symbol
    in turn."""
    if spec.live:
        from soakq.metrics.live.source import measure_live

        return measure_live(spec, iteration, overrides, abandon=abandon)
    return [measure_symbol(spec, iteration, s, overrides) for s in spec.symbols]


def flatten_results(results: list[Any]) -> list[Mapping[str, Any]]:
    """Header results as one list per symbol: a live header task returns a list of them."""
    out: list[Mapping[str, Any]] = []
    for r in results:
        out.extend(r if isinstance(r, list) else [r])
    return out


def absent_reasons(reasons: list[GateReason], absent: Mapping[str, list[str]]) -> list[GateReason]:
    """Name the KPIs the bot's report does not carry in their fail-closed reasons."""
    missing: dict[str, list[str]] = {}
    for sym, kpis in sorted(absent.items()):
        for kpi in kpis:
            missing.setdefault(kpi, []).append(sym)
    out = []
    for r in reasons:
        if r.level == ReasonLevel.UNUSABLE and r.metric in missing and r.value is None:
            syms = ", ".join(missing[r.metric])
            r = r.model_copy(
                update={"text": f"the bot's report has no {r.metric} ({syms}) (fail closed)"}
            )
        out.append(r)
    return out


@dataclass(frozen=True)
class StepResult:
    doc: dict[str, Any]  # the ITER_SUMMARY document without its `runtime` object
    state: dict[str, Any]
    stop: StopReason | None
    stop_detail: str


@dataclass(frozen=True)
class Measured:
    """What the symbols of one iteration reported (chord-header results, one per symbol)."""

    by_symbol: dict[str, Mapping[str, Any]]
    metrics: dict[str, dict[str, Any]]  # per symbol that reported metrics, sorted
    errors: dict[str, str]  # per symbol whose source failed, sorted
    missing: list[str]  # symbols of the spec with no result at all

    @property
    def failed(self) -> bool:
        return bool(self.errors or self.missing)


def collect(spec: RunSpec, results: list[Mapping[str, Any]]) -> Measured:
    by_symbol = {r["symbol"]: r for r in flatten_results(list(results))}
    ordered = sorted(by_symbol.items())
    return Measured(
        by_symbol=by_symbol,
        metrics={s: dict(r["metrics"]) for s, r in ordered if "metrics" in r},
        errors={s: r["error"] for s, r in ordered if "error" in r},
        missing=sorted(set(spec.symbols) - set(by_symbol)),
    )


def _source_reasons(spec: RunSpec, m: Measured) -> list[GateReason]:
    reasons = [source_error(s, "no result") for s in m.missing]
    if spec.live and len(m.errors) > 1 and len(set(m.errors.values())) == 1:
        # One report answers for every symbol: its one problem is said once.
        reasons.append(source_error("all symbols", next(iter(m.errors.values()))))
    else:
        reasons += [source_error(s, err) for s, err in m.errors.items()]
    return reasons


@dataclass(frozen=True)
class Judgement:
    """The iteration's verdict, its error and FAIL streaks, and whether the run stops here."""

    verdict: Verdict
    reasons: list[GateReason]
    live_error: bool  # a live bot's report was late, missing or invalid: no KPI verdict
    error_text: str
    error_streak: int
    fail_streak: int
    stop: StopReason | None
    stop_detail: str


def judge(
    spec: RunSpec, state: Mapping[str, Any], m: Measured, summary: Mapping[str, Any]
) -> Judgement:
    """KPI gate and source errors -> verdict; the streaks and stop rules (docs/gates.md)."""
    gate = kpi_gate(
        summary,
        kpi_gate_levels(spec.profile_kpi_gate),
        required=KPI_KEYS,
        min_fills=spec.min_fills,
    )
    source_reasons = _source_reasons(spec, m)
    absent = {s: list(r["absent"]) for s, r in sorted(m.by_symbol.items()) if r.get("absent")}
    reasons = [*absent_reasons(list(gate.reasons), absent), *source_reasons]
    verdict = verdict_of(reasons)
    # A live bot's late, missing or invalid report makes the iteration an error: no tuning,
    # the overrides carried over unchanged; only a streak of them stops the run. For the
    # other sources a metrics error stops the run at once.
    error_text = "; ".join(r.text for r in source_reasons)
    live_error = spec.live and m.failed
    error_streak = int(state.get("error_streak", 0)) + 1 if live_error else 0
    stop: StopReason | None = None
    stop_detail = ""
    if m.failed:
        if not spec.live:
            stop, stop_detail = StopReason.METRICS_ERROR, error_text
        elif error_streak >= spec.consecutive_error_limit:
            stop, stop_detail = (
                StopReason.METRICS_ERROR,
                f"{error_streak} consecutive iteration errors "
                f"(limit {spec.consecutive_error_limit}): {error_text}",
            )
    if live_error:  # an error is not a KPI verdict: the hard gate's FAIL streak is untouched
        fail_streak = int(state.get("fail_streak", 0))
    else:
        fail_streak = int(state.get("fail_streak", 0)) + 1 if verdict == Verdict.FAIL else 0
    if stop is None and spec.kpi_gate == "hard" and fail_streak >= spec.failure_limit:
        stop, stop_detail = StopReason.KPI_GATE, "; ".join(gate.texts)
        if spec.failure_limit > 1:
            stop_detail = f"{fail_streak} consecutive KPI FAILs (limit {spec.failure_limit}): " + (
                stop_detail
            )
    return Judgement(
        verdict, reasons, live_error, error_text, error_streak, fail_streak, stop, stop_detail
    )


@dataclass(frozen=True)
class Tuning:
    """What the tuner proposed, the guards let through, and the overrides became."""

    before: dict[str, Any]
    proposal: Proposal
    guarded: GuardOutcome
    applied: ApplyResult
    ledger: dict[str, Any]
    freeze: FreezeState
    history: list[dict[str, Any]]


def _proposal(
    spec: RunSpec,
    j: Judgement,
    freeze: FreezeState,
    summary: Mapping[str, Any],
    before: Mapping[str, Any],
    history: list[dict[str, Any]],
) -> Proposal:
    if j.live_error:
        return Proposal(note=f"iteration error: no tuning ({j.error_text})")
    if j.stop is not None:
        return Proposal(note=f"run stopped ({j.stop}): no change")
    if not spec.auto_tune:
        return Proposal(note="auto-tune off: no change")
    if freeze.active:
        return Proposal(note=f"frozen since iteration {freeze.frozen_at}: no change")
    return propose(summary, before, history)


def tune(
    spec: RunSpec,
    state: Mapping[str, Any],
    iteration: int,
    j: Judgement,
    summary: Mapping[str, Any],
) -> Tuning:
    """Tuner -> guards -> apply -> freeze (docs/tuner.md).

    A hard FAIL while frozen unfreezes first, so the tuner can react in this iteration; a
    stopping iteration changes nothing; a frozen run proposes nothing.
    """
    before = normalize_overrides(state["overrides"])
    freeze = FreezeState.from_json(state.get("freeze"))
    if not j.live_error:
        freeze = unfreeze_on_fail(
            freeze,
            iteration=iteration,
            verdict=j.verdict,
            fail_reasons=tuple(r.text for r in hard_failures(j.reasons)),
        )
    history = [
        *state.get("recent", []),
        history_entry(iteration, "ERROR" if j.live_error else str(j.verdict), summary),
    ]
    proposal = _proposal(spec, j, freeze, summary, before, history)
    ledger = state.get("ledger", empty_ledger())
    guarded = guard(
        proposal.deltas,
        ledger,
        iteration,
        hard_fail=j.verdict == Verdict.FAIL,
        minutes_per_iteration=spec.minutes_per_iteration,
        enabled=spec.guards,
    )
    applied = apply_deltas(before, guarded.accepted)
    ledger = record_changes(
        ledger, iteration, applied.applied, minutes_per_iteration=spec.minutes_per_iteration
    )
    # An error iteration measured nothing: it keeps an active freeze, but it breaks a stable
    # streak (iterations that prove stability must be consecutive).
    if j.live_error:
        freeze = freeze if freeze.active else FreezeState(reason=freeze.reason)
    else:
        freeze = update_freeze(
            freeze,
            iteration=iteration,
            verdict=j.verdict,
            applied_any=bool(applied.applied),
            overrides_after=applied.overrides,
        )
    return Tuning(before, proposal, guarded, applied, ledger, freeze, history)


def _summary_doc(
    spec: RunSpec, summary: dict[str, Any], m: Measured, j: Judgement, t: Tuning
) -> dict[str, Any]:
    """The ITER_SUMMARY's ``summary``: aggregated KPIs, verdict, guards, freeze, meta."""
    mock_meta: dict[str, Any] = {"mock": spec.mock, "source": spec.source}
    if spec.mock:
        mock_meta.update(
            mock_mode=spec.mode,
            mock_seed=spec.seed,
            spike_count=int(summary.pop("spike_count", 0) or 0),
            gap_events=int(summary.pop("gap_events", 0) or 0),
        )
    summary.update(mock_meta)
    summary.update(
        symbols=m.metrics,
        kpi_verdict=str(j.verdict),
        kpi_reasons=[r.as_json() for r in j.reasons],
        kpi_gate_mode=spec.kpi_gate,
        state_hash=sha256_of(t.applied.overrides),
        guards_enabled=spec.guards,
        oscillation_detected=t.guarded.flag("oscillation"),
        velocity_violation=t.guarded.flag("velocity"),
        cooldown_active=t.guarded.flag("cooldown"),
        freeze_active=t.freeze.active,
        freeze_reason=t.freeze.reason,
        signature_hash=t.freeze.signature_hash,
        profile=spec.profile,
    )
    if m.failed:
        summary["symbol_errors"] = {**m.errors, **{s: "no result" for s in m.missing}}
    if spec.live:
        summary["iteration_status"] = "error" if j.live_error else "measured"
        summary["iteration_error"] = j.error_text if j.live_error else None
        summary["error_streak"] = j.error_streak
        live = next((r.get("live") for r in m.by_symbol.values() if r.get("live")), None)
        summary["live_report"] = live
    return summary


def _tuning_doc(t: Tuning) -> dict[str, Any]:
    """The ITER_SUMMARY's ``tuning``: proposal, guard decisions and what was applied."""
    proposal, guarded, applied = t.proposal, t.guarded, t.applied
    return {
        "applied_deltas": applied.applied,
        "changes": applied.changes,
        "guard_decisions": [d.as_json() for d in guarded.decisions],
        "exhausted": [e.as_json() for e in proposal.exhausted],
        "fired_rules": list(proposal.fired),
        "kind": proposal.kind,
        "note": proposal.note,
        "overrides_after": applied.overrides,
        "overrides_before": t.before,
        "proposed_deltas": dict(proposal.deltas),
        "rationale": dict(proposal.rationale),
        "suppressed": guarded.suppressed,
        "trimmed": guarded.trimmed,
    }


def finalize_iteration(
    spec: RunSpec, state: Mapping[str, Any], iteration: int, results: list[Mapping[str, Any]]
) -> StepResult:
    """The chord-body step for ``iteration`` given the state after ``iteration - 1``.

    aggregate -> judge (KPI gate, source errors, stop rules) -> tune (tuner, guards, apply,
    freeze) -> the ITER_SUMMARY document and the new state.
    """
    if state["iteration"] != iteration - 1:
        raise ValueError(f"state is at iteration {state['iteration']}, cannot finalize {iteration}")
    m = collect(spec, results)
    summary = aggregate({s: m.metrics.get(s, {}) for s in spec.symbols})
    j = judge(spec, state, m, summary)
    t = tune(spec, state, iteration, j, summary)
    doc = {
        "iteration": iteration,
        "run_id": spec.run_id,
        "summary": _summary_doc(spec, summary, m, j, t),
        "tuning": _tuning_doc(t),
    }
    new_state = {
        "error_streak": j.error_streak,
        "fail_streak": j.fail_streak,
        "freeze": t.freeze.as_json(),
        "iteration": iteration,
        "ledger": t.ledger,
        "overrides": t.applied.overrides,
        "recent": t.history[-load_rules().harvest_window :],
    }
    return StepResult(doc, new_state, j.stop, j.stop_detail)
