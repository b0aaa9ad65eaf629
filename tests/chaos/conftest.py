"""Chaos tests reuse the worker harness of tests/workers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_name = "soakq_worker_harness"
if _name not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        _name, Path(__file__).parents[1] / "workers" / "harness.py"
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_name] = _module
    _spec.loader.exec_module(_module)

embedded_twin = sys.modules[_name].embedded_twin
private_redis = sys.modules[_name].private_redis
