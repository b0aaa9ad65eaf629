"""Profiles: named starting overrides (and optional KPI targets) shipped as package data."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from soakq.errors import ConfigError, InputError
from soakq.jsonio import loads
from soakq.params import KEYS, Overrides, validate_overrides
from soakq.rules.thresholds import check_min_fills

DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    overrides: Overrides
    symbols: tuple[str, ...]
    kpi_gate: dict[str, Any] = field(default_factory=dict)
    min_fills: int | None = None  # None: the table's default (docs/gates.md)


def _dir() -> Any:
    return resources.files("soakq.data").joinpath("profiles")


@cache
def profile_names() -> tuple[str, ...]:
    return tuple(sorted(p.name[:-5] for p in _dir().iterdir() if p.name.endswith(".json")))


@cache
def load_profile(name: str) -> Profile:
    """The named profile, validated; ConfigError naming the allowed names otherwise."""
    if name not in profile_names():
        raise ConfigError(f"unknown profile {name!r}; available: {', '.join(profile_names())}")
    layer = f"profile:{name}"
    try:
        raw = loads(_dir().joinpath(f"{name}.json").read_text("utf-8"), what=layer)
    except InputError as exc:  # a bad profile file is configuration, not a command's input
        raise ConfigError(str(exc)) from None
    overrides = validate_overrides(raw.get("overrides", {}), layer=layer)
    symbols = tuple(raw.get("symbols", ()))
    if not symbols:
        raise ConfigError(f"{layer}: no symbols declared")
    if name == DEFAULT_PROFILE and set(overrides) != set(KEYS):
        raise ConfigError(f"{layer}: the default profile must set all of {', '.join(KEYS)}")
    min_fills = raw.get("min_fills")
    return Profile(
        name,
        str(raw.get("description", "")),
        overrides,
        symbols,
        dict(raw.get("kpi_gate", {})),
        None if min_fills is None else check_min_fills(min_fills, layer=layer),
    )
