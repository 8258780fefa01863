"""``photofeh mdf``: the deconvolved metallicity distribution of a selection of predicted stars."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from photofeh import __version__
from photofeh.cli.arguments import ROWS, bounded_float, bounded_int
from photofeh.cli.common import (
    ALLOW_INCOMPLETE_HELP,
    OVERWRITE_HELP,
    check_output,
    predictions_state,
    prior_note,
    staged_folder,
    user_errors,
)


def handle(args: argparse.Namespace) -> int:
    """Deconvolved metallicity distribution of a selection of predicted stars."""
    import json

    from photofeh.galaxy.populations import mdf_of_predictions
    from photofeh.io.catalog import atomic_output
    from photofeh.io.readers import CatalogReadError
    from photofeh.report.mdf_figures import plot_mdf
    from photofeh.scale.predict_catalog import read_provenance

    out = Path(args.out)
    check_output(out, [args.predictions], args.overwrite)
    incomplete = predictions_state(args.predictions, args.allow_incomplete, "mdf")
    with user_errors(CatalogReadError, KeyError, ValueError, OSError), \
            staged_folder(out, f"photofeh mdf {args.predictions}") as stage:
        summary, counts, x = mdf_of_predictions(
            args.predictions, where=args.where, max_feh_err=args.max_feh_err, giants=args.giants,
            out_of_domain=args.out_of_domain, chunk_rows=args.chunk_rows, n_boot=args.bootstrap, seed=args.seed,
            n_components=args.components, method=args.method, estimate=args.estimate)
        provenance = read_provenance(args.predictions)
        report = {"photofeh_version": __version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "input": str(Path(args.predictions).resolve()), "predictions": provenance,
                  "options": {k: getattr(args, k) for k in ("where", "max_feh_err", "giants", "out_of_domain",
                                                           "bootstrap", "seed", "components", "method", "estimate")},
                  "counts": counts, **prior_note({**provenance, "model_prior": "flat"} if args.estimate == "population"
                                                 else provenance, "mdf", "calibration_stars" in summary), **incomplete,
                  "fraction_below": summary["fraction_below"],
                  "mdf": summary}
        with atomic_output(stage / "mdf.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        plot_mdf(summary, x, stage / "mdf", title=f"{counts.get('selected', 0):,d} stars"
                 + (" (INCOMPLETE predictions)" if incomplete else ""))
    print(json.dumps({"counts": counts, "method": summary["method"],
                      **{k: summary[k] for k in ("median", "median_se", "mean", "mean_se", "width", "width_se",
                                                 "fraction_below")}}, indent=2))
    print(f"wrote {out / 'mdf.json'}, {out / 'mdf.png'} and {out / 'mdf.pdf'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """mdf's arguments: the selection (query, giant class, error and domain cuts) and the deconvolution."""
    md = sub.add_parser(
        "mdf", help="deconvolved metallicity distribution of a selection of predicted stars",
        description="Select stars of a 'photofeh predict' output (an expression on its columns, the giant class, "
                    "an error cut; stars outside the model's training domain are left out by default) and infer "
                    "their metallicity distribution by extreme deconvolution of the estimates with their errors "
                    "(a Gaussian mixture, Bovy, Hogg & Roweis 2011), with bootstrap errors on its median, mean and "
                    "width. Use a model trained with prior = \"flat\" (docs/populations.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    md.add_argument("predictions", help="prediction folder or file from 'photofeh predict'")
    md.add_argument("--out", required=True, help="folder for mdf.json, mdf.png and mdf.pdf")
    md.add_argument("--where", metavar="QUERY",
                    help="selection on the prediction columns, e.g. \"abs(b) > 30 and sdss_g < 19\": column names, "
                         "numbers, comparisons, and/or/not, + - * / ** and abs/sqrt/log10, nothing else "
                         "(keep the columns it needs with predict --keep)")
    md.add_argument("--giants", choices=("include", "exclude", "only"), default="include",
                    help="select by the model's giant class")
    md.add_argument("--max-feh-err", type=bounded_float(0.0, 100.0), help="leave out vaguer estimates")
    md.add_argument("--out-of-domain", choices=("exclude", "include"), default="exclude",
                    help="stars outside the model's training domain")
    md.add_argument("--method", choices=("unfold", "xd"), default="unfold",
                    help="unfold: through the response the model measured on its validation stars (default; "
                         "free of the estimates' shrinkage toward the labelled stars); xd: extreme deconvolution "
                         "with the estimates' own errors (right only for likelihood-like estimates)")
    md.add_argument("--components", type=bounded_int(1, 4),
                    help="mixture components of --method xd (default: chosen by BIC)")
    md.add_argument("--estimate", choices=("feh", "population"), default="feh",
                    help="the estimates to use: feh, or population: the feh_population column of a model trained "
                         "with prior = \"likelihood\" (its likelihood, free of the training prior)")
    md.add_argument("--bootstrap", type=bounded_int(0, 10_000), default=200, help="bootstrap resamples")
    md.add_argument("--seed", type=bounded_int(0, 2**32 - 1), default=0, help="seed of the bootstrap")
    md.add_argument("--chunk-rows", type=ROWS, default=1_000_000)
    md.add_argument("--allow-incomplete", action="store_true", help=ALLOW_INCOMPLETE_HELP)
    md.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    md.set_defaults(func=handle)
