"""Embedded marginal cost of the `book` source over `kpi`, per symbol-iteration, in ms.

    python bench/bench_marginal.py [--repeat 3] [--long 97] [--short 1]

Runs the README command embedded (``soakq submit --profile steady_safe``, a fresh process each
time, no Redis) with ``--source book`` and ``--source kpi`` at ``--iterations 97`` and ``1``,
interleaved in one run so every figure sees the same machine load. Fixed costs (interpreter,
imports, Celery start, report) cancel in the differences:

    marginal = ((book_97 - book_1) - (kpi_97 - kpi_1)) / (96 iterations x 3 symbols)

Prints the median wall times beside each other (kpi is the baseline) and the marginal cost.
"""

from __future__ import annotations

import argparse
import os
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


def run_once(exe: str, source: str, iterations: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
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
        return time.perf_counter() - t0


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
    times: dict[tuple[str, int], list[float]] = {}
    for source, n in cells:
        times.setdefault((source, n), []).append(run_once(exe, source, n))
    med = {k: statistics.median(v) for k, v in times.items()}
    extra = args.long - args.short
    book = med[("book", args.long)] - med[("book", args.short)]
    kpi = med[("kpi", args.long)] - med[("kpi", args.short)]
    print(f"embedded soakq submit --profile steady_safe, median of {args.repeat} runs each (s)")
    print(f"{'source':<8}{args.long:>8} it{args.short:>8} it{'per extra iteration':>22}")
    for source, diff in (("book", book), ("kpi", kpi)):
        print(
            f"{source:<8}{med[(source, args.long)]:>11.3f}{med[(source, args.short)]:>11.3f}"
            f"{diff / extra * 1000:>19.2f} ms"
        )
    marginal = (book - kpi) / (extra * SYMBOLS) * 1000
    print(f"marginal cost of book over kpi: {marginal:.2f} ms per symbol-iteration")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
