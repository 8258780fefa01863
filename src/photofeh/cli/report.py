"""``photofeh report``: one self-contained HTML page about a run, its predictions and its map."""

from __future__ import annotations

import argparse
from pathlib import Path

from photofeh.cli.common import ALLOW_INCOMPLETE_HELP, OVERWRITE_HELP, check_output, predictions_state, user_errors


def handle(args: argparse.Namespace) -> int:
    """The HTML report of a run."""
    from photofeh.io.readers import CatalogReadError
    from photofeh.report.html import write_report

    out = args.out or str(Path(args.run) / "report.html")
    check_output(out, [args.run, args.predictions, args.map_dir], args.overwrite, place=False)
    warnings = []
    if args.predictions:
        note = predictions_state(args.predictions, args.allow_incomplete, "report")
        warnings += [note["incomplete_predictions"]["note"]] if note else []
    with user_errors(CatalogReadError, KeyError, ValueError, OSError):
        path = write_report(args.run, predictions=args.predictions, map_dir=args.map_dir, out=args.out,
                            warnings=warnings)
    print(f"wrote {path} (self-contained: open it in any browser, e.g. file://{Path(path).resolve()})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """report's arguments: the run, and optionally the predictions and map made from it."""
    rp = sub.add_parser("report", help="one self-contained HTML page about a run (and its predictions and map)",
                        description="Write an HTML page with every figure embedded (it opens offline): data and cut "
                                    "summary, training curves, accuracy and calibration against the baselines, "
                                    "training coverage, the map figures and the provenance. Run 'photofeh "
                                    "evaluate' on the run first for the accuracy section.")
    rp.add_argument("run", help="a run folder of 'photofeh train'")
    rp.add_argument("--predictions", help="a 'photofeh predict' output made with the run's model (coverage, counts)")
    rp.add_argument("--map", dest="map_dir", help="a 'photofeh map' folder made from those predictions")
    rp.add_argument("--out", help="the HTML file to write (default: RUN/report.html)")
    rp.add_argument("--allow-incomplete", action="store_true", help=ALLOW_INCOMPLETE_HELP)
    rp.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    rp.set_defaults(func=handle)
