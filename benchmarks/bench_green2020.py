"""Real accuracy: configs/green2020.toml's network against LightGBM on the Green et al. 2021 stars.

Labels from LAMOST, APOGEE and GALAH.
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

Distances (M_G learned from the parallaxes by models that do not see them, against the test stars' parallaxes)
are not measured here: benchmarks/bench_distances.py scores them on this same test split with the
class-conditional mixture, by class, colour and [Fe/H] (BENCHMARKS.md, "Photometric distances against
parallaxes"), so that each quantity has one number.

Calibration across depth (issue 27 item 2): the network above and a noise-aware variant (the same inputs, the
feature errors as inputs, training stars re-observed fainter every epoch down to G = 20, photofeh.model.noise),
each scored per 1-mag bin of Gaia G on the test stars as observed and on the same test stars re-observed once
(seeded) at a G drawn uniformly between their own and 20: Gaussian-fit sigma, pull width (1.4826 MAD of the
pulls), pull std (pulls within 5) and the fraction within 1 sigma, for [Fe/H], log g and Teff. Pulls divide the
residual by the quadrature sum of the estimate's error and the label's. Re-observed, both models are scored on
the stars both predict in their domain (the plain network widens its errors by sigma points there), and
each on all the stars in its own domain.

Longer training and ensembles (issue 26's green2020 targets): the same network trained for more epochs (with a
patience that scales) and as an ensemble of independently seeded members (Lakshminarayanan et al. 2017, NeurIPS:
the members' mixture), each variant with two seeds, on the same test stars: sigma, bias and pull width of every
label, the giant class, training seconds and forward passes per star (what an ensemble costs at prediction).

Usage: python benchmarks/bench_green2020.py [--epochs N] [--part calibration|training]
(--part calibration or training trains only that table's networks and merges it into the result file)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import green2020_split, merge_result, write_result

LABELS = ["feh", "logg", "teff"]
COLUMNS = {"feh": "feh_spec", "logg": "logg_spec", "teff": "teff_spec"}
# The sample's reddening error beside its reddening (as configs/green2020.toml): 9% of the stars have no map value,
# their reddening reads 0 with an error of ~0.5 (reddening_source 'default'), and a network that cannot tell that 0
# from a measured one reads their Teff tens of K too cool (issue 26; "the reddening error as an input").
REDDENING_ERROR = "reddening_b19_err"
SPREAD_SEEDS = (1, 2, 3)  # the same configuration retrained with other seeds (and validation draws)


def network_config(features, epochs: int = 200, **kw):
    """The benchmark's network: one thread (a training is then the same on every run: with two threads the
    floating-point sums differ and so does the network, e.g. its Teff bias +21 K against +9 K on one thread),
    the class threshold chosen on all the validation stars (class_operating_feh_max = None, as the
    configuration sets it: the targets concern all giants)."""
    from photofeh.model.train import TrainConfig

    kw = {"deredden": False, "missing": "mask", "split": (0.8, 0.2, 0.0), "seed": 0, "ensemble": 5, "patience": 30,
          **kw}  # configs/green2020.toml's ensemble of 5 at 200 epochs (the table TRAINING says why)
    return TrainConfig(features=list(features), labels=LABELS, label_columns=COLUMNS, epochs=epochs, threads=1,
                       class_operating_feh_max=None, **kw)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--part", choices=("all", "calibration", "training"), default="all")
    args = ap.parse_args()
    if args.part == "calibration":
        return calibration_only(args.epochs)
    if args.part == "training":
        return training_only()

    import pandas as pd

    from photofeh.io.real_samples import GREEN2020_FEATURES
    from photofeh.model.baselines import BASELINE_FOLDER, GradientBoostedBaseline, RunBaselines
    from photofeh.model.evaluate import class_metrics, regression_metrics
    from photofeh.model.features import feature_matrix
    from photofeh.model.predict import load_model
    from photofeh.model.train import prepare, train

    fit, held = green2020_split()
    features = [*GREEN2020_FEATURES, REDDENING_ERROR]
    cfg = network_config(features, args.epochs)
    figures: dict = {}
    accuracy: dict = {}  # per label, then [Fe/H] per label source: one table
    with tempfile.TemporaryDirectory() as tmp:
        train(fit, cfg, Path(tmp) / "run", log=lambda s: None)
        model = load_model(Path(tmp) / "run")
        net, net_threshold = model.predict(held), float(model.meta["class_threshold"])
        baselines = RunBaselines.load(Path(tmp) / "run" / BASELINE_FOLDER)  # the tuned built-in, as trained
        split = pd.read_parquet(Path(tmp) / "run" / "split.parquet")
    X_test, _ = feature_matrix({c: held[c].to_numpy() for c in held.columns}, features, deredden_bands=False)
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
                         "network pull std": round(m_net["pull_std"], 2),
                         "network pull width": round(m_net["pull_robust_sigma"], 2),
                         "labels' own errors alone, sigma": round(label_noise_sigma(ref_err), 3), "stars": m_net["n"]}
    for lab in ("feh", "teff"):
        for source in ("lamost", "apogee", "galah"):
            sel = (held["label_source"] == source).to_numpy()
            m = regression_metrics(net[lab].to_numpy()[sel], held[COLUMNS[lab]].to_numpy(float)[sel],
                                   net[f"{lab}_err"].to_numpy()[sel], held[f"{COLUMNS[lab]}_err"].to_numpy(float)[sel])
            accuracy[f"{lab}, {source} labels"] = {"network sigma": round(m["sigma_gauss"], 3),
                                                   "network robust sigma": round(m["robust_sigma"], 3),
                                                   "network bias": round(m["bias_median"], 3),
                                                   "network pull std": round(m["pull_std"], 2), "stars": m["n"]}
    default = held["reddening_is_default"].to_numpy(bool)
    m = regression_metrics(net["teff"].to_numpy()[default], held["teff_spec"].to_numpy(float)[default])
    accuracy["teff, stars without a map reddening"] = {"network sigma": round(m["sigma_gauss"], 3),
                                                       "network robust sigma": round(m["robust_sigma"], 3),
                                                       "network bias": round(m["bias_median"], 3), "stars": m["n"]}
    figures["accuracy on the test stars"] = accuracy
    logg = held["logg_spec"].to_numpy(float)
    giant_true = np.where(np.isfinite(logg), logg < 3.5, np.nan)
    usable = net["usable"].to_numpy()
    c_net = class_metrics(net["is_giant"].to_numpy()[usable], giant_true[usable])
    c_gbm = class_metrics(gbm[:, 1] < 3.5, giant_true)
    c_old = class_metrics(untuned[:, 1] < 3.5, giant_true)
    c_logg = class_metrics(net["logg"].to_numpy()[usable] < 3.5, giant_true[usable])
    floor = label_noise_classes(held["logg_spec"].to_numpy(float), held["logg_spec_err"].to_numpy(float))
    figures["giants (log g < 3.5)"] = {"network completeness": round(c_net["giant_completeness"], 3),
                                       "network contamination": round(c_net["giant_contamination"], 3),
                                       "network threshold on P(giant)": round(net_threshold, 2),
                                       "network log g < 3.5 completeness": round(c_logg["giant_completeness"], 3),
                                       "network log g < 3.5 contamination": round(c_logg["giant_contamination"], 3),
                                       "labels' own errors alone, completeness": round(floor[0], 3),
                                       "labels' own errors alone, contamination": round(floor[1], 3),
                                       "LightGBM completeness": round(c_gbm["giant_completeness"], 3),
                                       "LightGBM contamination": round(c_gbm["giant_contamination"], 3),
                                       "untuned LightGBM completeness": round(c_old["giant_completeness"], 3),
                                       "untuned LightGBM contamination": round(c_old["giant_contamination"], 3)}
    figures["median [Fe/H] bias (estimate - label) in bins of the label [Fe/H]"] = feh_bias_bins(
        net["feh"].to_numpy(), gbm[:, 0], held["feh_spec"].to_numpy(float))
    figures["run-to-run spread (seeds 0-3)"] = seed_spread(fit, held, cfg, net)
    figures["Teff in bins of the reddening r"] = teff_by_reddening(net, held)
    figures["the reddening error as an input"] = reddening_error_ablation(fit, held, cfg, net)
    figures.update(dereddened_variants(fit, held, args.epochs))
    figures[CALIBRATION] = calibration_across_depth(fit, held, cfg, args.epochs)
    figures[TRAINING] = training_table(fit, held)
    search = "; ".join(f"{lab} {s['chosen']['num_leaves']} leaves, min_data_in_leaf {s['chosen']['min_data_in_leaf']}, "
                       f"feature_fraction {s['chosen']['feature_fraction']}, {s['best_iteration']} rounds"
                       for lab, s in baselines.meta["lightgbm_search"].items())
    write_result("green2020", "Real stars (Green et al. 2021 sample): network against LightGBM, fixed 30% test split",
                 figures, notes=f"{len(held):,d} test stars ({int(usable.sum()):,d} with a network prediction); "
                                f"{len(fit):,d} to fit ({int(rows.sum()):,d} training, "
                                f"{int((split['split'] == 'validation').sum()):,d} validation); {args.epochs} epochs "
                                "(patience 30), default network, an ensemble of 5 as configs/green2020.toml, missing = "
                                "mask; LightGBM: the built-in baseline of the same run, "
                                f"tuned on its validation split ({search}); untuned LightGBM: the trees of earlier "
                                "versions on the same training stars; labels from LAMOST DD-Payne, APOGEE and GALAH "
                                "as published with the sample, errors from its covariances."
                                + CALIBRATION_NOTE.format(epochs=args.epochs))


CALIBRATION = "calibration by Gaia G (issue 27 item 2)"
# The survey the noise-aware variant is meant for: Gaia x PS1 to G = 20. Beyond it Gaia DR2's parallaxes carry
# little (sigma_plx ~ 0.7 mas at G = 20, Lindegren et al. 2018, A&A 616, A2, table B.1: a 1-kpc dwarf at 1 mas
# reads at S/N ~ 1.4) and its BP/RP fluxes are background-dominated (Riello et al. 2021, A&A 649, A3, section 8:
# flux excess and background at G > 19-20), while PS1 3pi reaches 21.4-23.3 (5 sigma, Chambers et al. 2016):
# G = 20 is the depth at which every input still means something.
NOISE_LIMIT_G = 20.0
G_EDGES = np.array([-np.inf, *np.arange(11.0, 20.01, 1.0)])
MIN_BIN_STARS = 30


def pull_scores(est: np.ndarray, err: np.ndarray, ref: np.ndarray, ref_err: np.ndarray) -> dict:
    """Gaussian-fit sigma of the residuals; pulls over the estimate's and the label's errors in quadrature."""
    from photofeh.model.evaluate import gaussian_fit_sigma, robust_sigma

    r = est - ref
    z = r / np.sqrt(err**2 + np.nan_to_num(ref_err) ** 2)
    return {"stars": int(r.size), "sigma": round(gaussian_fit_sigma(r)[1], 4), "bias": round(float(np.median(r)), 4),
            "pull_width": round(robust_sigma(z), 3), "pull_std": round(float(np.std(z[np.abs(z) < 5])), 3),
            "within 1 sigma": round(float(np.mean(np.abs(z) < 1)), 3), "median_error": round(float(np.median(err)), 4)}


def by_g(pred, held, g: np.ndarray, rows: np.ndarray) -> dict:
    """Per label: all the stars ``rows``, then per 1-mag bin of ``g`` (bins of fewer than 30 stars left out)."""
    out = {}
    for lab in LABELS:
        est, err = pred[lab].to_numpy(float), pred[f"{lab}_err"].to_numpy(float)
        ref, ref_err = held[COLUMNS[lab]].to_numpy(float), held[f"{COLUMNS[lab]}_err"].to_numpy(float)
        ok = rows & np.isfinite(est) & np.isfinite(err) & np.isfinite(ref)
        part = {"all": pull_scores(est[ok], err[ok], ref[ok], ref_err[ok])}
        for lo, hi in zip(G_EDGES[:-1], G_EDGES[1:], strict=True):
            sel = ok & (g >= lo) & (g < hi)
            if sel.sum() >= MIN_BIN_STARS:
                part[f"G < {hi:g}" if lo == -np.inf else f"{lo:g}..{hi:g}"] = pull_scores(
                    est[sel], err[sel], ref[sel], ref_err[sel])
        out[lab] = part
    return out


def reobserved_test_stars(fit, held, features, seed: int = 1):
    """The test stars re-observed once at a G uniform between their own and NOISE_LIMIT_G (photofeh.model.noise,
    error relations fitted to the stars to fit, as the noise-aware training fits them)."""
    from photofeh.model.noise import Reobserver, fit_error_relations

    relations = fit_error_relations({c: fit[c].to_numpy() for c in fit.columns}, features)
    reob = Reobserver({c: held[c].to_numpy() for c in held.columns}, features, relations, "gaia_g", NOISE_LIMIT_G,
                      keep_fraction=0.0, ebv_column="ebv", deredden=False, require_all=False)
    faded = held.copy()
    for c, v in reob.columns(np.arange(len(held)), np.random.default_rng(seed)).items():
        faded[c] = v
    return faded


def calibration_across_depth(fit, held, cfg, epochs: int) -> dict:
    """The network of ``cfg`` and its noise-aware variant, per 1-mag bin of G, as observed and re-observed."""
    import dataclasses

    from photofeh.model.predict import load_model
    from photofeh.model.train import train

    base = dataclasses.replace(cfg, epochs=epochs, baseline_rounds=0, threads=1)
    variants = {"network": base, "noise-aware network": dataclasses.replace(
        base, noise_aware=True, noise_limit_band="gaia_g", noise_limit=NOISE_LIMIT_G)}
    faded = reobserved_test_stars(fit, held, cfg.features)
    preds = {}
    for name, c in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            train(fit, c, Path(tmp) / "run", log=lambda s: None)
            model = load_model(Path(tmp) / "run")
            preds[name] = (model.predict(held), model.predict(faded))
    inside = {name: [(p["usable"] & p.get("in_domain", p["usable"])).to_numpy(bool) for p in pair]
              for name, pair in preds.items()}
    both_faded = np.logical_and.reduce([v[1] for v in inside.values()])
    out = {"noise_limit G": NOISE_LIMIT_G}
    for name, (pred, pred_faded) in preds.items():
        out[name] = {"test stars in the domain": int(inside[name][0].sum()),
                     "re-observed test stars in the domain": int(inside[name][1].sum()),
                     "as observed": by_g(pred, held, held["gaia_g"].to_numpy(float), inside[name][0]),
                     "re-observed to G = 20": by_g(pred_faded, held, faded["gaia_g"].to_numpy(float), both_faded),
                     "re-observed to G = 20, own domain": by_g(pred_faded, held, faded["gaia_g"].to_numpy(float),
                                                               inside[name][1])}
    return out


def calibration_only(epochs: int) -> None:
    """Only the calibration table, merged into the existing result file (the other figures kept as they are)."""
    import json

    from _common import RESULTS

    from photofeh.io.real_samples import GREEN2020_FEATURES

    fit, held = green2020_split()
    cfg = network_config([*GREEN2020_FEATURES, REDDENING_ERROR], epochs)
    old = json.loads((RESULTS / "green2020.json").read_text())
    figures = dict(old["figures"])
    figures[CALIBRATION] = calibration_across_depth(fit, held, cfg, epochs)
    notes = old["notes"].split(" Calibration by G:")[0]
    if " Other figures:" not in notes:
        notes += (f" Other figures: the whole bench run of {old['machine']['date']} on {old['machine']['cpu']} "
                  f"(photofeh {old['machine']['versions']['photofeh']}).")
    write_result("green2020", old["title"], figures, notes=notes + CALIBRATION_NOTE.format(epochs=epochs))


CALIBRATION_NOTE = (" Calibration by G: the network's configuration and its noise-aware variant (noise_limit G = 20), "
                    "{epochs} epochs, one thread, no baseline, retrained for this table; pulls over the estimate's "
                    "and the label's errors in quadrature.")


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


def label_noise_sigma(err: np.ndarray, draws: int = 20, seed: int = 0) -> float:
    """Gaussian-fit sigma of residuals drawn from the labels' own errors alone (mean of ``draws`` seeded draws):
    what a perfect estimate of the true values would show against these labels."""
    from photofeh.model.evaluate import gaussian_fit_sigma

    err = err[np.isfinite(err)]
    rng = np.random.default_rng(seed)
    return float(np.mean([gaussian_fit_sigma(err * rng.standard_normal(err.size))[1] for _ in range(draws)]))


def label_noise_classes(logg: np.ndarray, err: np.ndarray, cut: float = 3.5) -> tuple[float, float]:
    """Expected giant completeness and contamination of a classifier that knows every star's true class, scored
    against labels scattered by their errors: a star of label log g L falls on the other side of the cut with
    probability Phi(-|L - cut| / err) (the label taken as the centre, so a rough floor)."""
    from scipy.stats import norm

    ok = np.isfinite(logg) & np.isfinite(err) & (err > 0)
    giant, flip = logg[ok] < cut, norm.cdf(-np.abs(logg[ok] - cut) / err[ok])
    missed, false = flip[giant].sum(), flip[~giant].sum()  # label giants truly dwarfs; label dwarfs truly giants
    return float(1 - missed / giant.sum()), float(false / (giant.sum() - missed + false))


def seed_spread(fit, held, cfg, net) -> dict:
    """The accuracy table's network (seed 0) beside the same configuration retrained with SPREAD_SEEDS (no
    baseline): how much of a figure is the training's own scatter."""
    import dataclasses

    from photofeh.model.predict import load_model
    from photofeh.model.train import train

    preds = {0: net}
    for seed in SPREAD_SEEDS:
        with tempfile.TemporaryDirectory() as tmp:
            train(fit, dataclasses.replace(cfg, seed=seed, baseline_rounds=0), Path(tmp) / "run", log=lambda s: None)
            preds[seed] = load_model(Path(tmp) / "run").predict(held)
    rows: dict = {}
    for seed, pred in preds.items():
        for key, value in scores_on_test_stars(pred, held, (3, 3, 1)).items():
            rows.setdefault(key, {})[f"seed {seed}"] = value
    for row in rows.values():
        vals = list(row.values())
        row["mean"] = round(float(np.mean(vals)), 4)
    return rows


def scores_on_test_stars(pred, held, digits: tuple[int, int, int]) -> dict:
    """One network's test-star figures, as the seed and training tables give them: sigma, bias (each label
    rounded to ``digits``: [Fe/H], log g, Teff) and pull width per label, and the giant class."""
    from photofeh.model.evaluate import class_metrics, regression_metrics

    row: dict = {}
    for lab, d in zip(("feh", "logg", "teff"), digits, strict=True):
        m = regression_metrics(pred[lab].to_numpy(), held[COLUMNS[lab]].to_numpy(float),
                               pred[f"{lab}_err"].to_numpy(), held[f"{COLUMNS[lab]}_err"].to_numpy(float))
        row[f"{lab} sigma"] = round(m["sigma_gauss"], d)
        row[f"{lab} bias"] = round(m["bias_median"], d)
        row[f"{lab} pull width"] = round(m["pull_robust_sigma"], 2)
    logg = held["logg_spec"].to_numpy(float)
    usable = pred["usable"].to_numpy()
    c = class_metrics(pred["is_giant"].to_numpy()[usable], np.where(np.isfinite(logg), logg < 3.5, np.nan)[usable])
    row["giant completeness"] = round(c["giant_completeness"], 3)
    row["giant contamination"] = round(c["giant_contamination"], 3)
    return row


R_EDGES = (0.0, 0.1, 0.3, 0.6, np.inf)


def teff_by_reddening(net, held) -> dict:
    """The network's Teff residuals in bins of the sample's reddening r (stars with a map value)."""
    from photofeh.model.evaluate import regression_metrics

    r = held["reddening_b19"].to_numpy(float)
    mapped = ~held["reddening_is_default"].to_numpy(bool)
    out = {}
    for lo, hi in zip(R_EDGES[:-1], R_EDGES[1:], strict=True):
        sel = mapped & (r >= lo) & (r < hi)
        m = regression_metrics(net["teff"].to_numpy()[sel], held["teff_spec"].to_numpy(float)[sel])
        out[f"r >= {lo:g}" if hi == np.inf else f"{lo:g} <= r < {hi:g}"] = {
            "stars": m["n"], "network sigma": round(m["sigma_gauss"], 1), "network bias": round(m["bias_median"], 1)}
    return out


def reddening_error_ablation(fit, held, cfg, net) -> dict:
    """The configuration with and without the reddening error among its inputs (no baseline), on all the test
    stars and on those without a map reddening (r = 0 given, with a large error)."""
    import dataclasses

    from photofeh.model.evaluate import class_metrics, regression_metrics
    from photofeh.model.predict import load_model
    from photofeh.model.train import train

    without = dataclasses.replace(cfg, features=[f for f in cfg.features if f != REDDENING_ERROR], baseline_rounds=0)
    with tempfile.TemporaryDirectory() as tmp:
        train(fit, without, Path(tmp) / "run", log=lambda s: None)
        other = load_model(Path(tmp) / "run").predict(held)
    default = held["reddening_is_default"].to_numpy(bool)
    err = held["reddening_b19_err"].to_numpy(float)
    logg = held["logg_spec"].to_numpy(float)
    giant_true = np.where(np.isfinite(logg), logg < 3.5, np.nan)
    out = {}
    for name, pred in (("with the error (the configuration)", net), ("without the error", other)):
        row = {}
        for lab, digits in (("feh", 3), ("logg", 3), ("teff", 1)):
            m = regression_metrics(pred[lab].to_numpy(), held[COLUMNS[lab]].to_numpy(float))
            row[f"{lab} sigma"] = round(m["sigma_gauss"], digits)
        for part, sel in (("", np.ones(len(held), bool)), (", no map reddening", default)):
            m = regression_metrics(pred["teff"].to_numpy()[sel], held["teff_spec"].to_numpy(float)[sel])
            if part:
                row[f"teff sigma{part}"] = round(m["sigma_gauss"], 1)
            row[f"teff bias{part}"] = round(m["bias_median"], 1)
        usable = pred["usable"].to_numpy()
        c = class_metrics(pred["is_giant"].to_numpy()[usable], giant_true[usable])
        row["giant completeness"] = round(c["giant_completeness"], 3)
        row["giant contamination"] = round(c["giant_contamination"], 3)
        out[name] = row
    out["stars without a map reddening"] = {"stars": int(default.sum()),
                                            "median r error": round(float(np.median(err[default])), 3),
                                            "median r error of the others": round(float(np.median(err[~default])), 3)}
    return out


def dereddened_variants(fit, held, epochs: int) -> dict:
    """The same network on dereddened colours (SFD E(B-V) = 1.11 r, with E(B-V) also an input)."""
    from photofeh.io.real_samples import GREEN2020_FEATURES
    from photofeh.model.evaluate import regression_metrics
    from photofeh.model.predict import load_model
    from photofeh.model.train import train

    gaia_ps1 = [f if f != "reddening_b19" else "ebv" for f in GREEN2020_FEATURES]
    out = {}
    for name, features in (("Gaia + PS1", gaia_ps1), ("all 13 bands", ALL_BANDS)):
        cfg = network_config(features, epochs, deredden=True, baseline_rounds=0)
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



TRAINING = "longer training and ensembles (issue 26)"
# (name, settings over network_config): one network at 80 epochs and patience 15 (the configuration until
# 2026-12-07) first; the ensemble of 5 at 200 epochs is the configuration now
TRAINING_VARIANTS = (("one network, 80 epochs (patience 15)", {"epochs": 80, "patience": 15, "ensemble": 1}),
                     ("one network, 200 epochs (patience 30)", {"epochs": 200, "patience": 30, "ensemble": 1}),
                     ("ensemble of 5, 80 epochs", {"epochs": 80, "patience": 15, "ensemble": 5}),
                     ("ensemble of 5, 200 epochs (patience 30)", {"epochs": 200, "patience": 30, "ensemble": 5}),
                     ("ensemble of 5, 400 epochs (patience 50)", {"epochs": 400, "patience": 50, "ensemble": 5}))
TRAINING_SEEDS = (0, 1)


def training_only() -> None:
    """Only the table TRAINING, merged into the result file (the other figures kept as they are)."""
    merge_result("green2020", {TRAINING: training_table(*green2020_split())})


def training_table(fit, held) -> dict:
    """The variants of TRAINING_VARIANTS, each with TRAINING_SEEDS, scored on the test stars."""
    import time

    from photofeh.io.real_samples import GREEN2020_FEATURES
    from photofeh.model.predict import load_model
    from photofeh.model.train import train

    table: dict = {}
    for name, settings in TRAINING_VARIANTS:
        for seed in TRAINING_SEEDS:
            cfg = network_config([*GREEN2020_FEATURES, REDDENING_ERROR], baseline_rounds=0, seed=seed, **settings)
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                train(fit, cfg, Path(tmp) / "run", log=lambda s: None)
                seconds = time.perf_counter() - t0
                pred = load_model(Path(tmp) / "run").predict(held)
            row = scores_on_test_stars(pred, held, (4, 4, 1))
            row["training seconds"] = round(seconds, 1)
            row["forward passes per star"] = cfg.ensemble
            table.setdefault(name, {})[f"seed {seed}"] = row
        seeds = list(table[name].values())
        table[name]["mean"] = {k: round(float(np.mean([r[k] for r in seeds])), 4) for k in seeds[0]}
    return table


if __name__ == "__main__":
    main()
