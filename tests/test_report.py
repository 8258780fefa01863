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

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def reported(quick_model: Path, spec_catalog: pd.DataFrame, catalog: pd.DataFrame, tmp_path_factory) -> dict:
    """A copy of the quick run, evaluated, its model applied to the mock survey, mapped and reported."""
    tmp = tmp_path_factory.mktemp("report")
    run = tmp / "run"
    shutil.copytree(quick_model.parent, run)
    spec_catalog.to_parquet(tmp / "spec.parquet")
    catalog.iloc[:40_000].to_parquet(tmp / "survey.parquet")
    assert main(["evaluate", str(run), str(tmp / "spec.parquet")]) == 0
    assert main(["predict", str(run), str(tmp / "survey.parquet"), "--out", str(tmp / "pred"), "--quiet",
                 "--keep", "sdss_r", "ebv", "parallax", "parallax_error"]) == 0
    assert main(["map", str(tmp / "pred"), "--out", str(tmp / "map"), "--min-count", "5", "--max-feh-err", "1",
                 "--max-rel-dist-err", "1", "--cell", "1"]) == 0
    assert main(["report", str(run), "--predictions", str(tmp / "pred"), "--map", str(tmp / "map")]) == 0
    return {"run": run, "html": run / "report.html", "map": tmp / "map", "tmp": tmp}


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
