"""SIGTERM handled as Ctrl-C while a command waits: the same one line and exit 130, not a
silent 143 (docs/resume.md for embedded runs, docs/architecture.md for followers)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """While the block runs, SIGTERM raises KeyboardInterrupt("SIGTERM") in the main thread, as
    Ctrl-C raises KeyboardInterrupt; the previous handler is restored after it."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
