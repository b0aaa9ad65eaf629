"""The metric-source port: one request in, one flat dict of KPIs out."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from soakq.errors import ConfigError

MODES: tuple[str, ...] = ("calm", "volatile", "spike")

# KPIs every source returns for a symbol-iteration (None when it could not be measured).
KPI_KEYS: tuple[str, ...] = (
    "net_bps",
    "adverse_bps_p95",
    "slippage_bps_p95",
    "risk_ratio",
    "maker_taker_ratio",
    "p95_latency_ms",
    "fills",
)
DIAGNOSTICS: tuple[str, ...] = ("cancel_ratio", "order_age_p95_ms", "snipes")
MOCK_META_KEYS: tuple[str, ...] = ("mock_mode", "mock_seed", "spike_count", "gap_events")


@dataclass(frozen=True)
class MeasureRequest:
    """Everything a source may use to measure one symbol in one iteration.

    ``sigma_scale``, ``spike_prob`` and ``gap_bps`` are None for "the regime's own default".
    """

    seed: int
    mode: str
    symbol: str
    iteration: int
    overrides: Mapping[str, int | float]
    sigma_scale: float | None = None
    spike_prob: float | None = None
    gap_bps: float | None = None
    report_dir: str | None = None  # the `file` source reads its reports from here
    extra: Mapping[str, Any] = field(default_factory=dict)


class MetricsSource(Protocol):
    """A metric source. ``measure`` is deterministic in the request for mock sources."""

    name: str
    mock: bool

    def measure(self, req: MeasureRequest) -> dict[str, Any]:
        """Return KPI_KEYS + DIAGNOSTICS (+ MOCK_META_KEYS for mock sources); JSON-safe values.

        Raises MetricsError when the iteration cannot be measured.
        """
        ...


def derive_seed(*parts: object) -> int:
    """A 64-bit seed from any parts, stable across processes (no Python ``hash``)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def source_names() -> tuple[str, ...]:
    return ("book", "kpi", "file")


def get_source(name: str) -> MetricsSource:
    """The source registered under ``name``; imported lazily so numpy loads only when needed."""
    if name == "kpi":
        from soakq.metrics.kpi import KpiGenerator

        return KpiGenerator()
    if name == "file":
        from soakq.metrics.file import FileSource

        return FileSource()
    if name == "book":
        from soakq.metrics.book import BookSimulator

        return BookSimulator()
    raise ConfigError(f"unknown metric source {name!r}; allowed: {', '.join(source_names())}")
