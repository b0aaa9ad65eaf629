"""The handshake files soakq writes in the bot directory before each live iteration.

``runtime_overrides.json`` holds the six flat keys in force for the iteration (nothing else: it is
the file the bot already reads); ``SOAK_ITERATION.json`` says which run and iteration they are
for, their ``state_hash``, how long to measure (``window_s``) and when soakq stops waiting
(``deadline_ts``, epoch seconds). Both are written atomically, the overrides first, so a bot that
wakes on ``SOAK_ITERATION.json`` always finds the overrides it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from soakq.jsonio import sha256_of, write_json
from soakq.params import normalize_overrides

OVERRIDES_FILE = "runtime_overrides.json"
HANDSHAKE_FILE = "SOAK_ITERATION.json"


def report_name(iteration: int) -> str:
    return f"KPI_REPORT_{iteration}.json"


class Handshake(BaseModel):
    """The content of ``SOAK_ITERATION.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    iteration: int
    state_hash: str
    window_s: float
    deadline_ts: float

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def make_handshake(
    run_id: str,
    iteration: int,
    overrides: Mapping[str, Any],
    *,
    window_s: float,
    report_timeout_s: float,
    now: float,
) -> tuple[dict[str, Any], Handshake]:
    """The overrides document and the handshake for ``iteration`` (pure)."""
    flat = normalize_overrides(overrides)
    hs = Handshake(
        run_id=run_id,
        iteration=iteration,
        state_hash=sha256_of(flat),
        window_s=window_s,
        deadline_ts=round(now + window_s + report_timeout_s, 3),
    )
    return flat, hs


def write_handshake(bot_dir: str | Path, flat: Mapping[str, Any], hs: Handshake) -> None:
    """Write the overrides, then the handshake that points at them (each atomically)."""
    directory = Path(bot_dir)
    write_json(directory / OVERRIDES_FILE, dict(flat))
    write_json(directory / HANDSHAKE_FILE, hs.as_json())
