"""The prior a model's estimates carry, and the weights that change it.

A network trained by maximum likelihood on labelled stars returns, for each star, an estimate that leans
toward the labelled set's distribution wherever the photometry says little: the best estimate of that one
star, but biased conditional on the true value (metal-poor stars come out too rich, a cluster's members
too). Re-weighting the training stars by the inverse of the labelled distribution (importance weights,
Shimodaira 2000, J. Stat. Plan. Inference 90, 227) makes the fitted estimate that of a flat prior: close to
the likelihood's mean, with a small bias at every value, which is what population inference (metallicity
distributions, maps, clusters) needs; deconvolving estimates that still carry the training prior would count
it twice. Weights in sparse bins are capped (``prior_weight_cap``) so that a few stars cannot dominate the
loss: the estimate then stays slightly pulled in the most sparsely labelled bins, by an amount the prior
benchmark measures (BENCHMARKS.md, docs/populations.md).

A second weighting (``selection_weighting = "loss"``, :func:`selection_weights`) weights each labelled star by the
inverse of its probability of having been targeted for a spectrum (Horvitz & Thompson 1952, JASA 47, 663). What it
changes depends on what the targeting saw. Where it used something the network's inputs do not carry (a population
flag, a kinematic or spectroscopic pre-selection, photometry the model does not read), the labelled stars' p([Fe/H] |
inputs) differs from the survey's and the weighting moves the estimates toward the survey's population. Where it
used the inputs alone, p([Fe/H] | inputs) is the same for both and an unweighted fit already aims at the survey's
conditional: the weighting is then covariate-shift weighting (Shimodaira 2000, J. Stat. Plan. Inference 90, 227),
which only moves where a network of finite capacity and finitely many stars spends its accuracy, at the price of a
smaller effective sample (tests/test_selection_weighting.py checks both cases on a toy). Real and mock samples lie
between the two: SEGUE's colour boxes and the mock's targeting are mostly on photometry the model reads, but the
mock labels only stars the SSPP-like pipeline accepts (by their true Teff), a noise-aware model trains on faded
re-observations of them, and some SEGUE categories also used proper motions and magnitude windows.
docs/models.md gives what the weighting costs and buys on the mock.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["PRIOR_KINDS", "PRIOR_BIN_WIDTH", "DIVIDE_OUT_CAP", "DIVIDE_OUT_BANDWIDTH", "SELECTION_WEIGHTINGS",
           "divide_out", "flat_prior_weights", "inverse_probability", "label_histogram", "prior_of",
           "selection_weights", "smoothed_prior"]

# The priors a model's estimates may carry (TrainConfig.prior, model.json's prior.kind): the labelled stars',
# flat in prior_label, or a likelihood head trained through the labels' histogram (photofeh.model.likelihood)
PRIOR_KINDS = ("labels", "flat", "likelihood")

# Bin width of the label histogram (dex): narrower than the photometric [Fe/H] errors (0.1-0.3 dex),
# wide enough for tens of stars per bin in training sets of 10^4.
PRIOR_BIN_WIDTH = 0.1


def _edges(reference: np.ndarray, width: float = PRIOR_BIN_WIDTH) -> np.ndarray:
    lo, hi = np.floor(np.min(reference) / width) * width, np.ceil(np.max(reference) / width) * width
    return np.arange(lo, hi + width * 1.5, width)


def label_histogram(values: np.ndarray, width: float = PRIOR_BIN_WIDTH, weights: np.ndarray | None = None) -> dict:
    """The labelled stars' distribution (finite values), JSON-friendly: bin edges and counts. ``weights``: the
    stars' training weights (:func:`selection_weights`, mean 1), so that the counts are those of the distribution
    the estimates lean toward (in units of stars; what ``--prior flat`` divides out)."""
    v = np.asarray(values, float)
    finite = np.isfinite(v)
    v = v[finite]
    if v.size == 0:
        return {"edges": [], "counts": [], "stars": 0}
    edges = _edges(v, width)
    if weights is None:
        counts = np.histogram(v, edges)[0].tolist()
        q = {"median": float(np.median(v)), "p01": float(np.percentile(v, 1)), "p99": float(np.percentile(v, 99))}
    else:
        w = np.asarray(weights, float)[finite]
        counts = np.round(np.histogram(v, edges, weights=w)[0], 3).tolist()
        order = np.argsort(v)
        cum = np.cumsum(w[order]) / w.sum()
        q = {k: float(v[order][min(np.searchsorted(cum, f), v.size - 1)]) for k, f in
             (("median", 0.5), ("p01", 0.01), ("p99", 0.99))}
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts, "stars": int(v.size), **q}


def flat_prior_weights(values: np.ndarray, reference: np.ndarray, cap: float,
                       width: float = PRIOR_BIN_WIDTH) -> np.ndarray:
    """Per-star weights that flatten the distribution of ``reference`` (the training stars' labels) in bins
    of ``width``: w = 1 / (stars in the star's bin), scaled to mean 1 over the reference stars, at most
    ``cap``. Stars without the label weigh 1; labels outside the reference range get the cap."""
    ref = np.asarray(reference, float)
    ref = ref[np.isfinite(ref)]
    v = np.asarray(values, float)
    w = np.ones(v.size)
    if ref.size == 0:
        return w
    edges = _edges(ref, width)
    counts, _ = np.histogram(ref, edges)
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    scale = 1.0 / np.mean(inv[np.clip(np.digitize(ref, edges) - 1, 0, counts.size - 1)])
    finite = np.isfinite(v)
    k = np.digitize(v[finite], edges) - 1
    inside = (k >= 0) & (k < counts.size)
    raw = np.full(k.size, float(cap))
    raw[inside] = np.where(counts[k[inside]] > 0, scale * inv[k[inside]], cap)
    w[finite] = np.minimum(raw, cap)
    return w


# How a model's training stars may stand for a survey (TrainConfig.selection_weighting): "none", or "loss": each
# labelled star's loss and its share of the sigma-scale fit weighted by 1 / its targeting probability
SELECTION_WEIGHTINGS = ("none", "loss")


def selection_weights(probability: np.ndarray, reference: np.ndarray, cap: float) -> np.ndarray:
    """Survey-matched weights of every star: 1 / its targeting probability p (Horvitz & Thompson 1952, JASA 47,
    663), self-normalised to mean 1 over the ``reference`` stars (the training rows: the weighted loss is then a
    weighted mean, whatever the scale of p, which a real survey's selection function gives only up to a factor;
    Hajek's ratio form) and trimmed at ``cap`` (> 1) times that mean, the scale solved so that the trimmed weights
    average exactly 1 (:func:`_trimmed_scale`). The trimming is what keeps a few stars from dominating: on the
    mock before 2026-12-07, whose SEGUE-like rates spanned 0.001-0.2 with a faint taper (19.5 < g < 20) to 1e-4,
    untrimmed 20,000 labelled stars weighed as 1,200 (Kish's effective sample, (sum w)^2 / sum w^2) and the
    largest single weight was 215 times the mean; trimming at 10 kept 3,500 and changed 1.2% of the weights
    (benchmarks/bench_calibration_depth.py measured what it costs and buys). Today's mock's rates, fitted to real
    SEGUE stars, span 0.02-0.07 and its labels stop at g = 18.8: its weights stay within a factor of 3 and a cap
    of 10 does not bind there. Trimming is not neutral: the trimmed stars are the least targeted, and what they
    would have weighed beyond the cap (their share of the untrimmed weight is ``trimmed_weight_share`` in
    model.json) goes to the other stars. Stars without a probability in
    (0, 1] (unlabelled rows) weigh 1."""
    raw, ok = inverse_probability(probability)
    ref = raw[np.asarray(reference)][ok[np.asarray(reference)]]
    if ref.size == 0:
        return np.ones(raw.size)
    scale = _trimmed_scale(ref, cap)
    return np.where(ok, np.minimum(scale * raw, cap), 1.0)


def inverse_probability(probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1/p of each star with a targeting probability p in (0, 1], and which stars have one (``ok``); 1 for
    the others."""
    p = np.asarray(probability, float)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(p) & (p > 0) & (p <= 1)
    return np.where(ok, 1.0 / np.where(ok, p, 1.0), 1.0), ok


def _trimmed_scale(raw: np.ndarray, cap: float) -> float:
    """The s > 0 with mean(min(s raw, cap)) = 1, exactly: with the k largest of n values trimmed, s = (n - k cap) /
    (sum of the other n - k), valid when it trims exactly those k; the mean grows with s, so the first valid k
    is the answer (one exists for any cap > 1)."""
    r = np.sort(np.asarray(raw, float))
    n = r.size
    k = np.arange(n)  # stars trimmed
    s = (n - k * cap) / np.cumsum(r)[::-1]  # cumsum[n - k - 1]: the n - k smallest
    below = s * r[n - k - 1] <= cap  # the largest untrimmed value stays under the cap
    above = np.append(True, s[1:] * r[n - k[1:]] >= cap)  # the smallest trimmed value reaches it
    valid = (s > 0) & below & above
    if not valid.any():
        raise ValueError(f"no weight scale trims at {cap}: the cap must be above 1")
    return float(s[np.argmax(valid)])


# Dividing the training prior out of a labels-prior estimate (prediction time, `--prior flat`): the labelled
# distribution is smoothed with a Gaussian kernel of DIVIDE_OUT_BANDWIDTH (dex) and floored at 1/DIVIDE_OUT_CAP
# of its peak, so that its sparse tails cannot blow an estimate up. Chosen on the real Green et al. training
# stars (benchmarks/bench_prior.py): bandwidths 0.05-0.2 dex give the same result; caps 3, 10 and 30 trade
# bias in the sparsest bins (0.33, 0.21, 0.14 dex) against scatter (1.02, 1.08, 1.12 times the labels prior's).
DIVIDE_OUT_CAP = 30.0
DIVIDE_OUT_BANDWIDTH = 0.05
_GRID_STEP = 0.01
_BLOCK = 16_384  # stars per block: the (stars x grid) arrays stay ~50 MB


def smoothed_prior(histogram: dict, grid: np.ndarray, bandwidth: float = DIVIDE_OUT_BANDWIDTH) -> np.ndarray:
    """The labelled stars' distribution (:func:`label_histogram`) on ``grid``, unnormalised: each bin a point
    spread by a Gaussian kernel of ``bandwidth`` and by its own width (variance width^2 / 12)."""
    edges, counts = np.asarray(histogram["edges"], float), np.asarray(histogram["counts"], float)
    centres = 0.5 * (edges[:-1] + edges[1:])
    width = np.sqrt(bandwidth**2 + np.diff(edges)[:, None] ** 2 / 12.0)
    return (counts[:, None] * np.exp(-0.5 * ((np.asarray(grid)[None, :] - centres[:, None]) / width) ** 2)
            / width).sum(0)


def divide_out(mean: np.ndarray, sigma: np.ndarray, histogram: dict, cap: float = DIVIDE_OUT_CAP,
               bandwidth: float = DIVIDE_OUT_BANDWIDTH) -> tuple[np.ndarray, np.ndarray]:
    """The flat-prior estimate and error of a label, from a labels-prior model's Gaussian estimate.

    A network trained by maximum likelihood returns the posterior under the labelled stars' distribution pi;
    approximating that posterior by N(mean, sigma^2), the likelihood is proportional to N(theta; mean,
    sigma^2) / pi(theta), whose mean and standard deviation (on a 0.01-dex grid spanning the labels +-0.5 dex)
    are returned. pi is the training histogram stored in model.json (:func:`label_histogram`), smoothed and
    floored (``bandwidth``, ``cap``). Exact for a Gaussian pi and a Gaussian posterior (the classic
    division of Gaussians); NaN inputs give NaN.

    For many stars (a catalogue's chunk) the two moments are interpolated in a table over (mean, log sigma)
    computed once per prior (:func:`_division_table`; within 0.002 dex and 0.5% of the direct sums, tested), which
    is several times faster than a 0.01-dex grid sum per star; stars outside the table are summed directly.
    """
    key = (tuple(np.asarray(histogram["edges"], float)), tuple(np.asarray(histogram["counts"], float)),
           float(cap), float(bandwidth))
    return tabulated_or_direct(mean, sigma, key, _division_table, _divide_direct)


def tabulated_or_direct(mean: np.ndarray, sigma: np.ndarray, key: tuple, table, direct
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The moments of Gaussian estimates (``mean``, ``sigma``) combined with a prior (``key``): for many stars
    interpolated in ``table(key)`` (mean axis, log-sigma axis, shift of the mean, ratio of the widths), else and
    outside the table ``direct(mean, sigma, key)``; NaN where an input is not finite or sigma <= 0. Shared by
    :func:`divide_out` and :func:`photofeh.model.likelihood.posterior_moments`."""
    mean, sigma = np.asarray(mean, float), np.asarray(sigma, float)
    est, err = np.full(mean.shape, np.nan), np.full(mean.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(mean) & np.isfinite(sigma) & (sigma > 0))
    if ok.size >= TABLE_MIN_STARS:
        m_axis, s_axis, d_table, r_table = table(key)
        inside = ((mean[ok] >= m_axis[0]) & (mean[ok] <= m_axis[-1]) & (sigma[ok] >= np.exp(s_axis[0]))
                  & (sigma[ok] <= np.exp(s_axis[-1])))
        rows = ok[inside]
        d, r = _bilinear(m_axis, s_axis, (d_table, r_table), mean[rows], np.log(sigma[rows]))
        est[rows], err[rows] = mean[rows] + d, sigma[rows] * r
        ok = ok[~inside]
    if ok.size:
        est[ok], err[ok] = direct(mean[ok], sigma[ok], key)
    return est, err


TABLE_MIN_STARS = 50_000  # fewer stars are summed directly (building a table costs about a second)
_TABLE_MEAN_STEP = 0.01  # dex
_TABLE_LOG_SIGMA = (np.log(0.01), np.log(3.0), 100)  # sigma from 0.01 to 3 dex, 5.9% apart


def _prior_grid(key: tuple) -> tuple[np.ndarray, np.ndarray]:
    edges, counts, cap, bandwidth = key
    histogram = {"edges": list(edges), "counts": list(counts)}
    grid = np.arange(edges[0] - 0.5, edges[-1] + 0.5 + _GRID_STEP / 2, _GRID_STEP)
    pi = smoothed_prior(histogram, grid, bandwidth)
    return grid, np.log(np.maximum(pi / pi.max(), 1.0 / cap))


def _divide_direct(mean: np.ndarray, sigma: np.ndarray, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of N(theta; mean, sigma^2) / pi(theta) on the prior's grid, block by block."""
    grid, log_pi = _prior_grid(key)
    est, err = np.empty(mean.shape), np.empty(mean.shape)
    for s in range(0, mean.size, _BLOCK):
        m, sg = mean[s:s + _BLOCK], sigma[s:s + _BLOCK]
        logq = -0.5 * ((grid[None, :] - m[:, None]) / sg[:, None]) ** 2 - log_pi[None, :]
        q = np.exp(logq - logq.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        est[s:s + _BLOCK] = q @ grid
        err[s:s + _BLOCK] = np.sqrt(np.maximum(q @ grid**2 - est[s:s + _BLOCK] ** 2, 0.0))
    return est, err


@functools.lru_cache(maxsize=8)
def _division_table(key: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean axis, log-sigma axis, est - mean, err / sigma) of :func:`_divide_direct` on a grid: the shift and
    the error ratio are smooth in both, so a bilinear interpolation holds them to 0.002 dex and 0.5%."""
    grid, _ = _prior_grid(key)
    m_axis = np.arange(grid[0], grid[-1] + _TABLE_MEAN_STEP / 2, _TABLE_MEAN_STEP)
    return shift_ratio_table(m_axis, np.linspace(*_TABLE_LOG_SIGMA), key, _divide_direct)


def shift_ratio_table(m_axis: np.ndarray, s_axis: np.ndarray, key: tuple, direct
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(``m_axis``, ``s_axis``, est - mean, err / sigma) of ``direct(mean, sigma, key)`` at every (mean, log sigma)
    node: the table :func:`tabulated_or_direct` interpolates in."""
    mm, ss = np.meshgrid(m_axis, np.exp(s_axis), indexing="ij")
    est, err = direct(mm.ravel(), ss.ravel(), key)
    return m_axis, s_axis, (est - mm.ravel()).reshape(mm.shape), (err / ss.ravel()).reshape(mm.shape)


def _bilinear(x_axis: np.ndarray, y_axis: np.ndarray, tables: tuple, x: np.ndarray, y: np.ndarray) -> list:
    """Bilinear interpolation of tables on a regular (x, y) grid at points inside it."""
    fx = (x - x_axis[0]) / (x_axis[1] - x_axis[0])
    fy = (y - y_axis[0]) / (y_axis[1] - y_axis[0])
    i = np.clip(fx.astype(int), 0, x_axis.size - 2)
    j = np.clip(fy.astype(int), 0, y_axis.size - 2)
    tx, ty = fx - i, fy - j
    out = []
    for t in tables:
        low = (1 - ty) * t[i, j] + ty * t[i, j + 1]
        high = (1 - ty) * t[i + 1, j] + ty * t[i + 1, j + 1]
        out.append((1 - tx) * low + tx * high)
    return out


def prior_of(meta: dict) -> str:
    """``"labels"`` or ``"flat"``: the prior a model folder's estimates carry (models made before the choice
    existed carry the labels prior)."""
    prior = meta.get("prior") or {}
    return str(prior.get("kind", "labels")) if isinstance(prior, dict) else "labels"
