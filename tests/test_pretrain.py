"""Pretraining on the mock survey, then fine-tuning on real labels (issue 26, item 1), and label noise (item 2).

`photofeh train` with a [pretrain] table simulates the mock once into its cache folder, reuses it on the next run,
and records it in model.json; fine-tuning starts from the pretrained weights (a fine-tuning that cannot move
them keeps every pretrained weight; a random start does not)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from photofeh.cli import main
from photofeh.model.features import Standardizer
from photofeh.model.label_noise import apply_label_errors
from photofeh.model.networks import build_network
from photofeh.model.pretrain import pretrain_weights
from photofeh.model.pretrain_config import pretrain_config
from photofeh.model.train import TrainConfig, load_config, prepare
from photofeh.model.train_data import _tensors, label_standardizer
from photofeh.model.train_loop import _fit_member
from photofeh.simulate import MockSurveyConfig, iter_chunks

FEATURES = ["sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z"]
CONFIG = """
[data]
features = ["sdss_u-sdss_g", "sdss_g-sdss_r", "sdss_r-sdss_i", "sdss_i-sdss_z"]
labels = ["feh"]
label_columns = { feh = "feh_spec" }
split = [0.7, 0.15, 0.15]
[model]
preset = "fast-mlp"
heads = "independent"
classify = false
[train]
epochs = 2
batch_size = 128
baseline_rounds = 0
[pretrain]
n_stars = 1000
seed = 3
epochs = 1
batch_size = 128
cache_dir = "CACHE"
"""


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    """A small labelled table standing for the real one (a mock with another seed than the pretraining's)."""
    return pd.DataFrame(next(iter_chunks(MockSurveyConfig(n_stars=1500, seed=11, spec_only=True), chunk_size=1500)))


def test_train_simulates_the_mock_once_reuses_it_and_records_it(tmp_path, labelled, capsys):
    table = tmp_path / "labelled.parquet"
    labelled.to_parquet(table)
    cache = tmp_path / "cache"
    config = tmp_path / "pretrain.toml"
    config.write_text(CONFIG.replace("CACHE", str(cache)))
    records = []
    for run in ("run1", "run2"):
        assert main(["train", str(table), "--config", str(config), "--out", str(tmp_path / run)]) == 0
        records.append(json.loads((tmp_path / run / "model" / "model.json").read_text())["training"]["pretraining"])
    cached = sorted(cache.glob("*.parquet"))
    assert len(cached) == 1 and cached[0].name.startswith("mock-")  # one file per set of mock settings
    err = capsys.readouterr().err
    assert err.count("pretraining mock: simulating 1,000 stars") == 1 and err.count("pretraining mock: reusing") == 1
    first, second = records
    assert first["mock"]["reused"] is False and second["mock"]["reused"] is True
    assert first["mock"]["digest"] == second["mock"]["digest"] and first["mock"]["path"] == str(cached[0])
    assert first["mock"]["stars"] == 1000 and first["mock_settings"]["seed"] == 3
    assert first["settings"]["epochs"] == 1 and first["settings"]["n_stars"] == 1000
    assert first["label_columns"] == {"feh": "feh_spec"} and first["epochs_run"] == 1
    assert 0 < first["n_validation"] < first["n_train"] <= 1000
    # the run's config.toml reads back with the same [pretrain] table
    assert load_config(tmp_path / "run1" / "config.toml").pretrain == load_config(config).pretrain


def test_pretrain_settings_are_checked_by_name(tmp_path):
    with pytest.raises(ValueError, match="unknown setting 'n_star'.*n_stars"):
        pretrain_config({"n_star": 10})
    with pytest.raises(ValueError, match="labels = 'spec' needs spec_only"):
        pretrain_config({"spec_only": False})
    with pytest.raises(ValueError, match="label_errors"):
        TrainConfig(labels=["feh"], label_columns={"feh": "feh_spec"}, classify=False,
                    label_errors={"logg": 0.1}).validate()


def test_fine_tuning_starts_from_the_pretrained_weights(tmp_path, labelled):
    cfg = TrainConfig(features=FEATURES, labels=["feh"], label_columns={"feh": "feh_spec"}, classify=False,
                      heads="independent", batch_size=128, seed=0, threads=1)
    pcfg = pretrain_config({"n_stars": 1000, "seed": 3, "epochs": 2, "batch_size": 128})
    mock = next(iter_chunks(MockSurveyConfig(n_stars=1000, seed=3, spec_only=True), chunk_size=1000))
    p = prepare(labelled, cfg)
    rows = np.flatnonzero(p.usable & np.isfinite(p.y[:, 0]))
    xs, ys = Standardizer.fit(p.X[rows]), label_standardizer(p, rows)
    state, record = pretrain_weights(mock, cfg, pcfg, xs, ys, log=lambda s: None)
    assert record["epochs_run"] == 2
    train_t, val_t = _tensors(p, rows[:1000], xs, ys, cfg), _tensors(p, rows[1000:], xs, ys, cfg, hide=True)
    n_in = train_t[0].shape[1]
    pretrained = build_network(cfg.architecture, n_in, cfg.labels, cfg.heads, cfg.classify)
    pretrained.load_state_dict(state)
    pretrained.eval()
    with torch.inference_mode():
        before = pretrained(val_t[0])["mean"].numpy()
    frozen = replace(cfg, epochs=1, max_lr=1e-12, weight_decay=0.0)  # fine-tuning that cannot move the weights
    tuned, _ = _fit_member(frozen, 0, train_t, val_t, n_in, lambda s: None, init_state=state)
    fresh, _ = _fit_member(frozen, 0, train_t, val_t, n_in, lambda s: None)
    # every weight is the pretrained one (batch-norm running statistics, buffers, follow the real stars)
    for name, value in tuned.named_parameters():
        np.testing.assert_allclose(value.detach().numpy(), state[name].numpy(), atol=1e-6, err_msg=name)
    assert max(float((value.detach() - state[name]).abs().max()) for name, value in fresh.named_parameters()) > 0.05
    with torch.inference_mode():  # the pretrained network has learned the mock: its [Fe/H] follows the real labels
        after, random_start = tuned(val_t[0])["mean"].numpy()[:, 0], fresh(val_t[0])["mean"].numpy()[:, 0]
    y = val_t[1].numpy()[:, 0]
    assert np.corrcoef(before[:, 0], y)[0, 1] > 0.6 and np.corrcoef(after, y)[0, 1] > 0.6
    assert abs(np.corrcoef(random_start, y)[0, 1]) < 0.5

def test_label_errors_fill_in_where_the_table_has_none(labelled):
    """A constant label error (the SSPP's, for a table without errors) fills only stars without one; label_noise
    false drops every error, the table's too."""
    cfg = TrainConfig(features=FEATURES, labels=["feh"], label_columns={"feh": "feh_spec"}, classify=False,
                      label_errors={"feh": 0.1})
    table = labelled.copy()
    table.loc[table.index[:100], "feh_spec_err"] = np.nan
    p = prepare(table, cfg)
    own = p.e[:, 0].copy()
    used = apply_label_errors(p, cfg)
    has = np.isfinite(p.y[:, 0])
    np.testing.assert_array_equal(p.e[has & (own > 0), 0], own[has & (own > 0)])
    assert np.all(p.e[:100][has[:100], 0] == 0.1)
    assert used["labels"]["feh"]["from_constant"] == int((has & ~(own > 0)).sum()) >= 90
    p = prepare(table, replace(cfg, label_noise=False))
    assert apply_label_errors(p, replace(cfg, label_noise=False)) == {"label_noise": False} and not p.e.any()


def test_the_cache_key_follows_the_mocks_code(monkeypatch):
    """A cached mock is keyed by its settings and by the code that makes it (photofeh.simulate, bands, schema),
    not by the package version alone: after a change of the simulator the same settings name another file."""
    from photofeh.simulate import cache

    settings = {"n_stars": 1000, "seed": 3, "spec_only": True}
    before = cache.mock_digest(settings)
    assert cache.mock_digest(dict(settings)) == before  # deterministic
    assert len(cache.mock_code_digest()) == 64
    monkeypatch.setattr(cache, "mock_code_digest", lambda: "0" * 64)  # as if a simulate module had changed
    assert cache.mock_digest(settings) != before
