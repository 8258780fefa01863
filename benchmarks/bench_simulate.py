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
    ap.add_argument("--repeats", type=int, default=3, help="runs of the full catalogue (the median is quoted)")
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("photofeh"))
    tmp = Path(tempfile.mkdtemp(prefix="photofeh-bench-"))
    figures = {}
    try:
        for label, n, extra, repeats in (("full catalogue", args.n_stars, [], args.repeats),
                                         ("spectroscopic training set", args.spec_n_stars, ["--spec-only"], 1)):
            out = tmp / "mock.parquet"
            runs = []
            for _ in range(repeats):
                wall, peak, _ = run_measured([exe, "simulate", "--n-stars", str(n), "--seed", "1", "--out",
                                              str(out), "--workers", str(args.workers), "--quiet", *extra])
                runs.append((wall, peak, out.stat().st_size))
                out.unlink()
            wall, peak, size = sorted(runs)[len(runs) // 2]
            figures[label] = {"stars": n, "workers": args.workers, "wall_s": round(wall, 1),
                              "stars_per_s": round(n / wall), "peak_memory_gib": round(peak / 2**30, 2),
                              "output_gib": round(size / 2**30, 2)}
            if repeats > 1:
                figures[label]["stars_per_s, each run"] = ", ".join(f"{n / r[0]:,.0f}" for r in runs)
            print(label, figures[label])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_result("simulate", "Mock survey generation (`photofeh simulate`)", figures,
                 notes="Wall time includes start-up (isochrone grid, density tables) and the Parquet "
                       "write; peak memory is the summed resident memory of the main and worker processes. The "
                       "full catalogue is run --repeats times (median quoted, every run listed): the machine's "
                       "speed drifts.")


if __name__ == "__main__":
    main()
