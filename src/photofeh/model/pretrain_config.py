"""The settings of pretraining on the mock survey (a config's ``[pretrain]`` table; issue 26, item 1):
what mock is simulated (and so which cached mock is reused), and how long the network is pretrained on it
before it is fine-tuned on the real labels (:mod:`photofeh.model.pretrain` does the work). The mock itself is
simulated and cached by :mod:`photofeh.simulate.cache` (a sibling stage: the ``train`` command hands it in)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

__all__ = ["PretrainConfig", "PRETRAIN_DOCS", "MOCK_KEYS", "pretrain_config"]

# the keys that make the mock (photofeh.simulate.MockSurveyConfig's settings of the same names): its cache key
MOCK_KEYS = ("n_stars", "seed", "spec_only", "select_band", "mag_range", "min_abs_b", "colours", "disk_feh_law",
             "halo_feh_law")


@dataclass(frozen=True)
class PretrainConfig:
    """The ``[pretrain]`` table of a training config (every key optional)."""

    n_stars: int = 50_000
    seed: int = 1
    spec_only: bool = True
    select_band: str = "sdss_r"
    mag_range: tuple[float, float] = (14.0, 22.5)
    min_abs_b: float = 20.0
    colours: str = "loci"
    disk_feh_law: str = "calibrated"
    halo_feh_law: str = "an2015"
    labels: str = "spec"
    observed_colours: bool = False
    max_error: float = 0.0
    epochs: int = 20
    batch_size: int = 1024
    max_lr: float = 3e-3
    patience: int = 5
    cache_dir: str = ""

    def validate(self) -> None:
        for name in ("spec_only", "observed_colours"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"[pretrain] {name} must be true or false, got {getattr(self, name)!r}")
        for name in ("select_band", "colours", "disk_feh_law", "halo_feh_law", "labels", "cache_dir"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"[pretrain] {name} must be text, got {getattr(self, name)!r}")
        for name, lo, hi in (("n_stars", 1_000, 10**8), ("seed", 0, 2**63 - 1), ("epochs", 1, 100_000),
                             ("batch_size", 2, 1 << 20), ("patience", 1, 100_000)):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"[pretrain] {name} must be an integer from {lo:,d} to {hi:,d}, got {value!r}")
        if self.labels not in ("spec", "true"):
            raise ValueError(f"[pretrain] labels must be 'spec' (the mock's SSPP-like labels, with their errors) or "
                             f"'true' (its true values), got {self.labels!r}")
        if self.labels == "spec" and not self.spec_only:
            raise ValueError("[pretrain] labels = 'spec' needs spec_only = true (only the spectroscopic sample has "
                             "spectroscopic labels); use labels = 'true' for a photometric mock")
        if not (np.isfinite(self.max_lr) and 0 < self.max_lr <= 10):
            raise ValueError(f"[pretrain] max_lr must be in (0, 10], got {self.max_lr!r}")
        if not (np.isfinite(self.max_error) and self.max_error >= 0):
            raise ValueError(f"[pretrain] max_error must be >= 0 (0: no cut), got {self.max_error!r}")
        lo, hi = self.mag_range
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"[pretrain] mag_range must be (bright, faint), got {self.mag_range!r}")

    def mock_settings(self) -> dict:
        """The settings of the mock (:data:`MOCK_KEYS`), as :func:`photofeh.simulate.cache.cached_mock` takes
        them; the simulation checks them."""
        return {k: getattr(self, k) for k in MOCK_KEYS}


# What each key means (docs/config.md's [pretrain] section is generated from this)
PRETRAIN_DOCS: dict[str, str] = {
    "n_stars": "stars of the mock the network is pretrained on (simulated once, then read from the cache)",
    "seed": "seed of the mock and of the pretraining",
    "spec_only": "simulate the SEGUE-like spectroscopic sample (SDSS footprint, 14 < g < 20.2, labels to "
                 "g = 18.8); false: a "
                 "photometric survey selected in `select_band` within `mag_range`",
    "select_band": "with `spec_only = false`: the band the mock is selected in",
    "mag_range": "with `spec_only = false`: the bright and faint limits in `select_band`",
    "min_abs_b": "with `spec_only = false`: the smallest absolute Galactic latitude (deg) of the mock's stars",
    "colours": "the mock's colours: `loci` (calibrated on the empirical SDSS loci) or `models`",
    "disk_feh_law": "the mock's disk [Fe/H] law (`photofeh simulate --disk-feh-law`)",
    "halo_feh_law": "the mock's halo [Fe/H] law (`photofeh simulate --halo-feh-law`)",
    "labels": "`spec`: the mock's SSPP-like labels with their errors (a spectroscopic mock); `true`: its true "
              "values, without error",
    "observed_colours": "the mock's E(B-V) set to 0 before its features are computed, so its colours stay as "
                        "observed, like those of a real table without reddening (the SEGUE colours)",
    "max_error": "keep only mock stars whose errors in every band of the features are at most this (mag), like "
                 "the well-measured stars of a real table; 0: no cut",
    "epochs": "pretraining epochs (one-cycle, best checkpoint on a tenth of the mock held out)",
    "batch_size": "pretraining batch size",
    "max_lr": "pretraining peak learning rate; fine-tuning uses the [train] settings",
    "patience": "pretraining epochs without improvement on the held-out mock before stopping",
    "cache_dir": "folder of the cached mocks (one Parquet file per set of mock settings, named by their hash); "
                 "`\"\"`: $PHOTOFEH_CACHE, else ~/.cache/photofeh/mocks",
}


def pretrain_config(table: dict | None) -> PretrainConfig | None:
    """The :class:`PretrainConfig` of a config's ``[pretrain]`` table (None or {}: no pretraining); unknown keys
    and wrong values are errors naming the key."""
    if not table:
        return None
    if not isinstance(table, dict):
        raise ValueError(f"pretrain must be a table of settings, got {table!r}")
    known = [f.name for f in fields(PretrainConfig)]
    unknown = [k for k in table if k not in known]
    if unknown:
        from photofeh.io.tomlfile import closest

        raise ValueError(f"[pretrain] unknown setting {unknown[0]!r}{closest(unknown[0], known)}; known: "
                         f"{', '.join(known)}")
    values = dict(table)
    if "mag_range" in values:
        values["mag_range"] = tuple(float(v) for v in values["mag_range"])
    for name in ("max_lr", "max_error", "min_abs_b"):
        if name in values and isinstance(values[name], int) and not isinstance(values[name], bool):
            values[name] = float(values[name])
    cfg = PretrainConfig(**values)
    cfg.validate()
    return cfg
