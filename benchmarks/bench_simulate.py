"""Throughput and peak memory of `photofeh simulate` (the mock survey).

Usage: python benchmarks/bench_simulate.py [--n-stars N] [--workers W]
Defaults reproduce the issue's target run: 20 million stars on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _common import run_measured, write_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-stars", type=int, default=20_000_000)
    ap.add_argument("--spec-n-stars", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("photofeh"))
    tmp = Path(tempfile.mkdtemp(prefix="photofeh-bench-"))
    figures = {}
    try:
        for label, n, extra in (("full catalogue", args.n_stars, []),
                                ("spectroscopic training set", args.spec_n_stars, ["--spec-only"])):
            out = tmp / "mock.parquet"
            wall, peak, _ = run_measured([exe, "simulate", "--n-stars", str(n), "--seed", "1", "--out", str(out),
                                          "--workers", str(args.workers), "--quiet", *extra])
            figures[label] = {"stars": n, "workers": args.workers, "wall_s": round(wall, 1),
                              "stars_per_s": round(n / wall), "peak_memory_gib": round(peak / 2**30, 2),
                              "output_gib": round(out.stat().st_size / 2**30, 2)}
            out.unlink()
            print(label, figures[label])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_result("simulate", "Mock survey generation (`photofeh simulate`)", figures,
                 notes="Wall time includes start-up (isochrone grid, density tables) and the Parquet "
                       "write; peak memory is the summed resident memory of the main and worker processes.")


if __name__ == "__main__":
    main()
