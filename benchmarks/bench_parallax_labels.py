"""Absolute magnitudes from parallaxes: the likelihood in parallax space against the alternatives.

On the mock's labelled stars (20,000, seed 2; their Gaia parallaxes are simulated with the EDR3 error model),
the same network (colours and one apparent magnitude, *no parallax input*, so that the check is not circular)
learns M_G three ways, and is scored on its test split against the true M_G, dwarfs and giants apart:
- "parallax space": photofeh's parallax labels (likelihood of the measured parallaxes, every star);
- "inverted, S/N > 5": M_G = m0 + 5 log10(parallax) - 10 as a label where parallax/error > 5 (the usual cut);
- "true M_G": the mock's truth as the label, the best any labels could do with these inputs.
Reported: median M_pred - M_true, robust sigma, the median ratio of photometric to true distance, pull width.

Usage: python benchmarks/bench_parallax_labels.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import write_result

FEATURES = ["sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z", "ps1_g-ps1_r", "ps1_r-ps1_i",
            "ps1_i-ps1_z", "ps1_z-ps1_y", "gaia_bp-gaia_rp", "gaia_g-gaia_rp", "sdss_g"]
COLUMNS = {"feh": "feh_spec", "logg": "logg_spec", "teff": "teff_spec"}


def variants(spec: pd.DataFrame) -> dict[str, dict]:
    from photofeh.model.parallax_labels import mabs_from_parallax, parallax_inputs

    aux = parallax_inputs({c: spec[c].to_numpy() for c in spec.columns}, ["mabs_gaia_g"])
    spec["mabs_gaia_g_plx"], spec["mabs_gaia_g_plx_err"] = mabs_from_parallax(aux[:, 0], aux[:, 1], aux[:, 2], 5.0)
    return {"parallax space (photofeh)": {"parallax_labels": ["mabs_gaia_g"], "label_columns": dict(COLUMNS)},
            "inverted, S/N > 5": {"label_columns": {**COLUMNS, "mabs_gaia_g": "mabs_gaia_g_plx"}},
            "true M_G (best possible)": {"label_columns": {**COLUMNS, "mabs_gaia_g": "mabs_gaia_g_true"}}}


def score(pred: pd.DataFrame, test: pd.DataFrame) -> dict:
    r = pred["mabs_gaia_g"].to_numpy() - test["mabs_gaia_g_true"].to_numpy()
    pull = r / pred["mabs_gaia_g_err"].to_numpy()
    giant = test["is_giant_true"].to_numpy()
    out = {}
    for name, sel in (("dwarfs", ~giant), ("giants", giant)):
        sel = sel & np.isfinite(r)
        rs = r[sel]
        out[name] = {"n": int(sel.sum()), "median dM (mag)": round(float(np.median(rs)), 3),
                     "robust sigma (mag)": round(float(1.4826 * np.median(np.abs(rs - np.median(rs)))), 3),
                     "median d_phot/d_true": round(float(np.median(10 ** (-rs / 5))), 3),
                     "pull std": round(float(np.std(pull[sel])), 2)}
    return out


def main() -> None:
    from photofeh.model.predict import load_model
    from photofeh.model.train import TrainConfig, train
    from photofeh.simulate import MockSurveyConfig, iter_chunks

    spec = pd.DataFrame(next(iter_chunks(MockSurveyConfig(n_stars=20_000, seed=2, spec_only=True),
                                         chunk_size=20_000)))
    snr = (spec["parallax"] + 0.017) / spec["parallax_error"]
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in variants(spec).items():
            cfg = TrainConfig(features=FEATURES, labels=["feh", "logg", "teff", "mabs_gaia_g"], epochs=30, seed=1,
                              **kw)
            run = Path(tmp) / name.split()[0]
            train(spec, cfg, run, log=lambda s: None)
            split = pd.read_parquet(run / "split.parquet")["split"].to_numpy()
            test = spec[split == "test"]
            for group, values in score(load_model(run).predict(test), test).items():
                figures[f"{name}, {group}"] = values
    write_result("parallax_labels", "Absolute magnitudes learned from parallaxes (mock, no parallax input)", figures,
                 notes=f"20,000 labelled mock stars, {100 * float(np.mean(snr > 5)):.0f}% with parallax S/N > 5; "
                       "30 epochs, default network. Without a parallax input the mock's colours barely tell giants "
                       "from dwarfs, so even true labels leave giants too faint: compare each row with the "
                       "'true M_G' row, the reference (one seed each; for the dwarfs not a bound: there the "
                       "parallax labels came out nearer the truth).")


if __name__ == "__main__":
    main()
