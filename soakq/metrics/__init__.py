"""Metric sources: where one iteration's KPIs for one symbol come from (docs/simulator.md)."""

from soakq.metrics.base import (
    DIAGNOSTICS,
    KPI_KEYS,
    MOCK_META_KEYS,
    MODES,
    MeasureRequest,
    MetricsSource,
    get_source,
    source_names,
)

__all__ = [
    "DIAGNOSTICS",
    "KPI_KEYS",
    "MOCK_META_KEYS",
    "MODES",
    "MeasureRequest",
    "MetricsSource",
    "get_source",
    "source_names",
]
