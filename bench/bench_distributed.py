"""Distributed benchmark (run on demand): ``python bench/bench_distributed.py``.

Starts its own redis-server on a free loopback port and two worker processes
(``celery -A workers.app worker --pool=prefork --concurrency=1``), then measures, on the same
cluster:

* a raw no-op chord of an iteration's shape (3 header + 1 body ``soakq.bench.noop`` tasks), sent
  and waited on by this process, one after another: latency p50/p99;
* one 3-symbol run (kpi source, interval 0): sequential iteration latency, commit to commit
  (start task + chord + body + driving the successor), p50/p99, and each iteration's own span
  (start task sends the chord -> body committed);
* 20 runs submitted at once: committed iterations per second until the last one commits (and the
  wall time until every run's directory is written, report included);
* the raw ceiling of that shape on the same workers: 20 client-driven chains of 10 raw no-op
  chords, each chain sending its next chord when the last one's body is done;
* Redis commands per iteration (``INFO stats`` deltas) for both.

Prints the figures and the ratios soakq / raw.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from pathlib import Path

from _cluster import Cluster, commands, iso_ts, ms, pct, raw_chains, raw_chords, wait


def submit(c: Cluster, run_id: str, iterations: int, seed: int) -> None:
    from soakq.config import build_spec
    from soakq.runner import start_run
    from soakq.settings import Settings
    from workers.executor import send_start

    spec = build_spec(Settings(), profile="steady_safe", iterations=iterations, source="kpi",
                      interval_s=0.0, seed=seed, run_id=run_id)  # fmt: skip
    now = time.time()
    assert start_run(c.store, spec, now=now, mode="distributed")
    send_start(c.app, c.store, run_id, 1, now=now)


#: Redis commands this process sent to watch the runs (one per call below), left out of the
#: per-iteration command count.
WATCH = {"commands": 0}


def committed(c: Cluster, run_id: str) -> int:
    WATCH["commands"] += 1
    return int(c.store.get_state(run_id)[0]["iteration"])


def published(c: Cluster, run_id: str) -> bool:
    WATCH["commands"] += 1
    record = c.store.get_record(run_id) or {}
    return (record.get("published") or {}).get("status") == record.get("status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chords", type=int, default=200, help="raw chords to time")
    parser.add_argument("--iterations", type=int, default=100, help="iterations of the run")
    parser.add_argument("--runs", type=int, default=20, help="concurrent runs")
    parser.add_argument("--run-iterations", type=int, default=10, help="iterations per run")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not on PATH")

    workdir = Path(tempfile.mkdtemp(prefix="soakq-bench-"))
    c = Cluster(workdir, args.workers)
    try:
        raw_chords(c, 20)  # warm-up: connections, imports in the pool children
        submit(c, "warmup", 5, 1)
        wait(lambda: published(c, "warmup"), "the warm-up run", 120)

        raw = raw_chords(c, args.chords)

        submit(c, "latency", args.iterations, 42)
        wait(lambda: committed(c, "latency") >= args.iterations, "the latency run", 600)
        docs = c.store.iterations("latency")
        finished = [iso_ts(d["runtime"]["finished_at"]) for d in docs]
        period = [b - a for a, b in zip(finished, finished[1:], strict=False)]
        span = [iso_ts(d["runtime"]["finished_at"]) - iso_ts(d["runtime"]["started_at"])
                for d in docs]  # fmt: skip

        total = args.runs * args.run_iterations
        before = commands(c)
        raw_s, polls = raw_chains(c, args.runs, args.run_iterations)
        raw_cmds = (commands(c) - before - polls) / total

        ids = [f"tp-{n:02d}" for n in range(args.runs)]
        WATCH["commands"] = 0
        before = commands(c)
        t0 = time.perf_counter()
        for n, run_id in enumerate(ids):
            submit(c, run_id, args.run_iterations, 100 + n)
        wait(lambda: all(committed(c, r) >= args.run_iterations for r in ids),
             "the concurrent runs to commit", 600)  # fmt: skip
        commit_s = time.perf_counter() - t0
        wait(lambda: all(published(c, r) for r in ids), "the concurrent runs' files", 600)
        publish_s = time.perf_counter() - t0
        soakq_cmds = (commands(c) - before - WATCH["commands"]) / total

        print(f"cluster: redis-server {c.url}, {args.workers} workers (prefork, concurrency 1)")
        print(f"raw no-op chord (3 header + 1 body), waited on:  {ms(raw)}")
        print(f"iteration, commit to commit (3 symbols):        {ms(period)}")
        print(f"iteration span, chord sent -> body committed:   {ms(span)}")
        print(f"ratio p50 iteration / p50 raw chord: {pct(period, 50) / pct(raw, 50):.2f} "
              "(target <= 1.2)")  # fmt: skip
        print(
            f"{args.runs} concurrent runs x {args.run_iterations} iterations: "
            f"{total / commit_s:.1f} iterations/s committed ({commit_s:.2f} s); "
            f"all run directories written after {publish_s:.2f} s"
        )
        print(
            f"raw ceiling, {args.runs} client-driven chains x {args.run_iterations} chords: "
            f"{total / raw_s:.1f} chords/s ({raw_s:.2f} s)"
        )
        print(f"throughput ratio soakq / raw: {raw_s / commit_s:.2f} (target >= 0.5)")
        print(
            f"redis commands per iteration: soakq {soakq_cmds:.0f} (until the files are written), "
            f"raw {raw_cmds:.0f}; ratio {soakq_cmds / raw_cmds:.2f} (target <= 1.2)"
        )
    finally:
        gc.collect()  # results unsubscribe from the backend while its Redis still answers
        c.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
