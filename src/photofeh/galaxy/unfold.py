"""Population metallicity distributions unfolded through the estimator's measured response.

Why not deconvolve the estimates. A network's per-star [Fe/H] is a posterior summary under the labelled
stars' distribution: shrunk toward its bulk where the photometry says little, with an error that is the
posterior's width, not the likelihood's. Deconvolving such estimates with such errors removes the spread
twice (Var(true) = Var(estimate) + E[error^2] for a calibrated posterior) and collapses a distribution into
spikes; dividing a Gaussian approximation of the prior out of each estimate (``predict --prior flat``) needs
a floor on the prior's tails, and the network's errors are too small exactly where the tail is (on the real
Green et al. stars, pulls of 2.3 for [Fe/H] < -1.5). Both erase the metal-poor tail and say they are sure.

What is done instead is what particle physics does with a detector of known response (unfolding): the
response R(e | t) -- the distribution of the estimate e of a star whose true [Fe/H] is t -- is measured on
labelled stars the model was not fitted to (its validation split, kept in model.json as its
``calibration_sample``), and the population's distribution phi(t) is the one whose folded estimates
sum_t R(e | t) phi(t) match the estimates of the selected stars, by maximum likelihood. Whatever the
estimator does (shrinkage, a prior, a floor, under-stated errors), it did the same to the labelled stars,
so the unfolded phi is free of it, to the extent that the labelled stars resemble the selected ones at
fixed t. Two things make them differ, and both are taken out:

- The mix of stars. Where the photometry says little, the estimate falls back on what the colours and the
  magnitude say of a star's population, so at one true [Fe/H] and one error, blue turn-off stars and red
  dwarfs get estimates up to 0.7 dex apart (the mock survey). One response for all stars is the response of
  the calibration stars' mix; on the far |Z| slices of the demo's map, whose stars are faint turn-off stars,
  it gave distributions half as wide as the truth. The calibration entries are weighted to the selection's
  mix of errors and Teff estimates (:meth:`ResponseSample.matched`), and a noise-aware model keeps several
  re-observations of each validation star (model.train.calibration_sample) so that every cell has entries.
  Unfolding each error stratum through its own response instead widened the near slices (0.50 dex against
  0.33) where the response says little: each stratum's iteration keeps its start there.
- The labels' errors. A response measured against noisy labels is flatter than the response to the true
  [Fe/H] (regression dilution), and unfolding through it widens every distribution narrower than the
  calibration stars'. Each calibration entry's true [Fe/H] is given by its posterior
  (:meth:`ResponseSample.posterior`) where the labels' errors are known.

- R(e | t): a Nadaraya-Watson conditional density estimate (Rosenblatt 1969; Hyndman, Bashtannyk &
  Grunwald 1996, J. Comput. Graph. Stat. 5, 315) on a 0.05-dex grid of t and the 0.02-dex grid of e, with
  Gaussian kernels of :data:`BANDWIDTH_TRUE` (widened to reach :data:`NEIGHBOURS` stars where they are
  sparse) and :data:`BANDWIDTH_ESTIMATE`. phi is held at 0 further than :data:`REACH_DEX` from every
  calibration star, and the range unfolded is reported.
- phi: the EM iteration for a mixing density (Richardson 1972; Lucy 1974; in unfolding D'Agostini 1995,
  NIM A 362, 487), started from the labelled stars' distribution and stopped after :data:`ITERATIONS`
  steps, with a Gaussian smoothing of :data:`SMOOTHING_DEX` after every step (EMS: Silverman, Jones,
  Wilson & Nychka 1990, JRSS B 52, 271). Both regularise an ill-posed problem: run to convergence, the
  unpenalised maximum collapses onto atoms (Laird 1978, JASA 73, 805) and, where the response cannot tell
  two [Fe/H] apart, moves stars to the grid's edge.
- Errors: the bootstrap (Efron 1979) over both samples: the selected stars (multinomial over their
  histogram) and the calibration stars (resampled with replacement, the response rebuilt), so the
  uncertainty of the response -- large in the sparsely labelled tail -- is part of every error.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from photofeh.galaxy.mdf import FEH_EDGES, MIN_STARS, TEFF_EDGES, BinnedEstimates

__all__ = ["GridMDF", "ResponseSample", "unfold_mdf", "TRUE_EDGES", "FRACTION_THRESHOLDS", "SMOOTHING_DEX"]

TRUE_EDGES = np.round(np.arange(-4.5, 1.0001, 0.05), 10)  # the population's grid (dex)
TRUE_GRID = 0.5 * (TRUE_EDGES[1:] + TRUE_EDGES[:-1])
EST_GRID = 0.5 * (FEH_EDGES[1:] + FEH_EDGES[:-1])  # the estimates' histogram bins (BinnedEstimates)
BANDWIDTH_TRUE = 0.1  # dex: the labels' own errors are 0.05-0.2 dex, so R cannot be sharper in t
BANDWIDTH_ESTIMATE = 0.04  # dex: twice the estimate bins
NEIGHBOURS = 15  # calibration stars the t kernel reaches at least (sparse tails)
REACH_DEX = 0.25
# EMS smoothing of phi (Silverman et al. 1990): below every population width met (clusters ~0.05-0.1 dex). Its bias
# is not in the bootstrap's errors (every resample is smoothed alike), so it is kept below them: on labelled-mock
# test sets of 10 seeds (benchmarks/bench_mdf.py, coverage) the fraction below -1.5 came out 0.012 low against the
# true [Fe/H] at 0.05 (error 0.010; within one error for 2 seeds of 10), 0.008 low at 0.03 (7 of 10), 0.005 at 0.02
# (10 of 10). On the demo-like map 0.03 narrows the nearest |Z| slice (+22% -> +19% of the truth's width) and moves
# the 4-6 kpc median from 0.040 to 0.050 dex off the truth (0.02: further); the Green et al. test fractions and the
# mock clusters' medians move by 0.02 dex at most. The cost: the smoothing also offset part of the
# response's own BANDWIDTH_TRUE kernel, so a 0.2-dex population comes out 12% narrow at 0.03 (6% at 0.05;
# tests/test_unfold.py), still inside issue 25's 20%.
SMOOTHING_DEX = 0.03
MATCH_SIGMA_BINS = 10  # error quantiles of the calibration entries the selection is matched in (ResponseSample.matched)
MAX_WEIGHT = 20.0  # cap on a calibration entry's matching weight, in units of the mean weight
POSTERIOR_ITERATIONS = 10  # EM steps of the calibration entries' true [Fe/H] (ResponseSample.posterior)
FIELDS = ("true", "estimate", "sigma", "teff", "star", "weight", "true_err", "design", "giant")  # its arrays
FRACTION_THRESHOLDS = (-1.0, -1.5, -2.0)
# The iteration stops after ITERATIONS steps from the (matched) labelled stars' distribution (D'Agostini 1995's
# regularisation: where the response cannot tell two [Fe/H] apart -- the information-limited tail -- the
# maximum-likelihood phi is arbitrary and runs off to the edges of the grid). Chosen on split halves of the
# real Green et al. test stars (benchmarks/bench_mdf.py): 5 steps stay near the start, 100 let one half's
# response carry 3% of the stars below -2 where 0.3% are; 20 recover the fractions below -1 and -1.5. On the
# mock survey's far |Z| slices, 50 and 150 steps narrow the distributions further (0.34 and 0.31 dex at
# 6-10 kpc against 0.40 at 20; truth 0.45), so 20 stays.
ITERATIONS = 20
TOL = 1e-10  # or earlier, when ln L per star rises by less than this in one step


@dataclass
class GridMDF:
    """A metallicity distribution as probabilities in the bins of :data:`TRUE_EDGES`."""

    prob: np.ndarray

    def pdf(self, x) -> np.ndarray:
        """Density (per dex), linear between bin centres."""
        return np.interp(np.asarray(x, float), TRUE_GRID, self.prob / np.diff(TRUE_EDGES), left=0.0, right=0.0)

    def cdf(self, x) -> np.ndarray:
        """P([Fe/H] < x), each bin's probability spread evenly across it."""
        return np.interp(np.asarray(x, float), TRUE_EDGES, np.concatenate([[0.0], np.cumsum(self.prob)]))

    def quantile(self, q) -> np.ndarray:
        c = np.concatenate([[0.0], np.cumsum(self.prob)])
        keep = np.concatenate([[True], np.diff(c) > 0])  # a strictly increasing CDF to invert
        return np.interp(np.asarray(q, float), c[keep], TRUE_EDGES[keep])

    @property
    def median(self) -> float:
        return float(self.quantile(0.5))

    @property
    def mean(self) -> float:
        return float(self.prob @ TRUE_GRID)

    @property
    def std(self) -> float:  # a bin's own spread (width^2 / 12) included
        var = self.prob @ TRUE_GRID**2 - self.mean**2 + float(np.diff(TRUE_EDGES)[0]) ** 2 / 12.0
        return float(np.sqrt(max(var, 0.0)))

    def to_dict(self) -> dict:
        """JSON-friendly: the grid's non-empty range (edges) and the probabilities in it."""
        nz = np.flatnonzero(self.prob > 1e-9)
        lo, hi = (int(nz[0]), int(nz[-1]) + 1) if nz.size else (0, 0)
        return {"kind": "grid", "edges": [round(float(e), 4) for e in TRUE_EDGES[lo:hi + 1]],
                "prob": [float(f"{p:.6g}") for p in self.prob[lo:hi]]}

    @classmethod
    def from_dict(cls, d: dict) -> GridMDF:
        prob = np.asarray(d["prob"], float)
        out = np.zeros(TRUE_GRID.size)
        if prob.size:
            lo = int(np.argmin(np.abs(TRUE_EDGES - float(d["edges"][0]))))
            out[lo:lo + prob.size] = prob
        return cls(out / max(out.sum(), 1e-300))


@dataclass
class ResponseSample:
    """Labelled stars with the model's estimates: ``true`` [Fe/H], ``estimate`` and its ``sigma``; optionally the
    model's ``teff`` estimate, the ``star`` each entry re-observes (entries of one star are resampled together),
    a ``weight`` per entry (:meth:`matched`), a ``design`` weight: the inverse of the probability that the
    entry's star was chosen for a spectrum (known where the labelled sample's targeting is; 1 where not), and
    ``giant``: 1 for the model's giants, 0 for its dwarfs (NaN where not kept), so that a selection by class
    stays paired with the entries that survive the finiteness cut.

    Why design weights. A spectroscopic sample targeted on its photometry (SEGUE's colour boxes, one of them for
    metal-poor stars on u-g and the Lenz et al. 1998 l colour) holds, at one true [Fe/H], the stars whose colours
    won them a spectrum, not the population's: at one [Fe/H], error and Teff estimate its estimates differ from a
    survey's stars' (on the mock survey the calibration stars' estimates lie 0.08-0.13 dex lower at the 4-15 kpc
    |Z| slices' true medians, half that after weighting; benchmarks/bench_mdf.py, 'slices diagnosed'). Each entry
    weighted by the inverse of its star's targeting probability stands for the stars it was drawn from (Horvitz &
    Thompson 1952, JASA 47, 663)."""

    true: np.ndarray
    estimate: np.ndarray
    sigma: np.ndarray
    teff: np.ndarray | None = None
    star: np.ndarray | None = None
    weight: np.ndarray | None = None
    true_err: np.ndarray | None = None
    design: np.ndarray | None = None
    giant: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.true, self.estimate, self.sigma = (np.asarray(a, float) for a in (self.true, self.estimate, self.sigma))
        n = self.true.size
        self.teff = np.full(n, np.nan) if self.teff is None or len(self.teff) != n else np.asarray(self.teff, float)
        self.star = np.arange(n) if self.star is None or len(self.star) != n else np.asarray(self.star, np.int64)
        self.weight = np.ones(n) if self.weight is None else np.asarray(self.weight, float)
        self.true_err = (np.zeros(n) if self.true_err is None or len(self.true_err) != n
                         else np.nan_to_num(np.asarray(self.true_err, float), nan=0.0))
        self.design = np.ones(n) if self.design is None or len(self.design) != n else np.asarray(self.design, float)
        self.giant = np.full(n, np.nan) if self.giant is None or len(self.giant) != n else np.asarray(self.giant, float)
        ok = np.isfinite(self.true) & np.isfinite(self.estimate) & np.isfinite(self.sigma) & (self.sigma > 0)
        ok &= np.isfinite(self.design) & (self.design > 0)
        for name in FIELDS:  # fresh copies, read-only: the kernels cached on them can never go stale in place
            column = getattr(self, name)[ok]
            column.setflags(write=False)
            setattr(self, name, column)
        self._sealed = True

    def __setattr__(self, name: str, value) -> None:
        """A column replaced whole after construction is a read-only copy too, and drops the caches built on it:
        the estimate bins (on ``estimate``) and the posterior (on the labels and estimates)."""
        if name in FIELDS and getattr(self, "_sealed", False):
            value = np.array(value)
            value.setflags(write=False)
            if name == "estimate":
                object.__setattr__(self, "_ebins", None)
            if name in ("true", "estimate", "sigma", "true_err"):
                object.__setattr__(self, "_posterior", None)
        object.__setattr__(self, name, value)

    def subset(self, keep: np.ndarray) -> ResponseSample:
        """The entries ``keep`` (a mask or indices), with their cached kernels."""
        out = ResponseSample(*(getattr(self, name)[keep] for name in FIELDS))
        if getattr(self, "_posterior", None) is not None:
            out._posterior = self._posterior[:, keep]
        return out

    @classmethod
    def from_meta(cls, meta: dict, prior: str = "labels") -> ResponseSample | None:
        """The calibration sample of a model's metadata (None for models trained before it was kept); for
        ``prior = "flat"`` estimates of a labels-prior model, the sample's estimates get the same division
        (:func:`photofeh.model.prior.divide_out`) as the predictions did."""
        sample = meta.get("calibration_sample")
        if not sample or not sample.get("true"):
            return None
        design = sample.get("selection_weight")  # inverse targeting probabilities (train's selection_column)
        giant = sample.get("giant")  # the model's class of each entry
        out = cls(sample["true"], sample["estimate"], sample["sigma"], sample.get("teff"), sample.get("star"),
                  true_err=sample.get("true_err"), design=design, giant=giant)
        info = meta.get("prior") or {}
        if prior == "flat" and info.get("kind", "labels") == "labels" and info.get("training_distribution"):
            from photofeh.model.prior import divide_out

            out = cls(out.true, *divide_out(out.estimate, out.sigma, info["training_distribution"]), out.teff,
                      out.star, true_err=out.true_err, design=out.design, giant=out.giant)
        if prior == "flat" and info.get("kind") == "likelihood":
            # a likelihood model's flat-prior estimates are its population column (photofeh.model.likelihood);
            # without that column's response there is none to unfold them through
            if not sample.get("estimate_population"):
                return None
            # from the sample's own columns: ``out`` dropped the entries whose posterior column is not finite,
            # which need not be those of the population column
            out = cls(sample["true"], sample["estimate_population"], sample["sigma_population"], sample.get("teff"),
                      sample.get("star"), true_err=sample.get("true_err"), design=design, giant=giant)
        return out

    def matched(self, binned: BinnedEstimates) -> tuple[ResponseSample, dict]:
        """The sample weighted so that its mix of errors and Teff estimates is that of the stars in ``binned``.

        At a given error the estimate's response depends on the star's colour: where the photometry says little,
        the estimate falls back on what the colours and magnitude say of the star's population (on the mock, 0.7
        dex apart at one true [Fe/H] between blue turn-off stars and red dwarfs of the same error). One response
        for all, or one per error stratum, is then the response of the calibration stars' mix, not the
        selection's: the far |Z| slices came out half as wide as the truth. The weights are the ratio of the
        selection's fraction of stars to the calibration's in cells of :data:`MATCH_SIGMA_BINS` error quantiles
        (of the calibration) by :data:`photofeh.galaxy.mdf.TEFF_EDGES` (post-stratification; e.g. Little 1993,
        JASA 88, 1001), capped at :data:`MAX_WEIGHT` times the mean; Teff enters where both sides have it. The
        entries' ``design`` weights count in the calibration's fractions and multiply the ratio."""
        edges = np.unique(np.quantile(self.sigma, np.linspace(0, 1, MATCH_SIGMA_BINS + 1)[1:-1]))
        err_centres = 0.5 * (binned.err_edges[1:] + binned.err_edges[:-1])
        tc = binned.teff_counts.astype(float)
        known = tc[:, :-1].sum()
        use_teff = bool(np.isfinite(self.teff).mean() > 0.9 and known >= 0.9 * tc.sum())
        nt = tc.shape[1] - 1 if use_teff else 1
        sel = np.zeros((edges.size + 1, nt))
        rows = np.searchsorted(edges, err_centres, side="right")
        for j in range(nt):
            sel[:, j] = np.bincount(rows, weights=tc[:, j] if use_teff else tc.sum(axis=1), minlength=edges.size + 1)
        k_sig = np.searchsorted(edges, self.sigma, side="right")
        k_teff = (np.searchsorted(TEFF_EDGES, np.nan_to_num(self.teff, nan=0.0), side="right") if use_teff
                  else np.zeros(self.sigma.size, int))
        cell = k_sig * nt + k_teff
        cal = np.bincount(cell, weights=self.design, minlength=sel.size).reshape(sel.shape)
        sel_f, cal_f = sel / max(sel.sum(), 1.0), cal / max(cal.sum(), 1e-300)
        w = self.design * (sel_f / np.where(cal_f > 0, cal_f, np.inf)).ravel()[cell]
        w = np.minimum(w, MAX_WEIGHT * max(w.mean(), 1e-300))
        self.posterior()  # once per calibration sample, whatever the selection
        out = self.subset(np.arange(self.true.size))
        out.weight = w
        info = {"matched_on": "error and Teff" if use_teff else "error",
                "unmatched_fraction": round(float(sel_f[cal == 0].sum()), 4),
                "effective_calibration_entries": round(float(w.sum() ** 2 / max((w ** 2).sum(), 1e-300)), 1)}
        return out, info

    def resampled(self, rng: np.random.Generator) -> ResponseSample:
        """A bootstrap resample by star (the re-observations of one star go together)."""
        stars, inverse = np.unique(self.star, return_inverse=True)
        pick = np.bincount(rng.integers(0, stars.size, stars.size), minlength=stars.size)
        self.posterior()  # computed once, indexed by every resample
        return self.subset(np.repeat(np.arange(self.true.size), pick[inverse.ravel()]))

    def _estimate_bins(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each entry's estimate bin, the entries in bin order, the occupied bins and where each starts in that
        order: computed once per sample (the unfolding's EM and every matched weighting call
        :meth:`by_estimate` again on the same entries), again only if ``estimate`` is replaced."""
        if getattr(self, "_ebins", None) is None:
            ebin = np.clip(np.searchsorted(FEH_EDGES, self.estimate, side="right") - 1, 0, EST_GRID.size - 1)
            order = np.argsort(ebin, kind="stable")
            bins, starts = np.unique(ebin[order], return_index=True)
            self._ebins = (ebin, order, bins, starts)
        return self._ebins

    def by_estimate(self, wt: np.ndarray) -> np.ndarray:
        """``wt`` (rows, entries) summed into the estimate bins, each entry spread by a Gaussian kernel of
        :data:`BANDWIDTH_ESTIMATE` (rows, :data:`EST_GRID`): a histogram of the entries' bins, then the kernel
        as one banded matrix, which costs a tenth of a kernel per entry."""
        _, order, bins, starts = self._estimate_bins()
        hist = np.zeros((wt.shape[0], EST_GRID.size))
        hist[:, bins] = np.add.reduceat(wt[:, order], starts, axis=1)
        return hist @ _estimate_kernel_matrix()

    def posterior(self) -> np.ndarray | None:
        """(true bins, entries): each entry's true [Fe/H] given its label, its label's error and its estimate;
        None where the labels carry no errors.

        A response measured against noisy labels is flatter than the response to the true [Fe/H] (regression
        dilution: on the mock, 0.40 against 0.56 estimate-dex per dex for bright dwarfs, with labels good to
        0.12 dex), and unfolding through it widens every distribution narrower than the calibration stars'.
        The joint density of true [Fe/H] and estimate is therefore fitted with the labels' errors taken into
        account, by the EM of a deconvolution (as extreme deconvolution does for Gaussians; Bovy, Hogg & Roweis
        2011): the posterior of each entry is prior(t) R(e_i | t) N(label_i - t, err_i), R rebuilt from the
        posteriors, :data:`POSTERIOR_ITERATIONS` times. It depends only on the calibration stars, so it is
        computed once and any matching weights apply to it."""
        if not np.any(self.true_err > 0):
            return None
        post = getattr(self, "_posterior", None)
        if post is None:
            sd = np.sqrt(self.true_err**2 + (0.5 * (TRUE_EDGES[1] - TRUE_EDGES[0])) ** 2)[None, :]
            label = np.exp(-0.5 * ((self.true[None, :] - TRUE_GRID[:, None]) / sd) ** 2) / sd  # (T, n)
            ebin = self._estimate_bins()[0]
            post = label / label.sum(axis=0, keepdims=True)
            for _ in range(POSTERIOR_ITERATIONS):
                prior = post.mean(axis=1)
                resp = self.by_estimate(post) / np.maximum(post.sum(axis=1, keepdims=True), 1e-300)
                post = prior[:, None] * label * resp[:, ebin]
                post /= np.maximum(post.sum(axis=0, keepdims=True), 1e-300)
            self._posterior = post
        return post

    def response(self) -> tuple[np.ndarray, np.ndarray]:
        """The (true bins, estimate bins) response matrix of the weighted entries, and the true bins phi may
        occupy.

        Each entry counts at the true [Fe/H] its :meth:`posterior` gives (labels with errors), else in a kernel
        around its label. The kernel in t widens where labelled stars are sparse, to reach :data:`NEIGHBOURS`
        stars (a k-nearest-neighbour bandwidth; Silverman 1986, sec. 5.2; counted in entries per star), so that
        the response of the tail rests on the most metal-poor calibration stars rather than on noise; phi may
        reach :data:`REACH_DEX` beyond the calibration stars' range, where their response is extrapolated (and
        the bootstrap says how little that constrains)."""
        support = (TRUE_GRID >= self.true.min() - REACH_DEX) & (TRUE_GRID <= self.true.max() + REACH_DEX)
        gap = np.abs(TRUE_GRID[:, None] - self.true[None, :])  # (T, n)
        per_star = self.true.size / max(np.unique(self.star).size, 1)
        reach = NEIGHBOURS * per_star
        nth = min(int(round(reach)), self.true.size) - 1
        h = np.maximum(BANDWIDTH_TRUE, np.partition(gap, nth, axis=1)[:, nth])
        wt = np.exp(-0.5 * (gap / h[:, None]) ** 2)
        post = self.posterior()
        if post is not None:  # where the posteriors put fewer entries than the kernel reaches, the kernel
            mass = post.sum(axis=1, keepdims=True)
            wt = np.where(mass >= reach, post, wt)
        plain = self.by_estimate(wt) / wt.sum(axis=1, keepdims=True)
        weighted = self.by_estimate(wt * self.weight[None, :])
        total = weighted.sum(axis=1, keepdims=True)
        # where the matched weights leave no entry near t (a true [Fe/H] the selection's kind of star never
        # had among the calibration stars), the unweighted response
        resp = np.where(total > 1e-6 * wt.sum(axis=1, keepdims=True), weighted / np.maximum(total, 1e-300), plain)
        return resp, support

    def label_start(self) -> np.ndarray:
        """The (weighted) labelled stars' distribution on the true grid: where the iteration starts."""
        h, _ = np.histogram(np.clip(self.true, TRUE_EDGES[0], TRUE_EDGES[-1] - 1e-9), TRUE_EDGES, weights=self.weight)
        return _smooth(h + 1e-3 * h.max(), _kernel(BANDWIDTH_TRUE))


@functools.cache
def _estimate_kernel_matrix() -> np.ndarray:
    """(E, E): row j is a Gaussian of :data:`BANDWIDTH_ESTIMATE` centred on estimate bin j, normalised."""
    k = np.exp(-0.5 * ((EST_GRID[:, None] - EST_GRID[None, :]) / BANDWIDTH_ESTIMATE) ** 2)
    k[k < 1e-12] = 0.0
    return k / k.sum(axis=1, keepdims=True)


def _kernel(width: float) -> np.ndarray:
    step = float(TRUE_EDGES[1] - TRUE_EDGES[0])
    half = int(np.ceil(4 * width / step))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) * step / width) ** 2)
    return k / k.sum()


def _smooth(p: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolution renormalised at the grid's ends, so no probability leaks out."""
    s = np.convolve(p, kernel, mode="same") / np.convolve(np.ones_like(p), kernel, mode="same")
    return s / s.sum()


def _em(resp: np.ndarray, support: np.ndarray, counts: np.ndarray, start: np.ndarray, kernel: np.ndarray,
        tol: float = TOL) -> np.ndarray:
    """EMS for phi (true bins) given one stratum's response (T, E) and estimate counts (E,)."""
    p = np.where(support, start, 0.0)
    if p.sum() <= 0:
        return p
    p /= p.sum()
    n = counts.sum()
    last = -np.inf
    for _ in range(ITERATIONS):
        folded = p @ resp  # (E,)
        ll = float(counts @ np.log(np.maximum(folded, 1e-300))) / n
        p = p * (resp @ (counts / np.maximum(folded, 1e-300))) / n
        p = np.where(support, _smooth(p, kernel), 0.0)
        p /= p.sum()
        if ll - last < tol:
            break
        last = ll
    return p


def _unfold_once(counts: np.ndarray, response: ResponseSample) -> tuple[np.ndarray, np.ndarray]:
    resp, covered = response.response()
    return _em(resp, covered, counts, response.label_start(), _kernel(SMOOTHING_DEX)), covered


def unfold_mdf(binned: BinnedEstimates, response: ResponseSample, n_boot: int = 50, seed: int = 0,
               thresholds: tuple[float, ...] = FRACTION_THRESHOLDS) -> dict:
    """The population MDF of the stars in ``binned`` (their estimates and errors), unfolded through the
    model's measured ``response`` (its calibration entries matched to the selection in error and Teff,
    :meth:`ResponseSample.matched`): median, mean, width, ``fraction_below`` each threshold, with bootstrap
    errors (``_se``, ``_p16``, ``_p84``; for fractions ``value``, ``error``, ``p16``, ``p84``), the true
    [Fe/H] range the calibration stars cover (``unfolded_range``), and ``distribution``
    (:meth:`GridMDF.to_dict`)."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if binned.n < MIN_STARS:
        raise ValueError(f"an MDF needs at least {MIN_STARS} stars in range; this selection has {binned.n} "
                         f"({binned.n_dropped} dropped)")
    if response.true.size < 30:
        raise ValueError(f"the model's calibration sample holds {response.true.size} stars: too few to measure "
                         "its response (at least 30)")
    response, matching = response.matched(binned)
    counts = binned.counts.sum(axis=1).astype(float)
    full, covered = _unfold_once(counts, response)
    mdf = GridMDF(full)
    rng = np.random.default_rng(seed)
    flat = counts.ravel()
    draws = []
    for _ in range(n_boot):
        c = rng.multinomial(int(flat.sum()), flat / flat.sum()).astype(float)
        p, _ = _unfold_once(c, response.resampled(rng))  # the whole estimator again, from its own start
        draws.append(GridMDF(p))

    def stats(name: str, value: float, values: list[float]) -> dict:
        v = np.asarray(values, float)
        se, p16, p84 = ((float(np.std(v, ddof=1)), *(float(q) for q in np.percentile(v, [16, 84])))
                        if v.size >= 2 else (float("nan"),) * 3)
        return {name: value, f"{name}_se": se, f"{name}_p16": p16, f"{name}_p84": p84}

    x, err, w = binned.data()
    obs_mean = float(np.average(x, weights=w))
    lo, hi = (TRUE_EDGES[np.flatnonzero(covered)[[0, -1]] + [0, 1]] if covered.any() else (np.nan, np.nan))
    noisier = int(binned.counts[:, 0.5 * (binned.err_edges[1:] + binned.err_edges[:-1]) > response.sigma.max()].sum())
    out = {"method": "unfolded through the model's measured response (calibration sample: validation stars)",
           "n_used": binned.n, "n_dropped": binned.n_dropped, "n_boot": int(n_boot), "n_components": None,
           "calibration_stars": int(np.unique(response.star).size), "calibration_entries": int(response.true.size),
           "calibration_matching": matching,
           "stars_noisier_than_calibration": noisier, "unfolded_range": [float(lo), float(hi)]}
    out |= stats("median", mdf.median, [d.median for d in draws])
    out |= stats("mean", mdf.mean, [d.mean for d in draws])
    out |= stats("width", mdf.std, [d.std for d in draws])
    fractions = {}
    for t in thresholds:
        s = stats("value", float(mdf.cdf(t)), [float(d.cdf(t)) for d in draws])
        fractions[f"{t:g}"] = {"value": s["value"], "error": s["value_se"], "p16": s["value_p16"],
                               "p84": s["value_p84"]}
    out["fraction_below"] = fractions
    out |= {"observed_median": float(np.interp(0.5, np.cumsum(w) / w.sum(), x)), "observed_mean": obs_mean,
            "observed_std": float(np.sqrt(np.average((x - obs_mean) ** 2, weights=w))),
            "observed_fraction_below": {f"{t:g}": float(w[x < t].sum() / w.sum()) for t in thresholds},
            "distribution": mdf.to_dict()}
    return out
