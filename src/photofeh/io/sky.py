"""Sky positions of a table's rows: the ra and dec columns, whatever their case.

Below both :mod:`photofeh.io.crossmatch` (which joins catalogues on them) and :mod:`photofeh.io.dust`
(which reads a dust map at them), so that neither imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["radec"]


def radec(cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The ra and dec columns of a table, whatever their case."""
    lower = {k.lower(): k for k in cols}
    if "ra" not in lower or "dec" not in lower:
        raise KeyError(f"no ra/dec columns among {list(cols)[:12]}")
    return np.asarray(cols[lower["ra"]], float), np.asarray(cols[lower["dec"]], float)
