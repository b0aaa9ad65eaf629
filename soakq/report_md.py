"""STEADY_TREND.md: the trend report as Markdown. A pure function of the Trend (no clock)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from soakq.params import KEYS, PARAMS, Number, fmt
from soakq.report_model import TABLE_KPIS, Event, Trend
from soakq.thresholds import fmt_num

NA = "n/a"
NONE = "-"
MOCK_LINE = "mock data — not a production verdict"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Iterable[str], align: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _value(value: float | int | None) -> str:
    return NA if value is None else fmt_num(value)


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
        *TABLE_KPIS,
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
                *(_value(r.kpis[k]) for k in TABLE_KPIS),
                _value(r.fills),
                _joined([f"{k} {_delta(k, d)}" for k, d in sorted(r.applied.items())]),
                _joined([f"{k}:{g}" for k, g in sorted(r.suppressed.items())]),
                flags,
                "yes" if r.frozen else "no",
            ]
        )
    return ["## Iterations", "", *_table(header, align, rows), ""]


def _event_line(e: Event) -> str:
    if e.kind == "guard":
        what = f"{e.guard} guard {e.action} `{e.param}`"
        return f"- iteration {e.iteration}: {what}" + (f": {e.text}" if e.text else "")
    line = f"- iteration {e.iteration}: **{e.kind}**: {e.text or 'no reason recorded'}"
    return line + (f"; signature `{e.signature}`" if e.signature else "")


def _events(t: Trend) -> list[str]:
    lines = ["## Guard and freeze events", "", "### Guard events", ""]
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
    return [*lines, ""]


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
        mean = NA if k["mean"] is None else fmt_num(k["mean"])
        sd = NA if k["sd"] is None else fmt_num(k["sd"])
        bound = NA if k["bound"] is None else f"{k['bound_kind']} {fmt_num(k['bound'])}"
        result = (
            "pass" if k["bound_passes"] else "fail" if k["n"] and not k["mean_passes"] else "open"
        )
        rows.append(
            [
                k["metric"],
                str(k["n"]),
                f"{mean} ± {sd}",
                bound,
                f"{k['op']} {fmt_num(k['threshold'])}",
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
        *_iterations(t),
        *_events(t),
        *_trajectory(t),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
