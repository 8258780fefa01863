"""E(B-V) from a local SFD dust map (Schlegel, Finkbeiner & Davis 1998), through ``dustmaps``.

Nothing is downloaded here: the two map files (``SFD_dust_4096_ngp.fits`` and
``SFD_dust_4096_sgp.fits``) must already be on disk. The values are on the
SFD scale, the scale of the Schlafly & Finkbeiner 2011 coefficients in
:mod:`photofeh.bands` (their 0.86 recalibration is inside the coefficients).
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photofeh.errors import MissingColumnsError

__all__ = ["sfd_ebv", "SFD_FILES", "DustMapMissing", "EbvSource"]

SFD_FILES = ("SFD_dust_4096_ngp.fits", "SFD_dust_4096_sgp.fits")


class DustMapMissing(FileNotFoundError):
    """The map files are not where the user said."""


def sfd_ebv(ra_deg: np.ndarray, dec_deg: np.ndarray, map_dir: str | os.PathLike) -> np.ndarray:
    """SFD E(B-V) at ICRS positions, linearly interpolated in the map's Lambert projections."""
    map_dir = Path(map_dir)
    missing = [f for f in SFD_FILES if not (map_dir / f).is_file()]
    if missing:
        raise DustMapMissing(
            f"SFD map file(s) {missing} not found in {map_dir}. photofeh never downloads at run time: fetch "
            "them once on a machine with internet (python -c \"import dustmaps.config, dustmaps.sfd; "
            "dustmaps.config.config['data_dir'] = 'DIR'; dustmaps.sfd.fetch()\", files land in DIR/sfd) and "
            "pass that folder.")
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    ra, dec = np.asarray(ra_deg, float), np.asarray(dec_deg, float)
    out = np.full(ra.shape, np.nan)
    ok = np.isfinite(ra) & np.isfinite(dec)
    if ok.any():
        out[ok] = _query(str(map_dir.resolve()))(SkyCoord(ra=ra[ok] * u.deg, dec=dec[ok] * u.deg))
    return out


@functools.lru_cache(maxsize=2)
def _query(map_dir: str):
    """The map, read once per process (two 64 MB images) and reused for every chunk."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dustmaps warns about its own config file, irrelevant here
        from dustmaps.sfd import SFDQuery

        return SFDQuery(map_dir=map_dir)


@dataclass(frozen=True)
class EbvSource:
    """Where a prediction input's E(B-V) comes from when the catalogue's own column is not enough.

    ``column``: another column of the input holds SFD-scale E(B-V) (e.g. ``EBV_SFD``); ``sfd_dir``: a
    folder with the SFD map files, read at each star's ra/dec where E(B-V) is still missing. Both are
    validated like any E(B-V) column (:mod:`photofeh.io.validation`).
    """

    column: str | None = None
    sfd_dir: str | None = None

    def reads(self, available) -> list[str]:
        """Input columns this source needs (ra/dec for the map)."""
        lower = {c.lower(): c for c in available}
        need = [self.column] if self.column else []
        if self.sfd_dir:
            need += ["ra", "dec"]
        missing = [c for c in need if c.lower() not in lower]
        if missing:
            raise MissingColumnsError(f"E(B-V) needs column(s) {missing}, which the input lacks")
        return [lower[c.lower()] for c in need]

    def provides(self) -> bool:
        return bool(self.column or self.sfd_dir)

    def apply(self, cols: dict, raw, target: str, source: str, counts) -> dict:
        """``cols`` with ``target`` (the model's E(B-V) column) taken from the column and/or filled from the map."""
        from photofeh.io.sky import radec
        from photofeh.io.validation import clean_columns

        cols = dict(cols)
        if self.column:
            lower = {c.lower(): c for c in raw}
            cols.update(clean_columns({target: raw[lower[self.column.lower()]]}, source, counts)[0])
        if self.sfd_dir:
            ra, dec = radec(cols if "ra" in cols else raw)
            current = np.asarray(cols.get(target, np.full(len(ra), np.nan)), float)
            missing = ~np.isfinite(current)
            if missing.any():
                current = current.copy()
                current[missing] = sfd_ebv(ra[missing], dec[missing], self.sfd_dir)
            cols[target] = current
        return cols
