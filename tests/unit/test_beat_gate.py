"""The beat's release-gate task's decision (workers.beat.gate_for): the run-level gate of a
finished run; a run that ended unjudged (cancelled, lost, no iteration) is FAILED with why."""

from __future__ import annotations

from typing import Any

import pytest
from soakq_testkit import GOOD_KPIS, make_spec

from workers.beat import gate_for

pytestmark = pytest.mark.usefixtures("clean_env")

OVR = {"min_interval_ms": 75}


def docs(n: int) -> list[dict[str, Any]]:
    return [
        {
            "iteration": i,
            "run_id": "r",
            "summary": {**GOOD_KPIS, "kpi_verdict": "OK", "kpi_reasons": []},
            "tuning": {"overrides_before": OVR, "overrides_after": OVR},
        }
        for i in range(1, n + 1)
    ]


def record(status: str, **outcome: Any) -> dict[str, Any]:
    return {"outcome": outcome, "spec": make_spec(iterations=6).as_json(), "status": status}


@pytest.mark.parametrize(
    ("status", "n", "verdict"),
    [("succeeded", 6, "PASSED"), ("succeeded", 5, "INCONCLUSIVE"), ("failed", 6, "PASSED")],
)
def test_finished_runs_get_the_run_level_gate(status: str, n: int, verdict: str) -> None:
    gate = gate_for(record(status), docs(n))
    assert gate["form"] == "run" and gate["verdict"] == verdict
    assert gate["window"]["iterations"] == list(range(1, n + 1))
    assert gate["mock"] is True and "source=kpi" in gate["mock_note"]


@pytest.mark.parametrize("status", ["cancelled", "lost", "running"])
def test_unjudged_runs_fail_with_why(status: str) -> None:
    gate = gate_for(record(status, detail="operator stopped it"), docs(6))
    assert gate["verdict"] == "FAILED" and gate["passed"] is False
    assert gate["error"] == f"run {status}: operator stopped it"


def test_a_finished_run_without_iterations_fails_with_why() -> None:
    gate = gate_for(record("succeeded", stop_reason="metrics_error"), [])
    assert gate["error"] == "run succeeded: metrics_error"
    assert gate_for(record("failed"), [])["error"] == "run failed: no iteration to judge"
