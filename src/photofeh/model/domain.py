"""The training domain: where a model has seen stars, and how far a star to predict lies outside it.

A network extrapolates without warning: a star unlike every training star (a garbled magnitude, an object that
is not a star, photometry far noisier than any labelled star's) still gets a number and a small error. The
model therefore stores its domain, measured on the training stars, and every prediction carries a score:

- per feature, the 0.05-99.95% range of the training values, and the same along the principal axes of the
  standardised features (the stellar locus is thin in colour space: a star can have every colour in range
  yet sit off the locus, which only the minor axes see; Pearson 1901 / any PCA text). The score is the
  largest excess beyond a range in units of that axis' robust sigma (0 inside). Principal axes are used only
  for stars with every feature measured; stars with missing features are scored on their measured ones;
- per feature, the largest error among the training stars (99.9th percentile): errors beyond it are
  propagated into the uncertainties (below), and a star whose errors exceed it ``ERROR_LIMIT_FACTOR`` (2)
  times is noisier than anything the model learned from;
- per label, the training range: an estimate beyond it by more than 3 of its own sigmas is an extrapolation;
- for a noise-aware model (trained on re-observed stars, whose noisy colours spread far beyond the stellar
  locus), the locus itself (:class:`StellarLocus`; of all colours and of each survey's): the principal axes of
  the colours of the training stars as measured, and a star's excess beyond their range less
  ``LOCUS_ERROR_ALLOWANCE`` of its own error along each axis. The ranges above, fitted on the re-observed
  stars, accept a bright star whose u is off by a magnitude (26-32% of such mock stars were in the domain); an
  allowance scaled by each star's own errors keeps faint stars in and flags it (benchmarks/bench_domain.py);
- for a noise-aware model, the pattern of its errors (:class:`ErrorPattern`): each colour's log error as the
  re-observed training stars have it given their colours and the other colours' errors (a star faded as a whole
  has errors that follow one another). A star whose one band is far noisier, or quieter, than the rest imply
  (more than ``ERROR_PATTERN_TOLERANCE``, a factor 2, beyond the training range) was never met: the network's
  sigma for it is an extrapolation (bright mock stars with u errors of 0.3 mag: a pull width of 1.9). A masked
  model checks each survey's pattern only for stars with every colour of that survey (as its loci).

``in_domain`` is false when any of them says so. ``map`` and ``mdf`` leave such stars out by default and
count them. Thresholds (``SCORE_LIMIT``) are set so that about 0.5% of in-domain validation stars are flagged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["TrainingDomain", "StellarLocus", "ErrorPattern", "feature_errors", "colour_features", "SCORE_LIMIT",
           "LABEL_SIGMAS", "ERROR_LIMIT_FACTOR", "LOCUS_ERROR_ALLOWANCE", "LOCUS_MIN_STARS", "ERROR_PATTERN_TOLERANCE"]

RANGE_QUANTILES = (0.0005, 0.9995)
ERROR_QUANTILE = 0.999
SCORE_LIMIT = 1.0  # robust sigmas beyond the training range
# A feature error above the training stars' largest is propagated (sigma points over the excess); above this
# many times it, the star's photometry is noisier than anything the model learned from: out of the domain.
ERROR_LIMIT_FACTOR = 2.0
LABEL_SIGMAS = 3.0  # an estimate this many of its sigmas beyond the training labels is an extrapolation
# A star's colours may sit this many of its own errors (projected on each principal axis of the measured locus)
# beyond the locus' range before the excess counts. On the mock (default model, 6,000 labelled test stars and
# 11,709 survey-depth stars with every feature; scratch before bench_domain): 2 flags 88% of the stars whose u is
# off by 1 mag, 3 flags 70%, 4 flags 46%, and 0.0% of the clean test stars at each; the survey stars it flags
# (1.9% at 2) are nearly all flagged already by the other checks (4.8% out of the domain either way).
LOCUS_ERROR_ALLOWANCE = 2.0
# The projection treats the colours' errors as independent. Colours that share a band are not (u-g and g-r share g:
# covariance -sigma_g^2); on the default features a reviewer measured the true error along the locus' thinnest axes
# at 0.61-0.65 of the projected one and 1.14 along two others (4,000 mock stars), so the allowance is 1.2-2.3 true
# sigmas by axis. The exact projection needs each band's error, which the scoring does not receive today.
# Fewest training stars with every colour of a locus for it to be fitted: its 0.05-99.95% ranges from fewer flag
# good stars (scored on a 10-colour Gaussian: 8% of new stars flagged from 60 training stars, 0.9% from 200,
# 0.08% from 1,000).
LOCUS_MIN_STARS = 1000
# A colour's log10 error may stray this far (a factor 2) beyond the 0.05-99.95% range of the training stars'
# residuals about their error pattern before it counts: the re-observation draws each band's error from one
# relation with magnitude, where real catalogues' depth varies over the sky (2MASS J, H, Ks in green2020 scatter
# 0.03-0.05 dex at fixed magnitude beyond the measurement's own; its Gaia and PS1 errors carry a 0.02 mag floor
# that hides theirs). On the mock (benchmarks/bench_domain.py, bench_noise_aware.py; default model): 99% of the
# bright stars given u errors of 0.3 mag flagged, 38% of those whose u errors are tripled, 0.7% doubled; of the
# survey-depth stars with every feature, 37,408 in the domain (37,407 before the check, another training run).
ERROR_PATTERN_TOLERANCE = float(np.log10(2.0))
SCORE_BLOCK = 16_384  # stars per block of TrainingDomain.score: its temporaries stay in the core's cache


def feature_errors(table: Mapping[str, np.ndarray], features: Sequence[str]) -> np.ndarray:
    """1-sigma errors of the features where the table has them (NaN elsewhere): a colour's from its two bands
    (independent errors) or, for a colour given as a column, ``<colour>_err``; a magnitude's own, ``parallax``
    from ``parallax_error``."""
    from photofeh.bands import BANDS

    n = len(next(iter(table.values()))) if table else 0
    # one contiguous row per feature, returned transposed: writing the columns of a C-ordered (n, F) array
    # strode through memory, and np.hypot's overflow care cost 1.5x a plain sqrt (errors are far from it)
    out = np.full((len(features), n), np.nan)
    squares: dict[str, np.ndarray] = {}  # a band's squared error, once for the two colours it is in

    def err(name: str):
        col = "parallax_error" if name == "parallax" else f"{name}_err"
        return np.asarray(table[col], float) if col in table else None

    def square(band: str):
        if band not in squares:
            col = f"{band}_err"
            squares[band] = np.square(table[col], dtype=np.float64) if col in table else None  # e * e, float64
        return squares[band]

    for j, f in enumerate(features):
        parts = f.split("-")
        if len(parts) == 2 and all(p in BANDS for p in parts):
            a, b = square(parts[0]), square(parts[1])
            if a is not None and b is not None:
                np.sqrt(np.add(a, b, out=out[j]), out=out[j])
            elif f in table and f"{f}_err" in table:  # a colour given as a column, with its error
                out[j] = np.asarray(table[f"{f}_err"], float)
        elif f in BANDS or f == "parallax":
            e = err(f)
            if e is not None:
                out[j] = e
    return out.T


def colour_features(features: Sequence[str]) -> list[int]:
    """Indices of the features that are colours of two bands (the stellar locus' coordinates)."""
    from photofeh.bands import BANDS

    return [j for j, f in enumerate(features) if len(f.split("-")) == 2 and all(b in BANDS for b in f.split("-"))]


def _feature_rows(features: np.ndarray) -> slice | np.ndarray:
    """The rows of a transposed feature block that hold ``features``: a slice where they are consecutive (every
    colour of a model), so that selecting them is a view, not a gathered copy."""
    f = np.asarray(features)
    consecutive = f.size > 0 and np.array_equal(f, np.arange(f[0], f[0] + f.size))
    return slice(int(f[0]), int(f[0]) + f.size) if consecutive else f


def _robust_sigma(x: np.ndarray) -> float:
    q25, q75 = np.percentile(x, [25, 75])
    return float(max((q75 - q25) / 1.349, 1e-6))


@dataclass(frozen=True, eq=False)
class StellarLocus:
    """The locus of some colour features of training stars as measured: their centre and robust scale, the
    principal axes of the standardised colours and the 0.05-99.95% ranges along them (and robust sigmas).
    Frozen: the float32 constants and feature rows the scoring uses are made once from these fields."""

    features: np.ndarray
    centre: np.ndarray
    scale: np.ndarray
    axes: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    pc_scale: np.ndarray

    def __post_init__(self) -> None:
        import torch

        def column(v):
            return np.asarray(v, np.float32)[:, None]

        object.__setattr__(self, "_rows", _feature_rows(self.features))
        axes = np.asarray(self.axes, np.float32)
        object.__setattr__(self, "_f32", (column(self.centre), column(1.0 / self.scale), torch.from_numpy(axes),
                                          torch.from_numpy(axes**2), column(self.lo), column(self.hi),
                                          column(1.0 / self.pc_scale)))

    @classmethod
    def fit(cls, measured: np.ndarray, features: np.ndarray) -> StellarLocus | None:
        """None where fewer than :data:`LOCUS_MIN_STARS` training stars have every one of the colours."""
        C = measured[:, features]
        C = C[np.all(np.isfinite(C), axis=1)]
        if len(C) < LOCUS_MIN_STARS:
            return None
        centre = np.median(C, axis=0)
        scale = np.array([_robust_sigma(C[:, j]) for j in range(C.shape[1])])
        z = (C - centre) / scale
        _, _, axes = np.linalg.svd(z - z.mean(0), full_matrices=False)
        pcs = z @ axes.T
        lo, hi = np.quantile(pcs, RANGE_QUANTILES, axis=0)
        return cls(features, centre, scale, axes, lo, hi, np.array([_robust_sigma(p) for p in pcs.T]))

    def score_block(self, XT: np.ndarray, ET: np.ndarray, out: np.ndarray) -> None:
        """Each star's largest excess of its colours beyond the ranges, less :data:`LOCUS_ERROR_ALLOWANCE` times
        its error along each principal axis (its colour errors taken as independent: an approximation for colours
        that share a band, see the constant), in robust sigmas of that axis; 0 inside, and for stars missing one
        of the colours or its error (every projection NaN, which the maximum skips). For one block of
        :meth:`TrainingDomain.score`'s transposed features and errors (one row per feature), folded into ``out``
        by its maximum: float32, the axes by torch's matrix product, as the ranges are scored (a row-wise float64
        form cost as much as the network's forward pass)."""
        import torch

        f32 = np.float32
        centre, inv_scale, axes, axes2, lo, hi, inv_pc = self._f32
        rows = self._rows
        z = XT[rows] - centre
        z *= inv_scale
        pcs = torch.mm(axes, torch.from_numpy(z)).numpy()
        e = ET[rows] * inv_scale
        np.square(e, out=e)
        along = torch.mm(axes2, torch.from_numpy(e)).numpy()  # each star's error variance along each axis
        np.sqrt(along, out=along)
        excess = np.subtract(lo, pcs)
        np.subtract(pcs, hi, out=pcs)
        np.maximum(excess, pcs, out=excess)
        excess -= f32(LOCUS_ERROR_ALLOWANCE) * along
        excess *= inv_pc
        np.fmax(out, np.fmax.reduce(excess, axis=0, initial=0.0), out=out)

    def to_dict(self) -> dict:
        """JSON-friendly; ``error_allowance`` is written for the reader only (as the domain's ``score_limit``):
        a model is scored with the package's :data:`LOCUS_ERROR_ALLOWANCE`."""
        return {"features": [int(j) for j in self.features], "centre": self.centre.tolist(),
                "scale": self.scale.tolist(), "axes": self.axes.tolist(), "lo": self.lo.tolist(),
                "hi": self.hi.tolist(), "pc_scale": self.pc_scale.tolist(), "error_allowance": LOCUS_ERROR_ALLOWANCE}

    @classmethod
    def from_dict(cls, d: dict) -> StellarLocus:
        """The locus :meth:`to_dict` wrote."""
        k = len(d["features"])
        return cls(np.array(d["features"], int), *(np.array(d[key], float) for key in ("centre", "scale")),
                   np.array(d["axes"], float).reshape(-1, k), *(np.array(d[key], float) for key in ("lo", "hi",
                                                                                                    "pc_scale")))


@dataclass(frozen=True, eq=False)
class ErrorPattern:
    """How a star's colour errors follow one another on the re-observed training stars: for each colour, its
    log10 error fitted (least squares) on the star's colours and the other colours' log10 errors, and the
    0.05-99.95% range of the residuals. Stored as one matrix, residuals = ``matrix`` @ [1, colours, log10 errors]
    (each row the colour's own log error less its fit), so that the scoring is one matrix product per block."""

    features: np.ndarray
    matrix: np.ndarray  # (k, 1 + 2k)
    lo: np.ndarray
    hi: np.ndarray

    def __post_init__(self) -> None:
        import torch

        object.__setattr__(self, "_rows", _feature_rows(self.features))
        object.__setattr__(self, "_f32", (torch.from_numpy(np.ascontiguousarray(self.matrix, np.float32)),
                                          np.asarray(self.lo, np.float32)[:, None],
                                          np.asarray(self.hi, np.float32)[:, None]))

    @classmethod
    def fit(cls, X: np.ndarray, X_err: np.ndarray, features: np.ndarray) -> ErrorPattern | None:
        """From training inputs ``X`` and errors ``X_err`` (re-observed); None where fewer than
        :data:`LOCUS_MIN_STARS` stars have every one of the colours and their errors, or where a colour's error
        does not vary among them (a pattern cannot be learned from one value)."""
        C = np.asarray(X, float)[:, features]
        with np.errstate(divide="ignore", invalid="ignore"):
            L = np.log10(np.asarray(X_err, float)[:, features])
        ok = np.all(np.isfinite(C), axis=1) & np.all(np.isfinite(L), axis=1)
        C, L = C[ok], L[ok]
        k = len(features)
        if len(C) < LOCUS_MIN_STARS or k < 2 or np.ptp(L, axis=0).min() < 0.01:  # too few, or errors that never vary
            return None
        design = np.column_stack([np.ones(len(C)), C, L])
        matrix = np.zeros((k, 1 + 2 * k))
        for j in range(k):
            regressors = [i for i in range(1 + 2 * k) if i != 1 + k + j]  # all but the colour's own error
            coef, *_ = np.linalg.lstsq(design[:, regressors], L[:, j], rcond=None)
            matrix[j, regressors] = -coef
            matrix[j, 1 + k + j] = 1.0
        lo, hi = np.quantile(design @ matrix.T, RANGE_QUANTILES, axis=0)
        return cls(np.asarray(features, int), matrix, lo, hi)

    def score_block(self, XT: np.ndarray, ET: np.ndarray, out: np.ndarray) -> None:
        """Each star's largest residual beyond the training range, in units of :data:`ERROR_PATTERN_TOLERANCE`
        (a score above ``SCORE_LIMIT`` = 1: an error more than a factor 2 beyond what the training stars had with
        such colours and other errors); 0 inside, and for stars missing a colour or its error (NaN, 0 or negative:
        unknown, as :func:`photofeh.model.noise.error_inputs` takes it; the NaN is skipped by the maximum). One
        block of :meth:`TrainingDomain.score`'s transposed features and errors, folded into ``out`` by its
        maximum."""
        import torch

        matrix, lo, hi = self._f32
        rows, k = self._rows, len(self.features)
        design = np.empty((matrix.shape[1], XT.shape[1]), np.float32)
        design[0] = 1.0
        design[1:1 + k] = XT[rows]
        logs = design[1 + k:]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.log10(ET[rows], out=logs)
        logs[np.isneginf(logs)] = np.nan  # an error of 0 is unknown, as the network's inputs take it (not a flag)
        resid = torch.mm(matrix, torch.from_numpy(design)).numpy()
        excess = np.subtract(lo, resid)
        np.subtract(resid, hi, out=resid)
        np.maximum(excess, resid, out=excess)
        excess *= np.float32(1.0 / ERROR_PATTERN_TOLERANCE)
        np.fmax(out, np.fmax.reduce(excess, axis=0, initial=0.0), out=out)

    def to_dict(self) -> dict:
        """JSON-friendly; ``tolerance_dex`` is written for the reader only (a model is scored with the package's
        :data:`ERROR_PATTERN_TOLERANCE`)."""
        return {"features": [int(j) for j in self.features], "matrix": self.matrix.tolist(), "lo": self.lo.tolist(),
                "hi": self.hi.tolist(), "tolerance_dex": ERROR_PATTERN_TOLERANCE}

    @classmethod
    def from_dict(cls, d: dict) -> ErrorPattern:
        """The pattern :meth:`to_dict` wrote."""
        return cls(np.array(d["features"], int), np.array(d["matrix"], float), np.array(d["lo"], float),
                   np.array(d["hi"], float))


@dataclass
class TrainingDomain:
    """Ranges of the training features, of their principal axes, of their errors and of the labels."""

    lo: np.ndarray
    hi: np.ndarray
    scale: np.ndarray
    centre: np.ndarray
    axes: np.ndarray  # (F, F) principal axes of the standardised, fully measured training features
    pc_lo: np.ndarray
    pc_hi: np.ndarray
    pc_scale: np.ndarray
    error_max: np.ndarray  # per feature, NaN where the training table had no error
    label_lo: np.ndarray
    label_hi: np.ndarray
    # the measured stellar loci (noise-aware models; none otherwise): all colours, and each survey's
    loci: list[StellarLocus] = field(default_factory=list)
    # the error patterns (noise-aware models): of all colours, and each survey's
    error_patterns: list[ErrorPattern] = field(default_factory=list)

    @classmethod
    def fit(cls, X: np.ndarray, X_err: np.ndarray, y: np.ndarray, measured: np.ndarray | None = None,
            colours: Sequence[int] = (), groups: Sequence[str] | None = None) -> TrainingDomain:
        """The domain of training features ``X`` (errors ``X_err``) and labels ``y``; with ``measured`` (the same
        stars' features as measured, for a model trained on re-observed ones) also the loci of its ``colours``
        (feature indices): all of them, and those of each survey (``groups``: every feature's, as
        :func:`photofeh.model.missing.feature_groups` names them), so that a star missing a survey, which a
        masked model predicts, is still held to the loci of the surveys it has. The same sets get the error
        patterns of ``X`` and ``X_err`` (then the re-observed inputs and their errors)."""
        X = np.asarray(X, float)
        F = X.shape[1]
        lo, hi, scale = np.full(F, -np.inf), np.full(F, np.inf), np.ones(F)
        for j in range(F):
            v = X[np.isfinite(X[:, j]), j]
            if v.size >= 10:
                lo[j], hi[j] = np.quantile(v, RANGE_QUANTILES)
                scale[j] = _robust_sigma(v)
        full = X[np.all(np.isfinite(X), axis=1)]
        centre = np.nanmedian(X, axis=0)
        if len(full) > F + 10:
            z = (full - centre) / scale
            _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
            axes = vt
            pcs = z @ axes.T
            pc_lo, pc_hi = np.quantile(pcs, RANGE_QUANTILES, axis=0)
            pc_scale = np.array([_robust_sigma(pcs[:, k]) for k in range(pcs.shape[1])])
        else:  # too few complete rows: no principal-axis check
            axes = np.zeros((0, F))
            pc_lo = pc_hi = pc_scale = np.zeros(0)
        err_max = np.full(F, np.nan)
        for j in range(F):
            e = X_err[np.isfinite(X_err[:, j]), j]
            if e.size >= 10:
                err_max[j] = np.quantile(e, ERROR_QUANTILE)
        # a label learned from parallaxes (photofeh.model.parallax_labels) has no values here: no range (NaN),
        # so no extrapolation check for it (np.nanmin of an all-NaN column would only warn to say the same)
        y = np.asarray(y, float)
        known = np.isfinite(y).any(axis=0)
        label_lo, label_hi = np.full(y.shape[1], np.nan), np.full(y.shape[1], np.nan)
        label_lo[known], label_hi[known] = np.nanmin(y[:, known], axis=0), np.nanmax(y[:, known], axis=0)
        out = cls(lo, hi, scale, centre, axes, pc_lo, pc_hi, pc_scale, err_max, label_lo, label_hi)
        if measured is not None:
            measured = np.asarray(measured, float)
            sets = [list(colours)]
            if groups is not None:
                for g in dict.fromkeys(groups[j] for j in colours):
                    sets.append([j for j in colours if groups[j] == g])
            for cols in dict.fromkeys(tuple(c) for c in sets if len(c) >= 2):  # each set once
                idx = np.asarray(cols, int)
                locus = StellarLocus.fit(measured, idx)
                if locus is not None:
                    out.loci.append(locus)
                pattern = ErrorPattern.fit(X, X_err, idx)  # the re-observed inputs' errors
                if pattern is not None:
                    out.error_patterns.append(pattern)
        return out

    def score(self, X: np.ndarray, X_err: np.ndarray | None = None) -> np.ndarray:
        """Largest excess beyond the training ranges, in robust sigmas (0 inside; NaN features ignored), and
        with ``X_err`` beyond the measured loci and the error patterns (:meth:`StellarLocus.score_block`,
        :meth:`ErrorPattern.score_block`, where they were fitted).
        Float32, like the features (a score is compared with SCORE_LIMIT = 1, not summed).

        Computed on the transposed features (one contiguous row per feature, which is how
        :func:`photofeh.model.features.feature_matrix` lays them out) in blocks of SCORE_BLOCK stars, the
        principal axes by torch's matrix product (its thread pool, not a second one of BLAS's that spun
        against it): the same operations on the same values as the row-wise form, 3-10x faster."""
        import torch

        f32 = np.float32
        XT = np.ascontiguousarray(np.asarray(X, f32).T)  # free for feature_matrix's column-major X
        lo, hi, scale = (np.asarray(v, f32)[:, None] for v in (self.lo, self.hi, self.scale))
        pca = len(self.axes) > 0
        if pca:
            centre = self.centre.astype(f32)[:, None]
            axes = torch.from_numpy(np.ascontiguousarray(self.axes, dtype=f32))
            pc_lo, pc_hi, pc_scale = (np.asarray(v, f32)[:, None] for v in (self.pc_lo, self.pc_hi, self.pc_scale))
        n = XT.shape[1]
        score = np.empty(n, f32)
        with np.errstate(invalid="ignore"):
            for s in range(0, n, SCORE_BLOCK):
                x, out = XT[:, s:s + SCORE_BLOCK], score[s:s + SCORE_BLOCK]
                excess = np.subtract(lo, x)
                above = np.subtract(x, hi)
                np.maximum(excess, above, out=excess)
                excess /= scale
                np.fmax.reduce(excess, axis=0, initial=0.0, out=out)  # fmax skips the NaN of missing features
                if not pca:
                    continue
                full = np.isfinite(x).all(axis=0)  # principal axes for stars with every feature only
                n_full = int(np.count_nonzero(full))
                if n_full == 0:
                    continue
                every = n_full == x.shape[1]
                z = np.subtract(x, centre, out=above) if every else np.subtract(x[:, full], centre)
                z /= scale
                pcs = torch.mm(axes, torch.from_numpy(z)).numpy()  # (axes, stars): the projections
                pc_excess = np.subtract(pc_lo, pcs, out=excess if every else None)
                np.subtract(pcs, pc_hi, out=pcs)
                np.maximum(pc_excess, pcs, out=pc_excess)
                pc_excess /= pc_scale
                worst = pc_excess.max(axis=0, initial=0.0)
                if every:
                    np.maximum(out, worst, out=out)
                else:
                    out[full] = np.maximum(out[full], worst)
        if X_err is not None and (self.loci or self.error_patterns):
            ET = np.ascontiguousarray(np.asarray(X_err, f32).T)
            for s in range(0, n, SCORE_BLOCK):
                for check in (*self.loci, *self.error_patterns):
                    check.score_block(XT[:, s:s + SCORE_BLOCK], ET[:, s:s + SCORE_BLOCK], score[s:s + SCORE_BLOCK])
        return score

    def excess_error(self, X_err: np.ndarray) -> np.ndarray:
        """Feature errors beyond the training stars' largest (in quadrature; 0 where within or unknown)."""
        if not np.isfinite(self.error_max).any():  # no error recorded for any feature: nothing is beyond
            return np.zeros(np.shape(X_err))
        with np.errstate(invalid="ignore"):
            ex = np.sqrt(np.clip(np.asarray(X_err, float) ** 2 - self.error_max**2, 0.0, None))
        return np.nan_to_num(ex, nan=0.0, copy=False)

    def too_noisy(self, X_err: np.ndarray, factor: float = ERROR_LIMIT_FACTOR) -> np.ndarray:
        """True where a feature error exceeds ``factor`` times the training stars' largest (a noise-aware model,
        trained on the whole range of errors, passes 1). Feature by feature, compared in float64."""
        X_err = np.asarray(X_err)
        noisy = np.zeros(len(X_err), bool)
        with np.errstate(invalid="ignore"):
            for j in np.flatnonzero(np.isfinite(self.error_max)):
                noisy |= np.asarray(X_err[:, j], float) > np.float64(factor * self.error_max[j])
        return noisy

    def label_extrapolation(self, value: np.ndarray, err: np.ndarray) -> np.ndarray:
        """True where an estimate lies beyond the training labels by more than LABEL_SIGMAS of its error
        (label by label, skipping labels without a training range)."""
        beyond = np.zeros(len(value), bool)
        with np.errstate(invalid="ignore"):
            for j in np.flatnonzero(np.isfinite(self.label_lo)):
                margin = LABEL_SIGMAS * err[:, j]
                beyond |= value[:, j] < self.label_lo[j] - margin
                beyond |= value[:, j] > self.label_hi[j] + margin
        return beyond

    def to_dict(self) -> dict:
        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in np.ravel(a)]

        return {"lo": clean(self.lo), "hi": clean(self.hi), "scale": clean(self.scale),
                "centre": clean(self.centre), "axes": [clean(r) for r in self.axes], "pc_lo": clean(self.pc_lo),
                "pc_hi": clean(self.pc_hi), "pc_scale": clean(self.pc_scale), "error_max": clean(self.error_max),
                "label_lo": clean(self.label_lo), "label_hi": clean(self.label_hi),
                "score_limit": SCORE_LIMIT, "label_sigmas": LABEL_SIGMAS,
                **({"loci": [locus.to_dict() for locus in self.loci]} if self.loci else {}),
                **({"error_patterns": [p.to_dict() for p in self.error_patterns]} if self.error_patterns else {})}

    @classmethod
    def from_dict(cls, d: dict) -> TrainingDomain:
        def arr(v, fill):
            return np.array([fill if x is None else x for x in v], float)

        F = len(d["lo"])
        axes = np.array([arr(r, 0.0) for r in d["axes"]], float).reshape(-1, F)
        out = cls(arr(d["lo"], -np.inf), arr(d["hi"], np.inf), arr(d["scale"], 1.0), arr(d["centre"], 0.0), axes,
                  arr(d["pc_lo"], -np.inf), arr(d["pc_hi"], np.inf), arr(d["pc_scale"], 1.0),
                  arr(d["error_max"], np.nan), arr(d["label_lo"], np.nan), arr(d["label_hi"], np.nan))
        # models trained before the locus check, or not noise-aware, have none
        out.loci = [StellarLocus.from_dict(locus) for locus in d.get("loci", [])]
        out.error_patterns = [ErrorPattern.from_dict(p) for p in d.get("error_patterns", [])]
        return out
