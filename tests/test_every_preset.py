"""Every preset leads to a model: label tables in the SSPP, LAMOST and Kepler/Huber 2017 layouts, and CFIS
MegaPipe photometry, made from the mock with the archives' column names and sentinels, go through
build-training-set (or merge-photometry), a config, train (2 epochs) and predict. APOGEE, SDSS PhotoObj,
PS1 MeanObject and Gaia DR3 are covered by tests/test_real_data_path.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_dereddening import _tiny_sfd_map
from test_real_data_path import archive_tables

from photofeh.cli import main
from photofeh.model.predict import load_model

SDSS_FEATURES = '["sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z", "sdss_g"]'
GAIA_PS1_FEATURES = ('["ps1_g-ps1_r", "ps1_r-ps1_i", "ps1_i-ps1_z", "ps1_z-ps1_y", "gaia_bp-gaia_rp", '
                     '"gaia_g-gaia_rp", "parallax", "parallax_error", "ps1_g"]')
KIC_FEATURES = '["kic_g-kic_r", "kic_r-kic_i", "kic_i-kic_z", "kic_g", "parallax", "parallax_error"]'


def _config(folder: Path, features: str) -> Path:
    path = folder / "c.toml"
    path.write_text(f'[data]\nfeatures = {features}\nlabels = ["feh", "logg", "teff"]\n'
                    'label_columns = { feh = "feh_spec", logg = "logg_spec", teff = "teff_spec" }\n'
                    '[train]\nepochs = 2\nbatch_size = 256\n')
    return path


def _labels(stars: pd.DataFrame, layout: str) -> pd.DataFrame:
    f = {c: stars[c].fillna(-9999.0).to_numpy() for c in ("feh_spec", "feh_spec_err", "logg_spec", "logg_spec_err",
                                                          "teff_spec", "teff_spec_err")}
    n = len(stars)
    if layout == "sspp":
        g = stars["sdss_g"]
        return pd.DataFrame({"SPECOBJID": stars["source_id"] + 7 * 10**17, "RA": stars["ra"], "DEC": stars["dec"],
                             "FEH_ADOP": f["feh_spec"], "FEH_ADOP_UNC": f["feh_spec_err"],
                             "LOGG_ADOP": f["logg_spec"], "LOGG_ADOP_UNC": f["logg_spec_err"],
                             "TEFF_ADOP": f["teff_spec"], "TEFF_ADOP_UNC": f["teff_spec_err"],
                             "SNR": np.full(n, 50.0), "FLAG": ["nnnnn"] * n, "EBV": stars["ebv"],
                             "G_MAG": g.fillna(-9999.0), "UG": (stars["sdss_u"] - g).fillna(-9999.0),
                             "GR": (g - stars["sdss_r"]).fillna(-9999.0),
                             "RI": (stars["sdss_r"] - stars["sdss_i"]).fillna(-9999.0),
                             "IZ": (stars["sdss_i"] - stars["sdss_z"]).fillna(-9999.0),
                             **{f"{b.upper()}_MAG_UNC": stars[f"sdss_{b}_err"].fillna(-9999.0) for b in "ugriz"}})
    if layout == "lamost_lrs":
        return pd.DataFrame({"obsid": stars["source_id"] + 3 * 10**8, "ra": stars["ra"], "dec": stars["dec"],
                             "feh": f["feh_spec"], "feh_err": f["feh_spec_err"], "logg": f["logg_spec"],
                             "logg_err": f["logg_spec_err"], "teff": f["teff_spec"], "teff_err": f["teff_spec_err"],
                             "snrg": np.full(n, 40.0)})
    # kepler_huber17: KIC griz taken here as the mock's SDSS magnitudes (-99 = missing), TGAS-like parallaxes;
    # the table has no reddening: E(B-V) from a local SFD map (--sfd-dir)
    return pd.DataFrame({"KIC": stars["source_id"], "ra": stars["ra"], "dec": stars["dec"],
                         "teff": f["teff_spec"], "sig_teff": f["teff_spec_err"], "logg": f["logg_spec"],
                         "sig_logg": f["logg_spec_err"], "feh": f["feh_spec"], "sig_feh": f["feh_spec_err"],
                         "plx": stars["parallax"], "sig_plx": stars["parallax_error"],
                         **{f"{b}mag": stars[f"sdss_{b}"].fillna(-99.0) for b in "griz"},
                         **{f"sig_{b}mag": stars[f"sdss_{b}_err"].fillna(-99.0) for b in "griz"},
                         **{f"{p}{b}mag": np.full(n, -99.0) for b in "jhk" for p in ("", "sig_")}})  # no 2MASS


@pytest.mark.parametrize("layout", ["sspp", "lamost_lrs", "kepler_huber17"])
def test_each_label_preset_to_a_trained_model_and_predictions(layout, spec_catalog, tmp_path, capsys):
    stars = spec_catalog.iloc[:4000].reset_index(drop=True)
    _labels(stars, layout).to_parquet(tmp_path / "labels.parquet")
    build = ["build-training-set", "--labels", f"{tmp_path / 'labels.parquet'}:{layout}", "--out",
             str(tmp_path / "train.parquet")]
    features = {"sspp": SDSS_FEATURES, "lamost_lrs": GAIA_PS1_FEATURES, "kepler_huber17": KIC_FEATURES}[layout]
    if layout != "sspp":  # E(B-V) from a (tiny) local SFD map
        (tmp_path / "sfd").mkdir()
        _tiny_sfd_map(tmp_path / "sfd", 0.03, 0.07)
        build += ["--sfd-dir", str(tmp_path / "sfd")]
    if layout == "lamost_lrs":  # labels only: photometry from Gaia and PS1
        phot = archive_tables(stars, tmp_path, "phot")
        build += ["--photometry", f"{phot['ps1']}:ps1_meanobject", "--photometry", f"{phot['gaia']}:gaia_dr3"]
    assert main(build) == 0, capsys.readouterr().err
    assert main(["train", str(tmp_path / "train.parquet"), "--config", str(_config(tmp_path, features)), "--out",
                 str(tmp_path / "run"), "--quiet", "--baseline-rounds", "0"]) == 0, capsys.readouterr().err
    if layout == "lamost_lrs":
        assert main(["merge-photometry", f"{phot['ps1']}:ps1_meanobject", "--other", f"{phot['gaia']}:gaia_dr3",
                     "--sfd-dir", str(tmp_path / "sfd"), "--out", str(tmp_path / "input.parquet")]) == 0
        predict = ["predict", str(tmp_path / "run"), str(tmp_path / "input.parquet")]
    elif layout == "sspp":  # the photometric survey in PhotoObj layout
        predict = ["predict", str(tmp_path / "run"), str(archive_tables(stars, tmp_path, "survey")["sdss"]),
                   "--preset", "sdss_photoobj"]
    else:
        predict = ["predict", str(tmp_path / "run"), str(tmp_path / "labels.parquet"), "--preset", layout,
                   "--sfd-dir", str(tmp_path / "sfd")]
    assert main([*predict, "--out", str(tmp_path / "pred"), "--quiet"]) == 0, capsys.readouterr().err
    pred = pd.read_parquet(tmp_path / "pred")
    assert len(pred) == len(stars) and pred["usable"].mean() > 0.5
    assert pred.loc[pred["usable"], "feh"].between(-5, 1.5).all()
    # the label preset read the labels: the training table's are the stars' own, in their units
    table = pd.read_parquet(tmp_path / "train.parquet")
    key = ["ra", "dec"]
    both = stars[key + ["feh_spec", "logg_spec", "teff_spec"]].merge(table, on=key, suffixes=("_star", ""))
    assert len(both) == len(table) > 0.5 * len(stars)
    for col in ("feh_spec", "logg_spec", "teff_spec"):
        np.testing.assert_allclose(both[col], both[f"{col}_star"], rtol=1e-6, err_msg=col)
    # and the archive preset at prediction read the same photometry and E(B-V) the training table holds: the
    # predictions are the model's on the training table's own rows (a band, a unit or a sign misread moves them)
    reference = load_model(tmp_path / "run" / "model").predict(table)
    reference[key] = table[key]
    same = pred.assign(ra=stars["ra"], dec=stars["dec"]).merge(reference, on=key, suffixes=("", "_reference"))
    assert len(same) == len(table)
    for col in ("feh", "feh_err", "logg", "teff"):
        np.testing.assert_allclose(same[col], same[f"{col}_reference"], rtol=1e-5, atol=1e-5, err_msg=col)


def test_cfis_megapipe_photometry_is_attached(spec_catalog, tmp_path):
    """CFIS u from a MegaPipe (SExtractor) tile catalogue: MAG_AUTO = 99 is no detection."""
    stars = spec_catalog.iloc[:2000].reset_index(drop=True)
    sdss = archive_tables(stars, tmp_path, "base")["sdss"]
    pd.DataFrame({"ALPHA_J2000": stars["ra"], "DELTA_J2000": stars["dec"],
                  "MAG_AUTO": stars["cfis_u"].fillna(99.0), "MAGERR_AUTO": stars["cfis_u_err"].fillna(99.0),
                  "FLAGS": np.zeros(len(stars), int)}).to_parquet(tmp_path / "megapipe.parquet")
    assert main(["merge-photometry", f"{sdss}:sdss_photoobj", "--other",
                 f"{tmp_path / 'megapipe.parquet'}:cfis_megapipe", "--out", str(tmp_path / "m.parquet")]) == 0
    merged = pd.read_parquet(tmp_path / "m.parquet")
    np.testing.assert_allclose(merged["cfis_u"], stars["cfis_u"], rtol=1e-6, equal_nan=True)
