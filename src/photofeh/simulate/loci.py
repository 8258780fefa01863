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
Delta z = -Delta(i-z). It is the median, over the old (> 2 Gyr) dwarfs, turn-off stars and
subgiants (log g >= 3.5), or red giants, of each metallicity node of the stellar-model grid, of
locus minus model at the model's g-i, tabulated in g-i, so it shifts the locus without erasing the
models' spread in age and log g. It therefore
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


def u_minus_g_at_g_minus_r(g_r, feh, locus: str = "dwarf") -> np.ndarray:
    """The locus' u-g at fixed g-r and [Fe/H] (g-r rises monotonically with g-i: Newton steps invert it)."""
    g_r, feh = np.broadcast_arrays(np.asarray(g_r, float), np.asarray(feh, float))
    curve = LOCI[locus]
    g_i, h = 2.0 * g_r, 1e-4
    for _ in range(8):
        f = curve(g_i, feh)["gr"] - g_r
        slope = (curve(g_i + h, feh)["gr"] - curve(g_i - h, feh)["gr"]) / (2 * h)
        g_i = g_i - f / slope
    return curve(g_i, feh)["ug"]


# Which grid points define the correction: old stars of one kind, by log g and EEP segment.
DWARF_SELECTION = {"logg_min": 3.5, "logage_min": 9.3}  # > 2 Gyr dwarfs, turn-off and subgiants
GIANT_SELECTION = {"logg_max": 3.5, "logage_min": 9.7}  # > 5 Gyr red-giant branch
GI_STEP = 0.05
# The g-i span of each correction table: the loci's own, except that the dwarf table starts at
# g-i = 0.2, 0.1 mag below Yuan et al.'s range, to reach the turn-off of metal-poor stars (g-r ~ 0.2,
# inside the 0.2 < g-r < 0.6 range of the Ivezic/Bond photometric-metallicity relation). Bluer
# than that (horizontal branch, A stars) neither locus applies and the correction fades linearly
# to zero at g-i = -0.1. Between log g 4.0 and 3.5, and between g-i 0.45 and 0.55, it passes from
# the dwarf table to the giant one.
TABLE_GI_RANGE = {"dwarf": (0.2, 1.6), "giant": (0.55, 1.2)}
HOT_TAPER_GI = (-0.1, 0.2)
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
    def from_grid(cls, mh, logage, segment, values, red_giant_segment: int) -> LocusCorrection:
        """Tabulate the median locus-minus-model offsets over the grid's old dwarfs and red giants."""
        mh = np.asarray(mh, float)
        colours = {"ug": values["sdss_u"] - values["sdss_g"], "gr": values["sdss_g"] - values["sdss_r"],
                   "iz": values["sdss_i"] - values["sdss_z"]}
        gi = values["sdss_g"] - values["sdss_i"]
        logg = values["logg"]
        age = np.broadcast_to(np.asarray(logage)[None, :, None], gi.shape)
        seg = np.broadcast_to(np.asarray(segment)[None, None, :], gi.shape)
        kinds = {
            "dwarf": (logg >= DWARF_SELECTION["logg_min"]) & (age >= DWARF_SELECTION["logage_min"]) & (seg <= 1),
            "giant": (logg <= GIANT_SELECTION["logg_max"]) & (age >= GIANT_SELECTION["logage_min"])
            & (seg == red_giant_segment),
        }
        centres, deltas, sources = {}, {}, {}
        for kind, chosen in kinds.items():
            locus = LOCI[kind]
            lo, hi = TABLE_GI_RANGE[kind]
            c = np.arange(lo, hi + 1e-9, GI_STEP)
            centres[kind] = c
            inside = np.flatnonzero((mh >= locus.feh_range[0] - 0.05) & (mh <= locus.feh_range[1] + 0.05))
            nearest = inside[np.argmin(np.abs(mh[:, None] - mh[inside][None, :]), axis=1)]
            sources[kind] = mh[nearest]
            table = {col: np.zeros((mh.size, c.size)) for col in COLOURS}
            for i in range(mh.size):
                j = nearest[i]
                pick = chosen[j] & np.isfinite(gi[j])
                x = gi[j][pick]
                ref = locus(x, np.clip(mh[j], *locus.feh_range))
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
        return {col: np.nan_to_num(taper * ((1 - w_giant) * per_kind["dwarf"][col] + w_giant * per_kind["giant"][col]))
                for col in COLOURS}

    def apply(self, values: dict[str, np.ndarray]) -> None:
        """Shift the grid's SDSS u, r and z in place (g and i stay): the colours then follow the loci."""
        g_i = values["sdss_g"] - values["sdss_i"]
        for i in range(self.mh.size):
            d = self.offsets(i, g_i[i], values["logg"][i])
            values["sdss_u"][i] += d["ug"]
            values["sdss_r"][i] -= d["gr"]
            values["sdss_z"][i] -= d["iz"]
