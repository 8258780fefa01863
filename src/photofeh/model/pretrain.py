"""Pretraining on the mock survey, then fine-tuning on the real labels (issue 26, item 1).

A config's ``[pretrain]`` table (:mod:`photofeh.model.pretrain_config`) names a mock; ``photofeh train``
simulates it once (cached by a hash of its settings: :func:`photofeh.simulate.cache.cached_mock`, handed in
as ``mock_source``, since the mock is a sibling stage), computes the same features from it as from the real
table, and fits the network to the mock's labels before the real training starts from those weights.

Both phases see one normalisation: the features are standardised with the real training stars'
statistics and the labels scaled with the real labels' (:func:`pretrain_weights` takes them from the real
table), so a colour means the same input, and an output the same [Fe/H], in both; the model folder keeps
them as any model does. The pretrained network's weights are the starting point of every ensemble member
(members then differ by their fine-tuning batches only); model.json records the settings, the mock's hash
and path, and the pretraining's epochs and losses under ``pretraining``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np

from photofeh.model.label_noise import apply_label_errors
from photofeh.model.missing import network_inputs
from photofeh.model.pretrain_config import PretrainConfig, pretrain_config
from photofeh.model.train_config import TrainConfig
from photofeh.model.train_data import _plx_spec, _tensors, prepare, split_indices
from photofeh.model.train_loop import _fit_member

__all__ = ["mock_training_table", "pretrain_weights", "pretrain_from_config", "MOCK_VALIDATION_FRACTION"]

MOCK_VALIDATION_FRACTION = 0.1  # of the mock, held out to choose the pretraining's best epoch
# The error of a mapped reddening in the green2020 sample's unit (`reddening_b19_err`, an input of
# configs/green2020.toml): the median over its stars with a map value (Bayestar19 or SFD) is 0.023, quartiles
# 0.021-0.033 (tests/test_green2020.py checks it). Every mock star has its map E(B-V), so it takes this error.
MOCK_REDDENING_B19_ERR = 0.023


def _derived_columns(cols: dict, names: list[str]) -> None:
    """Raw columns a real table's preset derives, made from the mock's own (in place)."""
    if "reddening_b19" in names and "reddening_b19" not in cols:
        from photofeh.io.presets import GREEN2020_EBV_PER_R

        # the green2020 sample's Bayestar19 reddening r: E(B-V) = 1.11 r (photofeh.io.presets, derived in
        # scripts/green2020_reddening_scale.py), so the mock's r is its map E(B-V) / 1.11
        cols["reddening_b19"] = np.asarray(cols["ebv"], float) / GREEN2020_EBV_PER_R
    if "reddening_b19_err" in names and "reddening_b19_err" not in cols:
        cols["reddening_b19_err"] = np.full(len(np.asarray(cols["ebv"])), MOCK_REDDENING_B19_ERR)


def _bands_of(features: list[str], cols: dict) -> list[str]:
    """The bands whose errors a feature list uses (``a-b`` colours and band magnitudes with ``_err`` columns)."""
    bands = []
    for f in features:
        for name in f.split("-"):
            if f"{name}_err" in cols and name not in bands:
                bands.append(name)
    return bands


def mock_training_table(mock: dict, cfg: TrainConfig, pcfg: PretrainConfig) -> tuple[dict, TrainConfig, dict]:
    """The mock as a training table for ``cfg``'s features and labels: the columns, the config that reads them
    (label columns of the mock's spectroscopic or true labels; no preset, no hashed split, no prior) and what
    was done (stars kept by ``max_error``)."""
    n = len(mock["source_id"])
    cols = {k: np.asarray(v) for k, v in mock.items()}
    if pcfg.observed_colours:  # the colours stay as observed, as in a real table without reddening
        cols[cfg.ebv_column] = np.zeros(n)
    _derived_columns(cols, cfg.features + [cfg.ebv_column])
    keep = np.ones(n, bool)
    if pcfg.max_error > 0:
        for b in _bands_of(cfg.features, cols):
            err = np.asarray(cols[f"{b}_err"], float)
            keep &= ~(err > pcfg.max_error)  # a missing band (NaN) is no reason to drop a star
        cols = {k: v[keep] for k, v in cols.items()}
    label_columns = {}
    for lab in cfg.labels:
        if lab in cfg.parallax_labels:
            continue
        if lab.startswith("mabs_"):
            label_columns[lab] = f"{lab}_true"  # the mock's absolute magnitudes are true values only
        else:
            label_columns[lab] = f"{lab}_{pcfg.labels}"
        if label_columns[lab] not in cols:
            raise ValueError(f"[pretrain] the mock has no column {label_columns[lab]!r} for the label {lab!r}")
    mcfg = replace(cfg, label_columns=label_columns, table_preset=None, split_seed=None, prior="labels", pretrain={})
    return cols, mcfg, {"mock_stars": n, "kept_by_max_error": int(keep.sum())}


def pretrain_weights(mock: dict, cfg: TrainConfig, pcfg: PretrainConfig, xs, ys, log=print) -> tuple[dict, dict]:
    """Fit one network of ``cfg``'s architecture to the mock's labels, with the real table's feature and label
    normalisation ``xs``, ``ys``; return its weights (a state dict) and a record for model.json."""
    t0 = time.perf_counter()
    cols, mcfg, kept = mock_training_table(mock, cfg, pcfg)
    p = prepare(cols, mcfg)
    errors = apply_label_errors(p, cfg)
    rows = np.flatnonzero(p.usable & np.isfinite(p.y).any(axis=1))
    if rows.size < max(100, pcfg.batch_size):
        raise ValueError(f"[pretrain] only {rows.size} mock stars have every feature and a label (at least "
                         f"{max(100, pcfg.batch_size)} needed): more n_stars, or a larger max_error")
    side = split_indices(rows.size, (1 - MOCK_VALIDATION_FRACTION, MOCK_VALIDATION_FRACTION, 0.0), pcfg.seed)
    train_rows, val_rows = rows[side == 0], rows[side == 1]
    train_t = _tensors(p, train_rows, xs, ys, mcfg)
    val_t = _tensors(p, val_rows, xs, ys, mcfg, hide=True)
    pt_cfg = replace(mcfg, epochs=pcfg.epochs, batch_size=pcfg.batch_size, max_lr=pcfg.max_lr,
                     patience=pcfg.patience, seed=pcfg.seed)
    log(f"pretraining on {train_rows.size:,d} mock stars ({val_rows.size:,d} held out)")
    net, history = _fit_member(pt_cfg, 0, train_t, val_t, network_inputs(len(cfg.features), cfg.missing),
                               lambda s: log(f"pretrain {s}"), _plx_spec(p, ys))
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    record = {"settings": asdict(pcfg), **kept, "n_train": int(train_rows.size), "n_validation": int(val_rows.size),
              "label_columns": mcfg.label_columns, "label_errors": errors,
              "epochs_run": len(history), "best_validation_loss": round(min(h["val_loss"] for h in history), 5),
              "seconds": round(time.perf_counter() - t0, 1)}
    return state, record


def pretrain_from_config(cfg: TrainConfig, xs, ys, mock_source, log=print) -> tuple[dict, dict]:
    """The pretrained weights of ``cfg.pretrain`` and their record: the mock from ``mock_source(settings,
    folder, log)`` (:func:`photofeh.simulate.cache.cached_mock`), then :func:`pretrain_weights`."""
    pcfg = pretrain_config(cfg.pretrain)
    if getattr(cfg, "noise_aware", False):
        raise ValueError("[pretrain] and noise_aware together are not supported yet: the mock's inputs would need "
                         "re-observing as the real ones are")
    if mock_source is None:
        raise ValueError("[pretrain] needs a mock: `photofeh train` simulates and caches it; from Python pass "
                         "mock_source=photofeh.simulate.cache.cached_mock to photofeh.model.train.train")
    mock, where = mock_source(pcfg.mock_settings(), pcfg.cache_dir or None, log)
    state, record = pretrain_weights(mock, cfg, pcfg, xs, ys, log)
    return state, {"mock": {k: v for k, v in where.items() if k != "settings"}, "mock_settings": where["settings"],
                   **record}
