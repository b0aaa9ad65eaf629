"""Effective configuration: overrides by precedence with their sources, and the run spec."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import Decimal
from functools import cache
from importlib import resources
from pathlib import PurePath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from soakq.errors import ConfigError
from soakq.jsonio import loads, sha256_of
from soakq.params import KEYS, PARAMS, Number, Overrides, validate_overrides, validate_value
from soakq.profiles import DEFAULT_PROFILE, load_profile
from soakq.rules.thresholds import default_min_fills, fmt_num
from soakq.settings import Settings

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CLI_LAYER = "cli (--set)"
ENV_LAYER = "env MM_RUNTIME_OVERRIDES_JSON"


SEED_LIMIT = 2**63  # a run's seed is 0..2**63 - 1 (--seed, sweeps' --seeds and --holdout-seeds)
NUMBER_RE = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf|infinity)", re.IGNORECASE | re.ASCII
)


def parse_set(items: Iterable[str]) -> Overrides:
    """Parse ``--set KEY=VALUE`` items; the last one for a key wins."""
    out: dict[str, Number] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise ConfigError(f"{CLI_LAYER}: {item!r} is not KEY=VALUE")
        # A plain decimal number (JSON's grammar, plus nan/inf for validate_value to name):
        # float() alone would take 7_00 and non-ASCII digits as 700. Anything else stays a str,
        # which validate_value refuses as "must be a number".
        value: Any = float(text) if NUMBER_RE.fullmatch(text) else text
        if isinstance(value, float) and math.isinf(value) and text[-1].isdigit():
            value = int(Decimal(text))  # 1e400: out of bounds, not "inf"
        # isfinite first: int(nan) / int(inf) would raise before validate_value can say why.
        finite_float = isinstance(value, float) and math.isfinite(value)
        if key in PARAMS and PARAMS[key].is_int and finite_float and value == int(value):
            value = int(value)
        out[key] = validate_value(key, value, layer=CLI_LAYER)
    return out


def parse_env_overrides(text: str | None) -> Overrides:
    if text is None or not text.strip():
        return {}
    try:
        doc = loads(text, what=ENV_LAYER)
    except ConfigError:
        raise
    except Exception as exc:  # InputError from loads: same message, config layer
        raise ConfigError(str(exc)) from None
    return validate_overrides(doc, layer=ENV_LAYER)


def effective_overrides(
    profile: str | None, env_json: str | None, cli_sets: Iterable[str]
) -> tuple[Overrides, dict[str, str]]:
    """CLI > ENV > profile > default, and where each value came from."""
    values: dict[str, Number] = dict(load_profile(DEFAULT_PROFILE).overrides)
    sources = dict.fromkeys(values, "default")
    layers: list[tuple[str, Overrides]] = []
    if profile is not None:
        layers.append((f"profile:{profile}", load_profile(profile).overrides))
    layers.append(("env", parse_env_overrides(env_json)))
    layers.append(("cli", parse_set(cli_sets)))
    for name, layer in layers:
        for key, value in layer.items():
            values[key] = value
            sources[key] = name
    return {k: values[k] for k in KEYS}, {k: sources[k] for k in KEYS}


def effective_config(profile: str | None, env_json: str | None, cli_sets: Iterable[str]) -> dict:
    """Flat effective overrides plus ``_sources`` (what `soakq config` prints)."""
    values, sources = effective_overrides(profile, env_json, cli_sets)
    return {**values, "_sources": sources}


#: Names a run directory may not take: ``latest`` is the symlink to the newest run.
RESERVED_RUN_IDS = frozenset({"latest"})


def check_run_id(run_id: str, what: str = "--run-id") -> str:
    """``run_id`` if it is a safe directory name; else a ConfigError naming it as ``what`` (the
    flag, or e.g. ``status: run id`` for a command's argument)."""
    if not RUN_ID_RE.fullmatch(run_id) or ".." in run_id:  # fullmatch: `$` allows a final \n
        raise ConfigError(
            f"{what} {run_id!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit, without '..' or path separators"
        )
    if run_id in RESERVED_RUN_IDS:
        raise ConfigError(
            f"{what} {run_id!r}: reserved (artifacts/soak/{run_id} is the link to the newest "
            "run); choose another run id"
        )
    return run_id


class RunSpec(BaseModel):
    """Everything that determines a run's artifacts. Frozen; JSON round-trips exactly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    profile: str
    iterations: int = Field(ge=1, le=10_000)
    interval_s: float = Field(ge=0)
    # None for a live run: a live bot has no simulated regime and no seed.
    mode: Literal["calm", "volatile", "spike"] | None
    seed: int | None = Field(ge=0, lt=SEED_LIMIT)
    source: Literal["book", "kpi", "file"]
    symbols: tuple[str, ...]
    overrides: dict[str, int | float]
    sources: dict[str, str]
    kpi_gate: Literal["soft", "hard"]
    guards: bool
    auto_tune: bool
    sigma_scale: float | None = None
    spike_prob: float | None = None
    gap_bps: float | None = None
    report_dir: str | None = None
    failure_limit: int = Field(default=1, ge=1, le=10_000)
    # The time one iteration covers (the simulator's clock; a live bot's window): the guards'
    # velocity hour is measured in it (docs/tuner.md).
    minutes_per_iteration: float = Field(default=20.0, gt=0, le=1440, allow_inf_nan=False)
    profile_kpi_gate: dict[str, Any] = Field(default_factory=dict)
    # Fewest fills an iteration may have and still pass the KPI gate (docs/gates.md).
    min_fills: int = Field(default=20, ge=0)
    # The live-bot handshake (docs/live-bot.md); bot_dir None: not a live run.
    bot_dir: str | None = None
    bot_name: str | None = None
    report_path: str | None = None
    report_map: dict[str, Any] | None = None
    window_s: float = Field(default=60.0, gt=0, le=86_400, allow_inf_nan=False)
    report_timeout_s: float = Field(default=60.0, gt=0, le=86_400, allow_inf_nan=False)
    consecutive_error_limit: int = Field(default=3, ge=1, le=10_000)

    @property
    def mock(self) -> bool:
        return self.source != "file"

    @property
    def live(self) -> bool:
        """True for a run that drives a live bot through the handshake."""
        return self.bot_dir is not None

    @property
    def bot_queue(self) -> str | None:
        """The Celery queue of the tasks that touch the bot directory (docs/live-bot.md)."""
        return f"soakq.bot.{self.bot_name}" if self.live and self.bot_name else None

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# Allowed ranges of the numeric run options (inclusive), the same as their environment twins.
MAX_ITERATIONS = 10_000
INTERVAL_S = (0.0, 86_400.0)
SIGMA_SCALE = (0.001, 100.0)
SPIKE_PROB = (0.0, 1.0)
GAP_BPS = (0.0, 10_000.0)


def check_number(option: str, value: float | None, lo: float, hi: float, *, unit: str = "") -> None:
    """A numeric option is finite and within [lo, hi] (None: not given); ConfigError naming it."""
    if value is None:
        return
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ConfigError(
            f"{option} {value!r}: must be a finite number from {fmt_num(lo)} to {fmt_num(hi)}{unit}"
        )


@cache
def known_symbols() -> tuple[str, ...]:
    """The symbols the book simulator knows (``soakq/data/symbols.json``)."""
    text = resources.files("soakq.data").joinpath("symbols.json").read_text("utf-8")
    return tuple(sorted(loads(text, what="soakq/data/symbols.json")))


def check_symbols(source: str, symbols: Iterable[str]) -> None:
    """The book simulator only simulates the symbols it has data for; refuse others up front.

    ``file`` reads whatever the live bot reports, and ``kpi`` ignores the symbol (it draws the
    same KPIs for any name), so both accept any well-formed symbol.
    """
    if source != "book":
        return
    unknown = [s for s in symbols if s not in known_symbols()]
    if unknown:
        raise ConfigError(
            f"--symbols {','.join(unknown)}: unknown to the {source} source; "
            f"known: {', '.join(known_symbols())}"
        )


def derived_run_id(fields: dict[str, Any]) -> str:
    """A run id that is a function of the config: same config, same id, same bytes.

    A live run (``source`` file) has no mode or seed: ``<profile>-live-<hash>``.
    """
    digest = sha256_of({k: v for k, v in fields.items() if k != "run_id"})[:8]
    if fields.get("source") == "file":
        return f"{fields['profile']}-live-{digest}"
    return f"{fields['profile']}-{fields['mode']}-s{fields['seed']}-{digest}"


BOT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
WINDOW_S = (0.01, 86_400.0)
ERROR_LIMIT = (1, 10_000)


def default_bot_name(bot_dir: str) -> str:
    """The bot's name from its directory: the last path part, with other characters as '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", PurePath(bot_dir).name).strip(".-_")
    return name[:64] or "bot"


def live_fields(
    settings: Settings,
    *,
    bot_dir: str | None,
    bot_name: str | None,
    report_path: str | None,
    report_map: str | None,
    window_s: float | None,
    report_timeout_s: float | None,
    consecutive_error_limit: int | None,
) -> dict[str, Any]:
    """The spec fields of the live-bot handshake, validated (flag over SOAKQ_ setting)."""
    from soakq.metrics.live.fieldmap import load_user_map

    bdir = bot_dir or (str(settings.bot_dir) if settings.bot_dir else None)
    if bdir is None:
        for flag, value in (
            ("--report-path", report_path),
            ("--report-map", report_map),
            ("--bot-name", bot_name),
            ("--window", window_s),
            ("--report-timeout", report_timeout_s),
            ("--consecutive-error-limit", consecutive_error_limit),
        ):
            if value is not None:
                raise ConfigError(f"{flag} needs --bot-dir DIR (or SOAKQ_BOT_DIR): the live bot")
        return {}
    check_number("--window", window_s, *WINDOW_S, unit=" seconds")
    check_number("--report-timeout", report_timeout_s, *WINDOW_S, unit=" seconds")
    limit = 3 if consecutive_error_limit is None else consecutive_error_limit
    if not ERROR_LIMIT[0] <= limit <= ERROR_LIMIT[1]:
        raise ConfigError(
            f"--consecutive-error-limit {limit}: must be {ERROR_LIMIT[0]}..{ERROR_LIMIT[1]}"
        )
    if bot_name == "":  # `--bot-name ""` names nothing: not the default quietly
        raise ConfigError("--bot-name '': give a name, or leave the flag out for the directory's")
    name = bot_name or settings.bot_name or default_bot_name(bdir)
    if not BOT_NAME_RE.fullmatch(name):
        raise ConfigError(
            f"--bot-name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    rpath = report_path or (str(settings.report_path) if settings.report_path else None)
    window = 60.0 if window_s is None else float(window_s)
    return {
        "bot_dir": bdir,
        "bot_name": name,
        "report_path": rpath,
        "report_map": load_user_map(report_map) if report_map else None,
        "window_s": window,
        "report_timeout_s": 60.0 if report_timeout_s is None else float(report_timeout_s),
        "consecutive_error_limit": limit,
        # The guards' velocity hour is real time for a live bot: an iteration is its window.
        "minutes_per_iteration": window / 60.0,
    }


def build_spec(
    settings: Settings,
    *,
    profile: str,
    iterations: int = 24,
    interval_s: float | None = None,
    mode: str | None = None,
    seed: int | None = None,
    source: str | None = None,
    symbols: Iterable[str] | None = None,
    sets: Iterable[str] = (),
    kpi_gate: str | None = None,
    guards: bool | None = None,
    auto_tune: bool = True,
    failure_limit: int = 1,
    run_id: str | None = None,
    sigma_scale: float | None = None,
    spike_prob: float | None = None,
    gap_bps: float | None = None,
    report_dir: str | None = None,
    bot_dir: str | None = None,
    bot_name: str | None = None,
    report_path: str | None = None,
    report_map: str | None = None,
    window_s: float | None = None,
    report_timeout_s: float | None = None,
    consecutive_error_limit: int | None = None,
) -> RunSpec:
    """Flags over settings over profile; validated. ConfigError names the bad flag or layer."""
    prof = load_profile(profile)
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ConfigError(f"--iterations {iterations}: must be 1..{MAX_ITERATIONS}")
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"--seed {seed}: must be 0..{SEED_LIMIT - 1}")
    if not 1 <= failure_limit <= 10_000:
        raise ConfigError(f"--failure-limit {failure_limit}: must be 1..10000 consecutive FAILs")
    check_number("--interval", interval_s, *INTERVAL_S, unit=" seconds")
    check_number("--mock-sigma", sigma_scale, *SIGMA_SCALE)
    check_number("--spike-prob", spike_prob, *SPIKE_PROB)
    check_number("--gap-bps", gap_bps, *GAP_BPS, unit=" bp")
    overrides, sources = effective_overrides(profile, settings.runtime_overrides_json, sets)
    syms = tuple(s.strip() for s in symbols) if symbols is not None else prof.symbols
    if not syms or any(not s or not s.replace("_", "").isalnum() for s in syms):
        raise ConfigError(f"--symbols {','.join(syms)!r}: give comma-separated symbol names")
    if len(set(syms)) != len(syms):
        raise ConfigError(f"--symbols {','.join(syms)!r}: a symbol is listed twice")
    live = live_fields(
        settings,
        bot_dir=bot_dir,
        bot_name=bot_name,
        report_path=report_path,
        report_map=report_map,
        window_s=window_s,
        report_timeout_s=report_timeout_s,
        consecutive_error_limit=consecutive_error_limit,
    )
    src = source or ("file" if live else settings.default_source)
    check_symbols(src, syms)
    if live and src != "file":
        raise ConfigError(f"--bot-dir drives a live bot: it needs --source file, not {src}")
    if report_dir and (live or src != "file"):
        what = "--bot-dir drives a live bot" if live else f"--source {src} reads no reports"
        raise ConfigError(f"--report-dir replays recorded reports for --source file; {what}")
    rdir = report_dir or (str(settings.report_dir) if settings.report_dir else None)
    rdir = rdir if src == "file" and not live else None  # the setting applies where it is read
    if src == "file" and not rdir and not live:
        raise ConfigError(
            "--source file needs --bot-dir DIR (or SOAKQ_BOT_DIR) for a live bot, "
            "or --report-dir DIR (or SOAKQ_REPORT_DIR) to replay recorded reports"
        )
    mock = src != "file"
    fields: dict[str, Any] = {
        "run_id": "",
        "profile": profile,
        "iterations": iterations,
        "interval_s": settings.sleep_seconds if interval_s is None else interval_s,
        "mode": (mode or settings.mock_mode) if mock else None,
        "seed": (settings.mock_seed if seed is None else seed) if mock else None,
        "source": src,
        "symbols": list(sorted(syms)),
        "overrides": overrides,
        "sources": sources,
        "kpi_gate": kpi_gate or settings.kpi_gate_mode,
        "guards": settings.enable_guards if guards is None else guards,
        "auto_tune": auto_tune,
        "failure_limit": failure_limit,
        "sigma_scale": (settings.mock_sigma if sigma_scale is None else sigma_scale)
        if mock
        else None,
        "spike_prob": (settings.mock_spike_prob if spike_prob is None else spike_prob)
        if mock
        else None,
        "gap_bps": (settings.mock_gap_bps if gap_bps is None else gap_bps) if mock else None,
        "report_dir": rdir,
        "profile_kpi_gate": prof.kpi_gate,
        "min_fills": default_min_fills() if prof.min_fills is None else prof.min_fills,
        **live,
    }
    fields["run_id"] = derived_run_id(fields) if run_id is None else check_run_id(run_id)
    try:
        return RunSpec.model_validate(fields)
    except ValidationError as exc:  # one line: the first problem, named by its field
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"run configuration: {where}: {first['msg']}") from None
