"""Absolute magnitudes learned from Gaia parallaxes, with the likelihood in parallax space.

A label ``mabs_<band>`` listed in a config's ``parallax_labels`` has no label
column: the network's predicted absolute magnitude M (with its uncertainty
sigma_M) and the star's dereddened apparent magnitude m0 give a predicted
parallax

    varpi_pred = 10^(2 - (m0 - M) / 5)  mas,

and the loss is the likelihood of the *measured* parallax, varpi ~ N(varpi(M),
sigma_varpi^2), integrated over the predicted M ~ N(M_pred, sigma_M^2) (by
adaptive Gauss-Hermite quadrature, see :func:`parallax_nll`).

Gaia's parallax errors are Gaussian in parallax, not in magnitude; working
there uses every star, faint and negative parallaxes included, without the
selection on parallax signal-to-noise whose inversion biases absolute
magnitudes (Lutz & Kelker 1973, PASP 85, 573; Bailer-Jones 2015, PASP 127,
994, on why a parallax should not be inverted). This is the approach of
Leung & Bovy 2019 (MNRAS 489, 2079), who trained a network on Gaia
parallaxes through a quantity linear in parallax for the same reason. The
Gaia parallaxes are corrected for the global zero point of Lindegren et al.
2021 (photofeh.bands.GAIA_PARALLAX_ZP_MAS).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from photofeh.bands import BANDS, GAIA_PARALLAX_ZP_MAS
from photofeh.errors import MissingColumnsError

__all__ = ["band_of", "parallax_inputs", "mabs_from_parallax", "parallax_nll", "absmag_reference",
           "ABSMAG_REFERENCES", "LN10_OVER_5"]

LN10_OVER_5 = np.log(10.0) / 5.0
SCALE_MIN_SNR = 5.0  # stars used only to set the label's normalisation (any sensible scale works)


def band_of(label: str) -> str:
    """``mabs_gaia_g`` -> ``gaia_g``; a ``ValueError`` for anything that is not an absolute magnitude."""
    band = label.removeprefix("mabs_")
    if not label.startswith("mabs_") or band not in BANDS:
        raise ValueError(f"parallax label {label!r} must be mabs_<band> with a known band ({', '.join(BANDS)})")
    return band


# What an absolute-magnitude label refers to: "dereddened" (intrinsic: distance modulus from m - A) or
# "observed" (M + A: the extinction is part of the label, as for a parallax label learned from observed
# magnitudes by a model given the reddening as an input). Distances apply the extinction exactly once.
ABSMAG_REFERENCES = ("dereddened", "observed")


def absmag_reference(meta: Mapping) -> dict[str, str]:
    """For each ``mabs_<band>`` label of a model's metadata, ``"dereddened"`` or ``"observed"``.

    Recorded in model.json (``absmag_reference``) since issue 25; for older folders it follows from the
    training setup: a parallax label of a model trained with ``deredden = false`` was fitted to observed
    magnitudes (:func:`parallax_inputs`), so its M includes the extinction; every other M_abs label (a label
    column such as the mock's ``mabs_sdss_r_true``, or a parallax label with dereddening) is intrinsic.
    """
    recorded = meta.get("absmag_reference") or {}
    observed_plx = set(meta.get("parallax_labels") or []) if meta.get("deredden", True) is False else set()
    out = {}
    for label in meta.get("labels", []):
        if not str(label).startswith("mabs_"):
            continue
        ref = recorded.get(label, "observed" if label in observed_plx else "dereddened")
        if ref not in ABSMAG_REFERENCES:
            raise ValueError(f"model.json: absmag_reference of {label} is {ref!r}, not one of {ABSMAG_REFERENCES}")
        out[label] = ref
    return out


def parallax_inputs(cols: Mapping[str, np.ndarray], labels: Sequence[str], ebv_column: str = "ebv",
                    deredden_bands: bool = True, zero_point_mas: float = GAIA_PARALLAX_ZP_MAS) -> np.ndarray:
    """(n, 3P): for each parallax label, the dereddened apparent magnitude (observed with
    ``deredden_bands=False``: M then includes the extinction), the zero-point-corrected parallax and its error
    (NaN where missing: those stars do not enter that label's loss)."""
    from photofeh.model.features import deredden

    n = len(next(iter(cols.values())))
    out = np.full((n, 3 * len(labels)), np.nan)
    missing = [c for c in ("parallax", "parallax_error") if c not in cols]
    if missing and labels:
        raise MissingColumnsError(f"parallax labels {list(labels)} need column(s) {missing}")
    for k, lab in enumerate(labels):
        band = band_of(lab)
        out[:, 3 * k] = (deredden(cols, [band], ebv_column)[band] if deredden_bands
                         else np.asarray(cols[band], float))
        out[:, 3 * k + 1] = np.asarray(cols["parallax"], float) - zero_point_mas
        err = np.asarray(cols["parallax_error"], float)
        out[:, 3 * k + 2] = np.where(err > 0, err, np.nan)
    return out


def mabs_from_parallax(m0, parallax_corr, parallax_error, min_snr: float = SCALE_MIN_SNR
                       ) -> tuple[np.ndarray, np.ndarray]:
    """M = m0 + 5 log10(varpi / 100 mas) and its first-order error, where varpi / sigma >= ``min_snr``
    (NaN elsewhere). For normalisation and for checks against precise parallaxes only: never a training label."""
    plx, err = np.asarray(parallax_corr, float), np.asarray(parallax_error, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = plx / err >= min_snr
        m = np.where(ok, np.asarray(m0, float) + 5 * np.log10(plx) - 10.0, np.nan)
        m_err = np.where(ok, err / plx / LN10_OVER_5, np.nan)
    return m, m_err


_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(32)
ADAPT_MIN_SNR = 2.0  # above this parallax S/N the quadrature is centred on the likelihood's peak in M


def parallax_nll(mean: torch.Tensor, logvar: torch.Tensor, aux: torch.Tensor, loc: torch.Tensor,
                 scale: torch.Tensor, sigma_scale: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-star negative log-likelihood of the measured parallaxes, and the mask of stars that have one.

    p(varpi | mu, sigma_M) = integral of N(varpi | varpi(M), sigma_varpi^2) N(M | mu, sigma_M^2) dM, by
    adaptive Gauss-Hermite quadrature (Liu & Pierce 1994, Biometrika 81, 624): 32 nodes centred on the
    product of the prediction and, for parallaxes with S/N > 2, the likelihood's Gaussian approximation in M
    (width 5/ln10 sigma_varpi/varpi), so that a precise parallax is resolved whatever sigma_M. Exact where a
    linearised variance is not: with (varpi ln10/5)^2 sigma_M^2 added to the variance a network can explain
    away any parallax by inflating sigma_M (it did, for distant giants).

    ``mean``, ``logvar``: (B, P) network outputs for the parallax labels in standardised units;
    ``aux``: (B, 3P) from :func:`parallax_inputs`; ``loc``, ``scale``: the labels' normalisation.
    The constants 0.5 log(2 pi) + 0.5 log(pi) are left out.
    """
    m0, plx, plx_err = aux[:, 0::3], aux[:, 1::3], aux[:, 2::3]
    valid = torch.isfinite(m0) & torch.isfinite(plx) & torch.isfinite(plx_err)
    m0, plx, plx_err = (torch.where(valid, t, torch.ones_like(t)) for t in (m0, plx, plx_err))
    mu = mean * scale + loc
    sigma = (0.5 * logvar).exp() * scale * sigma_scale
    # where to put the nodes: the prediction, narrowed by the parallax where it is informative
    snr = plx / plx_err
    precise = snr > ADAPT_MIN_SNR
    m_plx = m0 + 5.0 * torch.log10(torch.where(precise, plx, torch.ones_like(plx))) - 10.0
    w_plx = torch.where(precise, (plx / plx_err / (5.0 / np.log(10.0))) ** 2, torch.zeros_like(plx))  # 1/s_plx^2
    prec = 1.0 / sigma**2 + w_plx
    s_c = prec.rsqrt()
    c = (mu / sigma**2 + w_plx * m_plx) / prec
    nodes = torch.as_tensor(_GH_NODES, dtype=mean.dtype)
    log_w = torch.as_tensor(np.log(_GH_WEIGHTS), dtype=mean.dtype)
    m_i = c.unsqueeze(-1) + np.sqrt(2.0) * s_c.unsqueeze(-1) * nodes  # (B, P, 32)
    # capped at 1e6 mas before the exponential, so that a wild node neither overflows nor sends back 0 x inf
    plx_i = torch.exp((np.log(10.0) * (2.0 - (m0.unsqueeze(-1) - m_i) / 5.0)).clamp(max=np.log(1e6)))
    z = (plx.unsqueeze(-1) - plx_i) / plx_err.unsqueeze(-1)
    prior = (m_i - mu.unsqueeze(-1)) / sigma.unsqueeze(-1)
    log_terms = log_w - 0.5 * z**2 - 0.5 * prior**2 + nodes**2
    nll = -torch.logsumexp(log_terms, dim=-1) + torch.log(plx_err) + torch.log(sigma) - torch.log(s_c)
    return torch.where(valid, nll, torch.zeros_like(nll)), valid
