"""The information limit (photofeh.simulate.information, issue 26 item 1b) against cases whose answer is known:
a toy colour model with linear sensitivities and Gaussian noise, where the Cramer-Rao bound is analytic and an
efficient unbiased estimator reaches it, and the stellar-model grid against the Yuan et al. 2015 locus."""

from __future__ import annotations

import numpy as np
import pytest

from photofeh.simulate import information as inf

BANDS = ["u", "g", "r"]
COLOURS = ["u-g", "g-r"]
# toy magnitudes: m = A theta + noise, theta = ([Fe/H], T); u is the metallicity-sensitive band
A = np.array([[0.30, 1.2],   # u
              [0.05, 0.8],   # g
              [0.00, 0.5]])  # r
SIG = np.array([0.04, 0.02, 0.015])


def toy(n=1):
    D = inf.difference_matrix(BANDS, COLOURS)
    J = np.broadcast_to(D @ A, (n, 2, 2)).copy()
    C = inf.feature_covariance(D, np.broadcast_to(SIG, (n, 3)))
    return D, J, C


def test_difference_matrix_and_correlated_colour_noise():
    D, _, C = toy()
    assert D.tolist() == [[1, -1, 0], [0, 1, -1]]
    # u-g and g-r share g: covariance -sigma_g^2
    assert C[0, 0, 1] == pytest.approx(-SIG[1] ** 2)
    assert C[0, 0, 0] == pytest.approx(SIG[0] ** 2 + SIG[1] ** 2)


def test_bound_is_analytic_for_one_colour_one_parameter():
    # one colour, only [Fe/H] unknown: sigma = sigma_colour / |d colour / d [Fe/H]|
    J = np.array([[[0.25]]])
    C = np.array([[[0.03**2]]])
    assert inf.feh_information_bound(J, C)[0] == pytest.approx(0.03 / 0.25)


def test_two_colours_two_parameters_match_the_closed_form():
    # two colours, two parameters: J square, so the marginal bound is the error of solving J theta = c exactly,
    # sqrt((J^-1 C J^-T)_00), written out by hand for the 2x2 case
    _, J, C = toy()
    j, c = J[0], C[0]
    det = j[0, 0] * j[1, 1] - j[0, 1] * j[1, 0]
    row = np.array([j[1, 1], -j[0, 1]]) / det  # first row of J^-1
    expected = np.sqrt(row @ c @ row)
    assert inf.feh_information_bound(J, C)[0] == pytest.approx(expected, rel=1e-10)
    # a nuisance known exactly gives the one-parameter answer; a prior between the two lies between
    known = inf.feh_information_bound(J, C, np.array([np.inf, 1e-9]))[0]
    assert known == pytest.approx(1 / np.sqrt(j[:, 0] @ np.linalg.solve(c, j[:, 0])), rel=1e-6)
    middle = inf.feh_information_bound(J, C, np.array([np.inf, 0.1]))[0]
    assert known < middle < expected


def test_colours_carry_what_magnitudes_with_an_unknown_distance_carry():
    # colours = magnitudes with the distance modulus marginalised: the same bound by another route
    rng = np.random.default_rng(1)
    A5 = rng.normal(0, 1, (5, 3))
    sig = rng.uniform(0.01, 0.05, 5)
    bands = list("abcde")
    colours = ["a-b", "b-c", "c-d", "d-e"]
    D = inf.difference_matrix(bands, colours)
    via_colours = inf.feh_information_bound((D @ A5)[None], inf.feature_covariance(D, sig[None]))[0]
    Jm = np.column_stack([A5, np.ones(5)])[None]  # the offset as a fourth parameter
    via_mags = inf.feh_information_bound(Jm, np.diag(sig**2)[None])[0]
    assert via_colours == pytest.approx(via_mags, rel=1e-9)
    # a missing band: its colours are useless, the colour across it keeps its information
    sig_missing = sig.copy()
    sig_missing[2] = np.nan
    with_gap = inf.feh_information_bound((D @ A5)[None], inf.feature_covariance(D, sig_missing[None]))[0]
    keep = [0, 1, 3, 4]
    Dk = inf.difference_matrix([bands[i] for i in keep], ["a-b", "b-d", "d-e"])
    without = inf.feh_information_bound((Dk @ A5[keep])[None], inf.feature_covariance(Dk, sig[keep][None]))[0]
    assert with_gap == pytest.approx(without, rel=1e-3)


def test_an_unbiased_estimator_fitted_on_simulated_data_does_not_beat_the_bound():
    """Simulate the toy survey, fit the colour model on training stars (least squares of colours on the
    parameters), invert it on test stars (generalised least squares: unbiased): its scatter reaches the bound
    within the Monte Carlo error and does not go below it. A regression of [Fe/H] on the colours does beat it,
    by leaning toward the training mean: it is biased (slope of estimate on truth below 1)."""
    rng = np.random.default_rng(26)
    D, J, C = toy()
    bound = inf.feh_information_bound(J, C)[0]

    def draw(n):
        theta = np.column_stack([rng.uniform(-2.0, 0.5, n), rng.uniform(-1.0, 1.0, n)])
        mags = theta @ A.T + rng.normal(0, 1, (n, 3)) * SIG
        return theta, mags @ D.T

    th_tr, c_tr = draw(20_000)
    X = np.column_stack([th_tr, np.ones(len(th_tr))])
    coef, *_ = np.linalg.lstsq(X, c_tr, rcond=None)  # colours = theta @ coef[:2] + coef[2]
    Jfit, c0 = coef[:2].T, coef[2]
    W = np.linalg.inv(C[0])
    th_te, c_te = draw(20_000)
    est = np.linalg.solve(Jfit.T @ W @ Jfit, Jfit.T @ W @ (c_te - c0).T).T[:, 0]
    res = est - th_te[:, 0]
    std, se = res.std(), res.std() / np.sqrt(2 * res.size)
    assert abs(res.mean()) < 4 * std / np.sqrt(res.size)
    assert std > bound - 4 * se
    assert std == pytest.approx(bound, rel=0.03)
    # the biased alternative: regress [Fe/H] on the colours
    Xc = np.column_stack([c_tr, np.ones(len(c_tr))])
    w, *_ = np.linalg.lstsq(Xc, th_tr[:, 0], rcond=None)
    reg = np.column_stack([c_te, np.ones(len(c_te))]) @ w
    slope = np.polyfit(th_te[:, 0], reg, 1)[0]
    assert (reg - th_te[:, 0]).std() < bound and slope < 0.95


def test_grid_sensitivity_follows_the_yuan_locus_for_a_dwarf():
    """The model's u-g sensitivity at fixed g-i, through the EEP parametrisation, against the empirical locus
    the mock is calibrated on (Yuan et al. 2015; the grid follows it in the median over old dwarfs, so 35%
    tolerance), for old metal-poor-to-solar main-sequence stars; plus, since the mock's target is the locus plus
    the SEGUE DR17 residual (loci.SEGUE_UG_RESIDUAL), however much the residual's own [Fe/H] slope moves it
    (0.02-0.12 mag/dex at these three stars)."""
    from photofeh.simulate.isochrones import IsochroneGrid, load_grid
    from photofeh.simulate.loci import dwarf_locus, segue_ug_residual

    grid = IsochroneGrid.from_table(load_grid())
    feh = np.array([-1.5, -1.0, -0.5])
    logage = np.full(3, 10.0)
    eep = inf.eep_from_mass(grid, feh, logage, np.full(3, 0.7))
    theta = {"feh": feh, "logage": logage, "eep": eep, "ebv": np.zeros(3), "dm": np.zeros(3)}
    bands = ["sdss_u", "sdss_g", "sdss_i"]
    J = inf.model_jacobian(grid, bands, theta)
    v = inf.model_values(grid, bands, theta)
    ug, gi = J[:, 0] - J[:, 1], J[:, 1] - J[:, 2]
    sens = ug[:, 0] - ug[:, 1] * gi[:, 0] / gi[:, 1]  # d(u-g)/d[Fe/H] at fixed g-i
    g_i = v[:, 1] - v[:, 2]
    h = 0.05
    up, down = dwarf_locus(g_i, feh + h), dwarf_locus(g_i, feh - h)
    yuan = (up["ug"] - down["ug"]) / (2 * h)
    residual_slope = (segue_ug_residual(up["gr"], feh + h) - segue_ug_residual(down["gr"], feh - h)) / (2 * h)
    assert np.all(sens > 0)
    assert np.all(np.abs(sens - yuan) <= 0.35 * yuan + np.abs(residual_slope)), (sens, yuan, residual_slope)
    # and the bound from (u-g, g-i) with g-i noiseless is sigma(u-g) / that sensitivity
    D = inf.difference_matrix(bands, ["sdss_u-sdss_g", "sdss_g-sdss_i"])
    C = inf.feature_covariance(D, np.array([[0.03, 1e-5, 1e-5]] * 3))
    Jf = np.einsum("fb,nbp->nfp", D, J)[:, :, :2]  # [Fe/H] and EEP only
    np.testing.assert_allclose(inf.feh_information_bound(Jf, C), 0.03 / np.abs(sens), rtol=1e-3)
