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
from photofeh.report.style import CMAP_COUNTS, CMAP_RATE, axis_label, data_range, new_figure, save_figure, styled

__all__ = ["draw_evaluation_figures"]

NETWORK = "network"
SERIES_STYLE = {NETWORK: {"color": "k", "marker": "o"}, "LightGBM": {"color": "C0", "marker": "s"},
                "Ivezic+08 form": {"color": "C3", "marker": "^"}}
BIN_TITLES = {"feh_true": "[Fe/H] (true, dex)", "feh_label": "[Fe/H] (label, dex)"}


def _bin_label(name: str) -> str:
    label = axis_label(name)
    return BIN_TITLES.get(name, label.replace(", mag)", ", observed, mag)") if "-" in name else label)


def _residuals(pred, cols, labels, label_cols, report, stem: Path) -> list[Path]:
    fig, axes = new_figure(2, len(labels), width="double", aspect=0.72)
    for j, lab in enumerate(labels):
        top, bottom = axes[j, 0], axes[j, 1]
        ref = np.asarray(cols[label_cols[lab]], float)
        p = np.asarray(pred[lab], float)
        ok = np.isfinite(ref) & np.isfinite(p)
        if ok.sum() < 2:
            for ax in (top, bottom):
                ax.text(0.5, 0.5, f"{int(ok.sum())} star(s) with a\nprediction and a reference", ha="center",
                        va="center", transform=ax.transAxes)
            continue
        lo, hi = data_range(np.concatenate([ref[ok], p[ok]]), 0.5, 99.5, step=None)
        pad = 0.05 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        hb = top.hexbin(ref[ok], p[ok], gridsize=45, bins="log", mincnt=1, cmap=CMAP_COUNTS,
                        extent=(lo, hi, lo, hi), linewidths=0)
        fig.colorbar(hb, ax=top, label="stars per hexagon", pad=0.01)
        top.plot([lo, hi], [lo, hi], color="C3", lw=0.8)
        top.set_xlim(lo, hi)
        top.set_ylim(lo, hi)
        top.set_xlabel(axis_label(label_cols[lab]))
        top.set_ylabel(f"predicted {axis_label(lab)}")
        m = report["labels"][lab]["vs_labels"]
        top.text(0.03, 0.97, f"n = {m['n']:,d}", transform=top.transAxes, va="top", fontsize=7)
        text = [f"network: $\\sigma$ = {m['sigma_gauss']:.3g}, bias {m['bias_median']:+.3g}"]
        for name, b in report["labels"][lab].get("baselines", {}).items():
            text.append(f"{name}: $\\sigma$ = {b['vs_labels']['sigma_gauss']:.3g} (network "
                        f"{b['network_same_stars']['sigma_gauss']:.3g} on the same {b['vs_labels']['n']:,d})")
        bottom.text(0.03, 0.97, "\n".join(text), transform=bottom.transAxes, va="top", fontsize=6)
        r = p[ok] - ref[ok]
        med, rs = float(np.median(r)), robust_sigma(r)
        edges = np.linspace(med - 5 * rs, med + 5 * rs, 101) if rs > 0 else 50
        bottom.hist(r, bins=edges, histtype="step", color="k", label="residuals")
        mu, s = m["mu_gauss"], m["sigma_gauss"]
        if np.isfinite(s) and s > 0 and rs > 0:
            x = np.linspace(edges[0], edges[-1], 300)
            width = edges[1] - edges[0]
            bottom.plot(x, r.size * width / (s * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((x - mu) / s) ** 2), color="C3",
                        lw=1, label="Gaussian fit")
        bottom.set_xlabel(f"residual, predicted - reference ({axis_label(lab).split('(')[-1].rstrip(')')})")
        bottom.set_ylabel("stars per bin")
        bottom.set_ylim(top=bottom.get_ylim()[1] * 1.35)  # room for the text
        bottom.legend(loc="center right", fontsize=6)
    return save_figure(fig, stem)


def _trends(report, lab: str, stem: Path) -> list[Path]:
    entry = report["labels"][lab]
    names = list(entry["binned"])
    fig, axes = new_figure(len(names), 2, width="double", aspect=0.8, sharex="col")
    series = {NETWORK: entry["binned"], **{k: v["binned"] for k, v in entry.get("baselines", {}).items()}}
    unit = axis_label(lab).split("(")[-1].rstrip(")")
    for j, name in enumerate(names):
        for k, (who, binned) in enumerate(series.items()):
            rows = binned.get(name, [])
            if not rows:
                continue
            x = np.array([0.5 * (b["lo"] + b["hi"]) for b in rows])
            width = rows[0]["hi"] - rows[0]["lo"]
            x = x + (k - (len(series) - 1) / 2) * 0.08 * width  # side by side, not on top of each other
            style = SERIES_STYLE.get(who, {"color": f"C{k + 4}", "marker": "D"})
            axes[0, j].plot(x, [b["bias_median"] for b in rows], ls="-", lw=0.8, ms=3, label=who, **style)
            axes[1, j].plot(x, [b["robust_sigma"] for b in rows], ls="-", lw=0.8, ms=3, **style)
        axes[0, j].axhline(0, color="0.6", lw=0.6)
        axes[1, j].set_xlabel(_bin_label(name))
        axes[1, j].set_ylim(bottom=0)
    axes[0, 0].set_ylabel(f"median residual ({unit})")
    axes[1, 0].set_ylabel(f"robust $\\sigma$ ({unit})")
    axes[0, 0].legend(loc="best", fontsize=6)
    fig.suptitle(f"{axis_label(lab)}: residuals in bins (>= 20 stars per bin)", fontsize=9)
    return save_figure(fig, stem)


def _calibration(pred, cols, labels, label_cols, stem: Path) -> list[Path]:
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
        if pull.size < 2:
            top.text(0.5, 0.5, "no reference", ha="center", transform=top.transAxes)
            continue
        edges = np.linspace(-5, 5, 81)
        top.hist(np.clip(pull, -5, 5), bins=edges, density=True, histtype="step", color="k",
                 label=f"pulls (std {np.std(pull):.2f})")
        x = np.linspace(-5, 5, 300)
        top.plot(x, np.exp(-0.5 * x * x) / np.sqrt(2 * np.pi), color="C3", lw=1, label="N(0, 1)")
        top.set_xlabel(f"pull of {axis_label(lab).split(' (')[0]}: residual / $\\sigma$")
        top.set_ylabel("density")
        top.legend(loc="upper right", fontsize=6)
        observed = np.array([np.mean(np.abs(pull) < kk) for kk in k])
        bottom.plot(k, erf(k / np.sqrt(2)), color="C3", lw=1, label="Gaussian")
        bottom.plot(k, observed, color="k", lw=1.2, label="observed")
        for kk in (1, 2, 3):
            frac = np.mean(np.abs(pull) < kk)
            bottom.plot([kk], [frac], "o", color="k", ms=3)
            bottom.annotate(f"{100 * frac:.1f}%\n({100 * erf(kk / np.sqrt(2)):.1f}%)", (kk, frac),
                            xytext=(-22 if kk == 3 else 3, -22), textcoords="offset points", fontsize=6)
        bottom.set_xlabel("interval half-width (in $\\sigma$)")
        bottom.set_ylabel("fraction of stars inside")
        bottom.set_ylim(0, 1.02)
        bottom.legend(loc="lower right", fontsize=6)
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
