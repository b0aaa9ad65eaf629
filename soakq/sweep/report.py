"""SWEEP.md and sweep.png: a sweep's cells and paired comparisons for people (docs/sweeps.md)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soakq.jsonio import write_bytes, write_json, write_text


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _p(x: float | None) -> str:
    if x is None:
        return "-"
    return "< 0.0001" if x < 1e-4 else f"{x:.4f}"


def _num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def sweep_markdown(doc: Mapping[str, Any]) -> str:
    """The sweep as a markdown page: config, one row per cell, one per comparison."""
    c = doc["config"]
    a, b = c["arms"]
    lines = [
        f"# Sweep {doc['sweep_id']}",
        "",
        f"Compare **{c['compare']}** (arm A: {a}, arm B: {b}) on profiles "
        f"{', '.join(c['profiles'])}, modes {', '.join(c['modes'])}, "
        f"{len(c['seeds'])} paired seeds ({_seeds(c['seeds'])}), {c['iterations']} iterations "
        "per run, KPI gate soft; each run judged by the run-level release gate.",
    ]
    if c["holdout_seeds"]:
        lines.append(
            f"Hold-out: each run's final overrides re-measured untuned on seeds "
            f"{_seeds(c['holdout_seeds'])} for {c['holdout_iterations']} iterations."
        )
    lines += [
        "",
        "## Cells",
        "",
        "| profile | mode | arm | runs | PASSED | FAILED | INCONCL. | pass rate (Wilson 95 %) "
        "| hold-out pass (Wilson 95 %) | final net_bps mean | applied/run | reversals/run |",
        "|---|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|",
    ]
    for cell in doc["cells"]:
        v = cell["verdicts"]
        held = (
            f"{cell['holdout_passed']}/{cell['holdout_runs']} {_pct(cell['holdout_pass_rate'])} "
            f"[{_pct(cell['holdout_wilson_low'])}, {_pct(cell['holdout_wilson_high'])}] "
            f"({cell['holdout_configs']} config{'s' if cell['holdout_configs'] != 1 else ''})"
            if cell["holdout_runs"]
            else "-"
        )
        lines.append(
            f"| {cell['profile']} | {cell['mode']} | {cell['arm']} | {cell['runs']} "
            f"| {v['PASSED']} | {v['FAILED']} | {v['INCONCLUSIVE']} "
            f"| {_pct(cell['pass_rate'])} [{_pct(cell['wilson_low'])}, "
            f"{_pct(cell['wilson_high'])}] | {held} | {_num(cell['final_net_bps_mean'])} "
            f"| {_num(cell['applied_per_run'], 1)} | {_num(cell['reversals_per_run'], 1)} |"
        )
    lines += [
        "",
        "## Paired comparisons (A minus B)",
        "",
        "| profile | mode | A | B | pairs | pass-rate diff | A only / B only "
        "| McNemar exact p | Wilcoxon p (final net_bps) | hold-out pass-rate diff "
        "| hold-out Fisher p |",
        "|---|---|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for cmp in doc["comparisons"]:
        d = cmp["discordant"]
        diff = cmp["holdout_pass_rate_diff"]
        lines.append(
            f"| {cmp['profile']} | {cmp['mode']} | {cmp['arms'][0]} | {cmp['arms'][1]} "
            f"| {cmp['pairs']} | {100 * cmp['pass_rate_diff']:+.0f} pt | {d['a_only']} / "
            f"{d['b_only']} | {_p(cmp['mcnemar_p'])} | {_p(cmp['wilcoxon_p'])} "
            f"| {'-' if diff is None else f'{100 * diff:+.0f} pt'} "
            f"| {_p(cmp['holdout_fisher_p'])} |"
        )
    lines += [
        "",
        "McNemar: two-sided exact binomial test on the discordant pairs (seeds where exactly one "
        "arm PASSED). Wilcoxon: two-sided signed-rank test on the paired final-iteration net_bps. "
        "Hold-out: one run per distinct final configuration and hold-out seed (arm runs that end "
        "on the same overrides share them); Fisher: two-sided exact test of the two arms' "
        "hold-out pass counts. "
        "A small p says the arms differ on these seeds; it says nothing about seeds not run. "
        "See docs/sweeps.md.",
        "",
        "![pass rates](sweep.png)",
        "",
    ]
    return "\n".join(lines)


def _seeds(seeds: list[int]) -> str:
    """1,2,3,7 -> 1-3,7"""
    out: list[str] = []
    start = prev = None
    for s in seeds + [None]:  # type: ignore[list-item]
        if s is not None and prev is not None and s == prev + 1:
            prev = s
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = s
    return ",".join(out)


def sweep_chart(doc: Mapping[str, Any]) -> bytes:
    """Pass rate per (profile, mode) cell, arm A beside arm B, with Wilson 95 % intervals;
    hold-out pass rates as hollow markers. PNG bytes (deterministic for one matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = doc["cells"]
    groups = sorted({(c["profile"], c["mode"]) for c in cells}, key=lambda g: _order(doc, g))
    a, b = doc["config"]["arms"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.2), dpi=100)
    for k, (offset, color, label) in enumerate(((-0.15, "tab:blue", a), (0.15, "tab:orange", b))):
        for g_i, g in enumerate(groups):
            mine = [c for c in cells if (c["profile"], c["mode"]) == g]
            cell = mine[k]
            x = g_i + offset
            rate = cell["pass_rate"]
            ax.errorbar(
                [x],
                [100 * rate],
                yerr=[[100 * (rate - cell["wilson_low"])], [100 * (cell["wilson_high"] - rate)]],
                fmt="o",
                color=color,
                capsize=4,
                label=f"arm {'AB'[k]}: {label if label != '<profile>' else 'the profile'}"
                if g_i == 0
                else None,
            )
            if cell["holdout_runs"]:
                h = cell["holdout_pass_rate"]
                ax.errorbar(
                    [x + 0.08],
                    [100 * h],
                    yerr=[
                        [100 * (h - cell["holdout_wilson_low"])],
                        [100 * (cell["holdout_wilson_high"] - h)],
                    ],
                    fmt="D",
                    mfc="none",
                    color=color,
                    capsize=3,
                    linestyle="none",
                    label="hold-out pass rate (Wilson 95 %)" if g_i == 0 and k == 0 else None,
                )
    ax.set_xticks(range(len(groups)), [f"{p}\n{m}" for p, m in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylim(-5, 105)
    ax.set_ylabel("release gate PASSED (% of runs)")
    ax.set_xlabel("profile / mode")
    ax.set_title(f"Sweep {doc['sweep_id']}: pass rate with Wilson 95 % interval")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _order(doc: Mapping[str, Any], group: tuple[str, str]) -> tuple[int, int]:
    c = doc["config"]
    return c["profiles"].index(group[0]), c["modes"].index(group[1])


def write_sweep(directory: Path, doc: Mapping[str, Any]) -> list[Path]:
    """SWEEP.json, SWEEP.md and sweep.png, each written atomically; the paths."""
    md = sweep_markdown(doc)
    png = sweep_chart(doc)
    return [
        write_json(directory / "SWEEP.json", doc),
        write_text(directory / "SWEEP.md", md),
        write_bytes(directory / "sweep.png", png),
    ]
