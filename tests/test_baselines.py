"""The Ivezic et al. 2008 / Bond et al. 2010 photometric metallicity baseline."""

from __future__ import annotations

import numpy as np
import pytest

from photofeh.model.baselines import IVEZIC_BOND2010, fit_ivezic, ivezic_feh, ivezic_valid


def test_published_polynomial_values():
    """Hand evaluation of Bond et al. 2010 eq. A1 at (u-g, g-r) = (1.0, 0.3):
    -13.13 + 14.09 + 8.412 - 1.653 - 5.90 - 5.2812 + 2.742 - 1.8549 + 0 + 1.5714 = -1.0037."""
    assert ivezic_feh(1.0, 0.3) == pytest.approx(-1.0037, abs=1e-3)
    # a solar-type colour (u-g ~ 1.3, g-r ~ 0.45) reads near-solar, a blue turn-off star metal-poor
    assert ivezic_feh(1.30, 0.45) > -0.6
    assert ivezic_feh(0.85, 0.25) < -1.5


def test_published_polynomial_across_the_validity_region():
    """Bond et al. 2010, ApJ 716, 1, eq. A1 (the revision of Ivezic et al. 2008, ApJ 684, 287, eq. 4):
    [Fe/H] = A + Bx + Cy + Dxy + Ex^2 + Fy^2 + Gx^2y + Hxy^2 + Ix^3 + Jy^3, x = u-g, y = g-r,
    (A..J) = (-13.13, 14.09, 28.04, -5.51, -5.90, -58.68, 9.14, -20.61, 0.0, 58.20), written out here term by
    term at eight colours spread over the validity region (0.2 < g-r < 0.6, -0.25 + 0.5x < y < 0.05 + 0.5x):
    a coefficient 10% off moves one of them by 0.4 to 2 dex, two terms swapped (x^2 y for x y^2) by far more.
    The values at these points, -2.17 to -0.68, lie in the paper's range of validity, -2.5 < [Fe/H] < 0."""
    A, B, C, D, E, F, G, H, I, J = -13.13, 14.09, 28.04, -5.51, -5.90, -58.68, 9.14, -20.61, 0.0, 58.20
    points = [(0.80, 0.22), (0.90, 0.25), (0.95, 0.40), (1.00, 0.30), (1.10, 0.35), (1.20, 0.45), (1.30, 0.50),
              (1.40, 0.55)]
    x, y = np.array(points).T
    expected = (A + B * x + C * y + D * x * y + E * x**2 + F * y**2 + G * x**2 * y + H * x * y**2 + I * x**3
                + J * y**3)
    assert ivezic_valid(x, y).all()
    np.testing.assert_allclose(ivezic_feh(x, y), expected, atol=1e-9)
    np.testing.assert_allclose(IVEZIC_BOND2010, [A, B, C, D, E, F, G, H, I, J])
    assert expected.min() > -2.5 and expected.max() < 0.0
    # [Fe/H] rises with u-g at fixed g-r through the region (the metallicity signal: redder u-g, more metals)
    assert np.all(np.diff(ivezic_feh(np.linspace(0.9, 1.3, 9), np.full(9, 0.4))) > 0)


def test_validity_region():
    assert ivezic_valid(1.0, 0.3) and ivezic_valid(1.2, 0.5)
    assert not ivezic_valid(1.0, 0.7)  # too red
    assert not ivezic_valid(1.6, 0.3)  # below the stellar locus band
    assert not ivezic_valid(0.5, 0.3)  # above it


def test_refit_recovers_coefficients():
    rng = np.random.default_rng(1)
    ug = rng.uniform(0.7, 1.6, 20_000)
    gr = 0.5 * ug - 0.2 + rng.uniform(0, 0.25, 20_000)
    feh = ivezic_feh(ug, gr) + rng.normal(0, 0.01, ug.size)
    coef = fit_ivezic(ug, gr, feh)
    ok = ivezic_valid(ug, gr)
    assert np.allclose(ivezic_feh(ug[ok], gr[ok], coef), ivezic_feh(ug[ok], gr[ok], IVEZIC_BOND2010), atol=0.01)


def _smooth_labels_with_outliers(n: int, rng: np.random.Generator):
    """Six features, a smooth label with 0.1 Gaussian noise, and 10% outliers (1.0 wide) as real labels have."""
    X = rng.uniform(-1, 1, (n, 6))
    y = np.sin(3 * X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.3 * X[:, 2] * X[:, 3] + rng.normal(0, 0.1, n)
    outlier = rng.random(n) < 0.1
    y[outlier] += rng.normal(0, 1.0, outlier.sum())
    return X, y[:, None]


def test_tuned_trees_beat_the_untuned_ones_and_stop_on_the_validation_split():
    """Seeded mock, 1,500 training, 500 validation, 1,500 test stars. The old built-in trees (L2, 63 leaves, 200
    rounds at 0.15: 0.205 here) against the tuned ones (0.126): a Gaussian-fit sigma at least 30% narrower on
    the test stars, with the noise (0.1) as the floor. Early stopping follows the validation split: it stops
    well before the most rounds, and at once when the validation labels are shuffled (nothing to learn)."""
    from photofeh.model.baselines import SEARCH_GRID, GradientBoostedBaseline
    from photofeh.model.evaluate import regression_metrics

    rng = np.random.default_rng(0)
    (X, Y), (X_val, Y_val), (X_test, Y_test) = (_smooth_labels_with_outliers(n, rng) for n in (1500, 500, 1500))
    untuned = GradientBoostedBaseline(n_rounds=200, learning_rate=0.15, tune=False, threads=1).fit(X, Y)
    tuned = GradientBoostedBaseline(n_rounds=1000, threads=1).fit(X, Y, validation=(X_val, Y_val))
    s_untuned, s_tuned = (regression_metrics(m.predict(X_test)[:, 0], Y_test[:, 0])["sigma_gauss"]
                          for m in (untuned, tuned))
    assert s_untuned == pytest.approx(0.205, abs=0.01) and s_tuned == pytest.approx(0.126, abs=0.01)
    assert 0.1 < s_tuned < 0.7 * s_untuned
    search = tuned.search[0]
    assert len(search["tried"]) == len(SEARCH_GRID) and search["n_validation"] == 500
    assert search["validation_mae"] <= min(t["validation_mae"] for t in search["tried"]) * 1.05
    best_tried = min(search["tried"], key=lambda t: t["validation_mae"])
    assert search["chosen"] == {k: best_tried[k] for k in search["chosen"]}
    assert 100 < search["best_iteration"] < 1000 == tuned.n_rounds
    assert tuned.models[0].best_iteration == search["best_iteration"]
    shuffled = GradientBoostedBaseline(n_rounds=1000, threads=1).fit(X, Y, validation=(X_val, rng.permutation(Y_val)))
    assert shuffled.search[0]["best_iteration"] < 20


def test_run_baselines_record_their_search_and_keep_it(tmp_path):
    """RunBaselines (what ``photofeh train`` fits): the validation split it was given and the shape chosen per
    label are in its meta and survive save/load, and the loaded trees predict the same (their best round)."""
    from photofeh.model.baselines import RunBaselines

    rng = np.random.default_rng(1)
    (X, Y), (X_val, Y_val) = (_smooth_labels_with_outliers(n, rng) for n in (600, 200))
    Y, Y_val = np.column_stack([Y, np.full(len(Y), np.nan)]), np.column_stack([Y_val, np.full(len(Y_val), np.nan)])
    base = RunBaselines.fit(X, Y, [f"x{k}" for k in range(6)], ["feh", "mabs_gaia_g"], n_rounds=1000,
                            validation=(X_val, Y_val))
    assert base.meta["validation"] == "the run's validation split" and base.meta["lightgbm_labels"] == ["feh"]
    search = base.meta["lightgbm_search"]["feh"]
    assert search["n_validation"] == 200 and search["n_train"] == 600 and search["best_iteration"] < 1000
    base.save(tmp_path / "b")
    again = RunBaselines.load(tmp_path / "b")
    assert again.meta["lightgbm_search"]["feh"] == search
    np.testing.assert_allclose(again.predict(X_val)["LightGBM"]["feh"], base.predict(X_val)["LightGBM"]["feh"],
                               rtol=1e-12)
    held_out = RunBaselines.fit(X, Y, [f"x{k}" for k in range(6)], ["feh", "mabs_gaia_g"], n_rounds=1000)
    assert held_out.meta["validation"] == "20% of the training stars (seeded)"
    assert abs(held_out.meta["lightgbm_search"]["feh"]["n_validation"] - 120) < 25
