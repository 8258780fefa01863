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
           "sun_position_kpc", "span_range", "pin", "draw_pinned", "colorbar_extend", "shown", "record_figures",
           "describe_figure", "mdf_axis_range", "feh_bins"]

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
    if _RECORDERS:
        description = describe_figure(fig)
        for drawn in _RECORDERS:
            drawn[stem.name] = description
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



def span_range(values, pad: float = 0.04, reach: float = 2.0, core: tuple[float, float] = (0.5, 99.5)
               ) -> tuple[float, float]:
    """An axis range showing every finite value: min..max, padded by ``pad`` of the width. Walking out from
    the ``core`` percentiles, a gap between neighbouring values wider than ``reach`` times the core's width
    ends the axis: the values beyond it are outliers, drawn pinned at the edge (:func:`pin`,
    :func:`draw_pinned`), never dropped. A sparse tail (a few stars down to -4 behind a disk at -0.5) has no
    such gap and is shown whole. (0, 1) when nothing is finite.
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    a, b = (float(x) for x in np.percentile(v, core))
    limit = reach * max(b - a, 1e-9)
    ends = []
    for edge, beyond in ((a, np.sort(v[v < a])[::-1]), (b, np.sort(v[v > b]))):
        gaps = np.abs(np.diff(np.concatenate([[edge], beyond])))
        wide = np.nonzero(gaps > limit)[0]
        kept = beyond[:wide[0]] if wide.size else beyond
        ends.append(float(kept[-1]) if kept.size else edge)
    lo, hi = ends
    width = hi - lo if hi > lo else max(abs(lo), 1.0) * 0.1
    return lo - pad * width, hi + pad * width


def pin(values, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``values`` clipped into [lo, hi], and the masks of those below ``lo`` and above ``hi`` (NaN stays NaN)."""
    v = np.asarray(values, float)
    with np.errstate(invalid="ignore"):
        below, above = v < lo, v > hi
    return np.where(below, lo, np.where(above, hi, v)), below, above


def draw_pinned(ax, x, y, xlim: tuple[float, float], ylim: tuple[float, float], color="C3") -> int:
    """Points outside ``xlim`` x ``ylim`` drawn on the edge they lie beyond, as open triangles pointing out of
    the panel (a corner takes the x direction); returns how many were pinned."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    px, left, right = pin(x, *xlim)
    py, down, up = pin(y, *ylim)
    out = left | right | down | up
    for mask, marker in ((left, "<"), (right, ">"), (down & ~left & ~right, "v"), (up & ~left & ~right, "^")):
        if mask.any():
            ax.plot(px[mask], py[mask], ls="none", marker=marker, ms=4, mfc="none", mec=color, mew=0.8,
                    clip_on=False, zorder=6)
    return int(out.sum())


def colorbar_extend(values, vmin: float, vmax: float) -> str:
    """The ``extend`` of a colour bar whose range (vmin, vmax) does not hold every finite value: the cells
    beyond it are drawn in the end colour, and the bar's arrow says so."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    low, high = bool(v.size and v.min() < vmin), bool(v.size and v.max() > vmax)
    return {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[(low, high)]


def shown(ax, **info) -> None:
    """Record on a panel what it shows (stars drawn, pinned, the range of the data...): read back by
    :func:`describe_figure`, so that a test can hold a figure against the table it was drawn from."""
    ax.__dict__.setdefault("photofeh_shown", {}).update(info)


_RECORDERS: list[dict] = []


@contextlib.contextmanager
def record_figures() -> Iterator[dict[str, dict]]:
    """While active, every figure written by :func:`save_figure` is also described (:func:`describe_figure`)
    in the dict yielded, under its file stem (``residuals``, ``feh_profile``...)."""
    drawn: dict[str, dict] = {}
    _RECORDERS.append(drawn)
    try:
        yield drawn
    finally:
        _RECORDERS.remove(drawn)


def _boxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def describe_figure(fig) -> dict:
    """What a figure shows, as drawn: per visible panel (colour bars apart) its title, axis labels, limits,
    legend entries, texts and what :func:`shown` recorded; the points of its lines and markers that a legend
    box covers; and every pair of texts (titles, labels, tick-free annotations, legends) whose boxes overlap,
    or that reach outside the figure."""
    from matplotlib.collections import PathCollection
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    panels, boxes = [], []
    if fig._suptitle is not None and fig._suptitle.get_text():
        boxes.append(("suptitle", fig._suptitle.get_window_extent(renderer)))
    for k, legend in enumerate(fig.legends):
        boxes.append((f"figure legend {k}", legend.get_window_extent(renderer)))
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or ax.get_label() == "<colorbar>":
            continue
        legend = ax.get_legend()
        covered = 0
        if legend is not None:
            lbox = legend.get_window_extent(renderer)
            boxes.append((f"panel {i} legend", lbox))
            for line in ax.get_lines():
                xy = line.get_xydata()
                if len(xy) and line.get_visible():
                    d = ax.transData.transform(np.asarray(xy, float))
                    covered += int(np.sum((d[:, 0] > lbox.x0) & (d[:, 0] < lbox.x1) & (d[:, 1] > lbox.y0)
                                          & (d[:, 1] < lbox.y1)))
            for coll in ax.collections:
                if isinstance(coll, PathCollection) and len(coll.get_offsets()):
                    d = coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), float))
                    covered += int(np.sum((d[:, 0] > lbox.x0) & (d[:, 0] < lbox.x1) & (d[:, 1] > lbox.y0)
                                          & (d[:, 1] < lbox.y1)))
        texts = [t for t in ax.texts if isinstance(t, Text) and t.get_visible() and t.get_text()]
        for k, t in enumerate(texts):
            boxes.append((f"panel {i} text {k}: {t.get_text()[:30]!r}", t.get_window_extent(renderer)))
        for name, t in (("title", ax.title), ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)):
            if t.get_text():
                boxes.append((f"panel {i} {name}", t.get_window_extent(renderer)))
        panels.append({
            "index": i, "title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
            "xlim": tuple(float(v) for v in sorted(ax.get_xlim())),
            "ylim": tuple(float(v) for v in sorted(ax.get_ylim())),
            "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
            "legend": [t.get_text() for t in legend.get_texts()] if legend is not None else [],
            "legend_covers_points": covered, "texts": [t.get_text() for t in texts],
            "shown": dict(getattr(ax, "photofeh_shown", {}))})
    overlaps = [(a, b) for j, (a, ba) in enumerate(boxes) for b, bb in boxes[j + 1:] if _boxes_overlap(ba, bb)]
    outside = [name for name, bx in boxes if bx.x0 < page.x0 - 1 or bx.x1 > page.x1 + 1 or bx.y0 < page.y0 - 1
               or bx.y1 > page.y1 + 1]
    return {"suptitle": fig._suptitle.get_text() if fig._suptitle is not None else "", "panels": panels,
            "overlapping_texts": overlaps, "texts_outside": outside,
            "legend": [t.get_text() for legend in fig.legends for t in legend.get_texts()],
            "shown": dict(getattr(fig, "photofeh_shown", {}))}


def mdf_axis_range(edges=None, counts=None, values=None, pdfs=(), step: float = 0.5,
                   tail: float = 1e-4) -> tuple[float, float]:
    """The [Fe/H] axis of a metallicity distribution: from the most metal-poor to the most metal-rich estimate
    (``values``, or the non-empty bins of ``counts`` over ``edges``) and wide enough for every deconvolved
    distribution (``pdfs``: (grid, density) pairs, from their ``tail`` to their 1 - ``tail`` quantile), out
    to multiples of ``step`` (0.1 dex histogram bins then fit it exactly: :func:`feh_bins`). No tail is cut:
    a star at -4 puts the axis at -4."""
    lo, hi = [], []
    if values is not None:
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        if v.size:
            lo.append(float(v.min()))
            hi.append(float(v.max()))
    if edges is not None and counts is not None:
        e, c = np.asarray(edges, float), np.asarray(counts)
        full = np.nonzero(c > 0)[0]
        if full.size:
            lo.append(float(e[full[0]]))
            hi.append(float(e[full[-1] + 1]))
    for grid, density in pdfs:
        g, d = np.asarray(grid, float), np.clip(np.asarray(density, float), 0, None)
        cum = np.cumsum(d)
        if cum[-1] > 0:
            cum /= cum[-1]
            lo.append(float(g[min(np.searchsorted(cum, tail), g.size - 1)]))
            hi.append(float(g[min(np.searchsorted(cum, 1 - tail), g.size - 1)]))
    if not lo:
        return -3.0, 1.0
    a, b = np.floor(min(lo) / step + 1e-9) * step, np.ceil(max(hi) / step - 1e-9) * step
    return float(a), float(b if b > a else a + step)


def feh_bins(lo: float, hi: float, width: float = 0.1) -> np.ndarray:
    """Histogram edges of ``width`` from ``lo`` to at least ``hi`` (exactly, for the ranges of
    :func:`mdf_axis_range`), rounded so that 0.1 dex steps do not drift."""
    n = max(int(np.ceil((hi - lo) / width - 1e-6)), 1)
    return np.round(lo + width * np.arange(n + 1), 10)
