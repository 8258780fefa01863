"""From catalogue columns to network inputs: dereddening, colours, masks, normalisation.

A feature set is a list of names: ``"sdss_u-sdss_g"`` is a dereddened colour,
``"sdss_r"`` a dereddened magnitude, anything else a raw column (e.g.
``"parallax"``). A table of colours without magnitudes (the SEGUE colours of
``../shared/data/real``) may give a colour as a column of that name; it is used
where a band of it is absent. Rows lacking any feature are flagged, never given
a fake value: missing photometry is data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from photofeh.bands import BANDS, extinction_coefficient
from photofeh.errors import MissingColumnsError
from photofeh.io.readers import as_columns  # noqa: F401  (re-exported: tables in, columns out)

__all__ = ["DEFAULT_FEATURES", "Standardizer", "as_columns", "colour_column", "deredden", "feature_matrix",
           "required_columns"]

DEFAULT_FEATURES: tuple[str, ...] = (
    "sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z",
    "ps1_g-ps1_r", "ps1_r-ps1_i", "ps1_i-ps1_z", "ps1_z-ps1_y",
    "gaia_bp-gaia_rp", "gaia_g-gaia_rp",
    # Gaia parallax with its error, and one apparent magnitude: together they
    # carry the luminosity information that separates giants from dwarfs of
    # the same colour (colours alone barely do; see BENCHMARKS.md).
    "parallax", "parallax_error", "sdss_g",
)


def _bands_in(feature: str) -> list[str]:
    return [p for p in feature.split("-") if p in BANDS]


def colour_column(feature: str, available) -> bool:
    """True where the colour ``feature`` (``a-b``) is given as a column of its own and a band of it is not."""
    parts = feature.split("-")
    return (len(parts) == 2 and all(p in BANDS for p in parts) and feature in available
            and not all(p in available for p in parts))


def required_columns(features: Sequence[str], ebv_column: str = "ebv", deredden: bool = True,
                     available=None) -> list[str]:
    """Catalogue columns needed to compute ``features`` (E(B-V) only when dereddening). ``available``: the
    table's columns, where known: a colour given as a column (:func:`colour_column`) then needs that column
    instead of its two bands."""
    cols: list[str] = []
    for f in features:
        parts = f.split("-")
        if available is not None and colour_column(f, available):
            cols.append(f)
        elif all(p in BANDS for p in parts):
            cols += parts
        else:
            cols.append(f)
    if deredden and any(_bands_in(f) for f in features):
        cols.append(ebv_column)  # unless every band has an A_<band> column (see deredden)
    return list(dict.fromkeys(cols))


def deredden(table: Mapping[str, np.ndarray], bands: Sequence[str], ebv_column: str = "ebv",
             gaia_iterations: int = 3) -> dict[str, np.ndarray]:
    """Dereddened magnitudes m0 = m - R E(B-V) for ``bands``.

    R from :mod:`photofeh.bands` (Schlafly & Finkbeiner 2011 table 6 on the
    SFD scale; Casagrande et al. 2021 for Gaia, whose coefficient depends on
    the intrinsic BP-RP, found by fixed-point iteration from the observed one).
    A column ``A_<band>`` (extinction in magnitudes) takes precedence for its
    band: map archive extinction columns onto it deliberately, since e.g. the
    SDSS ``extinction_*`` use SFD98 coefficients 15-23% larger than SF11.
    """
    ebv = np.asarray(table[ebv_column], dtype=np.float64) if ebv_column in table else None

    def extinguished(b: str, coefficient) -> np.ndarray:
        if f"A_{b}" in table:
            return np.subtract(table[b], table[f"A_{b}"], dtype=np.float64)
        if ebv is None:
            raise MissingColumnsError(f"no {ebv_column!r} column and no A_{b} column to deredden {b}")
        # m - coefficient E(B-V) in float64, the float32 magnitude converted inside the subtraction (no copy)
        out = np.multiply(coefficient, ebv)
        return np.subtract(table[b], out, out=out, dtype=np.float64)

    out = {b: extinguished(b, BANDS[b].r_ebv) for b in bands if BANDS[b].survey != "gaia"}
    gaia = [b for b in bands if BANDS[b].survey == "gaia"]
    if gaia:
        observed = np.subtract(table["gaia_bp"], table["gaia_rp"], dtype=np.float64)
        x = observed
        if ebv is not None:
            for _ in range(gaia_iterations):
                x = observed - (extinction_coefficient("gaia_bp", x) - extinction_coefficient("gaia_rp", x)) * ebv
        for b in gaia:
            out[b] = extinguished(b, extinction_coefficient(b, x))
    return out


def feature_matrix(table: Mapping[str, np.ndarray], features: Sequence[str],
                   ebv_column: str = "ebv", deredden_bands: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Features as a float32 matrix and the mask of rows where all are finite.

    ``deredden_bands=False``: magnitudes and colours as observed, for a model that is given the reddening
    as an input and learns the extinction itself (when no E(B-V) on the SFD scale is at hand).
    A colour given as a column of its own (:func:`colour_column`) is used as it is, or dereddened with the
    difference of its bands' coefficients."""
    given = {f for f in features if colour_column(f, table)}
    bands = list(dict.fromkeys(b for f in features if f not in given for b in _bands_in(f)))
    missing = [c for c in required_columns(features, ebv_column, deredden_bands, table) if c not in table
               and not (c == ebv_column and all(f"A_{b}" in table for b in bands))]
    if missing:
        hint = (" (E(B-V) on the SFD scale: --sfd-dir with a local SFD map on build-training-set, merge-photometry "
                "and predict, SDSS extinction_* through the sdss_photoobj preset, or A_<band> columns)"
                if ebv_column in missing else "")
        raise MissingColumnsError(f"the catalogue lacks columns {missing} needed for features {list(features)}{hint}")
    if not deredden_bands:
        mag0 = {b: np.asarray(table[b], dtype=np.float64) for b in bands}
    else:
        mag0 = deredden(table, bands, ebv_column) if bands else {}
    n = len(next(iter(table.values()))) if table else 0
    X = np.empty((n, len(features)), np.float32, order="F")  # filled column by column, contiguously
    for j, f in enumerate(features):
        parts = f.split("-")
        if f in given:
            X[:, j] = _given_colour(table, f, ebv_column, deredden_bands)
        elif len(parts) == 2 and all(p in BANDS for p in parts):
            # computed in float64, rounded to float32 as it is stored (as an assignment would)
            np.subtract(mag0[parts[0]], mag0[parts[1]], out=X[:, j], casting="same_kind")
        elif f in BANDS:
            X[:, j] = mag0[f]
        else:
            X[:, j] = np.asarray(table[f], dtype=np.float64)
    return X, np.all(np.isfinite(X), axis=1)


def _given_colour(table: Mapping[str, np.ndarray], feature: str, ebv_column: str, deredden_bands: bool
                  ) -> np.ndarray:
    """A colour column, dereddened when asked: E(a-b) = A_a - A_b, from ``A_<band>`` columns or from the
    bands' coefficients times E(B-V). Gaia's coefficients depend on the intrinsic colour (Casagrande et al.
    2021): a Gaia colour is dereddened from its magnitudes only."""
    colour = np.asarray(table[feature], dtype=np.float64)
    if not deredden_bands:
        return colour
    excess = []
    for b in feature.split("-"):
        if f"A_{b}" in table:
            excess.append(np.asarray(table[f"A_{b}"], dtype=np.float64))
        elif BANDS[b].survey == "gaia":
            raise ValueError(f"the colour {feature} is given as a column without its magnitudes: Gaia extinction "
                             "depends on the intrinsic colour, so it is dereddened from the magnitudes only; give "
                             "the magnitudes, A_<band> columns, or use it as observed (deredden = false)")
        else:
            excess.append(BANDS[b].r_ebv * np.asarray(table[ebv_column], dtype=np.float64))
    return colour - (excess[0] - excess[1])


@dataclass
class Standardizer:
    """Zero-mean, unit-variance scaling, stored with the model."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        return cls(mean.astype(np.float64), np.where(std > 0, std, 1.0).astype(np.float64))

    def transform(self, x: np.ndarray, dtype=np.float32) -> np.ndarray:
        return ((x - self.mean) / self.std).astype(dtype)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(np.asarray(d["mean"], float), np.asarray(d["std"], float))
