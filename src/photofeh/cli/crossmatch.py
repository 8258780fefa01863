"""``photofeh crossmatch``: join two catalogues on the sky, nearest neighbour within a radius."""

from __future__ import annotations

import argparse

from photofeh.cli.arguments import RADIUS, ROWS, catalogue_arg, epoch_arg
from photofeh.cli.common import OVERWRITE_HELP, catalogue_job, check_output


def handle(args: argparse.Namespace) -> int:
    """Run the match; the match report goes to stdout, bad files and columns become one-line errors."""
    from photofeh.io.crossmatch import crossmatch_files

    (ref, ref_preset), (other, other_preset) = args.reference, args.other
    check_output(args.out, [ref, other], args.overwrite)
    catalogue_job(crossmatch_files, ref, other, args.out, args.radius, ref_preset, other_preset, args.chunk_size,
                   "_2", args.epoch)
    print(f"wrote {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """crossmatch's arguments: two catalogues (FILE[:PRESET]), a radius and an optional epoch."""
    cm = sub.add_parser("crossmatch", help="join two catalogues on the sky (nearest within a radius)",
                        description="Keep every row of REFERENCE and attach its nearest OTHER row within the "
                                    "radius. A catalogue is FILE or FILE:PRESET (presets: gaia_dr3, "
                                    "sdss_photoobj, ps1_meanobject, cfis_megapipe, sspp, apogee_allstar, lamost_lrs, "
                                    "kepler_huber17).",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cm.add_argument("reference", type=catalogue_arg, help="catalogue whose rows are all kept (the smaller one)")
    cm.add_argument("other", type=catalogue_arg, help="catalogue streamed through the match")
    cm.add_argument("--radius", type=RADIUS, default=1.0, help="match radius (arcsec)")
    cm.add_argument("--epoch", type=epoch_arg, metavar="YEAR|COLUMN",
                    help="move the catalogue with proper motions (pmra, pmdec; Gaia at J2016.0) to this epoch "
                         "(Julian year, e.g. 2004.5 for SDSS imaging) before matching, or to each row's epoch in "
                         "this column of the other catalogue (Julian years or MJD, e.g. SDSS mjd)")
    cm.add_argument("--out", required=True, help="output Parquet file")
    cm.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    cm.add_argument("--chunk-size", type=ROWS, default=1_000_000)
    cm.set_defaults(func=handle)
