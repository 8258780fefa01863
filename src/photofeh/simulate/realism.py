"""The mock's labelled stars against real labelled stars: median u-g at fixed g-r and [Fe/H] (issue 26).

The comparison of issue 26, item 0: real SDSS stars with SEGUE SSPP [Fe/H] (observed colours, not
dereddened) against the mock's spectroscopic sample (its observed, reddened colours and its SSPP-like
labels, stars with u error < ``max_u_err``), cell by cell in 0.05-mag bins of g-r and 0.5-dex bins of
[Fe/H]; a cell counts where both sides hold at least ``min_stars`` stars. Used by
``benchmarks/bench_mock_segue.py`` and ``tests/test_mock_segue.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GR_STEP", "FEH_STEP", "median_ug_cells", "compare_ug_cells", "mock_observed_colours", "derive_ug_residual",
           "ug_residual_cells", "refine_ug_residual", "derive_category_rates", "real_categories", "mock_categories",
           "category_table"]

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


# The table of loci.SEGUE_UG_RESIDUAL: cells of dereddened g-r (centres every 0.05 mag) and [Fe/H] (centres
# every 0.5 dex), dereddened with the mock's own median E(B-V) of labelled stars, so that the mock's reddened
# colours meet the real observed ones. Where metal-poor real stars redder than the turn-off are mostly red giants
# (SEGUE's K-giant categories), the dwarf residual is not measured: cells beyond DWARF_GR_MAX.
RESIDUAL_GR = tuple(round(0.05 + 0.05 * k, 2) for k in range(23))  # 0.05 .. 1.15
RESIDUAL_FEH = (-2.25, -1.75, -1.25, -0.75, -0.25, 0.25)
RESIDUAL_EBV = 0.028
DWARF_GR_MAX = {-2.25: 0.40, -1.75: 0.40, -1.25: 0.45}
# and bluer than this, metal-poor SEGUE stars are blue horizontal-branch stars and blue stragglers, not turn-off stars
DWARF_GR_MIN = {-2.25: 0.15, -1.75: 0.15, -1.25: 0.15}
# the mock samples refine_ug_residual draws (seeds apart from the tests' seed 5, so that the test checks the fit)
REFINE_SEEDS = (21, 22, 23, 24)
# and the cells it refines: bluer than this the mock's correction fades out (loci.HOT_TAPER_GI, g-i < 0.2), so a
# cell there does not answer its table entry and an iteration would only push the entry further each round
REFINE_GR_MIN = 0.20
REFINED_COLUMNS = np.array(RESIDUAL_GR) >= REFINE_GR_MIN - 1e-9  # the columns of the table it refines


def derive_ug_residual(ug, gr, feh, ebv: float = RESIDUAL_EBV, min_stars: int = MIN_STARS) -> np.ndarray:
    """Median real u-g minus the Yuan et al. 2015 dwarf locus (at [Fe/H] clipped to its -2..0) per cell of
    (RESIDUAL_FEH, RESIDUAL_GR), from observed SDSS colours dereddened by ``ebv``; cells with fewer than
    ``min_stars`` stars, or beyond DWARF_GR_MAX, take the nearest measured cell of their [Fe/H] row."""
    return _fill_rows(ug_residual_cells(ug, gr, feh, ebv, min_stars))


def refine_ug_residual(ug, gr, feh, n_stars: int = 40_000, seeds=REFINE_SEEDS, iterations: int = 1,
                       start: np.ndarray | None = None, log=None) -> np.ndarray:
    """The residual table the mock must carry for its own labelled stars to give the real file's table.

    The table (loci.SEGUE_UG_RESIDUAL) is measured at the real stars' SSPP [Fe/H], but the mock sets u-g at a
    star's true [Fe/H] and labels it afterwards with SSPP-like errors, and its stars fill each cell with another
    mix of g-r, [Fe/H], dwarfs and giants: a table copied from the real stars lands 0.02-0.06 mag off in the
    crowded metal-rich and red cells. A fixed-point iteration removes that: table <- table + real - mock, where
    real and mock are ug_residual_cells of the real stars and of the mock's labelled stars (observed, reddened
    colours, u error < MAX_U_ERR; ``seeds`` x ``n_stars``), in the cells measured on both sides from
    g-r = REFINE_GR_MIN on. Every other entry keeps its value: a cell the real file does not measure (the red
    metal-poor dwarfs) keeps the nearest real median of its row, so the u-g sensitivity to [Fe/H] the mock gets
    where no real star tells it stays the real file's. Starts from ``start`` (default: the real file's table).

    One round is the default. In the derivation of 2026-12-07 it brought the cells of compare_ug_cells beyond
    0.03 mag from 17 to 10 (mock seed 5, with the targeting rates refitted after it). On a first variant, which
    refilled unmeasured cells from the refined ones, a second round changed neither seed 5's count (9) nor seed
    6's (10 to 11): it only sharpens cells whose real medians step by more than the mock's correction,
    interpolated between 0.05-mag nodes, can follow. Simulates in this process (one worker), since the table is
    swapped into loci."""
    from photofeh.simulate import MockSurveyConfig, iter_chunks, loci, survey

    real = ug_residual_cells(ug, gr, feh)
    table = _fill_rows(real) if start is None else np.asarray(start, float).copy()
    saved = loci.SEGUE_UG_RESIDUAL
    try:
        for k in range(iterations):
            loci.SEGUE_UG_RESIDUAL = table
            survey._built_grid.cache_clear()
            parts = []
            for seed in seeds:
                for chunk in iter_chunks(MockSurveyConfig(n_stars=n_stars, seed=seed, spec_only=True),
                                         chunk_size=10**9, workers=1):
                    parts.append(mock_observed_colours(chunk))
            mock = ug_residual_cells(*(np.concatenate([p[i] for p in parts]) for i in range(3)))
            step = np.where(REFINED_COLUMNS, real - mock, np.nan)
            both = np.isfinite(step)
            if log is not None:
                log(f"round {k + 1}: {int(both.sum())} cells, largest |real - mock| {np.nanmax(np.abs(step)):.3f} mag, "
                    f"median {np.nanmedian(np.abs(step)):.3f}")
            table = np.where(both, table + np.nan_to_num(step), table)
    finally:
        loci.SEGUE_UG_RESIDUAL = saved
        survey._built_grid.cache_clear()
    return np.round(table, 3)


def ug_residual_cells(ug, gr, feh, ebv: float = RESIDUAL_EBV, min_stars: int = MIN_STARS) -> np.ndarray:
    """derive_ug_residual's cells before filling: NaN where not measured."""
    from photofeh.simulate.loci import dwarf_ug_held, g_minus_i_at_g_minus_r

    gr0, ug0 = _dereddened("gr", gr, ebv), _dereddened("ug", ug, ebv)
    feh = np.asarray(feh, float)
    locus_feh = np.clip(feh, -2.0, 0.0)
    resid = ug0 - dwarf_ug_held(g_minus_i_at_g_minus_r(gr0, locus_feh), locus_feh)
    table = np.full((len(RESIDUAL_FEH), len(RESIDUAL_GR)), np.nan)
    for a, f in enumerate(RESIDUAL_FEH):
        for b, g in enumerate(RESIDUAL_GR):
            sel = (np.abs(gr0 - g) < GR_STEP / 2) & (np.abs(feh - f) < FEH_STEP / 2)
            dwarfs = DWARF_GR_MIN.get(f, -np.inf) - 1e-9 <= g <= DWARF_GR_MAX.get(f, np.inf) + 1e-9
            if sel.sum() >= min_stars and dwarfs:
                table[a, b] = np.median(resid[sel])
    return table


def _fill_rows(cells: np.ndarray) -> np.ndarray:
    """Each row's unmeasured (NaN) cells take the nearest measured cell of the row."""
    table = np.array(cells, float)
    for a in range(table.shape[0]):
        ok = np.flatnonzero(np.isfinite(table[a]))
        nearest = ok[np.argmin(np.abs(np.arange(table.shape[1])[:, None] - ok[None, :]), axis=1)]
        table[a] = table[a, nearest]
    return np.round(table, 3)


def _dereddened(colour: str, observed, ebv: float) -> np.ndarray:
    """An SDSS colour ("ug", "gr", "ri") of the real file, observed, less its reddening at ``ebv``."""
    from photofeh.bands import BANDS

    blue, red = (BANDS[f"sdss_{b}"].r_ebv for b in colour)
    return np.asarray(observed, float) - (blue - red) * ebv


def real_categories(ug, gr, ri, ebv: float = RESIDUAL_EBV) -> np.ndarray:
    """spectro.SEGUE_CATEGORIES index of real stars from observed colours dereddened by ``ebv`` (no magnitude
    limits: the real file has no magnitudes)."""
    from photofeh.simulate.spectro import segue_category

    return segue_category(_dereddened("ug", ug, ebv), _dereddened("gr", gr, ebv), _dereddened("ri", ri, ebv))


def mock_categories(cat) -> np.ndarray:
    """spectro.SEGUE_CATEGORIES index of mock stars, from their catalogue colours dereddened by the map's E(B-V)."""
    from photofeh.bands import BANDS
    from photofeh.simulate.spectro import segue_category

    ebv = np.asarray(cat["ebv"], float)
    d = {b: np.asarray(cat[f"sdss_{b}"], float) - BANDS[f"sdss_{b}"].r_ebv * ebv for b in "ugri"}
    return segue_category(d["u"] - d["g"], d["g"] - d["r"], d["r"] - d["i"], d["g"])


def category_table(real_ug, real_gr, real_ri, real_feh, cat) -> dict:
    """Share of the labelled stars and their median [Fe/H] per targeting category, real and mock."""
    from photofeh.simulate.spectro import SEGUE_CATEGORIES

    real = real_categories(real_ug, real_gr, real_ri)
    real_feh = np.asarray(real_feh, float)
    labelled = np.isfinite(np.asarray(cat["feh_spec"], float))
    mock, mock_feh = mock_categories(cat)[labelled], np.asarray(cat["feh_spec"], float)[labelled]
    out = {}
    for k, name in enumerate(SEGUE_CATEGORIES):
        r, m = real == k, mock == k
        out[name] = {"share real": round(float(r.mean()), 3), "share mock": round(float(m.mean()), 3),
                     "median [Fe/H] real": round(float(np.median(real_feh[r])), 2) if r.any() else None,
                     "median [Fe/H] mock": round(float(np.median(mock_feh[m])), 2) if m.any() else None}
    return out


def derive_category_rates(ug, gr, ri, window) -> dict[str, float]:
    """SEGUE targeting rate per category (spectro.SEGUE_CATEGORIES) that gives the mock's labelled stars the
    real file's category shares.

    ``ug``, ``gr``, ``ri``: the real stars' observed colours (see real_categories). ``window``: a
    spectroscopic-only mock catalogue drawn with every rate set to 1, i.e. every star of the window whose Teff
    the SSPP covers and whose S/N reaches spectro.SSPP_MIN_SNR. Each rate is the real share over the window's
    count; one common scale keeps the expected number of labelled stars of the current rates (so the overall
    level still goes back to the hand-set rates this fit replaced)."""
    from photofeh.simulate.spectro import SEGUE_CATEGORIES, SEGUE_CATEGORY_RATES

    real = real_categories(ug, gr, ri)
    labelled = np.isfinite(np.asarray(window["feh_spec"], float))
    mock = mock_categories(window)[labelled]
    k = len(SEGUE_CATEGORIES)
    share = np.bincount(real, minlength=k) / real.size
    count = np.bincount(mock, minlength=k).astype(float)
    if np.any(count == 0):
        raise ValueError("every category needs mock stars in the window; draw a larger window")
    raw = share / count
    current = np.array([SEGUE_CATEGORY_RATES[c] for c in SEGUE_CATEGORIES])
    scale = np.sum(current * count) / np.sum(raw * count)
    return {c: float(f"{v:.3g}") for c, v in zip(SEGUE_CATEGORIES, raw * scale, strict=True)}
