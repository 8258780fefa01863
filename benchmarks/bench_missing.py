"""Missing photometry: one masked model (configs/masked.toml) against the default model, with surveys removed.

Both models are trained on the same 100,000 labelled mock stars with the same split; the test stars are
then predicted with all their photometry, and again with SDSS, Gaia (photometry and parallax), or both
removed. The default model cannot predict a star that lacks a feature; the masked one should match it when
nothing is missing and widen its uncertainties honestly (pull widths near 1) when surveys are gone.

Usage: python benchmarks/bench_missing.py [--work DIR] [--epochs N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT, write_result
from bench_predict import ensure_labelled_set

from photofeh.evaluate import gaussian_fit_sigma
from photofeh.predict import load_model
from photofeh.train import load_config, train

CASES = {"all photometry": (), "no SDSS": ("sdss_",), "no Gaia (photometry, parallax)": ("gaia_", "parallax"),
         "PS1 only": ("sdss_", "gaia_", "parallax")}


def hide(df: pd.DataFrame, prefixes) -> pd.DataFrame:
    df = df.copy()
    for c in df.columns:
        if prefixes and c.startswith(prefixes):
            df[c] = np.nan
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default="/tmp/photofeh_bench_predict")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    work = Path(args.work)
    spec = pd.read_parquet(ensure_labelled_set(work))
    figures, models, seconds = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("default", "masked"):
            cfg = load_config(ROOT / "configs" / f"{name}.toml")
            cfg.epochs = args.epochs
            t0 = time.perf_counter()
            train(spec, cfg, Path(tmp) / name, log=lambda s: None)
            seconds[name] = time.perf_counter() - t0
            models[name] = load_model(Path(tmp) / name / "model")
        split = pd.read_parquet(Path(tmp) / "masked" / "split.parquet")["split"].to_numpy()
    test = spec[split == "test"].reset_index(drop=True)
    lab = np.isfinite(test["feh_spec"]).to_numpy()
    for case, prefixes in CASES.items():
        df = hide(test, prefixes)
        row = {}
        for name, model in models.items():
            out = model.predict(df)
            ok = out["usable"] & lab
            row[f"{name}: usable"] = f"{ok.sum() / lab.sum():.0%}"
            if ok.sum() < 100:
                continue
            r = out["feh"][ok] - test["feh_spec"].to_numpy()[ok]
            pull = r / np.hypot(out["feh_err"][ok], test["feh_spec_err"].to_numpy()[ok])
            row[f"{name}: [Fe/H] sigma"] = round(gaussian_fit_sigma(r)[1], 3)
            row[f"{name}: pull std"] = round(float(np.std(pull)), 2)
            row[f"{name}: median predicted error"] = round(float(np.median(out["feh_err"][ok])), 3)
        figures[case] = row
    figures = {"[Fe/H] on the test stars (spectroscopic labels)": figures,
               "training": {"default": {"seconds": round(seconds["default"], 1)},
                            "masked": {"seconds": round(seconds["masked"], 1)}}}
    print(figures)
    write_result("missing", "Missing photometry: masked model vs default model (surveys removed)", figures,
                 notes=f"{len(test):,d} test stars; both models trained {args.epochs} epochs (early stopping "
                       "allowed) on the same 70% of 100,000 labelled mock stars. sigma: Gaussian fit to the "
                       "residual histogram. A pull std near 1 means the predicted errors are right.")


if __name__ == "__main__":
    main()
