"""SOAK_MOCK_* act on the `book` simulator as their names say, and flags override them."""

from __future__ import annotations

import json
import statistics

import pytest

from soakq.config import build_spec
from soakq.iteration import measure_symbol
from soakq.settings import Settings

pytestmark = pytest.mark.usefixtures("clean_env")
SEEDS = range(1, 11)


def spec_from_env(monkeypatch: pytest.MonkeyPatch, **env: str):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return build_spec(Settings(), profile="steady_safe", iterations=1)


def mean_over_seeds(spec, key: str) -> float:
    values = []
    for seed in SEEDS:
        s = spec.model_copy(update={"seed": seed})
        out = measure_symbol(s, 1, "ETHUSDT", s.overrides)["metrics"]
        values.append(out[key])
    return statistics.fmean(values)


def test_mode_and_seed_come_from_the_environment(monkeypatch):
    spec = spec_from_env(monkeypatch, SOAK_MOCK_MODE="spike", SOAK_MOCK_SEED="7")
    assert (spec.mode, spec.seed, spec.source) == ("spike", 7, "book")
    out = measure_symbol(spec, 1, "ETHUSDT", spec.overrides)["metrics"]
    assert (out["mock_mode"], out["mock_seed"]) == ("spike", 7)


def test_sigma_scales_volatility(monkeypatch):
    calm = spec_from_env(monkeypatch, SOAK_MOCK_MODE="volatile")
    wild = spec_from_env(monkeypatch, SOAK_MOCK_MODE="volatile", SOAK_MOCK_SIGMA="3")
    assert wild.sigma_scale == 3.0 and calm.sigma_scale is None
    # More volatility: more adverse selection on the maker fills.
    assert mean_over_seeds(wild, "adverse_bps_p95") > mean_over_seeds(calm, "adverse_bps_p95")


def test_spike_prob_sets_how_often_gaps_happen(monkeypatch):
    never = spec_from_env(monkeypatch, SOAK_MOCK_MODE="spike", SOAK_MOCK_SPIKE_PROB="0")
    often = spec_from_env(monkeypatch, SOAK_MOCK_MODE="spike", SOAK_MOCK_SPIKE_PROB="1")
    assert mean_over_seeds(never, "gap_events") == 0
    assert mean_over_seeds(often, "gap_events") > 5


def test_gap_bps_sets_how_big_gaps_are(monkeypatch):
    small = spec_from_env(monkeypatch, SOAK_MOCK_MODE="spike", SOAK_MOCK_GAP_BPS="5")
    big = spec_from_env(monkeypatch, SOAK_MOCK_MODE="spike", SOAK_MOCK_GAP_BPS="80")
    assert mean_over_seeds(big, "adverse_bps_p95") > mean_over_seeds(small, "adverse_bps_p95")


def test_flags_override_the_environment(monkeypatch):
    monkeypatch.setenv("SOAK_MOCK_SIGMA", "2")
    monkeypatch.setenv("SOAK_MOCK_SPIKE_PROB", "0.9")
    monkeypatch.setenv("SOAK_MOCK_GAP_BPS", "50")
    monkeypatch.setenv("SOAK_MOCK_MODE", "spike")
    monkeypatch.setenv("SOAK_MOCK_SEED", "7")
    spec = build_spec(
        Settings(),
        profile="steady_safe",
        iterations=1,
        sigma_scale=1.5,
        spike_prob=0.1,
        gap_bps=20.0,
        mode="calm",
        seed=9,
    )
    assert (spec.sigma_scale, spec.spike_prob, spec.gap_bps) == (1.5, 0.1, 20.0)
    assert (spec.mode, spec.seed) == ("calm", 9)


def test_flags_override_the_environment_through_the_cli(run_cli, tmp_path):
    env = {"SOAK_MOCK_SEED": "7", "SOAK_MOCK_MODE": "spike", "SOAK_MOCK_SIGMA": "2"}
    proc = run_cli(
        "submit",
        "--iterations",
        "1",
        "--seed",
        "9",
        "--mode",
        "calm",
        "--mock-sigma",
        "1.5",
        "--artifacts",
        str(tmp_path / "a"),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    run = json.loads((tmp_path / "a" / "soak" / "latest" / "RUN.json").read_text())
    cfg = run["config"]
    assert (cfg["seed"], cfg["mode"], cfg["sigma_scale"]) == (9, "calm", 1.5)
