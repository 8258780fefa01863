"""The whole ``photofeh`` help tree as one text: the top-level help and every command's ``--help``.

The help is what users read, so a refactoring of the command line must leave it as it is:
``tests/test_cli_help.py`` compares this text with ``tests/data/cli_help_tree.txt``. After an intended change of
the help, rewrite that file with ``.venv/bin/python tests/cli_help_tree.py`` and review its diff.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path

COLUMNS = 100  # a fixed terminal width: argparse wraps the help to $COLUMNS
TREE_FILE = Path(__file__).parent / "data" / "cli_help_tree.txt"


def _help_of(argv: list[str]) -> str:
    """What ``photofeh ARGV`` prints, through the real entry point (``main``), not a parser built aside."""
    from photofeh.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main(argv)
    return out.getvalue()


def command_names() -> list[str]:
    """The subcommands in the order the top-level help lists them."""
    from photofeh.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def help_tree() -> str:
    """``photofeh --help`` and ``photofeh COMMAND --help`` for every command, at a terminal COLUMNS wide."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(COLUMNS)
    try:
        parts = []
        for argv in (["--help"], *([name, "--help"] for name in command_names())):
            parts.append(f"$ photofeh {' '.join(argv)}\n{_help_of(argv)}")
        return "\n".join(parts)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


if __name__ == "__main__":
    TREE_FILE.parent.mkdir(exist_ok=True)
    TREE_FILE.write_text(help_tree())
    print(f"wrote {TREE_FILE}")
