"""The sigma scales fitted on the validation stars (train_loop._sigma_scales): a few gross outliers among the
labels must not set every star's error (issue 26, green2020 Teff pull width 0.77)."""

import numpy as np
import torch

from photofeh.model.train_loop import _sigma_scales


def _validation(resid: np.ndarray, sigma: np.ndarray, label_err: np.ndarray):
    """One member's outputs and the validation tuple (X, y, e, giant, aux, weight) of one label."""
    n = len(resid)
    out = {"mean": torch.zeros(n, 1, dtype=torch.float64),
           "logvar": torch.from_numpy(np.log(sigma**2)[:, None])}
    val_t = (torch.zeros(n, 1), torch.from_numpy(resid[:, None]), torch.from_numpy(label_err[:, None]),
             torch.full((n,), float("nan")), torch.zeros(n, 0), torch.ones(n, dtype=torch.float64))
    return [out], val_t


def test_scale_is_the_closed_form_maximum_likelihood_without_outliers():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.5, 2.0, 2000)
    resid = 1.3 * sigma * rng.standard_normal(2000)
    outs, val_t = _validation(resid, sigma, np.zeros(2000))
    # the Gaussian NLL's minimum over s, with no label error: s^2 = mean((r / sigma)^2)
    assert abs(_sigma_scales(outs, "mean", "logvar", val_t, None)[0] - np.sqrt(np.mean((resid / sigma) ** 2))) < 2e-3


def test_four_gross_outliers_do_not_widen_every_star():
    """1,400 stars whose errors are exactly right, plus four labels 25 sigma off: the scale stays 1 (within the
    sampling error of 1,400 stars, ~2%); the unclipped NLL gives sqrt((1400 + 4 x 625) / 1404) = 1.67."""
    rng = np.random.default_rng(2)
    sigma = rng.uniform(60.0, 200.0, 1404)  # K, like the Teff errors
    label_err = rng.uniform(20.0, 100.0, 1404)
    total = np.sqrt(sigma**2 + label_err**2)
    resid = total * rng.standard_normal(1404)
    resid[:4] = 25 * total[:4] * np.array([1, -1, 1, -1])
    outs, val_t = _validation(resid, sigma, label_err)
    assert abs(_sigma_scales(outs, "mean", "logvar", val_t, None)[0] - 1.0) < 0.06


def test_the_likelihood_heads_scale_leaves_gross_outliers_out_too():
    """The likelihood head's [Fe/H] scale (fitted through its posterior, LikelihoodPrior.calibrated_scale) takes
    the same 5-sigma clip as every other label's: 1,400 stars whose errors are right plus four labels 25 sigma
    off give 1.00 within 0.06 (unclipped, as it was: 1.85). The histogram is flat and wide, so the posterior is
    the likelihood and the unclipped answer is the closed form above."""
    from photofeh.model.likelihood import LikelihoodPrior

    rng = np.random.default_rng(2)
    sigma = rng.uniform(0.1, 0.4, 1404)
    label_err = rng.uniform(0.05, 0.2, 1404)
    total = np.sqrt(sigma**2 + label_err**2)
    mu = rng.normal(0.0, 1.0, 1404)
    y = mu + total * rng.standard_normal(1404)
    y[:4] = mu[:4] + 25 * total[:4] * np.array([1, -1, 1, -1])
    outs = [{"mean": torch.from_numpy(mu)[:, None], "logvar": torch.from_numpy(np.log(sigma**2))[:, None]}]
    val_t = (None, torch.from_numpy(y)[:, None], torch.from_numpy(label_err)[:, None])
    prior = LikelihoodPrior(0, "feh", np.linspace(-20.0, 20.0, 81), np.ones(80))
    assert abs(prior.calibrated_scale(outs, val_t) - 1.0) < 0.06


def test_a_masked_models_sigma_scale_is_fitted_on_the_stars_as_they_are_predicted():
    """A masked model's validation stars have surveys hidden at random (30% per group); no catalogue star is
    predicted so. A network that states sigma 2 for a star with a survey hidden and 1 otherwise, on stars whose
    residuals are N(0, 1) whatever is hidden (the hidden survey carried nothing): on the hidden mix the NLL's
    scale is sqrt(0.7 + 0.3 / 4) = 0.88, which would shrink every predicted star's error by 12%; on the stars as
    predicted it is 1. The class temperature and threshold stay those of the hidden mix."""
    from photofeh.model.train_config import TrainConfig
    from photofeh.model.train_loop import _calibrate

    rng = np.random.default_rng(3)
    n = 4000
    hidden = (rng.random(n) < 0.3).astype(np.float32)
    giant = (rng.random(n) < 0.4).astype(np.float32)
    resid = rng.standard_normal(n)
    logit = torch.from_numpy((4.0 * (2 * giant - 1) + 3.0 * rng.standard_normal(n))[:, None])

    def net(x):  # column 0: a survey hidden; column 1: the star's logit
        return {"mean": torch.zeros(len(x), 1, dtype=torch.float64),
                "logvar": 2 * torch.log1p(x[:, :1].double()), "logit": x[:, 1].double()}

    def tuple_for(flag):
        X = torch.cat([torch.from_numpy(flag)[:, None], logit.float()], dim=1)
        return (X, torch.from_numpy(resid[:, None]), torch.zeros(n, 1, dtype=torch.float64),
                torch.from_numpy(giant), torch.zeros(n, 0), torch.ones(n, dtype=torch.float64))

    cfg = TrainConfig(labels=["feh"], label_columns={"feh": "feh_spec"}, missing="mask", baseline_rounds=0)
    val_t, seen_t = tuple_for(hidden), tuple_for(np.zeros(n, np.float32))
    before = _calibrate([net], val_t, cfg, np.full(n, np.nan))
    after = _calibrate([net], val_t, cfg, np.full(n, np.nan), seen_t=seen_t)
    assert abs(before[0][0] - np.sqrt(0.7 + 0.3 / 4)) < 0.03
    assert abs(after[0][0] - 1.0) < 0.03
    assert after[1:3] == before[1:3]
