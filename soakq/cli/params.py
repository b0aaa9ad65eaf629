"""Parameter parsers shared by the commands."""

from __future__ import annotations

from pathlib import Path

import typer


def nonempty_path(value: str | Path) -> Path:
    """A path option or argument; an empty string is refused (``Path("")`` would be the current
    directory: ``--bot-dir ""`` wrote the handshake into it)."""
    if isinstance(value, Path):
        return value
    if value == "":
        raise typer.BadParameter(
            "an empty path is not allowed (leave the option out for its default)"
        )
    return Path(value)


PATH = nonempty_path
