"""The plotting style and the map figures' science: labels with units, data-driven ranges, the Ivezic et al.
2008 profiles and the solar-neighbourhood profile, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from photofeh.galaxy.maps import BinnedQuantileMap, galactic_lb
from photofeh.report.map_figures import ivezic2008_profiles, reference_profiles, solar_profile
from photofeh.report.style import axis_label, data_range, occupied_extent, sun_position_kpc


@pytest.mark.parametrize("column, label", [
    ("feh", "[Fe/H] (dex)"),
    ("feh_spec", "[Fe/H] (spectroscopic, dex)"),
    ("teff_true", r"$T_\mathrm{eff}$ (true, K)"),
    ("mabs_sdss_r_true", "$M_{r}$ (SDSS, true, mag)"),
    ("sdss_g-sdss_r", "$g$ - $r$ (SDSS, mag)"),
    ("gaia_bp-gaia_rp", r"$G_\mathrm{BP}$ - $G_\mathrm{RP}$ (Gaia, mag)"),
    ("tmass_ks", r"$K_\mathrm{s}$ (2MASS, mag)"),
    ("some_column", "some column"),
])
def test_axis_labels_carry_units(column, label):
    assert axis_label(column) == label


def test_data_range_follows_the_data():
    rng = np.random.default_rng(1)
    v = np.concatenate([rng.normal(-1.0, 0.2, 10_000), [np.nan, np.inf, -40.0]])  # one wild value, ignored
    lo, hi = data_range(v, step=0.1)
    assert lo == pytest.approx(-1.5) and hi == pytest.approx(-0.5)  # 2-98%: -1.41..-0.59, out to 0.1 dex
    assert data_range([0.5, 0.5], step=0.1, minimum_width=0.4) == pytest.approx((0.3, 0.7))
    assert data_range([np.nan]) == (0.0, 1.0)


def test_occupied_extent_pads_by_a_cell():
    occ = np.zeros((40, 20), bool)
    occ[10:20, 0:6] = True
    assert occupied_extent(np.arange(41) * 0.5, np.arange(21) * 0.5, occ) == (4.5, 10.5, 0.0, 3.5)


def test_sun_and_galactic_coordinates():
    assert sun_position_kpc() == pytest.approx((8.122, 0.0208), abs=1e-4)  # GRAVITY 2018, Bennett & Bovy 2019
    # the North Galactic Pole and the Galactic centre (J2000 positions of Reid & Brunthaler 2004 / Hipparcos)
    l, b = galactic_lb([192.85948, 266.40500], [27.12825, -28.93617])
    assert b[0] == pytest.approx(90.0, abs=1e-3)
    assert (l[1] + 180) % 360 - 180 == pytest.approx(0.0, abs=0.01) and b[1] == pytest.approx(0.0, abs=0.01)


def test_ivezic2008_profiles_against_a_direct_draw():
    """The disk law's median at |Z| = 0.5 kpc from a million draws of the Ivezic 2008 two-Gaussian disk, the
    halo's -1.46, and the mixture tending to the disk near the plane and to the halo far from it."""
    rng = np.random.default_rng(2)
    mu = -0.78 + 0.35 * np.exp(-0.5 / 1.0)  # Ivezic et al. 2008, section 4.3: mu_inf, Delta_mu, H_mu
    a = mu - 0.067
    draws = np.where(rng.random(1_000_000) < 0.37, rng.normal(a + 0.14, 0.2, 1_000_000),
                     rng.normal(a, 0.2, 1_000_000))
    prof = ivezic2008_profiles(np.array([0.5, 3.0, 30.0]))
    assert prof["disk"][0] == pytest.approx(np.median(draws), abs=0.003)
    assert np.all(prof["halo"] == -1.46)
    # Juric et al. 2008, table 10, at R = 8.122 kpc, |Z| = 0.5 kpc (their R0 = 8 kpc, Z_sun = 25 pc)
    R, Z = 8.122, 0.5
    thin = np.exp((8 - R) / 2.6 - (Z - 0.025) / 0.3)
    thick = 0.12 * np.exp((8 - R) / 3.6 - (Z - 0.025) / 0.9)
    halo = 0.0051 * (8 / np.hypot(R, Z / 0.64)) ** 2.77
    assert prof["halo_fraction"][0] == pytest.approx(halo / (thin + thick + halo), rel=1e-6)
    assert prof["halo_fraction"][2] > 0.99
    assert prof["disk_and_halo"][0] == pytest.approx(prof["disk"][0], abs=0.03)
    assert prof["disk_and_halo"][2] == pytest.approx(-1.46, abs=0.01)
    assert prof["halo"][1] < prof["disk_and_halo"][1] < prof["disk"][1]


def test_reference_profiles_of_the_default_mock_laws_against_a_direct_draw():
    """The default mock's laws (docs/mock_calibration.md): disk mu = -0.65 + 0.62 exp(-|Z| / 0.6 kpc) in the
    same two-Gaussian mixture, halo 0.55 N(-1.40, 0.30) + 0.45 N(-1.90, 0.30) with a tail of slope 1 dex^-1
    below -2.5, drawn here directly (the tail by inverse CDF of 10^(f + 2.5) on [-4, -2.5])."""
    from scipy.stats import norm

    rng = np.random.default_rng(5)
    n = 2_000_000
    mu = -0.65 + 0.62 * np.exp(-1.0 / 0.6)
    disk = np.where(rng.random(n) < 0.37, rng.normal(mu - 0.067 + 0.14, 0.2, n), rng.normal(mu - 0.067, 0.2, n))
    core = np.where(rng.random(n) < 0.55, rng.normal(-1.40, 0.30, n), rng.normal(-1.90, 0.30, n))
    # the tail holds p_core(-2.5) / ln 10 of probability against the core's mass above -2.5 (slope 1 dex^-1)
    p_edge = 0.55 * norm.pdf(-2.5, -1.40, 0.30) + 0.45 * norm.pdf(-2.5, -1.90, 0.30)
    tail_mass = p_edge * (1 - 10 ** (-1.5)) / np.log(10)
    above = core[core >= -2.5]
    n_tail = int(round(above.size * tail_mass / np.mean(core >= -2.5)))
    tail = -2.5 + np.log10(1 - rng.random(n_tail) * (1 - 10 ** (-1.5)))
    halo = np.concatenate([above, tail])
    prof = reference_profiles(np.array([1.0, 40.0]), disk_law="calibrated", halo_law="an2015")
    assert prof["disk"][0] == pytest.approx(np.median(disk), abs=0.003)
    assert prof["halo"][0] == pytest.approx(np.median(halo), abs=0.005)
    assert prof["disk_and_halo"][1] == pytest.approx(np.median(halo), abs=0.01)


def test_solar_profile_recovers_medians_and_their_errors():
    """Stars drawn with [Fe/H] ~ N(-0.5 - 0.1 |Z|, 0.3) near the Sun (and decoys far away): the profile's
    medians come back within their errors, and the errors match the spread of medians over many draws."""
    rng = np.random.default_rng(3)
    m = BinnedQuantileMap.feh_r_z(r_max=20, z_max=6, cell=0.5)
    n = 4000
    z = rng.uniform(0, 6, n)
    m.add(rng.uniform(7.5, 8.5, n), z, rng.normal(-0.5 - 0.1 * z, 0.3))
    m.add(rng.uniform(15, 19, n), rng.uniform(0, 6, n), np.full(n, 0.3))  # far from the Sun: not in the profile
    prof = solar_profile(m, min_count=20)
    ok = np.isfinite(prof["median"])
    assert ok.sum() == 12 and prof["n"].sum() == n
    pulls = (prof["median"][ok] - (-0.5 - 0.1 * prof["abs_z"][ok])) / prof["median_err"][ok]
    assert np.all(np.abs(pulls) < 4)
    assert prof["median_err"][ok] == pytest.approx(1.2533 * 0.3 / np.sqrt(prof["n"][ok]), rel=0.2)
