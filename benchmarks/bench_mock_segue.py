"""The mock's labelled stars against real SEGUE stars: median u-g at fixed g-r and [Fe/H] (issue 26, item 0).

Real: segue_dr17_colours_feh.csv (19,530 SDSS DR17 stars with SSPP [Fe/H]; observed colours, not
dereddened, no errors), found as the tests find it (tests/conftest.py). Mock: the spectroscopic sample
(MockSurveyConfig(spec_only=True)), its observed (reddened, noisy) colours and SSPP-like labels, stars with
u error < 0.05. Per cell of 0.05 mag in g-r and 0.5 dex in [Fe/H] holding >= 30 stars on both sides: mock
minus real median u-g (target: within 0.03 mag everywhere). Also the labelled [Fe/H] percentiles, and per SEGUE
targeting category (photofeh.simulate.spectro) the share of the labelled stars and their median [Fe/H], and the
spread of u-g at fixed g-r and [Fe/H] in three turn-off cells (how noisy each side's u band is).

Usage: python benchmarks/bench_mock_segue.py [--n-stars N] [--seed S] [--derive | --derive-rates]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import mock_columns, segue_dr17_path, write_result

from photofeh.simulate import MockSurveyConfig
from photofeh.simulate.realism import MAX_U_ERR, MIN_STARS, category_table, compare_ug_cells, mock_observed_colours

TOLERANCE = 0.03


def real_segue_frame():
    """The real SEGUE file (ug, gr, ri, iz, feh), found as the tests find it (tests/conftest.py)."""
    import pandas as pd

    return pd.read_csv(segue_dr17_path())


def percentiles(feh) -> dict:
    feh = np.asarray(feh)[np.isfinite(feh)]
    p1, p50, p99 = np.percentile(feh, [1, 50, 99])
    return {"stars": int(feh.size), "1st percentile": round(float(p1), 2), "median": round(float(p50), 2),
            "99th percentile": round(float(p99), 2)}


def cell_table(rows: list[dict]) -> dict:
    """mock - real per cell as {[Fe/H] bin: {g-r bin: value}}."""
    table: dict = {}
    for r in rows:
        f, g = r["[Fe/H]"], r["g-r"]
        table.setdefault(f"[Fe/H] {f[0]:+.1f} to {f[1]:+.1f}", {})[f"g-r {g[0]:.2f}-{g[1]:.2f}"] = r["mock - real"]
    return table


def derive_rates(n_stars: int = 600_000, seed: int = 11) -> dict:
    """SEGUE_CATEGORY_RATES fitted to the real file: the window is the spectroscopic-only mock with every
    category's rate set to 1 (every star of 14 < g < 20 whose Teff the SSPP covers and whose S/N reaches the
    floor, spectro.SSPP_MIN_SNR). One worker: the rates are swapped in this process, which spawned workers would
    not see."""
    from photofeh.simulate import spectro
    from photofeh.simulate.realism import derive_category_rates

    real = real_segue_frame()
    rates = spectro.SEGUE_CATEGORY_RATES
    spectro.SEGUE_CATEGORY_RATES = dict.fromkeys(rates, 1.0)
    try:
        window = mock_columns(MockSurveyConfig(n_stars=n_stars, seed=seed, spec_only=True), workers=1)
    finally:
        spectro.SEGUE_CATEGORY_RATES = rates
    return derive_category_rates(real["ug"], real["gr"], real["ri"], window)


SPREAD_CELLS = ((0.25, 0.30, -2.0, -1.5), (0.30, 0.35, -1.0, -0.5), (0.35, 0.40, -1.5, -1.0))  # F/turn-off


def ug_spread(frame, cat) -> dict:
    """Robust spread (1.4826 MAD) of observed u-g at fixed g-r and [Fe/H], real against mock (every labelled
    star, and those brighter than g = 18): how noisy each side's u band is where the turn-off stars are."""
    from photofeh.model.evaluate import robust_sigma

    def mad(x):
        return round(robust_sigma(np.asarray(x, float)), 3)

    ug_m, gr_m = cat["sdss_u"] - cat["sdss_g"], cat["sdss_g"] - cat["sdss_r"]
    feh_m, g = cat["feh_spec"], cat["sdss_g"]
    out = {}
    for g0, g1, f0, f1 in SPREAD_CELLS:
        r = (frame["gr"] >= g0) & (frame["gr"] < g1) & (frame["feh"] >= f0) & (frame["feh"] < f1)
        m = (gr_m >= g0) & (gr_m < g1) & (feh_m >= f0) & (feh_m < f1)
        out[f"g-r {g0:.2f}-{g1:.2f}, [Fe/H] {f0:+.1f} to {f1:+.1f}"] = {
            "real": mad(frame["ug"][r]), "mock": mad(ug_m[m]), "mock, g < 18": mad(ug_m[m & (g < 18)])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-stars", type=int, default=40_000, help="labelled mock stars (default 40,000)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--derive", action="store_true",
                    help="only print the SEGUE u-g residual table of photofeh.simulate.loci (SEGUE_UG_RESIDUAL): "
                         "the real file's, refined once against 4 x 40,000 labelled mock stars (seeds 21-24)")
    ap.add_argument("--derive-rates", action="store_true",
                    help="only print the targeting rates of photofeh.simulate.spectro (SEGUE_CATEGORY_RATES), fitted "
                         "to the real file's category shares on a window of 600,000 mock stars (seed 11)")
    args = ap.parse_args()
    if args.derive_rates:
        print(derive_rates())
        return
    frame = real_segue_frame()
    real = frame["ug"].to_numpy(), frame["gr"].to_numpy(), frame["feh"].to_numpy()
    if args.derive:
        from photofeh.simulate.realism import refine_ug_residual

        for row in refine_ug_residual(*real, log=lambda m: print(m, file=sys.stderr)):
            print("    (" + ", ".join(f"{v:+.3f}" for v in row) + "),")
        return
    cat = mock_columns(MockSurveyConfig(n_stars=args.n_stars, seed=args.seed, spec_only=True))
    mock = mock_observed_colours(cat)
    rows = compare_ug_cells(real, mock)
    diffs = np.array([r["mock - real"] for r in rows])
    misses = {f"g-r {r['g-r'][0]:.2f}-{r['g-r'][1]:.2f}, [Fe/H] {r['[Fe/H]'][0]:+.1f} to {r['[Fe/H]'][1]:+.1f}":
              f"{r['mock - real']:+.3f} (real {r['n_real']}, mock {r['n_mock']})"
              for r in rows if abs(r["mock - real"]) > TOLERANCE}
    summary = {"cells compared": len(rows), f"cells within {TOLERANCE} mag": int(np.sum(np.abs(diffs) <= TOLERANCE)),
               "largest offset (absolute), mag": round(float(np.max(np.abs(diffs))), 3),
               "median offset (absolute), mag": round(float(np.median(np.abs(diffs))), 3),
               "mock labelled stars compared (u error < 0.05)": int(mock[0].size)}
    for k, v in {**summary, **misses}.items():
        print(f"{k}: {v}")
    write_result(
        "mock_segue", "Mock labelled stars against real SEGUE stars (issue 26, item 0)",
        {"summary": summary,
         "labelled [Fe/H]": {"real SEGUE DR17": percentiles(real[2]), "mock": percentiles(cat["feh_spec"])},
         "by targeting category": category_table(frame["ug"], frame["gr"], frame["ri"], frame["feh"], cat),
         "u-g spread (1.4826 MAD) at fixed g-r and [Fe/H], mag": ug_spread(frame, cat),
         "mock minus real median u-g at fixed g-r and [Fe/H], mag": cell_table(rows),
         f"cells beyond {TOLERANCE} mag": misses or {"none": ""}},
        notes=f"Real: segue_dr17_colours_feh.csv, observed (not dereddened) colours, SSPP [Fe/H]. Mock: "
              f"{args.n_stars:,d} labelled stars (spec-only survey, seed {args.seed}), observed reddened colours "
              f"of stars with u error < {MAX_U_ERR}, SSPP-like labels. Cells of 0.05 mag in g-r by 0.5 dex "
              f"in [Fe/H] with >= {MIN_STARS} stars on both sides.")


if __name__ == "__main__":
    main()
