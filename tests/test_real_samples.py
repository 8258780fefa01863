"""Every real-data test finds the shared samples one way (conftest.real_sample) and, under CI=true, fails
instead of skipping when a sample is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REAL_SAMPLES, real_sample

TESTS = Path(__file__).resolve().parent
# Real-data tests that reach real_sample() before any expensive fixture: cheap to run against an empty folder.
CHEAP_REAL_TESTS = ["tests/test_green2020.py",
                    "tests/test_readers.py::test_real_sspp_table_through_its_preset",
                    "tests/test_readers.py::test_real_kepler_giants_through_their_preset",
                    "tests/test_reliability.py::test_values_real_samples_through_the_validation_layer",
                    "tests/test_training_set.py::test_build_training_set_from_real_sspp_labels"]


def test_no_test_module_builds_a_path_to_the_samples_of_its_own():
    """A sample's file name joined onto a folder, real_data_dir(), or a path to the shared folder built
    from the test's own location or the workplace's outside conftest.py is a second way to find the
    samples (tests/test_mock_loci.py had one, and skipped in a fresh clone while the others ran)."""
    names = "|".join(re.escape(n) for n in REAL_SAMPLES)
    own_way = re.compile(rf"/\s*[\"']({names})[\"']|real_data_dir\(|/work/shared"
                         r"|(parents\[\d+\]|parent)\s*/\s*[\"']shared")
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        if path.name in ("conftest.py", Path(__file__).name):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if own_way.search(line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "use conftest.real_sample(NAME) instead:\n" + "\n".join(offenders)


def _pytest(env_overrides: dict[str, str], empty: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PHOTOFEH_REAL_DATA")}
    env.update(PHOTOFEH_REAL_DATA=str(empty), **env_overrides)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *CHEAP_REAL_TESTS], cwd=TESTS.parent, env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_missing_sample_fails_under_ci_and_skips_elsewhere(tmp_path: Path, monkeypatch):
    """PHOTOFEH_REAL_DATA pointed at an empty folder: with CI=true every real-data test fails with a message
    naming the sample and where it was looked for (a pytest run of them); without CI, real_sample() skips with
    the same message, and since under CI every one of them failed there and nowhere else (none passed), each
    of them would be skipped: checked in this process, which saves a second pytest start-up (~4 s)."""
    empty = tmp_path / "no_samples"
    empty.mkdir()
    ci = _pytest({"CI": "true"}, empty)
    summary = ci.stdout.strip().splitlines()[-1]
    assert ci.returncode == 1 and "failed" in summary and "passed" not in summary and "skipped" not in summary, \
        ci.stdout[-3000:]
    assert f"CI=true: real sample green2020_test_data_small.h5 not found at {empty}" in ci.stdout
    assert "CI=true: real sample sspp_dr9_sample.fits not found" in ci.stdout
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("PHOTOFEH_REAL_DATA", str(empty))
    for name in REAL_SAMPLES:
        with pytest.raises(pytest.skip.Exception, match=f"real sample {re.escape(name)} not found at"):
            real_sample(name)
