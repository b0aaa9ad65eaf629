"""Report field maps (data): which field of a bot's report holds each KPI, and its scale.

A map is JSON: ``fields`` maps a KPI to candidate fields, tried in order (``{"from": NAME,
"scale": S}``; the first present one wins), ``symbols_keys`` names the per-symbol section and
``total_keys`` the section of a one-symbol total (else the report's top level). The built-in map
(``soakq/data/report_maps/builtin.json``) reads soakq's own names and the predecessor bot's
EDGE_REPORT names; a user map (``--report-map FILE``) replaces the entries of the KPIs it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soakq.errors import ConfigError, InputError
from soakq.jsonio import is_finite_number, loads, read_json
from soakq.metrics.base import DIAGNOSTICS, KPI_KEYS

MAPPED: tuple[str, ...] = (*KPI_KEYS, *DIAGNOSTICS)


class Candidate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    from_: str = Field(alias="from", min_length=1)
    scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class FieldMap(BaseModel):
    """A validated report field map."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    fields: dict[str, tuple[Candidate, ...]]
    symbols_keys: tuple[str, ...] = ("symbols",)
    total_keys: tuple[str, ...] = ()

    @field_validator("fields")
    @classmethod
    def _known(cls, value: dict[str, tuple[Candidate, ...]]) -> dict[str, tuple[Candidate, ...]]:
        unknown = sorted(set(value) - set(MAPPED))
        if unknown:
            raise ValueError(f"unknown KPI {unknown[0]!r}; allowed: {', '.join(MAPPED)}")
        empty = sorted(k for k, candidates in value.items() if not candidates)
        if empty:  # it would read nothing: the KPI always absent, the gate always failing closed
            raise ValueError(f'{empty[0]}: give at least one candidate, e.g. [{{"from": "FIELD"}}]')
        return value

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def merged(self, user: FieldMap) -> FieldMap:
        """This map with ``user``'s entries (and sections, when given) taking precedence."""
        given = user.model_fields_set
        return FieldMap(
            description=user.description or self.description,
            fields={**self.fields, **user.fields},
            symbols_keys=user.symbols_keys if "symbols_keys" in given else self.symbols_keys,
            total_keys=user.total_keys if "total_keys" in given else self.total_keys,
        )

    def read_row(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The KPIs of one report row, and the KPIs the row does not carry at all.

        A scaled value is rounded to 12 significant digits so that 93.3 % reads as 0.933.
        """
        values: dict[str, Any] = {}
        absent: list[str] = []
        for kpi in MAPPED:
            for cand in self.fields.get(kpi, ()):
                if cand.from_ in row and row[cand.from_] is not None:
                    raw = row[cand.from_]
                    values[kpi] = (
                        float(f"{raw * cand.scale:.12g}")
                        if cand.scale != 1.0 and is_finite_number(raw)
                        else raw
                    )
                    break
            else:
                values[kpi] = None
                if kpi in KPI_KEYS:
                    absent.append(kpi)
        return values, tuple(absent)


def _parse(doc: Any, what: str) -> FieldMap:
    try:
        return FieldMap.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        if not where:  # the document itself: a JSON object is wanted
            msg = 'expected a JSON object such as {"fields": {"risk_ratio": [{"from": "FIELD"}]}}'
        raise ConfigError(f"{what}: {where + ': ' if where else ''}{msg}") from None


@cache
def builtin_map() -> FieldMap:
    text = resources.files("soakq.data").joinpath("report_maps/builtin.json").read_text("utf-8")
    return _parse(loads(text, what="built-in report map"), "built-in report map")


def load_user_map(path: str | Path) -> dict[str, Any]:
    """Read and validate ``--report-map FILE``; return it as JSON (it goes into the run spec)."""
    try:
        doc = read_json(path)
    except InputError as exc:
        raise ConfigError(f"--report-map {exc}") from None
    parsed = _parse(doc, f"--report-map {path}")
    return parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)


def field_map(user: Mapping[str, Any] | None) -> FieldMap:
    """The map a run reads its reports with: the built-in one, under the user's (if any)."""
    base = builtin_map()
    return base if not user else base.merged(_parse(dict(user), "report map"))
