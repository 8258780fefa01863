"""Missing photometry as data: masked network inputs and survey dropout during training.

A model trained with ``missing = "mask"`` sees each standardised feature
next to a 0/1 bit saying whether it was measured (missing values enter as
0, the training mean). During training whole surveys are hidden at random
(all SDSS colours, all PS1 colours, the Gaia photometry, the parallax), so
the network learns to predict from whatever a star has, and, through the
Gaussian likelihood, to widen its uncertainties when less is known. This is
input dropout by feature group with explicit masks (cf. the "missing
indicator" approach; Lipton et al. 2016, MLHC, on clinical time series),
used here instead of imputing bands with an autoencoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from photofeh.bands import BANDS

__all__ = ["feature_groups", "masked_inputs", "enough_features", "drop_groups", "network_inputs", "with_errors",
           "prediction_inputs", "column_rows", "MISSING_MODES"]

MISSING_MODES = ("require", "mask")


def feature_groups(features: Sequence[str]) -> list[str]:
    """The group a feature is hidden with: its bands' survey (``"sdss"``, ``"ps1"`` ...; ``"sdss+ps1"`` for a
    cross-survey colour), ``"parallax"`` for the parallax and its error, else the column itself."""
    groups = []
    for f in features:
        surveys = sorted({BANDS[p].survey for p in f.split("-") if p in BANDS})
        if surveys:
            groups.append("+".join(surveys))
        elif f.startswith("parallax"):
            groups.append("parallax")
        else:
            groups.append(f)
    return groups


def network_inputs(n_features: int, missing: str, noise_aware: bool = False) -> int:
    """Network input width: the features, in "mask" mode one measured-bit per feature, and for a noise-aware
    model (:mod:`photofeh.model.noise`) the standardised log-error of each feature after them."""
    return n_features * ((2 if missing == "mask" else 1) + (1 if noise_aware else 0))


def with_errors(inputs: np.ndarray, z_err: np.ndarray | None) -> np.ndarray:
    """Append a noise-aware model's standardised log-errors (0 where unknown, i.e. the training mean, like a
    missing feature) to the inputs of :func:`masked_inputs` or the plain standardised features."""
    if z_err is None:
        return inputs
    return np.concatenate([inputs, np.nan_to_num(z_err, nan=0.0, posinf=0.0, neginf=0.0)], axis=1).astype(
        inputs.dtype, copy=False)


def masked_inputs(z: np.ndarray, dtype=np.float32) -> np.ndarray:
    """Standardised features with NaN -> (n, 2F): values (0 where missing) then the measured-bits."""
    present = np.isfinite(z)
    return np.concatenate([np.where(present, z, 0.0), present], axis=1).astype(dtype)


def prediction_inputs(X: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, masked: bool,
                      X_err: np.ndarray | None = None, errors: tuple[np.ndarray, np.ndarray] | None = None
                      ) -> np.ndarray:
    """Raw features ``X`` (n, F) -> a model's float32 network inputs at prediction time, laid out as training
    lays them out (:func:`masked_inputs`, :func:`with_errors`, :func:`photofeh.model.noise.error_inputs`):
    ``(X - mean) * inv_std``; for a ``masked`` model the measured-bits after them (missing values 0); with
    ``errors`` (the error standardiser's float32 mean and 1/std), the standardised log10 of ``X_err`` after
    those (unknown errors, NaN, <= 0 or infinite, 0: the training mean).

    Written in place, feature by feature, into one float32 array of one contiguous row per input and returned
    transposed (torch's matrix product reads it as it is): the float64 temporaries, concatenations and
    row-major strides of the training form were a third of a catalogue chunk's non-network time, this takes a
    fifth of theirs (inputs change by float32 rounding only)."""
    F = X.shape[1]
    width = F * (2 if masked else 1) + (F if errors is not None else 0)
    out = np.empty((width, len(X)), np.float32)
    z = out[:F]
    np.subtract(np.asarray(X).T, mean[:, None], out=z, dtype=np.float32)
    z *= inv_std[:, None]
    if masked:
        out[F:2 * F] = np.isfinite(z)
        _zero_unknown(z)
    if errors is not None:
        e = out[width - F:]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.log10(np.asarray(X_err, np.float32).T, out=e)  # error_inputs: log10 of each error
            e -= errors[0][:, None]
            e *= errors[1][:, None]
        _zero_unknown(e)
    return out.T


def _zero_unknown(a: np.ndarray) -> None:
    """Every non-finite value of ``a`` -> 0, in place, by arithmetic: an infinite value first becomes NaN
    (inf - inf), then NaN-skipping max and min with 0 add up to the value where it is finite and to 0 where it
    is NaN. A masked copy (np.copyto with where=) took 4x as long on half-missing features."""
    with np.errstate(invalid="ignore"):
        a += a - a
    positive = np.fmax(a, 0.0)
    np.fmin(a, 0.0, out=a)
    a += positive


def column_rows(X: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """``X[ok]`` kept column-major (as :func:`photofeh.model.features.feature_matrix` lays features out), so
    that every later step reads each feature contiguously."""
    return np.compress(ok, np.asarray(X).T, axis=1).T


def enough_features(x: np.ndarray, min_features: int) -> np.ndarray:
    """Rows with at least ``min_features`` measured features: the others get no prediction."""
    return np.isfinite(x).sum(axis=1) >= min_features


def drop_groups(x: torch.Tensor, group_index: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Hide each feature group of each row with probability ``p`` (values and bits set to 0).

    ``x`` is (B, 2F) from :func:`masked_inputs`, or (B, 3F) with a noise-aware model's errors after them (a
    hidden feature's error is hidden too); ``group_index`` (F,) maps features to groups 0..G-1. A row never
    loses all its measured groups.
    """
    n_features = group_index.numel()
    n_groups = int(group_index.max()) + 1
    hide = torch.rand((x.shape[0], n_groups), generator=generator) < p
    present = x[:, n_features:2 * n_features] > 0
    group_present = _group_any(present, group_index, n_groups)
    left = group_present & ~hide
    hide &= left.any(dim=1, keepdim=True)  # keep the row as it was rather than hide everything
    hidden = hide[:, group_index]
    out = x.clone()
    out[:, :n_features][hidden] = 0.0
    out[:, n_features:2 * n_features][hidden] = 0.0
    if x.shape[1] == 3 * n_features:
        out[:, 2 * n_features:][hidden] = 0.0
    return out


def _group_any(present: torch.Tensor, group_index: torch.Tensor, n_groups: int) -> torch.Tensor:
    """(B, G): whether any feature of each group is measured."""
    counts = torch.zeros((present.shape[0], n_groups), dtype=torch.float32)
    counts.index_add_(1, group_index, present.float())
    return counts > 0
