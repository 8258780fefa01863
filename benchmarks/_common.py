"""Shared helpers for benchmark scripts: machine facts, peak memory, result files.

Every benchmark writes ``benchmarks/results/<name>.json``; ``render.py``
turns those files into ``BENCHMARKS.md``. No figure is typed by hand.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict:
    """Where and with what the figures were measured."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {p: metadata.version(p) for p in ("photofeh", "numpy", "scipy", "astropy", "pyarrow", "torch",
                                                 "lightgbm")}
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1),
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


def mock_columns(config, workers: int = 2) -> dict:
    """A whole mock catalogue (photofeh.simulate.MockSurveyConfig) in memory, as one dict of numpy columns."""
    import numpy as np

    from photofeh.simulate import iter_chunks

    chunks = list(iter_chunks(config, chunk_size=10**9, workers=workers))
    return {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}


def write_result(name: str, title: str, figures: dict, notes: str = "", figure: str | None = None,
                 script: str | None = None) -> Path:
    """Write the result file; ``figure``: a PNG (path from the repository root) that BENCHMARKS.md shows;
    ``script``: the command that wrote it, where it is not ``benchmarks/bench_<name>.py``."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"name": name, "title": title, "figures": figures, "notes": notes, "machine": machine()}
    if figure:
        payload["figure"] = figure
    if script:
        payload["script"] = script
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return path


def merge_result(name: str, sections: dict, title: str | None = None, notes: str | None = None) -> Path:
    """Add ``sections`` to result file ``name``'s figures, keeping the file's other sections (other parts of the
    script, earlier runs under another tag); the file's title and notes stay unless given."""
    path = RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.exists() else {"title": name, "figures": {}, "notes": ""}
    return write_result(name, title or old["title"], {**old["figures"], **sections},
                        notes=old.get("notes", "") if notes is None else notes)


def median_seconds(fn, repeats: int = 7) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` in this process (the machine's speed drifts: never one run)."""
    import statistics

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                kids = (task / "children").read_text().split()
                stack.extend(int(k) for k in kids)
        except (OSError, ValueError):
            continue
    return total


def run_measured(cmd: list[str]) -> tuple[float, int, subprocess.CompletedProcess]:
    """Run ``cmd``; return wall seconds, peak summed RSS of its process tree, and the result."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_bytes(proc.pid))
            time.sleep(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    th.join()
    wall = time.perf_counter() - t0
    result = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode != 0:
        sys.stderr.write(err)
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}")
    return wall, peak[0], result


def _conftest():
    """tests/conftest.py, whose helpers find the real samples and build mocks as the tests do."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import conftest

    return conftest


def labelled_mock(stars: int, seed: int):
    """A SEGUE-like labelled mock set (spec-only mock survey) as a DataFrame, built in memory the way the
    tests build theirs (tests/conftest.py)."""
    from photofeh.simulate.survey import MockSurveyConfig

    return _conftest().catalog_frame(MockSurveyConfig(n_stars=stars, seed=seed, spec_only=True))


def real_sample_path(name: str) -> Path:
    """A file of the shared real samples (../shared/data/real), found as the tests find it."""
    return _conftest().real_data_dir() / name


def green2020_path() -> Path:
    """The shared Green et al. 2021 sample (``green2020_test_data_small.h5``), found as the tests find it."""
    return real_sample_path(_conftest().GREEN2020)


def segue_dr17_path() -> Path:
    """The shared SEGUE DR17 colours file (``segue_dr17_colours_feh.csv``), found as the tests find it."""
    return real_sample_path(_conftest().SEGUE_DR17)


def green2020_split():
    """The benchmarks' fixed split of the Green et al. 2021 sample as two DataFrames ``(fit, held)``: the 70%
    to train on (each model then draws its own training/validation split from them) and the 30% test stars of
    :func:`photofeh.io.real_samples.green2020_test_mask` (the stars ``train --split-seed 20201125`` holds out),
    both in file order with a fresh index."""
    from photofeh.io.real_samples import green2020_test_mask, read_green2020

    stars = read_green2020(green2020_path())
    test = green2020_test_mask(stars["source_id"].to_numpy())
    return stars[~test].reset_index(drop=True), stars[test].reset_index(drop=True)
