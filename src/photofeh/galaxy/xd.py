"""Extreme deconvolution of per-star [Fe/H] estimates: the fit of an MDF and its bootstrap errors.

The model fitted, and why (Bovy, Hogg & Roweis 2011), are told in :mod:`photofeh.galaxy.mdf`; the mixture it
returns is :class:`photofeh.galaxy.mixture.MixtureMDF`. How it is fitted:

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
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from photofeh.galaxy.mixture import (
    _HALF_LOG_2PI,
    MixtureMDF,
    _mixture_moments,
    _mixture_quantile,
    _usable,
)

__all__ = ["VAR_FLOOR", "MIN_STARS", "MAX_COMPONENTS", "fit_mdf", "mdf_summary"]

VAR_FLOOR = 0.02**2  # dex^2: smallest component variance (stops collapse onto single stars)
MIN_STARS = 10  # fewer usable stars than this: refuse to fit
MAX_COMPONENTS = 4  # K is chosen among 1..MAX_COMPONENTS by BIC when not given
DEFAULT_MAX_ITER = 1000
DEFAULT_TOL = 1e-8  # stop when ln L per (weighted) star rises by less than this in one iteration

_SELECT_GAIN = 1e-3  # ln L per cycle: convergence while choosing K (BIC differences of ~1 matter)
_SELECT_MAX_CYCLES = 100  # cycles per candidate K while choosing K


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
