"""The mock's labelled stars against real labelled stars: median u-g at fixed g-r and [Fe/H] (issue 26).

The comparison of issue 26, item 0: real SDSS stars with SEGUE SSPP [Fe/H] (observed colours, not
dereddened) against the mock's spectroscopic sample (its observed, reddened colours and its SSPP-like
labels, stars with u error < ``max_u_err``), cell by cell in 0.05-mag bins of g-r and 0.5-dex bins of
[Fe/H]; a cell counts where both sides hold at least ``min_stars`` stars. Used by
``benchmarks/bench_mock_segue.py`` and ``tests/test_mock_segue.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GR_STEP", "FEH_STEP", "median_ug_cells", "compare_ug_cells", "mock_observed_colours"]

GR_STEP, FEH_STEP = 0.05, 0.5
MAX_U_ERR = 0.05
MIN_STARS = 30


def median_ug_cells(ug, gr, feh, min_stars: int = MIN_STARS) -> dict[tuple[int, int], tuple[float, int]]:
    """Median u-g and count per (g-r bin, [Fe/H] bin) cell holding at least ``min_stars`` stars; a cell is keyed
    by the integer indices floor(g-r / 0.05), floor([Fe/H] / 0.5)."""
    ug, gr, feh = (np.asarray(a, float) for a in (ug, gr, feh))
    ok = np.isfinite(ug) & np.isfinite(gr) & np.isfinite(feh)
    ug, i, j = ug[ok], np.floor(gr[ok] / GR_STEP + 1e-9).astype(int), np.floor(feh[ok] / FEH_STEP).astype(int)
    out = {}
    for key in set(zip(i.tolist(), j.tolist(), strict=True)):
        sel = (i == key[0]) & (j == key[1])
        if sel.sum() >= min_stars:
            out[key] = (float(np.median(ug[sel])), int(sel.sum()))
    return out


def mock_observed_colours(cat, max_u_err: float = MAX_U_ERR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observed u-g, g-r and label [Fe/H] of a mock catalogue's labelled stars with u error < ``max_u_err``."""
    sel = np.isfinite(np.asarray(cat["feh_spec"], float)) & (np.asarray(cat["sdss_u_err"], float) < max_u_err)
    u, g, r = (np.asarray(cat[f"sdss_{b}"], float)[sel] for b in "ugr")
    return u - g, g - r, np.asarray(cat["feh_spec"], float)[sel]


def compare_ug_cells(real: tuple, mock: tuple, min_stars: int = MIN_STARS) -> list[dict]:
    """Mock minus real median u-g in every cell with at least ``min_stars`` stars on both sides.

    ``real`` and ``mock``: (u-g, g-r, [Fe/H]) arrays. Returns one row per cell, ordered by [Fe/H] then g-r:
    its bin edges, both counts and medians, and the difference (mag)."""
    r, m = median_ug_cells(*real, min_stars), median_ug_cells(*mock, min_stars)
    rows = []
    for key in sorted(set(r) & set(m), key=lambda k: (k[1], k[0])):
        gr_lo, feh_lo = key[0] * GR_STEP, key[1] * FEH_STEP
        rows.append({"g-r": (round(gr_lo, 2), round(gr_lo + GR_STEP, 2)),
                     "[Fe/H]": (feh_lo, feh_lo + FEH_STEP),
                     "n_real": r[key][1], "n_mock": m[key][1],
                     "median u-g real": round(r[key][0], 4), "median u-g mock": round(m[key][0], 4),
                     "mock - real": round(m[key][0] - r[key][0], 4)})
    return rows
