"""E(B-V) from a local SFD dust map (Schlegel, Finkbeiner & Davis 1998), through ``dustmaps``.

Nothing is downloaded here: the two map files (``SFD_dust_4096_ngp.fits`` and
``SFD_dust_4096_sgp.fits``) must already be on disk. The values are on the
SFD scale, the scale of the Schlafly & Finkbeiner 2011 coefficients in
:mod:`photofeh.bands` (their 0.86 recalibration is inside the coefficients).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

__all__ = ["sfd_ebv", "SFD_FILES", "DustMapMissing"]

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dustmaps warns about its own config file, irrelevant here
        from astropy import units as u
        from astropy.coordinates import SkyCoord
        from dustmaps.sfd import SFDQuery

        query = SFDQuery(map_dir=str(map_dir))
        coords = SkyCoord(ra=np.asarray(ra_deg, float) * u.deg, dec=np.asarray(dec_deg, float) * u.deg)
        return np.asarray(query(coords), dtype=np.float64)
