"""The one JSON writer: canonical, deterministic, atomic (README, artifacts)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, TypeGuard

from soakq.errors import InputError

ARTIFACT_MODE = 0o644


def positive_zero(obj: Any) -> Any:
    """``obj`` with every float ``-0.0`` (in nested dicts and lists) replaced by ``0.0``.

    A value and its hash must not depend on the sign of zero; everything else is left as is.
    """
    if isinstance(obj, float):
        return 0.0 if obj == 0.0 else obj
    if isinstance(obj, dict):
        return {k: positive_zero(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [positive_zero(v) for v in obj]
    return obj


#: Where a ``-0.0`` may be in encoded JSON (a number, or text that looks like one).
_NEGATIVE_ZERO = re.compile(r"-0\.0(?![0-9])")


def _encode(obj: Any, **kw: Any) -> str:
    """``json.dumps(positive_zero(obj))``, skipping the copy when the plain encoding holds no
    ``-0.0`` (it then has none to replace: the usual case, and the fast one)."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=True, allow_nan=False, **kw)
    if _NEGATIVE_ZERO.search(text) is None:
        return text
    return json.dumps(positive_zero(obj), sort_keys=True, ensure_ascii=True, allow_nan=False, **kw)


def dumps(obj: Any) -> str:
    """Pretty canonical form used for every artifact: sorted, ASCII, indent 2, trailing newline."""
    return _encode(obj, indent=2) + "\n"


def canonical(obj: Any) -> str:
    """Compact canonical form used for hashes and for storage."""
    return _encode(obj, separators=(",", ":"))


def sha256_of(obj: Any) -> str:
    """SHA-256 hex of the compact canonical form of ``obj``."""
    return hashlib.sha256(canonical(obj).encode("ascii")).hexdigest()


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` canonically: temp file in the same directory, fsync, rename."""
    return write_text(path, dumps(obj))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically replace ``path`` with ``text`` (temp file, fsync, rename, fsync dir)."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically replace ``path`` with ``data``. A file that already holds exactly ``data`` is
    left alone (every file here was written this way, so it is complete and synced): re-exporting
    a run rewrites only what changed."""
    target = Path(path)
    with contextlib.suppress(OSError):
        if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp creates 0600; artifacts are read by other users and containers.
        os.fchmod(fd, ARTIFACT_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice (the last one would silently win)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(key)
        out[key] = value
    return out


def loads(text: str, *, what: str = "input") -> Any:
    """Parse strict JSON (NaN/Infinity and duplicate keys refused); InputError naming ``what``."""
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except DuplicateKeyError as exc:
        raise InputError(
            f"{what}: duplicate key {exc.key!r} in a JSON object (each key may appear once)"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"{what}: not valid JSON ({exc})") from None


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file strictly; raise InputError naming the file when it is unusable."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory, expected a JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read ({exc})") from None
    return loads(text, what=str(p))


def is_finite_number(value: Any) -> TypeGuard[int | float]:
    """True for an int or float (not bool) that is finite as a float (a huge int is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # JSON ints are unbounded: 1 followed by 400 zeros has no float
        return False
