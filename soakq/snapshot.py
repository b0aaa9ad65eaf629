"""`soakq freeze`: a production snapshot from an overrides file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soakq.errors import ConfigError, InputError
from soakq.freeze import signature
from soakq.jsonio import read_json, write_json
from soakq.params import KEYS, validate_overrides
from soakq.profiles import load_profile


def freeze_file(input_path: Path, output_path: Path, profile: str) -> dict[str, Any]:
    """Validate the overrides (all six keys, in bounds) and write the snapshot atomically."""
    load_profile(profile)
    raw = read_json(input_path)
    try:
        overrides = validate_overrides(raw, layer=str(input_path))
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    missing = [k for k in KEYS if k not in overrides]
    if missing:
        raise InputError(f"{input_path}: missing parameter(s) {', '.join(missing)}")
    run: dict[str, Any] = {}
    run_json = input_path.parent / "RUN.json"
    if run_json.exists():
        try:
            run = read_json(run_json)
        except InputError:
            run = {}
    cfg = run.get("config", {}) if isinstance(run, dict) else {}
    source = cfg.get("source")
    snap = {
        "frozen_at_iteration": None,
        "mock": None if source is None else source != "file",
        "mock_mode": cfg.get("mode") if source and source != "file" else None,
        "mock_seed": cfg.get("seed") if source and source != "file" else None,
        "overrides": overrides,
        "profile": profile,
        "proving_iterations": [],
        "reason": f"frozen by `soakq freeze` from {input_path.name}",
        "run_id": run.get("run_id") if isinstance(run, dict) else None,
        "signature_hash": signature(overrides),
        "source": source,
    }
    write_json(output_path, snap)
    return snap
