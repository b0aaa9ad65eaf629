"""The one JSON writer: canonical, strict, atomic (docs/artifacts.md)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soakq_testkit import PROPERTY, artifact_paths, contract_hash, make_spec, run_spec

from soakq import jsonio
from soakq.errors import InputError
from soakq.jsonio import canonical, dumps, loads, read_json, sha256_of, write_json

pytestmark = pytest.mark.usefixtures("clean_env")


def test_pretty_form_by_hand() -> None:
    """Sorted keys at every level, ASCII escapes, indent 2, one trailing newline."""
    doc = {"b": 1, "a": {"d": [1, 2.5], "c": "é"}, "Z": None}
    expected = (
        "{\n"
        '  "Z": null,\n'
        '  "a": {\n'
        '    "c": "\\u00e9",\n'
        '    "d": [\n'
        "      1,\n"
        "      2.5\n"
        "    ]\n"
        "  },\n"
        '  "b": 1\n'
        "}\n"
    )
    assert dumps(doc) == expected


def test_written_bytes_are_the_pretty_form(clean_env: Path) -> None:
    path = write_json(clean_env / "x.json", {"k": "ünïcode", "a": [True, False]})
    data = path.read_bytes()
    assert data.isascii() and data.endswith(b"}\n") and not data.endswith(b"\n\n")
    assert data.decode("ascii") == dumps({"a": [True, False], "k": "ünïcode"})


def test_compact_canonical_form_and_hash() -> None:
    doc = {"b": [1, {"y": 2, "x": 1}], "a": 0.5}
    assert canonical(doc) == '{"a":0.5,"b":[1,{"x":1,"y":2}]}'
    assert sha256_of(doc) == contract_hash(doc)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_refused_and_nothing_written(clean_env: Path, bad: float) -> None:
    target = clean_env / "x.json"
    with pytest.raises(ValueError):
        write_json(target, {"v": [1, {"deep": bad}]})
    with pytest.raises(ValueError):
        canonical({"v": bad})
    assert list(clean_env.iterdir()) == []


def _assert_only(directory: Path, names: set[str]) -> None:
    assert {p.name for p in directory.iterdir()} == names  # no temp file left behind


@pytest.mark.parametrize("bad", [{"v": math.nan}, {"v": object()}, {"v": {1j}}])
def test_failed_serialization_keeps_old_file(clean_env: Path, bad: Any) -> None:
    target = write_json(clean_env / "x.json", {"old": 1})
    before = target.read_bytes()
    with pytest.raises((ValueError, TypeError)):
        write_json(target, bad)
    assert target.read_bytes() == before
    _assert_only(clean_env, {"x.json"})


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_failure_mid_write_keeps_old_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    """The bytes are already in the temp file when fsync or rename fails: old file intact."""
    target = write_json(clean_env / "x.json", {"old": 1})
    before = target.read_bytes()

    def boom(*_a: Any, **_k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jsonio.os, fail_at, boom)
    with pytest.raises(OSError):
        write_json(target, {"new": 2})
    monkeypatch.undo()
    assert target.read_bytes() == before
    _assert_only(clean_env, {"x.json"})


def test_write_replaces_whole_file(clean_env: Path) -> None:
    target = write_json(clean_env / "sub" / "x.json", {"long": "x" * 1000})
    write_json(target, {"s": 1})
    assert target.read_text() == '{\n  "s": 1\n}\n'
    _assert_only(target.parent, {"x.json"})


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_reader_refuses_non_finite_tokens(clean_env: Path, token: str) -> None:
    p = clean_env / "x.json"
    p.write_text('{"v": ' + token + "}")
    with pytest.raises(InputError, match=token):
        read_json(p)


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.mkdir(), "directory"),
        (lambda p: p.write_text("{"), "not valid JSON"),
        (lambda p: p.write_bytes(b"\xff\xfe{}"), "cannot read"),
    ],
)
def test_reader_errors_name_the_file(clean_env: Path, setup: Any, needle: str) -> None:
    p = clean_env / "in.json"
    setup(p)
    with pytest.raises(InputError) as info:
        read_json(p)
    assert str(p) in str(info.value) and needle in str(info.value)


@pytest.mark.parametrize(
    ("value", "finite"),
    [
        (1, True),
        (-2.5, True),
        (0, True),
        (10**300, True),
        (10**400, False),  # a JSON int with no float: not usable as a number
        (-(10**400), False),
        (math.nan, False),
        (math.inf, False),
        (True, False),
        (False, False),
        ("1", False),
        (None, False),
        ([1], False),
    ],
)
def test_is_finite_number(value: Any, finite: bool) -> None:
    assert jsonio.is_finite_number(value) is finite


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@PROPERTY
@given(json_values)
def test_round_trip_is_stable(value: Any) -> None:
    text = dumps(value)
    assert text.isascii() and text.endswith("\n")
    back = loads(text)
    assert back == value
    assert dumps(back) == text
    assert canonical(back) == canonical(value)
    assert sha256_of(back) == contract_hash(value)


@PROPERTY
@given(st.dictionaries(st.text(max_size=5), st.integers(), max_size=6))
def test_keys_sorted(value: dict[str, int]) -> None:
    pairs = json.loads(dumps(value), object_pairs_hook=lambda kv: kv)
    assert [k for k, _ in pairs] == sorted(value)


def test_every_run_artifact_rewrites_to_the_same_bytes(clean_env: Path) -> None:
    """Read each JSON artifact of a real run back and write it again: same bytes."""
    _, run_dir = run_spec(make_spec(iterations=5, mode="volatile"), clean_env / "art")
    paths = artifact_paths(run_dir)
    assert {p.name for p in paths} >= {
        "ITER_SUMMARY_1.json",
        "ITER_SUMMARY_final.json",
        "RUN.json",
        "TUNING_REPORT.json",
    }
    scratch = clean_env / "rewrite"
    for p in paths:
        original = p.read_bytes()
        assert original.isascii() and original.endswith(b"\n")
        again = write_json(scratch / p.name, read_json(p)).read_bytes()
        assert again == original, p.name
    leftovers = [p.name for p in run_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert not any(name.endswith(".tmp") for name in os.listdir(run_dir))


def test_written_files_are_readable_by_others(tmp_path):
    import stat

    from soakq.jsonio import write_json

    path = write_json(tmp_path / "x.json", {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


# --- -0.0 is 0.0; a key named twice is an error ---------------------------------------------


def _sign(x: float) -> float:
    return math.copysign(1.0, x)


def test_negative_zero_is_written_as_zero(clean_env: Path) -> None:
    neg = {"a": -0.0, "b": [-0.0, {"c": -0.0}], "d": (-0.0, 1), "e": 0, "f": -1.5}
    pos = {"a": 0.0, "b": [0.0, {"c": 0.0}], "d": (0.0, 1), "e": 0, "f": -1.5}
    assert dumps(neg) == dumps(pos) and "-0.0" not in dumps(neg)
    assert canonical(neg) == canonical(pos)
    assert canonical(neg) == '{"a":0.0,"b":[0.0,{"c":0.0}],"d":[0.0,1],"e":0,"f":-1.5}'
    assert sha256_of(neg) == sha256_of(pos)
    a = write_json(clean_env / "a.json", neg).read_bytes()
    b = write_json(clean_env / "b.json", pos).read_bytes()
    assert a == b


def test_positive_zero_leaves_everything_else_alone() -> None:
    doc = {"x": [1, 2.5, "s", None, True, -3]}
    assert jsonio.positive_zero(doc) == doc
    assert _sign(jsonio.positive_zero(-0.0)) == 1.0
    assert jsonio.positive_zero(-1e-300) == -1e-300
    assert jsonio.positive_zero(False) is False and jsonio.positive_zero(0) == 0
    assert jsonio.positive_zero((1, -0.0)) == [1, 0.0]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"a": 1, "a": 2}', "a"),
        ('{"a": 1, "a": 1}', "a"),  # the same value twice is still ambiguous
        ('{"x": {"b": 1, "b": 2}}', "b"),
        ('[{"c": 1}, {"c": 1, "d": 2, "c": 3}]', "c"),
    ],
)
def test_duplicate_keys_are_an_error_naming_the_key(text: str, key: str) -> None:
    with pytest.raises(InputError) as err:
        loads(text, what="WHERE")
    assert str(err.value) == (
        f"WHERE: duplicate key {key!r} in a JSON object (each key may appear once)"
    )


def test_duplicate_keys_in_a_file_name_the_file(clean_env: Path) -> None:
    path = clean_env / "d.json"
    path.write_text('{"k": 1,\n "k": 2}')
    with pytest.raises(InputError, match=f"^{path}: duplicate key 'k'"):
        read_json(path)


def test_distinct_keys_still_load() -> None:
    assert loads('{"a": 1, "b": {"a": 2}}') == {"a": 1, "b": {"a": 2}}


def test_missing_parent_directories_are_made(clean_env: Path) -> None:
    target = clean_env / "a" / "b" / "c.json"
    write_json(target, {"k": 1})
    assert read_json(target) == {"k": 1}
    jsonio.write_bytes(clean_env / "x" / "y" / "raw.bin", b"\x00")
    assert (clean_env / "x" / "y" / "raw.bin").read_bytes() == b"\x00"


def test_the_temp_file_is_hidden_beside_the_target(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written as `.NAME.<random>.tmp` in the target's directory, then renamed."""
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: Any, dst: Any) -> None:
        seen.append(Path(src).name)
        assert Path(src).parent == Path(dst).parent
        real_replace(src, dst)

    monkeypatch.setattr(jsonio.os, "replace", spy)
    write_json(clean_env / "out.json", {"k": 1})
    (name,) = seen
    assert name.startswith(".out.json.") and name.endswith(".tmp")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{",
            "input: not valid JSON (Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1))",
        ),
        ("[NaN]", "input: not valid JSON (NaN is not valid JSON)"),
    ],
)
def test_loads_messages_exactly(text: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        loads(text)
    assert str(err.value) == message


def test_read_json_messages_exactly(clean_env: Path) -> None:
    with pytest.raises(InputError) as err:
        read_json(clean_env / "nope.json")
    assert str(err.value) == f"{clean_env / 'nope.json'}: file not found"
    with pytest.raises(InputError) as err:
        read_json(clean_env)
    assert str(err.value) == f"{clean_env}: is a directory, expected a JSON file"
    bad = clean_env / "latin1.json"
    bad.write_bytes(b'{"k": "\xe9"}')
    with pytest.raises(InputError) as err:
        read_json(bad)
    assert str(err.value).startswith(f"{bad}: cannot read (") and "utf-8" in str(err.value)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([-0.0, 0.0, -0.05, -1e-7])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_JSON)
def test_the_fast_encoding_is_the_positive_zero_encoding(obj: Any) -> None:
    # The writer skips the positive_zero copy when the plain text holds no -0.0: same bytes.
    want = json.dumps(
        jsonio.positive_zero(obj), sort_keys=True, ensure_ascii=True, separators=(",", ":")
    )
    assert jsonio.canonical(obj) == want
    pretty = json.dumps(jsonio.positive_zero(obj), sort_keys=True, ensure_ascii=True, indent=2)
    assert jsonio.dumps(obj) == pretty + "\n"
