"""Quality cuts, each one counted: the user sees how many stars every cut removed.

Cuts apply in the order given; the report gives, for each, the number of
stars it removed among those that survived the earlier ones, so the numbers
add up to the total removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from photofeh.io.tomlfile import closest, read_toml

__all__ = ["Cuts", "apply_cuts", "load_cuts"]


@dataclass
class Cuts:
    """Options; ``None`` or empty means the cut is not applied."""

    mag_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_err: dict[str, float] = field(default_factory=dict)
    max_ebv: float | None = None
    max_ruwe: float | None = None
    min_snr_spec: float | None = None
    spec_flag_normal: bool = False
    require_labels: tuple[str, ...] = ()
    # point sources only: SDSS type = 6 (star) where sdss_type is given, PS1 i PSF - Kron < 0.05 mag
    # (Farrow et al. 2014) where ps1_psf_minus_kron is measured; a star must pass every test it has data for
    stars_only: bool = False
    # |C*| <= N sigma_C*(G): the corrected Gaia BP/RP flux excess (Riello et al. 2021, eqs. 6 and 18), which
    # flags blended and contaminated BP/RP photometry; 3 is their suggested cut
    max_gaia_excess_sigmas: float | None = None
    sdss_clean: bool = False  # SDSS PhotoObj clean = 1 (no flagged photometry)

    def steps(self):
        """(name, function of the columns returning the rows to keep) in application order."""
        for band, (lo, hi) in self.mag_range.items():
            yield f"{lo} <= {band} <= {hi}", lambda t, b=band, lo=lo, hi=hi: _between(t, b, lo, hi)
        for band, mx in self.max_err.items():
            yield f"{band}_err <= {mx}", lambda t, b=band, mx=mx: _num(t, f"{b}_err") <= mx
        if self.max_ebv is not None:
            yield f"ebv <= {self.max_ebv}", lambda t: _num(t, "ebv") <= self.max_ebv
        if self.max_ruwe is not None:
            yield f"ruwe <= {self.max_ruwe}", lambda t: _num(t, "ruwe") <= self.max_ruwe
        if self.min_snr_spec is not None:
            yield f"snr_spec >= {self.min_snr_spec}", lambda t: _num(t, "snr_spec") >= self.min_snr_spec
        if self.spec_flag_normal:
            yield "spectroscopic flag normal", _flag_normal
        for lab in self.require_labels:
            yield f"{lab} present", lambda t, lab=lab: np.isfinite(_num(t, lab))
        if self.stars_only:
            yield "point source (SDSS type, PS1 PSF - Kron)", _point_source
        if self.max_gaia_excess_sigmas is not None:
            yield (f"|Gaia C*| <= {self.max_gaia_excess_sigmas} sigma",
                   lambda t: np.abs(_num(t, "gaia_excess_sigmas")) <= self.max_gaia_excess_sigmas)
        if self.sdss_clean:
            yield "SDSS clean photometry", lambda t: _num(t, "sdss_clean") == 1


def _num(t: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in t:
        raise KeyError(f"cut needs column {name!r}, which the table lacks")
    return np.asarray(t[name], float)


def _between(t, band, lo, hi):
    m = _num(t, band)
    return (m >= lo) & (m <= hi)


PS1_PSF_MINUS_KRON_MAX = 0.05  # mag, Farrow et al. 2014 (MNRAS 437, 748), section 2.3
SDSS_TYPE_STAR = 6  # PhotoObj type: 3 galaxy, 6 star (SDSS photo pipeline, Stoughton et al. 2002, AJ 123, 485)


def _point_source(t) -> np.ndarray:
    """Rows no available test calls a galaxy: a star without PS1 photometry is not judged by PS1."""
    tests = []
    if "sdss_type" in t:
        v = np.asarray(t["sdss_type"], float)
        tests.append(~np.isfinite(v) | (v == SDSS_TYPE_STAR))
    if "ps1_psf_minus_kron" in t:
        v = np.asarray(t["ps1_psf_minus_kron"], float)
        tests.append(~np.isfinite(v) | (v < PS1_PSF_MINUS_KRON_MAX))
    if not tests:
        raise KeyError("cut stars_only needs column sdss_type (SDSS preset) or ps1_psf_minus_kron (PS1 preset with "
                       "iMeanKronMag), which the table lacks")
    return np.logical_and.reduce(tests)


def _flag_normal(t) -> np.ndarray:
    """SSPP FLAG: five characters, 'n' for normal (Lee et al. 2008, AJ 136, 2022, table 2);
    integer flags (APOGEE ASPCAPFLAG, a bitmask): 0 is normal."""
    f = np.asarray(t["flag_spec"])
    if f.dtype.kind in "iu":
        return f == 0
    chars = np.char.lower(np.char.strip(f.astype(str)))
    return np.array([len(s) > 0 and set(s) <= {"n"} for s in chars])


def apply_cuts(table: Mapping[str, np.ndarray], cuts: Cuts) -> tuple[np.ndarray, dict[str, int]]:
    """Rows kept, and the number removed by each cut (in order) plus the totals."""
    n = len(next(iter(table.values())))
    keep = np.ones(n, bool)
    report: dict[str, int] = {"input rows": n}
    for name, fn in cuts.steps():
        with np.errstate(invalid="ignore"):
            ok = np.asarray(fn(table), bool)
        report[name] = int(np.sum(keep & ~ok))
        keep &= ok
    report["kept rows"] = int(keep.sum())
    return keep, report


def load_cuts(path: str | Path) -> Cuts:
    """Cuts from a TOML file, e.g. ``max_ebv = 0.3`` and ``[mag_range] sdss_g = [14, 20]``."""
    raw = read_toml(path, "cuts")
    unknown = [k for k in raw if k not in Cuts.__dataclass_fields__]
    if unknown:
        raise ValueError(f"cuts file {path}: unknown settings {unknown}{closest(unknown[0], Cuts.__dataclass_fields__)}"
                         f"; known: {', '.join(Cuts.__dataclass_fields__)}")
    try:
        _check_types(raw)
    except ValueError as exc:
        raise ValueError(f"cuts file {path}: {exc}") from None
    if "mag_range" in raw:
        raw["mag_range"] = {k: tuple(v) for k, v in raw["mag_range"].items()}
    if "require_labels" in raw:
        raw["require_labels"] = tuple(raw["require_labels"])
    return Cuts(**raw)


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def _check_types(raw: dict) -> None:
    """Each setting's type and range, so that a typo is an error naming it, not a traceback mid-run."""
    for key in ("mag_range", "max_err"):
        if key in raw and not isinstance(raw[key], dict):
            raise ValueError(f"{key} must be a table ([{key}]), got {raw[key]!r}")
    for band, pair in raw.get("mag_range", {}).items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(map(_number, pair)) and pair[0] < pair[1]):
            raise ValueError(f"mag_range {band} must be [bright, faint] with bright < faint, got {pair!r}")
    for band, mx in raw.get("max_err", {}).items():
        if not (_number(mx) and mx > 0):
            raise ValueError(f"max_err {band} must be a positive number, got {mx!r}")
    for key in ("max_ebv", "max_ruwe", "min_snr_spec"):
        if key in raw and not _number(raw[key]):
            raise ValueError(f"{key} must be a finite number, got {raw[key]!r}")
    for key in ("spec_flag_normal", "stars_only", "sdss_clean"):
        if key in raw and not isinstance(raw[key], bool):
            raise ValueError(f"{key} must be true or false, got {raw[key]!r}")
    if "max_gaia_excess_sigmas" in raw and not (_number(raw["max_gaia_excess_sigmas"])
                                                and raw["max_gaia_excess_sigmas"] > 0):
        raise ValueError(f"max_gaia_excess_sigmas must be a positive number, got {raw['max_gaia_excess_sigmas']!r}")
    labels = raw.get("require_labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"require_labels must be a list of column names, got {labels!r}")
