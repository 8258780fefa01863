"""What several command handlers share: the user-error type, table loading, the training configuration,
catalogue jobs and the prior note of the prediction commands.

Kept in one place so that each handler reads and reports the same way: a mistake in the user's arguments or
files becomes :class:`UserError`, which ``main`` prints as one line with exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from photofeh.errors import PhotofehError

__all__ = ["ALLOW_INCOMPLETE_HELP", "OVERWRITE_HELP", "UserError", "catalogue_job", "check_output", "load_table",
           "predictions_state", "prior_note", "train_config"]

OVERWRITE_HELP = "replace an existing output (only once the new one is complete)"


class UserError(Exception):
    """A mistake in the user's arguments or files: reported without a traceback."""



def check_output(out: str | None, inputs=(), overwrite: bool = False, place: bool = True) -> None:
    """The one output policy of every command, before any work: an output that is, holds or lies inside an
    input (paths resolved, symlinks included) is refused, and so is an existing output unless ``overwrite``
    (:func:`photofeh.io.catalog.check_overwrite`). ``place=False``: only the first two (an output that may
    lie inside a run folder, as ``report``'s default RUN/report.html does)."""
    from photofeh.io.catalog import check_output_place, check_overwrite

    if out is None:
        return
    given = [i for i in inputs if i]
    try:
        if place:
            check_output_place(out, given)
        else:
            o = Path(out).resolve()
            for i in given:
                r = Path(i).resolve()
                if o == r or o in r.parents:
                    raise ValueError(f"the output {out} is (or holds) the input {i}: choose another output")
        check_overwrite(out, overwrite)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None


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

    try:
        if preset is None and any(str(path).lower().endswith(ext) for ext in FORMATS):
            return read_table(path)
        import pandas as pd

        from photofeh.io.presets import apply_preset, resolve_preset
        from photofeh.io.readers import read_columns

        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
        cols, report = apply_preset(read_columns(path), resolve_preset(preset), str(path))
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise UserError(str(exc).strip("'\"") if not isinstance(exc, PhotofehError) else str(exc)) from None
    replaced = {k: v for k, v in report.items() if v and k != "duplicate source_id"}  # counted, not NaN
    if replaced and log is not None:
        log(f"{path}{f' (preset {preset})' if preset else ''}: values set to NaN on reading (sentinels, NaN/inf, "
            "impossible): " + ", ".join(f"{k} {v:,d}" for k, v in sorted(replaced.items())))
    return pd.DataFrame({k: v for k, v in cols.items() if np.ndim(v) == 1})


def train_config(args: argparse.Namespace):
    """The TOML config (or the defaults) with the command line's overrides, validated before any data is read,
    so that ``train`` and ``lr-find`` refuse a bad setting at once."""
    from photofeh.model.train import TrainConfig, load_config

    try:
        cfg = load_config(args.config) if args.config else TrainConfig()
        for key in ("epochs", "seed", "ensemble", "prior", "baseline_rounds", "split_seed"):
            if getattr(args, key, None) is not None:
                setattr(cfg, key, getattr(args, key))
        cfg.validate()  # the command-line overrides too, before any data is read
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    return cfg


def catalogue_job(job, *job_args, **json_kw) -> int:
    """Run a catalogue command: bad files and columns become one-line errors, the report goes to stdout."""
    import json

    from photofeh.io.readers import CatalogReadError

    try:
        report = job(*job_args)
    except (CatalogReadError, KeyError, ValueError, OSError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
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
                                 "says little, estimates lean toward the labelled stars' [Fe/H] distribution, so "
                                 "per-star estimates are biased toward it and deconvolved distributions count it "
                                 "twice; predict --prior flat divides it out (docs/populations.md says which is "
                                 "more accurate for maps)")
        print(f"photofeh {command}: warning: {note['prior_warning']}", file=sys.stderr)
    return note

