"""Verdict study: how profiles fare per regime over many seeds, tuned or not, guarded or not.

Runs whole soaks through the in-memory driver (the same iteration code as every other path) and
judges each with the run-level release gate (docs/gates.md). Per (profile, regime, arm) it
reports the verdict counts (PASSED / FAILED / INCONCLUSIVE), the share of seeds whose iteration 1
fails the KPI gate, the applied changes and the parameter reversals per run.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soakq.config import build_spec
from soakq.engine import run_embedded
from soakq.release_gate import run_gate
from soakq.settings import Settings
from soakq.store import MemoryStore

VERDICTS = ("PASSED", "FAILED", "INCONCLUSIVE")


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: tuner on/off and guards on/off."""

    auto_tune: bool
    guards: bool

    @property
    def name(self) -> str:
        tune = "tune" if self.auto_tune else "no-tune"
        return f"{tune},{'guards' if self.guards else 'no-guards'}"


@dataclass(frozen=True)
class RunFacts:
    """What one run said: its run-level verdict and how much the tuner moved."""

    verdict: str
    first_fail: bool
    applied: int
    reversals: int
    final_net_bps: float | None


@dataclass(frozen=True)
class Cell:
    profile: str
    mode: str
    arm: Arm
    runs: tuple[RunFacts, ...]

    @property
    def verdicts(self) -> dict[str, int]:
        counts = Counter(r.verdict for r in self.runs)
        return {v: counts.get(v, 0) for v in VERDICTS}

    @property
    def pass_rate(self) -> float:
        return self.verdicts["PASSED"] / len(self.runs)

    @property
    def first_fail_rate(self) -> float:
        return sum(r.first_fail for r in self.runs) / len(self.runs)

    @property
    def reversals(self) -> int:
        return sum(r.reversals for r in self.runs)


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


def soak(
    profile: str, mode: str, seed: int, arm: Arm, *, iterations: int = 24, source: str = "book"
) -> RunFacts:
    """One soft-gated run in memory, judged by the run-level release gate."""
    spec = build_spec(
        Settings(),
        profile=profile,
        mode=mode,
        seed=seed,
        iterations=iterations,
        source=source,
        auto_tune=arm.auto_tune,
        guards=arm.guards,
        kpi_gate="soft",
        interval_s=0.0,
    )
    store = MemoryStore()
    with tempfile.TemporaryDirectory() as tmp:
        run_embedded(spec, Path(tmp), store=store, report=False)
    docs = store.iterations(spec.run_id)
    gate = run_gate(docs, spec.as_json())
    net = docs[-1]["summary"].get("net_bps")
    return RunFacts(
        verdict=str(gate.verdict),
        first_fail=docs[0]["summary"]["kpi_verdict"] == "FAIL",
        applied=sum(len(d["tuning"]["applied_deltas"]) for d in docs),
        reversals=count_reversals(docs),
        final_net_bps=float(net) if net is not None else None,
    )


def study(
    profiles: Sequence[str],
    modes: Sequence[str],
    seeds: Iterable[int],
    arms: Sequence[Arm],
    *,
    iterations: int = 24,
    source: str = "book",
) -> list[Cell]:
    seed_list = list(seeds)
    return [
        Cell(
            profile,
            mode,
            arm,
            tuple(
                soak(profile, mode, s, arm, iterations=iterations, source=source) for s in seed_list
            ),
        )
        for profile in profiles
        for mode in modes
        for arm in arms
    ]


def table(cells: Sequence[Cell]) -> list[str]:
    lines = [
        f"{'profile':<12} {'regime':<9} {'arm':<17} {'runs':>4} {'PASSED':>6} {'FAILED':>6} "
        f"{'INCONCL':>7} {'pass':>5} {'it-1 FAIL':>9} {'applied/run':>11} {'reversals':>9}"
    ]
    for c in cells:
        v = c.verdicts
        applied = sum(r.applied for r in c.runs) / len(c.runs)
        lines.append(
            f"{c.profile:<12} {c.mode:<9} {c.arm.name:<17} {len(c.runs):>4} {v['PASSED']:>6} "
            f"{v['FAILED']:>6} {v['INCONCLUSIVE']:>7} {c.pass_rate:>5.0%} "
            f"{c.first_fail_rate:>9.0%} {applied:>11.1f} {c.reversals:>9}"
        )
    totals = Counter[str]()
    for c in cells:
        totals.update(c.verdicts)
    n = sum(totals.values())
    lines.append(
        "all runs: "
        + ", ".join(f"{v} {totals[v]} ({totals[v] / n:.0%})" for v in VERDICTS)
        + f" of {n}"
    )
    return lines
