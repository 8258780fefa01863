"""Derive the PS1-minus-SDSS magnitude table shipped in photofeh.simulate.

The PARSEC grid used by the mock survey gives SDSS ugriz and Gaia magnitudes
but no Pan-STARRS1 magnitudes. Published colour transformations (Tonry et al.
2012, ApJ 750, 99, table 6) hold only for 0.4 < (g-i) < 2.7, which excludes
turn-off and blue horizontal-branch stars. Instead we take the *difference*
between PS1 and SDSS bolometric corrections from one synthetic-photometry
library, the MIST/C3K tables (Choi et al. 2016, ApJ 823, 102; Conroy et al.
2018), at A_V = 0, on its (Teff, log g, [Fe/H]) grid:

    m_PS1,X - m_SDSS,Y = BC_SDSS,Y - BC_PS1,X      (M = M_bol - BC)

for (X, Y) = (g, g), (r, r), (i, i), (z, z), (y, z). Added to PARSEC's own
SDSS magnitudes this gives PS1 magnitudes valid over the whole stellar range.

The tables ship inside the PyPI package ``astrolachesis`` (1.0.9, MIT) as
``lachesis/Datafiles/BC_tables/bc_tables.h5``. This script is run once by a
developer (``python scripts/derive_ps1_offsets.py path/to/bc_tables.h5``);
its output is committed, so nothing is read or downloaded at run time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np

PAIRS = (("ps1_g", "SDSS_g", "PS_g"), ("ps1_r", "SDSS_r", "PS_r"),
         ("ps1_i", "SDSS_i", "PS_i"), ("ps1_z", "SDSS_z", "PS_z"),
         ("ps1_y", "SDSS_z", "PS_y"))
OUT = Path(__file__).resolve().parents[1] / "src/photofeh/simulate/data/ps1_minus_sdss_c3k.npz"


def _grid(f: h5py.File, system: str) -> tuple[np.ndarray, ...]:
    grp = f[system]
    raw = grp["data"][:].astype(np.float64)  # (n_feh, rows, Teff logg feh Av Rv bands...)
    names = [b.decode() for b in grp["band_names"][:]]
    feh = grp["feh_values"][:]
    raw = raw[:, raw[0, :, 3] == 0.0, :]  # A_V = 0 rows only
    teff = np.unique(raw[0, :, 0])
    logg = np.unique(raw[0, :, 1])
    cube = np.full((teff.size, logg.size, feh.size, len(names)), np.nan)
    it = np.searchsorted(teff, raw[0, :, 0])
    ig = np.searchsorted(logg, raw[0, :, 1])
    for k in range(feh.size):
        cube[it, ig, k, :] = raw[k, :, 5:]
    return teff, logg, feh, names, cube


def main(h5_path: str) -> None:
    with h5py.File(h5_path, "r") as f:
        teff, logg, feh, sdss_names, sdss = _grid(f, "SDSSugriz")
        teff2, logg2, feh2, ps_names, ps = _grid(f, "PanSTARRS")
    assert np.array_equal(teff, teff2) and np.array_equal(logg, logg2) and np.array_equal(feh, feh2)
    diff = np.stack([sdss[..., sdss_names.index(s)] - ps[..., ps_names.index(p)]
                     for _, s, p in PAIRS], axis=-1).astype(np.float32)
    np.savez_compressed(OUT, teff=teff, logg=logg, feh=feh, delta=diff,
                        bands=np.array([b for b, _, _ in PAIRS]),
                        source=np.array("MIST/C3K BC tables (astrolachesis 1.0.9 bc_tables.h5), A_V=0"))
    print(f"wrote {OUT} {diff.shape}, NaN fraction {np.isnan(diff).mean():.3f}")


if __name__ == "__main__":
    main(sys.argv[1])
