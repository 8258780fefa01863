"""The spectroscopic subsample: SEGUE-like targeting and SSPP-like labels.

Targeting follows the spirit of SEGUE (Yanny et al. 2009, AJ 137, 4377,
section 3 and table 3): stars inside the SDSS imaging footprint, 14 < g < 20
with a soft faint edge, chosen with a probability that depends on colour
category so that rare, interesting stars (blue horizontal branch, metal-poor
candidates, K giants) are over-represented and common dwarfs sampled
sparsely. The category boundaries below are simplified from table 3; the
probabilities are ours, set so that a few percent of stars with g < 20 in the
footprint get a spectrum, as in SEGUE, and so that the labelled stars' [Fe/H]
distribution comes near a SEGUE-like one (1st, 50th and 99th percentiles about
-2.5, -0.6 and +0.15 for SEGUE DR17, as quoted in issue 13): G and K dwarfs, the
largest SEGUE categories, are favoured over the rarer metal-poor candidates
(the mock's metal-poor candidates are 3-5x more numerous than before its halo
gained the outer component and metal-poor tail of simulate.galaxy).

Labels imitate the SEGUE Stellar Parameter Pipeline (Lee et al. 2008, AJ
136, 2022; Smolinski et al. 2011, AJ 141, 89): parameters only for
4000 K < Teff < 10000 K, errors growing as the signal-to-noise ratio falls,
about 0.1-0.2 dex in [Fe/H], 0.2-0.3 dex in log g and 100-150 K in Teff.
"""

from __future__ import annotations

import numpy as np

__all__ = ["segue_target_probability", "sspp_labels", "lenz_l_color", "SSPP_TEFF_RANGE"]

SSPP_TEFF_RANGE = (4000.0, 10000.0)


def lenz_l_color(u, g, r, i):
    """The SEGUE 'l-color' metallicity index (Lenz et al. 1998, ApJS 119, 121)."""
    return -0.436 * u + 1.129 * g - 0.119 * r - 0.574 * i + 0.1984


def segue_target_probability(u0, g0, r0, i0) -> np.ndarray:
    """Probability that a star with dereddened SDSS ugri gets a SEGUE-like spectrum."""
    ug, gr = u0 - g0, g0 - r0
    lcol = lenz_l_color(u0, g0, r0, i0)
    p = np.full(np.shape(g0), 0.001)  # everything else: sparse sampling
    p = np.where((gr > 0.2) & (gr < 0.48), 0.005, p)  # F / turn-off
    p = np.where((gr >= 0.48) & (gr < 0.55), 0.08, p)  # G dwarfs
    p = np.where((gr >= 0.55) & (gr < 0.75) & (g0 < 19.0), 0.15, p)  # K dwarfs
    p = np.where((gr > 0.5) & (gr < 0.8) & (lcol > 0.07) & (g0 < 18.5), 0.15, p)  # K giants
    p = np.where((gr > -0.5) & (gr < 0.75) & (ug > 0.6) & (ug < 3.0) & (lcol > 0.135), 0.01, p)  # low [Fe/H]
    p = np.where((ug > 0.8) & (ug < 1.5) & (gr > -0.5) & (gr < 0.2), 0.20, p)  # BHB / A stars
    # magnitude window 14 < g < 20 with a linear taper over 19.5-20.0
    taper = np.clip((20.0 - g0) / 0.5, 0.0, 1.0)
    p = p * taper * (g0 > 14.0)
    return np.where(np.isfinite(p), p, 0.0)


def segue_snr(g) -> np.ndarray:
    """Signal-to-noise per pixel of a SEGUE spectrum versus g: ~10 at g = 19.8, ~70 at g = 17."""
    return 10.0 ** (1.0 + 0.3 * (19.8 - np.asarray(g)))


def sspp_labels(rng, feh, logg, teff, g_obs):
    """Noisy [Fe/H], log g, Teff and their errors, NaN outside the SSPP Teff range."""
    snr = segue_snr(g_obs)
    e_feh = np.hypot(0.10, 2.0 / snr)
    e_logg = np.hypot(0.20, 2.5 / snr)
    e_teff = np.hypot(100.0, 1000.0 / snr)
    ok = (teff > SSPP_TEFF_RANGE[0]) & (teff < SSPP_TEFF_RANGE[1])
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
