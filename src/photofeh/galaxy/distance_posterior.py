"""Per-star distance posteriors from class-conditional absolute magnitudes, with an optional prior along the
line of sight.

A class-conditional model (``class_conditional``) gives each star two Gaussian absolute magnitudes, one if it
is a dwarf (M_d, s_d) and one if it is a giant (M_g, s_g), and the probability p that it is a giant. Its
distance modulus mu = m - M then has the two-component posterior

    p(mu) ~ [(1 - p) N(mu; m - M_d, s_d) + p N(mu; m - M_g, s_g)] x pi(mu),

where pi is 1 (no prior: each component's median is its Gaussian's centre) or the number of stars per unit
distance modulus along the star's line of sight, pi(mu) ~ rho(R, Z) d^3 (d^2 dd = d^3 ln10/5 dmu), with rho the
Juric et al. (2008, ApJ 673, 864, table 10) thin disc + thick disc + halo of the mock's Galaxy model
(:func:`photofeh.simulate.galaxy.density`, Juric's frame). Such a prior is the correction for Malmquist bias
(Malmquist 1936; e.g. Bailer-Jones 2015, PASP 127, 994, for parallaxes): at a given apparent magnitude an
absolute magnitude that puts the star where more stars live is more likely. It also weighs the two classes:
a faint red star read as a giant would sit in the sparse outer halo.

A bimodal star is not given a distance between its two modes: ``dist_kpc`` is the posterior median of the more
probable class (``p_giant_dist`` >= 0.5), ``dist_dwarf_kpc`` and ``dist_giant_kpc`` both classes' posterior
medians, and ``dist_lo_kpc`` / ``dist_hi_kpc`` the 16th and 84th percentiles of the whole mixture (wide where
the class is uncertain).
"""

from __future__ import annotations

import numpy as np

__all__ = ["los_log_prior", "mixture_distances", "MU_POINTS", "DISTANCE_PRIORS", "MIXTURE_COLUMNS"]

MU_POINTS = 400  # grid points in distance modulus per star (spacing <= 0.03 mag for modes 3.5 mag apart)
SPAN_SIGMA = 6.0  # each component's grid reaches this many sigma either side
BLOCK = 8192  # rows per block: BLOCK x MU_POINTS floats, ~26 MB per array
# "juric2008": the prior weighs the classes too; "juric2008-within-class": it moves each class's distance only and
# P(giant) stays the model's (for a model that read the apparent magnitude: its P(giant) holds the class odds at
# that magnitude already, learned on a training set like the survey)
DISTANCE_PRIORS = ("none", "juric2008", "juric2008-within-class")
# mixture_distances' columns beside dist_kpc (photofeh map --stars writes them)
MIXTURE_COLUMNS = ("dist_dwarf_kpc", "dist_giant_kpc", "dist_lo_kpc", "dist_hi_kpc", "p_giant_dist")
_LN10_5 = np.log(10.0) / 5.0


def los_log_prior(l_deg, b_deg, mu) -> np.ndarray:
    """log of the number of stars per unit distance modulus (up to a constant) at distance moduli ``mu`` (rows:
    stars; columns: grid points) along each star's line of sight (Galactic ``l_deg``, ``b_deg``, one per row):
    log(rho_thin + rho_thick + rho_halo) + 3 ln d (Juric et al. 2008, table 10; the mock's Galaxy)."""
    from photofeh.simulate.galaxy import POPULATIONS, density, galactocentric

    mu = np.asarray(mu, float)
    R, Z, _ = galactocentric(np.asarray(l_deg, float)[:, None], np.asarray(b_deg, float)[:, None], _kpc(mu))
    rho = sum(density(pop, R, Z) for pop in POPULATIONS)
    with np.errstate(divide="ignore"):
        return np.log(rho) + 3.0 * _LN10_5 * mu  # 3 ln d = 3 ln10/5 mu + const


def mixture_distances(m, M_dwarf, s_dwarf, M_giant=None, s_giant=None, p_giant=None, l_deg=None, b_deg=None,
                      reweigh_classes: bool = True) -> dict[str, np.ndarray]:
    """Each star's distance posterior from its dwarf and giant absolute magnitudes, weighed by ``p_giant``
    and, where ``l_deg``/``b_deg`` are given, by the line-of-sight prior (:func:`los_log_prior`).

    ``m``: the apparent magnitude the M refer to. Without giant components (``M_giant`` None or NaN) a star
    has the dwarf component alone. Returns ``dist_kpc`` (the more probable class's posterior median),
    ``dist_lo_kpc``, ``dist_hi_kpc`` (16th, 84th percentiles of the mixture), ``dist_dwarf_kpc``,
    ``dist_giant_kpc`` and ``p_giant_dist`` (the class probability given the distance prior too; p_giant
    without it; 0 for a star without a giant component). Rows without a finite m or dwarf component are NaN.
    Without a prior all of it is in closed form but the percentiles (bisection); with one, on a grid of
    :data:`MU_POINTS` distance moduli per star. ``reweigh_classes=False`` keeps
    ``p_giant`` as the classes' weights and applies the prior within each class only: for a model whose
    P(giant) already read the apparent magnitude on a training set like the survey, whose class odds at that
    magnitude it has learned (the prior would count them twice).
    """
    m = np.asarray(m, float)
    n = len(m)
    comps = [np.asarray(M_dwarf, float), np.asarray(s_dwarf, float)]
    nan = np.full(n, np.nan)
    comps += [nan if M_giant is None else np.asarray(M_giant, float), nan if s_giant is None else
              np.asarray(s_giant, float)]
    p = np.zeros(n) if p_giant is None else np.asarray(p_giant, float)
    out = {k: np.full(n, np.nan) for k in ("dist_kpc", *MIXTURE_COLUMNS)}
    ok = np.isfinite(m) & np.isfinite(comps[0]) & (comps[1] > 0)
    use_prior = l_deg is not None and b_deg is not None
    rows = np.flatnonzero(ok)
    for start in range(0, len(rows), BLOCK):
        r = rows[start:start + BLOCK]
        l_r = np.asarray(l_deg, float)[r] if use_prior else None
        b_r = np.asarray(b_deg, float)[r] if use_prior else None
        block = (_posterior_block(m[r], *(c[r] for c in comps), p[r], l_r, b_r, reweigh_classes) if use_prior
                 else _gaussian_block(m[r], *(c[r] for c in comps), p[r]))
        for k, v in block.items():
            out[k][r] = v
    return out


def _gaussian_block(m, Md, sd, Mg, sg, p) -> dict[str, np.ndarray]:
    """:func:`mixture_distances` without a prior, in closed form: each class's median is its Gaussian's centre,
    P(giant) the model's, and the mixture's percentiles are found by bisection on its CDF (60 halvings of a span
    of tens of magnitudes: well under 1e-6 mag)."""
    from scipy.special import ndtr

    has_g, pg, mu_d, mu_g, sg = _components(m, Md, sd, Mg, sg, p)

    def quantile(q):
        lo = np.minimum(mu_d - SPAN_SIGMA * sd, mu_g - SPAN_SIGMA * sg)
        hi = np.maximum(mu_d + SPAN_SIGMA * sd, mu_g + SPAN_SIGMA * sg)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            below = (1.0 - pg) * ndtr((mid - mu_d) / sd) + pg * ndtr((mid - mu_g) / sg) < q
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    return _columns(has_g, mu_d, mu_g, quantile, pg)


def _posterior_block(m, Md, sd, Mg, sg, p, l_deg, b_deg, reweigh: bool = True) -> dict[str, np.ndarray]:
    """:func:`mixture_distances` for one block of usable rows, on a per-star grid of distance modulus: each
    class's posterior normalised on its own (its median), the class probability from the classes' evidences
    (the prior-weighted likelihoods' integrals) where ``reweigh``, and the mixture's percentiles."""
    has_g, pg, mu_d, mu_g, sg = _components(m, Md, sd, Mg, sg, p)
    lo = np.minimum(mu_d - SPAN_SIGMA * sd, np.where(has_g, mu_g - SPAN_SIGMA * sg, np.inf))
    hi = np.maximum(mu_d + SPAN_SIGMA * sd, np.where(has_g, mu_g + SPAN_SIGMA * sg, -np.inf))
    mu = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, MU_POINTS)[None, :]
    prior = los_log_prior(l_deg, b_deg, mu) if l_deg is not None else 0.0
    log_ev, cum = [], []
    for centre, sigma in ((mu_d, sd), (mu_g, sg)):
        lw = -0.5 * ((mu - centre[:, None]) / sigma[:, None]) ** 2 - np.log(sigma)[:, None] + prior
        top = lw.max(axis=1)
        w = np.exp(lw - top[:, None])
        c = np.cumsum(w, axis=1)
        total = c[:, -1:].copy()
        log_ev.append(np.log(total[:, 0]) + top)  # log of the class's evidence (grid sum), up to a shared constant
        c -= 0.5 * w  # the CDF at each grid point, its own weight split about it (midpoint rule)
        cum.append(c / total)
    with np.errstate(divide="ignore", over="ignore"):
        if reweigh:  # P(giant | data, prior) from the odds p / (1 - p) times the evidences' ratio
            log_odds = np.log(pg) - np.log1p(-pg) + log_ev[1] - log_ev[0]
            p_post = np.where(has_g, 1.0 / (1.0 + np.exp(-log_odds)), 0.0)
        else:
            p_post = pg
    both = (1.0 - p_post)[:, None] * cum[0] + p_post[:, None] * cum[1]

    def quantile(frac, q):  # the grid mu where the cumulative fraction reaches q
        k = np.clip((frac < q).sum(axis=1), 1, MU_POINTS - 1)
        i = np.arange(len(frac))
        f0, f1 = frac[i, k - 1], frac[i, k]
        t = np.where(f1 > f0, (q - f0) / np.where(f1 > f0, f1 - f0, 1.0), 0.0)
        return mu[i, k - 1] + np.clip(t, 0.0, 1.0) * (mu[i, k] - mu[i, k - 1])

    return _columns(has_g, quantile(cum[0], 0.5), quantile(cum[1], 0.5), lambda q: quantile(both, q), p_post)


def _components(m, Md, sd, Mg, sg, p) -> tuple[np.ndarray, ...]:
    """Whether each star has a giant component, its P(giant) (clipped; 0 without one), and the two classes'
    distance moduli and the giant's width (without a giant component, the dwarf's, at weight 0)."""
    has_g = np.isfinite(Mg) & (sg > 0) & np.isfinite(p)
    return (has_g, np.where(has_g, np.clip(p, 0.0, 1.0), 0.0), m - Md, np.where(has_g, m - Mg, m - Md),
            np.where(has_g, sg, sd))


def _columns(has_g, mu_dwarf, mu_giant, quantile, p_giant) -> dict[str, np.ndarray]:
    """:func:`mixture_distances`' columns from the classes' median distance moduli, the mixture's ``quantile``
    function of distance modulus and P(giant); the distance is the more probable class's."""
    out = {"dist_dwarf_kpc": _kpc(mu_dwarf), "dist_giant_kpc": np.where(has_g, _kpc(mu_giant), np.nan),
           "dist_lo_kpc": _kpc(quantile(0.158655)), "dist_hi_kpc": _kpc(quantile(0.841345)), "p_giant_dist": p_giant}
    out["dist_kpc"] = np.where(p_giant >= 0.5, out["dist_giant_kpc"], out["dist_dwarf_kpc"])
    return out


def _kpc(mu) -> np.ndarray:
    """The distance (kpc) of distance modulus ``mu``."""
    return 10.0 ** (np.asarray(mu, float) / 5.0 - 2.0)
