"""Extreme-deconvolution MDFs (photofeh.galaxy.mdf) against known truths and independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import optimize, stats

from photofeh.galaxy.mdf import (
    ERR_EDGES,
    FEH_EDGES,
    MIN_STARS,
    VAR_FLOOR,
    BinnedEstimates,
    MixtureMDF,
    fit_mdf,
    mdf_summary,
)


def one_gaussian(seed: int, n: int, mean: float = -1.5, sd: float = 0.3, err_range=(0.1, 0.6)):
    rng = np.random.default_rng(seed)
    err = rng.uniform(*err_range, n)
    return rng.normal(mean, sd, n) + err * rng.standard_normal(n), err


def halo_disk(seed: int, n: int, err_range=(0.1, 0.5)):
    """Halo N(-1.5, 0.3) with weight 0.3 plus disk N(-0.6, 0.2) with weight 0.7."""
    rng = np.random.default_rng(seed)
    halo = rng.random(n) < 0.3
    true = np.where(halo, rng.normal(-1.5, 0.3, n), rng.normal(-0.6, 0.2, n))
    err = rng.uniform(*err_range, n)
    return true + err * rng.standard_normal(n), err


def halo_disk_median() -> float:
    """The true median, from scipy's normal cdf and Brent's method (not from photofeh)."""
    cdf = lambda z: 0.3 * stats.norm.cdf(z, -1.5, 0.3) + 0.7 * stats.norm.cdf(z, -0.6, 0.2) - 0.5  # noqa: E731
    return optimize.brentq(cdf, -3.0, 1.0, xtol=1e-12)


# --------------------------------------------------------------------------------------------------------------
# Recovery of known truths
# --------------------------------------------------------------------------------------------------------------

def test_single_gaussian_deconvolved():
    x, err = one_gaussian(seed=1, n=5000)
    mdf = fit_mdf(x, err)
    assert mdf.n_components == 1  # BIC does not invent structure
    assert abs(mdf.mean - (-1.5)) < 0.02
    assert abs(mdf.median - (-1.5)) < 0.02
    assert abs(mdf.std - 0.3) < 0.02
    # the estimates themselves are much broader: sqrt(0.3^2 + <err^2>) = 0.48
    assert np.std(x) > 0.45
    assert mdf.n_stars == 5000 and mdf.n_dropped == 0 and mdf.converged


def test_bootstrap_errors_cover_the_truth():
    """Over 20 seeded samples, truth within the 1-sigma bootstrap bar ~68% of the time (50-85% allowed)."""
    inside_1, inside_2 = [], []
    for seed in range(20):
        x, err = one_gaussian(seed=100 + seed, n=1000)
        s = mdf_summary(x, err, n_boot=100, seed=seed, n_jobs=1)
        assert s["n_boot"] == 100 and s["boot_converged_fraction"] == 1.0
        assert s["median_p16"] < s["median"] < s["median_p84"]
        for name, truth in (("mean", -1.5), ("width", 0.3)):
            z = abs(s[name] - truth) / s[f"{name}_se"]
            inside_1.append(z < 1.0)
            inside_2.append(z < 2.0)
    assert 0.50 <= np.mean(inside_1) <= 0.85
    assert np.mean(inside_2) >= 0.85


def test_two_components_chosen_and_recovered():
    x, err = halo_disk(seed=3, n=5000)
    mdf = fit_mdf(x, err)
    assert mdf.n_components == 2
    assert np.argmin(mdf.bic_by_k) == 1
    (w_halo, w_disk), (m_halo, m_disk), (v_halo, v_disk) = mdf.weights, mdf.means, mdf.variances
    assert abs(w_halo - 0.3) < 0.06 and abs(w_disk - 0.7) < 0.06
    assert abs(m_halo - (-1.5)) < 0.1 and abs(m_disk - (-0.6)) < 0.05
    assert abs(np.sqrt(v_halo) - 0.3) < 0.07 and abs(np.sqrt(v_disk) - 0.2) < 0.04
    assert abs(mdf.median - halo_disk_median()) < 0.03
    true_std = np.sqrt(0.3 * (0.09 + 1.5**2) + 0.7 * (0.04 + 0.6**2) - (0.3 * -1.5 + 0.7 * -0.6) ** 2)
    assert abs(mdf.std - true_std) < 0.03


def test_metal_poor_cluster_has_no_width():
    rng = np.random.default_rng(4)
    err = rng.uniform(0.2, 0.4, 300)
    x = -2.1 + err * rng.standard_normal(300)
    s = mdf_summary(x, err, n_boot=100, seed=4)
    assert abs(s["median"] - (-2.1)) < 0.05
    assert s["width"] < 0.1
    assert s["observed_std"] > 0.25  # while the estimates scatter by their errors


# --------------------------------------------------------------------------------------------------------------
# Independent computations of the maximum-likelihood solution
# --------------------------------------------------------------------------------------------------------------

def test_k1_equal_errors_is_analytic():
    """x_i ~ N(m, V + s^2) with one s: ML mean = sample mean, V = max(sample variance - s^2, floor)."""
    rng = np.random.default_rng(5)
    s = 0.25
    x = rng.normal(-0.4, 0.35, 2000) + s * rng.standard_normal(2000)
    mdf = fit_mdf(x, np.full(x.size, s), n_components=1, tol=1e-14)
    assert mdf.means[0] == pytest.approx(x.mean(), abs=1e-10)
    assert mdf.variances[0] == pytest.approx(x.var() - s**2, rel=1e-8)
    # intrinsic width far below the errors: the ML variance is on the floor, the mean still the sample mean
    x = -2.1 + 0.4 * rng.standard_normal(300)
    mdf = fit_mdf(x, np.full(x.size, 0.4), n_components=1, tol=1e-14)
    assert x.var() - 0.4**2 < VAR_FLOOR
    assert mdf.variances[0] == VAR_FLOOR
    assert mdf.means[0] == pytest.approx(x.mean(), abs=1e-10)


def test_heteroscedastic_ml_matches_direct_optimisation():
    """Two components, unequal errors: XD finds the optimum that Nelder-Mead finds on the likelihood from scipy."""
    x, err = halo_disk(seed=6, n=1500)
    mdf = fit_mdf(x, err, n_components=2, tol=1e-12)

    def nll(p):
        a = 1.0 / (1.0 + np.exp(-p[0]))
        like = (a * stats.norm.pdf(x, p[1], np.sqrt(np.exp(p[3]) + err**2))
                + (1 - a) * stats.norm.pdf(x, p[2], np.sqrt(np.exp(p[4]) + err**2)))
        return -np.log(like).sum()

    start = [0.0, -1.3, -0.5, np.log(0.05), np.log(0.05)]
    best = optimize.minimize(nll, start, method="Nelder-Mead",
                             options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20000, "maxfev": 20000})
    a = 1.0 / (1.0 + np.exp(-best.x[0]))
    assert -best.fun <= mdf.loglike + 1e-6  # XD is at least as good as the direct optimiser
    assert mdf.loglike == pytest.approx(-best.fun, abs=1e-4)
    np.testing.assert_allclose(mdf.weights, [a, 1 - a], atol=2e-3)
    np.testing.assert_allclose(mdf.means, best.x[1:3], atol=2e-3)
    np.testing.assert_allclose(mdf.variances, np.exp(best.x[3:5]), atol=2e-3)
    # and the stored log-likelihood is the one the method computes
    assert mdf.log_likelihood(x, err) == pytest.approx(mdf.loglike, rel=1e-12)


def test_frequency_weights_equal_repeated_stars():
    x, err = halo_disk(seed=7, n=600)
    counts = np.random.default_rng(7).integers(1, 4, x.size)
    weighted = fit_mdf(x, err, n_components=2, weights=counts, tol=1e-13)
    repeated = fit_mdf(np.repeat(x, counts), np.repeat(err, counts), n_components=2, tol=1e-13)
    # equal to convergence precision (a wrong weighting would be off by ~0.01)
    np.testing.assert_allclose(weighted.weights, repeated.weights, atol=2e-5)
    np.testing.assert_allclose(weighted.means, repeated.means, atol=2e-5)
    np.testing.assert_allclose(weighted.variances, repeated.variances, atol=2e-5)
    unweighted = fit_mdf(x, err, n_components=2, tol=1e-13)
    assert np.max(np.abs(unweighted.means - repeated.means)) > 1e-3


# --------------------------------------------------------------------------------------------------------------
# The mixture object
# --------------------------------------------------------------------------------------------------------------

def test_mixture_distribution_functions():
    one = MixtureMDF([1.0], [-1.2], [0.09])
    grid = np.linspace(-3, 1, 41)
    np.testing.assert_allclose(one.pdf(grid), stats.norm.pdf(grid, -1.2, 0.3), rtol=1e-12)
    np.testing.assert_allclose(one.cdf(grid), stats.norm.cdf(grid, -1.2, 0.3), rtol=1e-12)
    q = np.array([1e-12, 0.01, 0.16, 0.5, 0.84, 0.99, 1 - 1e-12])
    np.testing.assert_allclose(one.quantile(q), stats.norm.ppf(q, -1.2, 0.3), rtol=1e-10, atol=1e-12)
    assert one.quantile(0.0) == -np.inf and one.quantile(1.0) == np.inf
    assert isinstance(one.median, float) and one.median == pytest.approx(-1.2, abs=1e-12)

    three = MixtureMDF([0.2, 0.5, 0.3], [-2.0, -0.8, -0.3], [0.04, 0.01, 0.0025])
    qs = np.array([1e-9, 0.05, 0.3, 0.5, 0.7, 0.95, 1 - 1e-9])
    np.testing.assert_allclose(three.cdf(three.quantile(qs)), qs, rtol=1e-9)
    fine = np.linspace(-5, 2, 200001)
    assert np.trapezoid(three.pdf(fine), fine) == pytest.approx(1.0, abs=1e-9)
    mean = np.trapezoid(fine * three.pdf(fine), fine)
    assert three.mean == pytest.approx(mean, abs=1e-9)
    assert three.std == pytest.approx(np.sqrt(np.trapezoid((fine - mean) ** 2 * three.pdf(fine), fine)), abs=1e-9)
    draws = three.sample(200_000, rng=1)
    assert draws.mean() == pytest.approx(three.mean, abs=0.005)
    assert draws.std() == pytest.approx(three.std, abs=0.005)
    assert np.array_equal(draws, three.sample(200_000, rng=np.random.default_rng(1)))
    with pytest.raises(ValueError, match="quantile levels"):
        three.quantile(1.5)


def test_log_likelihood_is_the_convolved_density():
    mdf = MixtureMDF([0.4, 0.6], [-1.4, -0.5], [0.06, 0.03])
    x = np.array([-1.0, -0.2, np.nan, -3.0])
    err = np.array([0.2, 0.3, 0.2, -0.1])
    direct = np.log(0.4 * stats.norm.pdf(x[:2], -1.4, np.sqrt(0.06 + err[:2] ** 2))
                    + 0.6 * stats.norm.pdf(x[:2], -0.5, np.sqrt(0.03 + err[:2] ** 2)))
    per_star = mdf.log_likelihood(x, err, per_star=True)
    np.testing.assert_allclose(per_star[:2], direct, rtol=1e-12)
    assert np.isnan(per_star[2:]).all()
    assert mdf.log_likelihood(x, err) == pytest.approx(direct.sum(), rel=1e-12)


def test_mixture_round_trips_through_json():
    x, err = halo_disk(seed=8, n=2000)
    mdf = fit_mdf(x, err)
    back = MixtureMDF.from_dict(json.loads(json.dumps(mdf.to_dict(), allow_nan=False)))
    for name in ("weights", "means", "variances"):
        np.testing.assert_array_equal(getattr(back, name), getattr(mdf, name))
    assert (back.loglike, back.bic, back.n_stars, back.n_iter, back.bic_by_k) == \
        (mdf.loglike, mdf.bic, mdf.n_stars, mdf.n_iter, mdf.bic_by_k)
    hand = MixtureMDF([1.0], [0.0], [0.1])  # NaN fit fields become null, and come back as NaN
    assert json.loads(json.dumps(hand.to_dict(), allow_nan=False))["loglike"] is None
    assert np.isnan(MixtureMDF.from_dict(hand.to_dict()).loglike)
    with pytest.raises(ValueError):
        mdf.weights[0] = 0.5  # frozen, arrays included
    for bad in (dict(weights=[0.5, 0.4], means=[0, 1], variances=[1, 1]),
                dict(weights=[1.0], means=[0.0], variances=[0.0]),
                dict(weights=[0.5, 0.5], means=[0.0], variances=[1.0, 1.0])):
        with pytest.raises(ValueError):
            MixtureMDF(**bad)


# --------------------------------------------------------------------------------------------------------------
# Summaries and bad input
# --------------------------------------------------------------------------------------------------------------

def test_summary_contents_and_determinism():
    x, err = halo_disk(seed=9, n=3000)
    x[:5] = np.nan
    err[5:8] = 0.0
    s = mdf_summary(x, err, n_boot=40, seed=2, n_jobs=1)
    assert s["n_used"] == 2992 and s["n_dropped"] == 8 and s["n_components"] == s["mixture"]["n_components"]
    assert s["observed_median"] == pytest.approx(np.median(x[8:]), abs=1e-3)
    assert s["observed_std"] == pytest.approx(np.std(x[8:]), rel=1e-12)
    assert s["observed_std"] > s["width"] + 0.05  # deconvolution narrows the distribution
    for name in ("median", "mean", "width"):
        assert 0 < s[f"{name}_se"] < 0.05
        assert s[f"{name}_p16"] < s[f"{name}_p84"]
    json.dumps(s, allow_nan=False)
    assert mdf_summary(x, err, n_boot=40, seed=2, n_jobs=2) == s  # threads change nothing
    no_boot = mdf_summary(x, err, n_boot=0)
    assert np.isnan(no_boot["median_se"]) and no_boot["median"] == pytest.approx(s["median"], abs=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="at least 10 stars"):
        fit_mdf(np.full(100, np.nan), np.full(100, 0.2))
    with pytest.raises(ValueError, match="at least 10 stars"):
        fit_mdf(np.zeros(MIN_STARS - 1), np.full(MIN_STARS - 1, 0.2))
    with pytest.raises(ValueError, match="at least 10 stars"):
        mdf_summary(np.zeros(50), np.full(50, -0.2))
    with pytest.raises(ValueError, match="differ in length"):
        fit_mdf(np.zeros(50), np.full(49, 0.2))
    with pytest.raises(ValueError, match="weights"):
        fit_mdf(np.zeros(50), np.full(50, 0.2), weights=-np.ones(50))
    with pytest.raises(ValueError, match="n_components"):
        fit_mdf(np.zeros(50), np.full(50, 0.2), n_components=0)
    with pytest.raises(ValueError, match="n_boot"):
        mdf_summary(np.zeros(50), np.full(50, 0.2), n_boot=-1)
    with pytest.raises(TypeError, match="unknown fit options"):
        mdf_summary(np.zeros(50), np.full(50, 0.2), n_boots=10)
    # bad stars among good ones are dropped and counted
    x, err = one_gaussian(seed=10, n=500)
    err[:20] = -0.1
    err[20:30] = np.inf
    x[30:35] = np.nan
    mdf = fit_mdf(x, err)
    assert mdf.n_dropped == 35 and mdf.n_stars == 465
    assert mdf.mean == pytest.approx(fit_mdf(x[35:], err[35:]).mean, abs=1e-12)


# --------------------------------------------------------------------------------------------------------------
# Streaming histograms
# --------------------------------------------------------------------------------------------------------------

def test_edges_are_fixed_constants():
    np.testing.assert_allclose(np.diff(FEH_EDGES), 0.02, atol=1e-9)
    assert FEH_EDGES[0] == -5.0 and FEH_EDGES[-1] == 1.5
    assert ERR_EDGES[0] == 0.0 and ERR_EDGES[-1] == 1.5
    assert np.all((np.diff(ERR_EDGES) > 0.0199) & (np.diff(ERR_EDGES) < 0.0501))
    assert BinnedEstimates().counts.shape == (FEH_EDGES.size - 1, ERR_EDGES.size - 1)


def test_histogram_fit_equals_raw_fit():
    x, err = halo_disk(seed=11, n=20_000)
    raw = fit_mdf(x, err)
    hist = BinnedEstimates()
    assert hist.add(x, err) == x.size
    binned = hist.fit()
    assert binned.n_stars == x.size
    assert abs(binned.median - raw.median) < 0.01
    assert abs(binned.std - raw.std) < 0.01
    assert abs(binned.median - halo_disk_median()) < 0.03
    one_x, one_err = one_gaussian(seed=12, n=20_000)
    cluster = BinnedEstimates()
    cluster.add(one_x, one_err)
    raw1, binned1 = fit_mdf(one_x, one_err), cluster.fit()
    assert abs(binned1.median - raw1.median) < 0.01 and abs(binned1.std - raw1.std) < 0.01
    s = cluster.summary(n_boot=50, seed=1)
    assert s["n_used"] == 20_000 and 0 < s["median_se"] < 0.02 and 0 < s["width_se"] < 0.02
    assert abs(s["median"] - (-1.5)) < 3 * s["median_se"] + 0.005


def test_histogram_merge_is_exact_and_associative():
    x, err = halo_disk(seed=13, n=9000)
    x[:3] = np.nan
    x[3:5] = 2.0  # above the estimate range
    err[5:7] = 2.0  # above the error range
    err[7] = -1.0
    everything = BinnedEstimates()
    everything.add(x, err)
    parts = []
    for sl in (slice(0, 2000), slice(2000, 6500), slice(6500, None)):
        p = BinnedEstimates()
        p.add(x[sl], err[sl])
        parts.append(p)
    a, b, c = parts
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    for merged in (left, right, c.merge(a).merge(b)):
        assert np.array_equal(merged.counts, everything.counts)
        assert (merged.n_invalid, merged.n_out_of_range) == (everything.n_invalid, everything.n_out_of_range)
    assert (everything.n_invalid, everything.n_out_of_range, everything.n) == (4, 4, 8992)
    assert a.n == 2000 - 8  # merge made new histograms; the parts are unchanged
    fa, fb = left.fit(), everything.fit()
    np.testing.assert_array_equal(fa.means, fb.means)
    assert fb.n_dropped == 8
    with pytest.raises(ValueError, match="at least 10 stars"):
        BinnedEstimates().fit()
