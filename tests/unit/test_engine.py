"""Whole embedded runs: determinism, state hash, apply invariants, hard/soft gate.

The facts pinned here are documented in docs/tuner.md and docs/artifacts.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from soakq_testkit import (
    DOC_VELOCITY_PER_H,
    GOOD_KPIS,
    RUN_JSON_FILES,
    artifact_paths,
    contract_hash,
    iteration_docs,
    make_spec,
    read,
    run_spec,
    strip_runtime,
    write_reports,
)

from soakq.engine import free_run_id
from soakq.errors import ConfigError
from soakq.jsonio import dumps
from soakq.params import KEYS, PARAMS

pytestmark = pytest.mark.usefixtures("clean_env")

VELOCITY_CAP = DOC_VELOCITY_PER_H


def comparable(run_dir: Path) -> dict[str, str]:
    """File name -> canonical text of the document with its top-level `runtime` removed."""
    return {p.name: dumps(strip_runtime(read(p))) for p in artifact_paths(run_dir)}


def frozen_reports(clean_env: Path) -> Path:
    return write_reports(clean_env / "reports", {i: GOOD_KPIS for i in range(1, 6)})


CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("kpi-steady-calm", {"iterations": 8}),
    ("kpi-aggressive-volatile", {"profile": "aggressive", "mode": "volatile", "iterations": 10}),
    (
        "kpi-aggressive-spike-noguards",
        {
            "profile": "aggressive",
            "mode": "spike",
            "spike_prob": 0.4,
            "guards": False,
            "iterations": 10,
        },
    ),
]


@pytest.mark.parametrize("kw", [c[1] for c in CONFIGS], ids=[c[0] for c in CONFIGS])
def test_same_seed_same_bytes_other_seed_differs(clean_env: Path, kw: dict[str, Any]) -> None:
    a_rec, a = run_spec(make_spec(seed=11, **kw), clean_env / "a")
    b_rec, b = run_spec(make_spec(seed=11, **kw), clean_env / "b")
    assert a.name == b.name
    docs_a, docs_b = comparable(a), comparable(b)
    expected = {f"ITER_SUMMARY_{i}.json" for i in range(1, kw["iterations"] + 1)}
    assert expected | set(RUN_JSON_FILES) <= set(docs_a)
    assert docs_a == docs_b
    for name in ("TUNING_REPORT.json", "runtime_overrides.json", "RELEASE_GATE.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name  # no runtime in these
    _, c = run_spec(make_spec(seed=12, **kw), clean_env / "c")
    docs_c = comparable(c)
    assert docs_c["ITER_SUMMARY_1.json"] != docs_a["ITER_SUMMARY_1.json"]
    assert docs_c["TUNING_REPORT.json"] != docs_a["TUNING_REPORT.json"]


def test_same_bytes_with_a_snapshot(clean_env: Path) -> None:
    reports = frozen_reports(clean_env)
    spec = make_spec(source="file", report_dir=str(reports), symbols=["BTCUSDT"], iterations=5)
    _, a = run_spec(spec, clean_env / "a")
    _, b = run_spec(spec, clean_env / "b")
    assert (a / "PRODUCTION_SNAPSHOT.json").exists()
    assert comparable(a) == comparable(b)
    assert (a / "PRODUCTION_SNAPSHOT.json").read_bytes() == (
        b / "PRODUCTION_SNAPSHOT.json"
    ).read_bytes()


def test_runtime_is_the_only_wall_clock_part(clean_env: Path) -> None:
    """Different clocks change `runtime` objects and nothing else."""
    from soakq.engine import run_embedded

    spec = make_spec(iterations=4)
    ticks = iter(range(10**6))
    _, a = run_embedded(spec, clean_env / "a", report=False, clock=lambda: 1.7e9 + next(ticks))
    _, b = run_embedded(spec, clean_env / "b", report=False, clock=lambda: 1.9e9)
    assert comparable(a) == comparable(b)
    assert read(a / "ITER_SUMMARY_1.json")["runtime"] != read(b / "ITER_SUMMARY_1.json")["runtime"]


def test_state_hash_is_the_overrides_hash(clean_env: Path) -> None:
    spec = make_spec(profile="aggressive", mode="volatile", iterations=12)
    _, run_dir = run_spec(spec, clean_env / "art")
    overrides = read(run_dir / "runtime_overrides.json")
    final = read(run_dir / "ITER_SUMMARY_final.json")
    assert final["summary"]["state_hash"] == contract_hash(overrides)
    docs = iteration_docs(run_dir)
    assert len(docs) == 12
    report = read(run_dir / "TUNING_REPORT.json")["iterations"]
    before = dict(spec.overrides)
    changed = 0
    for doc, entry in zip(docs, report, strict=True):
        t, s = doc["tuning"], doc["summary"]
        assert t["overrides_before"] == before
        assert s["state_hash"] == contract_hash(t["overrides_after"]) == entry["state_hash"]
        changed += t["overrides_after"] != before
        before = t["overrides_after"]
    assert before == overrides
    assert changed > 0  # the run did move the overrides, so the chain above means something
    assert strip_runtime(final)["summary"] == docs[-1]["summary"]


RUNS: list[tuple[str, dict[str, Any]]] = [
    ("steady-calm", {"profile": "steady_safe", "mode": "calm"}),
    ("default-volatile", {"profile": "default", "mode": "volatile"}),
    ("ultra-spike", {"profile": "ultra_safe", "mode": "spike", "spike_prob": 0.3}),
    ("aggressive-volatile", {"profile": "aggressive", "mode": "volatile"}),
    (
        "aggressive-volatile-noguards",
        {"profile": "aggressive", "mode": "volatile", "guards": False},
    ),
    ("aggressive-spike", {"profile": "aggressive", "mode": "spike", "spike_prob": 0.5}),
    (
        "aggressive-spike-noguards",
        {"profile": "aggressive", "mode": "spike", "spike_prob": 0.5, "guards": False},
    ),
    (
        "aggressive-volatile-wild",
        {"profile": "aggressive", "mode": "volatile", "sigma_scale": 3.0, "seed": 3},
    ),
]


@pytest.mark.parametrize("kw", [c[1] for c in RUNS], ids=[c[0] for c in RUNS])
def test_every_change_is_the_formula(clean_env: Path, kw: dict[str, Any]) -> None:
    spec = make_spec(source="kpi", iterations=24, kpi_gate="soft", **kw)
    record, run_dir = run_spec(spec, clean_env / "art")
    assert record["status"] == "succeeded"
    docs = iteration_docs(run_dir)
    n_changes = 0
    for doc in docs:
        t = doc["tuning"]
        assert doc["summary"]["guards_enabled"] is spec.guards
        for name in ("overrides_before", "overrides_after"):
            assert list(t[name]) == sorted(KEYS) and set(t[name]) == set(KEYS)
        assert set(t["proposed_deltas"]) <= set(KEYS)
        assert set(t["applied_deltas"]) == set(t["changes"])
        assert set(t["applied_deltas"]) <= set(t["proposed_deltas"])
        for key, c in t["changes"].items():
            p = PARAMS[key]
            n_changes += 1
            raw = c["old"] + c["delta"]
            assert c["new"] == round(min(max(raw, p.lo), p.hi), p.precision), (key, c)
            assert c["clamped"] == (not p.lo <= raw <= p.hi)
            assert c["old"] == t["overrides_before"][key]
            assert c["new"] == t["overrides_after"][key]
        for key, value in t["overrides_after"].items():
            p = PARAMS[key]
            assert p.lo <= value <= p.hi
            if p.is_int:
                assert type(value) is int, (key, value)
            else:
                assert type(value) is float and round(value, 4) == value, (key, value)
        if not spec.guards:
            assert t["suppressed"] == {} and t["trimmed"] == {}
    assert n_changes > 0  # every listed config tunes something
    if spec.guards:  # the velocity cap holds over every 3 consecutive iterations of the run
        for end in range(len(docs)):
            window = docs[max(0, end - 2) : end + 1]
            for key, cap in VELOCITY_CAP.items():
                scale = 10 ** PARAMS[key].precision
                used = sum(
                    round(abs(d["tuning"]["applied_deltas"].get(key, 0)) * scale) for d in window
                )
                assert used <= round(cap * scale), (key, end + 1)
    assert set(read(run_dir / "runtime_overrides.json")) == set(KEYS)


# --- KPI gate modes in a run ----------------------------------------------------------------


def spike_spec(**kw: Any) -> Any:
    return make_spec(profile="aggressive", mode="spike", spike_prob=1.0, iterations=6, **kw)


def test_hard_gate_stops_at_first_fail(clean_env: Path) -> None:
    record, run_dir = run_spec(spike_spec(kpi_gate="hard"), clean_env / "art")
    run_json = read(run_dir / "RUN.json")
    assert run_json["status"] == "failed" == record["status"]
    o = run_json["outcome"]
    assert o["exit_code"] == 3 and o["stop_reason"] == "kpi_gate"
    assert o["iterations_completed"] == 1 and o["iterations_planned"] == 6
    assert "risk_ratio" in o["detail"]
    assert [d["iteration"] for d in iteration_docs(run_dir)] == [1]
    final = read(run_dir / "ITER_SUMMARY_final.json")
    assert final["summary"]["kpi_verdict"] == "FAIL" and final["run"]["status"] == "failed"
    assert final["tuning"]["applied_deltas"] == {}


def test_hard_gate_from_environment(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KPI_GATE_MODE", "hard")
    record, _ = run_spec(spike_spec(), clean_env / "art")
    assert record["outcome"]["exit_code"] == 3


def test_hard_gate_file_source_exact(clean_env: Path) -> None:
    reports = write_reports(
        clean_env / "reports", {1: GOOD_KPIS, 2: {**GOOD_KPIS, "net_bps": 1.99}}
    )
    spec = make_spec(
        source="file", report_dir=str(reports), symbols=["BTCUSDT"], iterations=5, kpi_gate="hard"
    )
    record, run_dir = run_spec(spec, clean_env / "art")
    o = read(run_dir / "RUN.json")["outcome"]
    assert record["status"] == "failed" and o["exit_code"] == 3
    assert o["iterations_completed"] == 2 and "net_bps" in o["detail"]


def test_soft_gate_runs_to_the_end(clean_env: Path) -> None:
    record, run_dir = run_spec(spike_spec(kpi_gate="soft"), clean_env / "art")
    assert record["status"] == "succeeded" and record["outcome"]["exit_code"] == 0
    docs = iteration_docs(run_dir)
    assert len(docs) == 6
    verdicts = [d["summary"]["kpi_verdict"] for d in docs]
    assert verdicts[0] == "FAIL" and set(verdicts) <= {"OK", "WARN", "FAIL"}
    for d in docs:
        assert d["summary"]["kpi_gate_mode"] == "soft"
        if d["summary"]["kpi_verdict"] != "OK":
            assert d["summary"]["kpi_reasons"]
    counts = read(run_dir / "TUNING_REPORT.json")["summary"]["kpi_verdicts"]
    assert counts == {v: verdicts.count(v) for v in ("OK", "WARN", "FAIL")}


@pytest.mark.parametrize("how", ["env", "flag"])
def test_guards_off(clean_env: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "env":
        monkeypatch.setenv("ENABLE_GUARDS", "0")
        spec = make_spec(iterations=3)
    else:
        spec = make_spec(iterations=3, guards=False)
    _, run_dir = run_spec(spec, clean_env / "art")
    assert all(d["summary"]["guards_enabled"] is False for d in iteration_docs(run_dir))
    assert read(run_dir / "RUN.json")["config"]["guards"] is False


def test_run_json_records_config_and_sources(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MM_RUNTIME_OVERRIDES_JSON", '{"tail_age_ms": 800}')
    spec = make_spec(iterations=2, sets=["min_interval_ms=90"])
    _, run_dir = run_spec(spec, clean_env / "art")
    run_json = read(run_dir / "RUN.json")
    cfg = run_json["config"]
    assert cfg["_sources"]["tail_age_ms"] == "env" and cfg["_sources"]["min_interval_ms"] == "cli"
    assert cfg["_sources"]["impact_cap_ratio"] == "profile:steady_safe"
    assert cfg["overrides"]["tail_age_ms"] == 800 and cfg["overrides"]["min_interval_ms"] == 90
    assert run_json["status"] == "succeeded" and run_json["run_id"] == run_dir.name
    first = iteration_docs(run_dir)[0]["tuning"]["overrides_before"]
    assert first["tail_age_ms"] == 800 and first["min_interval_ms"] == 90


def test_run_id_collisions(clean_env: Path) -> None:
    spec = make_spec(iterations=1)
    root = clean_env / "art"
    run_spec(spec, root)
    second = free_run_id(spec, root, explicit=False)
    assert second.run_id == f"{spec.run_id}-2"
    for name in (f"{spec.run_id}-2", f"{spec.run_id}-7", f"{spec.run_id}-x", f"{spec.run_id}9"):
        (root / "soak" / name).mkdir()
    assert free_run_id(spec, root, explicit=False).run_id == f"{spec.run_id}-8"
    with pytest.raises(ConfigError, match="already exists"):
        free_run_id(spec, root, explicit=True)


def test_book_source_same_seed_same_bytes(clean_env: Path) -> None:
    """The default source too (no calibration assumed: only determinism and the invariants)."""
    pytest.importorskip("soakq.metrics.book")
    kw = {
        "source": "book",
        "profile": "aggressive",
        "mode": "volatile",
        "iterations": 3,
        "symbols": ["BTCUSDT", "ETHUSDT"],
    }
    _, a = run_spec(make_spec(seed=5, **kw), clean_env / "a")
    _, b = run_spec(make_spec(seed=5, **kw), clean_env / "b")
    _, c = run_spec(make_spec(seed=6, **kw), clean_env / "c")
    assert comparable(a) == comparable(b)
    assert comparable(a)["ITER_SUMMARY_1.json"] != comparable(c)["ITER_SUMMARY_1.json"]
    for doc in iteration_docs(a):
        assert doc["summary"]["state_hash"] == contract_hash(doc["tuning"]["overrides_after"])
        for key, ch in doc["tuning"]["changes"].items():
            p = PARAMS[key]
            assert ch["new"] == round(min(max(ch["old"] + ch["delta"], p.lo), p.hi), p.precision)


def test_final_summary_and_run_counts(clean_env: Path) -> None:
    """ITER_SUMMARY_final is the last iteration plus run-level counts that match the run."""
    spec = make_spec(profile="aggressive", mode="volatile", iterations=12)
    record, run_dir = run_spec(spec, clean_env / "art")
    docs = iteration_docs(run_dir)
    final = read(run_dir / "ITER_SUMMARY_final.json")
    run = final.pop("run")
    assert final == read(run_dir / "ITER_SUMMARY_12.json")
    report = read(run_dir / "TUNING_REPORT.json")
    assert report["summary"] == run and report["run_id"] == record["run_id"]
    verdicts = [d["summary"]["kpi_verdict"] for d in docs]
    assert run["kpi_verdicts"] == {v: verdicts.count(v) for v in ("OK", "WARN", "FAIL")}
    assert run["applied_changes"] == sum(len(d["tuning"]["applied_deltas"]) for d in docs)
    assert run["suppressed_deltas"] == sum(len(d["tuning"]["suppressed"]) for d in docs)
    for flag in ("oscillation_detected", "velocity_violation", "cooldown_active"):
        assert run["guard_events"][flag] == sum(bool(d["summary"][flag]) for d in docs)
    assert run["iterations_completed"] == run["iterations_planned"] == 12
    assert run["status"] == "succeeded"
    for doc, entry in zip(docs, report["iterations"], strict=True):
        assert entry["iteration"] == doc["iteration"]
        assert entry["kpi_verdict"] == doc["summary"]["kpi_verdict"]
        assert entry["applied_deltas"] == doc["tuning"]["applied_deltas"]
        assert entry["suppressed"] == doc["tuning"]["suppressed"]
