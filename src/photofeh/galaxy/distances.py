"""From apparent and absolute magnitudes to distances, and from distances to Galactocentric positions.

Photometric parallax: a star's absolute magnitude M (the network's
``mabs_sdss_r`` label, or the Ivezic et al. 2008 relation for main-sequence
stars) and its dereddened apparent magnitude m0 give d = 10^((m0 - M)/5 + 1)
pc. A model trained on observed magnitudes with the reddening as an input
learns M + A from the parallaxes; its M is then paired with the observed m
(the model records which: ``absmag_reference``), so that the extinction is
applied exactly once. Where Gaia's parallax is precise, it is combined with the photometric
parallax by inverse-variance weighting in parallax space, where Gaia's errors
are Gaussian (inverting a noisy parallax is biased: Bailer-Jones 2015, PASP
127, 994). Positions use astropy's ``Galactocentric`` frame with its defaults
(astropy >= 4.0: R0 = 8.122 kpc, GRAVITY 2018; z_sun = 20.8 pc, Bennett &
Bovy 2019), which every output states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from photofeh.bands import GAIA_PARALLAX_ZP_MAS
from photofeh.galaxy.distance_posterior import DISTANCE_PRIORS

__all__ = ["distance_kpc", "distance_error_kpc", "ivezic2008_abs_mag_r", "ivezic2008_mabs_with_error",
           "ivezic2008_columns", "ABSMAG_SOURCES", "combine_with_parallax",
           "galactocentric", "galactic_lb", "frame_description", "star_distances", "apparent_magnitudes",
           "distance_columns_needed", "how_to_get_distances", "LN10_OVER_5"]

LN10_OVER_5 = np.log(10.0) / 5.0  # d(ln d)/d(mu)

# Ivezic et al. 2008 (ApJ 684, 287), appendix A: main-sequence M_r = M_r^0(g-i) + Delta M_r([Fe/H]), a
# quintic in g-i plus a quadratic in [Fe/H]. Coefficients as implemented by astroML
# (datasets/sdss_sspp.py, compute_distances) and Bovy's segueSelect (_mr_gi); the paper's equation numbers
# could not be checked here. [Fe/H] range: -2.5..0.2 (as stated with the relation in Ivezic's own tools);
# g-i range: 0.2..4.0, the main-sequence colours it was fitted on (not verified against the paper text).
IVEZIC2008_MR0 = (-5.06, 14.32, -12.97, 6.127, -1.267, 0.0967)
IVEZIC2008_DMR = (4.50, -1.11, -0.18)
IVEZIC2008_GI_RANGE = (0.2, 4.0)
IVEZIC2008_FEH_RANGE = (-2.5, 0.2)
# Intrinsic scatter of the relation: 0.1 mag, the "intrinsic cmd scatter" default of Bovy's segueSelect
# (ivezic_dist_gr, dmr = 0.1) for this relation; the paper's own figure could not be checked here.
IVEZIC2008_SCATTER_MAG = 0.1
ABSMAG_SOURCES = ("model", "ivezic2008")


def distance_kpc(m0, mabs) -> np.ndarray:
    """Distance (kpc) from a dereddened apparent magnitude and an absolute magnitude."""
    return 10.0 ** ((np.asarray(m0, float) - np.asarray(mabs, float)) / 5.0 - 2.0)


def distance_error_kpc(d_kpc, mabs_err, m0_err=0.0) -> np.ndarray:
    """1-sigma distance error from the magnitude errors, to first order: sigma_d = d ln10/5 sigma_mu."""
    sigma_mu = np.hypot(np.asarray(mabs_err, float), np.asarray(m0_err, float))
    return np.asarray(d_kpc, float) * LN10_OVER_5 * sigma_mu


def ivezic2008_abs_mag_r(g_i, feh) -> tuple[np.ndarray, np.ndarray]:
    """Main-sequence M_r(g-i, [Fe/H]) of Ivezic et al. 2008 (appendix A) and the mask where it is valid.

    Outside 0.2 < g-i < 4.0 or -2.5 < [Fe/H] < 0.2 the value is still returned
    but flagged: giants and evolved stars are not on this relation at all.
    """
    x = np.asarray(g_i, float)
    f = np.asarray(feh, float)
    mr0 = np.polynomial.polynomial.polyval(x, IVEZIC2008_MR0)
    dmr = np.polynomial.polynomial.polyval(f, IVEZIC2008_DMR)
    valid = ((x > IVEZIC2008_GI_RANGE[0]) & (x < IVEZIC2008_GI_RANGE[1])
             & (f > IVEZIC2008_FEH_RANGE[0]) & (f < IVEZIC2008_FEH_RANGE[1]))
    return mr0 + dmr, valid


def ivezic2008_mabs_with_error(g_i, feh, g_i_err=0.0, feh_err=0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """M_r from :func:`ivezic2008_abs_mag_r`, its 1-sigma error (the colour and [Fe/H] errors propagated
    through the relation's derivatives, plus its intrinsic scatter) and the validity mask."""
    mr, valid = ivezic2008_abs_mag_r(g_i, feh)
    x, f = np.asarray(g_i, float), np.asarray(feh, float)
    d_gi = np.polynomial.polynomial.polyval(x, np.polynomial.polynomial.polyder(IVEZIC2008_MR0))
    d_feh = np.polynomial.polynomial.polyval(f, np.polynomial.polynomial.polyder(IVEZIC2008_DMR))
    err = np.sqrt((d_gi * np.asarray(g_i_err, float)) ** 2 + (d_feh * np.asarray(feh_err, float)) ** 2
                  + IVEZIC2008_SCATTER_MAG**2)
    return mr, err, valid


def combine_with_parallax(d_kpc, d_err_kpc, parallax_mas, parallax_error_mas, min_parallax_snr: float = 5.0,
                          zero_point_mas: float = GAIA_PARALLAX_ZP_MAS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Photometric and Gaia parallaxes combined where Gaia's is precise; returns distance, error, and
    whether Gaia's parallax was used.

    The photometric parallax 1/d (mas for d in kpc) with error sigma_d/d^2 and
    the zero-point-corrected Gaia parallax are averaged with inverse-variance
    weights where parallax/error >= ``min_parallax_snr``; elsewhere the
    photometric distance stands alone (and where it is missing, nothing is
    invented from a poor parallax).
    """
    d = np.asarray(d_kpc, float)
    plx_phot = 1.0 / d
    var_phot = (np.asarray(d_err_kpc, float) / d**2) ** 2
    plx = np.asarray(parallax_mas, float) - zero_point_mas
    var_gaia = np.asarray(parallax_error_mas, float) ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        use = np.isfinite(plx) & (plx / np.sqrt(var_gaia) >= min_parallax_snr)
        both = use & np.isfinite(plx_phot) & (var_phot > 0)
        w_phot, w_gaia = 1.0 / var_phot, 1.0 / var_gaia
        plx_comb = np.where(both, (plx_phot * w_phot + plx * w_gaia) / (w_phot + w_gaia),
                            np.where(use, plx, plx_phot))
        var_comb = np.where(both, 1.0 / (w_phot + w_gaia), np.where(use, var_gaia, var_phot))
        d_out = 1.0 / plx_comb
        err_out = np.sqrt(var_comb) / plx_comb**2
    return d_out, err_out, use


def galactocentric(ra_deg, dec_deg, d_kpc) -> dict[str, np.ndarray]:
    """Galactocentric cylindrical R, z (kpc) and azimuth phi (deg) with astropy's default frame."""
    import astropy.units as u
    from astropy.coordinates import ICRS, Galactocentric

    d = np.asarray(d_kpc, float)
    ok = np.isfinite(d) & (d > 0)
    icrs = ICRS(ra=np.asarray(ra_deg, float)[ok] * u.deg, dec=np.asarray(dec_deg, float)[ok] * u.deg,
                distance=d[ok] * u.kpc)
    gc = icrs.transform_to(Galactocentric()).cartesian
    out = {k: np.full(d.shape, np.nan) for k in ("R_kpc", "z_kpc", "phi_deg")}
    x, y = gc.x.to_value(u.kpc), gc.y.to_value(u.kpc)
    out["R_kpc"][ok] = np.hypot(x, y)
    out["z_kpc"][ok] = gc.z.to_value(u.kpc)
    out["phi_deg"][ok] = np.degrees(np.arctan2(y, x))
    return out


def galactic_lb(ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
    """Galactic longitude and latitude (deg) of ICRS positions (astropy)."""
    import astropy.units as u
    from astropy.coordinates import ICRS, Galactic

    g = ICRS(ra=np.asarray(ra_deg, float) * u.deg, dec=np.asarray(dec_deg, float) * u.deg).transform_to(Galactic())
    return g.l.to_value(u.deg), g.b.to_value(u.deg)


def frame_description() -> dict:
    """The Galactocentric frame parameters used, to be written beside every output."""
    from astropy.coordinates import Galactocentric

    g = Galactocentric()
    return {"frame": "astropy Galactocentric (defaults)", "galcen_distance_kpc": g.galcen_distance.to_value("kpc"),
            "z_sun_pc": g.z_sun.to_value("pc"), "roll_deg": g.roll.to_value("deg"),
            "galcen_ra_deg": float(g.galcen_coord.ra.deg), "galcen_dec_deg": float(g.galcen_coord.dec.deg)}


def ivezic2008_columns(cols) -> dict[str, np.ndarray]:
    """``mabs_sdss_r`` and ``mabs_sdss_r_err`` from the Ivezic et al. 2008 relation for a prediction table
    (dereddened SDSS g-i, predicted [Fe/H] and its error), and ``absmag_valid``: main-sequence colours and
    [Fe/H] inside the relation's range. For models without an absolute-magnitude label."""
    from photofeh.model.features import deredden

    need = [c for c in ("sdss_g", "sdss_i", "feh") if c not in cols]
    if need:
        raise KeyError(f"--absmag ivezic2008 needs column(s) {need}: keep them when predicting, e.g. "
                       "'photofeh predict ... --keep sdss_g sdss_r sdss_i ebv parallax parallax_error'")
    m0 = deredden(cols, ["sdss_g", "sdss_i"])
    gi = m0["sdss_g"] - m0["sdss_i"]
    gi_err = np.hypot(*(np.asarray(cols.get(f"{b}_err", np.zeros(len(gi))), float) for b in ("sdss_g", "sdss_i")))
    feh_err = np.asarray(cols.get("feh_err", np.zeros(len(gi))), float)
    with np.errstate(invalid="ignore"):
        mr, err, valid = ivezic2008_mabs_with_error(gi, cols["feh"], np.nan_to_num(gi_err), np.nan_to_num(feh_err))
    return {"mabs_sdss_r": np.where(valid, mr, np.nan), "mabs_sdss_r_err": np.where(valid, err, np.nan),
            "absmag_valid": valid}


def apparent_magnitudes(cols, bands: Sequence[str], reference: Mapping[str, str] | None = None
                        ) -> dict[str, np.ndarray]:
    """The apparent magnitude each band's absolute magnitude goes with: dereddened (m - A) where
    ``reference[f"mabs_{band}"]`` is ``"dereddened"`` (the default), as observed where it is ``"observed"``
    (that M_abs already holds the extinction: :func:`photofeh.model.parallax_labels.absmag_reference`).
    So the extinction enters a distance exactly once."""
    from photofeh.model.features import deredden

    reference = reference or {}
    observed = [b for b in bands if reference.get(f"mabs_{b}", "dereddened") == "observed"]
    intrinsic = [b for b in bands if b not in observed]
    out = {b: np.asarray(cols[b], float) for b in observed}
    if intrinsic:
        out.update(deredden(cols, intrinsic))
    return out


def distance_columns_needed(bands: Sequence[str], reference: Mapping[str, str] | None = None,
                            available: Sequence[str] = ()) -> list[str]:
    """Columns :func:`star_distances` needs for ``bands`` (E(B-V) and Gaia BP/RP only for bands whose
    M_abs is intrinsic), less those in ``available``."""
    reference = reference or {}
    have = set(available)
    intrinsic = [b for b in bands if reference.get(f"mabs_{b}", "dereddened") != "observed"]
    need = [c for b in bands for c in (b, f"mabs_{b}", f"mabs_{b}_err")] + ["ra", "dec"]
    if any(b.startswith("gaia_") for b in intrinsic):  # Gaia extinction depends on the intrinsic BP-RP
        need += ["gaia_bp", "gaia_rp"]
    if "ebv" not in have and any(f"A_{b}" not in have for b in intrinsic):
        need.append("ebv")
    return [c for c in dict.fromkeys(need) if c not in have]


def how_to_get_distances(bands: Sequence[str]) -> str:
    """What a user does when a prediction table lacks what distances need in ``bands``."""
    return (f"predict with a model that has the {', '.join(f'mabs_{b}' for b in bands)} label(s) (for real "
            "labels: parallax_labels, docs/models.md) and keep the photometry, e.g. 'photofeh predict ... --keep "
            f"{' '.join(bands)} ebv parallax parallax_error'; or map dwarfs with --absmag ivezic2008")


def star_distances(cols, bands: str | Sequence[str] = "sdss_r", min_parallax_snr: float = 5.0,
                   absmag: str = "model", absmag_reference: Mapping[str, str] | None = None,
                   prior: str = "none", lb: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-star distances and Galactocentric positions from a prediction table.

    For each band (in order of preference) it needs the apparent magnitude
    with ``ebv`` (or ``A_<band>``) and the predicted ``mabs_<band>`` with its
    ``_err``; each star takes the first band in which both are measured
    (``dist_band``: its index in ``bands``, -1 for none), so a star without
    SDSS can still be placed with PS1. Uses ``parallax``/``parallax_error``
    when present. ``absmag_reference``: for each ``mabs_<band>``, whether the
    model's absolute magnitude is intrinsic (``"dereddened"``, the default) or
    includes the extinction (``"observed"``: then the observed magnitude is
    used and no E(B-V) is needed); ``photofeh map`` takes it from the
    predictions' provenance. Returns ``dist_kpc``, ``dist_err_kpc``,
    ``dist_band``, ``parallax_used``, ``R_kpc``, ``z_kpc``, ``phi_deg``.

    Where the table has a class-conditional model's components (``mabs_<band>_dwarf``, ``_giant``, their
    ``_err`` and ``p_giant``), each star's distance is its two-component posterior
    (:func:`photofeh.galaxy.distance_posterior.mixture_distances`), never a distance between the classes, with
    the columns ``dist_dwarf_kpc``, ``dist_giant_kpc``, ``dist_lo_kpc``, ``dist_hi_kpc`` (16th/84th
    percentiles) and ``p_giant_dist``. ``prior``: ``"none"`` (the estimate of the more probable class, as
    without components) or ``"juric2008"``, the stars' density along each line of sight, which corrects the
    Malmquist bias and reweighs the classes (``"juric2008-within-class"``: P(giant) kept as the model gave it);
    then ``dist_err_kpc`` is half the 16-84% interval. ``lb``: the stars' Galactic (l, b) in degrees where the
    caller has them (the prior's lines of sight; :func:`galactic_lb` of ra, dec otherwise).
    """
    bands = [bands] if isinstance(bands, str) else list(bands)
    if absmag not in ABSMAG_SOURCES:
        raise ValueError(f"absmag must be one of {ABSMAG_SOURCES}, got {absmag!r}")
    if prior not in DISTANCE_PRIORS:
        raise ValueError(f"prior must be one of {DISTANCE_PRIORS}, got {prior!r}")
    if absmag == "ivezic2008":  # the relation gives intrinsic M_r in SDSS: the distance uses dereddened SDSS r
        cols = {**cols, **ivezic2008_columns(cols)}
        bands = ["sdss_r"]
        absmag_reference = None
    missing = distance_columns_needed(bands, absmag_reference, list(cols))
    if missing:
        raise KeyError(f"distances need column(s) {missing}: {how_to_get_distances(bands)}")
    n = len(cols["ra"])
    d, err, which = np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1)
    m0 = apparent_magnitudes(cols, bands, absmag_reference)
    for k, b in enumerate(bands):
        mabs = np.asarray(cols[f"mabs_{b}"], float)
        take = (which < 0) & np.isfinite(m0[b]) & np.isfinite(mabs)
        d[take] = distance_kpc(m0[b][take], mabs[take])
        m_err = np.asarray(cols[f"{b}_err"], float)[take] if f"{b}_err" in cols else 0.0
        err[take] = distance_error_kpc(d[take], np.asarray(cols[f"mabs_{b}_err"], float)[take], m_err)
        which[take] = k
    extra = _mixture_columns(cols, bands, m0, which, prior, lb)
    if prior != "none":
        has = np.isfinite(extra["dist_kpc"])
        d[has], err[has] = extra["dist_kpc"][has], 0.5 * (extra["dist_hi_kpc"] - extra["dist_lo_kpc"])[has]
    extra.pop("dist_kpc")
    if "parallax" in cols and "parallax_error" in cols:
        d, err, used = combine_with_parallax(d, err, cols["parallax"], cols["parallax_error"], min_parallax_snr)
    else:
        used = np.zeros(n, bool)
    out = {"dist_kpc": d, "dist_err_kpc": err, "dist_band": which, "parallax_used": used,
           **galactocentric(cols["ra"], cols["dec"], d), **extra}
    if absmag == "ivezic2008":
        out["absmag_valid"] = cols["absmag_valid"]
    return out


def _mixture_columns(cols, bands: Sequence[str], m0: Mapping[str, np.ndarray], which: np.ndarray, prior: str,
                     lb: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The two-component distance posterior's columns for each star in the band it was placed with
    (:func:`photofeh.galaxy.distance_posterior.mixture_distances`); ``dist_kpc`` NaN where the table has no
    class components for that band (and, with no components in any band, only that)."""
    from photofeh.galaxy.distance_posterior import mixture_distances

    n = len(which)
    out = {"dist_kpc": np.full(n, np.nan)}
    if prior == "none":
        lb = (None, None)
    elif lb is None:
        lb = galactic_lb(cols["ra"], cols["dec"])
    for k, b in enumerate(bands):
        names = [f"mabs_{b}_dwarf", f"mabs_{b}_dwarf_err", f"mabs_{b}_giant", f"mabs_{b}_giant_err", "p_giant"]
        rows = which == k
        components = all(c in cols for c in names)
        if not rows.any() or (prior == "none" and not components):
            continue
        if not components:  # one Gaussian M_abs: the dwarf slot alone
            names = [f"mabs_{b}", f"mabs_{b}_err"]
        res = mixture_distances(np.asarray(m0[b], float)[rows], *(np.asarray(cols[c], float)[rows] for c in names),
                                **({} if lb[0] is None else {"l_deg": lb[0][rows], "b_deg": lb[1][rows]}),
                                reweigh_classes=prior != "juric2008-within-class")
        for name, v in res.items():
            out.setdefault(name, np.full(n, np.nan))[rows] = v
    return out
