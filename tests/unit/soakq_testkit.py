"""Helpers shared by the soakq unit tests (plain functions and constants; fixtures live in
conftest.py). Every helper takes its inputs as arguments: no hidden state, no environment."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

# Deterministic, modest Hypothesis settings for every property in tests/unit.
PROPERTY = settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# KPIs that pass every KPI-gate bound and fire no tuner rule (risk < 0.40, net < 3.0,
# maker/taker >= 0.85, latency < 330, adverse <= 3.5, slippage <= 2.5).
GOOD_KPIS: dict[str, Any] = {
    "net_bps": 2.9,
    "adverse_bps_p95": 2.0,
    "slippage_bps_p95": 1.5,
    "risk_ratio": 0.30,
    "maker_taker_ratio": 0.95,
    "p95_latency_ms": 300.0,
    "fills": 100,
    "cancel_ratio": 0.5,
    "order_age_p95_ms": 600.0,
    "snipes": 0,
}

# docs/artifacts.md: the JSON artifacts of a run directory (PRODUCTION_SNAPSHOT only when frozen).
RUN_JSON_FILES = (
    "ITER_SUMMARY_final.json",
    "TUNING_REPORT.json",
    "runtime_overrides.json",
    "RUN.json",
    "RELEASE_GATE.json",
)


def contract_hash(obj: Any) -> str:
    """The state hash of docs/artifacts.md, written out independently of soakq.jsonio."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_spec(**kw: Any) -> Any:
    """A RunSpec from the (already cleaned) environment; ``source`` defaults to ``kpi``."""
    from soakq.config import build_spec
    from soakq.settings import load_settings

    kw.setdefault("profile", "steady_safe")
    kw.setdefault("source", "kpi")
    return build_spec(load_settings(), **kw)


def run_spec(spec: Any, root: Path) -> tuple[dict[str, Any], Path]:
    """Run ``spec`` embedded into ``root``; return the final record and the run directory."""
    from soakq.engine import run_embedded

    return run_embedded(spec, root, report=False)


def artifact_paths(run_dir: Path) -> list[Path]:
    """Every JSON artifact of a run directory, sorted by name."""
    return sorted(run_dir.glob("*.json"))


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def iteration_docs(run_dir: Path) -> list[dict[str, Any]]:
    """ITER_SUMMARY_<i>.json documents in iteration order."""
    docs = [read(p) for p in run_dir.glob("ITER_SUMMARY_*.json") if p.stem[13:].isdigit()]
    return sorted(docs, key=lambda d: d["iteration"])


def strip_runtime(doc: Any) -> Any:
    """The document without its top-level ``runtime`` object (the only wall-clock part)."""
    if isinstance(doc, dict):
        return {k: v for k, v in doc.items() if k != "runtime"}
    return doc


def write_reports(report_dir: Path, reports: Mapping[int, Any]) -> Path:
    """Write KPI_REPORT_<i>.json files; a ``str`` value is written verbatim (for bad JSON)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    for i, body in reports.items():
        text = body if isinstance(body, str) else json.dumps(body)
        (report_dir / f"KPI_REPORT_{i}.json").write_text(text, encoding="utf-8")
    return report_dir


def invoke(args: list[str], env: Mapping[str, str] | None = None) -> Any:
    """Run the CLI app in-process (typer's CliRunner); stdout and stderr apart."""
    from soakq.cli.main import app

    return CliRunner().invoke(app, args, env=dict(env or {}), catch_exceptions=True)


def assert_clean_user_error(result: Any, *needles: str) -> str:
    """Exit 2, one line on stderr naming each of ``needles``, no traceback; return the line."""
    exc = getattr(result, "exception", None)
    assert exc is None or isinstance(exc, SystemExit), f"unhandled exception: {exc!r}"
    code = getattr(result, "exit_code", getattr(result, "returncode", None))
    stderr = result.stderr
    assert code == 2, (code, stderr, result.stdout)
    assert "Traceback" not in stderr and "Traceback" not in result.stdout
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# Velocity caps per simulated hour (3 iterations of 20 minutes; docs/parameters.md), written once.
DOC_VELOCITY_PER_H = {
    "base_spread_bps_delta": 0.10,
    "min_interval_ms": 30,
    "replace_rate_per_min": 60,
    "tail_age_ms": 100,
    "impact_cap_ratio": 0.02,
    "max_delta_ratio": 0.03,
}
