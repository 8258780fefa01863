"""Why green2020's giants come out short (issue 25 item 2): a diagnosis of the class-conditional distances of
``bench_distances.py`` ("green2020, after, all bands"), merged into results/distances.json as
"green2020, giants diagnosis, ...".

The same model (all 13 bands, M_G class-conditional, calibrated on its validation parallaxes), seeds 0..N-1:

- "test split": trained on the 70% fit stars, scored on the fixed 30% test split, as bench_distances scores it;
- "5-fold, fit stars": every fit star predicted by a model trained on the other four fifths of the fit stars
  (folds from a seeded permutation; the test split is not used): 2.3 times the test split's giants, and five
  disjoint samples of ~380 giants, whose spread ("fold min"/"fold max") shows how far the median of one such
  sample moves by itself.

Each also "uncalibrated" (the networks' Gaussians as they are). Per group (the label classes, and the giants in
three bins of label log g: red clump and upper RGB below 2.8, the lower RGB to 3.2, and 3.2-3.5 beside the
class boundary) the deconvolved median d_phot/d_true (no cut on the parallax; _distances_scores.deconvolved) of

- the estimate, the more probable class's component (P(giant) >= 0.5): what photofeh gives;
- the label class's component (it reads the label: not an estimator): the components' own error;
- the estimate with the class chosen by P(giant) >= the training stars' giant fraction, i.e. by the larger
  class likelihood, the training set's class prior divided out (Saerens et al. 2002, Neural Comput. 14, 21):
  an option measured here, not what photofeh does;
- "giant component calibrated by estimated log g": the estimate with the giant component calibrated on the
  model's validation giants per bin of *estimated* log g (edges :data:`LOGG_EDGES`; a bin with fewer than 100
  informative stars takes the whole class's calibration, as photofeh's cells do) in place of photofeh's cells
  of estimated [Fe/H] and Teff, which along the giant branch (Teff 4500-5000 K for most giants) do not
  separate the clump and upper RGB from the lower RGB: an option measured here, not what photofeh does;

and the share of the group's stars given the other class's component under each rule.

Usage: python benchmarks/bench_distances_giants.py [--epochs N] [--seeds N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import green2020_split, merge_result
from _distances_scores import GIANT_LOGG, over_seeds
from bench_distances import DR2_ZERO_POINT, GREEN2020_ALL_BANDS, _config, _frame, _train_predict

DIAGNOSIS = "green2020, giants diagnosis"
LOGG_BINS = ((-np.inf, 2.8), (2.8, 3.2), (3.2, GIANT_LOGG))  # label log g of the giants' three bins
# estimated log g bins of the giants' calibration by log g: red clump (log g ~2.3-2.7 for 1-2.5 Msun clump
# stars: Bovy et al. 2014, ApJ 790, 127, their selection box) and the RGB about it, the RGB below and above
LOGG_EDGES = (2.4, 2.8, 3.2)
FOLDS = 5


def frames(epochs: int, seed: int) -> dict[str, pd.DataFrame]:
    """The test split's frame and the fit stars' out-of-fold frame, each calibrated and not, with the
    training stars' giant fraction (``pi_giant``) and, out of fold, each star's fold."""
    fit, held = green2020_split()
    cfg = _config(GREEN2020_ALL_BANDS, "mabs_gaia_g", True, deredden=False, missing="mask",
                  parallax_zero_point=DR2_ZERO_POINT, split=(0.8, 0.2, 0.0), epochs=epochs, seed=seed)

    def run(train_stars, scored):
        with tempfile.TemporaryDirectory() as tmp:
            out = _train_predict(train_stars, scored, cfg, tmp)
            out["logg"] = _logg_calibrated(Path(tmp) / "run", train_stars, scored, cfg, out[True])
        g = train_stars["logg_spec"].to_numpy(float)
        for f in out.values():
            f["pi_giant"] = float(np.mean(g[np.isfinite(g)] < GIANT_LOGG))
        return out

    split = run(fit, held)
    fold = np.random.default_rng(100 + seed).permutation(len(fit)) % FOLDS
    parts = []
    for k in range(FOLDS):
        out = run(fit[fold != k].reset_index(drop=True), fit[fold == k].reset_index(drop=True))
        for f in out.values():
            f["fold"] = k
        parts.append(out)
    cv = {key: pd.concat([p[key] for p in parts], ignore_index=True) for key in (True, False, "logg")}
    return {"test split": split[True], "test split, uncalibrated": split[False],
            "test split, giant component calibrated by estimated log g": split["logg"],
            "5-fold, fit stars": cv[True], "5-fold, fit stars, uncalibrated": cv[False],
            "5-fold, fit stars, giant component calibrated by estimated log g": cv["logg"]}


def _logg_calibrated(run: Path, train_stars: pd.DataFrame, scored: pd.DataFrame, cfg, calibrated: pd.DataFrame
                     ) -> pd.DataFrame:
    """``calibrated`` with the giant component (and the estimate where it is the giant's) calibrated per bin
    of estimated log g on the run's validation giants instead of by the model's cells."""
    from photofeh.model.absmag_calibration import fit_absmag_calibration
    from photofeh.model.predict import load_model

    model = load_model(run)
    split = pd.read_parquet(run / "split.parquet")
    val = train_stars[train_stars["source_id"].isin(split.loc[split["split"] == "validation", "source_id"])]
    model.absmag_calibration = {}
    bins = {}
    frames = {}
    for name, stars in (("validation", val.reset_index(drop=True)), ("scored", scored)):
        frames[name] = _frame(model, stars, cfg)
        logg = model.predict(stars)["logg"].to_numpy(float)
        bins[name] = np.where(np.isfinite(logg), np.searchsorted(LOGG_EDGES, logg, side="right"), -1)
    v = frames["validation"]
    giant = v["logg"].to_numpy() < GIANT_LOGG
    groups = {str(k): giant & (bins["validation"] == k) for k in range(len(LOGG_EDGES) + 1)}
    cal = fit_absmag_calibration(*(v[c].to_numpy(float) for c in ("m", "M_giant", "M_giant_err", "plx", "plx_err")),
                                 {**groups, "all": giant})
    f = frames["scored"]
    M, s = f["M_giant"].to_numpy(float).copy(), f["M_giant_err"].to_numpy(float)
    for k in range(-1, len(LOGG_EDGES) + 1):
        c = cal.get(str(k), cal["all"])
        c = c if c["calibrated"] else cal["all"]
        rows = bins["scored"] == k
        M[rows] += s[rows] * c["median"]
    out = calibrated.copy()
    out["M_giant"] = M
    chosen_giant = out["p_giant"].to_numpy(float) >= 0.5
    out["M"] = np.where(chosen_giant, M, calibrated["M"].to_numpy(float))
    return out


def _median(frame: pd.DataFrame, rows: np.ndarray, M: np.ndarray) -> float:
    """The deconvolved median d_phot/d_true of the stars ``rows`` (a mask, or indices that may repeat: a
    bootstrap draw) with absolute magnitudes ``M``."""
    from photofeh.model.absmag_calibration import deconvolve_pulls, pull_quantiles

    idx = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
    plx, err = frame["plx"].to_numpy()[idx], frame["plx_err"].to_numpy()[idx]
    ok = np.isfinite(M[idx]) & np.isfinite(plx) & (err > 0)
    if ok.sum() < 30:
        return float("nan")
    w = deconvolve_pulls(frame["m"].to_numpy()[idx][ok], M[idx][ok], np.ones(ok.sum()), plx[ok], err[ok])
    return float(10 ** (pull_quantiles(w, 0.5) / 5))


def diagnose(frame: pd.DataFrame, seed: int = 0, bootstrap: int = 5) -> dict[str, dict]:
    """Per group: stars, the share given the other class, and the deconvolved medians of the three rules."""
    rng = np.random.default_rng(seed)
    logg, p = frame["logg"].to_numpy(float), frame["p_giant"].to_numpy(float)
    giant = logg < GIANT_LOGG
    own = np.where(giant, frame["M_giant"], frame["M_dwarf"])
    balanced_giant = p >= frame["pi_giant"].to_numpy(float)
    balanced = np.where(balanced_giant, frame["M_giant"], frame["M_dwarf"])
    M = frame["M"].to_numpy(float)
    groups = {f"giants (log g < {GIANT_LOGG})": giant, f"dwarfs (log g >= {GIANT_LOGG})": logg >= GIANT_LOGG}
    for lo, hi in LOGG_BINS:
        name = f"giants, log g < {hi:g}" if not np.isfinite(lo) else f"giants, log g {lo:g} to {hi:g}"
        groups[name] = (logg >= lo) & (logg < hi)
    out = {}
    for name, g in groups.items():
        other = (p < 0.5) if name.startswith("giants") else (p >= 0.5)
        other_balanced = ~balanced_giant if name.startswith("giants") else balanced_giant
        rows = np.flatnonzero(g)
        boot = [_median(frame, rng.choice(rows, rows.size), M) for _ in range(bootstrap)]
        row = {"stars": int(g.sum()), "given the other class": round(float(np.mean(other[g])), 3),
               "deconvolved median d_phot/d_true": round(_median(frame, g, M), 3),
               "deconvolved +-": round(float(np.std(boot)), 3),
               "label class's component": round(_median(frame, g, own), 3),
               "class by P(giant) >= training giant fraction": round(_median(frame, g, balanced), 3),
               "given the other class, that rule": round(float(np.mean(other_balanced[g])), 3)}
        if "fold" in frame:
            fold = frame["fold"].to_numpy()
            for key, values in (("", M), ("label class's component, ", own)):
                per_fold = [_median(frame, g & (fold == k), values) for k in range(FOLDS)]
                row[f"{key}fold min"], row[f"{key}fold max"] = (round(float(np.nanmin(per_fold)), 3),
                                                                 round(float(np.nanmax(per_fold)), 3))
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--seeds", type=int, default=3, help="networks trained per model, seeds 0..N-1")
    args = ap.parse_args()
    per_seed: dict[str, list[dict]] = {}
    for seed in range(args.seeds):
        for model, frame in frames(args.epochs, seed).items():
            per_seed.setdefault(f"{DIAGNOSIS}, {model}", []).append(diagnose(frame, seed))
    figures = {key: {group: over_seeds([r[group] for r in runs]) for group in runs[0]}
               for key, runs in per_seed.items()}
    for key, table in figures.items():
        for group, row in table.items():
            print(f"{key:48s} {group:26s} " + "  ".join(f"{k} {v}" for k, v in row.items()))
    merge_result("distances", figures)


if __name__ == "__main__":
    main()
