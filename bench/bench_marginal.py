"""Embedded marginal cost of the `book` source over `kpi`, per symbol-iteration, in ms.

    python bench/bench_marginal.py [--repeat 3] [--long 97] [--short 1]

Runs the README command embedded (``soakq submit --profile steady_safe``, a fresh process each
time, no Redis) with ``--source book`` and ``--source kpi`` at ``--iterations 97`` and ``1``,
interleaved in one run so every figure sees the same machine load. Fixed costs (interpreter,
imports, Celery start, report) cancel in the differences:

    marginal = ((book_97 - book_1) - (kpi_97 - kpi_1)) / (96 iterations x 3 symbols)

Prints the median wall times beside each other (kpi is the baseline) and the marginal cost, then
the same from the CPU time the runs used (their threads included), which a busy machine disturbs
less than the wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SYMBOLS = 3  # steady_safe quotes BTCUSDT, ETHUSDT, SOLUSDT


def clean_env() -> dict[str, str]:
    drop = ("SOAK", "SOAKQ_", "USE_MOCK", "KPI_GATE_MODE", "ENABLE_GUARDS", "MM_RUNTIME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(exe: str, source: str, iterations: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its threads) of one run."""
    with tempfile.TemporaryDirectory() as tmp:
        cpu0 = _children_cpu_s()
        t0 = time.perf_counter()
        subprocess.run(
            [
                exe,
                "submit",
                "--profile",
                "steady_safe",
                "--source",
                source,
                "--iterations",
                str(iterations),
                "--artifacts",
                tmp,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            env=clean_env(),
            timeout=900,
        )
        return time.perf_counter() - t0, _children_cpu_s() - cpu0


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--long", type=int, default=97)
    ap.add_argument("--short", type=int, default=1)
    args = ap.parse_args()
    exe = shutil.which("soakq")
    if exe is None:
        sys.exit("soakq is not installed (pip install -e .)")
    cells = [
        (s, n) for _ in range(args.repeat) for s in ("book", "kpi") for n in (args.long, args.short)
    ]
    times: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for source, n in cells:
        times.setdefault((source, n), []).append(run_once(exe, source, n))
    extra = args.long - args.short
    print(f"embedded soakq submit --profile steady_safe, median of {args.repeat} runs each (s)")
    for what, col in (("wall", 0), ("CPU", 1)):
        med = {k: statistics.median(t[col] for t in v) for k, v in times.items()}
        book = med[("book", args.long)] - med[("book", args.short)]
        kpi = med[("kpi", args.long)] - med[("kpi", args.short)]
        print(f"{what:<8}{args.long:>8} it{args.short:>8} it{'per extra iteration':>22}")
        for source, diff in (("book", book), ("kpi", kpi)):
            print(
                f"{source:<8}{med[(source, args.long)]:>11.3f}{med[(source, args.short)]:>11.3f}"
                f"{diff / extra * 1000:>19.2f} ms"
            )
        marginal = (book - kpi) / (extra * SYMBOLS) * 1000
        print(f"marginal cost of book over kpi ({what}): {marginal:.2f} ms per symbol-iteration")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
