"""Sweeps: is arm A really better than arm B? Paired seeds, hold-out seeds, exact tests.

A sweep runs every (profile, mode, seed) cell in two arms that differ only in the compared factor
(``auto-tune``: tuner on / off; ``guards``: guards on / off; ``profile:NAME``: the cell's profile
/ NAME). Each run is judged by the run-level release gate (docs/gates.md). With hold-out seeds,
each arm run's final overrides are re-measured untuned on seeds the run never saw, so a
configuration tuned to one lucky draw shows. Per (profile, mode) the arms are compared on the
paired verdicts (exact McNemar: a two-sided binomial test on the discordant pairs) and on the
paired final ``net_bps`` (Wilcoxon signed-rank), both from ``scipy.stats``; every pass rate
carries a Wilson 95 % interval. Formulas and the SWEEP.json schema: docs/sweeps.md.

This module is pure: it plans the runs, turns a finished run into ``RunFacts`` and the facts into
the SWEEP document. Executing the runs (local processes, or the workers) is the caller's.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

from soakq.config import SEED_LIMIT, RunSpec, build_spec, check_run_id
from soakq.errors import ConfigError
from soakq.jsonio import sha256_of
from soakq.params import KEYS, fmt
from soakq.profiles import profile_names
from soakq.settings import Settings

VERDICTS = ("PASSED", "FAILED", "INCONCLUSIVE")
MODES = ("calm", "volatile", "spike")
DIGITS = 6  # statistics are rounded to this many decimals: stable bytes, more than enough
MAX_RUNS = 20_000


@dataclass(frozen=True)
class Arm:
    """One side of the comparison: its name (None: the cell's profile name), the profile it
    runs (None: the cell's) and the tuner and guard switches."""

    name: str | None
    auto_tune: bool = True
    guards: bool = True
    profile: str | None = None

    def profile_for(self, cell_profile: str) -> str:
        return self.profile or cell_profile

    def label(self, cell_profile: str) -> str:
        return self.name or cell_profile


def arms_for(compare: str) -> tuple[Arm, Arm]:
    """Arm A (the candidate) and arm B (the baseline) of ``--compare``."""
    if compare == "auto-tune":
        return Arm("auto-tune"), Arm("no-auto-tune", auto_tune=False)
    if compare == "guards":
        return Arm("guards"), Arm("no-guards", guards=False)
    if compare.startswith("profile:"):
        name = compare.split(":", 1)[1]
        if name not in profile_names():
            raise ConfigError(
                f"--compare {compare}: unknown profile {name!r}; "
                f"known: {', '.join(profile_names())}"
            )
        return Arm(None), Arm(name, profile=name)
    raise ConfigError(f"--compare {compare!r}: use auto-tune, guards or profile:NAME")


def parse_seeds(text: str, flag: str) -> tuple[int, ...]:
    """``1-20``, ``1,4,7-9`` -> sorted distinct seeds; ConfigError naming ``flag``."""
    seeds: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ConfigError(
                f"{flag} {text!r}: give seeds as 1-20 or 1,4,7-9 (whole numbers >= 0)"
            )
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi >= SEED_LIMIT:
            raise ConfigError(f"{flag} {text!r}: seeds must be 0..{SEED_LIMIT - 1}")
        if hi < lo:
            raise ConfigError(f"{flag} {text!r}: range {lo}-{hi} runs backwards")
        if hi - lo > MAX_RUNS:
            raise ConfigError(f"{flag} {text!r}: at most {MAX_RUNS} seeds")
        seeds.update(range(lo, hi + 1))
    return tuple(sorted(seeds))


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs. Same config, same SWEEP.json (outside ``runtime``)."""

    profiles: tuple[str, ...]
    modes: tuple[str, ...]
    seeds: tuple[int, ...]
    iterations: int = 24
    compare: str = "auto-tune"
    holdout_seeds: tuple[int, ...] = ()
    holdout_iterations: int = 8
    sweep_id: str | None = None

    def __post_init__(self) -> None:
        known = profile_names()
        for p in self.profiles:
            if p not in known:
                raise ConfigError(f"--profiles: unknown profile {p!r}; known: {', '.join(known)}")
        if not self.profiles or len(set(self.profiles)) != len(self.profiles):
            raise ConfigError("--profiles: give one or more distinct profile names")
        for m in self.modes:
            if m not in MODES:
                raise ConfigError(f"--modes: unknown mode {m!r}; use {', '.join(MODES)}")
        if not self.modes or len(set(self.modes)) != len(self.modes):
            raise ConfigError("--modes: give one or more distinct modes")
        if not self.seeds:
            raise ConfigError("--seeds: give at least one seed")
        if set(self.seeds) & set(self.holdout_seeds):
            raise ConfigError("--holdout-seeds: must not repeat a seed of --seeds")
        if not 1 <= self.holdout_iterations <= 10_000:
            raise ConfigError("--holdout-iterations: must be 1..10000")
        a, b = arms_for(self.compare)
        if b.profile is not None and b.profile in self.profiles:
            raise ConfigError(
                f"--compare {self.compare}: {b.profile} is also in --profiles; "
                "compare other profiles with it"
            )
        runs = len(self.profiles) * len(self.modes) * len(self.seeds) * 2
        if runs * (1 + len(self.holdout_seeds)) > MAX_RUNS:
            raise ConfigError(f"the sweep plans more than {MAX_RUNS} runs; narrow it")
        if self.sweep_id is not None:
            check_run_id(self.sweep_id, what="--sweep-id")
            if len(self.sweep_id) > 64:
                raise ConfigError(f"--sweep-id {self.sweep_id!r}: at most 64 characters")

    @property
    def arms(self) -> tuple[Arm, Arm]:
        return arms_for(self.compare)

    def as_json(self) -> dict[str, Any]:
        a, b = self.arms
        return {
            "arms": [a.name or "<profile>", b.name],
            "compare": self.compare,
            "holdout_iterations": self.holdout_iterations,
            "holdout_seeds": list(self.holdout_seeds),
            "iterations": self.iterations,
            "modes": list(self.modes),
            "profiles": list(self.profiles),
            "seeds": list(self.seeds),
        }

    @property
    def id(self) -> str:
        """``--sweep-id``, else derived from the config (same config, same id)."""
        return self.sweep_id or f"sweep-{sha256_of(self.as_json())[:10]}"


@dataclass(frozen=True)
class PlannedRun:
    """One run of the sweep: an arm run, or the hold-out re-measurement of one."""

    spec: RunSpec
    profile: str
    mode: str
    arm: str
    seed: int
    holdout_of: str | None = None  # a hold-out run: the hash of the configuration it measures

    @property
    def run_id(self) -> str:
        return self.spec.run_id


@dataclass(frozen=True)
class RunFacts:
    """What one finished run said: its run-level verdict, its final KPIs and overrides, and how
    much the tuner moved (applied changes; reversals: a key's applied change opposite to its
    previous one)."""

    verdict: str
    final_net_bps: float | None
    applied: int
    reversals: int
    final_overrides: dict[str, Any] = field(default_factory=dict)
    first_kpi_verdict: str | None = None  # the KPI gate's verdict on iteration 1

    def as_json(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "final_net_bps": self.final_net_bps,
            "final_overrides": self.final_overrides,
            "first_kpi_verdict": self.first_kpi_verdict,
            "reversals": self.reversals,
            "verdict": self.verdict,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RunFacts:
        return cls(
            verdict=str(doc["verdict"]),
            final_net_bps=doc["final_net_bps"],
            applied=int(doc["applied"]),
            reversals=int(doc["reversals"]),
            final_overrides=dict(doc["final_overrides"]),
            first_kpi_verdict=doc.get("first_kpi_verdict"),
        )


def count_reversals(docs: Sequence[Mapping[str, Any]]) -> int:
    """Applied changes whose direction is opposite to the same key's previous applied change."""
    last: dict[str, int] = {}
    reversals = 0
    for doc in docs:
        for key, delta in sorted(doc["tuning"]["applied_deltas"].items()):
            sign = 1 if delta > 0 else -1
            if last.get(key, sign) != sign:
                reversals += 1
            last[key] = sign
    return reversals


def facts_of(
    docs: Sequence[Mapping[str, Any]],
    gate: Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
) -> RunFacts:
    """A finished run's facts from its iteration documents, RELEASE_GATE and final overrides.
    A run without a gate document (no iteration) is FAILED."""
    net = docs[-1]["summary"].get("net_bps") if docs else None
    return RunFacts(
        verdict=str(gate["verdict"]) if gate else "FAILED",
        final_net_bps=float(net) if net is not None else None,
        applied=sum(len(d["tuning"]["applied_deltas"]) for d in docs),
        reversals=count_reversals(docs),
        final_overrides=dict(overrides),
        first_kpi_verdict=str(docs[0]["summary"]["kpi_verdict"]) if docs else None,
    )


class Plan:
    """The runs of a sweep, named ``<sweep_id>.<profile>.<mode>.s<seed>.<arm>`` (hold-outs add
    ``.h<seed>``), and the specs they run with (soft KPI gate, no pacing, the book simulator)."""

    def __init__(self, config: SweepConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.sweep_id = config.id
        # Built now, so that a bad flag is refused before anything runs or is written.
        self._arm_runs = self._plan_arm_runs()
        first = self._arm_runs[0]
        self.holdouts(first, RunFacts("PASSED", None, 0, 0, dict(first.spec.overrides)))

    def _spec(
        self, run_id: str, profile: str, mode: str, seed: int, arm: Arm, **kw: Any
    ) -> RunSpec:
        return build_spec(
            self.settings,
            profile=profile,
            mode=mode,
            seed=seed,
            source="book",
            kpi_gate="soft",
            interval_s=0.0,
            guards=arm.guards,
            run_id=run_id,
            **kw,
        )

    def arm_runs(self) -> list[PlannedRun]:
        """Every arm run, in plan order (profile, mode, arm, seed)."""
        return list(self._arm_runs)

    def _plan_arm_runs(self) -> list[PlannedRun]:
        c = self.config
        out = []
        for profile in c.profiles:
            for mode in c.modes:
                for arm in c.arms:
                    for seed in c.seeds:
                        label = arm.label(profile)
                        run_id = f"{self.sweep_id}.{profile}.{mode}.s{seed}.{label}"
                        spec = self._spec(
                            run_id,
                            arm.profile_for(profile),
                            mode,
                            seed,
                            arm,
                            iterations=c.iterations,
                            auto_tune=arm.auto_tune,
                        )
                        out.append(PlannedRun(spec, profile, mode, label, seed))
        return out

    def holdouts(self, run: PlannedRun, facts: RunFacts) -> list[PlannedRun]:
        """The hold-out runs of an arm run: its final overrides, untuned, on each hold-out seed.
        They are named by the configuration (``<sweep>.<profile>.<mode>.<arm>.c<hash>.h<seed>``),
        so arm runs that end on the same overrides share them: a configuration on a seed is one
        deterministic run, measured once and counted once."""
        if run.holdout_of is not None:
            return []
        arm = next(a for a in self.config.arms if a.label(run.profile) == run.arm)
        final = {k: facts.final_overrides[k] for k in KEYS}
        sets = [f"{k}={fmt(k, final[k])}" for k in KEYS]
        config = sha256_of(final)[:10]
        out = []
        for seed in self.config.holdout_seeds:
            spec = self._spec(
                f"{self.sweep_id}.{run.profile}.{run.mode}.{run.arm}.c{config}.h{seed}",
                arm.profile_for(run.profile),
                run.mode,
                seed,
                arm,
                iterations=self.config.holdout_iterations,
                auto_tune=False,
                sets=sets,
            )
            out.append(PlannedRun(spec, run.profile, run.mode, run.arm, seed, config))
        return out

    @property
    def total_runs(self) -> int:
        """At most this many runs (fewer when arm runs end on the same overrides)."""
        return len(self.arm_runs()) * (1 + len(self.config.holdout_seeds))


class Submitter:
    """What executes a sweep's runs: ``submit`` a spec, ``next_done`` blocks until one of the
    submitted runs has ended and returns its id and facts. (Local processes, or the workers.)"""

    def submit(self, spec: RunSpec) -> None:  # pragma: no cover - protocol
        raise NotImplementedError

    def next_done(self) -> tuple[str, RunFacts]:  # pragma: no cover - protocol
        raise NotImplementedError


def execute(
    plan: Plan,
    submitter: Submitter,
    *,
    progress: Callable[[PlannedRun, RunFacts, int, int], None] | None = None,
) -> dict[str, RunFacts]:
    """Run every arm run, then each one's hold-outs as soon as it ends (a configuration already
    planned is not run again); the facts by run id. ``progress`` gets (run, facts, done, total),
    total shrinking as shared hold-outs are found."""
    planned = {r.run_id: r for r in plan.arm_runs()}
    total = plan.total_runs
    for run in planned.values():
        submitter.submit(run.spec)
    pending = len(planned)
    facts: dict[str, RunFacts] = {}
    while pending:
        run_id, f = submitter.next_done()
        pending -= 1
        facts[run_id] = f
        run = planned[run_id]
        if progress is not None:
            progress(run, f, len(facts), total)
        for h in plan.holdouts(run, f):
            if h.run_id in planned:
                total -= 1
                continue
            planned[h.run_id] = h
            submitter.submit(h.spec)
            pending += 1
    return facts


# -- statistics ----------------------------------------------------------------------------
def _r(x: float) -> float:
    return round(float(x), DIGITS)


def wilson(passed: int, runs: int) -> tuple[float, float]:
    """Wilson score 95 % interval of ``passed / runs`` (scipy ``binomtest(...).proportion_ci``,
    method "wilson"); (0, 1) without runs."""
    if runs == 0:
        return 0.0, 1.0
    ci = stats.binomtest(passed, runs).proportion_ci(confidence_level=0.95, method="wilson")
    return _r(ci.low), _r(ci.high)


def mcnemar_exact(a_passed: Sequence[bool], b_passed: Sequence[bool]) -> float:
    """Exact McNemar p-value on paired pass/fail: two-sided binomial test of the discordant
    pairs (A only vs B only) against 1/2 (McNemar 1947; the exact form as in Fagerland et al.
    2013). 1.0 when no pair is discordant."""
    a_only = sum(1 for a, b in zip(a_passed, b_passed, strict=True) if a and not b)
    b_only = sum(1 for a, b in zip(a_passed, b_passed, strict=True) if b and not a)
    if a_only + b_only == 0:
        return 1.0
    return _r(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)


def fisher_p(a_passed: int, a_runs: int, b_passed: int, b_runs: int) -> float | None:
    """Two-sided Fisher exact test (scipy ``fisher_exact``) of two independent pass counts: the
    hold-out runs of the two arms are not paired (they measure different configurations). None
    when an arm has no run."""
    if a_runs == 0 or b_runs == 0:
        return None
    table = [[a_passed, a_runs - a_passed], [b_passed, b_runs - b_passed]]
    return _r(stats.fisher_exact(table).pvalue)


def wilcoxon_p(a: Sequence[float | None], b: Sequence[float | None]) -> float | None:
    """Wilcoxon signed-rank p-value (two-sided, scipy) on the pairs where both values exist;
    zero differences are dropped (``zero_method="wilcox"``). 1.0 when every difference is zero,
    None without a pair."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    if not pairs:
        return None
    diffs = [x - y for x, y in pairs]
    if all(d == 0 for d in diffs):
        return 1.0
    return _r(stats.wilcoxon(diffs, zero_method="wilcox").pvalue)


# -- the SWEEP document --------------------------------------------------------------------
def _cell(
    profile: str, mode: str, arm: str, runs: list[PlannedRun], facts: Mapping[str, RunFacts]
) -> dict[str, Any]:
    mine = [facts[r.run_id] for r in runs]
    counts = Counter(f.verdict for f in mine)
    passed = counts.get("PASSED", 0)
    low, high = wilson(passed, len(mine))
    nets = [f.final_net_bps for f in mine if f.final_net_bps is not None]
    return {
        "applied_per_run": _r(sum(f.applied for f in mine) / len(mine)),
        "arm": arm,
        "final_net_bps_mean": _r(sum(nets) / len(nets)) if nets else None,
        "mode": mode,
        "pass_rate": _r(passed / len(mine)),
        "passed": passed,
        "profile": profile,
        "reversals_per_run": _r(sum(f.reversals for f in mine) / len(mine)),
        "run_ids": [r.run_id for r in runs],
        "runs": len(mine),
        "verdicts": {v: counts.get(v, 0) for v in VERDICTS},
        "wilson_high": high,
        "wilson_low": low,
    }


def sweep_document(
    plan: Plan, facts: Mapping[str, RunFacts], runtime: Mapping[str, Any]
) -> dict[str, Any]:
    """SWEEP.json: the config, one cell per (profile, mode, arm), one comparison per
    (profile, mode), and ``runtime`` (the only part that differs between executions)."""
    c = plan.config
    arm_a, arm_b = c.arms
    runs = plan.arm_runs()
    holdouts = {r.run_id: plan.holdouts(r, facts[r.run_id]) for r in runs}
    cells = []
    comparisons = []
    for profile in c.profiles:
        for mode in c.modes:
            by_arm: dict[str, dict[str, Any]] = {}
            name_a, name_b = arm_a.label(profile), arm_b.label(profile)
            for name in (name_a, name_b):
                mine = [r for r in runs if (r.profile, r.mode, r.arm) == (profile, mode, name)]
                cell = _cell(profile, mode, name, mine, facts)
                distinct = {h.run_id: h for r in mine for h in holdouts[r.run_id]}
                held = [distinct[k] for k in sorted(distinct)]
                h_passed = sum(1 for h in held if facts[h.run_id].verdict == "PASSED")
                h_low, h_high = wilson(h_passed, len(held))
                cell.update(
                    holdout_configs=len({h.holdout_of for h in held}),
                    holdout_pass_rate=_r(h_passed / len(held)) if held else None,
                    holdout_passed=h_passed,
                    holdout_runs=len(held),
                    holdout_wilson_high=h_high if held else None,
                    holdout_wilson_low=h_low if held else None,
                )
                cells.append(cell)
                by_arm[name] = {"cell": cell, "runs": mine}
            a, b = by_arm[name_a], by_arm[name_b]
            a_pass = [facts[r.run_id].verdict == "PASSED" for r in a["runs"]]
            b_pass = [facts[r.run_id].verdict == "PASSED" for r in b["runs"]]
            h_diff = None
            ac, bc = a["cell"], b["cell"]
            if ac["holdout_runs"] and bc["holdout_runs"]:
                h_diff = _r(ac["holdout_pass_rate"] - bc["holdout_pass_rate"])
            comparisons.append(
                {
                    "arms": [name_a, name_b],
                    "discordant": {
                        "a_only": sum(x and not y for x, y in zip(a_pass, b_pass, strict=True)),
                        "b_only": sum(y and not x for x, y in zip(a_pass, b_pass, strict=True)),
                    },
                    "holdout_fisher_p": fisher_p(
                        ac["holdout_passed"],
                        ac["holdout_runs"],
                        bc["holdout_passed"],
                        bc["holdout_runs"],
                    ),
                    "holdout_pass_rate_diff": h_diff,
                    "mcnemar_p": mcnemar_exact(a_pass, b_pass),
                    "mode": mode,
                    "pairs": len(a_pass),
                    "pass_rate_diff": _r(a["cell"]["pass_rate"] - b["cell"]["pass_rate"]),
                    "profile": profile,
                    "wilcoxon_p": wilcoxon_p(
                        [facts[r.run_id].final_net_bps for r in a["runs"]],
                        [facts[r.run_id].final_net_bps for r in b["runs"]],
                    ),
                }
            )
    return {
        "cells": cells,
        "comparisons": comparisons,
        "config": c.as_json(),
        "runs": {run_id: facts[run_id].as_json() for run_id in sorted(facts)},
        "runtime": dict(runtime),
        "sweep_id": plan.sweep_id,
    }
