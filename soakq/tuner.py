"""Micro-tuner: relative deltas from the iteration's KPIs (DESIGN §4, rules 1–8)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from soakq.jsonio import is_finite_number
from soakq.params import PARAMS, Number, fmt
from soakq.thresholds import fmt_num


@dataclass(frozen=True)
class Proposal:
    """Deltas by parameter, a one-line rationale for each, and a note on the whole."""

    deltas: dict[str, Number] = field(default_factory=dict)
    rationale: dict[str, str] = field(default_factory=dict)
    note: str = ""


def _metric(summary: Mapping[str, Any], key: str) -> float | None:
    value = summary.get(key)
    return float(value) if is_finite_number(value) else None


def relative_move(
    key: str,
    old: Number,
    *,
    add: float | None = None,
    mul: float | None = None,
    cap: float | None = None,
    floor: float | None = None,
) -> Number | None:
    """The delta that moves ``key`` from ``old`` by ``add`` or ``×mul``, capped/floored/bounded.

    Returns None when the move would be zero or would go against its intent (e.g. a cap below
    the current value would turn an increase into a decrease).
    """
    p = PARAMS[key]
    if add is not None:
        target, intent = old + add, (1 if add > 0 else -1)
    else:
        assert mul is not None
        target, intent = old * mul, (1 if mul > 1 else -1)
    if cap is not None:
        target = min(target, cap)
    if floor is not None:
        target = max(target, floor)
    new = p.normalize(p.clamp(target))
    delta = p.normalize(new - old)
    if delta == 0 or (delta > 0) != (intent > 0):
        return None
    return delta


# One row per move: (rule number, key, move kwargs). Conditions live in `propose`.
_RULE_MOVES: dict[str, tuple[tuple[str, dict[str, float]], ...]] = {
    "1": (
        ("min_interval_ms", {"add": 5, "cap": 80}),
        ("impact_cap_ratio", {"add": -0.01, "floor": 0.04}),
        ("tail_age_ms", {"add": 30, "cap": 800}),
    ),
    "2": (
        ("min_interval_ms", {"add": 5, "cap": 80}),
        ("impact_cap_ratio", {"add": -0.005, "floor": 0.04}),
    ),
    "3": (
        ("min_interval_ms", {"add": -3, "floor": 50}),
        ("impact_cap_ratio", {"add": 0.005, "cap": 0.10}),
    ),
    "4": (
        ("base_spread_bps_delta", {"add": 0.015}),
        ("replace_rate_per_min", {"mul": 0.85}),
        ("min_interval_ms", {"add": 25, "cap": 100}),
    ),
    "5a": (("tail_age_ms", {"add": 50, "cap": 800}),),
    "5b": (
        ("tail_age_ms", {"add": 75, "cap": 800}),
        ("replace_rate_per_min", {"mul": 0.9}),
    ),
    "6a": (
        ("impact_cap_ratio", {"add": -0.01}),
        ("max_delta_ratio", {"add": -0.01}),
    ),
    "6b": (
        ("base_spread_bps_delta", {"add": 0.02, "cap": 0.25}),
        ("tail_age_ms", {"add": 30}),
    ),
}


def _fired_rules(m: Mapping[str, float | None]) -> list[tuple[str, str]]:
    """The rules whose conditions hold, in order, each with its condition text."""
    risk, net = m["risk_ratio"], m["net_bps"]
    mt, lat = m["maker_taker_ratio"], m["p95_latency_ms"]
    adv, slip = m["adverse_bps_p95"], m["slippage_bps_p95"]
    fired: list[tuple[str, str]] = []
    if risk is not None:
        if risk >= 0.60:
            fired.append(("1", f"risk {fmt_num(risk)} >= 0.60"))
        elif risk >= 0.40:
            fired.append(("2", f"risk {fmt_num(risk)} in [0.40, 0.60)"))
        if risk < 0.35 and net is not None and net >= 3.0:
            fired.append(("3", f"risk {fmt_num(risk)} < 0.35 and net {fmt_num(net)} >= 3.0"))
        if risk <= 0.40 and mt is not None and net is not None and mt < 0.85 and net >= 2.7:
            fired.append(
                (
                    "4",
                    f"risk {fmt_num(risk)} <= 0.40, maker/taker {fmt_num(mt)} < 0.85, "
                    f"net {fmt_num(net)} >= 2.7",
                )
            )
    if lat is not None:
        if 330 <= lat <= 360:
            fired.append(("5a", f"p95 latency {fmt_num(lat)} ms in [330, 360]"))
        elif lat > 360:
            fired.append(("5b", f"p95 latency {fmt_num(lat)} ms > 360"))
    if adv is not None and adv > 3.5:
        fired.append(("6a", f"adverse p95 {fmt_num(adv)} bp > 3.5"))
    if slip is not None and slip > 2.5:
        fired.append(("6b", f"slippage p95 {fmt_num(slip)} bp > 2.5"))
    return fired


def propose(summary: Mapping[str, Any], overrides: Mapping[str, Number]) -> Proposal:
    """Apply rules 1–8 to the aggregate KPIs; first rule to set a key wins."""
    m = {
        k: _metric(summary, k)
        for k in (
            "risk_ratio",
            "net_bps",
            "maker_taker_ratio",
            "p95_latency_ms",
            "adverse_bps_p95",
            "slippage_bps_p95",
        )
    }
    deltas: dict[str, Number] = {}
    rationale: dict[str, str] = {}
    for rule, condition in _fired_rules(m):
        for key, kwargs in _RULE_MOVES[rule]:
            if key in deltas:
                continue
            delta = relative_move(key, overrides[key], **kwargs)
            if delta is None:
                continue
            deltas[key] = delta
            sign = "+" if delta > 0 else ""
            rationale[key] = f"rule {rule[0]}: {condition} -> {key} {sign}{fmt(key, delta)}"
    if not deltas:
        return Proposal(note="no rule fired")

    risk, net = m["risk_ratio"], m["net_bps"]
    # Rule 7: keep the proposal only if risk >= 0.40 or net < 3.0. Unknown metrics cannot
    # prove stability, so they keep it.
    if risk is not None and net is not None and risk < 0.40 and net >= 3.0:
        return Proposal(
            note=f"stable: no change (rule 7: risk {fmt_num(risk)} < 0.40 and net "
            f"{fmt_num(net)} >= 3.0)"
        )
    # Rule 8: widening the spread while shortening min_interval at high risk drops the latter.
    if (
        risk is not None
        and risk >= 0.40
        and deltas.get("base_spread_bps_delta", 0) > 0
        and deltas.get("min_interval_ms", 0) < 0
    ):
        del deltas["min_interval_ms"]
        del rationale["min_interval_ms"]
    return Proposal(deltas=deltas, rationale=rationale, note=f"{len(deltas)} change(s) proposed")
