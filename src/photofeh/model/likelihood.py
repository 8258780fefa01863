"""One model, two estimates: an [Fe/H] head that states a likelihood, trained through the labelled stars' prior.

A network trained by maximum likelihood returns the posterior under its training labels' distribution pi: the
best estimate of one star, biased toward pi's bulk conditional on the true value (docs/populations.md). With
``prior = "likelihood"`` the network's Gaussian output for ``prior_label`` is read as the *likelihood*
L(theta) = N(theta; mu, s^2) and trained through the posterior it implies with pi known exactly (the training
labels' histogram, :func:`photofeh.model.prior.label_histogram`, piecewise constant, no smoothing or cap):

    p(y | x) = N(y; mu, s^2 + e^2) pi(y) / Z(mu, s^2 + e^2),   Z = sum_k pi_k [Phi(b_k) - Phi(a_k)],

(a_k, b_k the bin edges standardised by (mu, sqrt(s^2 + e^2)), e the label error), i.e. the Gaussian NLL plus
log Z; pi(y) is a constant of the fit. This follows Malz & Hogg (2022, ApJ 928, 127), who show that
posteriors serve population inference only where the prior behind them is explicitly known, and recommend
recovering likelihoods directly or via a known prior: here the prior is known exactly and enters the loss,
rather than being estimated, smoothed and divided out of a posterior afterwards. One forward pass then gives

- the per-star estimate: the posterior N(theta; mu, s^2) pi(theta), its mean and standard deviation
  (moments of a Gaussian truncated to each bin, summed over the bins: exact for a piecewise-constant prior);
- the population estimate: mu with error s, the likelihood's own, which carries no prior (what a flat prior
  gives, without :func:`photofeh.model.prior.divide_out`'s smoothed, floored division).

Where the colours say little (the metal-poor tail of SDSS colours, a flat likelihood) mu is as uncertain as s
says, and an estimate unbiased conditional on the truth must scatter at least that much (the Cramer-Rao
bound, s for a Gaussian likelihood): benchmarks/bench_ablation.py measures both estimates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import log_ndtr

__all__ = ["LikelihoodPrior", "log_normaliser", "posterior_moments", "POPULATION_SUFFIX"]

POPULATION_SUFFIX = "_population"  # the population estimate's column: feh_population, feh_population_err


def _log_bin_mass(lo, hi, log_ndtr_fn, log_, expm1, where):
    """log[Phi(hi) - Phi(lo)] for lo < hi, computed on the side of 0 where it does not cancel."""
    flip = (lo + hi) > 0
    a, b = where(flip, -hi, lo), where(flip, -lo, hi)
    lb = log_ndtr_fn(b)
    return lb + log_(-expm1(log_ndtr_fn(a) - lb))


def log_normaliser(mean: torch.Tensor, sd: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                   log_counts: torch.Tensor) -> torch.Tensor:
    """log Z = log sum_k n_k [Phi((hi_k - mean) / sd) - Phi((lo_k - mean) / sd)] per star (torch; the bins'
    edges ``lo``, ``hi`` and log counts, in the units of ``mean`` and ``sd``)."""
    a = (lo[None, :] - mean[:, None]) / sd[:, None]
    b = (hi[None, :] - mean[:, None]) / sd[:, None]
    lm = _log_bin_mass(a, b, torch.special.log_ndtr, torch.log, torch.expm1, torch.where)
    return torch.logsumexp(lm + log_counts[None, :], 1)


@dataclass
class LikelihoodPrior:
    """The training labels' histogram of one label, as the likelihood head's loss and predictions use it.

    ``index``: the label's column among the network's labels; ``edges``, ``counts``: the histogram
    (:func:`photofeh.model.prior.label_histogram`, physical units); ``loc``, ``scale``: the label's
    standardisation (the network's units)."""

    index: int
    label: str
    edges: np.ndarray
    counts: np.ndarray
    loc: float = 0.0
    scale: float = 1.0

    @classmethod
    def from_meta(cls, meta: dict) -> LikelihoodPrior | None:
        """The model's likelihood prior, or None for a model whose estimates are posteriors (every model trained
        before ``prior = "likelihood"`` existed)."""
        info = meta.get("prior") or {}
        if not isinstance(info, dict) or info.get("kind") != "likelihood":
            return None
        label = info.get("label", "feh")
        hist = info["training_distribution"]
        j = meta["labels"].index(label)
        ys = meta["label_standardizer"]
        return cls(j, label, np.asarray(hist["edges"], float), np.asarray(hist["counts"], float),
                   float(np.asarray(ys["mean"], float)[j]), float(np.asarray(ys["std"], float)[j]))

    def _occupied(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keep = self.counts > 0
        return self.edges[:-1][keep], self.edges[1:][keep], self.counts[keep]

    def torch_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lower edges, upper edges, log counts) of the occupied bins in the network's standardised units."""
        lo, hi, n = self._occupied()
        return (torch.as_tensor((lo - self.loc) / self.scale), torch.as_tensor((hi - self.loc) / self.scale),
                torch.as_tensor(np.log(n)))

    def add_normaliser(self, nll: torch.Tensor, valid: torch.Tensor, out: dict, e: torch.Tensor) -> torch.Tensor:
        """The per-star NLLs (B, L) of :func:`photofeh.model.train_loop.multitask_loss` with log Z added to this
        label's column where the star has the label: the NLL of the posterior N(mu, s^2 + e^2) pi."""
        j = self.index
        lo, hi, logn = self.torch_terms()  # in float64: the bins' masses are differences of close numbers
        mean, var = out["mean"][:, j].double(), out["logvar"][:, j].double().exp() + e[:, j].double() ** 2
        log_z = log_normaliser(mean, torch.sqrt(var), lo, hi, logn).to(nll.dtype)
        nll = nll.clone()
        nll[:, j] = torch.where(valid[:, j], nll[:, j] + log_z, nll[:, j])
        return nll

    def sigma_scale(self, mean: np.ndarray, var: np.ndarray, y: np.ndarray, e: np.ndarray,
                    spread: np.ndarray | float = 0.0) -> float:
        """The factor on the likelihood's s (standardised ``mean``, model variance ``var``, labels ``y`` and
        errors ``e``: the validation stars) that minimises their posterior NLL, fitted as the other labels' sigma
        scales are (:func:`photofeh.model.train_loop._clipped_scale`: pulls beyond 5 sigma left out). An
        ensemble's ``spread`` (variance of its members' means) is added unscaled, as
        :meth:`photofeh.model.predict.PhotometricModel._ensemble` adds it."""
        from photofeh.model.train_loop import _clipped_scale  # here: train_loop imports the training stack

        ok = np.isfinite(y) & np.isfinite(mean) & np.isfinite(var)
        lo, hi, logn = self.torch_terms()

        def log_z(v, k):
            return log_normaliser(torch.from_numpy(mean[k]), torch.from_numpy(np.sqrt(v)), lo, hi, logn).numpy()

        return _clipped_scale(y - mean, var, np.broadcast_to(spread, np.shape(mean)) + e**2, np.ones(np.size(y)),
                              ok, log_z=log_z)

    def calibrated_scale(self, outs: list[dict], val_t: tuple) -> float:
        """:meth:`sigma_scale` of the trained members' outputs ``outs`` on the validation tensors ``val_t`` (inputs,
        labels, errors, ...): the factor scales the members' variances, and their spread of means is added, as at
        prediction and as the other labels' scales are fitted (``train_loop._sigma_scales``)."""
        j = self.index
        mean = torch.stack([o["mean"][:, j] for o in outs]).double()
        var = torch.stack([o["logvar"][:, j] for o in outs]).double().exp().mean(0)
        return self.sigma_scale(mean.mean(0).numpy(), var.numpy(), val_t[1][:, j].double().numpy(),
                                val_t[2][:, j].double().numpy(), spread=mean.var(0, unbiased=False).numpy())


    def estimates(self, value: np.ndarray, err: np.ndarray, components: dict, estimate_prior: str
                  ) -> tuple[np.ndarray, np.ndarray, dict]:
        """Both estimates from the network's (mu, s) in ``value``/``err`` (physical units, (n, L), this label in
        column ``index``): the population estimate goes to ``<label>_population`` (and ``_err``); the label's
        own column gets the posterior's mean and standard deviation, or with ``estimate_prior = "flat"`` the
        population estimate."""
        j = self.index
        mu, s = np.array(value[:, j], float), np.array(err[:, j], float)
        components = {**components, f"{self.label}{POPULATION_SUFFIX}": mu,
                      f"{self.label}{POPULATION_SUFFIX}_err": s}
        if estimate_prior != "flat":
            value, err = value.copy(order="K"), err.copy(order="K")
            value[:, j], err[:, j] = posterior_moments(mu, s, self.edges, self.counts)
        return value, err, components


_BLOCK = 8_192


def posterior_moments(mu: np.ndarray, s: np.ndarray, edges: np.ndarray, counts: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of N(theta; mu, s^2) pi(theta), pi the histogram (``edges``, ``counts``)
    taken as constant within each bin: within a bin a truncated Gaussian, whose moments are exact (Johnson,
    Kotz & Balakrishnan 1994, ch. 13.10.1), weighted by the bins' masses. NaN inputs give NaN. For many stars
    the two moments are interpolated in a table over (mu, log s) built once per histogram (99% of stars
    within 0.003 dex and 0.5% of the direct sums, the worst, s of a few hundredths at the edge of a sparse bin,
    within 0.01 dex and 5%; tested); stars outside it are summed directly."""
    from photofeh.model.prior import tabulated_or_direct

    key = (tuple(np.asarray(edges, float)), tuple(np.asarray(counts, float)))
    return tabulated_or_direct(mu, s, key, _moment_table, _moments_blocks)


def _moments_blocks(mu: np.ndarray, s: np.ndarray, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_moments_direct` block by block: the (stars x bins) arrays stay ~10 MB."""
    mean, sd = np.empty(mu.shape), np.empty(mu.shape)
    for start in range(0, mu.size, _BLOCK):
        sl = slice(start, start + _BLOCK)
        mean[sl], sd[sl] = _moments_direct(mu[sl], s[sl], *key)
    return mean, sd


def _moments_direct(mu: np.ndarray, s: np.ndarray, edges: tuple, counts: tuple) -> tuple[np.ndarray, np.ndarray]:
    e, n = np.asarray(edges), np.asarray(counts)
    keep = n > 0
    lo_e, hi_e, n = e[:-1][keep], e[1:][keep], n[keep]
    width = hi_e - lo_e
    a = (lo_e[None, :] - mu[:, None]) / s[:, None]
    b = (hi_e[None, :] - mu[:, None]) / s[:, None]
    lm = _log_bin_mass(a, b, log_ndtr, np.log, np.expm1, np.where)  # log P(bin) under N(mu, s^2)
    logw = lm + np.log(n / width)[None, :]
    w = np.exp(logw - logw.max(1, keepdims=True))
    w /= w.sum(1, keepdims=True)
    # truncated-Gaussian moments in each bin, from the standard normal pdf at the edges over the bin's mass
    # (ratios taken in log space so that a bin many s away does not divide 0 by 0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        pa = np.exp(-0.5 * a**2 - 0.5 * np.log(2 * np.pi) - lm)
        pb = np.exp(-0.5 * b**2 - 0.5 * np.log(2 * np.pi) - lm)
        z1 = pa - pb
        z2 = 1.0 + np.where(np.isfinite(a), a, 0.0) * pa - np.where(np.isfinite(b), b, 0.0) * pb
    m_in = mu[:, None] + s[:, None] * z1
    v_in = s[:, None] ** 2 * (z2 - z1**2)
    # far from mu (or where rounding leaves the bin) the bin is uniform to within its width: its own moments
    bad = ~np.isfinite(m_in) | ~np.isfinite(v_in) | (m_in < lo_e) | (m_in > hi_e) | (v_in < 0)
    m_in = np.where(bad, 0.5 * (lo_e + hi_e), m_in)
    v_in = np.where(bad, width**2 / 12.0, np.minimum(v_in, width**2 / 12.0))
    mean = (w * m_in).sum(1)
    var = (w * (v_in + m_in**2)).sum(1) - mean**2
    return mean, np.sqrt(np.maximum(var, 0.0))


_TABLE_LOG_S = (np.log(0.01), np.log(3.0), 120)  # s from 0.01 to 3 dex, 4.9% apart


@functools.lru_cache(maxsize=8)
def _moment_table(key: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mu axis, log-s axis, mean - mu, sd / s) of :func:`_moments_direct` on a grid spanning the histogram
    +- 1 dex in steps of 0.005 dex."""
    from photofeh.model.prior import shift_ratio_table

    edges = np.asarray(key[0])
    m_axis = np.arange(edges[0] - 1.0, edges[-1] + 1.0 + 0.0025, 0.005)
    return shift_ratio_table(m_axis, np.linspace(*_TABLE_LOG_S), key, _moments_blocks)
