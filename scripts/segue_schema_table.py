"""The SEGUE colours of ../shared/data/real (segue_dr17_colours_feh.csv) as a table in the project's schema, for
configs/segue-colours.toml (issue 26, item 5): the file carries colours only, so, as the issue's independent
check does, r = 18 for every star (u, g, i, z follow from the colours), every band error 0.02 mag and ebv = 0
(the colours are observed, not dereddened: most SEGUE stars lie at high latitude, SFD E(B-V) of a few
hundredths), ``feh_spec`` the SSPP [Fe/H], ``source_id`` a hash of the row (photofeh.io.presets.row_hash,
as the segue_colours preset makes it, so the hashed test split is the same).

Usage: python scripts/segue_schema_table.py ../shared/data/real/segue_dr17_colours_feh.csv segue_schema.parquet
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

R_MAG, BAND_ERR = 18.0, 0.02  # the independent check: r = 18, every _err = 0.02, ebv = 0


def segue_schema_table(csv) -> pd.DataFrame:
    from photofeh.io.presets import row_hash

    raw = pd.read_csv(csv)
    ug, gr, ri, iz, feh = (raw[c].to_numpy(float) for c in ("ug", "gr", "ri", "iz", "feh"))
    r = np.full(len(raw), R_MAG)
    g = r + gr
    i = r - ri
    out = {"source_id": row_hash(np.column_stack([ug, gr, ri, iz, feh])),
           "sdss_u": g + ug, "sdss_g": g, "sdss_r": r, "sdss_i": i, "sdss_z": i - iz}
    for b in ("u", "g", "r", "i", "z"):
        out[f"sdss_{b}_err"] = np.full(len(raw), BAND_ERR)
    out["ebv"] = np.zeros(len(raw))
    out["feh_spec"] = feh
    return pd.DataFrame(out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    segue_schema_table(sys.argv[1]).to_parquet(sys.argv[2])
    print(f"wrote {sys.argv[2]}")
