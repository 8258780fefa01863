"""The real development samples (../shared/data/real): readers into the schema and the one fixed split.

``green2020_test_data_small.h5`` (Green et al. 2021, ApJ 907, 57: 10,000 stars with Gaia, PS1, 2MASS and
WISE photometry, LAMOST/APOGEE/GALAH labels and parallaxes) is the development set for real accuracy. Every
real-data benchmark uses :func:`green2020_test_mask`: 30% of the stars, chosen by a seeded hash of their
``source_id`` (itself a hash of their values), so the split does not depend on row order or chunking.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["read_green2020", "green2020_test_mask", "hashed_test_mask", "reddening_per_unit", "GREEN2020_FEATURES",
           "GREEN2020_SPLIT_SEED", "GREEN2020_TEST_FRACTION"]

GREEN2020_SPLIT_SEED = 20201125
GREEN2020_TEST_FRACTION = 0.30
# Observed Gaia and PS1 colours (the sample's reddening is not an SFD E(B-V): models take it as an input,
# config deredden = false), one apparent magnitude, the parallax and the reddening.
GREEN2020_FEATURES = ["gaia_bp-gaia_rp", "gaia_g-gaia_rp", "ps1_g-ps1_r", "ps1_r-ps1_i", "ps1_i-ps1_z",
                      "ps1_z-ps1_y", "gaia_g", "parallax", "parallax_error", "reddening_b19"]


def read_green2020(path: str | os.PathLike):
    """The sample as a pandas DataFrame in schema names (preset ``green2020``), validated."""
    import pandas as pd

    from photofeh.io.presets import apply_preset
    from photofeh.io.readers import read_columns

    cols, _ = apply_preset(read_columns(path), "green2020", str(path))
    return pd.DataFrame(cols)


def green2020_test_mask(source_id: np.ndarray) -> np.ndarray:
    """True for the 30% test stars: a SplitMix64 hash of (source_id, seed), the same on every machine
    (``photofeh train --split-seed 20201125`` with a test fraction of 0.30 chooses the same stars)."""
    return hashed_test_mask(source_id, GREEN2020_SPLIT_SEED, GREEN2020_TEST_FRACTION)


def hashed_test_mask(source_id: np.ndarray, seed: int, fraction: float) -> np.ndarray:
    """True for a ``fraction`` of the stars (in steps of 1e-4) chosen by a SplitMix64 hash (Steele et al. 2014)
    of (source_id, seed): the same stars whatever the row order, the chunking or the machine. Integer ids are
    hashed as they are; other ids (text) through a BLAKE2b digest of their text."""
    ids = np.asarray(source_id)
    if ids.dtype.kind not in "iu":
        import hashlib

        ids = np.array([int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "big")
                        for v in ids.tolist()], np.uint64)
    x = (ids.astype(np.uint64) ^ np.uint64(seed)) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(10_000)).astype(np.int64) < round(fraction * 10_000)


def reddening_per_unit(stars, colour: tuple[str, str], reddening: str = "reddening_b19",
                       teff_range: tuple[float, float] = (4000.0, 7000.0)) -> tuple[float, int]:
    """Colour excess per unit of a reddening column, measured from stars with spectroscopic labels.

    The colour is modelled as a polynomial (total degree 4) in Teff, log g and [Fe/H] plus ``k`` times the
    reddening, fitted by least squares with 4-sigma clipping (four passes); stars whose reddening is the
    sample's default are left out. Returns ``(k, stars used)``. Dividing ``k`` by the colour's published
    excess per unit SFD E(B-V) gives the SFD E(B-V) of one unit of the reddening column.
    """
    blue, red = colour
    ok = ~np.asarray(stars.get("reddening_is_default", np.zeros(len(stars), bool)), bool)
    ok &= np.asarray(stars["teff_spec"].between(*teff_range), bool)
    te = (stars["teff_spec"].to_numpy(float) - 5500.0) / 1000.0
    lg = stars["logg_spec"].to_numpy(float) - 3.5
    fe = stars["feh_spec"].to_numpy(float) + 0.3
    terms = [te**a * lg**b * fe**c for a in range(5) for b in range(5) for c in range(3) if a + b + c <= 4]
    X = np.column_stack([*terms, stars[reddening].to_numpy(float)])
    y = stars[blue].to_numpy(float) - stars[red].to_numpy(float)
    finite = ok & np.isfinite(y) & np.all(np.isfinite(X), axis=1)
    use = finite
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(X[use], y[use], rcond=None)
        res = y - X @ coef
        sigma = 1.4826 * np.median(np.abs(res[use] - np.median(res[use])))
        use = finite & (np.abs(res) < 4 * sigma)
    return float(coef[-1]), int(use.sum())
