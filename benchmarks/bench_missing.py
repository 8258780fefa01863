"""Missing photometry: one masked model (configs/masked.toml) against the default model, with surveys removed,
and against the two other ways of handling incomplete photometry.

Both models are trained on the same 100,000 labelled mock stars with the same split; the test stars are
then predicted with all their photometry, and again with SDSS, Gaia (photometry and parallax), or both
removed. The default model cannot predict a star that lacks a feature; the masked one should match it when
nothing is missing and widen its uncertainties honestly (pull widths near 1) when surveys are gone.

Beside the masked model, for each subset of surveys: (a) a dedicated model, the default configuration
trained on that subset's features only; (b) the reference approach of the original system: an autoencoder
that imputes the missing features from the present ones (a masked, denoising MLP trained on the labelled
stars' features with whole surveys hidden at random, as the masked model is), followed by the full-feature
default model. Reported per subset: [Fe/H] sigma, pull width, and the median bias of the halo stars (mock
population "halo", the stars of halo-dominated map cells).

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

from photofeh.model.evaluate import gaussian_fit_sigma
from photofeh.model.predict import load_model
from photofeh.model.train import load_config, train

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
        train_rows = spec[split == "train"].reset_index(drop=True)
        dedicated = {}
        for case, prefixes in CASES.items():
            if not prefixes:
                continue
            cfg = load_config(ROOT / "configs" / "default.toml")
            cfg.features = [f for f in cfg.features if not f.startswith(prefixes)
                            and not any(part.startswith(prefixes) for part in f.split("-"))]
            cfg.epochs = args.epochs
            if cfg.noise_limit_band.startswith(prefixes):  # re-observed to the same depth in PS1 r (on the mock,
                cfg.noise_limit_band = "ps1_r"  # a median 0.02 mag from SDSS r)
            train(spec, cfg, Path(tmp) / f"dedicated_{len(dedicated)}", log=lambda s: None)
            dedicated[case] = load_model(Path(tmp) / f"dedicated_{len(dedicated)}" / "model")
        imputer = Imputer.fit(train_rows, models["default"], args.epochs)
    test = spec[split == "test"].reset_index(drop=True)
    lab = np.isfinite(test["feh_spec"]).to_numpy()
    halo = (test["pop"] == "halo").to_numpy()
    routes = {}
    for case, prefixes in CASES.items():
        df = hide(test, prefixes)
        routes[case] = {name: model.predict(df) for name, model in models.items()}
        if case in dedicated:
            routes[case]["dedicated"] = dedicated[case].predict(df)
            routes[case]["autoencoder + default"] = imputer.predict(df)
    comparison = {}
    for case, outs in routes.items():
        row, cmp = {}, {}
        for name, out in outs.items():
            ok = out["usable"].to_numpy(bool) & lab
            if name in models:
                row[f"{name}: usable"] = f"{ok.sum() / lab.sum():.0%}"
            if ok.sum() < 100:
                continue
            r = out["feh"].to_numpy()[ok] - test["feh_spec"].to_numpy()[ok]
            pull = r / np.hypot(out["feh_err"].to_numpy()[ok], test["feh_spec_err"].to_numpy()[ok])
            sigma, pull_std = round(gaussian_fit_sigma(r)[1], 3), round(float(np.std(pull)), 2)
            h = ok & halo
            halo_bias = round(float(np.median(out["feh"].to_numpy()[h] - test["feh_true"].to_numpy()[h])), 3)
            if name in models:
                row[f"{name}: [Fe/H] sigma"] = sigma
                row[f"{name}: pull std"] = pull_std
                row[f"{name}: median predicted error"] = round(float(np.median(out["feh_err"].to_numpy()[ok])), 3)
            cmp[f"{name}: [Fe/H] sigma"], cmp[f"{name}: pull std"] = sigma, pull_std
            cmp[f"{name}: halo-star bias"] = halo_bias
        figures[case] = row
        if case in dedicated:
            cmp["masked / dedicated sigma"] = round(cmp["masked: [Fe/H] sigma"] / cmp["dedicated: [Fe/H] sigma"], 3)
            comparison[case] = cmp
    figures = {"[Fe/H] on the test stars (spectroscopic labels)": figures,
               "subsets of surveys: masked model, dedicated models, autoencoder imputation": comparison,
               "training": {"default": {"seconds": round(seconds["default"], 1)},
                            "masked": {"seconds": round(seconds["masked"], 1)}}}
    print(figures)
    write_result("missing", "Missing photometry: masked model vs default model (surveys removed)", figures,
                 notes=f"{len(test):,d} test stars; both models trained {args.epochs} epochs (early stopping "
                       "allowed) on the same 70% of 100,000 labelled mock stars. sigma: Gaussian fit to the "
                       "residual histogram. A pull std near 1 means the predicted errors are right.")


class Imputer:
    """The reference route for incomplete photometry: a denoising autoencoder fills in the missing features
    from the present ones, then the full-feature model predicts. The network sees standardised features with
    measured-bits (photofeh.model.missing.masked_inputs) and whole surveys hidden at random (group dropout 0.3, as
    the masked model); it is trained to return every feature (mean squared error on the hidden ones and the
    present ones). Its imputation error is not passed on: a guessed feature gets the training stars' median error
    of that feature (the noise-aware model needs one), so the full-feature model's uncertainties do not know that a
    feature was guessed, which the pull widths show."""

    def __init__(self, net, scaler, model, typical_err):
        self.net, self.scaler, self.model, self.typical_err = net, scaler, model, typical_err

    @classmethod
    def fit(cls, table: pd.DataFrame, model, epochs: int) -> Imputer:
        import torch

        from photofeh.model.domain import feature_errors
        from photofeh.model.features import Standardizer, feature_matrix
        from photofeh.model.missing import drop_groups, feature_groups, masked_inputs

        cols = {c: table[c].to_numpy() for c in table.columns}
        X, ok = feature_matrix(cols, model.features)
        X = X[ok]
        typical_err = np.nanmedian(feature_errors(cols, model.features)[ok], axis=0)
        scaler = Standardizer.fit(X)
        z = torch.from_numpy(scaler.transform(X))
        F = X.shape[1]
        names = feature_groups(model.features)
        order = list(dict.fromkeys(names))
        groups = torch.tensor([order.index(g) for g in names])
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(2 * F, 128), torch.nn.GELU(), torch.nn.Linear(128, 128),
                                  torch.nn.GELU(), torch.nn.Linear(128, F))
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
        gen = torch.Generator().manual_seed(0)
        full = torch.from_numpy(masked_inputs(z.numpy()))
        for _ in range(epochs):
            perm = torch.randperm(len(z), generator=gen)
            for s in range(0, len(z), 512):
                idx = perm[s:s + 512]
                x = drop_groups(full[idx], groups, 0.3, gen)
                loss = torch.nn.functional.mse_loss(net(x), z[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        return cls(net, scaler, model, typical_err)

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        import torch

        from photofeh.model.domain import feature_errors
        from photofeh.model.features import feature_matrix
        from photofeh.model.missing import masked_inputs

        cols = {c: table[c].to_numpy() for c in table.columns}
        X, _ = feature_matrix(cols, self.model.features, deredden_bands=True)
        z = self.scaler.transform(X)
        with torch.inference_mode():
            guess = self.net(torch.from_numpy(masked_inputs(z))).numpy()
        filled = np.where(np.isfinite(z), z, guess) * self.scaler.std + self.scaler.mean
        err = feature_errors(cols, self.model.features)
        err = np.where(np.isfinite(err), err, self.typical_err)
        out = self.model.predict_features(filled.astype(np.float32), X_err=err if self.model.noise_aware else None)
        return pd.DataFrame(out, index=table.index)


if __name__ == "__main__":
    main()
