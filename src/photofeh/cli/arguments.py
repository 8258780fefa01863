"""Argument types shared by the commands: a bad value is refused by argparse, before any work starts.

Each type turns the text of one option into its value or raises ``argparse.ArgumentTypeError`` with a message
that says what was expected, so the user gets one line and exit code 2, never a traceback from deep inside.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

__all__ = ["RADIUS", "ROWS", "band_name", "bounded_float", "bounded_int", "catalogue_arg", "epoch_arg",
           "footprint_arg", "positive_int", "preset_name", "worker_count"]


def positive_int(text: str) -> int:
    """An argparse type: a positive integer (underscores allowed, as in 1_000_000)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def bounded_int(lo: int, hi: int, why: str = ""):
    """An argparse type: an integer in [lo, hi] (underscores allowed), refused before any work starts."""
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo:,d} to {hi:,d}, got {value:,d}{why}")
        return value
    return parse


def bounded_float(lo: float, hi: float, open_lo: bool = True):
    """An argparse type: a finite number in (lo, hi] (or [lo, hi] with ``open_lo=False``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = np.isfinite(value) and (lo < value if open_lo else lo <= value) and value <= hi
        if not ok:
            raise argparse.ArgumentTypeError(f"expected a finite number in {'(' if open_lo else '['}{lo:g}, {hi:g}], "
                                             f"got {text}")
        return value
    return parse


def worker_count(text: str) -> int:
    """An argparse type: worker processes, at most the cores here (more would only contend for memory)."""
    from photofeh.simulate.survey import available_cores

    return bounded_int(1, available_cores(), " (the CPU cores available here; each worker holds its own "
                                             "0.35 GB isochrone grid)")(text)


ROWS = bounded_int(1, 100_000_000, " (a chunk is held in memory)")


def epoch_arg(text: str):
    """A Julian year (1900-2100), or the name of a column holding per-row epochs."""
    try:
        float(text)
    except ValueError:
        return text
    return bounded_float(1900.0, 2100.0, open_lo=False)(text)


RADIUS = bounded_float(0.0, 3600.0)  # arcsec: beyond a degree a nearest-neighbour match means nothing


def band_name(text: str) -> str:
    """An argparse type: one of the bands photofeh knows (photofeh.bands), so a typo is not a missing column."""
    from photofeh.bands import BANDS

    if text not in BANDS:
        raise argparse.ArgumentTypeError(f"unknown band {text!r}; choose from {', '.join(BANDS)}")
    return text


def footprint_arg(text: str) -> tuple[str, str]:
    """An argparse type: SURVEY=TERMS, a survey footprint's override, parsed now so that a typo fails at once."""
    from photofeh.simulate.observe import DEFAULT_FOOTPRINTS, Footprint

    survey, sep, terms = text.partition("=")
    if not sep or survey not in DEFAULT_FOOTPRINTS:
        raise argparse.ArgumentTypeError(
            f"bad footprint {text!r}: use SURVEY=TERMS, e.g. 'sdss=min_b:30,min_dec:-5', "
            f"SURVEY one of {', '.join(DEFAULT_FOOTPRINTS)}")
    terms = terms.replace(":", "=")
    try:
        Footprint.parse(terms)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return survey, terms



def preset_name(text: str) -> str:
    """An argparse type: the name of a catalogue preset (photofeh.io.presets)."""
    from photofeh.io.presets import PRESETS

    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; choose from {', '.join(PRESETS)}")
    return text


def catalogue_arg(text: str):
    """'FILE', 'FILE:PRESET' or 'FILE:MAPPING.toml' (a mapping file works wherever a preset does)."""
    path, sep, preset = text.rpartition(":")
    if sep and preset and not Path(text).exists():
        if preset.endswith(".toml"):
            from photofeh.io.presets import load_mapping

            try:
                return path, load_mapping(preset)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return path, preset_name(preset)
    return text, None

