"""The verdict study as two sweeps (docs/sweeps.md): tuner on vs off, and guards on vs off.

    python bench/study_calibration.py [--seeds 1-20] [--iterations 24] [--holdout-seeds 101-103]
                                      [--profiles steady_safe,aggressive] [--jobs N]

Each sweep is `soakq sweep` on calm / volatile / spike with paired seeds, KPI gate soft, and the
runs' final overrides re-measured untuned on the hold-out seeds. Prints every cell and comparison
(SWEEP.md's tables) and the wall time. Runs embedded: unset SOAKQ_REDIS_URL, or leave it set to
spread the runs over the workers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1-20")
    ap.add_argument("--iterations", default="24")
    ap.add_argument("--holdout-seeds", default="101-103")
    ap.add_argument("--profiles", default="steady_safe,aggressive")
    ap.add_argument("--jobs", default=str(len(os.sched_getaffinity(0))))
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOAK_")}
    with tempfile.TemporaryDirectory() as tmp:
        for compare in ("auto-tune", "guards"):
            t0 = time.perf_counter()
            argv = [
                sys.executable, "-m", "soakq", "sweep",
                "--profiles", args.profiles, "--modes", "calm,volatile,spike",
                "--seeds", args.seeds, "--iterations", args.iterations,
                "--holdout-seeds", args.holdout_seeds, "--compare", compare,
                "--artifacts", tmp,
            ]  # fmt: skip
            if "SOAKQ_REDIS_URL" not in env:
                argv += ["--jobs", args.jobs]
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(done.stderr.strip())
            (sweep,) = [p for p in (Path(tmp) / "sweeps").iterdir() if compare in _compare(p)]
            text = (sweep / "SWEEP.md").read_text()
            print(text.split("![pass rates]")[0].strip())
            print(f"({time.perf_counter() - t0:.1f} s)\n")


def _compare(sweep: Path) -> str:
    import json

    return str(json.loads((sweep / "SWEEP.json").read_text())["config"]["compare"])


if __name__ == "__main__":
    main()
