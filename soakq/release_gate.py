"""Release gate on an ITER_SUMMARY document (DESIGN §4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soakq.errors import InputError
from soakq.jsonio import is_finite_number, read_json
from soakq.thresholds import Threshold, fmt_num, release_thresholds


@dataclass(frozen=True)
class ReleaseResult:
    passed: bool
    checks: tuple[dict[str, Any], ...]
    violations: tuple[str, ...]
    mock: bool
    mock_note: str

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
        if self.mock:
            out.append(self.mock_note)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "checks": list(self.checks),
            "mock": self.mock,
            "mock_note": self.mock_note,
            "passed": self.passed,
            "verdict": "PASSED" if self.passed else "FAILED",
            "violations": list(self.violations),
        }


def failed_gate(error: str) -> dict[str, Any]:
    """The RELEASE_GATE document of a run whose final summary cannot be judged: FAILED, why."""
    return {"error": error, "passed": False, "verdict": "FAILED"}


def check_summary(doc: Any, *, where: str = "input") -> ReleaseResult:
    """Judge ``doc['summary']``; InputError when a KPI is missing or not finite."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("summary"), Mapping):
        raise InputError(f"{where}: no 'summary' object; expected an ITER_SUMMARY file")
    summary = doc["summary"]
    thresholds: tuple[Threshold, ...] = release_thresholds()
    checks: list[dict[str, Any]] = []
    violations: list[str] = []
    for t in thresholds:
        value = summary.get(t.metric)
        if not is_finite_number(value):
            what = "missing" if value is None else f"not a finite number ({value!r})"
            raise InputError(f"{where}: summary.{t.metric} is {what}; the release gate needs it")
        ok = t.passes(value)
        checks.append(
            {"metric": t.metric, "op": t.op, "passed": ok, "threshold": t.bound, "value": value}
        )
        if not ok:
            violations.append(t.describe(value))
    mock = bool(summary.get("mock_mode")) or bool(summary.get("mock"))
    note = ""
    if mock:
        note = (
            f"NOTE: mock data (source={summary.get('source', 'mock')}, "
            f"mode={summary.get('mock_mode')}, seed={summary.get('mock_seed')}): "
            "not a production verdict"
        )
    return ReleaseResult(not violations, tuple(checks), tuple(violations), mock, note)


def resolve_summary_path(path: str | Path) -> Path:
    """A file as given, or a run directory's ITER_SUMMARY_final.json."""
    p = Path(path)
    if p.is_dir():
        final = p / "ITER_SUMMARY_final.json"
        if not final.exists():
            raise InputError(f"{p}: run directory has no ITER_SUMMARY_final.json")
        return final
    if not p.exists():
        raise InputError(f"{p}: file not found")
    return p


def check_path(path: str | Path) -> tuple[Path, ReleaseResult]:
    p = resolve_summary_path(path)
    return p, check_summary(read_json(p), where=str(p))
