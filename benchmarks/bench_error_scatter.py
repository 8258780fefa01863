"""How much real catalogues' band errors scatter at fixed magnitude (issue 27 item 1: ``noise_error_scatter``).

A noise-aware model re-observes its training stars with each band's error drawn from the band's error relation
(photofeh.model.noise.ErrorRelation: sigma^2 = floor^2 + a x + b x^2, x = 10^(0.4 (m - 20))); with
``noise_error_scatter = s`` each error is the relation's times 10^(s z), z standard normal. This measures s on
real catalogues: per band, the relation fitted to every star's own error (least squares in log10 error, a soft-L1
loss so that a few stray errors do not set it; relative, as ErrorRelation.fit weights its bins), then the robust
spread (1.4826 MAD)
of log10(error / relation) over the stars whose relation is at least twice its floor, i.e. where the error
follows the photon noise rather than a catalogue's calibration floor, which hides any scatter.

Samples (../shared/data/real, found as the tests find them): green2020 (Gaia DR2, PS1, 2MASS, WISE; 10,000
stars), the Huber et al. 2017 Kepler stars (2MASS and Tycho; their KIC griz errors are one number) and the SDSS
DR9 SSPP sample (ugriz PSF magnitudes from g and the colours; 100 stars, so each value is good to ~10%); beside
them the mock survey's own bands, whose errors scatter by the measurement noise of their S/N and, in SDSS, by the
depth of each sky patch (simulate.observe.DEPTH_SCATTER_MAG, set from the SSPP figures in u and z).

Usage: python benchmarks/bench_error_scatter.py
"""

from __future__ import annotations

import numpy as np
from _common import green2020_path, real_sample_path, write_result

ABOVE_FLOOR = 2.0  # a star counts where its relation is at least this times the relation's floor
MIN_STARS = 30


def relation_scatter(mag, err) -> dict:
    """The band's relation fitted to every star, and the spread of log10(error / relation) above its floor."""
    from scipy.optimize import least_squares

    from photofeh.model.evaluate import robust_sigma
    from photofeh.model.noise import PIVOT_MAG

    mag, err = np.asarray(mag, float), np.asarray(err, float)
    ok = np.isfinite(mag) & np.isfinite(err) & (err > 0) & (err < 5)
    mag, err = mag[ok], err[ok]
    if mag.size < MIN_STARS:
        return {"stars": int(mag.size)}
    x = np.power(10.0, 0.4 * (mag - PIVOT_MAG))

    def log_sigma(p):  # the three coefficients as logs: each stays positive
        return 0.5 * np.log10(np.exp(p[0]) + np.exp(p[1]) * x + np.exp(p[2]) * x * x)

    start = np.log([np.min(err) ** 2, 1e-4, 1e-4])
    fit = least_squares(lambda p: log_sigma(p) - np.log10(err), start, loss="soft_l1", f_scale=0.05)
    floor = float(np.exp(0.5 * fit.x[0]))
    resid = np.log10(err) - log_sigma(fit.x)
    above = log_sigma(fit.x) >= np.log10(ABOVE_FLOOR * floor)
    out = {"stars": int(mag.size), "floor, mag": round(floor, 4), "stars above the floor": int(above.sum()),
           "scatter, all stars (dex)": round(float(robust_sigma(resid)), 3)}
    if above.sum() >= MIN_STARS:
        out["scatter above the floor (dex)"] = round(float(robust_sigma(resid[above])), 3)
        out["magnitudes above the floor"] = f"{np.min(mag[above]):.1f}-{np.max(mag[above]):.1f}"
    return out


def green2020() -> dict:
    from photofeh.io.real_samples import read_green2020

    stars = read_green2020(green2020_path())
    bands = [c[:-4] for c in stars.columns if c.endswith("_err") and c.split("_")[0] in ("gaia", "ps1", "tmass",
                                                                                         "wise")]
    return {b: relation_scatter(stars[b], stars[f"{b}_err"]) for b in bands}


def kepler() -> dict:
    """Through the ``kepler_huber17`` preset (KIC griz, 2MASS), and the file's Tycho columns, which it does not map."""
    cols, raw = _preset("kepler_giants_labels_photometry.txt", "kepler_huber17")
    tycho = {"Tycho BT": "btmag", "Tycho VT": "vtmag"}
    out = {name: relation_scatter(np.where(raw[c] > 0, raw[c], np.nan), raw[f"sig_{c}"]) for name, c in tycho.items()}
    names = {"kic_g": "KIC g", "kic_r": "KIC r", "kic_i": "KIC i", "kic_z": "KIC z", "tmass_j": "2MASS J",
             "tmass_h": "2MASS H", "tmass_ks": "2MASS Ks"}
    return out | {name: relation_scatter(cols[b], cols[f"{b}_err"]) for b, name in names.items()}


def sspp_dr9() -> dict:
    """Through the ``sspp`` preset (SDSS ugriz from g and the colours, its sentinels made NaN)."""
    cols, _ = _preset("sspp_dr9_sample.fits", "sspp")
    return {f"SDSS {b}": relation_scatter(cols[f"sdss_{b}"], cols[f"sdss_{b}_err"]) for b in "ugriz"}


def _preset(name: str, preset: str) -> tuple[dict, dict]:
    """A shared real sample read as photofeh reads it: (its columns through ``preset``, its raw columns)."""
    from photofeh.io.presets import apply_preset
    from photofeh.io.readers import read_columns

    path = real_sample_path(name)
    raw = read_columns(path)
    cols, _ = apply_preset(raw, preset, str(path))
    return cols, raw


def mock_survey(n_stars: int = 200_000, seed: int = 3) -> dict:
    """The mock survey's own bands (simulate.observe: the error is 1.0857 / the measured S/N, at the band's error
    model of the true magnitude and its sky patch's depth): what its stars scatter by, against the real catalogues'."""
    from _common import mock_columns

    from photofeh.simulate import MockSurveyConfig

    cat = mock_columns(MockSurveyConfig(n_stars=n_stars, seed=seed))
    bands = ("sdss_u", "sdss_g", "sdss_z", "ps1_g", "tmass_ks", "wise_w2")
    return {b: relation_scatter(cat[b], cat[f"{b}_err"]) for b in bands if b in cat}


def main() -> None:
    figures = {"green2020 (Gaia DR2, PS1, 2MASS, WISE)": green2020(), "Kepler, Huber et al. 2017": kepler(),
               "SDSS DR9 SSPP sample": sspp_dr9(), "mock survey (200,000 stars, seed 3)": mock_survey()}
    for sample, bands in figures.items():
        print(sample)
        for band, row in bands.items():
            print(f"  {band}: {row}")
    write_result("error_scatter", "Real band errors about their error relation (noise_error_scatter, issue 27)",
                 figures,
                 notes="Per band: the relation sigma^2 = floor^2 + a x + b x^2 (x = 10^(0.4 (m - 20))) fitted to every "
                       "star's log10 error (least squares, soft-L1 loss); scatter = 1.4826 MAD of "
                       f"log10(error / relation), over the stars whose relation is >= {ABOVE_FLOOR:g}x its floor "
                       "(and over all stars). Bands without stars above their floor carry no such value: their "
                       "errors are a calibration floor, which hides any scatter.")


if __name__ == "__main__":
    main()
