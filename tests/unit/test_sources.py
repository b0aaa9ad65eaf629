"""Metric sources: `file` (errors, never zeros; fail closed) and `kpi` (seeded) (DESIGN §3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from soakq_testkit import GOOD_KPIS, iteration_docs, make_spec, read, run_spec, write_reports

from soakq.errors import ConfigError, MetricsError
from soakq.metrics import KPI_KEYS, MOCK_META_KEYS, MeasureRequest, get_source

pytestmark = pytest.mark.usefixtures("clean_env")

SYMS = ("BTCUSDT", "ETHUSDT")


def req(
    report_dir: Path | None = None,
    *,
    iteration: int = 1,
    symbol: str = "BTCUSDT",
    symbols: int = 1,
    **kw: Any,
) -> MeasureRequest:
    return MeasureRequest(
        seed=kw.pop("seed", 42),
        mode=kw.pop("mode", "calm"),
        symbol=symbol,
        iteration=iteration,
        overrides={},
        report_dir=None if report_dir is None else str(report_dir),
        extra={"symbol_count": symbols},
        **kw,
    )


# --- file source, unit ----------------------------------------------------------------------


def test_file_total_report(clean_env: Path) -> None:
    write_reports(clean_env, {1: GOOD_KPIS})
    out = get_source("file").measure(req(clean_env))
    assert {k: out[k] for k in GOOD_KPIS} == GOOD_KPIS


def test_file_per_symbol_report(clean_env: Path) -> None:
    write_reports(
        clean_env,
        {1: {"symbols": {"BTCUSDT": GOOD_KPIS, "ETHUSDT": {**GOOD_KPIS, "net_bps": 1.5}}}},
    )
    out = get_source("file").measure(req(clean_env, symbol="ETHUSDT", symbols=2))
    assert out["net_bps"] == 1.5


@pytest.mark.parametrize(
    ("body", "symbols", "needle"),
    [
        (None, 1, "file not found"),
        ("{not json", 1, "not valid JSON"),
        ('{"net_bps": NaN}', 1, "NaN"),
        ("[1, 2]", 1, "JSON object"),
        (json.dumps({**GOOD_KPIS, "net_bps": "2.9"}), 1, "net_bps"),
        (json.dumps({**GOOD_KPIS, "net_bps": True}), 1, "net_bps"),
        (json.dumps({**GOOD_KPIS, "net_bps": 0.125}).replace("0.125", "1e999"), 1, "net_bps"),
        (json.dumps({**GOOD_KPIS, "fills": 7}).replace("7", "1" + "0" * 400), 1, "fills"),
        (json.dumps({"symbols": {"ETHUSDT": GOOD_KPIS}}), 2, "BTCUSDT"),
        (json.dumps({"symbols": {"BTCUSDT": [1]}}), 2, "BTCUSDT"),
        (json.dumps({"symbols": [1]}), 2, "symbols"),
        (json.dumps(GOOD_KPIS), 2, "exactly one symbol"),
    ],
)
def test_file_bad_report_is_an_error(
    clean_env: Path, body: str | None, symbols: int, needle: str
) -> None:
    if body is not None:
        (clean_env / "KPI_REPORT_1.json").write_text(body)
    with pytest.raises(MetricsError) as info:
        get_source("file").measure(req(clean_env, symbols=symbols))
    assert needle in str(info.value)


def test_file_without_dir_is_an_error() -> None:
    with pytest.raises(MetricsError, match="report directory"):
        get_source("file").measure(req(None))


@pytest.mark.parametrize("key", KPI_KEYS)
def test_file_missing_kpi_is_none_not_zero(clean_env: Path, key: str) -> None:
    write_reports(clean_env, {1: {k: v for k, v in GOOD_KPIS.items() if k != key}})
    assert get_source("file").measure(req(clean_env))[key] is None


# --- file source, in a run ------------------------------------------------------------------


def file_spec(clean_env: Path, reports: dict[int, Any], iterations: int, **kw: Any) -> Any:
    rdir = write_reports(clean_env / "reports", reports)
    kw.setdefault("symbols", ["BTCUSDT"])
    return make_spec(source="file", report_dir=str(rdir), iterations=iterations, **kw)


@pytest.mark.parametrize("problem", ["missing", "malformed"])
def test_run_stops_on_bad_report(clean_env: Path, problem: str) -> None:
    reports: dict[int, Any] = {1: GOOD_KPIS}
    if problem == "malformed":
        reports[2] = '{"net_bps": 3.0,'
    spec = file_spec(clean_env, reports, 4)
    record, run_dir = run_spec(spec, clean_env / "art")
    outcome = record["outcome"]
    assert record["status"] == "failed"
    assert outcome["exit_code"] == 1 and outcome["stop_reason"] == "metrics_error"
    assert "KPI_REPORT_2.json" in outcome["detail"]
    assert outcome["iterations_completed"] == 2
    run_json = read(run_dir / "RUN.json")
    assert run_json["status"] == "failed" and run_json["outcome"] == outcome
    second = iteration_docs(run_dir)[1]["summary"]
    assert second["kpi_verdict"] == "FAIL"
    for key in KPI_KEYS:  # never zeros
        assert second[key] is None, key
    assert "KPI_REPORT_2.json" in second["symbol_errors"]["BTCUSDT"]
    assert not (run_dir / "ITER_SUMMARY_3.json").exists()
    assert read(run_dir / "RELEASE_GATE.json")["passed"] is False


def test_run_stops_when_one_symbol_lacks_its_entry(clean_env: Path) -> None:
    reports = {1: {"symbols": {"BTCUSDT": GOOD_KPIS}}}
    record, _ = run_spec(file_spec(clean_env, reports, 2, symbols=list(SYMS)), clean_env / "art")
    assert record["status"] == "failed" and "ETHUSDT" in record["outcome"]["detail"]


@pytest.mark.parametrize("key", KPI_KEYS)
def test_report_missing_a_kpi_fails_closed(clean_env: Path, key: str) -> None:
    """Every KPI of DESIGN §3 is required: a report without one is a FAIL naming it."""
    reports = {1: {k: v for k, v in GOOD_KPIS.items() if k != key}}
    record, run_dir = run_spec(file_spec(clean_env, reports, 1), clean_env / "art")
    s = iteration_docs(run_dir)[0]["summary"]
    assert s["kpi_verdict"] == "FAIL"
    assert any(r.startswith(key) and "fail closed" in r for r in s["kpi_reasons"]), s["kpi_reasons"]
    assert record["status"] == "succeeded"  # soft gate: recorded, run goes on


def test_report_missing_a_kpi_stops_hard_gate(clean_env: Path) -> None:
    reports = {1: {k: v for k, v in GOOD_KPIS.items() if k != "p95_latency_ms"}}
    record, _ = run_spec(file_spec(clean_env, reports, 3, kpi_gate="hard"), clean_env / "art")
    assert record["outcome"]["exit_code"] == 3 and "p95_latency_ms" in record["outcome"]["detail"]


def test_file_run_is_exact(clean_env: Path) -> None:
    reports = {
        1: {
            "symbols": {
                "BTCUSDT": {**GOOD_KPIS, "fills": 100, "net_bps": 2.0},
                "ETHUSDT": {**GOOD_KPIS, "fills": 300, "net_bps": 4.0},
            }
        }
    }
    _, run_dir = run_spec(file_spec(clean_env, reports, 1, symbols=list(SYMS)), clean_env / "art")
    s = iteration_docs(run_dir)[0]["summary"]
    assert s["net_bps"] == 3.5 and s["fills"] == 400
    assert s["mock"] is False and "mock_mode" not in s


# --- kpi source -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["calm", "volatile", "spike"])
def test_kpi_source_is_seeded(mode: str) -> None:
    src = get_source("kpi")
    a = src.measure(req(mode=mode, iteration=3))
    assert a == src.measure(req(mode=mode, iteration=3))
    assert a != src.measure(req(mode=mode, iteration=4))
    assert a != src.measure(req(mode=mode, iteration=3, seed=43))
    assert set(KPI_KEYS) | set(MOCK_META_KEYS) <= set(a)
    assert a["mock_mode"] == mode and a["mock_seed"] == 42


def test_kpi_spike_prob_one_spikes_every_time() -> None:
    src = get_source("kpi")
    for i in range(1, 6):
        out = src.measure(req(mode="spike", iteration=i, spike_prob=1.0))
        assert out["spike_count"] == 1 and out["risk_ratio"] >= 0.6


def test_kpi_source_ignores_overrides() -> None:
    src = get_source("kpi")
    a = src.measure(req(iteration=2))
    b = src.measure(
        MeasureRequest(
            seed=42,
            mode="calm",
            symbol="BTCUSDT",
            iteration=2,
            overrides={"min_interval_ms": 300},
            extra={"symbol_count": 1},
        )
    )
    assert a == b


def test_unknown_source() -> None:
    with pytest.raises(ConfigError, match="unknown metric source"):
        get_source("nope")
