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
weights, as in the ``weight`` option of their code. The symbols below are the paper's
(q_ij, b_ij, B_ij, T_ij with j the component); the equation numbers were not checked
here.

The optimiser is their EM algorithm written in 1-D with numpy, vectorised over stars
(arrays of shape (K, N), with no Python loop over stars):

* E step: q_ik = a_k N(x_i | m_k, T_ik) / sum_l a_l N(x_i | m_l, T_il),
  b_ik = m_k + V_k (x_i - m_k) / T_ik (the expected true value), and
  B_ik = V_k - V_k^2 / T_ik (its variance);
* M step: a_k = sum_i w_i q_ik / sum_i w_i,  m_k = sum_i w_i q_ik b_ik / q_k,
  V_k = sum_i w_i q_ik [(m_k - b_ik)^2 + B_ik] / q_k,  where q_k = sum_i w_i q_ik.

Plain XD EM crawls when V_k is much smaller than s_i^2 (most of the information is
missing; Dempster, Laird & Rubin 1977, JRSS B 39, 1). A well-measured cluster
is such a case: thousands of iterations. Each iteration therefore first tries an ECM
step (Meng & Rubin 1993, Biometrika 80, 267). Only the component labels are treated as
missing. m_k becomes the exact conditional maximiser, the precision-weighted mean
sum q_ik x_i / T_ik / sum q_ik / T_ik. V_k takes one Fisher-scoring step,
V_k = sum q_ik (d_ik^2 - s_i^2) / T_ik^2 / sum q_ik / T_ik^2: the iterative estimator of
a random-effects variance (Hardy & Thompson 1996, Stat. Med. 15, 619). That step is kept
only if ln L does not decrease; otherwise the XD EM step above is used. So the
likelihood never decreases, and convergence takes tens of iterations rather than
thousands. These monotone steps are accelerated by SQUAREM (Varadhan & Roland 2008,
Scand. J. Stat. 35, 335).

V_k has a floor (``VAR_FLOOR`` = (0.02 dex)^2), which stops a component collapsing
onto one star (the singularity that Bovy et al. 2011 regularise with their parameter
w). In the XD M step, clipping at the floor gives the exact constrained maximiser,
because the objective in V_k is unimodal. K, when not given, is chosen among 1..4 by the Bayesian information
criterion, BIC = -2 ln L + (3K - 1) ln n (Schwarz 1978, Ann. Stat. 6, 461). Each K
starts from quantiles of the data, and also from the K - 1 fit with its broadest
component split in two (as in the split step of Bovy et al. 2011's split-and-merge).
Error bars come from the nonparametric bootstrap (Efron 1979, Ann. Stat. 7, 1): stars are
resampled with replacement, and each resample is refitted with K fixed, warm-started
from the full-sample fit.

For maps, ``BinnedEstimates`` keeps a fixed 2-D histogram of (estimate, error) per
cell, so memory does not grow with the number of stars. It fits the same model with the
bin centres as data and the counts as weights. The finite bin width enters as extra
variance: width^2 / 12 (Sheppard 1898, Proc. London Math. Soc. 29, 353) for the
estimate, and the bin mean of s^2 for the error.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

__all__ = ["VAR_FLOOR", "MIN_STARS", "MAX_COMPONENTS", "FEH_EDGES", "ERR_EDGES", "MixtureMDF", "fit_mdf",
           "mdf_summary", "BinnedEstimates", "add_by_group"]

VAR_FLOOR = 0.02**2  # dex^2: smallest component variance (stops collapse onto single stars)
MIN_STARS = 10  # fewer usable stars than this: refuse to fit
MAX_COMPONENTS = 4  # K is chosen among 1..MAX_COMPONENTS by BIC when not given
DEFAULT_MAX_ITER = 1000
DEFAULT_TOL = 1e-8  # stop when ln L per (weighted) star rises by less than this in one iteration

# BinnedEstimates bins: estimate -5..+1.5 dex in 0.02 dex; error 0..0.5 in 0.02, then 0.5..1.5 in 0.05 dex.
FEH_EDGES = np.round(np.linspace(-5.0, 1.5, 326), 10)
ERR_EDGES = np.round(np.concatenate([np.linspace(0.0, 0.5, 26), np.linspace(0.55, 1.5, 20)]), 10)
FEH_EDGES.setflags(write=False)
ERR_EDGES.setflags(write=False)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_QUANTILE_BISECTIONS = 100
_SELECT_GAIN = 1e-3  # ln L per cycle: convergence while choosing K (BIC differences of ~1 matter)
_SELECT_MAX_CYCLES = 100  # cycles per candidate K while choosing K


# ----------------------------------------------------------------------------------------------------------------
# The mixture
# ----------------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------------
# Extreme deconvolution
# ----------------------------------------------------------------------------------------------------------------

def _loglike_per_star(x: np.ndarray, s2: np.ndarray, a: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
    t = v[:, None] + s2[None, :]
    d = x[None, :] - m[:, None]
    with np.errstate(divide="ignore"):
        logp = np.log(a)[:, None] - 0.5 * (np.log(t) + d * d / t) - _HALF_LOG_2PI
    mx = logp.max(axis=0)
    return mx + np.log(np.exp(logp - mx).sum(axis=0))


class _EStep:
    """Responsibilities times star weights (w_i q_ik), and ln L, at one set of parameters.

    N(x | m, T) = T^-1/2 exp(-z) / sqrt(2 pi) with z = (x - m)^2 / 2T. The exponent is
    shifted by each star's smallest z (over live components), so no exp underflows to
    zero for every component, and there is one exp over the (K, N) array and no log.
    """

    __slots__ = ("ll", "r", "u", "d")

    def __init__(self, x, s2, w, a, m, v):
        self.u = u = 1.0 / (v[:, None] + s2[None, :])  # 1 / T_ik, T_ik = V_k + s_i^2
        self.d = d = x[None, :] - m[:, None]
        z = d * d
        z *= u
        z *= 0.5
        dead = ~(a > 0)
        if dead.any():
            z[dead] = np.inf
        zmin = z.min(axis=0)
        np.subtract(zmin, z, out=z)
        p = np.exp(z, out=z)
        p *= np.sqrt(u)
        p *= a[:, None]
        tot = p.sum(axis=0)
        # sums of products by ufuncs, not ``@``: BLAS dot may start threads, which costs milliseconds on busy hosts
        self.ll = float((w * (np.log(tot) - zmin)).sum()) - _HALF_LOG_2PI * float(w.sum())
        p *= w / tot
        self.r = p


def _m_step_xd(e: _EStep, s2, a, m, v, wsum, var_floor):
    """The XD M step (Bovy et al. 2011): b_ik and B_ik averaged with weights w_i q_ik."""
    qk = e.r.sum(axis=1)
    alive = qk > 1e-12 * wsum
    qs = np.where(alive, qk, 1.0)
    g = v[:, None] * e.u  # V_k / T_ik, so b_ik = m_k + g d and B_ik = V_k (1 - g)
    gd = g * e.d
    rgd = e.r * gd
    dm = rgd.sum(axis=1) / qs  # m_new - m
    # sum q [(m_new - b)^2 + B] / q  =  [sum q g^2 d^2 + V (q - sum q g)] / q - (m_new - m)^2
    v_new = ((rgd * gd).sum(axis=1) + v * (qk - (e.r * g).sum(axis=1))) / qs - dm * dm
    return (qk / wsum, np.where(alive, m + dm, m), np.where(alive, np.maximum(v_new, var_floor), v))


def _m_step_ecm(e: _EStep, s2, a, m, v, wsum, var_floor):
    """ECM step: exact precision-weighted mean given V, then one Fisher-scoring step in V given the new mean."""
    qk = e.r.sum(axis=1)
    alive = qk > 1e-12 * wsum
    ru = e.r * e.u
    su = np.where(alive, ru.sum(axis=1), 1.0)
    dm = (ru * e.d).sum(axis=1) / su
    dn = e.d - dm[:, None]
    ru *= e.u
    su2 = np.where(alive, ru.sum(axis=1), 1.0)
    dn *= dn
    dn -= s2[None, :]
    v_new = (ru * dn).sum(axis=1) / su2
    return (qk / wsum, np.where(alive, m + dm, m), np.where(alive, np.maximum(v_new, var_floor), v))


def _step(x, s2, w, a, m, v, e: _EStep, wsum, var_floor):
    """One monotone update: the ECM step if it raises ln L, else the XD EM step."""
    a1, m1, v1 = _m_step_ecm(e, s2, a, m, v, wsum, var_floor)
    e1 = _EStep(x, s2, w, a1, m1, v1)
    if not e1.ll >= e.ll - 1e-12 * abs(e.ll):  # the fast step went down (or NaN): take the EM step
        a1, m1, v1 = _m_step_xd(e, s2, a, m, v, wsum, var_floor)
        e1 = _EStep(x, s2, w, a1, m1, v1)
    return a1, m1, v1, e1


def _pack(a, m, v) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.concatenate([np.log(np.maximum(a, 1e-300)), m, np.log(v)])


def _unpack(theta: np.ndarray, k: int, var_floor: float):
    la = theta[:k]
    a = np.exp(la - la.max())
    return a / a.sum(), theta[k:2 * k].copy(), np.maximum(np.exp(theta[2 * k:]), var_floor)


def _run_em(x, s2, w, a, m, v, *, var_floor, max_iter, tol):
    """Iterate to convergence from (a, m, v). Returns (a, m, v, loglike, n_iter, converged).

    Each iteration is a SQUAREM cycle (Varadhan & Roland 2008, Scand. J. Stat. 35, 335,
    scheme S3): two monotone steps theta1 = F(theta0) and theta2 = F(theta1), in
    (log a, m, log V), then the extrapolation
    theta0 - 2 alpha r + alpha^2 q, with r = theta1 - theta0, q = theta2 - 2 theta1 + theta0
    and alpha = -|r| / |q|, followed by one stabilising step F. The extrapolation is
    kept only if it beats theta2, so ln L never decreases. It converges when ln L rises
    by less than ``tol`` per (weighted) star in one cycle, or in its first step.
    """
    wsum = float(w.sum())
    k = len(a)
    a, m, v = (np.array(p, float) for p in (a, m, v))
    v = np.maximum(v, var_floor)
    e = _EStep(x, s2, w, a, m, v)
    for it in range(1, max_iter + 1):
        a1, m1, v1, e1 = _step(x, s2, w, a, m, v, e, wsum, var_floor)
        if e1.ll - e.ll < tol * wsum:  # converged already: one plain step no longer gains
            return a1, m1, v1, e1.ll, it, True
        a2, m2, v2, e2 = _step(x, s2, w, a1, m1, v1, e1, wsum, var_floor)
        best = (a2, m2, v2, e2)
        t0, t1, t2 = _pack(a, m, v), _pack(a1, m1, v1), _pack(a2, m2, v2)
        r, q = t1 - t0, t2 - 2.0 * t1 + t0
        nr, nq = math.sqrt(float((r * r).sum())), math.sqrt(float((q * q).sum()))
        if nr > 0 and nq > 0 and math.isfinite(nr) and math.isfinite(nq) and nr > nq:
            alpha = -nr / nq
            ax, mx, vx = _unpack(t0 - 2.0 * alpha * r + alpha * alpha * q, k, var_floor)
            if np.all(np.isfinite(ax)) and np.all(np.isfinite(mx)) and np.all(np.isfinite(vx)):
                ex = _EStep(x, s2, w, ax, mx, vx)
                if ex.ll > e2.ll:
                    best = _step(x, s2, w, ax, mx, vx, ex, wsum, var_floor)
        gain = best[3].ll - e.ll
        a, m, v, e = best
        if gain < tol * wsum:
            return a, m, v, e.ll, it, True
    return a, m, v, e.ll, max_iter, False


def _weighted_quantile(x: np.ndarray, w: np.ndarray, q) -> np.ndarray:
    """Quantiles of weighted data (Hazen plotting positions: equal weights give the usual median)."""
    order = np.argsort(x, kind="stable")
    xs, ws = x[order], w[order]
    c = np.cumsum(ws) - 0.5 * ws
    return np.interp(q, c / ws.sum(), xs)


def _initial(x, s2, w, k: int, var_floor: float, rng: np.random.Generator | None):
    """Starting mixture: moment-deconvolved width, means at quantiles of x shrunk toward the mean.

    The first start (``rng`` None) places the means at the (j + 1/2)/K quantiles. Later
    starts draw the quantile levels at random from ``rng``, so they are reproducible
    for a given seed.
    """
    wsum = w.sum()
    mu = float((w * x).sum() / wsum)
    var_obs = float((w * (x - mu) ** 2).sum() / wsum)
    v_int = max(var_obs - float((w * s2).sum() / wsum), var_floor)  # intrinsic variance by moments
    shrink = math.sqrt(v_int / var_obs) if var_obs > 0 else 0.0
    levels = (np.arange(k) + 0.5) / k if rng is None else np.sort(rng.uniform(0.05, 0.95, k))
    m = mu + (_weighted_quantile(x, w, levels) - mu) * shrink
    v = np.full(k, max(v_int - float(np.var(m)), v_int / k**2, var_floor))
    return np.full(k, 1.0 / k), m, v


def _split(a, m, v, var_floor):
    """K + 1 components from a K-component fit: the one with the largest a V is split in two, keeping its moments."""
    j = int(np.argmax(a * v))
    h = 0.5 * math.sqrt(v[j])
    return (np.concatenate([np.delete(a, j), [a[j] / 2] * 2]), np.concatenate([np.delete(m, j), [m[j] - h, m[j] + h]]),
            np.concatenate([np.delete(v, j), [max(0.75 * v[j], var_floor)] * 2]))


def _usable(x, err) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates and errors as flat float64 arrays, and the stars with both finite and a positive error."""
    x = np.asarray(x, float).ravel()
    err = np.asarray(err, float).ravel()
    if x.shape != err.shape:
        raise ValueError(f"x and err differ in length: {x.size} and {err.size}")
    with np.errstate(invalid="ignore"):
        return x, err, np.isfinite(x) & np.isfinite(err) & (err > 0)


def _prepare(x, err, weights):
    """Usable stars as float64 arrays, with weights rescaled to a mean of 1: (x, s2, w, n_dropped)."""
    x, err, ok = _usable(x, err)
    if weights is None:
        w = np.ones(x.size)
    else:
        w = np.asarray(weights, float).ravel()
        if w.shape != x.shape:
            raise ValueError(f"weights and x differ in length: {w.size} and {x.size}")
        if np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite and >= 0")
        ok &= w > 0
    n_used = int(ok.sum())
    n_dropped = x.size - n_used
    if n_used < MIN_STARS:
        raise ValueError(f"an MDF needs at least {MIN_STARS} stars with finite estimates, errors > 0 (and weights "
                         f"> 0); got {n_used} of {x.size} ({n_dropped} dropped)")
    w = w[ok]
    return x[ok], err[ok] ** 2, w * (n_used / w.sum()), n_dropped


def _check_fit_options(n_components, max_components, max_iter, tol, var_floor, n_init):
    if n_components is not None and (isinstance(n_components, bool) or not isinstance(n_components, int | np.integer)
                                     or n_components < 1):
        raise ValueError(f"n_components must be None or a positive integer, got {n_components!r}")
    if not isinstance(max_components, int | np.integer) or max_components < 1:
        raise ValueError(f"max_components must be a positive integer, got {max_components!r}")
    if not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    if not (tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    if not (var_floor > 0 and math.isfinite(var_floor)):
        raise ValueError(f"var_floor must be a finite number > 0, got {var_floor!r}")
    if not isinstance(n_init, int | np.integer) or n_init < 1:
        raise ValueError(f"n_init must be a positive integer, got {n_init!r}")


def _fit_prepared(x, s2, w, *, n_stars: float, n_dropped: int, n_components, max_iter, tol, seed, var_floor,
                  max_components, n_init) -> MixtureMDF:
    """Fit candidate K = 1, 2, ... to a coarse tolerance, choose K by BIC, then converge the chosen fit to ``tol``.

    Redundant components (K above what the data support) make EM crawl. BIC
    differences below ~1 do not matter, so a candidate stops once ln L rises by less
    than ``_SELECT_GAIN`` in a cycle, or after ``_SELECT_MAX_CYCLES`` cycles. The
    search stops at the first K whose BIC is not lower than that of K - 1.
    """
    _check_fit_options(n_components, max_components, max_iter, tol, var_floor, n_init)
    ks = [int(n_components)] if n_components is not None else list(range(1, int(max_components) + 1))
    rng = np.random.default_rng(seed)
    log_n = math.log(n_stars)
    coarse = max(tol, _SELECT_GAIN / float(w.sum()))
    fits, bics = [], []
    for k in ks:
        fit_k = None
        for start in range(1 if k == 1 else n_init):
            if start == 1 and fits:
                a0, m0, v0 = _split(*fits[-1][:3], var_floor)
            else:
                a0, m0, v0 = _initial(x, s2, w, k, var_floor, None if start == 0 else rng)
            res = _run_em(x, s2, w, a0, m0, v0, var_floor=var_floor, max_iter=min(max_iter, _SELECT_MAX_CYCLES),
                          tol=coarse)
            if fit_k is None or res[3] > fit_k[3]:
                fit_k = res
        bic = -2.0 * fit_k[3] + (3 * k - 1) * log_n
        if bics and not bic < bics[-1]:
            bics.append(bic)
            break
        fits.append(fit_k)
        bics.append(bic)
    j = int(np.argmin(bics[:len(fits)]))
    a, m, v, ll, n_iter, conv = fits[j]
    if coarse > tol:
        a, m, v, ll, n_more, conv = _run_em(x, s2, w, a, m, v, var_floor=var_floor, max_iter=max_iter, tol=tol)
        n_iter += n_more
        bics[j] = -2.0 * ll + (3 * ks[j] - 1) * log_n
    order = np.argsort(m, kind="stable")  # components sorted by mean: a stable labelling
    return MixtureMDF(a[order], m[order], v[order], n_stars=float(n_stars), n_dropped=int(n_dropped), loglike=ll,
                      bic=bics[j], n_iter=n_iter, converged=conv, bic_by_k=tuple(bics) if n_components is None else ())


def fit_mdf(x, err, n_components: int | None = None, weights=None, max_iter: int = DEFAULT_MAX_ITER,
            tol: float = DEFAULT_TOL, seed: int = 0, *, var_floor: float = VAR_FLOOR,
            max_components: int = MAX_COMPONENTS, n_init: int = 2) -> MixtureMDF:
    """The intrinsic MDF of stars with estimates ``x`` and Gaussian errors ``err`` (dex), by extreme deconvolution.

    Stars with a non-finite x or err, err <= 0, or weight 0 are dropped and counted in
    ``n_dropped``. Fewer than ``MIN_STARS`` usable stars raise ValueError. With
    ``n_components`` None, K is chosen among 1..``max_components`` by BIC. Each K > 1
    is fitted from ``n_init`` starts, and the best likelihood is kept. The first start
    puts the means at quantiles of x. The second splits a component of the K - 1 fit
    (while choosing K). Further starts use quantile levels drawn from ``seed``, so the
    result is deterministic for a given seed. ``weights`` are relative per-star weights
    (e.g. inverse selection probabilities). They are rescaled to sum to the number of
    stars used, so the likelihood and BIC count each star once on average. The
    returned components are sorted by mean.
    """
    xs, s2, w, n_dropped = _prepare(x, err, weights)
    return _fit_prepared(xs, s2, w, n_stars=float(xs.size), n_dropped=n_dropped, n_components=n_components,
                         max_iter=max_iter, tol=tol, seed=seed, var_floor=var_floor, max_components=max_components,
                         n_init=n_init)


# ----------------------------------------------------------------------------------------------------------------
# Summaries with bootstrap errors
# ----------------------------------------------------------------------------------------------------------------

def _summarise(x, s2, w, mdf: MixtureMDF, *, n_boot: int, seed: int, resample_bins: bool, n_used: int,
               max_iter: int, tol: float, var_floor: float, n_jobs: int) -> dict:
    """Bootstrap the deconvolved median/mean/width.

    With ``resample_bins``, ``w`` holds integer counts of stars at each point (the
    histogram bins), and a resample draws stars among the bins (multinomial).
    Otherwise each point is one star with relative weight w, and the stars are
    resampled with replacement.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0, got {n_boot!r}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")
    k = mdf.n_components
    n = x.size
    if resample_bins:
        n_total = int(round(w.sum()))
        p = w / w.sum()
    # One generator per resample, spawned from the seed: the same resamples whatever n_jobs or thread scheduling.
    seeds = np.random.SeedSequence(seed).spawn(n_boot)

    def one(b: int):
        rng = np.random.default_rng(seeds[b])
        if resample_bins:
            c = rng.multinomial(n_total, p)
            nz = c > 0
            wb = c[nz].astype(float)
        else:
            c = np.bincount(rng.integers(0, n, n), minlength=n)
            nz = c > 0
            wb = c[nz] * w[nz]
        a, m, v, _, _, conv = _run_em(x[nz], s2[nz], wb, mdf.weights, mdf.means, mdf.variances,
                                      var_floor=var_floor, max_iter=max_iter, tol=tol)
        return a, m, v, conv

    if n_jobs == 1 or n_boot < 2:
        results = [one(b) for b in range(n_boot)]
    else:  # numpy releases the GIL inside its array loops, so threads share the work
        with ThreadPoolExecutor(max_workers=int(n_jobs)) as pool:
            results = list(pool.map(one, range(n_boot)))
    boots = np.array([r[:3] for r in results], float).reshape(n_boot, 3, k).transpose(1, 0, 2)
    n_conv = sum(r[3] for r in results)

    def stats(name: str, value: float, draws: np.ndarray) -> dict:
        if draws.size >= 2:
            se = float(np.std(draws, ddof=1))
            p16, p84 = (float(p) for p in np.percentile(draws, [16.0, 84.0]))
        else:
            se = p16 = p84 = float("nan")
        return {name: float(value), f"{name}_se": se, f"{name}_p16": p16, f"{name}_p84": p84}

    if n_boot:
        med_b = _mixture_quantile(boots[0], boots[1], boots[2], np.full(n_boot, 0.5))
        mean_b, width_b = _mixture_moments(boots[0], boots[1], boots[2])
    else:
        med_b = mean_b = width_b = np.empty(0)
    wsum = w.sum()
    obs_mean = float((w * x).sum() / wsum)
    out = {"n_used": int(n_used), "n_dropped": int(mdf.n_dropped), "n_components": k, "n_boot": int(n_boot),
           "boot_converged_fraction": n_conv / n_boot if n_boot else float("nan")}
    out |= stats("median", mdf.median, med_b)
    out |= stats("mean", mdf.mean, mean_b)
    out |= stats("width", mdf.std, width_b)
    out |= {"observed_median": float(_weighted_quantile(x, w, 0.5)), "observed_mean": obs_mean,
            "observed_std": float(math.sqrt((w * (x - obs_mean) ** 2).sum() / wsum)), "mixture": mdf.to_dict()}
    return out


def mdf_summary(x, err, n_boot: int = 200, seed: int = 0, n_components: int | None = None, weights=None,
                n_jobs: int = 1, **fit_options) -> dict:
    """Deconvolved median, mean and width (std) of the MDF, with bootstrap errors, as a JSON-friendly dict.

    Keys: ``median``, ``mean``, ``width``, each with ``_se`` (bootstrap standard
    deviation) and ``_p16`` / ``_p84`` (percentiles over the resamples); the observed,
    not deconvolved, ``observed_median`` / ``observed_mean`` / ``observed_std`` of the
    estimates; ``n_used``, ``n_dropped``, ``n_components`` (K, chosen by BIC on the full
    sample unless given, then fixed in every resample), ``n_boot``,
    ``boot_converged_fraction`` and ``mixture`` (``MixtureMDF.to_dict()`` of the
    full-sample fit). With ``n_boot`` 0, the errors are NaN. The resamples run on
    ``n_jobs`` threads; the result does not depend on ``n_jobs``. Threads help only
    with idle cores, so the default is 1: parallelise over map cells instead.
    ``fit_options`` go to the fits, as in ``fit_mdf`` (max_iter, tol, var_floor,
    max_components, n_init).
    """
    opts = _fit_defaults(fit_options)
    xs, s2, w, n_dropped = _prepare(x, err, weights)
    mdf = _fit_prepared(xs, s2, w, n_stars=float(xs.size), n_dropped=n_dropped, n_components=n_components,
                        seed=seed, **opts)
    return _summarise(xs, s2, w, mdf, n_boot=n_boot, seed=seed, resample_bins=False, n_used=xs.size,
                      max_iter=opts["max_iter"], tol=opts["tol"], var_floor=opts["var_floor"], n_jobs=n_jobs)


def _fit_defaults(options: dict) -> dict:
    known = {"max_iter": DEFAULT_MAX_ITER, "tol": DEFAULT_TOL, "var_floor": VAR_FLOOR,
             "max_components": MAX_COMPONENTS, "n_init": 2}
    unknown = set(options) - set(known)
    if unknown:
        raise TypeError(f"unknown fit options: {sorted(unknown)}")
    return known | options


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
    counts are reported as dropped.
    """

    feh_edges = FEH_EDGES
    err_edges = ERR_EDGES

    def __init__(self, counts=None, n_invalid: int = 0, n_out_of_range: int = 0) -> None:
        shape = (FEH_EDGES.size - 1, ERR_EDGES.size - 1)
        if counts is None:
            self.counts = np.zeros(shape, np.int64)
        else:
            counts = np.asarray(counts)
            if counts.shape != shape:
                raise ValueError(f"counts of shape {counts.shape} do not match the bins {shape}")
            if not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 0):
                raise ValueError("counts must be non-negative integers")
            self.counts = counts.astype(np.int64, copy=True)
        self.n_invalid = int(n_invalid)
        self.n_out_of_range = int(n_out_of_range)

    @property
    def n(self) -> int:
        """Stars in the histogram."""
        return int(self.counts.sum())

    @property
    def n_dropped(self) -> int:
        return self.n_invalid + self.n_out_of_range

    def add(self, x, err) -> int:
        """Accumulate one chunk of stars; returns how many landed in the histogram."""
        x, err, valid = _usable(x, err)
        with np.errstate(invalid="ignore"):
            inside = valid & (x >= FEH_EDGES[0]) & (x < FEH_EDGES[-1]) & (err < ERR_EDGES[-1])
        ix = np.clip(np.searchsorted(FEH_EDGES, x[inside], side="right") - 1, 0, FEH_EDGES.size - 2)
        ie = np.clip(np.searchsorted(ERR_EDGES, err[inside], side="right") - 1, 0, ERR_EDGES.size - 2)
        flat = ix * (ERR_EDGES.size - 1) + ie
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        self.n_invalid += int(x.size - valid.sum())
        self.n_out_of_range += int(valid.sum() - inside.sum())
        return int(inside.sum())

    def merge(self, other: BinnedEstimates) -> BinnedEstimates:
        """A new histogram holding the stars of both (neither input is changed)."""
        if not isinstance(other, BinnedEstimates):
            raise TypeError(f"cannot merge BinnedEstimates with {type(other).__name__}")
        return BinnedEstimates(self.counts + other.counts, self.n_invalid + other.n_invalid,
                               self.n_out_of_range + other.n_out_of_range)

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
