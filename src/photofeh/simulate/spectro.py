"""The spectroscopic subsample: SEGUE-like targeting and SSPP-like labels.

Targeting follows the spirit of SEGUE (Yanny et al. 2009, AJ 137, 4377,
section 3 and table 3): stars inside the SDSS imaging footprint, 14 < g < 20
with a soft faint edge, chosen with a probability that depends on colour
category. The categories (``segue_category``) are simplified from table 3.
Their rates (``SEGUE_CATEGORY_RATES``) are fitted to the real labelled file
``segue_dr17_colours_feh.csv``: each rate is in proportion to the category's
share of the real stars (colours dereddened by realism.RESIDUAL_EBV, on which
the shares depend: the G dwarfs are 8.5% at E(B-V) = 0 and 12% at 0.028)
divided by the number of labelled mock stars it holds in the spectroscopic
window, so that the mock's labelled stars fall in the colour boxes as the
file's do (43% F/turn-off, 12% G dwarfs and K giants, 11% K dwarfs and the
rest, 6% BHB/A, 5% low-metallicity candidates; bench_mock_segue.py
--derive-rates recomputes the rates). The file is not SEGUE's targets alone:
it holds every DR17 sppParams star with normal flags and at least two [Fe/H]
estimates, whatever programme took its spectrum, so these are colour-box rates
that reproduce its colour mix, not SEGUE's own. The K-dwarf and K-giant
magnitude limits (g < 19 and 18.5) are the mock's, as before.

Labels imitate the SEGUE Stellar Parameter Pipeline (Lee et al. 2008, AJ
136, 2022; Smolinski et al. 2011, AJ 141, 89): parameters only for
4000 K < Teff < 10000 K, errors growing as the signal-to-noise ratio falls,
about 0.1-0.2 dex in [Fe/H], 0.2-0.3 dex in log g and 100-150 K in Teff.
Labels are kept only for spectra with S/N >= 20 (SSPP_MIN_SNR), which on the
mock's S/N scale (segue_snr) is a cut at g < 18.8. SSPP itself reports
parameters above S/N 10; the file's "at least two [Fe/H] estimates" keeps
fewer faint spectra, as an estimator is dropped at low S/N or outside its g-r
range (sppParams FEH*IND = 1). The threshold is fitted to the file: with it
the mock's turn-off stars spread in u-g at fixed g-r and [Fe/H] nearly as
little as the real ones, and the median [Fe/H] of the F/turn-off stars, G and
K dwarfs and K giants comes within 0.05 dex of the file's (without it the
F/turn-off stars were 0.26 dex poor: the faint ones are distant halo stars);
bench_mock_segue.py measures both. The cut ignores the estimators' colour
ranges, and the mock's S/N at fixed g may be optimistic by about a magnitude
(a line fitted to log S/N against g of the 100 DR9 sppParams stars of
sspp_dr9_sample.fits reaches S/N 20 at g = 18.0), so read it as a magnitude
limit fitted to the file.
"""

from __future__ import annotations

import numpy as np

__all__ = ["segue_target_probability", "segue_category", "sspp_labels", "lenz_l_color",
           "SEGUE_CATEGORIES", "SEGUE_CATEGORY_RATES", "SSPP_TEFF_RANGE", "SSPP_MIN_SNR"]

SSPP_TEFF_RANGE = (4000.0, 10000.0)
SSPP_MIN_SNR = 20.0

# Colour categories, later ones taking precedence over earlier ones where boxes overlap.
SEGUE_CATEGORIES = ("other", "F/turn-off", "G dwarf", "K dwarf", "K giant", "low [Fe/H]", "BHB/A")

# Targeting probability per category (bench_mock_segue.py --derive-rates, mock seed 11, 600,000 stars of
# the window, against segue_dr17_colours_feh.csv). Before the calibration (hand-set): 0.001, 0.005, 0.08,
# 0.15, 0.15, 0.01, 0.20.
SEGUE_CATEGORY_RATES = {"other": 0.0221, "F/turn-off": 0.033, "G dwarf": 0.0648, "K dwarf": 0.0347,
                        "K giant": 0.0742, "low [Fe/H]": 0.0372, "BHB/A": 0.0558}


def lenz_l_color(u, g, r, i):
    """The SEGUE 'l-color' metallicity index (Lenz et al. 1998, ApJS 119, 121):
    -0.436 u + 1.129 g - 0.119 r - 0.574 i + 0.1984, whose magnitude coefficients sum to zero, so that it is a
    function of the colours alone (:func:`_l_color_of_colours`)."""
    return _l_color_of_colours(np.asarray(u) - g, np.asarray(g) - r, np.asarray(r) - i)


def _l_color_of_colours(ug, gr, ri):
    """lenz_l_color written in u-g, g-r and r-i."""
    return -0.436 * ug + 0.693 * gr + 0.574 * ri + 0.1984


def segue_category(ug, gr, ri, g0=None) -> np.ndarray:
    """Index into SEGUE_CATEGORIES of each star, from its (dereddened) u-g, g-r and r-i.

    ``g0``: the dereddened g magnitude for the K-dwarf (g < 19) and K-giant (g < 18.5) limits; without it
    (colours only, as in the real SEGUE file) the limits are not applied."""
    ug, gr, ri = (np.asarray(a, float) for a in (ug, gr, ri))
    lcol = _l_color_of_colours(ug, gr, ri)
    bright_k = np.ones(gr.shape, bool) if g0 is None else np.asarray(g0) < 19.0
    bright_kg = np.ones(gr.shape, bool) if g0 is None else np.asarray(g0) < 18.5
    boxes = [
        (gr > 0.2) & (gr < 0.48),
        (gr >= 0.48) & (gr < 0.55),
        (gr >= 0.55) & (gr < 0.75) & bright_k,
        (gr > 0.5) & (gr < 0.8) & (lcol > 0.07) & bright_kg,
        (gr > -0.5) & (gr < 0.75) & (ug > 0.6) & (ug < 3.0) & (lcol > 0.135),
        (ug > 0.8) & (ug < 1.5) & (gr > -0.5) & (gr < 0.2),
    ]
    cat = np.zeros(gr.shape, np.int8)
    for k, box in enumerate(boxes, start=1):
        cat[box] = k
    return cat


def segue_target_probability(u0, g0, r0, i0) -> np.ndarray:
    """Probability that a star with dereddened SDSS ugri gets a SEGUE-like spectrum."""
    g0 = np.asarray(g0, float)
    rates = np.array([SEGUE_CATEGORY_RATES[c] for c in SEGUE_CATEGORIES])
    p = rates[segue_category(np.asarray(u0) - g0, g0 - np.asarray(r0), np.asarray(r0) - np.asarray(i0), g0)]
    # magnitude window 14 < g < 20 with a linear taper over 19.5-20.0
    taper = np.clip((20.0 - g0) / 0.5, 0.0, 1.0)
    p = p * taper * (g0 > 14.0)
    return np.where(np.isfinite(p), p, 0.0)


def segue_snr(g) -> np.ndarray:
    """Signal-to-noise per pixel of a SEGUE spectrum versus g: ~10 at g = 19.8, ~70 at g = 17."""
    return 10.0 ** (1.0 + 0.3 * (19.8 - np.asarray(g)))


def sspp_labels(rng, feh, logg, teff, g_obs):
    """Noisy [Fe/H], log g, Teff and their errors, NaN outside the SSPP Teff range and below SSPP_MIN_SNR."""
    snr = segue_snr(g_obs)
    e_feh = np.hypot(0.10, 2.0 / snr)
    e_logg = np.hypot(0.20, 2.5 / snr)
    e_teff = np.hypot(100.0, 1000.0 / snr)
    ok = (teff > SSPP_TEFF_RANGE[0]) & (teff < SSPP_TEFF_RANGE[1]) & (snr >= SSPP_MIN_SNR)
    n = np.size(feh)
    out = {
        "feh_spec": feh + e_feh * rng.standard_normal(n),
        "logg_spec": logg + e_logg * rng.standard_normal(n),
        "teff_spec": teff + e_teff * rng.standard_normal(n),
        "feh_spec_err": e_feh,
        "logg_spec_err": e_logg,
        "teff_spec_err": e_teff,
    }
    return {k: np.where(ok, v, np.nan) for k, v in out.items()}, ok
