"""`soakq freeze`: a production snapshot from a run directory or its overrides file.

Refused (exit 2, nothing written) unless the run ended with the run-level release gate PASSED on
exactly these overrides, under the profile asked for; ``--force --reason TEXT`` overrides the
refusal and the snapshot records it (docs/gates.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soakq.errors import ConfigError, InputError
from soakq.jsonio import read_json, write_json
from soakq.params import KEYS, normalize_overrides, validate_overrides
from soakq.profiles import load_profile
from soakq.rules.freeze import STABLE_ITERATIONS, signature

OVERRIDES_FILE = "runtime_overrides.json"
RUN_FILE = "RUN.json"
GATE_FILE = "RELEASE_GATE.json"


def gate_summary(gate: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a snapshot carries of the release gate: the whole run-level document (or None)."""
    return None if gate is None else dict(gate)


def _overrides(path: Path) -> dict[str, Any]:
    raw = read_json(path)
    try:
        overrides = validate_overrides(raw, layer=str(path))
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    missing = [k for k in KEYS if k not in overrides]
    if missing:
        raise InputError(f"{path}: missing parameter(s) {', '.join(missing)}")
    return overrides


def _locate(input_path: Path) -> tuple[Path, Path | None]:
    """(the overrides file, the run directory beside it or None)."""
    if input_path.is_dir():
        path = input_path / OVERRIDES_FILE
        if not path.is_file():
            raise InputError(f"{input_path}: no {OVERRIDES_FILE}; expected a run directory")
        return path, input_path
    if not input_path.exists():
        raise InputError(f"{input_path}: file not found")
    parent = input_path.parent
    has_run = (parent / RUN_FILE).exists() or (parent / GATE_FILE).exists()
    return input_path, parent if has_run else None


def _frozen_at(docs: list[Any]) -> tuple[int | None, list[int]]:
    """(first iteration of the final freeze, the iterations that proved it) from the documents."""
    frozen_at = None
    for doc in reversed(docs):
        if not doc["summary"].get("freeze_active"):
            break
        frozen_at = int(doc["iteration"])
    if frozen_at is None:
        return None, []
    return frozen_at, list(range(max(1, frozen_at - STABLE_ITERATIONS + 1), frozen_at + 1))


class _Evidence:
    """What a run directory says about the overrides: its config, status and gate verdicts."""

    def __init__(self, run_dir: Path) -> None:
        from soakq.artifacts import iteration_files
        from soakq.rules.release_gate import load_run_dir, run_gate, unfinished

        self.run_dir = run_dir
        self.spec: dict[str, Any] | None = None
        self.status: str | None = None
        self.run_id: str | None = None
        run_file = run_dir / RUN_FILE
        if run_file.exists():
            doc = read_json(run_file)
            if not isinstance(doc, Mapping) or not isinstance(doc.get("config"), Mapping):
                raise InputError(f"{run_file}: not a RUN.json document (needs a 'config' object)")
            self.spec = dict(doc["config"])
            self.status = str(doc.get("status"))
            self.run_id = str(doc.get("run_id") or self.spec.get("run_id"))
        self.recorded: dict[str, Any] | None = None
        gate_file = run_dir / GATE_FILE
        if gate_file.exists():
            recorded = read_json(gate_file)
            if not isinstance(recorded, Mapping) or "verdict" not in recorded:
                raise InputError(f"{gate_file}: not a RELEASE_GATE document (needs 'verdict')")
            self.recorded = dict(recorded)
        self.gate: dict[str, Any] | None = None
        self.docs: list[Any] = []
        if iteration_files(run_dir):
            self.docs, spec = load_run_dir(run_dir)
            gate = run_gate(self.docs, spec, where=str(run_dir))
            self.gate = unfinished(gate, run_dir, spec, len(self.docs)).as_json()

    @property
    def name(self) -> str:
        return f"run {self.run_id}" if self.run_id else f"the run in {self.run_dir}"

    def refusals(self, overrides: Mapping[str, Any], profile: str | None) -> list[str]:
        out = []
        if self.status is not None and self.status != "succeeded":
            out.append(f"{self.name} ended {self.status}, not succeeded")
        recorded = None if self.recorded is None else self.recorded.get("verdict")
        if recorded != "PASSED":
            out.append(f"{self.name}'s release gate is {recorded or 'missing'}, not PASSED")
        if self.gate is None:
            out.append(f"{self.name} has no ITER_SUMMARY files to prove its verdict")
        else:
            if self.gate["verdict"] != "PASSED" and self.gate["verdict"] != recorded:
                out.append(f"{self.name}'s iterations give release gate {self.gate['verdict']}")
            judged = normalize_overrides(self.gate["window"]["overrides"])
            if judged != normalize_overrides(overrides):
                keys = sorted(k for k in KEYS if judged.get(k) != overrides.get(k))
                out.append(
                    f"the overrides differ from the configuration the release gate judged "
                    f"({', '.join(keys)})"
                )
        run_profile = None if self.spec is None else self.spec.get("profile")
        if profile is not None and run_profile is not None and profile != run_profile:
            out.append(f"--profile {profile} is not {self.name}'s profile ({run_profile})")
        return out


def freeze_snapshot(
    input_path: Path,
    output_path: Path,
    *,
    profile: str | None = None,
    force: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    """Validate, check the run's verdict and profile, and write the snapshot atomically.

    InputError (exit 2, nothing written) on a refusal unless ``force`` with a ``reason``.
    """
    reason = (reason or "").strip() or None
    if force and reason is None:
        raise InputError("--force needs --reason TEXT (the snapshot records why it was forced)")
    if reason is not None and not force:
        raise InputError("--reason goes with --force (a snapshot that needs no force has none)")
    if profile is not None:
        load_profile(profile)  # an unknown name is said as such, before any refusal
    if not Path(output_path).parent.is_dir():
        raise InputError(
            f"--output {output_path}: directory {Path(output_path).parent} does not exist"
        )
    overrides_path, run_dir = _locate(Path(input_path))
    if Path(output_path).resolve() == overrides_path.resolve():
        raise InputError(f"--output {output_path}: would overwrite the input overrides file")
    overrides = _overrides(overrides_path)
    evidence = _Evidence(run_dir) if run_dir is not None else None
    if evidence is None:
        refusals = [
            f"{overrides_path} has no run beside it ({RUN_FILE} / {GATE_FILE}): "
            "no release gate PASSED verdict"
        ]
    else:
        refusals = evidence.refusals(overrides, profile)
    if refusals and not force:
        raise InputError(
            f"refused: {'; '.join(refusals)} (nothing written; --force --reason TEXT overrides)"
        )
    spec: dict[str, Any] = (evidence.spec if evidence is not None else None) or {}
    run_profile = spec.get("profile")
    name = profile or run_profile
    if name is None:
        raise InputError(f"--profile NAME is needed: {overrides_path} has no run to name one")
    load_profile(str(name))
    source = spec.get("source")
    mock = None if source is None else source != "file"
    frozen_at, proving = _frozen_at(evidence.docs) if evidence is not None else (None, [])
    gate = None
    if evidence is not None:
        gate = evidence.gate if evidence.gate is not None else evidence.recorded
    snap = {
        "force_reason": reason,
        "forced": force,
        "frozen_at_iteration": frozen_at,
        "mock": mock,
        "mock_mode": spec.get("mode") if mock else None,
        "mock_seed": spec.get("seed") if mock else None,
        "overrides": overrides,
        "overridden_refusals": refusals if force else [],
        "profile": name,
        "proving_iterations": proving,
        "reason": f"frozen by `soakq freeze` from {input_path}",
        "release_gate": gate_summary(gate),
        "run_id": evidence.run_id if evidence is not None else None,
        "signature_hash": signature(overrides),
        "source": source,
    }
    write_json(output_path, snap)
    return snap
