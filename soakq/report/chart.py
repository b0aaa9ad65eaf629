"""trend.png and trend_history.png (docs/report.md).

trend.png: KPI panels with both gates' limits (KPI gate WARN/FAIL, release-gate limit), the
release window shaded with its 95 % bound, units and iteration axis; parameter trajectories with
the ones ending at a bound marked; guard and freeze markers. trend_history.png: the release-window
means of the previous runs of the same profile, mode and source (soakq/report/history.py).

Rendered with the Agg canvas on a bare ``Figure`` (no pyplot, no global backend switch, nothing
displayed) into memory. The bytes are deterministic for one matplotlib installation: matplotlib's
default style (not the user's matplotlibrc), no ``Software`` tag, no timestamp.
"""

from __future__ import annotations

import io
import math
import threading
from typing import TYPE_CHECKING, Any

from soakq.params import KEYS, PARAMS, fmt
from soakq.report.model import CHART_KPIS, Trend, fmt_kpi, kpi_unit, normalised

if TYPE_CHECKING:
    from soakq.report.history import PastRun

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 8.0, 100
HISTORY_WIDTH_IN, HISTORY_HEIGHT_IN = 10.0, 3.0
RELEASE_COLOR = "#000000"
WINDOW_FILL, BOUND_COLOR = "#c7e9c0", "#238b45"
CURRENT_COLOR = "#d62728"
VERDICT_COLORS = {"OK": "#2ca02c", "WARN": "#ff7f0e", "FAIL": "#d62728"}
OTHER_COLOR = "#7f7f7f"
SOFT_COLOR, HARD_COLOR = "#ff7f0e", "#d62728"
GUARD_COLOR, FREEZE_COLOR, UNFREEZE_COLOR = "#9467bd", "#1f77b4", "#8c564b"
FROZEN_FILL = "#aec7e8"

# rc_context/style.context change process-wide rcParams; one render at a time keeps them sane.
_RENDER_LOCK = threading.Lock()


def _spans(iterations: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of iteration numbers as (first, last)."""
    spans: list[tuple[int, int]] = []
    for i in iterations:
        if spans and i == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], i)
        else:
            spans.append((i, i))
    return spans


def _mark_freeze(ax: Any, t: Trend) -> None:
    for first, last in _spans([r.iteration for r in t.rows if r.frozen]):
        ax.axvspan(first - 0.5, last + 0.5, color=FROZEN_FILL, alpha=0.35, lw=0, zorder=0)
    for e in t.freeze_events:
        color = FREEZE_COLOR if e.kind == "freeze" else UNFREEZE_COLOR
        ax.axvline(e.iteration, color=color, lw=1.0, ls="--", zorder=1)


def _edge_marks(ax: Any, xs: list[int], y: float, marker: str, color: str, **kw: Any) -> None:
    """Markers at iterations ``xs``, at height ``y`` of the panel (0 bottom, 1 top)."""
    if xs:
        transform = ax.get_xaxis_transform()
        ax.plot(xs, [y] * len(xs), transform=transform, ls="none", marker=marker, ms=6,
                color=color, zorder=4, **kw)  # fmt: skip


def _mark_guards(ax: Any, t: Trend) -> None:
    xs = sorted({e.iteration for e in t.guard_events})
    _edge_marks(ax, xs, 1.0, "v", GUARD_COLOR, clip_on=False)


def _op(op: str) -> str:
    return {">=": "\u2265", "<=": "\u2264"}.get(op, op)


def _mark_window(ax: Any, t: Trend, metric: str) -> None:
    """The release window shaded; the KPI's one-sided 95 % bound drawn across it."""
    if not t.window:
        return
    first, last = t.window[0] - 0.5, t.window[-1] + 0.5
    ax.axvspan(first, last, color=WINDOW_FILL, alpha=0.45, lw=0, zorder=0.5)
    stats = t.window_kpi(metric)
    if stats is not None and stats.get("bound") is not None:
        ax.plot([first, last], [stats["bound"]] * 2, color=BOUND_COLOR, lw=1.6, ls=":", zorder=2.5)


def _kpi_panel(ax: Any, t: Trend, metric: str) -> None:
    xs = [r.iteration for r in t.rows]
    ys = [r.kpis[metric] if r.kpis[metric] is not None else math.nan for r in t.rows]
    _mark_freeze(ax, t)
    ax.plot(xs, ys, color="#555555", lw=1.0, zorder=2)
    colors = [VERDICT_COLORS.get(r.verdict, OTHER_COLOR) for r in t.rows]
    ax.scatter(xs, ys, c=colors, s=18, zorder=3, edgecolors="none")
    _edge_marks(ax, [r.iteration for r in t.rows if r.kpis[metric] is None], 0.04, "x", HARD_COLOR)
    level = t.levels.get(metric)
    unit = kpi_unit(metric)
    title = f"{metric} [{unit}]"
    limits = []
    if level is not None:
        ax.axhline(level.soft, color=SOFT_COLOR, lw=1.0, ls="--", zorder=1.5)
        ax.axhline(level.hard, color=HARD_COLOR, lw=1.0, ls="-", zorder=1.5)
        limits.append(f"W{_op(level.op)}{fmt_kpi(metric, level.soft)}")
        limits.append(f"F{_op(level.op)}{fmt_kpi(metric, level.hard)}")
    release = t.release_limits.get(metric)
    if release is not None:
        ax.axhline(release.bound, color=RELEASE_COLOR, lw=1.0, ls="-.", zorder=1.6)
        limits.append(f"R{_op(release.op)}{fmt_kpi(metric, release.bound)}")
    _mark_window(ax, t, metric)
    if limits:
        title += "  " + " ".join(limits)
    _mark_guards(ax, t)
    ax.set_title(title, fontsize=7.5, loc="left", pad=9)  # room for the guard markers
    ax.set_ylabel(unit, fontsize=8)
    ax.set_xlabel("iteration", fontsize=8, labelpad=1)
    ax.tick_params(labelsize=8)
    ax.set_axisbelow(True)  # grid under the threshold lines, which often sit on a tick
    ax.grid(True, color="#e5e5e5", lw=0.6)


def _param_panel(ax: Any, t: Trend) -> None:
    xs = [0, *(r.iteration for r in t.rows)]
    _mark_freeze(ax, t)
    cmap = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    for n, key in enumerate(KEYS):
        points = [t.start_overrides.get(key), *(r.overrides_after.get(key) for r in t.rows)]
        ys = [normalised(key, v) if v is not None else math.nan for v in points]
        p = PARAMS[key]
        changed = key in t.changed_params
        ax.plot(
            xs,
            ys,
            color=cmap[n % len(cmap)],
            lw=1.6 if changed else 1.0,
            ls="-" if changed else ":",
            marker="o" if changed else None,
            ms=2.5,
            label=f"{key} [{fmt(key, p.lo)}, {fmt(key, p.hi)}]"
            + (f" ends at {t.at_bound[key]} bound" if key in t.at_bound else ""),
            zorder=2,
        )
        if key in t.at_bound:
            ax.plot(
                [xs[-1]],
                [ys[-1]],
                marker="s",
                ms=8,
                mfc="none",
                mew=1.5,
                color="#000000",
                zorder=5,
                clip_on=False,
            )
        for r in t.rows:
            v = r.overrides_after.get(key)
            if v is None:
                continue
            if key in r.suppressed:
                ax.plot(
                    [r.iteration],
                    [normalised(key, v)],
                    marker="x",
                    ms=7,
                    mew=1.5,
                    color=GUARD_COLOR,
                    zorder=4,
                )
            if key in r.trimmed:
                ax.plot(
                    [r.iteration],
                    [normalised(key, v)],
                    marker="^",
                    ms=6,
                    mfc="none",
                    color=GUARD_COLOR,
                    zorder=4,
                )
    ax.set_ylim(-0.05, 1.05)
    ax.set_ylabel("position in bounds", fontsize=8)
    ax.set_title(
        "parameters, normalised to their bounds (0 = lo, 1 = hi; dotted: unchanged)",
        fontsize=9,
        loc="left",
    )
    ax.set_xlabel("iteration (0 = start)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.set_axisbelow(True)  # grid under the threshold lines, which often sit on a tick
    ax.grid(True, color="#e5e5e5", lw=0.6)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)


def _legend_handles() -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def dot(color: str, label: str) -> Line2D:
        return Line2D([], [], ls="none", marker="o", ms=5, color=color, label=label)

    return [
        dot(VERDICT_COLORS["OK"], "KPI OK"),
        dot(VERDICT_COLORS["WARN"], "KPI WARN"),
        dot(VERDICT_COLORS["FAIL"], "KPI FAIL"),
        Line2D([], [], ls="none", marker="x", color=HARD_COLOR, label="KPI missing"),
        Line2D([], [], color=SOFT_COLOR, ls="--", label="KPI gate WARN (W)"),
        Line2D([], [], color=HARD_COLOR, ls="-", label="KPI gate FAIL (F)"),
        Line2D([], [], color=RELEASE_COLOR, ls="-.", label="release-gate limit (R)"),
        Patch(color=WINDOW_FILL, alpha=0.45, label="release window"),
        Line2D([], [], color=BOUND_COLOR, ls=":", lw=1.6, label="window 95 % bound"),
        Line2D([], [], ls="none", marker="v", color=GUARD_COLOR, label="guard event"),
        Line2D([], [], ls="none", marker="x", color=GUARD_COLOR, label="suppressed"),
        Line2D([], [], ls="none", marker="^", mfc="none", color=GUARD_COLOR, label="trimmed"),
        Line2D([], [], color=FREEZE_COLOR, ls="--", label="freeze"),
        Line2D([], [], color=UNFREEZE_COLOR, ls="--", label="unfreeze"),
        Patch(color=FROZEN_FILL, alpha=0.35, label="frozen"),
        Line2D(
            [], [], ls="none", marker="s", mfc="none", color="#000000", label="param at a bound"
        ),
    ]


def _title(t: Trend) -> str:
    spec = t.spec
    if t.mock:
        src = f"source {spec.get('source')} / mode {spec.get('mode')} / seed {spec.get('seed')}"
    else:
        src = "source file (live bot)"
    gate = t.outcome.get("release_gate") or "not run"
    frozen = "frozen" if t.rows and t.rows[-1].frozen else "not frozen"
    guards = "" if t.guards_enabled else ", guards off"
    return (
        f"{t.run_id}\nprofile {spec.get('profile')}, {src}{guards}  |  run {t.status}, "
        f"release gate {gate}, {frozen}"
    )


def _trend_figure(t: Trend) -> Any:
    """The trend.png figure (call under ``_RENDER_LOCK`` and matplotlib's default style)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    # 3 x 3: five KPI panels and the legend, then the parameters across the bottom row.
    # Fixed margins, not constrained layout: it would cost ~40 % of the render time.
    grid = fig.add_gridspec(
        3,
        3,
        height_ratios=(1.0, 1.0, 1.2),
        left=0.065,
        right=0.985,
        top=0.88,
        bottom=0.14,
        hspace=0.5,
        wspace=0.28,
    )
    first = fig.add_subplot(grid[0, 0])
    axes = [first, *(fig.add_subplot(grid[i // 3, i % 3], sharex=first) for i in (1, 2, 3, 4))]
    for ax, metric in zip(axes, CHART_KPIS, strict=True):
        _kpi_panel(ax, t, metric)
    legend_ax = fig.add_subplot(grid[1, 2])
    legend_ax.axis("off")
    legend_ax.legend(handles=_legend_handles(), loc="center", ncol=2, fontsize=7, frameon=False)
    params_ax = fig.add_subplot(grid[2, :], sharex=first)
    _param_panel(params_ax, t)
    last = t.rows[-1].iteration if t.rows else 1
    first.set_xlim(-0.5, last + 0.5)
    first.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(_title(t), fontsize=10, y=0.99)
    if t.mock:
        fig.text(
            0.995,
            0.995,
            "MOCK DATA — not a production verdict",
            ha="right",
            va="top",
            fontsize=9,
            color=HARD_COLOR,
            fontweight="bold",
        )
    return fig


def trend_figure(t: Trend) -> Any:
    """The trend.png figure itself, for inspection (tests): panels, lines, labels."""
    import matplotlib.style

    with _RENDER_LOCK, matplotlib.style.context("default"):
        return _trend_figure(t)


def render_png(t: Trend) -> bytes:
    """The chart as PNG bytes (WIDTH_IN x HEIGHT_IN inches at DPI)."""
    import matplotlib.style

    with _RENDER_LOCK, matplotlib.style.context("default"):
        fig = _trend_figure(t)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def render_history_png(past: list[PastRun], current: PastRun, title: str) -> bytes:
    """trend_history.png: one small panel per release-gate KPI, the window mean of each earlier
    run (oldest first) and of this run (last, highlighted), with the release-gate limit."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from soakq.rules.thresholds import release_thresholds

    runs = [*past, current]
    xs = list(range(1, len(runs) + 1))
    labels = [*(str(i) for i in xs[:-1]), "this"]
    with _RENDER_LOCK, matplotlib.style.context("default"):
        fig = Figure(figsize=(HISTORY_WIDTH_IN, HISTORY_HEIGHT_IN), dpi=DPI)
        FigureCanvasAgg(fig)
        thresholds = release_thresholds()
        grid = fig.add_gridspec(
            1, len(thresholds), left=0.065, right=0.985, top=0.78, bottom=0.2, wspace=0.38
        )
        for n, th in enumerate(thresholds):
            ax = fig.add_subplot(grid[0, n])
            m = th.metric
            ys = [r.means.get(m) for r in runs]
            ys_plot = [v if v is not None else math.nan for v in ys]
            ax.plot(xs, ys_plot, color="#555555", lw=1.0, marker="o", ms=3, zorder=2)
            if ys[-1] is not None:
                ax.plot([xs[-1]], [ys[-1]], marker="*", ms=11, color=CURRENT_COLOR, zorder=3)
            else:  # this run has no window (never judged, or the last iteration still tuned)
                ax.text(
                    xs[-1],
                    0.5,
                    "no\nwindow",
                    transform=ax.get_xaxis_transform(),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=CURRENT_COLOR,
                )
            ax.axhline(th.bound, color=RELEASE_COLOR, lw=1.0, ls="-.", zorder=1)
            ax.set_title(
                f"{m} [{kpi_unit(m)}]  R{_op(th.op)}{fmt_kpi(m, th.bound)}",
                fontsize=7.5,
                loc="left",
            )
            ax.set_xticks(xs, labels)
            ax.set_xlim(0.5, len(runs) + 0.5)
            ax.set_xlabel("run (oldest first)", fontsize=8, labelpad=1)
            ax.set_ylabel(f"window mean [{kpi_unit(m)}]", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_axisbelow(True)
            ax.grid(True, color="#e5e5e5", lw=0.6)
        fig.suptitle(title, fontsize=9, y=0.98)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
