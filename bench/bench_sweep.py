"""Sweep benchmark (run on demand): ``python bench/bench_sweep.py [--seeds 20] [--iterations 24]``.

The issue's sweep: profiles aggressive,steady_safe x modes calm,volatile,spike x SEEDS seeds x 2
arms (``--compare auto-tune``, no hold-out), ITERATIONS iterations per run. Measured in one go,
on this machine:

1. embedded, ``soakq sweep --jobs 2`` as a subprocess: wall time, runs/s;
2. distributed: a private redis-server and 2 prefork workers (concurrency 1 each), the same
   ``soakq sweep`` with SOAKQ_REDIS_URL as a subprocess: wall time, runs/s, iterations/s;
3. the raw ceilings: (a) compute: the in-memory driver's time for one run
   (``soakq.engine.run_embedded``, ``report=False``; median over one run of each
   (profile, mode, arm) cell) x runs / cores; (b) Celery: client-driven chains of raw no-op chords
   of an iteration's shape (3 header + 1 body ``soakq.bench.noop``) on the same 2 workers, a
   scaled-down measure (``--chains`` x ``--chain-length`` chords) extrapolated to runs x
   iterations chords;
4. where the distributed time goes: the workers' time inside tasks (each task's runtime as the
   worker logs it at INFO), CPU of workers / redis / coordinator, iteration spans from the
   iteration documents in Redis (``runtime.started_at`` -> ``finished_at``), Redis commands per
   iteration (``INFO stats`` / ``commandstats`` deltas), and the per-run report
   (``soakq.report.write_report``) timed on its own;

and checks that the two SWEEP.json are equal outside ``runtime``.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _cluster import (
    Cluster,
    clean_env,
    commands,
    iso_ts,
    ms,
    pct,
    raw_chains,
    raw_chords,
    wait,
)

PROFILES = "aggressive,steady_safe"
MODES = "calm,volatile,spike"
SUCCEEDED = re.compile(r"Task (\S+)\[([^\]]*)\] succeeded in ([0-9.e+-]+)s")


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def sweep_argv(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "soakq", "sweep", "--profiles", PROFILES, "--modes", MODES,
            "--seeds", f"1-{args.seeds}", "--iterations", str(args.iterations),
            "--compare", "auto-tune"]  # fmt: skip


def run_cli(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run the CLI to its end: wall seconds and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=7200)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[2:5])} failed ({proc.returncode}); see {log}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def sweep_json(root: Path) -> dict[str, Any]:
    from soakq.jsonio import read_json

    (path,) = root.glob("sweeps/*/SWEEP.json")
    return dict(read_json(path))


def compute_ceiling(args: argparse.Namespace) -> list[float]:
    """The in-memory driver's time for one run of each (profile, mode, arm) cell (first seed)."""
    from soakq.engine import run_embedded
    from soakq.settings import Settings
    from soakq.store import MemoryStore
    from soakq.sweep import Plan, SweepConfig

    plan = Plan(
        SweepConfig(
            profiles=tuple(PROFILES.split(",")),
            modes=tuple(MODES.split(",")),
            seeds=tuple(range(1, args.seeds + 1)),
            iterations=args.iterations,
        ),
        Settings(),
    )
    specs = [r.spec for r in plan.arm_runs() if r.seed == 1]
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        run_embedded(specs[0], Path(tmp) / "warm", store=MemoryStore(), report=False)
        for n, spec in enumerate(specs):
            t0 = time.perf_counter()
            run_embedded(spec, Path(tmp) / str(n), store=MemoryStore(), report=False)
            times.append(time.perf_counter() - t0)
    return times


def task_times(logs: list[Path], offsets: list[int], prefix: str) -> dict[str, list[float]]:
    """Runtimes of the sweep's tasks as the workers logged them, by kind; the finalize of a run's
    last iteration (which also publishes the run directory and renders its report) apart."""
    out: dict[str, list[float]] = defaultdict(list)
    for path, offset in zip(logs, offsets, strict=True):
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        for name, task_id, secs in SUCCEEDED.findall(text):
            if not task_id.startswith(prefix):
                continue
            kind = name.rsplit(".", 1)[-1]
            if kind == "finalize" and task_id.rsplit(":", 3)[1] == str(LAST["iteration"]):
                kind = "finalize (last: + publish, report)"
            out[kind].append(float(secs))
    return out


LAST = {"iteration": 0}


def time_report(docs: list[Any], record: Any, history_root: Path | None) -> list[float]:
    from soakq.report import write_report

    times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "soak" / str(record["run_id"])
            out.mkdir(parents=True)
            t0 = time.perf_counter()
            write_report(out, docs, record, history_root=history_root)
            times.append(time.perf_counter() - t0)
    return times


def cmdstats(c: Cluster) -> dict[str, int]:
    info = c.store.client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds 1..SEEDS")
    parser.add_argument("--iterations", type=int, default=24, help="iterations per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=2, help="embedded local processes")
    parser.add_argument("--chains", type=int, default=20, help="raw ceiling: concurrent chains")
    parser.add_argument("--chain-length", type=int, default=20, help="raw ceiling: chords each")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH")
    os.environ.clear()
    os.environ.update(clean_env())
    LAST["iteration"] = args.iterations
    runs = 2 * 3 * args.seeds * 2
    iterations = runs * args.iterations
    ncores = cores()
    workdir = Path(tempfile.mkdtemp(prefix="soakq-bench-sweep-"))
    print(
        f"sweep: {PROFILES} x {MODES} x seeds 1-{args.seeds} x 2 arms (auto-tune) = {runs} runs "
        f"x {args.iterations} iterations = {iterations} iterations; {ncores} cores; {workdir}",
        flush=True,
    )

    # 3a. compute ceiling, in this process, before anything else runs.
    one = compute_ceiling(args)
    compute_s = statistics.median(one) * runs / ncores

    # 2. embedded, --jobs N.
    emb_root = workdir / "embedded"
    emb_wall, _ = run_cli(
        [*sweep_argv(args), "--jobs", str(args.jobs), "--artifacts", str(emb_root)],
        clean_env(),
        workdir / "embedded.log",
    )
    emb = sweep_json(emb_root)
    print(f"embedded done in {emb_wall:.1f} s", flush=True)

    c = Cluster(workdir, args.workers, loglevel="INFO")
    try:
        raw_chords(c, 20)  # warm-up: connections, imports in the pool children

        # 3b. Celery ceiling on the same workers.
        chords = args.chains * args.chain_length
        before = commands(c)
        raw_s, polls = raw_chains(c, args.chains, args.chain_length)
        raw_cmds = (commands(c) - before - polls) / chords
        raw_rate = chords / raw_s
        celery_s = iterations / raw_rate

        # 1. distributed.
        offsets = [p.stat().st_size for p in c.logs]
        cmd0, stats0 = commands(c), cmdstats(c)
        wcpu0, rcpu0 = c.worker_cpu_s(), c.redis_cpu_s()
        t0 = time.perf_counter()
        dist_wall, coord_cpu = run_cli(sweep_argv(args), c.env, workdir / "distributed.log")
        cmd1, stats1 = commands(c), cmdstats(c)
        wcpu1, rcpu1 = c.worker_cpu_s(), c.redis_cpu_s()
        dist = sweep_json(workdir / "artifacts")
        ids = sorted(dist["runs"])

        def published() -> bool:
            for run_id in ids:
                record = c.store.get_record(run_id) or {}
                if (record.get("published") or {}).get("status") != record.get("status"):
                    return False
            return True

        wait(published, "every run directory", 600)
        publish_tail = time.perf_counter() - t0 - dist_wall
        print(f"distributed done in {dist_wall:.1f} s", flush=True)

        # 4. where the time goes.
        spans, gaps, first, last = [], [], [], []
        for run_id in ids:
            docs = c.store.iterations(run_id)
            started = [iso_ts(d["runtime"]["started_at"]) for d in docs]
            finished = [iso_ts(d["runtime"]["finished_at"]) for d in docs]
            spans += [b - a for a, b in zip(started, finished, strict=True)]
            gaps += [b - a for a, b in zip(finished, started[1:], strict=False)]
            first.append(started[0])
            last.append(finished[-1])
        tasks = task_times(c.logs, offsets, dist["sweep_id"])
        sample = ids[0]
        docs = c.store.iterations(sample)
        record = c.store.get_record(sample)
        time_report(docs, record, None)  # warm-up: matplotlib, fonts
        report_alone = time_report(docs, record, None)
        report_full = time_report(docs, record, workdir / "artifacts" / "soak")
        stats_delta = {k: v - stats0.get(k, 0) for k, v in stats1.items()}
    finally:
        gc.collect()  # results unsubscribe from the backend while its Redis still answers
        c.close()

    same = {k: v for k, v in dist.items() if k != "runtime"} == {
        k: v for k, v in emb.items() if k != "runtime"
    }
    differing = [r for r in dist["runs"] if dist["runs"][r] != emb["runs"].get(r)]

    w = args.workers
    capacity = w * dist_wall
    print()
    print(f"== {runs} runs x {args.iterations} iterations ({iterations} iterations), "
          f"compare auto-tune, no hold-out ==")  # fmt: skip
    print(f"{'':44}{'wall s':>9}{'runs/s':>9}{'iter/s':>9}")
    rows = [
        (f"1. distributed, {w} workers (prefork, conc. 1)", dist_wall),
        (f"2. embedded, --jobs {args.jobs}", emb_wall),
        (f"3a. compute ceiling (driver x {runs} / {ncores} cores)", compute_s),
        (f"3b. Celery ceiling (raw chords, {w} workers)", celery_s),
        ("    3a + 3b (both on the same cores)", compute_s + celery_s),
    ]
    for label, secs in rows:
        print(f"{label:44}{secs:9.1f}{runs / secs:9.2f}{iterations / secs:9.1f}")
    print(
        f"   (SWEEP.json runtime.wall_s: distributed {dist['runtime']['wall_s']:.1f} s, "
        f"embedded {emb['runtime']['wall_s']:.1f} s; the rest is the CLI's start-up)"
    )
    print(f"3a: one run in the in-memory driver, report=False: median "
          f"{statistics.median(one):.3f} s, mean {statistics.fmean(one):.3f} s, "
          f"min {min(one):.3f}, max {max(one):.3f} "
          f"(one run per (profile, mode, arm) cell, seed 1, n={len(one)})")  # fmt: skip
    print(
        f"3b: scaled down, extrapolated: {args.chains} client-driven chains x {args.chain_length} "
        f"raw chords = {chords} chords in {raw_s:.2f} s = {raw_rate:.1f} chords/s; "
        f"{iterations} chords at that rate = {celery_s:.1f} s"
    )
    print(
        f"ratios: distributed / embedded {dist_wall / emb_wall:.2f}; "
        f"distributed / compute ceiling {dist_wall / compute_s:.2f}; "
        f"distributed / Celery ceiling {dist_wall / celery_s:.2f}; "
        f"distributed / (3a + 3b) {dist_wall / (compute_s + celery_s):.2f}; "
        f"embedded / compute ceiling {emb_wall / compute_s:.2f}"
    )
    print(f"SWEEP.json distributed == embedded outside runtime: {same}"
          + ("" if same else f" ({len(differing)} runs differ, e.g. {differing[:3]})"))  # fmt: skip

    print()
    print(f"== where the distributed time goes ({w} workers x {dist_wall:.1f} s = "
          f"{capacity:.1f} worker-seconds) ==")  # fmt: skip
    busy = 0.0
    for kind in sorted(tasks):
        t = tasks[kind]
        busy += sum(t)
        print(f"  inside {kind:36} {sum(t):7.1f} s {100 * sum(t) / capacity:5.1f} %  "
              f"(n={len(t)}, median {statistics.median(t) * 1000:.1f} ms)")  # fmt: skip
    print(f"  inside tasks, total{'':24} {busy:7.1f} s {100 * busy / capacity:5.1f} %")
    print(f"  outside tasks (Celery messaging, prefork IPC, idle) "
          f"{capacity - busy:.1f} s {100 * (capacity - busy) / capacity:.1f} %")  # fmt: skip
    print(
        f"  (task runtimes as logged by the workers at INFO; the log lines themselves cost a "
        f"little. Runs still publishing after the CLI returned: {publish_tail:.1f} s more)"
    )
    cpu_cap = ncores * dist_wall
    print(f"CPU over the sweep ({ncores} cores x {dist_wall:.1f} s = {cpu_cap:.1f} core-seconds): "
          f"workers {wcpu1 - wcpu0:.1f} s ({100 * (wcpu1 - wcpu0) / cpu_cap:.0f} %), "
          f"redis-server {rcpu1 - rcpu0:.1f} s ({100 * (rcpu1 - rcpu0) / cpu_cap:.0f} %), "
          f"coordinator CLI {coord_cpu:.1f} s ({100 * coord_cpu / cpu_cap:.0f} %)")  # fmt: skip
    print(f"iteration span, chord sent -> committed:  {ms(spans)}")
    print(f"commit -> next chord sent:               {ms(gaps)}")
    print(
        f"runs' first chord -> last commit: {max(last) - min(first):.1f} s; "
        f"p50 run length {pct([b - a for a, b in zip(first, last, strict=True)], 50):.1f} s "
        f"(all {runs} runs are submitted at once and share the queue)"
    )
    total_cmds = cmd1 - cmd0
    print(
        f"redis commands per iteration: {total_cmds / iterations:.0f} over the sweep "
        f"({total_cmds} commands, coordinator polling included); raw chord {raw_cmds:.0f}"
    )
    top = sorted(stats_delta.items(), key=lambda kv: -kv[1])[:8]
    print("  by command, per iteration: "
          + ", ".join(f"{k} {v / iterations:.1f}" for k, v in top))  # fmt: skip
    rep_share = runs * statistics.median(report_full) / capacity
    print(
        f"report per run (write_report: STEADY_TREND.md, trend.png, history): median "
        f"{statistics.median(report_alone) * 1000:.0f} ms with no earlier runs, "
        f"{statistics.median(report_full) * 1000:.0f} ms beside the sweep's {runs} run dirs; "
        f"x {runs} runs = {runs * statistics.median(report_full):.1f} s, "
        f"~{100 * rep_share:.0f} % of the worker-seconds"
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
