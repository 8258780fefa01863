"""The ``photofeh`` command line.

Each subcommand is a thin layer over the Python API: it parses arguments,
turns user mistakes into one clear line on stderr with a non-zero exit code
(2 for bad arguments, 1 for bad input files or failed runs), and reports
progress on stderr so that stdout carries only results.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from photofeh import __version__
from photofeh.errors import PhotofehError

__all__ = ["main", "run"]


class UserError(Exception):
    """A mistake in the user's arguments or files: reported without a traceback."""


# ------------------------------------------------------------------ helpers
def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _bounded_int(lo: int, hi: int, why: str = ""):
    """An argparse type: an integer in [lo, hi] (underscores allowed), refused before any work starts."""
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected an integer from {lo:,d} to {hi:,d}, got {value:,d}{why}")
        return value
    return parse


def _bounded_float(lo: float, hi: float, open_lo: bool = True):
    """An argparse type: a finite number in (lo, hi] (or [lo, hi] with ``open_lo=False``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = np.isfinite(value) and (lo < value if open_lo else lo <= value) and value <= hi
        if not ok:
            raise argparse.ArgumentTypeError(f"expected a finite number in {'(' if open_lo else '['}{lo:g}, {hi:g}], "
                                             f"got {text}")
        return value
    return parse


def _workers(text: str) -> int:
    from photofeh.simulate.survey import available_cores

    return _bounded_int(1, available_cores(), " (the CPU cores available here; each worker holds its own "
                                              "0.35 GB isochrone grid)")(text)


ROWS = _bounded_int(1, 100_000_000, " (a chunk is held in memory)")


def _epoch_arg(text: str):
    """A Julian year (1900-2100), or the name of a column holding per-row epochs."""
    try:
        float(text)
    except ValueError:
        return text
    return _bounded_float(1900.0, 2100.0, open_lo=False)(text)
RADIUS = _bounded_float(0.0, 3600.0)  # arcsec: beyond a degree a nearest-neighbour match means nothing


def _band_name(text: str) -> str:
    from photofeh.bands import BANDS

    if text not in BANDS:
        raise argparse.ArgumentTypeError(f"unknown band {text!r}; choose from {', '.join(BANDS)}")
    return text


def _footprint(text: str) -> tuple[str, str]:
    from photofeh.simulate.observe import DEFAULT_FOOTPRINTS, Footprint

    survey, sep, terms = text.partition("=")
    if not sep or survey not in DEFAULT_FOOTPRINTS:
        raise argparse.ArgumentTypeError(
            f"bad footprint {text!r}: use SURVEY=TERMS, e.g. 'sdss=min_b:30,min_dec:-5', "
            f"SURVEY one of {', '.join(DEFAULT_FOOTPRINTS)}")
    terms = terms.replace(":", "=")
    try:
        Footprint.parse(terms)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return survey, terms


class _Progress:
    """One line on stderr, rewritten: stars done, rate and time left."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.quiet, self.t0 = total, quiet, time.perf_counter()

    def __call__(self, done: int) -> None:
        if self.quiet:
            return
        dt = time.perf_counter() - self.t0
        rate = done / dt if dt > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else float("nan")
        sys.stderr.write(f"\r  {done:>12,d} / {self.total:,d} stars  {rate:10,.0f} stars/s  "
                         f"{left:6.0f} s left ")
        sys.stderr.flush()
        if done >= self.total:
            sys.stderr.write("\n")


class _Summary:
    """Counts accumulated chunk by chunk, so a 10^8-row run needs no second pass."""

    def __init__(self) -> None:
        self.rows = 0
        self.pop: Counter = Counter()
        self.phase: Counter = Counter()
        self.detected: Counter = Counter()
        self.spec = 0
        self.giants = 0

    def add(self, chunk) -> None:
        """Count one chunk, an Arrow table (counted in Arrow's C++: no Python strings)."""
        import pyarrow.compute as pc

        from photofeh.bands import SIMULATED_BANDS

        def trues(values) -> int:
            return int(pc.sum(values).as_py() or 0)

        self.rows += chunk.num_rows
        for name, counter in (("pop", self.pop), ("phase", self.phase)):
            for item in pc.value_counts(chunk.column(name)).to_pylist():
                counter[item["values"]] += item["counts"]
        for name in SIMULATED_BANDS:
            self.detected[name] += trues(pc.is_finite(chunk.column(name)))
        self.spec += trues(chunk.column("in_spec"))
        self.giants += trues(chunk.column("is_giant_true"))

    def text(self) -> str:
        n = max(self.rows, 1)
        lines = [f"stars: {self.rows:,d}   spectroscopic: {self.spec:,d} ({100 * self.spec / n:.2f}%)   "
                 f"giants (log g < 3.5): {self.giants:,d} ({100 * self.giants / n:.1f}%)"]
        lines.append("populations: " + ", ".join(f"{k} {100 * v / n:.1f}%" for k, v in sorted(self.pop.items())))
        lines.append("phases: " + ", ".join(f"{k} {v:,d}" for k, v in self.phase.most_common()))
        lines.append("detected per band: " + ", ".join(f"{k} {100 * v / n:.0f}%" for k, v in self.detected.items()))
        return "\n".join(lines)


# ---------------------------------------------------------------- commands
def _cluster_arg(text: str) -> tuple[float, float, float, int]:
    """--cluster FEH,AGE_GYR,DIST_KPC,N (the isochrone grid's [Fe/H] and age ranges are checked later)."""
    usage = f"expected FEH,AGE_GYR,DIST_KPC,N, e.g. -2.1,11,8.5,1000; got {text!r}"
    parts = text.split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        feh, age, dist = (float(p) for p in parts[:3])
        n = int(parts[3].replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(usage) from None
    if not np.isfinite(feh):
        raise argparse.ArgumentTypeError(f"FEH must be a finite number; {usage}")
    if not (np.isfinite(age) and 0.0 < age <= 20.0):
        raise argparse.ArgumentTypeError(f"AGE_GYR must be in (0, 20]; {usage}")
    if not (np.isfinite(dist) and 0.0 < dist <= 300.0):
        raise argparse.ArgumentTypeError(f"DIST_KPC must be in (0, 300]; {usage}")
    if not 1 <= n <= 1_000_000:
        raise argparse.ArgumentTypeError(f"N (observed members) must be from 1 to 1,000,000; {usage}")
    return feh, age, dist, n


def _lb_arg(text: str) -> tuple[float, float]:
    """--cluster-lb L,B in degrees."""
    try:
        l, b = (float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected L,B in degrees, e.g. 60,60; got {text!r}") from None
    if not (np.isfinite(l) and np.isfinite(b) and 0.0 <= l < 360.0 and -90.0 <= b <= 90.0):
        raise argparse.ArgumentTypeError(f"expected 0 <= L < 360 and -90 <= B <= 90 (deg), got {text!r}")
    return l, b


def _simulate_cluster(args: argparse.Namespace, out: Path, fmt: str, footprints: dict[str, str]) -> int:
    """``simulate --cluster``: one mock cluster and the field stars of its cone, to ``out``."""
    import pyarrow as pa

    from photofeh.io.catalog import read_table
    from photofeh.simulate import cluster as cl

    if args.spec_only:
        raise UserError("--spec-only does not apply to --cluster (members get spectra as field stars do)")
    feh, age, dist, n = args.cluster
    l, b = args.cluster_lb or cl.DEFAULT_LB
    radius = cl.DEFAULT_RADIUS_ARCMIN if args.cluster_radius is None else args.cluster_radius
    field_radius = cl.DEFAULT_FIELD_RADIUS_ARCMIN if args.field_radius is None else args.field_radius
    config = cl.ClusterConfig(
        feh=feh, age_gyr=age, distance_kpc=dist, n_members=n, l_deg=l, b_deg=b, radius_arcmin=radius,
        binaries=not args.no_binaries, select_band=args.select_band, mag_range=tuple(args.mag_range),
        footprints=footprints, disk_feh_law=args.disk_feh_law, halo_feh_law=args.halo_feh_law, colours=args.colours,
        isochrones=args.isochrones, seed=args.seed)
    t0 = time.perf_counter()
    try:
        survey = cl.ClusterFieldSurvey(config, field_radius)
        config.validate(survey.grid)
        cl.write_cluster_catalog(config, out, field_radius, fmt, survey)
    except (ValueError, KeyError, FileNotFoundError, OSError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    table = read_table(out)
    summary = _Summary()
    summary.add(pa.Table.from_pandas(table, preserve_index=False))
    members = int(table["cluster_member"].sum())
    print(f"wrote {out} ({fmt}) in {time.perf_counter() - t0:.1f} s: {members:,d} cluster members and "
          f"{len(table) - members:,d} field stars within {field_radius:g} arcmin of (l, b) = ({l:g}, {b:g})")
    print(summary.text())
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from photofeh.io.catalog import check_writable, format_for
    from photofeh.processes import WorkerDied
    from photofeh.simulate.observe import DEFAULT_FOOTPRINTS
    from photofeh.simulate.survey import MockSurvey, MockSurveyConfig, simulate

    out = Path(args.out)
    try:
        fmt = format_for(out, args.format)
        check_writable(out)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None
    footprints = {k: v.to_text() for k, v in DEFAULT_FOOTPRINTS.items()}
    footprints.update(dict(args.footprint or []))
    if args.cluster is not None:
        return _simulate_cluster(args, out, fmt, footprints)
    if any(v is not None for v in (args.cluster_lb, args.cluster_radius, args.field_radius)):
        raise UserError("--cluster-lb, --cluster-radius and --field-radius go with --cluster")
    config = MockSurveyConfig(
        n_stars=args.n_stars, seed=args.seed, select_band=args.select_band,
        mag_range=tuple(args.mag_range), min_abs_b=args.min_abs_b, north_only=args.north_only, footprints=footprints,
        disk_feh_law=args.disk_feh_law, halo_feh_law=args.halo_feh_law, colours=args.colours,
        binaries=not args.no_binaries, spec_only=args.spec_only,
        isochrones=args.isochrones,
    )
    try:
        config.validate()
        survey = MockSurvey(config)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    summary, progress = _Summary(), _Progress(config.n_stars, args.quiet)

    def on_chunk(chunk, done: int) -> None:
        summary.add(chunk)
        progress(done)

    t0 = time.perf_counter()
    try:
        simulate(config, out, fmt, args.chunk_size, args.workers, survey, on_chunk)
    except (ValueError, OSError, WorkerDied) as exc:
        raise UserError(str(exc)) from None
    dt = time.perf_counter() - t0
    print(f"wrote {out} ({fmt}) in {dt:.1f} s, {config.n_stars / dt:,.0f} stars/s")
    print(summary.text())
    return 0


def _load_table(path: str, preset: str | None = None, log=None):
    """A whole labelled table as a DataFrame: Parquet and FITS as they are, any other format the readers
    know (HDF5, CSV, text ...) or any table through a preset or mapping file (e.g. the green2020 HDF5 file
    through ``table_preset = "green2020"``), validated like every input; replaced values are logged."""
    from photofeh.io.catalog import FORMATS, read_table

    try:
        if preset is None and any(str(path).lower().endswith(ext) for ext in FORMATS):
            return read_table(path)
        import pandas as pd

        from photofeh.io.presets import apply_preset, resolve_preset
        from photofeh.io.readers import read_columns

        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist")
        cols, report = apply_preset(read_columns(path), resolve_preset(preset), str(path))
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise UserError(str(exc).strip("'\"") if not isinstance(exc, PhotofehError) else str(exc)) from None
    replaced = {k: v for k, v in report.items() if v}
    if replaced and log is not None:
        log(f"{path}{f' (preset {preset})' if preset else ''}: values set to NaN on reading (sentinels, NaN/inf, "
            "impossible): " + ", ".join(f"{k} {v:,d}" for k, v in sorted(replaced.items())))
    return pd.DataFrame({k: v for k, v in cols.items() if np.ndim(v) == 1})


def _train_config(args: argparse.Namespace):
    from photofeh.model.train import TrainConfig, load_config

    try:
        cfg = load_config(args.config) if args.config else TrainConfig()
        for key in ("epochs", "seed", "ensemble", "prior", "baseline_rounds", "split_seed"):
            if getattr(args, key, None) is not None:
                setattr(cfg, key, getattr(args, key))
        cfg.validate()  # the command-line overrides too, before any data is read
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from photofeh.io.locking import OutputLocked
    from photofeh.model.train import train

    cfg = _train_config(args)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    table = _load_table(args.table, cfg.table_preset, log)
    try:
        model_dir = train(table, cfg, args.out, log=log, overwrite=args.overwrite)
    except (KeyError, ValueError, OSError, OutputLocked) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    print(f"model written to {model_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    import pandas as pd

    from photofeh.model.artifact import ModelFormatError
    from photofeh.model.evaluate import evaluate_model
    from photofeh.model.predict import load_model, model_folder

    run = Path(args.model)
    model_dir = model_folder(run)
    try:
        model = load_model(model_dir)
    except ModelFormatError as exc:
        raise UserError(str(exc)) from None
    # the table is read as the model's training table was (its config's table_preset), unless --preset says
    # otherwise or the table is already in schema names (it has every column the model needs)
    preset = args.preset or model.meta.get("training", {}).get("config", {}).get("table_preset")
    if preset and not args.preset:
        from photofeh.io.readers import CatalogReadError, table_columns

        try:
            columns = table_columns(args.table)
        except CatalogReadError as exc:
            raise UserError(str(exc)) from None
        if all(c in columns for c in model.needed_columns(columns)):
            preset = None
    table = _load_table(args.table, preset, lambda s: print(s, file=sys.stderr))
    rows = None
    split_file = run / "split.parquet"
    if args.split != "all" and not split_file.exists() and "source_id" in table.columns:
        from photofeh.model.train import ids_digest

        if ids_digest(table["source_id"].to_numpy()) == model.meta.get("training", {}).get("table_ids_sha256"):
            raise UserError(f"{args.table} is the table {run} was trained on, and its split.parquet is missing: the "
                            f"{args.split} stars cannot be told from the training stars. Use --split all to score "
                            "every star knowingly, or evaluate on another table")
    if args.split != "all" and split_file.exists():
        if "source_id" not in table.columns:
            raise UserError(f"{args.table} has no source_id column, so the stars of the {args.split} split of {run} "
                            "cannot be found in it; use --split all to score every star")
        split = pd.read_parquet(split_file)
        chosen = set(split.loc[split["split"] == args.split, "source_id"].to_numpy().tolist())
        rows = np.flatnonzero(table["source_id"].isin(chosen).to_numpy())
        if rows.size == 0:
            raise UserError(f"no star of {args.table} is in the {args.split} split of {run}")
    out_dir = Path(args.out) if args.out else (run if split_file.exists() else model_dir)
    from photofeh.model.baselines import BASELINE_FOLDER, RunBaselines

    baselines = RunBaselines.load(run / BASELINE_FOLDER) if run != model_dir else None
    try:
        report = evaluate_model(model, table, rows, out_dir, baselines=baselines, figures=not args.no_figures)
    except (KeyError, ValueError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    summary = {lab: {k: round(v, 4) for k, v in e["vs_labels"].items() if k in ("sigma_gauss", "robust_sigma",
                                                                                 "bias_median", "pull_std")}
               for lab, e in report["labels"].items()}
    # where an absolute magnitude from the parallaxes was scored without the parallax input, or not at all
    parallax = {lab: e["scored"] for lab, e in report["labels"].items() if "scored" in e}
    print(json.dumps({"n_usable": report["n_usable"], "vs_labels": summary,
                      **({"parallax_labels_scored": parallax} if parallax else {}),
                      **({"not_scored": report["not_scored"]} if report.get("not_scored") else {}),
                      "class": {k: {m: round(v, 3) for m, v in c.items() if m != "confusion"}
                                for k, c in report.get("class", {}).items()}}, indent=2))
    print(f"metrics and figures in {out_dir}")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from photofeh.model.train import lr_find

    cfg = _train_config(args)
    suggestion = lr_find(_load_table(args.table, cfg.table_preset), cfg, args.out)
    print(f"suggested max_lr = {suggestion:.3g} (plot: {args.out})")
    return 0


def _preset_name(text: str) -> str:
    from photofeh.io.presets import PRESETS

    if text not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; choose from {', '.join(PRESETS)}")
    return text


def _catalogue_arg(text: str):
    """'FILE', 'FILE:PRESET' or 'FILE:MAPPING.toml' (a mapping file works wherever a preset does)."""
    path, sep, preset = text.rpartition(":")
    if sep and preset and not Path(text).exists():
        if preset.endswith(".toml"):
            from photofeh.io.presets import load_mapping

            try:
                return path, load_mapping(preset)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        return path, _preset_name(preset)
    return text, None


def _catalogue_job(job, *job_args, **json_kw) -> int:
    """Run a catalogue command: bad files and columns become one-line errors, the report goes to stdout."""
    import json

    from photofeh.io.readers import CatalogReadError

    try:
        report = job(*job_args)
    except (CatalogReadError, KeyError, ValueError, OSError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    print(json.dumps(report, indent=2, **json_kw))
    return 0


def cmd_crossmatch(args: argparse.Namespace) -> int:
    from photofeh.io.crossmatch import crossmatch_files

    (ref, ref_preset), (other, other_preset) = args.reference, args.other
    _catalogue_job(crossmatch_files, ref, other, args.out, args.radius, ref_preset, other_preset, args.chunk_size,
                   "_2", args.epoch)
    print(f"wrote {args.out}")
    return 0


def cmd_merge_photometry(args: argparse.Namespace) -> int:
    from photofeh.io.crossmatch import merge_onto

    base, base_preset = args.base
    _catalogue_job(merge_onto, base, args.other, args.out, args.radius, base_preset, args.chunk_size, args.sfd_dir)
    print(f"wrote {args.out}")
    return 0


def cmd_build_training_set(args: argparse.Namespace) -> int:
    from photofeh.io.cuts import Cuts, load_cuts
    from photofeh.io.training_set import build_training_set

    def job():
        cuts = load_cuts(args.cuts) if args.cuts else Cuts()
        labels, labels_preset = args.labels
        return build_training_set(labels, args.photometry, args.out, labels_preset, args.radius, cuts,
                                  args.chunk_size, args.sfd_dir, args.epoch)

    _catalogue_job(job, default=float)
    print(f"wrote {args.out} and {args.out}.report.json")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json

    from photofeh.io.dust import EbvSource
    from photofeh.io.presets import load_mapping
    from photofeh.io.readers import CatalogReadError
    from photofeh.model.artifact import ModelFormatError
    from photofeh.scale.predict_catalog import PredictOptions

    preset = args.preset
    parent = Path(args.out).resolve().parent
    if not parent.is_dir():  # the lock file and the parts go beside the output: say so, not '[Errno 2] ... .lock'
        raise UserError(f"cannot create {args.out}: folder {parent} does not exist (create it first)")
    try:
        if args.mapping:
            preset = load_mapping(args.mapping)
        options = PredictOptions(chunk_rows=args.chunk_rows, keep=tuple(args.keep or ()), preset=preset,
                                 fmt=args.format, on_error=args.on_error, device=args.device, threads=args.threads,
                                 workers=args.workers, progress=not args.quiet,
                                 ebv=EbvSource(args.ebv_column, args.sfd_dir), prior=args.prior)
        if args.scheduler:
            if args.workers > 1:
                raise ValueError("--workers is for a run on this machine; on Dask, the cluster's workers predict "
                                 "(--scheduler local:N for N local processes)")
            from photofeh.scale.distributed import predict_distributed

            report = predict_distributed(args.model, args.input, args.out, options, args.scheduler)
            print(json.dumps(report, indent=2))
            return 0
        from photofeh.scale.predict_catalog import predict_catalog

        summary = predict_catalog(args.model, args.input, args.out, options,
                                  log=lambda s: print(s, file=sys.stderr))
    except KeyboardInterrupt:
        print("photofeh predict: interrupted; finished chunks are kept: rerun the same command to resume",
              file=sys.stderr)
        return 130
    except (CatalogReadError, ModelFormatError, KeyError, ValueError, OSError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    print(json.dumps({"output": str(summary.output), "stars": summary.rows, "unusable_stars": summary.unusable_rows,
                      "chunks_done": summary.chunks_done, "chunks_total": summary.chunks_total,
                      "chunks_resumed": summary.resumed_chunks, "workers": args.workers,
                      "seconds": round(summary.seconds, 2),
                      "stars_per_second": round(summary.rate), "values_replaced": summary.replaced,
                      "duplicate_source_ids": summary.duplicate_ids,
                      "unphysical_predictions": summary.unphysical_predictions, "chunks_redone": summary.redone_chunks,
                      "failed_chunks": summary.failed}, indent=2))
    if summary.failed:
        print(f"photofeh predict: {len(summary.failed)} chunk(s) skipped (listed above); rerun the same command "
              "to retry them", file=sys.stderr)
        return 3
    return 0


def _prior_note(provenance: dict, command: str, unfolded: bool = False) -> dict:
    """The prior of the model behind the predictions, and a warning (also on stderr) when it is the labelled
    stars' distribution: medians and distributions of such estimates lean toward it (docs/populations.md).
    Distributions unfolded through the model's measured response (``unfolded``) are free of it."""
    prior = provenance.get("model_prior", "labels" if provenance else "unknown")
    note = {"model_prior": prior}
    if unfolded:
        note["prior_note"] = ("unfolded through the response the model measured on its validation stars: the "
                              "estimates' prior (their shrinkage toward the labelled stars) is undone, not inherited")
    elif prior != "flat":
        note["prior_warning"] = (f"the predictions come from a model with the {prior} prior: where the photometry "
                                 "says little, estimates lean toward the labelled stars' [Fe/H] distribution, so "
                                 "per-star estimates are biased toward it and deconvolved distributions count it "
                                 "twice; predict --prior flat divides it out (docs/populations.md says which is "
                                 "more accurate for maps)")
        print(f"photofeh {command}: warning: {note['prior_warning']}", file=sys.stderr)
    return note


def _slice_mdfs(slices, min_count: int, response=None) -> list[dict]:
    """Metallicity distributions of the mapped stars per |Z| slice: unfolded through the model's measured
    ``response`` (photofeh.galaxy.unfold), or, for models without one, deconvolved (photofeh.galaxy.mdf)."""
    from photofeh.galaxy.populations import with_fractions
    from photofeh.galaxy.unfold import unfold_mdf

    edges, hists = slices
    out = []
    for lo, hi, h in zip(edges[:-1], edges[1:], hists, strict=True):
        row = {"abs_z_kpc": [float(lo), float(hi)], "stars": int(h.n)}
        if h.n >= max(min_count, 10):
            row.update(unfold_mdf(h, response, n_boot=50) if response is not None
                       else with_fractions(h.summary(), "the model has no calibration sample: deconvolved"))
        out.append(row)
    return out


def cmd_map(args: argparse.Namespace) -> int:
    """Stream a prediction table: distances, Galactocentric R and |Z|, median [Fe/H] map."""
    import json

    from photofeh.galaxy.distances import frame_description
    from photofeh.galaxy.maps import (
        check_map_input,
        check_map_options,
        deconvolved_cells,
        feh_map_from_predictions,
        predictions_absmag_reference,
    )
    from photofeh.io.catalog import atomic_output, check_output_place
    from photofeh.io.locking import output_lock
    from photofeh.io.readers import CatalogReadError
    from photofeh.report.map_figures import draw_map_figures
    from photofeh.scale.predict_catalog import read_provenance

    out = Path(args.out)
    try:
        check_map_options(cell=args.cell, r_max=args.r_max, z_max=args.z_max, min_count=args.min_count)
        check_output_place(out, [args.predictions])
        if args.stars:
            check_output_place(args.stars, [args.predictions])
        reference, reference_from = predictions_absmag_reference(args.predictions)
        check_map_input(args.predictions, args.band, args.absmag, reference)  # before anything is created
        out.mkdir(parents=True, exist_ok=True)
        with output_lock(out, f"photofeh map {args.predictions}", inside=True):
            products, counts = feh_map_from_predictions(
                args.predictions, bands=args.band, giants=args.giants, min_parallax_snr=args.min_parallax_snr,
                max_rel_dist_err=args.max_rel_dist_err, max_feh_err=args.max_feh_err, cell=args.cell,
                r_max=args.r_max, z_max=args.z_max, chunk_rows=args.chunk_rows, stars_out=args.stars,
                absmag=args.absmag, out_of_domain=args.out_of_domain, slices=args.slices, deconvolve=args.deconvolve,
                absmag_reference=reference)
            fmap = products.rz
            with atomic_output(out / "feh_map.npz") as tmp, open(tmp, "wb") as f:
                products.save(f)
            cells = int(np.sum(fmap.n >= args.min_count))
            provenance = read_provenance(args.predictions)
            report = {"photofeh_version": __version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "input": str(Path(args.predictions).resolve()),
                      "predictions": provenance,
                      "options": {k: getattr(args, k) for k in ("band", "absmag", "giants", "min_parallax_snr",
                                                               "max_rel_dist_err", "max_feh_err", "cell", "r_max",
                                                               "z_max", "min_count", "out_of_domain", "slices",
                                                               "deconvolve")},
                      "counts": dict(counts), "cells_with_min_count": cells, "frame": frame_description(),
                      "absmag_reference": ({"bands": {f"mabs_{b}": reference.get(f"mabs_{b}", "dereddened")
                                                      for b in args.band}, "from": reference_from}
                                           if args.absmag == "model" else
                                           {"bands": {"mabs_sdss_r": "dereddened (Ivezic et al. 2008)"},
                                            "from": "relation"}),
                      **_prior_note(provenance, "map")}
            slice_summaries = None
            if products.slices is not None:
                from photofeh.galaxy.populations import response_of_predictions

                response, report["mdf_response_from"] = response_of_predictions(
                    args.predictions, args.giants, args.max_feh_err)
                slice_summaries = report["mdf_by_abs_z"] = _slice_mdfs(products.slices, args.min_count, response)
            median = None
            if args.deconvolve:
                median, err = deconvolved_cells(products, args.min_count)
                with atomic_output(out / "feh_map_deconvolved.npz") as tmp, open(tmp, "wb") as f:
                    np.savez(f, x_edges=fmap.x_edges, y_edges=fmap.y_edges, median=median, median_err=err,
                             n=fmap.n)
                report["deconvolved_cells"] = int(np.isfinite(median).sum())
            figures = [] if args.no_figures else draw_map_figures(
                products, out, min_count=args.min_count, deconvolved=median, slice_summaries=slice_summaries)
            report["figures"] = sorted(p.name for p in figures)
            with atomic_output(out / "map.json") as tmp:
                tmp.write_text(json.dumps(report, indent=2) + "\n")
    except (CatalogReadError, KeyError, ValueError, OSError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    if cells == 0:
        raise UserError(f"no (R, |Z|) cell holds {args.min_count} stars ({counts['in the map']:,d} stars in the map, "
                        f"counts in {out / 'map.json'}): lower --min-count, use larger --cell, or relax the cuts")
    print(json.dumps(report["counts"], indent=2))
    print(f"wrote {out / 'map.json'}, {out / 'feh_map.npz'} and {len(report['figures']) // 2} figure(s) "
          f"(PNG and PDF: {', '.join(sorted({p.rsplit('.', 1)[0] for p in report['figures']}))})"
          + (f"; per-star distances in {args.stars}" if args.stars else ""))
    return 0


def cmd_mdf(args: argparse.Namespace) -> int:
    """Deconvolved metallicity distribution of a selection of predicted stars."""
    import json

    from photofeh.galaxy.populations import mdf_of_predictions, plot_mdf
    from photofeh.io.catalog import atomic_output, check_output_place
    from photofeh.io.locking import output_lock
    from photofeh.io.readers import CatalogReadError
    from photofeh.scale.predict_catalog import read_provenance

    out = Path(args.out)
    try:
        check_output_place(out, [args.predictions])
        out.mkdir(parents=True, exist_ok=True)
        with output_lock(out, f"photofeh mdf {args.predictions}", inside=True):
            summary, counts, x = mdf_of_predictions(
                args.predictions, where=args.where, max_feh_err=args.max_feh_err, giants=args.giants,
                out_of_domain=args.out_of_domain, chunk_rows=args.chunk_rows, n_boot=args.bootstrap, seed=args.seed,
                n_components=args.components, method=args.method)
            provenance = read_provenance(args.predictions)
            report = {"photofeh_version": __version__, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                      "input": str(Path(args.predictions).resolve()), "predictions": provenance,
                      "options": {k: getattr(args, k) for k in ("where", "max_feh_err", "giants", "out_of_domain",
                                                               "bootstrap", "seed", "components", "method")},
                      "counts": counts, **_prior_note(provenance, "mdf", "calibration_stars" in summary),
                      "fraction_below": summary["fraction_below"],
                      "mdf": summary}
            with atomic_output(out / "mdf.json") as tmp:
                tmp.write_text(json.dumps(report, indent=2) + "\n")
            plot_mdf(summary, x, out / "mdf", title=f"{counts.get('selected', 0):,d} stars")
    except (CatalogReadError, KeyError, ValueError, OSError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    print(json.dumps({"counts": counts, "method": summary["method"],
                      **{k: summary[k] for k in ("median", "median_se", "mean", "mean_se", "width", "width_se",
                                                 "fraction_below")}}, indent=2))
    print(f"wrote {out / 'mdf.json'}, {out / 'mdf.png'} and {out / 'mdf.pdf'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The HTML report of a run."""
    from photofeh.io.readers import CatalogReadError
    from photofeh.report.html import write_report

    try:
        path = write_report(args.run, predictions=args.predictions, map_dir=args.map_dir, out=args.out)
    except (CatalogReadError, KeyError, ValueError, OSError) as exc:
        raise UserError(str(exc).strip("'\"")) from None
    print(f"wrote {path} (self-contained: open it in any browser, e.g. file://{Path(path).resolve()})")
    return 0


# ------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    from photofeh.galaxy.maps import MAX_FEH_ERR

    parser = argparse.ArgumentParser(
        prog="photofeh",
        description="Stellar parameters ([Fe/H], log g, Teff, giant/dwarf) from multi-band photometry.",
        epilog="Run 'photofeh COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"photofeh {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sim = sub.add_parser(
        "simulate", help="write a mock Milky Way survey with known truth",
        description="Draw a magnitude-limited mock survey from the Juric et al. 2008 Galaxy with PARSEC "
                    "stellar models, SDSS/PS1/Gaia/CFIS photometry, dust, noise and a SEGUE-like "
                    "spectroscopic subsample. Columns are documented in docs/schema.md.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # Python 3.13's rule for what looks like a negative number, so that '--cluster -2.1,11,8.5,1000' reads
    # the value instead of taking it for an option (3.11 accepts only '-2.1' alone)
    import re

    sim._negative_number_matcher = re.compile(r"-\.?\d")
    what = sim.add_mutually_exclusive_group(required=True)
    what.add_argument("--n-stars", type=_bounded_int(1, 10**11), help="number of rows to write")
    what.add_argument("--cluster", type=_cluster_arg, metavar="FEH,AGE_GYR,DIST_KPC,N",
                      help="write instead one mock star cluster ([Fe/H], age in Gyr, distance in kpc, N members "
                           "inside the magnitude window) plus the field stars of its cone, with a bool column "
                           "cluster_member (see photofeh.simulate.cluster); --chunk-size, --workers and "
                           "--min-abs-b do not apply")
    sim.add_argument("--seed", type=_bounded_int(0, 2**63 - 1), default=42,
                     help="random seed; same seed, same catalogue")
    sim.add_argument("--out", required=True, help="output file (.parquet or .fits)")
    sim.add_argument("--format", choices=("parquet", "fits"), help="output format (default: from the extension)")
    sim.add_argument("--spec-only", action="store_true",
                     help="write only stars with spectroscopic labels (a training set of N stars)")
    sim.add_argument("--select-band", type=_band_name, default="sdss_r",
                     help="band whose (extinguished, noiseless) magnitude defines the catalogue")
    sim.add_argument("--mag-range", type=_bounded_float(-2.0, 35.0, open_lo=False), nargs=2, default=(14.0, 22.5),
                     metavar=("BRIGHT", "FAINT"),
                     help="magnitude range in the selection band")
    sim.add_argument("--min-abs-b", type=_bounded_float(0.0, 89.9, open_lo=False), default=20.0,
                     help="simulate only |b| >= this (deg)")
    sim.add_argument("--north-only", action="store_true",
                     help="simulate only the north Galactic cap (b > 0); with --min-abs-b 30, the SDSS footprint's "
                          "latitudes, so that every star has SDSS photometry where it is bright enough")
    sim.add_argument("--footprint", type=_footprint, action="append", metavar="SURVEY=TERMS",
                     help="override a survey footprint, e.g. 'sdss=min_b:30,min_dec:-5' "
                          "(terms: min_b, max_b, min_dec, max_dec); repeatable")
    sim.add_argument("--disk-feh-law", choices=("calibrated", "ivezic2008", "bond2010"), default="calibrated",
                     help="disk [Fe/H] law: 'calibrated' (median -0.05 in the plane, -0.65 far from it: later "
                          "measurements), or the Ivezic et al. 2008 / Bond et al. 2010 parameters")
    sim.add_argument("--halo-feh-law", choices=("an2015", "ivezic2008"), default="an2015",
                     help="halo [Fe/H] law: 'an2015' (inner/outer halo at -1.4/-1.9 with the Youakim et al. 2020 "
                          "metal-poor tail to -4), or the Ivezic et al. 2008 Gaussian (-1.46, 0.30)")
    sim.add_argument("--colours", choices=("loci", "models"), default="loci",
                     help="'loci': stellar-model SDSS colours moved onto the empirical loci of Yuan et al. 2015 "
                          "(dwarfs) and Zhang et al. 2021 (giants); 'models': the raw PARSEC colours")
    sim.add_argument("--no-binaries", action="store_true", help="no unresolved binaries")
    sim.add_argument("--isochrones", help="another isochrone grid file with PARSEC-like columns")
    sim.add_argument("--cluster-lb", type=_lb_arg, metavar="L,B",
                     help="with --cluster: Galactic position of the cluster in deg (default 60,60: high latitude, "
                          "inside the SDSS, CFIS and PS1 footprints)")
    sim.add_argument("--cluster-radius", type=_bounded_float(0.0, 600.0), metavar="ARCMIN",
                     help="with --cluster: Plummer (half-light) radius in arcmin (default 2)")
    sim.add_argument("--field-radius", type=_bounded_float(0.0, 120.0), metavar="ARCMIN",
                     help="with --cluster: radius of the cone of field stars, and of the members' truncation, "
                          "in arcmin (default 10)")
    sim.add_argument("--chunk-size", type=_bounded_int(1, 50_000_000), default=200_000, help="rows per write")
    sim.add_argument("--workers", type=_workers, default=1,
                     help="worker processes (results do not depend on it)")
    sim.add_argument("--quiet", action="store_true", help="no progress line")
    sim.set_defaults(func=cmd_simulate)

    tr = sub.add_parser("train", help="train a network on a labelled catalogue",
                        description="Train the model described by a TOML config (default: configs/default.toml "
                                    "settings) on a labelled catalogue; write a run directory.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    tr.add_argument("table", help="labelled catalogue (.parquet or .fits), e.g. from 'simulate --spec-only'")
    tr.add_argument("--config", help="TOML configuration ([data], [model], [train] sections)")
    tr.add_argument("--out", required=True, help="run directory to create")
    tr.add_argument("--epochs", type=_positive_int, help="override the number of epochs")
    tr.add_argument("--ensemble", type=_positive_int, help="override the number of ensemble members")
    tr.add_argument("--seed", type=_bounded_int(0, 2**63 - 1), help="override the seed")
    tr.add_argument("--prior", choices=("labels", "flat"),
                    help="override the prior: labels (best per-star estimate) or flat (small bias at every [Fe/H], "
                         "for metallicity distributions and maps; docs/populations.md)")
    tr.add_argument("--baseline-rounds", type=_bounded_int(0, 100_000),
                    help="override the LightGBM rounds of the baselines fitted beside the network (0: none)")
    tr.add_argument("--split-seed", type=_bounded_int(0, 2**63 - 1), metavar="N",
                    help="override split_seed: choose the test stars by a hash of their source_id seeded with N, "
                         "whatever the row order (20201125 with a test fraction of 0.30: the benchmarks' split "
                         "of the green2020 sample; docs/config.md)")
    tr.add_argument("--overwrite", action="store_true",
                    help="replace an existing run directory (only once the new run is complete)")
    tr.add_argument("--quiet", action="store_true", help="no per-epoch log")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="metrics and figures for a trained model",
                        description="Evaluate a run (its test split by default) or a model folder on a labelled "
                                    "catalogue; writes test_metrics.json and figures (PNG and PDF): residuals, "
                                    "residual trends with the run's baselines, calibration, confusion matrices.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ev.add_argument("model", help="run directory (from 'photofeh train') or model folder")
    ev.add_argument("table", help="labelled catalogue")
    ev.add_argument("--split", choices=("test", "validation", "train", "all"), default="test")
    ev.add_argument("--preset", type=_preset_name,
                    help="read the table through this preset (default: the table_preset the model was trained with)")
    ev.add_argument("--out", help="where to write metrics and figures (default: the run directory)")
    ev.add_argument("--no-figures", action="store_true", help="write test_metrics.json only")
    ev.set_defaults(func=cmd_evaluate)

    lf = sub.add_parser("lr-find", help="learning-rate range test; saves its plot",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    lf.add_argument("table", help="labelled catalogue")
    lf.add_argument("--config", help="TOML configuration")
    lf.add_argument("--out", default="lr_finder.png", help="plot file")
    lf.set_defaults(func=cmd_lr_find)

    cm = sub.add_parser("crossmatch", help="join two catalogues on the sky (nearest within a radius)",
                        description="Keep every row of REFERENCE and attach its nearest OTHER row within the "
                                    "radius. A catalogue is FILE or FILE:PRESET (presets: gaia_dr3, "
                                    "sdss_photoobj, ps1_meanobject, cfis_megapipe, sspp, apogee_allstar, lamost_lrs, "
                                    "kepler_huber17).",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cm.add_argument("reference", type=_catalogue_arg, help="catalogue whose rows are all kept (the smaller one)")
    cm.add_argument("other", type=_catalogue_arg, help="catalogue streamed through the match")
    cm.add_argument("--radius", type=RADIUS, default=1.0, help="match radius (arcsec)")
    cm.add_argument("--epoch", type=_epoch_arg, metavar="YEAR|COLUMN",
                    help="move the catalogue with proper motions (pmra, pmdec; Gaia at J2016.0) to this epoch "
                         "(Julian year, e.g. 2004.5 for SDSS imaging) before matching, or to each row's epoch in "
                         "this column of the other catalogue (Julian years or MJD, e.g. SDSS mjd)")
    cm.add_argument("--out", required=True, help="output Parquet file")
    cm.add_argument("--chunk-size", type=ROWS, default=1_000_000)
    cm.set_defaults(func=cmd_crossmatch)

    mp = sub.add_parser("merge-photometry", help="a prediction input: stream a big catalogue, attach others",
                        description="Stream BASE (any size) and attach to each row the nearest row of every "
                                    "--other catalogue (held in memory) within the radius; every BASE row is "
                                    "kept. Catalogues are FILE or FILE:PRESET.",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mp.add_argument("base", type=_catalogue_arg, help="the catalogue to predict for, streamed in chunks")
    mp.add_argument("--other", type=_catalogue_arg, action="append", required=True,
                    help="catalogue to attach, FILE[:PRESET]; repeatable")
    mp.add_argument("--radius", type=RADIUS, default=1.0, help="match radius (arcsec)")
    mp.add_argument("--sfd-dir", metavar="DIR",
                    help="folder with the SFD map files (SFD_dust_4096_ngp/sgp.fits): ebv at each star's position "
                         "where no catalogue gave one; never downloaded")
    mp.add_argument("--out", required=True, help="output Parquet file")
    mp.add_argument("--chunk-size", type=ROWS, default=1_000_000)
    mp.set_defaults(func=cmd_merge_photometry)

    bt = sub.add_parser("build-training-set", help="labels x photometry, quality cuts, one Parquet file",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bt.add_argument("--labels", type=_catalogue_arg, required=True, help="label catalogue, FILE[:PRESET]")
    bt.add_argument("--photometry", type=_catalogue_arg, action="append", default=[],
                    help="photometric catalogue FILE[:PRESET]; repeatable (matched in order); leave out when the "
                         "label table carries its photometry (e.g. SSPP)")
    bt.add_argument("--cuts", help="TOML file of quality cuts (see photofeh.io.cuts)")
    bt.add_argument("--radius", type=RADIUS, default=1.0, help="match radius (arcsec)")
    bt.add_argument("--sfd-dir", help="folder with the SFD map files (SFD_dust_4096_ngp/sgp.fits) to read E(B-V) "
                                      "from; never downloaded")
    bt.add_argument("--epoch", type=_bounded_float(1900.0, 2100.0), metavar="YEAR",
                    help="move catalogues with proper motions to this epoch before each match (see crossmatch)")
    bt.add_argument("--out", required=True, help="output Parquet file (a .report.json is written beside it)")
    bt.add_argument("--chunk-size", type=ROWS, default=1_000_000)
    bt.set_defaults(func=cmd_build_training_set)
    pr = sub.add_parser(
        "predict", help="predict labels for a whole catalogue (streamed, resumable, optionally on Dask)",
        description="Stream INPUT (FITS, Parquet file or dataset, CSV, HDF5, VOTable, or a HATS catalogue with "
                    "--scheduler) in chunks and write every label with its error, p_giant, is_giant and "
                    "usable to OUT: a folder of Parquet parts, or one file if OUT ends in .parquet. Interrupted "
                    "(even by kill -9), the same command resumes from the last finished chunk. Exit code 3: "
                    "finished, but chunks were skipped (--on-error skip).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pr.add_argument("model", help="run directory (from 'photofeh train') or model folder")
    pr.add_argument("input", help="catalogue to predict for (schema column names, or use --preset/--mapping)")
    pr.add_argument("--out", required=True, help="output folder of Parquet parts, or a .parquet file")
    group = pr.add_mutually_exclusive_group()
    group.add_argument("--preset", type=_preset_name, help="map archive columns with this preset")
    group.add_argument("--mapping", help="TOML mapping file (see docs/catalogues.md)")
    pr.add_argument("--format", help="input format when the extension does not tell")
    pr.add_argument("--ebv-column", metavar="NAME",
                    help="input column holding SFD-scale E(B-V), used as the model's E(B-V) column")
    pr.add_argument("--sfd-dir", metavar="DIR",
                    help="folder with the SFD map files (SFD_dust_4096_ngp/sgp.fits): E(B-V) at each star's ra/dec "
                         "where the input has none; never downloaded")
    pr.add_argument("--keep", nargs="+", metavar="COLUMN",
                    help="columns passed through to the output (source_id, ra, dec are kept when present)")
    pr.add_argument("--chunk-rows", type=ROWS, default=250_000,
                    help="rows per chunk (one output part each; memory grows with it)")
    pr.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the network runs")
    pr.add_argument("--threads", type=_bounded_int(1, 1024),
                    help="CPU threads for the network, per worker (default: torch's; with --workers, the cores "
                         "shared out)")
    pr.add_argument("--workers", type=_bounded_int(1, 1024), default=1,
                    help="processes on this machine, each reading, predicting and writing whole chunks (Parquet, "
                         "FITS or HDF5 input; default 1): every stage runs in parallel, not only the network")
    pr.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                    help="what to do with a chunk that cannot be read or predicted (it is reported with its rows)")
    pr.add_argument("--scheduler", metavar="ADDRESS",
                    help="run on a Dask cluster: a scheduler address (tcp://host:8786) or 'local:N' for N local "
                         "worker processes; the input must be a Parquet dataset or a HATS catalogue")
    pr.add_argument("--prior", choices=("labels", "flat"),
                    help="prior of the [Fe/H] estimates: the model's own (default), or flat: a labels-prior "
                         "model's training distribution divided out (for metallicity distributions and maps; "
                         "docs/populations.md)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_predict)

    fm = sub.add_parser(
        "map", help="distances and a median [Fe/H] map in Galactocentric R-|Z| from predictions",
        description="Stream the output of 'photofeh predict' (kept with --keep sdss_r ebv parallax "
                    "parallax_error): photometric distances from the predicted absolute magnitude, combined with "
                    "Gaia parallaxes where precise, astropy's Galactocentric frame, and the median [Fe/H] per "
                    "(R, |Z|) cell as in Ivezic et al. 2008. Every star left out is counted.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    fm.add_argument("predictions", help="prediction folder or file from 'photofeh predict'")
    fm.add_argument("--out", required=True, help="folder for map.json, feh_map.npz and the figures (docs/maps.md)")
    fm.add_argument("--band", nargs="+", default=["sdss_r"],
                    help="band(s) of the predicted absolute magnitude (mabs_<band>), in order of preference: "
                         "each star uses the first it has (e.g. sdss_r ps1_r)")
    fm.add_argument("--absmag", choices=("model", "ivezic2008"), default="model",
                    help="absolute magnitudes from the model's mabs_<band> label, or from the Ivezic et al. 2008 "
                         "main-sequence M_r(g-i, [Fe/H]) with the predicted [Fe/H] (keep sdss_g sdss_r sdss_i "
                         "when predicting; stars outside 0.2 < g-i < 4.0, -2.5 < [Fe/H] < 0.2 are left out)")
    fm.add_argument("--giants", choices=("exclude", "include", "only"), default="exclude",
                    help="giants by the model's class (Ivezic 2008 mapped main-sequence stars)")
    fm.add_argument("--min-parallax-snr", type=_bounded_float(0.0, 1e4, open_lo=False), default=5.0,
                    help="combine with Gaia parallaxes of at least this S/N")
    fm.add_argument("--max-rel-dist-err", type=_bounded_float(0.0, 100.0), default=0.3,
                    help="leave out stars with a larger d error")
    fm.add_argument("--max-feh-err", type=_bounded_float(0.0, 100.0), default=MAX_FEH_ERR,
                    help="leave out stars whose predicted [Fe/H] error is larger (vague predictions lean toward "
                         "the training mean); not much lower than the halo's typical error, or the cut selects "
                         "by metallicity (docs/maps.md)")
    fm.add_argument("--cell", type=_bounded_float(0.0, 10.0), default=0.5, help="cell size in R and |Z| (kpc)")
    fm.add_argument("--r-max", type=_bounded_float(0.0, 200.0), default=20.0, help="map extent in R (kpc)")
    fm.add_argument("--z-max", type=_bounded_float(0.0, 200.0), default=10.0, help="map extent in |Z| (kpc)")
    fm.add_argument("--min-count", type=_bounded_int(1, 10**9), default=20, help="stars needed to show a cell")
    fm.add_argument("--stars", metavar="FILE.parquet",
                    help="also write every star's distance, its error, R, z, phi and whether it is in the map")
    fm.add_argument("--out-of-domain", choices=("exclude", "include"), default="exclude",
                    help="stars the model marked outside its training domain (in_domain): left out and counted, "
                         "or kept")
    fm.add_argument("--slices", type=_bounded_float(0.0, 200.0, open_lo=False), nargs="+", metavar="KPC",
                    default=[0.0, 1.0, 2.0, 4.0, 8.0],
                    help="|Z| edges of the slices whose metallicity distribution is deconvolved into map.json")
    fm.add_argument("--deconvolve", action="store_true",
                    help="also the deconvolved MDF median of every cell (feh_map_deconvolved.png/.npz; ~120 kB of "
                         "memory per occupied cell; use flat-prior predictions)")
    fm.add_argument("--no-figures", action="store_true",
                    help="write map.json and the histograms (feh_map.npz) only, no figures (e.g. for many maps "
                         "in a loop; the figures can be drawn later from feh_map.npz)")
    fm.add_argument("--chunk-rows", type=ROWS, default=1_000_000)
    fm.set_defaults(func=cmd_map)

    md = sub.add_parser(
        "mdf", help="deconvolved metallicity distribution of a selection of predicted stars",
        description="Select stars of a 'photofeh predict' output (a pandas query on its columns, the giant class, "
                    "an error cut; stars outside the model's training domain are left out by default) and infer "
                    "their metallicity distribution by extreme deconvolution of the estimates with their errors "
                    "(a Gaussian mixture, Bovy, Hogg & Roweis 2011), with bootstrap errors on its median, mean and "
                    "width. Use a model trained with prior = \"flat\" (docs/populations.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    md.add_argument("predictions", help="prediction folder or file from 'photofeh predict'")
    md.add_argument("--out", required=True, help="folder for mdf.json, mdf.png and mdf.pdf")
    md.add_argument("--where", metavar="QUERY",
                    help="pandas query on the prediction columns, e.g. \"abs(b) > 30 and sdss_g < 19\" "
                         "(keep the columns it needs with predict --keep)")
    md.add_argument("--giants", choices=("include", "exclude", "only"), default="include",
                    help="select by the model's giant class")
    md.add_argument("--max-feh-err", type=_bounded_float(0.0, 100.0), help="leave out vaguer estimates")
    md.add_argument("--out-of-domain", choices=("exclude", "include"), default="exclude",
                    help="stars outside the model's training domain")
    md.add_argument("--method", choices=("unfold", "xd"), default="unfold",
                    help="unfold: through the response the model measured on its validation stars (default; "
                         "free of the estimates' shrinkage toward the labelled stars); xd: extreme deconvolution "
                         "with the estimates' own errors (right only for likelihood-like estimates)")
    md.add_argument("--components", type=_bounded_int(1, 4),
                    help="mixture components of --method xd (default: chosen by BIC)")
    md.add_argument("--bootstrap", type=_bounded_int(0, 10_000), default=200, help="bootstrap resamples")
    md.add_argument("--seed", type=_bounded_int(0, 2**32 - 1), default=0, help="seed of the bootstrap")
    md.add_argument("--chunk-rows", type=ROWS, default=1_000_000)
    md.set_defaults(func=cmd_mdf)

    rp = sub.add_parser("report", help="one self-contained HTML page about a run (and its predictions and map)",
                        description="Write an HTML page with every figure embedded (it opens offline): data and cut "
                                    "summary, training curves, accuracy and calibration against the baselines, "
                                    "training coverage, the map figures and the provenance. Run 'photofeh "
                                    "evaluate' on the run first for the accuracy section.")
    rp.add_argument("run", help="a run folder of 'photofeh train'")
    rp.add_argument("--predictions", help="a 'photofeh predict' output made with the run's model (coverage, counts)")
    rp.add_argument("--map", dest="map_dir", help="a 'photofeh map' folder made from those predictions")
    rp.add_argument("--out", help="the HTML file to write (default: RUN/report.html)")
    rp.set_defaults(func=cmd_report)
    return parser


def _terminate(signum, frame) -> None:
    """SIGTERM (a batch system's kill, `kill PID`) is handled like Ctrl-C: outputs are cleaned up the same way.
    Once: a second SIGTERM must not interrupt that clean-up."""
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    from photofeh.io.locking import OutputLocked

    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return args.func(args)
    except (UserError, OutputLocked) as exc:
        print(f"photofeh {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into e.g. `head`: not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"photofeh {args.command}: interrupted; no partial output was kept", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def run() -> None:
    """The ``photofeh`` executable: :func:`main`, then exit with its code. Once the work is over, a late
    SIGTERM or Ctrl-C has nothing left to interrupt and cannot turn a finished run into a killed one."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)  # main restores this handler, not the default, when it returns
    code = 130
    try:
        code = main()
    except KeyboardInterrupt:  # arrived while an error was being reported
        code = 130
    finally:
        while True:  # a signal landing between these two calls raises once more: retry until both are set
            try:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                break
            except KeyboardInterrupt:
                continue
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
