"""Sky cross-matching: nearest neighbour within a radius, checked against astropy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord, match_coordinates_sky

from photofeh.io.crossmatch import SkyMatcher, crossmatch_files


def _sky(rng, n):
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return ra, dec


def _offset(rng, ra, dec, arcsec):
    c = SkyCoord(ra * u.deg, dec * u.deg)
    moved = c.directional_offset_by(rng.uniform(0, 360, ra.size) * u.deg, arcsec * u.arcsec)
    return moved.ra.deg, moved.dec.deg


def test_matches_agree_with_astropy():
    rng = np.random.default_rng(0)
    ra, dec = _sky(rng, 2000)
    ra2, dec2 = _offset(rng, ra[:1500], dec[:1500], rng.uniform(0, 0.9, 1500))
    ra_o, dec_o = _sky(rng, 20_000)
    ra_s, dec_s = np.r_[ra2, ra_o], np.r_[dec2, dec_o]
    res = SkyMatcher(ra, dec, radius_arcsec=1.0).match(
        [{"ra": ra_s[:7000], "dec": dec_s[:7000]}, {"ra": ra_s[7000:], "dec": dec_s[7000:]}])
    idx, sep, _ = match_coordinates_sky(SkyCoord(ra * u.deg, dec * u.deg), SkyCoord(ra_s * u.deg, dec_s * u.deg))
    expected = np.where(sep.arcsec <= 1.0, idx, -1)
    assert np.array_equal(res.index, expected)
    assert np.allclose(res.sep_arcsec[res.matched], sep.arcsec[expected >= 0], atol=1e-6)
    assert res.matched.sum() == 1500


def test_duplicates_are_reported_and_the_nearest_kept():
    rng = np.random.default_rng(1)
    ra, dec = _sky(rng, 100)
    near_ra, near_dec = _offset(rng, ra, dec, 0.2)
    far_ra, far_dec = _offset(rng, ra[:30], dec[:30], 0.7)
    res = SkyMatcher(ra, dec, 1.0).match([{"ra": np.r_[far_ra, near_ra], "dec": np.r_[far_dec, near_dec]}])
    assert np.array_equal(res.index, np.arange(100) + 30)  # the 0.2" neighbour wins over the 0.7" one
    assert res.report()["ambiguous (>1 within radius)"] == 30
    assert res.sep_arcsec == pytest.approx(np.full(100, 0.2), abs=1e-6)


def test_crossmatch_files_keeps_every_reference_row(tmp_path: Path):
    rng = np.random.default_rng(2)
    ra, dec = _sky(rng, 300)
    pd.DataFrame({"RA": ra, "DEC": dec, "FEH_ADOP": rng.normal(-1, 0.5, 300)}).to_parquet(tmp_path / "labels.parquet")
    mra, mdec = _offset(rng, ra[:200], dec[:200], 0.3)
    pd.DataFrame({"ra": mra, "dec": mdec, "gaia_g": rng.uniform(14, 20, 200)}).to_csv(tmp_path / "phot.csv",
                                                                                     index=False)
    report = crossmatch_files(tmp_path / "labels.parquet", tmp_path / "phot.csv", tmp_path / "joined.parquet",
                              radius_arcsec=1.0)
    assert report["matched"] == 200 and report["unmatched"] == 100
    out = pd.read_parquet(tmp_path / "joined.parquet")
    assert len(out) == 300 and out["gaia_g"].notna().sum() == 200
    assert np.allclose(out["match_sep_arcsec"].dropna(), 0.3, atol=1e-6)


def test_merge_photometry_streams_the_base_and_keeps_every_row(tmp_path: Path, capsys):
    from photofeh.cli import main

    rng = np.random.default_rng(3)
    ra, dec = _sky(rng, 5000)
    pd.DataFrame({"source_id": np.arange(5000), "ra": ra, "dec": dec,
                  "phot_g_mean_mag": rng.uniform(12, 20, 5000), "phot_bp_mean_mag": rng.uniform(12, 20, 5000),
                  "phot_rp_mean_mag": rng.uniform(12, 20, 5000), "parallax": np.ones(5000),
                  "parallax_error": np.ones(5000)}).to_parquet(tmp_path / "gaia.parquet")
    sra, sdec = _offset(rng, ra[:3000], dec[:3000], 0.25)
    sdss = pd.DataFrame({"objID": np.arange(3000) + 10**17, "ra": sra, "dec": sdec,
                         **{f"psfMag_{b}": rng.uniform(15, 21, 3000) for b in "ugriz"},
                         **{f"psfMagErr_{b}": np.full(3000, 0.02) for b in "ugriz"}})
    sdss.loc[7, "psfMag_u"] = -9999.0
    sdss.to_csv(tmp_path / "sdss.csv", index=False)
    out = tmp_path / "input.parquet"
    assert main(["merge-photometry", f"{tmp_path / 'gaia.parquet'}:gaia_dr3", "--other",
                 f"{tmp_path / 'sdss.csv'}:sdss_photoobj", "--out", str(out), "--chunk-size", "1500"]) == 0
    got = pd.read_parquet(out)
    assert len(got) == 5000 and got["source_id"].tolist() == list(range(5000))
    assert got["sdss_g"].notna().sum() == 3000
    assert np.allclose(got["sdss_g"][:3000], sdss["psfMag_g"])
    assert np.isnan(got["sdss_u"][7])  # the sentinel became missing, the row stayed
    assert got["match_sep_arcsec_sdss_photoobj"].dropna().to_numpy() == pytest.approx(0.25, abs=1e-6)


def test_proper_motion_propagation_against_astropy():
    """The linear propagation against astropy's apply_space_motion (a distant star, no radial velocity)."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from astropy.time import Time

    from photofeh.io.crossmatch import propagate

    rng = np.random.default_rng(8)
    n = 200
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-80, 80, n)
    pmra, pmdec = rng.uniform(-3000, 3000, n), rng.uniform(-3000, 3000, n)
    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, pm_ra_cosdec=pmra * u.mas / u.yr, pm_dec=pmdec * u.mas / u.yr,
                 distance=1 * u.kpc, radial_velocity=0 * u.km / u.s, obstime=Time(2016.0, format="jyear"))
    moved = c.apply_space_motion(new_obstime=Time(2004.0, format="jyear"))
    got_ra, got_dec = propagate(ra, dec, pmra, pmdec, 2016.0, 2004.0)
    sep = SkyCoord(ra=got_ra * u.deg, dec=got_dec * u.deg).separation(moved).to_value(u.mas)
    assert sep.max() < 1.0  # 36 arcsec of motion, reproduced to better than a milliarcsecond


def test_crossmatch_with_epochs_keeps_high_proper_motion_stars(tmp_path):
    """Gaia (J2016.0) against an SDSS-like catalogue observed in 2004: stars moving 0.2-3 arcsec/yr are lost
    at 1 arcsec without epochs, and all found when Gaia is moved to the SDSS epoch."""
    from photofeh.cli import main
    from photofeh.io.crossmatch import propagate

    rng = np.random.default_rng(4)
    n = 300
    ra, dec = rng.uniform(120, 240, n), rng.uniform(0, 60, n)
    pmra, pmdec = rng.normal(0, 5, n), rng.normal(0, 5, n)
    fast = np.arange(n) < 40
    pmra[fast], pmdec[fast] = rng.uniform(200, 3000, 40) * rng.choice([-1, 1], 40), rng.uniform(-500, 500, 40)
    gaia = pd.DataFrame({"source_id": np.arange(n), "ra": ra, "dec": dec, "pmra": pmra, "pmdec": pmdec,
                         "ref_epoch": np.full(n, 2016.0), "parallax": np.full(n, 1.0), "parallax_error": 0.1,
                         "phot_g_mean_mag": rng.uniform(14, 19, n)})
    sra, sdec = propagate(ra, dec, pmra, pmdec, 2016.0, 2004.0)
    sdss = pd.DataFrame({"objID": np.arange(n) + 10**9, "ra": sra + rng.normal(0, 0.05, n) / 3600,
                         "dec": sdec + rng.normal(0, 0.05, n) / 3600,
                         **{f"psfMag_{b}": np.full(n, 18.0) for b in "ugriz"},
                         **{f"psfMagErr_{b}": np.full(n, 0.02) for b in "ugriz"}})
    gaia.to_parquet(tmp_path / "gaia.parquet")
    sdss.to_parquet(tmp_path / "sdss.parquet")
    base = ["crossmatch", f"{tmp_path / 'sdss.parquet'}:sdss_photoobj", f"{tmp_path / 'gaia.parquet'}:gaia_dr3"]
    assert main([*base, "--out", str(tmp_path / "no_epoch.parquet")]) == 0
    assert main([*base, "--out", str(tmp_path / "epoch.parquet"), "--epoch", "2004.0"]) == 0
    plain, moved = pd.read_parquet(tmp_path / "no_epoch.parquet"), pd.read_parquet(tmp_path / "epoch.parquet")
    assert plain["match_sep_arcsec"].notna()[~fast].all() and plain["match_sep_arcsec"].notna()[fast].sum() == 0
    assert moved["match_sep_arcsec"].notna().all() and (moved["source_id_2"] == np.arange(n)).all()
    assert moved["match_sep_arcsec"].max() < 0.5


@pytest.mark.parametrize("gaia_is_reference", [False, True])
def test_crossmatch_with_per_row_epochs(tmp_path, gaia_is_reference):
    """SDSS rows observed between 1999 and 2008 (an mjd column): a single mean epoch loses the fastest stars
    observed far from it; each row's own epoch finds them all, whichever catalogue is the reference."""
    from photofeh.cli import main
    from photofeh.io.crossmatch import propagate

    rng = np.random.default_rng(6)
    n = 300
    ra, dec = rng.uniform(150, 200, n), rng.uniform(5, 50, n)
    pmra, pmdec = rng.normal(0, 5, n), rng.normal(0, 5, n)
    fast = np.arange(n) < 30
    pmra[fast] = rng.uniform(1000, 3000, 30) * rng.choice([-1, 1], 30)
    years = rng.uniform(1999.0, 2008.0, n)
    years[fast] = rng.choice([1999.2, 2007.8], 30)  # far from the mean epoch
    mjd = 51544.5 + (years - 2000.0) * 365.25
    gaia = pd.DataFrame({"source_id": np.arange(n), "ra": ra, "dec": dec, "pmra": pmra, "pmdec": pmdec,
                         "parallax": np.ones(n), "parallax_error": np.full(n, 0.1),
                         "phot_g_mean_mag": np.full(n, 17.0)})
    sra, sdec = propagate(ra, dec, pmra, pmdec, 2016.0, years)
    sdss = pd.DataFrame({"objID": np.arange(n) + 10**9, "ra": sra, "dec": sdec, "mjd": mjd,
                         **{f"psfMag_{b}": np.full(n, 18.0) for b in "ugriz"},
                         **{f"psfMagErr_{b}": np.full(n, 0.02) for b in "ugriz"}})
    gaia.to_parquet(tmp_path / "gaia.parquet")
    sdss.to_parquet(tmp_path / "sdss.parquet")
    pair = [f"{tmp_path / 'sdss.parquet'}:sdss_photoobj", f"{tmp_path / 'gaia.parquet'}:gaia_dr3"]
    if gaia_is_reference:
        pair = pair[::-1]
    assert main(["crossmatch", *pair, "--out", str(tmp_path / "mean.parquet"), "--epoch", "2003.5"]) == 0
    assert main(["crossmatch", *pair, "--out", str(tmp_path / "rows.parquet"), "--epoch", "mjd"]) == 0
    mean, rows = pd.read_parquet(tmp_path / "mean.parquet"), pd.read_parquet(tmp_path / "rows.parquet")
    assert mean["match_sep_arcsec"].notna()[fast].sum() < 5  # 1-3 arcsec/yr x 4 yr: lost at 1 arcsec
    assert rows["match_sep_arcsec"].notna().all() and rows["match_sep_arcsec"].max() < 1e-3
    expected = np.arange(n) + (10**9 if gaia_is_reference else 0)  # the other catalogue's ids, row for row
    assert (rows["source_id_2"].to_numpy() == expected).all()
