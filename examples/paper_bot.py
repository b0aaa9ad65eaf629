"""A paper market-making bot that follows soakq's live handshake (docs/live-bot.md).

A stand-in for a real bot, run as its own process: it watches ``BOT_DIR/SOAK_ITERATION.json``,
reads the overrides soakq put in ``BOT_DIR/runtime_overrides.json`` (checking their hash), trades
the ``book`` simulator with them for the window, and answers with ``BOT_DIR/KPI_REPORT_<i>.json``
(or, with ``--edge-report PATH``, rewrites one unstamped EDGE_REPORT-shaped file, as the
predecessor bot does). Not used by soakq itself.

    python examples/paper_bot.py --bot-dir /tmp/bot
    python examples/paper_bot.py --bot-dir /tmp/bot --window 1 --skip 2 --silent-after 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from soakq.jsonio import read_json, sha256_of, write_json
from soakq.metrics.base import DIAGNOSTICS, KPI_KEYS, MeasureRequest, derive_seed, get_source
from soakq.params import validate_overrides

log = logging.getLogger("paper_bot")
VERSION = "paper-bot/1"
FEE_BPS = 0.2  # what the paper venue charges a maker, for the EDGE_REPORT's fee fields


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bot-dir", required=True, type=Path, help="where soakq writes the handshake")
    p.add_argument("--symbols", default="BTCUSDT", help="comma-separated symbols to trade")
    p.add_argument("--mode", default="calm", choices=("calm", "volatile", "spike"))
    p.add_argument("--seed", type=int, default=7, help="the paper market's seed")
    p.add_argument(
        "--window", type=float, default=None, help="trade this many seconds, not window_s"
    )
    p.add_argument(
        "--skip", type=int, action="append", default=[], help="never answer this iteration"
    )
    p.add_argument("--silent-after", type=int, default=None, help="stop answering after N")
    p.add_argument(
        "--edge-report", type=Path, default=None, help="write EDGE_REPORT-style to this path"
    )
    p.add_argument("--journal", type=Path, default=None, help="append what was received (JSONL)")
    p.add_argument("--idle-exit", type=float, default=None, help="exit after S s without work")
    p.add_argument("--ready-file", type=Path, default=None, help="touched once warmed up")
    p.add_argument("--poll", type=float, default=0.02, help="seconds between handshake checks")
    return p.parse_args(argv)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def trade(args: argparse.Namespace, iteration: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """One window of paper trading per symbol: the book simulator under these overrides."""
    book = get_source("book")
    out: dict[str, Any] = {}
    for sym in args.symbols.split(","):
        m = book.measure(
            MeasureRequest(
                seed=derive_seed("paper", args.seed),
                mode=args.mode,
                symbol=sym,
                iteration=iteration,
                overrides=overrides,
            )
        )
        out[sym] = {k: m[k] for k in (*KPI_KEYS, *DIAGNOSTICS)}
    return out


def edge_row(k: dict[str, Any]) -> dict[str, Any]:
    """The predecessor's per-symbol shape: no risk, maker share or latency fields; fills float."""
    return {
        "adverse_bps": k["adverse_bps_p95"],
        "fees_eff_bps": FEE_BPS,
        "fills": float(k["fills"]),
        "gross_bps": round(k["net_bps"] + FEE_BPS, 4),
        "inventory_bps": 0.0,
        "net_bps": k["net_bps"],
        "slippage_bps": k["slippage_bps_p95"],
        "turnover_usd": float(k["fills"]) * 1000.0,
    }


def answer(args: argparse.Namespace, hs: dict[str, Any], kpis: dict[str, Any], t0: float) -> None:
    if args.edge_report is not None:
        rows = {s: edge_row(k) for s, k in kpis.items()}
        total = edge_row(next(iter(kpis.values())))
        args.edge_report.parent.mkdir(parents=True, exist_ok=True)
        write_json(
            args.edge_report,
            {"runtime": {"utc": utc_now(), "version": VERSION}, "symbols": rows, "total": total},
        )
        return
    write_json(
        args.bot_dir / f"KPI_REPORT_{hs['iteration']}.json",
        {
            "iteration": hs["iteration"],
            "run_id": hs["run_id"],
            "state_hash": hs["state_hash"],
            "symbols": kpis,
            "window_end_ts": round(time.time(), 3),
            "window_start_ts": round(t0, 3),
        },
    )


def default_overrides() -> dict[str, Any]:
    from soakq.profiles import DEFAULT_PROFILE, load_profile

    return dict(load_profile(DEFAULT_PROFILE).overrides)


def read_handshake(bot_dir: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The handshake and the overrides it names, once they agree (else None: look again)."""
    try:
        hs = read_json(bot_dir / "SOAK_ITERATION.json")
        overrides = read_json(bot_dir / "runtime_overrides.json")
    except Exception:  # noqa: BLE001 - not there yet
        return None
    if not isinstance(hs, dict) or sha256_of(overrides) != hs.get("state_hash"):
        return None
    return hs, validate_overrides(overrides, layer="runtime_overrides.json")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="paper_bot: %(message)s", stream=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    done: set[tuple[str, int]] = set()
    answered = 0
    last_work = time.monotonic()
    trade(args, 1, default_overrides())  # warm up: imports and the first simulation
    if args.ready_file is not None:
        args.ready_file.touch()
    log.info("watching %s (pid %s)", args.bot_dir, os.getpid())
    while args.idle_exit is None or time.monotonic() - last_work < args.idle_exit:
        got = read_handshake(args.bot_dir)
        key = (got[0]["run_id"], int(got[0]["iteration"])) if got else None
        if got is None or key in done:
            time.sleep(args.poll)
            continue
        hs, overrides = got
        done.add(key)  # type: ignore[arg-type]
        last_work = time.monotonic()
        i = int(hs["iteration"])
        if args.journal is not None:
            with args.journal.open("a", encoding="utf-8") as fh:
                line = {
                    "iteration": i,
                    "overrides": overrides,
                    "run_id": hs["run_id"],
                    "state_hash": hs["state_hash"],
                }
                fh.write(json.dumps(line, sort_keys=True) + "\n")
        if i in args.skip or (args.silent_after is not None and answered >= args.silent_after):
            log.info("iteration %s: not answering", i)
            continue
        t0 = time.time()
        window = float(hs["window_s"]) if args.window is None else args.window
        kpis = trade(args, i, overrides)
        time.sleep(max(0.0, t0 + window - time.time()))  # the window is what the bot measures
        answer(args, hs, kpis, t0)
        answered += 1
        last_work = time.monotonic()
        log.info("iteration %s: answered (%s)", i, hs["state_hash"][:12])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
