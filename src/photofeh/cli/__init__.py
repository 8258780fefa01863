"""The ``photofeh`` command line.

Each subcommand is a thin layer over the Python API: it parses arguments,
turns user mistakes into one clear line on stderr with a non-zero exit code
(2 for bad arguments, 1 for bad input files or failed runs), and reports
progress on stderr so that stdout carries only results.

One module per command holds its arguments, its help and its handler (``register`` adds the subparser, whose
``func`` is the module's ``handle``); argument types shared by several commands are in
:mod:`photofeh.cli.arguments`, and what several handlers share in :mod:`photofeh.cli.common`. A new command
is one new module and its name in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from photofeh import __version__
from photofeh.cli.common import UserError, check_address_space, limit_malloc_arenas, resource_failure, train_config

__all__ = ["COMMANDS", "UserError", "build_parser", "main", "run"]

# The command modules, in the order the help lists them ("maps" is the module of ``photofeh map``).
COMMANDS = ("simulate", "train", "evaluate", "lr_find", "crossmatch", "merge_photometry", "build_training_set",
            "predict", "maps", "mdf", "report")

_train_config = train_config  # the name tests import from here, as from the single-module cli.py before


def build_parser() -> argparse.ArgumentParser:
    """The whole ``photofeh`` parser: the top level, then each module of :data:`COMMANDS` adds its subcommand.

    The command modules are imported here, not at the package's import, so that ``photofeh.cli.UserError`` or
    ``main`` cost nothing until a command line is parsed.
    """
    parser = argparse.ArgumentParser(
        prog="photofeh",
        description="Stellar parameters ([Fe/H], log g, Teff, giant/dwarf) from multi-band photometry.",
        epilog="Run 'photofeh COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"photofeh {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def _terminate(signum, frame) -> None:
    """SIGTERM (a batch system's kill, `kill PID`) is handled like Ctrl-C: outputs are cleaned up the same way.
    Once: a second SIGTERM must not interrupt that clean-up."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


# set by main when a command ran out of a resource: run() then ends the process at once (see there)
_OUT_OF_RESOURCES = False


def _resource_note(args: argparse.Namespace, problem: str) -> str:
    """The one line of a command that ran out of disk, file size or memory, and what is left of its output."""
    out = getattr(args, "out", None)
    if args.command == "predict":
        left = f"the chunks finished in {out} are kept: rerun the same command to resume"
    else:
        left = (f"nothing was left half-written{f' at {out}' if out else ''} (outputs are renamed into place only "
                "when complete)")
    return f"{problem}; {left}"


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code: 0 done, 1 a user error (one line on stderr, no traceback) or
    a run out of disk, file size or memory (:func:`photofeh.cli.common.resource_failure`: one line naming the
    limit), 2 bad arguments (argparse), 3 a prediction run that skipped chunks, 130 interrupted."""
    global _OUT_OF_RESOURCES
    import signal
    import threading

    from photofeh.io.locking import OutputLocked

    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        check_address_space()
        return args.func(args)
    except (UserError, OutputLocked) as exc:
        print(f"photofeh {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"photofeh {args.command}: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    except Exception as exc:
        problem = resource_failure(exc)
        if problem is None:
            raise
        _OUT_OF_RESOURCES = True
        print(f"photofeh {args.command}: error: {_resource_note(args, problem)}", file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def run() -> None:
    """The ``photofeh`` executable: :func:`main`, then exit with its code. Once the work is over, a late
    SIGTERM or Ctrl-C has nothing left to interrupt and cannot turn a finished run into a killed one."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)  # main restores this handler, not the default, when it returns
    limit_malloc_arenas()  # before any library starts a thread
    code = 130
    try:
        code = main()
    except KeyboardInterrupt:  # arrived while an error was being reported
        code = 130
    finally:
        while True:  # a signal landing between these two calls raises once more: retry until both are set
            try:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                break
            except KeyboardInterrupt:
                continue
    if _OUT_OF_RESOURCES:
        # out of memory, native libraries' threads and finalisers may abort (exit 134) after the message; the
        # outputs are durable (fsynced and renamed) and the locks are the kernel's: end here, code as said
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream
                pass
        os._exit(code)
    sys.exit(code)
