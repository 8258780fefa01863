"""Derive and print the locus correction of the mock survey's stellar-model colours (issue 13).

The correction itself is computed by the package whenever it builds its isochrone grid
(``photofeh.simulate.loci.LocusCorrection.from_grid``), so that any grid given with
``simulate --isochrones`` is calibrated the same way and nothing derived is stored. This script
shows what it does to the default PARSEC grid: for each metallicity node, the median locus-minus-
model offset of u-g, g-r and i-z in bins of g-i, for old dwarfs (Yuan et al. 2015, ApJ 799, 134,
table 1) and red giants (Zhang et al. 2021, RAA 21, 319, table 1), as Markdown tables; with
``--check`` it also prints the locus residuals left after the correction (should be ~0 at nodes
inside the loci's [Fe/H] ranges).

Usage: python scripts/derive_locus_correction.py [--check] > corrections.md
"""

from __future__ import annotations

import argparse

import numpy as np

from photofeh.simulate.isochrones import IsochroneGrid, load_grid
from photofeh.simulate.loci import DWARF_SELECTION, LOCI, LocusCorrection

SHOWN_GI = {"dwarf": (0.3, 0.5, 0.8, 1.2, 1.6), "giant": (0.6, 0.8, 1.0, 1.2)}


def print_tables(corr: LocusCorrection) -> None:
    for kind, gis in SHOWN_GI.items():
        locus = LOCI[kind]
        (g0, g1), (f0, f1) = locus.gi_range, locus.feh_range
        print(f"\n### {kind}s: locus minus PARSEC at the model's g-i (mag); locus valid for "
              f"{g0} < g-i < {g1}, {f0} < [Fe/H] < {f1}\n")
        cols = [f"{c} @ g-i {g}" for c in ("u-g", "g-r", "i-z") for g in gis]
        print("| [M/H] node (table used) | " + " | ".join(cols) + " |")
        print("|---" * (len(cols) + 1) + "|")
        for i, m in enumerate(corr.mh):
            vals = [np.interp(g, corr.gi[kind], corr.delta[kind][c][i]) for c in ("ug", "gr", "iz") for g in gis]
            print(f"| {m:+.2f} ({corr.source_mh[kind][i]:+.2f}) | " + " | ".join(f"{v:+.3f}" for v in vals) + " |")


def print_check(grid: IsochroneGrid) -> None:
    v = grid.values
    gi = v["sdss_g"] - v["sdss_i"]
    age = np.broadcast_to(grid.logage[None, :, None], gi.shape)
    seg = np.broadcast_to(grid.segment[None, None, :], gi.shape)
    dwarfs = (v["logg"] >= DWARF_SELECTION["logg_min"]) & (age >= DWARF_SELECTION["logage_min"]) & (seg <= 1)
    print("\n### residual u-g after the correction, old dwarfs (median over 0.3 < g-i < 1.6)\n")
    print("| [M/H] | median locus - corrected model |\n|---|---|")
    for i, m in enumerate(grid.mh):
        pick = dwarfs[i] & (gi[i] > 0.3) & (gi[i] < 1.6)
        ref = LOCI["dwarf"](gi[i][pick], np.clip(m, *LOCI["dwarf"].feh_range))["ug"]
        print(f"| {m:+.2f} | {np.median(ref - (v['sdss_u'] - v['sdss_g'])[i][pick]):+.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="also print the residuals left after the correction")
    args = ap.parse_args()
    grid = IsochroneGrid.from_table(load_grid(), calibrate=True)
    print_tables(grid.locus_correction)
    if args.check:
        print_check(grid)


if __name__ == "__main__":
    main()
