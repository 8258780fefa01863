"""Photometric distances against parallaxes, by class, colour and [Fe/H]: one Gaussian M_abs against the
class-conditional mixture (issue 25).

In every sample the models never see the parallax: they learn M_abs from the parallaxes of their training stars
through the likelihood of the measured parallaxes (``parallax_labels``; Leung & Bovy 2019, MNRAS 489, 2079) and
predict it for held-out stars from photometry alone. d_phot = 10^((m - M)/5 - 2) kpc, with m observed where the
model's M includes the extinction (``deredden = false``) and dereddened otherwise (the m the model was trained
with: :func:`photofeh.model.parallax_labels.parallax_inputs`).

- green2020: the fixed 30% test split of :func:`photofeh.io.real_samples.green2020_test_mask`, the other 70% to
  fit; Gaia DR2 parallaxes, zero point -0.029 mas subtracted (Lindegren et al. 2018, A&A 616, A2).
- kepler: the Huber et al. 2017 Kepler stars, 5-fold cross-validation (every star predicted by a model trained
  on the other four fifths, folds from a seeded permutation of the KIC ids); KIC griz and 2MASS colours, M_Ks;
  TGAS parallaxes with no zero point subtracted (their systematics, about 0.3 mas, vary over the sky rather
  than being one offset: Lindegren et al. 2016, A&A 595, A4), observed magnitudes (the file has no E(B-V)).
- mock: 40,000 labelled mock stars (seed 2), 30% test; simulated EDR3 parallaxes (zero point -0.017 mas, as
  the mock draws them); dereddened SDSS, PS1 and Gaia colours with the mock's E(B-V).
- mock-depth, by magnitude: the class-conditional model trained as for "mock" (the same 70% of the labelled
  stars, SEGUE's 14 < g < 20.2) but with ``missing = "mask"``, so that it predicts what a survey star has,
  applied to a survey-depth mock with true distances: two r-selected mocks (|b| > 20; 15,000 stars at
  10 < r < 16 and 30,000 at 16 < r < 22.5, seed 31 and 32, each a fair sample of its range: the bright one
  fills the bright bins), faint stars and stars without some bands included. Scored per 1.5-mag bin of observed
  G from 10 to 22 (Gaia's catalogue stops at G = 21, and a star without BP has no dereddened G: such stars
  have no M_G distance and are counted as such): the median M_true - M and the pulls (M_true - M) / M_err of
  the stars with an estimate, the median d_phot/d_true of those with a distance, for all stars and by true
  class, and for the dwarfs the median d_phot/d_true deconvolved from the bin's parallaxes (the measure used on
  real stars) beside the truth, and what the bin's dwarfs are made of: the shares of metal-poor ([Fe/H]_true <
  -1.2) and of late M dwarfs (M_G,true >= 8, beyond the labelled set), each part's median d_phot/d_true.
  "after, Juric 2008 distance prior": each star's two-component distance posterior with the stars' density
  along its line of sight (:mod:`photofeh.galaxy.distance_posterior`), reweighing the classes; "... within
  class": the prior moves each class's distance, P(giant) stays the network's.

Models: "before", one Gaussian M_abs (the approach before issue 25); "after", M_abs class-conditional
(``class_conditional``: a component for a dwarf and one for a giant, weighed by P(giant); the estimate is the
more probable class's component, its error the root mean square of the mixture about it). On green2020
"after, all bands" adds the 2MASS and WISE colours, which carry most of the giant/dwarf information left.
"after" is calibrated on validation parallaxes per cell of estimated [Fe/H] and Teff
(:mod:`photofeh.model.absmag_calibration`); "after, [Fe/H]-binned calibration" is the same networks with the
calibration by [Fe/H] bin alone (the calibration before the Teff bins), "after, uncalibrated" without any.
"after, label class's component (diagnostic)" gives each star the component of its label's class: not an
estimator (it reads the label), it splits the class-conditional model's error into what misclassification costs
and what each class's own M_abs errs by.

Scored per group (class from the label log g < 3.5; four colour bins, BP-RP or for Kepler KIC g-i, observed;
three bins of label [Fe/H]), on held-out stars with measured parallax S/N >= 10 as the issue asks: median
d_phot/d_plx with the bootstrap standard error of the median, robust scatter (1.4826 MAD) of ln(d_phot/d_plx),
and the pull of M_abs against M from the parallax, (M - M_plx) / sqrt(sigma_M^2 + sigma_Mplx^2), std and robust;
"two-component": the pull under each star's whole two-class predictive distribution
(:func:`_distances_scores.mixture_pulls`; the scores are computed in ``_distances_scores.py``).
The S/N cut selects on the quantity being tested: at fixed photometry it keeps the nearer, fainter stars, so
even an exact model scores d_phot/d_plx > 1 and pulls < 1 on it. "exact model" gives what a model whose
predictive distribution (for a star of the label's class: that class's component) were exactly right would
score under the same cut: M drawn from it, a parallax from M and the star's parallax error, the same cut, the
median of 20 draws. Beside it, a measure with no selection on the measured parallax: stars whose parallax
S/N would be >= 10 at their photometric distance, and the median of d_phot * parallax (linear in the measured
parallax, so its noise does not bias it). On the mock, also d_phot/d_true over all test stars, and the dwarfs
split into single stars and unresolved binaries (the mock's truth).

"closure": a check of the deconvolved measure on each group's own stars: a sky in which each star's M_true is
drawn from its label class's component, its parallax from that and its error; the deconvolved median
d_phot/d_true of that sky beside the sky's true one.

Each model is trained with three seeds (``--seeds``), and every figure is the mean over the three networks,
with the range of the medians beside it: one network's draw moves a median by a few per cent.

Why green2020's giants come out short is diagnosed by ``bench_distances_giants.py`` (its rows, "green2020, giants
diagnosis, ...", are kept when this script rewrites the file).

Usage: python benchmarks/bench_distances.py [--epochs N] [--seeds N] [--samples green2020 kepler mock mock-depth]
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT, green2020_split, labelled_mock, real_sample_path, write_result
from _distances_scores import GIANT_LOGG, by_magnitude, over_seeds, scores

COLUMNS = {"feh": "feh_spec", "logg": "logg_spec", "teff": "teff_spec"}
LABELS = ["feh", "logg", "teff"]
COLOUR_BINS = {"green2020": ("BP-RP", (0.8, 1.0, 1.3)), "kepler": ("KIC g-i", (0.45, 0.65, 1.0)),
               "mock": ("BP-RP", (0.8, 1.0, 1.3))}  # observed colours
DR2_ZERO_POINT = -0.029  # mas, Lindegren et al. 2018 (A&A 616, A2), quasars
GREEN2020_ALL_BANDS = ["gaia_bp-gaia_rp", "gaia_g-gaia_rp", "ps1_g-ps1_r", "ps1_r-ps1_i", "ps1_i-ps1_z",
                       "ps1_z-ps1_y", "ps1_y-tmass_j", "tmass_j-tmass_h", "tmass_h-tmass_ks", "tmass_ks-wise_w1",
                       "wise_w1-wise_w2", "gaia_g", "reddening_b19"]
KEPLER_FEATURES = ["kic_g-kic_r", "kic_r-kic_i", "kic_i-kic_z", "kic_z-tmass_j", "tmass_j-tmass_h",
                   "tmass_h-tmass_ks", "tmass_ks"]
MOCK_FEATURES = ["sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z", "ps1_g-ps1_r", "ps1_r-ps1_i",
                 "ps1_i-ps1_z", "ps1_z-ps1_y", "gaia_bp-gaia_rp", "gaia_g-gaia_rp", "sdss_g"]


def _train_predict(fit: pd.DataFrame, held: pd.DataFrame, cfg, tmp: str) -> dict:
    """Train on ``fit`` (its own training/validation split) and predict ``held``; the per-star frames that
    :func:`scores` reads (the m the model was trained with, the zero-point-corrected parallax and its error),
    with the model's M_abs calibration (True), with its calibration by [Fe/H] bin alone ("feh": the form
    before the Teff bins) and without it (False: the networks' Gaussian as it is)."""
    from photofeh.model.predict import load_model
    from photofeh.model.train import train

    run = Path(tmp) / "run"
    train(fit, cfg, run, log=lambda s: None, overwrite=True)
    model = load_model(run)
    calibration = model.absmag_calibration
    out = {True: _frame(model, held, cfg)}
    model.absmag_calibration = _feh_binned(calibration)
    out["feh"] = _frame(model, held, cfg)
    model.absmag_calibration = {}
    out[False] = _frame(model, held, cfg)
    return out


def _feh_binned(calibration: dict) -> dict:
    """A model's M_abs calibration as it was before the Teff bins: per group, the whole and the [Fe/H] bins
    (:func:`photofeh.model.absmag_calibration.calibrate_column` applies such a one by [Fe/H] bin alone)."""
    return {label: {k: ({"all": v["all"], "bins": v["bins"]} if isinstance(v, dict) else v)
                    for k, v in c.items() if k != "teff_edges"} for label, c in calibration.items()}


def _frame(model, held: pd.DataFrame, cfg) -> pd.DataFrame:
    from photofeh.model.parallax_labels import parallax_inputs

    pred = model.predict(held)
    (label,) = cfg.parallax_labels
    aux = parallax_inputs({c: held[c].to_numpy() for c in held.columns}, [label], cfg.ebv_column, cfg.deredden,
                          cfg.parallax_zero_point)
    out = pd.DataFrame({"m": aux[:, 0], "plx": aux[:, 1], "plx_err": aux[:, 2],
                        "M": pred[label].to_numpy(), "M_err": pred[f"{label}_err"].to_numpy(),
                        "p_giant": pred["p_giant"].to_numpy(),
                        "logg": held["logg_spec"].to_numpy(float), "feh": held["feh_spec"].to_numpy(float)})
    for c in ("dwarf", "giant"):
        for s in ("", "_err"):
            name = f"{label}_{c}{s}"
            out[f"M_{c}{s}"] = pred[name].to_numpy() if name in pred else np.nan
    if "dist_kpc_true" in held:
        out["d_true"] = held["dist_kpc_true"].to_numpy(float)
        out["binary"] = held["is_binary_true"].to_numpy(bool)
        out["M_true"] = held[f"{label}_true"].to_numpy(float)
        out["giant_true"] = held["is_giant_true"].to_numpy(bool)
        out["G"] = held["gaia_g"].to_numpy(float)
        out["feh_true"] = held["feh_true"].to_numpy(float)
    for c in ("l", "b"):  # the line of sight, for the distance prior
        if c in held:
            out[c] = held[c].to_numpy(float)
    return out


def _config(features, label, conditional: bool, **kw):
    from photofeh.model.train import TrainConfig

    return TrainConfig(features=features, labels=[*LABELS, label], label_columns=dict(COLUMNS),
                       parallax_labels=[label], class_conditional=[label] if conditional else [],
                       baseline_rounds=0, threads=1, **kw)  # one thread: beside other processes 2 ran slower


def green2020(epochs: int, seed: int) -> dict[str, pd.DataFrame]:
    from photofeh.io.real_samples import GREEN2020_FEATURES

    fit, held = green2020_split()
    gaia_ps1 = [f for f in GREEN2020_FEATURES if not f.startswith("parallax")]
    out = {}
    for name, features, conditional in (("", gaia_ps1, False), ("", gaia_ps1, True),
                                        (", all bands", GREEN2020_ALL_BANDS, True)):
        cfg = _config(features, "mabs_gaia_g", conditional, deredden=False, missing="mask",
                      parallax_zero_point=DR2_ZERO_POINT, split=(0.8, 0.2, 0.0), epochs=epochs, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            frames = _train_predict(fit, held, cfg, tmp)
        out.update(_variants(frames, conditional, name, (held["gaia_bp"] - held["gaia_rp"]).to_numpy(float)))
    return out


def _variants(frames: dict[bool, pd.DataFrame], conditional: bool, suffix: str, colour) -> dict[str, pd.DataFrame]:
    """The frames scored for one trained model: a single Gaussian M_abs uncalibrated is "before" (the approach
    before issue 25); a class-conditional one is "after" with its calibration and "after, uncalibrated"
    without (the networks' Gaussians as they are)."""
    for frame in frames.values():
        frame["colour"] = colour
    if not conditional:
        return {f"before{suffix}": frames[False]}
    return {f"after{suffix}": frames[True], f"after, [Fe/H]-binned calibration{suffix}": frames["feh"],
            f"after, uncalibrated{suffix}": frames[False],
            f"after, label class's component (diagnostic){suffix}": label_class_component(frames[True])}


def label_class_component(frame: pd.DataFrame) -> pd.DataFrame:
    """A diagnostic, not an estimator: each star given the component of the class its label says (log g <
    3.5: the giant's), so that what misclassification costs (the difference from "after") is told apart from
    what each class's own M_abs errs by."""
    giant = frame["logg"].to_numpy() < GIANT_LOGG
    out = frame.copy()
    for s in ("", "_err"):
        out[f"M{s}"] = np.where(giant, frame[f"M_giant{s}"], frame[f"M_dwarf{s}"])
    return out


def with_distance_prior(frame: pd.DataFrame, reweigh_classes: bool) -> pd.DataFrame:
    """The frame with M replaced by the one each star's distance posterior under the Juric et al. 2008 prior
    along its line of sight implies (:func:`photofeh.galaxy.distance_posterior.mixture_distances`): M = m - mu
    at the posterior distance, its error half the 16-84% interval in magnitudes."""
    from photofeh.galaxy.distance_posterior import mixture_distances

    post = mixture_distances(*(frame[c].to_numpy(float) for c in ("m", "M_dwarf", "M_dwarf_err", "M_giant",
                                                                   "M_giant_err", "p_giant")),
                             l_deg=frame["l"].to_numpy(float), b_deg=frame["b"].to_numpy(float),
                             reweigh_classes=reweigh_classes)
    out = frame.copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["M"] = frame["m"].to_numpy(float) - 5 * np.log10(post["dist_kpc"]) - 10
        out["M_err"] = 2.5 * np.log10(post["dist_hi_kpc"] / post["dist_lo_kpc"])
    out["p_giant"] = post["p_giant_dist"]
    return out


def kepler(epochs: int, seed: int, folds: int = 5, fold_seed: int = 25) -> dict[str, pd.DataFrame]:
    from photofeh.io.presets import apply_preset
    from photofeh.io.readers import read_columns

    cols, _ = apply_preset(read_columns(real_sample_path("kepler_giants_labels_photometry.txt")), "kepler_huber17")
    stars = pd.DataFrame(cols)
    ids = np.unique(stars["source_id"].to_numpy())
    fold_of_id = dict(zip(ids, np.random.default_rng(fold_seed).permutation(len(ids)) % folds, strict=True))
    fold = stars["source_id"].map(fold_of_id).to_numpy()
    out = {}
    for conditional in (False, True):
        parts: dict[str, list] = {}
        for k in range(folds):
            fit, held = stars[fold != k].reset_index(drop=True), stars[fold == k].reset_index(drop=True)
            cfg = _config(KEPLER_FEATURES, "mabs_tmass_ks", conditional, deredden=False, missing="mask",
                          parallax_zero_point=0.0, split=(0.8, 0.2, 0.0), epochs=epochs, batch_size=128,
                          seed=100 * seed + k)
            with tempfile.TemporaryDirectory() as tmp:
                frames = _train_predict(fit, held, cfg, tmp)
            for name, frame in _variants(frames, conditional, "", (held["kic_g"] - held["kic_i"]).to_numpy(float)
                                         ).items():
                parts.setdefault(name, []).append(frame)
        out.update({name: pd.concat(p, ignore_index=True) for name, p in parts.items()})
    return out


@functools.cache
def _mock_stars() -> pd.DataFrame:
    return labelled_mock(40_000, seed=2)


def mock(epochs: int, seed: int) -> dict[str, pd.DataFrame]:
    stars = _mock_stars()
    test = np.random.default_rng(25).random(len(stars)) < 0.3
    fit, held = stars[~test].reset_index(drop=True), stars[test].reset_index(drop=True)
    out = {}
    for conditional in (False, True):
        cfg = _config(MOCK_FEATURES, "mabs_gaia_g", conditional, split=(0.8, 0.2, 0.0), epochs=epochs, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            frames = _train_predict(fit, held, cfg, tmp)
        out.update(_variants(frames, conditional, "", (held["gaia_bp"] - held["gaia_rp"]).to_numpy(float)))
    return out


DEPTH_MOCKS = (((10.0, 16.0), 15_000, 31), ((16.0, 22.5), 30_000, 32))  # SDSS r range, stars, seed


@functools.cache
def _depth_stars() -> pd.DataFrame:
    """The survey-depth mock: the default survey (|b| > 20) in two r ranges, each a fair sample of its range."""
    from photofeh.simulate.survey import MockSurveyConfig

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import catalog_frame

    return pd.concat([catalog_frame(MockSurveyConfig(n_stars=n, seed=seed, mag_range=r))
                      for r, n, seed in DEPTH_MOCKS], ignore_index=True)


def mock_depth(epochs: int, seed: int) -> dict[str, pd.DataFrame]:
    """The labelled mock's class-conditional model, trained to predict from what a star has (``missing =
    "mask"``), on the survey-depth mock: calibrated, by [Fe/H] bin alone, and uncalibrated."""
    stars = _mock_stars()
    test = np.random.default_rng(25).random(len(stars)) < 0.3
    fit = stars[~test].reset_index(drop=True)
    cfg = _config(MOCK_FEATURES, "mabs_gaia_g", True, missing="mask", split=(0.8, 0.2, 0.0), epochs=epochs,
                  seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        frames = _train_predict(fit, _depth_stars(), cfg, tmp)
    return {"after": frames[True], "after, [Fe/H]-binned calibration": frames["feh"],
            "after, uncalibrated": frames[False],
            "after, Juric 2008 distance prior": with_distance_prior(frames[True], True),
            "after, Juric 2008 distance prior within class": with_distance_prior(frames[True], False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--samples", nargs="+", default=["green2020", "kepler", "mock", "mock-depth"],
                    choices=["green2020", "kepler", "mock", "mock-depth"])
    ap.add_argument("--seeds", type=int, default=3, help="networks trained per model, seeds 0..N-1")
    args = ap.parse_args()
    figures: dict = {}
    runners = {"green2020": green2020, "kepler": kepler, "mock": mock, "mock-depth": mock_depth}
    for sample in args.samples:
        per_seed: dict[str, list[dict]] = {}
        for seed in range(args.seeds):
            for model, frame in runners[sample](args.epochs, seed).items():
                score = by_magnitude(frame) if sample == "mock-depth" else scores(frame, *COLOUR_BINS[sample])
                per_seed.setdefault(f"{sample}, {model}", []).append(score)
        for key, runs in per_seed.items():
            figures[key] = {group: over_seeds([r[group] for r in runs]) for group in runs[0]}
            for group, row in figures[key].items():
                print(f"{key:28s} {group:24s} " + "  ".join(f"{k} {v}" for k, v in row.items()))
    from _common import RESULTS

    previous = RESULTS / "distances.json"
    if previous.exists():  # a run of some samples keeps the others' rows (read now: runs may overlap)
        import json

        kept = {k: v for k, v in json.loads(previous.read_text())["figures"].items()
                if k.split(",")[0] not in args.samples or "giants diagnosis" in k}  # bench_distances_giants.py
        figures = kept | figures
    order = list(runners)
    figures = dict(sorted(figures.items(), key=lambda kv: order.index(kv[0].split(",")[0])))
    write_result("distances", "Photometric distances against parallaxes: one Gaussian M_abs (before) and the "
                 "class-conditional mixture (after), held-out stars, no parallax input", figures,
                 notes=f"{args.epochs} epochs, default network, one member; every figure the mean over "
                       f"{args.seeds} networks trained with seeds 0-{args.seeds - 1} (the seed range of the "
                       "medians beside them). Groups: class from the label log g; "
                       "colour bins of observed BP-RP (Kepler: KIC g-i); label [Fe/H]. 'exact model': what a model "
                       "whose predictive distribution were right would score under the same S/N cut (the cut keeps "
                       "the nearer stars at fixed photometry); 'S/N_phot >= 10': stars selected on their "
                       "photometric distance instead, no selection on the measured parallax.")


if __name__ == "__main__":
    main()
