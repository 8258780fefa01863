"""Training: data split, heteroscedastic multi-task loss, one-cycle AdamW, best checkpoint.

A run directory holds ``model/`` (the model folder), ``history.csv`` and
``history.png``/``.pdf`` (training curves), ``split.parquet`` (the train/validation/
test assignment of every star), ``config.toml`` (what was asked for),
``baselines/`` (LightGBM and the Ivezic 2008 form fitted on the same training
stars) and ``labelled_sample.parquet`` (features and labels of up to 20,000
training stars, for the report's coverage plots). ``photofeh evaluate`` adds
the test metrics and figures; ``photofeh report`` turns it all into a page.
"""

from __future__ import annotations

import copy
import csv
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from photofeh._version import __version__
from photofeh.bands import GAIA_PARALLAX_ZP_MAS
from photofeh.io.tomlfile import closest, read_toml
from photofeh.io.validation import clean_columns
from photofeh.model.artifact import save_model_folder
from photofeh.model.features import DEFAULT_FEATURES, Standardizer, as_columns, feature_matrix
from photofeh.model.missing import (
    MISSING_MODES,
    drop_groups,
    enough_features,
    feature_groups,
    masked_inputs,
    network_inputs,
)
from photofeh.model.networks import PRESETS, build_network
from photofeh.model.parallax_labels import absmag_reference

__all__ = ["TrainConfig", "train", "load_config", "prepare", "lr_find", "GIANT_LOGG"]

GIANT_LOGG = 3.5  # giant: log g < 3.5 (this project's boundary; see docs)


@dataclass
class TrainConfig:
    """Everything that defines a training run (a TOML file maps onto it section by section)."""

    features: list[str] = field(default_factory=lambda: list(DEFAULT_FEATURES))
    labels: list[str] = field(default_factory=lambda: ["feh", "logg", "teff", "mabs_sdss_r"])
    label_columns: dict[str, str] = field(default_factory=lambda: {
        "feh": "feh_spec", "logg": "logg_spec", "teff": "teff_spec", "mabs_sdss_r": "mabs_sdss_r_true"})
    ebv_column: str = "ebv"
    # False: magnitudes and colours as observed (give the network the reddening as an input feature instead),
    # for samples whose reddening is not an SFD-scale E(B-V)
    deredden: bool = True
    classify: bool = True
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    architecture: dict = field(default_factory=lambda: dict(PRESETS["fast-mlp"]))
    heads: str = "causal"
    ensemble: int = 1
    epochs: int = 80
    batch_size: int = 512
    max_lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 15
    class_weight: float = 1.0  # weight of the giant cross-entropy against the label NLLs
    class_operating_point: str = "break-even"
    # choose the operating point on the metal-poor validation stars, the halo
    # giants the class is for (None: all validation stars)
    class_operating_feh_max: float | None = -1.2
    seed: int = 0
    threads: int = 0  # 0: all cores
    # missing photometry (photofeh.model.missing): "require" every feature, or "mask": predict from what a star
    # has, training with whole surveys hidden at random (group_dropout) and at least min_features measured
    missing: str = "require"
    group_dropout: float = 0.3
    min_features: int = 3
    # absolute magnitudes trained against Gaia parallaxes, likelihood in parallax space (photofeh.model.parallax_labels)
    parallax_labels: list[str] = field(default_factory=list)
    # the global parallax zero point of the Gaia release the parallaxes come from (mas, subtracted)
    parallax_zero_point: float = GAIA_PARALLAX_ZP_MAS
    # labels predicted once for a dwarf and once for a giant, weighed by P(giant) (photofeh.model.networks.heads):
    # an absolute magnitude of a K star is one of two values, not their mean
    class_conditional: list[str] = field(default_factory=list)
    # the prior the estimates carry (photofeh.model.prior): "labels" (the labelled stars' distribution: best per-star
    # estimate) or "flat" in prior_label (training stars re-weighted, capped: small bias at every [Fe/H])
    prior: str = "labels"
    prior_label: str = "feh"
    prior_weight_cap: float = 3.0
    # most LightGBM rounds per label of the gradient-boosted baseline fitted beside the network on the same split
    # (tuned and stopped early on the validation split) and stored in the run (photofeh.model.baselines.
    # RunBaselines, with the Ivezic 2008 form); 0: no baselines
    baseline_rounds: int = 3000
    # a number: the test stars are chosen by a seeded hash of their source_id (photofeh.io.real_samples.
    # hashed_test_mask; 20201125 with a test fraction of 0.30 is the benchmarks' green2020 split), whatever the
    # row order; training and validation stars are then drawn from the others. None: one seeded permutation
    split_seed: int | None = None
    # the preset (or mapping file) through which `photofeh train` and `evaluate` read the table (e.g.
    # green2020, segue_colours, kepler_huber17); None: the table is in schema names
    table_preset: str | None = None

    def validate(self) -> None:
        """Types and ranges of every setting; raises ``ValueError`` naming the setting."""
        for name, expected in _TYPES.items():
            _check_type(name, getattr(self, name), expected)
        if not self.features or not self.labels:
            raise ValueError("features and labels must not be empty")
        if self.classify and "logg" not in self.labels:  # the class is learned from the log g labels
            raise ValueError(f"classify (the giant/dwarf class, log g < {GIANT_LOGG:g}) needs the label logg; "
                             f"add it to labels {self.labels} or set classify = false")
        from photofeh.model.parallax_labels import band_of

        for lab in self.parallax_labels:
            if lab not in self.labels:
                raise ValueError(f"parallax label {lab!r} must also be in labels {self.labels}")
            band_of(lab)
        if any(lab not in self.label_columns for lab in self.labels if lab not in self.parallax_labels):
            raise ValueError(f"every label needs a column in label_columns (or, for mabs_<band>, to be in "
                             f"parallax_labels); labels {self.labels}, columns {self.label_columns}")
        self.split = check_split(self.split)
        if self.split_seed is not None and not 0 <= self.split_seed <= 2**63 - 1:
            raise ValueError(f"split_seed must be from 0 to {2**63 - 1}, got {self.split_seed}")
        if self.table_preset is not None and not self.table_preset.endswith(".toml"):
            from photofeh.io.presets import PRESETS as TABLE_PRESETS

            if self.table_preset not in TABLE_PRESETS:
                raise ValueError(f"table_preset must be one of {', '.join(TABLE_PRESETS)} or a mapping file "
                                 f"(.toml), got {self.table_preset!r}{closest(self.table_preset, TABLE_PRESETS)}")
        for name, lo, hi in (("ensemble", 1, 100), ("epochs", 1, 100_000), ("batch_size", 2, 1 << 20),
                             ("patience", 1, 100_000), ("seed", 0, 2**63 - 1), ("threads", 0, 1024),
                             ("baseline_rounds", 0, 100_000),
                             ("min_features", 1, len(self.features))):
            if not lo <= getattr(self, name) <= hi:
                raise ValueError(f"{name} must be from {lo} to {hi}, got {getattr(self, name)}")
        for name, lo, hi in (("max_lr", 0.0, 10.0), ("weight_decay", 0.0, 10.0), ("class_weight", 0.0, 1e3)):
            value = getattr(self, name)
            open_lo = name == "max_lr"
            if not (np.isfinite(value) and (lo < value if open_lo else lo <= value) and value <= hi):
                raise ValueError(f"{name} must be a finite number in {'(' if open_lo else '['}{lo}, {hi}], "
                                 f"got {value}")
        if not 0 <= self.group_dropout < 1:
            raise ValueError(f"group_dropout must be in [0, 1), got {self.group_dropout}")
        if not abs(self.parallax_zero_point) <= 1.0:  # Gaia's global offsets are tens of microarcseconds
            raise ValueError(f"parallax_zero_point must be a few hundredths of a mas (|value| <= 1), "
                             f"got {self.parallax_zero_point}")
        if self.prior == "flat" and self.prior_label not in self.labels:
            raise ValueError(f"prior_label {self.prior_label!r} must be one of the labels {self.labels}")
        if not (np.isfinite(self.prior_weight_cap) and 1.0 <= self.prior_weight_cap <= 1e4):
            raise ValueError(f"prior_weight_cap must be from 1 to 10000, got {self.prior_weight_cap}")
        for name, choices in (("prior", ("labels", "flat")), ("missing", MISSING_MODES),
                              ("heads", ("independent", "causal")),
                              ("class_operating_point", ("break-even", "f1", "half"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.class_conditional and "logg" not in self.labels:
            raise ValueError(f"class_conditional {self.class_conditional} needs the label logg (a star's class, "
                             f"log g < {GIANT_LOGG}, picks its component)")
        from photofeh.model.networks import check_size

        check_size(self.architecture, network_inputs(len(self.features), self.missing), self.labels, self.heads,
                   self.classify, self.class_conditional)


def check_split(split) -> tuple[float, float, float]:
    """The one definition of a valid split: three finite fractions (train, validation, test) >= 0 summing
    to 1, with training and validation stars (the validation set picks the checkpoint and calibrates);
    a test fraction of 0 is valid (the model is then evaluated on another table)."""
    try:
        fractions = tuple(float(f) for f in split)
    except (TypeError, ValueError):
        raise ValueError(f"split must be three fractions (train, validation, test), got {split!r}") from None
    if len(fractions) != 3 or not all(np.isfinite(fractions)) or min(fractions) < 0:
        raise ValueError(f"split must be three finite fractions >= 0 (train, validation, test), got {split!r}")
    if abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {split!r} (sum {sum(fractions):g})")
    if fractions[0] <= 0 or fractions[1] <= 0:
        raise ValueError(f"split needs training and validation stars (fractions > 0), got {split!r}")
    return fractions


# Expected TOML types of the settings: a wrong type is a clear error, not a traceback in the middle of training
_TYPES = {"features": [str], "labels": [str], "label_columns": {str: str}, "ebv_column": str, "deredden": bool,
          "classify": bool,
          "split": [float], "architecture": {str: object}, "heads": str, "ensemble": int, "epochs": int,
          "batch_size": int, "max_lr": float, "weight_decay": float, "patience": int, "class_weight": float,
          "class_operating_point": str, "class_operating_feh_max": (float, None), "seed": int, "threads": int,
          "missing": str, "group_dropout": float, "min_features": int, "parallax_labels": [str],
          "parallax_zero_point": float, "class_conditional": [str], "prior": str, "prior_label": str,
          "prior_weight_cap": float,
          "baseline_rounds": int, "split_seed": (int, None), "table_preset": (str, None)}
_TYPE_NAMES = {str: "text", int: "an integer", float: "a number", bool: "true or false", object: "a value"}


def _is(value, kind) -> bool:
    if kind is object:
        return True
    if kind is float:
        return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)
    return isinstance(value, kind)


def _check_type(name: str, value, expected) -> None:
    if isinstance(expected, tuple):  # (type, None): optional
        if value is None or _is(value, expected[0]):
            return
        what = f"{_TYPE_NAMES[expected[0]]} or absent"
    elif isinstance(expected, list):
        if isinstance(value, list | tuple) and all(_is(v, expected[0]) for v in value):
            return
        what = f"a list of {_TYPE_NAMES[expected[0]]}"
    elif isinstance(expected, dict):
        ((k, v),) = expected.items()
        if isinstance(value, dict) and all(_is(a, k) and _is(b, v) for a, b in value.items()):
            return
        what = f"a table of {_TYPE_NAMES[k]} = {_TYPE_NAMES[v]}"
    else:
        if _is(value, expected):
            return
        what = _TYPE_NAMES[expected]
    raise ValueError(f"{name} must be {what}, got {value!r}")


SECTIONS = ("data", "model", "train")


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a TOML config: sections [data], [model], [train]; a model 'preset' names an architecture.

    Unknown sections, keys outside a section, unknown settings (with the closest known name), wrong
    types and out-of-range values are errors naming the file and the setting.
    """
    raw = read_toml(path, "config")
    known = [*TrainConfig.__dataclass_fields__, "preset"]
    flat: dict = {}
    for key, value in raw.items():
        if key not in SECTIONS:
            if isinstance(value, dict):
                raise ValueError(f"{path}: unknown section [{key}]{closest(key, SECTIONS)}; sections are "
                                 f"{', '.join(f'[{x}]' for x in SECTIONS)}")
            hint = "" if key in known else closest(key, known)
            raise ValueError(f"{path}: setting {key!r}{hint} lies outside any section; put it under [data], "
                             "[model] or [train]")
        if not isinstance(value, dict):
            raise ValueError(f"{path}: {key!r} must be a section ([{key}]), not a value")
        flat.update(value)
    unknown = [k for k in flat if k not in known]
    if unknown:
        raise ValueError(f"{path}: unknown setting {unknown[0]!r}{closest(unknown[0], known)}; "
                         f"known: {', '.join(known)}")
    preset = flat.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"{path}: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
        if not isinstance(flat.get("architecture", {}), dict):
            raise ValueError(f"{path}: architecture must be a table")
        flat["architecture"] = {**PRESETS[preset], **flat.get("architecture", {})}
    for name, expected in _TYPES.items():  # TOML has no null: "none" stands for an absent optional value
        if isinstance(expected, tuple) and flat.get(name) == "none":
            flat[name] = None
    cfg = TrainConfig(**flat)
    try:
        cfg.validate()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return cfg


# What each setting means, by the section it usually goes in (any of [data], [model], [train] is accepted).
# docs/config.md is generated from this and the defaults (`python -m photofeh.model.train > docs/config.md`); a test
# checks that every setting is documented and that the file is current.
CONFIG_DOCS: dict[str, tuple[str, str]] = {
    "features": ("data", "network inputs: `a-b` is a dereddened colour of two bands, a band name a dereddened "
                         "magnitude, anything else a raw column (e.g. `parallax`)"),
    "labels": ("data", "what the network predicts, each with an uncertainty"),
    "label_columns": ("data", "the catalogue column of each label (its error is `<column>_err` when present)"),
    "ebv_column": ("data", "the E(B-V) column used to deredden (SFD scale); `A_<band>` columns take precedence"),
    "deredden": ("data", "deredden magnitudes and colours with `ebv_column`; false: use them as observed and give "
                         "the network the reddening as a feature (when it is not an SFD-scale E(B-V)); a parallax "
                         "label's M then includes the extinction"),
    "split": ("data", "fractions of stars for training, validation (checkpoint and calibration) and test; "
                      "three numbers >= 0 summing to 1, test may be 0; rows sharing a source_id stay together"),
    "missing": ("data", "`require`: a star needs every feature; `mask`: predict from whatever it has "
                        "(docs/models.md, 'Missing photometry')"),
    "group_dropout": ("data", "with `missing = \"mask\"`: probability of hiding a whole survey per star and batch"),
    "min_features": ("data", "with `missing = \"mask\"`: measured features a star needs to get a prediction"),
    "architecture": ("model", "the backbone: `{name = \"mlp\", widths = [...], dropout = ...}` or "
                              "`{name = \"resdense\", ...}`; `preset = \"<name>\"` picks a named one "
                              "(fast-mlp, wide-mlp, reference-mlp, reference-resdense)"),
    "heads": ("model", "`independent` heads, or `causal`: Teff, then [Fe/H] given Teff, then log g given both"),
    "ensemble": ("model", "members of the deep ensemble (1-100); their spread adds to the uncertainty"),
    "classify": ("model", "also predict the giant/dwarf class (log g < 3.5) with a calibrated probability (needs "
                          "the label `logg`)"),
    "epochs": ("train", "one-cycle schedule length (early stopping may end sooner)"),
    "batch_size": ("train", "stars per optimiser step (the training set needs at least one batch)"),
    "max_lr": ("train", "peak learning rate of the one-cycle schedule (`photofeh lr-find` suggests one)"),
    "weight_decay": ("train", "AdamW weight decay"),
    "patience": ("train", "epochs without validation improvement before stopping"),
    "class_weight": ("train", "weight of the giant/dwarf cross-entropy against the label likelihoods"),
    "class_operating_point": ("train", "threshold rule for `is_giant`: `break-even` (completeness = purity), "
                                       "`f1`, or `half` (p >= 0.5)"),
    "class_operating_feh_max": ("train", "choose the operating point on validation stars below this [Fe/H] "
                                         "(the halo giants the class is for); `\"none\"`: all stars"),
    "parallax_labels": ("data", "labels `mabs_<band>` learned from Gaia parallaxes, with the likelihood in "
                                "parallax space (no label column, no cut on parallax S/N; "
                                "photofeh.model.parallax_labels)"),
    "parallax_zero_point": ("data", "global zero point (mas) subtracted from the parallaxes: Gaia EDR3/DR3 -0.017 "
                                    "(Lindegren et al. 2021), DR2 -0.029 (Lindegren et al. 2018)"),
    "class_conditional": ("model", "labels predicted twice, for a dwarf and for a giant (log g < 3.5), weighed by "
                                   "P(giant): e.g. `[\"mabs_gaia_g\"]`, so that a K star's M_abs is the dwarf's or "
                                   "the giant's, not a mean of both; needs `classify` and the label `logg` "
                                   "(docs/real_data.md)"),
    "prior": ("model", "`labels`: estimates carry the labelled stars' distribution (best per-star estimate); "
                       "`flat`: training stars re-weighted to a flat distribution in `prior_label` (small bias "
                       "at every value: for populations, `photofeh mdf` and maps; docs/populations.md)"),
    "prior_label": ("model", "with `prior = \"flat\"`: the label whose distribution is flattened"),
    "prior_weight_cap": ("model", "with `prior = \"flat\"`: largest weight of one star relative to the mean "
                                  "(caps the noise of sparse bins)"),
    "seed": ("train", "seed of the split, initialisation, batches and dropout: same seed, same model"),
    "threads": ("train", "CPU threads for training; 0: all cores"),
    "baseline_rounds": ("train", "most LightGBM rounds per label of the gradient-boosted baseline fitted beside the "
                                 "network on the same training stars (a small search and early stopping on the "
                                 "validation split; docs/models.md) and stored in the run (with the refitted Ivezic "
                                 "et al. 2008 polynomial), for `evaluate` and the report; 0: no baselines"),
    "split_seed": ("data", "a number: the test stars (`split`'s third fraction, in steps of 1e-4) are chosen by a "
                           "seeded hash of their `source_id`, the same whatever the row order or the chunking, and "
                           "training and validation stars are drawn from the others in the ratio of the first two; "
                           "`20201125` with a test fraction of 0.30 is the benchmarks' fixed split of the green2020 "
                           "sample (`configs/green2020.toml`; `photofeh train --split-seed N`); needs a `source_id` "
                           "column; `\"none\"`: one seeded permutation of all stars"),
    "table_preset": ("data", "the preset (`photofeh.io.presets`, e.g. `green2020`, `segue_colours`, "
                             "`kepler_huber17`) or mapping file (`.toml`) through which `photofeh train` and "
                             "`photofeh evaluate` read the table (any format `predict` reads); `\"none\"`: the table "
                             "is in schema names"),
}


def config_markdown() -> str:
    """docs/config.md: every setting with its section, default and meaning."""
    defaults = asdict(TrainConfig())
    lines = ["# Training configuration (`photofeh train --config FILE.toml`)", "",
             "Generated from `photofeh.model.train.TrainConfig` (`make docs`); do not edit by hand.", "",
             "A config file has up to three sections, `[data]`, `[model]` and `[train]`; a setting may sit in any",
             "of them, but not outside one. Unknown sections and settings are errors that name the closest known",
             "one; types and ranges are checked before any data is read. `configs/default.toml` is the default",
             "model; `configs/green2020.toml`, `configs/segue.toml` and `configs/kepler.toml` train on the real "
             "samples",
             "(docs/real_data.md). `photofeh train` options `--epochs`, `--ensemble`, `--seed`, `--prior`,",
             "`--baseline-rounds` and `--split-seed` override the file.", "",
             "| setting | section | default | meaning |", "|---|---|---|---|"]
    for name in TrainConfig.__dataclass_fields__:
        section, meaning = CONFIG_DOCS[name]
        default = _to_toml_value(defaults[name]).replace("|", "\\|")
        lines.append(f"| `{name}` | [{section}] | `{default}` | {meaning} |")
    lines += ["| `preset` | [model] | - | a named architecture (sets `architecture`; keys given in "
              "`architecture` override it) |"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- data
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
    from photofeh.model.domain import feature_errors

    return Prepared(X, y, e, giant, usable, ids, replaced, aux, plx_index, feature_errors(cols, cfg.features),
                    "source_id" in cols)


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


# ---------------------------------------------------------------- loss
def multitask_loss(out: dict[str, torch.Tensor], y: torch.Tensor, e: torch.Tensor, giant: torch.Tensor,
                   per_label: bool = False, class_weight: float = 1.0, aux: torch.Tensor | None = None,
                   plx: tuple | None = None, weight: torch.Tensor | None = None,
                   conditional: torch.Tensor | None = None):
    """Gaussian negative log-likelihood per label, label errors added to the variance,
    plus binary cross-entropy for the class; NaN labels are masked out. ``plx`` = (label indices, loc,
    scale) of the parallax labels, whose likelihood is that of the measured parallaxes in ``aux``.
    ``weight``: per-star weights (the prior's, :mod:`photofeh.model.prior`); every term is a weighted mean.
    ``conditional``: indices of the class-conditional labels (the columns of ``out["mean_giant"]``): a star of
    known class (``giant`` 0 or 1) is scored by its class's component alone, which so learns p(y | x, class);
    a star of unknown class by the mixture, -log[(1 - P) L_dwarf + P L_giant] with P = sigmoid(logit)."""
    w = torch.ones(len(y), dtype=y.dtype) if weight is None else weight
    if conditional is None or not len(conditional):
        nll, valid = _label_nll(out["mean"], out["logvar"], y, e, aux, plx)
    else:
        # the component a star is scored with is chosen before the likelihood, so that the other one (free
        # for that star: nothing trains it there) is never evaluated: its gradient would be 0 x whatever it is
        known, is_giant = torch.isfinite(giant)[:, None], (giant > 0.5)[:, None]
        m_d, v_d = out["mean"][:, conditional], out["logvar"][:, conditional]
        m_g, v_g = out["mean_giant"], out["logvar_giant"]
        m_own, v_own = torch.where(is_giant, m_g, m_d), torch.where(is_giant, v_g, v_d)  # unknown: the dwarf's
        m_alt, v_alt = torch.where(known, m_own, m_g), torch.where(known, v_own, v_g)  # unknown: the giant's
        mean, logvar = out["mean"].clone(), out["logvar"].clone()
        mean[:, conditional], logvar[:, conditional] = m_own, v_own
        nll, valid = _label_nll(mean, logvar, y, e, aux, plx)
        mean[:, conditional], logvar[:, conditional] = m_alt, v_alt
        nll_alt, _ = _label_nll(mean, logvar, y, e, aux, plx)
        logit = out["logit"][:, None]
        mixture = -torch.logaddexp(torch.nn.functional.logsigmoid(logit) - nll_alt[:, conditional],
                                   torch.nn.functional.logsigmoid(-logit) - nll[:, conditional])
        nll = nll.clone()
        nll[:, conditional] = torch.where(known, nll[:, conditional], mixture)
    wv = valid * w[:, None]
    per = (nll * wv).sum(0) / wv.sum(0).clamp(min=1e-12)
    loss = per.sum()
    if "logit" in out:
        ok = torch.isfinite(giant)
        if ok.any():
            bce = torch.nn.functional.binary_cross_entropy_with_logits(out["logit"][ok], giant[ok], weight=w[ok])
            loss = loss + class_weight * bce * len(w[ok]) / w[ok].sum()
    return (loss, per) if per_label else loss


def _label_nll(mean: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor, e: torch.Tensor,
               aux: torch.Tensor | None, plx: tuple | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) per-star negative log-likelihoods (0 where a star has no label) and the mask of those it has:
    Gaussian with the label error added to the variance, or for a parallax label that of the measured
    parallax (:func:`photofeh.model.parallax_labels.parallax_nll`)."""
    valid = torch.isfinite(y)
    var = logvar.exp() + e**2
    resid = torch.where(valid, y - mean, torch.zeros_like(y))
    nll = 0.5 * (torch.log(var) + resid**2 / var)
    nll = torch.where(valid, nll, torch.zeros_like(nll))
    if plx is not None and len(plx[0]):
        from photofeh.model.parallax_labels import parallax_nll

        idx, loc, scale = plx
        nll_p, ok = parallax_nll(mean[:, idx], logvar[:, idx], aux, loc, scale)
        nll, valid = nll.clone(), valid.clone()
        nll[:, idx], valid[:, idx] = nll_p, ok
    return nll, valid


def conditional_index(cfg: TrainConfig) -> torch.Tensor | None:
    """Indices among the labels of the class-conditional ones (the columns of a network's ``mean_giant``)."""
    cond = [j for j, lab in enumerate(cfg.labels) if lab in cfg.class_conditional]
    return torch.tensor(cond) if cond else None


# ---------------------------------------------------------------- training
def _set_threads(cfg: TrainConfig) -> None:
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)


def _tensors(p: Prepared, rows: np.ndarray, xs: Standardizer, ys: Standardizer, cfg: TrainConfig,
             hide: bool = False, weight: np.ndarray | None = None):
    """Training tensors; in "mask" mode the inputs carry measured-bits, and with ``hide`` surveys are
    hidden once, reproducibly (the validation set then scores the model on the mixture it will meet)."""
    z = xs.transform(p.X[rows])
    if cfg.missing == "mask":
        z = masked_inputs(z)
        if hide:
            z = drop_groups(torch.from_numpy(z), _group_index(cfg), cfg.group_dropout,
                            torch.Generator().manual_seed(cfg.seed + 7)).numpy()
    X = torch.from_numpy(z)
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


def _fit_member(cfg: TrainConfig, member: int, train_t, val_t, n_inputs: int, log, plx=None) -> tuple:
    torch.manual_seed(cfg.seed * 1000 + member)
    net = build_network(cfg.architecture, n_inputs, cfg.labels, cfg.heads, cfg.classify, cfg.class_conditional)
    cond = conditional_index(cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.max_lr, weight_decay=cfg.weight_decay)
    n = len(train_t[0])
    steps = max(1, n // cfg.batch_size)
    # one-cycle schedule (Smith & Topin 2019) over the full budget; early stopping may end it sooner
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.max_lr, total_steps=cfg.epochs * steps)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + member)
    groups = _group_index(cfg)
    best, best_state, bad, history = float("inf"), None, 0, []
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        net.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(steps):
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x = train_t[0][idx]
            if cfg.missing == "mask":  # hide whole surveys afresh in every batch
                x = drop_groups(x, groups, cfg.group_dropout, gen)
            loss = multitask_loss(net(x), train_t[1][idx], train_t[2][idx], train_t[3][idx],
                                  class_weight=cfg.class_weight, aux=train_t[4][idx], plx=plx, weight=train_t[5][idx],
                                  conditional=cond)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        net.eval()
        with torch.inference_mode():
            val = float(multitask_loss(net(val_t[0]), *val_t[1:4], class_weight=cfg.class_weight, aux=val_t[4],
                                       plx=plx, weight=val_t[5], conditional=cond))
        history.append({"member": member, "epoch": epoch + 1, "train_loss": total / steps, "val_loss": val,
                        "lr": sched.get_last_lr()[0], "seconds": time.perf_counter() - t0})
        log(f"member {member} epoch {epoch + 1:3d}  train {total / steps:8.4f}  val {val:8.4f}")
        if val < best - 1e-4:
            best, best_state, bad = val, copy.deepcopy(net.state_dict()), 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    net.load_state_dict(best_state)
    net.eval()
    return net, history


def _calibrate(nets, val_t, cfg: TrainConfig, val_feh: np.ndarray, plx=None
               ) -> tuple[list[float], float, float, list[float]]:
    """Per-label sigma scale and class temperature minimising the validation NLL (Guo et al. 2017),
    the probability threshold of the giant class (see :func:`_class_threshold`), and the sigma scales of
    the giant components of class-conditional labels (their dwarf components' are in the first list): each
    component calibrated on the validation stars of its own class."""
    with torch.inference_mode():
        outs = [net(val_t[0]) for net in nets]
    scales = _sigma_scales(outs, "mean", "logvar", val_t, plx)
    giant_scales: list[float] = []
    if cfg.class_conditional:
        g = val_t[3].numpy()
        cond = conditional_index(cfg).tolist()
        for o in outs:  # the giant components in their labels' columns
            o["mean_g"], o["logvar_g"] = o["mean"].clone(), o["logvar"].clone()
            o["mean_g"][:, cond], o["logvar_g"][:, cond] = o["mean_giant"], o["logvar_giant"]
        dwarf = _sigma_scales(outs, "mean", "logvar", val_t, plx, g == 0)
        giant = _sigma_scales(outs, "mean_g", "logvar_g", val_t, plx, g == 1)
        for j in cond:
            scales[j] = dwarf[j]
        giant_scales = [giant[j] for j in cond]
    temperature, threshold = _class_calibration(outs, val_t, cfg, val_feh)
    return scales, temperature, threshold, giant_scales


def _sigma_scales(outs: list[dict], mean_key: str, logvar_key: str, val_t, plx, rows: np.ndarray | None = None
                  ) -> list[float]:
    """For each label, the factor on the networks' sigmas that minimises the NLL of the validation stars
    (``rows``: a mask of them; all by default) for the ensemble's mixture (mean of the means, the members' mean
    variance times the factor squared plus the spread of their means)."""
    mean = torch.stack([o[mean_key] for o in outs]).double()
    var = torch.stack([o[logvar_key] for o in outs]).double().exp()
    mu, v_model, v_ens = mean.mean(0).numpy(), var.mean(0).numpy(), mean.var(0, unbiased=False).numpy()
    y, e, w = val_t[1].double().numpy(), val_t[2].double().numpy(), val_t[5].double().numpy()
    use = np.ones(len(y), bool) if rows is None else np.asarray(rows, bool)
    scales = []
    for j in range(y.shape[1]):
        ok = np.isfinite(y[:, j]) & use

        def nll(log_s, j=j, ok=ok):  # weighted by the prior's weights: calibrated for the population it serves
            v = np.exp(2 * log_s) * v_model[ok, j] + v_ens[ok, j] + e[ok, j] ** 2
            return np.average(np.log(v) + (y[ok, j] - mu[ok, j]) ** 2 / v, weights=w[ok])

        scales.append(float(np.exp(minimize_scalar(nll, bounds=(-2, 2), method="bounded").x)) if ok.any() else 1.0)
    if plx is not None:  # parallax labels: the sigma scale that makes the measured parallaxes most likely
        from photofeh.model.parallax_labels import parallax_nll

        idx, loc, scale = plx
        cols = idx.tolist()
        m_t, v_t, ens = (torch.from_numpy(np.ascontiguousarray(a[use][:, cols])) for a in (mu, v_model, v_ens))
        aux = val_t[4].double()[torch.from_numpy(use)]
        for k, j in enumerate(idx.tolist()):
            def nll_p(log_s, k=k):
                # ensemble spread enters as extra variance: var = s^2 v_model + v_ens, as a log-variance
                logvar = torch.log(np.exp(2 * log_s) * v_t[:, k:k + 1] + ens[:, k:k + 1])
                out, ok = parallax_nll(m_t[:, k:k + 1], logvar, aux[:, 3 * k:3 * k + 3], loc[k].double(),
                                       scale[k].double())
                return float(out.sum() / ok.sum().clamp(min=1))

            scales[j] = float(np.exp(minimize_scalar(nll_p, bounds=(-2, 2), method="bounded").x))
    return scales


def _class_calibration(outs: list[dict], val_t, cfg: TrainConfig, val_feh: np.ndarray) -> tuple[float, float]:
    """The class temperature minimising the validation cross-entropy and the operating threshold."""
    temperature = 1.0
    if cfg.classify:
        logit = torch.stack([o["logit"] for o in outs]).double().numpy()
        g = val_t[3].double().numpy()
        ok = np.isfinite(g)

        def bce(log_t):
            p = np.clip((1 / (1 + np.exp(-logit[:, ok] / np.exp(log_t)))).mean(0), 1e-9, 1 - 1e-9)
            return -np.mean(g[ok] * np.log(p) + (1 - g[ok]) * np.log(1 - p))

        temperature = float(np.exp(minimize_scalar(bce, bounds=(-3, 3), method="bounded").x))
        p = (1 / (1 + np.exp(-logit[:, ok] / temperature))).mean(0)
        subset = np.ones(ok.sum(), bool)
        if cfg.class_operating_feh_max is not None and "feh" in cfg.labels:
            feh = val_feh[ok]
            if np.sum((feh < cfg.class_operating_feh_max) & (g[ok] == 1)) >= 20:
                subset = feh < cfg.class_operating_feh_max
        threshold = _class_threshold(p[subset], g[ok][subset] == 1, cfg.class_operating_point)
    else:
        threshold = 0.5
    return temperature, threshold


def _class_threshold(p: np.ndarray, giant: np.ndarray, rule: str) -> float:
    """Probability threshold for calling a star a giant, chosen on validation stars.

    'break-even': completeness equals purity (1 - contamination), the usual
    way to quote one operating point when both matter equally (as in the
    giant completeness/contamination targets); 'f1': maximal F1 score;
    'half': 0.5 on the calibrated probability.
    """
    if rule == "half":
        return 0.5
    grid = np.linspace(0.02, 0.98, 97)
    tp = np.array([np.sum((p >= t) & giant) for t in grid])
    called = np.array([np.sum(p >= t) for t in grid])
    completeness = tp / max(giant.sum(), 1)
    purity = tp / np.maximum(called, 1)
    if rule == "f1":
        return float(grid[int(np.argmax(2 * tp / np.maximum(called + giant.sum(), 1)))])
    if rule == "break-even":
        return float(grid[int(np.argmin(np.abs(completeness - purity)))])
    raise ValueError(f"class_operating_point must be 'break-even', 'f1' or 'half', got {rule!r}")


def ids_digest(ids: np.ndarray) -> str:
    """SHA-256 of a table's source ids in order: recognises the training table again (see evaluate)."""
    import hashlib

    return hashlib.sha256("\n".join(map(str, np.asarray(ids).tolist())).encode()).hexdigest()


def train(table, cfg: TrainConfig, run_dir: str | os.PathLike, log=print, overwrite: bool = False) -> Path:
    """Train on a labelled catalogue; write the run directory; return the model folder.

    The run is written to a hidden temporary folder beside ``run_dir`` and renamed at the end, so a run
    folder is complete or absent whenever the process stops. An existing, non-empty ``run_dir`` is
    refused unless ``overwrite`` (then it is replaced only once the new run is complete).
    """
    from photofeh.io.catalog import check_output_place
    from photofeh.io.locking import output_lock

    cfg.validate()
    run = Path(run_dir)
    if run.exists() and not run.is_dir():
        raise FileExistsError(f"{run} exists and is not a folder")
    if run.is_dir() and any(run.iterdir()) and not overwrite:
        raise FileExistsError(f"{run} exists and is not empty; choose another --out or pass --overwrite to "
                              "replace it")
    if not run.parent.is_dir():
        raise FileNotFoundError(f"cannot create {run}: folder {run.parent} does not exist")
    check_output_place(run)
    with output_lock(run, "photofeh train"):
        tmp = run.with_name(f".{run.name}.partial-{os.getpid()}")
        tmp.mkdir()
        try:
            _train_into(table, cfg, tmp, log)
            _replace_folder(tmp, run)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    log(f"model in {run / 'model'}")
    return run / "model"


def _replace_folder(new: Path, final: Path) -> None:
    """Rename ``new`` to ``final``; an existing ``final`` is moved aside first and removed after."""
    old = final.with_name(f".{final.name}.partial-{os.getpid()}-old")
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def training_prior(values: np.ndarray | None, train_rows: np.ndarray, val_rows: np.ndarray,
                   cfg: TrainConfig) -> dict:
    """The prior the model will carry, as recorded in model.json, with the per-star weights that give it
    (``train_weights``, ``val_weights``; all 1 for the labels prior). Always records the labelled stars'
    distribution of ``prior_label``, the prior a `labels` model's estimates lean toward."""
    from photofeh.model.prior import PRIOR_BIN_WIDTH, flat_prior_weights, label_histogram

    out: dict = {"kind": cfg.prior, "label": cfg.prior_label}
    ones = {"train_weights": np.ones(len(train_rows)), "val_weights": np.ones(len(val_rows))}
    if values is None:
        return {**out, **ones}
    out["training_distribution"] = label_histogram(values[train_rows])
    if cfg.prior == "labels":
        return {**out, **ones}
    w_train = flat_prior_weights(values[train_rows], values[train_rows], cfg.prior_weight_cap)
    w_val = flat_prior_weights(values[val_rows], values[train_rows], cfg.prior_weight_cap)
    return {**out, "bin_width": PRIOR_BIN_WIDTH, "weight_cap": cfg.prior_weight_cap,
            "max_weight": float(w_train.max()),
            "effective_train_stars": float(w_train.sum() ** 2 / np.sum(w_train**2)),
            "train_weights": w_train, "val_weights": w_val}


def _train_into(table, cfg: TrainConfig, run: Path, log) -> None:
    import pandas as pd

    from photofeh.model.domain import TrainingDomain

    _set_threads(cfg)
    t_start = time.perf_counter()
    p = prepare(table, cfg)
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
    xs = Standardizer.fit(p.X[train_rows])
    ys = label_standardizer(p, train_rows)
    plx = _plx_spec(p, ys)
    prior = training_prior(p.y[:, cfg.labels.index(cfg.prior_label)] if cfg.prior_label in cfg.labels else None,
                           train_rows, val_rows, cfg)
    if cfg.prior == "flat":
        log(f"prior flat in {cfg.prior_label}: weights up to {prior['max_weight']:.1f}, effective training "
            f"stars {prior['effective_train_stars']:,.0f} of {len(train_rows):,d}")
    train_t = _tensors(p, train_rows, xs, ys, cfg, weight=prior.pop("train_weights"))
    val_t = _tensors(p, val_rows, xs, ys, cfg, hide=True, weight=prior.pop("val_weights"))
    nets, history = [], []
    for member in range(cfg.ensemble):
        net, hist = _fit_member(cfg, member, train_t, val_t, network_inputs(len(cfg.features), cfg.missing), log,
                                plx)
        nets.append(net)
        history += hist
    val_feh = p.y[val_rows, cfg.labels.index("feh")] if "feh" in cfg.labels else np.full(len(val_rows), np.nan)
    scales, temperature, threshold, giant_scales = _calibrate(nets, val_t, cfg, val_feh, plx)
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
        "domain": TrainingDomain.fit(p.X[train_rows], p.X_err[train_rows], p.y[train_rows]).to_dict(),
        "input_standardizer": xs.to_dict(), "label_standardizer": ys.to_dict(),
        "sigma_scale": scales, "class_temperature": temperature,
        "class_conditional": cfg.class_conditional, "sigma_scale_giant": giant_scales,
        "class_threshold": threshold, "giant_logg": GIANT_LOGG,
        "training": {"config": asdict(cfg), "n_rows": len(p.X), "n_train": len(train_rows),
                     "n_validation": len(val_rows), "table_ids_sha256": ids_digest(p.ids),
                     "values_replaced": dict(p.replaced), "duplicate_source_ids": n_duplicate,
                     "seconds": round(train_seconds, 1), "epochs_run": [max(h["epoch"] for h in history
                                                                            if h["member"] == m)
                                                                        for m in range(cfg.ensemble)]},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    if "feh" in cfg.labels:  # the response of the finished model, for population MDFs (photofeh.galaxy.unfold)
        meta["calibration_sample"] = calibration_sample(nets, meta, p, val_rows, cfg)
    save_model_folder(run / "model", nets, meta)
    pd.DataFrame({"source_id": p.ids, "split": np.array(["train", "validation", "test", "unused"])[split],
                  "usable": p.usable}).to_parquet(run / "split.parquet")
    with open(run / "history.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    from photofeh.report.run_figures import history_figure

    history_figure(history, run / "history")
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


CALIBRATION_SAMPLE_SIZE = 20_000  # validation stars kept in model.json (~0.6 MB of JSON at most)


def calibration_sample(nets: list[torch.nn.Module], meta: dict, p: Prepared, val_rows: np.ndarray,
                       cfg: TrainConfig) -> dict:
    """The finished model's [Fe/H] estimates and errors (its own prior) on validation stars, beside their
    labels: the estimator's response, measured on stars it was not fitted to, from which population MDFs
    are unfolded (:mod:`photofeh.galaxy.unfold`). The validation stars only chose the epoch and scaled the
    errors, so this is nearly independent of the fit. At most :data:`CALIBRATION_SAMPLE_SIZE` stars (seeded)."""
    from photofeh.model.predict import PhotometricModel

    rows = val_rows[np.isfinite(p.y[val_rows, cfg.labels.index("feh")])]
    if rows.size > CALIBRATION_SAMPLE_SIZE:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, CALIBRATION_SAMPLE_SIZE, replace=False))
    model = PhotometricModel(meta, [{k: t.detach().cpu() for k, t in net.state_dict().items()} for net in nets])
    out = model.predict_features(p.X[rows], X_err=p.X_err[rows] if p.X_err is not None else None)
    ok = np.asarray(out["usable"], bool) & np.isfinite(out["feh"]) & np.isfinite(out["feh_err"])
    sample = {"label": "feh", "split": "validation", "stars": int(ok.sum()),
              "true": np.round(p.y[rows[ok], cfg.labels.index("feh")], 4).tolist(),
              "estimate": np.round(out["feh"][ok], 4).tolist(), "sigma": np.round(out["feh_err"][ok], 4).tolist()}
    if "is_giant" in out:  # so that a dwarfs-only (or giants-only) MDF is unfolded with their own response
        sample["giant"] = np.asarray(out["is_giant"], bool)[ok].astype(int).tolist()
    return sample


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


def _to_toml_value(v) -> str:
    if v is None:
        return '"none"'  # read back as None by load_config
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_to_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_to_toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _to_toml(cfg: TrainConfig) -> str:
    """The run's settings as a config file that `photofeh train --config` reads back."""
    return "[train]\n" + "\n".join(f"{k} = {_to_toml_value(v)}" for k, v in asdict(cfg).items()) + "\n"


def lr_find(table, cfg: TrainConfig, out_png: str | os.PathLike, lr_min: float = 1e-6, lr_max: float = 1.0,
            steps: int = 120) -> float:
    """Learning-rate range test (Smith 2017): raise the rate exponentially, record the loss, save the plot.

    Returns the suggested maximum rate: a tenth of the rate at the smoothed loss minimum.
    """
    from photofeh.report.style import new_figure, styled

    _set_threads(cfg)
    p = prepare(table, cfg)
    rows = np.flatnonzero(p.usable & np.isfinite(p.y).any(axis=1))
    xs, ys = Standardizer.fit(p.X[rows]), label_standardizer(p, rows)
    X, y, e, g, a, _ = _tensors(p, rows, xs, ys, cfg, hide=True)
    plx = _plx_spec(p, ys)
    torch.manual_seed(cfg.seed)
    net = build_network(cfg.architecture, network_inputs(len(cfg.features), cfg.missing), cfg.labels, cfg.heads,
                        cfg.classify, cfg.class_conditional)
    opt = torch.optim.AdamW(net.parameters(), lr=lr_min, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    lrs = np.geomspace(lr_min, lr_max, steps)
    losses, smooth = [], None
    net.train()
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(X), (cfg.batch_size,), generator=gen)
        loss = multitask_loss(net(X[idx]), y[idx], e[idx], g[idx], aux=a[idx], plx=plx,
                              conditional=conditional_index(cfg))
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = float(loss.detach())
        smooth = value if smooth is None else 0.9 * smooth + 0.1 * value
        losses.append(smooth)
        if not np.isfinite(smooth) or smooth > 4 * min(losses) + 10:
            break
    lrs = lrs[:len(losses)]
    suggestion = float(lrs[int(np.nanargmin(losses))] / 10)
    import matplotlib.pyplot as plt

    with styled():
        fig, axes = new_figure(1, 1, width="single", aspect=0.75)
        ax = axes[0, 0]
        ax.semilogx(lrs, losses, color="k", lw=1)
        ax.axvline(suggestion, color="C3", ls="--", label=f"suggested max_lr = {suggestion:.2g}")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed training loss")
        ax.legend()
        fig.savefig(out_png)
        plt.close(fig)
    return suggestion


if __name__ == "__main__":  # pragma: no cover
    print(config_markdown(), end="")
