"""Noise-aware training: each labelled star re-observed, fainter and noisier, as a survey would see it.

A network trained on the labelled stars' own photometry learns their noise, which is that of bright stars; a
survey's stars are fainter. With ``noise_aware = true`` the network is told every star's feature errors (their
logarithms are inputs beside the features), and in every epoch each training star is moved a random distance
farther away and observed again with the noise a survey has at its new magnitudes:

- a fade Delta (mag) is drawn per star, uniform between 0 and the fade that brings its ``noise_limit_band`` to
  ``noise_limit`` (a fraction ``noise_keep_fraction`` keeps its own photometry); every band gets fainter by
  Delta, the parallax smaller by 10^(-Delta/5): the same star farther away, so its labels stay true. Its
  extinction is kept (a real star farther away would lie behind more dust; the colours here are dereddened
  with the catalogue's E(B-V), whose error is not modelled);
- each band is observed again at its new magnitude: flux noise is added so that the relative flux error reaches
  the survey's at that magnitude (:class:`ErrorRelation`), the reported error is 1.0857 / (S/N) of the new
  measurement, and a band measured at S/N < 5 is not detected (NaN), as in the mock survey's
  :func:`photofeh.simulate.observe.observe_band`. A model that needs every feature (``missing = "require"``) is
  faded no further than all its bands stay detected; a masked model learns the lost bands as missing;
- with ``noise_error_scatter`` s > 0, each band's target error is its relation's times 10^(s z), z a standard
  normal drawn per star, band and epoch (the stars kept at their own photometry excepted): a survey's depth
  varies over the sky and from band to band, so one band may be noisier or quieter than the others imply, a
  combination that stars faded as a whole never show (bright mock stars with only their u errors doubled got a
  pull width of 1.24 from the default model without it; benchmarks/bench_domain.py);
- the parallax error grows to the survey's at the new Gaia G (:class:`ErrorRelation` of ``parallax_error``
  against G).

The survey's error relations are fitted to a catalogue's own (magnitude, error) pairs: by default the training
table's, or with ``noise_errors_from`` those of the catalogue the model is meant for. Where that catalogue's
stars never get faint enough to show how a band's error grows (its binned errors within a factor of 2), the band's
relation is that of Ivezic et al. 2019 (ApJ 873, 111, eq. 5) with the depth m5 and gamma of
:data:`photofeh.bands.BANDS` (the mock survey's). The validation stars are re-observed once (seeded), so the
checkpoint choice and the calibration of the uncertainties hold over the whole range of noise; the training
domain is measured on re-observed stars, and a star noisier than them is out of the domain. No sigma points
are needed at prediction time: one forward pass gives the estimate and its error.

The idea is the data augmentation of noise-aware photometric estimators (e.g. Leung & Bovy 2019, MNRAS 483,
3255, section 3 for astroNN's input uncertainties; Andrae et al. 2023, ApJS 267, 8, for XP spectra
re-observed at lower S/N); the implementation is this package's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from photofeh.bands import BANDS

__all__ = ["ErrorRelation", "fit_error_relations", "Reobserver", "error_inputs", "MAG_PER_REL_FLUX",
           "DETECTION_SNR", "noise_columns"]

MAG_PER_REL_FLUX = 2.5 / np.log(10.0)  # 1.0857: d(mag) per unit relative flux error (Pogson)
DETECTION_SNR = 5.0  # a band measured at lower S/N is not reported (as in the mock survey)
PIVOT_MAG = 20.0  # x = 10^(0.4 (m - PIVOT_MAG)) in the error relations
GROWTH_FACTOR = 2.0  # a catalogue whose binned errors span less than this factor does not show their growth
BIN_WIDTH = 0.25  # mag: the relation is fitted to the median squared error in bins this wide
MIN_PER_BIN = 10
PARALLAX_MAG = "gaia_g"  # the parallax error is a function of G


@dataclass
class ErrorRelation:
    """sigma^2(m) = floor^2 + a x + b x^2, x = 10^(0.4 (m - 20)): a floor, photon noise of the source (a) and of
    the sky (b), the form of Ivezic et al. 2019 eq. 5 with free coefficients (all >= 0)."""

    floor2: float
    a: float
    b: float
    source: str  # "catalogue" (fitted) or "bands" (Ivezic 2019 with the band's m5, gamma)

    def sigma(self, mag: np.ndarray) -> np.ndarray:
        x = np.power(10.0, 0.4 * (np.asarray(mag, float) - PIVOT_MAG))
        return np.sqrt(self.floor2 + self.a * x + self.b * x * x)

    @classmethod
    def fit(cls, mag: np.ndarray, err: np.ndarray, band: str | None = None) -> ErrorRelation:
        """Non-negative least squares on the median squared error per 0.25-mag bin, each bin weighted by the
        inverse of its value (a relative fit: bright and faint bins count alike)."""
        from scipy.optimize import nnls

        ok = np.isfinite(mag) & np.isfinite(err) & (err > 0)
        mag, err = np.asarray(mag, float)[ok], np.asarray(err, float)[ok]
        bins = np.floor(mag / BIN_WIDTH).astype(int)
        _, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
        centres, values = [], []
        for k in np.flatnonzero(counts >= MIN_PER_BIN):
            in_bin = inverse == k
            centres.append(np.median(mag[in_bin]))
            values.append(np.median(err[in_bin] ** 2))
        centres, values = np.asarray(centres), np.asarray(values)
        # a catalogue whose errors barely grow over its magnitudes (all at the floor) cannot say how they grow
        # beyond them: the band's tabulated survey relation where photofeh.bands has one
        flat = len(values) < 3 or values.max() < GROWTH_FACTOR**2 * values.min()
        if band is not None and flat and _has_band_model(band):
            return cls.from_band(band)
        if len(values) < 3:
            raise ValueError(f"too few stars with an error ({mag.size}) to fit an error relation")
        x = np.power(10.0, 0.4 * (centres - PIVOT_MAG))
        design = np.column_stack([np.ones_like(x), x, x * x]) / values[:, None]
        coef, _ = nnls(design, np.ones_like(values))
        return cls(float(coef[0]), float(coef[1]), float(coef[2]), "catalogue")

    @classmethod
    def from_band(cls, band: str) -> ErrorRelation:
        """Ivezic et al. 2019 eq. 5 with the band's m5 and gamma (:data:`photofeh.bands.BANDS`), rewritten at the
        pivot: (0.04 - gamma) X + gamma X^2 with X = x 10^(0.4 (20 - m5))."""
        if not _has_band_model(band):
            raise ValueError(f"{band}: its catalogue does not show how its errors grow and photofeh.bands has no "
                             "error model for it: give noise_errors_from a catalogue that reaches the survey limit")
        b = BANDS[band]
        s = 10.0 ** (0.4 * (PIVOT_MAG - b.m5))
        return cls(b.sigma_sys**2, (0.04 - b.gamma) * s, b.gamma * s * s, "bands")

    def to_dict(self) -> dict:
        return {"floor2": self.floor2, "a": self.a, "b": self.b, "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping) -> ErrorRelation:
        return cls(float(d["floor2"]), float(d["a"]), float(d["b"]), str(d["source"]))


def _catalogue_limit(band: str) -> float:
    """The faintest magnitude a band's catalogue reports at any S/N: Gaia's (photofeh.bands m5), else none."""
    b = BANDS.get(band)
    return float(b.m5) if b is not None and b.survey == "gaia" else np.inf


def _has_band_model(band: str) -> bool:
    b = BANDS.get(band)
    return b is not None and bool(np.isfinite(b.m5)) and b.gamma > 0


def noise_columns(features: Sequence[str]) -> tuple[list[str], bool]:
    """The bands whose magnitudes enter ``features`` and whether the parallax does."""
    bands = [p for f in features for p in f.split("-") if p in BANDS]
    return list(dict.fromkeys(bands)), any(f in ("parallax", "parallax_error") for f in features)


def fit_error_relations(cols: Mapping[str, np.ndarray], features: Sequence[str]) -> dict[str, ErrorRelation]:
    """One relation per band of ``features`` (key: the band) and, where the parallax is a feature, one for
    ``parallax_error`` against G (key: ``"parallax"``), fitted to the columns ``cols``."""
    bands, parallax = noise_columns(features)
    out = {}
    for b in bands:
        if b not in cols or f"{b}_err" not in cols:
            raise ValueError(f"noise-aware training needs the magnitudes and errors of every band of the features: "
                             f"{b} or {b}_err missing (a colour given as a column cannot be re-observed)")
        out[b] = ErrorRelation.fit(cols[b], cols[f"{b}_err"], band=b)
    if parallax:
        if PARALLAX_MAG not in cols or "parallax_error" not in cols:
            raise ValueError("noise-aware training with the parallax needs gaia_g and parallax_error (the parallax "
                             "error is re-drawn as a function of G)")
        out["parallax"] = ErrorRelation.fit(cols[PARALLAX_MAG], cols["parallax_error"])
    return out


def error_inputs(X_err: np.ndarray) -> np.ndarray:
    """The network's view of the errors: log10 of each feature's error (NaN where unknown)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(np.where(X_err > 0, X_err, np.nan)).astype(np.float32)


class Reobserver:
    """Draws re-observations of a fixed set of labelled stars (module docstring)."""

    def __init__(self, cols: Mapping[str, np.ndarray], features: Sequence[str], relations: Mapping[str, ErrorRelation],
                 limit_band: str, limit: float, keep_fraction: float, ebv_column: str, deredden: bool,
                 require_all: bool, error_scatter: float = 0.0):
        bands, parallax = noise_columns(features)
        if limit_band not in bands:
            raise ValueError(f"noise_limit_band {limit_band!r} is not a band of the features ({', '.join(bands)})")
        self.features, self.bands, self.parallax = list(features), bands, parallax
        self.relations = dict(relations)
        self.limit_band, self.limit, self.keep_fraction = limit_band, float(limit), float(keep_fraction)
        self.ebv_column, self.deredden, self.require_all = ebv_column, deredden, require_all
        self.error_scatter = float(error_scatter)
        keep = set(bands) | {f"{b}_err" for b in bands} | {ebv_column} | {f"A_{b}" for b in bands}
        keep |= {f for f in features if f not in BANDS and "-" not in f}  # other raw columns, as they are
        if parallax:
            keep |= {"parallax", "parallax_error", PARALLAX_MAG}
        self.cols = {k: np.asarray(v) for k, v in cols.items() if k in keep}
        # the magnitude at which each band's error reaches S/N = 5: how far a star may fade and keep it
        # (or where its catalogue stops whatever the S/N: Gaia at G ~ 21, photofeh.bands' m5 for Gaia, as the mock
        # survey has it; Gaia Collaboration, Brown et al. 2021, A&A 649, A1)
        grid = np.arange(10.0, 30.0, 0.01)
        self.detection_mag = {}
        for b in bands:
            s = self.relations[b].sigma(grid)
            over = np.flatnonzero(s > MAG_PER_REL_FLUX / DETECTION_SNR)
            self.detection_mag[b] = min(float(grid[over[0]]) if over.size else float(grid[-1]), _catalogue_limit(b))

    def fades(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Delta (mag) per star: uniform up to the survey limit in the limit band (or, for a model that needs
        every feature, up to the first band that would drop below S/N = 5), 0 for ``keep_fraction`` of them."""
        ref = np.asarray(self.cols[self.limit_band], float)[rows]
        room = self.limit - ref
        if self.require_all:
            for b in self.bands:
                room = np.minimum(room, self.detection_mag[b] - np.asarray(self.cols[b], float)[rows])
        room = np.clip(np.nan_to_num(room, nan=0.0), 0.0, None)
        fade = rng.uniform(0.0, 1.0, rows.size) * room
        fade[rng.uniform(0.0, 1.0, rows.size) < self.keep_fraction] = 0.0
        return fade

    def columns(self, rows: np.ndarray, rng: np.random.Generator, fade: np.ndarray | None = None
                ) -> dict[str, np.ndarray]:
        """The columns of stars ``rows`` re-observed: faded (by :meth:`fades`, or ``fade`` where given), noisier,
        bands measured at S/N < 5 lost. A band without a reported error is taken to have its relation's."""
        fade = self.fades(rows, rng) if fade is None else np.broadcast_to(np.asarray(fade, float), rows.shape)
        out = {k: v[rows] for k, v in self.cols.items()}
        moved = fade > 0
        for b in self.bands:
            mag, err = np.asarray(out[b], float) + fade, np.asarray(out[f"{b}_err"], float)
            err = np.where(np.isfinite(err) & (err > 0), err, self.relations[b].sigma(mag - fade))
            rel_now = err / MAG_PER_REL_FLUX  # the relative flux error the measurement already carries
            # a star kept at its own photometry (fade 0) keeps its measurement, even one quieter than the relation
            target = np.where(moved, self.relations[b].sigma(mag) / MAG_PER_REL_FLUX, 0.0)
            if self.error_scatter > 0:  # this band's depth where the star lies: its error about the relation
                target = target * 10.0 ** (self.error_scatter * rng.standard_normal(rows.size))  # kept stars' stays 0
                if self.require_all:  # its fades keep every band at an expected S/N >= 5: so does the scatter
                    target = np.minimum(target, 1.0 / DETECTION_SNR)
            rel_new = np.maximum(target, rel_now)
            extra = np.sqrt(np.clip(rel_new**2 - rel_now**2, 0.0, None))
            flux = 1.0 + extra * rng.standard_normal(rows.size)  # in units of the faded measured flux
            if self.require_all:  # faded no further than an expected S/N of 5: every band kept (a 5-sigma dip
                flux = np.maximum(flux, 1.0 / DETECTION_SNR)  # below zero flux, ~1e-7 of draws, held at S/N 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                snr = flux / rel_new
                reported = (snr >= DETECTION_SNR) & (mag <= _catalogue_limit(b))
                detected = np.isfinite(mag) if self.require_all else reported
                out[b] = np.where(detected, mag - 2.5 * np.log10(np.where(flux > 0, flux, np.nan)), np.nan)
                out[f"{b}_err"] = np.where(detected, MAG_PER_REL_FLUX / snr, np.nan)
        if self.parallax:
            shrink = np.power(10.0, -0.2 * fade)
            plx = np.asarray(out["parallax"], float) * shrink
            g_faded = np.asarray(self.cols[PARALLAX_MAG], float)[rows] + fade
            err = np.asarray(out["parallax_error"], float)
            err = np.where(np.isfinite(err) & (err > 0), err, self.relations["parallax"].sigma(g_faded - fade)) * shrink
            err_new = np.maximum(self.relations["parallax"].sigma(g_faded), err)
            plx = plx + np.sqrt(np.clip(err_new**2 - err**2, 0.0, None)) * rng.standard_normal(rows.size)
            seen = self.require_all | (g_faded <= _catalogue_limit(PARALLAX_MAG))  # no astrometry beyond Gaia's G
            out["parallax"], out["parallax_error"] = np.where(seen, plx, np.nan), np.where(seen, err_new, np.nan)
        return out

    def draw(self, rows: np.ndarray, rng: np.random.Generator, fade: np.ndarray | float | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Raw features and their errors of stars ``rows``, re-observed (``fade``: as :meth:`columns`)."""
        from photofeh.model.domain import feature_errors
        from photofeh.model.features import feature_matrix

        cols = self.columns(rows, rng, fade)
        X, _ = feature_matrix(cols, self.features, self.ebv_column, self.deredden)
        return X, feature_errors(cols, self.features).astype(np.float32)


MAX_ERROR_STARS = 2_000_000  # rows of a noise_errors_from catalogue read for the fit (its first ones)


def error_relations_for(cols: Mapping[str, np.ndarray], features: Sequence[str], errors_from: str = ""
                        ) -> dict[str, ErrorRelation]:
    """The survey's error relations: fitted to the catalogue ``errors_from`` (its first two million rows, schema
    column names) when given, else to the training columns ``cols``."""
    if not errors_from:
        return fit_error_relations(cols, features)
    from photofeh.io.readers import iter_table, table_columns

    bands, parallax = noise_columns(features)
    wanted = [*bands, *(f"{b}_err" for b in bands), *(["parallax_error", PARALLAX_MAG] if parallax else [])]
    present = set(table_columns(errors_from))
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ValueError(f"noise_errors_from {errors_from}: lacks columns {missing} (magnitudes and errors in the "
                         "project's schema names)")
    chunks, rows = [], 0
    for chunk in iter_table(errors_from, columns=list(dict.fromkeys(wanted)), chunk_size=500_000):
        chunks.append(chunk)
        rows += len(next(iter(chunk.values())))
        if rows >= MAX_ERROR_STARS:
            break
    table = {c: np.concatenate([np.asarray(ch[c], float) for ch in chunks]) for c in dict.fromkeys(wanted)}
    return fit_error_relations(table, features)
