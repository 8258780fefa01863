"""From intrinsic stars to what surveys record: dust, footprints, noise, calibration.

Everything a real cross-matched catalogue suffers from, applied to the mock:
extinction by a dust layer (with a ~10% error on the E(B-V) a user would
read from a map), survey footprints and depth limits, photometric noise
growing toward each survey's depth (which itself varies from patch to patch
with the seeing and sky), patch-to-patch zero-point scatter, and Gaia
parallaxes with the mission's error model and zero-point offset.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from photofeh.bands import GAIA_PARALLAX_ZP_MAS, SIMULATED_BANDS, Band, extinction_coefficient, lsst_error_model

__all__ = ["DustModel", "Footprint", "DEFAULT_FOOTPRINTS", "DEPTH_SCATTER_MAG", "sky_patch", "observe_band",
           "gaia_parallax", "zero_point_table"]


# ------------------------------------------------------------------- dust
@dataclass(frozen=True)
class DustModel:
    """A plane-parallel dust layer with patchy column density.

    E(B-V) to infinity follows the cosecant law, E_inf = E_pole / |sin b|
    (e.g. Sandage 1972, ApJ 178, 1; the SFD map is close to it at high
    latitude, with E(B-V) ~ 0.02 at the poles), multiplied by a log-normal
    patchiness per 1-degree sky patch. A star at height d|sin b| sees the
    fraction 1 - exp(-d|sin b| / h) of it, h = 125 pc (Marshall et al. 2006,
    A&A 453, 635, dust scale height). The catalogue's ``ebv`` is the map
    value to infinity (what SFD would give); the true reddening of the star
    also carries a 10% error (``ebv_frac_error``), as SFD is uncertain by
    about that much (Schlafly & Finkbeiner 2011).
    """

    e_pole: float = 0.02
    scale_height_kpc: float = 0.125
    patchiness_dex: float = 0.1
    ebv_frac_error: float = 0.10
    max_ebv: float = 3.0

    def map_ebv(self, l_deg, b_deg, patch_factor):
        sinb = np.maximum(np.abs(np.sin(np.radians(b_deg))), np.sin(np.radians(1.0)))
        return np.minimum(self.e_pole / sinb * patch_factor, self.max_ebv)

    def star_ebv(self, rng, ebv_map, b_deg, d_kpc):
        return self.star_ebv_from(rng.standard_normal(ebv_map.size), ebv_map, b_deg, d_kpc)

    def star_ebv_from(self, draws, ebv_map, b_deg, d_kpc):
        """The star's reddening for given standard-normal ``draws`` of the map's error (:meth:`star_ebv`)."""
        height = d_kpc * np.abs(np.sin(np.radians(b_deg)))
        frac = 1.0 - np.exp(-height / self.scale_height_kpc)
        err = np.clip(1.0 + self.ebv_frac_error * draws, 0.0, None)
        return ebv_map * frac * err


# -------------------------------------------------------------- footprints
@dataclass(frozen=True)
class Footprint:
    """A survey's sky coverage as limits in Galactic latitude and declination (deg)."""

    min_b: float = -90.0
    max_b: float = 90.0
    min_dec: float = -90.0
    max_dec: float = 90.0

    def contains(self, b_deg, dec_deg):
        return (b_deg >= self.min_b) & (b_deg <= self.max_b) & (dec_deg >= self.min_dec) & (dec_deg <= self.max_dec)

    def to_text(self) -> str:
        """The inverse of :meth:`parse`."""
        return ",".join(f"{f}={getattr(self, f)}" for f in self.__dataclass_fields__)

    @classmethod
    def parse(cls, text: str) -> Footprint:
        """Parse ``"min_b=30,min_dec=-5"`` (keys: min_b, max_b, min_dec, max_dec)."""
        kw = {}
        for item in filter(None, (t.strip() for t in text.split(","))):
            key, sep, val = item.partition("=")
            if not sep or key not in cls.__dataclass_fields__:
                raise ValueError(f"bad footprint term {item!r}; use e.g. 'min_b=30,min_dec=-5' "
                                 f"with keys {', '.join(cls.__dataclass_fields__)}")
            kw[key] = float(val)
        return cls(**kw)


# Defaults, approximating each survey: SDSS legacy imaging of the northern
# Galactic cap; CFIS/UNIONS u north of dec 30 at high latitude (Ibata et al.
# 2017); PS1 3pi north of dec -30 (Chambers et al. 2016); Gaia all sky.
DEFAULT_FOOTPRINTS: dict[str, Footprint] = {
    "sdss": Footprint(min_b=30.0, min_dec=-5.0),
    "cfis": Footprint(min_b=25.0, min_dec=30.0),
    "ps1": Footprint(min_dec=-30.0),
    "gaia": Footprint(),
}


# ------------------------------------------------------------ calibration
PATCH_DEG = 1.0
N_PATCH_L, N_PATCH_S = int(360 / PATCH_DEG), int(180 / PATCH_DEG)


def sky_patch(l_deg, b_deg) -> np.ndarray:
    """Index of the ~1-degree equal-area sky patch holding each star."""
    il = np.clip((np.asarray(l_deg) % 360.0 / PATCH_DEG).astype(np.int64), 0, N_PATCH_L - 1)
    s = (np.sin(np.radians(b_deg)) + 1.0) / 2.0
    isb = np.clip((s * N_PATCH_S).astype(np.int64), 0, N_PATCH_S - 1)
    return il * N_PATCH_S + isb


def background_limited_depth_scatter(fwhm_quartiles, sky_quartiles) -> float:
    """RMS (mag) of a background-limited point-source depth, from the quartiles of the PSF width (arcsec) and of
    the sky brightness (mag/arcsec^2) over a survey's fields.

    At fixed S/N a point source's limiting flux scales as the PSF width times the square root of the sky flux
    (noise from the sky inside the PSF), so m5 moves by -2.5 log10(FWHM) + 0.5 mu_sky; each term's RMS is its
    interquartile range / 1.349 (a normal distribution's), and the two add in quadrature (independent)."""
    lo, _, hi = np.log10(np.asarray(fwhm_quartiles, float))
    seeing = 2.5 * abs(hi - lo) / 1.349
    sky_lo, _, sky_hi = np.asarray(sky_quartiles, float)
    sky = 0.5 * abs(sky_hi - sky_lo) / 1.349
    return float(np.hypot(seeing, sky))


# In the background-limited regime of the error model (sigma ~ 0.2 X for Ivezic et al.'s gamma = 0.039), a depth
# offset dm5 moves log10(sigma) by -0.4 dm5: an RMS of s dex in log10 error about the relation is s / 0.4 mag of depth.
LOG_ERROR_PER_DEPTH_MAG = 0.4

# How much each band's 5-sigma depth varies from one sky patch to the next (mag, RMS): a real catalogue's errors
# scatter at fixed magnitude, which a mock with one depth per band lacks (benchmarks/bench_error_scatter.py).
# - SDSS u and z: from that scatter on the SDSS DR9 SSPP stars above the error floor (0.098 dex in u, 93 stars;
#   0.029 dex in z, 49 stars; each good to ~10%), divided by LOG_ERROR_PER_DEPTH_MAG.
# - SDSS g, r, i (too few of those stars above the floor): from the conditions of the drift scans (one 54-s
#   exposure, so the depth follows each field's seeing and sky). The r-band PSF width quartiles over the DR1
#   fields are 1.30 / 1.43 / 1.58 arcsec and the sky 21.03 / 20.86 / 20.70 mag/arcsec^2 (SDSS DR7 "Seeing and
#   sky brightness" page, www.sdss.org/dr7/products/general/seeing.html; Abazajian et al. 2003, AJ 126, 2081):
#   0.20 mag (background_limited_depth_scatter).
# - PS1, CFIS and Gaia: not modelled (0). PS1's 3pi stacks average about ten exposures and vary mainly with their
#   number (no published RMS of the stack depth was at hand; green2020's PS1 errors carry a 0.02-mag floor that
#   hides any scatter); Gaia's errors follow the number of transits (PyGaia's relations are sky averages).
# One survey's bands share their patch's conditions: one standard-normal draw per patch and survey, scaled per band.
DEPTH_SCATTER_MAG: dict[str, float] = {
    "sdss_u": 0.098 / LOG_ERROR_PER_DEPTH_MAG,
    **dict.fromkeys(("sdss_g", "sdss_r", "sdss_i"),
                    background_limited_depth_scatter((1.30, 1.43, 1.58), (21.03, 20.86, 20.70))),
    "sdss_z": 0.029 / LOG_ERROR_PER_DEPTH_MAG,
}


@dataclass
class CalibrationTables:
    """Per-patch zero-point offsets and 5-sigma depth offsets per band, and dust patchiness, drawn once per seed."""

    zero_points: dict[str, np.ndarray] = field(default_factory=dict)
    dust_patch: np.ndarray | None = None
    depth_offsets: dict[str, np.ndarray] = field(default_factory=dict)


def zero_point_table(seed: int, dust: DustModel) -> CalibrationTables:
    """Draw the sky-patch calibration offsets, dust patchiness and depth offsets (DEPTH_SCATTER_MAG); independent
    of chunking."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 1]))
    n = N_PATCH_L * N_PATCH_S
    zps = {name: rng.normal(0.0, b.zp_scatter, n) for name, b in SIMULATED_BANDS.items()}
    patch = 10.0 ** rng.normal(0.0, dust.patchiness_dex, n)
    depth_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 2]))
    surveys = sorted({SIMULATED_BANDS[name].survey for name in DEPTH_SCATTER_MAG})
    conditions = {survey: depth_rng.standard_normal(n) for survey in surveys}
    depths = {name: scatter * conditions[SIMULATED_BANDS[name].survey] for name, scatter in DEPTH_SCATTER_MAG.items()}
    return CalibrationTables(zps, patch, depths)


# ------------------------------------------------------------------ noise
MAG_PER_REL_FLUX = 2.5 / np.log(10.0)  # 1.0857: sigma_mag = 1.0857 sigma_F / F
def _gaia_error(b: Band, mag: np.ndarray) -> np.ndarray:
    """Gaia (E)DR3 photometric error (mag): the mission's spline via PyGaia.

    Riello et al. 2021 / Gaia EDR3 photometric-uncertainty notebook; PyGaia's ``LogMagUncertainty`` (valid
    4 < m < 21) at DR3's number of observations, tabulated once per process every 0.0005 mag and interpolated
    linearly (:func:`_gaia_error_table`): within 8e-7 of the spline, and 10x cheaper than PyGaia's per-call
    evaluation, which builds a pandas DataFrame (2.2 against 0.2 ms per band for 24,000 stars; a twentieth of
    the mock survey's time).
    """
    y = _gaia_error_table(b.filt)
    u = (np.clip(mag, GAIA_ERROR_MAGS[0], GAIA_ERROR_MAGS[1]) - GAIA_ERROR_MAGS[0]) / GAIA_ERROR_STEP
    i = np.minimum(u.astype(np.int64), y.size - 2)
    return y[i] + (u - i) * (y[i + 1] - y[i])


GAIA_ERROR_MAGS, GAIA_ERROR_STEP = (4.0, 21.0), 0.0005  # PyGaia's valid range; the table's spacing


@functools.cache
def _gaia_error_table(filt: str) -> np.ndarray:
    """The DR3 error (mag) of Gaia band ``filt`` (g, bp or rp) every GAIA_ERROR_STEP mag over GAIA_ERROR_MAGS,
    from PyGaia's ``LogMagUncertainty.estimate_for_maglist`` (10^logU at DR3's number of observations)."""
    from pygaia.errors.photometric import LogMagUncertainty

    lo, hi = GAIA_ERROR_MAGS
    mags = np.linspace(lo, hi, int(round((hi - lo) / GAIA_ERROR_STEP)) + 1)
    table = LogMagUncertainty().estimate_for_maglist(filt, mags, "dr3")
    (column,) = [c for c in table.columns if c.startswith("logU_")]
    return np.power(10.0, table[column].to_numpy())  # logU is log10 of the error in mag


def observe_band(rng, b: Band, mag_true: np.ndarray, patch: np.ndarray,
                 cal: CalibrationTables, in_footprint: np.ndarray):
    """Observed magnitude and error for one band; NaN where not detected.

    Noise is drawn in flux, with the flux error implied by the band's error
    model at the true magnitude, so faint stars scatter as they do in real
    images (and never by tens of magnitudes). A star is detected where its
    measured S/N reaches 5 and its magnitude lies below saturation, inside
    the footprint. The reported error is 1.0857 / (S/N) of the measurement.
    The zero-point offset of the star's sky patch is added but, as in real
    data, not reported; the patch's depth offset (``cal.depth_offsets``)
    moves the error relation.
    """
    if b.survey == "gaia":
        sigma = _gaia_error(b, mag_true)
    else:
        depth = cal.depth_offsets.get(b.name)
        sigma = lsst_error_model(mag_true, b, None if depth is None else b.m5 + depth[patch])
    rel_flux_err = sigma / MAG_PER_REL_FLUX
    flux = 1.0 + rel_flux_err * rng.standard_normal(mag_true.size)  # in units of the true flux
    snr = flux / rel_flux_err
    detected = in_footprint & (snr >= 5.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = mag_true - 2.5 * np.log10(flux) + cal.zero_points[b.name][patch]
        err = MAG_PER_REL_FLUX / snr
    detected &= mag >= b.bright
    if b.survey == "gaia":  # Gaia's catalogue stops at G ~ 21 whatever the S/N
        detected &= mag <= b.m5
    return np.where(detected, mag, np.nan), np.where(detected, err, np.nan)


def reddened(name: str, mabs: np.ndarray, dm: np.ndarray, ebv: np.ndarray, bp_rp0: np.ndarray) -> np.ndarray:
    """Apparent magnitude: absolute + distance modulus + A_band."""
    return mabs + dm + extinction_coefficient(name, bp_rp0) * ebv


def gaia_parallax(rng, d_kpc: np.ndarray, gmag: np.ndarray):
    """Gaia DR3-like parallax and error (mas); NaN where G is missing.

    Sky-averaged error from PyGaia's ``parallax_uncertainty`` (DR3 release
    scaling; Gaia science performance pages), plus the EDR3 zero-point offset.
    """
    from pygaia.errors.astrometric import parallax_uncertainty

    has = np.isfinite(gmag)
    err = np.full(d_kpc.size, np.nan)
    err[has] = parallax_uncertainty(np.clip(gmag[has], 6.0, 21.0), release="dr3") / 1000.0
    plx = 1.0 / d_kpc + GAIA_PARALLAX_ZP_MAS + err * rng.standard_normal(d_kpc.size)
    return np.where(has, plx, np.nan), err
