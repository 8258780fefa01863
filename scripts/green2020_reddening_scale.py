"""Measure the SFD E(B-V) of one unit of the Green et al. 2021 sample's reddening (Bayestar19 scale).

Green et al. give each star's reddening `r` in Bayestar19's arbitrary unit, "similar to the scale used by
SFD'98" (green2020-stellar-model tutorial) but not equal to it. The factor used by the ``green2020`` preset
(:data:`photofeh.io.presets.GREEN2020_EBV_PER_R`) is measured here from the stars themselves: for each colour,
the excess per unit `r` at fixed spectroscopic (Teff, log g, [Fe/H]) (:func:`reddening_per_unit`), divided by
the same colour's excess per unit SFD E(B-V) from the empirical single-value coefficients of Zhang & Yuan
2023 (ApJS 264, 14), which :mod:`photofeh.bands` also uses for 2MASS and WISE. The median over the colours is
the adopted factor; the spread says how well one number describes the sample.

Usage: python scripts/green2020_reddening_scale.py [path/to/green2020_test_data_small.h5]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# Zhang & Yuan 2023, single-value A_band / E(B-V)_SFD (their extinction_coefficient package, v1.7).
ZHANG_YUAN_2023 = {"gaia_g": 2.364, "gaia_bp": 2.998, "gaia_rp": 1.737, "ps1_g": 3.248, "ps1_r": 2.363,
                   "ps1_i": 1.791, "ps1_z": 1.398, "ps1_y": 1.146, "tmass_j": 0.748, "tmass_h": 0.453,
                   "tmass_ks": 0.306, "wise_w1": 0.194, "wise_w2": 0.138}
COLOURS = (("ps1_g", "ps1_r"), ("ps1_g", "ps1_i"), ("ps1_r", "ps1_z"), ("ps1_g", "ps1_y"),
           ("ps1_g", "tmass_ks"), ("ps1_r", "tmass_ks"), ("tmass_j", "tmass_ks"), ("ps1_i", "wise_w1"),
           ("ps1_i", "wise_w2"), ("gaia_bp", "gaia_rp"))


def factors(stars) -> dict[str, tuple[float, int]]:
    """SFD E(B-V) per unit `r` from each colour, with the number of stars used."""
    from photofeh.io.real_samples import reddening_per_unit

    out = {}
    for blue, red in COLOURS:
        k, n = reddening_per_unit(stars, (blue, red))
        out[f"{blue}-{red}"] = (k / (ZHANG_YUAN_2023[blue] - ZHANG_YUAN_2023[red]), n)
    return out


def main() -> None:
    from photofeh.io.presets import GREEN2020_EBV_PER_R
    from photofeh.io.real_samples import read_green2020

    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / (
        "shared/data/real/green2020_test_data_small.h5")
    result = factors(read_green2020(path))
    for colour, (f, n) in result.items():
        print(f"{colour:20s} {f:6.3f}  ({n} stars)")
    values = np.array([f for f, _ in result.values()])
    print(f"median {np.median(values):.3f}, range {values.min():.3f}-{values.max():.3f}; "
          f"adopted GREEN2020_EBV_PER_R = {GREEN2020_EBV_PER_R}")


if __name__ == "__main__":
    main()
