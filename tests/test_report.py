"""The run report end to end (train -> evaluate -> predict -> map -> report), opened in a real headless
Chromium; the baselines stored in a run; the coverage panels; the calibration's coverage fractions."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from photofeh.cli import main
from photofeh.report.style import record_figures

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def reported(quick_model: Path, spec_catalog: pd.DataFrame, catalog: pd.DataFrame, tmp_path_factory) -> dict:
    """A copy of the quick run, evaluated, its model applied to the mock survey, mapped and reported."""
    tmp = tmp_path_factory.mktemp("report")
    run = tmp / "run"
    shutil.copytree(quick_model.parent, run)
    spec_catalog.to_parquet(tmp / "spec.parquet")
    catalog.iloc[:40_000].to_parquet(tmp / "survey.parquet")
    with record_figures() as drawn:  # what each figure shows, to hold against the table it came from
        assert main(["evaluate", str(run), str(tmp / "spec.parquet")]) == 0
        assert main(["predict", str(run), str(tmp / "survey.parquet"), "--out", str(tmp / "pred"), "--quiet",
                     "--keep", "sdss_r", "ebv", "parallax", "parallax_error"]) == 0
        assert main(["map", str(tmp / "pred"), "--out", str(tmp / "map"), "--min-count", "5", "--max-feh-err", "1",
                     "--max-rel-dist-err", "1", "--cell", "1", "--slices", "0", "1", "2", "4", "10"]) == 0
        assert main(["report", str(run), "--predictions", str(tmp / "pred"), "--map", str(tmp / "map")]) == 0
    return {"run": run, "html": run / "report.html", "map": tmp / "map", "tmp": tmp, "drawn": drawn,
            "spec": spec_catalog}


def test_report_is_self_contained_and_states_the_run(reported):
    page = reported["html"].read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    # training curves, residuals, 4 residual trends, calibration, confusion, coverage, 6 map figures
    assert len(images) >= 14
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from a network
    for section in ("summary", "training", "accuracy", "coverage", "map", "provenance"):
        assert f"id='{section}'" in page
    metrics = json.loads((reported["run"] / "test_metrics.json").read_text())
    sigma = metrics["labels"]["feh"]["vs_labels"]["sigma_gauss"]
    assert f"<td class='num'>{sigma:.4g}</td>" in page  # the accuracy table quotes test_metrics.json
    digest = json.loads((reported["map"] / "map.json").read_text())["predictions"]["model_digest"]
    assert digest in page and "another model" not in page
    assert (reported["run"] / "coverage.png").exists() and (reported["run"] / "coverage.pdf").exists()


def _clean(description: dict) -> None:
    assert description["overlapping_texts"] == [], description["overlapping_texts"]
    assert description["texts_outside"] == [], description["texts_outside"]
    assert all(p["legend_covers_points"] == 0 for p in description["panels"])


def test_every_report_figure_matches_its_table(reported, tmp_path):
    """Each figure embedded in the report, held against the table it was drawn from: test_metrics.json and the
    test stars for the evaluation figures, history.csv for the training curves, the predictions for the
    coverage, map.json for the maps. A figure the report embeds without a check here fails the test."""
    from photofeh.report.run_figures import history_figure

    page = reported["html"].read_text()
    stems = re.findall(r"<figcaption><b>([^<]+)</b>", page)
    drawn = dict(reported["drawn"])
    run = reported["run"]
    with open(run / "history.csv") as fh:  # train drew history.png before this module: drawn again, recorded
        import csv

        rows = [{k: (int(v) if k in ("member", "epoch") else float(v)) for k, v in r.items()
                 if k in ("member", "epoch", "train_loss", "val_loss")} for r in csv.DictReader(fh)]
    with record_figures() as again:
        history_figure(rows, tmp_path / "history")
    drawn.update(again)
    metrics = json.loads((run / "test_metrics.json").read_text())
    map_info = json.loads((reported["map"] / "map.json").read_text())
    split = pd.read_parquet(run / "split.parquet")
    test = reported["spec"][reported["spec"]["source_id"].isin(split.loc[split["split"] == "test", "source_id"])]
    in_map = map_info["counts"]["in the map"]
    label_columns = json.loads((run / "model" / "model.json").read_text())["label_columns"]
    checked = set()

    def check(stem: str) -> None:
        d = drawn[stem]
        _clean(d)
        panels = d["panels"]
        if stem == "history":
            hist = pd.DataFrame(rows)
            assert panels[0]["shown"]["members"] == hist["member"].nunique()
            assert panels[0]["shown"]["epochs"] == hist.groupby("member").size().to_dict()
        elif stem == "residuals":
            for j, lab in enumerate(metrics["labels"]):
                s = panels[2 * j]["shown"]
                n = metrics["labels"][lab]["vs_labels"]["n"]
                assert s["label"] == lab and s["stars"] == n and s["drawn"] + s["pinned"] == n
                assert panels[2 * j + 1]["shown"]["stars"] == n
                column = label_columns.get(lab)
                if column in test and s["pinned"] == 0 and n == len(test):  # the axes span the test stars' labels
                    lo, hi = panels[2 * j]["xlim"]
                    assert lo <= test[column].min() <= test[column].max() <= hi
                assert any(t.startswith(f"n = {n:,d}") for t in panels[2 * j]["texts"])
        elif stem.startswith("residual_trends_"):
            lab = stem.removeprefix("residual_trends_")
            n = metrics["labels"][lab]["vs_labels"]["n"]
            assert f"{n:,d} test stars" in d["suptitle"]
            for panel, name in zip(panels, metrics["labels"][lab]["binned"], strict=False):
                assert panel["shown"]["binned_by"] == name
                assert panel["shown"]["stars"]["network"] == n  # every test star in a bin
                bins = metrics["labels"][lab]["binned"][name]
                assert panel["xlim"][0] <= bins[0]["lo"] and panel["xlim"][1] >= bins[-1]["hi"]
                if name in test:
                    assert bins[0]["lo"] <= test[name].min() and bins[-1]["hi"] >= test[name].max()
        elif stem == "calibration":
            for panel, lab in zip(panels, metrics["labels"], strict=False):
                assert panel["shown"]["label"] == lab
                assert panel["shown"]["stars"] == metrics["labels"][lab]["vs_labels"]["n"]
        elif stem == "confusion":
            key = "vs_truth" if "vs_truth" in metrics["class"] else "vs_labels"
            assert panels[0]["shown"]["stars"] == sum(metrics["class"][key]["confusion"].values())
        elif stem == "coverage":
            total = 40_000  # the survey rows predicted; fewer than the report's 50,000: each read once
            assert f"{total:,d} stars to predict of {total:,d}" in d["suptitle"]
            meta = json.loads((run / "model" / "model.json").read_text())
            state = "dereddened" if meta.get("deredden", True) else "observed"
            assert all(state in p["xlabel"] for p in panels)
            for p in panels:
                assert p["shown"]["drawn"] + p["shown"]["pinned"] == p["shown"]["predicted"] <= total
        elif stem in ("feh_map", "feh_counts"):
            assert panels[0]["title"].startswith(f"{in_map:,d} stars")
            if stem == "feh_counts":
                assert panels[0]["shown"]["stars"] == in_map
        elif stem == "feh_scatter" or stem == "feh_map_deconvolved":
            assert panels[0]["shown"]["stars"] <= in_map
        elif stem == "feh_profile":
            assert 0 < panels[0]["shown"]["stars"] <= in_map
            lo, hi = panels[0]["shown"]["data_range"]
            assert panels[0]["ylim"][0] <= lo and panels[0]["ylim"][1] >= hi
        elif stem == "feh_mdf_slices":
            rows_ = map_info["mdf_by_abs_z"]
            assert [p["shown"]["stars"] for p in panels] == [r["stars"] for r in rows_]
            for p, r in zip(panels, rows_, strict=True):
                assert p["title"].endswith(f"{r['stars']:,d} stars")
                if r["stars"]:
                    a, b = p["shown"]["estimate_range"]
                    assert p["xlim"][0] <= a and p["xlim"][1] >= b
        elif stem == "feh_sky":
            assert panels[1]["shown"]["stars"] == in_map
            assert panels[1]["title"].startswith(f"{in_map:,d} mapped stars")
        else:
            raise AssertionError(f"no check for the report's figure {stem}")
        checked.add(stem)

    for stem in stems:
        check(stem)
    assert {"history", "residuals", "calibration", "confusion", "coverage", "feh_map", "feh_profile",
            "feh_mdf_slices", "feh_sky"} <= checked


def test_report_coverage_reads_each_star_once_and_says_observed(reported, tmp_path):
    """A model trained with deredden = false sees observed colours: the coverage axes say so. A catalogue of
    fewer rows than the report's sample is read whole, once (not 50,000 of 10,000); a larger one in 10
    blocks that do not overlap."""
    from photofeh.report.html import _coverage_sample
    from photofeh.report.run_figures import coverage_figure

    run = reported["run"]
    meta = json.loads((run / "model" / "model.json").read_text())
    provenance = {"input": str(reported["tmp"] / "survey.parquet")}
    survey = pd.read_parquet(reported["tmp"] / "survey.parquet", columns=["sdss_g"])
    for n_rows, expect in ((50_000, 40_000), (8_000, 8_000)):
        sample, what = _coverage_sample(provenance, meta, n_rows, len(survey))
        assert what.startswith(f"{expect:,d} of {len(survey):,d} stars")
        rows = np.column_stack([sample[f] for f in meta["features"]])
        full = rows[np.isfinite(rows).all(axis=1)]  # stars with every feature: none read twice
        assert len(rows) == expect and len(full) > 100 and np.unique(full, axis=0).shape[0] == len(full)
    observed = dict(meta, deredden=False)
    sample, _ = _coverage_sample(provenance, observed, 8_000, len(survey))
    labelled = pd.read_parquet(run / "labelled_sample.parquet")
    with record_figures() as drawn:
        coverage_figure(labelled, sample, meta["features"], tmp_path / "coverage", n_predicted_total=len(survey),
                        deredden=False)
    d = drawn["coverage"]
    assert f"8,000 stars to predict of {len(survey):,d}" in d["suptitle"]
    assert all("observed" in p["xlabel"] and "dereddened" not in p["xlabel"] for p in d["panels"])
    from photofeh.report.html import _summary

    assert "observed (deredden = false" in _summary(run, observed, {}, {})  # the model table says it too
    assert "dereddened (E(B-V)" in _summary(run, meta, {}, {}) and meta.get("deredden", True)


def test_report_refuses_what_is_not_a_run(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_report_opens_in_headless_chromium(reported, tmp_path):
    """Every figure loads and the console stays clean in Debian's Chromium (installed by .ci/run); without a
    browser this skips, except under CI=true, where a missing browser is a failure."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {missing} missing: .ci/run installs chromium and chromium-driver")
        pytest.skip(f"no headless browser here ({', '.join(missing)}): apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.get(reported["html"].resolve().as_uri())
        state = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);")
        n_img = len(re.findall(r"<img ", reported["html"].read_text()))
        assert len(state) == n_img >= 14
        assert all(complete and w > 100 and h > 100 for complete, w, h in state), state
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1200, min(int(height), 16000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 50_000
    finally:
        driver.quit()


def test_run_baselines_round_trip_and_recover_the_published_polynomial(tmp_path):
    """[Fe/H] made with the published Ivezic/Bond coefficients on colours inside the validity region: the refit
    recovers the coefficients' predictions to 0.01 dex; save/load gives the same predictions."""
    from photofeh.model.baselines import IVEZIC_BOND2010, RunBaselines, ivezic_feh, ivezic_valid

    rng = np.random.default_rng(5)
    ug, gr = rng.uniform(0.6, 2.0, 20_000), rng.uniform(0.2, 0.6, 20_000)
    keep = ivezic_valid(ug, gr)
    ug, gr = ug[keep], gr[keep]
    feh = ivezic_feh(ug, gr, IVEZIC_BOND2010)
    X = np.column_stack([ug, gr, rng.normal(size=ug.size)])
    Y = np.column_stack([feh, 4.0 + 0.1 * X[:, 2]])
    base = RunBaselines.fit(X, Y, ["sdss_u-sdss_g", "sdss_g-sdss_r", "parallax"], ["feh", "logg"], n_rounds=50)
    pred = base.predict(X)
    assert np.nanmax(np.abs(pred["Ivezic+08 form"]["feh"] - feh)) < 0.01
    assert np.std(pred["LightGBM"]["logg"] - Y[:, 1]) < 0.02
    base.save(tmp_path / "b")
    again = RunBaselines.load(tmp_path / "b").predict(X)
    for name in pred:
        for lab in pred[name]:
            np.testing.assert_allclose(again[name][lab], pred[name][lab], rtol=1e-12)
    assert RunBaselines.load(tmp_path / "nothing") is None


def test_coverage_fractions_of_a_calibrated_gaussian():
    from photofeh.model.evaluate import regression_metrics

    rng = np.random.default_rng(6)
    err = rng.uniform(0.1, 0.3, 200_000)
    m = regression_metrics(rng.normal(0, err), np.zeros(err.size), err)
    assert (m["frac_within_1sigma"], m["frac_within_2sigma"], m["frac_within_3sigma"]) == pytest.approx(
        (0.6827, 0.9545, 0.9973), abs=0.004)


def test_coverage_panels_of_the_default_features():
    from photofeh.model.features import DEFAULT_FEATURES
    from photofeh.report.run_figures import coverage_panels

    assert coverage_panels(DEFAULT_FEATURES) == [("sdss_g-sdss_r", "sdss_u-sdss_g"), ("ps1_g-ps1_r", "ps1_r-ps1_i"),
                                                 ("sdss_g-sdss_r", "sdss_g")]
    assert coverage_panels(["parallax"]) == []
