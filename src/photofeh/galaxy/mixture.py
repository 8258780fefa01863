"""A metallicity distribution as a Gaussian mixture, and its likelihood given per-star estimates with errors.

:class:`MixtureMDF` is what the extreme-deconvolution fit (:mod:`photofeh.galaxy.xd`) returns and what an MDF
summary stores (``mixture`` in ``mdf.json``): sum_k a_k N(m_k, V_k) in [Fe/H], its pdf, cdf, quantiles,
moments, draws and ln p(x | MDF, err), the MDF convolved with each star's Gaussian error
(:mod:`photofeh.galaxy.mdf` explains why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

__all__ = ["MixtureMDF"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_QUANTILE_BISECTIONS = 100


def _mixture_moments(a: np.ndarray, m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of mixtures with parameters of shape (..., K)."""
    mean = (a * m).sum(axis=-1)
    dm = m - mean[..., None]
    return mean, np.sqrt((a * (v + dm * dm)).sum(axis=-1))


def _mixture_quantile(a: np.ndarray, m: np.ndarray, v: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Quantiles of a batch of mixtures by bisection on the cdf.

    The parameters have shape (n, K) and ``q`` has shape (n,), with q in (0, 1).
    Below the median the root of cdf(x) = q is found; above it, the root of
    sf(x) = 1 - q. This keeps full relative precision in both tails. The cdf is
    monotone, so bisection always converges, whatever the parameters.
    """
    sd = np.sqrt(v)
    lo = (m - 40.0 * sd).min(axis=-1)
    hi = (m + 40.0 * sd).max(axis=-1)
    lower = q <= 0.5
    target = np.where(lower, q, 1.0 - q)
    for _ in range(_QUANTILE_BISECTIONS):
        mid = 0.5 * (lo + hi)
        z = (mid[:, None] - m) / sd
        below = np.where(lower, (a * ndtr(z)).sum(axis=-1) < target, (a * ndtr(-z)).sum(axis=-1) > target)
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _nan_to_none(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def _none_to_nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


@dataclass(frozen=True, eq=False)
class MixtureMDF:
    """An intrinsic MDF: sum_k weights[k] N(means[k], variances[k]) in [Fe/H] (dex, dex^2).

    The remaining fields describe the fit that produced it, and are NaN or empty for a
    mixture made by hand. ``n_stars`` is the (weighted) number of stars fitted,
    ``n_dropped`` the stars left out (non-finite values, errors <= 0, weights of zero,
    out of histogram range), ``loglike`` the log-likelihood of the fitted data given
    their errors, ``bic`` its BIC, ``n_iter`` the SQUAREM cycles used, and
    ``bic_by_k`` the BIC of each K tried when K was chosen (entry k-1 for K = k; the
    search stops at the first K that does not lower the BIC).
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    n_stars: float = float("nan")
    n_dropped: int = 0
    loglike: float = float("nan")
    bic: float = float("nan")
    n_iter: int = 0
    converged: bool = True
    bic_by_k: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        a, m, v = (np.array(p, dtype=float, ndmin=1) for p in (self.weights, self.means, self.variances))
        if a.ndim != 1 or a.shape != m.shape or a.shape != v.shape or a.size == 0:
            raise ValueError(f"weights, means and variances must be 1-D arrays of one length, got shapes "
                             f"{a.shape}, {m.shape}, {v.shape}")
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(m)) and np.all(np.isfinite(v))):
            raise ValueError("mixture parameters must be finite")
        if np.any(a < 0) or np.any(v <= 0):
            raise ValueError("mixture weights must be >= 0 and variances > 0")
        total = a.sum()
        if not abs(total - 1.0) < 1e-6:
            raise ValueError(f"mixture weights must sum to 1, got {total!r}")
        a = a / total
        for name, arr in (("weights", a), ("means", m), ("variances", v)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "bic_by_k", tuple(float(b) for b in self.bic_by_k))

    # --- the distribution -----------------------------------------------------------------------------------
    @property
    def n_components(self) -> int:
        return int(self.weights.size)

    def pdf(self, grid) -> np.ndarray:
        """Probability density of the intrinsic MDF at ``grid`` (any shape)."""
        g = np.asarray(grid, float)[..., None]
        z2 = (g - self.means) ** 2 / self.variances
        return (self.weights * np.exp(-0.5 * z2) / np.sqrt(2.0 * np.pi * self.variances)).sum(axis=-1)

    def cdf(self, grid) -> np.ndarray:
        """Cumulative distribution of the intrinsic MDF at ``grid`` (any shape)."""
        g = np.asarray(grid, float)[..., None]
        return (self.weights * ndtr((g - self.means) / np.sqrt(self.variances))).sum(axis=-1)

    def quantile(self, q):
        """Inverse cdf at ``q`` (a number or an array), by bisection; q = 0 gives -inf, q = 1 gives +inf."""
        qa = np.asarray(q, float)
        if np.any(np.isnan(qa)) or np.any((qa < 0) | (qa > 1)):
            raise ValueError(f"quantile levels must be in [0, 1], got {q!r}")
        flat = qa.ravel()
        inner = (flat > 0) & (flat < 1)
        out = np.where(flat <= 0, -np.inf, np.inf)
        if inner.any():
            n = int(inner.sum())
            out[inner] = _mixture_quantile(np.broadcast_to(self.weights, (n, self.n_components)),
                                           np.broadcast_to(self.means, (n, self.n_components)),
                                           np.broadcast_to(self.variances, (n, self.n_components)), flat[inner])
        return float(out[0]) if qa.ndim == 0 else out.reshape(qa.shape)

    @property
    def median(self) -> float:
        return self.quantile(0.5)

    @property
    def mean(self) -> float:
        return float(_mixture_moments(self.weights, self.means, self.variances)[0])

    @property
    def std(self) -> float:
        """The width of the MDF: the standard deviation of the whole mixture."""
        return float(_mixture_moments(self.weights, self.means, self.variances)[1])

    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n`` draws of intrinsic [Fe/H] from the MDF."""
        rng = np.random.default_rng(rng)
        k = rng.choice(self.n_components, size=int(n), p=self.weights)
        return self.means[k] + np.sqrt(self.variances[k]) * rng.standard_normal(int(n))

    def log_likelihood(self, x, err, weights=None, per_star: bool = False):
        """ln p(x | MDF, err): the MDF convolved with each star's Gaussian error.

        Returns the (weighted) sum over usable stars, or, with ``per_star``, one value
        per input star (NaN where x or err is not finite or err <= 0).
        """
        x, err, ok = _usable(x, err)
        ll = np.full(x.size, np.nan)
        ll[ok] = _loglike_per_star(x[ok], err[ok] ** 2, self.weights, self.means, self.variances)
        if per_star:
            return ll
        if weights is None:
            return float(ll[ok].sum())
        w = np.asarray(weights, float).ravel()
        if w.shape != x.shape:
            raise ValueError(f"weights and x differ in length: {w.size} and {x.size}")
        return float((w[ok] * ll[ok]).sum())

    # --- (de)serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain Python types only (NaN becomes None), so ``json.dumps`` writes strict JSON."""
        return {"n_components": self.n_components, "weights": self.weights.tolist(), "means": self.means.tolist(),
                "variances": self.variances.tolist(), "n_stars": _nan_to_none(self.n_stars),
                "n_dropped": int(self.n_dropped), "loglike": _nan_to_none(self.loglike),
                "bic": _nan_to_none(self.bic), "n_iter": int(self.n_iter), "converged": bool(self.converged),
                "bic_by_k": [_nan_to_none(b) for b in self.bic_by_k]}

    @classmethod
    def from_dict(cls, d: dict) -> MixtureMDF:
        return cls(weights=d["weights"], means=d["means"], variances=d["variances"],
                   n_stars=_none_to_nan(d.get("n_stars")), n_dropped=int(d.get("n_dropped", 0)),
                   loglike=_none_to_nan(d.get("loglike")), bic=_none_to_nan(d.get("bic")),
                   n_iter=int(d.get("n_iter", 0)), converged=bool(d.get("converged", True)),
                   bic_by_k=tuple(_none_to_nan(b) for b in d.get("bic_by_k", ())))


def _loglike_per_star(x: np.ndarray, s2: np.ndarray, a: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
    t = v[:, None] + s2[None, :]
    d = x[None, :] - m[:, None]
    with np.errstate(divide="ignore"):
        logp = np.log(a)[:, None] - 0.5 * (np.log(t) + d * d / t) - _HALF_LOG_2PI
    mx = logp.max(axis=0)
    return mx + np.log(np.exp(logp - mx).sum(axis=0))


def _usable(x, err) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates and errors as flat float64 arrays, and the stars with both finite and a positive error."""
    x = np.asarray(x, float).ravel()
    err = np.asarray(err, float).ravel()
    if x.shape != err.shape:
        raise ValueError(f"x and err differ in length: {x.size} and {err.size}")
    with np.errstate(invalid="ignore"):
        return x, err, np.isfinite(x) & np.isfinite(err) & (err > 0)
