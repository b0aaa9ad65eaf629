"""Override precedence CLI > ENV > profile > default, `_sources`, and config validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from soakq_testkit import assert_clean_user_error, invoke, make_spec

from soakq import config as config_mod
from soakq.config import check_run_id, effective_config
from soakq.errors import ConfigError
from soakq.params import KEYS
from soakq.profiles import Profile, load_profile
from soakq.settings import load_settings

pytestmark = pytest.mark.usefixtures("clean_env")

KEY = "min_interval_ms"
DEFAULT = load_profile("default").overrides
STEADY = load_profile("steady_safe").overrides


@pytest.mark.parametrize(
    ("profile", "env", "sets", "value", "source"),
    [
        ("steady_safe", {KEY: 90}, [f"{KEY}=100"], 100, "cli"),
        ("steady_safe", {KEY: 90}, [], 90, "env"),
        ("steady_safe", None, [], STEADY[KEY], "profile:steady_safe"),
        (None, None, [], DEFAULT[KEY], "default"),
        (None, {KEY: 90}, [f"{KEY}=100"], 100, "cli"),
        (None, {KEY: 90}, [], 90, "env"),
        ("ultra_safe", None, [f"{KEY}=55"], 55, "cli"),
    ],
)
def test_precedence_table(
    profile: str | None, env: dict | None, sets: list[str], value: int, source: str
) -> None:
    cfg = effective_config(profile, None if env is None else json.dumps(env), sets)
    assert cfg[KEY] == value
    assert cfg["_sources"][KEY] == source
    # Every other key keeps its own layer: the profile's when one is given, else the default.
    other = f"profile:{profile}" if profile else "default"
    base = load_profile(profile).overrides if profile else DEFAULT
    for k in KEYS:
        if k != KEY:
            assert cfg["_sources"][k] == other and cfg[k] == base[k], k
    assert set(cfg) == {*KEYS, "_sources"}


def test_each_layer_per_key_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four keys, four layers: each key reports the highest layer that set it."""
    partial = Profile(
        "partial",
        "test profile setting two keys",
        {"tail_age_ms": 700, "impact_cap_ratio": 0.07},
        ("BTCUSDT",),
    )
    real = config_mod.load_profile
    monkeypatch.setattr(
        config_mod, "load_profile", lambda name: partial if name == "partial" else real(name)
    )
    env = json.dumps({"impact_cap_ratio": 0.06, "tail_age_ms": 710, "max_delta_ratio": 0.11})
    cfg = effective_config("partial", env, ["tail_age_ms=720", "tail_age_ms=730"])
    assert cfg["tail_age_ms"] == 730 and cfg["_sources"]["tail_age_ms"] == "cli"  # last --set
    assert cfg["impact_cap_ratio"] == 0.06 and cfg["_sources"]["impact_cap_ratio"] == "env"
    assert cfg["max_delta_ratio"] == 0.11 and cfg["_sources"]["max_delta_ratio"] == "env"
    assert cfg["min_interval_ms"] == DEFAULT["min_interval_ms"]
    assert cfg["_sources"]["min_interval_ms"] == "default"


@pytest.mark.parametrize(
    ("env", "sets", "needles"),
    [
        ('{"foo": 1}', [], ["MM_RUNTIME_OVERRIDES_JSON", "'foo'"]),
        ('{"min_interval_ms": true}', [], ["MM_RUNTIME_OVERRIDES_JSON", "min_interval_ms"]),
        ('{"min_interval_ms": "75"}', [], ["MM_RUNTIME_OVERRIDES_JSON", "min_interval_ms"]),
        ('{"min_interval_ms": NaN}', [], ["MM_RUNTIME_OVERRIDES_JSON", "NaN"]),
        ('{"min_interval_ms": Infinity}', [], ["MM_RUNTIME_OVERRIDES_JSON", "Infinity"]),
        ('{"min_interval_ms": ', [], ["MM_RUNTIME_OVERRIDES_JSON", "not valid JSON"]),
        ("[75]", [], ["MM_RUNTIME_OVERRIDES_JSON", "JSON object"]),
        ('{"tail_age_ms": 5000}', [], ["MM_RUNTIME_OVERRIDES_JSON", "tail_age_ms", "bounds"]),
        ('{"tail_age_ms": 1' + "0" * 400 + "}", [], ["MM_RUNTIME_OVERRIDES_JSON", "tail_age_ms"]),
        (None, ["tail_age_ms=1" + "0" * 400], ["--set", "tail_age_ms=1.00000e+400 is out of"]),
        (None, ["tail_age_ms=9e99999"], ["--set", "tail_age_ms=9.00000e+99999 is out of"]),
        (None, ["tail_age_ms=7_00"], ["--set", "tail_age_ms must be a number, got '7_00'"]),
        (None, ["tail_age_ms=\uff17\uff10\uff10"], ["--set", "tail_age_ms must be a number"]),
        (None, ["foo=1"], ["--set", "'foo'"]),
        (None, ["min_interval_ms=abc"], ["--set", "min_interval_ms", "number"]),
        (None, ["min_interval_ms=nan"], ["--set", "min_interval_ms", "finite"]),
        (None, ["min_interval_ms=1000"], ["--set", "min_interval_ms", "bounds"]),
        (None, ["min_interval_ms"], ["--set", "KEY=VALUE"]),
        (None, ["=5"], ["--set", "KEY=VALUE"]),
    ],
)
def test_bad_layers_name_layer_and_key(
    env: str | None, sets: list[str], needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        effective_config("steady_safe", env, sets)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.mark.parametrize(
    ("sets", "key", "value"),
    [
        (["min_interval_ms=80.0"], "min_interval_ms", 80),
        ([" tail_age_ms = 800 "], "tail_age_ms", 800),
        (["impact_cap_ratio=0.05"], "impact_cap_ratio", 0.05),
        (["base_spread_bps_delta=0"], "base_spread_bps_delta", 0.0),
    ],
)
def test_set_values_get_their_type(sets: list[str], key: str, value: float) -> None:
    got = effective_config("steady_safe", None, sets)[key]
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("env", ["", "   "])
def test_empty_env_layer_is_no_layer(env: str) -> None:
    assert effective_config("steady_safe", env, []) == effective_config("steady_safe", None, [])


def test_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="unknown profile 'nope'.*steady_safe"):
        effective_config("nope", None, [])


@pytest.mark.parametrize(
    "run_id",
    ["../x", "a/b", "..", ".", "a..b", "", "/abs", "x" * 129, "-lead", "a b", "a\\b", "ok\n"],
)
def test_bad_run_ids(run_id: str) -> None:
    with pytest.raises(ConfigError, match="--run-id"):
        check_run_id(run_id)
    with pytest.raises(ConfigError) as named:
        check_run_id(run_id, what="status: run id")
    assert str(named.value).startswith(f"status: run id {run_id!r}: use 1-128 letters")
    assert "--run-id" not in str(named.value)


@pytest.mark.parametrize("run_id", ["a", "weekly-2024.06.02_00", "X" * 128, "9lives"])
def test_good_run_ids(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize("iterations", [0, -1, -24])
def test_iterations_must_be_positive(iterations: int) -> None:
    with pytest.raises(ConfigError, match=f"--iterations {iterations}"):
        make_spec(iterations=iterations)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("SOAK_MOCK_MODE", "wild"),
        ("KPI_GATE_MODE", "medium"),
        ("ENABLE_GUARDS", "perhaps"),
        ("SOAK_MOCK_SEED", "-1"),
        ("SOAK_MOCK_SPIKE_PROB", "2"),
    ],
)
def test_bad_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"{var}=" in str(info.value) and value in str(info.value)


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({"ENABLE_GUARDS": "0"}, "guards", False),
        ({"ENABLE_GUARDS": "1"}, "guards", True),
        ({}, "guards", True),
        ({"KPI_GATE_MODE": "hard"}, "kpi_gate", "hard"),
        ({}, "kpi_gate", "soft"),
        ({"SOAK_MOCK_MODE": "spike"}, "mode", "spike"),
        ({"SOAK_MOCK_SEED": "7"}, "seed", 7),
    ],
)
def test_seed_compatible_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], field: str, expected: object
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert getattr(make_spec(), field) == expected


def test_flags_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENABLE_GUARDS", "0")
    monkeypatch.setenv("KPI_GATE_MODE", "hard")
    spec = make_spec(guards=True, kpi_gate="soft")
    assert spec.guards is True and spec.kpi_gate == "soft"


def test_run_spec_records_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MM_RUNTIME_OVERRIDES_JSON", json.dumps({"tail_age_ms": 800}))
    spec = make_spec(sets=["min_interval_ms=90"])
    assert spec.overrides["tail_age_ms"] == 800 and spec.sources["tail_age_ms"] == "env"
    assert spec.overrides["min_interval_ms"] == 90 and spec.sources["min_interval_ms"] == "cli"
    assert spec.sources["impact_cap_ratio"] == "profile:steady_safe"


def test_derived_run_id_is_a_function_of_the_config() -> None:
    a, b = make_spec(seed=1), make_spec(seed=1)
    assert a.run_id == b.run_id
    assert make_spec(seed=2).run_id != a.run_id
    assert make_spec(seed=1, sets=["min_interval_ms=90"]).run_id != a.run_id
    assert check_run_id(a.run_id) == a.run_id


# --- through the CLI -----------------------------------------------------------------------


def _config_json(stdout: str) -> dict:
    doc = json.loads(stdout)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    ("env", "sets", "value", "source"),
    [
        ({KEY: 90}, [f"{KEY}=100"], 100, "cli"),
        ({KEY: 90}, [], 90, "env"),
        (None, [], STEADY[KEY], "profile:steady_safe"),
    ],
)
def test_config_command_in_process(
    env: dict | None, sets: list[str], value: int, source: str
) -> None:
    args = ["config", "--profile", "steady_safe"]
    for s in sets:
        args += ["--set", s]
    extra = {} if env is None else {"MM_RUNTIME_OVERRIDES_JSON": json.dumps(env)}
    result = invoke(args, env=extra)
    assert result.exit_code == 0, result.stderr
    doc = _config_json(result.stdout)
    assert doc[KEY] == value and doc["_sources"][KEY] == source


def test_config_command_default_layer() -> None:
    result = invoke(["config"])
    assert result.exit_code == 0, result.stderr
    doc = _config_json(result.stdout)
    assert {doc[k] for k in KEYS} == {DEFAULT[k] for k in KEYS}
    assert set(doc["_sources"].values()) == {"default"}


def test_config_console_script_all_layers(run_cli, tmp_path: Path) -> None:
    env = {"MM_RUNTIME_OVERRIDES_JSON": json.dumps({KEY: 90, "tail_age_ms": 800})}
    proc = run_cli("config", "--profile", "steady_safe", "--set", f"{KEY}=100", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = _config_json(proc.stdout)
    assert (doc[KEY], doc["_sources"][KEY]) == (100, "cli")
    assert (doc["tail_age_ms"], doc["_sources"]["tail_age_ms"]) == (800, "env")
    assert (doc["impact_cap_ratio"], doc["_sources"]["impact_cap_ratio"]) == (
        STEADY["impact_cap_ratio"],
        "profile:steady_safe",
    )


def test_config_console_script_env_only(run_cli) -> None:
    env = {"MM_RUNTIME_OVERRIDES_JSON": json.dumps({KEY: 90})}
    proc = run_cli("config", "--profile", "steady_safe", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = _config_json(proc.stdout)
    assert (doc[KEY], doc["_sources"][KEY]) == (90, "env")


def test_config_console_script_bad_env(run_cli) -> None:
    proc = run_cli(
        "config",
        "--profile",
        "steady_safe",
        env={"MM_RUNTIME_OVERRIDES_JSON": '{"min_interval_ms": NaN}'},
    )
    assert_clean_user_error(proc, "MM_RUNTIME_OVERRIDES_JSON")


# --- input hygiene: -0.0, duplicate keys, numeric options, symbols, min_fills ---------------


def test_negative_zero_gives_the_same_run(monkeypatch: pytest.MonkeyPatch) -> None:
    neg = make_spec(sets=["base_spread_bps_delta=-0.0"])
    pos = make_spec(sets=["base_spread_bps_delta=0.0"])
    assert neg.run_id == pos.run_id and neg.overrides == pos.overrides
    monkeypatch.setenv("MM_RUNTIME_OVERRIDES_JSON", '{"base_spread_bps_delta": -0.0}')
    from_env = make_spec()
    assert from_env.overrides["base_spread_bps_delta"] == 0.0
    from soakq.jsonio import sha256_of

    assert sha256_of(from_env.overrides) == sha256_of({**from_env.overrides})


def test_duplicate_key_in_the_env_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MM_RUNTIME_OVERRIDES_JSON", '{"min_interval_ms": 80, "min_interval_ms": 90}'
    )
    with pytest.raises(ConfigError) as err:
        make_spec()
    assert str(err.value) == (
        "env MM_RUNTIME_OVERRIDES_JSON: duplicate key 'min_interval_ms' in a JSON object "
        "(each key may appear once)"
    )


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        (
            {"interval_s": float("inf")},
            "--interval inf: must be a finite number from 0 to 86400 seconds",
        ),
        (
            {"interval_s": float("nan")},
            "--interval nan: must be a finite number from 0 to 86400 seconds",
        ),
        ({"interval_s": -1.0}, "--interval -1.0: must be a finite number from 0 to 86400 seconds"),
        (
            {"interval_s": 86400.5},
            "--interval 86400.5: must be a finite number from 0 to 86400 seconds",
        ),
        (
            {"sigma_scale": float("inf")},
            "--mock-sigma inf: must be a finite number from 0.001 to 100",
        ),
        ({"sigma_scale": 0.0}, "--mock-sigma 0.0: must be a finite number from 0.001 to 100"),
        ({"sigma_scale": 100.5}, "--mock-sigma 100.5: must be a finite number from 0.001 to 100"),
        ({"spike_prob": -0.1}, "--spike-prob -0.1: must be a finite number from 0 to 1"),
        ({"spike_prob": 1.01}, "--spike-prob 1.01: must be a finite number from 0 to 1"),
        ({"spike_prob": float("nan")}, "--spike-prob nan: must be a finite number from 0 to 1"),
        ({"gap_bps": float("nan")}, "--gap-bps nan: must be a finite number from 0 to 10000 bp"),
        ({"gap_bps": -1.0}, "--gap-bps -1.0: must be a finite number from 0 to 10000 bp"),
        ({"gap_bps": 10001.0}, "--gap-bps 10001.0: must be a finite number from 0 to 10000 bp"),
    ],
)
def test_numeric_options_finite_and_in_range(kw: dict, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_spec(**kw)
    assert str(err.value) == text


@pytest.mark.parametrize(
    "kw",
    [
        {"interval_s": 0.0},
        {"interval_s": 86400.0},
        {"sigma_scale": 0.001},
        {"sigma_scale": 100.0},
        {"spike_prob": 0.0},
        {"spike_prob": 1.0},
        {"gap_bps": 0.0},
        {"gap_bps": 10000.0},
    ],
)
def test_numeric_option_edges_accepted(kw: dict) -> None:
    spec = make_spec(**kw)
    field = next(iter(kw))
    assert getattr(spec, field) == kw[field]


def test_unknown_symbol_refused_for_the_book_source() -> None:
    with pytest.raises(ConfigError) as err:
        make_spec(source="book", symbols=["BTCUSDT", "NOPE", "XRP"])
    assert str(err.value) == (
        "--symbols NOPE,XRP: unknown to the book source; known: BTCUSDT, ETHUSDT, SOLUSDT"
    )
    assert make_spec(source="book", symbols=["SOLUSDT"]).symbols == ("SOLUSDT",)


def test_any_well_formed_symbol_for_file_and_kpi(tmp_path: Path) -> None:
    assert make_spec(source="kpi", symbols=["S01"]).symbols == ("S01",)
    spec = make_spec(source="file", report_dir=str(tmp_path), symbols=["NOPE"])
    assert spec.symbols == ("NOPE",)


def test_min_fills_comes_from_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_spec().min_fills == 20
    prof = load_profile("steady_safe")
    custom = Profile(prof.name, prof.description, prof.overrides, prof.symbols, {}, 50)
    monkeypatch.setattr(config_mod, "load_profile", lambda name: custom)
    assert make_spec().min_fills == 50


def test_profile_min_fills_is_validated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import soakq.profiles as profiles_mod

    (tmp_path / "lean.json").write_text(
        json.dumps({"overrides": {}, "symbols": ["BTCUSDT"], "min_fills": 5})
    )
    (tmp_path / "bad.json").write_text(
        json.dumps({"overrides": {}, "symbols": ["BTCUSDT"], "min_fills": 2.5})
    )
    (tmp_path / "dup.json").write_text('{"symbols": ["BTCUSDT"], "symbols": ["ETHUSDT"]}')
    monkeypatch.setattr(profiles_mod, "_dir", lambda: tmp_path)
    profiles_mod.profile_names.cache_clear()
    profiles_mod.load_profile.cache_clear()
    try:
        assert profiles_mod.load_profile("lean").min_fills == 5
        with pytest.raises(ConfigError, match="profile:bad: min_fills must be a whole number"):
            profiles_mod.load_profile("bad")
        with pytest.raises(ConfigError, match="profile:dup: duplicate key 'symbols'"):
            profiles_mod.load_profile("dup")
    finally:
        profiles_mod.profile_names.cache_clear()
        profiles_mod.load_profile.cache_clear()


def test_a_spec_field_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything the flags do not check first still comes back as one line naming the field."""
    with pytest.raises(ConfigError) as err:
        make_spec(mode="wild")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("run configuration: mode: Input should be 'calm', 'volatile' or 'spike'")


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("", "--bot-name '': give a name, or leave the flag out for the directory's"),
        ("bad name", "--bot-name 'bad name': use 1-64 letters, digits"),
        ("-x", "--bot-name '-x': use 1-64 letters, digits"),
    ],
)
def test_a_bot_name_that_names_no_queue_is_refused(tmp_path, name: str, said: str) -> None:
    """`--bot-name ""` used to fall back to the directory's name without a word."""
    with pytest.raises(ConfigError, match="^" + re.escape(said)):
        make_spec(profile="default", bot_dir=str(tmp_path), bot_name=name)
