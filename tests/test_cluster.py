"""Mock star clusters: one age, one [Fe/H], one distance, in a field drawn from the Galaxy model."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from photofeh.bands import BANDS, GAIA_PARALLAX_ZP_MAS
from photofeh.cli import main
from photofeh.simulate import MockSurvey, MockSurveyConfig
from photofeh.simulate.cluster import (
    CLUSTER_COLUMNS,
    ClusterConfig,
    ClusterFieldSurvey,
    cone_directions,
    offset_positions,
    plummer_radii,
    simulate_cluster_field,
    stars_per_proposal,
    write_cluster_catalog,
)
from photofeh.simulate.galaxy import galactocentric
from photofeh.simulate.survey import BINARY_FRACTION

FIELD_RADIUS = 10.0  # arcmin
# A metal-poor globular cluster: the PARSEC turn-off of [Fe/H] = -2.1, 11 Gyr is at M_g = 3.8, so g ~ 18.5 at 8.5 kpc.
POOR = ClusterConfig(feh=-2.1, age_gyr=11.0, distance_kpc=8.5, n_members=600, seed=7)
# A metal-rich open-cluster-like population: turn-off M_g = 3.4, g ~ 16 at 3 kpc.
RICH = replace(POOR, feh=-0.2, age_gyr=4.0, distance_kpc=3.0, n_members=400)


def frame(cols: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(cols)


def separation_deg(l, b, l0, b0):
    l, b, l0, b0 = (np.radians(x) for x in (l, b, l0, b0))
    c = np.sin(b) * np.sin(b0) + np.cos(b) * np.cos(b0) * np.cos(l - l0)
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


@pytest.fixture(scope="module")
def survey() -> ClusterFieldSurvey:
    return ClusterFieldSurvey(POOR, FIELD_RADIUS)


@pytest.fixture(scope="module")
def poor(survey) -> pd.DataFrame:
    return frame(simulate_cluster_field(POOR, FIELD_RADIUS, survey))


@pytest.fixture(scope="module")
def rich(survey) -> pd.DataFrame:
    return frame(simulate_cluster_field(RICH, FIELD_RADIUS, survey))


# ------------------------------------------------------------------ geometry
def test_sky_geometry():
    rng = np.random.default_rng(0)
    rho, theta = rng.uniform(0, 3, 1000), rng.uniform(0, 2 * np.pi, 1000)
    for l0, b0 in ((60.0, 60.0), (10.0, 89.5), (300.0, -45.0)):
        l, b = offset_positions(l0, b0, rho, theta)
        assert np.allclose(separation_deg(l, b, l0, b0), rho, atol=1e-9)
    l, b = cone_directions(rng, 20_000, 60.0, 60.0, 1.0)
    sep = separation_deg(l, b, 60.0, 60.0)
    assert sep.max() <= 1.0 + 1e-9
    assert abs(np.mean(sep < 0.5) - 0.25) < 0.015  # uniform on the sphere: area grows as rho^2
    r = plummer_radii(rng, 20_000, 2.0, 1e6)
    assert abs(np.median(r) - 2.0) < 0.1  # the Plummer radius holds half the projected mass
    assert plummer_radii(rng, 1000, 2.0, 3.0).max() <= 3.0


# ------------------------------------------------------------------ members
@pytest.mark.parametrize("name, cfg, turnoff_g", [("poor", POOR, (18.0, 19.0)), ("rich", RICH, (15.5, 16.5))])
def test_members_share_the_cluster_truth(request, name, cfg, turnoff_g):
    t = request.getfixturevalue(name)
    assert list(t.columns) == [c.name for c in CLUSTER_COLUMNS]
    m = t[t["cluster_member"]]
    assert len(m) == cfg.n_members and (m["pop"] == "cluster").all()
    assert (t.loc[~t["cluster_member"], "pop"] != "cluster").all()
    assert (m["feh_true"] == np.float32(cfg.feh)).all() and not m["feh_beyond_grid"].any()
    assert (m["age_gyr_true"] == np.float32(cfg.age_gyr)).all()
    assert (m["dist_kpc_true"] == np.float32(cfg.distance_kpc)).all()
    assert m["ebv_true"].nunique() == 1 and m["ebv"].nunique() == 1
    R, Z, phi = galactocentric(m["l"].to_numpy(), m["b"].to_numpy(), cfg.distance_kpc)
    assert np.allclose(m["R_kpc_true"], R, rtol=1e-5) and np.allclose(m["Z_kpc_true"], Z, rtol=1e-5)
    assert np.allclose(m["phi_deg_true"], phi, atol=1e-4)
    assert t["source_id"].is_unique
    # every row, member or not, lies in the cone and in the selection window (noiseless, extinguished r)
    assert separation_deg(t["l"], t["b"], cfg.l_deg, cfg.b_deg).max() <= FIELD_RADIUS / 60.0 + 1e-9
    r_sel = t["mabs_sdss_r_true"] + 5 * np.log10(100 * t["dist_kpc_true"]) + BANDS["sdss_r"].r_ebv * t["ebv_true"]
    assert r_sel.between(14.0 - 1e-3, 22.5 + 1e-3).all()
    # the main-sequence turn-off (bluest single main-sequence star) sits where the isochrone puts it
    single = m[~m["is_binary_true"] & (m["phase"] == "main sequence")]
    dm = 5 * np.log10(100 * cfg.distance_kpc)
    g_true = single["mabs_sdss_g_true"] + dm + BANDS["sdss_g"].r_ebv * single["ebv_true"]
    blue = (single["mabs_sdss_g_true"] - single["mabs_sdss_r_true"]).idxmin()
    assert turnoff_g[0] < g_true[blue] < turnoff_g[1]


@pytest.mark.parametrize("name", ["poor", "rich"])
def test_members_form_a_narrow_sequence(request, name):
    """g-r about the members' own locus (median per 0.25 mag of g) scatters by photometric noise and binaries
    only; the field, at the same magnitudes, by a lot more."""
    t = request.getfixturevalue(name)
    t = t[(t["sdss_g"] < 21.5) & t["sdss_r"].notna()]
    m, f = t[t["cluster_member"]], t[~t["cluster_member"]]
    edges = np.arange(np.floor(m["sdss_g"].min()), 21.75, 0.25)
    gr = m["sdss_g"] - m["sdss_r"]
    bins = np.digitize(m["sdss_g"], edges)
    centres = [m["sdss_g"][bins == k].median() for k in np.unique(bins) if (bins == k).sum() >= 3]
    locus = [gr[bins == k].median() for k in np.unique(bins) if (bins == k).sum() >= 3]
    member_resid = np.median(np.abs(gr - np.interp(m["sdss_g"], centres, locus)))
    field_resid = np.median(np.abs(f["sdss_g"] - f["sdss_r"] - np.interp(f["sdss_g"], centres, locus)))
    assert len(m) > 150 and len(f) > 150
    assert member_resid < 0.05 and member_resid < field_resid / 4


@pytest.mark.parametrize("name, cfg", [("poor", POOR), ("rich", RICH)])
def test_parallaxes_average_to_one_over_distance(request, name, cfg):
    m = request.getfixturevalue(name)
    m = m[m["cluster_member"] & m["parallax"].notna()]
    w = 1.0 / m["parallax_error"].astype(float) ** 2
    mean = np.sum(w * (m["parallax"] - GAIA_PARALLAX_ZP_MAS)) / w.sum()
    assert len(m) > 100 and abs(mean - 1.0 / cfg.distance_kpc) < 4.0 / np.sqrt(w.sum())


def test_binaries_as_in_the_field(survey, poor):
    m = poor[poor["cluster_member"]]
    # the field's fractions by primary mass (current mass ~ initial mass on the main sequence)
    expected = np.where(m["mass_true"] < BINARY_FRACTION["boundary_msun"], BINARY_FRACTION["low_mass"],
                        BINARY_FRACTION["solar"]).mean()
    # binaries are brighter, so slightly favoured near the faint limit: within 0.1 of the field's fraction
    assert abs(m["is_binary_true"].mean() - expected) < 0.1
    assert m.loc[m["is_binary_true"], "mass_ratio_true"].between(0.1, 1.0).all()
    assert m.loc[~m["is_binary_true"], "mass_ratio_true"].isna().all()
    none = frame(survey.members(replace(POOR, binary_fraction=0.0, n_members=200)))
    every = frame(survey.members(replace(POOR, binary_fraction=1.0, n_members=200)))
    assert not none["is_binary_true"].any() and every["is_binary_true"].all()


def test_metallicity_spread(survey):
    m = frame(survey.members(replace(POOR, feh=-1.5, feh_spread=0.1, n_members=500)))
    assert abs(m["feh_true"].mean() + 1.5) < 0.03 and abs(m["feh_true"].std() - 0.1) < 0.015


def test_spectra_only_inside_the_window(poor):
    m = poor[poor["cluster_member"]]
    spec = m[m["in_spec"]]
    assert spec["feh_spec"].notna().all() and m.loc[~m["in_spec"], "feh_spec"].isna().all()
    assert (spec["sdss_g"] < 20.0).all() and spec["teff_true"].between(4000, 10000).all()


# ------------------------------------------------------------------ field
@pytest.fixture(scope="module")
def reference() -> tuple[pd.DataFrame, float]:
    """Eight blocks of the ordinary full-sky mock survey (|b| > 20) and the true stars per proposal."""
    ms = MockSurvey(MockSurveyConfig(n_stars=1, seed=5, min_abs_b=20.0))
    blocks = [ms.block(k) for k in range(8)]
    t = pd.DataFrame({c: np.concatenate([b[c] for b in blocks]) for c in blocks[0]})
    return t, stars_per_proposal(ms.galaxy) / (8 * 2**16)


def test_field_density_follows_the_model(poor, reference, survey):
    """The cone's field, drawn by ConeGalaxy, against the ordinary sampler (GalaxyModel) in an 8 deg cap
    around the same point, both at the same absolute scale: same density and population mix."""
    ref, per_star = reference
    cap_deg = 8.0
    cap = ref[separation_deg(ref["l"], ref["b"], 60.0, 60.0) < cap_deg]
    cap_area = 2 * np.pi * (1 - np.cos(np.radians(cap_deg))) * (180 / np.pi) ** 2
    cone_area = 2 * np.pi * (1 - np.cos(np.radians(FIELD_RADIUS / 60))) * (180 / np.pi) ** 2
    field = poor[~poor["cluster_member"]]
    expected = len(cap) * per_star / cap_area  # stars per deg^2, 14 < r < 22.5 (~8,000)
    observed = len(field) / cone_area  # ~700 stars: 4% Poisson error; the cap's ~870: 3.4%
    assert 0.75 < observed / expected < 1.33, (observed, expected)
    mix_field = field["pop"].value_counts(normalize=True)
    mix_cap = cap["pop"].value_counts(normalize=True)
    for pop in ("thin", "thick", "halo"):
        assert abs(mix_field.get(pop, 0.0) - mix_cap[pop]) < 0.1
    assert survey.galaxy.max_ratio <= 1.0  # the cone's envelope was never exceeded


def test_absolute_star_counts_match_sdss(reference):
    """The absolute scale (RECONS local density) against SDSS: Juric et al. 2008 counted 48 million stars
    with r < 22 over 6,500 deg^2, mostly |b| > 25 (7,400 per deg^2). The mock's SDSS footprint (b > 30,
    dec > -5) should hold about as many: it holds 7,000 per deg^2 (0.95 of it; 27,600 stars drawn, 0.6% Poisson
    error). 0.8-1.25 leaves room for the footprints' differences; half or twice the scale is far outside."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    ref, per_star = reference
    n = np.sum((ref["b"] >= 30) & (ref["dec"] >= -5) & (ref["sdss_r"] < 22))
    rng = np.random.default_rng(1)
    sinb = rng.uniform(0.5, 1.0, 200_000)
    pts = SkyCoord(l=rng.uniform(0, 360, sinb.size) * u.deg, b=np.degrees(np.arcsin(sinb)) * u.deg, frame="galactic")
    area = np.pi * (180 / np.pi) ** 2 * np.mean(pts.icrs.dec.deg >= -5)  # the cap b > 30 is pi sr
    density = n * per_star / area
    assert 0.5 < density / (48e6 / 6500) < 2.0, density
    assert 0.8 < density / (48e6 / 6500) < 1.25, density


# ------------------------------------------------------------------ determinism and errors
def test_same_seed_same_table_other_seed_other_table(survey, poor):
    pd.testing.assert_frame_equal(frame(simulate_cluster_field(POOR, FIELD_RADIUS, survey)), poor)
    other = frame(simulate_cluster_field(replace(POOR, seed=8), FIELD_RADIUS))
    assert other["cluster_member"].sum() == POOR.n_members
    assert not np.array_equal(other["sdss_r"].to_numpy()[:50], poor["sdss_r"].to_numpy()[:50], equal_nan=True)
    assert len(other) != len(poor) or not other.equals(poor)


@pytest.mark.parametrize("change, message", [
    ({"n_members": 0}, "n_members must be an integer from 1"),
    ({"n_members": 2.5}, "n_members must be an integer from 1"),
    ({"feh": float("nan")}, "feh must be a finite number"),
    ({"age_gyr": 0.0}, "age_gyr must be in (0, 20]"),
    ({"distance_kpc": -1.0}, "distance_kpc must be in (0, 300]"),
    ({"b_deg": 95.0}, "(l_deg, b_deg) must be in"),
    ({"l_deg": 360.0}, "(l_deg, b_deg) must be in"),
    ({"radius_arcmin": 0.0}, "radius_arcmin (Plummer radius) must be in"),
    ({"feh_spread": -0.1}, "feh_spread must be in"),
    ({"binaries": "yes"}, "binaries must be True or False"),
    ({"binary_fraction": 1.5}, "binary_fraction must be in [0, 1]"),
    ({"ebv": -0.1}, "ebv must be in [0, 3.0]"),
    ({"select_band": "tmass_j"}, "select_band must be a simulated band"),
    ({"mag_range": (22.0, 14.0)}, "bright < faint"),
    ({"seed": -1}, "seed must be an integer"),
    ({"disk_feh_law": "x"}, "disk_feh_law must be"),
    ({"footprints": {"sdss": "min_q=3"}}, "bad footprint term"),
])
def test_invalid_configs_are_refused(change, message):
    with pytest.raises(ValueError) as err:
        replace(POOR, **change).validate()
    assert message in str(err.value)


def test_invalid_against_the_grid_or_the_field_are_refused(survey):
    with pytest.raises(ValueError, match=r"isochrone grid's \[M/H\] range \[-4\.00, 0\.30\], got -4\.5"):
        survey.members(replace(POOR, feh=-4.5))
    with pytest.raises(ValueError, match="isochrone grid's age range"):
        survey.members(replace(POOR, age_gyr=19.0))
    with pytest.raises(ValueError, match="built for another seed"):
        survey.members(replace(POOR, seed=8))
    with pytest.raises(ValueError, match="field radius of 10.0 arcmin"):
        simulate_cluster_field(POOR, 5.0, survey)
    with pytest.raises(ValueError, match=r"field_radius_arcmin must be in \(0, 120\]"):
        ClusterFieldSurvey(POOR, 0.0)


def test_too_costly_fields_are_refused():
    with pytest.raises(ValueError, match="choose a smaller field radius"):
        ClusterFieldSurvey(replace(POOR, l_deg=0.0, b_deg=0.0), 120.0)


def test_uniform_ebv_applies_to_members_and_field():
    cfg = replace(POOR, ebv=0.1, n_members=100)
    t = frame(simulate_cluster_field(cfg, 5.0))
    assert (t["ebv"] == np.float32(0.1)).all()
    m = t[t["cluster_member"]]
    assert m["ebv_true"].nunique() == 1 and 0.06 < m["ebv_true"].iloc[0] < 0.14  # 10% map error, all in front


def test_fits_output(survey, poor, tmp_path: Path):
    from photofeh.io.catalog import read_table

    out = write_cluster_catalog(POOR, tmp_path / "c.fits", FIELD_RADIUS, survey=survey)
    t = read_table(out)
    assert len(t) == len(poor) and t["cluster_member"].sum() == POOR.n_members


# ------------------------------------------------------------------ command line
def test_cli_writes_cluster_and_field(poor, tmp_path: Path, capsys):
    out = tmp_path / "cluster.parquet"
    assert main(["simulate", "--cluster", "-2.1,11,8.5,600", "--seed", "7", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "600 cluster members" in text and "populations: cluster" in text
    table = pq.read_table(out)
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    config = json.loads(meta["config"])
    assert config["feh"] == -2.1 and config["n_members"] == 600 and meta["field_radius_arcmin"] == "10.0"
    t = table.to_pandas()
    assert t["cluster_member"].dtype == bool and t["cluster_member"].sum() == 600
    # a fresh run (new grid, new survey) gives the same table as the fixture built with the same config
    pd.testing.assert_frame_equal(t, poor, check_dtype=False)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "photofeh.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args, message", [
    (["--cluster", "-2.1,11,8.5"], "expected FEH,AGE_GYR,DIST_KPC,N"),
    (["--cluster", "-2.1,11,8.5,0"], "N (observed members) must be from 1"),
    (["--cluster", "-2.1,-1,8.5,10"], "AGE_GYR must be in (0, 20]"),
    (["--cluster", "-2.1,11,8.5,10", "--cluster-lb", "10,95"], "expected 0 <= L < 360 and -90 <= B <= 90"),
    (["--cluster", "-2.1,11,8.5,10", "--field-radius", "500"], "argument --field-radius"),
    (["--cluster", "-2.1,11,8.5,10", "--n-stars", "5"], "not allowed with argument"),
    ([], "one of the arguments --n-stars --cluster is required"),
])
def test_cli_refuses_bad_cluster_arguments(tmp_path: Path, args, message):
    r = run("simulate", *args, "--out", str(tmp_path / "x.parquet"))
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())


def test_cli_refuses_impossible_clusters(tmp_path: Path, capsys):
    out = tmp_path / "x.parquet"
    assert main(["simulate", "--n-stars", "5", "--cluster-lb", "10,10", "--out", str(out)]) == 1
    assert "go with --cluster" in capsys.readouterr().err
    assert main(["simulate", "--cluster", "-1,11,8,10", "--mag-range", "-1", "5", "--out", str(out)]) == 1
    assert "no star of this cluster" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
