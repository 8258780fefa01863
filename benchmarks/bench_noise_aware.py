"""Noise-aware training against sigma points, star by star on a survey-depth mock (issue 27 items 1-2).

Two models of the default configuration (configs/default.toml, noise-aware since 2026-12-06) are trained on the
same labelled mock stars with the same seed and epochs: one with ``noise_aware = false``, whose uncertainties for
stars noisier than its training stars come from sigma points at prediction time (photofeh.model.predict, two
extra forward passes per feature with an excess), and the noise-aware one (photofeh.model.noise), which reads
each star's errors and was trained on its stars re-observed down to r = 22.5. Both predict the same stars of a
survey-depth mock (14 < r < 22.5, every default feature measured), scored against the mock's true [Fe/H]:

- per 0.5-mag bin of r and of u: the [Fe/H] scatter (Gaussian-fit sigma, as in the seed study, and 1.4826 MAD),
  the median bias, and the pull width (1.4826 MAD of (estimate - truth) / error; 1 = calibrated);
- per 0.5-dex bin of true [Fe/H] and of estimated [Fe/H] (where a posterior's calibration is defined): the same,
  with the fraction of stars within their 1-sigma error (0.683 when calibrated);
- per bin of the stated error and per set of bands present (u, SDSS griz, PS1, Gaia, parallax): the same;
- for the noise-aware model, a calibration diagnosis (issue 27 item 2): its own labelled test stars, never fitted,
  re-observed once as its training re-observes them (the population of its training prior at every depth),
  scored the same way; and the stated error rescaled per bin of its size by factors fitted on the re-observed
  validation stars (Levi et al. 2022), the survey's pulls by r and u before and after;
- the time of ``predict_columns`` (validation done, features, domain, uncertainties) and of the network's pure
  forward pass on the same stars, median of 3, as stars/s and their ratio.

Run: ``python benchmarks/bench_noise_aware.py [--train-stars N] [--test-stars N] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import ROOT, labelled_mock, median_seconds, mock_columns, write_result

from photofeh.model.evaluate import gaussian_fit_sigma, robust_sigma

R_EDGES = np.arange(14.0, 22.51, 0.5)
U_EDGES = np.arange(15.0, 22.01, 0.5)
FEH_EDGES = np.arange(-3.0, 0.51, 0.5)
MIN_STARS = 30
# survey-depth mock stars per config, as in results/noise_aware*.json (the masked model predicts every star)
TEST_STARS = {"default": 1_000_000, "masked": 300_000}


def scores(est: np.ndarray, err: np.ndarray, true: np.ndarray) -> dict:
    r = est - true
    return {"stars": int(r.size), "sigma": round(gaussian_fit_sigma(r)[1], 4), "sigma_mad": round(robust_sigma(r), 4),
            "bias": round(float(np.median(r)), 4), "pull_width": round(robust_sigma(r / err), 3),
            "within 1 sigma": round(float(np.mean(np.abs(r) < err)), 3),
            # the variance's calibration, clear of the few catastrophic residuals (heavy tails make the MAD width
            # of a well-calibrated variance less than 1)
            "pull_std": round(float(np.std((r / err)[np.abs(r / err) < 5])), 3),
            # and with every pull (heavy tails), and about zero rather than the bin's mean (a bias counted too)
            "pull_std_all": round(float(np.std(r / err)), 3),
            "pull_rms": round(float(np.sqrt(np.mean(np.minimum(np.abs(r / err), 5.0) ** 2))), 3),
            "beyond 3 sigma": round(float(np.mean(np.abs(r / err) > 3)), 4),
            "median_error": round(float(np.median(err)), 4)}


def binned(values: np.ndarray, edges: np.ndarray, est, err, true) -> dict:
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        rows = (values >= lo) & (values < hi)
        if rows.sum() >= MIN_STARS:
            out[f"{lo:g}..{hi:g}"] = scores(est[rows], err[rows], true[rows])
    return out


SIGMA_EDGES = np.array([0.0, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 3.0])  # dex: bins of the stated error
RECAL_BINS = 8  # equal-count bins of the stated error for the recalibration test
BRIGHT_FEH_EDGES = np.array([-3.0, -1.0, -0.5, -0.2, 0.5])


def bands_present(X: np.ndarray, features: list[str]) -> np.ndarray:
    """Each star's mask pattern in words: which of u, SDSS griz, PS1, Gaia and the parallax its features have."""
    groups = {"u": [f for f in features if "sdss_u" in f],
              "griz": [f for f in features if f.startswith("sdss_") and "sdss_u" not in f],
              "PS1": [f for f in features if f.startswith("ps1_")],
              "Gaia": [f for f in features if f.startswith("gaia_")],
              "parallax": [f for f in features if f.startswith("parallax")]}
    has = {g: np.isfinite(X[:, [features.index(f) for f in fs]]).any(axis=1) for g, fs in groups.items() if fs}
    keys = np.full(len(X), "", dtype=object)
    for g, h in has.items():
        keys = np.where(h, np.where(keys == "", g, keys + "+" + g), keys)
    return np.where(keys == "", "none", keys).astype(str)


def by_pattern(keys: np.ndarray, est, err, true, most: int = 10) -> dict:
    """:func:`scores` of the ``most`` commonest mask patterns."""
    names, counts = np.unique(keys, return_counts=True)
    return {str(k): scores(est[keys == k], err[keys == k], true[keys == k])
            for k in names[np.argsort(-counts)][:most] if np.sum(keys == k) >= MIN_STARS}


def calibration_parts(est, err, true, r_mag, u_mag, keys) -> dict:
    """The scores of one set of stars by r, u, true and estimated [Fe/H], stated error and mask pattern."""
    return {"all": scores(est, err, true), "by r": binned(r_mag, R_EDGES, est, err, true),
            "by u": binned(u_mag, U_EDGES, est, err, true), "by [Fe/H]": binned(true, FEH_EDGES, est, err, true),
            "by estimated [Fe/H]": binned(est, FEH_EDGES, est, err, true),
            "by stated error": binned(err, SIGMA_EDGES, est, err, true),
            "by bands present": by_pattern(keys, est, err, true)}


def labelled_reobserved(model, labelled, cfg) -> dict:
    """The model's own labelled stars that it never fitted, re-observed once (seeded) as its training re-observes
    them (photofeh.model.noise): the validation stars (the draw training scored them with) and the test stars (a
    draw of their own). Their [Fe/H] distribution is the training prior's at every depth."""
    from photofeh.model.domain import feature_errors
    from photofeh.model.features import feature_matrix
    from photofeh.model.train import prepare
    from photofeh.model.train_data import assign_split

    p = prepare(labelled, cfg)
    split = assign_split(p, cfg)
    use = p.usable & np.isfinite(p.y).any(axis=1)
    true_all = np.asarray(labelled["feh_true"], float)
    out = {}
    for name, part, key in (("validation", 1, 1), ("test", 2, 9)):
        rows = np.flatnonzero(use & (split == part))
        cols = p.reobserver.columns(rows, np.random.default_rng([cfg.seed, 0x402, key]))  # train_data.reobserved
        X, _ = feature_matrix(cols, cfg.features, cfg.ebv_column, cfg.deredden)
        pred = model.predict_features(X, X_err=feature_errors(cols, cfg.features).astype(np.float32))
        ok = pred["usable"] & pred.get("in_domain", pred["usable"]) & np.isfinite(true_all[rows])
        out[name] = {"est": pred["feh"][ok], "err": pred["feh_err"][ok], "true": true_all[rows][ok],
                     "r": np.asarray(cols["sdss_r"], float)[ok], "u": np.asarray(cols["sdss_u"], float)[ok],
                     "keys": bands_present(X[ok], cfg.features)}
    return out


def sigma_recalibration(val: dict) -> tuple[np.ndarray, np.ndarray]:
    """Scales of the stated error per equal-count bin of it, fitted on the re-observed validation stars against
    their true [Fe/H] (the RMS pull within 5 sigma per bin: the binned calibration of Levi et al. 2022, Sensors 22,
    5540, ENCE, turned into a recalibration map; cf. Kuleshov et al. 2018, ICML, for the quantile form). Returns
    the bins' median log10 error and their scales, to interpolate between."""
    log_err, z = np.log10(val["err"]), (val["est"] - val["true"]) / val["err"]
    edges = np.quantile(log_err, np.linspace(0.0, 1.0, RECAL_BINS + 1))
    centres, scales = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        rows = (log_err >= lo) & (log_err <= hi)
        zz = z[rows][np.abs(z[rows]) < 5]
        centres.append(float(np.median(log_err[rows])))
        scales.append(float(np.sqrt(np.mean(zz**2))))
    return np.asarray(centres), np.asarray(scales)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-stars", type=int, default=20_000)
    ap.add_argument("--test-stars", type=int, default=None,
                    help="survey-depth mock stars (default: those of the published results, TEST_STARS)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-fraction", type=float, default=None, help="noise_keep_fraction (default: the config's)")
    ap.add_argument("--error-scatter", type=float, default=None, help="noise_error_scatter (default: the config's)")
    ap.add_argument("--config", default="default", choices=("default", "masked"),
                    help="configs/NAME.toml: the default model (stars with every feature) or the masked one (all)")
    ap.add_argument("--name", default=None, help="result file name (default: noise_aware, noise_aware_masked)")
    args = ap.parse_args()
    args.test_stars = args.test_stars or TEST_STARS[args.config]

    import tempfile
    from dataclasses import replace

    from photofeh import load_model
    from photofeh.model.features import feature_matrix
    from photofeh.model.train import load_config, train
    from photofeh.simulate import MockSurveyConfig

    labelled = labelled_mock(args.train_stars, seed=2)
    survey = mock_columns(MockSurveyConfig(n_stars=args.test_stars, seed=7, select_band="sdss_r",
                                           mag_range=(14.0, 22.5)))
    # one thread: beside other busy processes torch's all-core default ran several times slower
    default = load_config(ROOT / "configs" / f"{args.config}.toml")
    base = replace(default, epochs=args.epochs or default.epochs, seed=args.seed, baseline_rounds=0, threads=1,
                   noise_aware=False)
    aware = replace(base, noise_aware=True)
    if args.keep_fraction is not None:
        aware = replace(aware, noise_keep_fraction=args.keep_fraction)
    if args.error_scatter is not None:
        aware = replace(aware, noise_error_scatter=args.error_scatter)
    variants = {"sigma points": base, "noise-aware": aware}
    figures: dict = {"train stars": args.train_stars, "test stars": args.test_stars, "epochs": base.epochs,
                     "noise_keep_fraction": aware.noise_keep_fraction, "noise_error_scatter": aware.noise_error_scatter}
    diagnosis: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name, cfg in variants.items():
            t0 = time.perf_counter()
            train(labelled, cfg, f"{tmp}/{name.replace(' ', '_')}", log=lambda s: None)
            models[name] = load_model(f"{tmp}/{name.replace(' ', '_')}/model")
            figures.setdefault("training seconds", {})[name] = round(time.perf_counter() - t0, 1)
        X, usable = feature_matrix(survey, base.features, base.ebv_column, base.deredden)
        # the default model predicts the stars with every feature; the masked one the whole catalogue
        rows = np.flatnonzero(usable) if base.missing == "require" else np.arange(len(X))
        cols = {k: v[rows] for k, v in survey.items()}
        true, r_mag, u_mag = cols["feh_true"], cols["sdss_r"], cols["sdss_u"]
        keys = bands_present(X[rows], base.features)
        figures["stars with every feature"] = int(usable.sum())
        figures["stars predicted"] = int(rows.size)
        for name, model in models.items():
            out = model.predict_columns(cols)
            ok = out["usable"] & out.get("in_domain", out["usable"])
            est, err = out["feh"], out["feh_err"]
            part = {"usable and in the domain": int(ok.sum()),
                    "all": scores(est[ok], err[ok], true[ok]),
                    "by r": binned(r_mag[ok], R_EDGES, est[ok], err[ok], true[ok]),
                    "by u": binned(u_mag[ok], U_EDGES, est[ok], err[ok], true[ok]),
                    "by [Fe/H]": binned(true[ok], FEH_EDGES, est[ok], err[ok], true[ok]),
                    # a posterior is calibrated given the data: the truth's spread about the estimates of stars
                    # that got a given estimate is their stated error (given the truth, a shrinking estimator's
                    # scatter is smaller than its posterior width)
                    "by estimated [Fe/H]": binned(est[ok], FEH_EDGES, est[ok], err[ok], true[ok]),
                    "by stated error": binned(err[ok], SIGMA_EDGES, est[ok], err[ok], true[ok]),
                    "by bands present": by_pattern(keys[ok], est[ok], err[ok], true[ok])}
            if name == "noise-aware":  # where its pulls are off: the labelled stars' population or the survey's
                diagnosis[name] = diagnose(model, labelled, aware, est[ok], err[ok], true[ok], r_mag[ok], u_mag[ok])
            whole = median_seconds(lambda model=model: model.predict_columns(cols), repeats=3)
            Z = model_inputs(model, cols)
            forward = median_seconds(lambda model=model, Z=Z: model._ensemble(Z, 4096), repeats=3)
            part["stars/s (predict_columns)"] = round(rows.size / whole)
            part["stars/s (forward pass)"] = round(rows.size / forward)
            part["ratio to the forward pass"] = round(forward / whole, 3)
            figures[name] = part
            print(name, part["all"], part["ratio to the forward pass"])
    figures["calibration diagnosis (noise-aware)"] = diagnosis["noise-aware"]
    name = args.name or ("noise_aware" if args.config == "default" else f"noise_aware_{args.config}")
    scope = "with every default feature" if base.missing == "require" else "(all of them: the masked model)"
    write_result(name, f"Noise-aware training against sigma points on a survey-depth mock ({args.config} model)",
                 figures, notes=f"configs/{args.config}.toml, both models trained on the same labelled mock stars "
                                "(seed 2) with the same seed and epochs; tested on the stars of a survey-depth mock "
                                f"(seed 7, 14 < r < 22.5) {scope}, against their true [Fe/H]. Pull width: 1.4826 MAD "
                                "of (estimate - truth) / error; pull_std: standard deviation of the pulls within 5. "
                                "Times: median of 3 on this machine, whose speed drifts.")


def diagnose(model, labelled, cfg, est, err, true, r_mag, u_mag) -> dict:
    """Issue 27 item 2: the pulls of the model's own labelled stars re-observed (its training prior's population)
    beside the survey's, and a recalibration of the stated errors by their size fitted on the validation stars,
    applied to the survey (pull_std by r and u before and after, on the same stars)."""
    stars = labelled_reobserved(model, labelled, cfg)
    t = stars["test"]
    out = {"labelled test stars re-observed": calibration_parts(t["est"], t["err"], t["true"], t["r"], t["u"],
                                                                 t["keys"])}
    # the survey's stars whose true [Fe/H] the labels cover (their 1st to 99th percentile): what is left of the
    # survey's miscalibration once the stars beyond the training prior's range are set aside
    lo, hi = np.nanpercentile(np.asarray(labelled[cfg.label_columns.get("feh", "feh_spec")], float), [1, 99])
    inside = (true >= lo) & (true <= hi)
    out["survey stars within the labels' [Fe/H] range"] = {
        "range": [round(float(lo), 2), round(float(hi), 2)],
        "fraction of the survey's stars": round(float(inside.mean()), 4),
        "by r": binned(r_mag[inside], R_EDGES, est[inside], err[inside], true[inside]),
        "by u": binned(u_mag[inside], U_EDGES, est[inside], err[inside], true[inside])}
    # the bright survey stars by their true [Fe/H]: the metal-rich disk, which the labels hardly hold
    bright = r_mag < 15.0
    out["survey stars at r < 15 by [Fe/H]"] = binned(true[bright], BRIGHT_FEH_EDGES, est[bright], err[bright],
                                                      true[bright])
    centres, scales = sigma_recalibration(stars["validation"])
    factor = np.interp(np.log10(err), centres, scales)
    out["recalibration by stated error"] = {
        "validation stars": int(stars["validation"]["est"].size),
        "bins (median error, dex)": [round(float(10**c), 3) for c in centres],
        "scales": [round(float(v), 3) for v in scales],
        "survey pull_std by r, before": {k: v["pull_std"] for k, v in binned(r_mag, R_EDGES, est, err, true).items()},
        "survey pull_std by r, after": {k: v["pull_std"] for k, v in
                                        binned(r_mag, R_EDGES, est, err * factor, true).items()},
        "survey pull_std by u, before": {k: v["pull_std"] for k, v in binned(u_mag, U_EDGES, est, err, true).items()},
        "survey pull_std by u, after": {k: v["pull_std"] for k, v in
                                        binned(u_mag, U_EDGES, est, err * factor, true).items()}}
    return out


def model_inputs(model, cols):
    """The network inputs of every usable star, as predict_features builds them (for the pure forward pass)."""
    from photofeh.model.domain import feature_errors
    from photofeh.model.features import feature_matrix

    X, ok = feature_matrix(cols, model.features, model.ebv_column, model.meta.get("deredden", True))
    E = feature_errors(cols, model.features).astype(np.float32) if model.noise_aware else None
    return model._network_inputs(X[ok], None if E is None else E[ok])


if __name__ == "__main__":
    main()
