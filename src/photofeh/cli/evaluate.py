"""``photofeh evaluate``: metrics and figures for a trained model, on its run's test split by default.

The split is taken from the run's split.parquet, so the scored stars are the ones the network never saw;
a table that cannot be matched to that split is refused rather than scored silently.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from photofeh.cli.arguments import preset_name
from photofeh.cli.common import UserError, load_table, user_errors


def handle(args: argparse.Namespace) -> int:
    """Score the model on the chosen split of the table; a compact summary on stdout, the rest in files."""
    import json

    import pandas as pd

    from photofeh.model.artifact import ModelFormatError
    from photofeh.model.evaluate import evaluate_model
    from photofeh.model.predict import load_model, model_folder
    from photofeh.report.eval_figures import draw_evaluation_figures

    run = Path(args.model)
    model_dir = model_folder(run)
    with user_errors(ModelFormatError):
        model = load_model(model_dir)
    # the table is read as the model's training table was (its config's table_preset), unless --preset says
    # otherwise or the table is already in schema names (it has every column the model needs)
    preset = args.preset or model.meta.get("training", {}).get("config", {}).get("table_preset")
    if preset and not args.preset:
        from photofeh.io.readers import CatalogReadError, table_columns

        with user_errors(CatalogReadError):
            columns = table_columns(args.table)
        if all(c in columns for c in model.needed_columns(columns)):
            preset = None
    table = load_table(args.table, preset, lambda s: print(s, file=sys.stderr))
    rows = None
    split_file = run / "split.parquet"
    if args.split != "all" and not split_file.exists() and "source_id" in table.columns:
        from photofeh.model.train import ids_digest

        if ids_digest(table["source_id"].to_numpy()) == model.meta.get("training", {}).get("table_ids_sha256"):
            raise UserError(f"{args.table} is the table {run} was trained on, and its split.parquet is missing: the "
                            f"{args.split} stars cannot be told from the training stars. Use --split all to score "
                            "every star knowingly, or evaluate on another table")
    if args.split != "all" and split_file.exists():
        if "source_id" not in table.columns:
            raise UserError(f"{args.table} has no source_id column, so the stars of the {args.split} split of {run} "
                            "cannot be found in it; use --split all to score every star")
        try:
            split = pd.read_parquet(split_file, columns=["source_id", "split"])
        except Exception as exc:  # a damaged or foreign file: pyarrow and pandas raise many kinds
            raise UserError(f"{split_file} cannot be read ({type(exc).__name__}: {exc}); the {args.split} stars "
                            f"of {run} cannot be told from its training stars: restore it, or use --split all on "
                            "a table the run was not trained on") from None
        ids = table["source_id"]
        unknown = int((~ids.isin(split["source_id"])).sum())
        if unknown:  # another table: the run's split says nothing about these stars
            raise UserError(f"{unknown:,d} of the {len(ids):,d} stars of {args.table} are not in {split_file}: it is "
                            f"not the table {run} was trained on (or a part of it), so the run's {args.split} split "
                            "does not apply to it. Use --split all to score every star of another table (none "
                            "of its stars should be training stars), or give the training table")
        chosen = set(split.loc[split["split"] == args.split, "source_id"].to_numpy().tolist())
        rows = np.flatnonzero(ids.isin(chosen).to_numpy())
        if rows.size == 0:
            raise UserError(f"no star of {args.table} is in the {args.split} split of {run}")
    out_dir = Path(args.out) if args.out else (run if split_file.exists() else model_dir)
    from photofeh.model.baselines import BASELINE_FOLDER, RunBaselines

    try:
        baselines = RunBaselines.load(run / BASELINE_FOLDER) if run != model_dir else None
    except Exception as exc:  # damaged JSON or LightGBM text: json, lightgbm and numpy raise many kinds
        why = str(exc).strip()[:300] if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"[:300]
        raise UserError(f"the baselines of {run} are damaged and cannot be read: {why}; restore "
                        f"{run / BASELINE_FOLDER} from a copy, or move it away to evaluate the network alone") from None
    with user_errors(KeyError, ValueError):
        report = evaluate_model(model, table, rows, out_dir, baselines=baselines,
                                figures=None if args.no_figures else draw_evaluation_figures)
    summary = {lab: {k: round(v, 4) for k, v in e["vs_labels"].items() if k in ("sigma_gauss", "robust_sigma",
                                                                                 "bias_median", "pull_std")}
               for lab, e in report["labels"].items()}
    # where an absolute magnitude from the parallaxes was scored without the parallax input, or not at all
    parallax = {lab: e["scored"] for lab, e in report["labels"].items() if "scored" in e}
    print(json.dumps({"n_usable": report["n_usable"], "vs_labels": summary,
                      **({"parallax_labels_scored": parallax} if parallax else {}),
                      **({"not_scored": report["not_scored"]} if report.get("not_scored") else {}),
                      "class": {k: {m: round(v, 3) for m, v in c.items() if m != "confusion"}
                                for k, c in report.get("class", {}).items()}}, indent=2))
    print(f"metrics and figures in {out_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """evaluate's arguments: the run or model, the labelled table and which split of it to score."""
    ev = sub.add_parser("evaluate", help="metrics and figures for a trained model",
                        description="Evaluate a run (its test split by default) or a model folder on a labelled "
                                    "catalogue; writes test_metrics.json and figures (PNG and PDF): residuals, "
                                    "residual trends with the run's baselines, calibration, confusion matrices.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ev.add_argument("model", help="run directory (from 'photofeh train') or model folder")
    ev.add_argument("table", help="labelled catalogue")
    ev.add_argument("--split", choices=("test", "validation", "train", "all"), default="test")
    ev.add_argument("--preset", type=preset_name,
                    help="read the table through this preset (default: the table_preset the model was trained with)")
    ev.add_argument("--out", help="where to write metrics and figures (default: the run directory)")
    ev.add_argument("--no-figures", action="store_true", help="write test_metrics.json only")
    ev.set_defaults(func=handle)
