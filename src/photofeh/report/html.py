"""``photofeh report``: one self-contained HTML page about a run, for a collaborator or a referee.

It reads only what the other commands wrote (the run folder, and optionally a prediction folder and a map
folder) and draws two figures of its own (training curves restyled, training coverage). Every figure is
embedded as a base64 PNG and the style sheet is inline, so the page opens offline, from an e-mail
attachment or a laptop, with nothing else beside it.
"""

from __future__ import annotations

import base64
import html
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from photofeh._version import __version__

__all__ = ["write_report", "REPORT_NAME", "COVERAGE_ROWS"]

REPORT_NAME = "report.html"
COVERAGE_ROWS = 50_000  # stars to predict drawn for the coverage plots, in 10 blocks spread through the input

CAPTIONS = {
    "feh_map": "Median [Fe/H] of the photometric estimates per cell of Galactocentric R and |Z| (cf. Ivezic et al. "
               "2008, fig. 9); blank cells hold fewer stars than the map's minimum count.",
    "feh_map_deconvolved": "Median of the deconvolved metallicity distribution per cell (estimates and their errors, "
                           "extreme deconvolution; photofeh.galaxy.mdf).",
    "feh_counts": "Stars per cell (logarithmic): where the map's medians come from.",
    "feh_scatter": "Spread of the estimates per cell, half the 16-84% range: intrinsic spread and measurement "
                   "error together.",
    "feh_profile": "Median [Fe/H] against |Z| near the Sun, with the Ivezic et al. 2008 disk and halo relations "
                   "and their mixture weighted by the Juric et al. 2008 densities (what a volume-complete sample "
                   "would show). Squares: deconvolved medians of the |Z| slices (all R).",
    "feh_mdf_slices": "Metallicity distributions in |Z| slices: the histogram of the estimates (grey) and the "
                      "deconvolved distribution (blue) with its median.",
    "feh_sky": "Median [Fe/H] (left) and counts (right) of the mapped stars in HEALPix pixels of Galactic (l, b), "
               "Mollweide projection, l = 0 at the centre and growing to the left.",
    "residuals": "Predictions against the references of the test stars (left; the axes span every star, the "
                 "metal-poor tail included, and far outliers are pinned at the edge as triangles) and the "
                 "residuals with a Gaussian least-squares fit (right; residuals beyond 5 robust sigma are counted "
                 "in the end bins); the baselines' sigma is quoted on the stars both can predict.",
    "calibration": "Calibration of the uncertainties: pulls (residual over the quoted error, label errors added "
                   "in quadrature) against N(0, 1), and the fraction of stars inside the 1, 2, 3 sigma intervals "
                   "(Gaussian values in brackets); pulls beyond +-5 are counted in the end bins.",
    "confusion": "Giant/dwarf confusion matrices, counts and fractions of each true class, for all test stars "
                 "and for the metal-poor ones ([Fe/H] < -1.2) the halo studies need.",
    "history": "Training (dashed) and validation (solid) loss per epoch; the checkpoint kept is the best "
               "validation epoch.",
    "coverage": "Training coverage: the stars to predict (grey density) against the labelled training stars "
                "(red contours enclosing 50, 90 and 99% of them), in the features as the model sees them "
                "(dereddened, or observed for a model trained with deredden = false, as the axes say); the "
                "axes span every star, far outliers pinned at the edge as triangles.",
}

STYLE = """
body{font-family:Georgia,'DejaVu Serif',serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;
line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #444;padding-bottom:.2em}h2{font-size:1.3em;margin-top:2em;
border-bottom:1px solid #bbb}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left}th{background:#f2f2f2}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.88em;color:#444}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:.5em .8em}.muted{color:#666;font-size:.9em}
nav a{margin-right:1em}code{background:#f4f4f4;padding:0 .2em}
"""


def _e(text) -> str:
    return html.escape(str(text))


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int | np.integer):
        return f"{int(v):,d}"
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return "-"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return str(v)


def _cell(value) -> str:
    """A table cell; numbers right-aligned in tabular figures so that columns of them line up."""
    numeric = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    return f"<td class='num'>{_e(_fmt(value))}</td>" if numeric else f"<td>{_e(_fmt(value))}</td>"


def _table(rows: list[list], header: list[str] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _caption(stem: str) -> str:
    if stem.startswith("residual_trends_"):
        return (f"Residuals of {stem.removeprefix('residual_trends_')} in bins of magnitude, colour and [Fe/H]: "
                "median (top) and robust sigma (bottom), the network beside the baselines fitted on the same "
                "training stars. Every test star is in a bin: the end bins reach the brightest, faintest and "
                "most metal-poor stars, and a bin of fewer than 20 stars is merged with its neighbour; each "
                "point sits at its bin's median.")
    return CAPTIONS.get(stem, "")


def _figure(path: Path) -> str:
    """A PNG embedded as a data URI (the page needs no file beside it)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(path.stem)}">'
            f"<figcaption><b>{_e(path.stem)}</b>. {_e(_caption(path.stem))}</figcaption></figure>")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------ sections
def _summary(run: Path, meta: dict, pred_info: dict, map_info: dict) -> str:
    import pandas as pd

    tr = meta.get("training", {})
    rows = [["labelled stars in the training table", tr.get("n_rows")],
            ["used for training", tr.get("n_train")], ["used for validation (checkpoint, calibration)",
                                                      tr.get("n_validation")]]
    if (run / "split.parquet").exists():
        split = pd.read_parquet(run / "split.parquet", columns=["split"])["split"].value_counts()
        rows.append(["held out for testing", int(split.get("test", 0))])
    rows += [["rows repeating a source_id", tr.get("duplicate_source_ids", 0)],
             ["values set to NaN by validation", sum(tr.get("values_replaced", {}).values())]]
    prior = meta.get("prior", {})
    model_rows = [["labels", ", ".join(meta.get("labels", []))], ["features", ", ".join(meta.get("features", []))],
                  ["photometry the model sees", "dereddened (E(B-V) from the column "
                   f"{meta.get('ebv_column', 'ebv')})" if meta.get("deredden", True) else
                   "observed (deredden = false: the model learns the extinction)"],
                  ["missing photometry", meta.get("missing", "require")],
                  ["architecture", json.dumps(meta.get("architecture", ""))],
                  ["ensemble members", tr.get("config", {}).get("ensemble")],
                  ["epochs run", ", ".join(str(e) for e in tr.get("epochs_run", []))],
                  ["training time (s)", tr.get("seconds")],
                  ["prior", f"{prior.get('kind', 'labels')} in {prior.get('label', 'feh')}"]]
    out = ["<h2 id='summary'>Data and cuts</h2>", "<h3>Training</h3>", _table(rows), "<h3>Model</h3>",
           _table(model_rows)]
    if pred_info:
        out += ["<h3>Predictions</h3>", _table([[k, v] for k, v in pred_info["counts"].items()])]
    if map_info:
        out += ["<h3>Map selection</h3><p class='muted'>Every star of the predictions is counted once, in the "
                "first cut that removes it.</p>", _table([[k, v] for k, v in map_info.get("counts", {}).items()])]
        if map_info.get("prior_warning"):
            out.append(f"<p class='note'>{_e(map_info['prior_warning'])}</p>")
    return "\n".join(out)


def _training(run: Path) -> str:
    import csv

    out = ["<h2 id='training'>Training curves</h2>"]
    if (run / "history.png").exists():  # the train command draws it with the same function
        return out[0] + _figure(run / "history.png")
    history = run / "history.csv"
    if not history.exists():
        return out[0] + "<p class='note'>history.csv is missing from the run.</p>"
    with open(history) as fh:
        rows = [{k: (int(v) if k in ("member", "epoch") else float(v)) for k, v in r.items() if k in
                 ("member", "epoch", "train_loss", "val_loss")} for r in csv.DictReader(fh)]
    from photofeh.report.run_figures import history_figure

    return out[0] + _figure(history_figure(rows, run / "history")[0])


def _accuracy(run: Path) -> str:
    out = ["<h2 id='accuracy'>Accuracy and calibration (test stars)</h2>"]
    metrics = _read_json(run / "test_metrics.json")
    if not metrics:
        return out[0] + ("<p class='note'>No test metrics in the run: run <code>photofeh evaluate RUN TABLE</code> "
                         "(it scores the run's held-out test stars) and make the report again.</p>")
    out.append(f"<p>{metrics['n_usable']:,d} of {metrics['n_stars']:,d} test stars have every input the model "
               "needs. sigma: the Gaussian least-squares fit to the residual histogram (the reference system's "
               "figure of merit); robust sigma: 1.4826 x MAD; pull std: of residual / quoted error.</p>")
    rows = []
    for lab, entry in metrics["labels"].items():
        for ref in ("vs_labels", "vs_truth"):
            if ref in entry:
                m = entry[ref]
                rows.append([lab, ref.removeprefix("vs_"), m["n"], m["sigma_gauss"], m["robust_sigma"],
                             m["bias_median"], m.get("pull_std"), m.get("frac_within_1sigma"),
                             m.get("frac_within_2sigma"), m.get("frac_within_3sigma")])
    out.append(_table(rows, ["label", "against", "stars", "sigma", "robust sigma", "median bias", "pull std",
                             "within 1 sigma", "within 2 sigma", "within 3 sigma"]))
    base_rows = []
    for lab, entry in metrics["labels"].items():
        for name, b in entry.get("baselines", {}).items():
            base_rows.append([lab, name, b["vs_labels"]["n"], b["vs_labels"]["sigma_gauss"],
                              b["network_same_stars"]["sigma_gauss"], b["vs_labels"]["bias_median"],
                              b["network_same_stars"]["bias_median"]])
    if base_rows:
        info = metrics.get("baselines", {})
        out += [f"<h3>Baselines</h3><p>Fitted on the same {info.get('n_train', 0):,d} training stars as the "
                "network and scored on the same test stars (those both can predict; the Ivezic et al. 2008 "
                "form only inside its colour range).</p>",
                _table(base_rows, ["label", "baseline", "stars", "baseline sigma", "network sigma",
                                   "baseline bias", "network bias"])]
    for name in sorted(metrics.get("class", {})):
        c = metrics["class"][name]
        out.append(f"<p>Giant class {_e(name.removeprefix('vs_'))}: completeness "
                   f"{100 * c['giant_completeness']:.1f}%, contamination {100 * c['giant_contamination']:.1f}%.</p>")
    for stem in ["residuals", *sorted(p.stem for p in run.glob("residual_trends_*.png")), "calibration",
                 "confusion"]:
        if (run / f"{stem}.png").exists():
            out.append(_figure(run / f"{stem}.png"))
    return "\n".join(out)


def _coverage_sample(provenance: dict, meta: dict, n_rows: int, total: int) -> tuple[dict | None, str]:
    """Features of up to ``n_rows`` stars of the predictions' input catalogue of ``total`` rows: all of them
    when they are no more, else 10 blocks that do not overlap, spread through it (a catalogue sorted on the sky
    is sampled everywhere, without reading all of it). Each star is read at most once."""
    from photofeh.io.presets import apply_preset
    from photofeh.io.readers import CatalogReadError, iter_table
    from photofeh.model.features import feature_matrix, required_columns

    source = provenance.get("input", "")
    if not source or not Path(source).exists():
        return None, f"the predictions' input catalogue ({source or 'not recorded'}) is not here"
    features, ebv = meta["features"], meta.get("ebv_column", "ebv")
    preset = provenance.get("preset") or None
    try:
        if total <= n_rows:
            block, starts = max(total, 1), np.array([0])
        else:
            block = max(n_rows // 10, 1)
            starts = np.unique(np.linspace(0, total - block, 10).astype(int))  # >= block apart: no overlap
        parts = []
        for s in starts:
            raw = next(iter_table(source, chunk_size=block, start=int(s)), None)
            if raw is not None:
                parts.append(apply_preset(raw, preset, source)[0])
    except (CatalogReadError, KeyError, OSError) as exc:
        return None, f"cannot read {source}: {exc}"
    need = required_columns(features, ebv, meta.get("deredden", True))
    cols = {c: np.concatenate([p[c] for p in parts]) for c in parts[0] if c in need} if parts else {}
    X, _ = feature_matrix(cols, features, ebv, meta.get("deredden", True))
    return {f: X[:, j] for j, f in enumerate(features)}, f"{X.shape[0]:,d} of {total:,d} stars of {source}"


def _coverage(run: Path, meta: dict, pred_info: dict, out_dir: Path, n_rows: int) -> str:
    import pandas as pd

    from photofeh.report.run_figures import coverage_figure

    out = ["<h2 id='coverage'>Training coverage</h2>"]
    sample_path = run / "labelled_sample.parquet"
    if not sample_path.exists():
        return out[0] + "<p class='note'>The run has no labelled_sample.parquet (trained before photofeh kept it).</p>"
    labelled = pd.read_parquet(sample_path)
    provenance = pred_info.get("provenance", {})
    if not provenance:
        return out[0] + ("<p class='note'>No predictions given (<code>--predictions DIR</code>): the coverage plots "
                         "compare the stars to predict with the labelled ones.</p>")
    predicted, what = _coverage_sample(provenance, meta, n_rows, pred_info["counts"]["stars"])
    if predicted is None:
        return out[0] + f"<p class='note'>No coverage plots: {_e(what)}.</p>"
    paths = coverage_figure(labelled, predicted, meta["features"], out_dir / "coverage",
                            n_predicted_total=pred_info["counts"]["stars"], deredden=meta.get("deredden", True))
    out.append(f"<p class='muted'>Stars to predict: {_e(what)}.</p>")
    if paths:
        out.append(_figure(paths[0]))
    return "\n".join(out)


def _map(map_dir: Path, info: dict) -> str:
    out = ["<h2 id='map'>Maps</h2>"]
    if not info:
        return out[0] + f"<p class='note'>{_e(map_dir)} holds no map.json.</p>"
    opts = info.get("options", {})
    out.append(f"<p>{info.get('counts', {}).get('in the map', 0):,d} stars in the map; cells of {opts.get('cell')} "
               f"kpc shown with at least {opts.get('min_count')} stars; giants {_e(opts.get('giants'))}; [Fe/H] "
               f"error at most {opts.get('max_feh_err')} dex; distance error at most "
               f"{opts.get('max_rel_dist_err')}; absolute magnitudes from {_e(opts.get('absmag'))}.</p>")
    rows = [[f"{s['abs_z_kpc'][0]:g}-{s['abs_z_kpc'][1]:g}", s["stars"], s.get("median"), s.get("median_se"),
             s.get("width"), s.get("observed_median")] for s in info.get("mdf_by_abs_z", [])]
    if rows:
        out += ["<h3>Deconvolved metallicity distributions by |Z|</h3>",
                _table(rows, ["|Z| (kpc)", "stars", "median", "its error", "width (std)", "median of estimates"])]
    order = ["feh_map", "feh_map_deconvolved", "feh_counts", "feh_scatter", "feh_profile", "feh_mdf_slices",
             "feh_sky"]
    for stem in order:
        if (map_dir / f"{stem}.png").exists():
            out.append(_figure(map_dir / f"{stem}.png"))
    return "\n".join(out)


def _prediction_info(predictions: Path) -> dict:
    """Counts of a prediction output: stars, usable, in the training domain (one column pass)."""
    import pyarrow.dataset as ds

    from photofeh.scale.predict_catalog import read_provenance

    provenance = read_provenance(predictions)
    data = ds.dataset(str(predictions), format="parquet")
    names = set(data.schema.names)
    counts = {"stars": 0, "usable (every input present)": 0}
    if "in_domain" in names:
        counts["usable and inside the training domain"] = 0
    for batch in data.to_batches(columns=[c for c in ("usable", "in_domain") if c in names]):
        usable = batch.column("usable").to_numpy(zero_copy_only=False).astype(bool)
        counts["stars"] += len(usable)
        counts["usable (every input present)"] += int(usable.sum())
        if "in_domain" in names:
            counts["usable and inside the training domain"] += int(
                (usable & batch.column("in_domain").to_numpy(zero_copy_only=False).astype(bool)).sum())
    return {"provenance": provenance, "counts": counts}


def _provenance(run: Path, meta: dict, pred_info: dict, map_info: dict) -> str:
    from photofeh.scale.predict_catalog import model_digest

    model_dir = run / "model"
    rows = [["photofeh (this report)", __version__], ["photofeh (training)", meta.get("photofeh_version")],
            *[[k, v] for k, v in meta.get("versions", {}).items()],
            ["Python", platform.python_version()], ["platform", platform.platform()],
            ["model folder", str(model_dir.resolve())], ["model digest (SHA-256)", model_digest(model_dir)],
            ["training table ids (SHA-256)", meta.get("training", {}).get("table_ids_sha256")]]
    if pred_info:
        p = pred_info["provenance"]
        rows += [["predictions input", p.get("input")], ["predictions made", p.get("created")],
                 ["predictions' model digest", p.get("model_digest")], ["prior of the estimates",
                                                                        p.get("model_prior")]]
        if p.get("model_digest") and p.get("model_digest") != model_digest(model_dir):
            rows.append(["WARNING", "the predictions were made with another model than this run's"])
    if map_info:
        rows += [["map input", map_info.get("input")], ["map made", map_info.get("date")]]
        rows += [[f"frame: {k}", v] for k, v in map_info.get("frame", {}).items()]
    return "<h2 id='provenance'>Provenance</h2>" + _table(rows)


def write_report(run, predictions=None, map_dir=None, out=None, coverage_rows: int = COVERAGE_ROWS,
                 warnings: Sequence[str] = ()) -> Path:
    """Write the report of ``run`` (a ``photofeh train`` folder) to ``out`` (default ``run/report.html``);
    ``predictions``: a ``photofeh predict`` output; ``map_dir``: a ``photofeh map`` folder; ``warnings``: shown
    at the top of the page (e.g. predictions from an unfinished run), with the map's own."""
    from photofeh.io.catalog import atomic_output

    run = Path(run)
    if not (run / "model" / "model.json").exists():
        raise FileNotFoundError(f"{run} is not a run folder of 'photofeh train' (no model/model.json)")
    if predictions is not None and not Path(predictions).exists():
        raise FileNotFoundError(f"predictions {predictions} do not exist")
    if map_dir is not None and not (Path(map_dir) / "map.json").exists():
        raise FileNotFoundError(f"{map_dir} is not a 'photofeh map' folder (no map.json)")
    out = Path(out) if out else run / REPORT_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = json.loads((run / "model" / "model.json").read_text())
    pred_info = _prediction_info(Path(predictions)) if predictions is not None else {}
    map_info = _read_json(Path(map_dir) / "map.json") if map_dir is not None else {}
    warnings = [*warnings, *([map_info["incomplete_predictions"]["note"]]
                             if isinstance(map_info.get("incomplete_predictions"), dict) else [])]
    sections = [*(f"<p class='note'><b>WARNING</b>: {_e(w)}</p>" for w in warnings),
                _summary(run, meta, pred_info, map_info), _training(run), _accuracy(run),
                _coverage(run, meta, pred_info, out.parent, coverage_rows)]
    if map_dir is not None:
        sections.append(_map(Path(map_dir), map_info))
    sections.append(_provenance(run, meta, pred_info, map_info))
    nav = " ".join(f"<a href='#{a}'>{t}</a>" for a, t in (
        ("summary", "Data and cuts"), ("training", "Training"), ("accuracy", "Accuracy"), ("coverage", "Coverage"),
        *((("map", "Maps"),) if map_dir is not None else ()), ("provenance", "Provenance")))
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>photofeh report: {_e(run.name)}"
            f"</title><style>{STYLE}</style></head><body><h1>photofeh run report: {_e(run.name)}</h1>"
            f"<p class='muted'>{_e(run.resolve())}; made {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by photofeh "
            f"{__version__}.</p><nav>{nav}</nav>" + "\n".join(sections) + "</body></html>\n")
    with atomic_output(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
