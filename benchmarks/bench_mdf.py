"""Metallicity distributions that keep the tail: fractions below [Fe/H] = -1, -1.5, -2, median and width,
unfolded through the model's measured response (photofeh mdf's default) against extreme deconvolution of the
estimates with their own errors (the method before issue 25), on real and mock stars with known answers.

- green2020: the Green et al. 2021 stars, the model of configs/green2020.toml trained on the 70% outside
  the fixed test split (its validation stars are the calibration sample), the 30% test stars' MDF against
  their labels, for estimates with the labels prior and with it divided out (``predict --prior flat``).
- mock survey: the default model (configs/default.toml, noise-aware) trained on a SEGUE-like labelled mock,
  a survey-depth mock (14 < r < 22.5, |b| > 20) predicted and mapped as the demo does; each |Z| slice's MDF
  of the mapped dwarfs against the mock's true [Fe/H] of the same stars, through the calibration stars as
  configs/default.toml keeps them and weighted by 1 / their targeting probability (train's selection_column,
  as make demo trains); each slice
  diagnosed (the same stars through other responses: its own stars', 200 EM steps, a flat start).
- coverage: labelled-mock test sets drawn with other seeds; how often each fraction's stated error covers
  its truth (68% nominal).

Usage: python benchmarks/bench_mdf.py [--epochs N] [--survey-stars N] [--seeds N]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import ROOT, green2020_split, labelled_mock, write_result

from photofeh.model.train_config import load_config

THRESHOLDS = ("-1", "-1.5", "-2")
SLICES = (0.0, 1.0, 2.0, 4.0, 6.0, 10.0, 15.0)
# The calibration sample's [Fe/H] are the labels (SSPP-like, with errors); the unfolding takes the labels' errors
# out where it knows them, so its distribution should be the true one: coverage is checked against both.
REFERENCES = {"feh_spec": "the labels", "feh_true": "the true [Fe/H]"}
PARTS = ("green2020", "mock", "coverage")


def default_config(epochs: int):
    """configs/default.toml (noise-aware) with ``epochs``, one thread, no baselines."""
    return replace(load_config(ROOT / "configs" / "default.toml"), epochs=epochs, baseline_rounds=0, threads=1)


def _compare(summary: dict, truth: np.ndarray, xd=None) -> dict:
    """Fractions (value, error, truth) and median/width against the truth, for the unfolded summary and,
    if given, the XD mixture of the same estimates."""
    row = {"stars": int(truth.size), "median": round(summary["median"], 3),
           "median truth": round(float(np.median(truth)), 3), "width": round(summary["width"], 3),
           "width truth": round(float(np.std(truth)), 3)}
    for k in THRESHOLDS:
        f = summary["fraction_below"][k]
        true = float(np.mean(truth < float(k)))
        row[f"below {k}"] = round(f["value"], 4)
        row[f"below {k} error"] = round(f["error"], 4)
        row[f"below {k} truth"] = round(true, 4)
        row[f"below {k} ok"] = bool(abs(f["value"] - true) <= max(0.25 * true, 2 * f["error"]))
        if xd is not None:
            row[f"below {k} XD"] = round(float(xd.cdf(float(k))), 4)
    if xd is not None:
        row["median XD"], row["width XD"] = round(xd.median, 3), round(xd.std, 3)
    return row


def _unfold_and_xd(est, err, response, n_boot: int, seed: int = 0, teff=None):
    from photofeh.galaxy.mdf import BinnedEstimates, MixtureMDF
    from photofeh.galaxy.unfold import unfold_mdf

    b = BinnedEstimates()
    b.add(est, err, teff)
    return unfold_mdf(b, response, n_boot=n_boot, seed=seed), MixtureMDF.from_dict(b.summary(n_boot=0)["mixture"])


def green2020(epochs: int) -> dict:
    import json

    from photofeh.galaxy.unfold import ResponseSample
    from photofeh.model.predict import load_model
    from photofeh.model.train import train

    fit, held = green2020_split()
    # the real-data model of configs/green2020.toml, fitted on the 70% outside the fixed test split, as one network
    # (the configuration's ensemble of 5 sharpens the estimates by a few per cent; what is measured here is the
    # unfolding, and one network keeps this bench's runs comparable with those before it)
    cfg = replace(load_config(ROOT / "configs" / "green2020.toml"), split=(0.8, 0.2, 0.0), split_seed=None,
                  table_preset=None, epochs=epochs, baseline_rounds=0, threads=1, ensemble=1, patience=15)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        train(fit, cfg, Path(tmp) / "run", log=lambda s: None)
        meta = json.loads((Path(tmp) / "run" / "model" / "model.json").read_text())
        label = held["feh_spec"].to_numpy()
        for prior in ("labels", "flat"):
            pred = load_model(Path(tmp) / "run", prior=prior).predict(held)
            ok = pred["usable"].to_numpy(bool) & np.isfinite(label)
            response = ResponseSample.from_meta(meta, prior)
            s, xd = _unfold_and_xd(pred["feh"].to_numpy()[ok], pred["feh_err"].to_numpy()[ok], response, 200,
                                   teff=pred["teff"].to_numpy()[ok])
            out[f"test split, {prior} prior"] = {**_compare(s, label[ok], xd),
                                                 "calibration stars": s["calibration_stars"]}
    return out


def mock_survey(epochs: int, survey_stars: int) -> tuple[dict, dict, dict]:
    """The demo's |Z| slices of a survey-depth mock against the truth of the same stars, unfolded through the
    default model's calibration stars as configs/default.toml keeps them (no targeting weights) and
    weighted by the inverse of the labelled mock's targeting probabilities (train's ``selection_column`` =
    ``spec_target_probability``; the network is the same, only model.json's calibration weights differ), and
    each slice diagnosed (:func:`_diagnose`)."""
    import json

    import pandas as pd
    import pyarrow.dataset as ds

    from photofeh.cli import main
    from photofeh.galaxy.unfold import ResponseSample
    from photofeh.model.train import train
    from photofeh.simulate.survey import MockSurveyConfig, simulate

    spec = labelled_mock(20_000, seed=2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train(spec, replace(default_config(epochs), selection_column="spec_target_probability"), tmp / "run",
              log=lambda s: None)
        simulate(MockSurveyConfig(n_stars=survey_stars, seed=1), tmp / "survey.parquet")
        args = ["predict", str(tmp / "run"), str(tmp / "survey.parquet"), "--out", str(tmp / "pred"), "--quiet",
                "--keep", "sdss_r", "ebv", "parallax", "parallax_error"]
        assert main(args) == 0
        model_json = tmp / "run" / "model" / "model.json"
        meta = json.loads(model_json.read_text())
        plain = {**meta, "calibration_sample": {k: v for k, v in meta["calibration_sample"].items()
                                                if k != "selection_weight"}}
        reports = {}
        for name, m in (("weighted", meta), ("plain", plain)):  # the map reads the response from model.json
            model_json.write_text(json.dumps(m))
            assert main(["map", str(tmp / "pred"), "--out", str(tmp / name), "--r-max", "25", "--z-max", "15",
                         "--slices", *map(str, SLICES), "--no-figures", "--stars", str(tmp / "stars.parquet"),
                         "--overwrite"]) == 0
            reports[name] = json.loads((tmp / name / "map.json").read_text())
        stars = pd.read_parquet(tmp / "stars.parquet", columns=["in_map", "z_kpc"])
        truth = pd.read_parquet(tmp / "survey.parquet", columns=["feh_true"])["feh_true"].to_numpy()
        pred = ds.dataset(str(tmp / "pred")).to_table(columns=["feh", "feh_err", "teff"]).to_pandas()
    z, in_map = np.abs(stars["z_kpc"].to_numpy()), stars["in_map"].to_numpy()
    dwarfs = ~np.asarray(meta["calibration_sample"]["giant"], bool)  # the map's selection (--giants exclude)
    responses = {name: ResponseSample.from_meta(m).subset(dwarfs) for name, m in (("plain", plain), ("weighted", meta))}
    diagnosis = _diagnose(responses, pred, truth, z, in_map)
    return (_slices(reports["plain"], pred, truth, z, in_map), _slices(reports["weighted"], pred, truth, z, in_map),
            diagnosis)


def _slices(report: dict, pred, truth: np.ndarray, z: np.ndarray, in_map: np.ndarray) -> dict:
    """Each |Z| slice of a map.json against the true [Fe/H] of its stars, beside XD of the same estimates."""
    from photofeh.galaxy.mdf import BinnedEstimates, MixtureMDF

    out = {}
    for row in report["mdf_by_abs_z"]:
        lo, hi = row["abs_z_kpc"]
        sel = in_map & (z >= lo) & (z < hi)
        if "fraction_below" not in row or sel.sum() < 100:
            continue
        b = BinnedEstimates()
        b.add(pred["feh"].to_numpy()[sel], pred["feh_err"].to_numpy()[sel])
        xd = MixtureMDF.from_dict(b.summary(n_boot=0)["mixture"])
        cmp = _compare(row, truth[sel], xd)
        cmp["median ok"] = bool(abs(row["median"] - np.median(truth[sel])) <= 0.05)
        cmp["width ok"] = bool(abs(row["width"] / np.std(truth[sel]) - 1) <= 0.2)
        out[f"|Z| {lo:g}-{hi:g} kpc"] = cmp
    return out


def _diagnose(responses: dict, pred, truth: np.ndarray, z: np.ndarray, in_map: np.ndarray) -> dict:
    """Why a slice's unfolded median or width misses its truth: half of the slice's stars (seeded) unfolded
    through other responses (no bootstrap), and the responses' mean estimate at the slice's true median.

    - 'calibration': the model's calibration stars (dwarfs) as the demo has them;
    - 'targeting-weighted': the same weighted by 1 / their targeting probability (ResponseSample's design
      weights);
    - 'own response': the response of the mock survey's own mapped stars of the slice (their true [Fe/H]; the
      other half), i.e. measured on the same population: what the unfolding gives when the response is right;
    - 'map response': that of the other half of the mapped stars of all slices (same matching in error and Teff);
    - '200 iterations' / 'flat start': the calibration response with 200 EM steps instead of
      unfold.ITERATIONS, or started from a flat distribution: the regularisation's share;
    - 'response shift': the calibration response's mean estimate minus the own response's, at the slice's true
      median [Fe/H] (negative: the calibration stars' estimates are lower at the same true [Fe/H], so the
      slice unfolds metal-rich); 'response shift, weighted': the same for the targeting-weighted calibration."""
    from photofeh.galaxy import unfold
    from photofeh.galaxy.mdf import BinnedEstimates
    from photofeh.galaxy.unfold import ResponseSample

    feh, err, teff = (pred[c].to_numpy() for c in ("feh", "feh_err", "teff"))
    half = np.random.default_rng(0).random(truth.size) < 0.5

    def survey(sel):
        return ResponseSample(truth[sel], feh[sel], err[sel], teff[sel])

    def em(b, response, iterations=unfold.ITERATIONS, flat=False):
        matched, _ = response.matched(b)
        resp, covered = matched.response()
        start = np.ones(unfold.TRUE_GRID.size) if flat else matched.label_start()
        saved, unfold.ITERATIONS = unfold.ITERATIONS, iterations
        try:
            p = unfold._em(resp, covered, b.counts.sum(axis=1).astype(float), start,
                           unfold._kernel(unfold.SMOOTHING_DEX))
        finally:
            unfold.ITERATIONS = saved
        return unfold.GridMDF(p), resp

    calibration = responses["plain"]
    out = {}
    for lo, hi in zip(SLICES[:-1], SLICES[1:], strict=True):
        sel = in_map & (z >= lo) & (z < hi)
        if sel.sum() < 200:
            continue
        b = BinnedEstimates()
        b.add(feh[sel & half], err[sel & half], teff[sel & half])
        t = truth[sel & half]
        row = {"stars (half)": int(t.size), "median truth": round(float(np.median(t)), 3),
               "width truth": round(float(np.std(t)), 3)}
        cases = {"calibration": em(b, calibration), "targeting-weighted": em(b, responses["weighted"]),
                 "own response": em(b, survey(sel & ~half)), "map response": em(b, survey(in_map & ~half)),
                 "200 iterations": em(b, calibration, 200), "flat start": em(b, calibration, flat=True)}
        for name, (g, _) in cases.items():
            row[f"median, {name}"], row[f"width, {name}"] = round(g.median, 3), round(g.std, 3)
        k = int(np.argmin(np.abs(unfold.TRUE_GRID - np.median(t))))
        mean = {name: float(cases[name][1][k] @ unfold.EST_GRID / cases[name][1][k].sum()) for name in cases}
        row["response shift"] = round(mean["calibration"] - mean["own response"], 3)
        row["response shift, weighted"] = round(mean["targeting-weighted"] - mean["own response"], 3)
        out[f"|Z| {lo:g}-{hi:g} kpc"] = row
    return out


def coverage(epochs: int, seeds: int, models: int = 1) -> dict:
    """Labelled-mock test sets of other seeds, unfolded with the model's response: how often |f - truth| is
    within the stated error (68% nominal) and within twice it (95%). With ``models`` > 1 each test set is unfolded
    through the responses of ``models`` networks (network and split seeds 0..models-1, so each has its own
    calibration stars): every test set of one model shares that model's response, so one model alone measures
    the coverage of the stars' half of the error, and several measure the response's half too."""
    import json

    from photofeh.galaxy.unfold import ResponseSample
    from photofeh.model.predict import load_model
    from photofeh.model.train import train

    spec = labelled_mock(20_000, seed=2)
    tests = [labelled_mock(3000, seed=1000 + seed) for seed in range(seeds)]
    hits1 = {(r, k): 0 for r in REFERENCES for k in THRESHOLDS}
    hits2 = dict(hits1)
    offsets: dict = {key: [] for key in hits1}
    for m in range(models):
        with tempfile.TemporaryDirectory() as tmp:
            train(spec, replace(default_config(epochs), seed=m), Path(tmp) / "run", log=lambda s: None)
            meta = json.loads((Path(tmp) / "run" / "model" / "model.json").read_text())
            response = ResponseSample.from_meta(meta)
            model = load_model(Path(tmp) / "run")
            per_model: dict = {key: [] for key in hits1}
            for seed, test in enumerate(tests):
                pred = model.predict(test)
                ok = pred["usable"].to_numpy(bool)
                s, _ = _unfold_and_xd(pred["feh"].to_numpy()[ok], pred["feh_err"].to_numpy()[ok], response, 100,
                                      seed, pred["teff"].to_numpy()[ok])
                for ref in REFERENCES:
                    t = test[ref].to_numpy()[ok]
                    for k in THRESHOLDS:
                        d = s["fraction_below"][k]["value"] - np.mean(t < float(k))
                        hits1[ref, k] += int(abs(d) <= s["fraction_below"][k]["error"])
                        hits2[ref, k] += int(abs(d) <= 2 * s["fraction_below"][k]["error"])
                        per_model[ref, k].append(d)
            for key, values in per_model.items():
                offsets[key].append(float(np.mean(values)))
    n = seeds * models
    out = {}
    for ref in REFERENCES:
        for k in THRESHOLDS:
            row = {"seeds": seeds, "mean offset": round(float(np.mean(offsets[ref, k])), 4),
                   "within 1 error": round(hits1[ref, k] / n, 2), "within 2 errors": round(hits2[ref, k] / n, 2)}
            if models > 1:
                row |= {"models": models, "mean offset per model": [round(o, 4) for o in offsets[ref, k]]}
            out[f"below {k} against {REFERENCES[ref]}"] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--survey-stars", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--coverage-models", type=int, default=1,
                    help="networks (seeds 0..N-1) whose responses the coverage part unfolds every test set through")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                    help="rerun only these parts; the others are kept from the last result file")
    args = ap.parse_args()
    import json

    from _common import RESULTS

    last = RESULTS / "mdf.json"
    figures = json.loads(last.read_text())["figures"] if last.is_file() else {}
    if "green2020" in args.parts:
        figures["green2020"] = green2020(args.epochs)
    if "mock" in args.parts:
        (figures["mock survey, slices without targeting weights"],
         figures["mock survey, slices with targeting weights"],
         figures["mock survey, slices diagnosed"]) = mock_survey(args.epochs, args.survey_stars)
    if "coverage" in args.parts:
        key = "coverage over seeds (labelled mock)"
        if args.coverage_models > 1:
            key = f"coverage over seeds and {args.coverage_models} models (labelled mock)"
        figures[key] = coverage(args.epochs, args.seeds, args.coverage_models)
    notes = ("Unfolded: photofeh mdf's default (photofeh.galaxy.unfold), errors from 200 (green2020), 50 (slices) "
             "or 100 (coverage) bootstrap resamples of both the stars and the calibration sample. XD: the same "
             "estimates deconvolved with their own errors, the method before issue 25. 'ok': within 25% of the "
             "truth or within twice the error, whichever is larger (the issue's test for real stars). Slices: "
             "'median ok' within 0.05 dex, 'width ok' within 20% (the issue's targets for the mock). 'With targeting "
             "weights': the same network, its calibration stars weighted by 1 / spec_target_probability (train's "
             "selection_column = spec_target_probability). 'Diagnosed': half of each slice's stars, no bootstrap "
             "(bench_mdf._diagnose). Coverage: labelled-mock test sets are targeted as the calibration stars are, "
             "so no weights.")
    write_result("mdf", "Metallicity distributions: fractions of the metal-poor tail, unfolded vs deconvolved",
                 figures, notes)


if __name__ == "__main__":
    main()
