"""Wall time of the embedded 24-iteration x 3-symbol steady_safe soak (what the README runs).

    python bench/bench_embedded.py [--repeat N] [--source book|kpi]

Prints the CLI's wall time (a fresh process each time, as a user runs it) and, for reference,
the in-process time of the in-memory twin driver (soakq.engine.run_embedded).
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
from pathlib import Path


def clean_env() -> dict[str, str]:
    drop = ("SOAK", "SOAKQ_", "USE_MOCK", "KPI_GATE_MODE", "ENABLE_GUARDS", "MM_RUNTIME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def time_cli(source: str, repeat: int) -> list[float]:
    exe = shutil.which("soakq")
    if exe is None:
        sys.exit("soakq is not installed (pip install -e .)")
    times = []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            subprocess.run(
                [exe, "submit", "--profile", "steady_safe", "--source", source, "--artifacts", tmp],
                check=True,
                stdout=subprocess.DEVNULL,
                env=clean_env(),
                timeout=600,
            )
            times.append(time.perf_counter() - t0)
    return times


def time_twin(source: str, repeat: int) -> list[float]:
    os.environ.clear()
    os.environ.update(clean_env())
    from soakq.config import build_spec
    from soakq.engine import run_embedded
    from soakq.settings import Settings

    times = []
    for _ in range(repeat):
        spec = build_spec(Settings(), profile="steady_safe", source=source)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_embedded(spec, Path(tmp))
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--source", default="book", choices=("book", "kpi"))
    args = ap.parse_args()
    cli = time_cli(args.source, args.repeat)
    twin = time_twin(args.source, args.repeat)
    print(f"embedded 24x3 steady_safe soak, source={args.source}, {args.repeat} runs")
    print(
        f"  soakq submit (fresh process): median {statistics.median(cli):.3f} s, "
        f"min {min(cli):.3f} s, max {max(cli):.3f} s"
    )
    print(
        f"  in-process twin driver:       median {statistics.median(twin):.3f} s, "
        f"min {min(twin):.3f} s, max {max(twin):.3f} s"
    )


if __name__ == "__main__":
    main()
