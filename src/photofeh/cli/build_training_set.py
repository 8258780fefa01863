"""``photofeh build-training-set``: labels x photometry with quality cuts, one Parquet file and its
report."""

from __future__ import annotations

import argparse

from photofeh.cli.arguments import RADIUS, ROWS, bounded_float, catalogue_arg
from photofeh.cli.common import OVERWRITE_HELP, catalogue_job, check_output


def handle(args: argparse.Namespace) -> int:
    """Match the labels to the photometry, apply the cuts; the report (every cut counted) goes to stdout."""
    from photofeh.io.cuts import Cuts, load_cuts
    from photofeh.io.training_set import build_training_set

    inputs = [args.labels[0], *(path for path, _ in args.photometry), args.cuts, args.sfd_dir]
    check_output(args.out, inputs, args.overwrite)
    check_output(f"{args.out}.report.json", inputs, args.overwrite)

    def job():
        cuts = load_cuts(args.cuts) if args.cuts else Cuts()
        labels, labels_preset = args.labels
        return build_training_set(labels, args.photometry, args.out, labels_preset, args.radius, cuts,
                                  args.chunk_size, args.sfd_dir, args.epoch)

    catalogue_job(job, default=float)
    print(f"wrote {args.out} and {args.out}.report.json")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """build-training-set's arguments: the label and photometric catalogues, cuts and match radius."""
    bt = sub.add_parser("build-training-set", help="labels x photometry, quality cuts, one Parquet file",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bt.add_argument("--labels", type=catalogue_arg, required=True, help="label catalogue, FILE[:PRESET]")
    bt.add_argument("--photometry", type=catalogue_arg, action="append", default=[],
                    help="photometric catalogue FILE[:PRESET]; repeatable (matched in order); leave out when the "
                         "label table carries its photometry (e.g. SSPP)")
    bt.add_argument("--cuts", help="TOML file of quality cuts (see photofeh.io.cuts)")
    bt.add_argument("--radius", type=RADIUS, default=1.0, help="match radius (arcsec)")
    bt.add_argument("--sfd-dir", help="folder with the SFD map files (SFD_dust_4096_ngp/sgp.fits) to read E(B-V) "
                                      "from; never downloaded")
    bt.add_argument("--epoch", type=bounded_float(1900.0, 2100.0), metavar="YEAR",
                    help="move catalogues with proper motions to this epoch before each match (see crossmatch)")
    bt.add_argument("--out", required=True, help="output Parquet file (a .report.json is written beside it)")
    bt.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    bt.add_argument("--chunk-size", type=ROWS, default=1_000_000)
    bt.set_defaults(func=handle)
