"""The prior as a choice: conditional bias of [Fe/H] against the true [Fe/H], labels prior against flat prior
(trained with capped weights) and against the labels-prior model with its training prior divided out.

Mock: the default configuration trained on a SEGUE-like labelled set (spec-only mock, 30,000 stars, seed 2),
scored on its test split against the true [Fe/H] and, separately, on the masked configuration for stars
without SDSS u (the case where the photometry says least). Real: the Green et al. 2021 sample, its fixed
30% test split, against the spectroscopic labels (few stars below -1.25: only bins with >= 50 stars count).
Per 0.25-dex bin of the reference [Fe/H]: median bias, robust sigma and stars; overall: sigma of a Gaussian
fitted to the residuals, and the ratio flat / labels (target <= 1.25). Target: |bias| <= 0.10 dex in every
bin with >= 50 stars for the flat prior.

Usage: python benchmarks/bench_prior.py [--stars N] [--epochs N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import ROOT, green2020_split, labelled_mock, write_result

EDGES = np.arange(-2.5, 0.5001, 0.25)
MIN_BIN = 50


def binned_bias(est: np.ndarray, ref: np.ndarray) -> dict:
    out = {}
    ok = np.isfinite(est) & np.isfinite(ref)
    for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True):
        sel = ok & (ref >= lo) & (ref < hi)
        if sel.sum() >= 10:
            d = est[sel] - ref[sel]
            out[f"{lo:+.2f}..{hi:+.2f}"] = {"stars": int(sel.sum()), "bias": round(float(np.median(d)), 3),
                                            "robust sigma": round(float(1.4826 * np.median(np.abs(
                                                d - np.median(d)))), 3)}
    return out


def summarise(name: str, preds: dict, ref: np.ndarray) -> dict:
    from photofeh.model.evaluate import regression_metrics

    row = {}
    for prior, est in preds.items():
        m = regression_metrics(est, ref)
        bins = binned_bias(est, ref)
        worst = max((abs(b["bias"]) for b in bins.values() if b["stars"] >= MIN_BIN), default=float("nan"))
        row[prior] = {"sigma": round(m["sigma_gauss"], 3), "worst |bias| (bins >= 50 stars)": round(worst, 3),
                      "bins": bins}
    row["sigma flat / labels"] = round(row["flat"]["sigma"] / row["labels"]["sigma"], 3)
    row["sigma divided out / labels"] = round(row["divided out"]["sigma"] / row["labels"]["sigma"], 3)
    return {name: row}


def train_both(table, base_cfg, epochs: int, frame):
    from photofeh.model.predict import load_model
    from photofeh.model.train import TrainConfig, train

    out = {}
    for prior in ("labels", "flat"):
        cfg = TrainConfig(**{**base_cfg, "prior": prior, "epochs": epochs})
        with tempfile.TemporaryDirectory() as tmp:
            train(table, cfg, Path(tmp) / "run", log=lambda s: None)
            out[prior] = load_model(Path(tmp) / "run").predict(frame)["feh"].to_numpy()
            if prior == "labels":  # the same model, its training prior divided out at prediction time
                out["divided out"] = load_model(Path(tmp) / "run", prior="flat").predict(frame)["feh"].to_numpy()
    return out


def mock(stars: int, epochs: int) -> dict:
    import pandas as pd

    from photofeh.model.train import load_config

    spec = labelled_mock(stars, seed=2)
    test = np.random.default_rng(5).random(len(spec)) < 0.2
    fit, held = spec[~test].reset_index(drop=True), spec[test].reset_index(drop=True)
    figures = {}
    for name, config, frame in (
            ("mock, default model, all bands", "default.toml", held),
            ("mock, masked model, stars without SDSS", "masked.toml",
             held.assign(**{c: np.nan for c in held.columns if c.startswith("sdss_")}))):
        cfg = {k: v for k, v in vars(load_config(ROOT / "configs" / config)).items()}
        cfg["split"] = (0.8, 0.2, 0.0)
        preds = train_both(fit, cfg, epochs, pd.DataFrame(frame))
        figures.update(summarise(name, preds, held["feh_true"].to_numpy(float)))
    return figures


def real(epochs: int) -> dict:
    from photofeh.io.real_samples import GREEN2020_FEATURES

    fit, held = green2020_split()
    cfg = dict(features=GREEN2020_FEATURES, labels=["feh", "logg", "teff"],
               label_columns={"feh": "feh_spec", "logg": "logg_spec", "teff": "teff_spec"}, deredden=False,
               missing="mask", split=(0.8, 0.2, 0.0), seed=0)
    preds = train_both(fit, cfg, epochs, held)
    return summarise("real, Green et al. 2021 test split", preds, held["feh_spec"].to_numpy(float))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stars", type=int, default=30_000)
    ap.add_argument("--epochs", type=int, default=80)
    args = ap.parse_args()
    figures = {**mock(args.stars, args.epochs), **real(args.epochs)}
    write_result("prior", "Labels prior against flat prior: [Fe/H] bias conditional on the true [Fe/H]", figures,
                 notes=f"mock: {args.stars:,d} labelled stars (80% to fit, 20% test); real: the fixed green2020 "
                       f"split; {args.epochs} epochs; flat prior with weights capped at 3 (config "
                       "prior_weight_cap).")


if __name__ == "__main__":
    main()
