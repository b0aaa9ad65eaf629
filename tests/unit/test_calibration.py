"""Calibration of the `book` simulator through the whole engine (issue 3).

Each case runs complete 24-iteration soaks (tuning on, guards on, KPI gate soft) through the
in-memory driver, the same iteration code every execution path uses. The full 20-seed study is
`python bench/study_calibration.py` (two `soakq sweep`s); here fewer seeds keep the suite fast.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from soakq.config import build_spec
from soakq.engine import run_embedded
from soakq.settings import Settings
from soakq.store import MemoryStore
from soakq.sweep import RunFacts, facts_of

SEEDS = range(101, 109)  # 8 seeds, disjoint from the study's 1..20


@pytest.fixture(autouse=True)
def _clean(clean_env):
    return clean_env


def soak(profile: str, mode: str, seed: int, *, auto_tune: bool, tmp: Path) -> RunFacts:
    """One soft-gated 24-iteration run in memory, as a sweep runs it (docs/sweeps.md)."""
    spec = build_spec(
        Settings(),
        profile=profile,
        mode=mode,
        seed=seed,
        source="book",
        auto_tune=auto_tune,
        guards=True,
        kpi_gate="soft",
        interval_s=0.0,
    )
    store = MemoryStore()
    run_embedded(spec, tmp, store=store, report=False)
    state, _ = store.get_state(spec.run_id)
    return facts_of(
        store.iterations(spec.run_id),
        store.get_extra(spec.run_id, "release_gate"),
        state["overrides"],
    )


def _rates(profile: str, mode: str, *, auto_tune: bool) -> tuple[float, float]:
    """(share of seeds whose run-level release gate PASSED, share failing the KPI gate at 1)."""
    with tempfile.TemporaryDirectory() as tmp:
        runs = [soak(profile, mode, s, auto_tune=auto_tune, tmp=Path(tmp)) for s in SEEDS]
    n = len(runs)
    return (
        sum(r.verdict == "PASSED" for r in runs) / n,
        sum(r.first_kpi_verdict == "FAIL" for r in runs) / n,
    )


@pytest.mark.slow
def test_steady_safe_on_calm_passes_the_release_gate_on_most_seeds():
    release, _ = _rates("steady_safe", "calm", auto_tune=True)
    assert release >= 0.8


@pytest.mark.slow
def test_aggressive_on_spike_fails_the_kpi_gate_at_iteration_1_on_most_seeds():
    _, first_fail = _rates("aggressive", "spike", auto_tune=True)
    assert first_fail >= 0.8


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["volatile", "spike"])
def test_auto_tune_raises_the_release_pass_rate_from_aggressive(mode):
    tuned, _ = _rates("aggressive", mode, auto_tune=True)
    untuned, _ = _rates("aggressive", mode, auto_tune=False)
    assert tuned > untuned
