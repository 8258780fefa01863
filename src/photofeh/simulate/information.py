"""The information limit: how well any unbiased estimate can know [Fe/H] from photometry (issue 26, item 1b).

The observed features y (colours, a magnitude, a parallax) of a star are its model values mu(theta) plus
Gaussian noise of covariance C, theta = ([Fe/H], EEP, log age, E(B-V), distance modulus). The Fisher
information is F = J^T C^-1 J (J = d mu / d theta) plus the precision of whatever prior knowledge an
estimate has of the nuisance parameters (E(B-V) from a dust map, the age within the grid), and no
unbiased estimate of [Fe/H] can scatter less than the marginal Cramer-Rao bound sqrt((F^-1)_feh,feh)
(e.g. Kay 1993, Fundamentals of Statistical Signal Processing I, ch. 3; with priors on the nuisances
only, the hybrid bound of Rockah & Schultheiss 1987): the nuisances are degenerate with [Fe/H] at
fixed colours (a cooler star is redder, like a richer one), and the marginal bound pays for it.

Colours of adjacent bands share a band, so their noise is correlated: C = D diag(sigma_band^2) D^T with
D the colours' difference matrix (:func:`feature_covariance`). A missing band gets a huge error
(:data:`MISSING_SIGMA`), so the colours through it carry no information but their sum (g-i where r
is missing) keeps its own.

The model is the mock's (:class:`~photofeh.simulate.isochrones.IsochroneGrid`): absolute magnitudes
at ([Fe/H], log age, EEP) as the mock survey blends them (the SDSS colours moved onto the empirical
loci), plus the distance modulus and the extinction of :func:`photofeh.bands.extinction_coefficient`.
Derivatives are central finite differences (:func:`model_jacobian`); the stars are placed on the grid by
initial mass (:func:`eep_from_mass`, mock truth) or by their Teff and log g labels
(:func:`place_by_labels`, real stars).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from photofeh.bands import extinction_coefficient

__all__ = ["PARAMS", "STEPS", "MISSING_SIGMA", "difference_matrix", "feature_covariance", "fisher_matrix",
           "marginal_sigma", "feh_information_bound", "model_values", "model_jacobian", "eep_from_mass",
           "place_by_labels", "parallax_mas"]

PARAMS = ("feh", "eep", "logage", "ebv", "dm")
# Finite-difference half steps: [Fe/H] (dex; within one interval of the grid's 0.25-dex nodes), EEP
# (points of the common EEP axis), log age (dex), E(B-V) (mag; the model is linear in it), distance modulus.
STEPS = {"feh": 0.05, "eep": 0.5, "logage": 0.05, "ebv": 0.01, "dm": 0.05}
MISSING_SIGMA = 100.0  # mag: the error given to a band a star lacks (its colours then carry nothing)


# ------------------------------------------------------------------------------------------- the algebra
def difference_matrix(bands: Sequence[str], features: Sequence[str]) -> np.ndarray:
    """(n_features, n_bands): each feature ``"a-b"`` (colour) or ``"a"`` (magnitude) as a row of +1/-1."""
    pos = {b: i for i, b in enumerate(bands)}
    D = np.zeros((len(features), len(bands)))
    for r, f in enumerate(features):
        blue, _, red = f.partition("-")
        D[r, pos[blue]] += 1.0
        if red:
            D[r, pos[red]] -= 1.0
    return D


def feature_covariance(D: np.ndarray, band_sigma: np.ndarray) -> np.ndarray:
    """(n, f, f) noise covariance of the features D m from independent band errors ``band_sigma`` (n, b);
    NaN (a missing band) counts as :data:`MISSING_SIGMA`."""
    s2 = np.where(np.isfinite(band_sigma), band_sigma, MISSING_SIGMA) ** 2
    return np.einsum("fb,nb,gb->nfg", D, s2, D)


def fisher_matrix(jacobian: np.ndarray, covariance: np.ndarray, prior_sigma: np.ndarray | None = None) -> np.ndarray:
    """F = J^T C^-1 J (+ diag(prior_sigma^-2)): ``jacobian`` (n, f, p), ``covariance`` (n, f, f), ``prior_sigma``
    (n, p) or (p,), inf where a parameter has no prior."""
    F = np.einsum("nfp,nfq->npq", jacobian, np.linalg.solve(covariance, jacobian))
    if prior_sigma is not None:
        prec = 1.0 / np.broadcast_to(np.asarray(prior_sigma, float), F.shape[:2]) ** 2
        F = F + prec[:, :, None] * np.eye(F.shape[1])[None]
    return F


def marginal_sigma(fisher: np.ndarray, gradient: np.ndarray) -> np.ndarray:
    """sqrt(g^T F^-1 g) per star: the bound on a function of theta with gradient ``gradient`` ((p,) or (n, p))."""
    g = np.broadcast_to(np.asarray(gradient, float), fisher.shape[:2])
    return np.sqrt(np.einsum("np,np->n", g, np.linalg.solve(fisher, g[..., None])[..., 0]))


def feh_information_bound(jacobian: np.ndarray, covariance: np.ndarray, prior_sigma: np.ndarray | None = None,
                          index: int = 0) -> np.ndarray:
    """Per star, the smallest standard deviation an unbiased estimate of parameter ``index`` ([Fe/H] first in
    :data:`PARAMS`) can have: sqrt((F^-1)_ii), F from :func:`fisher_matrix`, the other parameters marginalised.

    Parameters
    ----------
    jacobian
        (n, f, p) derivatives of the features' means with respect to the parameters.
    covariance
        (n, f, f) the features' noise covariance (:func:`feature_covariance`).
    prior_sigma
        (n, p) or (p,): what is known of each parameter beforehand (inf: nothing; give [Fe/H] inf, or the
        result is no longer a bound on unbiased estimates).
    """
    e = np.zeros(jacobian.shape[2])
    e[index] = 1.0
    return marginal_sigma(fisher_matrix(jacobian, covariance, prior_sigma), e)


def parallax_mas(dm: np.ndarray) -> np.ndarray:
    """Parallax (mas) of a star at distance modulus ``dm``: 1 / d[kpc], d = 10^(dm/5 + 1) pc."""
    return 10.0 ** (2.0 - np.asarray(dm) / 5.0)


# ------------------------------------------------------------------------------------------- the model
def _where(grid, feh, logage, eep):
    """A :meth:`IsochroneGrid.locate`-like position at a fractional EEP."""
    idx, w = grid.corners(feh, logage)
    last = grid.last_valid(idx)
    k = np.clip(np.floor(eep).astype(np.int64), 0, np.maximum(last - 1, 0))
    frac = np.clip(eep - k, 0.0, 1.0)
    return idx, w, k, frac, last >= 1


def model_values(grid, bands: Sequence[str], theta: dict[str, np.ndarray], quantities: Sequence[str] = ()):
    """(n, len(bands) + len(quantities)): apparent magnitudes (absolute + dm + A_band E(B-V), the Gaia
    coefficients at the model's (BP-RP)_0) and grid quantities (``logte``, ``logg``) at ``theta``."""
    where = _where(grid, theta["feh"], theta["logage"], theta["eep"])
    names = tuple(dict.fromkeys((*bands, "gaia_bp", "gaia_rp", *quantities)))
    vals = grid.evaluate_many(names, where)
    col = {n: vals[:, i] for i, n in enumerate(names)}
    bp_rp0 = col["gaia_bp"] - col["gaia_rp"]
    out = [col[b] + theta["dm"] + extinction_coefficient(b, bp_rp0) * theta["ebv"] for b in bands]
    return np.column_stack(out + [col[q] for q in quantities])


def model_jacobian(grid, bands: Sequence[str], theta: dict[str, np.ndarray], quantities: Sequence[str] = (),
                   steps: dict[str, float] | None = None) -> np.ndarray:
    """(n, len(bands) + len(quantities), len(PARAMS)) central differences of :func:`model_values`.

    [Fe/H] and log age are differenced inside the grid (the point moved in by a step where it lies beyond an
    edge, so a star richer than the grid's +0.30 gets the sensitivity at the edge, not none); the EEP inside
    the star's blended isochrone."""
    steps = {**STEPS, **(steps or {})}
    base = {k: np.asarray(v, float) for k, v in theta.items()}
    lo = {"feh": grid.mh[0], "logage": grid.logage[0]}
    hi = {"feh": grid.mh[-1], "logage": grid.logage[-1]}
    last = grid.last_valid(grid.corners(base["feh"], base["logage"])[0]).astype(float)
    lo["eep"], hi["eep"] = 0.0, last
    cols = []
    for p in PARAMS:
        h = steps[p]
        centre = base[p]
        if p in lo:
            centre = np.clip(centre, lo[p] + h, hi[p] - h)
        up, down = dict(base), dict(base)
        up[p], down[p] = centre + h, centre - h
        cols.append((model_values(grid, bands, up, quantities) - model_values(grid, bands, down, quantities))
                    / (2.0 * h))
    return np.stack(cols, axis=-1)


def eep_from_mass(grid, feh: np.ndarray, logage: np.ndarray, mass: np.ndarray, teff: np.ndarray | None = None,
                  logg: np.ndarray | None = None, tolerance: tuple[float, float] = (0.003, 0.02)) -> np.ndarray:
    """Fractional EEP of stars of given mass on their blended isochrone (as the mock survey places them by
    initial mass). With ``teff`` and ``logg`` (the mock's truth), a star the mass does not place within
    ``tolerance`` (log Teff, log g) of them (a star past its red-giant mass loss: the catalogue holds the
    current mass) takes the EEP of its isochrone nearest to them, in the same units as :func:`place_by_labels`."""
    f = np.clip(feh, *grid.mh_range)
    _, _, k, frac, _ = grid.locate(f, logage, mass)
    eep = k + frac
    if teff is None or logg is None:
        return eep
    v = model_values(grid, (), {"feh": f, "logage": logage, "eep": eep, "ebv": 0.0, "dm": 0.0}, ("logte", "logg"))
    lte = np.log10(teff)
    bad = np.flatnonzero((np.abs(v[:, 0] - lte) > tolerance[0]) | (np.abs(v[:, 1] - logg) > tolerance[1]))
    if bad.size:
        idx, w = grid.corners(f[bad], logage[bad])
        n_eep = grid.values["logte"].shape[-1]
        ks = np.arange(n_eep)[None, :]
        te = sum(wk[:, None] * grid.values["logte"].reshape(-1, n_eep)[i] for i, wk in zip(idx, w, strict=True))
        lg = sum(wk[:, None] * grid.values["logg"].reshape(-1, n_eep)[i] for i, wk in zip(idx, w, strict=True))
        d = np.hypot((te - lte[bad, None]) / 0.01, (lg - logg[bad, None]) / 0.1)
        d = np.where(np.isfinite(d) & (ks < grid.last_valid(idx)[:, None]), d, np.inf)
        eep[bad] = d.argmin(axis=1).astype(float)
    return eep


def place_by_labels(grid, feh: np.ndarray, teff: np.ndarray, logg: np.ndarray,
                    logage_range: tuple[float, float] = (9.0, 10.13),
                    scale: tuple[float, float] = (0.01, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log age, EEP, distance) of the grid point nearest each star's (log Teff, log g) at its nearest
    metallicity node, among isochrones of ``logage_range`` (1-13.5 Gyr: field stars), distances in units of
    ``scale`` (0.01 dex in log Teff, 0.1 in log g). Real stars have labels, not masses and ages: this is the
    model star that looks like each."""
    from scipy.spatial import cKDTree

    feh, teff, logg = (np.asarray(x, float) for x in (feh, teff, logg))
    node = np.abs(np.clip(feh, *grid.mh_range)[:, None] - grid.mh[None, :]).argmin(axis=1)
    ages = np.flatnonzero((grid.logage >= logage_range[0] - 1e-6) & (grid.logage <= logage_range[1] + 1e-6))
    logage, eep, dist = (np.full(feh.size, np.nan) for _ in range(3))
    q = np.column_stack([np.log10(teff) / scale[0], logg / scale[1]])
    for i in np.unique(node):
        te, lg = grid.values["logte"][i][ages], grid.values["logg"][i][ages]
        ok = np.isfinite(te) & np.isfinite(lg)
        ja, je = np.nonzero(ok)
        tree = cKDTree(np.column_stack([te[ok] / scale[0], lg[ok] / scale[1]]))
        rows = np.flatnonzero(node == i)
        d, j = tree.query(q[rows])
        logage[rows], eep[rows], dist[rows] = grid.logage[ages][ja[j]], je[j].astype(float), d
    return logage, eep, dist
