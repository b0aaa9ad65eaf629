"""One settings object, loaded once from the environment (SOAKQ_* and the seed-compatible names)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError
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
    socket_timeout_s: float = Field(5.0, gt=0)
    lock_ttl_ms: int = Field(30_000, gt=0)
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

    @property
    def retention_s(self) -> int:
        return max(1, round(self.retention_days * 86_400))

    @property
    def default_source(self) -> str:
        return self.source or ("book" if self.use_mock else "file")


_ENV_NAMES = {
    name: (
        field.validation_alias.choices[0]  # type: ignore[union-attr]
        if isinstance(field.validation_alias, AliasChoices)
        else f"SOAKQ_{name.upper()}"
    )
    for name, field in Settings.model_fields.items()
}


def load_settings() -> Settings:
    """Read the environment once; a bad value is a ConfigError naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        env = _ENV_NAMES.get(field, field)
        raise ConfigError(f"environment {env}={err.get('input')!r}: {err['msg']}") from None
