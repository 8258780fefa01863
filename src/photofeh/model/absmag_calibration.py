"""The absolute magnitudes' error distribution, measured on held-out parallaxes, and the calibration it gives.

A network fitted to parallaxes (:mod:`photofeh.model.parallax_labels`) predicts a Gaussian M_abs per star (per
class for a class-conditional label). The real spread at fixed photometry is not Gaussian: unresolved binaries
sit up to 0.75 mag above their primary (a bright tail; 2.5 log10 2 = 0.753 for twins). The Gaussian that best
fits such a mixture has its mean on the bright side of the median and a width set by the tail, so the point
estimate puts the typical star too far (mock dwarfs: median d_phot/d_true 1.05) and the error is wider than the
core's (pull widths ~0.6 on the mock).

Here the distribution of pulls z = (M_true - M) / sigma is measured on the validation stars, whose parallaxes
the fit did not use, by deconvolving the parallax errors: on a grid of z, the weights that make the measured
parallaxes most likely, varpi_i ~ N(10^(2 - (m_i - M_i - sigma_i z) / 5), sigma_varpi,i^2), found by the EM
(Richardson-Lucy) iteration (Richardson 1972, JOSA 62, 55; Lucy 1974, AJ 79, 745). It uses every star with a
parallax, faint and negative ones included, so nothing is selected on the measured parallax (Lutz & Kelker
1973). Per class (each component of a class-conditional label on the validation stars of its labelled class,
as its sigma scale), the median of z shifts the point estimate to the population's median and the half-width
about it that holds 68% of z rescales the error: after calibration ``M`` is the median of M_true for stars like
it and ``M_err`` the half-width that holds 68% of them (not the standard deviation of a distribution with tails).
The same deconvolution measures held-out groups in ``benchmarks/bench_distances.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["Z_GRID", "deconvolve_pulls", "pull_quantiles", "fit_absmag_calibration", "apply_absmag_calibration",
           "MIN_INFORMATIVE_STARS", "ONE_SIGMA", "FEH_EDGES", "measure_absmag_calibration", "calibrate_column",
           "symmetric_width"]

Z_GRID = np.arange(-10.0, 10.0 + 1e-9, 0.05)  # pulls: a misclassified giant can be 8 sigma away
EM_ITERATIONS = 300  # started from N(0, 1); the median and 16/84% quantiles settle well before (checked to 1e-3)
MIN_INFORMATIVE_STARS = 100  # stars with parallax S/N >= 3 a class needs before it is calibrated
INFORMATIVE_SNR = 3.0
ONE_SIGMA = 0.682689  # the probability within one sigma of a Gaussian's mean


def deconvolve_pulls(m: np.ndarray, M: np.ndarray, sigma: np.ndarray, parallax: np.ndarray,
                     parallax_error: np.ndarray, grid: np.ndarray = Z_GRID,
                     iterations: int = EM_ITERATIONS) -> np.ndarray:
    """Weights (summing to 1) on ``grid`` of the distribution of z = (M_true - M) / sigma, deconvolved from
    the parallax errors.

    ``m``: the apparent magnitude M refers to (observed or dereddened, as the model was trained); ``parallax``
    zero-point corrected, in mas. Stars without a finite parallax, error > 0, M and sigma > 0 are left out.
    ``sigma = 1`` everywhere gives the distribution of M_true - M in magnitudes instead.
    """
    m, M, sigma, plx, err = (np.asarray(a, float) for a in (m, M, sigma, parallax, parallax_error))
    ok = np.isfinite(m) & np.isfinite(M) & np.isfinite(sigma) & (sigma > 0) & np.isfinite(plx) & (err > 0)
    m, M, sigma, plx, err = m[ok], M[ok], sigma[ok], plx[ok], err[ok]
    weights = np.exp(-0.5 * grid**2)
    weights /= weights.sum()
    if not ok.any():
        return weights
    # log-likelihood of each star's parallax at each grid point (true M = M + sigma z)
    # capped at 1e6 mas (as parallax_nll): a wide sigma times a far grid point would overflow, and such a point
    # is impossible for the star whatever the cap
    predicted = 10.0 ** np.minimum(2.0 - (m[:, None] - M[:, None] - sigma[:, None] * grid[None, :]) / 5.0, 6.0)
    log_like = -0.5 * ((plx[:, None] - predicted) / err[:, None]) ** 2
    like = np.exp(log_like - log_like.max(axis=1, keepdims=True))
    like_t = np.ascontiguousarray(like.T)
    for _ in range(iterations):  # w_j <- w_j mean_i L_ij / sum_k L_ik w_k: two matrix-vector products a step
        weights = weights * (like_t @ (1.0 / (like @ weights))) / len(m)
    return weights / weights.sum()


def pull_quantiles(weights: np.ndarray, q, grid: np.ndarray = Z_GRID) -> np.ndarray:
    """Quantiles of the gridded distribution, each grid point's weight spread evenly over its cell (the
    cumulative sum reaches a point's weight at the cell's upper edge, not at its centre)."""
    half = 0.5 * (grid[1] - grid[0])
    cdf = np.concatenate([[0.0], np.cumsum(weights)])
    return np.interp(q, cdf / cdf[-1], np.concatenate([[grid[0] - half], grid + half]))


def symmetric_width(weights: np.ndarray, centre: float, coverage: float = ONE_SIGMA, grid: np.ndarray = Z_GRID
                    ) -> float:
    """The half-width h of the interval centre +- h that holds ``coverage`` of the gridded distribution: for a
    skewed distribution (a bright binary tail) the error that 68% of stars fall within, which the central 68%
    interval's half-width is not."""
    half = 0.5 * (grid[1] - grid[0])
    edges = np.concatenate([[grid[0] - half], grid + half])
    cdf = np.concatenate([[0.0], np.cumsum(weights)]) / np.sum(weights)
    h = np.linspace(0.0, grid[-1] - grid[0], 4001)
    held = np.interp(centre + h, edges, cdf) - np.interp(centre - h, edges, cdf)
    return float(np.interp(coverage, held, h))  # held rises with h


def fit_absmag_calibration(m, M, sigma, parallax, parallax_error, groups: Mapping[str, np.ndarray]
                           ) -> dict[str, dict]:
    """Per group of stars (e.g. ``{"dwarf": ..., "giant": ...}`` by the class the estimate took), the median
    of the deconvolved pulls and the half-width about it that holds 68% of them (:func:`symmetric_width`), for
    ``model.json``.

    A group with fewer than :data:`MIN_INFORMATIVE_STARS` stars of parallax S/N >= 3 is left uncalibrated
    (median 0, width 1) and says so (``"calibrated": false``).
    """
    plx, err = np.asarray(parallax, float), np.asarray(parallax_error, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        informative = np.isfinite(M) & (plx / err >= INFORMATIVE_SNR)
    out = {}
    for name, rows in groups.items():
        rows = np.asarray(rows, bool)
        n_inf = int(np.count_nonzero(rows & informative))
        if n_inf < MIN_INFORMATIVE_STARS:
            out[name] = {"median": 0.0, "width": 1.0, "stars": int(rows.sum()), "informative_stars": n_inf,
                         "calibrated": False}
            continue
        w = deconvolve_pulls(*(np.asarray(a, float)[rows] for a in (m, M, sigma, plx, err)))
        q50 = float(pull_quantiles(w, 0.5))
        out[name] = {"median": round(q50, 4), "width": round(symmetric_width(w, q50), 4),
                     "stars": int(rows.sum()), "informative_stars": n_inf, "calibrated": True}
    return out


def apply_absmag_calibration(M: np.ndarray, sigma: np.ndarray, calibration: Mapping[str, Mapping],
                             groups: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """M + sigma * median and sigma * width, in each group's rows (rows in no group keep their values)."""
    M, sigma = np.array(M, float, copy=True), np.array(sigma, float, copy=True)
    for name, rows in groups.items():
        c = calibration.get(name)
        if c is None:
            continue
        rows = np.asarray(rows, bool)
        M[rows] += sigma[rows] * float(c["median"])
        sigma[rows] *= float(c["width"])
    return M, sigma


FEH_EDGES = (-1.2, -0.6)  # estimated [Fe/H] bins: halo, thick disk, thin disk (their M errors differ)


def measure_absmag_calibration(model, X: np.ndarray, X_err: np.ndarray | None, aux: np.ndarray,
                               parallax_labels: list[str], giant: np.ndarray | None = None) -> dict[str, dict]:
    """For each parallax label, :func:`fit_absmag_calibration` of a model's estimates of the stars ``X`` (its
    validation stars) against their parallaxes; ``aux`` is :func:`photofeh.model.parallax_labels.parallax_inputs`
    of those stars. ``model``: a :class:`photofeh.model.predict.PhotometricModel` not yet calibrated.

    A class-conditional label has each component calibrated on the stars of its class (``giant``: 1, 0 or NaN
    from the labels), as its sigma scale was; any other label on all stars (group ``"all"``). Within a group,
    one calibration per bin of the model's estimated [Fe/H] (:data:`FEH_EDGES`): metal-poor dwarfs are farther
    and their parallaxes weaker, so the network's M errs differently for them (on the mock, a single offset
    left halo dwarfs 0.2 mag too faint); a bin short of informative stars takes its group's calibration.
    Returns ``{label: {"feh_edges": [...], group: {"all": {...}, "bins": [{...}, ...]}}}``.
    """
    out = model.predict_features(X, X_err=X_err)
    usable = np.asarray(out["usable"], bool)
    giant = np.full(len(X), np.nan) if giant is None else np.asarray(giant, float)
    edges = list(FEH_EDGES) if "feh" in out else []
    feh_bin = _feh_bins(out["feh"], edges) if edges else np.zeros(len(X), int)
    result = {}
    for k, label in enumerate(parallax_labels):
        m, plx, err = aux[:, 3 * k], aux[:, 3 * k + 1], aux[:, 3 * k + 2]
        if label in model.conditional:
            groups = {cls: (rows, f"{label}_{cls}") for cls, rows in (("dwarf", usable & (giant == 0)),
                                                                      ("giant", usable & (giant == 1)))}
        else:
            groups = {"all": (usable, label)}
        result[label] = {"feh_edges": edges}
        for name, (rows, column) in groups.items():
            M, sigma = out[column], out[f"{column}_err"]
            whole = fit_absmag_calibration(m, M, sigma, plx, err, {"all": rows})["all"]
            bins = fit_absmag_calibration(m, M, sigma, plx, err,
                                          {str(b): rows & (feh_bin == b) for b in range(len(edges) + 1)})
            result[label][name] = {"all": whole, "bins": [c if c["calibrated"] else {**whole, "from": "all"}
                                                          for c in bins.values()]}
    return result


def _feh_bins(feh: np.ndarray, edges: list[float]) -> np.ndarray:
    """The bin of each estimated [Fe/H]; -1 where it is not finite (those rows take the group's calibration)."""
    feh = np.asarray(feh, float)
    return np.where(np.isfinite(feh), np.searchsorted(edges, feh, side="right"), -1)


def calibrate_column(M: np.ndarray, sigma: np.ndarray, feh: np.ndarray | None, calibration: Mapping,
                     edges: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """One group's calibration (``{"all": ..., "bins": [...]}``) applied to its column, bin by bin of the
    estimated [Fe/H]; rows without one take the group's."""
    b = _feh_bins(feh, edges) if (edges and feh is not None) else np.full(len(M), -1)
    groups = {str(k): b == k for k in range(len(calibration["bins"]))}
    groups["all"] = b == -1
    table = {str(k): c for k, c in enumerate(calibration["bins"])} | {"all": calibration["all"]}
    return apply_absmag_calibration(M, sigma, table, groups)
