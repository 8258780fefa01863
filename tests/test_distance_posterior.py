"""Distance posteriors of class-conditional absolute magnitudes (:mod:`photofeh.galaxy.distance_posterior`),
against the true distances of stars drawn from the Juric et al. 2008 Galaxy by the mock's own sampler
(:class:`photofeh.simulate.galaxy.GalaxyModel`), magnitude-limited as a survey is."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from photofeh.galaxy.distance_posterior import mixture_distances
from photofeh.galaxy.distances import star_distances

M_DWARF, M_GIANT, SIGMA, GIANT_SHARE = 5.0, 0.5, 0.6, 0.1


@functools.cache
def survey(n: int = 6000, seed: int = 3):
    """Dwarfs (M = 5) and giants (M = 0.5), both with a 0.6-mag spread, placed by the Juric density at |b| > 30
    and kept at 14 < m < 19.5: (m, l, b, d_true, giant)."""
    from photofeh.simulate.galaxy import GalaxyModel

    rng = np.random.default_rng(seed)
    gm = GalaxyModel(min_abs_b=30.0, n_l=24, n_sinb=12, n_d=200, d_max_kpc=100.0)
    _, l, b, d, inside = gm.sample(rng, 60 * n)
    l, b, d = l[inside], b[inside], d[inside]
    giant = rng.random(len(d)) < GIANT_SHARE
    m = np.where(giant, M_GIANT, M_DWARF) + SIGMA * rng.standard_normal(len(d)) + 5 * np.log10(d) + 10
    keep = np.flatnonzero((m > 14) & (m < 19.5))[:n]
    return m[keep], l[keep], b[keep], d[keep], giant[keep]


@functools.cache
def _posterior(prior: bool):
    m, l, b, _, _ = survey()
    n = len(m)
    pos = {"l_deg": l, "b_deg": b} if prior else {}
    return mixture_distances(m, np.full(n, M_DWARF), np.full(n, SIGMA), np.full(n, M_GIANT), np.full(n, SIGMA),
                             np.full(n, GIANT_SHARE), **pos)


def test_line_of_sight_prior_removes_the_malmquist_bias():
    """At a given apparent magnitude the stars that are intrinsically brighter than average come from a larger
    volume: the dwarfs' distances from their mean M alone come out short (classic Malmquist bias; the giants,
    in the halo's falling density, less so); with the prior along the line of sight each class's posterior
    median is within 3% of the truth."""
    m, _, _, d, giant = survey()
    none, prior = _posterior(False), _posterior(True)
    assert np.median(none["dist_dwarf_kpc"][~giant] / d[~giant]) < 0.96  # the bias is there to remove
    for cls, column in ((~giant, "dist_dwarf_kpc"), (giant, "dist_giant_kpc")):
        assert cls.sum() > 400
        assert abs(np.median(prior[column][cls] / d[cls]) - 1) < 0.03
    bright = ~giant & (m < 17)  # nearby dwarfs: a flat density, the bias at its largest (-1.38 sigma^2 in M)
    assert np.median(none["dist_dwarf_kpc"][bright] / d[bright]) < 0.93
    assert abs(np.median(prior["dist_dwarf_kpc"][bright] / d[bright]) - 1) < 0.03


def test_prior_class_probability_is_calibrated():
    """Colours that cannot tell a dwarf from a giant (P(giant) = 0.1 for every star): the line of sight and the
    apparent magnitude can, in part. Among stars given P(giant | m, l, b) in a range, the share of true giants
    matches its mean; and the classes split better than by P(giant) alone."""
    _, _, _, _, giant = survey()
    p = _posterior(True)["p_giant_dist"]
    for lo, hi in ((0.0, 0.1), (0.1, 0.5), (0.5, 1.0)):
        rows = (p >= lo) & (p < hi)
        assert rows.sum() > 100
        assert abs(giant[rows].mean() - p[rows].mean()) < 0.05
    assert np.mean(p[giant]) - np.mean(p[~giant]) > 0.04  # 0 without the prior


def test_a_bimodal_star_is_not_placed_between_its_modes():
    """P(giant) = 0.45, the classes' distance moduli 4.5 mag apart (10 and 79 kpc): the estimate is the dwarf's
    distance, not one between the two; the interval spans both, and both class distances are reported."""
    r = mixture_distances(np.array([20.0]), np.array([5.0]), np.array([0.2]), np.array([0.5]), np.array([0.2]),
                          np.array([0.45]))
    d_dwarf, d_giant = 10 ** ((20.0 - 5.0) / 5 - 2), 10 ** ((20.0 - 0.5) / 5 - 2)
    assert r["dist_dwarf_kpc"][0] == pytest.approx(d_dwarf, rel=0.01)
    assert r["dist_giant_kpc"][0] == pytest.approx(d_giant, rel=0.01)
    assert r["dist_kpc"][0] == pytest.approx(d_dwarf, rel=0.01)
    assert r["dist_lo_kpc"][0] < d_dwarf < d_giant < r["dist_hi_kpc"][0]
    assert r["p_giant_dist"][0] == pytest.approx(0.45, abs=1e-6)
    sure = mixture_distances(np.array([20.0, 20.0]), np.array([5.0, 5.0]), np.array([0.2, 0.2]),
                             np.array([0.5, 0.5]), np.array([0.2, 0.2]), np.array([0.0, 1.0]))
    assert np.allclose(sure["dist_dwarf_kpc"], d_dwarf, rtol=0.01) and np.allclose(sure["dist_giant_kpc"], d_giant,
                                                                                    rtol=0.01)
    assert np.allclose(sure["dist_kpc"], [d_dwarf, d_giant], rtol=0.01)


def test_star_distances_takes_the_components_and_the_prior():
    """A prediction table with a class-conditional model's components: without a prior the distance is the
    more probable class's (as the point estimate M was chosen); with the Juric prior the nearby dwarfs'
    Malmquist bias goes, and the columns of both classes are there."""
    m, l, b, d, giant = survey()
    from photofeh.simulate.galaxy import galactic_to_icrs

    ra, dec = galactic_to_icrs(l, b)
    n = len(m)
    cols = {"ra": ra, "dec": dec, "sdss_r": m, "ebv": np.zeros(n), "mabs_sdss_r": np.full(n, M_DWARF),
            "mabs_sdss_r_err": np.full(n, 1.0), "mabs_sdss_r_dwarf": np.full(n, M_DWARF),
            "mabs_sdss_r_dwarf_err": np.full(n, SIGMA), "mabs_sdss_r_giant": np.full(n, M_GIANT),
            "mabs_sdss_r_giant_err": np.full(n, SIGMA), "p_giant": np.full(n, GIANT_SHARE)}
    plain = star_distances(cols, "sdss_r")
    assert np.allclose(plain["dist_kpc"], 10 ** ((m - M_DWARF) / 5 - 2), rtol=1e-3)
    assert {"dist_dwarf_kpc", "dist_giant_kpc", "dist_lo_kpc", "dist_hi_kpc", "p_giant_dist"} <= set(plain)
    with_prior = star_distances(cols, "sdss_r", prior="juric2008")
    dwarfs = ~giant & (with_prior["p_giant_dist"] < 0.5)
    assert abs(np.median(with_prior["dist_kpc"][dwarfs] / d[dwarfs]) - 1) < 0.03
    assert np.median(plain["dist_kpc"][dwarfs] / d[dwarfs]) < 0.965
    within = star_distances(cols, "sdss_r", prior="juric2008-within-class")
    assert np.allclose(within["p_giant_dist"], GIANT_SHARE)  # the model's P(giant) kept
    assert np.allclose(within["dist_dwarf_kpc"], with_prior["dist_dwarf_kpc"], rtol=1e-9)
    with pytest.raises(ValueError, match="prior"):
        star_distances(cols, "sdss_r", prior="flat")


def test_map_writes_the_posterior_columns(tmp_path, monkeypatch):
    """``photofeh map --distance-prior juric2008`` (its Python function): every star's class distances and
    interval go to the --stars file, and the giant cut follows the posterior class. The stars' (l, b) are
    computed once per chunk, for the prior's lines of sight and the sky map (twice before)."""
    import pandas as pd

    import photofeh.galaxy.distances as distances
    import photofeh.galaxy.maps as maps
    from photofeh.galaxy.maps import feh_map_from_predictions
    from photofeh.simulate.galaxy import galactic_to_icrs

    calls, original = [], distances.galactic_lb

    def counted(ra, dec):
        calls.append(len(ra))
        return original(ra, dec)

    monkeypatch.setattr(distances, "galactic_lb", counted)
    monkeypatch.setattr(maps, "galactic_lb", counted)

    m, l, b, d, giant = survey()
    k = slice(0, 1500)
    ra, dec = galactic_to_icrs(l[k], b[k])
    n = len(ra)
    table = pd.DataFrame({"ra": ra, "dec": dec, "sdss_r": m[k], "ebv": np.zeros(n), "feh": np.full(n, -0.5),
                          "feh_err": np.full(n, 0.1), "usable": np.ones(n, bool), "is_giant": np.zeros(n, bool),
                          "mabs_sdss_r": np.full(n, M_DWARF), "mabs_sdss_r_err": np.full(n, SIGMA),
                          "mabs_sdss_r_dwarf": np.full(n, M_DWARF), "mabs_sdss_r_dwarf_err": np.full(n, SIGMA),
                          "mabs_sdss_r_giant": np.full(n, M_GIANT), "mabs_sdss_r_giant_err": np.full(n, SIGMA),
                          "p_giant": np.full(n, GIANT_SHARE)})
    table.to_parquet(tmp_path / "pred.parquet")
    _, counts = feh_map_from_predictions(tmp_path / "pred.parquet", stars_out=tmp_path / "stars.parquet",
                                         absmag_reference={}, distance_prior="juric2008", max_rel_dist_err=10.0)
    stars = pd.read_parquet(tmp_path / "stars.parquet")
    expected = _posterior(True)
    assert np.allclose(stars["dist_giant_kpc"], expected["dist_giant_kpc"][k], rtol=1e-6)
    assert np.allclose(stars["p_giant_dist"], expected["p_giant_dist"][k], rtol=1e-6)
    assert counts["removed by giants=exclude"] == int(np.sum(expected["p_giant_dist"][k] >= 0.5)) > 0
    assert calls == [n]  # one chunk, every usable star, once


def test_the_grid_agrees_with_the_closed_form():
    """Without a prior the posterior is a two-Gaussian mixture in distance modulus: its class medians, P(giant)
    and percentiles in closed form (the Gaussians' centres; bisection on the CDF) agree with the grid that the
    prior path integrates on, to 0.2% in distance."""
    from photofeh.galaxy import distance_posterior as dp

    rng = np.random.default_rng(1)
    n = 2000
    m, p = rng.uniform(14, 20, n), rng.uniform(0, 1, n)
    args = (rng.uniform(3, 7, n), rng.uniform(0.1, 1, n), rng.uniform(-1, 2, n), rng.uniform(0.2, 1, n))
    closed = dp._gaussian_block(m, *args, p)
    grid = dp._posterior_block(m, *args, p, None, None)
    for key in ("dist_dwarf_kpc", "dist_giant_kpc", "dist_lo_kpc", "dist_hi_kpc", "p_giant_dist"):
        assert np.allclose(grid[key], closed[key], rtol=2e-3), key
    assert np.allclose(closed["dist_dwarf_kpc"], 10 ** ((m - args[0]) / 5 - 2))
