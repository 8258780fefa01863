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
    """The default mock's laws (docs/mock_calibration.md): disk mu = -0.56 + 0.53 exp(-|Z| / 0.9 kpc) in the
    same two-Gaussian mixture, halo 0.55 N(-1.40, 0.30) + 0.45 N(-1.90, 0.30) with a tail of slope 1 dex^-1
    below -2.5, drawn here directly (the tail by inverse CDF of 10^(f + 2.5) on [-4, -2.5])."""
    from scipy.stats import norm

    rng = np.random.default_rng(5)
    n = 2_000_000
    mu = -0.56 + 0.53 * np.exp(-1.0 / 0.9)
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


# ---------------------------------------------------------------- figures against the tables they came from
def _clean(description: dict) -> None:
    """No text over another, none cut off at the figure's edge, no legend over the data's lines and markers."""
    assert description["overlapping_texts"] == [], description["overlapping_texts"]
    assert description["texts_outside"] == [], description["texts_outside"]
    assert all(p["legend_covers_points"] == 0 for p in description["panels"]), description["panels"]


def test_span_range_shows_a_sparse_tail_and_pins_far_outliers():
    from photofeh.report.style import draw_pinned, pin, span_range

    rng = np.random.default_rng(4)
    disk = rng.normal(-0.4, 0.25, 5000)
    tail = np.array([-4.0, -3.6, -3.1, -2.7])  # 4 stars in 5004: far below the 0.5% percentile
    lo, hi = span_range(np.concatenate([disk, tail]))
    assert lo < -4.0 and hi > disk.max()  # every star inside
    lo, hi = span_range(np.concatenate([disk, tail, [-40.0]]))  # a wild value: pinned, the axis stops at -4
    assert -4.3 < lo < -4.0
    clipped, below, above = pin([-40.0, -1.0, 9.0, np.nan], lo, hi)
    assert below.tolist() == [True, False, False, False] and above.tolist() == [False, False, True, False]
    assert clipped[0] == lo and clipped[2] == hi and np.isnan(clipped[3])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    assert draw_pinned(ax, [-40.0, 0.0, 0.0], [0.0, 0.0, 99.0], (lo, hi), (-1, 1)) == 2
    plt.close(fig)


def test_binned_metrics_put_every_star_in_a_bin():
    """Stars brighter than the grid (G = 9..14 under a 14..22 grid), a metal-poor tail to -4 under a -3..0.5
    grid and a single far star: every star is in exactly one bin, each bin holds >= 20, the end bins reach
    the extreme stars."""
    from photofeh.model.evaluate import MIN_BIN_STARS, binned_metrics

    rng = np.random.default_rng(5)
    g = np.concatenate([rng.uniform(9, 18.3, 3000), [31.0]])
    feh = np.concatenate([rng.normal(-0.4, 0.3, 2960), rng.uniform(-4.2, -1.5, 41)])
    ref = rng.normal(0, 1, g.size)
    pred = ref + rng.normal(0, 0.1, g.size)
    pred[7] = np.nan  # no prediction: in no bin
    for by, edges in ((g, np.arange(14, 22.5, 1.0)), (feh, np.arange(-3.0, 0.75, 0.5))):
        bins = binned_metrics(pred, ref, by, edges)
        assert sum(b["n"] for b in bins) == g.size - 1
        assert all(b["n"] >= MIN_BIN_STARS for b in bins)
        assert bins[0]["lo"] <= np.delete(by, 7).min() and bins[-1]["hi"] >= np.delete(by, 7).max()
        assert all(a["hi"] == b["lo"] for a, b in zip(bins[:-1], bins[1:], strict=False))
        assert all(b["lo"] <= b["x_median"] <= b["hi"] for b in bins)
    bright = binned_metrics(pred, ref, g, np.arange(14, 22.5, 1.0))
    assert sum(b["n"] for b in bright if b["hi"] <= 14) == np.sum(np.isfinite(pred) & (g < 14))  # G < 14 kept
    assert binned_metrics(pred[:10], ref[:10], g[:10], np.arange(14, 22.5, 1.0)) == []  # too few for one bin


def _evaluation_table(n: int = 3000, seed: int = 0):
    """Test stars with a metal-poor tail to -4 that the 'network' reads too rich, stars from G = 9 to 18.3,
    one wild prediction (-12) and one star without a prediction; and the report evaluate would write."""
    from photofeh.model.evaluate import binned_metrics, class_metrics, regression_metrics

    rng = np.random.default_rng(seed)
    feh = np.concatenate([rng.normal(-0.4, 0.3, n - 60), rng.uniform(-4.0, -1.5, 60)])
    feh[0] = -4.0
    g = rng.uniform(9, 18.3, n)
    logg = rng.uniform(1, 5, n)
    pred_feh = feh + rng.normal(0, 0.15, n)
    poor = feh < -2
    pred_feh[poor] = -2.0 + rng.normal(0, 0.2, poor.sum())  # the information-limited tail
    pred_feh[5] = -12.0
    pred_feh[6] = np.nan
    cols = {"feh_spec": feh, "feh_spec_err": np.full(n, 0.05), "logg_spec": logg, "gaia_g": g}
    pred = {"feh": pred_feh, "feh_err": np.full(n, 0.15), "logg": logg + rng.normal(0, 0.2, n),
            "logg_err": np.full(n, 0.2), "usable": np.isfinite(pred_feh), "is_giant": logg < 3.3}
    labels, label_cols = ["feh", "logg"], {"feh": "feh_spec", "logg": "logg_spec"}
    bins = {"gaia_g": (g, np.arange(14, 22.5, 1.0)), "feh_label": (feh, np.arange(-3.0, 0.75, 0.5))}
    report = {"labels": {}, "class": {}}
    for lab in labels:
        ref = cols[label_cols[lab]]
        report["labels"][lab] = {"vs_labels": regression_metrics(pred[lab], ref, pred[f"{lab}_err"]),
                                 "binned": {k: binned_metrics(pred[lab], ref, by, e) for k, (by, e) in bins.items()}}
    usable = pred["usable"]
    report["class"]["vs_labels"] = class_metrics(pred["is_giant"][usable], (logg < 3.5)[usable])
    return pred, cols, labels, label_cols, report


def test_evaluation_figures_show_every_test_star(tmp_path):
    from photofeh.report.eval_figures import draw_evaluation_figures
    from photofeh.report.style import record_figures

    pred, cols, labels, label_cols, report = _evaluation_table()
    with record_figures() as drawn:
        draw_evaluation_figures(pred, cols, labels, label_cols, report, tmp_path)
    assert set(drawn) == {"residuals", "residual_trends_feh", "residual_trends_logg", "calibration", "confusion"}
    for d in drawn.values():
        _clean(d)
    feh, p = cols["feh_spec"], pred["feh"]
    ok = np.isfinite(feh) & np.isfinite(p)
    n = int(ok.sum())
    scatter, hist = drawn["residuals"]["panels"][0]["shown"], drawn["residuals"]["panels"][1]["shown"]
    panel = drawn["residuals"]["panels"][0]
    assert scatter["stars"] == n == report["labels"]["feh"]["vs_labels"]["n"]
    assert scatter["drawn"] + scatter["pinned"] == n and scatter["pinned"] == 1  # the -12 on the edge, not gone
    assert panel["xlim"][0] < -4.0 and panel["ylim"][0] < -4.0  # the tail to -4 is on the axes
    assert any(t.startswith(f"n = {n:,d}") for t in panel["texts"])
    assert hist["stars"] == n and hist["pinned"] >= 1
    for lab in labels:
        trends = drawn[f"residual_trends_{lab}"]
        ref, pl = cols[label_cols[lab]], pred[lab]
        n_lab = int(np.sum(np.isfinite(ref) & np.isfinite(pl)))
        assert f"{n_lab:,d} test stars" in trends["suptitle"]
        for panel in trends["panels"][:2]:  # the top row carries what each column shows
            by = cols["gaia_g"] if panel["shown"]["binned_by"] == "gaia_g" else cols["feh_spec"]
            assert panel["shown"]["stars"]["network"] == n_lab
            assert panel["xlim"][0] <= by[np.isfinite(pl)].min() and panel["xlim"][1] >= by[np.isfinite(pl)].max()
    g_label = drawn["residual_trends_feh"]["panels"][2]["xlabel"]
    assert "observed" in g_label
    pulls = drawn["calibration"]["panels"][0]["shown"]
    assert pulls["stars"] == n and pulls["pinned"] >= 1
    cal_texts = [t for q in drawn["calibration"]["panels"] for t in q["texts"]]
    assert any("1$\\sigma$" in t and "(68.3%)" in t for t in cal_texts)
    confusion = drawn["confusion"]["panels"][0]["shown"]
    assert confusion["stars"] == int(pred["usable"].sum())


def test_coverage_figure_says_observed_or_dereddened_and_counts_every_star(tmp_path):
    from photofeh.report.run_figures import coverage_figure
    from photofeh.report.style import record_figures

    rng = np.random.default_rng(8)
    features = ["sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_g"]

    def table(n, shift=0.0):
        return {"sdss_u-sdss_g": rng.normal(1.2 + shift, 0.3, n), "sdss_g-sdss_r": rng.normal(0.4, 0.1, n),
                "sdss_g": rng.uniform(14, 21, n)}

    labelled, predicted = table(2000), table(5000, 0.1)
    predicted["sdss_u-sdss_g"][:3] = [np.nan, 9.0, -7.0]  # one missing, two far outliers (pinned)
    with record_figures() as drawn:
        coverage_figure(labelled, predicted, features, tmp_path / "observed", n_predicted_total=80_000,
                        deredden=False)
        coverage_figure(labelled, predicted, features, tmp_path / "dereddened")
    obs, dered = drawn["observed"], drawn["dereddened"]
    for d in (obs, dered):
        _clean(d)
        assert "5,000 stars to predict" in d["suptitle"] and "2,000 labelled" in d["suptitle"]
    assert "of 80,000" in obs["suptitle"]
    labels = [q[k] for q in obs["panels"] for k in ("xlabel", "ylabel")]
    assert all("observed" in t and "dereddened" not in t for t in labels), labels
    assert all("dereddened" in q[k] for q in dered["panels"] for k in ("xlabel", "ylabel"))
    first = obs["panels"][0]["shown"]  # u-g against g-r
    assert first["predicted"] == 4999 and first["drawn"] + first["pinned"] == 4999 and first["pinned"] == 2


def test_plot_mdf_spans_the_metal_poor_tail_and_counts_its_stars(tmp_path):
    from photofeh.galaxy.mdf import BinnedEstimates, mdf_summary
    from photofeh.report.mdf_figures import plot_mdf
    from photofeh.report.style import record_figures

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-0.5, 0.3, 2960), rng.uniform(-4.0, -2.0, 40)])
    x[0] = -4.0
    e = np.full(x.size, 0.15)
    summary = mdf_summary(x, e, n_boot=5)
    binned = BinnedEstimates()
    binned.add(x, e)
    binned.add(np.array([-7.0]), np.array([0.1]))  # outside the histogram: counted as not drawn
    with record_figures() as drawn:
        plot_mdf(summary, x, tmp_path / "raw", title=f"{x.size:,d} stars")
        plot_mdf(summary, binned, tmp_path / "binned", title=f"{x.size + 1:,d} stars")
    for stem, stars, dropped in (("raw", x.size, 0), ("binned", x.size, 1)):
        d = drawn[stem]
        _clean(d)
        linear, log = d["panels"]
        assert linear["title"] == f"{stars + dropped:,d} stars"  # the title's count is every star given
        assert linear["shown"]["stars"] + linear["shown"]["dropped"] == stars + dropped
        assert linear["shown"]["histogram_stars"] == stars  # each star in a bin of the histogram drawn
        assert linear["xlim"][0] <= -4.0 and linear["xlim"][1] >= x.max()
        assert log["yscale"] == "log" and log["ylim"][0] <= 0.5 / (stars * 0.1)  # one star per bin shows
        assert any(f"estimates ({stars:,d} stars" in t for t in d["legend"])


def test_map_figures_show_every_mapped_star(tmp_path):
    from photofeh.galaxy.maps import MapProducts
    from photofeh.galaxy.mdf import BinnedEstimates
    from photofeh.report.map_figures import draw_map_figures
    from photofeh.report.style import record_figures

    rng = np.random.default_rng(1)
    n = 30_000
    p = MapProducts.empty(r_max=20, z_max=10, cell=1.0, nside=8)
    R, z = rng.uniform(4, 14, n), np.minimum(rng.exponential(1.5, n), 9.9)
    halo = rng.random(n) < np.clip(z / 8, 0.05, 0.9)
    feh = np.where(halo, rng.normal(-1.6, 0.4, n), rng.normal(-0.4 - 0.1 * z, 0.2, n))
    feh[:30] = rng.uniform(-4.0, -3.0, 30)
    feh[:2] = -4.0
    err = rng.uniform(0.1, 0.3, n)
    in_map = p.rz.add(R, z, feh)
    p.add_sky(rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(0.2, 1, n))), feh)
    edges = np.array([0.0, 1, 2, 4, 10])
    hists = [BinnedEstimates() for _ in range(edges.size - 1)]
    k = np.digitize(z, edges) - 1
    for j, h in enumerate(hists):
        h.add(feh[k == j], err[k == j])
    p.slices = (edges, hists)
    summaries = [{"abs_z_kpc": [float(a), float(b)], "stars": h.n} for a, b, h in zip(edges[:-1], edges[1:], hists,
                                                                                        strict=True)]
    with record_figures() as drawn:
        draw_map_figures(p, tmp_path, min_count=20, slice_summaries=summaries)
    assert set(drawn) == {"feh_map", "feh_counts", "feh_scatter", "feh_profile", "feh_mdf_slices", "feh_sky"}
    for d in drawn.values():
        _clean(d)
    counts = p.rz.n
    fmap = drawn["feh_map"]["panels"][0]
    assert fmap["title"].startswith(f"{in_map:,d} stars, {int(counts[counts >= 20].sum()):,d} of them")
    assert fmap["shown"]["stars"] == int(counts[counts >= 20].sum())
    assert drawn["feh_counts"]["panels"][0]["shown"]["stars"] == in_map
    for q in ("feh_map", "feh_scatter"):
        s = drawn[q]["panels"][0]["shown"]
        assert s["extend"] in ("neither", "min", "max", "both")
    slices = drawn["feh_mdf_slices"]["panels"]
    assert [q["shown"]["stars"] for q in slices] == [h.n for h in hists]
    assert sum(h.n for h in hists) == n
    for q, h in zip(slices, hists, strict=True):
        assert q["shown"]["histogram_stars"] == h.n
        assert q["title"].endswith(f"{h.n:,d} stars")
        assert q["xlim"][0] <= q["shown"]["estimate_range"][0] and q["xlim"][1] >= q["shown"]["estimate_range"][1]
        assert q["yscale"] == "log"
    assert slices[0]["xlim"][0] <= -4.0  # the tail to -4 is shown
    profile = drawn["feh_profile"]["panels"][0]
    lo, hi = profile["shown"]["data_range"]
    assert profile["ylim"][0] <= lo and profile["ylim"][1] >= hi
    assert profile["title"].endswith(f"{profile['shown']['stars']:,d} stars")
    sky = drawn["feh_sky"]["panels"]
    assert sky[1]["shown"]["stars"] == n and sky[1]["title"].startswith(f"{n:,d} mapped stars")
