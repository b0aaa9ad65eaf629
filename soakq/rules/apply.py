"""Applying accepted deltas to the overrides: relative, clamped, rounded, known keys only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from soakq.errors import ConfigError
from soakq.params import PARAMS, Number, Overrides, apply_delta, normalize_overrides


@dataclass(frozen=True)
class ApplyResult:
    overrides: Overrides
    changes: dict[str, dict[str, Any]]  # key -> {old, delta, new, clamped}
    applied: dict[str, Number]  # key -> effective change (new - old), non-zero only


def apply_deltas(overrides: Mapping[str, Number], deltas: Mapping[str, Number]) -> ApplyResult:
    """``new = round(clamp(old + delta, lo, hi), precision)`` for each delta; never a new key."""
    unknown = sorted(set(deltas) - set(PARAMS))
    if unknown:
        raise ConfigError(f"apply: unknown parameter(s) {', '.join(unknown)}")
    missing = sorted(k for k in deltas if k not in overrides)
    if missing:
        raise ConfigError(f"apply: delta for a parameter with no current value: {missing}")
    new = dict(normalize_overrides(overrides))
    changes: dict[str, dict[str, Any]] = {}
    applied: dict[str, Number] = {}
    for key in sorted(deltas):
        p = PARAMS[key]
        old = new[key]
        delta = p.normalize(deltas[key])
        value, clamped = apply_delta(key, old, delta)
        if value == old:
            continue
        new[key] = value
        changes[key] = {"clamped": clamped, "delta": delta, "new": value, "old": old}
        applied[key] = p.normalize(value - old)
    return ApplyResult(normalize_overrides(new), changes, applied)
