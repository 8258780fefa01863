"""``photofeh simulate``: a mock Milky Way survey with known truth, or one mock star cluster in its field.

The mock is the test bed of every later stage, so its summary (populations, phases, detections per band)
is printed as it is written, counted chunk by chunk without a second pass over the file.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from photofeh.cli.arguments import band_name, bounded_float, bounded_int, footprint_arg, worker_count
from photofeh.cli.common import OVERWRITE_HELP, UserError, check_output, user_errors


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
    with user_errors(ValueError, KeyError, FileNotFoundError, OSError):
        survey = cl.ClusterFieldSurvey(config, field_radius)
        config.validate(survey.grid)
        cl.write_cluster_catalog(config, out, field_radius, fmt, survey)
    table = read_table(out)
    summary = _Summary()
    summary.add(pa.Table.from_pandas(table, preserve_index=False))
    members = int(table["cluster_member"].sum())
    print(f"wrote {out} ({fmt}) in {time.perf_counter() - t0:.1f} s: {members:,d} cluster members and "
          f"{len(table) - members:,d} field stars within {field_radius:g} arcmin of (l, b) = ({l:g}, {b:g})")
    print(summary.text())
    return 0


def handle(args: argparse.Namespace) -> int:
    """Write the mock survey (or cluster) and print its summary; bad settings are refused before any work."""
    from photofeh.io.catalog import check_writable, format_for
    from photofeh.processes import WorkerDied
    from photofeh.simulate.observe import DEFAULT_FOOTPRINTS
    from photofeh.simulate.survey import MockSurvey, MockSurveyConfig, simulate

    out = Path(args.out)
    with user_errors(ValueError, OSError):
        fmt = format_for(out, args.format)
        check_writable(out)
    check_output(out, [args.isochrones], args.overwrite)
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
    with user_errors(ValueError, KeyError, FileNotFoundError):
        config.validate()
        survey = MockSurvey(config)
    summary, progress = _Summary(), _Progress(config.n_stars, args.quiet)

    def on_chunk(chunk, done: int) -> None:
        summary.add(chunk)
        progress(done)

    t0 = time.perf_counter()
    with user_errors(ValueError, OSError, WorkerDied):
        simulate(config, out, fmt, args.chunk_size, args.workers, survey, on_chunk)
    dt = time.perf_counter() - t0
    print(f"wrote {out} ({fmt}) in {dt:.1f} s, {config.n_stars / dt:,.0f} stars/s")
    print(summary.text())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """simulate's arguments: one option per knob of MockSurveyConfig and ClusterConfig."""
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
    what.add_argument("--n-stars", type=bounded_int(1, 10**11), help="number of rows to write")
    what.add_argument("--cluster", type=_cluster_arg, metavar="FEH,AGE_GYR,DIST_KPC,N",
                      help="write instead one mock star cluster ([Fe/H], age in Gyr, distance in kpc, N members "
                           "inside the magnitude window) plus the field stars of its cone, with a bool column "
                           "cluster_member (see photofeh.simulate.cluster); --chunk-size, --workers and "
                           "--min-abs-b do not apply")
    sim.add_argument("--seed", type=bounded_int(0, 2**63 - 1), default=42,
                     help="random seed; same seed, same catalogue")
    sim.add_argument("--out", required=True, help="output file (.parquet or .fits)")
    sim.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    sim.add_argument("--format", choices=("parquet", "fits"), help="output format (default: from the extension)")
    sim.add_argument("--spec-only", action="store_true",
                     help="write only stars with spectroscopic labels (a training set of N stars)")
    sim.add_argument("--select-band", type=band_name, default="sdss_r",
                     help="band whose (extinguished, noiseless) magnitude defines the catalogue")
    sim.add_argument("--mag-range", type=bounded_float(-2.0, 35.0, open_lo=False), nargs=2, default=(14.0, 22.5),
                     metavar=("BRIGHT", "FAINT"),
                     help="magnitude range in the selection band")
    sim.add_argument("--min-abs-b", type=bounded_float(0.0, 89.9, open_lo=False), default=20.0,
                     help="simulate only |b| >= this (deg)")
    sim.add_argument("--north-only", action="store_true",
                     help="simulate only the north Galactic cap (b > 0); with --min-abs-b 30, the SDSS footprint's "
                          "latitudes, so that every star has SDSS photometry where it is bright enough")
    sim.add_argument("--footprint", type=footprint_arg, action="append", metavar="SURVEY=TERMS",
                     help="override a survey footprint, e.g. 'sdss=min_b:30,min_dec:-5' "
                          "(terms: min_b, max_b, min_dec, max_dec); repeatable")
    sim.add_argument("--disk-feh-law", choices=("calibrated", "ivezic2008", "bond2010"), default="calibrated",
                     help="disk [Fe/H] law: 'calibrated' (median -0.05 in the plane, -0.58 far from it: later "
                          "measurements and the real SEGUE DR17 labels), or the Ivezic et al. 2008 / Bond et al. "
                          "2010 parameters")
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
    sim.add_argument("--cluster-radius", type=bounded_float(0.0, 600.0), metavar="ARCMIN",
                     help="with --cluster: Plummer (half-light) radius in arcmin (default 2)")
    sim.add_argument("--field-radius", type=bounded_float(0.0, 120.0), metavar="ARCMIN",
                     help="with --cluster: radius of the cone of field stars, and of the members' truncation, "
                          "in arcmin (default 10)")
    sim.add_argument("--chunk-size", type=bounded_int(1, 50_000_000), default=200_000, help="rows per write")
    sim.add_argument("--workers", type=worker_count, default=1,
                     help="worker processes (results do not depend on it)")
    sim.add_argument("--quiet", action="store_true", help="no progress line")
    sim.set_defaults(func=handle)
