"""Metrics for predicted stellar parameters (the figures drawn from them: :mod:`photofeh.report.eval_figures`).

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
from photofeh.io.catalog import atomic_output
from photofeh.io.validation import clean_columns
from photofeh.model.features import as_columns, feature_matrix

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
        for k in (1, 2, 3):  # coverage of the k-sigma intervals; a Gaussian gives 68.3, 95.4 and 99.7%
            out[f"frac_within_{k}sigma"] = float(np.mean(np.abs(pull) < k))
    return out


MIN_BIN_STARS = 20  # the fewest stars a bin of binned_metrics holds (sparser bins are merged)
MAX_EXTRA_BINS = 50  # binned_metrics extends its grid by at most this many steps each way, then opens the end bin


def binned_metrics(pred, ref, by: np.ndarray, edges, min_count: int = MIN_BIN_STARS) -> list[dict]:
    """Regression metrics in bins of another quantity (magnitude, colour, true [Fe/H]), every star with a
    finite prediction, reference and ``by`` in exactly one bin: the grid ``edges`` is extended by its step
    to the extreme stars (the end bins then reach them), and a bin of fewer than ``min_count`` stars is merged
    with its smaller neighbour until all hold ``min_count`` (none when the stars are fewer). Each bin gives
    its edges (``lo``, ``hi``; the last one closed), ``n``, the median of ``by`` (``x_median``) and the metrics;
    the ``n`` add up to the stars."""
    pred, ref, by = (np.asarray(a, float) for a in (pred, ref, by))
    ok = np.isfinite(pred) & np.isfinite(ref) & np.isfinite(by)
    if ok.sum() < max(min_count, 1):
        return []
    pred, ref, by = pred[ok], ref[ok], by[ok]
    e = np.asarray(edges, float)
    step = float(e[1] - e[0]) if e.size > 1 else 1.0
    below = min(int(np.ceil((e[0] - by.min()) / step - 1e-9)), MAX_EXTRA_BINS) if by.min() < e[0] else 0
    above = min(int(np.ceil((by.max() - e[-1]) / step - 1e-9)), MAX_EXTRA_BINS) if by.max() > e[-1] else 0
    e = np.concatenate([e[0] - step * np.arange(below, 0, -1), e, e[-1] + step * np.arange(1, above + 1)])
    if below:  # an extended end bin reaches the extreme star exactly (past MAX_EXTRA_BINS steps: open)
        e[0] = by.min()
    if above:
        e[-1] = by.max()
    idx = np.clip(np.searchsorted(e, by, side="right") - 1, 0, e.size - 2)
    counts = np.bincount(idx, minlength=e.size - 1)
    groups = [[i, i + 1, int(c)] for i, c in enumerate(counts) if c > 0]  # [first edge, last edge, stars]
    while len(groups) > 1 and min(g[2] for g in groups) < min_count:
        i = min(range(len(groups)), key=lambda k: groups[k][2])
        j = i - 1 if i == len(groups) - 1 or (i > 0 and groups[i - 1][2] <= groups[i + 1][2]) else i + 1
        a, b = sorted((i, j))
        groups[a:b + 1] = [[groups[a][0], groups[b][1], groups[a][2] + groups[b][2]]]
    out = []
    for first, last, _ in groups:
        sel = (idx >= first) & (idx < last)
        m = regression_metrics(pred[sel], ref[sel])
        out.append({"lo": float(e[first]), "hi": float(e[last]), "n": m["n"], "x_median": float(np.median(by[sel])),
                    "sigma_gauss": m["sigma_gauss"], "robust_sigma": m["robust_sigma"],
                    "bias_median": m["bias_median"]})
    return out


def class_metrics(is_pred: np.ndarray, is_true: np.ndarray) -> dict:
    """Confusion matrix, giant completeness and contamination."""
    ok = np.isfinite(is_true.astype(float))
    p, t = is_pred[ok].astype(bool), is_true[ok].astype(bool)
    tp, fp, fn, tn = int(np.sum(p & t)), int(np.sum(p & ~t)), int(np.sum(~p & t)), int(np.sum(~p & ~t))
    return {"confusion": {"giant_as_giant": tp, "dwarf_as_giant": fp, "giant_as_dwarf": fn, "dwarf_as_dwarf": tn},
            "giant_completeness": tp / max(tp + fn, 1), "giant_contamination": fp / max(tp + fp, 1)}


PARALLAX_REFERENCE_SNR = 10.0  # parallax-trained magnitudes are scored against parallaxes this precise


def parallax_inputs_of(model) -> list[str]:
    """The model's input features that carry the parallax (the ``parallax`` group of
    :func:`photofeh.model.missing.feature_groups`: ``parallax``, ``parallax_error`` ...)."""
    from photofeh.model.missing import feature_groups

    return [f for f, g in zip(model.features, feature_groups(model.features), strict=True) if g == "parallax"]


def _non_circular(model, cols, pred: dict, label_cols: dict) -> tuple[dict, dict, dict]:
    """No label is scored against itself: an absolute magnitude learned from the parallaxes is scored against
    M from the same parallaxes, so a model that takes the parallax as an input is scored on predictions made
    with that input hidden (a ``missing = "mask"`` model predicts from what a star has: it was trained with the
    parallax hidden at random), and not at all where it cannot be hidden (``missing = "require"``).

    Returns the predictions to score, the label columns of the labels to score, and per parallax label a note
    for the report (``{"scored": ..., "reference": ...}`` or ``{"not_scored": reason}``)."""
    notes: dict = {}
    plx_labels = [lab for lab in model.meta.get("parallax_labels", []) if lab in label_cols]
    if not plx_labels:
        return pred, label_cols, notes
    reference = (f"M from the test stars' own parallaxes, where parallax / error >= {PARALLAX_REFERENCE_SNR:g} "
                 "(zero point corrected; the cut keeps the nearer stars at fixed photometry, so even exact "
                 "magnitudes score too bright and pulls below 1 there: docs/real_data.md)")
    seen = parallax_inputs_of(model)
    if not seen:
        for lab in plx_labels:
            notes[lab] = {"scored": "on every test star with a precise parallax: the model does not take the "
                                    "parallax as an input", "reference": reference}
        return pred, label_cols, notes
    if not model.masked:
        label_cols = {k: v for k, v in label_cols.items() if k not in plx_labels}
        for lab in plx_labels:
            notes[lab] = {"not_scored": f"the model takes the parallax as an input ({', '.join(seen)}) and cannot "
                                        "predict without it (missing = \"require\"), so its M would be scored "
                                        "against M from the same parallaxes, i.e. against itself"}
        return pred, label_cols, notes
    hidden = dict(cols)
    for f in seen:
        hidden[f] = np.full(len(np.asarray(cols[f])), np.nan)
    blind = model.predict_columns(hidden)
    pred = dict(pred)
    for lab in plx_labels:
        for key in [k for k in blind if k == lab or k.startswith(f"{lab}_")]:
            pred[key] = blind[key]
        notes[lab] = {"scored": f"on predictions made with the parallax input hidden ({', '.join(seen)} set "
                                "missing): the model never saw the parallax it is scored against",
                      "reference": reference}
    return pred, label_cols, notes


def _with_parallax_references(cols, model) -> tuple[dict, dict]:
    """For labels learned from parallaxes (no label column), a reference column: M from the parallaxes with
    S/N >= 10, where inverting them is unbiased to ~1% in distance."""
    from photofeh.model.parallax_labels import mabs_from_parallax, parallax_inputs

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


def evaluate_model(model, table, rows: np.ndarray | None = None, out_dir: str | os.PathLike | None = None,
                   baselines=None, figures=None) -> dict:
    """Evaluate a loaded model on a labelled table: against spectroscopic labels and, on a mock, the truth.

    ``baselines``: the run's :class:`photofeh.model.baselines.RunBaselines` (fitted on the same training stars),
    scored on the same stars as the network, overall and in the same bins. ``out_dir``: also write
    ``test_metrics.json`` and, with ``figures``, the figures: ``figures(pred, cols, labels, label_columns,
    report, out_dir, baseline_pred)`` draws them and returns their paths (the ``evaluate`` command passes
    :func:`photofeh.report.eval_figures.draw_evaluation_figures`: this stage computes, the report stage
    draws)."""
    cols = as_columns(table)
    if rows is not None:
        cols = {k: np.asarray(v)[rows] for k, v in cols.items()}
    cols, replaced = clean_columns(cols, "evaluation table")  # a -9999 label must not enter the metrics
    cols, label_cols = _with_parallax_references(cols, model)
    check_label_columns(cols, model.labels, label_cols, "the evaluation table")
    pred = model.predict_columns(cols)  # validated above
    pred, label_cols, parallax_notes = _non_circular(model, cols, pred, label_cols)
    scored = [lab for lab in model.labels if lab in label_cols]
    usable = pred["usable"]
    report: dict = {"n_stars": int(usable.size), "n_usable": int(usable.sum()), "values_replaced": dict(replaced),
                    "labels": {}}
    not_scored = {lab: note["not_scored"] for lab, note in parallax_notes.items() if "not_scored" in note}
    if not_scored:
        report["not_scored"] = not_scored
    mag_name = "sdss_r" if "sdss_r" in cols else ("gaia_g" if "gaia_g" in cols else None)
    mag = np.asarray(cols[mag_name], float) if mag_name else None
    colour = (np.asarray(cols["sdss_g"], float) - np.asarray(cols["sdss_r"], float)) if "sdss_g" in cols else None
    feh_true = np.asarray(cols["feh_true"], float) if "feh_true" in cols else None
    feh_ref = feh_true if feh_true is not None else (
        np.asarray(cols[label_cols["feh"]], float) if "feh" in label_cols and label_cols["feh"] in cols else None)
    bins = {name: (by, edges) for name, by, edges in (
        (mag_name or "magnitude", mag, np.arange(14, 22.5, 1.0)), ("sdss_g-sdss_r", colour, np.arange(-0.4, 1.6, 0.2)),
        ("feh_true" if feh_true is not None else "feh_label", feh_ref, np.arange(-3.0, 0.75, 0.5))) if by is not None}
    report["bins"] = {name: [float(e) for e in edges] for name, (_, edges) in bins.items()}
    base_pred = {}
    if baselines is not None:
        X, _ = feature_matrix(cols, model.features, model.ebv_column, model.meta.get("deredden", True))
        base_pred = baselines.predict(X)
        report["baselines"] = {"fitted_on": "the run's training stars", **baselines.meta}
    for lab in scored:
        c = label_cols[lab]
        entry = dict(parallax_notes.get(lab, {}))
        ref = np.asarray(cols[c], float)
        ref_err = np.asarray(cols[f"{c}_err"], float) if f"{c}_err" in cols else None
        entry["vs_labels"] = regression_metrics(pred[lab], ref, pred[f"{lab}_err"], ref_err,
                                                outlier_dex=0.5 if lab == "feh" else None)
        truth_col = f"{lab}_true"
        if truth_col in cols and truth_col != c:
            entry["vs_truth"] = regression_metrics(pred[lab], np.asarray(cols[truth_col], float), pred[f"{lab}_err"],
                                                   outlier_dex=0.5 if lab == "feh" else None)
        entry["binned"] = {name: binned_metrics(pred[lab], ref, by, edges) for name, (by, edges) in bins.items()}
        for name, values in base_pred.items():
            if lab not in values:
                continue
            same = usable & np.isfinite(values[lab])  # the stars both can predict
            entry.setdefault("baselines", {})[name] = {
                "vs_labels": regression_metrics(values[lab][same], ref[same]),
                "network_same_stars": regression_metrics(pred[lab][same], ref[same]),
                "binned": {b: binned_metrics(values[lab][same], ref[same], by[same], edges)
                           for b, (by, edges) in bins.items()}}
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
            if feh_ref is not None:
                poor = usable & (feh_ref < -1.2)
                report["class"][f"vs_{name}_feh_below_-1.2"] = class_metrics(pred["is_giant"][poor], ref[poor])
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        drawn = figures(pred, cols, scored, label_cols, report, out, base_pred) if figures else []
        report["figures"] = sorted(p.name for p in drawn)
        with atomic_output(out / "test_metrics.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report
