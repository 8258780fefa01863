"""Survey bands: column names, depths, error models and extinction coefficients.

One registry for every band the package knows, so that the simulator, the
catalogue readers and the feature builder agree on names and constants.
Column names follow the project schema ``{survey}_{band}`` and
``{survey}_{band}_err``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Band",
    "BANDS",
    "SURVEYS",
    "band",
    "bands_of",
    "SIMULATED_BANDS",
    "extinction_coefficient",
    "lsst_error_model",
    "GAIA_PARALLAX_ZP_MAS",
    "MAGNITUDE_SYSTEMS",
    "AB_MINUS_VEGA",
    "to_band_system",
]


@dataclass(frozen=True)
class Band:
    """One photometric band of one survey.

    Attributes
    ----------
    name
        Column name in the project schema, e.g. ``"sdss_g"``.
    survey, filt
        Survey key and filter letter.
    wavelength_nm
        Effective wavelength, for plots and ordering.
    r_ebv
        A_band / E(B-V) on the SFD scale; NaN where the coefficient depends on
        colour (Gaia: see :func:`extinction_coefficient`).
    m5
        5-sigma depth (mag); stars fainter than this in the noisy magnitude
        are not detected.
    bright
        Saturation limit (mag); brighter stars are not reported.
    gamma, sigma_sys
        Parameters of the error model of Ivezic et al. 2019 (eq. 5).
    zp_scatter
        RMS of the calibration zero point from one sky patch to another.
    system
        ``"AB"`` or ``"Vega"``: the magnitude system of the survey's own catalogues, which the schema keeps
        (:data:`MAGNITUDE_SYSTEMS`; a table in the other system is converted or refused on reading,
        :func:`to_band_system`).
    simulated
        Whether the mock survey makes this band (it has stellar-model magnitudes
        for it); other bands are known to the readers, features and dereddening only.
    system_ref
        What defines that system for this survey, with the reference.
    """

    name: str
    survey: str
    filt: str
    wavelength_nm: float
    r_ebv: float
    m5: float
    bright: float
    gamma: float
    sigma_sys: float
    zp_scatter: float
    system: str
    simulated: bool = True
    system_ref: str = ""

    @property
    def err(self) -> str:
        """Name of the uncertainty column."""
        return f"{self.name}_err"


# Extinction: Schlafly & Finkbeiner 2011 (ApJ 737, 103), table 6, R_V = 3.1,
# per unit SFD E(B-V). Their 0.86 recalibration of SFD is already inside these
# numbers: multiply them by E(B-V) as read from the SFD map, never by 0.86 SFD.
#
# Depths: SDSS single epoch m5 fitted to published error tables and PS1 3pi
# stack 5-sigma depths (Chambers et al. 2016, table 11); CFIS u 23.6 at
# S/N = 10 (Ibata et al. 2017, ApJ 848, 128) i.e. ~24.35 at 5 sigma.
# gamma: Ivezic et al. 2019 (ApJ 873, 111), table 2 (0.038 for u, 0.039 else).
# sigma_sys: the random error floor of bright stars (SDSS repeat scans:
# ~1% in griz, 1.5% in u; Ivezic et al. 2007, AJ 134, 973). Calibration
# errors are drawn separately as zero-point scatter, so they are not
# counted twice.
# Zero-point scatter: SDSS ubercalibration 1% in griz, 2% in u (Padmanabhan
# et al. 2008, ApJ 674, 1217); PS1 < 1% (Schlafly et al. 2012, ApJ 756, 158);
# Gaia mmag-level (Riello et al. 2021, A&A 649, A3).
# Bright limits are typical saturation magnitudes of each survey.
# CFIS/MegaCam u extinction: no published table. The MegaPipe colour term
# u_Mega = u_SDSS - 0.241 (u - g)_SDSS (see simulate.photometry) is linear,
# so the same combination of the SF11 coefficients applies:
# 4.239 - 0.241 (4.239 - 3.303) = 4.013.
_TABLE = [
    # name,      survey, f,   nm,    R,     m5,    bright, gamma, sys,   zp
    ("sdss_u", "sdss", "u", 355.1, 4.239, 21.5, 14.0, 0.038, 0.015, 0.02),
    ("sdss_g", "sdss", "g", 468.6, 3.303, 23.0, 14.0, 0.039, 0.01, 0.01),
    ("sdss_r", "sdss", "r", 616.6, 2.285, 22.8, 14.0, 0.039, 0.01, 0.01),
    ("sdss_i", "sdss", "i", 748.0, 1.698, 22.2, 14.0, 0.039, 0.01, 0.01),
    ("sdss_z", "sdss", "z", 893.2, 1.263, 20.5, 12.5, 0.039, 0.01, 0.01),
    ("ps1_g", "ps1", "g", 481.1, 3.172, 23.3, 14.0, 0.039, 0.01, 0.01),
    ("ps1_r", "ps1", "r", 615.6, 2.271, 23.2, 14.0, 0.039, 0.01, 0.01),
    ("ps1_i", "ps1", "i", 750.3, 1.682, 23.1, 14.0, 0.039, 0.01, 0.01),
    ("ps1_z", "ps1", "z", 866.9, 1.322, 22.3, 13.0, 0.039, 0.01, 0.01),
    ("ps1_y", "ps1", "y", 961.3, 1.087, 21.4, 12.0, 0.039, 0.01, 0.01),
    ("cfis_u", "cfis", "u", 371.0, 4.013, 24.35, 15.0, 0.038, 0.01, 0.02),
    # Gaia: errors from the mission's spline (simulate.photometry), so gamma,
    # sigma_sys and m5 only set the detection limit (G ~ 21).
    ("gaia_g", "gaia", "g", 621.0, np.nan, 21.0, 3.0, 0.0, 0.0, 0.002),
    ("gaia_bp", "gaia", "bp", 511.0, np.nan, 21.0, 3.0, 0.0, 0.0, 0.002),
    ("gaia_rp", "gaia", "rp", 777.0, np.nan, 21.0, 3.0, 0.0, 0.0, 0.002),
]

# Bands the readers and models know but the mock survey does not make (no depth or error model: NaN).
# 2MASS (Skrutskie et al. 2006, AJ 131, 1163) and AllWISE (Wright et al. 2010, AJ 140, 1868), Vega system:
# A_band / E(B-V)_SFD from Zhang & Yuan 2023 (ApJS 264, 14), their single-value empirical coefficients,
# measured against SFD E(B-V) with Gaia XP / LAMOST stars (as distributed in their extinction_coefficient
# package, v1.7). The Green et al. 2021 stars here give the same 2MASS and WISE reddening per unit of optical
# reddening to 2-4% (scripts/green2020_reddening_scale.py).
# KIC g r i z (Brown et al. 2011, AJ 142, 112): taken through SDSS-like filters and calibrated to SDSS, yet
# not identical with it (Pinsonneault et al. 2012 find colour-dependent offsets of a few hundredths), so
# they stay their own bands; their extinction uses the SDSS coefficients of Schlafly & Finkbeiner 2011 (the
# same filter shapes to the precision that matters for A_band, 1-2%).
_NOT_SIMULATED = [
    # name,       survey,  f,    nm,     R
    ("tmass_j", "tmass", "j", 1235.0, 0.748),
    ("tmass_h", "tmass", "h", 1662.0, 0.453),
    ("tmass_ks", "tmass", "ks", 2159.0, 0.306),
    ("wise_w1", "wise", "w1", 3353.0, 0.194),
    ("wise_w2", "wise", "w2", 4603.0, 0.138),
    ("kic_g", "kic", "g", 468.6, 3.303),
    ("kic_r", "kic", "r", 616.6, 2.285),
    ("kic_i", "kic", "i", 748.0, 1.698),
    ("kic_z", "kic", "z", 893.2, 1.263),
]

# The magnitude system of each survey's catalogues, kept as it is in the schema (a model learns colours in
# the system it was trained on: mixing systems shifts every colour by the difference of the zero points).
MAGNITUDE_SYSTEMS: dict[str, tuple[str, str]] = {
    "sdss": ("AB", "AB to a few hundredths (Fukugita et al. 1996, AJ 111, 1748; Oke & Gunn 1983): u_AB = u_SDSS "
                   "- 0.04 and z_AB = z_SDSS + 0.02 (Abazajian et al. 2004, AJ 128, 502), not applied: the "
                   "schema keeps the SDSS catalogue magnitudes"),
    "ps1": ("AB", "AB (Tonry et al. 2012, ApJ 750, 99)"),
    "cfis": ("AB", "AB: MegaCam/MegaPipe magnitudes (Gwyn 2008, PASP 120, 212; Ibata et al. 2017, ApJ 848, 128)"),
    "gaia": ("Vega", "VEGAMAG (Riello et al. 2021, A&A 649, A3, section 5.4, which gives the AB zero points too)"),
    "tmass": ("Vega", "Vega (Cohen, Wheaton & Megeath 2003, AJ 126, 1090; Skrutskie et al. 2006, AJ 131, 1163)"),
    "wise": ("Vega", "Vega (Wright et al. 2010, AJ 140, 1868); AB offsets from Jarrett et al. 2011, ApJ 735, 112"),
    "kic": ("AB", "SDSS-like, so AB to a few hundredths as SDSS is: calibrated to SDSS (Brown et al. 2011, AJ "
                  "142, 112), with colour-dependent offsets of a few hundredths (Pinsonneault et al. 2012)"),
}

# m_AB - m_Vega of the Vega bands, to read a table given in the other system: Gaia EDR3 from the AB and VEGAMAG
# zero points of Riello et al. 2021 (A&A 649, A3; G 25.8010 - 25.6874, BP 25.3540 - 25.3385,
# RP 25.1040 - 24.7479); 2MASS from Blanton & Roweis 2007 (AJ 133, 734, section 2); WISE from Jarrett et al.
# 2011 (ApJ 735, 112, section 2.2; the WISE Explanatory Supplement). No such offsets for the AB surveys: a
# "Vega" SDSS, PS1, CFIS or KIC table is refused rather than shifted by an offset nobody published for it.
AB_MINUS_VEGA: dict[str, float] = {
    "gaia_g": 0.1136, "gaia_bp": 0.0155, "gaia_rp": 0.3561,
    "tmass_j": 0.91, "tmass_h": 1.39, "tmass_ks": 1.85,
    "wise_w1": 2.699, "wise_w2": 3.339,
}

BANDS: dict[str, Band] = {
    **{row[0]: Band(*row[:9], zp_scatter=row[9], system=MAGNITUDE_SYSTEMS[row[1]][0],
                    system_ref=MAGNITUDE_SYSTEMS[row[1]][1]) for row in _TABLE},
    **{row[0]: Band(*row, *(np.nan,) * 5, system=MAGNITUDE_SYSTEMS[row[1]][0], simulated=False,
                    system_ref=MAGNITUDE_SYSTEMS[row[1]][1])
       for row in _NOT_SIMULATED},
}
SIMULATED_BANDS: dict[str, Band] = {name: b for name, b in BANDS.items() if b.simulated}
SURVEYS: tuple[str, ...] = ("sdss", "ps1", "gaia", "cfis", "tmass", "wise", "kic")


def band(name: str) -> Band:
    """Return the band called ``name`` or raise a ``KeyError`` listing the known ones."""
    try:
        return BANDS[name]
    except KeyError:
        raise KeyError(f"unknown band {name!r}; known bands: {', '.join(BANDS)}") from None


def to_band_system(name: str, mags, system: str) -> np.ndarray:
    """Magnitudes of band ``name`` given in ``system`` ("AB" or "Vega"), in the band's own system
    (:attr:`Band.system`, what the schema and every model use). Converts with :data:`AB_MINUS_VEGA` where that
    is published; raises ``ValueError`` naming the band otherwise."""
    b = band(name)
    if system not in ("AB", "Vega"):
        raise ValueError(f"{name}: unknown magnitude system {system!r}; use AB or Vega")
    m = np.asarray(mags, dtype=np.float64)
    if system == b.system:
        return m
    if name not in AB_MINUS_VEGA:
        raise ValueError(f"{name} magnitudes given in {system}, but {b.survey.upper()} is {b.system} "
                         f"({b.system_ref}) and no published offset converts them: give {b.system} magnitudes")
    offset = AB_MINUS_VEGA[name]
    return m - offset if system == "AB" else m + offset


def bands_of(survey: str) -> list[Band]:
    """All bands of one survey, blue to red."""
    out = [b for b in BANDS.values() if b.survey == survey]
    if not out:
        raise KeyError(f"unknown survey {survey!r}; known surveys: {', '.join(SURVEYS)}")
    return out


# Gaia EDR3 colour-dependent coefficients, Casagrande et al. 2021 (MNRAS 507,
# 2684), their eq. 2 / table 2, with x = (BP - RP)_0. We apply them to the
# same SFD-scale E(B-V) as the SF11 coefficients; the conventions of the two
# papers differ at the ~6% level, which only matters when comparing with data
# dereddened by another recipe. Outside 0 < x < 3 the polynomials are
# extrapolated far from their calibrators, so x is clipped to that range.
_GAIA_POLY = {
    "gaia_g": (2.609, -0.475, 0.053),
    "gaia_bp": (2.998, -0.140, -0.175, 0.062),
    "gaia_rp": (1.689, -0.059),
}
GAIA_COLOUR_RANGE = (0.0, 3.0)


def extinction_coefficient(name: str, bp_rp0: np.ndarray | float | None = None) -> np.ndarray | float:
    """A_band / E(B-V)_SFD for ``name``; Gaia bands need the intrinsic BP-RP."""
    b = band(name)
    if b.survey != "gaia":
        return b.r_ebv
    if bp_rp0 is None:
        raise ValueError(f"{name}: the Gaia coefficient depends on (BP-RP)_0; pass bp_rp0")
    x = np.clip(bp_rp0, *GAIA_COLOUR_RANGE)
    coefficients = _GAIA_POLY[name]
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        return np.polynomial.polynomial.polyval(x, coefficients)
    # numpy's polyval (Horner: c[-1] + 0 x, then c[k] + c x) done in place, the same operations in the same
    # order (identical values) without a temporary per degree: predict dereddens Gaia bands nine times a chunk
    value = np.multiply(x, 0.0)
    value += coefficients[-1]
    for c in coefficients[-2::-1]:
        value *= x
        value += c
    return value


def lsst_error_model(mag: np.ndarray, b: Band, m5=None) -> np.ndarray:
    """Photometric error (mag) from Ivezic et al. 2019, ApJ 873, 111, eq. 5.

    sigma^2 = sigma_sys^2 + (0.04 - gamma) X + gamma X^2, X = 10^(0.4 (m - m5)),
    so that sigma = 0.2 (S/N = 5) at m = m5 for gamma near 0.04. ``m5``: the
    depth where it differs from the band's (a shallower or deeper field).
    """
    x = 10.0 ** (0.4 * (np.asarray(mag) - (b.m5 if m5 is None else np.asarray(m5))))
    return np.sqrt(b.sigma_sys**2 + (0.04 - b.gamma) * x + b.gamma * x**2)


# Gaia parallax zero point: quasars give a median parallax of -17 microarcsec
# in EDR3/DR3 (Lindegren et al. 2021, A&A 649, A4, section 5.2). A global value:
# the full correction depends on magnitude, colour and position (their eq. A1).
GAIA_PARALLAX_ZP_MAS = -0.017
