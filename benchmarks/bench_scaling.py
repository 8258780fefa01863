"""Time and peak memory of `photofeh predict` against input size, and the cost model of docs/scaling.md.

Inputs of 10^6, 10^7 and 5 x 10^7 stars with every feature present (the usable stars of
benchmarks/bench_predict.py's 5-million-star mock, repeated), Parquet in and out, the default model (noise-aware:
one forward pass per star), 2 cores. Each size is predicted ``--repeats`` times
(the largest once) in a fresh process; wall time includes start-up. The cost model

    T(N, n) = T_start + N / (n r),        memory = M_0 + chunk_rows m_row (flat in N)

is fitted on the two smaller sizes (r: per-core rate, T_start: start-up) and checked against the largest;
docs/scaling.md carries it to 10^8 and 2 x 10^9 stars on n cores.

``--dask-sizes`` runs the same inputs once more on a 2-worker Dask LocalCluster (``--scheduler local:2``: one
task per chunk that reads, predicts and writes its part, the code a multi-machine scheduler runs), to check the
cost model's Dask line.

Usage: python benchmarks/bench_scaling.py [--sizes 1e6,1e7,5e7] [--dask-sizes 1e7,5e7] [--repeats 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from _common import ROOT, run_measured, write_result

PHOTOFEH = str(Path(sys.executable).with_name("photofeh"))
FIGURE = "benchmarks/figures/scaling.png"


def tiled_input(base: Path, n: int, work: Path) -> Path:
    """``n`` rows of ``base`` repeated, written row group by row group (no more than one in memory)."""
    path = work / f"usable_{n}.parquet"
    if path.exists() and pq.read_metadata(path).num_rows == n:
        return path
    src = pq.ParquetFile(base)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, src.schema_arrow) as writer:
        written = 0
        while written < n:
            for g in range(src.num_row_groups):
                table = src.read_row_group(g)
                take = min(table.num_rows, n - written)
                writer.write_table(table.slice(0, take), row_group_size=250_000)
                written += take
                if written >= n:
                    break
    tmp.replace(path)
    return path


def predict_once(run: Path, source: Path, out: Path, *extra: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    wall, peak, proc = run_measured([PHOTOFEH, "predict", str(run), str(source), "--out", str(out), "--quiet",
                                     *extra])
    report = json.loads(proc.stdout)
    shutil.rmtree(out, ignore_errors=True)
    return {"wall": wall, "peak": peak, "loop_rate": report["stars_per_second"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e6,1e7,5e7")
    ap.add_argument("--dask-sizes", default="", help="sizes also run once on a 2-worker Dask LocalCluster")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default="/tmp/photofeh_bench_predict", help="bench_predict.py's work folder")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_predict import ensure_inputs

    work = Path(args.work)
    _, usable, _, run = ensure_inputs(work, 5_000_000)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    dask_sizes = [int(float(s)) for s in args.dask_sizes.split(",") if s]
    runs: dict[int, list[dict]] = {}
    dask: dict[int, dict] = {}
    for n in sorted(set(sizes) | set(dask_sizes)):
        source = tiled_input(usable, n, work)
        if n in sizes:
            repeats = 1 if n == max(sizes) and len(sizes) > 1 else args.repeats
            runs[n] = [predict_once(run, source, work / "out_scaling") for _ in range(repeats)]
        if n in dask_sizes:
            dask[n] = predict_once(run, source, work / "out_scaling", "--scheduler", "local:2")
        if n > 5_000_000:
            source.unlink()  # tens of GB: not kept
    wall = {n: float(np.median([r["wall"] for r in v])) for n, v in runs.items()}
    peak = {n: float(max(r["peak"] for r in v)) / 2**30 for n, v in runs.items()}
    small = sorted(sizes)[:2]
    per_star = (wall[small[1]] - wall[small[0]]) / (small[1] - small[0])
    start = wall[small[0]] - small[0] * per_star
    cores = 2
    table = {f"{n:,d} stars": {"runs": len(runs[n]), "wall s (median)": round(wall[n], 1),
                               "stars/s (whole command)": round(n / wall[n]),
                               "stars/s (prediction loop)": int(np.median([r["loop_rate"] for r in runs[n]])),
                               "peak memory GiB": round(peak[n], 2),
                               "model wall s": round(start + n * per_star, 1)} for n in sizes}
    model = {"start-up s (T_start)": round(start, 2), "per-core rate r, stars/s": round(1 / per_star / cores),
             "fitted on": f"{small[0]:,d} and {small[1]:,d} stars", "cores": cores}
    _figure(sizes, wall, peak, start, per_star)
    figures = {"runs": table, "cost model": {"T(N, n) = T_start + N / (n r)": model}}
    if dask:
        figures["Dask LocalCluster, 2 workers (one run per size)"] = {
            f"{n:,d} stars": {"wall s": round(r["wall"], 1), "stars/s (whole command)": round(n / r["wall"]),
                              "stars/s (prediction loop)": int(r["loop_rate"]),
                              "peak memory GiB (client, scheduler, workers)": round(r["peak"] / 2**30, 2),
                              "one process, cost model wall s": round(start + n * per_star, 1),
                              "Dask wall / cost model": round(r["wall"] / (start + n * per_star), 2)}
            for n, r in sorted(dask.items())}
    # earlier runs' figures stay beside the new ones, each titled with its run's date (the before of a change)
    from _common import RESULTS

    previous = RESULTS / "scaling.json"
    if previous.exists():
        last = json.loads(previous.read_text())
        when = last.get("machine", {}).get("date", "")[:16].replace("T", " ")
        kept = last.get("figures", {})
        figures.update({f"{key} (the run before, {when} UTC)": value for key, value in kept.items()
                        if "(the run before, " not in key})
        figures.update({key: value for key, value in kept.items() if "(the run before, " in key})  # older runs
    print(json.dumps(figures, indent=2))
    write_result("scaling", "Prediction time and memory against input size (issue 14)", figures, figure=FIGURE,
                 notes="Every star has every feature; the model is configs/default.toml's, noise-aware since "
                       "2026-12-06 (one forward pass per star, no sigma points; before, 17% of these stars had "
                       "feature errors beyond the training stars' and took sigma points); since 2026-12-07 one "
                       "process reads and prepares, runs the network and finishes and writes successive chunks in "
                       "three threads. Wall time of the whole "
                       "command, start-up included; peak memory of the process tree. The model line is fitted on "
                       "the two smaller sizes only; the largest checks it. Sections titled '(the run before, "
                       "DATE UTC)' hold earlier runs' figures as those runs wrote them (their code, model and load).")


def _figure(sizes, wall, peak, start, per_star) -> None:
    from photofeh.report.style import new_figure, save_figure

    fig, axes = new_figure(2, 1, width="double", aspect=0.8)
    a, b = axes[0]
    n = np.array(sorted(sizes), float)
    grid = np.geomspace(n[0] / 2, n[-1] * 2, 100)
    a.loglog(n, [wall[int(k)] for k in n], "o", label="measured")
    a.loglog(grid, start + grid * per_star, "-", label="cost model (fitted on the two smaller)")
    a.set_xlabel("stars")
    a.set_ylabel("wall time (s), 2 cores")
    a.legend(frameon=False, fontsize=8)
    b.semilogx(n, [peak[int(k)] for k in n], "o")
    b.set_ylim(0, max(peak.values()) * 1.5)
    b.set_xlabel("stars")
    b.set_ylabel("peak memory (GiB)")
    save_figure(fig, ROOT / FIGURE.removesuffix(".png"))


if __name__ == "__main__":
    main()
