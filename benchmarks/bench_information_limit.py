"""The information limit on [Fe/H] (issue 26, item 1b): per 0.5-dex bin, the Cramer-Rao bound (the smallest
scatter an unbiased estimate can reach, photofeh.simulate.information) and the label noise floor, per sample.

Samples and what each star's bound is computed from:
- mock, r < 19 with u: the labelled mock (MockSurveyConfig(spec_only=True)), stars with r < 19 and u detected,
  at their true parameters, with their own catalogue errors (plus each band's patch zero-point scatter, which a
  catalogue does not report but which scatters every star); E(B-V) known to the dust map's 10%.
- SEGUE colours: the same labelled mock, every star, reweighted to the real file's stars per cell of g-r
  (0.05 mag) and [Fe/H] (0.5 dex: SSPP label for the real stars, truth for the mock) (the real file has no
  magnitudes, errors or Teff); observed colours with no E(B-V) (the file has none), so E(B-V) is a nuisance
  known only to its spread among the labelled stars. Also with every band's error 0.02 (configs/segue-colours.toml's
  independent check).
- green2020: the real stars (../shared/data/real), each placed on the stellar-model grid by its Teff, log g and
  [Fe/H] labels (information.place_by_labels), with the file's own magnitude errors and E(B-V) errors.
Nuisances: EEP (free), log age (free within the grid: prior sigma 0.6 dex, the spread of a uniform log age over
8.0-10.13; also "age known"), E(B-V) (as above), distance modulus (free; measured by G and the parallax where
those are features). [Fe/H] has no prior: the bound is on unbiased estimates, the population estimates of the
issue. An estimate that leans on a prior (a per-star estimate trained on labels) can scatter less, at the price
of the bias the issue measures.

Per bin: median and RMS of the per-star bound; per sample: the Gaussian-fit sigma (the targets' statistic,
photofeh.model.evaluate.gaussian_fit_sigma) of residuals drawn from each star's bound, alone ("vs truth") and
combined with its label's noise ("vs labels": the best a measured sigma against these labels can show).

Usage: python benchmarks/bench_information_limit.py [--n-stars N] [--seed S]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import green2020_path, mock_columns, segue_dr17_path, write_result

from photofeh.bands import BANDS
from photofeh.model.evaluate import gaussian_fit_sigma
from photofeh.simulate import MockSurveyConfig
from photofeh.simulate import information as inf
from photofeh.simulate.observe import DustModel
from photofeh.simulate.survey import MockSurvey

EDGES = np.arange(-3.5, 0.51, 0.5)
SDSS = ["sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z"]
SDSS_COLOURS = ["sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z"]
# every band of the mock, as one chain of colours (any spanning set of differences carries the same information)
MOCK_BANDS = ["cfis_u", *SDSS, "ps1_g", "ps1_r", "ps1_i", "ps1_z", "ps1_y", "gaia_bp", "gaia_g", "gaia_rp"]
MOCK_COLOURS = [f"{a}-{b}" for a, b in zip(MOCK_BANDS[:-1], MOCK_BANDS[1:], strict=True)]
# the same without CFIS u: the bands configs/default.toml reads (configs/cfis-u.toml adds CFIS u)
DEFAULT_BANDS = [b for b in MOCK_BANDS if b != "cfis_u"]
DEFAULT_COLOURS = [f"{a}-{b}" for a, b in zip(DEFAULT_BANDS[:-1], DEFAULT_BANDS[1:], strict=True)]
GREEN_BANDS = ["gaia_g", "gaia_bp", "gaia_rp", "ps1_g", "ps1_r", "ps1_i", "ps1_z", "ps1_y"]
GREEN_COLOURS = ["gaia_bp-gaia_rp", "gaia_g-gaia_rp", "ps1_g-ps1_r", "ps1_r-ps1_i", "ps1_i-ps1_z", "ps1_z-ps1_y"]
LOGAGE_PRIOR = 0.6  # dex: a uniform log age over 8.0-10.13 (the grid's ages the mock draws) has sigma 0.61
AGE_KNOWN = 1e-4
# SSPP [Fe/H] uncertainties, as summarised by the SDSS SSPP page (classic.sdss.org/segue/stellarpars.php):
# internal (the spread of its methods, ~120,000 spectra with S/N >= 10 and 4500 <= Teff <= 7500 K; Lee et al.
# 2008a, AJ 136, 2022) <= 0.10 dex; external, against high-resolution spectra of over 150 SEGUE stars with
# S/N > 50 (Allende Prieto et al. 2008, AJ 136, 2070; random plus systematic, the high-resolution analyses' own
# errors included) 0.22 dex. The cluster validation is Lee et al. 2008b (AJ 136, 2050).
SSPP_FEH_INTERNAL, SSPP_FEH_EXTERNAL = 0.10, 0.22


def bins(feh, values, weights=None) -> dict:
    """Per 0.5-dex bin of ``feh``: stars, median and RMS of ``values`` (weighted where ``weights``)."""
    w = np.ones(feh.size) if weights is None else weights
    out = {}
    for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True):
        m = (feh >= lo) & (feh < hi) & np.isfinite(values) & (w > 0)
        key = f"{lo:+.1f} to {hi:+.1f}"
        if m.sum() < 5:
            out[key] = {"stars": int(m.sum())}
            continue
        v, ww = values[m], w[m]
        order = np.argsort(v)
        cum = np.cumsum(ww[order]) / ww.sum()
        out[key] = {"stars": int(m.sum()), "median": round(float(v[order][np.searchsorted(cum, 0.5)]), 3),
                    "rms": round(float(np.sqrt(np.sum(ww * v**2) / ww.sum())), 3)}
    return out


def sample_sigma(bound, label=None, weights=None, seed=0, draws=20) -> float:
    """Gaussian-fit sigma of residuals drawn N(0, bound^2 + label^2) per star (stars drawn by ``weights``)."""
    rng = np.random.default_rng(seed)
    s2 = bound**2 + (0.0 if label is None else label**2)
    ok = np.isfinite(s2)
    s = np.sqrt(s2[ok])
    p = None if weights is None else weights[ok] / weights[ok].sum()
    idx = rng.choice(s.size, size=draws * s.size, p=p)
    return round(gaussian_fit_sigma(s[idx] * rng.standard_normal(idx.size))[1], 3)


def features(J, sig, bands, colours, extra=None):
    """Colour Jacobian and covariance from band ones; ``extra``: (jacobian rows (n, k, p), sigmas (n, k)) of
    features independent of the bands' noise (the parallax)."""
    D = inf.difference_matrix(bands, colours)
    Jf = np.einsum("fb,nbp->nfp", D, J)
    C = inf.feature_covariance(D, sig)
    if extra is not None:
        Je, se = extra
        Jf = np.concatenate([Jf, Je], axis=1)
        n, f, k = C.shape[0], C.shape[1], se.shape[1]
        big = np.zeros((n, f + k, f + k))
        big[:, :f, :f] = C
        big[:, f:, f:] = np.einsum("nk,kl->nkl", np.where(np.isfinite(se), se, 1e6) ** 2, np.eye(k))
        C = big
    return Jf, C


def priors(n, ebv_sigma, logage_sigma=LOGAGE_PRIOR):
    """(n, 5) prior sigmas in the order of information.PARAMS: [Fe/H] and EEP none, log age, E(B-V), dm none."""
    p = np.full((n, len(inf.PARAMS)), np.inf)
    p[:, inf.PARAMS.index("logage")] = logage_sigma
    p[:, inf.PARAMS.index("ebv")] = np.maximum(ebv_sigma, 1e-3)
    p[:, inf.PARAMS.index("dm")] = 1e3
    return p


def bounds(Jf, C, prior) -> dict:
    """The [Fe/H] bound per star, age free (within the grid) and age known."""
    known = prior.copy()
    known[:, inf.PARAMS.index("logage")] = AGE_KNOWN
    return {"age free": inf.feh_information_bound(Jf, C, prior), "age known": inf.feh_information_bound(Jf, C, known)}


def report(feh, b: dict, label=None, weights=None) -> dict:
    out = {f"bound, {k}": bins(feh, v, weights) for k, v in b.items()}
    if label is not None:
        out["label noise"] = bins(feh, label, weights)
    out["whole sample"] = {
        **{f"sigma vs truth, {k}": sample_sigma(v, None, weights) for k, v in b.items()},
        **({f"sigma vs labels, {k}": sample_sigma(v, label, weights) for k, v in b.items()} if label is not None
           else {}),
        "stars": int(feh.size)}
    return out


def mock_part(n_stars: int, seed: int) -> tuple[dict, dict]:
    cfg = MockSurveyConfig(n_stars=n_stars, seed=seed, spec_only=True)
    grid = MockSurvey(cfg).grid
    cat = mock_columns(cfg, workers=1)
    feh = cat["feh_true"].astype(float)
    logage = np.log10(cat["age_gyr_true"] * 1e9)
    eep = inf.eep_from_mass(grid, feh, logage, cat["mass_true"], cat["teff_true"], cat["logg_true"])
    theta = {"feh": feh, "logage": logage, "eep": eep, "ebv": cat["ebv_true"].astype(float),
             "dm": 5 * np.log10(100 * cat["dist_kpc_true"])}
    J = inf.model_jacobian(grid, MOCK_BANDS, theta)
    sig = np.column_stack([np.hypot(cat[f"{b}_err"], BANDS[b].zp_scatter) for b in MOCK_BANDS])
    n = feh.size
    sdss = [MOCK_BANDS.index(b) for b in SDSS]
    ebv_map = cat["ebv"].astype(float)
    results = {}

    # mock, r < 19 with u: truth is the reference (no label floor)
    sel = (cat["sdss_r"] < 19) & np.isfinite(cat["sdss_u"])
    p_map = priors(n, DustModel.ebv_frac_error * ebv_map)
    Jf, C = features(J[:, sdss], sig[:, sdss], SDSS, SDSS_COLOURS)
    b4 = {k: v[sel] for k, v in bounds(Jf, C, p_map).items()}
    plx = inf.parallax_mas(theta["dm"])
    jp = np.zeros((n, 1, len(inf.PARAMS)))
    jp[:, 0, inf.PARAMS.index("dm")] = -np.log(10) / 5 * plx
    # G enters as a magnitude feature (its noise shared with the Gaia colours), the parallax as an independent one
    Jall, Call = features(J, sig, MOCK_BANDS, [*MOCK_COLOURS, "gaia_g"],
                          extra=(jp, cat["parallax_error"].astype(float)[:, None]))
    ball = {k: v[sel] for k, v in bounds(Jall, Call, p_map).items()}
    dflt = [MOCK_BANDS.index(b) for b in DEFAULT_BANDS]
    Jdef, Cdef = features(J[:, dflt], sig[:, dflt], DEFAULT_BANDS, [*DEFAULT_COLOURS, "gaia_g"],
                          extra=(jp, cat["parallax_error"].astype(float)[:, None]))
    bdef = {k: v[sel] for k, v in bounds(Jdef, Cdef, p_map).items()}
    fs = feh[sel]
    results["mock, r < 19 with u"] = {
        "4 SDSS colours": report(fs, b4),
        "every mock band + G + parallax": report(fs, ball),
        "every band but CFIS u + G + parallax": report(fs, bdef),  # a superset of configs/default.toml's inputs
    }
    # stars needed for an unbiased cluster mean within 0.10 dex, from the 4 colours' bound (1 / mean(b^-2))
    need = {}
    for lo, hi in zip(EDGES[:-1], EDGES[1:], strict=True):
        m = (fs >= lo) & (fs < hi)
        if m.sum() >= 5:
            need[f"{lo:+.1f} to {hi:+.1f}"] = int(np.ceil(1.0 / np.mean(b4["age free"][m] ** -2.0) / 0.10**2))
    results["mock, r < 19 with u"]["stars for a 0.10-dex cluster mean, 4 SDSS colours, age free"] = need

    # SEGUE colours: every labelled mock star, observed colours, E(B-V) unknown beyond its spread
    weights = segue_weights(cat, feh)
    ebv_spread = float(np.std(cat["ebv_true"]))
    p_obs = priors(n, np.full(n, ebv_spread))
    Jf, C = features(J[:, sdss], sig[:, sdss], SDSS, SDSS_COLOURS)
    label = cat["feh_spec_err"].astype(float)
    b_own = bounds(Jf, C, p_obs)
    Jf2, C2 = features(J[:, sdss], np.full((n, 5), 0.02), SDSS, SDSS_COLOURS)
    b_002 = bounds(Jf2, C2, p_obs)
    results["SEGUE colours (mock stars reweighted to the real file)"] = {
        "mock errors": report(feh, b_own, label, weights),
        "every band 0.02 mag": report(feh, b_002, label, weights),
    }
    facts = {"mock labelled stars": n, "mock stars r < 19 with u": int(sel.sum()),
             "E(B-V) spread of the labelled mock stars (prior of the SEGUE case)": round(ebv_spread, 4),
             "median u error, r < 19 with u": round(float(np.nanmedian(cat["sdss_u_err"][sel])), 4),
             "median u error, SEGUE-like stars": round(float(np.nanmedian(cat["sdss_u_err"])), 4)}
    return results, facts


def segue_weights(cat, feh) -> np.ndarray:
    """Weights that give the mock's labelled stars the real SEGUE file's joint distribution of observed g-r
    (0.05 mag) and [Fe/H] (0.5 dex; SSPP for the real stars, truth for the mock)."""
    import pandas as pd

    real = pd.read_csv(segue_dr17_path())
    gr_edges = np.arange(-0.4, 1.61, 0.05)
    h_real, _, _ = np.histogram2d(real["gr"], real["feh"], bins=(gr_edges, EDGES))
    gr_mock = cat["sdss_g"] - cat["sdss_r"]
    h_mock, _, _ = np.histogram2d(gr_mock, feh, bins=(gr_edges, EDGES))
    i = np.clip(np.searchsorted(gr_edges, gr_mock) - 1, 0, gr_edges.size - 2)
    j = np.clip(np.searchsorted(EDGES, feh) - 1, 0, EDGES.size - 2)
    inside = (gr_mock >= gr_edges[0]) & (gr_mock < gr_edges[-1]) & (feh >= EDGES[0]) & (feh < EDGES[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(inside & (h_mock[i, j] > 0), h_real[i, j] / h_mock[i, j], 0.0)
    return np.nan_to_num(w)


def green_part() -> tuple[dict, dict]:
    from photofeh.io.real_samples import green2020_test_mask, read_green2020
    from photofeh.simulate.isochrones import IsochroneGrid, load_grid

    df = read_green2020(green2020_path())
    grid = IsochroneGrid.from_table(load_grid())
    feh, teff, logg = (df[c].to_numpy(float) for c in ("feh_spec", "teff_spec", "logg_spec"))
    logage, eep, dist = inf.place_by_labels(grid, feh, teff, logg)
    ebv = df["ebv"].to_numpy(float)
    plx = df["parallax"].to_numpy(float)
    dm = 5 * np.log10(100 / np.clip(plx, 0.05, None))  # only its derivative enters, through the parallax
    theta = {"feh": feh, "logage": logage, "eep": eep, "ebv": ebv, "dm": dm}
    J = inf.model_jacobian(grid, GREEN_BANDS, theta, quantities=("logte", "logg"))
    sig = np.column_stack([df[f"{b}_err"].to_numpy(float) for b in GREEN_BANDS])
    n = feh.size
    p = priors(n, df["ebv_err"].to_numpy(float))
    Jc, C = features(J[:, :-2], sig, GREEN_BANDS, GREEN_COLOURS)
    jp = np.zeros((n, 1, len(inf.PARAMS)))
    jp[:, 0, inf.PARAMS.index("dm")] = -np.log(10) / 5 * inf.parallax_mas(dm)
    Jg, Cg = features(J[:, :-2], sig, GREEN_BANDS, [*GREEN_COLOURS, "gaia_g"],
                      extra=(jp, df["parallax_error"].to_numpy(float)[:, None]))
    label = df["feh_spec_err"].to_numpy(float)
    test = green2020_test_mask(df["source_id"].to_numpy())
    out = {}
    for name, (Jf, Cf) in {"Gaia + PS1 colours": (Jc, C), "Gaia + PS1 colours + G + parallax": (Jg, Cg)}.items():
        b = bounds(Jf, Cf, p)
        r = report(feh, b, label)
        r["whole sample"] = report(feh[test], {k: v[test] for k, v in b.items()}, label[test])["whole sample"]
        out[name] = r
    # Teff and log g: bounds on functions of theta (gradients from the grid's log Teff and log g), G + parallax
    F = inf.fisher_matrix(Jg, Cg, p)
    s_teff = np.log(10) * teff * inf.marginal_sigma(F, J[:, -2])
    s_logg = inf.marginal_sigma(F, J[:, -1])
    lt, ll = df["teff_spec_err"].to_numpy(float), df["logg_spec_err"].to_numpy(float)
    out["Teff and log g, Gaia + PS1 colours + G + parallax (test stars)"] = {
        "Teff bound (K), median": round(float(np.nanmedian(s_teff[test])), 1),
        "Teff sigma vs truth (K)": sample_sigma(s_teff[test]),
        "Teff sigma vs labels (K)": sample_sigma(s_teff[test], lt[test]),
        "Teff label noise (K), median": round(float(np.nanmedian(lt[test])), 1),
        "log g bound, median": round(float(np.nanmedian(s_logg[test])), 3),
        "log g sigma vs truth": sample_sigma(s_logg[test]),
        "log g sigma vs labels": sample_sigma(s_logg[test], ll[test]),
        "log g label noise, median": round(float(np.nanmedian(ll[test])), 3),
    }
    facts = {"green2020 stars": n, "green2020 test stars": int(test.sum()),
             "green2020 stars placed on the grid within 0.01 dex log Teff / 0.1 log g (distance < 1.5)":
                 int(np.sum(dist < 1.5))}
    return out, facts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-stars", type=int, default=40_000, help="labelled mock stars (default 40,000)")
    ap.add_argument("--seed", type=int, default=26)
    args = ap.parse_args()
    mock, facts = mock_part(args.n_stars, args.seed)
    green, gfacts = green_part()
    figures = {**mock, "green2020": green,
               "label floors": {
                   "SSPP [Fe/H], internal (Lee et al. 2008a)": SSPP_FEH_INTERNAL,
                   "SSPP [Fe/H], external vs high resolution (Allende Prieto et al. 2008)": SSPP_FEH_EXTERNAL},
               "samples": {**facts, **gfacts}}
    write_result("information_limit", "The information limit on [Fe/H]: Cramer-Rao bounds and label floors "
                 "(issue 26, 1b)", figures,
                 notes="Bounds on unbiased estimates (no prior on [Fe/H]); medians and RMS of the per-star bound "
                       "per 0.5-dex bin of true (mock) or label (green2020) [Fe/H]. 'sigma vs labels': the "
                       "Gaussian-fit sigma an unbiased estimate at the bound would show against the labels. "
                       "docs/information_limit.md sets them beside issue 26's targets.")


if __name__ == "__main__":
    main()
