"""Shared mock catalogues: built once per test session, seeded."""

from __future__ import annotations

import os

# One CPU thread for PyTorch's operators, in this process and in every command the tests start (they inherit the
# variable; train's threads = 0 and predict's default honour it): OpenMP threads spin-wait, and on a 2-core
# machine beside any other busy process a 2-thread training took 20x the CPU time of a 1-thread one (4 epochs of
# 10,500 stars: 12-19 s against 0.6 s). The networks are small; a test gains nothing from a second thread.
os.environ["OMP_NUM_THREADS"] = "1"

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import settings

from photofeh.simulate import MockSurvey, MockSurveyConfig, iter_chunks

# Property tests draw the same examples on every run: a failure is reproducible, and CI is deterministic.
settings.register_profile("photofeh", derandomize=True, deadline=None)
settings.load_profile("photofeh")


def catalog_frame(config: MockSurveyConfig, survey: MockSurvey | None = None, chunk_size: int = 10**9,
                  workers: int = 1) -> pd.DataFrame:
    chunks = list(iter_chunks(config, chunk_size, workers, survey))
    return pd.DataFrame({c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]})


@pytest.fixture(scope="session")
def mock_survey() -> MockSurvey:
    return MockSurvey(MockSurveyConfig(n_stars=300_000, seed=7))


@pytest.fixture(scope="session")
def catalog(mock_survey: MockSurvey) -> pd.DataFrame:
    """300,000 stars of the default survey (|b| > 20, 14 < r < 22.5)."""
    return catalog_frame(mock_survey.config, mock_survey)


@pytest.fixture(scope="session")
def spec_catalog() -> pd.DataFrame:
    """A spectroscopic training set of 15,000 labelled stars."""
    return catalog_frame(MockSurveyConfig(n_stars=15_000, seed=11, spec_only=True))


@pytest.fixture(scope="session")
def quick_model(spec_catalog: pd.DataFrame, tmp_path_factory) -> Path:
    """The default network trained for 2 epochs: for tests of plumbing (prediction runs), not accuracy. Its run
    holds the baselines (the report draws them, test_bad_input damages their files): a 30-round LightGBM, fitted
    in a second where the default 3,000 rounds took 17 s of CPU."""
    from photofeh.model.train import TrainConfig, train

    run = tmp_path_factory.mktemp("quick_run")
    train(spec_catalog, TrainConfig(epochs=2, seed=3, batch_size=512, baseline_rounds=30), run, log=lambda s: None)
    return run / "model"


# The shared real survey samples (../shared/data/real/README.md); every real-data test finds them through
# real_sample(), the one finder, and benchmarks through real_data_dir().
GREEN2020 = "green2020_test_data_small.h5"
KEPLER_GIANTS = "kepler_giants_labels_photometry.txt"
SEGUE_DR17 = "segue_dr17_colours_feh.csv"
SSPP_DR9 = "sspp_dr9_sample.fits"
REAL_SAMPLES = (GREEN2020, KEPLER_GIANTS, SEGUE_DR17, SSPP_DR9)


def real_data_dir() -> Path:
    """The shared real survey samples: $PHOTOFEH_REAL_DATA when set (used as given, even if it does not
    exist), else ../shared/data/real beside the checkout, else the workplace's /work/shared/data/real (a
    fresh clone elsewhere still finds them)."""
    if os.environ.get("PHOTOFEH_REAL_DATA"):
        return Path(os.environ["PHOTOFEH_REAL_DATA"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
    for c in (beside, Path("/work/shared/data/real")):
        if c.is_dir():
            return c
    return beside


def real_sample(name: str) -> Path:
    """The path of one shared real sample (one of REAL_SAMPLES). A missing sample skips the calling test,
    except under CI=true (set by .ci/run), where it fails it: CI never passes by skipping the real data."""
    if name not in REAL_SAMPLES:
        raise ValueError(f"unknown real sample {name!r}; known: {', '.join(REAL_SAMPLES)}")
    path = real_data_dir() / name
    if not path.is_file():
        message = (f"real sample {name} not found at {path} (looked in $PHOTOFEH_REAL_DATA, ../shared/data/real "
                   "beside the checkout, /work/shared/data/real)")
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture()
def dataset_with_a_bad_file(catalog: pd.DataFrame, tmp_path: Path) -> Path:
    """Three files of 1,000 stars; in the middle one sdss_g holds text (a broken export)."""
    folder = tmp_path / "ds"
    folder.mkdir()
    for k in range(3):
        part = catalog.iloc[k * 1000:(k + 1) * 1000].copy()
        if k == 1:
            part["sdss_g"] = part["sdss_g"].map(lambda v: f"{v:.3f} mag")
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"part-{k}.parquet")
    return folder


@pytest.fixture(scope="module")
def usable_stars(catalog: pd.DataFrame) -> pd.DataFrame:
    """3,000 mock stars that have every feature of the default model (the network sees them all)."""
    need = ["sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z", "ps1_g", "ps1_r", "ps1_i", "ps1_z", "ps1_y",
            "gaia_g", "gaia_bp", "gaia_rp", "parallax", "parallax_error", "ebv"]
    ok = np.all(np.isfinite(catalog[need].to_numpy(float)), axis=1)
    return catalog[ok].iloc[:3000].reset_index(drop=True)
