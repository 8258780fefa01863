"""What several command handlers share: the user-error type, table loading, the training configuration,
catalogue jobs and the prior note of the prediction commands.

Kept in one place so that each handler reads and reports the same way: a mistake in the user's arguments or
files becomes :class:`UserError`, which ``main`` prints as one line with exit code 1.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["ALLOW_INCOMPLETE_HELP", "MIN_ADDRESS_SPACE", "OVERWRITE_HELP", "UserError", "catalogue_job",
           "check_address_space", "check_output", "limit_malloc_arenas", "load_table", "predictions_state",
           "prior_note", "resource_failure", "staged_folder", "train_config", "user_errors"]

OVERWRITE_HELP = "replace an existing output (only once the new one is complete)"


class UserError(Exception):
    """A mistake in the user's arguments or files: reported without a traceback."""


def error_text(exc: BaseException) -> str:
    """The one line an exception says: a plain ``KeyError``'s message without the quotes its ``str`` adds."""
    if type(exc) is KeyError and exc.args:
        return str(exc.args[0])
    return str(exc)


@contextmanager
def user_errors(*types: type[BaseException]) -> Iterator[None]:
    """The one translation of the handlers: an exception of ``types`` raised in the block becomes a one-line
    :class:`UserError`. A failure for want of a resource (:func:`resource_failure`: disk, file-size or memory
    limit) is left as it is, for ``main`` to say so."""
    try:
        yield
    except types as exc:
        if resource_failure(exc) is not None:
            raise
        raise UserError(error_text(exc)) from None


# errno in the text of errors that carry it only there (pyarrow's "[errno 27]", Rust's "(os error 27)")
_ERRNO_TEXT = re.compile(r"(?:\[errno |\(os error )(\d+)", re.IGNORECASE)
_NO_MEMORY = ("can't start new thread", "can't allocate memory", "cannot allocate memory", "failed to map segment",
              "bad_alloc")


def _limit(name: str) -> str:
    """A resource limit of this process as ulimit shows it (``RLIMIT_FSIZE``, ``RLIMIT_AS``)."""
    import resource

    soft = resource.getrlimit(getattr(resource, name))[0]
    if soft == resource.RLIM_INFINITY:
        return "unlimited"
    unit = next(u for u in range(3, 0, -1) if soft >= 2 ** (10 * u) or u == 1)  # KiB, MiB or GiB
    return f"{soft / 2 ** (10 * unit):,.1f} {'KMG'[unit - 1]}iB"


# The least address space (``ulimit -v``) a command is started with. Measured on 2 cores with one malloc arena
# (:func:`limit_malloc_arenas`): train (3,000 stars) needed 1.5 GiB, predict 1.1 GiB; below that the libraries
# fail as they load or start threads, and some (libgomp, OpenBLAS) end the process with their own message.
# More cores start more threads, each reserving its stack: such machines need more.
MIN_ADDRESS_SPACE = 3 * 2**29  # 1.5 GiB


def check_address_space() -> None:
    """Refuse to start under an address-space limit below :data:`MIN_ADDRESS_SPACE`, in one line."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY and soft < MIN_ADDRESS_SPACE:
        raise UserError(f"the address-space limit (ulimit -v) is {_limit('RLIMIT_AS')}: photofeh needs at least "
                        f"{MIN_ADDRESS_SPACE / 2**30:.1f} GiB (PyTorch, OpenBLAS and Arrow load and start their "
                        "threads in it, and some end the process without a message when they cannot); raise it")


def resource_failure(exc: BaseException) -> str | None:
    """What a failure for want of a resource says, in one line; ``None`` for any other failure.

    A file past the process's file-size limit (``ulimit -f``: Python ignores SIGXFSZ, so the write fails with
    EFBIG), a full disk or quota (ENOSPC, EDQUOT), and memory: ``MemoryError`` (also Arrow's), and what the
    native libraries raise when an address-space limit (``ulimit -v``, a batch system's h_vmem) is reached:
    a thread that cannot start, a tensor that cannot be allocated, a library that cannot be mapped.
    """
    text = " ".join(str(exc).split())[:300]
    code = exc.errno if isinstance(exc, OSError) and exc.errno else None
    if code is None and (found := _ERRNO_TEXT.search(text)):
        code = int(found.group(1))
    if code == errno.EFBIG:
        return (f"a file reached this process's file-size limit (ulimit -f: {_limit('RLIMIT_FSIZE')}; {text}): "
                "raise it (ulimit -f unlimited) or write smaller files")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk is full or the quota reached ({text}): free some space"
    if (code == errno.ENOMEM or isinstance(exc, MemoryError)
            or (isinstance(exc, RuntimeError | ImportError) and any(s in text for s in _NO_MEMORY))
            or "MemoryError" in text):  # a reader's message naming the MemoryError it caught
        return (f"out of memory ({type(exc).__name__}: {text or 'no detail'}; address-space limit, ulimit -v: "
                f"{_limit('RLIMIT_AS')}): raise the limit or use less memory (a smaller --chunk-rows, fewer "
                "--workers or --threads)")
    cause = exc.__cause__ or exc.__context__  # e.g. a reader's error raised while handling a MemoryError
    return resource_failure(cause) if cause is not None and cause is not exc else None


def limit_malloc_arenas() -> None:
    """Under an address-space limit (``ulimit -v``, a batch system's h_vmem), one malloc arena per process.

    glibc gives threads their own arenas, each reserving 64 MiB of address space (mallopt(3), M_ARENA_MAX;
    up to 8 per core): the thread pools of PyTorch, OpenBLAS and Arrow then exhausted a 2.4 GiB limit before
    any star was read, and the libraries aborted (``std::bad_alloc``, exit 134) or hung instead of raising.
    With one arena ``predict`` ran in 1.2 GiB (60,000 stars, 2 cores). Worker processes, started afresh,
    read ``MALLOC_ARENA_MAX``. Nothing is changed without a limit, nor where glibc is absent.
    """
    import resource

    if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
        return
    os.environ.setdefault("MALLOC_ARENA_MAX", "1")
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, int(os.environ["MALLOC_ARENA_MAX"]))  # M_ARENA_MAX (malloc.h)
    except (OSError, AttributeError, ValueError):
        pass



def check_output(out: str | None, inputs=(), overwrite: bool = False, place: bool = True) -> None:
    """The one output policy of every command, before any work: an output that is, holds or lies inside an
    input (paths resolved, symlinks included) is refused, and so is an existing output unless ``overwrite``
    (:func:`photofeh.io.catalog.check_overwrite`). ``place=False``: only the first two (an output that may
    lie inside a run folder, as ``report``'s default RUN/report.html does)."""
    from photofeh.io.catalog import check_output_place, check_overwrite

    if out is None:
        return
    given = [i for i in inputs if i]
    with user_errors(ValueError, OSError):
        if place:
            check_output_place(out, given)
        else:
            o = Path(out).resolve()
            for i in given:
                r = Path(i).resolve()
                if o == r or o in r.parents:
                    raise ValueError(f"the output {out} is (or holds) the input {i}: choose another output")
        check_overwrite(out, overwrite)


@contextmanager
def staged_folder(out: str | os.PathLike, command: str) -> Iterator[Path]:
    """The output folder of ``map`` and ``mdf``, staged: its lock held for the block (the real folder: a symlink's
    target is replaced and the link stays), the block writing into a hidden folder beside it that replaces it
    only once the block completes (:func:`photofeh.io.catalog.folder_output`). ``OSError`` if the folder
    above it does not exist."""
    from photofeh.io.catalog import folder_output
    from photofeh.io.locking import output_lock

    final = Path(out)
    if final.is_symlink():
        final = final.resolve()
    if not final.parent.is_dir():
        raise OSError(f"cannot create {final}: folder {final.parent} does not exist")
    with output_lock(final, command, inside=True), folder_output(final) as stage:
        yield stage


ALLOW_INCOMPLETE_HELP = ("use an unfinished prediction run (killed, or with chunks skipped by --on-error skip): "
                         "only its finished chunks, and the outputs say so (without it, such a run is refused)")


def predictions_state(path: str, allow_incomplete: bool, command: str) -> dict:
    """Refuse an unfinished ``photofeh predict`` output (:func:`photofeh.scale.ledger.run_state`) unless
    ``allow_incomplete``; then warn on stderr and return the note the command's outputs carry
    (``{"incomplete_predictions": ...}``). A folder holding files that no chunk wrote is refused either way: a
    dataset reader would count their rows too. ``{}`` for a finished run, a file, or a table made elsewhere."""
    from photofeh.scale.ledger import run_state

    state = run_state(path)
    if state is None or state["complete"]:
        return {}
    why = "; ".join(state["problems"])
    if state["foreign_files"]:
        raise UserError(f"{path}: {why}. Move them out of the folder (or rerun the 'photofeh predict' command, "
                        "which checks the folder again)")
    total = state["chunks_total"]
    counts = (f"{state['stars']:,d} stars in {state['chunks_done']:,d} of "
              f"{f'{total:,d}' if total is not None else 'an unknown number of'} chunks")
    if not allow_incomplete:
        raise UserError(f"{path} is an unfinished prediction run ({counts}): {why}. Rerun the same 'photofeh "
                        "predict' command to finish it, or pass --allow-incomplete to use its finished chunks "
                        "(the outputs then say so)")
    note = (f"INCOMPLETE: made from an unfinished prediction run ({counts}; {why}), with --allow-incomplete; "
            "counts, maps and distributions cover only the finished chunks")
    print(f"photofeh {command}: warning: {note}", file=sys.stderr)
    return {"incomplete_predictions": {"note": note, **{k: state[k] for k in ("stars", "chunks_done",
                                                                               "chunks_total", "failed_chunks",
                                                                               "problems")}}}


def load_table(path: str, preset: str | None = None, log=None):
    """A whole labelled table as a DataFrame: Parquet and FITS as they are, any other format the readers
    know (HDF5, CSV, text ...) or any table through a preset or mapping file (e.g. the green2020 HDF5 file
    through ``table_preset = "green2020"``), validated like every input; replaced values are logged."""
    from photofeh.io.catalog import FORMATS, read_table

    with user_errors(FileNotFoundError, KeyError, ValueError):
        if preset is None and any(str(path).lower().endswith(ext) for ext in FORMATS):
            return read_table(path)
        import pandas as pd

        from photofeh.io.presets import apply_preset, resolve_preset
        from photofeh.io.readers import read_columns

        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
        cols, report = apply_preset(read_columns(path), resolve_preset(preset), str(path))
    replaced = {k: v for k, v in report.items() if v and k != "duplicate source_id"}  # counted, not NaN
    if replaced and log is not None:
        log(f"{path}{f' (preset {preset})' if preset else ''}: values set to NaN on reading (sentinels, NaN/inf, "
            "impossible): " + ", ".join(f"{k} {v:,d}" for k, v in sorted(replaced.items())))
    return pd.DataFrame({k: v for k, v in cols.items() if np.ndim(v) == 1})


def train_config(args: argparse.Namespace):
    """The TOML config (or the defaults) with the command line's overrides, validated before any data is read,
    so that ``train`` and ``lr-find`` refuse a bad setting at once."""
    from photofeh.model.train import TrainConfig, load_config

    with user_errors(OSError, ValueError):
        cfg = load_config(args.config) if args.config else TrainConfig()
        for key in ("epochs", "seed", "ensemble", "prior", "baseline_rounds", "split_seed", "selection_column",
                    "selection_weighting"):
            if getattr(args, key, None) is not None:
                setattr(cfg, key, getattr(args, key))
        cfg.validate()  # the command-line overrides too, before any data is read
    return cfg


def catalogue_job(job, *job_args, **json_kw) -> int:
    """Run a catalogue command: bad files and columns become one-line errors, the report goes to stdout."""
    import json

    from photofeh.io.readers import CatalogReadError

    with user_errors(CatalogReadError, KeyError, ValueError, OSError):
        report = job(*job_args)
    print(json.dumps(report, indent=2, **json_kw))
    return 0


def prior_note(provenance: dict, command: str, unfolded: bool = False) -> dict:
    """The prior of the model behind the predictions, and a warning (also on stderr) when it is the labelled
    stars' distribution: medians and distributions of such estimates lean toward it (docs/populations.md).
    Distributions unfolded through the model's measured response (``unfolded``) are free of it."""
    prior = provenance.get("model_prior", "labels" if provenance else "unknown")
    note = {"model_prior": prior}
    if unfolded:
        note["prior_note"] = ("unfolded through the response the model measured on its validation stars: the "
                              "estimates' prior (their shrinkage toward the labelled stars) is undone, not inherited")
    elif prior != "flat":
        note["prior_warning"] = (f"the predictions come from a model with the {prior} prior: where the photometry "
                                 "says little, estimates lean toward the labelled stars' [Fe/H] distribution (as "
                                 "weighted in training, with selection_weighting), so "
                                 "per-star estimates are biased toward it and deconvolved distributions count it "
                                 "twice; predict --prior flat divides it out (docs/populations.md says which is "
                                 "more accurate for maps)")
        print(f"photofeh {command}: warning: {note['prior_warning']}", file=sys.stderr)
    return note

