"""The mock survey against empirical loci and real stars, before and after the calibration (issue 13).

Same seed, two mocks: the raw stellar models with the Ivezic et al. 2008 disk and halo laws
("before") and the default mock (colours on the Yuan et al. 2015 / Zhang et al. 2021 loci, the
"calibrated" disk law, the An et al. 2015 halo with the Youakim et al. 2020 tail: "after").

Measured:
- median u-g residual against the Yuan et al. 2015 locus at fixed g-r and [Fe/H] (true, unreddened
  absolute colours of stars with log g >= 3.5), per bin of g-r and [Fe/H];
- the spectroscopic subsample's [Fe/H] percentiles (target: SEGUE DR17, about -2.5 / -0.6 / +0.15);
- PS1 and Gaia colours at fixed PS1 g-i and [Fe/H] against the real low-reddening dwarfs of
  green2020_test_data_small.h5.
- the main sequences of the three most metal-poor clusters with PS1 fiducials (M92, M15, M30, near
  [Fe/H] = -2.3, just below the PARSEC grid) against the grid with and without its metal-poor
  continuation;
- the Bond et al. 2010 photometric [Fe/H] of the mock's F/G dwarfs per true [Fe/H] bin (the
  metal-poor tail's colours, which no cluster reaches, against the published relation).
A figure of u-g against g-r per [Fe/H] bin goes to benchmarks/figures/mock_loci.png.

Usage: python benchmarks/bench_mock_loci.py [--n-stars N]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import ROOT, green2020_path, mock_columns, write_result

from photofeh.bands import extinction_coefficient
from photofeh.simulate import MockSurveyConfig
from photofeh.simulate.loci import u_minus_g_at_g_minus_r

VARIANTS = {"before (models, Ivezic 2008 laws)": dict(colours="models", disk_feh_law="ivezic2008",
                                                      halo_feh_law="ivezic2008"),
            "after (default)": {}}
GR_BINS = np.arange(0.2, 0.5, 0.05)
FEH_BINS = np.arange(-2.5, 0.0, 0.5)
FIGURE = ROOT / "benchmarks" / "figures" / "mock_loci"


# PS1 main-sequence fiducials (g, i) below the turn-off, as committed in github.com/gregreen/
# stellar-locus-fitter ("data/Edouard's GCs/fid_NGC*.txt", probably E. Bernard's PS1 fiducials;
# attribution unverified), with the ([Fe/H], (m-M)0, E(B-V)) listed beside them in that repository's
# gc_fiducials.py (Harris-catalogue-like values). Reddening: R(g_P1) = 3.172, R(i_P1) = 1.682
# (Schlafly & Finkbeiner 2011, table 6, as listed there).
CLUSTERS = {
    "M92 (NGC 6341)": (-2.31, 14.65, 0.02, [(19.6, 19.298), (19.8, 19.475), (20.0, 19.648), (20.2, 19.818),
                                           (20.4, 19.986), (20.6, 20.15), (20.8, 20.311), (21.0, 20.469),
                                           (21.2, 20.626), (21.4, 20.78), (21.6, 20.933), (21.8, 21.085),
                                           (22.0, 21.234)]),
    "M15 (NGC 7078)": (-2.37, 15.39, 0.10, [(20.6, 20.129), (20.8, 20.301), (21.0, 20.471), (21.2, 20.638),
                                           (21.4, 20.802), (21.6, 20.962), (21.8, 21.121), (22.0, 21.277),
                                           (22.2, 21.43)]),
    "M30 (NGC 7099)": (-2.27, 14.64, 0.03, [(19.7, 19.333), (19.9, 19.508), (20.1, 19.68), (20.3, 19.848),
                                           (20.5, 20.013), (20.7, 20.177), (20.9, 20.338), (21.1, 20.497),
                                           (21.3, 20.654), (21.5, 20.81), (21.7, 20.965), (21.9, 21.119),
                                           (22.1, 21.273)]),
}
CLUSTER_AGE_GYR = 12.5


def cluster_offsets() -> dict:
    """Median (fiducial - model) g-i at the fiducial's M_g, for the continued grid and the grid's edge."""
    from photofeh.simulate.isochrones import IsochroneGrid, load_grid

    table = load_grid()
    grids = {"grid continued to -4": IsochroneGrid.from_table(table),
             "grid edge (-2.19)": IsochroneGrid.from_table(table, metal_poor_floor=None)}
    out = {}
    for name, (feh, dm, ebv, rows) in CLUSTERS.items():
        g, i = np.array(rows).T
        mg, gi = g - dm - 3.172 * ebv, g - i - (3.172 - 1.682) * ebv
        row = {"[Fe/H]": feh, "M_g range": f"{mg.min():.1f}-{mg.max():.1f}"}
        for label, grid in grids.items():
            idx, w = grid.corners(np.array([feh]), np.array([np.log10(CLUSTER_AGE_GYR * 1e9)]))
            n = grid.values["mini"].shape[-1]
            iso = {q: sum(wk[0] * grid.values[q].reshape(-1, n)[ik[0]] for ik, wk in zip(idx, w, strict=True))
                   for q in ("ps1_g", "ps1_i")}
            ms = (grid.segment == 0) & np.isfinite(iso["ps1_g"]) & (iso["ps1_g"] > 4.6)
            order = np.argsort(iso["ps1_g"][ms])
            model = np.interp(mg, iso["ps1_g"][ms][order], (iso["ps1_g"] - iso["ps1_i"])[ms][order])
            row[f"fiducial - model g-i, {label}"] = round(float(np.median(gi - model)), 3)
        out[name] = row
    return out


def bond2010_scale(cat) -> dict:
    """Median Bond et al. 2010 photometric [Fe/H] of F/G dwarfs per true [Fe/H] bin."""
    ug = cat["mabs_sdss_u_true"] - cat["mabs_sdss_g_true"]
    gr = cat["mabs_sdss_g_true"] - cat["mabs_sdss_r_true"]
    A, B, C, D, E, F, G, H, I, J = (-13.13, 14.09, 28.04, -5.51, -5.90, -58.68, 9.14, -20.61, 0.0, 58.20)
    x, y = ug, gr
    phot = (A + B * x + C * y + D * x * y + E * x**2 + F * y**2 + G * x**2 * y + H * x * y**2 + I * x**3
            + J * y**3)
    fg = (cat["logg_true"] >= 3.5) & (gr > 0.2) & (gr < 0.6)
    out = {}
    for lo in np.arange(-4.0, 0.0, 0.5):
        sel = fg & (cat["feh_true"] >= lo) & (cat["feh_true"] < lo + 0.5)
        if sel.sum() >= 50:
            out[f"true [Fe/H] {lo:+.1f} to {lo + 0.5:+.1f}"] = round(float(np.median(phot[sel])), 2)
    return out


def mock(n, seed, **kw):
    return mock_columns(MockSurveyConfig(n_stars=n, seed=seed, **kw))


def locus_table(cat) -> tuple[dict, float]:
    dw = cat["logg_true"] >= 3.5
    gr = (cat["mabs_sdss_g_true"] - cat["mabs_sdss_r_true"])[dw]
    ug = (cat["mabs_sdss_u_true"] - cat["mabs_sdss_g_true"])[dw]
    feh = cat["feh_true"][dw]
    resid = ug - u_minus_g_at_g_minus_r(gr, feh)
    table, worst = {}, 0.0
    for flo in FEH_BINS:
        row = {}
        for lo in GR_BINS:
            sel = (gr >= lo) & (gr < lo + 0.05) & (feh >= flo) & (feh < flo + 0.5)
            med = float(np.median(resid[sel])) if sel.sum() >= 100 else np.nan
            row[f"g-r {lo:.2f}-{lo + 0.05:.2f}"] = round(med, 3)
            if flo >= -2.0 and np.isfinite(med):
                worst = max(worst, abs(med))
        table[f"[Fe/H] {flo:+.1f} to {flo + 0.5:+.1f}" + (" (locus extrapolated)" if flo < -2.0 else "")] = row
    return table, round(worst, 3)


def real_colour_offsets(cat) -> dict:
    from photofeh.io.real_samples import read_green2020

    real = read_green2020(green2020_path())
    real = real[(real["ebv"] < 0.05) & (real["logg_spec"] > 4.0) & ~real["reddening_is_default"]]
    bands = ("gaia_g", "gaia_bp", "gaia_rp", "ps1_g", "ps1_r", "ps1_i", "ps1_z", "ps1_y")
    bp_rp = (real["gaia_bp"] - real["gaia_rp"]).to_numpy()
    r = {b: (real[b] - extinction_coefficient(b, bp_rp) * real["ebv"]).to_numpy() for b in bands}
    ok = (cat["logg_true"] > 4.0) & ~cat["is_binary_true"]
    m = {b: cat[f"mabs_{b}_true"][ok] for b in bands}
    gi_r, gi_m = r["ps1_g"] - r["ps1_i"], m["ps1_g"] - m["ps1_i"]
    feh_r, feh_m = real["feh_spec"].to_numpy(), cat["feh_true"][ok]
    out = {}
    for blue, red in (("ps1_g", "ps1_r"), ("ps1_i", "ps1_z"), ("ps1_z", "ps1_y"), ("gaia_bp", "gaia_rp"),
                      ("gaia_g", "gaia_rp"), ("gaia_g", "ps1_r")):
        resid = []
        for lo in np.arange(0.3, 1.5, 0.2):
            for flo in np.arange(-1.5, 0.5, 0.25):
                sr = (gi_r >= lo) & (gi_r < lo + 0.2) & (feh_r >= flo) & (feh_r < flo + 0.25)
                sm = (gi_m >= lo) & (gi_m < lo + 0.2) & (feh_m >= flo) & (feh_m < flo + 0.25)
                if sr.sum() >= 5 and sm.sum() >= 30:
                    fit = np.polyfit(gi_m[sm], (m[blue] - m[red])[sm], 1)
                    resid.append((r[blue] - r[red])[sr] - np.polyval(fit, gi_r[sr]))
        resid = np.concatenate(resid)
        resid = resid[np.isfinite(resid)]
        out[f"{blue} - {red}"] = round(float(np.median(resid)), 3)
    out["real dwarfs compared"] = int(resid.size)
    return out


def gaia_minus_sdss(cat) -> dict:
    """Median mock minus the published Gaia EDR3 - SDSS relations (Riello et al. 2021, A&A 649, A3, table C.2;
    polynomials in BP-RP, scatter 0.07 mag in G - g and 0.04 in G - i about them) for the true unreddened
    magnitudes of single dwarfs (log g > 4) with [Fe/H] > -1, in 0.2-mag bins of BP-RP. g and i are the stellar
    models' own (no correction moves them), so this checks the Gaia bands."""
    ok = (cat["logg_true"] > 4.0) & ~cat["is_binary_true"] & (cat["feh_true"] > -1.0)
    x = cat["mabs_gaia_bp_true"][ok] - cat["mabs_gaia_rp_true"][ok]
    big_g = cat["mabs_gaia_g_true"][ok]
    relations = {"G - g": ("sdss_g", (0.2199, -0.6365, -0.1548, 0.0064)),
                 "G - i": ("sdss_i", (-0.293, 0.6404, -0.09609, -0.002104))}
    out = {}
    for lo in (0.6, 0.8, 1.0, 1.2):
        sel = (x >= lo) & (x < lo + 0.2)
        for name, (band, coef) in relations.items():
            resid = (big_g - cat[f"mabs_{band}_true"][ok])[sel] - np.polynomial.polynomial.polyval(x[sel], coef)
            out.setdefault(name, {})[f"BP-RP {lo:.1f}-{lo + 0.2:.1f}"] = round(float(np.median(resid)), 3)
    return out


def spec_percentiles(spec) -> dict:
    f = spec["feh_spec"][np.isfinite(spec["feh_spec"])]
    p1, p50, p99 = np.percentile(f, [1, 50, 99])
    return {"labelled stars": int(f.size), "[Fe/H] 1st percentile": round(float(p1), 2),
            "median": round(float(p50), 2), "99th percentile": round(float(p99), 2),
            "share below -2.5": round(float(np.mean(f < -2.5)), 4), "share below -3": round(float(np.mean(f < -3)), 4),
            "halo share": round(float(np.mean(spec["pop"] == "halo")), 3)}


def draw(cats: dict) -> None:
    from photofeh.report.style import styled

    with styled():
        _draw(cats)


def _draw(cats: dict) -> None:
    from photofeh.report.style import axis_label, new_figure, save_figure

    fig, axes = new_figure(2, 1, width="double", aspect=0.8, sharey=True)
    axes = axes[0]
    colours = {-2.0: "C0", -1.5: "C1", -1.0: "C2", -0.5: "C3"}
    centres = GR_BINS + 0.025
    for ax, (name, cat) in zip(axes, cats.items(), strict=True):
        dw = cat["logg_true"] >= 3.5
        gr = (cat["mabs_sdss_g_true"] - cat["mabs_sdss_r_true"])[dw]
        ug = (cat["mabs_sdss_u_true"] - cat["mabs_sdss_g_true"])[dw]
        feh = cat["feh_true"][dw]
        for flo, col in colours.items():
            sel = (feh >= flo) & (feh < flo + 0.5)
            bins = [sel & (gr >= c - 0.025) & (gr < c + 0.025) for c in centres]
            ax.plot(centres, [np.median(ug[b]) for b in bins], "o", color=col,
                    label=f"mock, [Fe/H] {flo:+.1f} to {flo + 0.5:+.1f}")
            # the locus at the same stars' g-r and [Fe/H] (medians): what the mock's medians should equal
            ax.plot(centres, [np.median(u_minus_g_at_g_minus_r(gr[b], feh[b])) for b in bins], "-", color=col, lw=1)
        ax.set_title(name)
        ax.set_xlabel(axis_label("sdss_g-sdss_r"))
    axes[0].set_ylabel(axis_label("sdss_u-sdss_g"))
    axes[0].legend(fontsize=7, title="lines: Yuan et al. 2015 locus, same stars", title_fontsize=7)
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, FIGURE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-stars", type=int, default=300_000)
    ap.add_argument("--n-spec", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    cats, tables, summaries, bond, reals = {}, {}, {}, {}, {}
    for name, kw in VARIANTS.items():
        cat = mock(args.n_stars, args.seed, **kw)
        cats[name] = cat
        table, worst = locus_table(cat)
        tables[f"u-g minus the Yuan et al. 2015 locus at fixed g-r and [Fe/H], {name}"] = table
        bond[name] = bond2010_scale(cat)
        summaries[name] = {
            "largest |median u-g residual| for -2 < [Fe/H] < 0, mag": worst,
            **spec_percentiles(mock(args.n_spec, args.seed + 1, spec_only=True, **kw)),
        }
        if green2020_path().exists():
            real_cat = mock(args.n_stars, args.seed, select_band="ps1_r", mag_range=(12.0, 19.0), **kw)
            reals[name] = real_colour_offsets(real_cat)
        print(name, summaries[name], bond[name], reals.get(name))
    draw(cats)
    gaia_sdss = {name: gaia_minus_sdss(cat) for name, cat in cats.items()}
    clusters = cluster_offsets()
    print(clusters)
    write_result("mock_loci", "Mock survey against empirical loci and real stars (before/after issue 13)",
                 {"summary": summaries, **({"real minus mock colours (green2020 dwarfs)": reals} if reals else {}),
                  **tables, "metal-poor clusters: PS1 main sequence (12.5 Gyr models)": clusters,
                  "mock minus the Gaia EDR3 - SDSS relations of Riello et al. 2021 (dwarfs, [Fe/H] > -1)": gaia_sdss,
                  "Bond et al. 2010 photometric [Fe/H] of the mock's F/G dwarfs (median, by true [Fe/H])": bond},
                 notes="Targets (issue 13): |u-g residual| <= 0.03 mag for "
                       "-2 < [Fe/H] < 0 (the locus' range); SEGUE DR17 labelled stars span about -2.5 to +0.15 "
                       "(1st-99th percentile, median about -0.6). Colours: true unreddened absolute magnitudes of "
                       "stars with log g >= 3.5 (binaries included), 300,000-star default survey. Real stars: "
                       "E(B-V) < 0.05, log g > 4, dereddened with the project's coefficients; residuals are real "
                       "minus a local linear fit of the mock colour against g-i in 0.2-mag g-i x 0.25-dex bins.",
                 figure=f"benchmarks/figures/{FIGURE.name}.png")


if __name__ == "__main__":
    main()
