"""Baselines every model must beat: the Ivezic et al. 2008 polynomial and gradient-boosted trees."""

from __future__ import annotations

import numpy as np

__all__ = ["IVEZIC_BOND2010", "ivezic_terms", "ivezic_feh", "ivezic_valid", "fit_ivezic", "GradientBoostedBaseline",
           "RunBaselines", "BASELINE_FOLDER"]

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

    def __init__(self, n_rounds: int = 600, seed: int = 0, threads: int = 2, allow_missing: bool = False,
                 learning_rate: float = 0.05):
        self.params = {"objective": "regression", "learning_rate": learning_rate, "num_leaves": 63,
                       "min_data_in_leaf": 40, "bagging_fraction": 0.8, "bagging_freq": 1, "seed": seed, "verbose": -1,
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


IVEZIC_FEATURES = ("sdss_u-sdss_g", "sdss_g-sdss_r")  # the polynomial's x = (u-g)_0, y = (g-r)_0
BASELINE_FOLDER = "baselines"  # inside a run directory


class RunBaselines:
    """The baselines of one training run, fitted on its training split and stored in the run folder, so that
    ``photofeh evaluate`` and the report compare the network with them on exactly the same test stars.

    ``lightgbm``: a :class:`GradientBoostedBaseline` on the network's features, one regressor per label;
    ``ivezic``: the Ivezic et al. 2008 polynomial form refitted to the training [Fe/H] (when the features
    hold dereddened u-g and g-r), predicting only inside its validity region (:func:`ivezic_valid`).
    """

    def __init__(self, features: list[str], labels: list[str], lightgbm: GradientBoostedBaseline | None,
                 ivezic: np.ndarray | None, meta: dict | None = None):
        self.features, self.labels = list(features), list(labels)
        self.lightgbm, self.ivezic = lightgbm, ivezic
        self.meta = meta or {}

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, features, labels, n_rounds: int = 200, seed: int = 0,
            threads: int = 1, allow_missing: bool = False) -> RunBaselines:
        """Fit on the training stars. The trees' learning rate is 30 / ``n_rounds`` (at most 0.2): the product
        that sets how far boosting gets, 0.15 at the default 200 rounds, as the benchmark's 0.05 x 600."""
        import time

        t0 = time.perf_counter()
        labels = list(labels)
        fitted = [j for j in range(len(labels)) if np.isfinite(Y[:, j]).sum() >= 20]  # parallax labels: none
        gbt = GradientBoostedBaseline(n_rounds=n_rounds, seed=seed, threads=threads, allow_missing=allow_missing,
                                      learning_rate=min(30.0 / max(n_rounds, 1), 0.2))
        gbt.fit(X, Y[:, fitted])
        coef = None
        if "feh" in labels and all(f in features for f in IVEZIC_FEATURES):
            ug, gr = (X[:, list(features).index(f)] for f in IVEZIC_FEATURES)
            if np.sum(ivezic_valid(ug, gr) & np.isfinite(Y[:, list(labels).index("feh")])) >= 20:
                coef = fit_ivezic(ug, gr, Y[:, list(labels).index("feh")])
        meta = {"n_train": int(len(X)), "n_rounds": n_rounds, "seconds": round(time.perf_counter() - t0, 1),
                "lightgbm_labels": [labels[j] for j in fitted]}
        return cls(features, labels, gbt, coef, meta)

    def predict(self, X: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """{baseline name: {label: prediction}}; NaN where a baseline cannot predict (e.g. outside the
        polynomial's colour range, or a missing feature for trees trained on complete rows)."""
        out: dict[str, dict[str, np.ndarray]] = {}
        if self.lightgbm is not None:
            complete = np.all(np.isfinite(X), axis=1) | self.lightgbm.allow_missing
            pred = self.lightgbm.predict(X)
            names = self.meta.get("lightgbm_labels", self.labels)
            out["LightGBM"] = {lab: np.where(complete, pred[:, j], np.nan) for j, lab in enumerate(names)}
        if self.ivezic is not None:
            ug, gr = (X[:, self.features.index(f)] for f in IVEZIC_FEATURES)
            with np.errstate(invalid="ignore"):
                feh = np.where(ivezic_valid(ug, gr), ivezic_feh(ug, gr, self.ivezic), np.nan)
            out["Ivezic+08 form"] = {"feh": feh}
        return out

    def save(self, folder) -> None:
        import json
        from pathlib import Path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.lightgbm is not None:
            for lab, booster in zip(self.meta.get("lightgbm_labels", self.labels), self.lightgbm.models, strict=True):
                booster.save_model(str(folder / f"lightgbm_{lab}.txt"))
        info = {"features": self.features, "labels": self.labels, "lightgbm": self.lightgbm is not None,
                "lightgbm_params": self.lightgbm.params if self.lightgbm is not None else None,
                "allow_missing": bool(self.lightgbm.allow_missing) if self.lightgbm is not None else False,
                "ivezic_coefficients": None if self.ivezic is None else [float(c) for c in self.ivezic],
                **self.meta}
        (folder / "baselines.json").write_text(json.dumps(info, indent=2) + "\n")

    @classmethod
    def load(cls, folder) -> RunBaselines | None:
        """The baselines stored in a run folder's ``baselines/``; None if the run has none."""
        import json
        from pathlib import Path

        folder = Path(folder)
        if not (folder / "baselines.json").is_file():
            return None
        info = json.loads((folder / "baselines.json").read_text())
        gbt = None
        if info["lightgbm"]:
            import lightgbm as lgb

            gbt = GradientBoostedBaseline(allow_missing=info["allow_missing"])
            gbt.models = [lgb.Booster(model_file=str(folder / f"lightgbm_{lab}.txt"))
                          for lab in info.get("lightgbm_labels", info["labels"])]
        coef = None if info["ivezic_coefficients"] is None else np.asarray(info["ivezic_coefficients"], float)
        meta = {k: info[k] for k in ("n_train", "n_rounds", "seconds", "lightgbm_labels") if k in info}
        return cls(info["features"], info["labels"], gbt, coef, meta)
