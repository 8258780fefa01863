"""Distances, Galactocentric positions and streamed median maps, against independent computations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from photofeh.galaxy.distances import (
    combine_with_parallax,
    distance_error_kpc,
    distance_kpc,
    galactocentric,
    ivezic2008_abs_mag_r,
)
from photofeh.galaxy.maps import BinnedQuantileMap


def test_distance_from_the_distance_modulus_and_its_error():
    assert distance_kpc(15.0, 5.0) == pytest.approx(1.0)  # m - M = 10 mag is 1 kpc
    assert distance_kpc(20.0, 5.0) == pytest.approx(10.0)
    # first-order error against a Monte Carlo of a 0.05 mag absolute-magnitude error
    rng = np.random.default_rng(0)
    d = distance_kpc(17.0, 5.0 + 0.05 * rng.standard_normal(400_000))
    assert distance_error_kpc(distance_kpc(17.0, 5.0), 0.05) == pytest.approx(d.std(), rel=0.01)


def test_ivezic2008_relation_follows_the_parsec_main_sequence(catalog: pd.DataFrame):
    """The published relation against the mock's PARSEC dwarfs (single stars, 0.3 < g-i < 1.5): an
    independent stellar-model check of both, to the few-tenths-of-a-magnitude level Ivezic et al. quote."""
    dwarfs = catalog[(catalog["phase"] == "main sequence") & ~catalog["is_binary_true"]
                     & (catalog["feh_true"] > -2.0) & (catalog["age_gyr_true"] > 5)]
    g_i = dwarfs["mabs_sdss_g_true"] - dwarfs["mabs_sdss_i_true"]
    dwarfs = dwarfs[(g_i > 0.3) & (g_i < 1.5)]
    g_i = (dwarfs["mabs_sdss_g_true"] - dwarfs["mabs_sdss_i_true"]).to_numpy()
    mr, valid = ivezic2008_abs_mag_r(g_i, dwarfs["feh_true"].to_numpy())
    resid = mr[valid] - dwarfs["mabs_sdss_r_true"].to_numpy()[valid]
    assert valid.mean() > 0.99 and len(resid) > 1000
    assert abs(np.median(resid)) < 0.3
    assert np.subtract(*np.percentile(resid, [84, 16])) / 2 < 0.5
    # subdwarfs: at a given colour, metal-poor dwarfs lie ~1 mag below the solar main sequence
    solar, poor = ivezic2008_abs_mag_r(0.8, 0.0)[0], ivezic2008_abs_mag_r(0.8, -1.5)[0]
    assert 1.0 < poor - solar < 1.6
    assert not ivezic2008_abs_mag_r(5.0, 0.0)[1] and not ivezic2008_abs_mag_r(1.0, -3.5)[1]


def test_ivezic2008_relation_is_the_published_one():
    """Ivezic et al. 2008, ApJ 684, 287, appendix A (eqs. A2 and A7), written out here at several points:
    M_r = M_r^0(g-i) + dM_r([Fe/H]), M_r^0 = -5.06 + 14.32x - 12.97x^2 + 6.127x^3 - 1.267x^4 + 0.0967x^5,
    dM_r = 4.50 - 1.11[Fe/H] - 0.18[Fe/H]^2; valid for 0.2 < g-i < 4.0 and -2.5 < [Fe/H] < 0.2. A coefficient
    off, the [Fe/H] term's sign flipped or the colour and [Fe/H] swapped all move some point by >= 0.1 mag."""
    g_i = np.array([0.3, 0.6, 0.8, 1.0, 1.5, 2.0, 2.8, 0.8, 0.8, 0.8])
    feh = np.array([-1.5, -0.5, 0.0, -1.0, 0.0, -0.3, 0.1, -2.0, -1.0, -0.5])
    x, f = g_i, feh
    expected = (-5.06 + 14.32 * x - 12.97 * x**2 + 6.127 * x**3 - 1.267 * x**4 + 0.0967 * x**5
                + 4.50 - 1.11 * f - 0.18 * f**2)
    mr, valid = ivezic2008_abs_mag_r(g_i, feh)
    np.testing.assert_allclose(mr, expected, atol=1e-9)
    assert valid.all()
    # the solar-metallicity main sequence at g-i = 0.8 (a K dwarf): M_r = 5.245; at [Fe/H] = -1.5, 1.26 mag fainter
    assert mr[2] == pytest.approx(5.2449, abs=1e-3)
    poor = ivezic2008_abs_mag_r(0.8, -1.5)[0] - ivezic2008_abs_mag_r(0.8, 0.0)[0]
    assert poor == pytest.approx(1.11 * 1.5 - 0.18 * 1.5**2, abs=1e-9)  # 1.26
    outside = ivezic2008_abs_mag_r(np.array([0.1, 4.5, 1.0, 1.0]), np.array([0.0, 0.0, -2.7, 0.3]))[1]
    assert not outside.any()


def test_galactocentric_positions_match_simple_geometry():
    """R, z from astropy's frame against X = R0 - d cos b cos l, Y = d cos b sin l, z = d sin b + z_sun,
    which ignores only the frame's tilt (the Sun lies z_sun above the plane: an angle z_sun/R0 = 2.6 mrad,
    at most 13 pc at 5 kpc)."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(3)
    n = 2000
    l_deg, b_deg, d = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(0.1, 5, n)
    icrs = SkyCoord(l=l_deg * u.deg, b=b_deg * u.deg, frame="galactic").icrs
    got = galactocentric(icrs.ra.deg, icrs.dec.deg, d)
    R0, zsun = 8.122, 0.0208
    lr, br = np.radians(l_deg), np.radians(b_deg)
    X, Y, Z = R0 - d * np.cos(br) * np.cos(lr), d * np.cos(br) * np.sin(lr), d * np.sin(br) + zsun
    np.testing.assert_allclose(got["R_kpc"], np.hypot(X, Y), atol=0.015)
    np.testing.assert_allclose(got["z_kpc"], Z, atol=0.015)
    assert np.isnan(galactocentric([10.0], [10.0], [np.nan])["R_kpc"]).all()


def test_parallax_combination_by_hand():
    # 1.0 +- 0.1 mas photometric, 1.2 +- 0.1 mas Gaia -> 1.1 +- 0.0707 mas: d = 0.909 kpc, sigma = 0.0584 kpc
    d, err, used = combine_with_parallax([1.0], [0.1], [1.2], [0.1], zero_point_mas=0.0)
    assert used[0] and d[0] == pytest.approx(1 / 1.1) and err[0] == pytest.approx(0.1 / np.sqrt(2) / 1.21)
    # a poor parallax (S/N 2) is not used; a missing photometric distance is not invented from it
    d, err, used = combine_with_parallax([2.0, np.nan], [0.2, np.nan], [0.2, 0.2], [0.1, 0.1], zero_point_mas=0.0)
    assert not used.any() and d[0] == pytest.approx(2.0) and err[0] == pytest.approx(0.2) and np.isnan(d[1])
    # the Gaia zero point (-0.017 mas) is removed: 0.983 measured is 1.0 true
    d, _, used = combine_with_parallax([np.nan], [np.nan], [0.983], [0.01])
    assert used[0] and d[0] == pytest.approx(1.0)


def test_streamed_median_map_equals_numpy_per_cell():
    rng = np.random.default_rng(5)
    n = 60_000
    R, Z = rng.uniform(0, 20, n), rng.uniform(0, 10, n)
    feh = -0.3 - 0.15 * Z + 0.2 * rng.standard_normal(n)
    feh[::97] = np.nan  # missing predictions are not counted
    m = BinnedQuantileMap.feh_r_z(cell=2.5)
    assert sum(m.add(R[s:s + 7000], Z[s:s + 7000], feh[s:s + 7000]) for s in range(0, n, 7000)) == int(
        np.isfinite(feh).sum())
    med = m.median()
    for i, j in ((0, 0), (3, 1), (7, 3)):
        sel = (R >= 2.5 * i) & (R < 2.5 * (i + 1)) & (Z >= 2.5 * j) & (Z < 2.5 * (j + 1)) & np.isfinite(feh)
        assert m.n[i, j] == sel.sum()
        assert med[i, j] == pytest.approx(np.median(feh[sel]), abs=0.01)  # one 0.01 dex histogram bin
    half = BinnedQuantileMap.feh_r_z(cell=2.5)
    half.add(R[: n // 2], Z[: n // 2], feh[: n // 2])
    other = BinnedQuantileMap.feh_r_z(cell=2.5)
    other.add(R[n // 2:], Z[n // 2:], feh[n // 2:])
    assert np.array_equal(half.merge(other).counts, m.counts)
    assert np.isnan(m.median(min_count=10**6)).all()


def test_map_command_end_to_end(catalog: pd.DataFrame, tmp_path):
    """Predictions set to the truth (so only the distance and map machinery is tested): distances come back
    within the photometric and E(B-V) noise, every star is accounted for, and the map's median [Fe/H]
    near the Sun equals numpy's median of the same stars at their true positions."""
    import json

    from photofeh.cli import main
    from photofeh.galaxy.distances import star_distances

    t = catalog[np.isfinite(catalog["sdss_r"])]
    pred = pd.DataFrame({"ra": t["ra"], "dec": t["dec"], "feh": t["feh_true"], "feh_err": 0.1, "usable": True,
                         "is_giant": t["is_giant_true"], "mabs_sdss_r": t["mabs_sdss_r_true"],
                         "mabs_sdss_r_err": 0.01, "sdss_r": t["sdss_r"], "ebv": t["ebv"]})
    pred.loc[pred.index[::50], "feh_err"] = 0.8  # vague predictions are left out of the map, and counted
    pred.to_parquet(tmp_path / "pred.parquet")
    pos = star_distances({c: pred[c].to_numpy() for c in pred}, "sdss_r")
    ratio = pos["dist_kpc"] / t["dist_kpc_true"].to_numpy()
    assert abs(np.median(ratio) - 1) < 0.02 and np.subtract(*np.percentile(ratio, [84, 16])) / 2 < 0.1
    assert main(["map", str(tmp_path / "pred.parquet"), "--out", str(tmp_path / "map"), "--giants", "include",
                 "--max-rel-dist-err", "1", "--cell", "1", "--stars", str(tmp_path / "stars.parquet")]) == 0
    stars = pd.read_parquet(tmp_path / "stars.parquet")  # one row per prediction, in order
    assert len(stars) == len(pred) and np.array_equal(stars["ra"], pred["ra"])
    np.testing.assert_allclose(stars["dist_kpc"], pos["dist_kpc"], rtol=1e-12)
    report = json.loads((tmp_path / "map" / "map.json").read_text())
    c = report["counts"]
    assert c["[Fe/H] error > 0.6 dex"] == len(pred[::50])
    assert c["stars"] == len(pred) == c["in the map"] + c["outside the map"] + c[
        "distance missing or error > 100%"] + c["not usable (missing features)"] + c["[Fe/H] error > 0.6 dex"]
    assert stars["in_map"].sum() == c["in the map"]
    assert report["frame"]["galcen_distance_kpc"] == pytest.approx(8.122)
    m = BinnedQuantileMap.load(tmp_path / "map" / "feh_map.npz")
    near = (t["R_kpc_true"].between(8, 9) & t["Z_kpc_true"].abs().between(1, 2)).to_numpy().copy()
    near[::50] = False
    assert m.n[8, 1] == pytest.approx(near.sum(), rel=0.15)
    assert m.median()[8, 1] == pytest.approx(np.median(t["feh_true"][near]), abs=0.05)
    assert (tmp_path / "map" / "feh_map.png").stat().st_size > 10_000
    # every figure as PNG and PDF; the sky map holds the mapped stars in the HEALPix pixels of their (l, b)
    stems = {"feh_map", "feh_counts", "feh_scatter", "feh_profile", "feh_sky"}
    assert set(report["figures"]) >= {f"{s}.{ext}" for s in stems for ext in ("png", "pdf")}
    assert all((tmp_path / "map" / f"{s}.pdf").read_bytes()[:5] == b"%PDF-" for s in stems)
    import healpy as hp
    from astropy.coordinates import SkyCoord

    mapped = pred[stars["in_map"].to_numpy()]
    gal = SkyCoord(mapped["ra"].to_numpy(), mapped["dec"].to_numpy(), unit="deg").galactic
    expected = np.bincount(hp.ang2pix(16, gal.l.deg, gal.b.deg, lonlat=True), minlength=hp.nside2npix(16))
    with np.load(tmp_path / "map" / "feh_map.npz") as f:
        np.testing.assert_array_equal(f["sky_counts"].sum(axis=1), expected)


def test_map_command_names_missing_columns(tmp_path, capsys):
    from photofeh.cli import main

    pd.DataFrame({"ra": [1.0], "dec": [2.0], "feh": [-1.0], "feh_err": [0.1], "usable": [True], "is_giant": [False],
                  "mabs_sdss_r": [5.0], "mabs_sdss_r_err": [0.2]}).to_parquet(tmp_path / "p.parquet")
    assert main(["map", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "sdss_r" in err and "ebv" in err and "--keep" in err


def test_each_star_takes_the_first_band_it_has(catalog: pd.DataFrame):
    """Without SDSS, a star is placed with PS1: same distances (to the photometric noise), band recorded."""
    from photofeh.galaxy.distances import star_distances

    t = catalog[np.isfinite(catalog["sdss_r"]) & np.isfinite(catalog["ps1_r"])].iloc[:20_000]
    cols = {"ra": t["ra"].to_numpy(), "dec": t["dec"].to_numpy(), "ebv": t["ebv"].to_numpy(),
            **{b: t[b].to_numpy().copy() for b in ("sdss_r", "ps1_r")},
            **{f"mabs_{b}": t[f"mabs_{b}_true"].to_numpy() for b in ("sdss_r", "ps1_r")},
            **{f"mabs_{b}_err": np.full(len(t), 0.05) for b in ("sdss_r", "ps1_r")}}
    cols["sdss_r"][::2] = np.nan  # half the stars lack SDSS
    pos = star_distances(cols, ["sdss_r", "ps1_r"])
    assert np.array_equal(pos["dist_band"], np.where(np.arange(len(t)) % 2 == 0, 1, 0))
    ratio = pos["dist_kpc"] / t["dist_kpc_true"].to_numpy()
    for k in (0, 1):
        r = ratio[pos["dist_band"] == k]
        assert abs(np.median(r) - 1) < 0.02 and np.subtract(*np.percentile(r, [84, 16])) / 2 < 0.06
    cols["ps1_r"][::2] = np.nan
    assert np.all(star_distances(cols, ["sdss_r", "ps1_r"])["dist_band"][::2] == -1)


def test_map_with_the_ivezic2008_relation_for_models_without_an_absolute_magnitude(catalog, tmp_path, capsys):
    """`photofeh map --absmag ivezic2008`: distances from M_r(g-i, [Fe/H]) of the predicted [Fe/H]. Checked
    against the relation written out here (coefficients as published), against the mock's true distances
    for main-sequence stars, and with the stars outside its range counted and left out."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from photofeh.cli import main
    from photofeh.galaxy.distances import star_distances

    stars = catalog[np.isfinite(catalog["sdss_g"]) & np.isfinite(catalog["sdss_i"])].iloc[:20_000]
    # predictions as a model without M_abs would give them: here the true [Fe/H] with a 0.1 dex error
    pred = {c: stars[c].to_numpy() for c in ("source_id", "ra", "dec", "sdss_g", "sdss_r", "sdss_i", "sdss_g_err",
                                             "sdss_i_err", "ebv")}
    pred.update(feh=stars["feh_true"].to_numpy(), feh_err=np.full(len(stars), 0.1), usable=np.ones(len(stars), bool),
                is_giant=stars["is_giant_true"].to_numpy())
    pos = star_distances(pred, "sdss_r", absmag="ivezic2008")
    col = {c: stars[c].to_numpy(np.float64) for c in ("sdss_g", "sdss_r", "sdss_i", "ebv", "feh_true")}
    g_i = (col["sdss_g"] - 3.303 * col["ebv"]) - (col["sdss_i"] - 1.698 * col["ebv"])  # SF11 table 6, R_V = 3.1
    feh = col["feh_true"]
    mr = (-5.06 + 14.32 * g_i - 12.97 * g_i**2 + 6.127 * g_i**3 - 1.267 * g_i**4 + 0.0967 * g_i**5
          + 4.50 - 1.11 * feh - 0.18 * feh**2)
    inside = (g_i > 0.2) & (g_i < 4.0) & (feh > -2.5) & (feh < 0.2)
    assert np.array_equal(pos["absmag_valid"], inside)
    expected = 10 ** ((col["sdss_r"] - 2.285 * col["ebv"] - mr) / 5 - 2)
    np.testing.assert_allclose(pos["dist_kpc"][inside], expected[inside], rtol=1e-9)
    assert np.isnan(pos["dist_kpc"][~inside]).all()
    dwarfs = inside & (stars["phase"] == "main sequence").to_numpy() & ~stars["is_binary_true"].to_numpy()
    ratio = pos["dist_kpc"][dwarfs] / stars["dist_kpc_true"].to_numpy()[dwarfs]
    # the relation against the mock's PARSEC dwarfs, with observed colours: within the 0.3 mag of the
    # relation-vs-PARSEC check above (measured: the relation is 0.28 mag brighter, distances 14% longer)
    assert dwarfs.sum() > 3000 and abs(5 * np.log10(np.nanmedian(ratio))) < 0.3
    pq.write_table(pa.table(pred), tmp_path / "pred.parquet")
    assert main(["map", str(tmp_path / "pred.parquet"), "--out", str(tmp_path / "m"), "--absmag", "ivezic2008",
                 "--cell", "1", "--min-count", "5", "--no-figures"]) == 0
    report = json.loads((tmp_path / "m" / "map.json").read_text())
    assert report["options"]["absmag"] == "ivezic2008"
    assert report["counts"]["outside the Ivezic 2008 relation (0.2 < g-i < 4.0, -2.5 < [Fe/H] < 0.2)"] == int(
        (~inside).sum())
    assert report["cells_with_min_count"] > 0 and report["photofeh_version"]
    # a map in which no cell reaches --min-count is an error, not an empty figure with exit 0
    capsys.readouterr()
    assert main(["map", str(tmp_path / "pred.parquet"), "--out", str(tmp_path / "m2"), "--absmag", "ivezic2008",
                 "--min-count", "100000", "--no-figures"]) == 1
    assert "no (R, |Z|) cell holds 100000 stars" in capsys.readouterr().err
