"""Realism check of the mock survey: how well do gradient-boosted trees do on it?

The issue's sanity target: LightGBM on the dereddened SDSS colours of the
spectroscopic subsample reaches an [Fe/H] precision of roughly 0.15-0.25 dex,
as such methods do on real SEGUE stars. A mock that gave much better figures
would flatter every method trained on it.

Usage: python benchmarks/bench_mock_realism.py [--n-stars N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import write_result

from photofeh.bands import BANDS
from photofeh.model.baselines import GradientBoostedBaseline
from photofeh.model.evaluate import gaussian_fit_sigma
from photofeh.simulate import MockSurveyConfig, iter_chunks


def sigma(residual: np.ndarray) -> float:
    """The Gaussian-fit sigma (photofeh.model.evaluate), rounded for the table."""
    return round(gaussian_fit_sigma(residual)[1], 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-stars", type=int, default=60_000)
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    t0 = time.perf_counter()
    chunks = list(iter_chunks(MockSurveyConfig(n_stars=args.n_stars, seed=args.seed, spec_only=True),
                              chunk_size=10**9, workers=2))
    cat = {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}
    t_sim = time.perf_counter() - t0
    mag0 = {f: cat[f"sdss_{f}"] - BANDS[f"sdss_{f}"].r_ebv * cat["ebv"] for f in "ugriz"}
    X = np.column_stack([mag0["u"] - mag0["g"], mag0["g"] - mag0["r"], mag0["r"] - mag0["i"], mag0["i"] - mag0["z"]])
    y = cat["feh_spec"]
    ok = np.all(np.isfinite(X), axis=1) & np.isfinite(y)
    X, y, truth, g = X[ok], y[ok], cat["feh_true"][ok], cat["sdss_g"][ok]
    dwarf = ~cat["is_giant_true"][ok]
    rng = np.random.default_rng(args.seed)
    test = rng.random(y.size) < 0.2
    model = GradientBoostedBaseline(seed=args.seed).fit(X[~test], y[~test, None])
    pred = model.predict(X[test])[:, 0]
    res_spec, res_true = pred - y[test], pred - truth[test]
    figures = {
        "labelled stars used": int(ok.sum()),
        "test stars": int(test.sum()),
        "[Fe/H] sigma vs spectroscopic labels (Gaussian fit), dex": sigma(res_spec),
        "[Fe/H] sigma vs truth (Gaussian fit), dex": sigma(res_true),
        "[Fe/H] robust sigma vs spectroscopic labels, dex": round(1.4826 * np.median(np.abs(res_spec)), 3),
        "[Fe/H] sigma vs spectroscopic labels, dwarfs only, dex": sigma(res_spec[dwarf[test]]),
        "[Fe/H] sigma vs spectroscopic labels, g < 19, dex": sigma(res_spec[g[test] < 19]),
        "[Fe/H] sigma vs spectroscopic labels, g > 19, dex": sigma(res_spec[g[test] > 19]),
        "simulation time, s": round(t_sim, 1),
    }
    for k, v in figures.items():
        print(f"{k}: {v}")
    write_result("mock_realism", "Mock realism: LightGBM [Fe/H] from dereddened SDSS colours", figures,
                 notes="Target (issue #2): roughly 0.15-0.25 dex, as on real SEGUE stars. Features u-g, g-r, "
                       "r-i, i-z dereddened with the catalogue E(B-V) and SF11 coefficients; 80/20 split.")


if __name__ == "__main__":
    main()
