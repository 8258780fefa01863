"""Metrics and diagnostic figures for predicted stellar parameters.

The figure of merit is the reference system's: the sigma of a Gaussian
least-squares fitted to the histogram of residuals (100 bins within +-5
robust sigma). Robust sigma is 1.4826 times the median absolute deviation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

from photofeh.bands import GAIA_PARALLAX_ZP_MAS
from photofeh.catalog import atomic_output
from photofeh.features import as_columns
from photofeh.validation import clean_columns

__all__ = ["gaussian_fit_sigma", "regression_metrics", "binned_metrics", "class_metrics", "evaluate_model",
           "check_label_columns"]


def robust_sigma(r: np.ndarray) -> float:
    r = r[np.isfinite(r)]
    return float(1.4826 * np.median(np.abs(r - np.median(r)))) if r.size else float("nan")


def gaussian_fit_sigma(r: np.ndarray, bins: int = 100) -> tuple[float, float]:
    """(mu, sigma) of a Gaussian least-squares fitted to the residual histogram within +-5 robust sigma."""
    r = r[np.isfinite(r)]
    if r.size < 20:
        return float("nan"), float("nan")
    med, rs = np.median(r), robust_sigma(r)
    if rs == 0:
        return float(med), 0.0
    h, edges = np.histogram(r, bins=bins, range=(med - 5 * rs, med + 5 * rs))
    x = 0.5 * (edges[1:] + edges[:-1])

    def g(x, a, mu, s):
        return a * np.exp(-0.5 * ((x - mu) / s) ** 2)

    try:
        (a, mu, s), _ = curve_fit(g, x, h, p0=(h.max(), med, rs), maxfev=5000)
    except RuntimeError:
        return float(med), float("nan")
    return float(mu), float(abs(s))


def regression_metrics(pred: np.ndarray, ref: np.ndarray, err: np.ndarray | None = None,
                       ref_err: np.ndarray | None = None, outlier_dex: float | None = None) -> dict:
    """Sigma (Gaussian fit), robust sigma, bias, outlier fractions and, with errors, calibration."""
    r = np.asarray(pred, float) - np.asarray(ref, float)
    ok = np.isfinite(r)
    r = r[ok]
    mu, sigma = gaussian_fit_sigma(r)
    rs = robust_sigma(r)
    out = {"n": int(ok.sum()), "sigma_gauss": sigma, "mu_gauss": mu, "robust_sigma": rs,
           "bias_median": float(np.median(r)) if r.size else float("nan"),
           "outlier_frac_3sigma": float(np.mean(np.abs(r - np.median(r)) > 3 * rs)) if r.size else float("nan")}
    if outlier_dex is not None:
        out[f"outlier_frac_{outlier_dex}"] = float(np.mean(np.abs(r) > outlier_dex)) if r.size else float("nan")
    if err is not None:
        total = np.asarray(err, float)[ok] ** 2
        if ref_err is not None:
            total = total + np.nan_to_num(np.asarray(ref_err, float)[ok]) ** 2
        pull = r / np.sqrt(total)
        out["pull_std"] = float(np.std(pull))
        out["pull_robust_sigma"] = robust_sigma(pull)
        out["frac_within_1sigma"] = float(np.mean(np.abs(pull) < 1))
    return out


def binned_metrics(pred, ref, by: np.ndarray, edges) -> list[dict]:
    """Regression metrics in bins of another quantity (magnitude, colour, true [Fe/H])."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (by >= lo) & (by < hi)
        if sel.sum() >= 20:
            m = regression_metrics(pred[sel], ref[sel])
            out.append({"lo": float(lo), "hi": float(hi), "n": m["n"], "sigma_gauss": m["sigma_gauss"],
                        "robust_sigma": m["robust_sigma"], "bias_median": m["bias_median"]})
    return out


def class_metrics(is_pred: np.ndarray, is_true: np.ndarray) -> dict:
    """Confusion matrix, giant completeness and contamination."""
    ok = np.isfinite(is_true.astype(float))
    p, t = is_pred[ok].astype(bool), is_true[ok].astype(bool)
    tp, fp, fn, tn = int(np.sum(p & t)), int(np.sum(p & ~t)), int(np.sum(~p & t)), int(np.sum(~p & ~t))
    return {"confusion": {"giant_as_giant": tp, "dwarf_as_giant": fp, "giant_as_dwarf": fn, "dwarf_as_dwarf": tn},
            "giant_completeness": tp / max(tp + fn, 1), "giant_contamination": fp / max(tp + fp, 1)}


PARALLAX_REFERENCE_SNR = 10.0  # parallax-trained magnitudes are scored against parallaxes this precise


def _with_parallax_references(cols, model) -> tuple[dict, dict]:
    """For labels learned from parallaxes (no label column), a reference column: M from the parallaxes with
    S/N >= 10, where inverting them is unbiased to ~1% in distance."""
    from photofeh.parallax_labels import mabs_from_parallax, parallax_inputs

    label_cols = dict(model.meta["label_columns"])
    cols = dict(cols)
    for lab in model.meta.get("parallax_labels", []):
        if "parallax" not in cols or "parallax_error" not in cols:
            continue  # check_label_columns then names the missing reference
        aux = parallax_inputs(cols, [lab], model.ebv_column, model.meta.get("deredden", True),
                              model.meta.get("parallax_zero_point_mas", GAIA_PARALLAX_ZP_MAS))
        name = f"{lab}_from_parallax"
        cols[name], cols[f"{name}_err"] = mabs_from_parallax(aux[:, 0], aux[:, 1], aux[:, 2], PARALLAX_REFERENCE_SNR)
        label_cols[lab] = name
    for lab in model.meta.get("parallax_labels", []):
        label_cols.setdefault(lab, "parallax")
    return cols, label_cols


def check_label_columns(cols, labels, label_columns: dict, source: str) -> None:
    """Every label's column is present and has at least one finite value; else a ``ValueError`` naming
    the columns (nothing is computed or written on a table that cannot be scored)."""
    missing = [label_columns[lab] for lab in labels if label_columns[lab] not in cols]
    if missing:
        raise ValueError(f"{source} lacks the label column(s) {missing} (labels {labels}); rename the table's "
                         "columns, or set label_columns in the config (docs/config.md)")
    empty = [label_columns[lab] for lab in labels
             if not np.isfinite(np.asarray(cols[label_columns[lab]], float)).any()]
    if empty:
        raise ValueError(f"{source}: label column(s) {empty} hold no finite value (after validation: sentinels "
                         "and impossible values are NaN)")


def evaluate_model(model, table, rows: np.ndarray | None = None, out_dir: str | os.PathLike | None = None) -> dict:
    """Evaluate a loaded model on a labelled table: against spectroscopic labels and, on a mock, the truth."""
    cols = as_columns(table)
    if rows is not None:
        cols = {k: np.asarray(v)[rows] for k, v in cols.items()}
    cols, replaced = clean_columns(cols, "evaluation table")  # a -9999 label must not enter the metrics
    cols, label_cols = _with_parallax_references(cols, model)
    check_label_columns(cols, model.labels, label_cols, "the evaluation table")
    pred = model.predict_columns(cols)  # validated above
    usable = pred["usable"]
    report: dict = {"n_stars": int(usable.size), "n_usable": int(usable.sum()), "values_replaced": dict(replaced),
                    "labels": {}}
    mag = cols.get("sdss_r", cols.get("gaia_g"))
    colour = (np.asarray(cols["sdss_g"], float) - np.asarray(cols["sdss_r"], float)) if "sdss_g" in cols else None
    feh_true = np.asarray(cols["feh_true"], float) if "feh_true" in cols else None
    for lab in model.labels:
        c = label_cols[lab]
        entry = {}
        ref = np.asarray(cols[c], float)
        ref_err = np.asarray(cols[f"{c}_err"], float) if f"{c}_err" in cols else None
        entry["vs_labels"] = regression_metrics(pred[lab], ref, pred[f"{lab}_err"], ref_err,
                                                outlier_dex=0.5 if lab == "feh" else None)
        truth_col = f"{lab}_true"
        if truth_col in cols and truth_col != c:
            entry["vs_truth"] = regression_metrics(pred[lab], np.asarray(cols[truth_col], float), pred[f"{lab}_err"],
                                                   outlier_dex=0.5 if lab == "feh" else None)
        entry["binned"] = {}
        if mag is not None:
            entry["binned"]["magnitude"] = binned_metrics(pred[lab], ref, np.asarray(mag, float),
                                                          np.arange(14, 22.5, 1.0))
        if colour is not None:
            entry["binned"]["g-r"] = binned_metrics(pred[lab], ref, colour, np.arange(-0.4, 1.6, 0.2))
        if feh_true is not None:
            entry["binned"]["feh_true"] = binned_metrics(pred[lab], ref, feh_true, np.arange(-3.0, 0.75, 0.5))
        report["labels"][lab] = entry
    if "is_giant" in pred:
        giant_ref = {}
        if "logg" in label_cols and label_cols["logg"] in cols:
            g = np.asarray(cols[label_cols["logg"]], float)
            giant_ref["labels"] = np.where(np.isfinite(g), g < model.meta.get("giant_logg", 3.5), np.nan)
        if "is_giant_true" in cols:
            giant_ref["truth"] = np.asarray(cols["is_giant_true"], float)
        report["class"] = {}
        for name, ref in giant_ref.items():
            report["class"][f"vs_{name}"] = class_metrics(pred["is_giant"][usable], ref[usable])
            if feh_true is not None or "feh" in label_cols:
                feh_ref = feh_true if feh_true is not None else np.asarray(cols[label_cols["feh"]], float)
                poor = usable & (feh_ref < -1.2)
                report["class"][f"vs_{name}_feh_below_-1.2"] = class_metrics(pred["is_giant"][poor], ref[poor])
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_output(out / "test_metrics.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
        _figures(pred, cols, model, out, report, label_cols)
    return report


def _figures(pred, cols, model, out: Path, report: dict, label_cols: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labs = model.labels
    fig, axes = plt.subplots(2, len(labs), figsize=(4 * len(labs), 7.5))
    axes = np.atleast_2d(axes)
    for j, lab in enumerate(labs):
        ref = np.asarray(cols[label_cols[lab]], float)
        p = pred[lab]
        ok = np.isfinite(ref) & np.isfinite(p)
        if ok.sum() < 2:  # nothing to draw: say so rather than fail
            for ax in axes[:, j]:
                ax.text(0.5, 0.5, f"{lab}: {int(ok.sum())} star(s) with a\nprediction and a label", ha="center",
                        va="center", transform=ax.transAxes)
            continue
        ax = axes[0, j]
        ax.hexbin(ref[ok], p[ok], gridsize=60, bins="log", mincnt=1, cmap="viridis")
        lo, hi = np.percentile(ref[ok], [0.5, 99.5])
        ax.plot([lo, hi], [lo, hi], "r-", lw=1)
        ax.set_xlabel(f"{label_cols[lab]}")
        ax.set_ylabel(f"predicted {lab}")
        r = p[ok] - ref[ok]
        mu, s = gaussian_fit_sigma(r)
        rs = robust_sigma(r)
        ax = axes[1, j]
        ax.hist(r, bins=100, range=(np.median(r) - 5 * rs, np.median(r) + 5 * rs), histtype="step", color="k")
        x = np.linspace(np.median(r) - 5 * rs, np.median(r) + 5 * rs, 200)
        width = 10 * rs / 100
        ax.plot(x, r.size * width / (s * np.sqrt(2 * np.pi)) * np.exp(-0.5 * ((x - mu) / s) ** 2), "r-")
        ax.text(0.03, 0.95, f"$\\mu$ = {mu:.3g}\n$\\sigma$ = {s:.3g}\nn = {r.size}", transform=ax.transAxes,
                va="top", fontsize=9)
        ax.set_xlabel(f"residual {lab}")
    fig.tight_layout()
    with atomic_output(out / "residuals.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    cls = report.get("class", {})
    key = "vs_truth" if "vs_truth" in cls else ("vs_labels" if "vs_labels" in cls else None)
    if key:
        c = cls[key]["confusion"]
        m = np.array([[c["dwarf_as_dwarf"], c["dwarf_as_giant"]], [c["giant_as_dwarf"], c["giant_as_giant"]]])
        fig, ax = plt.subplots(figsize=(4, 3.6))
        ax.imshow(m, cmap="Blues")
        for (i, k), v in np.ndenumerate(m):
            ax.text(k, i, f"{v}", ha="center", va="center")
        ax.set_xticks([0, 1], ["dwarf", "giant"])
        ax.set_yticks([0, 1], ["dwarf", "giant"])
        ax.set_xlabel("predicted")
        ax.set_ylabel(f"true ({key.removeprefix('vs_')})")
        fig.tight_layout()
        with atomic_output(out / "confusion.png") as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
