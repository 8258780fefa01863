"""Dereddening from an E(B-V) column, from per-band extinction columns, and from a local SFD map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from photofeh.io.dust import DustMapMissing, sfd_ebv
from photofeh.model.features import deredden, feature_matrix


def test_sf11_coefficients_on_an_ebv_column():
    """Schlafly & Finkbeiner 2011 table 6: A_g / E(B-V) = 3.303, A_r = 2.285 (SFD scale, no 0.86 again)."""
    t = {"sdss_g": np.array([18.0]), "sdss_r": np.array([17.5]), "ebv": np.array([0.1])}
    m0 = deredden(t, ["sdss_g", "sdss_r"])
    assert m0["sdss_g"][0] == pytest.approx(18.0 - 0.3303)
    assert m0["sdss_r"][0] == pytest.approx(17.5 - 0.2285)


def test_gaia_coefficients_use_the_intrinsic_colour():
    """Casagrande et al. 2021: R_G = 2.609 - 0.475 x + 0.053 x^2 at x = (BP-RP)_0."""
    x0 = 1.0
    ebv = 0.2
    r_bp = 2.998 - 0.140 * x0 - 0.175 * x0**2 + 0.062 * x0**3
    r_rp = 1.689 - 0.059 * x0
    r_g = 2.609 - 0.475 * x0 + 0.053 * x0**2
    t = {"gaia_g": np.array([15.0 + r_g * ebv]), "gaia_bp": np.array([15.4 + r_bp * ebv]),
         "gaia_rp": np.array([14.4 + r_rp * ebv]), "ebv": np.array([ebv])}
    m0 = deredden(t, ["gaia_g", "gaia_bp", "gaia_rp"], gaia_iterations=10)
    assert m0["gaia_g"][0] == pytest.approx(15.0, abs=1e-4)
    assert m0["gaia_bp"][0] - m0["gaia_rp"][0] == pytest.approx(x0, abs=1e-4)


def test_per_band_extinction_columns_take_precedence():
    t = {"sdss_g": np.array([18.0, 18.0]), "sdss_r": np.array([17.0, 17.0]), "A_sdss_g": np.array([0.5, np.nan]),
         "A_sdss_r": np.array([0.3, 0.3])}
    X, ok = feature_matrix(t, ["sdss_g-sdss_r"])
    assert X[0, 0] == pytest.approx(0.8) and ok.tolist() == [True, False]


def _tiny_sfd_map(folder: Path, value_ngp: float, value_sgp: float) -> None:
    """Two 64x64 Lambert zenithal equal-area images with the SFD header layout, constant values."""
    for pole, value, sign in (("ngp", value_ngp, 1), ("sgp", value_sgp, -1)):
        hdr = fits.Header()
        hdr.update({"CTYPE1": "GLON-ZEA", "CTYPE2": "GLAT-ZEA", "CRPIX1": 32.5, "CRPIX2": 32.5,
                    "CRVAL1": 0.0, "CRVAL2": 90.0 * sign, "CD1_1": -3.0 * sign, "CD1_2": 0.0, "CD2_1": 0.0,
                    "CD2_2": 3.0 * sign, "LONPOLE": 180.0 if sign > 0 else 0.0, "LAM_NSGP": sign, "LAM_SCAL": 16})
        fits.PrimaryHDU(np.full((64, 64), value, np.float32), header=hdr).writeto(folder / f"SFD_dust_4096_{pole}.fits")


def test_local_sfd_map_is_read_never_downloaded(tmp_path: Path):
    with pytest.raises(DustMapMissing, match="never downloads"):
        sfd_ebv(np.array([10.0]), np.array([20.0]), tmp_path)
    _tiny_sfd_map(tmp_path, 0.03, 0.07)
    # Galactic north and south: (l, b) = (0, 60) and (0, -60) in ICRS
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    c = SkyCoord(l=[0.0, 0.0] * u.deg, b=[60.0, -60.0] * u.deg, frame="galactic").icrs
    assert sfd_ebv(c.ra.deg, c.dec.deg, tmp_path) == pytest.approx([0.03, 0.07], abs=1e-6)


# a map that is a plane in each hemisphere's pixel grid: linear interpolation reads it exactly, so every
# position's value says which pixel (and hemisphere) was read. E(B-V) = a + bx X + by Y, X and Y 0-indexed
_SFD_PLANES = {1: (0.05, 0.002, 0.0007), -1: (0.30, 0.0015, -0.001)}  # LAM_NSGP: +1 north, -1 south


def _sfd_map_with_a_gradient(folder: Path, scale: int = 32) -> None:
    """Two (2 scale)^2 images with the header of the SFD files (SFD_dust_4096_ngp.fits: CTYPE GLON-ZEA /
    GLAT-ZEA, CRVAL1 = 90, CRVAL2 = +-90, CD1_1 = -CD2_2 = -sqrt(2) 180 / pi / LAM_SCAL (0.0395646818624 for
    LAM_SCAL = 2048), LONPOLE = 180, CRPIX = LAM_SCAL + 0.5, LAM_NSGP = +1 / -1)."""
    n, cd = 2 * scale, np.degrees(np.sqrt(2.0)) / scale
    Y, X = np.mgrid[0:n, 0:n].astype(float)
    for pole, nsgp in (("ngp", 1), ("sgp", -1)):
        a, bx, by = _SFD_PLANES[nsgp]
        hdr = fits.Header({"CTYPE1": "GLON-ZEA", "CTYPE2": "GLAT-ZEA", "CRPIX1": scale + 0.5, "CRPIX2": scale + 0.5,
                           "CRVAL1": 90.0, "CRVAL2": 90.0 * nsgp, "CD1_1": -cd, "CD1_2": 0.0, "CD2_1": 0.0,
                           "CD2_2": cd, "LONPOLE": 180.0, "LAM_NSGP": nsgp, "LAM_SCAL": scale})
        fits.PrimaryHDU((a + bx * X + by * Y).astype(np.float32), header=hdr).writeto(
            folder / f"SFD_dust_4096_{pole}.fits")


def test_local_sfd_map_is_read_in_the_sfd_lambert_projection(tmp_path: Path):
    """E(B-V) at ICRS positions all over the sky against the SFD projection computed here by hand (Schlegel,
    Finkbeiner & Davis 1998, appendix C, and their header comments / lambert_lb2xy in the SFD C code):
    X = LAM_SCAL sqrt(1 - n sin b) cos l + CRPIX - 1, Y = -n LAM_SCAL sqrt(1 - n sin b) sin l + CRPIX - 1, n = +1
    for b >= 0 (NGP file), -1 below (SGP file); (l, b) from (ra, dec) by the IAU 1958 definition (the north
    Galactic pole at ICRS (192.85948, 27.12825), the north celestial pole at l = 122.93192). A swapped
    hemisphere, a mirrored longitude, swapped axes or ra/dec read as l/b are all off by 0.01 to 0.3 mag."""
    _sfd_map_with_a_gradient(tmp_path)
    rng = np.random.default_rng(4)
    ra, dec = rng.uniform(0, 360, 400), np.degrees(np.arcsin(rng.uniform(-1, 1, 400)))
    a, d = np.radians(ra), np.radians(dec)
    a_p, d_p, l_ncp = np.radians(192.85948), np.radians(27.12825), np.radians(122.93192)
    sinb = np.sin(d) * np.sin(d_p) + np.cos(d) * np.cos(d_p) * np.cos(a - a_p)
    l = l_ncp - np.arctan2(np.cos(d) * np.sin(a - a_p),
                           np.sin(d) * np.cos(d_p) - np.cos(d) * np.sin(d_p) * np.cos(a - a_p))
    away = np.abs(sinb) > np.sin(np.radians(5))  # inside the images (the b = 0 circle is their edge)
    n = np.where(sinb >= 0, 1, -1)
    rho = np.sqrt(1 - n * sinb) * 32
    X, Y = rho * np.cos(l) + 31.5, -n * rho * np.sin(l) + 31.5
    planes = np.array([_SFD_PLANES[int(k)] for k in n])
    expected = planes[:, 0] + planes[:, 1] * X + planes[:, 2] * Y
    got = sfd_ebv(ra, dec, tmp_path)
    assert away.sum() > 300 and (n[away] > 0).sum() > 100 and (n[away] < 0).sum() > 100
    np.testing.assert_allclose(got[away], expected[away], atol=1e-5)  # float32 images: ~3e-8


def test_training_set_takes_ebv_from_a_local_map(tmp_path: Path):
    import pandas as pd

    from photofeh.io.training_set import build_training_set

    _tiny_sfd_map(tmp_path, 0.03, 0.07)
    pos = {"ra": [150.0, 30.0], "dec": [40.0, -40.0]}
    pd.DataFrame({**pos, "feh_spec": [-1.0, -0.5]}).to_parquet(tmp_path / "l.parquet")
    pd.DataFrame({**pos, "sdss_g": [17.0, 18.0]}).to_parquet(tmp_path / "p.parquet")
    build_training_set(tmp_path / "l.parquet", [(tmp_path / "p.parquet", None)], tmp_path / "t.parquet",
                       sfd_dir=tmp_path)
    out = pd.read_parquet(tmp_path / "t.parquet")
    # (150, 40) is in the northern Galactic cap, (30, -40) in the southern
    assert out["ebv"].to_numpy() == pytest.approx([0.03, 0.07], abs=1e-6)


def _hemisphere_ebv(ra, dec, north: float, south: float) -> np.ndarray:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    b = SkyCoord(ra=np.asarray(ra) * u.deg, dec=np.asarray(dec) * u.deg).galactic.b.deg
    return np.where(b >= 0, north, south)


def test_extinction_on_the_predict_command_line(quick_model, spec_catalog, tmp_path: Path, capsys):
    """E(B-V) from another column (--ebv-column) or a local SFD map (--sfd-dir) gives the predictions that the
    same values in the model's own `ebv` column give."""
    import pyarrow.parquet as pq

    from photofeh.cli import main

    stars = spec_catalog.iloc[:3000].copy()
    stars["ebv"] = _hemisphere_ebv(stars["ra"], stars["dec"], 0.03, 0.07).astype(np.float32)
    stars.to_parquet(tmp_path / "with_ebv.parquet")
    stars.rename(columns={"ebv": "EBV_SFD"}).to_parquet(tmp_path / "renamed.parquet")
    stars.drop(columns=["ebv"]).to_parquet(tmp_path / "no_ebv.parquet")
    mapdir = tmp_path / "sfd"
    mapdir.mkdir()
    _tiny_sfd_map(mapdir, 0.03, 0.07)
    runs = {"reference": ["with_ebv.parquet"], "column": ["renamed.parquet", "--ebv-column", "EBV_SFD"],
            "map": ["no_ebv.parquet", "--sfd-dir", str(mapdir)]}
    got = {}
    for name, (table, *extra) in runs.items():
        assert main(["predict", str(quick_model), str(tmp_path / table), "--out", str(tmp_path / name), "--quiet",
                     *extra]) == 0
        got[name] = pq.read_table(tmp_path / name).to_pandas()
    for name in ("column", "map"):
        for col in ("feh", "teff", "logg", "feh_err"):
            np.testing.assert_allclose(got[name][col], got["reference"][col], rtol=1e-5, atol=1e-5, equal_nan=True)
    capsys.readouterr()
    assert main(["predict", str(quick_model), str(tmp_path / "no_ebv.parquet"), "--out", str(tmp_path / "x")]) == 1
    assert "--sfd-dir" in capsys.readouterr().err  # the error says how to give E(B-V)


def test_sdss_extinction_columns_give_sfd_ebv():
    """PhotoObj extinction_r = 2.751 E(B-V)_SFD (SFD98 table 6): the preset recovers E(B-V) on the SFD scale,
    so the SF11 coefficients deredden with 2.285 E(B-V), not with the pipeline's 2.751 E(B-V)."""
    from photofeh.io.presets import apply_preset

    ebv = np.array([0.02, 0.1, 0.35])
    raw = {"objID": np.arange(3), "ra": np.zeros(3), "dec": np.zeros(3),
           **{f"psfMag_{b}": np.full(3, 18.0) for b in "ugriz"},
           **{f"psfMagErr_{b}": np.full(3, 0.02) for b in "ugriz"},
           **{f"extinction_{b}": r * ebv for b, r in zip("ugriz", (5.155, 3.793, 2.751, 2.086, 1.479), strict=True)}}
    cols, _ = apply_preset(raw, "sdss_photoobj")
    np.testing.assert_allclose(cols["ebv"], ebv, rtol=1e-12)
    np.testing.assert_allclose(deredden(cols, ["sdss_r"])["sdss_r"], 18.0 - 2.285 * ebv)


def test_merge_photometry_fills_ebv_from_a_map_and_takes_mapping_files(tmp_path: Path, capsys):
    import json

    import pandas as pd

    from photofeh.cli import main

    mapdir = tmp_path / "sfd"
    mapdir.mkdir()
    _tiny_sfd_map(mapdir, 0.03, 0.07)
    pos = {"ra": [150.0, 30.0, 200.0], "dec": [40.0, -40.0, 10.0]}
    pd.DataFrame({**pos, "sdss_g": [17.0, 18.0, 19.0]}).to_parquet(tmp_path / "base.parquet")
    pd.DataFrame({"RA_ICRS": pos["ra"], "DE_ICRS": pos["dec"], "Gmag": [16.5, 17.2, 18.1]}).to_parquet(
        tmp_path / "gaia.parquet")
    (tmp_path / "mine.toml").write_text('[columns]\nra = "RA_ICRS"\ndec = "DE_ICRS"\ngaia_g = "Gmag"\n')
    assert main(["merge-photometry", str(tmp_path / "base.parquet"), "--other",
                 f"{tmp_path / 'gaia.parquet'}:{tmp_path / 'mine.toml'}", "--sfd-dir", str(mapdir), "--out",
                 str(tmp_path / "merged.parquet")]) == 0
    report = json.loads(capsys.readouterr().out.split("\nwrote")[0])
    assert report["ebv from the SFD map"] == 3
    out = pd.read_parquet(tmp_path / "merged.parquet")
    np.testing.assert_allclose(out["ebv"], _hemisphere_ebv(pos["ra"], pos["dec"], 0.03, 0.07), atol=1e-6)
    np.testing.assert_allclose(out["gaia_g"], [16.5, 17.2, 18.1])
