"""CLI side of distributed runs (imports the Celery side lazily). Filled in by the worker layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from soakq.errors import UserError


def _todo() -> int:
    raise UserError("distributed execution is not available yet; unset SOAKQ_REDIS_URL")


def submit_distributed(
    settings: Any, spec: Any, root: Path, *, wait: bool, explicit_id: bool
) -> int:
    return _todo()


def status_distributed(settings: Any, run_id: str, *, as_json: bool) -> int:
    return _todo()


def follow(settings: Any, run_id: str, *, timeout_s: float) -> int:
    return _todo()


def list_distributed(settings: Any) -> int:
    return _todo()


def cancel_distributed(settings: Any, run_id: str) -> int:
    return _todo()


def export_distributed(settings: Any, run_id: str, root: Path) -> int:
    return _todo()
