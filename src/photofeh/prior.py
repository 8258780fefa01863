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
"""

from __future__ import annotations

import numpy as np

__all__ = ["PRIOR_BIN_WIDTH", "flat_prior_weights", "label_histogram", "prior_of"]

# Bin width of the label histogram (dex): narrower than the photometric [Fe/H] errors (0.1-0.3 dex),
# wide enough for tens of stars per bin in training sets of 10^4.
PRIOR_BIN_WIDTH = 0.1


def _edges(reference: np.ndarray, width: float = PRIOR_BIN_WIDTH) -> np.ndarray:
    lo, hi = np.floor(np.min(reference) / width) * width, np.ceil(np.max(reference) / width) * width
    return np.arange(lo, hi + width * 1.5, width)


def label_histogram(values: np.ndarray, width: float = PRIOR_BIN_WIDTH) -> dict:
    """The labelled stars' distribution (finite values), JSON-friendly: bin edges and counts."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"edges": [], "counts": [], "stars": 0}
    edges = _edges(v, width)
    counts, _ = np.histogram(v, edges)
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist(), "stars": int(v.size),
            "median": float(np.median(v)), "p01": float(np.percentile(v, 1)), "p99": float(np.percentile(v, 99))}


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


def prior_of(meta: dict) -> str:
    """``"labels"`` or ``"flat"``: the prior a model folder's estimates carry (models made before the choice
    existed carry the labels prior)."""
    prior = meta.get("prior") or {}
    return str(prior.get("kind", "labels")) if isinstance(prior, dict) else "labels"
