"""Reading the package's TOML files (configs, cuts, column mappings) with errors that name the file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

__all__ = ["read_toml"]


def read_toml(path: str | os.PathLike, kind: str) -> dict:
    """Parse ``path``; any failure becomes ``ValueError("<kind> file <path>: <reason>")``."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{kind} file {path}: {exc}") from None
