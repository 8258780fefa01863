"""The path of docs/real_data.md: archive tables (Gaia DR3, SDSS PhotoObj, PS1 MeanObject) and a label table
(APOGEE allStar layout) to a Galactic map, in five commands.

The real samples in ../shared/data/real are too small for a map, so the tables are made from the mock with
the archives' own column names, types and sentinels (-9999 in SDSS, -999 in PS1, NaN in Gaia), SDSS
extinction_* columns from the SFD98 coefficients, proper motions in Gaia; the labels carry no photometry and
no absolute magnitude, so M_G is learned from the Gaia parallaxes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from photofeh.cli import main

SFD98 = {"u": 5.155, "g": 3.793, "r": 2.751, "i": 2.086, "z": 1.479}  # SDSS extinction_* / E(B-V), SFD98 table 6


def archive_tables(stars: pd.DataFrame, folder: Path, prefix: str) -> dict[str, Path]:
    """Gaia, SDSS and PS1 tables in archive layouts for ``stars``; returns their paths."""
    n = len(stars)
    ids = stars["source_id"].to_numpy()
    gaia = pd.DataFrame({"source_id": ids + 4 * 10**15, "ra": stars["ra"], "dec": stars["dec"],
                         "phot_g_mean_mag": stars["gaia_g"], "phot_bp_mean_mag": stars["gaia_bp"],
                         "phot_rp_mean_mag": stars["gaia_rp"], "parallax": stars["parallax"],
                         "parallax_error": stars["parallax_error"], "pmra": np.zeros(n), "pmdec": np.zeros(n),
                         "ruwe": np.ones(n)})
    sdss = pd.DataFrame({"objID": ids + 10**18, "ra": stars["ra"], "dec": stars["dec"], "type": np.full(n, 6),
                         **{f"psfMag_{b}": stars[f"sdss_{b}"].fillna(-9999.0) for b in "ugriz"},
                         **{f"psfMagErr_{b}": stars[f"sdss_{b}_err"].fillna(-9999.0) for b in "ugriz"},
                         **{f"extinction_{b}": SFD98[b] * stars["ebv"] for b in "ugriz"}})
    ps1 = pd.DataFrame({"objID": ids + 2 * 10**17, "raMean": stars["ra"], "decMean": stars["dec"],
                        **{f"{b}MeanPSFMag": stars[f"ps1_{b}"].fillna(-999.0) for b in "grizy"},
                        **{f"{b}MeanPSFMagErr": stars[f"ps1_{b}_err"].fillna(-999.0) for b in "grizy"},
                        "iMeanKronMag": stars["ps1_i"].fillna(-999.0)})
    paths = {}
    for name, table in (("gaia", gaia), ("sdss", sdss), ("ps1", ps1)):
        paths[name] = folder / f"{prefix}_{name}.parquet"
        table.reset_index(drop=True).to_parquet(paths[name])
    return paths


@pytest.mark.slow  # five commands end to end, an 8-epoch training: run by CI (make test-all), not make test
def test_archive_tables_to_a_map_in_five_commands(spec_catalog, catalog, tmp_path, capsys):
    labelled = spec_catalog.iloc[:12_000]
    apogee = pd.DataFrame({"APOGEE_ID": [f"2M{i:014d}" for i in labelled["source_id"]], "RA": labelled["ra"],
                           "DEC": labelled["dec"], "FE_H": labelled["feh_spec"].fillna(-9999.0),
                           "FE_H_ERR": labelled["feh_spec_err"].fillna(-9999.0),
                           "LOGG": labelled["logg_spec"].fillna(-9999.0),
                           "LOGG_ERR": labelled["logg_spec_err"].fillna(-9999.0),
                           "TEFF": labelled["teff_spec"].fillna(-9999.0),
                           "TEFF_ERR": labelled["teff_spec_err"].fillna(-9999.0), "SNR": np.full(len(labelled), 80.0),
                           "ASPCAPFLAG": np.zeros(len(labelled), int)})
    apogee.to_parquet(tmp_path / "allStar.parquet")
    train_phot = archive_tables(labelled, tmp_path, "labelled")
    survey_phot = archive_tables(catalog.iloc[:40_000], tmp_path, "survey")
    (tmp_path / "cuts.toml").write_text('require_labels = ["feh_spec"]\nstars_only = true\nmax_ruwe = 1.4\n')
    (tmp_path / "real.toml").write_text(
        '[data]\nlabels = ["feh", "logg", "teff", "mabs_gaia_g"]\n'
        'label_columns = { feh = "feh_spec", logg = "logg_spec", teff = "teff_spec" }\n'
        'parallax_labels = ["mabs_gaia_g"]\n[train]\nepochs = 8\n')
    commands = [
        ["build-training-set", "--labels", f"{tmp_path / 'allStar.parquet'}:apogee_allstar",
         "--photometry", f"{train_phot['sdss']}:sdss_photoobj", "--photometry", f"{train_phot['ps1']}:ps1_meanobject",
         "--photometry", f"{train_phot['gaia']}:gaia_dr3", "--epoch", "2004.5", "--cuts", str(tmp_path / "cuts.toml"),
         "--out", str(tmp_path / "train.parquet")],
        ["train", str(tmp_path / "train.parquet"), "--config", str(tmp_path / "real.toml"), "--out",
         str(tmp_path / "run"), "--quiet", "--baseline-rounds", "0"],
        ["merge-photometry", f"{survey_phot['sdss']}:sdss_photoobj", "--other",
         f"{survey_phot['ps1']}:ps1_meanobject", "--other", f"{survey_phot['gaia']}:gaia_dr3", "--out",
         str(tmp_path / "input.parquet")],
        ["predict", str(tmp_path / "run"), str(tmp_path / "input.parquet"), "--out", str(tmp_path / "pred"), "--quiet",
         "--keep", "gaia_g", "gaia_bp", "gaia_rp", "ebv", "parallax", "parallax_error"],
        ["map", str(tmp_path / "pred"), "--out", str(tmp_path / "map"), "--band", "gaia_g", "--cell", "1",
         "--min-count", "5", "--no-figures"],
    ]
    for args in commands:
        assert main(args) == 0, (args[0], capsys.readouterr().err[-2000:])
    report = json.loads(Path(f"{tmp_path / 'train.parquet'}.report.json").read_text())
    any_label = np.isfinite(labelled[["feh_spec", "logg_spec", "teff_spec"]].to_numpy(float)).any(axis=1)
    n_labels = int(np.isfinite(labelled["feh_spec"]).sum())
    assert report["rows with labels"] == int(any_label.sum()) and report["cuts"]["kept rows"] == n_labels
    assert all(m["matched"] == len(labelled) for m in report["matches"])
    train_table = pd.read_parquet(tmp_path / "train.parquet")
    np.testing.assert_allclose(train_table["ebv"], labelled.loc[np.isfinite(labelled["feh_spec"]), "ebv"],
                               rtol=1e-5)  # SFD E(B-V) back from extinction_r
    pred = pd.read_parquet(tmp_path / "pred")
    assert len(pred) == 40_000 and pred["usable"].sum() > 100
    truth = catalog.iloc[:40_000].reset_index(drop=True)
    ok = pred["usable"].to_numpy() & ~truth["is_giant_true"].to_numpy()
    dm = pred["mabs_gaia_g"].to_numpy()[ok] - truth["mabs_gaia_g_true"].to_numpy()[ok]
    assert abs(np.median(dm)) < 0.3  # M_G learned from parallaxes alone, on dwarfs of the survey
    map_report = json.loads((tmp_path / "map" / "map.json").read_text())
    assert map_report["counts"]["in the map"] > 100 and map_report["cells_with_min_count"] > 0
    assert map_report["predictions"]["model_labels"] == json.dumps(["feh", "logg", "teff", "mabs_gaia_g"])
