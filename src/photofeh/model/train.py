"""Training: data split, heteroscedastic multi-task loss, one-cycle AdamW, best checkpoint.

A run directory holds ``model/`` (the model folder), ``history.csv`` and
``history.png``/``.pdf`` (training curves, drawn by the ``train`` command), ``split.parquet`` (the train/validation/
test assignment of every star), ``config.toml`` (what was asked for),
``baselines/`` (LightGBM and the Ivezic 2008 form fitted on the same training
stars) and ``labelled_sample.parquet`` (features and labels of up to 20,000
training stars, for the report's coverage plots). ``photofeh evaluate`` adds
the test metrics and figures; ``photofeh report`` turns it all into a page.

The run's parts: its settings (:mod:`~photofeh.model.train_config`), its data (:mod:`~photofeh.model.train_data`)
and the fitting of its networks (:mod:`~photofeh.model.train_loop`); this module writes the run directory. The
names callers import from ``photofeh.model.train`` are importable from here as before.
"""

from __future__ import annotations

import csv
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from photofeh._version import __version__
from photofeh.model.artifact import save_model_folder
from photofeh.model.missing import feature_groups, network_inputs
from photofeh.model.parallax_labels import absmag_reference
from photofeh.model.train_config import (
    CONFIG_DOCS,
    GIANT_LOGG,
    TrainConfig,
    _to_toml,
    check_split,
    config_markdown,
    load_config,
)
from photofeh.model.train_data import (
    Prepared,
    _inputs,
    _plx_spec,
    _tensors,
    assign_split,
    input_scaling,
    label_standardizer,
    prepare,
    reobserved,
    split_indices,
    training_prior,
)
from photofeh.model.train_loop import _calibrate, _fit_member, _set_threads, lr_find, multitask_loss

__all__ = ["TrainConfig", "train", "load_config", "prepare", "lr_find", "GIANT_LOGG",
           # defined in train_config, train_data and train_loop; importable from here as before the split
           "CONFIG_DOCS", "check_split", "config_markdown", "multitask_loss", "split_indices", "_to_toml"]

def ids_digest(ids: np.ndarray) -> str:
    """SHA-256 of a table's source ids in order: recognises the training table again (see evaluate)."""
    import hashlib

    return hashlib.sha256("\n".join(map(str, np.asarray(ids).tolist())).encode()).hexdigest()


def train(table, cfg: TrainConfig, run_dir: str | os.PathLike, log=print, overwrite: bool = False,
          draw_history=None, inputs: tuple = (), mock_source=None) -> Path:
    """Train on a labelled catalogue; write the run directory; return the model folder.

    ``draw_history(history, stem)`` draws the training curves into the run before it is put in place (the
    ``train`` command passes :func:`photofeh.report.run_figures.history_figure`; this stage draws no figure).

    The run is written to a hidden temporary folder beside ``run_dir`` and renamed at the end, so a run
    folder is complete or absent whenever the process stops. An existing, non-empty ``run_dir`` is
    refused unless ``overwrite`` (then it is replaced only once the new run is complete).
    ``mock_source``: what simulates (or reads from its cache) the mock of a ``[pretrain]`` table (the command
    passes :func:`photofeh.simulate.cache.cached_mock`). ``inputs``: the
    files the table and config came from: a ``run_dir`` that is, holds or lies inside one is refused (with
    ``overwrite`` it would be deleted). A ``run_dir`` that is a symlink stays one: the folder it points to is
    replaced.
    """
    from photofeh.io.catalog import check_output_place, replace_folder
    from photofeh.io.locking import output_lock

    cfg.validate()
    run = Path(run_dir)
    if run.is_symlink():  # replace the folder the link points to, not the link (nothing left beside it)
        run = run.resolve()
    check_output_place(run, [i for i in inputs if i])
    if run.exists() and not run.is_dir():
        raise FileExistsError(f"{run} exists and is not a folder")
    if run.is_dir() and any(run.iterdir()) and not overwrite:
        raise FileExistsError(f"{run} exists and is not empty; choose another --out or pass --overwrite to "
                              "replace it")
    if not run.parent.is_dir():
        raise FileNotFoundError(f"cannot create {run}: folder {run.parent} does not exist")
    with output_lock(run, "photofeh train"):
        tmp = run.with_name(f".{run.name}.partial-{os.getpid()}")
        tmp.mkdir()
        try:
            _train_into(table, cfg, tmp, log, draw_history, mock_source)
            replace_folder(tmp, run)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    log(f"model in {run / 'model'}")
    return run / "model"


def _train_into(table, cfg: TrainConfig, run: Path, log, draw_history=None, mock_source=None) -> None:
    import pandas as pd

    from photofeh.model.domain import TrainingDomain, colour_features

    _set_threads(cfg)
    t_start = time.perf_counter()
    p = prepare(table, cfg)
    from photofeh.model.label_noise import apply_label_errors

    label_errors = apply_label_errors(p, cfg)
    if p.replaced:
        log("values set to NaN by validation (sentinels, NaN/inf, impossible): "
            + ", ".join(f"{k} {v:,d}" for k, v in sorted(p.replaced.items())))
    n_duplicate = int(p.ids.size - np.unique(p.ids).size)
    if n_duplicate:
        log(f"{n_duplicate:,d} row(s) repeat a source_id; each id is kept on one side of the split")
    split = assign_split(p, cfg)
    has_label = np.isfinite(p.y).any(axis=1)
    if p.plx_index:  # a measured parallax is a label too (photofeh.model.parallax_labels)
        has_label |= np.isfinite(p.aux[:, 1::3]).any(axis=1)
    use = p.usable & has_label
    train_rows, val_rows = np.flatnonzero(use & (split == 0)), np.flatnonzero(use & (split == 1))
    if len(train_rows) < cfg.batch_size or len(val_rows) < 10:
        raise ValueError(f"too few usable labelled stars: {len(train_rows)} for training (at least batch_size = "
                         f"{cfg.batch_size} needed), {len(val_rows)} for validation (at least 10 needed); "
                         f"{int((~p.usable).sum())} rows lack a feature, {int((~has_label).sum())} have no label")
    # the inputs as the network first meets them: measured, or for a noise-aware model re-observed (model.noise)
    X_train, E_train, xs, es = input_scaling(p, train_rows, cfg)
    X_val, E_val = reobserved(p, val_rows, cfg, 1) if p.reobserver is not None else (p.X[val_rows], None)
    ys = label_standardizer(p, train_rows)
    plx = _plx_spec(p, ys)
    prior = training_prior(p.y[:, cfg.labels.index(cfg.prior_label)] if cfg.prior_label in cfg.labels else None,
                           train_rows, val_rows, cfg, p.selection)
    likelihood = None
    if cfg.prior == "likelihood":  # the head is a likelihood, scored through this histogram (model.likelihood)
        from photofeh.model.likelihood import LikelihoodPrior

        likelihood = LikelihoodPrior.from_meta({"prior": prior, "labels": cfg.labels,
                                                "label_standardizer": ys.to_dict()})
    if cfg.prior == "flat":
        log(f"prior flat in {cfg.prior_label}: weights up to {prior['max_weight']:.1f}, effective training "
            f"stars {prior['effective_train_stars']:,.0f} of {len(train_rows):,d}")
    if "selection" in prior:
        sel = prior["selection"]
        log(f"targeting weights in the loss: training stars weighted by 1 / {cfg.selection_column}, up to "
            f"{sel['max_weight']:.1f} x the mean ({100 * sel['trimmed']:.1f}% trimmed), effective training stars "
            f"{sel['effective_train_stars']:,.0f} of {len(train_rows):,d}")
    train_t = _tensors(p, train_rows, xs, ys, cfg, weight=prior.pop("train_weights"), X=X_train, X_err=E_train,
                       es=es)
    val_t = _tensors(p, val_rows, xs, ys, cfg, hide=True, weight=prior.pop("val_weights"), X=X_val, X_err=E_val,
                     es=es)
    reobserve = None
    if p.reobserver is not None:
        sources = ", ".join(f"{k} {r.source}" for k, r in p.reobserver.relations.items())
        log(f"noise-aware: training stars re-observed every epoch down to {cfg.noise_limit_band} = "
            f"{cfg.noise_limit:g} (error relations: {sources})")

        def reobserve(member: int, epoch: int) -> torch.Tensor:
            return _inputs(*reobserved(p, train_rows, cfg, 2, member, epoch), xs, es, cfg)
    init, pretraining = None, None
    if cfg.pretrain:  # the mock's weights, fitted with this table's normalisation (photofeh.model.pretrain)
        from photofeh.model.pretrain import pretrain_from_config

        init, pretraining = pretrain_from_config(cfg, xs, ys, mock_source, log)
    nets, history = [], []
    for member in range(cfg.ensemble):
        net, hist = _fit_member(cfg, member, train_t, val_t,
                                network_inputs(len(cfg.features), cfg.missing, cfg.noise_aware), log, plx, reobserve,
                                init_state=init, likelihood=likelihood)
        nets.append(net)
        history += hist
    val_feh = p.y[val_rows, cfg.labels.index("feh")] if "feh" in cfg.labels else np.full(len(val_rows), np.nan)
    # a masked model's validation stars had surveys hidden at random (checkpoints, class calibration); its sigma
    # scales are fitted on the same stars with the bands they have, as they will be predicted
    seen_t = (_inputs(X_val, E_val, xs, es, cfg), *val_t[1:]) if cfg.missing == "mask" else None
    scales, temperature, threshold, giant_scales = _calibrate(nets, val_t, cfg, val_feh, plx, likelihood, seen_t)
    train_seconds = time.perf_counter() - t_start
    meta = {
        "photofeh_version": __version__,
        "architecture": cfg.architecture, "heads": cfg.heads, "classify": cfg.classify,
        "features": cfg.features, "ebv_column": cfg.ebv_column, "deredden": cfg.deredden,
        "missing": cfg.missing, "min_features": cfg.min_features, "feature_groups": feature_groups(cfg.features),
        "labels": cfg.labels, "label_columns": cfg.label_columns, "parallax_labels": cfg.parallax_labels,
        "parallax_zero_point_mas": cfg.parallax_zero_point, "prior": prior,
        "absmag_reference": absmag_reference({"labels": cfg.labels, "parallax_labels": cfg.parallax_labels,
                                              "deredden": cfg.deredden}),
        # a noise-aware model's ranges span its re-observed inputs; its stellar locus is the measured stars'
        "domain": TrainingDomain.fit(X_train, p.X_err[train_rows] if E_train is None else E_train, p.y[train_rows],
                                     measured=p.X[train_rows] if p.reobserver is not None else None,
                                     colours=colour_features(cfg.features),  # per survey where stars may lack one
                                     groups=feature_groups(cfg.features) if cfg.missing == "mask" else None
                                     ).to_dict(),
        "input_standardizer": xs.to_dict(), "label_standardizer": ys.to_dict(),
        "noise_aware": cfg.noise_aware,
        "sigma_scale": scales, "class_temperature": temperature,
        "class_conditional": cfg.class_conditional, "sigma_scale_giant": giant_scales,
        "class_threshold": threshold, "giant_logg": GIANT_LOGG,
        "training": {"config": asdict(cfg), "n_rows": len(p.X), "n_train": len(train_rows),
                     "n_validation": len(val_rows), "table_ids_sha256": ids_digest(p.ids),
                     "values_replaced": dict(p.replaced), "duplicate_source_ids": n_duplicate,
                     "label_errors": label_errors, "pretraining": pretraining,
                     "seconds": round(train_seconds, 1), "epochs_run": [max(h["epoch"] for h in history
                                                                            if h["member"] == m)
                                                                        for m in range(cfg.ensemble)]},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    if p.reobserver is not None:
        meta["error_standardizer"] = es.to_dict()
        meta["noise"] = {"limit_band": cfg.noise_limit_band, "limit": cfg.noise_limit,
                         "keep_fraction": cfg.noise_keep_fraction, "error_scatter": cfg.noise_error_scatter,
                         "errors_from": cfg.noise_errors_from,
                         "relations": {k: r.to_dict() for k, r in p.reobserver.relations.items()}}
    if "feh" in cfg.labels or cfg.parallax_labels:
        finished = _finished_model(nets, meta)  # as predict will load it, before either measurement is added
        if "feh" in cfg.labels:  # its response, for population MDFs (photofeh.galaxy.unfold)
            meta["calibration_sample"] = calibration_sample(finished, p, val_rows, cfg, X_val, E_val)
        if cfg.parallax_labels:  # its M_abs error distribution on validation parallaxes (model.absmag_calibration)
            meta["absmag_calibration"] = _absmag_calibration(finished, p, val_rows, cfg, X_val, E_val)
    save_model_folder(run / "model", nets, meta)
    pd.DataFrame({"source_id": p.ids, "split": np.array(["train", "validation", "test", "unused"])[split],
                  "usable": p.usable}).to_parquet(run / "split.parquet")
    with open(run / "history.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    if draw_history is not None:
        draw_history(history, run / "history")
    (run / "config.toml").write_text(_to_toml(cfg))
    _labelled_sample(p, cfg, train_rows).to_parquet(run / LABELLED_SAMPLE)
    log(f"trained {cfg.ensemble} member(s) in {train_seconds:.1f} s")
    if cfg.baseline_rounds:
        from photofeh.model.baselines import BASELINE_FOLDER, RunBaselines

        # one thread: LightGBM's OpenMP threads spin-wait, and beside any other busy process 2 threads ran 13x
        # slower than 1 here (59 s against 4.4 s for 200 rounds on 10,000 stars)
        base = RunBaselines.fit(p.X[train_rows], p.y[train_rows], cfg.features, cfg.labels, cfg.baseline_rounds,
                                cfg.seed, threads=1, allow_missing=cfg.missing == "mask",
                                validation=(p.X[val_rows], p.y[val_rows]))
        base.save(run / BASELINE_FOLDER)
        log(f"baselines (LightGBM tuned on the validation split, at most {cfg.baseline_rounds} rounds; Ivezic 2008 "
            f"form) fitted on the same training stars in {base.meta['seconds']:.1f} s")


CALIBRATION_SAMPLE_SIZE = 20_000  # validation entries kept in model.json (~1.2 MB of JSON at most)
CALIBRATION_DRAWS = 7  # extra re-observations of each validation star (noise-aware models), within that size


def _finished_model(nets: list[torch.nn.Module], meta: dict):
    """The trained networks as a :class:`photofeh.model.predict.PhotometricModel`, in memory."""
    from photofeh.model.predict import PhotometricModel

    return PhotometricModel(meta, [{k: t.detach().cpu() for k, t in net.state_dict().items()} for net in nets])


def calibration_sample(model, p: Prepared, val_rows: np.ndarray, cfg: TrainConfig, X_val: np.ndarray | None = None,
                       E_val: np.ndarray | None = None) -> dict:
    """The finished model's [Fe/H] estimates and errors (its own prior) on validation stars, beside their
    labels: the estimator's response, measured on stars it was not fitted to, from which population MDFs
    are unfolded (:mod:`photofeh.galaxy.unfold`). The validation stars only chose the epoch and scaled the
    errors, so this is nearly independent of the fit. At most :data:`CALIBRATION_SAMPLE_SIZE` entries (seeded).
    ``X_val``, ``E_val``: the validation stars' features and errors as the model met them (re-observed, for a
    noise-aware model: the response then spans the survey's depth), else the measured ones. A noise-aware model's
    validation stars are re-observed up to :data:`CALIBRATION_DRAWS` times more (seeded): the response of faint
    stars depends on their colour (the estimate falls back on what the colours and magnitude say of a star's
    population), so the unfolding matches the calibration stars to the selected ones in error and Teff, which needs
    more than one draw per star (``star``: the validation star of each entry, for the bootstrap; ``teff``: the
    model's Teff estimate, where it has one). ``true_err``: the labels' errors, which the unfolding takes out of
    the response (a response measured against noisy labels is flatter than the true one). ``selection_weight``:
    with ``cfg.selection_column``, 1 / each entry's star's targeting probability (ResponseSample's design
    weights)."""
    rows = val_rows[np.isfinite(p.y[val_rows, cfg.labels.index("feh")])]
    if rows.size > CALIBRATION_SAMPLE_SIZE:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, CALIBRATION_SAMPLE_SIZE, replace=False))
    X, X_err = _validation_inputs(p, val_rows, rows, X_val, E_val)
    draws = [(X, X_err)]
    if p.reobserver is not None:
        extra = int(np.clip(CALIBRATION_SAMPLE_SIZE // max(rows.size, 1) - 1, 0, CALIBRATION_DRAWS))
        draws += [reobserved(p, rows, cfg, 3, k) for k in range(extra)]
    true, true_err = p.y[rows, cfg.labels.index("feh")], p.e[rows, cfg.labels.index("feh")]
    sample = {"label": "feh", "split": "validation", "true": [], "true_err": [], "estimate": [], "sigma": [],
              "star": []}
    for X, X_err in draws:
        out = model.predict_features(X, X_err=X_err)
        ok = np.asarray(out["usable"], bool) & np.isfinite(out["feh"]) & np.isfinite(out["feh_err"])
        sample["true"] += np.round(true[ok], 4).tolist()
        sample["true_err"] += np.round(true_err[ok], 4).tolist()  # the labels' errors (0: unknown)
        sample["estimate"] += np.round(out["feh"][ok], 4).tolist()
        sample["sigma"] += np.round(out["feh_err"][ok], 4).tolist()
        sample["star"] += np.flatnonzero(ok).tolist()
        if p.selection is not None:
            sample.setdefault("selection_weight", []).extend(np.round(1.0 / p.selection[rows][ok], 4).tolist())
        if "feh_population" in out:  # a likelihood model's second estimate (photofeh.model.likelihood)
            sample.setdefault("estimate_population", []).extend(np.round(out["feh_population"][ok], 4).tolist())
            sample.setdefault("sigma_population", []).extend(np.round(out["feh_population_err"][ok], 4).tolist())
        if "teff" in out:
            sample.setdefault("teff", []).extend(np.round(out["teff"][ok], 0).tolist())
        if "is_giant" in out:  # so that a dwarfs-only (or giants-only) MDF is unfolded with their own response
            sample.setdefault("giant", []).extend(np.asarray(out["is_giant"], bool)[ok].astype(int).tolist())
    sample["stars"] = len(sample["true"])
    return sample


def _validation_inputs(p: Prepared, val_rows: np.ndarray, rows: np.ndarray, X_val: np.ndarray | None,
                       E_val: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Features and errors of ``rows`` (a sorted subset of the sorted ``val_rows``): from ``X_val``/``E_val``
    (aligned with ``val_rows``) where given, else as measured."""
    if X_val is None:
        return p.X[rows], p.X_err[rows] if p.X_err is not None else None
    at = np.searchsorted(val_rows, rows)
    return X_val[at], (E_val[at] if E_val is not None else p.X_err[rows] if p.X_err is not None else None)


def _absmag_calibration(model, p: Prepared, val_rows: np.ndarray, cfg: TrainConfig, X_val: np.ndarray | None = None,
                        E_val: np.ndarray | None = None) -> dict:
    """:func:`photofeh.model.absmag_calibration.measure_absmag_calibration` of the finished (uncalibrated)
    model on its validation stars: they chose the epoch and the sigma scales, never the fit. A noise-aware model
    is measured on them re-observed (their parallaxes, the labels, as measured: the star is the same)."""
    from photofeh.model.absmag_calibration import measure_absmag_calibration

    X, X_err = _validation_inputs(p, val_rows, val_rows, X_val, E_val)
    return measure_absmag_calibration(model, X, X_err, p.aux[val_rows], cfg.parallax_labels, p.giant[val_rows])


LABELLED_SAMPLE = "labelled_sample.parquet"  # in a run: features and labels of up to 20,000 training stars
LABELLED_SAMPLE_SIZE = 20_000


def _labelled_sample(p: Prepared, cfg: TrainConfig, train_rows: np.ndarray):
    """A random sample of the training stars' features and labels, kept in the run so that the report can
    show where the stars to predict lie against the labelled ones (training coverage)."""
    import pandas as pd

    rng = np.random.default_rng(cfg.seed)
    rows = np.sort(rng.choice(train_rows, min(LABELLED_SAMPLE_SIZE, len(train_rows)), replace=False))
    frame = pd.DataFrame(p.X[rows].astype(np.float32), columns=cfg.features)
    for j, lab in enumerate(cfg.labels):
        frame[f"label_{lab}"] = p.y[rows, j]
    return frame


if __name__ == "__main__":  # pragma: no cover
    print(config_markdown(), end="")
