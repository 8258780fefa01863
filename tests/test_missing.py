"""Missing photometry: masked inputs, survey dropout, and a model that predicts from whatever a star has."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from photofeh.model.missing import drop_groups, enough_features, feature_groups, masked_inputs
from photofeh.model.predict import load_model
from photofeh.model.train import TrainConfig, load_config, train

ROOT = Path(__file__).resolve().parents[1]


def test_feature_groups_follow_the_surveys():
    assert feature_groups(["sdss_u-sdss_g", "ps1_g-ps1_r", "gaia_bp-gaia_rp", "parallax", "parallax_error",
                           "sdss_g", "cfis_u-sdss_g", "ruwe"]) == [
        "sdss", "ps1", "gaia", "parallax", "parallax", "sdss", "cfis+sdss", "ruwe"]


def test_survey_dropout_hides_whole_groups_never_everything():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20_000, 4))
    z[:5000, 2:] = np.nan  # a quarter of the rows lack group 1 already
    x = torch.from_numpy(masked_inputs(z))
    groups = torch.tensor([0, 0, 1, 1])
    out = drop_groups(x, groups, 0.3, torch.Generator().manual_seed(1)).numpy()
    values, bits = out[:, :4], out[:, 4:]
    assert np.all(bits.sum(axis=1) > 0)  # no row loses everything
    assert np.all((bits[:, 0] == bits[:, 1]) & (bits[:, 2] == bits[:, 3]))  # groups go as a whole
    assert np.all(values[bits == 0] == 0)
    hidden = 1 - bits[5000:, 0]  # rows with both groups: hidden at p = 0.3 unless both would go
    assert hidden.mean() == pytest.approx(0.3 * (1 - 0.3), abs=0.01)
    assert np.all(bits[:5000, 0] == 1)  # the only group a row has is never hidden
    assert np.array_equal(enough_features(z, 3), np.isfinite(z).sum(axis=1) >= 3)


@pytest.fixture(scope="module")
def masked_model(spec_catalog: pd.DataFrame, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    cfg = load_config(ROOT / "configs" / "masked.toml")
    cfg.epochs, cfg.seed, cfg.baseline_rounds = 10, 2, 0  # no LightGBM baseline: nothing here asks for it
    run = tmp_path_factory.mktemp("masked")
    train(spec_catalog, cfg, run, log=lambda s: None)
    split = pd.read_parquet(run / "split.parquet")["split"].to_numpy()
    return run / "model", spec_catalog[split == "test"].reset_index(drop=True)


def _hide(df: pd.DataFrame, prefixes) -> pd.DataFrame:
    df = df.copy()
    for c in df.columns:
        if c.startswith(tuple(prefixes)):
            df[c] = np.nan
    return df


def test_masked_model_predicts_without_a_survey_with_honest_errors(masked_model):
    model_dir, test = masked_model
    model = load_model(model_dir)
    full = model.predict(test)
    no_sdss = model.predict(_hide(test, ["sdss_"]))
    assert full["usable"].all() and no_sdss["usable"].all()
    lab = np.isfinite(test["feh_spec"]).to_numpy()
    err_full, err_no = np.median(full["feh_err"][lab]), np.median(no_sdss["feh_err"][lab])
    assert err_no > 1.15 * err_full  # u-g carries most of the metallicity: without it the model knows less
    for out in (full, no_sdss):
        pull = (out["feh"][lab] - test["feh_spec"][lab]) / np.hypot(out["feh_err"][lab], test["feh_spec_err"][lab])
        assert 0.8 < np.std(pull) < 1.25
    # too little left (two colours) gives no prediction, and no crash
    bare = model.predict(_hide(test, ["sdss_", "ps1_", "parallax", "gaia_g"]))
    assert not bare["usable"].any() and np.isnan(bare["feh"]).all()


def test_require_mode_is_unchanged_and_config_is_checked():
    with pytest.raises(ValueError, match="missing must be"):
        TrainConfig(baseline_rounds=0, missing="impute").validate()
    with pytest.raises(ValueError, match="min_features"):
        TrainConfig(baseline_rounds=0, missing="mask", min_features=0).validate()


def test_a_masked_models_sigma_scales_see_the_validation_stars_as_they_are_predicted(spec_catalog, tmp_path,
                                                                                      monkeypatch):
    """train() hands _calibrate the validation stars twice: with surveys hidden at random (early stopping, the giant
    class) and as they are, every measured band kept, for the sigma scales (tests/test_sigma_calibration.py)."""
    import photofeh.model.train as train_module

    calls = []
    original = train_module._calibrate

    def spy(nets, val_t, cfg, val_feh, plx=None, likelihood=None, seen_t=None):
        calls.append((val_t, seen_t))
        return original(nets, val_t, cfg, val_feh, plx, likelihood, seen_t)

    monkeypatch.setattr(train_module, "_calibrate", spy)
    cfg = load_config(ROOT / "configs" / "masked.toml")
    cfg.epochs, cfg.baseline_rounds, cfg.batch_size = 1, 0, 256
    train(spec_catalog.iloc[:3000].reset_index(drop=True), cfg, tmp_path / "run", log=lambda s: None)
    (val_t, seen_t), = calls
    n = len(cfg.features)
    hidden_bits, seen_bits = val_t[0][:, n:2 * n], seen_t[0][:, n:2 * n]
    assert torch.equal(val_t[1].nan_to_num(), seen_t[1].nan_to_num())  # the same stars and labels
    assert bool((seen_bits >= hidden_bits).all())  # hiding only removes
    lost = 1 - float(hidden_bits.sum() / seen_bits.sum())
    assert 0.1 < lost < 0.4  # group_dropout 0.3 of the groups a star has (never all of them)
