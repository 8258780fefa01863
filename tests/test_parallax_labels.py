"""Absolute magnitudes learned from Gaia parallaxes (likelihood in parallax space), end to end to a map."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from photofeh.model.parallax_labels import mabs_from_parallax, parallax_inputs, parallax_nll

FEATURES = ["sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z", "ps1_g-ps1_r", "ps1_r-ps1_i",
            "ps1_i-ps1_z", "ps1_z-ps1_y", "gaia_bp-gaia_rp", "gaia_g-gaia_rp", "sdss_g"]
COLUMNS = {"feh": "feh_spec", "logg": "logg_spec", "teff": "teff_spec"}


def test_parallax_likelihood_is_the_gaussian_integral():
    """The quadrature against a brute-force integral over M (2,000,001 points, in log space)."""
    from scipy.special import logsumexp

    cases = [(plx, err, mu, sigma) for plx, err in ((1.0, 0.2), (3.0, 0.03), (0.3, 0.2), (-0.1, 0.3))
             for mu, sigma in ((5.0, 0.05), (4.0, 0.8), (6.5, 1.5))]  # S/N 5, 100, 1.5 and a negative parallax
    for obs, err, mu, sigma in cases:
        aux = torch.tensor([[15.0, obs, err]], dtype=torch.float64)  # m0, parallax, error
        got, ok = parallax_nll(torch.tensor([[mu]], dtype=torch.float64),
                               torch.tensor([[2 * np.log(sigma)]], dtype=torch.float64), aux,
                               torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
        m = np.linspace(-10.0, 25.0, 2_000_001)  # wide enough for both the prediction and the parallax's M
        plx = 10 ** (2 - (15.0 - m) / 5)
        log_integral = logsumexp(-0.5 * ((obs - plx) / err) ** 2 - 0.5 * ((m - mu) / sigma) ** 2) + np.log(m[1] - m[0])
        minus_log_p = -log_integral + np.log(2 * np.pi * err * sigma)  # -log of N(varpi) x N(M), integrated
        expected = minus_log_p - 0.5 * np.log(2 * np.pi) - 0.5 * np.log(np.pi)  # the constants parallax_nll drops
        assert ok.all() and float(got) == pytest.approx(expected, rel=1e-3, abs=1e-3), (obs, err, mu, sigma)


def test_mabs_from_parallax_is_the_distance_modulus():
    m, err = mabs_from_parallax(np.array([15.0, 15.0]), np.array([1.0, 0.1]), np.array([0.1, 0.1]), 5.0)
    assert m[0] == pytest.approx(15.0 + 5 * np.log10(1.0) - 10.0) and np.isnan(m[1])  # 1 mas = 1 kpc: M = 5
    assert err[0] == pytest.approx(5 / np.log(10) * 0.1)


@pytest.mark.slow  # three 20-epoch trainings on 15,000 stars: run by CI (.ci/run), not by make test
def test_parallax_labels_train_predict_and_map(spec_catalog, catalog, tmp_path, capsys):
    """On the mock, without a parallax input: M_G learned from parallaxes is as good as M_G learned from the
    truth (the information limit of these inputs; in the median, better: the calibration takes the binaries'
    tail into account), far better than inverted high-S/N parallaxes; a map is
    then made with --band gaia_g from a model that never saw an absolute-magnitude label."""
    from photofeh.cli import main
    from photofeh.model.predict import load_model
    from photofeh.model.train import TrainConfig, train

    spec = spec_catalog.copy()
    aux = parallax_inputs({c: spec[c].to_numpy() for c in spec.columns}, ["mabs_gaia_g"])
    spec["mabs_plx"], spec["mabs_plx_err"] = mabs_from_parallax(aux[:, 0], aux[:, 1], aux[:, 2], 5.0)
    results = {}
    for name, kw in {"parallax": {"parallax_labels": ["mabs_gaia_g"], "label_columns": COLUMNS},
                     "truth": {"label_columns": {**COLUMNS, "mabs_gaia_g": "mabs_gaia_g_true"}},
                     "inverted": {"label_columns": {**COLUMNS, "mabs_gaia_g": "mabs_plx"}}}.items():
        cfg = TrainConfig(features=FEATURES, labels=["feh", "logg", "teff", "mabs_gaia_g"], epochs=20, seed=1,
                          baseline_rounds=0, **kw)
        train(spec, cfg, tmp_path / name, log=lambda s: None)
        split = pd.read_parquet(tmp_path / name / "split.parquet")["split"].to_numpy()
        test = spec[split == "test"]
        r = load_model(tmp_path / name).predict(test)["mabs_gaia_g"].to_numpy() - test["mabs_gaia_g_true"].to_numpy()
        dwarf = ~test["is_giant_true"].to_numpy() & np.isfinite(r)
        results[name] = float(np.median(r[dwarf]))
    # the parallax-learned M, calibrated on its validation parallaxes (photofeh.model.absmag_calibration), is
    # right for the typical dwarf; one Gaussian fitted to the true M sits on the binaries' bright side
    assert abs(results["parallax"]) < 0.1 and abs(results["parallax"]) < abs(results["truth"]), results
    assert abs(results["inverted"] - results["truth"]) > 0.5, results  # the S/N cut selects nearby dwarfs
    meta = json.loads((tmp_path / "parallax" / "model" / "model.json").read_text())
    assert meta["parallax_labels"] == ["mabs_gaia_g"] and meta["parallax_zero_point_mas"] == pytest.approx(-0.017)
    # to a map: predict the survey keeping what Gaia distances need, map with --band gaia_g
    stars = catalog.iloc[:40_000]
    stars.to_parquet(tmp_path / "survey.parquet")
    assert main(["predict", str(tmp_path / "parallax"), str(tmp_path / "survey.parquet"), "--out",
                 str(tmp_path / "pred"), "--quiet", "--keep", "gaia_g", "gaia_bp", "gaia_rp", "ebv", "parallax",
                 "parallax_error"]) == 0
    capsys.readouterr()
    assert main(["map", str(tmp_path / "pred"), "--out", str(tmp_path / "map"), "--band", "gaia_g", "--cell", "1",
                 "--min-count", "5", "--max-feh-err", "1.0", "--no-figures", "--min-parallax-snr", "1e4",
                 "--stars", str(tmp_path / "stars.parquet")]) == 0
    report = json.loads((tmp_path / "map" / "map.json").read_text())
    assert report["counts"]["in the map"] > 100 and report["cells_with_min_count"] > 0
    assert report["absmag_reference"]["bands"] == {"mabs_gaia_g": "dereddened"}
    # the photometric distances themselves (Gaia's parallax kept out by the S/N threshold): the dwarfs'
    # median d/d_true within 5%, the M_G offset of ~0.1 mag seen above being 5% in distance
    placed = pd.read_parquet(tmp_path / "stars.parquet")
    ok = placed["in_map"].to_numpy() & ~stars["is_giant_true"].to_numpy()
    ratio = placed["dist_kpc"].to_numpy()[ok] / stars["dist_kpc_true"].to_numpy()[ok]
    assert ok.sum() > 100 and np.median(ratio) == pytest.approx(1.0, abs=0.05), (ok.sum(), np.median(ratio))
    assert report["predictions"]["model_labels"] == json.dumps(["feh", "logg", "teff", "mabs_gaia_g"])
