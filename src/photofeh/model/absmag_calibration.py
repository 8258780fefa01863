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
as its sigma scale) and per cell of estimated [Fe/H] and Teff, the median of z shifts the point estimate to the
population's median and the half-width about it that holds 68% of z rescales the error: after calibration ``M``
is the median of M_true for stars like it and ``M_err`` the half-width that holds 68% of them (not the standard
deviation of a distribution with tails).
The same deconvolution measures held-out groups in ``benchmarks/bench_distances.py``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["Z_GRID", "deconvolve_pulls", "pull_quantiles", "fit_absmag_calibration", "apply_absmag_calibration",
           "MIN_INFORMATIVE_STARS", "ONE_SIGMA", "FEH_EDGES", "measure_absmag_calibration", "calibrate_column",
           "symmetric_width", "TEFF_EDGES"]

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
# estimated Teff bins: M-type and late K (< 4500 K), K (4500-5000, 5000-5500), G (5500-6000) and F dwarfs; K dwarfs
# have BP-RP ~1.0-1.4 (Pecaut & Mamajek 2013, ApJS 208, 9, Table 5: K0V 5270 K, BP-RP 0.98; K5V 4450 K, 1.43).
# On green2020 the network's dwarf M_G errs differently along the sequence: after one offset per [Fe/H] bin the
# dwarfs at estimated Teff 5000-5500 K came out 7% too far and those above 6000 K 6% too near (bench_distances)
TEFF_EDGES = (4500.0, 5000.0, 5500.0, 6000.0)


def measure_absmag_calibration(model, X: np.ndarray, X_err: np.ndarray | None, aux: np.ndarray,
                               parallax_labels: list[str], giant: np.ndarray | None = None) -> dict[str, dict]:
    """For each parallax label, :func:`fit_absmag_calibration` of a model's estimates of the stars ``X`` (its
    validation stars) against their parallaxes; ``aux`` is :func:`photofeh.model.parallax_labels.parallax_inputs`
    of those stars. ``model``: a :class:`photofeh.model.predict.PhotometricModel` not yet calibrated.

    A class-conditional label has each component calibrated on the stars of its class (``giant``: 1, 0 or NaN
    from the labels), as its sigma scale was; any other label on all stars (group ``"all"``). Within a group,
    one calibration per cell of the model's estimated [Fe/H] (:data:`FEH_EDGES`) and estimated Teff
    (:data:`TEFF_EDGES`, where the model estimates Teff): metal-poor dwarfs are farther and their parallaxes
    weaker, so the network's M errs differently for them (on the mock, a single offset left halo dwarfs 0.2 mag
    too faint), and along the dwarf sequence it errs differently with colour (green2020's K dwarfs). A cell short
    of informative stars takes the finest calibrated group that holds it: its [Fe/H] bin, else its Teff bin,
    else the whole group (``"from"`` says which).
    Returns ``{label: {"feh_edges": [...], "teff_edges": [...], group: {"all": {...}, "bins": [...],
    "teff_bins": [...], "cells": [[...] per Teff bin] per [Fe/H] bin}}}``; a model.json written before the Teff
    bins (no ``teff_edges``) is applied by [Fe/H] bin alone (:func:`calibrate_column`).
    """
    out = model.predict_features(X, X_err=X_err)
    usable = np.asarray(out["usable"], bool)
    giant = np.full(len(X), np.nan) if giant is None else np.asarray(giant, float)
    edges = list(FEH_EDGES) if "feh" in out else []
    teff_edges = list(TEFF_EDGES) if "teff" in out else []
    feh_bin = _bins(out["feh"], edges) if edges else np.zeros(len(X), int)
    teff_bin = _bins(out["teff"], teff_edges) if teff_edges else np.zeros(len(X), int)
    result = {}
    for k, label in enumerate(parallax_labels):
        m, plx, err = aux[:, 3 * k], aux[:, 3 * k + 1], aux[:, 3 * k + 2]
        if label in model.conditional:
            groups = {cls: (rows, f"{label}_{cls}") for cls, rows in (("dwarf", usable & (giant == 0)),
                                                                      ("giant", usable & (giant == 1)))}
        else:
            groups = {"all": (usable, label)}
        result[label] = {"feh_edges": edges, "teff_edges": teff_edges}
        for name, (rows, column) in groups.items():
            result[label][name] = _group_calibration(m, out[column], out[f"{column}_err"], plx, err, rows, feh_bin,
                                                     teff_bin, len(edges) + 1, len(teff_edges) + 1)
    return result


def _group_calibration(m, M, sigma, plx, err, rows, feh_bin, teff_bin, nf: int, nt: int) -> dict:
    """One group's calibration as a whole, by [Fe/H] bin, by Teff bin and by cell (:func:`_finest` fallbacks)."""
    def fit(masks: dict[str, np.ndarray]) -> list[dict]:
        return list(fit_absmag_calibration(m, M, sigma, plx, err, masks).values())

    (whole,) = fit({"all": rows})
    feh_fits = fit({str(b): rows & (feh_bin == b) for b in range(nf)})
    teff_fits = fit({str(t): rows & (teff_bin == t) for t in range(nt)})
    cell_fits = fit({f"{b},{t}": rows & (feh_bin == b) & (teff_bin == t) for b in range(nf) for t in range(nt)})
    cells = [[_finest(cell_fits[b * nt + t], feh_fits[b], teff_fits[t], whole) for t in range(nt)] for b in range(nf)]
    return {"all": whole, "bins": [_finest(c, whole) for c in feh_fits],
            "teff_bins": [_finest(c, whole) for c in teff_fits], "cells": cells}


_FALLBACK_NAMES = ("[Fe/H] bin", "Teff bin", "all")


def _finest(own: dict, *coarser: dict) -> dict:
    """``own`` where it is calibrated, else the first calibrated of ``coarser`` (the last, the whole group, is
    used whatever it says), marked with where it came from."""
    if own["calibrated"]:
        return own
    names = _FALLBACK_NAMES[-len(coarser):]
    for name, c in zip(names, coarser, strict=True):
        if c["calibrated"] or name == "all":
            return {**{k: v for k, v in c.items() if k != "from"}, "from": name}
    raise AssertionError("unreachable")


def _bins(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """The bin of each estimate; -1 where it is not finite (those rows take a coarser calibration)."""
    values = np.asarray(values, float)
    return np.where(np.isfinite(values), np.searchsorted(edges, values, side="right"), -1)


def calibrate_column(M: np.ndarray, sigma: np.ndarray, feh: np.ndarray | None, calibration: Mapping,
                     edges: list[float], teff: np.ndarray | None = None, teff_edges: list[float] | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """One group's calibration (``{"all": ..., "bins": [...]}``, with ``"teff_bins"`` and ``"cells"`` where it
    was measured in Teff bins as well) applied to its column: by cell of estimated [Fe/H] and Teff; a row with
    only one of the two estimates by that one's bin, a row with neither by the group's. Without ``cells`` (a
    model.json from before the Teff bins) or without ``teff``, by [Fe/H] bin alone, as such models were."""
    n = len(M)
    b = _bins(feh, edges) if (edges and feh is not None) else np.full(n, -1)
    table: dict[str, Mapping] = {"all": calibration["all"]}
    groups: dict[str, np.ndarray] = {}
    use_teff = bool(teff_edges) and teff is not None and "cells" in calibration
    t = _bins(teff, teff_edges) if use_teff else np.full(n, -1)
    for k, c in enumerate(calibration["bins"]):
        table[f"f{k}"], groups[f"f{k}"] = c, (b == k) & (t == -1)
    if use_teff:
        for j, c in enumerate(calibration["teff_bins"]):
            table[f"t{j}"], groups[f"t{j}"] = c, (b == -1) & (t == j)
        for k, row in enumerate(calibration["cells"]):
            for j, c in enumerate(row):
                table[f"c{k},{j}"], groups[f"c{k},{j}"] = c, (b == k) & (t == j)
    groups["all"] = (b == -1) & (t == -1)
    return apply_absmag_calibration(M, sigma, table, groups)
