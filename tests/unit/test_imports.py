"""soakq/ is the pure core: no celery/kombu/redis/redbeat/flower (nor workers) import (STYLE 1).

Only soakq/cli/ may import the Celery side, and only lazily, inside a function.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import soakq

pytestmark = pytest.mark.usefixtures("clean_env")

FORBIDDEN = frozenset({"celery", "kombu", "redis", "redbeat", "flower", "workers"})
PACKAGE = Path(soakq.__file__).resolve().parent
CLI = PACKAGE / "cli"


def _roots(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    if (  # importlib.import_module("celery") / __import__("redis")
        isinstance(node, ast.Call)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module"))
        )
    ):
        return [node.args[0].value.split(".")[0]]
    return []


def violations(source: str, *, lazy_allowed: bool) -> list[tuple[int, str]]:
    """(line, module) of forbidden imports; inside a function they pass when ``lazy_allowed``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for root in _roots(node):
            if root in FORBIDDEN and not (lazy_allowed and in_function):
                found.append((getattr(node, "lineno", 0), root))
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def modules() -> list[Path]:
    paths = sorted(PACKAGE.rglob("*.py"))
    assert len(paths) > 20  # the walk really sees the package
    return paths


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_forbidden_imports(path: Path) -> None:
    lazy_allowed = CLI in path.parents
    bad = violations(path.read_text(encoding="utf-8"), lazy_allowed=lazy_allowed)
    assert bad == [], f"{path}: forbidden import(s) {bad}"


@pytest.mark.parametrize(
    ("source", "lazy_allowed", "expected"),
    [
        ("import celery", True, ["celery"]),
        ("import redis.client", False, ["redis"]),
        ("from kombu import Connection", False, ["kombu"]),
        ("from workers.store import RedisStore", True, ["workers"]),
        ("try:\n    import redbeat\nexcept ImportError:\n    pass", True, ["redbeat"]),
        ("if True:\n    import flower", True, ["flower"]),
        ("def f():\n    import celery", True, []),
        ("def f():\n    import celery", False, ["celery"]),
        ("class C:\n    def m(self):\n        from redis import Redis", True, []),
        ("import importlib\nimportlib.import_module('redis')", False, ["redis"]),
        ("__import__('celery.app')", False, ["celery"]),
        ("import json\nfrom soakq.jsonio import dumps\nimport rediscluster_like", False, []),
        ("from . import redis", False, []),  # relative: soakq's own module
    ],
)
def test_checker_itself(source: str, lazy_allowed: bool, expected: list[str]) -> None:
    assert [m for _, m in violations(source, lazy_allowed=lazy_allowed)] == expected


def test_importing_every_module_loads_no_forbidden_package() -> None:
    """Belt and braces: import all of soakq in a fresh interpreter and look at sys.modules."""
    code = (
        "import importlib, json, pkgutil, sys, soakq\n"
        "for m in pkgutil.walk_packages(soakq.__path__, 'soakq.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert "soakq" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & FORBIDDEN)
