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

__all__ = ["UserError", "catalogue_job", "load_table", "prior_note", "train_config"]


class UserError(Exception):
    """A mistake in the user's arguments or files: reported without a traceback."""



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
    replaced = {k: v for k, v in report.items() if v}
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

