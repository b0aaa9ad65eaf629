"""Fixtures for the unit tests: an isolated environment and the real console script.

Nothing here is autouse: the soakq unit modules opt in with
``pytestmark = pytest.mark.usefixtures("clean_env")``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ENV_PREFIXES = ("SOAK_", "SOAKQ_")
ENV_NAMES = ("USE_MOCK", "KPI_GATE_MODE", "ENABLE_GUARDS", "MM_RUNTIME_OVERRIDES_JSON")
CLI_TIMEOUT_S = 60.0


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No soakq-related variable in the environment; cwd is a fresh temp dir (returned)."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES) or name in ENV_NAMES:
            monkeypatch.delenv(name)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="session")
def soakq_exe() -> str:
    """The installed `soakq` console script (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("soakq")
    exe = str(beside) if beside.exists() else shutil.which("soakq")
    if exe is None:
        pytest.fail("the soakq console script is not installed (pip install -e .)")
    return exe


@pytest.fixture
def run_cli(soakq_exe: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `soakq` with an explicit environment (only PATH, HOME, LANG + ``env``)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def run(
        *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            # A worktree run with PYTHONPATH set tests its own tree, not the installed one.
            **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
            **(env or {}),
        }
        return subprocess.run(
            [soakq_exe, *args],
            env=full_env,
            cwd=cwd or tmp_path,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )

    return run
