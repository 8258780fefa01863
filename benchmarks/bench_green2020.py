"""Real accuracy: the default network against LightGBM on the Green et al. 2021 stars (LAMOST, APOGEE, GALAH).

The fixed split of photofeh.io.real_samples (70% to fit: 80% training, 20% validation; 30% test). Same inputs
for both: observed Gaia and PS1 colours, G, the parallax and its error, and the Bayestar19-unit reddening
(config deredden = false: the network learns the extinction); stars may lack PS1 bands (missing = "mask" for
the network, NaN for LightGBM). Beside it, the network on colours dereddened with the SFD E(B-V) of the preset
(1.11 r, scripts/green2020_reddening_scale.py), Gaia + PS1 and then all 13 bands. Reported on the
test stars: sigma of a Gaussian fitted to the residuals, robust sigma and bias for [Fe/H], log g and Teff,
pull widths, giant (log g < 3.5) completeness and contamination, the median [Fe/H] bias in bins of the
label [Fe/H], and [Fe/H] per label source.

"LightGBM" is the built-in baseline exactly as `photofeh train` fits it beside the network (tuned on the
run's validation split: photofeh.model.baselines.GradientBoostedBaseline, read back from the run folder);
"untuned LightGBM" the trees every run fitted before issue 25 (L2, 63 leaves, 200 rounds at 0.15, no
validation), on the same training stars.

Also: M_G learned from the parallaxes by a model without a parallax input, its photometric distances against
the parallax distances of test stars with parallax S/N > 10, dwarfs and giants apart. The sample's parallaxes
are Gaia DR2 (Green et al. 2021 was submitted on 30 June 2020 and revised on 18 November 2020, before EDR3 on
3 December 2020), so the DR2 zero point of -0.029 mas (Lindegren et al. 2018, A&A 616, A2) is subtracted.

Usage: python benchmarks/bench_green2020.py [--epochs N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import ROOT, write_result

LABELS = ["feh", "logg", "teff"]
COLUMNS = {"feh": "feh_spec", "logg": "logg_spec", "teff": "teff_spec"}


def real_sample() -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import real_data_dir

    return real_data_dir() / "green2020_test_data_small.h5"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=80)
    args = ap.parse_args()

    import pandas as pd

    from photofeh.io.real_samples import GREEN2020_FEATURES, green2020_test_mask, read_green2020
    from photofeh.model.baselines import BASELINE_FOLDER, GradientBoostedBaseline, RunBaselines
    from photofeh.model.evaluate import class_metrics, regression_metrics
    from photofeh.model.features import feature_matrix
    from photofeh.model.predict import load_model
    from photofeh.model.train import TrainConfig, prepare, train

    stars = read_green2020(real_sample())
    test = green2020_test_mask(stars["source_id"].to_numpy())
    fit, held = stars[~test].reset_index(drop=True), stars[test].reset_index(drop=True)
    cfg = TrainConfig(features=GREEN2020_FEATURES, labels=LABELS, label_columns=COLUMNS, deredden=False,
                      missing="mask", split=(0.8, 0.2, 0.0), epochs=args.epochs, seed=0)
    figures: dict = {}
    accuracy: dict = {}  # per label, then [Fe/H] per label source: one table
    with tempfile.TemporaryDirectory() as tmp:
        train(fit, cfg, Path(tmp) / "run", log=lambda s: None)
        net = load_model(Path(tmp) / "run").predict(held)
        baselines = RunBaselines.load(Path(tmp) / "run" / BASELINE_FOLDER)  # the tuned built-in, as trained
        split = pd.read_parquet(Path(tmp) / "run" / "split.parquet")
    X_test, _ = feature_matrix({c: held[c].to_numpy() for c in held.columns}, GREEN2020_FEATURES,
                               deredden_bands=False)
    tuned = baselines.predict(X_test)["LightGBM"]
    gbm = np.column_stack([tuned[lab] for lab in LABELS])
    p = prepare(fit, cfg)  # the run's training stars, as train() chose them, for the untuned trees
    rows = (split["split"].to_numpy() == "train") & p.usable & np.isfinite(p.y).any(axis=1)
    untuned = GradientBoostedBaseline(n_rounds=200, learning_rate=0.15, seed=0, threads=1, allow_missing=True,
                                      tune=False).fit(p.X[rows], p.y[rows]).predict(X_test)
    for j, lab in enumerate(LABELS):
        ref, ref_err = held[COLUMNS[lab]].to_numpy(float), held[f"{COLUMNS[lab]}_err"].to_numpy(float)
        m_net = regression_metrics(net[lab].to_numpy(), ref, net[f"{lab}_err"].to_numpy(), ref_err)
        m_gbm, m_old = regression_metrics(gbm[:, j], ref), regression_metrics(untuned[:, j], ref)
        accuracy[lab] = {"network sigma": round(m_net["sigma_gauss"], 3),
                         "LightGBM sigma": round(m_gbm["sigma_gauss"], 3),
                         "network / LightGBM": round(m_net["sigma_gauss"] / m_gbm["sigma_gauss"], 3),
                         "untuned LightGBM sigma": round(m_old["sigma_gauss"], 3),
                         "network robust sigma": round(m_net["robust_sigma"], 3),
                         "network bias": round(m_net["bias_median"], 3),
                         "network pull std": round(m_net["pull_std"], 2), "stars": m_net["n"]}
    for source in ("lamost", "apogee", "galah"):
        sel = (held["label_source"] == source).to_numpy()
        m = regression_metrics(net["feh"].to_numpy()[sel], held["feh_spec"].to_numpy(float)[sel],
                               net["feh_err"].to_numpy()[sel], held["feh_spec_err"].to_numpy(float)[sel])
        accuracy[f"feh, {source} labels"] = {"network sigma": round(m["sigma_gauss"], 3),
                                             "network robust sigma": round(m["robust_sigma"], 3),
                                             "network bias": round(m["bias_median"], 3),
                                             "network pull std": round(m["pull_std"], 2), "stars": m["n"]}
    figures["accuracy on the test stars"] = accuracy
    logg = held["logg_spec"].to_numpy(float)
    giant_true = np.where(np.isfinite(logg), logg < 3.5, np.nan)
    usable = net["usable"].to_numpy()
    c_net = class_metrics(net["is_giant"].to_numpy()[usable], giant_true[usable])
    c_gbm = class_metrics(gbm[:, 1] < 3.5, giant_true)
    c_old = class_metrics(untuned[:, 1] < 3.5, giant_true)
    figures["giants (log g < 3.5)"] = {"network completeness": round(c_net["giant_completeness"], 3),
                                       "network contamination": round(c_net["giant_contamination"], 3),
                                       "LightGBM completeness": round(c_gbm["giant_completeness"], 3),
                                       "LightGBM contamination": round(c_gbm["giant_contamination"], 3),
                                       "untuned LightGBM completeness": round(c_old["giant_completeness"], 3),
                                       "untuned LightGBM contamination": round(c_old["giant_contamination"], 3)}
    figures["median [Fe/H] bias (estimate - label) in bins of the label [Fe/H]"] = feh_bias_bins(
        net["feh"].to_numpy(), gbm[:, 0], held["feh_spec"].to_numpy(float))
    figures.update(dereddened_variants(fit, held, args.epochs))
    figures.update(distances(fit, held, args.epochs))
    search = "; ".join(f"{lab} {s['chosen']['num_leaves']} leaves, min_data_in_leaf {s['chosen']['min_data_in_leaf']}, "
                       f"feature_fraction {s['chosen']['feature_fraction']}, {s['best_iteration']} rounds"
                       for lab, s in baselines.meta["lightgbm_search"].items())
    write_result("green2020", "Real stars (Green et al. 2021 sample): network against LightGBM, fixed 30% test split",
                 figures, notes=f"{len(held):,d} test stars ({int(usable.sum()):,d} with a network prediction); "
                                f"{len(fit):,d} to fit ({int(rows.sum()):,d} training, "
                                f"{int((split['split'] == 'validation').sum()):,d} validation); {args.epochs} epochs, "
                                "default network, missing = mask; LightGBM: the built-in baseline of the same run, "
                                f"tuned on its validation split ({search}); untuned LightGBM: the trees of earlier "
                                "versions on the same training stars; labels from LAMOST DD-Payne, APOGEE and GALAH "
                                "as published with the sample, errors from its covariances.")


FEH_BINS = ((-np.inf, -1.5, "[Fe/H] < -1.5"), (-1.5, -1.0, "-1.5 <= [Fe/H] < -1"),
            (-1.0, -0.5, "-1 <= [Fe/H] < -0.5"), (-0.5, np.inf, "[Fe/H] >= -0.5"))


def feh_bias_bins(net_feh: np.ndarray, gbm_feh: np.ndarray, label: np.ndarray) -> dict:
    """Median [Fe/H] residual (estimate - label) in bins of the label, on the test stars both predict."""
    out = {}
    both = np.isfinite(net_feh) & np.isfinite(gbm_feh) & np.isfinite(label)
    for lo, hi, name in FEH_BINS:
        sel = both & (label >= lo) & (label < hi)
        out[f"label {name}"] = {
            "stars": int(sel.sum()),
            "network": round(float(np.median(net_feh[sel] - label[sel])), 3) if sel.any() else None,
            "LightGBM": round(float(np.median(gbm_feh[sel] - label[sel])), 3) if sel.any() else None}
    return out


ALL_BANDS = ["gaia_bp-gaia_rp", "gaia_g-gaia_rp", "ps1_g-ps1_r", "ps1_r-ps1_i", "ps1_i-ps1_z", "ps1_z-ps1_y",
             "ps1_y-tmass_j", "tmass_j-tmass_h", "tmass_h-tmass_ks", "tmass_ks-wise_w1", "wise_w1-wise_w2", "gaia_g",
             "parallax", "parallax_error", "ebv"]
GREEN2020_DR2_ZERO_POINT = -0.029  # mas, Lindegren et al. 2018 (A&A 616, A2), quasars


def dereddened_variants(fit, held, epochs: int) -> dict:
    """The same network on dereddened colours (SFD E(B-V) = 1.11 r, with E(B-V) also an input)."""
    from photofeh.io.real_samples import GREEN2020_FEATURES
    from photofeh.model.evaluate import regression_metrics
    from photofeh.model.predict import load_model
    from photofeh.model.train import TrainConfig, train

    gaia_ps1 = [f if f != "reddening_b19" else "ebv" for f in GREEN2020_FEATURES]
    out = {}
    for name, features in (("Gaia + PS1", gaia_ps1), ("all 13 bands", ALL_BANDS)):
        cfg = TrainConfig(features=features, labels=LABELS, label_columns=COLUMNS, deredden=True, missing="mask",
                          split=(0.8, 0.2, 0.0), epochs=epochs, seed=0, baseline_rounds=0)
        with tempfile.TemporaryDirectory() as tmp:
            train(fit, cfg, Path(tmp) / "run", log=lambda s: None)
            net = load_model(Path(tmp) / "run").predict(held)
        row = {}
        for lab in LABELS:
            m = regression_metrics(net[lab].to_numpy(), held[COLUMNS[lab]].to_numpy(float),
                                   net[f"{lab}_err"].to_numpy(), held[f"{COLUMNS[lab]}_err"].to_numpy(float))
            row[f"{lab} sigma"], row[f"{lab} pull std"] = round(m["sigma_gauss"], 3), round(m["pull_std"], 2)
        out[f"network, dereddened colours, {name}"] = row
    return out


def distances(fit, held, epochs: int) -> dict:
    """M_G learned from the parallaxes by a model that does not see them (parallax_labels, no parallax input);
    photometric distances against parallax distances for test stars with parallax S/N > 10. With observed
    magnitudes (deredden = false) M_G includes the extinction, and so do the parallax-based magnitudes: the
    distances compare like with like."""
    from photofeh.io.real_samples import GREEN2020_FEATURES
    from photofeh.model.parallax_labels import parallax_inputs
    from photofeh.model.predict import load_model
    from photofeh.model.train import TrainConfig, train

    features = [f for f in GREEN2020_FEATURES if not f.startswith("parallax")]
    cfg = TrainConfig(features=features, labels=[*LABELS, "mabs_gaia_g"], label_columns=COLUMNS, deredden=False,
                      parallax_labels=["mabs_gaia_g"], parallax_zero_point=GREEN2020_DR2_ZERO_POINT, missing="mask",
                      split=(0.8, 0.2, 0.0), epochs=epochs, seed=0, baseline_rounds=0)
    with tempfile.TemporaryDirectory() as tmp:
        train(fit, cfg, Path(tmp) / "run", log=lambda s: None)
        pred = load_model(Path(tmp) / "run").predict(held)
    aux = parallax_inputs({c: held[c].to_numpy() for c in held.columns}, ["mabs_gaia_g"], deredden_bands=False,
                          zero_point_mas=GREEN2020_DR2_ZERO_POINT)
    precise = aux[:, 1] / aux[:, 2] > 10
    d_plx = 1.0 / aux[:, 1]  # kpc, S/N > 10: inversion biased by < 1% (Bailer-Jones 2015)
    d_phot = 10 ** ((aux[:, 0] - pred["mabs_gaia_g"].to_numpy()) / 5 - 2)
    giant = held["logg_spec"].to_numpy(float) < 3.5
    out = {}
    for name, sel in (("dwarfs", ~giant), ("giants", giant)):
        sel = sel & precise & np.isfinite(d_phot)
        ratio = d_phot[sel] / d_plx[sel]
        out[f"distances, {name} (parallax S/N > 10)"] = {
            "stars": int(sel.sum()), "median d_phot/d_plx": round(float(np.median(ratio)), 3),
            "robust scatter of ln ratio": round(float(1.4826 * np.median(np.abs(np.log(ratio) - np.median(
                np.log(ratio))))), 3)}
    return out


if __name__ == "__main__":
    main()
