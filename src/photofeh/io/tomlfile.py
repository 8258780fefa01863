"""Reading the package's TOML files (configs, cuts, column mappings) with errors that name the file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

__all__ = ["read_toml", "closest"]


def read_toml(path: str | os.PathLike, kind: str) -> dict:
    """Parse ``path``; any failure becomes ``ValueError("<kind> file <path>: <reason>")``."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{kind} file {path}: {exc}") from None


def closest(name: str, known) -> str:
    """' (did you mean X?)' for a misspelt setting name, or ''."""
    import difflib

    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""
