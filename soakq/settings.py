"""One settings object, loaded once from the environment (SOAKQ_* and the seed-compatible names)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from soakq.errors import ConfigError

Mode = Literal["calm", "volatile", "spike"]
GateMode = Literal["soft", "hard"]
SourceName = Literal["book", "kpi", "file"]


class Settings(BaseSettings):
    """Environment settings. Flags on the command line override every one of them."""

    model_config = SettingsConfigDict(env_prefix="SOAKQ_", extra="ignore", frozen=True)

    redis_url: str | None = None
    artifacts_dir: Path = Path("artifacts")
    source: SourceName | None = None
    report_dir: Path | None = None  # where the `file` source replays KPI_REPORT_<i>.json
    bot_dir: Path | None = None  # the live bot's directory: the handshake (docs/live-bot.md)
    bot_name: str | None = None  # names the bot's Celery queue [default: from bot_dir]
    report_path: Path | None = None  # a bot that does not stamp its reports writes here
    socket_timeout_s: float = Field(5.0, gt=0, le=300, allow_inf_nan=False)
    lock_ttl_ms: int = Field(30_000, gt=0, le=3_600_000)
    # How long a finished run's keys stay in Redis (its artifacts on disk stay for good).
    retention_days: float = Field(30.0, gt=0, le=36_500)
    # `submit --wait` / `watch`: how long no worker may consume the run's queues before the
    # follower says so and exits (the run goes on), and how long one ping waits for answers.
    worker_grace_s: float = Field(25.0, gt=0, le=3600, allow_inf_nan=False)
    ping_timeout_s: float = Field(1.0, gt=0, le=2, allow_inf_nan=False)

    use_mock: bool = Field(True, validation_alias=AliasChoices("USE_MOCK", "SOAKQ_USE_MOCK"))
    mock_mode: Mode = Field(
        "calm", validation_alias=AliasChoices("SOAK_MOCK_MODE", "SOAKQ_MOCK_MODE")
    )
    mock_seed: int = Field(
        42, ge=0, lt=2**63, validation_alias=AliasChoices("SOAK_MOCK_SEED", "SOAKQ_MOCK_SEED")
    )
    mock_sigma: float | None = Field(
        None,
        ge=0.001,
        le=100,
        allow_inf_nan=False,
        validation_alias=AliasChoices("SOAK_MOCK_SIGMA", "SOAKQ_MOCK_SIGMA"),
    )
    mock_spike_prob: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        validation_alias=AliasChoices("SOAK_MOCK_SPIKE_PROB", "SOAKQ_MOCK_SPIKE_PROB"),
    )
    mock_gap_bps: float | None = Field(
        None,
        ge=0,
        le=10_000,
        allow_inf_nan=False,
        validation_alias=AliasChoices("SOAK_MOCK_GAP_BPS", "SOAKQ_MOCK_GAP_BPS"),
    )
    sleep_seconds: float = Field(
        0.0,
        ge=0,
        le=86_400,
        allow_inf_nan=False,
        validation_alias=AliasChoices("SOAK_SLEEP_SECONDS", "SOAKQ_SLEEP_SECONDS"),
    )
    kpi_gate_mode: GateMode = Field(
        "soft", validation_alias=AliasChoices("KPI_GATE_MODE", "SOAKQ_KPI_GATE_MODE")
    )
    enable_guards: bool = Field(
        True, validation_alias=AliasChoices("ENABLE_GUARDS", "SOAKQ_ENABLE_GUARDS")
    )
    runtime_overrides_json: str | None = Field(
        None, validation_alias=AliasChoices("MM_RUNTIME_OVERRIDES_JSON")
    )

    @field_validator("artifacts_dir", "report_dir", "bot_dir", "report_path", mode="before")
    @classmethod
    def _nonempty_path(cls, value: object) -> object:
        """An empty path would be the current directory: unset the variable for the default."""
        if isinstance(value, str) and value == "":
            raise ValueError("an empty path is not allowed (unset it for the default)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_database(cls, url: str | None) -> str | None:
        """A database path, when the URL has one, is a whole number: redis-py would otherwise
        fall back to database 0 without a word for ``/abc``."""
        parts = urlsplit(url or "")
        if parts.scheme in ("redis", "rediss"):  # others are refused where the URL is used
            path = parts.path.strip("/")
            if path and not path.isdigit():
                raise ValueError(f"the database {path!r} must be a whole number (e.g. /0)")
        return url

    @property
    def retention_s(self) -> int:
        return max(1, round(self.retention_days * 86_400))

    @property
    def default_source(self) -> str:
        return self.source or ("book" if self.use_mock else "file")


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    # Everything after the last '@' of the netloc is host[:port], even a port that is not one.
    where = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{where}"))


def _env_names(model: type[BaseSettings], loc: str) -> tuple[str, ...]:
    """Every environment name of the field an error's ``loc`` names (a field or an alias)."""
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        names = (
            tuple(str(c) for c in alias.choices)
            if isinstance(alias, AliasChoices)
            else (f"SOAKQ_{name.upper()}",)
        )
        if loc == name or loc in names:
            return names
    return (loc,)


def environment_error(exc: ValidationError, model: type[BaseSettings]) -> ConfigError:
    """The first problem of reading ``model`` from the environment, as one line naming the
    variable actually set (of a field's aliases) and its value (a URL without its password)."""
    err = exc.errors()[0]
    why = str(err["msg"]).removeprefix("Value error, ")
    if not err["loc"]:  # a rule across fields: its message names them by their variables
        return ConfigError(f"environment: {why}")
    loc = str(err["loc"][0])
    names = _env_names(model, loc)
    env = next((n for n in names if n in os.environ), names[0])
    value = err.get("input")
    if loc == "redis_url" and isinstance(value, str):
        value = redacted(value)
    return ConfigError(f"environment {env}={value!r}: {why}")


def disagreeing_aliases(model: type[BaseSettings]) -> ConfigError | None:
    """Two names of one setting set to different values (``SOAK_MOCK_MODE=calm`` and
    ``SOAKQ_MOCK_MODE=spike``): which one wins would be a guess, so neither does."""
    for field in model.model_fields.values():
        alias = field.validation_alias
        if not isinstance(alias, AliasChoices):
            continue
        given = {str(n): os.environ[str(n)] for n in alias.choices if str(n) in os.environ}
        if len(set(given.values())) > 1:
            both = " and ".join(f"{n}={v!r}" for n, v in given.items())
            return ConfigError(f"environment {both} disagree: set one of them")
    return None


def load_settings() -> Settings:
    """Read the environment once; a bad value is a ConfigError naming the variable."""
    problem = disagreeing_aliases(Settings)
    if problem is not None:
        raise problem
    try:
        return Settings()
    except ValidationError as exc:
        raise environment_error(exc, Settings) from None
