"""Training data: a labelled table to validated features, labels, label errors and the giant flag
(:func:`prepare`), the train/validation/test split (:func:`assign_split`), the labels' normalisation, the
prior's per-star weights (:func:`training_prior`) and the tensors the training loop reads."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from photofeh.io.validation import clean_columns
from photofeh.model.features import Standardizer, as_columns, feature_matrix
from photofeh.model.missing import drop_groups, enough_features, feature_groups, masked_inputs
from photofeh.model.train_config import GIANT_LOGG, TrainConfig

__all__ = ["Prepared", "prepare", "label_standardizer", "split_indices", "assign_split", "training_prior",
           "input_scaling", "reobserved"]

@dataclass
class Prepared:
    X: np.ndarray  # raw features (n, F)
    y: np.ndarray  # labels (n, L), NaN where missing
    e: np.ndarray  # label errors (n, L), 0 where unknown
    giant: np.ndarray  # 1/0, NaN where unknown
    usable: np.ndarray  # all features finite ("require") or enough of them ("mask")
    ids: np.ndarray
    replaced: Counter = field(default_factory=Counter)  # values the validation layer set to NaN, per column
    aux: np.ndarray | None = None  # (n, 3P) m0, parallax, error of the parallax labels (model.parallax_labels)
    plx_index: list[int] = field(default_factory=list)  # their positions among the labels
    X_err: np.ndarray | None = None  # (n, F) feature errors where the table has them (photofeh.model.domain)
    has_ids: bool = True  # False: the table had no source_id and ``ids`` numbers the rows
    reobserver: object | None = None  # noise-aware training: re-observes the stars (photofeh.model.noise.Reobserver)
    selection: np.ndarray | None = None  # each star's targeting probability (cfg.selection_column): the unfolding's
    # calibration weights, and with selection_weighting = "loss" the training weights (training_prior)


def prepare(table, cfg: TrainConfig) -> Prepared:
    """Features, labels, label errors and the giant flag from a labelled catalogue, validated first
    (:mod:`photofeh.io.validation`: a label of -9999 or a negative error never reaches the loss)."""
    cols, replaced = clean_columns(as_columns(table), "training table")
    X, usable = feature_matrix(cols, cfg.features, cfg.ebv_column, cfg.deredden)
    if cfg.missing == "mask":
        usable = enough_features(X, cfg.min_features)
    n = len(X)
    y = np.full((n, len(cfg.labels)), np.nan)
    e = np.zeros((n, len(cfg.labels)))
    from photofeh.model.evaluate import check_label_columns
    from photofeh.model.parallax_labels import parallax_inputs

    column_labels = [lab for lab in cfg.labels if lab not in cfg.parallax_labels]
    check_label_columns(cols, column_labels, cfg.label_columns, "the training table")
    for j, lab in enumerate(cfg.labels):
        if lab in cfg.parallax_labels:
            continue  # no label column: the loss compares predicted and measured parallaxes
        c = cfg.label_columns[lab]
        y[:, j] = np.asarray(cols[c], float)
        if f"{c}_err" in cols:
            e[:, j] = np.nan_to_num(np.asarray(cols[f"{c}_err"], float), nan=0.0)
    aux = parallax_inputs(cols, cfg.parallax_labels, cfg.ebv_column, cfg.deredden, cfg.parallax_zero_point)
    plx_index = [cfg.labels.index(lab) for lab in cfg.parallax_labels]
    giant = np.full(n, np.nan)
    if "logg" in cfg.labels:
        g = y[:, cfg.labels.index("logg")]
        giant = np.where(np.isfinite(g), (g < GIANT_LOGG).astype(float), np.nan)
    ids = np.asarray(cols["source_id"]) if "source_id" in cols else np.arange(n)
    # the stars the calibration sample can hold (train.calibration_sample: a finite [Fe/H] label)
    calibratable = np.isfinite(y[:, cfg.labels.index("feh")]) if "feh" in cfg.labels else np.zeros(n, bool)
    from photofeh.model.domain import feature_errors

    reobserver = None
    if cfg.noise_aware:
        from photofeh.model.noise import Reobserver, error_relations_for

        reobserver = Reobserver(cols, cfg.features, error_relations_for(cols, cfg.features, cfg.noise_errors_from),
                                cfg.noise_limit_band, cfg.noise_limit, cfg.noise_keep_fraction, cfg.ebv_column,
                                cfg.deredden, require_all=cfg.missing == "require",
                                error_scatter=cfg.noise_error_scatter)
    return Prepared(X, y, e, giant, usable, ids, replaced, aux, plx_index, feature_errors(cols, cfg.features),
                    "source_id" in cols, reobserver, _selection(cols, cfg.selection_column, calibratable))


def _selection(cols, column: str, labelled: np.ndarray) -> np.ndarray | None:
    """The targeting probabilities of ``column`` (None without one); each ``labelled`` star's (those with an
    [Fe/H] label, which the calibration sample draws from) must be in (0, 1]. The others' are never used: a star
    never targeted has probability 0 (a full mock's spec_target_probability), or none is known."""
    if not column:
        return None
    if column not in cols:
        raise ValueError(f"selection_column {column!r} is not a column of the training table")
    p = np.asarray(cols[column], float)
    with np.errstate(invalid="ignore"):
        bad = labelled & ~((p > 0) & (p <= 1))
    if bad.any():
        raise ValueError(f"selection_column {column!r}: {int(bad.sum())} labelled row(s) without a probability in "
                         "(0, 1] (missing, zero or above 1): a star that could not have been chosen cannot be weighted")
    return p


def label_standardizer(p: Prepared, rows: np.ndarray) -> Standardizer:
    """Normalisation of the labels on the training rows; a parallax label is scaled with the absolute
    magnitudes of its precise parallaxes (S/N >= 5), which only sets units, never enters the loss."""
    from photofeh.model.parallax_labels import SCALE_MIN_SNR, mabs_from_parallax

    y = p.y[rows].copy()
    for k, j in enumerate(p.plx_index):
        m, _ = mabs_from_parallax(*(p.aux[rows, 3 * k + i] for i in range(3)))
        if np.isfinite(m).sum() < 10:
            raise ValueError(f"too few training stars with parallax S/N >= {SCALE_MIN_SNR:g} "
                             f"({int(np.isfinite(m).sum())}) to scale a parallax label")
        y[:, j] = m
    return Standardizer.fit(y)


def split_indices(n: int, fractions, seed: int, ids: np.ndarray | None = None) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test, from a seeded permutation of the distinct ``ids`` (in order of
    first appearance), so that rows sharing an id (the same star observed twice) are on one side of the
    split. With all ids distinct this is a permutation of the rows."""
    if ids is None:
        first, inverse = np.arange(n), np.arange(n)
    else:
        _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # distinct ids in order of first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        first, inverse = first[order], rank[inverse.ravel()]
    m = first.size
    perm = np.random.default_rng(np.random.SeedSequence([seed, 0x5917])).permutation(m)
    n_train, n_val = int(fractions[0] * m), int(fractions[1] * m)
    groups = np.empty(m, dtype=np.int8)
    groups[perm[:n_train]], groups[perm[n_train:n_train + n_val]], groups[perm[n_train + n_val:]] = 0, 1, 2
    return groups[inverse]


def assign_split(p: Prepared, cfg: TrainConfig) -> np.ndarray:
    """0 = train, 1 = validation, 2 = test for every row: :func:`split_indices`, or with ``cfg.split_seed``
    the test stars chosen by a seeded hash of their source_id (:func:`photofeh.io.real_samples.hashed_test_mask`)
    and training and validation stars drawn from the others in the ratio of the first two fractions (what
    benchmarks/bench_green2020.py does with the green2020 split: the same stars, the same model). There the
    star or two that the rounding of the two counts leaves over are 3 = unused ("unused" in split.parquet),
    in neither the training, the validation nor the test set, as in the benchmark."""
    if cfg.split_seed is None:
        return split_indices(len(p.X), cfg.split, cfg.seed, p.ids)
    if not p.has_ids:
        raise ValueError("split_seed (--split-seed) chooses the test stars by their source_id, and the training "
                         "table has no source_id column: add one, or leave split_seed out")
    from photofeh.io.real_samples import hashed_test_mask

    test = hashed_test_mask(p.ids, cfg.split_seed, cfg.split[2])
    rest = np.flatnonzero(~test)
    f_train = round(cfg.split[0] / (cfg.split[0] + cfg.split[1]), 12)
    groups = np.full(len(p.X), 2, np.int8)
    rest_groups = split_indices(rest.size, (f_train, 1.0 - f_train, 0.0), cfg.seed, p.ids[rest])
    groups[rest] = np.where(rest_groups == 2, 3, rest_groups)
    return groups


def _inputs(X: np.ndarray, X_err: np.ndarray | None, xs: Standardizer, es: Standardizer | None, cfg: TrainConfig,
            hide: bool = False) -> torch.Tensor:
    """The network's inputs from raw features (and, for a noise-aware model, their errors,
    :mod:`photofeh.model.noise`); in "mask" mode with measured-bits, and with ``hide`` surveys hidden once,
    reproducibly (the validation set then scores the model on the mixture it will meet)."""
    from photofeh.model.missing import with_errors
    from photofeh.model.noise import error_inputs

    z = xs.transform(X)
    if cfg.missing == "mask":
        z = masked_inputs(z)
    z = with_errors(z, es.transform(error_inputs(X_err)) if es is not None else None)
    if cfg.missing == "mask" and hide:
        z = drop_groups(torch.from_numpy(z), _group_index(cfg), cfg.group_dropout,
                        torch.Generator().manual_seed(cfg.seed + 7)).numpy()
    return torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32))


def input_scaling(p: Prepared, rows: np.ndarray, cfg: TrainConfig
                  ) -> tuple[np.ndarray, np.ndarray | None, Standardizer, Standardizer | None]:
    """The features (and errors) of ``rows`` as the network first meets them, and the input normalisation fitted
    to them: for a noise-aware model one seeded re-observation (:mod:`photofeh.model.noise`) and the standardiser
    of the log-errors too; else the features as measured, and no error inputs."""
    if p.reobserver is None:
        return p.X[rows], None, Standardizer.fit(p.X[rows]), None
    from photofeh.model.noise import error_inputs

    X, E = p.reobserver.draw(rows, np.random.default_rng([cfg.seed, 0x401]))
    logs = error_inputs(E)
    known = np.isfinite(logs).any(axis=0)  # a feature without an error (e.g. parallax_error itself): 0 and 1
    mean, std = np.zeros(logs.shape[1]), np.ones(logs.shape[1])
    fitted = Standardizer.fit(logs[:, known])
    mean[known], std[known] = fitted.mean, fitted.std
    return X, E, Standardizer.fit(X), Standardizer(mean, std)


def reobserved(p: Prepared, rows: np.ndarray, cfg: TrainConfig, *key: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded re-observation of stars ``rows`` (features, errors); ``key`` picks the draw."""
    return p.reobserver.draw(rows, np.random.default_rng([cfg.seed, 0x402, *key]))


def _tensors(p: Prepared, rows: np.ndarray, xs: Standardizer, ys: Standardizer, cfg: TrainConfig,
             hide: bool = False, weight: np.ndarray | None = None, X: np.ndarray | None = None,
             X_err: np.ndarray | None = None, es: Standardizer | None = None):
    """Training tensors (inputs by :func:`_inputs`, from ``X`` and ``X_err`` where given: re-observed stars);
    in "mask" mode the inputs carry measured-bits, and with ``hide`` surveys are hidden once."""
    X = _inputs(p.X[rows] if X is None else X, p.X_err[rows] if X_err is None and es is not None else X_err,
                xs, es, cfg, hide)
    y = torch.from_numpy(((p.y[rows] - ys.mean) / ys.std).astype(np.float32))
    e = torch.from_numpy((p.e[rows] / ys.std).astype(np.float32))
    g = torch.from_numpy(p.giant[rows].astype(np.float32))
    a = torch.from_numpy((p.aux[rows] if p.aux is not None else np.zeros((len(rows), 0))).astype(np.float32))
    w = torch.from_numpy((np.ones(len(rows)) if weight is None else weight).astype(np.float32))
    return X, y, e, g, a, w


def _plx_spec(p: Prepared, ys: Standardizer) -> tuple | None:
    """(indices, loc, scale) of the parallax labels for the loss, or None."""
    if not p.plx_index:
        return None
    idx = torch.tensor(p.plx_index)
    return idx, torch.tensor(ys.mean[p.plx_index], dtype=torch.float32), torch.tensor(ys.std[p.plx_index],
                                                                                      dtype=torch.float32)


def _group_index(cfg: TrainConfig) -> torch.Tensor:
    names = feature_groups(cfg.features)
    order = list(dict.fromkeys(names))
    return torch.tensor([order.index(g) for g in names])


def training_prior(values: np.ndarray | None, train_rows: np.ndarray, val_rows: np.ndarray,
                   cfg: TrainConfig, selection: np.ndarray | None = None) -> dict:
    """The prior the model will carry, as recorded in model.json, with the per-star weights that give it
    (``train_weights``, ``val_weights``; all 1 for the labels prior). Always records the distribution of
    ``prior_label`` the estimates of a `labels` model lean toward: the labelled stars', or with
    ``cfg.selection_weighting = "loss"`` theirs weighted by :func:`photofeh.model.prior.selection_weights` of the
    targeting probabilities ``selection`` (the survey's population, as far as the labels reach; ``selection``
    in the prior's record says how far the weights were trimmed)."""
    from photofeh.model.prior import (
        PRIOR_BIN_WIDTH,
        flat_prior_weights,
        inverse_probability,
        label_histogram,
        selection_weights,
    )

    out: dict = {"kind": cfg.prior, "label": cfg.prior_label}
    w_train, w_val = np.ones(len(train_rows)), np.ones(len(val_rows))
    if cfg.selection_weighting == "loss" and selection is not None:
        w = selection_weights(selection, train_rows, cfg.selection_weight_cap)
        w_train, w_val = w[train_rows], w[val_rows]
        cap = cfg.selection_weight_cap
        inv, ok = inverse_probability(np.asarray(selection)[train_rows])
        raw = np.where(ok, inv, 0.0)  # the untrimmed weights of the stars selection_weights weights by 1/p
        out["selection"] = {"column": cfg.selection_column, "weighting": "loss", "weight_cap": cap,
                            "max_weight": float(w_train.max()), "trimmed": float(np.mean(w_train >= cap)),
                            "trimmed_weight_share": float(raw[w_train >= cap].sum() / raw.sum()) if ok.any() else 0.0,
                            "effective_train_stars": float(w_train.sum() ** 2 / np.sum(w_train**2))}
    if values is None:
        return {**out, "train_weights": w_train, "val_weights": w_val}
    weighted = w_train if "selection" in out else None
    out["training_distribution"] = label_histogram(values[train_rows], weights=weighted)
    if cfg.prior != "flat":  # labels, or likelihood (the histogram enters its loss: photofeh.model.likelihood)
        return {**out, "train_weights": w_train, "val_weights": w_val}
    w_train = flat_prior_weights(values[train_rows], values[train_rows], cfg.prior_weight_cap)
    w_val = flat_prior_weights(values[val_rows], values[train_rows], cfg.prior_weight_cap)
    return {**out, "bin_width": PRIOR_BIN_WIDTH, "weight_cap": cfg.prior_weight_cap,
            "max_weight": float(w_train.max()),
            "effective_train_stars": float(w_train.sum() ** 2 / np.sum(w_train**2)),
            "train_weights": w_train, "val_weights": w_val}
