"""Release gate (docs/gates.md): on one ITER_SUMMARY file, or on a whole run.

``soakq gate FILE`` keeps the roadmap's single-file form: the four KPIs of ``summary`` against
the thresholds (exit 0 / 1 / 2), with a note that one iteration is not statistical evidence.
``soakq gate RUN_DIR``, ``RELEASE_GATE.json``, the run's printed verdict, the trend report and
the beat's task use the run-level form in ``soakq.rules.release_window`` (exit 0 / 1 / 4 / 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soakq.artifacts import iteration_files
from soakq.errors import ExitCode, InputError
from soakq.jsonio import read_json
from soakq.metrics.base import DIAGNOSTICS, KPI_KEYS
from soakq.rules.ranges import valid_range
from soakq.rules.release_window import GateVerdict, RunGate, judge_run
from soakq.rules.thresholds import Threshold, fmt_num, release_thresholds

SINGLE_NOTE = (
    "NOTE: a single iteration is not statistical evidence; "
    "the release verdict is `soakq gate RUN_DIR` (the run's window of iterations)"
)


def mock_note(source: Any, mode: Any, seed: Any) -> str:
    return f"NOTE: mock data (source={source}, mode={mode}, seed={seed}): not a production verdict"


@dataclass(frozen=True)
class SummaryGate:
    """The single-file release gate's result."""

    passed: bool
    checks: tuple[dict[str, Any], ...]
    violations: tuple[str, ...]
    mock: bool
    mock_note: str

    @property
    def verdict(self) -> str:
        return "PASSED" if self.passed else "FAILED"

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.OK if self.passed else ExitCode.FAILED

    def lines(self) -> list[str]:
        out = []
        for c in self.checks:
            mark = "ok  " if c["passed"] else "FAIL"
            out.append(
                f"{mark} {c['metric']:<18} {fmt_num(c['value']):>10}  "
                f"(threshold {c['op']} {fmt_num(c['threshold'])})"
            )
        if self.passed:
            out.append("RELEASE GATE PASSED")
        else:
            out.append(f"RELEASE GATE FAILED ({len(self.violations)} violations)")
            out.extend(f"  - {v}" for v in self.violations)
        out.append(SINGLE_NOTE)
        if self.mock:
            out.append(self.mock_note)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "checks": list(self.checks),
            "form": "summary",
            "mock": self.mock,
            "mock_note": self.mock_note,
            "note": SINGLE_NOTE,
            "passed": self.passed,
            "verdict": self.verdict,
            "violations": list(self.violations),
        }


def failed_gate(error: str) -> dict[str, Any]:
    """The RELEASE_GATE document of a run that cannot be judged (none of its iterations, say)."""
    return {
        "error": error,
        "exit_code": int(ExitCode.FAILED),
        "form": "run",
        "passed": False,
        "reasons": [error],
        "verdict": "FAILED",
    }


def check_summary(doc: Any, *, where: str = "input") -> SummaryGate:
    """Judge ``doc['summary']``; InputError naming the field and its range when unusable."""
    if not isinstance(doc, Mapping):
        raise InputError(f"{where}: not a JSON object; expected an ITER_SUMMARY with a 'summary'")
    summary = doc.get("summary")
    if not isinstance(summary, Mapping):
        raise InputError(f"{where}: no 'summary' object; expected an ITER_SUMMARY file")
    thresholds: tuple[Threshold, ...] = release_thresholds()
    checks: list[dict[str, Any]] = []
    violations: list[str] = []
    # Every KPI the file carries must be usable, not only the four judged here.
    for metric in (*KPI_KEYS, *DIAGNOSTICS):
        present = summary.get(metric)
        why = None if present is None else valid_range(metric).explain(present)
        if why is not None:
            raise InputError(f"{where}: summary.{metric} {why}")
    for t in thresholds:
        value = summary.get(t.metric)
        why = valid_range(t.metric).explain(value)
        if why is not None:
            raise InputError(f"{where}: summary.{t.metric} {why}")
        ok = t.passes(summary[t.metric])
        checks.append(
            {"metric": t.metric, "op": t.op, "passed": ok, "threshold": t.bound, "value": value}
        )
        if not ok:
            violations.append(t.describe(summary[t.metric]))
    mock = bool(summary.get("mock_mode")) or bool(summary.get("mock"))
    note = ""
    if mock:
        note = mock_note(
            summary.get("source", "mock"), summary.get("mock_mode"), summary.get("mock_seed")
        )
    return SummaryGate(not violations, tuple(checks), tuple(violations), mock, note)


def run_gate(
    docs: Sequence[Mapping[str, Any]], spec: Mapping[str, Any] | None, *, where: str = "run"
) -> RunGate:
    """The run-level gate of a run's documents; mock facts from its ``spec`` (or summaries)."""
    if spec is not None:
        source = spec.get("source")
        mock = source != "file"
        note = mock_note(source, spec.get("mode"), spec.get("seed"))
        run_id = spec.get("run_id")
    else:
        last = docs[-1].get("summary", {}) if docs and isinstance(docs[-1], Mapping) else {}
        mock = any(
            isinstance(d, Mapping)
            and isinstance(d.get("summary"), Mapping)
            and (bool(d["summary"].get("mock")) or bool(d["summary"].get("mock_mode")))
            for d in docs
        )
        note = mock_note(last.get("source", "mock"), last.get("mock_mode"), last.get("mock_seed"))
        run_id = docs[-1].get("run_id") if docs and isinstance(docs[-1], Mapping) else None
    return judge_run(docs, mock=mock, mock_note=note, run_id=run_id, where=where)


def load_run_dir(run_dir: Path) -> tuple[list[Any], dict[str, Any] | None]:
    """A run directory's iteration documents and its RUN.json config (None when absent)."""
    if not run_dir.is_dir():
        what = "not found" if not run_dir.exists() else "not a directory"
        raise InputError(f"{run_dir}: {what}; expected a run directory or an ITER_SUMMARY file")
    files = iteration_files(run_dir)
    if not files:
        raise InputError(f"{run_dir}: no ITER_SUMMARY_<i>.json files; is this a run directory?")
    numbers = {i for i, _ in files}
    gap = next((i for i in range(1, max(numbers) + 1) if i not in numbers), None)
    if gap is not None:
        raise InputError(
            f"{run_dir / f'ITER_SUMMARY_{gap}.json'}: not found; a run directory holds "
            f"iterations 1 to {max(numbers)} without a gap"
        )
    docs = [read_json(p) for _, p in files]
    for (i, p), doc in zip(files, docs, strict=True):
        if not isinstance(doc, Mapping) or doc.get("iteration") != i:
            raise InputError(f"{p}: not the ITER_SUMMARY document of iteration {i}")
    spec: dict[str, Any] | None = None
    run_json = run_dir / "RUN.json"
    if run_json.exists():
        doc = read_json(run_json)
        if not isinstance(doc, Mapping) or not isinstance(doc.get("config"), Mapping):
            raise InputError(f"{run_json}: not a RUN.json document (needs a 'config' object)")
        spec = dict(doc["config"])
    return docs, spec


def unfinished(
    gate: RunGate, run_dir: Path, spec: Mapping[str, Any] | None, completed: int
) -> RunGate:
    """A PASSED gate on a run that has not finished all its iterations becomes INCONCLUSIVE:
    an interrupted or cancelled run never proved the configuration it stopped at."""
    if gate.verdict != GateVerdict.PASSED:
        return gate
    status = _run_status(run_dir)
    planned = spec.get("iterations") if spec is not None else None
    if status == "succeeded" and isinstance(planned, int) and completed >= planned:
        return gate
    what = "no RUN.json" if status is None else f"status {status}"
    of = f" of {planned}" if isinstance(planned, int) else ""
    why = f"the run has not finished ({what}, {completed}{of} iterations): not a release verdict"
    return dataclasses.replace(gate, verdict=GateVerdict.INCONCLUSIVE, reasons=(why,))


def _run_status(run_dir: Path) -> str | None:
    run_json = run_dir / "RUN.json"
    if not run_json.exists():
        return None
    doc = read_json(run_json)
    return str(doc.get("status")) if isinstance(doc, Mapping) else None


def check_path(path: str | Path) -> tuple[Path, SummaryGate | RunGate]:
    """The gate ``soakq gate PATH`` runs: run-level on a directory, single-file on a file."""
    p = Path(path)
    if p.is_dir():
        docs, spec = load_run_dir(p)
        return p, unfinished(run_gate(docs, spec, where=str(p)), p, spec, len(docs))
    if not p.exists():
        raise InputError(f"{p}: file not found")
    return p, check_summary(read_json(p), where=str(p))
