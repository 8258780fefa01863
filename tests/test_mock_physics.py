"""The mock survey reproduces the published relations it is built on.

Expected values are computed here from the papers' numbers, independently of
the simulator's own code.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

# Schlafly & Finkbeiner 2011, table 6 (R_V = 3.1), SDSS u g r i z
SF11 = {"u": 4.239, "g": 3.303, "r": 2.285, "i": 1.698, "z": 1.263}


def test_disk_median_feh_meets_the_later_measurements(catalog: pd.DataFrame):
    """The default ("calibrated") disk law against the published numbers it was set to meet:
    near-solar stars in the plane (Casagrande et al. 2011; Haywood 2001), a vertical gradient of
    -0.243 +0.039/-0.053 dex/kpc over 0.3-1.6 kpc (Schlesinger et al. 2014) and thick-disk medians of
    -0.5 to -0.75 at 3-4.5 kpc (peaks of -0.68 and -0.7: Gu et al. 2019; Gilmore, Wyse & Jones 1995; -0.54 at
    1.26 kpc: Chen et al. 2011)."""
    disk = catalog[catalog["pop"].isin(["thin", "thick"])]
    absz, feh = disk["Z_kpc_true"].abs().to_numpy(), disk["feh_true"].to_numpy()
    near = (absz > 0.1) & (absz < 0.3)
    assert near.sum() > 500 and -0.3 < np.median(feh[near]) < 0.0
    mids, meds = [], []
    for lo in np.arange(0.3, 1.6, 0.1):
        sel = (absz >= lo) & (absz < lo + 0.1)
        mids.append(np.median(absz[sel]))
        meds.append(np.median(feh[sel]))
    slope = np.polyfit(mids, meds, 1)[0]
    assert -0.243 - 0.053 < slope < -0.243 + 0.039
    far = (absz > 3.0) & (absz < 4.5)
    assert far.sum() > 500 and -0.75 < np.median(feh[far]) < -0.5


def test_ivezic2008_disk_law_is_still_available():
    """Ivezic et al. 2008: mu(Z) = -0.78 + 0.35 exp(-|Z| / 1 kpc); the two-Gaussian mixture's median
    found by sampling 0.63 N(a, 0.2) + 0.37 N(a + 0.14, 0.2), a = mu - 0.067."""
    from photofeh.simulate.galaxy import DISK_FEH_LAWS, sample_feh

    rng = np.random.default_rng(0)
    mix = np.where(rng.random(400_000) < 0.37, 0.14, 0.0) + rng.normal(-0.067, 0.2, 400_000)
    offset = np.median(mix)
    for z in (0.3, 1.0, 2.0, 4.0):
        feh = sample_feh(np.random.default_rng(1), np.zeros(200_000, int), np.full(200_000, z),
                         DISK_FEH_LAWS["ivezic2008"], "ivezic2008")
        assert np.median(feh) == pytest.approx(-0.78 + 0.35 * np.exp(-z) + offset, abs=0.01)
    halo = sample_feh(np.random.default_rng(2), np.full(200_000, 2), np.zeros(200_000), halo_law="ivezic2008")
    assert halo.mean() == pytest.approx(-1.46, abs=0.005) and halo.std() == pytest.approx(0.30, abs=0.005)


def test_halo_has_an2015_peaks_and_the_pristine_metal_poor_tail(catalog: pd.DataFrame):
    """Halo [Fe/H]: 0.55 N(-1.40, 0.30) + 0.45 N(-1.90, 0.30) (An et al. 2015 peaks and outer share),
    and below -2.5 a tail with d log10 N / d[Fe/H] = 1.0 +- 0.1 (Youakim et al. 2020) down to -4.
    The law is checked on the sampler (a magnitude-limited catalogue sees metal-poor stars brighter);
    the catalogue must reach below -3.5."""
    from photofeh.simulate.galaxy import sample_feh

    n = 2_000_000
    halo = sample_feh(np.random.default_rng(4), np.full(n, 2), np.zeros(n), halo_law="an2015")
    rng = np.random.default_rng(3)
    core = np.where(rng.random(n) < 0.55, rng.normal(-1.40, 0.30, n), rng.normal(-1.90, 0.30, n))
    # above -2.5 the law is the core itself (up to normalisation): the same conditional median above -2
    assert np.median(halo[halo > -2.0]) == pytest.approx(np.median(core[core > -2.0]), abs=0.005)
    assert halo.min() >= -4.0 and (halo < -3.9).sum() > 100
    counts, edges = np.histogram(halo, bins=np.arange(-3.4, -2.49, 0.1))
    slope = np.polyfit(0.5 * (edges[1:] + edges[:-1]), np.log10(counts), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.05)
    seen = catalog.loc[catalog["pop"] == "halo", "feh_true"]
    assert seen.min() >= -4.0 and (seen < -3.5).sum() > 20


def test_halo_quantiles_are_the_interpolated_cdfs_inverse():
    """The guided inverse of the halo law's tabulated CDF gives np.interp's answers to the bit, at random
    probabilities and at the table's own nodes, its ends included."""
    from photofeh.simulate.galaxy import _HALO_CDF, _HALO_X, _halo_feh_quantile

    nodes = _HALO_CDF[_HALO_CDF < 1.0]  # draws lie in [0, 1)
    u = np.concatenate([np.random.default_rng(8).random(200_000), nodes, [0.0, np.nextafter(1.0, 0.0)]])
    assert np.array_equal(_halo_feh_quantile(u), np.interp(u, _HALO_CDF, _HALO_X))


def test_stars_below_the_grid_are_flagged(catalog: pd.DataFrame):
    beyond = catalog["feh_beyond_grid"]
    assert beyond.sum() > 0
    assert np.all((catalog.loc[beyond, "feh_true"] < -2.19) | (catalog.loc[beyond, "feh_true"] > 0.30))
    assert not np.any(catalog.loc[~beyond, "feh_true"] < -2.2)


def test_metal_poor_colours_continue_and_saturate(catalog: pd.DataFrame):
    """Below the models' grid, u-g at fixed g-r keeps falling with [Fe/H] but ever more slowly: the
    photometric metallicity signal of u-g fades below about -2 (Ivezic et al. 2008, sect. 3)."""
    ms = catalog[(catalog["phase"] == "main sequence") & ~catalog["is_binary_true"]]
    gr = (ms["mabs_sdss_g_true"] - ms["mabs_sdss_r_true"]).to_numpy()
    ug = (ms["mabs_sdss_u_true"] - ms["mabs_sdss_g_true"]).to_numpy()
    feh = ms["feh_true"].to_numpy()
    band = (gr > 0.30) & (gr < 0.40)
    med = [np.median(ug[band & (feh > lo) & (feh < lo + 0.4)]) for lo in (-1.4, -2.2, -3.0, -3.8)]
    assert np.all(np.isfinite(med)) and med[0] > med[1] > med[2] >= med[3] - 0.01
    assert med[1] - med[2] < med[0] - med[1]


def test_dwarf_u_minus_g_grows_with_feh_like_real_stars(catalog: pd.DataFrame):
    """At fixed g-r, d(u-g)/d[Fe/H] against two empirical references.

    Bond et al. 2010's polynomial, inverted: with x = u-g = 1.0 and y = g-r = 0.35, d[Fe/H]/dx = B + Dy + 2Ex +
    2Gxy + Hy^2 + 3Ix^2 = 4.24 dex/mag, i.e. 0.236 mag per dex (0.250 fitted over -2 < [Fe/H] < 0). The mock
    gives 0.154 mag/dex over -2..0, 0.65 of it: its colours follow Yuan et al. 2015's locus plus the residual
    of real SEGUE DR17 stars (within 0.03 mag in every cell, test_mock_segue), and a polynomial that regresses
    [Fe/H] on colours, inverted, overstates the locus' slope. So the bound is half of Bond's slope to all of it.
    Yuan et al. 2015's abstract: 1 dex lower [Fe/H] makes u-g 0.20 mag bluer; over -1 < [Fe/H] < 0 the mock
    gives 0.205. A doubled or halved metallicity term breaks both.
    """
    B, D, E, G, H, I = 14.09, -5.51, -5.90, 9.14, -20.61, 0.0
    x, y = 1.0, 0.35
    expected = 1.0 / (B + D * y + 2 * E * x + 2 * G * x * y + H * y**2 + 3 * I * x**2)
    ms = catalog[(catalog["phase"] == "main sequence") & ~catalog["is_binary_true"] & ~catalog["feh_beyond_grid"]]
    gr = ms["mabs_sdss_g_true"] - ms["mabs_sdss_r_true"]
    ug_all = ms["mabs_sdss_u_true"] - ms["mabs_sdss_g_true"]
    sel = (gr > 0.33) & (gr < 0.37) & (ms["feh_true"] > -2.0) & (ms["feh_true"] < 0.0)
    slope = np.polyfit(ms.loc[sel, "feh_true"], ug_all[sel], 1)[0]
    assert 0.5 * expected < slope < expected, slope
    near_solar = sel & (ms["feh_true"] > -1.0)
    assert np.polyfit(ms.loc[near_solar, "feh_true"], ug_all[near_solar], 1)[0] == pytest.approx(0.20, abs=0.04)


def test_giants_and_dwarfs_of_one_colour_differ(catalog: pd.DataFrame):
    gr = catalog["mabs_sdss_g_true"] - catalog["mabs_sdss_r_true"]
    band = catalog[(gr > 0.55) & (gr < 0.75)]
    giants = band[band["phase"] == "red giant"]
    dwarfs = band[band["phase"] == "main sequence"]
    assert len(giants) > 100 and len(dwarfs) > 1000
    assert giants["logg_true"].median() < 3.0 and dwarfs["logg_true"].median() > 4.4
    assert dwarfs["mabs_sdss_r_true"].median() - giants["mabs_sdss_r_true"].median() > 3.0
    assert (band["is_giant_true"] == (band["logg_true"] < 3.5)).all()


def test_sun_like_star_matches_the_sun(mock_survey):
    """A 1 Msun, 4.57 Gyr, [Fe/H] = 0 model: Teff = 5772 K, log g = 4.44 (IAU 2015 B3)."""
    grid = mock_survey.grid
    where = grid.locate(np.array([0.0]), np.array([np.log10(4.57e9)]), np.array([1.0]))
    assert 10 ** grid.evaluate("logte", where)[0] == pytest.approx(5772, abs=150)
    assert grid.evaluate("logg", where)[0] == pytest.approx(4.44, abs=0.06)
    assert grid.evaluate("sdss_g", where)[0] - grid.evaluate("sdss_r", where)[0] == pytest.approx(0.44, abs=0.06)


def test_interpolation_reproduces_a_grid_isochrone_and_is_continuous(mock_survey):
    """On a grid node, stars follow the raw PARSEC rows; between nodes values vary smoothly."""
    from photofeh.simulate.isochrones import load_grid

    raw = load_grid()
    iso = raw[(np.abs(raw["MH"] + 0.95) < 1e-3) & (np.abs(raw["LOGAGE"] - 9.96) < 1e-3) & (raw["LABEL"] == 1)]
    masses = np.linspace(0.3, 0.85, 12)
    expected = np.interp(masses, iso["MINI"], iso["LOGTE"])
    grid = mock_survey.grid
    where = grid.locate(np.full(12, -0.95), np.full(12, 9.96), masses)
    assert np.allclose(grid.evaluate("logte", where), expected, atol=0.003)
    # continuity in metallicity: a fine scan changes Teff in small steps only
    feh = np.linspace(-2.0, 0.2, 221)
    w = grid.locate(feh, np.full(221, 10.0), np.full(221, 0.75))
    teff = 10 ** grid.evaluate("logte", w)
    assert np.max(np.abs(np.diff(teff))) < 25.0
    assert np.unique(np.round(teff, 3)).size == 221


def test_photometric_errors_grow_toward_the_depth(catalog: pd.DataFrame):
    """SDSS r: sigma from Ivezic et al. 2019 eq. 5 with m5 = 22.8, gamma = 0.039, floor 0.01."""
    r, err = catalog["sdss_r"], catalog["sdss_r_err"]
    medians = []
    for lo in (16.0, 18.0, 20.0, 21.0, 22.0):
        sel = (r > lo) & (r < lo + 0.3)
        medians.append(err[sel].median())
        x = 10 ** (0.4 * (lo + 0.15 - 22.8))
        expected = np.sqrt(0.01**2 + 0.001 * x + 0.039 * x**2)
        assert err[sel].median() == pytest.approx(expected, rel=0.2)
    assert np.all(np.diff(medians) > 0)
    # S/N >= 5 detections only
    assert err.max() <= 0.2172 + 1e-4


def test_sdss_errors_scatter_at_fixed_magnitude_as_real_ones_do(catalog: pd.DataFrame):
    """Each sky patch has its own depth (observe.DEPTH_SCATTER_MAG), so errors scatter about their relation as
    real catalogues' do: log10(error / relation) over stars with errors 0.03-0.15 has a robust spread near the real
    SSPP stars' (benchmarks/bench_error_scatter.py: 0.098 dex in u, 0.029 in z), shared by a patch's stars (the
    spread of the patches' medians in r is most of it), where PS1, without depth variation, scatters < 0.01."""
    from photofeh.bands import BANDS, lsst_error_model
    from photofeh.model.evaluate import robust_sigma
    from photofeh.simulate.observe import sky_patch

    patch = sky_patch(catalog["l"].to_numpy(), catalog["b"].to_numpy())

    def spreads(band):
        m, e = catalog[band].to_numpy(), catalog[f"{band}_err"].to_numpy()
        ok = np.isfinite(m) & (e > 0.03) & (e < 0.15)
        resid = np.log10(e[ok] / lsst_error_model(m[ok], BANDS[band]))
        _, inverse, counts = np.unique(patch[ok], return_inverse=True, return_counts=True)
        medians = [np.median(resid[inverse == k]) for k in np.flatnonzero(counts >= 10)]
        return robust_sigma(resid), np.std(medians) if len(medians) > 20 else np.nan

    assert 0.07 < spreads("sdss_u")[0] < 0.12
    assert 0.02 < spreads("sdss_z")[0] < 0.04
    total, between_patches = spreads("sdss_r")
    assert 0.055 < total < 0.09 and between_patches > 0.8 * total
    assert spreads("ps1_r")[0] < 0.01


def test_depth_scatter_from_seeing_and_sky_matches_a_monte_carlo():
    """The seeing-and-sky depth RMS (0.20 mag for SDSS's DR1 quartiles) against drawing fields: log-normal PSF
    widths and normal sky brightness with those quartiles, m5 = -2.5 log10(FWHM) + 0.5 mu_sky + const."""
    from scipy.stats import norm

    from photofeh.simulate.observe import DEPTH_SCATTER_MAG, background_limited_depth_scatter

    rng = np.random.default_rng(1)
    q = norm.ppf(0.75)
    fwhm = 1.43 * np.exp(rng.standard_normal(400_000) * np.log(1.58 / 1.30) / (2 * q))
    sky = 20.86 + rng.standard_normal(400_000) * 0.33 / (2 * q)
    m5 = -2.5 * np.log10(fwhm) + 0.5 * sky
    assert background_limited_depth_scatter((1.30, 1.43, 1.58), (21.03, 20.86, 20.70)) == pytest.approx(
        np.std(m5), rel=0.02)
    assert DEPTH_SCATTER_MAG["sdss_r"] == pytest.approx(0.199, abs=0.002)


def test_gaia_errors_follow_the_mission_curve(catalog: pd.DataFrame):
    """sigma_G ~ 1 mmag at G = 17 and ~5 mmag at G = 20 (Riello et al. 2021, fig. 15)."""
    g, e = catalog["gaia_g"], catalog["gaia_g_err"]
    assert e[(g > 16.9) & (g < 17.1)].median() == pytest.approx(0.0008, rel=0.5)
    assert e[(g > 19.9) & (g < 20.1)].median() == pytest.approx(0.005, rel=0.5)
    assert g.max() <= 21.0
    assert np.isfinite(catalog["parallax"]).sum() == np.isfinite(g).sum()


def test_dereddened_colours_match_intrinsic_ones(catalog: pd.DataFrame):
    """(g-r) - (R_g - R_r) E(B-V) equals the intrinsic colour, with SF11 coefficients."""
    bright = catalog[(catalog["sdss_r"] < 19.0) & catalog["sdss_g"].notna()]
    intrinsic = bright["mabs_sdss_g_true"] - bright["mabs_sdss_r_true"]
    dered_true = bright["sdss_g"] - bright["sdss_r"] - (SF11["g"] - SF11["r"]) * bright["ebv_true"]
    assert np.median(dered_true - intrinsic) == pytest.approx(0.0, abs=0.004)
    # with the map value a user has, the residual scatter reflects the 10% E(B-V) error
    dered_map = bright["sdss_g"] - bright["sdss_r"] - (SF11["g"] - SF11["r"]) * bright["ebv"]
    far = bright["dist_kpc_true"] * np.abs(np.sin(np.radians(bright["b"]))) > 1.0
    assert np.median((dered_map - intrinsic)[far]) == pytest.approx(0.0, abs=0.006)
    assert np.std(dered_true - intrinsic) < np.std(bright["sdss_g"] - bright["sdss_r"] - intrinsic)


def test_disk_counts_fall_with_height_as_juric2008(catalog: pd.DataFrame):
    """Counts of disk stars in a high-latitude cone versus height Z.

    Expected: Juric et al. 2008 table 10, thin (H = 300 pc, L = 2600 pc) plus
    thick disk (f = 0.12, H = 900 pc, L = 3600 pc), R0 = 8 kpc, Z_sun = 25 pc,
    integrated over the same cone by Monte Carlo. Stars with 4.5 < M_r < 7
    are all inside 14 < r < 22.5 for 0.9 < Z < 3.6 kpc and b > 45 deg.
    """
    sel = (catalog["pop"].isin(["thin", "thick"]) & (catalog["b"] > 45)
           & catalog["mabs_sdss_r_true"].between(4.5, 7.0) & catalog["Z_kpc_true"].between(0.9, 3.6))
    edges = np.linspace(0.9, 3.6, 10)
    got, _ = np.histogram(catalog.loc[sel, "Z_kpc_true"], edges)
    assert got.sum() > 1000
    rng = np.random.default_rng(3)
    n = 3_000_000
    l = rng.uniform(0, 2 * np.pi, n)
    sinb = rng.uniform(np.sin(np.radians(45)), 1.0, n)
    d = 5.2 * rng.random(n) ** (1 / 3)  # uniform in volume
    cosb = np.sqrt(1 - sinb**2)
    x, y, z = 8.0 - d * cosb * np.cos(l), d * cosb * np.sin(l), d * sinb + 0.025
    R = np.hypot(x, y)
    rho = (np.exp((8.0 - R) / 2.6 - (np.abs(z) - 0.025) / 0.3)
           + 0.12 * np.exp((8.0 - R) / 3.6 - (np.abs(z) - 0.025) / 0.9))
    expected, _ = np.histogram(z, edges, weights=rho)
    expected = expected / expected.sum() * got.sum()
    # counts fall by ~3 over the range despite the Z^2 volume growth; allow 15% + 3 sigma Poisson
    assert np.all(np.abs(got - expected) < 0.15 * expected + 3 * np.sqrt(expected)), (got, expected.round())
    assert got[0] > 2 * got[-1]


def test_population_mix_at_the_faint_end_is_halo_dominated(catalog: pd.DataFrame):
    """Juric et al. 2008, fig. 21: at high latitude, r > 20 counts are mostly halo, r < 17 mostly disk."""
    hi = catalog[catalog["b"] > 50]
    faint = hi[hi["sdss_r"] > 21.0]
    bright = hi[hi["sdss_r"] < 17.0]
    assert (faint["pop"] == "halo").mean() > 0.5
    assert (bright["pop"] == "halo").mean() < 0.25


def test_unresolved_binaries_are_brighter_than_their_primary(catalog: pd.DataFrame, mock_survey):
    """A binary's magnitudes are those of its two stars' summed fluxes, -2.5 log10(10^-0.4 m1 + 10^-0.4 m2),
    computed here from the isochrone grid: the primary at the catalogue's [Fe/H], age and mass (its initial
    mass recovered from the present one), the secondary at q times that. Single stars are their primary.
    So a binary is brighter than its primary by 0 to 2.5 log10 2 = 0.753 mag (an equal twin), and near-twins
    (q > 0.95) by most of that. Main-sequence stars only (there present and initial mass agree to 1e-6)."""
    bins = catalog[catalog["is_binary_true"]]
    assert 0.2 < catalog["is_binary_true"].mean() < 0.5
    assert bins["mass_ratio_true"].between(0.1, 1.0).all()
    assert catalog.loc[~catalog["is_binary_true"], "mass_ratio_true"].isna().all()

    grid = mock_survey.grid
    ms = catalog[catalog["phase"] == "main sequence"].iloc[::3]  # ~60,000 stars, a third of them binaries
    feh = np.clip(ms["feh_true"].to_numpy(), *grid.mh_range)
    logage = np.log10(ms["age_gyr_true"].to_numpy() * 1e9)
    mass = ms["mass_true"].to_numpy()
    mini = mass.copy()
    for _ in range(6):  # initial mass from the present one: d(mass)/d(mini) = 1 on the main sequence
        mini += mass - grid.evaluate("mass", grid.locate(feh, logage, mini))
    primary = grid.locate(feh, logage, mini)
    assert np.abs(grid.evaluate("logg", primary) - ms["logg_true"]).max() < 1e-3  # the same star found
    binary = ms["is_binary_true"].to_numpy()
    q = np.where(binary, ms["mass_ratio_true"].to_numpy(), 1.0)
    secondary = grid.locate(feh, logage, q * mini)
    idx, w = grid.corners(feh, logage)
    on_grid = q * mini >= grid.blend("mini", idx, w, np.zeros(len(ms), int))  # secondaries the grid holds
    for band in ("sdss_u", "sdss_g", "sdss_r", "gaia_g", "ps1_y"):
        m1, m2 = grid.evaluate(band, primary), grid.evaluate(band, secondary)
        system = np.where(binary, -2.5 * np.log10(10 ** (-0.4 * m1) + 10 ** (-0.4 * m2)), m1)
        reported = ms[f"mabs_{band}_true"].to_numpy()
        assert np.abs(reported - system).max() < 1e-3, band
        brighter = (m1 - reported)[binary & on_grid]
        assert brighter.min() > -1e-3 and brighter.max() < 2.5 * np.log10(2) + 1e-3, band
        twins = (m1 - reported)[binary & on_grid & (q > 0.95)]
        assert len(twins) > 100 and 0.55 < np.median(twins) < 2.5 * np.log10(2), band
    # A known limit (docs/mock_survey.md): a secondary below the grid's lowest mass (0.09-0.11 Msun) takes the
    # lowest model's magnitudes, more light than a star at the hydrogen-burning limit or a brown dwarf gives.
    # 9.0% of the binaries here; it brightens most of them by < 0.01 mag in r (median 0.003), but 4.0% of them by
    # more than 0.1 mag, and 10 (metal-poor ones, [Fe/H] < -2.4) beyond an equal twin's 0.753 mag
    below = binary & ~on_grid
    extra = (grid.evaluate("sdss_r", primary) - ms["mabs_sdss_r_true"].to_numpy())[below]
    assert 0.06 < below.sum() / binary.sum() < 0.12
    assert np.median(extra) < 0.01 and np.mean(extra > 0.1) < 0.08


def test_ps1_agrees_with_tonry2012_in_its_validity_range(catalog: pd.DataFrame):
    """g_PS1 - g_SDSS and r_PS1 - r_SDSS against Tonry et al. 2012 (table 6), 0.4 < (g-i)_P1 < 2.7.

    The synthetic (C3K) differences and Tonry's empirical fit differ by ~0.03
    mag in zero point (SDSS is not exactly AB); we ask for 0.05 mag.
    """
    tonry = {"g": (-0.01808, -0.13595, 0.01941, -0.00183), "r": (-0.01836, -0.03577, 0.02612, -0.00558)}
    x = catalog["mabs_ps1_g_true"] - catalog["mabs_ps1_i_true"]
    sel = (x > 0.5) & (x < 2.5)
    for f, coef in tonry.items():
        diff = (catalog[f"mabs_ps1_{f}_true"] - catalog[f"mabs_sdss_{f}_true"])[sel]
        expected = np.polynomial.polynomial.polyval(x[sel], coef)
        assert np.median(diff - expected) == pytest.approx(0.0, abs=0.05), f


def test_footprints_make_bands_go_missing(catalog: pd.DataFrame):
    south = catalog["b"] < 0
    assert catalog.loc[south, "sdss_r"].isna().all()  # SDSS: northern Galactic cap
    assert catalog.loc[catalog["dec"] < -30.5, "ps1_r"].isna().all()
    assert catalog.loc[catalog["dec"] < 29.5, "cfis_u"].isna().all()
    inside = (catalog["b"] > 35) & (catalog["dec"] > 0)
    assert catalog.loc[inside & (catalog["sdss_r"] < 21), "sdss_g"].notna().mean() > 0.99


def test_guided_searches_find_what_a_full_search_finds(mock_survey):
    """The guide tables that speed up a block (issue 14) change no answer: each search against a brute-force
    one over the whole array (ties, plateaus and off-table values included)."""
    from photofeh.simulate.guides import guided_search

    rng = np.random.default_rng(3)
    # a CDF with plateaus and ties; brackets from a guide table of 8 bins
    cdf = np.sort(np.round(rng.random(200), 2))
    guide = np.searchsorted(cdf, np.arange(9) / 8, side="right")
    u = rng.random(5000)
    g = (u * 8).astype(np.int64)
    left = np.searchsorted(cdf, np.arange(9) / 8, side="left")
    for scan in (0, 1, 2, 5, 40):  # the first entries compared at once, then the binary search
        assert np.array_equal(guided_search(cdf, guide[g], guide[g + 1], u, strict=True, scan=scan),
                              np.searchsorted(cdf, u, side="right"))
        assert np.array_equal(guided_search(cdf, left[g], np.minimum(left[g + 1], cdf.size - 1), u, strict=False,
                                            scan=scan),
                              np.minimum(np.searchsorted(cdf, u, side="left"), cdf.size - 1))

    grid = mock_survey.grid
    n = 3000
    feh, logage = rng.uniform(-2.5, 0.4, n), rng.uniform(9.0, 10.12, n)
    idx, w = grid.corners(feh, logage)
    # the lowest visible mass: with and without the brightness guide, and by brute force
    rm = mock_survey._sel_running_min
    limit = rng.uniform(-6.0, 20.0, n)
    limit[:20] = [-50.0, 50.0] * 10  # off the table
    guided = grid.first_eep_brighter(rm, idx, limit, mock_survey._sel_guide)
    assert np.array_equal(guided, grid.first_eep_brighter(rm, idx, limit))
    flat = rm.reshape(-1, rm.shape[-1])
    brute = np.min([(flat[iso] >= limit[:, None]).sum(axis=1) for iso in idx], axis=0)
    assert np.array_equal(guided, brute)
    # placing stars on the blended isochrone: the EEP interval against a scan of every EEP
    mini = rng.uniform(0.1, 3.0, n)
    _, _, k, _, alive = grid.locate(feh, logage, mini, (idx, w))
    last = grid.last_valid(idx)
    eeps = np.arange(grid.values["mini"].shape[-1])
    blended = sum(wk[:, None] * grid.values["mini"].reshape(-1, eeps.size)[iso] for iso, wk in zip(idx, w,
                                                                                                  strict=True))
    m_lo, m_hi = blended[:, 0], blended[np.arange(n), np.maximum(last, 0)]
    m = np.clip(mini, m_lo, np.where(alive, m_hi, m_lo))
    with np.errstate(invalid="ignore"):
        at_or_below = (blended <= m[:, None]) & (eeps[None, :] <= np.maximum(last, 0)[:, None])
    scan = np.clip(np.where(at_or_below, eeps, 0).max(axis=1), 0, np.maximum(last - 1, 0))
    assert np.array_equal(k, scan)
    assert alive.sum() > n // 3  # the draw reaches main-sequence and evolved stars


def test_gaia_errors_are_pygaias():
    """The tabulated spline gives PyGaia's magnitude_uncertainty (DR3, mmag -> mag) to 1e-6, between the
    table's nodes and beyond the valid 4-21 mag (clipped, as PyGaia requires)."""
    from pygaia.errors.photometric import magnitude_uncertainty

    from photofeh.bands import SIMULATED_BANDS
    from photofeh.simulate.observe import _gaia_error

    mag = np.concatenate([np.random.default_rng(3).uniform(3.0, 22.0, 2_000), [4.0, 21.0, 17.0005]])
    for name in ("gaia_g", "gaia_bp", "gaia_rp"):
        band = SIMULATED_BANDS[name]
        expected = magnitude_uncertainty(band.filt, np.clip(mag, 4.0, 21.0), release="dr3") / 1000.0
        np.testing.assert_allclose(_gaia_error(band, mag), expected, rtol=1e-6, atol=0)


def test_galactic_to_icrs_is_astropys_transformation():
    """The fixed rotation gives astropy's (ra, dec) to 1e-8 arcsec over the sky, poles and the Galactic centre
    included, and the IAU-defined points: the Galactic centre at (266.405, -28.936) and the north Galactic pole
    at (192.859, 27.128) (Liu, Zhu & Zhang 2011, A&A 526, A16, eqs. 4-5, ICRS)."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    from photofeh.simulate.galaxy import galactic_to_icrs

    rng = np.random.default_rng(4)
    l = np.r_[rng.uniform(0.0, 360.0, 50_000), 0.0, 0.0, 0.0, 180.0]
    b = np.r_[np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, 50_000))), 0.0, 90.0, -90.0, 0.0]
    ra, dec = galactic_to_icrs(l, b)
    ref = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic").icrs
    sep = SkyCoord(ra=ra * u.deg, dec=dec * u.deg).separation(ref).arcsec
    assert sep.max() < 1e-8
    assert ((ra >= 0.0) & (ra < 360.0)).all()
    assert (ra[-4], dec[-4]) == pytest.approx((266.405, -28.936), abs=1e-3)
    assert (ra[-3], dec[-3]) == pytest.approx((192.859, 27.128), abs=1e-3)
