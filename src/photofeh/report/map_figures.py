"""The figures of ``photofeh map``: median, count and scatter maps in R-|Z|, the [Fe/H]-|Z| profile near the
Sun against Ivezic et al. 2008, metallicity distributions in |Z| slices, and a sky map in Galactic (l, b).

All are drawn from the streamed histograms of :class:`photofeh.galaxy.maps.MapProducts`, so they cost nothing more
than the map itself whatever the number of stars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from photofeh.galaxy.maps import BinnedQuantileMap, MapProducts
from photofeh.report.style import (
    CMAP_COUNTS,
    CMAP_SCATTER,
    CMAP_VALUE,
    colorbar_extend,
    data_range,
    feh_bins,
    mark_sun,
    mdf_axis_range,
    new_figure,
    occupied_extent,
    save_figure,
    shown,
    styled,
    sun_position_kpc,
)

__all__ = ["draw_map_figures", "solar_profile", "ivezic2008_profiles", "reference_profiles", "PROFILE_HALF_WIDTH_KPC"]

PROFILE_HALF_WIDTH_KPC = 1.0  # the profile uses cells whose centre lies within R0 +- this (Ivezic 2008: 7-9 kpc)
FEH_LABEL = "[Fe/H] (dex)"


def _scatter(m: BinnedQuantileMap, min_count: int) -> np.ndarray:
    """Half the 16-84% range per cell (dex): a robust spread, the sigma of a Gaussian."""
    return 0.5 * (m.quantile(0.8413, min_count) - m.quantile(0.1587, min_count))


def solar_profile(m: BinnedQuantileMap, min_count: int = 20, half_width: float = PROFILE_HALF_WIDTH_KPC
                  ) -> dict[str, np.ndarray]:
    """Median [Fe/H] against |Z| of the cells within ``half_width`` of the Sun's R, with the error of each
    median (1.2533 sigma / sqrt(n), the large-sample error of a Gaussian median), the 16/84% quantiles and n."""
    r0, _ = sun_position_kpc()
    centres = 0.5 * (m.x_edges[1:] + m.x_edges[:-1])
    near = np.abs(centres - r0) <= half_width
    counts = m.counts[near].sum(axis=0, keepdims=True)
    strip = BinnedQuantileMap(np.array([r0 - half_width, r0 + half_width]), m.y_edges, m.value_edges, counts)
    n = strip.n[0]
    q16, q50, q84 = (strip.quantile(q, min_count)[0] for q in (0.1587, 0.5, 0.8413))
    with np.errstate(invalid="ignore", divide="ignore"):
        err = 1.2533 * 0.5 * (q84 - q16) / np.sqrt(n)
    return {"abs_z": 0.5 * (m.y_edges[1:] + m.y_edges[:-1]), "median": q50, "median_err": err, "q16": q16,
            "q84": q84, "n": n, "r_range": (r0 - half_width, r0 + half_width)}


def ivezic2008_profiles(abs_z: np.ndarray, R: float | None = None) -> dict[str, np.ndarray]:
    """Median [Fe/H] against |Z| of the Ivezic et al. 2008 (section 4.3) disk law, of the halo (-1.46,
    independent of position), and of their mixture weighted by the Juric et al. 2008 (table 10) densities at
    Galactocentric radius ``R`` (the Sun's by default): what a volume-complete sample would show."""
    return reference_profiles(abs_z, R, "ivezic2008", "ivezic2008")


def reference_profiles(abs_z: np.ndarray, R: float | None = None, disk_law: str = "ivezic2008",
                       halo_law: str = "ivezic2008") -> dict[str, np.ndarray]:
    """:func:`ivezic2008_profiles` for any of the mock's disk and halo laws (``simulate.galaxy``): the
    default mock's laws follow later measurements (docs/mock_calibration.md)."""
    from scipy.stats import norm

    from photofeh.simulate.galaxy import (
        DISK_FEH_LAWS,
        HALO_FEH,
        density,
        disk_feh_cdf,
        disk_feh_median,
        disk_feh_mu,
        halo_feh_cdf,
    )

    if R is None:
        R, _ = sun_position_kpc()
    law = DISK_FEH_LAWS[disk_law]
    z = np.asarray(abs_z, float)
    disk = disk_feh_median(z, law)
    rho_disk = density("thin", np.full(z.shape, R), z) + density("thick", np.full(z.shape, R), z)
    f_halo = density("halo", np.full(z.shape, R), z) / (rho_disk + density("halo", np.full(z.shape, R), z))
    grid = np.linspace(-4.5, 1.0, 2751)
    if halo_law == "ivezic2008":
        halo_cdf = norm.cdf(grid, HALO_FEH["mean"], HALO_FEH["sigma"])
        halo = np.full(z.shape, HALO_FEH["mean"])
    else:
        halo_cdf = halo_feh_cdf(grid)
        halo = np.full(z.shape, np.interp(0.5, halo_cdf, grid))
    disk_cdf = disk_feh_cdf(grid, disk_feh_mu(z, law)[:, None])
    cdf = (1 - f_halo[:, None]) * disk_cdf + f_halo[:, None] * halo_cdf
    both = np.array([np.interp(0.5, c, grid) for c in cdf])
    return {"disk": disk, "halo": halo, "disk_and_halo": both, "halo_fraction": f_halo}


def _rz_axes(ax, m: BinnedQuantileMap, occupied: np.ndarray) -> None:
    x0, x1, y0, y1 = occupied_extent(m.x_edges, m.y_edges, occupied)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("Galactocentric R (kpc)")
    ax.set_ylabel("|Z| (kpc)")


def _rz_map(m: BinnedQuantileMap, values: np.ndarray, occupied: np.ndarray, stem: Path, *, cmap: str, label: str,
            title: str, norm=None, vrange: tuple[float, float] | None = None) -> list[Path]:
    fig, axes = new_figure(1, 1, width="double", aspect=0.5)
    ax = axes[0, 0]
    kw = {"norm": norm} if norm is not None else {"vmin": vrange[0], "vmax": vrange[1]}
    mesh = ax.pcolormesh(m.x_edges, m.y_edges, np.ma.masked_invalid(values).T, cmap=cmap, shading="flat", **kw)
    drawn = np.isfinite(values)
    lo, hi = (norm.vmin, norm.vmax) if norm is not None else vrange
    extend = colorbar_extend(values[drawn], lo, hi)  # cells beyond the colour range: the bar's arrows say so
    fig.colorbar(mesh, ax=ax, label=label, pad=0.01, extend=extend)
    _rz_axes(ax, m, occupied)
    mark_sun(ax)
    ax.set_title(title)
    x0, x1, y0, y1 = occupied_extent(m.x_edges, m.y_edges, occupied)
    shown(ax, cells=int(drawn.sum()), stars=int(m.n[drawn].sum()), colour_range=(float(lo), float(hi)),
          extend=extend, extent=(x0, x1, y0, y1))
    return save_figure(fig, stem)


def _mdf_slices(slices, slice_summaries, stem: Path) -> list[Path]:
    """The [Fe/H] histogram of the estimates and the deconvolved MDF of each |Z| slice, on a logarithmic axis
    (the metal-poor tail is visible beside the disk's peak) spanning every estimate of every slice."""
    from photofeh.galaxy.populations import summary_distribution

    edges, hists = slices
    k = len(hists)
    ncols = min(k, 3)
    nrows = int(np.ceil(k / ncols))
    fig, axes = new_figure(ncols, nrows, width="double", aspect=0.75, sharex=True)
    fine = np.linspace(-5.0, 1.5, 651)
    summaries = [slice_summaries[i] if slice_summaries and i < len(slice_summaries) else {} for i in range(k)]
    mixtures = [summary_distribution(s) if "mixture" in s or "distribution" in s else None for s in summaries]
    lo, hi = mdf_axis_range(pdfs=[(fine, mx.pdf(fine)) for mx in mixtures if mx is not None])
    for h in hists:
        if h.n:
            a, b = mdf_axis_range(h.feh_edges, h.counts.sum(axis=1))
            lo, hi = min(lo, a), max(hi, b)
    coarse = feh_bins(lo, hi)
    hi = float(coarse[-1])
    grid = np.linspace(lo, hi, 451)
    for idx, h in enumerate(hists):
        ax = axes.flat[idx]
        z0, z1 = edges[idx], edges[idx + 1]
        hist = h.estimate_histogram(coarse)
        peak = 0.0
        if h.n:
            density = hist / (h.n * 0.1)
            ax.stairs(density, coarse, color="0.45", label="estimates")
            peak = float(density.max())
        summary, mixture = summaries[idx], mixtures[idx]
        if mixture is not None:
            pdf = mixture.pdf(grid)
            ax.plot(grid, pdf, color="C0", lw=1.5, label="deconvolved")
            peak = max(peak, float(pdf.max()))
            ax.axvline(summary["median"], color="C0", ls="--", lw=1)
            ax.text(0.03, 0.95, f"median {summary['median']:.2f} $\\pm$ {summary['median_se']:.2f}",
                    transform=ax.transAxes, va="top", fontsize=7)
        ax.set_yscale("log")
        floor = 0.5 / (max(h.n, 1) * 0.1)  # half a star per bin: one star shows
        ax.set_ylim(min(floor, 0.1 * peak) if peak > 0 else floor, 3 * peak if peak > 0 else 1.0)
        dropped = f"; {h.n_dropped:,d} out of range" if h.n_dropped else ""
        ax.set_title(f"{z0:g} < |Z| < {z1:g} kpc: {h.n:,d} stars{dropped}", fontsize=8)
        ax.set_xlim(lo, hi)
        if idx + ncols >= k:  # nothing drawn below this panel
            ax.set_xlabel(FEH_LABEL)
            ax.tick_params(labelbottom=True)
        shown(ax, stars=int(h.n), histogram_stars=int(hist.sum()), dropped=int(h.n_dropped),
              abs_z=(float(z0), float(z1)), estimate_range=mdf_axis_range(h.feh_edges, h.counts.sum(axis=1))
              if h.n else None)
    for ax in list(axes.flat)[k:]:
        ax.set_visible(False)
    fig.supylabel("stars per dex, normalised (log)", fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[1:k]:  # the first slice may lack a deconvolution
        more = ax.get_legend_handles_labels()
        if len(more[0]) > len(handles):
            handles, labels = more
    fig.legend(handles, labels, loc="outside lower center", ncols=max(len(handles), 1), fontsize=7)
    return save_figure(fig, stem)


def _profile(m: BinnedQuantileMap, min_count: int, slice_summaries, slices, stem: Path) -> list[Path]:
    prof = solar_profile(m, min_count)
    fig, axes = new_figure(1, 1, width="single", aspect=1.15)  # taller: the legend goes below the axes
    ax = axes[0, 0]
    ok = np.isfinite(prof["median"])
    z_fine = np.linspace(0.0, max(float(prof["abs_z"][ok].max()) + 0.5 if ok.any() else 5.0, 1.0), 200)
    model = ivezic2008_profiles(z_fine)
    ax.plot(z_fine, model["disk"], color="C3", ls="--", lw=1, label="Ivezic+08 disk")
    ax.plot(z_fine, model["halo"], color="C0", ls=":", lw=1, label="Ivezic+08 halo")
    ax.plot(z_fine, model["disk_and_halo"], color="k", lw=1, label="disk + halo (Juric+08 densities)")
    later = reference_profiles(z_fine, disk_law="calibrated", halo_law="an2015")["disk_and_halo"]
    ax.plot(z_fine, later, color="0.5", lw=1, ls="-.", label="later laws, disk + halo (mock default)")
    ax.fill_between(prof["abs_z"][ok], prof["q16"][ok], prof["q84"][ok], color="C2", alpha=0.2, lw=0,
                    label="16-84% of estimates")
    ax.errorbar(prof["abs_z"][ok], prof["median"][ok], prof["median_err"][ok], fmt="o", ms=3, color="C2",
                label="median of estimates")
    if slice_summaries and slices is not None:
        edges = slices[0]
        mids = [0.5 * (a + b) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        pts = [(z, s["median"], s["median_se"]) for z, s in zip(mids, slice_summaries, strict=True) if "median" in s]
        if pts:
            z, med, se = np.array(pts).T
            ax.errorbar(z, med, se, fmt="s", ms=3, mfc="white", color="C1", label="deconvolved, all R")
    r0, r1 = prof["r_range"]
    ax.set_xlabel("|Z| (kpc)")
    ax.set_ylabel(f"median {FEH_LABEL}")
    ax.set_title(f"{r0:.1f} < R < {r1:.1f} kpc, {int(prof['n'][ok].sum()):,d} stars")
    ax.set_xlim(0, z_fine[-1])
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=1, fontsize=6)  # below: the data stay clear
    shown(ax, stars=int(prof["n"][ok].sum()), points=int(ok.sum()),
          data_range=(float(np.min(prof["q16"][ok])), float(np.max(prof["q84"][ok]))) if ok.any() else None)
    return save_figure(fig, stem)


def _sky(products: MapProducts, min_count: int, stem: Path) -> list[Path]:
    import healpy as hp
    from matplotlib.colors import LogNorm

    med = products.sky.median(min_count)[:, 0]
    n = products.sky.n[:, 0].astype(float)
    x = np.linspace(-np.pi, np.pi, 361)  # a 1-degree grid: 3.7-degree pixels at nside 16 are drawn smoothly
    y = np.linspace(-np.pi / 2, np.pi / 2, 181)
    xc, yc = np.meshgrid(0.5 * (x[1:] + x[:-1]), 0.5 * (y[1:] + y[:-1]))
    l_deg = np.mod(-np.degrees(xc), 360.0)  # l grows to the left, l = 0 at the centre (astronomical convention)
    pix = hp.ang2pix(products.nside, l_deg, np.degrees(yc), lonlat=True)
    fig, axes = new_figure(2, 1, width="double", aspect=0.62, subplot_kw={"projection": "mollweide"})
    lo, hi = data_range(med, step=0.1, minimum_width=0.3)
    counts = np.where(n > 0, n, np.nan)
    panels = ((axes[0, 0], np.ma.masked_invalid(med[pix]), CMAP_VALUE, {"vmin": lo, "vmax": hi},
               f"median {FEH_LABEL}"),
              (axes[0, 1], np.ma.masked_invalid(counts[pix]), CMAP_COUNTS,
               {"norm": LogNorm(vmin=1, vmax=max(np.nanmax(counts) if np.isfinite(counts).any() else 10, 10))},
               "stars per pixel"))
    extends = (colorbar_extend(med, lo, hi), "neither")
    for (ax, values, cmap, kw, label), extend in zip(panels, extends, strict=True):
        mesh = ax.pcolormesh(x, y, values, cmap=cmap, shading="flat", rasterized=True, **kw)
        fig.colorbar(mesh, ax=ax, label=label, orientation="horizontal", pad=0.04, shrink=0.8, extend=extend)
        ticks = np.radians([-120, -60, 0, 60, 120])
        ax.set_xticks(ticks, [f"{round(float(np.mod(-np.degrees(t), 360)))}°" for t in ticks], fontsize=6,
                      color="0.3")
        ax.tick_params(axis="y", labelsize=6)
        ax.grid(True, lw=0.3, color="0.6")
        ax.set_xlabel("Galactic l (deg)")
        ax.set_ylabel("Galactic b (deg)")
    area = hp.nside2pixarea(products.nside, degrees=True)
    axes[0, 0].set_title(f"median of pixels with >= {min_count} stars", fontsize=8)
    axes[0, 1].set_title(f"{int(n.sum()):,d} mapped stars\nHEALPix nside {products.nside} ({area:.1f} deg$^2$ pixels)",
                         fontsize=8)
    shown(axes[0, 0], pixels=int(np.isfinite(med).sum()), stars=int(n[np.isfinite(med)].sum()),
          colour_range=(lo, hi), extend=extends[0])
    shown(axes[0, 1], pixels=int((n > 0).sum()), stars=int(n.sum()))
    return save_figure(fig, stem)


def draw_map_figures(products: MapProducts, out_dir: str | Path, min_count: int = 20,
                     deconvolved: np.ndarray | None = None, slice_summaries: list[dict] | None = None) -> list[Path]:
    """Every map figure, as PNG and PDF in ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    m = products.rz
    n = m.n
    cell = float(m.x_edges[1] - m.x_edges[0])
    drawn_cells = n >= min_count
    median = m.median(min_count)
    total = int(n.sum())
    paths: list[Path] = []
    with styled():
        from matplotlib.colors import LogNorm

        vrange = data_range(median[drawn_cells], step=0.1, minimum_width=0.4)
        in_cells = int(n[drawn_cells].sum())
        paths += _rz_map(m, median, drawn_cells, out / "feh_map", cmap=CMAP_VALUE, label=f"median {FEH_LABEL}",
                         vrange=vrange, title=f"{total:,d} stars, {in_cells:,d} of them in the cells of >= "
                         f"{min_count} stars drawn")
        paths += _rz_map(m, np.where(n > 0, n, np.nan), n > 0, out / "feh_counts", cmap=CMAP_COUNTS,
                         label=f"stars per {cell:g} x {cell:g} kpc cell",
                         norm=LogNorm(vmin=1, vmax=max(int(n.max()), 10)), title=f"{total:,d} stars")
        scatter = _scatter(m, min_count)
        paths += _rz_map(m, scatter, drawn_cells, out / "feh_scatter", cmap=CMAP_SCATTER,
                         label="[Fe/H] spread, (q84 - q16)/2 (dex)",
                         vrange=data_range(scatter[drawn_cells], step=0.05, minimum_width=0.1),
                         title="spread of the estimates (intrinsic and measurement)")
        if deconvolved is not None:
            ok = drawn_cells & np.isfinite(deconvolved)
            paths += _rz_map(m, np.where(ok, deconvolved, np.nan), ok, out / "feh_map_deconvolved",
                             cmap=CMAP_VALUE, label=f"deconvolved median {FEH_LABEL}", vrange=vrange,
                             title=f"median of the deconvolved MDF per cell (>= {min_count} stars)")
        paths += _profile(m, min_count, slice_summaries, products.slices, out / "feh_profile")
        if products.slices is not None:
            paths += _mdf_slices(products.slices, slice_summaries, out / "feh_mdf_slices")
        paths += _sky(products, max(min_count // 4, 1), out / "feh_sky")
    return paths
