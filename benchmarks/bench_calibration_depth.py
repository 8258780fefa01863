"""Why the pulls leave 0.9-1.1 across magnitude (issue 27 item 2, issue 26's "Uncertainties"): three measurements.

1. The default noise-aware model (configs/default.toml, trained as in bench_noise_aware.py: 20,000 labelled mock
   stars, seed 2) predicts the stars with every default feature of one survey-depth mock (seed 7, 14 < r < 22.5)
   twice: as simulated, and the same stars with the per-patch calibration zero points set to 0 (the unreported
   floor: 2% in u, 1% in griz and PS1, photofeh.bands). Pulls per 0.5-mag bin of r, for every star and per
   population of the mock (thin disk, thick disk, halo): what of the bright bins' excess the zero points make,
   and whether the miscalibration follows the population the SEGUE-like labels hardly hold (the disk); and the
   same stars as simulated predicted by the model trained with ``prior = "flat"`` (photofeh.model.prior).
2. The masked noise-aware model (configs/masked.toml) on every star of a survey-depth mock: its sigma scales fitted
   on the validation stars with 30% of the survey groups hidden at random (as before) and on the same stars with
   the bands they have (as they are predicted; train_loop._calibrate's ``seen_t``). One training: the network is
   the same, the stated errors differ by the ratio of the two scales.
2b. The survey-matched prior (``selection_weighting = "loss"``, photofeh.model.prior.selection_weights): the default
   model trained again on the same labelled stars with each one's loss and sigma-scale share weighted by 1 / its
   targeting probability (the mock's ``spec_target_probability``; trimmed at ``selection_weight_cap``), beside the
   unweighted one (the same model as part 1's "as simulated"), on part 1's survey-depth stars: pulls, bias and sigma
   per 0.5-mag bin of r and per 0.5-dex bin of true [Fe/H], and the per-star cost on the labelled test split.
3. The same for the green2020 network (configs/green2020.toml's settings, bench_green2020.network_config) on its
   test stars, against the labels (pulls over the estimate's and the label's errors in quadrature); the giant
   class is calibrated on the hidden mix either way, so its completeness and contamination do not move.

Run: ``python benchmarks/bench_calibration_depth.py [--test-stars N] [--part default|masked|selection|green2020|all]``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import ROOT, green2020_split, labelled_mock, merge_result, mock_columns, write_result
from bench_noise_aware import R_EDGES, scores

MIN_STARS = 30
POPS = ("thin", "thick", "halo")


def pulls_by_r(est, err, true, r_mag, pop=None) -> dict:
    """pull_std / pull_width per 0.5-mag bin of r (all stars, or those of population ``pop``)."""
    out = {}
    for lo, hi in zip(R_EDGES[:-1], R_EDGES[1:], strict=True):
        rows = (r_mag >= lo) & (r_mag < hi)
        if rows.sum() >= MIN_STARS:
            s = scores(est[rows], err[rows], true[rows])
            out[f"{lo:g}..{hi:g}"] = {"stars": s["stars"], "pull_std": s["pull_std"], "pull_width": s["pull_width"],
                                      "sigma": s["sigma"], "median_error": s["median_error"]}
    return out


class RecordedCalibration:
    """Wraps train._calibrate: the scales fitted on the hidden mix (no ``seen_t``) recorded beside those the
    model keeps (fitted on the stars as predicted)."""

    def __init__(self):
        import photofeh.model.train as train_module

        self.module, self.original, self.hidden = train_module, train_module._calibrate, None

    def __enter__(self):
        def wrapped(nets, val_t, cfg, val_feh, plx=None, likelihood=None, seen_t=None):
            self.hidden = self.original(nets, val_t, cfg, val_feh, plx, likelihood)
            return self.original(nets, val_t, cfg, val_feh, plx, likelihood, seen_t)

        self.module._calibrate = wrapped
        return self

    def __exit__(self, *exc):
        self.module._calibrate = self.original


def survey(n: int, zero_points: bool = True) -> dict:
    """The survey-depth mock of bench_noise_aware.py, optionally with every calibration zero point 0."""
    import photofeh.simulate.observe as obs
    import photofeh.simulate.survey as surv
    from photofeh.simulate import MockSurveyConfig

    config = MockSurveyConfig(n_stars=n, seed=7, select_band="sdss_r", mag_range=(14.0, 22.5))
    if zero_points:
        return mock_columns(config)
    original = obs.zero_point_table

    def no_offsets(seed, dust):
        table = original(seed, dust)
        table.zero_points = {k: np.zeros_like(v) for k, v in table.zero_points.items()}
        return table

    surv.obs.zero_point_table = no_offsets
    try:
        return mock_columns(config, workers=1)
    finally:
        surv.obs.zero_point_table = original


def default_part(n_test: int) -> dict:
    from photofeh import load_model
    from photofeh.model.features import feature_matrix
    from photofeh.model.train import load_config, train

    cfg = replace(load_config(ROOT / "configs" / "default.toml"), seed=0, baseline_rounds=0, threads=1)
    out: dict = {}
    labelled = labelled_mock(20_000, seed=2)
    label_teff = np.asarray(labelled["teff_true"], float)
    with tempfile.TemporaryDirectory() as tmp:
        train(labelled, cfg, f"{tmp}/run", log=lambda s: None)
        model = load_model(f"{tmp}/run/model")
        # the same model on the same stars without the zero points; then, on the stars as simulated, the model
        # trained with prior = "flat" (photofeh.model.prior): how much of the trend the labels' prior makes
        train(labelled, replace(cfg, prior="flat"), f"{tmp}/flat", log=lambda s: None)
        flat = load_model(f"{tmp}/flat/model")
        mocks: dict[bool, dict] = {}  # each survey drawn once: "as simulated" serves both models
        for name, zp, net in (("as simulated", True, model), ("zero points 0", False, model),
                              ("as simulated, prior flat", True, flat)):
            if zp not in mocks:
                cols = survey(n_test, zp)
                _, usable = feature_matrix(cols, cfg.features, cfg.ebv_column, cfg.deredden)
                mocks[zp] = {k: v[usable] for k, v in cols.items()}
            cols = mocks[zp]
            pred = net.predict_columns(cols)
            ok = pred["usable"] & pred.get("in_domain", pred["usable"])
            est, err, true = pred["feh"][ok], pred["feh_err"][ok], cols["feh_true"][ok]
            r_mag, pop = cols["sdss_r"][ok], np.asarray(cols["pop"]).astype(str)[ok]
            part = {"all": pulls_by_r(est, err, true, r_mag)}
            for p in POPS:
                part[p] = pulls_by_r(est[pop == p], err[pop == p], true[pop == p], r_mag[pop == p])
            part["population share, r < 15"] = {p: round(float(np.mean(pop[r_mag < 15] == p)), 3) for p in POPS}
            teff = np.asarray(cols["teff_true"], float)[ok]
            for lo, hi in ((14.0, 15.0), (16.5, 18.0)):
                part[f"{lo:g} < r < {hi:g} by true Teff"] = by_teff(est, err, true, teff, (r_mag >= lo) & (r_mag < hi),
                                                                    label_teff)
            out[name] = part
    return out


TEFF_EDGES = (3000.0, 4500.0, 5000.0, 5500.0, 6000.0, 9000.0)


def by_teff(est, err, true, teff, rows, label_teff) -> dict:
    """Pulls per bin of true Teff among ``rows``, and of all those at Teff >= 4,500 K, beside the share of the
    labelled stars there (the cool dwarfs of a survey's middle magnitudes are stars the SEGUE-like labels hardly
    hold)."""
    bins = {f"{lo:g}..{hi:g} K": (lo, hi) for lo, hi in zip(TEFF_EDGES[:-1], TEFF_EDGES[1:], strict=True)}
    bins[f"all >= {TEFF_EDGES[1]:g} K"] = (TEFF_EDGES[1], TEFF_EDGES[-1])
    out = {}
    for key, (lo, hi) in bins.items():
        m = rows & (teff >= lo) & (teff < hi)
        if m.sum() >= MIN_STARS:
            s = scores(est[m], err[m], true[m])
            share = float(np.mean((label_teff >= lo) & (label_teff < hi)))
            out[key] = {"stars": s["stars"], "pull_std": s["pull_std"], "pull_width": s["pull_width"],
                        "sigma": s["sigma"], "median_error": s["median_error"],
                        "share of the labelled stars": round(share, 4)}
    return out


def selection_part(n_test: int, caps: tuple[float, ...] = (10.0,)) -> dict:
    """Part 2b: the default model unweighted and with the survey-matched prior (one per trimming cap), on the
    survey-depth stars of part 1 (seed 7) and on the labelled test split (the stars train held out: split 2)."""
    import pandas as pd
    from bench_noise_aware import FEH_EDGES, binned

    from photofeh import load_model
    from photofeh.model.features import feature_matrix
    from photofeh.model.train import load_config, train

    cfg = replace(load_config(ROOT / "configs" / "default.toml"), seed=0, baseline_rounds=0, threads=1)
    labelled = labelled_mock(20_000, seed=2)
    cols = survey(n_test)
    _, usable = feature_matrix(cols, cfg.features, cfg.ebv_column, cfg.deredden)
    cols = {k: v[usable] for k, v in cols.items()}
    variants = {"unweighted": cfg}
    for cap in caps:
        variants[f"survey-matched prior, cap {cap:g}"] = replace(
            cfg, selection_column="spec_target_probability", selection_weighting="loss", selection_weight_cap=cap)
    out: dict = {}
    for name, c in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            train(labelled, c, f"{tmp}/run", log=lambda s: None)
            model = load_model(f"{tmp}/run/model")
            split = pd.read_parquet(f"{tmp}/run/split.parquet")
        pred = model.predict_columns(cols)
        ok = pred["usable"] & pred.get("in_domain", pred["usable"])
        est, err, true = pred["feh"][ok], pred["feh_err"][ok], cols["feh_true"][ok]
        r_mag = cols["sdss_r"][ok]
        part = {"stars": int(ok.sum())}
        for name_by, by, edges in (("[Fe/H] by r", r_mag, R_EDGES), ("[Fe/H] by true [Fe/H]", true, FEH_EDGES)):
            part[name_by] = {k: {q: v[q] for q in ("stars", "pull_std", "pull_width", "bias", "sigma", "median_error")}
                             for k, v in binned(by, edges, est, err, true).items()}
        sel = model.meta["prior"].get("selection")
        if sel:
            part["weights"] = {k: round(float(v), 3) for k, v in sel.items() if k in ("max_weight", "trimmed",
                                                                                       "effective_train_stars")}
        test = labelled.loc[(split["split"] == "test").to_numpy()].reset_index(drop=True)
        t = model.predict(test)
        for label_col in ("feh_spec", "feh_true"):  # against the SSPP-like labels, and against the truth
            ref = test[label_col].to_numpy(float)
            m = t["usable"].to_numpy() & np.isfinite(ref)
            s = scores(t["feh"].to_numpy()[m], t["feh_err"].to_numpy()[m], ref[m])
            part[f"labelled test split vs {label_col}"] = {q: s[q] for q in ("stars", "sigma", "sigma_mad", "bias",
                                                                              "pull_std")}
        out[name] = part
    return out


def masked_part(n_test: int) -> dict:
    from photofeh import load_model
    from photofeh.model.train import load_config, train

    cfg = replace(load_config(ROOT / "configs" / "masked.toml"), seed=0, baseline_rounds=0, threads=1)
    labelled = labelled_mock(20_000, seed=2)
    with tempfile.TemporaryDirectory() as tmp, RecordedCalibration() as rec:
        train(labelled, cfg, f"{tmp}/run", log=lambda s: None)
        model = load_model(f"{tmp}/run/model")
    cols = survey(n_test)
    pred = model.predict_columns(cols)
    ok = pred["usable"] & pred.get("in_domain", pred["usable"])
    j = cfg.labels.index("feh")
    seen, hidden = float(model.meta["sigma_scale"][j]), float(rec.hidden[0][j])
    est, err, true, r_mag = pred["feh"][ok], pred["feh_err"][ok], cols["feh_true"][ok], cols["sdss_r"][ok]
    out = {"sigma scales, hidden mix": [round(v, 3) for v in rec.hidden[0]],
           "sigma scales, as predicted": [round(float(v), 3) for v in model.meta["sigma_scale"]],
           "labels": cfg.labels, "stars": int(ok.sum()),
           "[Fe/H] by r, scales of the hidden mix (before)": pulls_by_r(est, err * hidden / seen, true, r_mag),
           "[Fe/H] by r, scales as predicted (after)": pulls_by_r(est, err, true, r_mag)}
    # the faint bins: the survey's stars there are halo stars more metal-poor than the labels' prior; the same model
    # trained with prior = "flat" (photofeh.model.prior) tells how much of their pulls that prior makes
    faint = r_mag >= 20.5
    out["r >= 20.5, labels' prior"] = faint_scores(est[faint], err[faint], true[faint])
    with tempfile.TemporaryDirectory() as tmp:
        train(labelled, replace(cfg, prior="flat"), f"{tmp}/run", log=lambda s: None)
        flat = load_model(f"{tmp}/run/model").predict_columns(cols)
    ok = flat["usable"] & flat.get("in_domain", flat["usable"])
    est, err, true, r_mag = flat["feh"][ok], flat["feh_err"][ok], cols["feh_true"][ok], cols["sdss_r"][ok]
    out["[Fe/H] by r, prior flat"] = pulls_by_r(est, err, true, r_mag)
    out["r >= 20.5, prior flat"] = faint_scores(est[r_mag >= 20.5], err[r_mag >= 20.5], true[r_mag >= 20.5])
    return out


def faint_scores(est, err, true) -> dict:
    s = scores(est, err, true)
    return {"stars": s["stars"], "true [Fe/H] mean": round(float(np.mean(true)), 3),
            "estimate mean": round(float(np.mean(est)), 3), "bias": s["bias"], "median_error": s["median_error"],
            "pull_std": s["pull_std"], "pull_width": s["pull_width"]}


def green2020_part() -> dict:
    from bench_green2020 import COLUMNS, LABELS, REDDENING_ERROR, network_config

    from photofeh.io.real_samples import GREEN2020_FEATURES
    from photofeh.model.evaluate import class_metrics, regression_metrics
    from photofeh.model.predict import load_model
    from photofeh.model.train import train

    fit, held = green2020_split()
    cfg = network_config([*GREEN2020_FEATURES, REDDENING_ERROR])  # the configuration
    with tempfile.TemporaryDirectory() as tmp, RecordedCalibration() as rec:
        train(fit, cfg, Path(tmp) / "run", log=lambda s: None)
        model = load_model(Path(tmp) / "run")
        net = model.predict(held)
    out: dict = {}
    for j, lab in enumerate(LABELS):
        ref, ref_err = held[COLUMNS[lab]].to_numpy(float), held[f"{COLUMNS[lab]}_err"].to_numpy(float)
        seen, hidden = float(model.meta["sigma_scale"][j]), float(rec.hidden[0][j])
        for name, factor in (("hidden mix (before)", hidden / seen), ("as predicted (after)", 1.0)):
            m = regression_metrics(net[lab].to_numpy(), ref, net[f"{lab}_err"].to_numpy() * factor, ref_err)
            out[f"{lab}, {name}"] = {"sigma scale": round(seen * factor, 3), "pull std": round(m["pull_std"], 3),
                                     "pull width": round(m["pull_robust_sigma"], 3), "stars": m["n"]}
    logg = held["logg_spec"].to_numpy(float)
    usable = net["usable"].to_numpy()
    c = class_metrics(net["is_giant"].to_numpy()[usable], np.where(np.isfinite(logg), logg < 3.5, np.nan)[usable])
    out["giants (log g < 3.5), either way"] = {
        "completeness": round(c["giant_completeness"], 3), "contamination": round(c["giant_contamination"], 3),
        "threshold": round(float(model.meta["class_threshold"]), 2),
        "threshold, hidden mix": round(float(rec.hidden[2]), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-stars", type=int, default=600_000, help="survey-depth mock stars (default model)")
    ap.add_argument("--masked-test-stars", type=int, default=200_000)
    ap.add_argument("--part", choices=("all", "default", "masked", "selection", "green2020"), default="all")
    ap.add_argument("--caps", type=float, nargs="+", default=[10.0],
                    help="selection_weight_cap values of the survey-matched prior (part selection)")
    args = ap.parse_args()
    figures = {}
    keys = {"default": "default model: the calibration zero points and the population",
            "masked": "masked model: sigma scales fitted on the hidden mix or as predicted",
            "selection": "default model: the survey-matched prior (selection_weighting = loss)",
            "green2020": "green2020 network: sigma scales fitted on the hidden mix or as predicted"}
    if args.part in ("all", "default"):
        figures[keys["default"]] = default_part(args.test_stars)
    if args.part in ("all", "masked"):
        figures[keys["masked"]] = masked_part(args.masked_test_stars)
    if args.part in ("all", "selection"):
        figures[keys["selection"]] = selection_part(args.test_stars, tuple(args.caps))
    if args.part in ("all", "green2020"):
        figures[keys["green2020"]] = green2020_part()
    title = ("Calibration across magnitude: the zero-point floor, the population, and the validation mix the sigma "
             "scales are fitted on")
    notes = (f"Default model: {args.test_stars:,d} survey-depth mock stars drawn (seed 7), those with every default "
             f"feature predicted; masked model: {args.masked_test_stars:,d} drawn, all predicted; both trained on "
             "20,000 labelled mock stars (seed 2), seed 0, one thread. pull_std: standard deviation of the pulls "
             "within 5; pull_width: 1.4826 MAD; sigma: Gaussian-fit sigma of the residuals (dex).")
    if args.part == "all":  # the file afresh
        write_result("calibration_depth", title, figures, notes=notes)
    else:  # one part, beside the others as they are
        merge_result("calibration_depth", figures, title=title, notes=notes)


if __name__ == "__main__":
    main()
