"""Fixtures of the worker tests: real worker processes on the session's redis-server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def load_harness():  # type: ignore[no-untyped-def]
    """``tests/workers/harness.py`` as module ``soakq_worker_harness`` (shared with chaos)."""
    name = "soakq_worker_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("harness.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


_h = load_harness()
cluster = _h.cluster
embedded_twin = _h.embedded_twin
private_redis = _h.private_redis
