"""Figures about a training run itself: its learning curves, and its training coverage (where the stars to
predict lie against the labelled stars in colour-colour and colour-magnitude space).

A network extrapolates badly: a star far from every labelled star gets a confident but unfounded estimate
(the domain flag of :mod:`photofeh.model.domain` catches the worst). The coverage plots show a reader at a glance
which part of the catalogue the labelled set speaks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from photofeh.report.style import (
    CMAP_BACKGROUND,
    axis_label,
    draw_pinned,
    new_figure,
    save_figure,
    shown,
    span_range,
    styled,
)

__all__ = ["history_figure", "lr_range_figure", "coverage_panels", "coverage_figure"]


def history_figure(history: Sequence[dict], stem: str | Path) -> list[Path]:
    """Training and validation loss per epoch for every ensemble member (PNG and PDF)."""
    with styled():
        fig, axes = new_figure(1, 1, width="single", aspect=0.75)
        ax = axes[0, 0]
        for m in sorted({h["member"] for h in history}):
            hs = [h for h in history if h["member"] == m]
            ep = [h["epoch"] for h in hs]
            ax.plot(ep, [h["train_loss"] for h in hs], color=f"C{m}", lw=1, ls="--",
                    label="training" if m == 0 else None)
            ax.plot(ep, [h["val_loss"] for h in hs], color=f"C{m}", lw=1.2,
                    label="validation" if m == 0 else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (Gaussian NLL per star)")
        ax.set_title(f"{len({h['member'] for h in history})} ensemble member(s); colours: members", fontsize=8)
        ax.legend(loc="upper right")
        shown(ax, members=len({h["member"] for h in history}),
              epochs={m: sum(h["member"] == m for h in history) for m in {h["member"] for h in history}})
        return save_figure(fig, stem)


def lr_range_figure(lrs: Sequence[float], losses: Sequence[float], suggestion: float, path: str | Path) -> Path:
    """The learning-rate range test (:func:`photofeh.model.train_loop.lr_find`): the smoothed training loss
    against the rate, and the suggested max_lr; one file, its format from ``path``'s extension."""
    import matplotlib.pyplot as plt

    with styled():
        fig, axes = new_figure(1, 1, width="single", aspect=0.75)
        ax = axes[0, 0]
        ax.semilogx(lrs, losses, color="k", lw=1)
        ax.axvline(suggestion, color="C3", ls="--", label=f"suggested max_lr = {suggestion:.2g}")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed training loss")
        ax.legend()
        fig.savefig(path)
        plt.close(fig)
    return Path(path)


def _survey(feature: str) -> str:
    return feature.split("_", 1)[0]


def coverage_panels(features: Sequence[str]) -> list[tuple[str, str]]:
    """(x, y) feature pairs worth drawing: the first two colours (u-g against g-r for SDSS), two colours of
    another survey, and a colour-magnitude diagram when a magnitude is a feature."""
    from photofeh.bands import BANDS

    colours = [f for f in features if "-" in f]
    mags = [f for f in features if f in BANDS]
    panels = []
    if len(colours) >= 2:
        panels.append((colours[1], colours[0]) if colours[0].startswith("sdss_u") else (colours[0], colours[1]))
    other = [c for c in colours if _survey(c) != _survey(colours[0])] if colours else []
    if len(other) >= 2:
        panels.append((other[0], other[1]))
    if mags and colours:
        same = ([c for c in colours if c.split("-")[0] == mags[0]] or [c for c in colours if mags[0] in c.split("-")]
                or colours)  # g against g-r, as colour-magnitude diagrams are drawn
        panels.append((same[0], mags[0]))
    return panels


def coverage_figure(labelled, predicted, features: Sequence[str], stem: str | Path,
                    n_predicted_total: int | None = None, deredden: bool = True) -> list[Path]:
    """The predicted stars (grey-scale density) against the labelled ones (red contours enclosing 50, 90 and
    99% of them) in the panels of :func:`coverage_panels`; ``labelled`` and ``predicted`` map feature names
    to arrays as the model sees them: dereddened, or observed for a model trained with ``deredden = false``
    (``deredden``), as the axis labels say. The axes span every star; far outliers are pinned at the edge
    (triangles). Returns [] when no pair can be drawn."""
    panels = coverage_panels(features)
    if not panels:
        return []
    state = "dereddened" if deredden else "observed"
    n_pred = len(np.asarray(predicted[panels[0][0]]))
    n_lab = len(np.asarray(labelled[panels[0][0]]))
    with styled():
        fig, axes = new_figure(len(panels), 1, width=3.2 * len(panels), aspect=1.05)
        for ax, (fx, fy) in zip(axes[0], panels, strict=True):
            px, py = np.asarray(predicted[fx], float), np.asarray(predicted[fy], float)
            lx, ly = np.asarray(labelled[fx], float), np.asarray(labelled[fy], float)
            ok_p, ok_l = np.isfinite(px) & np.isfinite(py), np.isfinite(lx) & np.isfinite(ly)
            xr = span_range(np.concatenate([px[ok_p], lx[ok_l]]))
            yr = span_range(np.concatenate([py[ok_p], ly[ok_l]]))
            inside = ok_p & (px >= xr[0]) & (px <= xr[1]) & (py >= yr[0]) & (py <= yr[1])
            drawn = 0
            if inside.sum():
                hb = ax.hexbin(px[inside], py[inside], gridsize=50, bins="log", mincnt=1, cmap=CMAP_BACKGROUND,
                               extent=(*xr, *yr), linewidths=0)
                fig.colorbar(hb, ax=ax, label="stars to predict per hexagon", orientation="horizontal", pad=0.15)
                drawn = int(np.asarray(hb.get_array()).sum())
            pinned = draw_pinned(ax, px[ok_p], py[ok_p], xr, yr, color="0.3")
            pinned_labelled = draw_pinned(ax, lx[ok_l], ly[ok_l], xr, yr, color="C3")
            if ok_l.sum() >= 20:
                _contours(ax, lx[ok_l], ly[ok_l], xr, yr)
            ax.set_xlim(*xr)
            ax.set_ylim(*yr)
            if fy in _magnitudes():
                ax.invert_yaxis()
            ax.set_xlabel(axis_label(fx).replace(", mag)", f", {state}, mag)"))
            ax.set_ylabel(axis_label(fy).replace(", mag)", f", {state}, mag)"))
            if pinned or pinned_labelled:
                ax.text(0.03, 0.03, f"beyond the axes (triangles): {pinned:,d} to predict, {pinned_labelled:,d} "
                        "labelled", transform=ax.transAxes, fontsize=6)
            shown(ax, predicted=int(ok_p.sum()), drawn=drawn, pinned=pinned, labelled=int(ok_l.sum()),
                  pinned_labelled=pinned_labelled, state=state)
        total = f" of {n_predicted_total:,d}" if n_predicted_total else ""
        fig.suptitle(f"training coverage: {n_pred:,d} stars to predict{total} (grey)\nagainst "
                     f"{n_lab:,d} labelled training stars (red: contours enclosing 50, 90, 99%)", fontsize=8)
        shown(fig, predicted=n_pred, predicted_total=n_predicted_total, labelled=n_lab, state=state)
        return save_figure(fig, stem)


def _magnitudes() -> set[str]:
    from photofeh.bands import BANDS

    return set(BANDS)


def _contours(ax, x, y, xr, yr) -> None:
    """Contours of the 2-D histogram of (x, y) at the levels enclosing 50, 90 and 99% of the points."""
    from scipy.ndimage import gaussian_filter

    h, xe, ye = np.histogram2d(x, y, bins=60, range=(xr, yr))
    h = gaussian_filter(h, 1.0)
    flat = np.sort(h.ravel())[::-1]
    cum = np.cumsum(flat) / max(flat.sum(), 1e-12)
    levels = sorted({float(flat[min(np.searchsorted(cum, q), flat.size - 1)]) for q in (0.99, 0.90, 0.50)})
    levels = [lv for lv in levels if lv > 0]
    if len(levels) >= 1:
        ax.contour(0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1]), h.T, levels=levels, colors="C3",
                   linewidths=[0.6, 0.9, 1.3][-len(levels):])

