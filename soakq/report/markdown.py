"""STEADY_TREND.md: the trend report as Markdown. A pure function of the Trend (no clock).

Every section is described in docs/report.md. Each KPI is printed at one precision
(``report_model.KPI_DECIMALS``), parameters at theirs (``params.fmt``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from soakq.params import KEYS, PARAMS, Number, fmt
from soakq.report.model import TABLE_KPIS, Event, Trend, fmt_kpi, kpi_unit
from soakq.rules.thresholds import fmt_num

HISTORY_MD = "TREND_HISTORY.md"
HISTORY_PNG = "trend_history.png"

NA = "n/a"
NONE = "-"
MOCK_LINE = "mock data — not a production verdict"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], align: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _kpi_head(metric: str) -> str:
    return f"{metric} ({kpi_unit(metric)})"


def _delta(key: str, delta: Number) -> str:
    sign = "+" if delta > 0 else "-" if delta < 0 else ""
    return f"{sign}{fmt(key, abs(delta))}" if key in PARAMS else f"{delta:+}"


def _param_value(key: str, value: Number | None) -> str:
    if value is None:
        return NA
    return fmt(key, value) if key in PARAMS else str(value)


def _joined(items: list[str]) -> str:
    return ", ".join(items) if items else NONE


def _header(t: Trend) -> list[str]:
    spec = t.spec
    lines = [f"# Soak trend: {t.run_id}", ""]
    if t.mock:
        lines += [
            f"> **{MOCK_LINE.capitalize()}.** The KPIs come from the `{spec.get('source')}` "
            f"mock source (mode `{spec.get('mode')}`, seed {spec.get('seed')}), "
            "not from the live bot.",
            "",
        ]
    if t.mock:
        source = f"`{spec.get('source')}` · mode `{spec.get('mode')}` · seed {spec.get('seed')}"
    else:
        source = "`file` (KPI reports written by the live bot)"
    onoff = {True: "on", False: "off"}
    planned = t.outcome.get("iterations_planned", spec.get("iterations", "?"))
    lines += [
        f"- Profile: `{spec.get('profile', '?')}`",
        f"- Source: {source}",
        f"- Symbols: {', '.join(spec.get('symbols') or []) or NONE}",
        f"- Iterations: {len(t.rows)} of {planned} planned "
        f"({fmt_num(spec.get('minutes_per_iteration', 20.0))} simulated minutes each)",
        f"- KPI gate: {spec.get('kpi_gate', '?')} · guards: {onoff[t.guards_enabled]} · "
        f"auto-tune: {onoff[bool(spec.get('auto_tune', True))]}",
        "",
    ]
    return lines


def _freeze_line(t: Trend) -> str:
    freezes = [e for e in t.freeze_events if e.kind == "freeze"]
    unfreezes = [e for e in t.freeze_events if e.kind == "unfreeze"]
    if t.rows and t.rows[-1].frozen:
        since = freezes[-1].iteration if freezes else t.rows[0].iteration
        return (
            f"**frozen** since iteration {since}, signature `{t.final_signature}`: "
            f"{t.final_freeze_reason}"
        )
    if not freezes:
        return "**not frozen** (never reached 3 consecutive OK iterations without a change)"
    last = unfreezes[-1]
    return (
        f"**not frozen** at the end: frozen at iteration "
        f"{', '.join(str(e.iteration) for e in freezes)}; {last.text}"
    )


def _verdict(t: Trend) -> list[str]:
    o = t.outcome
    status = f"**{t.status}** ({len(t.rows)} of {o.get('iterations_planned', '?')} iterations)"
    if o.get("stop_reason"):
        status += f"; stopped: {o['stop_reason']}"
        if o.get("detail"):
            status += f" ({o['detail']})"
    gate = o.get("release_gate")
    if gate is None:
        gate_line = f"**not run** (run {t.status})"
    else:
        its = ((t.release or {}).get("window") or {}).get("iterations") or []
        on = f" on the window of iterations {its[0]}-{its[-1]}" if its else ""
        gate_line = f"**{gate}**{on}"
        if t.release is not None and t.release.get("reasons"):
            gate_line += ": " + "; ".join(t.release["reasons"])
        recomputed = (t.release or {}).get("verdict")
        if recomputed is not None and recomputed != gate:  # never, unless a file was changed
            gate_line += (
                f" — **but the iteration documents give {recomputed}**: this run directory was "
                "changed after the run; do not trust either"
            )
        if t.mock:
            gate_line += f" ({MOCK_LINE})"
    verdicts = Counter(r.verdict for r in t.rows)
    counts = ", ".join(f"{v} {verdicts.get(v, 0)}" for v in ("OK", "WARN", "FAIL"))
    applied = sum(len(r.applied) for r in t.rows)
    tuned = sum(1 for r in t.rows if r.applied)
    suppressed = sum(len(r.suppressed) for r in t.rows)
    trimmed = sum(len(r.trimmed) for r in t.rows)
    return [
        "## Verdict",
        "",
        f"- Run: {status}",
        f"- Release gate: {gate_line}",
        f"- Freeze: {_freeze_line(t)}",
        f"- KPI verdicts: {counts}",
        f"- Tuning: {applied} change(s) applied in {tuned} iteration(s); "
        f"{suppressed} suppressed and {trimmed} trimmed by guards",
        "",
    ]


def _iterations(t: Trend) -> list[str]:
    header = [
        "iter",
        "KPI",
        *(_kpi_head(k) for k in TABLE_KPIS),
        "fills",
        "applied deltas",
        "suppressed (param:reason)",
        "guard flags",
        "frozen",
    ]
    align = ["---:", ":---:", *["---:"] * len(TABLE_KPIS), "---:", "---", "---", "---", ":---:"]
    rows = []
    for r in t.rows:
        flags = _joined(list(r.flags)) if t.guards_enabled else "guards off"
        rows.append(
            [
                str(r.iteration),
                r.verdict,
                *(fmt_kpi(k, r.kpis[k]) for k in TABLE_KPIS),
                fmt_kpi("fills", r.fills),
                _joined([f"{k} {_delta(k, d)}" for k, d in sorted(r.applied.items())]),
                _joined([f"{k}:{g}" for k, g in sorted(r.suppressed.items())]),
                flags,
                "yes" if r.frozen else "no",
            ]
        )
    return ["## Iterations", "", *_table(header, align, rows), ""]


def _limit(op: str, metric: str, value: float) -> str:
    return f"{op} {fmt_kpi(metric, value)}"


def _statistics(t: Trend) -> list[str]:
    """Run-level statistics per KPI, the two gates' limits, and the release window's figures."""
    header = [
        "KPI",
        "unit",
        "n",
        "mean",
        "min",
        "max",
        "p95",
        "KPI gate WARN / FAIL",
        "release limit",
        "window n",
        "window mean",
        "window 95 % bound",
    ]
    align = ["---", "---", *["---:"] * 10]
    rows = []
    for st in t.stats:
        m = st.metric
        level = t.levels.get(m)
        gate = (
            f"{_limit(level.op, m, level.soft)} / {_limit(level.op, m, level.hard)}"
            if level is not None
            else NONE
        )
        limit = t.release_limits.get(m)
        release = _limit(limit.op, m, limit.bound) if limit is not None else NONE
        w = t.window_kpi(m)
        if w is None:
            wn, wmean, wbound = NONE, NONE, NONE
        else:
            wn, wmean = str(w["n"]), fmt_kpi(m, w["mean"])
            wbound = NA if w["bound"] is None else f"{w['bound_kind']} {fmt_kpi(m, w['bound'])}"
        rows.append(
            [
                m,
                kpi_unit(m),
                str(st.n),
                fmt_kpi(m, st.mean),
                fmt_kpi(m, st.min),
                fmt_kpi(m, st.max),
                fmt_kpi(m, st.p95),
                gate,
                release,
                wn,
                wmean,
                wbound,
            ]
        )
    intro = (
        "Over every iteration with a value (p95: linear interpolation between closest ranks). "
        "A value beyond the KPI gate's WARN (soft) limit makes an iteration WARN, beyond its "
        "FAIL (hard) limit FAIL; the release limit is the run-level gate's, judged on its "
        "window (`-`: not a release-gate KPI"
        + ("" if t.release is not None else "; the release gate did not run")
        + ")."
    )
    return ["## KPI statistics", "", intro, "", *_table(header, align, rows), ""]


def _symbols(t: Trend) -> list[str]:
    lines = ["## Per-symbol KPIs", ""]
    if not t.symbol_stats:
        return [*lines, "No per-symbol KPIs in the iteration summaries.", ""]
    lines += [
        "Mean over the iterations each symbol reported in (fills: total). The iteration "
        "summary combines symbols fill-weighted (net, risk, maker/taker) or by their worst "
        "value (p95s), see docs/gates.md.",
        "",
    ]
    header = ["symbol", "iterations", "fills", *(_kpi_head(k) for k in TABLE_KPIS)]
    align = ["---", "---:", "---:", *["---:"] * len(TABLE_KPIS)]
    rows = [
        [
            s.symbol,
            str(s.iterations),
            fmt_kpi("fills", s.fills),
            *(fmt_kpi(k, s.means[k]) for k in TABLE_KPIS),
        ]
        for s in t.symbol_stats
    ]
    return [*lines, *_table(header, align, rows), ""]


def _its(items: Iterable[int]) -> str:
    return ", ".join(str(i) for i in items) or NONE


def _event_summary(t: Trend) -> list[str]:
    """Which iterations each kind of event happened in."""
    flagged = {
        name: [r.iteration for r in t.rows if name in r.flags]
        for name in ("oscillation", "velocity", "cooldown")
    }
    rows = [[f"{name} guard", _its(its), str(len(its))] for name, its in flagged.items()]
    for kind in ("freeze", "unfreeze", "exhausted", "iteration error"):
        its = [e.iteration for e in t.events if e.kind == kind]
        rows.append([kind, _its(its), str(len(its))])
    return _table(["event", "iterations", "count"], ["---", "---", "---:"], rows)


def _event_line(e: Event) -> str:
    if e.kind == "guard":
        what = f"{e.guard} guard {e.action} `{e.param}`"
        return f"- iteration {e.iteration}: {what}" + (f": {e.text}" if e.text else "")
    line = f"- iteration {e.iteration}: **{e.kind}**: {e.text or 'no reason recorded'}"
    return line + (f"; signature `{e.signature}`" if e.signature else "")


def _events(t: Trend) -> list[str]:
    lines = ["## Guard and freeze events", "", *_event_summary(t), "", "### Guard events", ""]
    if not t.guards_enabled:
        lines.append(
            "Guards were off for this run (`--no-guards` or `ENABLE_GUARDS=0`): "
            "no delta was suppressed or trimmed."
        )
    elif t.guard_events:
        lines += [_event_line(e) for e in t.guard_events]
    else:
        lines.append("No guard suppressed, trimmed or bypassed anything.")
    lines += ["", "### Freeze events", ""]
    if t.freeze_events:
        lines += [_event_line(e) for e in t.freeze_events]
    else:
        lines.append("No freeze or unfreeze.")
    lines += ["", "### Exhaustion", ""]
    if t.exhausted_events:
        lines += [f"- iteration {e.iteration}: {e.text}" for e in t.exhausted_events]
    else:
        lines.append("No defensive rule was exhausted (`tuning.exhausted` always empty).")
    if t.error_events:  # a live bot's missing, late or invalid reports
        lines += ["", "### Iteration errors", "", *(_event_line(e) for e in t.error_events)]
    return [*lines, ""]


def _trajectory(t: Trend) -> list[str]:
    lines = ["## Parameter trajectory", ""]
    unchanged = [k for k in KEYS if k in t.start_overrides and k not in t.changed_params]
    if not t.changed_params:
        lines.append("No parameter changed during the run.")
    else:
        lines += [
            "Overrides after each iteration, for the parameters that changed "
            "(bounds in brackets; **bold**: changed in that iteration).",
            "",
        ]
        header = [
            "iter",
            *(f"{k} [{fmt(k, PARAMS[k].lo)}, {fmt(k, PARAMS[k].hi)}]" for k in t.changed_params),
        ]
        align = ["---:", *["---:"] * len(t.changed_params)]
        rows = [["start", *(_param_value(k, t.start_overrides.get(k)) for k in t.changed_params)]]
        before = dict(t.start_overrides)
        for r in t.rows:
            cells = [str(r.iteration)]
            for k in t.changed_params:
                v = r.overrides_after.get(k)
                text = _param_value(k, v)
                cells.append(f"**{text}**" if v is not None and v != before.get(k) else text)
            rows.append(cells)
            before = {**before, **r.overrides_after}
        lines += _table(header, align, rows)
    if unchanged:
        lines += [
            "",
            "Unchanged throughout: "
            + ", ".join(f"{k} = {_param_value(k, t.start_overrides[k])}" for k in unchanged)
            + ".",
        ]
    return [*lines, "", *_final_overrides(t)]


def _final_overrides(t: Trend) -> list[str]:
    """Start and final value of every parameter; a final value on a bound is flagged."""
    if not t.final_overrides:
        return []
    header = ["parameter", "unit", "bounds", "start", "final", "at bound"]
    align = ["---", "---", "---", "---:", "---:", "---"]
    rows = []
    for k, v in t.final_overrides.items():
        p = PARAMS[k]
        side = t.at_bound.get(k)
        rows.append(
            [
                k,
                p.unit,
                f"[{fmt(k, p.lo)}, {fmt(k, p.hi)}]",
                _param_value(k, t.start_overrides.get(k)),
                _param_value(k, v),
                f"**{side} bound**" if side else NONE,
            ]
        )
    pinned = [f"`{k}` ({side})" for k, side in t.at_bound.items()]
    note = (
        "Ends at a bound of the parameter table (docs/tuner.md): " + ", ".join(pinned) + "."
        if pinned
        else "No parameter ends at a bound of the parameter table (docs/tuner.md)."
    )
    return ["### Final overrides", "", note, "", *_table(header, align, rows), ""]


def _history(t: Trend) -> list[str]:
    """A pointer only: the comparison depends on the artifacts root, not on this run."""
    spec = t.spec
    return [
        "## Previous runs",
        "",
        f"This run's release-window means next to those of the last earlier finished runs of "
        f"profile `{spec.get('profile')}`, mode `{spec.get('mode')}` and source "
        f"`{spec.get('source')}` in the same artifacts root: [{HISTORY_MD}]({HISTORY_MD}) and "
        f"`{HISTORY_PNG}`. They are separate files because they depend on which other runs the "
        "artifacts root holds, not on this run's configuration and seed (docs/report.md).",
        "",
    ]


def _release(t: Trend) -> list[str]:
    """The release gate's window statistics: per KPI n, mean ± sd, bound and threshold."""
    if t.release is None:
        return []
    r = t.release
    window = r.get("window") or {}
    its = window.get("iterations") or []
    pct = fmt_num(float(r.get("confidence", 0.95)) * 100)
    if its:
        intro = (
            f"Window: iterations {its[0]}-{its[-1]} (n = {len(its)}, at least "
            f"{window.get('min_window')} needed), the iterations measured under exactly the "
            f"final configuration. One-sided {pct} % bounds of the mean (Student t; "
            f"{r.get('assumption')})."
        )
    else:
        intro = "Window: empty (the last iteration still changed the configuration)."
    header = ["KPI", "n", "mean ± sd", f"{pct} % bound", "threshold", "result"]
    align = ["---", "---:", "---:", "---:", "---:", ":---:"]
    rows = []
    for k in r.get("kpis") or []:
        metric = k["metric"]
        mean, sd = fmt_kpi(metric, k["mean"]), fmt_kpi(metric, k["sd"])
        bound = NA if k["bound"] is None else f"{k['bound_kind']} {fmt_kpi(metric, k['bound'])}"
        result = (
            "pass" if k["bound_passes"] else "fail" if k["n"] and not k["mean_passes"] else "open"
        )
        rows.append(
            [
                k["metric"],
                str(k["n"]),
                f"{mean} ± {sd}",
                bound,
                f"{k['op']} {fmt_kpi(metric, k['threshold'])}",
                result,
            ]
        )
    lines = ["## Release gate", "", intro, "", *_table(header, align, rows), ""]
    for v in r.get("vetoes") or []:
        lines.append(f"- veto: iteration {v['iteration']}: {'; '.join(v['reasons'])}")
    return [*lines, f"**{r.get('verdict')}**: " + "; ".join(r.get("reasons") or []), ""]


def render_markdown(t: Trend) -> str:
    """The whole STEADY_TREND.md text (ends with one newline)."""
    lines = [
        *_header(t),
        *_verdict(t),
        *_release(t),
        "![KPI and parameter trends](trend.png)",
        "",
        *_statistics(t),
        *_symbols(t),
        *_iterations(t),
        *_events(t),
        *_trajectory(t),
        *_history(t),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
