"""soakq never imports celery, kombu or redis at import time (STYLE habit 1), checked by walking
every module of the package in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

WALK = """
import importlib, pkgutil, sys
import soakq
for info in pkgutil.walk_packages(soakq.__path__, "soakq."):
    importlib.import_module(info.name)
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in {"celery", "kombu", "redis", "fakeredis", "workers",
                                      "billiard", "redbeat"})
print(",".join(heavy))
"""


def test_soakq_imports_no_queue_or_redis_module() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WALK], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "", f"soakq imported: {done.stdout.strip()}"
