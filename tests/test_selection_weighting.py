"""Targeting weights in the loss (issue 27 item 2): labelled stars weighted by 1 / their targeting probability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from photofeh.model.prior import selection_weights

# the toy's two populations: a common metal-rich one the targeting under-samples (a survey's bright thin disk
# beside SEGUE-like colour boxes) and a rarer metal-poor one it favours
RICH, POOR = (-0.2, 0.2), (-1.2, 0.3)  # [Fe/H] mean and spread
SHARE_RICH = 0.8  # of the survey
P_TARGET = {"rich": 0.02, "poor": 0.5}
COLOUR_NOISE = 0.4  # dex: the one 'colour' x = [Fe/H] + noise


def _survey(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rich = rng.random(n) < SHARE_RICH
    feh = np.where(rich, rng.normal(*RICH, n), rng.normal(*POOR, n))
    return pd.DataFrame({"source_id": np.arange(n), "x": feh + rng.normal(0, COLOUR_NOISE, n),
                         "x2": rng.normal(0, 1, n), "feh_spec": feh,
                         "p_target": np.where(rich, P_TARGET["rich"], P_TARGET["poor"]), "rich": rich})


def _labelled(n: int, seed: int, on_colour: bool = False) -> pd.DataFrame:
    """Stars of the survey chosen with their targeting probability: 14% rich (80% of the survey). ``on_colour``:
    targeted on the observed colour x alone (x < -0.6 favoured, as a colour box would), not on the population."""
    survey = _survey(12 * n, seed)
    if on_colour:
        survey["p_target"] = np.where(survey["x"] < -0.6, P_TARGET["poor"], P_TARGET["rich"])
    chosen = np.random.default_rng(seed + 1).random(len(survey)) < survey["p_target"].to_numpy()
    return survey[chosen].iloc[:n].reset_index(drop=True)


def _rich_bias(fit: pd.DataFrame, test: pd.DataFrame, weighting: str, run) -> float:
    """Median residual of the survey's rich stars, the toy's network trained on ``fit`` (8 epochs, seed 0)."""
    from photofeh.model.predict import load_model
    from photofeh.model.train import TrainConfig, train

    cfg = TrainConfig(features=["x", "x2"], labels=["feh"], label_columns={"feh": "feh_spec"}, classify=False,
                      min_features=2, epochs=8, seed=0, split=(0.8, 0.2, 0.0), baseline_rounds=0, threads=1,
                      selection_column="p_target", selection_weighting=weighting)
    train(fit, cfg, run, log=lambda s: None)
    rich = test["rich"].to_numpy()
    est = load_model(run).predict(test)["feh"].to_numpy()[rich]
    return float(np.median(est - test["feh_spec"].to_numpy()[rich]))


def _bayes_bias(x: np.ndarray, feh: np.ndarray, share_rich: float) -> float:
    """Median residual of the posterior mean of the toy under a prior with ``share_rich`` of rich stars, on a
    grid: the estimate a network fitted by maximum likelihood converges to (independent of photofeh)."""
    grid = np.linspace(-3.5, 1.5, 2001)
    prior = share_rich * norm.pdf(grid, *RICH) + (1 - share_rich) * norm.pdf(grid, *POOR)
    like = norm.pdf(x[:, None], grid, COLOUR_NOISE)
    return float(np.median((like * prior) @ grid / (like @ prior) - feh))


def test_selection_weights_are_self_normalised_trimmed_and_keep_the_ratios():
    p = np.array([0.5] * 6 + [0.02] * 3 + [0.001, np.nan, 0.0, 0.25])
    ref = np.arange(10)
    w = selection_weights(p, ref, cap=5.0)
    # 1/0.001 trimmed to 5; the other nine share the remaining 5 in proportion to 1/p: 2 x 6 + 50 x 3 = 162
    assert w[ref].mean() == pytest.approx(1.0, abs=1e-6) and w[9] == pytest.approx(5.0)
    assert w[0] == pytest.approx(5 * 2 / 162) and w[6] == pytest.approx(5 * 50 / 162)
    assert w[12] / w[0] == pytest.approx(2.0)  # a star outside the reference, 1/p on the same scale
    assert w[10] == 1.0 and w[11] == 1.0  # no probability: the mean weight
    untrimmed = selection_weights(p, ref, cap=1e4)
    np.testing.assert_allclose(untrimmed[ref], (1 / p[ref]) / np.mean(1 / p[ref]))
    # a cap just above 1 trims nearly every star and still averages exactly 1 (an iteration stalled there)
    many = 10 ** np.random.default_rng(0).uniform(-4, -0.7, 5000)
    for cap in (1.01, 3.0):
        w = selection_weights(many, np.arange(5000), cap)
        assert w.mean() == pytest.approx(1.0, abs=1e-12) and w.max() == pytest.approx(cap)


def test_the_trimmed_share_of_the_weight_is_recorded():
    """One star with p = 0.001 among 99 with p = 0.5, trimmed at 5: it carried 1000 of the 1198 untrimmed."""
    from photofeh.model.train import TrainConfig
    from photofeh.model.train_data import training_prior

    p = np.array([0.001] + [0.5] * 99 + [0.5] * 20)
    cfg = TrainConfig(selection_column="p", selection_weighting="loss", selection_weight_cap=5.0)
    out = training_prior(None, np.arange(100), np.arange(100, 120), cfg, p)
    sel = out["selection"]
    assert sel["trimmed"] == pytest.approx(0.01) and sel["max_weight"] == pytest.approx(5.0)
    assert sel["trimmed_weight_share"] == pytest.approx(1000 / 1198)
    assert out["train_weights"].mean() == pytest.approx(1.0)


def test_survey_matched_prior_moves_the_undertargeted_population_to_the_truth(tmp_path):
    """A network trained on the labelled stars as they are leans toward their mix (14% rich) and reads the
    survey's rich stars too metal-poor; weighted by 1/p (no weight trimmed here) it leans toward the survey's mix
    (80% rich), as the Bayes posterior means of the two priors say (-0.29 dex against -0.05, grid)."""
    import json

    fit, test = _labelled(6_000, 1), _survey(4_000, 2)
    rich = test["rich"].to_numpy()
    x, feh = test["x"].to_numpy()[rich], test["feh_spec"].to_numpy()[rich]
    labelled_share = float(fit["rich"].mean())
    assert labelled_share == pytest.approx(0.14, abs=0.02)
    bayes = {"none": _bayes_bias(x, feh, labelled_share), "loss": _bayes_bias(x, feh, SHARE_RICH)}
    bias = {w: _rich_bias(fit, test, w, tmp_path / w) for w in ("none", "loss")}
    assert bayes["none"] == pytest.approx(-0.29, abs=0.03) and bayes["loss"] == pytest.approx(-0.05, abs=0.03)
    assert bias["none"] == pytest.approx(bayes["none"], abs=0.06)
    assert bias["loss"] == pytest.approx(bayes["loss"], abs=0.06)
    assert bias["loss"] > bias["none"] + 0.15
    meta = json.loads((tmp_path / "loss" / "model" / "model.json").read_text())
    sel = meta["prior"]["selection"]
    assert sel["trimmed"] == 0.0 and sel["trimmed_weight_share"] == 0.0
    assert sel["effective_train_stars"] < 0.6 * meta["training"]["n_train"]


def test_selection_on_the_inputs_alone_leaves_the_estimates_where_they_were(tmp_path):
    """Targeted on the network's own input (a colour box), the labelled stars' p([Fe/H] | x) is the survey's: the
    unweighted network already reads the survey's rich stars as the Bayes posterior under the survey's mix does,
    though the labelled stars hold well under the survey's share of them, and weighting by 1/p moves nothing
    (Shimodaira 2000: a correctly specified fit needs no covariate-shift weights)."""
    fit, test = _labelled(6_000, 1, on_colour=True), _survey(4_000, 2)
    rich = test["rich"].to_numpy()
    x, feh = test["x"].to_numpy()[rich], test["feh_spec"].to_numpy()[rich]
    assert float(fit["rich"].mean()) < SHARE_RICH - 0.25
    bayes_survey = _bayes_bias(x, feh, SHARE_RICH)
    bayes_labelled = _bayes_bias(x, feh, float(fit["rich"].mean()))
    assert bayes_labelled < bayes_survey - 0.05  # the two priors would read them differently
    bias = {w: _rich_bias(fit, test, w, tmp_path / w) for w in ("none", "loss")}
    assert bias["none"] == pytest.approx(bayes_survey, abs=0.03)
    assert bias["loss"] == pytest.approx(bias["none"], abs=0.03)


def test_selection_weighting_needs_a_column_and_the_labels_prior():
    from photofeh.model.train import TrainConfig

    with pytest.raises(ValueError, match="selection_column"):
        TrainConfig(selection_weighting="loss").validate()
    with pytest.raises(ValueError, match="use one or the other"):
        TrainConfig(selection_weighting="loss", selection_column="p", prior="flat").validate()
    with pytest.raises(ValueError, match="selection_weighting must be one of"):
        TrainConfig(selection_weighting="yes", selection_column="p").validate()
    for cap in (0.5, 1.0):  # at 1 every weight would be the mean: refused
        with pytest.raises(ValueError, match="selection_weight_cap must be above 1"):
            TrainConfig(selection_weight_cap=cap).validate()


def test_class_calibration_counts_each_star_with_its_loss_weight():
    """The giant class's temperature and operating threshold are fitted on validation stars weighted as in the
    loss: with integer weights, the same as repeating each star that many times unweighted (an independent
    computation). Before, the weights were ignored: the weighted fit equalled the plain one."""
    import torch

    from photofeh.model.train import TrainConfig
    from photofeh.model.train_loop import _class_calibration

    rng = np.random.default_rng(4)
    n = 3000
    giant = (rng.random(n) < 0.3).astype(float)
    logit = 2.5 * (2 * giant - 1) + rng.normal(0, 2.0, n)
    w = rng.integers(1, 4, n).astype(float)
    w[giant == 1] *= 2  # the giants weigh more, so the weighted fit must move
    feh = rng.uniform(-2.5, 0.3, n)
    cfg = TrainConfig()

    def fit(lg, gg, ww, ff):
        val_t = (None, None, None, torch.tensor(gg), None, torch.tensor(ww, dtype=torch.float32))
        return _class_calibration([{"logit": torch.tensor(lg)}], val_t, cfg, ff)

    weighted = fit(logit, giant, w, feh)
    rep = np.repeat(np.arange(n), w.astype(int))
    repeated = fit(logit[rep], giant[rep], np.ones(rep.size), feh[rep])
    plain = fit(logit, giant, np.ones(n), feh)
    assert weighted[0] == pytest.approx(repeated[0], rel=1e-4) and weighted[1] == pytest.approx(repeated[1])
    assert weighted[1] != pytest.approx(plain[1])
