"""Baselines every model must beat: the Ivezic et al. 2008 polynomial and gradient-boosted trees."""

from __future__ import annotations

import numpy as np

__all__ = ["IVEZIC_BOND2010", "ivezic_terms", "ivezic_feh", "ivezic_valid", "fit_ivezic", "GradientBoostedBaseline"]

# Photometric metallicity of Ivezic et al. 2008 (ApJ 684, 287, eq. 4), with the
# coefficients as revised by Bond et al. 2010 (ApJ 716, 1, eq. A1):
# [Fe/H] = A + Bx + Cy + Dxy + Ex^2 + Fy^2 + Gx^2y + Hxy^2 + Ix^3 + Jy^3,
# x = (u-g)_0, y = (g-r)_0 (dereddened SDSS).
IVEZIC_BOND2010 = np.array([-13.13, 14.09, 28.04, -5.51, -5.90, -58.68, 9.14, -20.61, 0.00, 58.20])


def ivezic_terms(ug: np.ndarray, gr: np.ndarray) -> np.ndarray:
    """The ten polynomial terms, in the order of the coefficients A..J."""
    x, y = np.asarray(ug, float), np.asarray(gr, float)
    return np.stack([np.ones_like(x), x, y, x * y, x**2, y**2, x**2 * y, x * y**2, x**3, y**3], axis=-1)


def ivezic_feh(ug, gr, coefficients: np.ndarray = IVEZIC_BOND2010) -> np.ndarray:
    """Photometric [Fe/H] from the polynomial (published coefficients by default)."""
    return ivezic_terms(ug, gr) @ coefficients


def ivezic_valid(ug, gr) -> np.ndarray:
    """Validity region: F/G main-sequence colours, 0.2 < g-r < 0.6 and
    -0.25 + 0.5(u-g) < g-r < 0.05 + 0.5(u-g) (Ivezic et al. 2008, section 3)."""
    ug, gr = np.asarray(ug, float), np.asarray(gr, float)
    return (gr > 0.2) & (gr < 0.6) & (gr > -0.25 + 0.5 * ug) & (gr < 0.05 + 0.5 * ug)


def fit_ivezic(ug, gr, feh) -> np.ndarray:
    """Least-squares coefficients of the same functional form, on stars in the validity region.

    Model colours differ from the empirical SDSS locus, so on a mock survey
    the fair comparison is the refitted form, not the published numbers.
    """
    ok = ivezic_valid(ug, gr) & np.isfinite(feh) & np.isfinite(ug) & np.isfinite(gr)
    coef, *_ = np.linalg.lstsq(ivezic_terms(ug[ok], gr[ok]), np.asarray(feh)[ok], rcond=None)
    return coef


class GradientBoostedBaseline:
    """One LightGBM regressor per label on the same features as the network."""

    def __init__(self, n_rounds: int = 600, seed: int = 0, threads: int = 2, allow_missing: bool = False):
        self.params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 63, "min_data_in_leaf": 40,
                       "bagging_fraction": 0.8, "bagging_freq": 1, "seed": seed, "verbose": -1,
                       "num_threads": threads}
        self.n_rounds = n_rounds
        self.allow_missing = allow_missing  # LightGBM learns where NaN features go (for incomplete photometry)
        self.models: list = []

    def fit(self, X: np.ndarray, Y: np.ndarray) -> GradientBoostedBaseline:
        import lightgbm as lgb

        self.models = []
        for j in range(Y.shape[1]):
            ok = np.isfinite(Y[:, j]) & (True if self.allow_missing else np.all(np.isfinite(X), axis=1))
            self.models.append(lgb.train(self.params, lgb.Dataset(X[ok], Y[ok, j]), num_boost_round=self.n_rounds))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([m.predict(X) for m in self.models])
