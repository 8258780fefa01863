"""Networks learn, save and load exactly, and cope with missing labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.table import Table

from photofeh.model.artifact import ModelFormatError
from photofeh.model.evaluate import class_metrics, gaussian_fit_sigma, regression_metrics
from photofeh.model.networks import PRESETS, build_network
from photofeh.model.predict import load_model
from photofeh.model.train import TrainConfig, multitask_loss, train
from photofeh.report.run_figures import history_figure


@pytest.fixture(scope="module")
def trained(spec_catalog: pd.DataFrame, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    run = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(baseline_rounds=0, epochs=12, seed=1, batch_size=256)
    train(spec_catalog, cfg, run, log=lambda s: None, draw_history=history_figure)  # as the train command
    return run, spec_catalog


def test_tiny_model_learns(trained):
    """Against the label spread (predicting the mean) and an independent classical method: the Ivezic et al.
    2008 / Bond et al. 2010 polynomial refitted here by least squares to the same training stars' dereddened
    u-g, g-r (Schlafly & Finkbeiner 2011 coefficients) and scored on the same test stars in its validity region.
    Seeded: residuals 0.45 (feh), 0.58 (logg: the labels' own noise, 0.24 dex, is 0.38 of their spread on this
    sample, whose giants are 9% of the stars), 0.21 (teff) of the labels' spread, pulls 1.03 wide, a Gaussian
    sigma 0.66 of the refit's (0.184 vs 0.278 dex). A network twice as wrong, or errors half or twice as
    large, fails."""
    from photofeh.model.baselines import fit_ivezic, ivezic_feh, ivezic_valid

    run, cat = trained
    hist = pd.read_csv(run / "history.csv")
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0] - 1.0
    split = pd.read_parquet(run / "split.parquet")
    test = (split["split"] == "test").to_numpy()
    out = load_model(run / "model").predict(cat[test])
    for lab, col in (("feh", "feh_spec"), ("logg", "logg_spec"), ("teff", "teff_spec")):
        resid = out[lab] - cat.loc[test, col].to_numpy()
        # predicting the mean would give the label's own spread
        assert np.nanstd(resid) < 0.7 * cat.loc[test, col].std(), lab
        assert np.nanstd(resid) < {"feh": 0.5, "logg": 0.65, "teff": 0.25}[lab] * cat.loc[test, col].std(), lab
    # label errors are included, so the pulls are close to unit width
    pull = (out["feh"] - cat.loc[test, "feh_spec"]) / np.hypot(out["feh_err"], cat.loc[test, "feh_spec_err"])
    assert 0.8 < np.nanstd(pull) < 1.2
    assert 0.9 < np.nanstd(pull) < 1.15
    train_rows = (split["split"] == "train").to_numpy()

    def colours(rows):
        sf11 = {"u": 4.239, "g": 3.303, "r": 2.285}  # A_b / E(B-V), Schlafly & Finkbeiner 2011 table 6
        u, g, r = (cat.loc[rows, f"sdss_{b}"] - sf11[b] * cat.loc[rows, "ebv"] for b in "ugr")
        return (u - g).to_numpy(), (g - r).to_numpy()

    coef = fit_ivezic(*colours(train_rows), cat.loc[train_rows, "feh_spec"].to_numpy())
    ug, gr = colours(test)
    feh = cat.loc[test, "feh_spec"].to_numpy()
    region = ivezic_valid(ug, gr) & np.isfinite(feh)
    assert region.sum() > 500
    classical = regression_metrics(ivezic_feh(ug[region], gr[region], coef), feh[region])["sigma_gauss"]
    network = regression_metrics(np.asarray(out["feh"])[region], feh[region])["sigma_gauss"]
    assert network < 0.8 * classical, (network, classical)
    assert set(out) >= {"feh", "feh_err", "logg_err", "teff_err", "p_giant", "is_giant", "usable"}


def test_save_load_gives_identical_predictions(trained):
    run, cat = trained
    a = load_model(run / "model").predict(cat.iloc[:500])
    b = load_model(run / "model").predict(Table.from_pandas(cat.iloc[:500]))
    c = load_model(run / "model").predict({k: cat[k].to_numpy()[:500] for k in cat.columns})
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True) and np.array_equal(a[k], c[k], equal_nan=True), k


def test_model_folder_is_plain_data(trained):
    run, _ = trained
    meta = json.loads((run / "model" / "model.json").read_text())
    assert meta["schema_version"] == 1 and meta["features"][0] == "sdss_u-sdss_g"
    assert (run / "model" / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors JSON header
    for name in ("history.png", "history.csv", "split.parquet", "config.toml"):
        assert (run / name).exists()


def test_incompatible_schema_and_missing_bands_are_clear(trained, tmp_path: Path):
    run, cat = trained
    bad = tmp_path / "model"
    bad.mkdir()
    meta = json.loads((run / "model" / "model.json").read_text())
    meta["schema_version"] = 99
    (bad / "model.json").write_text(json.dumps(meta))
    (bad / "model.safetensors").write_bytes((run / "model" / "model.safetensors").read_bytes())
    with pytest.raises(ModelFormatError, match="schema version 99"):
        load_model(bad)
    with pytest.raises(KeyError, match="ps1_y"):
        load_model(run / "model").predict(cat.drop(columns=["ps1_y"]))


def test_rows_without_photometry_get_nan_not_a_crash(trained):
    run, cat = trained
    rows = cat.iloc[:10].copy()
    rows.loc[rows.index[:3], "sdss_u"] = np.nan
    out = load_model(run / "model").predict(rows)
    assert not out["usable"][:3].any() and out["usable"][3:].all()
    assert np.isnan(out["feh"][:3]).all() and np.isfinite(out["feh"][3:]).all()


def test_nan_labels_do_not_give_nan_loss():
    torch.manual_seed(0)
    for preset in ("fast-mlp", "reference-resdense"):
        arch = dict(PRESETS[preset])
        if preset == "reference-resdense":
            arch.update(nfeatures_init=8, nfeatures_max=32, depth=6)
        for heads in ("independent", "causal"):
            net = build_network(arch, 5, ["feh", "logg", "teff"], heads)
            out = net(torch.randn(16, 5))
            y = torch.randn(16, 3)
            y[::2, 0] = float("nan")
            y[:, 2] = float("nan")  # a label missing for every star
            giant = torch.full((16,), float("nan"))
            loss = multitask_loss(out, y, torch.zeros_like(y), giant)
            assert torch.isfinite(loss)
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_validation_loss_counts_a_wild_miss_as_five_sigma():
    """One star missed by 1000 sigma among 999 missed by 1: unclipped it sets the mean loss (0.5 x 10^6 / 1000,
    i.e. 500 nats above the rest); clipped at VALIDATION_CLIP_SIGMA it adds (25 - 1) / 2 / 1000 = 0.012, computed
    here by hand from the Gaussian NLL 0.5 (log var + z^2) with var = 1."""
    from photofeh.model.train_loop import VALIDATION_CLIP_SIGMA

    n = 1000
    out = {"mean": torch.zeros(n, 1), "logvar": torch.zeros(n, 1)}
    y = torch.ones(n, 1)
    y[0, 0] = 1000.0
    e, giant = torch.zeros(n, 1), torch.full((n,), float("nan"))
    plain = float(multitask_loss(out, y, e, giant))
    clipped = float(multitask_loss(out, y, e, giant, clip_sigma=VALIDATION_CLIP_SIGMA))
    assert VALIDATION_CLIP_SIGMA == 5.0
    assert plain == pytest.approx((0.5 * 1000.0**2 + 0.5 * (n - 1)) / n, rel=1e-6)
    assert clipped == pytest.approx((0.5 * 25.0 + 0.5 * (n - 1)) / n, rel=1e-6)
    y[0, 0] = 3.0  # within the clip nothing changes
    assert float(multitask_loss(out, y, e, giant, clip_sigma=5.0)) == pytest.approx(float(multitask_loss(out, y, e,
                                                                                                          giant)))


def test_resdense_has_the_reference_shape():
    net = build_network(PRESETS["reference-resdense"], 10, ["feh"])
    assert net.backbone.enc_widths == [64, 128, 256, 512, 1024, 2048]
    assert net.backbone.dec_widths == [1024, 512, 256, 128, 64]


def test_gaussian_fit_sigma_recovers_a_known_width():
    rng = np.random.default_rng(0)
    r = np.concatenate([rng.normal(0.1, 0.2, 50_000), rng.uniform(-3, 3, 1_000)])  # with outliers
    mu, sigma = gaussian_fit_sigma(r)
    assert sigma == pytest.approx(0.2, rel=0.03) and mu == pytest.approx(0.1, abs=0.01)
    m = regression_metrics(r, np.zeros_like(r), err=np.full_like(r, 0.2))
    # beyond 3 sigma (0.6) of the median 0.1: 4.8/6 of the uniform outliers + 0.27% of the Gaussian
    assert m["outlier_frac_3sigma"] == pytest.approx((1000 * 4.8 / 6 + 50_000 * 0.0027) / 51_000, abs=0.002)


def test_class_metrics_on_a_known_confusion():
    pred = np.array([1, 1, 1, 0, 0, 0, 0, 1], bool)
    true = np.array([1, 1, 0, 1, 0, 0, 0, 1], float)
    m = class_metrics(pred, true)
    assert m["giant_completeness"] == pytest.approx(3 / 4) and m["giant_contamination"] == pytest.approx(1 / 4)


def test_ensemble_spread_adds_to_the_variance(spec_catalog: pd.DataFrame, tmp_path: Path):
    """The ensemble is the members' equal mixture (Lakshminarayanan et al. 2017): its mean is the mean of the
    members' means and its variance, by the law of total variance, the mean of the members' variances plus the
    variance of their means, both computed here from each member's own predictions (physical units), star by
    star. The spread term is ~4% of the [Fe/H] variance and ~17% of Teff's here: dropping or doubling it
    breaks the 1e-3 tolerance (float32 rounding of the spread is below 1e-5 relative)."""
    cfg = TrainConfig(baseline_rounds=0, epochs=2, ensemble=2, seed=3, batch_size=256)
    train(spec_catalog.iloc[:6000], cfg, tmp_path, log=lambda s: None)
    model = load_model(tmp_path / "model")
    assert len(model.members) == 2
    rows = spec_catalog.iloc[6000:6500]
    # without the domain: a star whose errors exceed the training stars' gets sigma points on the ensemble's mean,
    # not on each member's, which is another variance than the mixture's (test_predict_fast_paths.py)
    model.domain = None
    both = model.predict(rows)
    members = list(model.members)
    each = []
    for net in members:
        model.members = [net]
        each.append(model.predict(rows))
    model.members = members[:1]
    one = model.predict(rows)
    # same first member, plus a second member: the mixture's spread only adds variance on average
    assert np.nanmean(both["feh_err"] ** 2) > 0.9 * np.nanmean(one["feh_err"] ** 2)
    assert not np.allclose(both["feh"], one["feh"])
    for lab in ("feh", "logg", "teff"):
        means = np.stack([p[lab].to_numpy(np.float64) for p in each])
        within = np.mean([p[f"{lab}_err"].to_numpy(np.float64) ** 2 for p in each], axis=0)
        spread = np.var(means, axis=0)
        assert np.nanmedian(spread / within) > 0.005, lab  # the spread term is there to be tested
        np.testing.assert_allclose(both[lab], np.mean(means, axis=0), rtol=1e-5, atol=1e-5, err_msg=lab)
        np.testing.assert_allclose(both[f"{lab}_err"] ** 2, within + spread, rtol=1e-3, err_msg=lab)


def test_cli_train_evaluate_and_lr_find(spec_catalog: pd.DataFrame, tmp_path: Path, capsys):
    from photofeh.cli import main

    table = tmp_path / "spec.parquet"
    spec_catalog.iloc[:5000].to_parquet(table)
    run = tmp_path / "run"
    assert main(["train", str(table), "--config", str(Path(__file__).parents[1] / "configs" / "default.toml"),
                 "--out", str(run), "--epochs", "3", "--quiet", "--baseline-rounds", "30"]) == 0  # a quick baseline
    assert main(["evaluate", str(run), str(table), "--no-figures"]) == 0  # figures: tests/test_report.py
    metrics = json.loads((run / "test_metrics.json").read_text())
    n_test = int((pd.read_parquet(run / "split.parquet")["split"] == "test").sum())
    assert metrics["n_stars"] == n_test
    assert {"vs_labels", "vs_truth", "binned"} <= set(metrics["labels"]["feh"])
    assert metrics["figures"] == [] and set(metrics["labels"]["feh"]["baselines"]) == {"LightGBM", "Ivezic+08 form"}
    assert main(["lr-find", str(table), "--out", str(tmp_path / "lr.png")]) == 0
    assert (tmp_path / "lr.png").stat().st_size > 1000
    assert main(["evaluate", str(tmp_path / "nothing"), str(table)]) == 1
    assert "not a photofeh model folder" in capsys.readouterr().err


def test_same_seed_same_model(spec_catalog: pd.DataFrame, tmp_path: Path):
    cfg = TrainConfig(baseline_rounds=0, epochs=2, seed=5, batch_size=256)
    for name in ("a", "b"):
        train(spec_catalog.iloc[:4000], cfg, tmp_path / name, log=lambda s: None)
    wa = (tmp_path / "a" / "model" / "model.safetensors").read_bytes()
    wb = (tmp_path / "b" / "model" / "model.safetensors").read_bytes()
    assert wa == wb
    sa = pd.read_parquet(tmp_path / "a" / "split.parquet")
    assert sa.equals(pd.read_parquet(tmp_path / "b" / "split.parquet"))


@pytest.mark.parametrize("mode", ["causal", "independent"])
def test_heads_equal_the_concatenating_formulation(mode):
    """The one-matrix-product heads compute what concatenating [h, earlier estimates] before each head does."""
    torch.manual_seed(0)
    net = build_network({"name": "mlp", "widths": [32, 16]}, 5, ["teff", "feh", "logg", "mabs_sdss_r"], mode).eval()
    x = torch.randn(200, 5)
    with torch.no_grad():
        out = net(x)
        h, earlier, means = net.backbone(x), [], {}
        for lab in net.order:
            o = net.reg[lab](torch.cat([h, *earlier], 1) if mode == "causal" and earlier else h)
            means[lab] = o[:, 0]
            j = net.labels.index(lab)
            torch.testing.assert_close(o[:, 0], out["mean"][:, j], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(o[:, 1].clamp(-12, 8), out["logvar"][:, j], rtol=1e-5, atol=1e-5)
            if mode == "causal" and lab in ("teff", "feh", "logg"):
                earlier.append(o[:, :1])
        cls_in = torch.cat([h] + [means[lab][:, None] for lab in net.order], 1) if mode == "causal" else h
        torch.testing.assert_close(net.cls(cls_in)[:, 0], out["logit"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode,classify", [("causal", True), ("independent", True), ("causal", False)])
def test_folded_heads_give_the_network_outputs(mode, classify):
    """Inference folds every head, the causal chain included, into one product: the same outputs (the
    log-variance clamp included, checked with inputs large enough to reach it)."""
    torch.manual_seed(2)
    net = build_network({"name": "mlp", "widths": [32, 16]}, 5, ["teff", "feh", "logg", "mabs_sdss_r"], mode,
                        classify).eval()
    folded = net.folded()
    x = torch.cat([torch.randn(300, 5), 1000 * torch.randn(20, 5)])
    with torch.no_grad():
        before, after = net(x), folded(x)
    assert set(after) == set(before)
    assert (before["logvar"] == 8.0).any() or (before["logvar"] == -12.0).any()
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=1e-5, atol=2e-5)
    assert sum(isinstance(m, torch.nn.Linear) for m in folded.modules()) == 3  # two backbone layers + one


def test_batchnorm_folding_keeps_the_outputs():
    from photofeh.model.predict import _fold_batchnorm

    torch.manual_seed(1)
    net = build_network({"name": "mlp", "widths": [32, 16]}, 5, ["feh", "logg"], "causal")
    for m in net.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    net.eval()
    x = torch.randn(300, 5)
    with torch.no_grad():
        before = net(x)
        _fold_batchnorm(net)
        after = net(x)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules())
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=1e-4, atol=1e-5)


def test_config_reference_is_current_and_complete(tmp_path):
    """docs/config.md is generated from TrainConfig: every setting documented, the file up to date, and a
    run's config.toml reads back into the same settings."""
    from dataclasses import asdict

    from photofeh.model.train import CONFIG_DOCS, TrainConfig, _to_toml, config_markdown, load_config

    assert set(CONFIG_DOCS) == set(TrainConfig.__dataclass_fields__)
    doc = Path(__file__).resolve().parents[1] / "docs" / "config.md"
    assert doc.read_text() == config_markdown(), "docs/config.md is stale: run `make docs`"
    cfg = TrainConfig(baseline_rounds=0, epochs=7, split=(0.8, 0.2, 0.0), class_operating_feh_max=None)
    (tmp_path / "c.toml").write_text(_to_toml(cfg))
    assert asdict(load_config(tmp_path / "c.toml")) == asdict(cfg)

