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
fixed t. The response depends on the stars' noise: it is measured separately in strata of the estimate's
own error (terciles of the calibration stars' errors), and each stratum of the selected stars is unfolded
through its own.

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

from dataclasses import dataclass

import numpy as np

from photofeh.galaxy.mdf import FEH_EDGES, MIN_STARS, BinnedEstimates

__all__ = ["GridMDF", "ResponseSample", "unfold_mdf", "TRUE_EDGES", "FRACTION_THRESHOLDS", "SMOOTHING_DEX"]

TRUE_EDGES = np.round(np.arange(-4.5, 1.0001, 0.05), 10)  # the population's grid (dex)
TRUE_GRID = 0.5 * (TRUE_EDGES[1:] + TRUE_EDGES[:-1])
EST_GRID = 0.5 * (FEH_EDGES[1:] + FEH_EDGES[:-1])  # the estimates' histogram bins (BinnedEstimates)
BANDWIDTH_TRUE = 0.1  # dex: the labels' own errors are 0.05-0.2 dex, so R cannot be sharper in t
BANDWIDTH_ESTIMATE = 0.04  # dex: twice the estimate bins
NEIGHBOURS = 15  # calibration stars the t kernel reaches at least (sparse tails)
REACH_DEX = 0.25
SMOOTHING_DEX = 0.05  # EMS smoothing of phi: below every population width met (clusters ~0.05-0.1 dex)
STRATA = 3  # strata of the estimate's error, at most ...
STARS_PER_STRATUM = 1500  # ... and each holding at least this many calibration stars
FRACTION_THRESHOLDS = (-1.0, -1.5, -2.0)
# The iteration stops after ITERATIONS steps from the labelled stars' distribution (D'Agostini 1995's
# regularisation: where the response cannot tell two [Fe/H] apart -- the information-limited tail -- the
# maximum-likelihood phi is arbitrary and runs off to the edges of the grid). Chosen on split halves of the
# real Green et al. test stars (benchmarks/bench_mdf.py): 5 steps stay near the start, 100 let one half's
# response carry 3% of the stars below -2 where 0.3% are; 20 recover the fractions below -1 and -1.5.
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
    """Labelled stars with the model's estimates: ``true`` [Fe/H], ``estimate`` and its ``sigma``."""

    true: np.ndarray
    estimate: np.ndarray
    sigma: np.ndarray

    def __post_init__(self) -> None:
        self.true, self.estimate, self.sigma = (np.asarray(a, float) for a in (self.true, self.estimate, self.sigma))
        ok = np.isfinite(self.true) & np.isfinite(self.estimate) & np.isfinite(self.sigma) & (self.sigma > 0)
        self.true, self.estimate, self.sigma = self.true[ok], self.estimate[ok], self.sigma[ok]

    @classmethod
    def from_meta(cls, meta: dict, prior: str = "labels") -> ResponseSample | None:
        """The calibration sample of a model's metadata (None for models trained before it was kept); for
        ``prior = "flat"`` estimates of a labels-prior model, the sample's estimates get the same division
        (:func:`photofeh.model.prior.divide_out`) as the predictions did."""
        sample = meta.get("calibration_sample")
        if not sample or not sample.get("true"):
            return None
        out = cls(sample["true"], sample["estimate"], sample["sigma"])
        info = meta.get("prior") or {}
        if prior == "flat" and info.get("kind", "labels") == "labels" and info.get("training_distribution"):
            from photofeh.model.prior import divide_out

            out = cls(out.true, *divide_out(out.estimate, out.sigma, info["training_distribution"]))
        if prior == "flat" and info.get("kind") == "likelihood" and sample.get("estimate_population"):
            # a likelihood model's flat-prior estimates are its population column (photofeh.model.likelihood)
            out = cls(out.true, sample["estimate_population"], sample["sigma_population"])
        return out

    def resampled(self, rng: np.random.Generator) -> ResponseSample:
        i = rng.integers(0, self.true.size, self.true.size)
        out = ResponseSample(self.true[i], self.estimate[i], self.sigma[i])
        out._estimate_kernel = self.estimate_kernel()[i]  # the same rows: computed once, not per bootstrap
        return out

    def estimate_kernel(self) -> np.ndarray:
        """(stars, estimate bins): each star's Gaussian kernel in e over :data:`EST_GRID`, normalised."""
        we = getattr(self, "_estimate_kernel", None)
        if we is None:
            we = np.exp(-0.5 * ((self.estimate[:, None] - EST_GRID[None, :]) / BANDWIDTH_ESTIMATE) ** 2)  # (n, E)
            we /= we.sum(axis=1, keepdims=True)
            self._estimate_kernel = we
        return we

    def strata_edges(self) -> np.ndarray:
        """Error terciles of the calibration stars, open at both ends."""
        strata = int(np.clip(self.sigma.size // STARS_PER_STRATUM, 1, STRATA))
        inner = np.quantile(self.sigma, np.arange(1, strata) / strata)
        return np.concatenate([[0.0], inner, [np.inf]])

    def responses(self, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(strata, true bins, estimate bins) response matrices, and the true bins phi may occupy.

        The kernel in t widens where labelled stars are sparse, to reach :data:`NEIGHBOURS` of them (a
        k-nearest-neighbour bandwidth; Silverman 1986, sec. 5.2), so that the response of the tail rests on
        the most metal-poor calibration stars rather than on noise; phi may reach :data:`REACH_DEX` beyond
        the calibration stars' range, where their response is extrapolated (and the bootstrap says how
        little that constrains)."""
        support = (TRUE_GRID >= self.true.min() - REACH_DEX) & (TRUE_GRID <= self.true.max() + REACH_DEX)
        we = self.estimate_kernel()
        k = np.clip(np.searchsorted(edges, self.sigma, side="right") - 1, 0, len(edges) - 2)
        resp = []
        for s in range(len(edges) - 1):
            rows = k == s
            t = self.true[rows]
            gap = np.abs(TRUE_GRID[:, None] - t[None, :])  # (T, n_s)
            nth = min(NEIGHBOURS, t.size) - 1
            h = np.maximum(BANDWIDTH_TRUE, np.partition(gap, nth, axis=1)[:, nth])
            wt = np.exp(-0.5 * (gap / h[:, None]) ** 2)
            resp.append(wt @ we[rows] / wt.sum(axis=1, keepdims=True))
        return np.array(resp), support

    def label_start(self) -> np.ndarray:
        """The labelled stars' distribution on the true grid: where the iteration starts."""
        h, _ = np.histogram(np.clip(self.true, TRUE_EDGES[0], TRUE_EDGES[-1] - 1e-9), TRUE_EDGES)
        return _smooth(h + 1e-3 * h.max(), _kernel(BANDWIDTH_TRUE))


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


def _stratum_counts(binned: BinnedEstimates, edges: np.ndarray) -> np.ndarray:
    """(strata, estimate bins) counts of the selected stars, by the centre of each error bin."""
    err_centres = 0.5 * (binned.err_edges[1:] + binned.err_edges[:-1])
    k = np.clip(np.searchsorted(edges, err_centres, side="right") - 1, 0, len(edges) - 2)
    return np.array([binned.counts[:, k == s].sum(axis=1) for s in range(len(edges) - 1)], float)


def _unfold_once(counts: np.ndarray, response: ResponseSample, edges: np.ndarray, starts=None
                 ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    resp, covered = response.responses(edges)
    kernel = _kernel(SMOOTHING_DEX)
    base = response.label_start()
    parts, total = [], np.zeros(TRUE_GRID.size)
    for s in range(len(edges) - 1):
        if counts[s].sum() == 0:
            parts.append(np.zeros(TRUE_GRID.size))
            continue
        p = _em(resp[s], covered, counts[s], base if starts is None else starts[s], kernel)
        parts.append(p)
        total += counts[s].sum() * p
    return total / max(total.sum(), 1e-300), parts, covered


def unfold_mdf(binned: BinnedEstimates, response: ResponseSample, n_boot: int = 50, seed: int = 0,
               thresholds: tuple[float, ...] = FRACTION_THRESHOLDS) -> dict:
    """The population MDF of the stars in ``binned`` (their estimates and errors), unfolded through the
    model's measured ``response``: median, mean, width, ``fraction_below`` each threshold, with bootstrap
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
    edges = response.strata_edges()
    counts = _stratum_counts(binned, edges)
    full, parts, covered = _unfold_once(counts, response, edges)
    mdf = GridMDF(full)
    rng = np.random.default_rng(seed)
    flat = counts.ravel()
    draws = []
    for _ in range(n_boot):
        c = rng.multinomial(int(flat.sum()), flat / flat.sum()).reshape(counts.shape).astype(float)
        p, _, _ = _unfold_once(c, response.resampled(rng), edges, starts=[q + 1e-12 for q in parts])
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
           "calibration_stars": int(response.true.size), "error_strata": [round(float(e), 4) for e in edges[1:-1]],
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
