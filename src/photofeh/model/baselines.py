"""Baselines every model must beat: the Ivezic et al. 2008 polynomial and gradient-boosted trees."""

from __future__ import annotations

import numpy as np

__all__ = ["IVEZIC_BOND2010", "ivezic_terms", "ivezic_feh", "ivezic_valid", "fit_ivezic", "GradientBoostedBaseline",
           "RunBaselines", "BASELINE_FOLDER", "SEARCH_GRID", "UNTUNED_PARAMS"]

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


# The untuned trees every run fitted before issue 25 (a fixed size, no validation split): kept to compare
# with (benchmarks/bench_green2020.py, tests/test_baselines.py); ``photofeh train`` fits the tuned ones.
UNTUNED_PARAMS = {"objective": "regression", "num_leaves": 63, "min_data_in_leaf": 40}

# The tuned trees' search (GradientBoostedBaseline(tune=True)), per label, on the validation split only.
# Objective L1 (median regression), validation loss its own, the mean absolute error: spectroscopic labels
# have outliers and what is scored is the width of the residuals' core. On the green2020 sample's training /
# validation split (seed 0), L2, Huber and L1 over 36 tree shapes each: L1 gave the narrowest validation
# residuals for [Fe/H], log g and Teff (median Gaussian sigma 0.199 dex, 0.153, 108 K against L2's 0.207,
# 0.155, 110 K). lambda_l2 = 3 was no better than 0 there (Teff 109 K against 107): it stays 0; the search spans
# num_leaves, min_data_in_leaf and feature_fraction.
TUNED_BASE = {"objective": "l1", "metric": "l1", "bagging_fraction": 0.8, "bagging_freq": 1}
SEARCH_GRID = tuple({"num_leaves": nl, "min_data_in_leaf": md, "feature_fraction": ff}
                    for nl in (15, 63) for md in (10, 40) for ff in (0.7, 1.0))
SEARCH_MAX_STARS = 20_000  # training stars the search sees at most (a seeded subset); the final fit sees all
PATIENCE = 100  # rounds without a lower validation loss before stopping (half in the search's faster rounds)
VALIDATION_FRACTION = 0.2  # of the training stars, held out when the caller gives no validation split


class GradientBoostedBaseline:
    """One LightGBM regressor per label on the same features as the network.

    ``tune=True`` (the built-in baseline of every run): per label, a small search on the validation split
    only, never on test stars. Objective L1 (median regression), validation loss the mean absolute error.
    The 8 tree shapes of :data:`SEARCH_GRID` (``num_leaves`` 15 or 63, ``min_data_in_leaf`` 10 or 40,
    ``feature_fraction`` 0.7 or 1.0; bagging 0.8) are each fitted at twice ``learning_rate``, stopped early
    (50 rounds) on the validation loss, on at most :data:`SEARCH_MAX_STARS` training stars; the shape of least
    validation loss is refitted on all training stars at ``learning_rate`` (0.05) and kept at its best round
    (stopped after 100 rounds without a lower validation loss, at most ``n_rounds``). Pass the validation
    split as ``fit(X, Y, validation=(X_val, Y_val))``; without it a seeded 20% of the given stars is held out.
    The shapes tried, their validation loss and the one chosen are in ``search``, one entry per label.

    ``threads``: LightGBM's OpenMP threads, 1 by default: they spin-wait, and beside any other busy process two
    threads fitted the same search 14-33x slower in wall time than one (2,500 stars, 2 cores at load 7).

    ``tune=False``: the untuned trees of earlier versions (:data:`UNTUNED_PARAMS`, L2, ``n_rounds`` rounds
    at ``learning_rate``, no validation split).
    """

    def __init__(self, n_rounds: int = 3000, seed: int = 0, threads: int = 1, allow_missing: bool = False,
                 learning_rate: float = 0.05, tune: bool = True):
        self.tune = tune
        shape = TUNED_BASE if tune else {**UNTUNED_PARAMS, "bagging_fraction": 0.8, "bagging_freq": 1}
        self.params = {**shape, "learning_rate": learning_rate, "seed": seed, "verbose": -1, "num_threads": threads}
        self.n_rounds = n_rounds
        self.allow_missing = allow_missing  # LightGBM learns where NaN features go (for incomplete photometry)
        self.models: list = []
        self.search: list[dict] = []

    def _rows(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The stars a label's trees learn from: a finite label (and, unless ``allow_missing``, every feature)."""
        return np.isfinite(y) & (True if self.allow_missing else np.all(np.isfinite(X), axis=1))

    def fit(self, X: np.ndarray, Y: np.ndarray, validation: tuple[np.ndarray, np.ndarray] | None = None
            ) -> GradientBoostedBaseline:
        """Fit one regressor per column of ``Y``; ``validation``: (X_val, Y_val), used by the tuned trees only."""
        import lightgbm as lgb

        self.models, self.search = [], []
        if not self.tune:
            for j in range(Y.shape[1]):
                ok = self._rows(X, Y[:, j])
                self.models.append(lgb.train(self.params, lgb.Dataset(X[ok], Y[ok, j]), num_boost_round=self.n_rounds))
            return self
        rng = np.random.default_rng(np.random.SeedSequence([self.params["seed"], 0x6B6D]))
        if validation is None:
            held = rng.random(len(X)) < VALIDATION_FRACTION
            X, Y, validation = X[~held], Y[~held], (X[held], Y[held])
        X_val, Y_val = validation
        for j in range(Y.shape[1]):
            ok_val = self._rows(X_val, Y_val[:, j])
            if ok_val.sum() < 10:
                raise ValueError(f"label column {j}: {int(ok_val.sum())} validation stars with a value; the "
                                 "gradient-boosted baseline needs at least 10 to choose its trees")
            rows = np.flatnonzero(self._rows(X, Y[:, j]))
            sub = np.sort(rng.choice(rows, SEARCH_MAX_STARS, replace=False)) if rows.size > SEARCH_MAX_STARS else rows

            def stopped(params: dict, rows: np.ndarray, patience: int, j: int = j, ok_val: np.ndarray = ok_val):
                data = lgb.Dataset(X[rows], Y[rows, j])
                valid = lgb.Dataset(X_val[ok_val], Y_val[ok_val, j], reference=data)
                booster = lgb.train(params, data, num_boost_round=self.n_rounds, valid_sets=[valid],
                                    callbacks=[lgb.early_stopping(patience, first_metric_only=True, verbose=False)])
                return booster, float(booster.best_score["valid_0"]["l1"])

            tried = []
            for shape in SEARCH_GRID:
                fast = {**self.params, **shape, "learning_rate": 2 * self.params["learning_rate"]}
                booster, loss = stopped(fast, sub, PATIENCE // 2)
                tried.append({**shape, "validation_mae": round(loss, 6), "best_iteration": booster.best_iteration})
            chosen = SEARCH_GRID[min(range(len(tried)), key=lambda k: tried[k]["validation_mae"])]
            booster, loss = stopped({**self.params, **chosen}, rows, PATIENCE)
            self.models.append(booster)
            self.search.append({"chosen": dict(chosen), "best_iteration": booster.best_iteration,
                                "validation_mae": round(loss, 6), "n_train": int(rows.size),
                                "n_validation": int(ok_val.sum()), "tried": tried})
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """One column per label; tuned trees predict with their best round."""
        return np.column_stack([m.predict(X) for m in self.models])


IVEZIC_FEATURES = ("sdss_u-sdss_g", "sdss_g-sdss_r")  # the polynomial's x = (u-g)_0, y = (g-r)_0
BASELINE_FOLDER = "baselines"  # inside a run directory


class RunBaselines:
    """The baselines of one training run, fitted on its training split and stored in the run folder, so that
    ``photofeh evaluate`` and the report compare the network with them on exactly the same test stars.

    ``lightgbm``: a :class:`GradientBoostedBaseline` on the network's features, one regressor per label, tuned
    on the run's validation split (a small search, early stopping; ``meta["lightgbm_search"]``);
    ``ivezic``: the Ivezic et al. 2008 polynomial form refitted to the training [Fe/H] (when the features
    hold dereddened u-g and g-r), predicting only inside its validity region (:func:`ivezic_valid`).
    """

    def __init__(self, features: list[str], labels: list[str], lightgbm: GradientBoostedBaseline | None,
                 ivezic: np.ndarray | None, meta: dict | None = None):
        self.features, self.labels = list(features), list(labels)
        self.lightgbm, self.ivezic = lightgbm, ivezic
        self.meta = meta or {}

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, features, labels, n_rounds: int = 3000, seed: int = 0,
            threads: int = 1, allow_missing: bool = False,
            validation: tuple[np.ndarray, np.ndarray] | None = None) -> RunBaselines:
        """Fit on the training stars (``X``, ``Y``). The trees are tuned (:class:`GradientBoostedBaseline`,
        ``tune=True``) on ``validation`` = (X_val, Y_val), the run's validation split (without it, a seeded 20%
        of the training stars), at most ``n_rounds`` rounds per label; never on test stars. Learning rate 0.05,
        or 30 / ``n_rounds`` (at most 0.2) where fewer than 600 rounds are allowed, so that boosting gets as far."""
        import time

        t0 = time.perf_counter()
        labels = list(labels)
        fitted = [j for j in range(len(labels)) if np.isfinite(Y[:, j]).sum() >= 20]  # parallax labels: none
        gbt = GradientBoostedBaseline(n_rounds=n_rounds, seed=seed, threads=threads, allow_missing=allow_missing,
                                      learning_rate=min(max(0.05, 30.0 / max(n_rounds, 1)), 0.2))
        gbt.fit(X, Y[:, fitted], None if validation is None else (validation[0], validation[1][:, fitted]))
        coef = None
        if "feh" in labels and all(f in features for f in IVEZIC_FEATURES):
            ug, gr = (X[:, list(features).index(f)] for f in IVEZIC_FEATURES)
            if np.sum(ivezic_valid(ug, gr) & np.isfinite(Y[:, list(labels).index("feh")])) >= 20:
                coef = fit_ivezic(ug, gr, Y[:, list(labels).index("feh")])
        meta = {"n_train": int(len(X)), "n_rounds": n_rounds, "seconds": round(time.perf_counter() - t0, 1),
                "lightgbm_labels": [labels[j] for j in fitted],
                "validation": "the run's validation split" if validation is not None else
                              f"{VALIDATION_FRACTION:.0%} of the training stars (seeded)",
                "lightgbm_search": {labels[j]: s for j, s in zip(fitted, gbt.search, strict=True)}}
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
        from photofeh.model.artifact import file_sha256

        files = sorted(folder.glob("lightgbm_*.txt"))
        info = {"features": self.features, "labels": self.labels, "lightgbm": self.lightgbm is not None,
                "files_sha256": {f.name: file_sha256(f) for f in files},
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
        try:
            info = json.loads((folder / "baselines.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{folder / 'baselines.json'} is not valid JSON ({exc})") from None
        gbt = None
        if info["lightgbm"]:
            import lightgbm as lgb

            from photofeh.model.artifact import file_sha256

            # checked before LightGBM parses them: a damaged model file aborts the process inside its C++
            sums = info.get("files_sha256") or {}
            for lab in info.get("lightgbm_labels", info["labels"]):
                f = folder / f"lightgbm_{lab}.txt"
                if not f.is_file():
                    raise ValueError(f"{f} is missing")
                if f.name in sums and file_sha256(f) != sums[f.name]:
                    raise ValueError(f"{f} does not match its checksum in baselines.json: damaged or changed")
                if f.name not in sums and not all(m in f.read_bytes() for m in (b"end of trees",
                                                                                b"end of parameters")):
                    raise ValueError(f"{f} is not a whole LightGBM model file")
            gbt = GradientBoostedBaseline(allow_missing=info["allow_missing"])
            gbt.models = [lgb.Booster(model_file=str(folder / f"lightgbm_{lab}.txt"))
                          for lab in info.get("lightgbm_labels", info["labels"])]
        coef = None if info["ivezic_coefficients"] is None else np.asarray(info["ivezic_coefficients"], float)
        meta = {k: info[k] for k in ("n_train", "n_rounds", "seconds", "lightgbm_labels", "validation",
                                     "lightgbm_search") if k in info}
        return cls(info["features"], info["labels"], gbt, coef, meta)
