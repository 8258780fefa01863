"""``photofeh map``: photometric distances and the median [Fe/H] map in Galactocentric R-|Z|.

The module is named ``maps`` rather than ``map`` so that the package's namespace keeps the builtin.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from photofeh import __version__
from photofeh.cli.arguments import ROWS, bounded_float, bounded_int
from photofeh.cli.common import (
    ALLOW_INCOMPLETE_HELP,
    OVERWRITE_HELP,
    UserError,
    check_output,
    predictions_state,
    prior_note,
    staged_folder,
    user_errors,
)
from photofeh.galaxy.distance_posterior import DISTANCE_PRIORS


def _slice_mdfs(slices, min_count: int, response=None) -> list[dict]:
    """Metallicity distributions of the mapped stars per |Z| slice: unfolded through the model's measured
    ``response`` (photofeh.galaxy.unfold), or, for models without one, deconvolved (photofeh.galaxy.mdf)."""
    from photofeh.galaxy.populations import with_fractions
    from photofeh.galaxy.unfold import unfold_mdf

    edges, hists = slices
    out = []
    for lo, hi, h in zip(edges[:-1], edges[1:], hists, strict=True):
        row = {"abs_z_kpc": [float(lo), float(hi)], "stars": int(h.n)}
        if h.n >= max(min_count, 10):
            row.update(unfold_mdf(h, response, n_boot=50) if response is not None
                       else with_fractions(h.summary(), "the model has no calibration sample: deconvolved"))
        out.append(row)
    return out


def handle(args: argparse.Namespace) -> int:
    """Stream a prediction table: distances, Galactocentric R and |Z|, median [Fe/H] map."""
    import json

    from photofeh.galaxy.distances import frame_description
    from photofeh.galaxy.maps import (
        check_map_input,
        check_map_options,
        deconvolved_cells,
        feh_map_from_predictions,
        predictions_absmag_reference,
    )
    from photofeh.io.catalog import atomic_output
    from photofeh.io.readers import CatalogReadError
    from photofeh.report.map_figures import draw_map_figures
    from photofeh.scale.predict_catalog import read_provenance

    out = Path(args.out)
    check_output(out, [args.predictions], args.overwrite)
    check_output(args.stars, [args.predictions, out], args.overwrite)
    incomplete = predictions_state(args.predictions, args.allow_incomplete, "map")
    with user_errors(CatalogReadError, KeyError, ValueError, OSError):
        check_map_options(cell=args.cell, r_max=args.r_max, z_max=args.z_max, min_count=args.min_count)
        reference, reference_from = predictions_absmag_reference(args.predictions)
        check_map_input(args.predictions, args.band, args.absmag, reference)  # before anything is created
        with staged_folder(out, f"photofeh map {args.predictions}") as stage:
            products, counts = feh_map_from_predictions(
                args.predictions, bands=args.band, giants=args.giants, min_parallax_snr=args.min_parallax_snr,
                max_rel_dist_err=args.max_rel_dist_err, max_feh_err=args.max_feh_err, cell=args.cell,
                r_max=args.r_max, z_max=args.z_max, chunk_rows=args.chunk_rows, stars_out=args.stars,
                absmag=args.absmag, out_of_domain=args.out_of_domain, slices=args.slices, deconvolve=args.deconvolve,
                absmag_reference=reference, distance_prior=args.distance_prior)
            fmap = products.rz
            with atomic_output(stage / "feh_map.npz") as tmp, open(tmp, "wb") as f:
                products.save(f)
            cells = int(np.sum(fmap.n >= args.min_count))
            provenance = read_provenance(args.predictions)
            report = {"photofeh_version": __version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "input": str(Path(args.predictions).resolve()),
                      "predictions": provenance,
                      "options": {k: getattr(args, k) for k in ("band", "absmag", "giants", "min_parallax_snr",
                                                               "max_rel_dist_err", "max_feh_err", "cell", "r_max",
                                                               "z_max", "min_count", "out_of_domain", "slices",
                                                               "deconvolve", "distance_prior")},
                      "counts": dict(counts), "cells_with_min_count": cells, "frame": frame_description(),
                      "absmag_reference": ({"bands": {f"mabs_{b}": reference.get(f"mabs_{b}", "dereddened")
                                                      for b in args.band}, "from": reference_from}
                                           if args.absmag == "model" else
                                           {"bands": {"mabs_sdss_r": "dereddened (Ivezic et al. 2008)"},
                                            "from": "relation"}),
                      **prior_note(provenance, "map"), **incomplete}
            slice_summaries = None
            if products.slices is not None:
                from photofeh.galaxy.populations import response_of_predictions

                response, report["mdf_response_from"] = response_of_predictions(
                    args.predictions, args.giants, args.max_feh_err)
                slice_summaries = report["mdf_by_abs_z"] = _slice_mdfs(products.slices, args.min_count, response)
            median = None
            if args.deconvolve:
                median, err = deconvolved_cells(products, args.min_count)
                with atomic_output(stage / "feh_map_deconvolved.npz") as tmp, open(tmp, "wb") as f:
                    np.savez(f, x_edges=fmap.x_edges, y_edges=fmap.y_edges, median=median, median_err=err,
                             n=fmap.n)
                report["deconvolved_cells"] = int(np.isfinite(median).sum())
            figures = [] if args.no_figures else draw_map_figures(
                products, stage, min_count=args.min_count, deconvolved=median, slice_summaries=slice_summaries)
            report["figures"] = sorted(p.name for p in figures)
            with atomic_output(stage / "map.json") as tmp:
                tmp.write_text(json.dumps(report, indent=2) + "\n")
    if cells == 0:
        raise UserError(f"no (R, |Z|) cell holds {args.min_count} stars ({counts['in the map']:,d} stars in the map, "
                        f"counts in {out / 'map.json'}): lower --min-count, use larger --cell, or relax the cuts")
    print(json.dumps(report["counts"], indent=2))
    print(f"wrote {out / 'map.json'}, {out / 'feh_map.npz'} and {len(report['figures']) // 2} figure(s) "
          f"(PNG and PDF: {', '.join(sorted({p.rsplit('.', 1)[0] for p in report['figures']}))})"
          + (f"; per-star distances in {args.stars}" if args.stars else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """map's arguments: the prediction run, the distance and quality cuts, and the map's cells."""
    from photofeh.galaxy.maps import MAX_FEH_ERR

    fm = sub.add_parser(
        "map", help="distances and a median [Fe/H] map in Galactocentric R-|Z| from predictions",
        description="Stream the output of 'photofeh predict' (kept with --keep sdss_r ebv parallax "
                    "parallax_error): photometric distances from the predicted absolute magnitude, combined with "
                    "Gaia parallaxes where precise, astropy's Galactocentric frame, and the median [Fe/H] per "
                    "(R, |Z|) cell as in Ivezic et al. 2008. Every star left out is counted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fm.add_argument("predictions", help="prediction folder or file from 'photofeh predict'")
    fm.add_argument("--out", required=True, help="folder for map.json, feh_map.npz and the figures (docs/maps.md)")
    fm.add_argument("--band", nargs="+", default=["sdss_r"],
                    help="band(s) of the predicted absolute magnitude (mabs_<band>), in order of preference: "
                         "each star uses the first it has (e.g. sdss_r ps1_r)")
    fm.add_argument("--absmag", choices=("model", "ivezic2008"), default="model",
                    help="absolute magnitudes from the model's mabs_<band> label, or from the Ivezic et al. 2008 "
                         "main-sequence M_r(g-i, [Fe/H]) with the predicted [Fe/H] (keep sdss_g sdss_r sdss_i "
                         "when predicting; stars outside 0.2 < g-i < 4.0, -2.5 < [Fe/H] < 0.2 are left out)")
    fm.add_argument("--distance-prior", choices=DISTANCE_PRIORS, default="none",
                    help="prior on each star's distance: none, or the Juric et al. 2008 disc and halo density "
                         "along its line of sight (corrects the Malmquist bias; with a class-conditional model it "
                         "also weighs dwarf against giant, '-within-class': P(giant) kept; docs/maps.md)")
    fm.add_argument("--giants", choices=("exclude", "include", "only"), default="exclude",
                    help="giants by the model's class (Ivezic 2008 mapped main-sequence stars)")
    fm.add_argument("--min-parallax-snr", type=bounded_float(0.0, 1e4, open_lo=False), default=5.0,
                    help="combine with Gaia parallaxes of at least this S/N")
    fm.add_argument("--max-rel-dist-err", type=bounded_float(0.0, 100.0), default=0.3,
                    help="leave out stars with a larger d error")
    fm.add_argument("--max-feh-err", type=bounded_float(0.0, 100.0), default=MAX_FEH_ERR,
                    help="leave out stars whose predicted [Fe/H] error is larger (vague predictions lean toward "
                         "the training mean); not much lower than the halo's typical error, or the cut selects "
                         "by metallicity (docs/maps.md)")
    fm.add_argument("--cell", type=bounded_float(0.0, 10.0), default=0.5, help="cell size in R and |Z| (kpc)")
    fm.add_argument("--r-max", type=bounded_float(0.0, 200.0), default=20.0, help="map extent in R (kpc)")
    fm.add_argument("--z-max", type=bounded_float(0.0, 200.0), default=10.0, help="map extent in |Z| (kpc)")
    fm.add_argument("--min-count", type=bounded_int(1, 10**9), default=20, help="stars needed to show a cell")
    fm.add_argument("--stars", metavar="FILE.parquet",
                    help="also write every star's distance, its error, R, z, phi and whether it is in the map")
    fm.add_argument("--out-of-domain", choices=("exclude", "include"), default="exclude",
                    help="stars the model marked outside its training domain (in_domain): left out and counted, "
                         "or kept")
    fm.add_argument("--slices", type=bounded_float(0.0, 200.0, open_lo=False), nargs="+", metavar="KPC",
                    default=[0.0, 1.0, 2.0, 4.0, 8.0],
                    help="|Z| edges of the slices whose metallicity distribution is deconvolved into map.json")
    fm.add_argument("--deconvolve", action="store_true",
                    help="also the deconvolved MDF median of every cell (feh_map_deconvolved.png/.npz; ~120 kB of "
                         "memory per occupied cell; use flat-prior predictions)")
    fm.add_argument("--no-figures", action="store_true",
                    help="write map.json and the histograms (feh_map.npz) only, no figures (e.g. for many maps "
                         "in a loop; the figures can be drawn later from feh_map.npz)")
    fm.add_argument("--chunk-rows", type=ROWS, default=1_000_000)
    fm.add_argument("--allow-incomplete", action="store_true", help=ALLOW_INCOMPLETE_HELP)
    fm.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    fm.set_defaults(func=handle)
