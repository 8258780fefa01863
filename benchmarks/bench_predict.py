"""End-to-end `photofeh predict` throughput and peak memory, Parquet in -> Parquet out, on this machine.

Target (issue 5): at least 300,000 stars/s for the default model on 2 cores,
with peak memory independent of the input size. Three inputs:

* the 5,000,000-star mock survey as simulated (most stars lack SDSS or Gaia
  photometry: they are flagged and get NaN without going through the network);
* 5,000,000 stars that all have every feature (the usable stars of the mock,
  repeated): every row goes through the network, the worst case;
* the first 1,000,000 rows of the latter, to show that memory does not grow with the input;
* the 5,000,000 usable stars with two worker processes (`--workers 2`), alternating with the one-process
  run (torch's two threads), and again on a 2-worker Dask LocalCluster (`--scheduler local:2`).

It also times each stage on one chunk, one after the other, to say where the time goes.

Issue 27 (item 3), one forward pass per star (the noise-aware models as trained; an older model as a copy whose
domain records no error limit, so no sigma points): ``--part survey-depth`` times every stage of the pipeline in
CPU seconds on the survey-depth mock (the default model on its all-usable stars, the masked model on the whole
catalogue) and the whole command against the network's pure forward pass in alternating rounds; ``--part
layouts`` the whole command in predict's thread layouts. ``--part all`` also measures Parquet's compressions on
a chunk of predictions.

Usage: python benchmarks/bench_predict.py [--n-stars N] [--work DIR] [--part all|survey-depth|layouts] [--tag T]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _common import ROOT, merge_result, run_measured
from _predict_stages import (
    SURVEY_STAGES,
    dask_partition_cost,
    network_forward_rate,
    pipeline_stages,
    stage_profile,
    write_options,
)

PHOTOFEH = str(Path(sys.executable).with_name("photofeh"))


MADE_HERE = ("mock*.parquet", "spec*.parquet", "usable*.parquet", "run", "run_*", "model_nosigma",
             "masked_nosigma")  # what these helpers and the benchmarks sharing the folder make in it


def fresh_work(work: Path) -> Path:
    """``work``, with the mocks and models these helpers made there removed if the simulator's code has changed
    since (its digest, :func:`photofeh.simulate.cache.mock_code_digest`, is stamped in the folder): a labelled set
    made before the mock was fitted to SEGUE was otherwise reused by every benchmark after it."""
    import shutil

    from photofeh.simulate.cache import mock_code_digest

    work.mkdir(parents=True, exist_ok=True)
    stamp, digest = work / "mock_code.sha256", mock_code_digest()
    if not stamp.exists() or stamp.read_text().strip() != digest:
        for pattern in MADE_HERE:
            for item in work.glob(pattern):
                shutil.rmtree(item) if item.is_dir() else item.unlink()
        stamp.write_text(digest + "\n")
    return work


def ensure_inputs(work: Path, n: int) -> tuple[Path, Path, Path, Path]:
    fresh_work(work)
    mock, spec, run = work / f"mock{n}.parquet", work / "spec.parquet", work / "run"
    if not mock.exists():
        run_measured([PHOTOFEH, "simulate", "--n-stars", str(n), "--seed", "5", "--out", str(mock), "--workers", "2",
                      "--quiet"])
    if not (run / "model" / "model.json").exists():
        run_measured([PHOTOFEH, "simulate", "--n-stars", "20000", "--seed", "6", "--spec-only", "--out", str(spec),
                      "--quiet"])
        run_measured([PHOTOFEH, "train", str(spec), "--config", str(ROOT / "configs" / "default.toml"), "--out",
                      str(run), "--epochs", "5", "--quiet"])
    usable, small = work / f"usable{n}.parquet", work / "usable1M.parquet"
    if not usable.exists():
        from photofeh.model.predict import load_model

        model = load_model(run)
        good = []
        for batch in pq.ParquetFile(mock).iter_batches(batch_size=500_000):
            t = pa.Table.from_batches([batch])
            ok = model.predict({c: t[c].to_numpy() for c in model.required_columns})["usable"]
            good.append(t.filter(pa.array(ok)))
        good = pa.concat_tables(good)
        tiled = pa.concat_tables([good] * (-(-n // good.num_rows))).slice(0, n)
        pq.write_table(tiled, usable, row_group_size=250_000)
        pq.write_table(tiled.slice(0, 1_000_000), small, row_group_size=250_000)
    return mock, usable, small, run


def ensure_labelled_set(work: Path) -> Path:
    """100,000 labelled mock stars (seed 12), made once and shared by the accuracy benchmarks."""
    spec = fresh_work(work) / "spec100k.parquet"
    if not spec.exists():
        run_measured([PHOTOFEH, "simulate", "--n-stars", "100000", "--seed", "12", "--spec-only", "--out",
                      str(spec), "--workers", "2", "--quiet"])
    return spec


def measure(run: Path, source: Path, out: Path, *extra: str) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    wall, peak, proc = run_measured([PHOTOFEH, "predict", str(run), str(source), "--out", str(out), "--quiet",
                                     *extra])
    report = json.loads(proc.stdout)
    shutil.rmtree(out, ignore_errors=True)
    usable = report["stars"] - report["unusable_stars"] if "unusable_stars" in report else "-"
    return {"stars": report["stars"], "usable": usable,
            "stars/s (prediction loop)": report["stars_per_second"],
            "stars/s (whole command)": round(report["stars"] / wall), "wall s": round(wall, 1),
            "peak memory GiB": round(peak / 2**30, 2)}


# ------------------------------------------------ survey depth, stage by stage (issue 27, item 3)
def without_sigma_points(model_dir: Path, dest: Path) -> Path:
    """A copy of a model folder whose training domain records no feature-error limit (``error_max`` null), so
    that no star gets sigma points: the path a noise-aware model takes by default (issue 27), for measuring
    only. Its checksums are rewritten, so it loads like any model folder."""
    import shutil

    from photofeh.model.artifact import CHECKSUMS, META, WEIGHTS, file_sha256

    if not (dest / CHECKSUMS).exists():
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(model_dir, dest)
        meta = json.loads((dest / META).read_text())
        if meta.get("domain"):
            meta["domain"]["error_max"] = [None] * len(meta["domain"]["error_max"])
        (dest / META).write_text(json.dumps(meta, indent=2) + "\n")
        sums = {name: file_sha256(dest / name) for name in (META, WEIGHTS)}
        (dest / CHECKSUMS).write_text(json.dumps(sums, indent=1) + "\n")
    return dest


def ensure_survey_inputs(work: Path, n: int) -> dict[str, tuple[Path, Path]]:
    """(model folder, input) for the default model on the all-usable stars of the survey-depth mock
    (simulate's default 14 < r < 22.5, faint stars included) and for the masked model (configs/masked.toml) on
    the whole mock. A noise-aware model (both configs' since 2026-12-06) is used as trained; an older one as a
    copy without sigma points (:func:`without_sigma_points`)."""
    mock, usable, _, run = ensure_inputs(work, n)
    masked_run = work / "run_masked"
    if not (masked_run / "model" / "model.json").exists():
        run_measured([PHOTOFEH, "train", str(work / "spec.parquet"), "--config", str(ROOT / "configs" / "masked.toml"),
                      "--out", str(masked_run), "--epochs", "5", "--quiet"])

    def one_pass(model_dir: Path, dest: Path) -> Path:
        noise_aware = json.loads((model_dir / "model.json").read_text()).get("noise_aware", False)
        return model_dir if noise_aware else without_sigma_points(model_dir, dest)

    return {"default model, all-usable stars": (one_pass(run / "model", work / "model_nosigma"), usable),
            "masked model, whole catalogue": (one_pass(masked_run / "model", work / "masked_nosigma"), mock)}


def survey_label(model_dir: Path) -> str:
    """How a survey-depth section's title names the models' path: one pass per star either way."""
    noise_aware = json.loads((Path(model_dir) / "model.json").read_text()).get("noise_aware", False)
    return "noise-aware models" if noise_aware else "sigma points off"


def survey_depth(work: Path, n: int, rounds: int) -> dict:
    """Issue 27, item 3, one forward pass per star: per-stage cost (median of ``rounds`` passes) and the whole
    command against the network's pure forward pass in alternating rounds, for both models; with the whole
    command's CPU time (user + system, every thread), which says how much of the two cores it kept busy."""
    import resource

    cases = ensure_survey_inputs(work, n)
    stages: dict[str, dict[str, float]] = {}
    against: dict[str, dict] = {}
    for case, (model_dir, source) in cases.items():
        passes = [pipeline_stages(model_dir, source) for _ in range(rounds)]
        per_stage = {st: float(np.median([p[st] for p in passes])) for st in SURVEY_STAGES}
        commands, forwards, cpus = [], [], []
        for _ in range(rounds):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            commands.append(measure(model_dir, source, work / "out_survey"))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            # the faster of torch's threads on one stream and one torch thread on each of two streams
            forwards.append(max(network_forward_rate(model_dir), network_forward_rate(model_dir, threads=1,
                                                                                      streams=2)))
        ratios = [c["stars/s (whole command)"] / f for c, f in zip(commands, forwards, strict=True)]
        loops = [c["stars/s (prediction loop)"] / f for c, f in zip(commands, forwards, strict=True)]
        mid = sorted(range(rounds), key=lambda i: ratios[i])[rounds // 2]
        forward = float(np.median(forwards))
        per_stage["forward pass alone (pure, one thread, same run)"] = float(np.median(
            [1e6 / network_forward_rate(model_dir, threads=1, clock=time.process_time) for _ in range(rounds)]))
        for st, v in per_stage.items():
            stages.setdefault(st, {})[case] = round(v, 3)
        stars = commands[mid]["stars"]
        against[case] = {"stars": stars, "usable": commands[mid]["usable"],
                         "forward pass (the faster layout), stars/s": round(forward),
                         "whole command, stars/s": commands[mid]["stars/s (whole command)"],
                         "prediction loop, stars/s": commands[mid]["stars/s (prediction loop)"],
                         "ratio per round (whole command)": ", ".join(f"{r:.2f}" for r in ratios),
                         "ratio (whole command, median)": round(float(np.median(ratios)), 3),
                         "ratio (loop, median)": round(float(np.median(loops)), 3),
                         "whole command, CPU s per million stars (median)": round(float(np.median(cpus)) * 1e6 / stars,
                                                                                  3),
                         "whole command, wall s per million stars (median)": round(
                             float(np.median([c["wall s"] for c in commands])) * 1e6 / stars, 3),
                         "peak memory GiB": commands[mid]["peak memory GiB"]}
    totals = {case: round(sum(stages[st][case] for st in SURVEY_STAGES), 3) for case in cases}
    stages["total, stages one after the other"] = totals
    return {"stages": stages, "against": against, "label": survey_label(next(iter(cases.values()))[0])}


def thread_layouts(work: Path, n: int, rounds: int) -> dict:
    """The whole command on the survey-depth mock's all-usable stars (default model, sigma points off) with
    predict's default layout (half the cores as torch threads: one on 2 cores) against torch's two threads
    (--threads 2, the default before), in alternating rounds: wall and CPU seconds (the process's user + system
    time) per million stars, medians."""
    import resource

    model_dir, source = ensure_survey_inputs(work, n)["default model, all-usable stars"]
    layouts = {"half the cores as torch threads (the default; one here)": (),
               "torch's two threads (--threads 2, the default before)": ("--threads", "2")}
    walls: dict[str, list[float]] = {k: [] for k in layouts}
    cpus: dict[str, list[float]] = {k: [] for k in layouts}
    for _ in range(rounds):
        for name, extra in layouts.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = measure(model_dir, source, work / "out_layouts", *extra)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            walls[name].append(result["wall s"])
            cpus[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    per_m = 1e6 / n
    return {name: {"wall s per million stars (median)": round(float(np.median(walls[name])) * per_m, 2),
                   "CPU s per million stars (median)": round(float(np.median(cpus[name])) * per_m, 2),
                   "wall s per round": ", ".join(f"{w:.1f}" for w in walls[name])} for name in layouts}


def against_before(work: Path, n: int, rounds: int, before: Path) -> dict:
    """The whole command on the survey-depth mock's all-usable stars (default model) with this tree's code and
    with an earlier source tree ``before`` (its ``src``, e.g. ``git archive COMMIT src | tar -x -C DIR``), in
    alternating rounds: wall and CPU seconds (user + system, every thread) per million stars, medians, and the
    per-round ratios of wall and CPU time (this tree / before)."""
    import os
    import resource
    import shutil
    import subprocess

    model_dir, source = ensure_survey_inputs(work, n)["default model, all-usable stars"]
    out = work / "out_against_before"
    code = "import sys; from photofeh.cli import run; sys.argv[0] = 'photofeh'; run()"
    trees = {"before": str(Path(before) / "src"), "this tree": str(ROOT / "src")}
    walls: dict[str, list[float]] = {k: [] for k in trees}
    cpus: dict[str, list[float]] = {k: [] for k in trees}
    for _ in range(rounds):
        for name, src in trees.items():
            shutil.rmtree(out, ignore_errors=True)
            t0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code, "predict", str(model_dir), str(source), "--out", str(out),
                            "--quiet"], check=True, capture_output=True, env={**os.environ, "PYTHONPATH": src})
            walls[name].append(time.perf_counter() - start)
            t1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus[name].append(t1.ru_utime + t1.ru_stime - t0.ru_utime - t0.ru_stime)
    shutil.rmtree(out, ignore_errors=True)
    per_m = 1e6 / n
    figures: dict[str, dict | str] = {
        name: {"wall s per million stars (median)": round(float(np.median(walls[name])) * per_m, 2),
               "CPU s per million stars (median)": round(float(np.median(cpus[name])) * per_m, 2)} for name in trees}
    figures["wall ratio per round (this tree / before)"] = ", ".join(
        f"{a / b:.2f}" for a, b in zip(walls["this tree"], walls["before"], strict=True))
    figures["CPU ratio per round (this tree / before)"] = ", ".join(
        f"{a / b:.2f}" for a, b in zip(cpus["this tree"], cpus["before"], strict=True))
    return figures


def write_survey_depth(figures: dict, n: int, tag: str) -> None:
    """The survey-depth sections into results/predict.json, the file's other figures kept (reread now)."""
    suffix = f", {tag}" if tag else ""
    if "against before" in figures:
        sections = {f"whole command against the code before, all-usable stars of the survey-depth mock ({n:,d} "
                    f"stars{suffix})": figures["against before"]}
    elif "layouts" in figures:
        sections = {f"thread layouts of the whole command, all-usable stars of the survey-depth mock ({n:,d} "
                    f"stars, sigma points off{suffix})": figures["layouts"]}
    else:
        what = figures.get("label", "sigma points off")
        sections = {f"where the time goes at survey depth, CPU s per million stars ({n:,d} stars, {what}, "
                    f"stages one after the other, torch on one thread{suffix})": figures["stages"],
                    f"whole command against the network's pure forward pass at survey depth ({n:,d} stars, "
                    f"{what}{suffix})": figures["against"]}
    merge_result("predict", sections)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-stars", type=int, default=5_000_000)
    ap.add_argument("--work", default="/tmp/photofeh_bench_predict", help="where inputs are made (and kept)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of one process and --workers 2")
    ap.add_argument("--before", default=None, help="--part against-before: an earlier source tree (holding src/)")
    ap.add_argument("--part", choices=("all", "survey-depth", "layouts", "against-before"), default="all",
                    help="survey-depth: only issue 27's stage-by-stage and forward-pass comparison (one pass a star); "
                         "layouts: only the whole command in predict's thread layouts")
    ap.add_argument("--tag", default="", help="appended to the sections' titles (e.g. 'before', a date); --part all "
                    "then keeps the file's sections of other tags")
    args = ap.parse_args()
    work = Path(args.work)
    if args.part == "against-before":
        figures = {"against before": against_before(work, args.n_stars, args.rounds, Path(args.before))}
        print(json.dumps(figures, indent=2))
        write_survey_depth(figures, args.n_stars, args.tag)
        return
    if args.part == "layouts":
        write_survey_depth({"layouts": thread_layouts(work, args.n_stars, args.rounds)}, args.n_stars, args.tag)
        return
    if args.part == "survey-depth":
        figures = survey_depth(work, args.n_stars, args.rounds)
        print(json.dumps(figures, indent=2))
        write_survey_depth(figures, args.n_stars, args.tag)
        return
    mock, usable, small, run = ensure_inputs(work, args.n_stars)
    # one process (its default layout) and two worker processes (one thread each), alternating
    rounds: dict[str, list[dict]] = {"one process": [], "--workers 2": []}
    forwards = []
    for _ in range(args.rounds):
        rounds["one process"].append(measure(run, usable, work / "out_usable"))
        rounds["--workers 2"].append(measure(run, usable, work / "out_usable", "--workers", "2"))
        # the faster of torch's threads on one stream and one torch thread on each of two streams
        forwards.append(max(network_forward_rate(run), network_forward_rate(run, threads=1, streams=2)))

    def median_run(runs: list[dict]) -> dict:
        return sorted(runs, key=lambda r: r["stars/s (prediction loop)"])[len(runs) // 2]

    whole, workers = median_run(rounds["one process"]), median_run(rounds["--workers 2"])
    ratios = [w["stars/s (prediction loop)"] / o["stars/s (prediction loop)"]
              for o, w in zip(rounds["one process"], rounds["--workers 2"], strict=True)]
    against = [o["stars/s (whole command)"] / f for o, f in zip(rounds["one process"], forwards, strict=True)]
    forward = float(np.median(forwards))
    figures = {
        "runs": {f"mock survey, {args.n_stars:,d} stars": measure(run, mock, work / "out_mock"),
                 f"all usable, {args.n_stars:,d} stars (median of {args.rounds})": whole,
                 f"all usable, {args.n_stars:,d} stars, --workers 2 (median of {args.rounds})": workers,
                 "all usable, 1,000,000 stars": measure(run, small, work / "out_small"),
                 f"all usable, {args.n_stars:,d} stars, Dask LocalCluster (2 workers)":
                     measure(run, usable, work / "out_dask", "--scheduler", "local:2")},
        "two worker processes against one process (alternating rounds, prediction loop)": {
            "ratio per round": ", ".join(f"{r:.2f}" for r in ratios), "median": round(float(np.median(ratios)), 2)},
        "where the time goes (stages run one after the other, all-usable chunk of 250,000)":
            stage_profile(run, usable),
        "Parquet writing options, one chunk of 250,000 predictions": write_options(run, usable),
        "a pandas partition's own work (the dask.dataframe path before 2026-12-02; HATS still) against the local "
        "loop's chunk": dask_partition_cost(run, usable),
        "whole command against the network's pure forward pass (same session)": {
            "forward pass (the faster layout), stars/s": round(forward),
            "whole command, all usable, stars/s": whole["stars/s (whole command)"],
            "ratio per round": ", ".join(f"{r:.2f}" for r in against),
            "ratio": round(float(np.median(against)), 3)},
    }
    print(json.dumps(figures, indent=2))
    # merged into the file: sections of earlier runs (another --tag, the survey-depth part) are kept
    suffix = f" ({args.tag})" if args.tag else ""
    merge_result("predict", {f"{key}{suffix}": value for key, value in figures.items()},
                 title="Catalogue prediction (`photofeh predict`, default model, Parquet -> Parquet)",
                 notes="Default chunk of 250,000 rows; one thread reads and prepares chunk k+1 (validation, "
                       "features, network inputs, domain score) while this one runs the network on chunk k and a "
                       "third finishes and writes chunk k-1 (since 2026-12-07; before, the main thread did "
                       "everything but reading and writing), so the stage times add up to more than the loop's "
                       "time per star. 'prediction loop' excludes "
                       "start-up (imports, model loading: ~3 s; for Dask also the cluster start); 'whole command' "
                       "includes it. Peak memory is the resident memory of the process tree (for Dask: client, "
                       "scheduler and workers), sampled every 0.2 s. Dask runs one task per chunk that reads, predicts "
                       "and writes its own part, as `--workers 2` does on one machine. "
                       "Target (issue 5): 300,000 stars/s; issue 14: 1,000,000 in the loop; issue 27: the whole "
                       "command at 0.8 of the forward pass. The all-usable stars are the mock's usable stars "
                       "repeated. The sections 'runs', 'two worker processes against one process with two "
                       "threads', 'where the time goes (stages run one after the other, all-usable chunk of "
                       "250,000)', 'a pandas partition's own work' and 'whole command against the network's pure "
                       "forward pass (same session)' without a tag are from 2026-12-03, with the model of then "
                       "(not noise-aware: 17% of these stars had feature errors beyond the training stars' and "
                       "got sigma points); a section titled with a date or tag is from that run (the survey-depth "
                       "and layout sections name their own).")


if __name__ == "__main__":
    main()
