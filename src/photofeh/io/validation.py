"""The one validation layer between every reader and everything downstream.

Every command passes each chunk it reads through :func:`clean_columns` after
the archive columns are mapped onto the schema (``photofeh.io.presets``), so no
survey sentinel, NaN/inf or physically impossible value reaches a network, a
training set, a cross-match or a map, whatever the preset. Bad values become
NaN (missing is data) and are counted per column; the counts go into every
command's summary. Columns outside the schema pass through untouched, and a
negative parallax, being a measurement, stays.

A column's kind is read from its schema name (``{survey}_{band}``,
``{survey}_{band}_err``, ``ebv``, ``A_{band}``, ``parallax``, ``feh_spec`` ...).
The valid ranges are wide on purpose: they reject values no star can have,
not unusual stars (those are the domain checks' job).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from photofeh.errors import InputError

__all__ = ["Rule", "RULES", "column_rule", "clean_columns", "MAGNITUDE_SENTINELS", "SENTINELS"]

# Values archives write for "no measurement": SDSS/SExtractor 99 and -9999, PS1 -999, 2MASS/WISE null 999,
# SSPP -9999 (Lee et al. 2008, AJ 136, 2022), Kepler/KIC -99.
MAGNITUDE_SENTINELS = (99.0, 999.0, -99.0, -9999.0, -999.0)
SENTINELS = (-9999.0, -999.0, 9999.0, 99.0, 999.0, -99.0)


@dataclass(frozen=True)
class Rule:
    """The valid values of one kind of column: ``lo <= v <= hi`` (``lo_open``: ``lo < v``), finite, and not
    one of the archive sentinels that fall inside that range."""

    kind: str
    lo: float = -np.inf
    hi: float = np.inf
    lo_open: bool = False

    @property
    def sentinels_inside(self) -> tuple[float, ...]:
        """Sentinels a range test alone would let through (e.g. 99 for E(B-V))."""
        return tuple(s for s in SENTINELS if (s > self.lo if self.lo_open else s >= self.lo) and s <= self.hi)

    def text(self) -> str:
        lo = "" if self.lo == -np.inf else f"{self.lo:g} {'<' if self.lo_open else '<='} "
        hi = "" if self.hi == np.inf else f" <= {self.hi:g}"
        return f"{lo}value{hi}" if lo or hi else "finite"


# Ranges: no catalogued star is brighter than Sirius (V = -1.46) or fainter than the deepest fields (~31 mag,
# Hubble Ultra Deep Field); no star is nearer than Proxima Centauri (768 mas, Gaia Collaboration 2021, A&A 649,
# A1), so |parallax| > 1000 mas is not a measurement; the most iron-poor star known has [Fe/H] < -7 (Keller et
# al. 2014, Nature 506, 463) and none exceeds +1; log g spans supergiants (~ -1) to white dwarfs (~9.5); Teff
# 1,500 K (late L dwarfs) to 200,000 K (the hottest white dwarfs and central stars); absolute magnitudes
# -15 (the most luminous stars, about -12) to +30 (cool brown dwarfs in the blue).
RULES: dict[str, Rule] = {
    "magnitude": Rule("magnitude", -2.0, 35.0),
    "magnitude error": Rule("magnitude error", 0.0, 10.0),
    "extinction": Rule("extinction", 0.0, 50.0),
    "parallax": Rule("parallax", -1000.0, 1000.0),
    "parallax error": Rule("parallax error", 0.0, 1000.0, lo_open=True),
    "[Fe/H]": Rule("[Fe/H]", -10.0, 2.0),
    "log g": Rule("log g", -1.5, 9.5),
    "Teff": Rule("Teff", 1500.0, 200_000.0),
    "absolute magnitude": Rule("absolute magnitude", -15.0, 30.0),
    # a colour given as a column ({survey}_{band}-{survey}_{band}, e.g. a table of SDSS colours): the bluest
    # stars have u-g ~ -0.5 and the reddest brown dwarfs optical-infrared colours of ~10 mag
    "colour": Rule("colour", -20.0, 20.0),
    "label error": Rule("label error", 0.0, 1e5),
    "ra": Rule("ra", 0.0, 360.0),
    "dec": Rule("dec", -90.0, 90.0),
}

# Survey prefixes of magnitude columns ({survey}_{band}); bands are short names (u, g, bp, w1, ks ...).
SURVEY_PREFIXES = ("sdss", "ps1", "gaia", "cfis", "kic", "tmass", "wise", "unwise", "lsst", "decam", "hsc",
                   "smss", "galex", "ukidss", "vista", "des", "euclid")
_MAG = re.compile(rf"^({'|'.join(SURVEY_PREFIXES)})_[a-z0-9]{{1,3}}$")
_COLOUR = re.compile(rf"^({'|'.join(SURVEY_PREFIXES)})_[a-z0-9]{{1,3}}-({'|'.join(SURVEY_PREFIXES)})_[a-z0-9]{{1,3}}$")
_LABEL = re.compile(r"^(feh|logg|teff|mabs_[a-z0-9]+_[a-z0-9]{1,3})(_spec|_true)?$")
_LABEL_KINDS = {"feh": "[Fe/H]", "logg": "log g", "teff": "Teff"}


def column_rule(name: str) -> Rule | None:
    """The rule for a schema column name, or None for a column outside the schema (passed through)."""
    if name in RULES and name in ("ra", "dec"):
        return RULES[name]
    if _MAG.match(name):
        return RULES["magnitude"]
    if name.endswith("_err") and (_MAG.match(name[:-4]) or _COLOUR.match(name[:-4])):
        return RULES["magnitude error"]
    if _COLOUR.match(name):
        return RULES["colour"]
    if (name == "ebv" or name.startswith("ebv_") or (name.startswith("A_") and _MAG.match(name[2:]))
            or re.match(rf"^({'|'.join(SURVEY_PREFIXES)})_extinction_", name)):
        return RULES["extinction"]
    if name == "parallax":
        return RULES["parallax"]
    if name in ("parallax_error", "parallax_err"):
        return RULES["parallax error"]
    base, is_err = (name[:-4], True) if name.endswith("_err") else (name, False)
    m = _LABEL.match(base)
    if m:
        if is_err:
            return RULES["label error"]
        head = m.group(1)
        return RULES["absolute magnitude"] if head.startswith("mabs_") else RULES[_LABEL_KINDS[head]]
    return None


def _as_float(values: np.ndarray, name: str, source: str) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype.kind == "f":
        return a
    if a.dtype.kind in "iub":
        return a.astype(np.float64)
    try:
        return a.astype(np.float64)
    except (TypeError, ValueError):
        sample = next((v for v in a.ravel()[:1000] if not _is_number(v)), a.ravel()[:1])
        raise InputError(f"{source}: column {name!r} should hold numbers ({column_rule(name).kind}) but holds "
                         f"e.g. {sample!r}") from None


def _is_number(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _within(a: np.ndarray, rule: Rule) -> bool:
    """True when every non-NaN value of ``a`` is valid under ``rule``: from its smallest and largest values
    (np.fmin/np.fmax skip NaN; an infinity fails the range), two passes without temporaries instead of the
    element-wise tests and the copy a column with missing values took (a mock chunk validated 5x
    faster). False sends the column through the element-wise path, which counts and replaces."""
    if a.dtype.kind != "f" or a.size == 0:
        return False
    smallest, largest = np.fmin.reduce(a, axis=None), np.fmax.reduce(a, axis=None)
    if not ((smallest > rule.lo if rule.lo_open else smallest >= rule.lo) and largest <= rule.hi):
        return False  # out of range, infinite, or every value NaN
    inside = rule.sentinels_inside
    return not (inside and bool(np.isin(a, inside).any()))


def clean_columns(cols: Mapping[str, np.ndarray], source: str = "table",
                  counts: Counter | None = None) -> tuple[dict[str, np.ndarray], Counter]:
    """Schema columns with sentinels, NaN/inf and impossible values set to NaN.

    Returns the columns (unchanged arrays where nothing was wrong; other columns untouched)
    and a Counter of replaced values per column (values that were already NaN are missing,
    not replaced, and not counted). ``counts``, if given, is updated and returned.
    Raises ``ValueError`` naming ``source`` and the column when a schema column is not numeric.

    >>> import numpy as np
    >>> cols, counts = clean_columns({"sdss_g": np.array([18.2, 99.0, -9999.0]),
    ...                               "parallax": np.array([-0.4, 1.2, -9999.0]),
    ...                               "phot_g_mean_mag": np.array([99.0, 1.0, 2.0])})
    >>> cols["sdss_g"], cols["parallax"]
    (array([18.2,  nan,  nan]), array([-0.4,  1.2,  nan]))
    >>> dict(counts)
    {'sdss_g': 2, 'parallax': 1}
    """
    counts = Counter() if counts is None else counts
    out = dict(cols)
    for name, values in cols.items():
        rule = column_rule(name)
        if rule is None:
            continue
        a = _as_float(values, name, source)
        if _within(a, rule):
            out[name] = a  # every value valid or already NaN (missing): nothing to replace or count
            continue
        with np.errstate(invalid="ignore"):
            ok = (a > rule.lo if rule.lo_open else a >= rule.lo) & (a <= rule.hi)  # False for NaN and inf
        inside = rule.sentinels_inside
        if inside:
            ok &= ~np.isin(a, inside)
        if ok.all():
            out[name] = a
            continue
        bad = ~ok
        n_bad = int(np.count_nonzero(bad)) - int(np.count_nonzero(np.isnan(a)))
        if n_bad:
            counts[name] += n_bad
        out[name] = np.where(bad, np.nan, a).astype(a.dtype, copy=False)
    return out, counts
