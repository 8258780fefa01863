"""The command line: help, bad arguments, clean errors."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import pyarrow.parquet as pq

from photofeh.cli import main


def run(*args: str) -> subprocess.CompletedProcess:
    """The command as `photofeh` runs it (its entry point exits with main's code, argparse's errors exit 2),
    in this process: nine interpreter start-ups fewer. A traceback would fail the test itself."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return subprocess.CompletedProcess(["photofeh", *args], code, out.getvalue(), err.getvalue())


def test_help_lists_commands():
    r = run("--help")
    assert r.returncode == 0 and "simulate" in r.stdout
    r = run("simulate", "--help")
    assert r.returncode == 0 and "--n-stars" in r.stdout and "--spec-only" in r.stdout


def test_negative_n_is_refused(tmp_path: Path):
    r = run("simulate", "--n-stars", "-5", "--out", str(tmp_path / "x.parquet"))
    assert r.returncode == 2 and "integer from 1" in r.stderr and "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())


def test_unknown_band_is_refused(tmp_path: Path):
    r = run("simulate", "--n-stars", "5", "--select-band", "sdss_q", "--out", str(tmp_path / "x.parquet"))
    assert r.returncode == 2 and "unknown band 'sdss_q'" in r.stderr


def test_unwritable_path_is_refused(tmp_path: Path):
    r = run("simulate", "--n-stars", "5", "--out", str(tmp_path / "missing" / "x.parquet"))
    assert r.returncode == 1 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = run("simulate", "--n-stars", "5", "--out", str(tmp_path / "x.txt"))
    assert r.returncode == 1 and "cannot tell the format" in r.stderr


def test_bad_footprint_and_range_are_refused(tmp_path: Path):
    r = run("simulate", "--n-stars", "5", "--footprint", "sdss=min_q:3", "--out", str(tmp_path / "x.parquet"))
    assert r.returncode == 2 and "bad footprint term" in r.stderr
    r = run("simulate", "--n-stars", "5", "--mag-range", "22", "14", "--out", str(tmp_path / "x.parquet"))
    assert r.returncode == 1 and "bright < faint" in r.stderr


def test_simulate_writes_and_summarises(tmp_path: Path, capsys):
    out = tmp_path / "m.parquet"
    assert main(["simulate", "--n-stars", "2000", "--seed", "9", "--out", str(out), "--quiet",
                 "--footprint", "sdss=min_b:40,min_dec:0"]) == 0
    text = capsys.readouterr().out
    assert "stars: 2,000" in text and "populations:" in text
    t = pq.read_table(out).to_pandas()
    assert len(t) == 2000
    assert t.loc[t["b"] < 40, "sdss_r"].isna().all()


def test_missing_isochrone_grid_is_reported(tmp_path: Path):
    r = run("simulate", "--n-stars", "5", "--isochrones", str(tmp_path / "none.fits"),
            "--out", str(tmp_path / "x.parquet"))
    assert r.returncode == 1 and "none.fits does not exist" in r.stderr and "Traceback" not in r.stderr
