"""Fitting the networks: the heteroscedastic multi-task loss, the one-cycle AdamW loop that keeps the
best-validation checkpoint, the calibration on the validation stars (sigma scales, class temperature and
threshold), and the learning-rate range test."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from photofeh.model.missing import drop_groups, network_inputs
from photofeh.model.networks import build_network
from photofeh.model.train_config import TrainConfig
from photofeh.model.train_data import (
    _group_index,
    _plx_spec,
    _tensors,
    input_scaling,
    label_standardizer,
    prepare,
)

__all__ = ["multitask_loss", "conditional_index", "lr_find", "LRRange", "VALIDATION_CLIP_SIGMA"]

# The validation loss that picks the checkpoint counts a label missed by more than this many sigma as missed by
# this many: one validation star whose features lie far beyond every training star's (a mock M dwarf at 15 mas
# among parallaxes below 3.5) was missed by hundreds of sigma, raised the mean loss from 2.4 to 231 and kept the
# first epoch's network (the sigma-point model of bench_noise_aware, 2026-12-07). The training loss is not
# clipped: a star the network misses that badly still pulls it toward itself.
VALIDATION_CLIP_SIGMA = 5.0

def multitask_loss(out: dict[str, torch.Tensor], y: torch.Tensor, e: torch.Tensor, giant: torch.Tensor,
                   per_label: bool = False, class_weight: float = 1.0, aux: torch.Tensor | None = None,
                   plx: tuple | None = None, weight: torch.Tensor | None = None,
                   conditional: torch.Tensor | None = None, likelihood=None, clip_sigma: float | None = None):
    """Gaussian negative log-likelihood per label, label errors added to the variance,
    plus binary cross-entropy for the class; NaN labels are masked out. ``plx`` = (label indices, loc,
    scale) of the parallax labels, whose likelihood is that of the measured parallaxes in ``aux``.
    ``weight``: per-star weights (the prior's, :mod:`photofeh.model.prior`); every term is a weighted mean.
    ``conditional``: indices of the class-conditional labels (the columns of ``out["mean_giant"]``): a star of
    known class (``giant`` 0 or 1) is scored by its class's component alone, which so learns p(y | x, class);
    a star of unknown class by the mixture, -log[(1 - P) L_dwarf + P L_giant] with P = sigmoid(logit).
    ``likelihood``: a :class:`photofeh.model.likelihood.LikelihoodPrior`, whose label's head is a likelihood
    scored through the training labels' known histogram (its normaliser added). ``clip_sigma``: a Gaussian
    label's squared residual capped at this many sigma (the validation loss, :data:`VALIDATION_CLIP_SIGMA`)."""
    w = torch.ones(len(y), dtype=y.dtype) if weight is None else weight
    if conditional is None or not len(conditional):
        nll, valid = _label_nll(out["mean"], out["logvar"], y, e, aux, plx, clip_sigma)
    else:
        # the component a star is scored with is chosen before the likelihood, so that the other one (free
        # for that star: nothing trains it there) is never evaluated: its gradient would be 0 x whatever it is
        known, is_giant = torch.isfinite(giant)[:, None], (giant > 0.5)[:, None]
        m_d, v_d = out["mean"][:, conditional], out["logvar"][:, conditional]
        m_g, v_g = out["mean_giant"], out["logvar_giant"]
        m_own, v_own = torch.where(is_giant, m_g, m_d), torch.where(is_giant, v_g, v_d)  # unknown: the dwarf's
        m_alt, v_alt = torch.where(known, m_own, m_g), torch.where(known, v_own, v_g)  # unknown: the giant's
        mean, logvar = out["mean"].clone(), out["logvar"].clone()
        mean[:, conditional], logvar[:, conditional] = m_own, v_own
        nll, valid = _label_nll(mean, logvar, y, e, aux, plx, clip_sigma)
        mean[:, conditional], logvar[:, conditional] = m_alt, v_alt
        nll_alt, _ = _label_nll(mean, logvar, y, e, aux, plx, clip_sigma)
        logit = out["logit"][:, None]
        mixture = -torch.logaddexp(torch.nn.functional.logsigmoid(logit) - nll_alt[:, conditional],
                                   torch.nn.functional.logsigmoid(-logit) - nll[:, conditional])
        nll = nll.clone()
        nll[:, conditional] = torch.where(known, nll[:, conditional], mixture)
    if likelihood is not None:
        nll = likelihood.add_normaliser(nll, valid, out, e)
    wv = valid * w[:, None]
    per = (nll * wv).sum(0) / wv.sum(0).clamp(min=1e-12)
    loss = per.sum()
    if "logit" in out:
        ok = torch.isfinite(giant)
        if ok.any():
            bce = torch.nn.functional.binary_cross_entropy_with_logits(out["logit"][ok], giant[ok], weight=w[ok])
            loss = loss + class_weight * bce * len(w[ok]) / w[ok].sum()
    return (loss, per) if per_label else loss


def _label_nll(mean: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor, e: torch.Tensor,
               aux: torch.Tensor | None, plx: tuple | None,
               clip_sigma: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) per-star negative log-likelihoods (0 where a star has no label) and the mask of those it has:
    Gaussian with the label error added to the variance, or for a parallax label that of the measured
    parallax (:func:`photofeh.model.parallax_labels.parallax_nll`)."""
    valid = torch.isfinite(y)
    var = logvar.exp() + e**2
    resid = torch.where(valid, y - mean, torch.zeros_like(y))
    chi2 = resid**2 / var
    if clip_sigma is not None:
        chi2 = chi2.clamp(max=clip_sigma**2)
    nll = 0.5 * (torch.log(var) + chi2)
    nll = torch.where(valid, nll, torch.zeros_like(nll))
    if plx is not None and len(plx[0]):
        from photofeh.model.parallax_labels import parallax_nll

        idx, loc, scale = plx
        nll_p, ok = parallax_nll(mean[:, idx], logvar[:, idx], aux, loc, scale)
        nll, valid = nll.clone(), valid.clone()
        nll[:, idx], valid[:, idx] = nll_p, ok
    return nll, valid


def conditional_index(cfg: TrainConfig) -> torch.Tensor | None:
    """Indices among the labels of the class-conditional ones (the columns of a network's ``mean_giant``)."""
    cond = [j for j, lab in enumerate(cfg.labels) if lab in cfg.class_conditional]
    return torch.tensor(cond) if cond else None


def _set_threads(cfg: TrainConfig) -> None:
    """``cfg.threads``; 0: OMP_NUM_THREADS where the environment sets it (a batch system's allocation, a test
    run beside other work: PyTorch's OpenMP threads spin-wait, and beside busy processes 2 threads took 20x
    the CPU time of one), else every core."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    torch.set_num_threads(cfg.threads or (int(env) if env.isdigit() and int(env) > 0 else 0) or os.cpu_count() or 1)


def _fit_member(cfg: TrainConfig, member: int, train_t, val_t, n_inputs: int, log, plx=None,
                reobserve=None, init_state: dict | None = None, likelihood=None) -> tuple:
    """One member of the ensemble, its best epoch by validation loss. ``reobserve(member, epoch)``: the training
    inputs of that epoch, its stars re-observed afresh (noise-aware training, :mod:`photofeh.model.noise`)."""
    torch.manual_seed(cfg.seed * 1000 + member)
    net = build_network(cfg.architecture, n_inputs, cfg.labels, cfg.heads, cfg.classify, cfg.class_conditional)
    if init_state is not None:  # a pretrained network's weights (photofeh.model.pretrain)
        net.load_state_dict(init_state)
    cond = conditional_index(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.max_lr, weight_decay=cfg.weight_decay)
    n = len(train_t[0])
    steps = max(1, n // cfg.batch_size)
    # one-cycle schedule (Smith & Topin 2019) over the full budget; early stopping may end it sooner
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.max_lr, total_steps=cfg.epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + member)
    groups = _group_index(cfg)
    best, best_state, bad, history = float("inf"), None, 0, []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        if reobserve is not None:
            train_t = (reobserve(member, epoch), *train_t[1:])
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(steps):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x = train_t[0][idx]
            if cfg.missing == "mask":  # hide whole surveys afresh in every batch
                x = drop_groups(x, groups, cfg.group_dropout, gen)
            loss = multitask_loss(net(x), train_t[1][idx], train_t[2][idx], train_t[3][idx],
                                  class_weight=cfg.class_weight, aux=train_t[4][idx], plx=plx, weight=train_t[5][idx],
                                  conditional=cond, likelihood=likelihood)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        net.eval()
        with torch.inference_mode():
            val = float(multitask_loss(net(val_t[0]), *val_t[1:4], class_weight=cfg.class_weight, aux=val_t[4],
                                       plx=plx, weight=val_t[5], conditional=cond, likelihood=likelihood,
                                       clip_sigma=VALIDATION_CLIP_SIGMA))
        history.append({"member": member, "epoch": epoch + 1, "train_loss": total / steps, "val_loss": val,
                        "lr": sched.get_last_lr()[0], "seconds": time.perf_counter() - t0})
        log(f"member {member} epoch {epoch + 1:3d}  train {total / steps:8.4f}  val {val:8.4f}")
        if val < best - 1e-4:
            best, best_state, bad = val, copy.deepcopy(net.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return net, history


def _calibrate(nets, val_t, cfg: TrainConfig, val_feh: np.ndarray, plx=None, likelihood=None, seen_t=None
               ) -> tuple[list[float], float, float, list[float]]:
    """Per-label sigma scale and class temperature minimising the validation NLL (Guo et al. 2017),
    the probability threshold of the giant class (see :func:`_class_threshold`), and the sigma scales of
    the giant components of class-conditional labels (their dwarf components' are in the first list): each
    component calibrated on the validation stars of its own class. ``likelihood``: the likelihood head's label
    is scaled through its posterior (:meth:`photofeh.model.likelihood.LikelihoodPrior.calibrated_scale`).

    ``seen_t``: the same validation stars as they will be predicted (a masked model's ``val_t`` has surveys
    hidden at random, 30% per group, which no catalogue star suffers): the sigma scales are fitted on them, so
    that the errors are calibrated for the mix of bands the stars have; the class temperature and threshold stay
    on ``val_t``, where the giant-class targets of configs/green2020.toml were set (benchmarks/bench_green2020.py)."""
    scale_t = val_t if seen_t is None else seen_t  # the stars the sigma scales are fitted on
    with torch.inference_mode():
        class_outs = [net(val_t[0]) for net in nets]
        outs = class_outs if seen_t is None else [net(scale_t[0]) for net in nets]
    scales = _sigma_scales(outs, "mean", "logvar", scale_t, plx)
    giant_scales: list[float] = []
    if cfg.class_conditional:
        g = scale_t[3].numpy()
        cond = conditional_index(cfg).tolist()
        for o in outs:  # the giant components in their labels' columns
            o["mean_g"], o["logvar_g"] = o["mean"].clone(), o["logvar"].clone()
            o["mean_g"][:, cond], o["logvar_g"][:, cond] = o["mean_giant"], o["logvar_giant"]
        dwarf = _sigma_scales(outs, "mean", "logvar", scale_t, plx, g == 0)
        giant = _sigma_scales(outs, "mean_g", "logvar_g", scale_t, plx, g == 1)
        for j in cond:
            scales[j] = dwarf[j]
        giant_scales = [giant[j] for j in cond]
    if likelihood is not None:
        scales[likelihood.index] = likelihood.calibrated_scale(outs, scale_t)
    temperature, threshold = _class_calibration(class_outs, val_t, cfg, val_feh)
    return scales, temperature, threshold, giant_scales


def _sigma_scales(outs: list[dict], mean_key: str, logvar_key: str, val_t, plx, rows: np.ndarray | None = None
                  ) -> list[float]:
    """For each label, the factor on the networks' sigmas that minimises the NLL of the validation stars
    (``rows``: a mask of them; all by default) for the ensemble's mixture (mean of the means, the members' mean
    variance times the factor squared plus the spread of their means)."""
    mean = torch.stack([o[mean_key] for o in outs]).double()
    var = torch.stack([o[logvar_key] for o in outs]).double().exp()
    mu, v_model, v_ens = mean.mean(0).numpy(), var.mean(0).numpy(), mean.var(0, unbiased=False).numpy()
    y, e, w = val_t[1].double().numpy(), val_t[2].double().numpy(), val_t[5].double().numpy()
    use = np.ones(len(y), bool) if rows is None else np.asarray(rows, bool)
    scales = [_clipped_scale(y[:, j] - mu[:, j], v_model[:, j], v_ens[:, j] + e[:, j] ** 2, w,
                             np.isfinite(y[:, j]) & use) for j in range(y.shape[1])]
    if plx is not None:  # parallax labels: the sigma scale that makes the measured parallaxes most likely
        from photofeh.model.parallax_labels import parallax_nll

        idx, loc, scale = plx
        cols = idx.tolist()
        m_t, v_t, ens = (torch.from_numpy(np.ascontiguousarray(a[use][:, cols])) for a in (mu, v_model, v_ens))
        aux = val_t[4].double()[torch.from_numpy(use)]
        for k, j in enumerate(idx.tolist()):
            def nll_p(log_s, k=k):
                # ensemble spread enters as extra variance: var = s^2 v_model + v_ens, as a log-variance
                logvar = torch.log(np.exp(2 * log_s) * v_t[:, k:k + 1] + ens[:, k:k + 1])
                out, ok = parallax_nll(m_t[:, k:k + 1], logvar, aux[:, 3 * k:3 * k + 3], loc[k].double(),
                                       scale[k].double())
                return float(out.sum() / ok.sum().clamp(min=1))

            scales[j] = float(np.exp(minimize_scalar(nll_p, bounds=(-2, 2), method="bounded").x))
    return scales


# Pulls beyond this many sigmas are left out of the sigma-scale fit (and the fit repeated until the stars kept do not
# change): 5.7e-7 of a Gaussian sample lies there, so a well-modelled label loses nothing, but the Gaussian NLL's
# scale is set by the mean squared pull, and one validation star at 25 sigma (a failed spectroscopic label, a
# mismatched photometry) raises it by 20% over 1,400 stars: every other star's error then reads too large (green2020
# Teff: scale 1.17 with four validation pulls beyond 5, 1.00 for another seed; test pull width 0.77 against 0.87).
# Pruning gross outliers before fitting the dispersion is Hogg, Bovy & Lang 2010 (arXiv:1008.4686), section 5; the
# benchmarks' pull std is taken within the same 5 sigma (benchmarks/bench_green2020.py).
SCALE_CLIP_SIGMA = 5.0


def _clipped_scale(r: np.ndarray, v_model: np.ndarray, v_fixed: np.ndarray, w: np.ndarray, ok: np.ndarray,
                   clip: float = SCALE_CLIP_SIGMA, max_iter: int = 10, log_z=None) -> float:
    """The factor s on the networks' sigmas minimising the weighted Gaussian NLL of the residuals ``r`` with
    variance s^2 ``v_model`` + ``v_fixed`` (the ensemble's spread and the label error), over the stars ``ok``
    whose pulls lie within ``clip`` at the current s (refitted until that set is stable; see SCALE_CLIP_SIGMA).
    ``log_z(v, k)``: a normaliser added to each kept star's NLL (the likelihood head's posterior,
    :meth:`photofeh.model.likelihood.LikelihoodPrior.sigma_scale`), given the stars ``k`` and their variances."""
    if not ok.any():
        return 1.0
    keep, scale = ok.copy(), 1.0
    for _ in range(max_iter):
        def nll(log_s, k=keep):  # weighted by the prior's weights: calibrated for the population it serves
            v = np.exp(2 * log_s) * v_model[k] + v_fixed[k]
            per_star = np.log(v) + r[k] ** 2 / v
            return np.average(per_star if log_z is None else per_star + 2 * log_z(v, k), weights=w[k])

        scale = float(np.exp(minimize_scalar(nll, bounds=(-2, 2), method="bounded").x))
        within = ok & (np.abs(np.where(ok, r, 0.0)) <= clip * np.sqrt(scale**2 * v_model + v_fixed))
        if np.array_equal(within, keep) or not within.any():
            break
        keep = within
    return scale


def _class_calibration(outs: list[dict], val_t, cfg: TrainConfig, val_feh: np.ndarray) -> tuple[float, float]:
    """The class temperature minimising the validation cross-entropy and the operating threshold, each star
    weighted as in the loss (the prior's weights, val_t[5]: flat-prior or targeting weights, else 1)."""
    temperature = 1.0
    if cfg.classify:
        logit = torch.stack([o["logit"] for o in outs]).double().numpy()
        g = val_t[3].double().numpy()
        ok = np.isfinite(g)
        w = val_t[5].double().numpy()[ok]

        def bce(log_t):
            p = np.clip((1 / (1 + np.exp(-logit[:, ok] / np.exp(log_t)))).mean(0), 1e-9, 1 - 1e-9)
            return -np.average(g[ok] * np.log(p) + (1 - g[ok]) * np.log(1 - p), weights=w)

        temperature = float(np.exp(minimize_scalar(bce, bounds=(-3, 3), method="bounded").x))
        p = (1 / (1 + np.exp(-logit[:, ok] / temperature))).mean(0)
        subset = np.ones(ok.sum(), bool)
        if cfg.class_operating_feh_max is not None and "feh" in cfg.labels:
            feh = val_feh[ok]
            if np.sum((feh < cfg.class_operating_feh_max) & (g[ok] == 1)) >= 20:
                subset = feh < cfg.class_operating_feh_max
        threshold = _class_threshold(p[subset], g[ok][subset] == 1, cfg.class_operating_point, w[subset])
    else:
        threshold = 0.5
    return temperature, threshold


def _class_threshold(p: np.ndarray, giant: np.ndarray, rule: str, weight: np.ndarray) -> float:
    """Probability threshold for calling a star a giant, chosen on validation stars (each counted with its
    ``weight``, as in the loss).

    'break-even': completeness equals purity (1 - contamination), the usual
    way to quote one operating point when both matter equally (as in the
    giant completeness/contamination targets); 'f1': maximal F1 score;
    'half': 0.5 on the calibrated probability.
    """
    if rule == "half":
        return 0.5
    w = np.asarray(weight, float)
    grid = np.linspace(0.02, 0.98, 97)
    tp = np.array([np.sum(w[(p >= t) & giant]) for t in grid])
    called = np.array([np.sum(w[p >= t]) for t in grid])
    giants = np.sum(w[giant])
    completeness = tp / giants if giants > 0 else np.zeros_like(tp)
    purity = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
    if rule == "f1":
        both = called + giants
        return float(grid[int(np.argmax(np.divide(2 * tp, both, out=np.zeros_like(tp), where=both > 0)))])
    if rule == "break-even":
        return float(grid[int(np.argmin(np.abs(completeness - purity)))])
    raise ValueError(f"class_operating_point must be 'break-even', 'f1' or 'half', got {rule!r}")


@dataclass(frozen=True)
class LRRange:
    """A learning-rate range test: the rates tried, the smoothed training loss at each, and the suggested
    maximum rate (a tenth of the rate at the smoothed loss minimum)."""

    lrs: np.ndarray
    losses: list[float]
    suggestion: float


def lr_find(table, cfg: TrainConfig, lr_min: float = 1e-6, lr_max: float = 1.0, steps: int = 120) -> LRRange:
    """Learning-rate range test (Smith 2017): raise the rate exponentially and record the loss.

    The ``lr-find`` command draws the curve (:func:`photofeh.report.run_figures.lr_range_figure`).
    """
    _set_threads(cfg)
    p = prepare(table, cfg)
    rows = np.flatnonzero(p.usable & np.isfinite(p.y).any(axis=1))
    ys = label_standardizer(p, rows)
    X0, E0, xs, es = input_scaling(p, rows, cfg)
    X, y, e, g, a, _ = _tensors(p, rows, xs, ys, cfg, hide=True, X=X0, X_err=E0, es=es)
    plx = _plx_spec(p, ys)
    torch.manual_seed(cfg.seed)
    net = build_network(cfg.architecture, network_inputs(len(cfg.features), cfg.missing, cfg.noise_aware), cfg.labels,
                        cfg.heads, cfg.classify, cfg.class_conditional)
    opt = torch.optim.AdamW(net.parameters(), lr=lr_min, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    lrs = np.geomspace(lr_min, lr_max, steps)
    losses, smooth = [], None
    net.train()
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(X), (cfg.batch_size,), generator=gen)
        loss = multitask_loss(net(X[idx]), y[idx], e[idx], g[idx], aux=a[idx], plx=plx,
                              conditional=conditional_index(cfg))
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = float(loss.detach())
        smooth = value if smooth is None else 0.9 * smooth + 0.1 * value
        losses.append(smooth)
        if not np.isfinite(smooth) or smooth > 4 * min(losses) + 10:
            break
    lrs = lrs[:len(losses)]
    suggestion = float(lrs[int(np.nanargmin(losses))] / 10)
    return LRRange(lrs, losses, suggestion)
