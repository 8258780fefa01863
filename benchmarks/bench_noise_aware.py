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


def scores(est: np.ndarray, err: np.ndarray, true: np.ndarray) -> dict:
    r = est - true
    return {"stars": int(r.size), "sigma": round(gaussian_fit_sigma(r)[1], 4), "sigma_mad": round(robust_sigma(r), 4),
            "bias": round(float(np.median(r)), 4), "pull_width": round(robust_sigma(r / err), 3),
            "within 1 sigma": round(float(np.mean(np.abs(r) < err)), 3),
            # the variance's calibration, clear of the few catastrophic residuals (heavy tails make the MAD width
            # of a well-calibrated variance less than 1)
            "pull_std": round(float(np.std((r / err)[np.abs(r / err) < 5])), 3),
            "median_error": round(float(np.median(err)), 4)}


def binned(values: np.ndarray, edges: np.ndarray, est, err, true) -> dict:
    out = {}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        rows = (values >= lo) & (values < hi)
        if rows.sum() >= MIN_STARS:
            out[f"{lo:g}..{hi:g}"] = scores(est[rows], err[rows], true[rows])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-stars", type=int, default=20_000)
    ap.add_argument("--test-stars", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep-fraction", type=float, default=None, help="noise_keep_fraction (default: the config's)")
    ap.add_argument("--config", default="default", choices=("default", "masked"),
                    help="configs/NAME.toml: the default model (stars with every feature) or the masked one (all)")
    ap.add_argument("--name", default=None, help="result file name (default: noise_aware, noise_aware_masked)")
    args = ap.parse_args()

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
    variants = {"sigma points": base, "noise-aware": aware}
    figures: dict = {"train stars": args.train_stars, "test stars": args.test_stars, "epochs": base.epochs,
                     "noise_keep_fraction": aware.noise_keep_fraction}
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
                    "by estimated [Fe/H]": binned(est[ok], FEH_EDGES, est[ok], err[ok], true[ok])}
            whole = median_seconds(lambda model=model: model.predict_columns(cols), repeats=3)
            Z = model_inputs(model, cols)
            forward = median_seconds(lambda model=model, Z=Z: model._ensemble(Z, 4096), repeats=3)
            part["stars/s (predict_columns)"] = round(rows.size / whole)
            part["stars/s (forward pass)"] = round(rows.size / forward)
            part["ratio to the forward pass"] = round(forward / whole, 3)
            figures[name] = part
            print(name, part["all"], part["ratio to the forward pass"])
    name = args.name or ("noise_aware" if args.config == "default" else f"noise_aware_{args.config}")
    scope = "with every default feature" if base.missing == "require" else "(all of them: the masked model)"
    write_result(name, f"Noise-aware training against sigma points on a survey-depth mock ({args.config} model)",
                 figures, notes=f"configs/{args.config}.toml, both models trained on the same labelled mock stars "
                                "(seed 2) with the same seed and epochs; tested on the stars of a survey-depth mock "
                                f"(seed 7, 14 < r < 22.5) {scope}, against their true [Fe/H]. Pull width: 1.4826 MAD "
                                "of (estimate - truth) / error; pull_std: standard deviation of the pulls within 5. "
                                "Times: median of 3 on this machine, whose speed drifts.")


def model_inputs(model, cols):
    """The network inputs of every usable star, as predict_features builds them (for the pure forward pass)."""
    from photofeh.model.domain import feature_errors
    from photofeh.model.features import feature_matrix

    X, ok = feature_matrix(cols, model.features, model.ebv_column, model.meta.get("deredden", True))
    E = feature_errors(cols, model.features).astype(np.float32) if model.noise_aware else None
    return model._network_inputs(X[ok], None if E is None else E[ok])


if __name__ == "__main__":
    main()
