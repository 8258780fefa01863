"""The figure of ``photofeh mdf``: a metallicity distribution over the histogram of the estimates it came from.

The numbers come from :mod:`photofeh.galaxy.populations` (the unfolded or deconvolved summary and the selected
estimates); this module only draws them, in the one style of :mod:`photofeh.report.style`.
"""

from __future__ import annotations

import numpy as np

from photofeh.galaxy.mdf import BinnedEstimates
from photofeh.galaxy.populations import summary_distribution

__all__ = ["plot_mdf"]


def plot_mdf(summary: dict, x: np.ndarray | BinnedEstimates | None, stem, title: str = "") -> list:
    """The deconvolved MDF (with its bootstrap median) over the histogram of the estimates, if given, on a
    linear axis (top) and a logarithmic one (bottom: the metal-poor tail), the [Fe/H] axis spanning every
    estimate and the MDF; written as ``stem``.png and ``stem``.pdf (:mod:`photofeh.report.style`). Returns the
    paths."""
    from photofeh.report.style import feh_bins, mdf_axis_range, new_figure, save_figure, styled

    mdf = summary_distribution(summary)
    fine = np.linspace(-5.0, 1.5, 1301)
    if isinstance(x, BinnedEstimates):
        lo, hi = mdf_axis_range(x.feh_edges, x.counts.sum(axis=1), pdfs=[(fine, mdf.pdf(fine))])
    else:
        lo, hi = mdf_axis_range(values=x, pdfs=[(fine, mdf.pdf(fine))])
    edges = feh_bins(lo, hi)
    grid = np.linspace(edges[0], edges[-1], 501)
    with styled():
        fig, axes = new_figure(1, 2, width="single", aspect=0.62, sharex=True)
        _draw_mdf(axes[0, 0], mdf, summary, x, grid, title)
        _draw_mdf(axes[1, 0], mdf, summary, x, grid, "", log=True)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=1, fontsize=6)
        return save_figure(fig, stem)


def _draw_mdf(ax, mdf, summary, x, grid, title, log: bool = False) -> None:
    """One panel of :func:`plot_mdf`: 0.1 dex bins over the grid's range (which holds every estimate); each
    star drawn is counted in the legend, and those that cannot be (no value, or outside the histogram's
    -5..+1.5 dex) are counted there too."""
    from photofeh.report.style import feh_bins, shown

    edges = feh_bins(grid[0], grid[-1])
    if isinstance(x, BinnedEstimates):  # many stars: their histogram (0.02 dex bins) summed into 0.1 dex bins
        hist, n, dropped = x.estimate_histogram(edges), x.n, x.n_dropped
        span = None
        if n:
            full = np.nonzero(x.counts.sum(axis=1))[0]
            span = (float(x.feh_edges[full[0]]), float(x.feh_edges[full[-1] + 1]))
    elif x is not None and np.size(x):
        v = np.asarray(x, float)
        finite = v[np.isfinite(v)]
        hist, n, dropped = np.histogram(finite, bins=edges)[0], finite.size, v.size - finite.size
        span = (float(finite.min()), float(finite.max())) if finite.size else None
    else:
        hist, n, dropped, span = None, 0, 0, None
    peak = 0.0
    if hist is not None and n:
        density = hist / (n * 0.1)
        note = f"; {dropped:,d} not drawn (no value, or beyond -5..+1.5)" if dropped else ""
        ax.stairs(density, edges, color="0.5", label=f"estimates ({n:,d} stars{note})")
        peak = float(density.max())
    pdf = mdf.pdf(grid)
    ax.plot(grid, pdf, color="C0", lw=2, label="unfolded MDF" if "calibration_stars" in summary else "deconvolved MDF")
    peak = max(peak, float(pdf.max()))
    ax.axvline(summary["median"], color="C0", ls="--",
               label=f"median {summary['median']:.2f} $\\pm$ {summary['median_se']:.2f}")
    below = sorted((summary.get("fraction_below") or {}).items(), key=lambda kv: -float(kv[0]))
    for cut, _ in below:
        ax.axvline(float(cut), color="0.6", ls=":", lw=0.8)
    if log and below:  # the fractions of the tail (mdf.json), beside the dotted lines at their cuts
        ax.text(0.02, 0.97, "\n".join(f"below {cut}: {100 * f['value']:.2g} $\\pm$ {100 * f['error']:.2g}%"
                                      for cut, f in below), transform=ax.transAxes, fontsize=6, va="top")
    ax.set_xlim(grid[0], grid[-1])
    ax.set_ylabel("stars per dex, normalised" + (" (log)" if log else ""), fontsize=7)
    if log:
        ax.set_yscale("log")
        floor = 0.5 / (max(n, 1) * 0.1)  # half a star per bin: a single star shows
        ax.set_ylim(min(floor, 0.1 * peak) if peak > 0 else floor, 3 * peak if peak > 0 else 1.0)
        ax.set_xlabel("[Fe/H] (dex)")
    else:
        ax.set_ylim(0, 1.1 * peak if peak > 0 else 1.0)
    if title:
        ax.set_title(title)
    shown(ax, stars=int(n), histogram_stars=int(hist.sum()) if hist is not None else 0, dropped=int(dropped),
          estimate_range=span, log=log)
