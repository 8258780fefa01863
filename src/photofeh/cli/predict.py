"""``photofeh predict``: labels for a whole catalogue, streamed in chunks, resumable, optionally on Dask.

Exit code 3 says the run finished with skipped chunks (``--on-error skip``): the output is usable but
incomplete, and rerunning the same command retries them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from photofeh.cli.arguments import ROWS, bounded_int, preset_name
from photofeh.cli.common import UserError, user_errors


def handle(args: argparse.Namespace) -> int:
    """Predict the whole input; the run's summary (JSON) on stdout, exit code 3 when chunks were skipped."""
    import json

    from photofeh.io.dust import EbvSource
    from photofeh.io.presets import load_mapping
    from photofeh.io.readers import CatalogReadError
    from photofeh.model.artifact import ModelFormatError
    from photofeh.scale.predict_catalog import PredictOptions

    preset = args.preset
    parent = Path(args.out).resolve().parent
    if not parent.is_dir():  # the lock file and the parts go beside the output: say so, not '[Errno 2] ... .lock'
        raise UserError(f"cannot create {args.out}: folder {parent} does not exist (create it first)")
    try:
        with user_errors(CatalogReadError, ModelFormatError, KeyError, ValueError, OSError):
            if args.mapping:
                preset = load_mapping(args.mapping)
            options = PredictOptions(chunk_rows=args.chunk_rows, keep=tuple(args.keep or ()), preset=preset,
                                     fmt=args.format, on_error=args.on_error, device=args.device, threads=args.threads,
                                     workers=args.workers, progress=not args.quiet,
                                     ebv=EbvSource(args.ebv_column, args.sfd_dir), prior=args.prior)
            if args.scheduler:
                if args.workers > 1:
                    raise ValueError("--workers is for a run on this machine; on Dask, the cluster's workers predict "
                                     "(--scheduler local:N for N local processes)")
                from photofeh.scale.distributed import predict_distributed

                report = predict_distributed(args.model, args.input, args.out, options, args.scheduler)
                print(json.dumps(report, indent=2))
                return 0
            from photofeh.scale.predict_catalog import predict_catalog

            summary = predict_catalog(args.model, args.input, args.out, options,
                                      log=lambda s: print(s, file=sys.stderr))
    except KeyboardInterrupt:
        print("photofeh predict: interrupted; finished chunks are kept: rerun the same command to resume",
              file=sys.stderr)
        return 130
    print(json.dumps({"output": str(summary.output), "stars": summary.rows, "unusable_stars": summary.unusable_rows,
                      "chunks_done": summary.chunks_done, "chunks_total": summary.chunks_total,
                      "chunks_resumed": summary.resumed_chunks, "workers": args.workers,
                      "seconds": round(summary.seconds, 2),
                      "stars_per_second": round(summary.rate), "values_replaced": summary.replaced,
                      "duplicate_source_ids": summary.duplicate_ids,
                      "unphysical_predictions": summary.unphysical_predictions, "chunks_redone": summary.redone_chunks,
                      "failed_chunks": summary.failed}, indent=2))
    if summary.failed:
        print(f"photofeh predict: {len(summary.failed)} chunk(s) skipped (listed above); rerun the same command "
              "to retry them", file=sys.stderr)
        return 3
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """predict's arguments: model, input, output, and how the chunks are read, run and scheduled."""
    pr = sub.add_parser(
        "predict", help="predict labels for a whole catalogue (streamed, resumable, optionally on Dask)",
        description="Stream INPUT (FITS, Parquet file or dataset, CSV, HDF5, VOTable, or a HATS catalogue with "
                    "--scheduler) in chunks and write every label with its error, p_giant, is_giant and "
                    "usable to OUT: a folder of Parquet parts, or one file if OUT ends in .parquet. Interrupted "
                    "(even by kill -9), the same command resumes from the last finished chunk. Exit code 3: "
                    "finished, but chunks were skipped (--on-error skip).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pr.add_argument("model", help="run directory (from 'photofeh train') or model folder")
    pr.add_argument("input", help="catalogue to predict for (schema column names, or use --preset/--mapping)")
    pr.add_argument("--out", required=True, help="output folder of Parquet parts, or a .parquet file")
    group = pr.add_mutually_exclusive_group()
    group.add_argument("--preset", type=preset_name, help="map archive columns with this preset")
    group.add_argument("--mapping", help="TOML mapping file (see docs/catalogues.md)")
    pr.add_argument("--format", help="input format when the extension does not tell")
    pr.add_argument("--ebv-column", metavar="NAME",
                    help="input column holding SFD-scale E(B-V), used as the model's E(B-V) column")
    pr.add_argument("--sfd-dir", metavar="DIR",
                    help="folder with the SFD map files (SFD_dust_4096_ngp/sgp.fits): E(B-V) at each star's ra/dec "
                         "where the input has none; never downloaded")
    pr.add_argument("--keep", nargs="+", metavar="COLUMN",
                    help="columns passed through to the output (source_id, ra, dec are kept when present)")
    pr.add_argument("--chunk-rows", type=ROWS, default=250_000,
                    help="rows per chunk (one output part each; memory grows with it)")
    pr.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the network runs")
    pr.add_argument("--threads", type=bounded_int(1, 1024),
                    help="CPU threads for the network, per worker (default: half the cores, one on 2, the "
                         "others left to reading and writing; with --workers, the cores shared out)")
    pr.add_argument("--workers", type=bounded_int(1, 1024), default=1,
                    help="processes on this machine, each reading, predicting and writing whole chunks (Parquet, "
                         "FITS or HDF5 input; default 1): every stage runs in parallel, not only the network")
    pr.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                    help="what to do with a chunk that cannot be read or predicted (it is reported with its rows)")
    pr.add_argument("--scheduler", metavar="ADDRESS",
                    help="run on a Dask cluster: a scheduler address (tcp://host:8786) or 'local:N' for N local "
                         "worker processes; the input must be a Parquet dataset or a HATS catalogue")
    pr.add_argument("--prior", choices=("labels", "flat"),
                    help="prior of the [Fe/H] estimates: the model's own (default), or flat: a labels-prior "
                         "model's training distribution divided out, a likelihood model's feh_population (for "
                         "metallicity distributions and maps; docs/populations.md)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=handle)
