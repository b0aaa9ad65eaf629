"""Metric sources: `file` (errors, never zeros; fail closed; valid ranges), `kpi` (seeded), and
the range check every source's result passes through (docs/gates.md)."""

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
        (json.dumps({**GOOD_KPIS, "risk_ratio": -5}), 1, "BTCUSDT.risk_ratio -5 is out of range"),
        (
            json.dumps({**GOOD_KPIS, "maker_taker_ratio": 93.3}),
            1,
            "BTCUSDT.maker_taker_ratio 93.3 is out of range (a percentage?",
        ),
        (json.dumps({**GOOD_KPIS, "p95_latency_ms": -3}), 1, "allowed [0, 1e9]"),
        (json.dumps({**GOOD_KPIS, "fills": 0.001}), 1, "fills 0.001 is not a whole count"),
        (json.dumps({**GOOD_KPIS, "fills": -4}), 1, "fills -4 is out of range"),
        (json.dumps({**GOOD_KPIS, "cancel_ratio": 1.2}), 1, "cancel_ratio 1.2 is out of range"),
        (json.dumps({**GOOD_KPIS, "snipes": 1.5}), 1, "snipes 1.5 is not a whole count"),
        ('{"net_bps": 3.0, "net_bps": 9.0}', 1, "duplicate key 'net_bps'"),
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


def test_file_range_error_names_the_field_and_range(clean_env: Path) -> None:
    write_reports(clean_env, {1: {**GOOD_KPIS, "risk_ratio": 1.5}})
    with pytest.raises(MetricsError) as info:
        get_source("file").measure(req(clean_env))
    path = clean_env / "KPI_REPORT_1.json"
    assert str(info.value) == (
        f"{path}: BTCUSDT.risk_ratio 1.5 is out of range (a percentage? a ratio is a "
        "fraction); allowed [0, 1]"
    )


def test_file_integral_float_count_is_accepted(clean_env: Path) -> None:
    write_reports(clean_env, {1: {**GOOD_KPIS, "fills": 40.0, "snipes": 0.0}})
    out = get_source("file").measure(req(clean_env))
    assert out["fills"] == 40.0 and out["snipes"] == 0.0


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
    gate = read(run_dir / "RELEASE_GATE.json")
    assert gate["passed"] is False and gate["verdict"] == "FAILED"
    assert gate["vetoes"][0]["iteration"] == 2
    assert gate["vetoes"][0]["reasons"][0].startswith("BTCUSDT: iteration 2: KPI report")
    reasons = second["kpi_reasons"]
    assert reasons[-1]["level"] == "source_error" and reasons[-1]["symbol"] == "BTCUSDT"


def test_run_stops_when_one_symbol_lacks_its_entry(clean_env: Path) -> None:
    reports = {1: {"symbols": {"BTCUSDT": GOOD_KPIS}}}
    record, _ = run_spec(file_spec(clean_env, reports, 2, symbols=list(SYMS)), clean_env / "art")
    assert record["status"] == "failed" and "ETHUSDT" in record["outcome"]["detail"]


@pytest.mark.parametrize("key", KPI_KEYS)
def test_report_missing_a_kpi_fails_closed(clean_env: Path, key: str) -> None:
    """Every required KPI (docs/kpis.md) is required: a report without one is a FAIL naming it."""
    reports = {1: {k: v for k, v in GOOD_KPIS.items() if k != key}}
    record, run_dir = run_spec(file_spec(clean_env, reports, 1), clean_env / "art")
    s = iteration_docs(run_dir)[0]["summary"]
    assert s["kpi_verdict"] == "FAIL"
    (reason,) = s["kpi_reasons"]
    assert reason["metric"] == key and reason["level"] == "unusable" and reason["value"] is None
    assert reason["text"].startswith(f"{key} missing; allowed ")
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


# --- every source's result is range-checked before it is used ------------------------------


def test_measure_symbol_turns_an_out_of_range_value_into_an_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soakq import iteration as iteration_mod

    class Liar:
        name, mock = "kpi", True

        def measure(self, req: MeasureRequest) -> dict[str, Any]:
            return {**GOOD_KPIS, "maker_taker_ratio": 93.3, "fills": -2, "cancel_ratio": None}

    monkeypatch.setattr(iteration_mod, "get_source", lambda name: Liar())
    spec = make_spec(iterations=1)
    out = iteration_mod.measure_symbol(spec, 1, "BTCUSDT", {})
    assert out == {
        "error": "kpi source: fills -2 is out of range; allowed an integer [0, 1e12]; "
        "maker_taker_ratio 93.3 is out of range (a percentage? a ratio is a fraction); "
        "allowed [0, 1]",
        "symbol": "BTCUSDT",
    }


def test_measure_symbol_passes_valid_and_missing_values(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from soakq import iteration as iteration_mod

    metrics = {**GOOD_KPIS, "fills": 20.0, "snipes": None}

    class Honest:
        name, mock = "kpi", True

        def measure(self, req: MeasureRequest) -> dict[str, Any]:
            return dict(metrics)

    monkeypatch.setattr(iteration_mod, "get_source", lambda name: Honest())
    out = iteration_mod.measure_symbol(make_spec(iterations=1), 1, "BTCUSDT", {})
    assert out == {"metrics": metrics, "symbol": "BTCUSDT"}


def test_negative_fills_in_a_run_fail_with_that_reason(clean_env: Path) -> None:
    """A bot reporting negative fills: the iteration errors naming fills, not 'missing' KPIs."""
    record, run_dir = run_spec(
        file_spec(clean_env, {1: {**GOOD_KPIS, "fills": -5}}, 1), clean_env / "art"
    )
    s = iteration_docs(run_dir)[0]["summary"]
    assert s["kpi_verdict"] == "FAIL"
    assert "fills -5 is out of range" in s["symbol_errors"]["BTCUSDT"]
    assert record["outcome"]["stop_reason"] == "metrics_error"
    assert "fills -5 is out of range; allowed an integer [0, 1e12]" in record["outcome"]["detail"]


@pytest.mark.parametrize(("fills", "verdict"), [(19, "FAIL"), (20, "OK")])
def test_min_fills_in_a_run(clean_env: Path, fills: int, verdict: str) -> None:
    _, run_dir = run_spec(
        file_spec(clean_env, {1: {**GOOD_KPIS, "fills": fills}}, 1), clean_env / "art"
    )
    s = iteration_docs(run_dir)[0]["summary"]
    assert s["kpi_verdict"] == verdict
    if verdict == "FAIL":
        assert s["kpi_reasons"] == [
            {
                "level": "insufficient_fills",
                "metric": "fills",
                "op": ">=",
                "symbol": None,
                "text": "fills 19 < 20: insufficient fills",
                "threshold": 20,
                "value": 19,
            }
        ]


def test_fractional_fills_in_a_run_are_never_rounded(clean_env: Path) -> None:
    record, run_dir = run_spec(
        file_spec(clean_env, {1: {**GOOD_KPIS, "fills": 0.001}}, 1), clean_env / "art"
    )
    s = iteration_docs(run_dir)[0]["summary"]
    assert s["kpi_verdict"] == "FAIL" and s["fills"] is None
    assert "fills 0.001 is not a whole count" in s["symbol_errors"]["BTCUSDT"]
