"""prior = "likelihood" (photofeh.model.likelihood): one trained model, a per-star and a population estimate.

The toy: [Fe/H] drawn from N(-0.5, 0.4^2), u-g = 1 + 0.4 ([Fe/H] + n) with n ~ N(0, 0.25^2), so the colour's
likelihood in [Fe/H] is Gaussian of width 0.25 dex about x = (u-g - 1) / 0.4. The independent references are
analytic, star by star (a Gaussian prior times a Gaussian likelihood): the best per-star estimate is the
posterior mean -0.5 + k (x + 0.5), k = 0.16 / 0.2225, which scatters by sqrt(0.16 x 0.0625 / 0.2225) = 0.212 dex
and leans toward -0.5 by 0.28 x (-0.5 - [Fe/H]) (about +0.19 dex in the bin -1.5..-1 and -0.18 in 0..0.5); the
likelihood's maximum x is unbiased with a scatter of 0.25 dex.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from photofeh.model.evaluate import gaussian_fit_sigma
from photofeh.model.likelihood import posterior_moments

PRIOR_MEAN, PRIOR_SD, LIKELIHOOD_SD = -0.5, 0.4, 0.25


def _toy(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    feh = rng.normal(PRIOR_MEAN, PRIOR_SD, n)
    r = np.full(n, 18.0)
    g = r + 0.4 + rng.normal(0, 0.02, n)  # g-r carries nothing
    u = g + 1.0 + 0.4 * (feh + rng.normal(0, LIKELIHOOD_SD, n))
    out = {"source_id": np.arange(n), "sdss_u": u, "sdss_g": g, "sdss_r": r, "sdss_i": r - 0.15, "sdss_z": r - 0.2,
           "ebv": np.zeros(n), "feh_spec": feh}
    for b in "ugriz":
        out[f"sdss_{b}_err"] = np.full(n, 0.02)
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def toy_predictions(tmp_path_factory):
    from photofeh.model.predict import load_model
    from photofeh.model.train import TrainConfig, train

    cfg = TrainConfig(features=["sdss_u-sdss_g", "sdss_g-sdss_r"], labels=["feh"], label_columns={"feh": "feh_spec"},
                      classify=False, label_noise=False, baseline_rounds=0, epochs=10, batch_size=256, seed=3,
                      threads=1, split=(0.7, 0.15, 0.15), prior="likelihood", min_features=2,
                      architecture={"name": "mlp", "widths": [32, 32], "dropout": 0.0})
    run = train(_toy(6_000, 1), cfg, tmp_path_factory.mktemp("lik") / "run", log=lambda s: None)
    test = _toy(8_000, 2)
    model = load_model(run)
    return test, model.predict(test), load_model(run, prior="flat").predict(test), model, run


def _bias(est, feh, lo):
    sel = (feh >= lo) & (feh < lo + 0.5)
    return float(np.median(est[sel] - feh[sel]))


def _analytic(test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The exact per-star posterior mean and the likelihood's maximum of every toy star."""
    x = ((test["sdss_u"] - test["sdss_g"]).to_numpy() - 1.0) / 0.4
    k = PRIOR_SD**2 / (PRIOR_SD**2 + LIKELIHOOD_SD**2)
    return PRIOR_MEAN + k * (x - PRIOR_MEAN), x


def test_population_estimate_is_unbiased_where_the_per_star_one_leans(toy_predictions):
    test, out, *_ = toy_predictions
    feh = test["feh_spec"].to_numpy()
    star, pop = out["feh"].to_numpy(), out["feh_population"].to_numpy()
    best, ml = _analytic(test)
    for lo in (-1.5, 0.0):  # the prior's sparse sides, where the per-star estimate leans by ~0.19 dex
        assert _bias(star, feh, lo) == pytest.approx(_bias(best, feh, lo), abs=0.05)
        assert _bias(pop, feh, lo) == pytest.approx(_bias(ml, feh, lo), abs=0.05)
        assert abs(_bias(pop, feh, lo)) < 0.4 * abs(_bias(star, feh, lo))


def test_both_scatters_match_the_analytic_ones(toy_predictions):
    test, out, *_ = toy_predictions
    feh = test["feh_spec"].to_numpy()
    best, ml = _analytic(test)
    s_star = gaussian_fit_sigma(out["feh"].to_numpy() - feh)[1]
    s_pop = gaussian_fit_sigma(out["feh_population"].to_numpy() - feh)[1]
    assert s_star == pytest.approx(gaussian_fit_sigma(best - feh)[1], rel=0.05)  # 0.212 dex
    assert s_star <= 1.10 * np.sqrt(PRIOR_SD**2 * LIKELIHOOD_SD**2 / (PRIOR_SD**2 + LIKELIHOOD_SD**2))
    assert s_pop == pytest.approx(gaussian_fit_sigma(ml - feh)[1], rel=0.08)  # 0.25 dex
    # errors that say so: pulls of width ~1 for both columns
    for col in ("feh", "feh_population"):
        pull = (out[col].to_numpy() - feh) / out[f"{col}_err"].to_numpy()
        assert 1.4826 * np.median(np.abs(pull - np.median(pull))) == pytest.approx(1.0, abs=0.1)


def test_prior_flat_gives_the_population_column_and_the_model_records_its_kind(toy_predictions):
    _, out, flat, model, _ = toy_predictions
    np.testing.assert_allclose(flat["feh"].to_numpy(), out["feh_population"].to_numpy())
    assert model.meta["prior"]["kind"] == "likelihood"
    assert out.attrs["model_trained_prior"] == "likelihood" and out.attrs["model_prior"] == "labels"
    assert "estimate_population" in model.meta["calibration_sample"]


def test_posterior_moments_match_a_fine_numerical_integral():
    rng = np.random.default_rng(0)
    edges = np.round(np.arange(-3.0, 0.61, 0.1), 6)
    counts = rng.integers(0, 200, edges.size - 1).astype(float)
    counts[:5] = 0  # empty bins: the posterior has no mass there
    mu, s = rng.uniform(-3.5, 1.0, 200), np.exp(rng.uniform(np.log(0.02), np.log(2.0), 200))
    mean, sd = posterior_moments(mu, s, edges, counts)
    grid = np.linspace(-3.0, 0.6, 36_001)[:-1] + 0.5e-4
    pi = counts[np.clip(np.searchsorted(edges, grid, side="right") - 1, 0, counts.size - 1)]
    post = np.exp(-0.5 * ((grid[None, :] - mu[:, None]) / s[:, None]) ** 2) * pi[None, :]
    post /= post.sum(1, keepdims=True)
    ref_mean = post @ grid
    ref_sd = np.sqrt(post @ grid**2 - ref_mean**2)
    np.testing.assert_allclose(mean, ref_mean, atol=2e-3)
    np.testing.assert_allclose(sd, ref_sd, atol=2e-3, rtol=1e-2)
    # a posterior far from every labelled star sits in the nearest occupied bin
    far, far_sd = posterior_moments(np.array([5.0]), np.array([0.05]), edges, counts)
    assert 0.5 <= far[0] <= 0.6 and far_sd[0] < 0.1


def test_deconvolving_the_population_column_recovers_the_true_distribution(toy_predictions, tmp_path):
    """The population column is a Gaussian likelihood with its width, so deconvolving it with its errors (mdf
    --estimate population --method xd) gives back the toy's N(-0.5, 0.4^2); the per-star column, a posterior,
    deconvolved alike comes out far too narrow (the prior counted twice: about 0.27 dex analytically)."""
    from photofeh.galaxy.populations import mdf_of_predictions

    _, out, *_ = toy_predictions
    path = tmp_path / "predictions.parquet"
    out.to_parquet(path)
    pop, counts, _ = mdf_of_predictions(path, method="xd", estimate="population", n_boot=0, n_components=1)
    star, _, _ = mdf_of_predictions(path, method="xd", n_boot=0, n_components=1)
    assert counts["selected"] == len(out)
    assert pop["median"] == pytest.approx(PRIOR_MEAN, abs=0.03)
    assert pop["width"] == pytest.approx(PRIOR_SD, rel=0.08)
    assert star["width"] < 0.8 * PRIOR_SD
    out.drop(columns=["feh_population"]).to_parquet(tmp_path / "labels_model.parquet")
    with pytest.raises(KeyError, match="prior = \"likelihood\""):
        mdf_of_predictions(tmp_path / "labels_model.parquet", method="xd", estimate="population", n_boot=0)


def test_the_moment_table_of_a_catalogue_chunk_matches_the_direct_sums():
    from photofeh.model.likelihood import _moments_blocks
    from photofeh.model.prior import TABLE_MIN_STARS

    rng = np.random.default_rng(1)
    edges = np.round(np.arange(-3.0, 0.61, 0.1), 6)
    counts = np.round(2000 * np.exp(-0.5 * ((edges[:-1] + 0.45) / 0.35) ** 2)) + rng.integers(0, 3, edges.size - 1)
    n = TABLE_MIN_STARS + 1000
    mu, s = rng.uniform(-3.5, 1.0, n), np.exp(rng.uniform(np.log(0.03), np.log(2.5), n))
    mean, sd = posterior_moments(mu, s, edges, counts)  # through the table
    ref_mean, ref_sd = _moments_blocks(mu, s, (tuple(edges), tuple(counts)))
    # 99% of stars within 0.003 dex and 0.5%; the worst (s of a few hundredths at a sparse bin's edge) 0.01 and 5%
    assert np.percentile(np.abs(mean - ref_mean), 99) < 0.003 and np.max(np.abs(mean - ref_mean)) < 0.01
    assert np.percentile(np.abs(sd / ref_sd - 1), 99) < 0.005 and np.max(np.abs(sd / ref_sd - 1)) < 0.05


def test_predict_and_mdf_commands_carry_the_population_column(toy_predictions, tmp_path):
    """`photofeh predict` writes feh_population beside feh; `photofeh mdf --estimate population` deconvolves it
    (the toy's N(-0.5, 0.4^2) again) and records the option."""
    import json

    from photofeh.cli import main

    test, _, _, _, run = toy_predictions
    stars = tmp_path / "stars.parquet"
    test.iloc[:3000].to_parquet(stars)
    assert main(["predict", str(run), str(stars), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    part = pd.read_parquet(sorted((tmp_path / "pred").glob("part-*.parquet"))[0])
    assert {"feh", "feh_err", "feh_population", "feh_population_err"} <= set(part.columns)
    assert main(["mdf", str(tmp_path / "pred"), "--out", str(tmp_path / "mdf"), "--estimate", "population",
                 "--method", "xd", "--components", "1", "--bootstrap", "0"]) == 0
    report = json.loads((tmp_path / "mdf" / "mdf.json").read_text())
    assert report["options"]["estimate"] == "population" and "prior_warning" not in report
    assert report["mdf"]["width"] == pytest.approx(PRIOR_SD, rel=0.12)


def test_the_population_column_unfolds_through_its_own_response(toy_predictions):
    from photofeh.galaxy.unfold import ResponseSample

    *_, model, _ = toy_predictions
    meta = model.meta
    population = ResponseSample.from_meta(meta, "flat")
    np.testing.assert_allclose(population.estimate, meta["calibration_sample"]["estimate_population"])
    np.testing.assert_allclose(ResponseSample.from_meta(meta, "labels").estimate,
                               meta["calibration_sample"]["estimate"])
    older = {**meta, "calibration_sample": {k: v for k, v in meta["calibration_sample"].items()
                                            if not k.endswith("_population")}}
    assert ResponseSample.from_meta(older, "flat") is None  # never the posterior's response in its place
    # a posterior entry that is not finite drops only from the posterior's sample: the population column keeps
    # every entry, each paired with its own true value
    sample = meta["calibration_sample"]
    gap = {**meta, "calibration_sample": {**sample, "estimate": [float("nan"), *sample["estimate"][1:]]}}
    population = ResponseSample.from_meta(gap, "flat")
    np.testing.assert_allclose(population.estimate, sample["estimate_population"])
    np.testing.assert_allclose(population.true, sample["true"])


def test_an_ensembles_scale_is_fitted_as_prediction_applies_it():
    """Two members whose means differ by +-0.5 (spread 0.25) and whose variances are 0.2^2: labels drawn with
    the members' variance scaled by 2^2 and the spread added unscaled, as PhotometricModel._ensemble composes an
    ensemble's variance, give back a factor of 2 (scaling the spread too would give ~1.19). The histogram is flat
    and wide, so the posterior is the likelihood."""
    import torch

    from photofeh.model.likelihood import LikelihoodPrior

    rng = np.random.default_rng(5)
    n, c_true, d, s = 40_000, 2.0, 0.5, 0.2
    mu = rng.normal(0.0, 1.0, n)
    y = mu + rng.normal(0.0, np.sqrt(c_true**2 * s**2 + d**2), n)
    logvar = torch.full((n, 1), np.log(s**2), dtype=torch.float64)
    outs = [{"mean": torch.from_numpy(mu + sign * d)[:, None], "logvar": logvar} for sign in (1.0, -1.0)]
    val_t = (None, torch.from_numpy(y)[:, None], torch.zeros((n, 1), dtype=torch.float64))
    prior = LikelihoodPrior(0, "feh", np.linspace(-20.0, 20.0, 81), np.ones(80))
    assert prior.calibrated_scale(outs, val_t) == pytest.approx(c_true, rel=0.03)
