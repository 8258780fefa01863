"""The figures of ``photofeh evaluate``: predictions against references, residual trends with the baselines
beside the network, the calibration of the uncertainties, and the giant/dwarf confusion matrices.

The numbers drawn are those of ``test_metrics.json`` (computed by :mod:`photofeh.model.evaluate`); only the
hexbins and histograms go back to the per-star arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.special import erf

from photofeh.model.evaluate import robust_sigma
from photofeh.report.style import (
    CMAP_COUNTS,
    CMAP_RATE,
    axis_label,
    draw_pinned,
    new_figure,
    pin,
    save_figure,
    shown,
    span_range,
    styled,
)

__all__ = ["draw_evaluation_figures"]

NETWORK = "network"
SERIES_STYLE = {NETWORK: {"color": "k", "marker": "o"}, "LightGBM": {"color": "C0", "marker": "s"},
                "Ivezic+08 form": {"color": "C3", "marker": "^"}}
BIN_TITLES = {"feh_true": "[Fe/H] (true, dex)", "feh_label": "[Fe/H] (label, dex)"}


def _bin_label(name: str) -> str:
    """The x label of a trend panel: the magnitudes and colours binned are the table's, as observed."""
    label = axis_label(name)
    return BIN_TITLES.get(name, label.replace(", mag)", ", observed, mag)"))


def _unit(lab: str) -> str:
    """The unit alone: ``dex``, ``K``, ``mag`` (not ``SDSS, mag``: the survey is on the other axes)."""
    parts = axis_label(lab).split("(")[-1].rstrip(")").split(", ")
    return parts[0] if parts[-1] == "cgs" else parts[-1]


def _residuals(pred, cols, labels, label_cols, report, stem: Path) -> list[Path]:
    """Per label: predictions against references (hexbins; the axes span every star, far outliers pinned at
    the edge as triangles), and the residual histogram (+-5 robust sigma; residuals beyond it are counted in
    the end bins and marked)."""
    fig, axes = new_figure(2, len(labels), width="double", aspect=0.72)
    for j, lab in enumerate(labels):
        top, bottom = axes[j, 0], axes[j, 1]
        ref = np.asarray(cols[label_cols[lab]], float)
        p = np.asarray(pred[lab], float)
        ok = np.isfinite(ref) & np.isfinite(p)
        n = int(ok.sum())
        if n < 2:
            for ax in (top, bottom):
                ax.text(0.5, 0.5, f"{n} star(s) with a\nprediction and a reference", ha="center",
                        va="center", transform=ax.transAxes)
                shown(ax, label=lab, stars=n, drawn=0, pinned=0)
            continue
        ref, p = ref[ok], p[ok]
        lo, hi = span_range(np.concatenate([ref, p]))
        inside = (ref >= lo) & (ref <= hi) & (p >= lo) & (p <= hi)
        hb = top.hexbin(ref[inside], p[inside], gridsize=45, bins="log", mincnt=1, cmap=CMAP_COUNTS,
                        extent=(lo, hi, lo, hi), linewidths=0)
        fig.colorbar(hb, ax=top, label="stars per hexagon", pad=0.01)
        pinned = draw_pinned(top, ref, p, (lo, hi), (lo, hi))
        top.plot([lo, hi], [lo, hi], color="C3", lw=0.8)
        top.set_xlim(lo, hi)
        top.set_ylim(lo, hi)
        top.set_xlabel(axis_label(label_cols[lab]))
        top.set_ylabel(f"predicted {axis_label(lab)}")
        top.text(0.03, 0.97, f"n = {n:,d}" + (f"\n{pinned:,d} beyond the axes: triangles" if pinned else ""),
                 transform=top.transAxes, va="top", fontsize=7)
        shown(top, label=lab, stars=n, drawn=int(np.asarray(hb.get_array()).sum()), pinned=pinned,
              reference_range=(float(ref.min()), float(ref.max())),
              predicted_range=(float(p.min()), float(p.max())))
        m = report["labels"][lab]["vs_labels"]
        text = [f"network: $\\sigma$ = {m['sigma_gauss']:.3g}, bias {m['bias_median']:+.3g}"]
        for name, b in report["labels"][lab].get("baselines", {}).items():
            text.append(f"{name}: $\\sigma$ = {b['vs_labels']['sigma_gauss']:.3g} (network "
                        f"{b['network_same_stars']['sigma_gauss']:.3g} on the same {b['vs_labels']['n']:,d})")
        r = p - ref
        med, rs = float(np.median(r)), robust_sigma(r)
        edges = (np.linspace(med - 5 * rs, med + 5 * rs, 101) if rs > 0
                 else np.histogram_bin_edges(r, 50 if np.ptp(r) > 0 else 1))
        clipped, below, above = pin(r, edges[0], edges[-1])
        hist, _, _ = bottom.hist(clipped, bins=edges, histtype="step", color="k", label="residuals")
        for mask, x, marker, count in ((below, edges[0], "<", hist[0]), (above, edges[-1], ">", hist[-1])):
            if mask.any():
                bottom.plot([x], [count], ls="none", marker=marker, ms=4, mfc="none", mec="C3", clip_on=False)
        if below.any() or above.any():
            text.append(f"{int(below.sum()):,d} below, {int(above.sum()):,d} above $\\pm$5 robust $\\sigma$: "
                        "in the end bins (triangles)")
        mu, s = m["mu_gauss"], m["sigma_gauss"]
        if np.isfinite(s) and s > 0 and rs > 0:
            x = np.linspace(edges[0], edges[-1], 300)
            width = edges[1] - edges[0]
            bottom.plot(x, r.size * width / (s * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((x - mu) / s) ** 2), color="C3",
                        lw=1, label="Gaussian fit")
        bottom.text(0.03, 0.97, "\n".join(text), transform=bottom.transAxes, va="top", fontsize=6)
        bottom.set_xlabel(f"residual, predicted - reference ({_unit(lab)})")
        bottom.set_ylabel("stars per bin")
        bottom.set_ylim(0, float(hist.max()) * (1.2 + 0.12 * len(text)))  # room for the text above the peak
        bottom.legend(loc="best", fontsize=6)  # clear of histogram and text
        shown(bottom, label=lab, stars=int(hist.sum()), pinned=int(below.sum() + above.sum()))
    return save_figure(fig, stem)


def _trends(report, lab: str, stem: Path) -> list[Path]:
    """Median residual and robust sigma in bins, the network beside the baselines. The bins are those of
    ``test_metrics.json``: every star is in one (the end bins reach the extreme stars, sparse bins are merged),
    each point drawn at its bin's median and the axis spanning the bins."""
    entry = report["labels"][lab]
    names = list(entry["binned"])
    fig, axes = new_figure(len(names), 2, width="double", aspect=0.8, sharex="col")
    series = {NETWORK: entry["binned"], **{k: v["binned"] for k, v in entry.get("baselines", {}).items()}}
    unit = _unit(lab)
    for j, name in enumerate(names):
        rows_of = {who: binned.get(name, []) for who, binned in series.items()}
        every = [b for rows in rows_of.values() for b in rows]
        if not every:
            axes[0, j].text(0.5, 0.5, "no bin", ha="center", transform=axes[0, j].transAxes)
            continue
        lo, hi = min(b["lo"] for b in every), max(b["hi"] for b in every)
        pad = 0.03 * (hi - lo if hi > lo else 1.0)
        for k, (who, rows) in enumerate(rows_of.items()):
            if not rows:
                continue
            x = np.array([b.get("x_median", 0.5 * (b["lo"] + b["hi"])) for b in rows])
            x = x + (k - (len(series) - 1) / 2) * 0.01 * (hi - lo)  # side by side, not on top of each other
            style = SERIES_STYLE.get(who, {"color": f"C{k + 4}", "marker": "D"})
            y = np.array([b["bias_median"] for b in rows])
            if who == NETWORK:  # the stars each point stands for: its bin, end bins out to the extreme stars
                lo_b, hi_b = np.array([b["lo"] for b in rows]), np.array([b["hi"] for b in rows])
                axes[0, j].errorbar(x, y, xerr=[np.maximum(x - lo_b, 0), np.maximum(hi_b - x, 0)], fmt="none",
                                    ecolor="0.65", elinewidth=0.6, capsize=1.5, zorder=1)
            axes[0, j].plot(x, y, ls="-", lw=0.8, ms=3, label=who, **style)
            axes[1, j].plot(x, [b["robust_sigma"] for b in rows], ls="-", lw=0.8, ms=3, **style)
        axes[0, j].axhline(0, color="0.6", lw=0.6)
        axes[1, j].set_xlabel(_bin_label(name))
        top_sigma = max((b["robust_sigma"] for b in every if np.isfinite(b["robust_sigma"])), default=1.0)
        axes[1, j].set_ylim(0, 1.1 * top_sigma if top_sigma > 0 else 1.0)
        axes[1, j].set_xlim(lo - pad, hi + pad)
        shown(axes[0, j], binned_by=name, bin_range=(lo, hi),
              stars={who: int(sum(b["n"] for b in rows)) for who, rows in rows_of.items()},
              bins={who: len(rows) for who, rows in rows_of.items()})
    axes[0, 0].set_ylabel(f"median residual ({unit})")
    axes[1, 0].set_ylabel(f"robust $\\sigma$ ({unit})")
    handles, names_ = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names_, loc="outside lower center", ncols=max(len(handles), 1), fontsize=7)
    first = series[NETWORK].get(names[0], []) if names else []
    fig.suptitle(f"{axis_label(lab)}: residuals of {sum(b['n'] for b in first):,d} test stars, every one in a bin "
                 "of >= 20", fontsize=8)
    return save_figure(fig, stem)


def _calibration(pred, cols, labels, label_cols, stem: Path) -> list[Path]:
    """Per label: the pull histogram (pulls beyond +-5 counted in the end bins and marked) against N(0, 1), and
    the fraction of stars inside k sigma against the Gaussian's, the 1, 2, 3 sigma values in a corner table."""
    usable = [lab for lab in labels if f"{lab}_err" in pred]
    fig, axes = new_figure(max(len(usable), 1), 2, width="double" if len(usable) > 1 else "single", aspect=0.9)
    k = np.linspace(0, 3.5, 141)
    for j, lab in enumerate(usable):
        ref = np.asarray(cols[label_cols[lab]], float)
        ref_err = np.asarray(cols.get(f"{label_cols[lab]}_err", np.zeros(ref.size)), float)
        err = np.hypot(np.asarray(pred[f"{lab}_err"], float), np.nan_to_num(ref_err))
        pull = (np.asarray(pred[lab], float) - ref) / err
        pull = pull[np.isfinite(pull)]
        top, bottom = axes[0, j], axes[1, j]
        name = axis_label(lab).split(" (")[0]
        top.set_title(name, fontsize=8)
        if pull.size < 2:
            top.text(0.5, 0.5, "no reference", ha="center", transform=top.transAxes)
            shown(top, label=lab, stars=int(pull.size), pinned=0)
            continue
        edges = np.linspace(-5, 5, 81)
        clipped, below, above = pin(pull, -5.0, 5.0)
        density, _, _ = top.hist(clipped, bins=edges, density=True, histtype="step", color="k", label="pulls")
        x = np.linspace(-5, 5, 300)
        top.plot(x, np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi), color="C3", lw=1, label="N(0, 1)")
        for mask, xe, marker, dens in ((below, -5.0, "<", density[0]), (above, 5.0, ">", density[-1])):
            if mask.any():
                top.plot([xe], [dens], ls="none", marker=marker, ms=4, mfc="none", mec="C3", clip_on=False)
        note = f"std {np.std(pull):.2f}\nn = {pull.size:,d}"
        if below.any() or above.any():
            note += f"\n{int(below.sum() + above.sum()):,d} beyond $\\pm$5:\nin the end bins"
        top.text(0.03, 0.97, note, transform=top.transAxes, va="top", fontsize=6)
        top.set_ylim(0, max(float(density.max()), 0.4) * (1.25 + 0.12 * note.count("\n")))  # room for the note
        top.set_xlabel("pull: residual / $\\sigma$")
        observed = np.array([np.mean(np.abs(pull) < kk) for kk in k])
        bottom.plot(k, erf(k / np.sqrt(2)), color="C3", lw=1, label="Gaussian")
        bottom.plot(k, observed, color="k", lw=1.2, label="observed")
        rows = []
        for kk in (1, 2, 3):
            frac = float(np.mean(np.abs(pull) < kk))
            bottom.plot([kk], [frac], "o", color="k", ms=3)
            rows.append(f"{kk}$\\sigma$: {100 * frac:.1f}% ({100 * erf(kk / np.sqrt(2)):.1f}%)")
        bottom.text(0.97, 0.04, "\n".join(rows), transform=bottom.transAxes, ha="right", va="bottom", fontsize=6)
        bottom.set_xlabel("interval half-width ($\\sigma$)")
        bottom.set_ylim(0, 1.02)
        shown(top, label=lab, stars=int(pull.size), pinned=int(below.sum() + above.sum()))
    axes[0, 0].set_ylabel("density")
    axes[1, 0].set_ylabel("fraction of stars inside")
    drawn = [j for j in range(len(usable)) if len(axes[1, j].get_legend_handles_labels()[0]) == 2]
    if drawn:
        (pulls, gauss), _ = axes[0, drawn[0]].get_legend_handles_labels()
        observed_line = axes[1, drawn[0]].get_legend_handles_labels()[0][1]
        fig.legend([pulls, gauss, observed_line], ["pulls", "N(0, 1) (its fractions inside in brackets)",
                                                   "observed fraction inside"],
                   loc="outside lower center", ncols=3, fontsize=7)
    return save_figure(fig, stem)


def _confusion(report, stem: Path) -> list[Path]:
    cls = report.get("class", {})
    key = "vs_truth" if "vs_truth" in cls else ("vs_labels" if "vs_labels" in cls else None)
    if key is None:
        return []
    panels = [(key, "all stars")]
    if f"{key}_feh_below_-1.2" in cls:
        panels.append((f"{key}_feh_below_-1.2", "[Fe/H] < -1.2"))
    fig, axes = new_figure(len(panels), 1, width="double" if len(panels) > 1 else "single", aspect=0.85)
    for ax, (k, title) in zip(axes[0], panels, strict=True):
        c = cls[k]["confusion"]
        m = np.array([[c["dwarf_as_dwarf"], c["dwarf_as_giant"]], [c["giant_as_dwarf"], c["giant_as_giant"]]], float)
        rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)  # of each true class, the fraction so predicted
        im = ax.imshow(rates, cmap=CMAP_RATE, vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, f"{int(v):,d}\n{100 * rates[i, j]:.1f}%", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.6 else "black")
        ax.set_xticks([0, 1], ["dwarf", "giant"])
        ax.set_yticks([0, 1], ["dwarf", "giant"])
        ax.minorticks_off()
        ax.set_xlabel("predicted class")
        ax.set_ylabel(f"true class ({key.removeprefix('vs_')})")
        ax.set_title(f"{title}: giant completeness {100 * cls[k]['giant_completeness']:.1f}%, "
                     f"contamination {100 * cls[k]['giant_contamination']:.1f}%", fontsize=7)
        fig.colorbar(im, ax=ax, label="fraction of the true class", shrink=0.8)
        shown(ax, stars=int(m.sum()), confusion=m.astype(int).tolist())
    return save_figure(fig, stem)


def draw_evaluation_figures(pred, cols, labels, label_cols, report: dict, out_dir, baseline_pred=None) -> list[Path]:
    """Every evaluation figure (PNG and PDF) in ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    with_reference = [lab for lab in labels if label_cols.get(lab) in cols]
    paths: list[Path] = []
    with styled():
        paths += _residuals(pred, cols, with_reference, label_cols, report, out / "residuals")
        for lab in with_reference:
            if report["labels"][lab]["binned"]:
                paths += _trends(report, lab, out / f"residual_trends_{lab}")
        paths += _calibration(pred, cols, with_reference, label_cols, out / "calibration")
        paths += _confusion(report, out / "confusion")
    return paths
