"""The training configuration: :class:`TrainConfig` (every setting, with its type and range checked before any
data is read), TOML config files (:func:`load_config`), and the settings' reference, docs/config.md
(:func:`config_markdown`, written by ``python -m photofeh.model.train``)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from photofeh.bands import GAIA_PARALLAX_ZP_MAS
from photofeh.io.tomlfile import closest, read_toml
from photofeh.model.features import DEFAULT_FEATURES
from photofeh.model.missing import MISSING_MODES, network_inputs
from photofeh.model.networks import PRESETS
from photofeh.model.prior import PRIOR_KINDS, SELECTION_WEIGHTINGS

__all__ = ["TrainConfig", "load_config", "check_split", "config_markdown", "CONFIG_DOCS", "GIANT_LOGG"]

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
    threads: int = 0  # 0: OMP_NUM_THREADS where set, else all cores
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
    # noise-aware training (photofeh.model.noise): the feature errors are network inputs, and every epoch re-observes
    # each training star fainter (up to noise_limit in noise_limit_band) with the survey's noise at its new magnitudes
    noise_aware: bool = False
    noise_limit_band: str = "sdss_r"
    noise_limit: float = 22.5
    noise_keep_fraction: float = 0.5
    # each re-observed band's error drawn about its relation by this much (dex, log-normal, per star, band and epoch):
    # a survey's depth varies over the sky and between bands, so one band may be noisier than the others imply. Real
    # catalogues' errors scatter about their relation by 0.03-0.10 dex (benchmarks/bench_error_scatter.py: SDSS u
    # 0.098 on SSPP stars, z 0.029, 2MASS 0.05-0.06), and a model trained on errors that sit on the relation is
    # overconfident on survey stars whose errors do not (bench_noise_aware.py, with and without it)
    noise_error_scatter: float = 0.08
    # a catalogue whose (magnitude, error) pairs define the survey's error relations; "": the training table's
    noise_errors_from: str = ""
    # the prior the estimates carry (photofeh.model.prior): "labels" (the labelled stars' distribution: best per-star
    # estimate) or "flat" in prior_label (training stars re-weighted, capped: small bias at every [Fe/H]), or
    # "likelihood": prior_label's head is a likelihood trained through the labels' exact histogram, so that one pass
    # gives both the per-star posterior and the likelihood's population estimate (photofeh.model.likelihood)
    prior: str = "labels"
    prior_label: str = "feh"
    prior_weight_cap: float = 3.0
    # label noise in the likelihood (photofeh.model.label_noise): each label's error (`<column>_err`, else the
    # constant of label_errors) is added to the Gaussian NLL's variance; False: label errors ignored
    label_noise: bool = True
    label_errors: dict[str, float] = field(default_factory=dict)
    # pretraining on the mock survey before the real labels (photofeh.model.pretrain; the [pretrain] table of a
    # config file, photofeh.model.pretrain_config); empty: none
    pretrain: dict = field(default_factory=dict)
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
    # a column with each labelled star's probability of having been targeted for its spectrum: the calibration
    # sample (photofeh.galaxy.unfold) is weighted by its inverse; "": unknown (every star weighs the same)
    selection_column: str = ""
    # "loss": targeting weights in the loss, each labelled star's loss and sigma-scale share weighted by 1 / its
    # targeting probability (self-normalised, trimmed at selection_weight_cap; photofeh.model.prior.
    # selection_weights); "none": every labelled star weighs the same (the labelled set's prior)
    selection_weighting: str = "none"
    selection_weight_cap: float = 10.0

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
        if self.noise_aware:
            from photofeh.bands import BANDS

            if self.noise_limit_band not in BANDS:
                raise ValueError(f"noise_limit_band must be a band ({', '.join(BANDS)}), got {self.noise_limit_band!r}"
                                 f"{closest(self.noise_limit_band, list(BANDS))}")
            if not (np.isfinite(self.noise_limit) and 5.0 <= self.noise_limit <= 30.0):
                raise ValueError(f"noise_limit must be a magnitude from 5 to 30, got {self.noise_limit}")
            if not 0.0 <= self.noise_keep_fraction <= 1.0:
                raise ValueError(f"noise_keep_fraction must be in [0, 1], got {self.noise_keep_fraction}")
            if not 0.0 <= self.noise_error_scatter <= 0.5:
                raise ValueError(f"noise_error_scatter must be in [0, 0.5] dex, got {self.noise_error_scatter}")
        if not 0 <= self.group_dropout < 1:
            raise ValueError(f"group_dropout must be in [0, 1), got {self.group_dropout}")
        if not abs(self.parallax_zero_point) <= 1.0:  # Gaia's global offsets are tens of microarcseconds
            raise ValueError(f"parallax_zero_point must be a few hundredths of a mas (|value| <= 1), "
                             f"got {self.parallax_zero_point}")
        for lab, err in self.label_errors.items():
            if lab not in self.labels or lab in self.parallax_labels:
                raise ValueError(f"label_errors: {lab!r} is not a label with a column ({self.labels})")
            if not (np.isfinite(err) and err >= 0):
                raise ValueError(f"label_errors: the error of {lab!r} must be a finite number >= 0, got {err!r}")
        if self.pretrain:
            from photofeh.model.pretrain_config import pretrain_config

            pretrain_config(self.pretrain)
        if self.prior in ("flat", "likelihood") and self.prior_label not in self.labels:
            raise ValueError(f"prior_label {self.prior_label!r} must be one of the labels {self.labels}")
        if not (np.isfinite(self.prior_weight_cap) and 1.0 <= self.prior_weight_cap <= 1e4):
            raise ValueError(f"prior_weight_cap must be from 1 to 10000, got {self.prior_weight_cap}")
        if not (np.isfinite(self.selection_weight_cap) and 1.0 < self.selection_weight_cap <= 1e4):
            # at 1 every weight would be trimmed to the mean: no weighting, and a scale that never converges
            raise ValueError(f"selection_weight_cap must be above 1 and at most 10000, got {self.selection_weight_cap}")
        if self.selection_weighting == "loss" and not self.selection_column:
            raise ValueError("selection_weighting = \"loss\" weights each labelled star by 1 / its targeting "
                             "probability: name the column that holds it (selection_column, --selection-column)")
        if self.selection_weighting == "loss" and self.prior != "labels":
            raise ValueError(f"selection_weighting = \"loss\" makes the estimates carry the survey's population "
                             f"as their prior; prior = {self.prior!r} replaces that prior: use one or the other")
        for name, choices in (("prior", PRIOR_KINDS), ("missing", MISSING_MODES), ("selection_weighting",
                                                                                   SELECTION_WEIGHTINGS),
                              ("heads", ("independent", "causal")),
                              ("class_operating_point", ("break-even", "f1", "half"))):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.class_conditional and "logg" not in self.labels:
            raise ValueError(f"class_conditional {self.class_conditional} needs the label logg (a star's class, "
                             f"log g < {GIANT_LOGG}, picks its component)")
        from photofeh.model.networks import check_size

        check_size(self.architecture, network_inputs(len(self.features), self.missing, self.noise_aware), self.labels,
                   self.heads, self.classify, self.class_conditional)


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
          "parallax_zero_point": float, "class_conditional": [str], "noise_aware": bool, "noise_limit_band": str,
          "noise_limit": float, "noise_keep_fraction": float, "noise_error_scatter": float,
          "noise_errors_from": str, "prior": str,
          "prior_label": str, "prior_weight_cap": float,
          "label_noise": bool, "label_errors": {str: float}, "pretrain": {str: object},
          "baseline_rounds": int, "split_seed": (int, None), "table_preset": (str, None),
          "selection_column": str, "selection_weighting": str, "selection_weight_cap": float}
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


SECTIONS = ("data", "model", "train", "pretrain")  # [pretrain]: a table of its own (the setting `pretrain`)


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
        if key == "pretrain":
            flat["pretrain"] = value
            continue
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
    "noise_aware": ("train", "the feature errors are network inputs and every epoch re-observes each training star "
                             "fainter, with a survey's noise at its new magnitudes, so one forward pass gives a "
                             "calibrated estimate for stars down to `noise_limit` (photofeh.model.noise; "
                             "docs/models.md)"),
    "noise_limit_band": ("train", "with `noise_aware`: the band whose survey limit bounds the re-observation"),
    "noise_limit": ("train", "with `noise_aware`: the faintest magnitude in `noise_limit_band` a star is "
                             "re-observed at"),
    "noise_keep_fraction": ("train", "with `noise_aware`: fraction of stars kept at their own photometry each epoch"),
    "noise_error_scatter": ("train", "with `noise_aware`: each re-observed band's error drawn about its relation "
                                     "with this log-normal scatter (dex; per star, band and epoch): a survey whose "
                                     "depth varies, one band noisier than the others imply (0: none)"),
    "noise_errors_from": ("train", "with `noise_aware`: a catalogue (e.g. the survey to predict) whose magnitudes and "
                                   "errors define the error relations; `\"\"`: the training table's, with "
                                   "photofeh.bands' depths where it does not reach faint enough"),
    "prior": ("model", "`labels`: estimates carry the labelled stars' distribution (best per-star estimate); "
                       "`flat`: training stars re-weighted to a flat distribution in `prior_label` (small bias "
                       "at every value: for populations, `photofeh mdf` and maps; docs/populations.md); "
                       "`likelihood`: `prior_label`'s head is a likelihood trained through the labels' exact "
                       "histogram: predictions carry both the per-star posterior (`feh`) and the likelihood's "
                       "population estimate (`feh_population`), from one pass"),
    "prior_label": ("model", "with `prior = \"flat\"` or `\"likelihood\"`: the label whose distribution is "
                             "flattened or known"),
    "prior_weight_cap": ("model", "with `prior = \"flat\"`: largest weight of one star relative to the mean "
                                  "(caps the noise of sparse bins)"),
    "label_noise": ("train", "add each label's error (`<column>_err`, e.g. green2020's covariances, else "
                             "`label_errors`) to the likelihood's variance, so noisy labels do not set the "
                             "network's width (photofeh.model.label_noise); false: ignore label errors"),
    "label_errors": ("data", "a constant error per label for stars whose table gives none, e.g. "
                             "`{ feh = 0.10 }`, the SSPP's [Fe/H] scatter for the SEGUE colours"),
    "pretrain": ("pretrain", "pretraining on the mock survey, then fine-tuning on the real labels: a "
                             "`[pretrain]` table (keys below; `photofeh train` simulates the mock once and caches "
                             "it); empty: no pretraining"),
    "seed": ("train", "seed of the split, initialisation, batches and dropout: same seed, same model"),
    "threads": ("train", "CPU threads for training; 0: `OMP_NUM_THREADS` where the environment sets it, else all "
                         "cores"),
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
    "selection_column": ("data", "a column with each labelled star's probability (0 < p <= 1) of having been "
                                 "chosen for its spectrum, where the sample's targeting is known (e.g. SEGUE's "
                                 "selection function; the mock's `spec_target_probability`): `mdf` and `map` weight "
                                 "the model's calibration stars by 1/p, so that at one [Fe/H] they stand for the "
                                 "population rather than for the colours that won a spectrum; `\"\"`: not known"),
    "selection_weighting": ("model", "`\"loss\"`: each labelled star's training loss and its share of the "
                                     "sigma-scale fit weighted by 1/p of `selection_column` (Horvitz & Thompson "
                                     "1952), self-normalised to mean 1 and trimmed at `selection_weight_cap`: the "
                                     "estimates then lean toward the survey's population where the targeting used "
                                     "something the inputs do not carry; where it used the inputs alone it only "
                                     "moves where the network spends its accuracy, at a cost in "
                                     "scatter (docs/models.md); `\"none\"`: every labelled star weighs the same"),
    "selection_weight_cap": ("model", "with `selection_weighting = \"loss\"`: largest weight of one star relative "
                                      "to the mean, above 1 (the rest rescaled so that the mean stays 1; the share "
                                      "of the weight trimmed is in model.json)"),
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
             "`--baseline-rounds`, `--split-seed`, `--selection-column` and `--selection-weighting` override the "
             "file.", "",
             "| setting | section | default | meaning |", "|---|---|---|---|"]
    for name in TrainConfig.__dataclass_fields__:
        section, meaning = CONFIG_DOCS[name]
        default = _to_toml_value(defaults[name]).replace("|", "\\|")
        lines.append(f"| `{name}` | [{section}] | `{default}` | {meaning} |")
    lines += ["| `preset` | [model] | - | a named architecture (sets `architecture`; keys given in "
              "`architecture` override it) |"]
    from photofeh.model.pretrain_config import PRETRAIN_DOCS, PretrainConfig

    pre = asdict(PretrainConfig())
    lines += ["", "## `[pretrain]`: pretraining on the mock survey (issue 26)", "",
              "| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | `{_to_toml_value(pre[k])}` | {PRETRAIN_DOCS[k]} |" for k in pre]
    return "\n".join(lines) + "\n"


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
