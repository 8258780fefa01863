"""Class-conditional absolute magnitudes (a dwarf and a giant component weighed by P(giant)) and the scoring
of parallax-learned magnitudes without circularity (issue 25)."""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
import torch

from photofeh.model.networks import build_network
from photofeh.model.train import TrainConfig, multitask_loss, train

M0 = 15.0  # apparent magnitude of the likelihood cases


def _mixture_out(mu_d, s_d, mu_g, s_g, logit):
    t = lambda v: torch.tensor([[v]], dtype=torch.float64)  # noqa: E731
    return {"mean": t(mu_d), "logvar": t(2 * np.log(s_d)), "mean_giant": t(mu_g), "logvar_giant": t(2 * np.log(s_g)),
            "logit": torch.tensor([logit], dtype=torch.float64)}


def _loss_of(out, obs, err, giant):
    aux = torch.tensor([[M0, obs, err]], dtype=torch.float64)
    y, e = torch.full((1, 1), np.nan, dtype=torch.float64), torch.zeros((1, 1), dtype=torch.float64)
    plx = (torch.tensor([0]), torch.tensor([0.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
    _, per = multitask_loss(out, y, e, torch.tensor([giant], dtype=torch.float64), per_label=True, aux=aux, plx=plx,
                            conditional=torch.tensor([0]))
    return float(per[0])


@pytest.mark.parametrize("obs,err,logit", [(1.58, 0.08, 0.0), (0.126, 0.02, 0.5), (0.5, 0.4, 1.5), (-0.2, 0.3, -2.0)])
def test_mixture_parallax_likelihood_is_the_integral_over_both_components(obs, err, logit):
    """-log of integral N(varpi | varpi(M), s^2) [(1 - P) N(M | dwarf) + P N(M | giant)] dM against a brute-force
    sum over M (2,000,001 points, in log space); a star of known class is scored by its component alone. Cases
    near the dwarf's parallax, near the giant's, at S/N 1.25 and negative."""
    from scipy.special import expit, logsumexp

    mu_d, s_d, mu_g, s_g = 6.0, 0.3, 0.5, 0.8
    m = np.linspace(-15.0, 30.0, 2_000_001)
    like = -0.5 * ((obs - 10 ** (2 - (M0 - m) / 5)) / err) ** 2 - np.log(err * np.sqrt(2 * np.pi))

    def log_normal(mu, s):
        return -0.5 * ((m - mu) / s) ** 2 - np.log(s * np.sqrt(2 * np.pi))

    dropped = 0.5 * np.log(2 * np.pi) + 0.5 * np.log(np.pi)  # the constants parallax_nll leaves out
    dm = np.log(m[1] - m[0])
    p = expit(logit)
    prior = np.logaddexp(np.log1p(-p) + log_normal(mu_d, s_d), np.log(p) + log_normal(mu_g, s_g))
    out = _mixture_out(mu_d, s_d, mu_g, s_g, logit)
    expected = {np.nan: -(logsumexp(like + prior) + dm) - dropped,
                0.0: -(logsumexp(like + log_normal(mu_d, s_d)) + dm) - dropped,
                1.0: -(logsumexp(like + log_normal(mu_g, s_g)) + dm) - dropped}
    for giant, want in expected.items():
        assert _loss_of(out, obs, err, giant) == pytest.approx(want, rel=1e-3, abs=1e-3), (giant, obs, err)


def test_the_other_component_never_poisons_the_gradient():
    """A dwarf's giant component (nothing trains it on a dwarf) may be anything, even enough to overflow a
    predicted parallax: the gradients stay finite (they were NaN before the component was chosen first)."""
    B = 4
    mean = torch.zeros((B, 1), requires_grad=True)
    wild = torch.full((B, 1), -300.0, requires_grad=True)  # M = -300: a parallax of 10^64 mas
    logvar = torch.full((B, 1), 8.0, requires_grad=True)
    out = {"mean": mean, "logvar": torch.zeros((B, 1)), "mean_giant": wild, "logvar_giant": logvar,
           "logit": torch.zeros(B, requires_grad=True)}
    aux = torch.tensor([[M0, 1.0, 0.5]] * B)
    loss = multitask_loss(out, torch.full((B, 1), np.nan), torch.zeros((B, 1)), torch.tensor([0.0, 0.0, 1.0, np.nan]),
                          aux=aux, plx=(torch.tensor([0]), torch.tensor([5.0]), torch.tensor([1.0])),
                          conditional=torch.tensor([0]))
    loss.backward()
    for t in (mean, wild, logvar, out["logit"]):
        assert torch.isfinite(t.grad).all()


@pytest.mark.parametrize("mode", ["causal", "independent"])
def test_folded_network_keeps_the_giant_components(mode):
    torch.manual_seed(3)
    net = build_network({"name": "mlp", "widths": [32, 16]}, 5, ["teff", "feh", "logg", "mabs_gaia_g"], mode,
                        class_conditional=["mabs_gaia_g"]).eval()
    x = torch.randn(300, 5)
    with torch.no_grad():
        before, after = net(x), net.folded()(x)
        assert set(after) == set(before) and before["mean_giant"].shape == (300, 1)
        for key in before:
            torch.testing.assert_close(after[key], before[key], rtol=1e-5, atol=2e-5)
        if mode == "causal":  # the classifier reads the estimates but not the class-conditional one
            h = net.backbone(x)
            cls_in = torch.cat([h, before["mean"][:, [0, 1, 2]][:, [net.labels.index(lab) for lab in
                                                                    ("teff", "feh", "logg")]]], 1)
            torch.testing.assert_close(net.cls(cls_in)[:, 0], before["logit"], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="classify"):
        build_network({"name": "mlp", "widths": [8]}, 5, ["logg", "mabs_gaia_g"], mode, classify=False,
                      class_conditional=["mabs_gaia_g"])


def test_point_estimate_error_is_the_mixture_spread_about_it():
    """The error of the class-conditional estimate is the root mean square of the mixture about the chosen
    component: against draws from the mixture."""
    from photofeh.model.predict import PhotometricModel

    rng = np.random.default_rng(4)
    n = 6
    m_d, s_d, m_g, s_g = rng.uniform(4, 7, n), rng.uniform(0.2, 0.5, n), rng.uniform(-1, 1.5, n), rng.uniform(0.3, 1, n)
    prob = np.array([0.01, 0.2, 0.45, 0.55, 0.8, 0.99])
    fake = types.SimpleNamespace(labels=["logg", "mabs_gaia_g"], conditional=["mabs_gaia_g"], _cond_index=[1])
    value = np.column_stack([np.full(n, 4.0), m_d, m_g])
    err = np.column_stack([np.full(n, 0.1), s_d, s_g])
    v, e, comps = PhotometricModel._class_estimates(fake, value, err, prob)
    assert v.shape == (n, 2) and np.array_equal(v[:, 0], value[:, 0])
    np.testing.assert_array_equal(v[:, 1], np.where(prob >= 0.5, m_g, m_d))
    np.testing.assert_array_equal(comps["mabs_gaia_g_giant_err"], s_g)
    draws = 400_000
    giant = rng.random((draws, n)) < prob
    M = np.where(giant, m_g + s_g * rng.standard_normal((draws, n)), m_d + s_d * rng.standard_normal((draws, n)))
    rms = np.sqrt(np.mean((M - v[:, 1]) ** 2, axis=0))
    np.testing.assert_allclose(e[:, 1], rms, rtol=0.01)


# ---------------------------------------------------------------- a small sample where classes share colours
def _k_stars(n: int, seed: int) -> pd.DataFrame:
    """K dwarfs and K giants with the same colours; a weak gravity feature gv tells them apart only in part.
    M_G: giants 0.8 + 0.5 (c - 1) +- 0.25, dwarfs 6.0 + 2 (c - 1) +- 0.25; parallaxes with 0.02 mas errors."""
    rng = np.random.default_rng(seed)
    giant = rng.random(n) < 0.4
    c = rng.uniform(0.8, 1.3, n)
    M = np.where(giant, 0.8 + 0.5 * (c - 1), 6.0 + 2.0 * (c - 1)) + 0.25 * rng.standard_normal(n)
    d = np.where(giant, rng.uniform(1.0, 3.0, n), rng.uniform(0.1, 0.4, n))  # kpc
    err = np.full(n, 0.02)
    return pd.DataFrame({"source_id": np.arange(n), "colour": c, "gv": np.where(giant, 0.5, -0.5)
                         + 0.6 * rng.standard_normal(n), "gaia_g": M + 5 * np.log10(d) + 10,
                         "parallax": 1 / d + err * rng.standard_normal(n), "parallax_error": err,
                         "logg_spec": np.where(giant, 2.5, 4.5) + 0.1 * rng.standard_normal(n),
                         "mabs_true": M, "giant_true": giant})


def _train(stars, tmp_path, name, **kw):
    cfg = TrainConfig(**{"features": ["colour", "gv"], "labels": ["logg", "mabs_gaia_g"],
                         "label_columns": {"logg": "logg_spec"}, "parallax_labels": ["mabs_gaia_g"],
                         "parallax_zero_point": 0.0, "deredden": False,
                         "architecture": {"name": "mlp", "widths": [32, 32]}, "epochs": 25, "batch_size": 256,
                         "seed": 1, "threads": 1, "baseline_rounds": 0, "min_features": 1, **kw})
    train(stars, cfg, tmp_path / name, log=lambda s: None)
    from photofeh.model.predict import load_model

    return load_model(tmp_path / name)


def test_class_conditional_magnitudes_on_stars_that_share_colours(tmp_path):
    """Where dwarfs and giants share colours, one Gaussian M lands between the two sequences; the class-conditional
    components find each sequence, the estimate is the more probable class's, and the errors are calibrated:
    each component's error holds 68% (+-6%) of its class's true M, and the estimate's pulls (whose error
    includes the other class) over all stars have an RMS of 1 within 15%."""
    stars = _k_stars(4000, seed=5)
    test = _k_stars(1500, seed=6)
    single = _train(stars, tmp_path, "single").predict(test)
    model = _train(stars, tmp_path, "mixture", class_conditional=["mabs_gaia_g"])
    assert model.meta["class_conditional"] == ["mabs_gaia_g"] and len(model.meta["sigma_scale_giant"]) == 1
    pred = model.predict(test)
    M, giant = test["mabs_true"].to_numpy(), test["giant_true"].to_numpy()
    ambiguous = pred["p_giant"].between(0.25, 0.75).to_numpy()
    assert ambiguous.sum() > 100  # the classes are not told apart for these stars
    # one Gaussian: a mean between the sequences (dwarfs more than a magnitude too bright)
    assert np.median(single["mabs_gaia_g"].to_numpy()[ambiguous & ~giant] - M[ambiguous & ~giant]) < -1.0
    for cls, sel in (("dwarf", ~giant), ("giant", giant)):
        r = pred[f"mabs_gaia_g_{cls}"].to_numpy()[sel] - M[sel]
        assert abs(np.median(r)) < 0.1, cls
        within = np.mean(np.abs(r) < pred[f"mabs_gaia_g_{cls}_err"].to_numpy()[sel])
        assert within == pytest.approx(0.68, abs=0.06), (cls, within)  # the error holds 68% of its class
    # each component carries its class's M_abs calibration (photofeh.model.absmag_calibration: near the identity
    # here, where each class's scatter is Gaussian), and the estimate is the more probable class's component
    calibration = model.absmag_calibration.pop("mabs_gaia_g")
    raw = model.predict(test)
    for cls in ("dwarf", "giant"):
        c = calibration[cls]["all"]  # no [Fe/H] label here: one bin, the class's
        assert c["calibrated"] and abs(c["median"]) < 0.2 and 0.8 < c["width"] < 1.2, (cls, c)
        col = f"mabs_gaia_g_{cls}"
        np.testing.assert_allclose(pred[col], raw[col] + c["median"] * raw[f"{col}_err"], rtol=1e-6)
        np.testing.assert_allclose(pred[f"{col}_err"], c["width"] * raw[f"{col}_err"], rtol=1e-6)
    chosen = np.where(pred["p_giant"] >= 0.5, pred["mabs_gaia_g_giant"], pred["mabs_gaia_g_dwarf"])
    np.testing.assert_array_equal(pred["mabs_gaia_g"].to_numpy(), chosen)
    pull = (pred["mabs_gaia_g"].to_numpy() - M) / pred["mabs_gaia_g_err"].to_numpy()
    assert 0.85 < np.sqrt(np.mean(pull**2)) < 1.15


def test_evaluate_never_scores_a_parallax_magnitude_against_itself(tmp_path):
    """With the parallax as an input, M from the parallaxes is scored on predictions made with it hidden (a
    masked model), or not at all (a model that needs every input); without it, on every precise parallax."""
    from photofeh.model.evaluate import evaluate_model, regression_metrics
    from photofeh.model.parallax_labels import mabs_from_parallax

    stars, test = _k_stars(3000, seed=7), _k_stars(800, seed=8)
    ref, _ = mabs_from_parallax(test["gaia_g"], test["parallax"], test["parallax_error"], 10.0)
    masked = _train(stars, tmp_path, "masked", features=["colour", "gv", "parallax"], missing="mask", epochs=4)
    report = evaluate_model(masked, test, figures=False)
    entry = report["labels"]["mabs_gaia_g"]
    assert "hidden" in entry["scored"] and "parallax" in entry["scored"] and "error >= 10" in entry["reference"]
    blind = masked.predict(test.assign(parallax=np.nan))
    seen = masked.predict(test)
    assert not np.allclose(blind["mabs_gaia_g"], seen["mabs_gaia_g"])  # the input matters: hiding it is a change
    want = regression_metrics(blind["mabs_gaia_g"].to_numpy(), ref, blind["mabs_gaia_g_err"].to_numpy())
    assert entry["vs_labels"]["bias_median"] == pytest.approx(want["bias_median"], abs=1e-9)
    assert entry["vs_labels"]["n"] == want["n"] > 500
    assert report["labels"]["logg"]["vs_labels"]["n"] == 800 and "scored" not in report["labels"]["logg"]

    required = _train(stars, tmp_path, "required", features=["colour", "gv", "parallax"], epochs=2)
    report = evaluate_model(required, test, figures=False)
    assert "mabs_gaia_g" not in report["labels"] and "against itself" in report["not_scored"]["mabs_gaia_g"]
    assert "logg" in report["labels"]

    blind_model = _train(stars, tmp_path, "blind", epochs=2)
    report = evaluate_model(blind_model, test, figures=False)
    assert "does not take the parallax" in report["labels"]["mabs_gaia_g"]["scored"]
    assert "not_scored" not in report


def test_the_distance_config_is_the_benchmarks_setup():
    """configs/green2020_distances.toml trains what benchmarks/bench_distances.py scores as "after, all bands"."""
    import sys
    from pathlib import Path

    from photofeh.model.train import load_config

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    import bench_distances as bench

    cfg = load_config(root / "configs" / "green2020_distances.toml")
    assert cfg.features == bench.GREEN2020_ALL_BANDS and not any("parallax" in f for f in cfg.features)
    assert cfg.parallax_labels == cfg.class_conditional == ["mabs_gaia_g"]
    assert cfg.parallax_zero_point == bench.DR2_ZERO_POINT and cfg.deredden is False and cfg.missing == "mask"
    assert cfg.labels == [*bench.LABELS, "mabs_gaia_g"] and cfg.label_columns == bench.COLUMNS
