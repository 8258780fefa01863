"""Quality cuts and training-set assembly (labels x photometry on the sky)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SSPP_DR9, real_sample

from photofeh.cli import main
from photofeh.io.cuts import Cuts, apply_cuts, load_cuts


def test_cuts_are_counted_in_order(tmp_path: Path):
    t = {"sdss_g": np.array([13.0, 15.0, 16.0, 21.0, 17.0, np.nan]),
         "sdss_g_err": np.array([0.01, 0.02, 0.3, 0.01, 0.02, 0.02]),
         "ebv": np.array([0.01, 0.01, 0.01, 0.01, 0.5, 0.01]),
         "flag_spec": np.array(["nnnnn", "nnnnn", "nnnnn", "nnnnn", "nnnnn", "nnnnn"])}
    keep, report = apply_cuts(t, Cuts(mag_range={"sdss_g": (14, 20)}, max_err={"sdss_g": 0.1}, max_ebv=0.3,
                                      spec_flag_normal=True))
    assert keep.tolist() == [False, True, False, False, False, False]
    assert report["14 <= sdss_g <= 20"] == 3  # 13, 21 and NaN
    assert report["sdss_g_err <= 0.1"] == 1 and report["ebv <= 0.3"] == 1
    assert report["input rows"] - sum(v for k, v in report.items() if k not in ("input rows", "kept rows")) == 1
    f = tmp_path / "cuts.toml"
    f.write_text("max_ebv = 0.3\n[mag_range]\nsdss_g = [14, 20]\n")
    assert load_cuts(f).mag_range == {"sdss_g": (14, 20)}
    f.write_text("max_evb = 0.3\n")
    with pytest.raises(ValueError, match="unknown settings \\['max_evb'\\]"):
        load_cuts(f)


def test_build_training_set_from_real_sspp_labels(tmp_path: Path, capsys):
    from astropy.table import Table

    sspp_path = real_sample(SSPP_DR9)
    sspp = Table.read(sspp_path)
    rng = np.random.default_rng(0)
    n = len(sspp)
    # an SDSS PhotoObj-like table with the real column names, 0.1" from 90 of the SSPP stars, with a sentinel
    phot = pd.DataFrame({"objID": np.arange(n) + 10**17, "ra": np.asarray(sspp["RA"], dtype=float) + 0.1 / 3600,
                         "dec": np.asarray(sspp["DEC"], dtype=float),
                         **{f"psfMag_{b}": rng.uniform(15, 20, n) for b in "ugriz"},
                         **{f"psfMagErr_{b}": np.full(n, 0.02) for b in "ugriz"},
                         **{f"extinction_{b}": np.full(n, 0.1) for b in "ugriz"}}).iloc[:90]
    phot.loc[3, "psfMag_u"] = -9999.0
    phot.to_parquet(tmp_path / "photoobj.parquet")
    (tmp_path / "cuts.toml").write_text('require_labels = ["feh_spec"]\n')
    out = tmp_path / "train.parquet"
    assert main(["build-training-set", "--labels", f"{sspp_path}:sspp",
                 "--photometry", f"{tmp_path / 'photoobj.parquet'}:sdss_photoobj",
                 "--cuts", str(tmp_path / "cuts.toml"), "--out", str(out)]) == 0
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["matches"][0]["matched"] == 90 and report["matches"][0]["unmatched"] == 10
    n_labels = int(np.sum(np.asarray(sspp["FEH_ADOP"]) != -9999))
    assert report["cuts"]["feh_spec present"] == n - n_labels
    got = pd.read_parquet(out)
    assert len(got) == n_labels == report["cuts"]["kept rows"]
    assert "sdss_g_sdss_photoobj" in got.columns  # the SSPP's own g stays as sdss_g
    assert got["match_sep_arcsec"].dropna().between(0.05, 0.1).all()


def test_crossmatch_command_errors_are_clean(tmp_path: Path, capsys):
    pd.DataFrame({"ra": [1.0], "dec": [2.0]}).to_parquet(tmp_path / "a.parquet")
    assert main(["crossmatch", str(tmp_path / "a.parquet"), str(tmp_path / "missing.fits"),
                 "--out", str(tmp_path / "o.parquet")]) == 1
    assert "missing.fits does not exist" in capsys.readouterr().err
    assert main(["crossmatch", str(tmp_path / "a.parquet"), f"{tmp_path / 'a.parquet'}:gaia_dr3",
                 "--out", str(tmp_path / "o.parquet")]) == 1
    assert "needs column(s)" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


def test_quality_flags_of_real_catalogues_are_cut_and_counted():
    """Star/galaxy separation (SDSS type, PS1 i PSF - Kron), the corrected Gaia BP/RP flux excess C*
    (Riello et al. 2021, eqs. 6 and 18, computed here from the published coefficients) and SDSS clean."""
    from photofeh.io.presets import apply_preset

    # Gaia: C* = 0 at BP-RP = 1 when the excess is 1.162004 + 0.011464 + 0.049255 - 0.005879 = 1.216844
    sigma15 = 0.0059898 + 8.817481e-12 * 15.0**7.618399
    gaia = {"source_id": np.arange(3), "ra": np.zeros(3), "dec": np.zeros(3),
            "phot_g_mean_mag": np.full(3, 15.0), "phot_bp_mean_mag": np.array([15.4, 15.4, 15.1]),
            "phot_rp_mean_mag": np.array([14.4, 14.4, 14.8]), "parallax": np.ones(3), "parallax_error": np.full(3, 0.1),
            "phot_bp_rp_excess_factor": np.array([1.216844, 1.216844 + 10 * sigma15,
                                                  1.154360 + 0.033772 * 0.3 + 0.032277 * 0.09])}
    cols, _ = apply_preset(gaia, "gaia_dr3")
    np.testing.assert_allclose(cols["gaia_excess_sigmas"], [0.0, 10.0, 0.0], atol=1e-9)
    keep, report = apply_cuts(cols, Cuts(max_gaia_excess_sigmas=3.0))
    assert keep.tolist() == [True, False, True] and report["|Gaia C*| <= 3.0 sigma"] == 1
    # SDSS: type 6 is a star, 3 a galaxy; PS1: i PSF - Kron of 0.3 mag is a galaxy
    sdss = {"objID": np.arange(4), "ra": np.zeros(4), "dec": np.zeros(4), "type": np.array([6, 3, 6, 6]),
            "clean": np.array([1, 1, 0, 1]), **{f"psfMag_{b}": np.full(4, 18.0) for b in "ugriz"},
            **{f"psfMagErr_{b}": np.full(4, 0.02) for b in "ugriz"}}
    ps1 = {"iMeanKronMag": np.array([18.0, 18.0, 18.0, 17.7])}
    cols, _ = apply_preset(sdss, "sdss_photoobj")
    cols["ps1_psf_minus_kron"] = 18.0 - ps1["iMeanKronMag"]
    keep, report = apply_cuts(cols, Cuts(stars_only=True, sdss_clean=True))
    assert keep.tolist() == [True, False, False, False]
    assert report["point source (SDSS type, PS1 PSF - Kron)"] == 2 and report["SDSS clean photometry"] == 1
    with pytest.raises(KeyError, match="stars_only needs column"):
        apply_cuts({"sdss_g": np.ones(2)}, Cuts(stars_only=True))
    ps1_table = {"objID": np.arange(2), "raMean": np.zeros(2), "decMean": np.zeros(2),
                 **{f"{b}MeanPSFMag": np.full(2, 18.0) for b in "grizy"},
                 **{f"{b}MeanPSFMagErr": np.full(2, 0.02) for b in "grizy"}, "iMeanKronMag": np.array([17.99, 17.5])}
    cols, _ = apply_preset(ps1_table, "ps1_meanobject")
    np.testing.assert_allclose(cols["ps1_psf_minus_kron"], [0.01, 0.5], atol=1e-9)


def test_build_training_set_from_a_label_table_that_carries_its_photometry(tmp_path: Path, capsys):
    """The real SSPP sample alone: no --photometry needed; the report counts the rows with labels (8 of 100)
    and the -9999 sentinels replaced; the same file given twice is refused."""
    sspp_path = real_sample(SSPP_DR9)
    out = tmp_path / "train.parquet"
    assert main(["build-training-set", "--labels", f"{sspp_path}:sspp", "--out", str(out)]) == 0
    report = json.loads(Path(f"{out}.report.json").read_text())
    assert report["rows with labels"] == 8 and report["cuts"]["kept rows"] == 100
    assert report["values_replaced"]["feh_spec"] == 92
    got = pd.read_parquet(out)
    assert {"sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z", "ebv", "feh_spec"} <= set(got.columns)
    assert int(np.isfinite(got["feh_spec"]).sum()) == 8
    capsys.readouterr()
    assert main(["build-training-set", "--labels", f"{sspp_path}:sspp", "--photometry",
                 f"{sspp_path}:sspp", "--out", str(tmp_path / "twice.parquet")]) == 1
    assert "both the label table and a photometric catalogue" in capsys.readouterr().err
