"""The one plotting style of photofeh: colour maps, axis labels with units, data-driven ranges, the Sun, output.

Every figure the package draws goes through here, so that maps, evaluation plots and the HTML report look
alike and read like the papers of the field (Ivezic et al. 2008, ApJ 684, 287; Juric et al. 2008, ApJ 673,
864; Bond et al. 2010, ApJ 716, 1): serif text, ticks on all four sides pointing in, perceptually uniform
colour maps (viridis and its kin, van der Walt & Smith 2015; a diverging map only for signed residuals),
colour and axis ranges taken from the data, units on every axis and colour bar, counts shown, and each
figure written both as PNG (for the report) and as PDF (vector, for a paper).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

__all__ = ["CMAP_VALUE", "CMAP_COUNTS", "CMAP_SCATTER", "CMAP_RESIDUAL", "CMAP_RATE", "CMAP_BACKGROUND", "FORMATS",
           "axis_label", "styled", "new_figure", "save_figure", "data_range", "occupied_extent", "mark_sun",
           "sun_position_kpc"]

CMAP_VALUE = "viridis"      # a quantity such as median [Fe/H]
CMAP_COUNTS = "cividis"     # star counts (logarithmic)
CMAP_SCATTER = "magma"      # a spread (dex)
CMAP_RESIDUAL = "RdBu_r"    # signed residuals, centred on zero
CMAP_RATE = "Blues"         # a fraction from 0 to 1 (confusion matrices)
CMAP_BACKGROUND = "Greys"   # a density drawn behind coloured overlays (training coverage)
FORMATS = ("png", "pdf")    # PNG for the HTML report, PDF (vector) for a paper

RC = {
    "font.family": "serif",
    "font.serif": ["DejaVu Serif"],
    "mathtext.fontset": "dejavuserif",
    "font.size": 9.0,
    "axes.labelsize": 9.0,
    "axes.titlesize": 9.0,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "xtick.minor.visible": True,
    "ytick.minor.visible": True,
    "axes.linewidth": 0.8,
    "savefig.dpi": 150,
    "figure.dpi": 100,
    "image.cmap": CMAP_VALUE,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text for journals' production systems
}

# Widths of one and two columns of an AAS/MNRAS page, inches.
WIDTHS = {"single": 3.5, "double": 7.1}

_LABELS = {
    "feh": ("[Fe/H]", "dex"),
    "logg": (r"$\log g$", "dex, cgs"),
    "teff": (r"$T_\mathrm{eff}$", "K"),
    "feh_err": (r"$\sigma_\mathrm{[Fe/H]}$", "dex"),
    "dist_kpc": ("distance", "kpc"),
    "R_kpc": ("R", "kpc"),
    "z_kpc": ("Z", "kpc"),
    "parallax": (r"$\varpi$", "mas"),
    "ebv": ("E(B-V)", "mag"),
}
_SURVEY_NAMES = {"sdss": "SDSS", "ps1": "PS1", "gaia": "Gaia", "cfis": "CFIS", "tmass": "2MASS", "wise": "WISE",
                 "kic": "KIC"}
_GAIA_BANDS = {"g": "G", "bp": r"G_\mathrm{BP}", "rp": r"G_\mathrm{RP}"}


def _band_symbol(name: str) -> str | None:
    """``sdss_r`` -> ``r``, ``gaia_bp`` -> ``G_BP`` (math text), ``tmass_ks`` -> ``K_s``; None if not a band."""
    from photofeh.bands import BANDS

    if name not in BANDS:
        return None
    survey, f = BANDS[name].survey, BANDS[name].filt
    if survey == "gaia":
        return _GAIA_BANDS.get(f, f)
    if f == "ks":
        return r"K_\mathrm{s}"
    return f.upper() if survey in ("tmass", "wise") else f


def axis_label(column: str) -> str:
    """A reader's label with its unit for a column name: ``feh_spec`` -> ``[Fe/H] (spectroscopic, dex)``,
    ``mabs_sdss_r_true`` -> ``M_r (SDSS, true, mag)``, ``sdss_g-sdss_r`` -> ``g - r (SDSS, mag)``."""
    name, notes = column, []
    for suffix, note in (("_true", "true"), ("_spec", "spectroscopic"), ("_pred", "predicted")):
        if name.endswith(suffix):
            name, notes = name.removesuffix(suffix), [note]
    if name in _LABELS:
        text, unit = _LABELS[name]
        return f"{text} ({', '.join([*notes, unit])})"
    absolute = name.startswith("mabs_")
    parts = name.removeprefix("mabs_").split("-")
    symbols = [_band_symbol(p) for p in parts]
    if all(symbols) and len(parts) <= 2:
        from photofeh.bands import BANDS

        surveys = sorted({_SURVEY_NAMES.get(BANDS[p].survey, BANDS[p].survey) for p in parts})
        if absolute:
            text = f"$M_{{{symbols[0]}}}$"
        else:
            text = " - ".join(f"${s}$" for s in symbols)
        return f"{text} ({', '.join([*surveys, *notes, 'mag'])})"
    return column.replace("_", " ")


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """Matplotlib (headless Agg backend) with the package's style, for the duration of the block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(RC):
        yield


def new_figure(ncols: int = 1, nrows: int = 1, width: str | float = "single", aspect: float = 0.75,
               **kwargs):
    """A figure of one or two journal columns, ``aspect`` = height / width of one panel; returns (fig, axes)."""
    import matplotlib.pyplot as plt

    w = WIDTHS.get(width, width) if isinstance(width, str) else float(width)
    height = w / ncols * aspect * nrows
    return plt.subplots(nrows, ncols, figsize=(w, height), constrained_layout=True, squeeze=False, **kwargs)


def save_figure(fig, stem: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf (each complete or absent: written beside and renamed) and close."""
    import matplotlib.pyplot as plt

    from photofeh.io.catalog import atomic_output

    stem = Path(stem)
    paths = []
    try:
        for fmt in formats:
            path = stem.with_name(f"{stem.name}.{fmt}")
            with atomic_output(path, durable=False) as tmp:
                fig.savefig(tmp, format=fmt)
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def data_range(values, lo: float = 2.0, hi: float = 98.0, step: float | None = 0.1,
               minimum_width: float | None = None) -> tuple[float, float]:
    """A colour or axis range from the ``lo``-``hi`` percentiles of the finite values, widened to multiples of
    ``step`` (round tick labels) and to at least ``minimum_width``; (0, 1) when nothing is finite."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    a, b = (float(x) for x in np.percentile(v, [lo, hi]))
    if minimum_width is not None and b - a < minimum_width:
        mid = 0.5 * (a + b)
        a, b = mid - minimum_width / 2, mid + minimum_width / 2
    if step:
        a, b = np.floor(a / step + 1e-9) * step, np.ceil(b / step - 1e-9) * step
    if b <= a:
        b = a + (step or 1.0)
    return float(a), float(b)


def occupied_extent(x_edges, y_edges, occupied, pad_cells: int = 1) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the cells where ``occupied`` (shape x-cells by y-cells) is true, padded by
    ``pad_cells`` and kept inside the edges: the axes of a map show where the stars are, not the grid."""
    x_edges, y_edges = np.asarray(x_edges, float), np.asarray(y_edges, float)
    occupied = np.asarray(occupied, bool)
    if not occupied.any():
        return x_edges[0], x_edges[-1], y_edges[0], y_edges[-1]
    ix, iy = np.nonzero(occupied)
    i0, i1 = max(ix.min() - pad_cells, 0), min(ix.max() + 1 + pad_cells, x_edges.size - 1)
    j0, j1 = max(iy.min() - pad_cells, 0), min(iy.max() + 1 + pad_cells, y_edges.size - 1)
    return float(x_edges[i0]), float(x_edges[i1]), float(y_edges[j0]), float(y_edges[j1])


def sun_position_kpc() -> tuple[float, float]:
    """(R, Z) of the Sun in the frame the maps use: astropy's ``Galactocentric`` defaults (R0 = 8.122 kpc,
    GRAVITY Collaboration 2018; z_sun = 20.8 pc, Bennett & Bovy 2019), as in :mod:`photofeh.galaxy.distances`."""
    from astropy.coordinates import Galactocentric

    frame = Galactocentric()
    return float(frame.galcen_distance.to_value("kpc")), float(frame.z_sun.to_value("kpc"))


def mark_sun(ax, R: float | None = None, z: float | None = None, label: bool = True) -> None:
    """The Sun as the astronomical symbol (a circle with a central dot) at (R, |Z|), named beside it."""
    if R is None or z is None:
        R, z = sun_position_kpc()
    ax.plot([R], [abs(z)], ls="none", marker="o", ms=8, mfc="white", mec="black", mew=1.0, zorder=5, clip_on=False)
    ax.plot([R], [abs(z)], ls="none", marker=".", ms=3, color="black", zorder=6, clip_on=False)
    if label:
        ax.annotate("Sun", (R, abs(z)), xytext=(7, 5), textcoords="offset points", fontsize=8, zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})

