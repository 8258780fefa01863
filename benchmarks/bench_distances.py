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
"two-component": the pull under each star's whole two-class predictive distribution (:func:`mixture_pulls`).
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
from _common import ROOT, green2020_split, labelled_mock, write_result

COLUMNS = {"feh": "feh_spec", "logg": "logg_spec", "teff": "teff_spec"}
LABELS = ["feh", "logg", "teff"]
GIANT_LOGG = 3.5
REFERENCE_SNR = 10.0
FEH_EDGES = (-0.5, 0.0)  # three bins of the label [Fe/H]: < -0.5, -0.5..0, >= 0
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


def real_data() -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import real_data_dir

    return real_data_dir()


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

    cols, _ = apply_preset(read_columns(real_data() / "kepler_giants_labels_photometry.txt"), "kepler_huber17")
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
G_EDGES = tuple(np.arange(10.0, 22.01, 1.5))  # observed Gaia G bins of the by-magnitude part


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


def by_magnitude(frame: pd.DataFrame, seed: int = 0) -> dict[str, dict]:
    """Per bin of observed G (:data:`G_EDGES`) and class (all stars, and by the mock's true class): the stars,
    how many have an M_G estimate (the masked model needs 3 measured features: the brightest stars, saturated
    in SDSS and PS1, have only Gaia's two colours) and a distance (the dereddened G needs BP-RP for its
    extinction coefficient: most stars fainter than G ~ 20 have no BP), the median M_true - M_G (mag) and the
    pulls z = (M_true - M_G) / M_G_err (median; half-width about 0 holding 68%, 1 for errors that hold 68% of
    the stars) of the stars with an estimate, the median d_phot/d_true with its bootstrap error of those with a
    distance, and for the dwarfs the median d_phot/d_true deconvolved from the bin's parallaxes
    (:func:`deconvolved`), what the real samples are scored with."""
    from photofeh.model.absmag_calibration import ONE_SIGMA

    rng = np.random.default_rng(seed)
    G, m, M, M_err = (frame[c].to_numpy(float) for c in ("G", "m", "M", "M_err"))
    d_true, M_true, giant = frame["d_true"].to_numpy(float), frame["M_true"].to_numpy(float), frame["giant_true"]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = 10 ** ((m - M) / 5 - 2) / d_true
    out: dict[str, dict] = {}
    for lo, hi in zip(G_EDGES[:-1], G_EDGES[1:], strict=True):
        in_bin = (G >= lo) & (G < hi)
        for cls, rows in (("all", in_bin), ("dwarfs (truth)", in_bin & ~giant), ("giants (truth)", in_bin & giant)):
            est = rows & np.isfinite(M) & np.isfinite(M_err)
            dist = est & np.isfinite(ratio)
            row: dict = {"stars": int(rows.sum()), "with an estimate": int(est.sum()),
                         "with a distance": int(dist.sum())}
            if est.sum() >= 30:
                z = (M_true[est] - M[est]) / M_err[est]
                row.update({"median M_true - M": round(float(np.median(M_true[est] - M[est])), 3),
                            "pull median": round(float(np.median(z)), 2),
                            "pull width": round(float(np.quantile(np.abs(z), ONE_SIGMA)), 2)})
            if dist.sum() >= 30:
                r = ratio[dist]
                boot = [np.median(rng.choice(r, r.size)) for _ in range(200)]
                row.update({"median d_phot/d_true": round(float(np.median(r)), 3), "+-": round(float(np.std(boot)), 3)})
                if cls.startswith("dwarfs"):
                    row.update(_dwarf_mix(ratio, dist, M_true, frame["feh_true"].to_numpy(float)))
                    plx, plx_err = frame["plx"].to_numpy(float)[dist], frame["plx_err"].to_numpy(float)[dist]
                    dec = deconvolved(m[dist], M[dist], M_err[dist], plx, plx_err, rng, bootstrap=0)
                    if "deconvolved median d_phot/d_true" in dec:
                        row["deconvolved median d_phot/d_true"] = dec["deconvolved median d_phot/d_true"]
            out[f"G {lo:g} to {hi:g}, {cls}"] = row
    return out


HALO_FEH, THIN_FEH = -1.2, -0.6  # true [Fe/H] splitting the mock's halo-like and thin-disc-like dwarfs
LATE_M = 8.0  # M_G of late M dwarfs; the labelled mock's dwarfs reach M_G 6.4 at their 90th percentile


def _dwarf_mix(ratio, rows, M_true, feh_true) -> dict:
    """What the dwarfs of a magnitude bin are made of, and each part's median d_phot/d_true: by true [Fe/H]
    (metal-poor halo dwarfs against thin-disc ones) and the share of late M dwarfs beyond the labelled set."""
    out = {"share M_G true >= 8": round(float(np.mean(M_true[rows] >= LATE_M)), 3),
           "share [Fe/H] true < -1.2": round(float(np.mean(feh_true[rows] < HALO_FEH)), 3)}
    early = M_true < LATE_M
    for name, part in ((f"M_G true < {LATE_M:g}", early),
                       (f"[Fe/H] true < {HALO_FEH:g}, M_G true < {LATE_M:g}", (feh_true < HALO_FEH) & early),
                       (f"[Fe/H] true >= {THIN_FEH:g}, M_G true < {LATE_M:g}", (feh_true >= THIN_FEH) & early)):
        k = rows & part
        if k.sum() >= 30:
            out[f"median d_phot/d_true, {name}"] = round(float(np.median(ratio[k])), 3)
    return out


# ---------------------------------------------------------------- scores
def groups(frame: pd.DataFrame, colour_name: str, colour_edges) -> dict[str, np.ndarray]:
    """Masks of the groups scored: class by the label log g, colour bins, label [Fe/H] bins."""
    giant = frame["logg"].to_numpy() < GIANT_LOGG
    known = np.isfinite(frame["logg"].to_numpy())
    out = {f"dwarfs (log g >= {GIANT_LOGG})": known & ~giant, f"giants (log g < {GIANT_LOGG})": giant}
    if "binary" in frame:  # the mock knows which stars are unresolved binaries
        b = frame["binary"].to_numpy()
        out["dwarfs, single stars (mock truth)"] = known & ~giant & ~b
        out["dwarfs, unresolved binaries (mock truth)"] = known & ~giant & b
    c = frame["colour"].to_numpy()
    edges = [-np.inf, *colour_edges, np.inf]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        out[_bin_name(colour_name, lo, hi)] = (c >= lo) & (c < hi)
    f = frame["feh"].to_numpy()
    edges = [-np.inf, *FEH_EDGES, np.inf]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        out[_bin_name("[Fe/H]", lo, hi)] = (f >= lo) & (f < hi)
    return out


def _bin_name(name: str, lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return f"{name} < {hi:g}"
    if not np.isfinite(hi):
        return f"{name} >= {lo:g}"
    return f"{name} {lo:g} to {hi:g}"


def robust_sigma(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def _measured(m, M, M_err, plx, plx_err) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stars with measured parallax S/N >= 10, d_phot/d_plx (= d_phot * parallax) and the M_abs pulls."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = (plx / plx_err >= REFERENCE_SNR) & np.isfinite(M)
        ratio = 10 ** ((m - M) / 5 - 2) * plx
        M_plx = m + 5 * np.log10(np.where(sel, plx, 1.0)) - 10
        M_plx_err = 5 / np.log(10) * plx_err / plx
        pull = (M - M_plx) / np.hypot(M_err, M_plx_err)
    return sel, ratio, pull


def mixture_pulls(frame: pd.DataFrame) -> np.ndarray:
    """Each star's M_abs pull under its whole predictive distribution, the two classes' Gaussians weighed by
    P(giant) (one Gaussian for a model without components), each widened by the parallax's magnitude error:
    z = Phi^-1(F(M_plx)), F the mixture's CDF at the parallax's M (the probability integral transform; 1 for a
    calibrated mixture, whatever the class), where the point estimate's pull takes one Gaussian about the
    chosen class."""
    from scipy.special import ndtr, ndtri

    m, plx, plx_err = (frame[c].to_numpy(float) for c in ("m", "plx", "plx_err"))
    with np.errstate(invalid="ignore", divide="ignore"):
        M_plx = m + 5 * np.log10(np.where(plx > 0, plx, np.nan)) - 10
        s_plx = 5 / np.log(10) * plx_err / plx
        if np.isfinite(frame["M_dwarf"].to_numpy(float)).any():
            p = frame["p_giant"].to_numpy(float)
            cdf = ((1 - p) * ndtr((M_plx - frame["M_dwarf"].to_numpy(float))
                                  / np.hypot(frame["M_dwarf_err"].to_numpy(float), s_plx))
                   + p * ndtr((M_plx - frame["M_giant"].to_numpy(float))
                              / np.hypot(frame["M_giant_err"].to_numpy(float), s_plx)))
        else:
            cdf = ndtr((M_plx - frame["M"].to_numpy(float)) / np.hypot(frame["M_err"].to_numpy(float), s_plx))
        return ndtri(np.clip(cdf, 1e-6, 1 - 1e-6))  # the pull's sign: M_plx - M, as (M - M_plx) mirrored


def exact_model_draws(frame: pd.DataFrame, draws: int = 20, seed: int = 0) -> list[tuple]:
    """(selected, ratio, pull) of ``draws`` simulated skies in which each star's M_abs follows the model's own
    predictive distribution (the component of the star's label class where the model has components)."""
    rng = np.random.default_rng(seed)
    giant = frame["logg"].to_numpy() < GIANT_LOGG
    M, M_err = frame["M"].to_numpy(), frame["M_err"].to_numpy()
    if np.isfinite(frame["M_dwarf"].to_numpy()).any():
        mu = np.where(giant, frame["M_giant"], frame["M_dwarf"])
        sigma = np.where(giant, frame["M_giant_err"], frame["M_dwarf_err"])
    else:
        mu, sigma = M, M_err
    m, plx_err = frame["m"].to_numpy(), frame["plx_err"].to_numpy()
    out = []
    for _ in range(draws):
        true_M = mu + sigma * rng.standard_normal(len(frame))
        plx = 10 ** (2 - (m - true_M) / 5) + plx_err * rng.standard_normal(len(frame))
        out.append(_measured(m, M, M_err, plx, plx_err))
    return out


def scores(frame: pd.DataFrame, colour_name: str, colour_edges, seed: int = 0) -> dict[str, dict]:
    m, M, M_err = frame["m"].to_numpy(), frame["M"].to_numpy(), frame["M_err"].to_numpy()
    plx, plx_err = frame["plx"].to_numpy(), frame["plx_err"].to_numpy()
    sel, ratio, pull = _measured(m, M, M_err, plx, plx_err)
    pit = mixture_pulls(frame)
    sims = exact_model_draws(frame, seed=seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_phot = 10 ** ((m - M) / 5 - 2)
        expected = (1 / d_phot) / plx_err >= REFERENCE_SNR
    rng = np.random.default_rng(seed)
    out = {}
    for name, g in groups(frame, colour_name, colour_edges).items():
        k = sel & g
        r = ratio[k]
        row: dict = {"stars": int(k.sum())}
        if k.sum() >= 3:
            boot = [np.median(rng.choice(r, r.size)) for _ in range(200)]
            row.update({"median d_phot/d_plx": round(float(np.median(r)), 3), "+-": round(float(np.std(boot)), 3),
                        "robust scatter ln": round(robust_sigma(np.log(r)), 3),
                        "M pull std": round(float(np.std(pull[k])), 2),
                        "M pull robust": round(robust_sigma(pull[k]), 2),
                        "M pull std, two-component": round(float(np.std(pit[k])), 2),
                        "M pull robust, two-component": round(robust_sigma(pit[k]), 2),
                        "exact model: median": round(float(np.median([np.median(s_r[s_k & g]) for s_k, s_r, _ in sims
                                                                      if (s_k & g).sum()])), 3),
                        "exact model: pull std": round(float(np.median([np.std(s_p[s_k & g]) for s_k, _, s_p in sims
                                                                        if (s_k & g).sum()])), 2)})
        row.update(deconvolved(m[g], M[g], M_err[g], plx[g], plx_err[g], rng))
        row.update(deconvolution_closure(frame, g, rng))
        if np.isfinite(frame["M_dwarf"].to_numpy()).any():  # each star's own class's component (label class)
            giant = frame["logg"].to_numpy() < GIANT_LOGG
            own = np.where(giant, frame["M_giant"], frame["M_dwarf"])[g]
            own_err = np.where(giant, frame["M_giant_err"], frame["M_dwarf_err"])[g]
            width = deconvolved_width(m[g], own, own_err, plx[g], plx_err[g])
            if width is not None:
                row["deconvolved pull width, own class's component"] = width
        e = expected & g & np.isfinite(plx)
        row["stars, S/N_phot >= 10"] = int(e.sum())
        if e.sum() >= 3:
            row["median d_phot x parallax"] = round(float(np.median(d_phot[e] * plx[e])), 3)
        if "d_true" in frame:
            from photofeh.model.absmag_calibration import ONE_SIGMA

            t = g & np.isfinite(M) & np.isfinite(frame["d_true"].to_numpy())
            true_ratio = d_phot[t] / frame["d_true"].to_numpy()[t]
            row["median d_phot/d_true, all"] = round(float(np.median(true_ratio)), 3)
            z = 5 * np.log10(true_ratio) / M_err[t]
            row["pull width, true"] = round(float(np.quantile(np.abs(z), ONE_SIGMA)), 2)
        out[name] = row
    return out


def deconvolved(m, M, M_err, plx, plx_err, rng, bootstrap: int = 5) -> dict:
    """The group's median d_phot/d_true and its pull width with no selection on the parallax: the
    distributions of M_true - M and of (M_true - M) / M_err deconvolved from the parallax errors of every star
    with a parallax (:func:`photofeh.model.absmag_calibration.deconvolve_pulls`; on the mock it tracks the true
    median to a per cent), with a bootstrap error of the median."""
    from photofeh.model.absmag_calibration import deconvolve_pulls, pull_quantiles

    ok = np.isfinite(M) & np.isfinite(plx) & (plx_err > 0)
    if ok.sum() < 30:
        return {}
    m, M, M_err, plx, plx_err = m[ok], M[ok], M_err[ok], plx[ok], plx_err[ok]
    ones = np.ones(ok.sum())

    def median_ratio(rows):
        w = deconvolve_pulls(m[rows], M[rows], ones[rows], plx[rows], plx_err[rows])
        return 10 ** (pull_quantiles(w, 0.5) / 5)

    out = {"deconvolved median d_phot/d_true": round(float(median_ratio(slice(None))), 3)}
    if not bootstrap:
        return out
    boot = [median_ratio(rng.integers(0, ok.sum(), ok.sum())) for _ in range(bootstrap)]
    out.update({"deconvolved +-": round(float(np.std(boot)), 3),
                "deconvolved pull width": deconvolved_width(m, M, M_err, plx, plx_err)})
    return {k: v for k, v in out.items() if v is not None}


def deconvolution_closure(frame: pd.DataFrame, rows: np.ndarray, rng) -> dict:
    """How well the deconvolved median holds for this group's stars: a sky in which each star's true M is drawn
    from its label class's component (its own class's Gaussian, where the model has components), parallaxes
    drawn with the stars' errors, and the deconvolved median d_phot/d_true of that sky beside its true one."""
    from photofeh.model.absmag_calibration import deconvolve_pulls, pull_quantiles

    giant = frame["logg"].to_numpy() < GIANT_LOGG
    M = frame["M"].to_numpy(float)
    if np.isfinite(frame["M_dwarf"].to_numpy(float)).any():
        mu = np.where(giant, frame["M_giant"], frame["M_dwarf"])
        sigma = np.where(giant, frame["M_giant_err"], frame["M_dwarf_err"])
    else:
        mu, sigma = M, frame["M_err"].to_numpy(float)
    m, plx_err = frame["m"].to_numpy(float), frame["plx_err"].to_numpy(float)
    ok = rows & np.isfinite(M) & np.isfinite(mu) & np.isfinite(sigma) & np.isfinite(frame["plx"].to_numpy(float))
    ok &= plx_err > 0
    if ok.sum() < 30:
        return {}
    true_M = mu[ok] + sigma[ok] * rng.standard_normal(ok.sum())
    plx = 10 ** (2 - (m[ok] - true_M) / 5) + plx_err[ok] * rng.standard_normal(ok.sum())
    w = deconvolve_pulls(m[ok], M[ok], np.ones(ok.sum()), plx, plx_err[ok])
    return {"closure: deconvolved": round(float(10 ** (pull_quantiles(w, 0.5) / 5)), 3),
            "closure: truth": round(float(10 ** (np.median(true_M - M[ok]) / 5)), 3)}


def deconvolved_width(m, M, M_err, plx, plx_err) -> float | None:
    """The half-width about z = 0 that holds 68% of the deconvolved (M_true - M) / M_err: 1 where the errors
    hold 68% of the stars (:func:`photofeh.model.absmag_calibration.symmetric_width`)."""
    from photofeh.model.absmag_calibration import deconvolve_pulls, symmetric_width

    ok = np.isfinite(M) & np.isfinite(M_err) & np.isfinite(plx) & (plx_err > 0)
    if ok.sum() < 30:
        return None
    return round(symmetric_width(deconvolve_pulls(m[ok], M[ok], M_err[ok], plx[ok], plx_err[ok]), 0.0), 2)


def over_seeds(rows: list[dict]) -> dict:
    """One group's scores over the training seeds: the mean of each figure (star counts as integers), and the
    range of the median d_phot/d_plx and of d_phot x parallax (how much one network's draw moves them)."""
    out: dict = {}
    for key in rows[0]:
        values = [r[key] for r in rows if key in r]
        if len(values) < len(rows):
            continue
        mean = float(np.mean(values))
        out[key] = (int(round(mean)) if key.startswith(("stars", "with a"))
                    else round(mean, 2 if "pull" in key else 3))
        if key in ("median d_phot/d_plx", "median d_phot x parallax", "deconvolved median d_phot/d_true",
                   "median d_phot/d_true", "median M_true - M") and len(values) > 1:
            out[f"{key}, seed range"] = f"{min(values):.3f}-{max(values):.3f}"
    return out


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
