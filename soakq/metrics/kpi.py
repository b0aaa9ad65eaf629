"""`kpi`: the roadmap's open-loop KPI generator (PROMPT 10). It ignores the overrides."""

from __future__ import annotations

import random
from typing import Any

from soakq.errors import ConfigError
from soakq.metrics.base import MODES, MeasureRequest, derive_seed

# Means and spreads per mode, from the roadmap's MarketGenerator.
_MODE_MEANS: dict[str, dict[str, tuple[float, float]]] = {
    "calm": {"net_bps": (3.0, 0.5), "adverse_bps_p95": (2.0, 0.3), "risk_ratio": (0.30, 0.05)},
    "volatile": {"net_bps": (2.5, 1.5), "adverse_bps_p95": (3.0, 1.0), "risk_ratio": (0.40, 0.15)},
    "spike": {"net_bps": (3.0, 0.5), "adverse_bps_p95": (2.0, 0.3), "risk_ratio": (0.30, 0.05)},
}
_SPIKE = {"net_bps": 1.0, "adverse_bps_p95": 8.0, "risk_ratio": 0.70}
_DEFAULT_SPIKE_PROB = 0.05
_DEFAULT_GAP_BPS = 10.0
_GAP_PROB = 0.02


class KpiGenerator:
    """KPIs drawn around fixed means per mode; spikes and rare gaps. Seeded per symbol-iteration."""

    name = "kpi"
    mock = True

    def measure(self, req: MeasureRequest) -> dict[str, Any]:
        if req.mode not in MODES:
            raise ConfigError(f"mode {req.mode!r}: allowed {', '.join(MODES)}")
        rng = random.Random(derive_seed("kpi", req.seed, req.mode, req.symbol, req.iteration))
        scale = 1.0 if req.sigma_scale is None else req.sigma_scale
        spike_prob = _DEFAULT_SPIKE_PROB if req.spike_prob is None else req.spike_prob
        gap_bps = _DEFAULT_GAP_BPS if req.gap_bps is None else req.gap_bps

        spike = req.mode == "spike" and rng.random() < spike_prob
        if spike:
            base = dict(_SPIKE)
        else:
            base = {
                k: mu + rng.gauss(0.0, sd * scale) for k, (mu, sd) in _MODE_MEANS[req.mode].items()
            }
        gap = rng.random() < _GAP_PROB
        if gap:
            base["net_bps"] -= gap_bps
        out: dict[str, Any] = {
            "net_bps": max(base["net_bps"], -10.0),
            "adverse_bps_p95": max(base["adverse_bps_p95"], 0.0),
            "slippage_bps_p95": max(1.5 + rng.gauss(0.0, 0.3 * scale), 0.0),
            "risk_ratio": min(max(base["risk_ratio"], 0.0), 1.0),
            "maker_taker_ratio": min(max(0.90 + rng.gauss(0.0, 0.03 * scale), 0.0), 1.0),
            "p95_latency_ms": max(250.0 + rng.gauss(0.0, 50.0 * scale), 1.0),
            "fills": max(int(100 + rng.gauss(0.0, 20.0 * scale)), 0),
            "cancel_ratio": min(max(0.5 + rng.gauss(0.0, 0.05), 0.0), 1.0),
            "order_age_p95_ms": max(600.0 + rng.gauss(0.0, 60.0), 0.0),
            "snipes": 0,
        }
        result = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}
        result.update(
            mock_mode=req.mode, mock_seed=req.seed, spike_count=int(spike), gap_events=int(gap)
        )
        return result
