"""`photofeh map` throughput and memory: 5,000,000 predicted stars -> distances, R-|Z|, median [Fe/H] map.

Reuses the inputs of bench_predict.py (the all-usable 5M-star catalogue and its model), predicts them
with the photometry kept, then times the map command alone.

Usage: python benchmarks/bench_map.py [--n-stars N] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from _common import run_measured, write_result
from bench_predict import PHOTOFEH, ensure_inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-stars", type=int, default=5_000_000)
    ap.add_argument("--work", default="/tmp/photofeh_bench_predict")
    args = ap.parse_args()
    work = Path(args.work)
    _, usable, _, run = ensure_inputs(work, args.n_stars)
    pred, out = work / "pred_kept", work / "map_out"
    shutil.rmtree(pred, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)  # map refuses to replace an earlier run's output
    run_measured([PHOTOFEH, "predict", str(run), str(usable), "--out", str(pred), "--quiet",
                  "--keep", "sdss_r", "ebv", "parallax", "parallax_error"])
    wall, peak, proc = run_measured([PHOTOFEH, "map", str(pred), "--out", str(out)])
    counts = json.loads((out / "map.json").read_text())["counts"]
    figures = {"stars read": counts["stars"], "stars in the map": counts["in the map"],
               "Gaia parallax used": counts["Gaia parallax used"], "wall s (whole command)": round(wall, 1),
               "stars/s (whole command)": round(counts["stars"] / wall), "peak memory GiB": round(peak / 2**30, 2)}
    shutil.rmtree(pred, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    print(figures)
    write_result("map", "Distances and median [Fe/H] map (`photofeh map`)", figures,
                 notes="Chunks of 1,000,000 predictions: dereddening, photometric distance, Gaia combination, "
                       "astropy Galactocentric transform, histogram accumulation; giants, [Fe/H] errors above "
                       "0.3 dex and stars with "
                       "distance errors above 30% are counted and left out. Includes start-up (~2 s).")


if __name__ == "__main__":
    main()
