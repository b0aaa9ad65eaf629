"""Calibration study: how profiles fare per regime over many seeds, with and without auto-tune.

Runs whole soaks through the in-memory driver (the same iteration code as every other path) and
reports, per (profile, regime, auto-tune): how often the run-level release gate says PASSED,
FAILED and INCONCLUSIVE (docs/gates.md), and the share of seeds whose iteration 1 fails the KPI
gate.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from soakq.config import build_spec
from soakq.engine import run_embedded
from soakq.runner import release_gate_of
from soakq.settings import Settings
from soakq.store import MemoryStore


@dataclass(frozen=True)
class Cell:
    profile: str
    mode: str
    auto_tune: bool
    seeds: int
    release_pass: int
    first_fail: int
    release_fail: int = 0
    release_inconclusive: int = 0

    @property
    def release_rate(self) -> float:
        return self.release_pass / self.seeds

    @property
    def first_fail_rate(self) -> float:
        return self.first_fail / self.seeds


def soak_outcome(
    profile: str,
    mode: str,
    seed: int,
    *,
    auto_tune: bool,
    iterations: int = 24,
    source: str = "book",
) -> tuple[str, bool]:
    """(the run-level release-gate verdict, iteration 1 failed the KPI gate)."""
    spec = build_spec(
        Settings(),
        profile=profile,
        mode=mode,
        seed=seed,
        iterations=iterations,
        source=source,
        auto_tune=auto_tune,
        guards=True,
        kpi_gate="soft",
        interval_s=0.0,
    )
    store = MemoryStore()
    with tempfile.TemporaryDirectory() as tmp:
        run_embedded(spec, Path(tmp), store=store, report=False)
    docs = store.iterations(spec.run_id)
    gate = release_gate_of(spec, docs) or {"verdict": "FAILED"}
    return str(gate["verdict"]), docs[0]["summary"]["kpi_verdict"] == "FAIL"


def study(
    profiles: Sequence[str],
    modes: Sequence[str],
    seeds: Iterable[int],
    *,
    auto_tune: Sequence[bool] = (True, False),
    iterations: int = 24,
    source: str = "book",
) -> list[Cell]:
    seed_list = list(seeds)
    cells = []
    for profile in profiles:
        for mode in modes:
            for tune in auto_tune:
                outcomes = [
                    soak_outcome(
                        profile, mode, s, auto_tune=tune, iterations=iterations, source=source
                    )
                    for s in seed_list
                ]
                verdicts = [v for v, _ in outcomes]
                cells.append(
                    Cell(
                        profile,
                        mode,
                        tune,
                        len(seed_list),
                        verdicts.count("PASSED"),
                        sum(f for _, f in outcomes),
                        verdicts.count("FAILED"),
                        verdicts.count("INCONCLUSIVE"),
                    )
                )
    return cells


def table(cells: Sequence[Cell]) -> list[str]:
    lines = [
        f"{'profile':<12} {'regime':<9} {'auto-tune':<9} {'seeds':>5} "
        f"{'PASSED':>7} {'FAILED':>7} {'INCONCL':>7} {'iter-1 KPI FAIL':>15}"
    ]
    for c in cells:
        lines.append(
            f"{c.profile:<12} {c.mode:<9} {'on' if c.auto_tune else 'off':<9} {c.seeds:>5} "
            f"{c.release_pass:>7} {c.release_fail:>7} {c.release_inconclusive:>7} "
            f"{c.first_fail_rate:>15.0%}"
        )
    return lines
