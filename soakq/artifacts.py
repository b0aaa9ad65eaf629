"""The run directory, written from the store; re-exports are identical (docs/architecture.md)."""

from __future__ import annotations

import contextlib
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soakq.jsonio import write_json
from soakq.states import RunStatus
from soakq.store import RunStore

SOAK_DIR = "soak"
LATEST = "latest"
CHECKPOINT = "CHECKPOINT.json"  # an unfinished embedded run's resume point (soakq/checkpoint.py)


def run_dir(artifacts_root: str | os.PathLike[str], run_id: str) -> Path:
    return Path(artifacts_root) / SOAK_DIR / run_id


def iteration_file(directory: Path, iteration: int) -> Path:
    return directory / f"ITER_SUMMARY_{iteration}.json"


_ITER_FILE = re.compile(r"ITER_SUMMARY_(\d+)\.json")


def iteration_files(directory: Path) -> list[tuple[int, Path]]:
    """``(i, path)`` of every ITER_SUMMARY_<i>.json in ``directory``, by iteration."""
    found = []
    for p in directory.iterdir():
        m = _ITER_FILE.fullmatch(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def tuning_entry(doc: Mapping[str, Any]) -> dict[str, Any]:
    s, t = doc["summary"], doc["tuning"]
    live = (
        {"iteration_error": s.get("iteration_error"), "iteration_status": s["iteration_status"]}
        if "iteration_status" in s
        else {}
    )
    return {
        **live,
        "applied_deltas": t["applied_deltas"],
        "cooldown_active": s["cooldown_active"],
        "freeze_active": s["freeze_active"],
        "freeze_reason": s["freeze_reason"],
        "iteration": doc["iteration"],
        "kpi_verdict": s["kpi_verdict"],
        "oscillation_detected": s["oscillation_detected"],
        "proposed_deltas": t["proposed_deltas"],
        "signature_hash": s["signature_hash"],
        "state_hash": s["state_hash"],
        "suppressed": t["suppressed"],
        "trimmed": t["trimmed"],
        "velocity_violation": s["velocity_violation"],
    }


def run_aggregates(docs: list[Mapping[str, Any]], record: Mapping[str, Any]) -> dict[str, Any]:
    """Run-level counts shared by ITER_SUMMARY_final and TUNING_REPORT."""
    verdicts = Counter(d["summary"]["kpi_verdict"] for d in docs)
    flags = ("oscillation_detected", "velocity_violation", "cooldown_active")
    frozen = [d["iteration"] for d in docs if d["summary"]["freeze_active"]]
    return {
        "applied_changes": sum(len(d["tuning"]["applied_deltas"]) for d in docs),
        "first_frozen_iteration": frozen[0] if frozen else None,
        "freeze_active": bool(docs) and docs[-1]["summary"]["freeze_active"],
        "guard_events": {f: sum(1 for d in docs if d["summary"][f]) for f in flags},
        "iterations_completed": len(docs),
        "iterations_planned": record["spec"]["iterations"],
        "kpi_verdicts": {v: verdicts.get(v, 0) for v in ("OK", "WARN", "FAIL")},
        "status": record["status"],
        "stop_reason": record.get("outcome", {}).get("stop_reason"),
        "suppressed_deltas": sum(len(d["tuning"]["suppressed"]) for d in docs),
    }


def run_json(record: Mapping[str, Any]) -> dict[str, Any]:
    spec = dict(record["spec"])
    sources = spec.pop("sources")
    config = {**spec, "_sources": sources}
    return {
        "config": config,
        "outcome": record.get("outcome", {}),
        "run_id": record["run_id"],
        "runtime": record.get("runtime", {}),
        "status": record["status"],
    }


def snapshot(
    record: Mapping[str, Any], state: Mapping[str, Any], gate: Mapping[str, Any] | None
) -> dict[str, Any]:
    """PRODUCTION_SNAPSHOT of a run that ends frozen, with its release-gate verdict and window."""
    from soakq.snapshot import gate_summary

    spec = record["spec"]
    freeze = state["freeze"]
    mock = spec["source"] != "file"
    return {
        "force_reason": None,
        "forced": False,
        "frozen_at_iteration": freeze["frozen_at"],
        "mock": mock,
        "mock_mode": spec["mode"] if mock else None,
        "mock_seed": spec["seed"] if mock else None,
        "overridden_refusals": [],
        "overrides": state["overrides"],
        "profile": spec["profile"],
        "proving_iterations": freeze["proving"],
        "reason": freeze["reason"],
        "release_gate": gate_summary(gate),
        "run_id": record["run_id"],
        "signature_hash": freeze["signature_hash"],
        "source": spec["source"],
    }


def export_run(
    store: RunStore, run_id: str, artifacts_root: str | os.PathLike[str], *, report: bool = True
) -> Path:
    """Write the whole run directory from the store and point ``latest`` at it."""
    record, state, _ = store.read_run(run_id)  # KeyError when the run does not exist
    docs: list[Mapping[str, Any]] = [*store.iterations(run_id)]
    out = run_dir(artifacts_root, run_id)
    out.mkdir(parents=True, exist_ok=True)
    for doc in docs:
        write_json(iteration_file(out, doc["iteration"]), doc)
    aggregates = run_aggregates(docs, record)
    if docs:
        final = dict(docs[-1])
        final["run"] = aggregates
        write_json(out / "ITER_SUMMARY_final.json", final)
    write_json(
        out / "TUNING_REPORT.json",
        {
            "iterations": [tuning_entry(d) for d in docs],
            "run_id": run_id,
            "summary": aggregates,
        },
    )
    write_json(out / "runtime_overrides.json", state["overrides"])
    gate = store.get_extra(run_id, "release_gate")
    if state["freeze"]["active"]:
        write_json(out / "PRODUCTION_SNAPSHOT.json", snapshot(record, state, gate))
    if gate is not None:
        write_json(out / "RELEASE_GATE.json", gate)
    # Last: a RUN.json with a final status says every other file of the run is there.
    write_json(out / "RUN.json", run_json(record))
    if RunStatus(record["status"]).terminal:  # a finished run is not resumed
        (out / CHECKPOINT).unlink(missing_ok=True)
    point_latest(Path(artifacts_root) / SOAK_DIR, run_id)
    if report and docs:
        from soakq.report import write_report

        write_report(out, docs, record)
    return out


def write_iteration(
    store: RunStore,
    run_id: str,
    iteration: int,
    artifacts_root: str | os.PathLike[str],
    *,
    doc: Mapping[str, Any] | None = None,
) -> Path | None:
    """Write one ITER_SUMMARY file as soon as its record exists. ``doc``: the document as
    committed, when the caller holds it (else it is read from the store)."""
    if doc is None:
        doc = store.get_iteration(run_id, iteration)
    if doc is None:
        return None
    return write_json(iteration_file(run_dir(artifacts_root, run_id), iteration), doc)


def point_latest(soak_root: Path, run_id: str) -> None:
    """Atomically repoint ``latest`` (a relative symlink) at the run directory."""
    link = soak_root / LATEST
    tmp = soak_root / f".{LATEST}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(run_id, tmp)
    os.replace(tmp, link)
