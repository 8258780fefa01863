"""``photofeh merge-photometry``: a prediction input, made by streaming one big catalogue and attaching
the nearest rows of smaller ones (held in memory)."""

from __future__ import annotations

import argparse

from photofeh.cli.arguments import RADIUS, ROWS, catalogue_arg
from photofeh.cli.common import OVERWRITE_HELP, catalogue_job, check_output


def handle(args: argparse.Namespace) -> int:
    """Stream the base catalogue and attach the others; the match report goes to stdout."""
    from photofeh.io.crossmatch import merge_onto

    base, base_preset = args.base
    check_output(args.out, [base, *(path for path, _ in args.other), args.sfd_dir], args.overwrite)
    catalogue_job(merge_onto, base, args.other, args.out, args.radius, base_preset, args.chunk_size, args.sfd_dir)
    print(f"wrote {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """merge-photometry's arguments: the streamed base catalogue and the catalogues attached to it."""
    mp = sub.add_parser("merge-photometry", help="a prediction input: stream a big catalogue, attach others",
                        description="Stream BASE (any size) and attach to each row the nearest row of every "
                                    "--other catalogue (held in memory) within the radius; every BASE row is "
                                    "kept. Catalogues are FILE or FILE:PRESET.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mp.add_argument("base", type=catalogue_arg, help="the catalogue to predict for, streamed in chunks")
    mp.add_argument("--other", type=catalogue_arg, action="append", required=True,
                    help="catalogue to attach, FILE[:PRESET]; repeatable")
    mp.add_argument("--radius", type=RADIUS, default=1.0, help="match radius (arcsec)")
    mp.add_argument("--sfd-dir", metavar="DIR",
                    help="folder with the SFD map files (SFD_dust_4096_ngp/sgp.fits): ebv at each star's position "
                         "where no catalogue gave one; never downloaded")
    mp.add_argument("--out", required=True, help="output Parquet file")
    mp.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    mp.add_argument("--chunk-size", type=ROWS, default=1_000_000)
    mp.set_defaults(func=handle)
