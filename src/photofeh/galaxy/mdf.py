"""Metallicity distribution functions (MDFs) by extreme deconvolution of per-star [Fe/H] estimates.

Why deconvolve. The histogram of per-star estimates is not the MDF. If the estimates
are posterior means under a training-set prior (what a regression trained to
minimise squared error returns), each one is pulled toward the bulk of that prior,
so their distribution is narrowed and shifted toward the training sample, and no
later step can undo that from the estimates alone (Hogg, Myers & Bovy 2010, ApJ
725, 2166, make the same point for point estimates in general). If instead
the estimates are likelihood-like (unbiased at fixed true [Fe/H], with Gaussian
errors ``err``, as from a model trained on a flat [Fe/H] distribution), then
star i's estimate is x_i = [Fe/H]_i + e_i with e_i ~ N(0, s_i^2). The estimates are
then the MDF convolved with each star's own error distribution: their variance is the
MDF's variance plus the mean s_i^2. Extreme deconvolution (XD; Bovy, Hogg & Roweis
2011, Ann. Appl. Stat. 5, 1657, arXiv:0905.2979) undoes this. It fits the intrinsic
MDF as a K-component Gaussian mixture, sum_k a_k N(m_k, V_k), by maximising

    ln L = sum_i w_i ln sum_k a_k N(x_i | m_k, V_k + s_i^2).

This is their likelihood with projection R_i = 1, noise S_i = s_i^2 and
T_ik = R_i V_k R_i^T + S_i = V_k + s_i^2. The w_i are optional per-star frequency
weights, as in the ``weight`` option of their code. The symbols in :mod:`photofeh.galaxy.xd` are the
paper's (q_ij, b_ij, B_ij, T_ij with j the component); the equation numbers were not checked
here.

The fit (:mod:`photofeh.galaxy.xd`: EM with ECM and SQUAREM steps, K chosen by BIC, bootstrap errors) returns a
:class:`photofeh.galaxy.mixture.MixtureMDF`. Both are re-exported here: callers import MDFs from this module.

For maps, ``BinnedEstimates`` keeps a fixed 2-D histogram of (estimate, error) per
cell, so memory does not grow with the number of stars. It fits the same model with the
bin centres as data and the counts as weights. The finite bin width enters as extra
variance: width^2 / 12 (Sheppard 1898, Proc. London Math. Soc. 29, 353) for the
estimate, and the bin mean of s^2 for the error.
"""

from __future__ import annotations

import numpy as np

from photofeh.galaxy.mixture import MixtureMDF, _usable
from photofeh.galaxy.xd import (
    MAX_COMPONENTS,
    MIN_STARS,
    VAR_FLOOR,
    _fit_defaults,
    _fit_prepared,
    _summarise,
    fit_mdf,
    mdf_summary,
)

__all__ = ["VAR_FLOOR", "MIN_STARS", "MAX_COMPONENTS", "FEH_EDGES", "ERR_EDGES", "TEFF_EDGES", "MixtureMDF", "fit_mdf",
           "mdf_summary", "BinnedEstimates", "add_by_group"]

# BinnedEstimates bins: estimate -5..+1.5 dex in 0.02 dex; error 0..0.5 in 0.02, then 0.5..1.5 in 0.05 dex.
FEH_EDGES = np.round(np.linspace(-5.0, 1.5, 326), 10)
ERR_EDGES = np.round(np.concatenate([np.linspace(0.0, 0.5, 26), np.linspace(0.55, 1.5, 20)]), 10)
# Teff bins (K) of the side histogram (error x Teff) that lets the unfolding match its calibration stars to the
# stars in the histogram (photofeh.galaxy.unfold). At one true [Fe/H] and one error, a faint turn-off star's
# estimate moves by ~0.15 dex per 150 K (the mock survey, 6000-6600 K); at matched 150-K bins the faded labelled
# stars and the survey's agree within 0.03 dex. 250-K bins (4500-7000 K; cooler and hotter at the ends): 1000-K
# bins left the far |Z| slices' medians 0.2-0.3 dex metal-rich, 150- and 100-K bins left more survey stars in
# cells without calibration stars for no better answer.
TEFF_EDGES = np.arange(4500.0, 7001.0, 250.0)
FEH_EDGES.setflags(write=False)
ERR_EDGES.setflags(write=False)
TEFF_EDGES.setflags(write=False)


# ----------------------------------------------------------------------------------------------------------------
# Streaming: a fixed histogram of (estimate, error) per map cell
# ----------------------------------------------------------------------------------------------------------------

class BinnedEstimates:
    """Counts of stars in (estimate, error) bins (``FEH_EDGES`` x ``ERR_EDGES``), for one map cell.

    Memory is fixed (325 x 45 int64 counts, 117 kB) whatever the number of stars. ``add``
    streams chunks in. ``merge`` combines cells filled in parallel; it is exact, so it
    is associative and commutative. ``fit`` and ``summary`` deconvolve the histogram as
    if each star sat at its bin centre, with its error variance set to the bin mean of
    s^2 plus the estimate bin width^2 / 12 (Sheppard 1898). Stars with a non-finite or
    non-positive error are counted in ``n_invalid``. Stars whose estimate falls outside
    -5..+1.5 dex, or whose error is >= 1.5 dex, are counted in ``n_out_of_range``. Both
    counts are reported as dropped. Beside it, ``teff_counts`` (error bins x :data:`TEFF_EDGES` bins, the last
    column for stars added without a Teff) count the same stars by the model's Teff estimate: what the unfolding
    matches its calibration stars to.
    """

    feh_edges = FEH_EDGES
    err_edges = ERR_EDGES

    def __init__(self, counts=None, n_invalid: int = 0, n_out_of_range: int = 0, teff_counts=None) -> None:
        shape = (FEH_EDGES.size - 1, ERR_EDGES.size - 1)
        teff_shape = (ERR_EDGES.size - 1, TEFF_EDGES.size + 2)
        if counts is None:
            self.counts = np.zeros(shape, np.int64)
        else:
            counts = np.asarray(counts)
            if counts.shape != shape:
                raise ValueError(f"counts of shape {counts.shape} do not match the bins {shape}")
            if not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 0):
                raise ValueError("counts must be non-negative integers")
            self.counts = counts.astype(np.int64, copy=True)
        if teff_counts is None:  # stars of unknown Teff: every star in the last column
            self.teff_counts = np.zeros(teff_shape, np.int64)
            self.teff_counts[:, -1] = self.counts.sum(axis=0)
        else:
            self.teff_counts = np.asarray(teff_counts, np.int64).reshape(teff_shape).copy()
        self.n_invalid = int(n_invalid)
        self.n_out_of_range = int(n_out_of_range)

    @property
    def n(self) -> int:
        """Stars in the histogram."""
        return int(self.counts.sum())

    @property
    def n_dropped(self) -> int:
        return self.n_invalid + self.n_out_of_range

    def add(self, x, err, teff=None) -> int:
        """Accumulate one chunk of stars (``teff``: the model's Teff estimates, optional); returns how many landed
        in the histogram."""
        x, err, valid = _usable(x, err)
        with np.errstate(invalid="ignore"):
            inside = valid & (x >= FEH_EDGES[0]) & (x < FEH_EDGES[-1]) & (err < ERR_EDGES[-1])
        ix = np.clip(np.searchsorted(FEH_EDGES, x[inside], side="right") - 1, 0, FEH_EDGES.size - 2)
        ie = np.clip(np.searchsorted(ERR_EDGES, err[inside], side="right") - 1, 0, ERR_EDGES.size - 2)
        flat = ix * (ERR_EDGES.size - 1) + ie
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        it = np.full(ie.size, TEFF_EDGES.size + 1)
        if teff is not None:
            t = np.asarray(teff, float)[inside]
            it = np.where(np.isfinite(t), np.searchsorted(TEFF_EDGES, t, side="right"), it)
        self.teff_counts += np.bincount(ie * self.teff_counts.shape[1] + it, minlength=self.teff_counts.size
                                        ).reshape(self.teff_counts.shape)
        self.n_invalid += int(x.size - valid.sum())
        self.n_out_of_range += int(valid.sum() - inside.sum())
        return int(inside.sum())

    def merge(self, other: BinnedEstimates) -> BinnedEstimates:
        """A new histogram holding the stars of both (neither input is changed)."""
        if not isinstance(other, BinnedEstimates):
            raise TypeError(f"cannot merge BinnedEstimates with {type(other).__name__}")
        return BinnedEstimates(self.counts + other.counts, self.n_invalid + other.n_invalid,
                               self.n_out_of_range + other.n_out_of_range, self.teff_counts + other.teff_counts)

    def estimate_histogram(self, edges) -> np.ndarray:
        """Stars per bin of ``edges`` in [Fe/H] estimate (whatever their error), from the fine bins' centres:
        for drawing the observed distribution beside the deconvolved one."""
        centres = 0.5 * (FEH_EDGES[1:] + FEH_EDGES[:-1])
        return np.histogram(centres, bins=edges, weights=self.counts.sum(axis=1))[0]

    def data(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The non-empty bins as data: (estimate at bin centre, effective error, count)."""
        i, j = np.nonzero(self.counts)
        lo, hi = ERR_EDGES[j], ERR_EDGES[j + 1]
        dfeh = FEH_EDGES[i + 1] - FEH_EDGES[i]
        s2 = (lo * lo + lo * hi + hi * hi) / 3.0 + dfeh * dfeh / 12.0  # bin mean of s^2, plus Sheppard's term
        return 0.5 * (FEH_EDGES[i] + FEH_EDGES[i + 1]), np.sqrt(s2), self.counts[i, j]

    def _prepared(self):
        x, err, c = self.data()
        if self.n < MIN_STARS:
            raise ValueError(f"an MDF needs at least {MIN_STARS} stars in range; this histogram has {self.n} "
                             f"({self.n_dropped} dropped)")
        return x, err**2, c.astype(float)

    def fit(self, n_components: int | None = None, seed: int = 0, **fit_options) -> MixtureMDF:
        """Extreme deconvolution of the histogram (the bins as data, the counts as weights); see ``fit_mdf``."""
        x, s2, w = self._prepared()
        return _fit_prepared(x, s2, w, n_stars=float(self.n), n_dropped=self.n_dropped, n_components=n_components,
                             seed=seed, **_fit_defaults(fit_options))

    def summary(self, n_boot: int = 200, seed: int = 0, n_components: int | None = None, n_jobs: int = 1,
                **fit_options) -> dict:
        """``mdf_summary`` of the histogram: each resample draws ``n`` stars among the bins (multinomial)."""
        x, s2, w = self._prepared()
        opts = _fit_defaults(fit_options)
        mdf = _fit_prepared(x, s2, w, n_stars=float(self.n), n_dropped=self.n_dropped, n_components=n_components,
                            seed=seed, **opts)
        return _summarise(x, s2, w, mdf, n_boot=n_boot, seed=seed, resample_bins=True, n_used=self.n,
                          max_iter=opts["max_iter"], tol=opts["tol"], var_floor=opts["var_floor"], n_jobs=n_jobs)


def add_by_group(hists: dict, groups, x, err) -> None:
    """Add each star to the histogram of its group (``groups``: integer arrays, one key per star and array,
    e.g. the map cell indices), creating histograms as needed: one sort per chunk, not one pass per group."""
    x, err = np.asarray(x, float), np.asarray(err, float)
    if x.size == 0:
        return
    keys = np.stack([np.asarray(g, np.int64) for g in groups], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(1, len(uniq)))
    for key, rows in zip(uniq, np.split(order, bounds), strict=True):
        hists.setdefault(tuple(int(k) for k in key), BinnedEstimates()).add(x[rows], err[rows])
