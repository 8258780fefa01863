"""Empirical SDSS stellar loci, and the correction that puts stellar-model colours on them.

Why: stellar models miss the observed ugriz colours of real stars by a few hundredths of a
magnitude in g-r and by up to a tenth or more in u-g (An et al. 2008, ApJS 179, 326, abstract:
Girardi et al. model colours miss cluster fiducials by 0.02-0.05 mag; An et al. 2009, ApJ 700,
523). Since u-g carries the metallicity signal at 3-5 dex per magnitude, a mock survey built on
raw model colours has a different colour-metallicity relation from the sky's, and every accuracy
figure measured on it describes that other relation.

The empirical loci (colours as functions of g-i and [Fe/H] on the SSPP scale):

- Main sequence: Yuan, Liu, Xiang et al. 2015, ApJ 799, 134 ("Stellar loci I"), table 1; SDSS
  Stripe 82 recalibrated photometry with SSPP [Fe/H]; valid for 0.3 < g-i < 1.6 and
  -2.0 < [Fe/H] < 0.0; fit residuals 0.029 (u-g), 0.008 (g-r), 0.011 (i-z) mag.
- Red giants: Zhang, Yuan, Huang et al. 2021, RAA 21, 319 ("Stellar loci IV"), table 1; valid for
  0.55 < g-i < 1.2 and -2.5 < [Fe/H] < -0.3.

Both tables as transcribed, with their validity ranges, in the LSST photometric-distance code of
Ivezic's group (github.com/labastro-rbi/photoD, ``LocusTools.py``: ``MSlocus``, ``RGlocus``);
two checks against the papers' text: the Yuan et al. abstract's "1 dex lower [Fe/H] makes u-g
0.20 mag bluer" (the polynomial gives 0.22-0.26 near g-i = 0.4-0.5) and r-i = (g-i) - (g-r)
exactly. docs/mock_calibration.md lists the sources and what was and was not verified.

The correction keeps g and i (hence g-i, the locus' independent variable) and moves u, r and z
so that u-g, g-r, r-i and i-z reach the loci: Delta u = Delta(u-g), Delta r = -Delta(g-r),
Delta z = -Delta(i-z). It is the median, over the old (> 2 Gyr; > 10 Gyr below [Fe/H] = -1) dwarfs and
turn-off stars (log g >= 3.9), or red giants, of each metallicity node of the stellar-model grid, of
locus minus model at the model's g-i, tabulated in g-i, so it shifts the locus without erasing the
models' spread in age and log g. The dwarfs' u-g target is the locus moved onto real SEGUE DR17 stars
(SEGUE_UG_RESIDUAL, issue 26). It therefore
also absorbs the SDSS-AB offsets of the model magnitudes (u_AB = u_SDSS - 0.04, z_AB = z_SDSS +
0.02; SDSS DR7 photometric calibration pages), which is why it is derived against the SDSS
system. ``scripts/derive_locus_correction.py`` prints the tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["LOCI", "dwarf_locus", "giant_locus", "LocusCorrection", "u_minus_g_at_g_minus_r"]

COLOURS = ("ug", "gr", "iz")

# Yuan et al. 2015, table 1. u-g: b0..b14 of
#   b0 + b1 y + b2 y^2 + b3 y^3 + b4 y^4 + x (b5 + b6 y + b7 y^2 + b8 y^3)
#   + x^2 (b9 + b10 y + b11 y^2) + x^3 (b12 + b13 y) + b14 x^4,   x = g-i, y = [Fe/H].
_YUAN_UG = (1.5003, 0.0011, 0.1741, 0.0910, 0.0181, -3.2190, 1.1675, 0.0875, 0.0031, 7.9725,
            -0.8190, -0.0439, -5.2923, 0.1339, 1.1459)
# Other colours (both papers): a0 + a1 y + a2 y^2 + a3 y^3 + a4 x + a5 xy + a6 xy^2 + a7 x^2
#   + a8 y x^2 + a9 x^3. (r-i is (g-i) - (g-r) in both tables.)
_YUAN = {
    "gr": (0.0596, 0.0348, 0.0239, 0.0044, 0.6070, 0.0261, -0.0044, 0.1532, -0.0136, -0.0613),
    "iz": (-0.1060, -0.0357, -0.0123, -0.0017, 0.2543, -0.0010, -0.0050, -0.0381, -0.0071, 0.0030),
}
_ZHANG = {  # Zhang et al. 2021, table 1
    "ug": (1.4630, 0.3132, -0.0105, -0.0224, -1.5851, -0.2423, -0.0372, 2.8655, 0.0958, -0.7469),
    "gr": (0.0957, 0.0370, 0.0120, 0.0020, 0.5272, -0.0026, 0.0019, 0.1645, 0.0057, -0.0488),
    "iz": (-0.0551, -0.0229, -0.0165, -0.0033, 0.0762, -0.0365, -0.0006, 0.1899, 0.0244, -0.0805),
}


def _cubic(a, x, y):
    return (a[0] + a[1] * y + a[2] * y**2 + a[3] * y**3 + a[4] * x + a[5] * x * y + a[6] * x * y**2
            + a[7] * x**2 + a[8] * y * x**2 + a[9] * x**3)


def dwarf_locus(g_i, feh) -> dict[str, np.ndarray]:
    """Main-sequence u-g, g-r, r-i, i-z at (g-i, [Fe/H]) from Yuan et al. 2015 (no range check)."""
    x, y = np.asarray(g_i, float), np.asarray(feh, float)
    b = _YUAN_UG
    ug = (b[0] + b[1] * y + b[2] * y**2 + b[3] * y**3 + b[4] * y**4 + x * (b[5] + b[6] * y + b[7] * y**2 + b[8] * y**3)
          + x**2 * (b[9] + b[10] * y + b[11] * y**2) + x**3 * (b[12] + b[13] * y) + b[14] * x**4)
    gr = _cubic(_YUAN["gr"], x, y)
    return {"ug": ug, "gr": gr, "ri": x - gr, "iz": _cubic(_YUAN["iz"], x, y)}


def giant_locus(g_i, feh) -> dict[str, np.ndarray]:
    """Red-giant u-g, g-r, r-i, i-z at (g-i, [Fe/H]) from Zhang et al. 2021 (no range check)."""
    x, y = np.asarray(g_i, float), np.asarray(feh, float)
    gr = _cubic(_ZHANG["gr"], x, y)
    return {"ug": _cubic(_ZHANG["ug"], x, y), "gr": gr, "ri": x - gr, "iz": _cubic(_ZHANG["iz"], x, y)}


@dataclass(frozen=True)
class Locus:
    """One empirical locus (colours at given g-i and [Fe/H]) and the box its paper gives it for."""

    colours: Callable[..., dict[str, np.ndarray]]
    gi_range: tuple[float, float]
    feh_range: tuple[float, float]

    def __call__(self, g_i, feh) -> dict[str, np.ndarray]:
        return self.colours(g_i, feh)


LOCI = {"dwarf": Locus(dwarf_locus, (0.3, 1.6), (-2.0, 0.0)), "giant": Locus(giant_locus, (0.55, 1.2), (-2.5, -0.3))}

# Real SEGUE stars against the Yuan et al. 2015 locus (issue 26): median u-g of 19,530 SDSS DR17 stars with
# SSPP [Fe/H] (segue_dr17_colours_feh.csv, ../shared/data/real) minus the locus at their g-r and [Fe/H] (clipped
# to the locus' -2..0; u-g held at its g-i = 0.3 edge below it, dwarf_ug_held), per cell of dereddened g-r
# (columns, centres SEGUE_UG_GR) and [Fe/H] (rows, centres SEGUE_UG_FEH); printed by
# ``python benchmarks/bench_mock_segue.py --derive`` (photofeh.simulate.realism.derive_ug_residual: >= 30 stars a
# cell, dereddened by the mock's median E(B-V) of labelled stars, 0.028; cells not measured take the nearest
# measured one of their row), then refined once against the mock (realism.refine_ug_residual: the entry of each
# cell redder than g-r = 0.2 and measured on both sides moves by real minus mock, so that the mock's own
# labelled stars, whose u-g is set at their true [Fe/H] and labelled afterwards with SSPP-like errors, give the
# real file's table back). Where the
# real stars disagree with the locus, the real stars win: the locus is a fit to Stripe 82 dwarfs with
# -2 < [Fe/H] < 0 and g-i > 0.3, and SEGUE DR17 finds the turn-off region (g-r 0.2-0.4) 0.01-0.05 mag redder in
# u-g, and K dwarfs (g-r 0.55-0.85, [Fe/H] > -1) 0.04-0.12 mag bluer at fixed SSPP [Fe/H], the label scale a
# model trained on the mock is then fine-tuned on. Rows below [Fe/H] = -1 are measured only on g-r 0.15-0.45
# (0.40 below -1.5): bluer, SEGUE's metal-poor stars are horizontal-branch stars and blue stragglers, redder
# mostly red giants. The dwarf table adds it to the locus from [Fe/H] -2.5 to +0.5 (SEGUE_UG_FEH_RANGE).
SEGUE_UG_GR = tuple(round(0.05 + 0.05 * k, 2) for k in range(23))
SEGUE_UG_FEH = (-2.25, -1.75, -1.25, -0.75, -0.25, 0.25)
SEGUE_UG_FEH_RANGE = (-2.5, 0.5)
SEGUE_UG_RESIDUAL = np.array([
    (-0.022, -0.022, -0.022, -0.033, -0.001, +0.016, -0.009, +0.032, +0.047, +0.047, +0.047, +0.047,
     +0.047, +0.047, +0.047, +0.047, +0.047, +0.047, +0.047, +0.047, +0.047, +0.047, +0.047),
    (+0.040, +0.040, +0.040, -0.023, +0.017, +0.033, +0.026, +0.007, +0.028, +0.028, +0.028, +0.028,
     +0.028, +0.028, +0.028, +0.028, +0.028, +0.028, +0.028, +0.028, +0.028, +0.028, +0.028),
    (+0.094, +0.094, +0.094, +0.039, +0.009, +0.025, +0.017, -0.013, -0.032, -0.004, -0.004, -0.004,
     -0.004, -0.004, -0.004, -0.004, -0.004, -0.004, -0.004, -0.004, -0.004, -0.004, -0.004),
    (+0.117, +0.097, +0.044, +0.056, +0.015, +0.007, +0.011, -0.003, -0.014, -0.005, +0.003, -0.013,
     -0.036, -0.033, -0.029, -0.036, +0.046, +0.020, -0.009, -0.022, -0.022, -0.022, -0.022),
    (+0.085, +0.075, +0.042, +0.043, +0.037, +0.038, +0.012, +0.012, +0.005, +0.022, -0.021, -0.073,
     -0.066, -0.114, -0.065, -0.028, +0.008, -0.010, -0.014, +0.026, +0.030, -0.044, -0.053),
    (+0.026, +0.026, +0.026, +0.026, +0.026, +0.026, +0.026, +0.026, +0.026, +0.079, +0.042, -0.010,
     -0.006, -0.072, -0.089, -0.089, -0.089, -0.089, -0.089, -0.089, -0.089, -0.089, -0.089),
])


def segue_ug_residual(g_r, feh) -> np.ndarray:
    """SEGUE DR17 minus Yuan et al. 2015 u-g at dereddened g-r and [Fe/H] (SEGUE_UG_RESIDUAL, bilinear, held
    constant beyond the table's edges)."""
    from scipy.interpolate import RegularGridInterpolator

    interp = RegularGridInterpolator((np.array(SEGUE_UG_FEH), np.array(SEGUE_UG_GR)), SEGUE_UG_RESIDUAL)
    f = np.clip(np.asarray(feh, float), SEGUE_UG_FEH[0], SEGUE_UG_FEH[-1])
    g = np.clip(np.asarray(g_r, float), SEGUE_UG_GR[0], SEGUE_UG_GR[-1])
    f, g = np.broadcast_arrays(f, g)
    return interp(np.column_stack([f.ravel(), g.ravel()])).reshape(f.shape)


def g_minus_i_at_g_minus_r(g_r, feh, locus: str = "dwarf") -> np.ndarray:
    """The locus' g-i at fixed g-r and [Fe/H] (g-r rises monotonically with g-i: Newton steps invert it)."""
    g_r, feh = np.broadcast_arrays(np.asarray(g_r, float), np.asarray(feh, float))
    curve = LOCI[locus]
    g_i, h = 2.0 * g_r, 1e-4
    for _ in range(8):
        f = curve(g_i, feh)["gr"] - g_r
        slope = (curve(g_i + h, feh)["gr"] - curve(g_i - h, feh)["gr"]) / (2 * h)
        g_i = g_i - f / slope
    return g_i


def u_minus_g_at_g_minus_r(g_r, feh, locus: str = "dwarf") -> np.ndarray:
    """The locus' u-g at fixed g-r and [Fe/H]."""
    feh = np.asarray(feh, float)
    return LOCI[locus](g_minus_i_at_g_minus_r(g_r, feh, locus), feh)["ug"]


def dwarf_ug_held(g_i, feh) -> np.ndarray:
    """Yuan et al. 2015 u-g at (g-i, [Fe/H]) inside the locus' g-i range, held at its g-i = 0.3 value below it:
    the polynomial is not continued past its data, where it turns up steeply (0.2 mag between g-i 0.3 and 0.2 at
    [Fe/H] = -2) while real metal-poor turn-off stars of SEGUE keep a flat u-g (issue 26)."""
    return dwarf_locus(np.maximum(np.asarray(g_i, float), LOCI["dwarf"].gi_range[0]), feh)["ug"]


# Which grid points define the correction: old stars of one kind, by log g and EEP segment.
# > 2 Gyr dwarfs and turn-off stars, log g >= 3.9: subgiants (log g 3.5-3.9) cross the turn-off colours with
# u-g 0.03-0.05 mag redder, and their share of the grid's points is not their share of stars, so with them in the
# median the old metal-poor main sequence came out 0.035 mag bluer than the locus (issue 26)
DWARF_SELECTION = {"logg_min": 3.9, "logage_min": 9.3}
# Below [Fe/H] = -1 the real stars behind the loci are halo and thick-disk stars, all older than ~10 Gyr (the
# mock's own thick disk and halo: 11 and 12 +- 1 Gyr, simulate.galaxy.AGES_GYR); the grid's young metal-poor
# isochrones, which no real population has, would set the median at the turn-off colours with main-sequence stars
# of higher log g and bluer u-g, leaving the old turn-off stars 0.03-0.05 mag redder than the locus (issue 26).
DWARF_OLD_BELOW_FEH, DWARF_OLD_LOGAGE_MIN = -1.0, 10.0
GIANT_SELECTION = {"logg_max": 3.5, "logage_min": 9.7}  # > 5 Gyr red-giant branch
GI_STEP = 0.05
# The g-i span of each correction table: the loci's own, except that the dwarf table starts at
# g-i = 0.2, 0.1 mag below Yuan et al.'s range, to reach the turn-off of metal-poor stars (g-r ~ 0.2,
# inside the 0.2 < g-r < 0.6 range of the Ivezic/Bond photometric-metallicity relation); there its u-g
# target is the locus' value at g-i = 0.3 plus the SEGUE DR17 residual (issue 26: the polynomial turned up
# by 0.1-0.2 mag below its range, and real metal-poor turn-off stars do not). Bluer
# than that (horizontal branch, A stars) neither locus applies and the correction fades linearly
# to the SDSS-AB offsets alone (HOT_FLOOR: u-g +0.04, i-z +0.02; the module docstring) at g-i = -0.1,
# which apply to every star. Between log g 4.0 and 3.5, and between g-i 0.45 and 0.55, it passes from
# the dwarf table to the giant one.
TABLE_GI_RANGE = {"dwarf": (0.2, 1.6), "giant": (0.55, 1.2)}
HOT_TAPER_GI = (-0.1, 0.2)
HOT_FLOOR = {"ug": 0.04, "gr": 0.0, "iz": 0.02}
GIANT_BLEND_LOGG = (4.0, 3.5)
GIANT_BLEND_GI = (0.45, 0.55)


@dataclass
class LocusCorrection:
    """Locus-minus-model colour offsets per metallicity node of a stellar-model grid, in bins of g-i."""

    mh: np.ndarray
    gi: dict[str, np.ndarray]  # bin centres per locus
    delta: dict[str, dict[str, np.ndarray]]  # locus -> colour -> (n_mh, n_gi)
    source_mh: dict[str, np.ndarray]  # locus -> node whose table each node uses (nearest inside the locus range)

    @classmethod
    def from_grid(cls, mh, logage, segment, values, red_giant_segment: int, segue: bool = True) -> LocusCorrection:
        """Tabulate the median locus-minus-model offsets over the grid's old dwarfs and red giants; ``segue``: the
        dwarfs' u-g target is the Yuan et al. 2015 locus plus the SEGUE DR17 residual (SEGUE_UG_RESIDUAL)."""
        mh = np.asarray(mh, float)
        colours = {"ug": values["sdss_u"] - values["sdss_g"], "gr": values["sdss_g"] - values["sdss_r"],
                   "iz": values["sdss_i"] - values["sdss_z"]}
        gi = values["sdss_g"] - values["sdss_i"]
        logg = values["logg"]
        age = np.broadcast_to(np.asarray(logage)[None, :, None], gi.shape)
        seg = np.broadcast_to(np.asarray(segment)[None, None, :], gi.shape)
        kinds = {
            "dwarf": (logg >= DWARF_SELECTION["logg_min"]) & (seg <= 1)
            & (age >= np.where(np.asarray(mh)[:, None, None] < DWARF_OLD_BELOW_FEH, DWARF_OLD_LOGAGE_MIN,
                               DWARF_SELECTION["logage_min"])),
            "giant": (logg <= GIANT_SELECTION["logg_max"]) & (age >= GIANT_SELECTION["logage_min"])
            & (seg == red_giant_segment),
        }
        centres, deltas, sources = {}, {}, {}
        for kind, chosen in kinds.items():
            locus = LOCI[kind]
            lo, hi = TABLE_GI_RANGE[kind]
            c = np.arange(lo, hi + 1e-9, GI_STEP)
            centres[kind] = c
            feh_range = SEGUE_UG_FEH_RANGE if kind == "dwarf" and segue else locus.feh_range
            inside = np.flatnonzero((mh >= feh_range[0] - 0.05) & (mh <= feh_range[1] + 0.05))
            nearest = inside[np.argmin(np.abs(mh[:, None] - mh[inside][None, :]), axis=1)]
            sources[kind] = mh[nearest]
            table = {col: np.zeros((mh.size, c.size)) for col in COLOURS}
            for i in range(mh.size):
                j = nearest[i]
                pick = chosen[j] & np.isfinite(gi[j])
                x = gi[j][pick]
                ref = locus(x, np.clip(mh[j], *locus.feh_range))
                if kind == "dwarf" and segue:
                    ref["ug"] = dwarf_ug_held(x, np.clip(mh[j], *locus.feh_range)) + segue_ug_residual(ref["gr"], mh[j])
                b = np.floor((x - lo) / GI_STEP + 0.5).astype(int)
                for col in COLOURS:
                    diff = ref[col] - colours[col][j][pick]
                    med = np.array([np.median(diff[b == k]) if np.sum(b == k) >= 3 else np.nan for k in range(c.size)])
                    ok = np.isfinite(med)
                    table[col][i] = np.interp(c, c[ok], med[ok]) if ok.any() else 0.0
            deltas[kind] = table
        return cls(mh, centres, deltas, sources)

    def offsets(self, node: int, g_i, logg) -> dict[str, np.ndarray]:
        """Colour offsets (u-g, g-r, i-z) for points of metallicity node ``node`` with model g-i and log g."""
        g_i, logg = np.asarray(g_i, float), np.asarray(logg, float)
        per_kind = {kind: {col: np.interp(g_i, self.gi[kind], self.delta[kind][col][node]) for col in COLOURS}
                    for kind in ("dwarf", "giant")}
        w_giant = (np.clip((GIANT_BLEND_LOGG[0] - logg) / (GIANT_BLEND_LOGG[0] - GIANT_BLEND_LOGG[1]), 0, 1)
                   * np.clip((g_i - GIANT_BLEND_GI[0]) / (GIANT_BLEND_GI[1] - GIANT_BLEND_GI[0]), 0, 1))
        taper = np.clip((g_i - HOT_TAPER_GI[0]) / (HOT_TAPER_GI[1] - HOT_TAPER_GI[0]), 0, 1)
        return {col: np.nan_to_num(HOT_FLOOR[col] + taper * ((1 - w_giant) * per_kind["dwarf"][col]
                                                             + w_giant * per_kind["giant"][col] - HOT_FLOOR[col]))
                for col in COLOURS}

    def apply(self, values: dict[str, np.ndarray]) -> None:
        """Shift the grid's SDSS u, r and z in place (g and i stay): the colours then follow the loci."""
        g_i = values["sdss_g"] - values["sdss_i"]
        for i in range(self.mh.size):
            d = self.offsets(i, g_i[i], values["logg"][i])
            values["sdss_u"][i] += d["ug"]
            values["sdss_r"][i] -= d["gr"]
            values["sdss_z"][i] -= d["iz"]
