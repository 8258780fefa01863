"""Binned maps of a stellar quantity (median [Fe/H] in Galactocentric R, |Z|), built chunk by chunk.

A median cannot be merged across chunks, but a histogram can: each (R, Z)
cell keeps a fine histogram of the quantity (0.01 dex wide by default), so
10^9 stars stream through in bounded memory and the medians come out exact
to within one histogram bin (linear interpolation inside it). This is the
map of Ivezic et al. 2008 (ApJ 684, 287), fig. 9: median [Fe/H] in the
R-|Z| plane.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photofeh.galaxy.distance_posterior import MIXTURE_COLUMNS
from photofeh.galaxy.distances import galactic_lb

__all__ = ["BinnedQuantileMap", "MapProducts", "feh_map_from_predictions", "galactic_lb", "SKY_NSIDE",
           "check_map_input", "predictions_absmag_reference"]

# The maps' default [Fe/H]-error cut (dex). Photometric [Fe/H] errors grow as [Fe/H] falls (u-g loses its
# sensitivity below about -2), so a cut near the halo stars' typical error keeps disk stars and drops halo
# ones: on the demo's mock, 0.3 dex left 5% of the halo dwarfs at 4-8 kpc and gave median [Fe/H] -0.74 to
# -1.05 there against a truth of -1.49 to -1.63; 0.6 dex gives -1.39 to -1.69 (docs/maps.md).
MAX_FEH_ERR = 0.6

SKY_NSIDE = 16  # HEALPix resolution of the sky map: 3,072 pixels of 13.4 deg^2 (Gorski et al. 2005, ApJ 622, 759)


@dataclass
class BinnedQuantileMap:
    """Counts of ``value`` in (x, y, value) cells; quantiles per (x, y) cell from the cumulative counts."""

    x_edges: np.ndarray
    y_edges: np.ndarray
    value_edges: np.ndarray
    counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.x_edges, self.y_edges, self.value_edges = (np.asarray(e, float) for e in
                                                        (self.x_edges, self.y_edges, self.value_edges))
        shape = (self.x_edges.size - 1, self.y_edges.size - 1, self.value_edges.size - 1)
        if self.counts is None:
            self.counts = np.zeros(shape, np.int64)
        elif self.counts.shape != shape:
            raise ValueError(f"counts of shape {self.counts.shape} do not match the edges {shape}")

    @classmethod
    def feh_r_z(cls, r_max: float = 20.0, z_max: float = 10.0, cell: float = 0.5,
                feh_range: tuple[float, float] = (-4.0, 1.0), feh_step: float = 0.01) -> BinnedQuantileMap:
        """[Fe/H] in R (0..r_max) and |Z| (0..z_max) cells of ``cell`` kpc."""
        return cls(np.arange(0.0, r_max + cell / 2, cell), np.arange(0.0, z_max + cell / 2, cell),
                   np.arange(feh_range[0], feh_range[1] + feh_step / 2, feh_step))

    def covers(self, x, y) -> np.ndarray:
        """Which points fall in an (x, y) cell of the map."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        with np.errstate(invalid="ignore"):
            return ((x >= self.x_edges[0]) & (x < self.x_edges[-1]) & (y >= self.y_edges[0])
                    & (y < self.y_edges[-1]))

    def add(self, x, y, value) -> int:
        """Accumulate one chunk; returns how many of its stars fell in the map (finite and in range)."""
        x, y, v = (np.asarray(a, float) for a in (x, y, value))
        ix = np.searchsorted(self.x_edges, x, side="right") - 1
        iy = np.searchsorted(self.y_edges, y, side="right") - 1
        iv = np.clip(np.searchsorted(self.value_edges, v, side="right") - 1, 0, self.value_edges.size - 2)
        inside = self.covers(x, y) & np.isfinite(v)
        flat = np.ravel_multi_index((ix[inside], iy[inside], iv[inside]), self.counts.shape)
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        return int(inside.sum())

    def merge(self, other: BinnedQuantileMap) -> BinnedQuantileMap:
        """The map of both sets of stars (for maps made in parallel)."""
        if not all(np.array_equal(a, b) for a, b in ((self.x_edges, other.x_edges), (self.y_edges, other.y_edges),
                                                      (self.value_edges, other.value_edges))):
            raise ValueError("maps with different bins cannot be merged")
        return BinnedQuantileMap(self.x_edges, self.y_edges, self.value_edges, self.counts + other.counts)

    @property
    def n(self) -> np.ndarray:
        """Stars per (x, y) cell."""
        return self.counts.sum(axis=2)

    def quantile(self, q: float, min_count: int = 1) -> np.ndarray:
        """The q-quantile per cell (NaN where fewer than ``min_count`` stars), interpolated within a value bin."""
        cum = np.cumsum(self.counts, axis=2)
        n = cum[..., -1]
        target = q * n
        k = np.argmax(cum >= target[..., None], axis=2)  # first value bin reaching the target
        below = np.take_along_axis(cum, k[..., None], axis=2)[..., 0] - np.take_along_axis(
            self.counts, k[..., None], axis=2)[..., 0]
        inbin = np.take_along_axis(self.counts, k[..., None], axis=2)[..., 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.where(inbin > 0, (target - below) / inbin, 0.5)
        lo = self.value_edges[k]
        width = np.diff(self.value_edges)[k]
        return np.where(n >= max(min_count, 1), lo + frac * width, np.nan)

    def median(self, min_count: int = 1) -> np.ndarray:
        return self.quantile(0.5, min_count)

    def save(self, path) -> None:
        np.savez_compressed(path, x_edges=self.x_edges, y_edges=self.y_edges, value_edges=self.value_edges,
                            counts=self.counts)

    @classmethod
    def load(cls, path) -> BinnedQuantileMap:
        with np.load(path) as f:
            return cls(f["x_edges"], f["y_edges"], f["value_edges"], f["counts"])


FEH_BINS = 500  # (-4, +1) in 0.01 dex: see BinnedQuantileMap.feh_r_z
MAX_MAP_BYTES = 2 << 30  # the map's histogram counts (int64) must fit in 2 GiB


def check_map_options(cell: float, r_max: float, z_max: float, min_parallax_snr: float = 5.0,
                      max_rel_dist_err: float = 0.3, max_feh_err: float | None = MAX_FEH_ERR,
                      chunk_rows: int = 1_000_000, min_count: int = 1) -> None:
    """Every map option range-checked before any work starts (a 0.001 kpc cell would ask for ~750 GiB)."""
    def finite_in(name, value, lo, hi, open_lo=True):
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or \
                not ((lo < value) if open_lo else (lo <= value)) or value > hi:
            raise ValueError(f"{name} must be a finite number in {'(' if open_lo else '['}{lo:g}, {hi:g}], "
                             f"got {value!r}")

    finite_in("cell", cell, 0.0, 10.0)
    finite_in("r_max", r_max, 0.0, 200.0)
    finite_in("z_max", z_max, 0.0, 200.0)
    finite_in("min_parallax_snr", min_parallax_snr, 0.0, 1e4, open_lo=False)
    finite_in("max_rel_dist_err", max_rel_dist_err, 0.0, 100.0)
    if max_feh_err is not None:
        finite_in("max_feh_err", max_feh_err, 0.0, 100.0)
    if not isinstance(chunk_rows, int) or not 1 <= chunk_rows <= 100_000_000:
        raise ValueError(f"chunk_rows must be an integer from 1 to 100,000,000, got {chunk_rows!r}")
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}")
    cells = int(np.ceil(r_max / cell)) * int(np.ceil(z_max / cell))
    if cells * FEH_BINS * 8 > MAX_MAP_BYTES:
        raise ValueError(f"a {cell:g} kpc cell over {r_max:g} x {z_max:g} kpc makes {cells:,d} cells, whose [Fe/H] "
                         f"histograms would need {cells * FEH_BINS * 8 / 2**30:,.1f} GiB (at most "
                         f"{MAX_MAP_BYTES / 2**30:.0f}); use a larger cell or a smaller extent")


def predictions_absmag_reference(source: str | os.PathLike) -> tuple[dict[str, str], str]:
    """What the absolute magnitudes of a ``photofeh predict`` output refer to (``{"mabs_<band>":
    "dereddened" | "observed"}``, :func:`photofeh.model.parallax_labels.absmag_reference`) and where that was
    read: the predictions' provenance, the model folder it names (outputs written before the provenance
    recorded it), or nowhere (a table made by hand: intrinsic M_abs assumed, and said so)."""
    import json

    from photofeh.io.readers import table_metadata
    from photofeh.model.artifact import named_model_meta
    from photofeh.model.parallax_labels import absmag_reference

    provenance = table_metadata(source)
    if "model_absmag_reference" in provenance:
        return json.loads(provenance["model_absmag_reference"]), "predictions' provenance"
    meta, path = named_model_meta(provenance)
    if meta is not None:
        return absmag_reference(meta), str(path)
    return {}, "not recorded: M_abs taken as intrinsic (paired with dereddened magnitudes)"


def check_map_input(source: str | os.PathLike, bands: str | Sequence[str] = "sdss_r", absmag: str = "model",
                    absmag_reference: dict[str, str] | None = None) -> None:
    """Refuse, before anything is written, a prediction table that cannot be mapped: no sky positions, no
    predicted [Fe/H], or neither an absolute magnitude nor the photometry that goes with it in any band."""
    from photofeh.galaxy.distances import distance_columns_needed, how_to_get_distances
    from photofeh.io.readers import table_columns

    have = table_columns(source)
    if not have:
        return  # an unknown format: the streaming pass will say what it cannot read
    bands = [bands] if isinstance(bands, str) else list(bands)
    if absmag == "ivezic2008":
        bands, absmag_reference = ["sdss_r"], None
        have = [*have, "mabs_sdss_r", "mabs_sdss_r_err"]  # computed from g-i and [Fe/H]
        lacking = [c for c in ("sdss_g", "sdss_i") if c not in have]
    else:
        lacking = []
    lacking += [c for c in ("feh", "feh_err", "usable") if c not in have]
    positions = [c for c in ("ra", "dec") if c not in have]
    if positions:
        raise ValueError(f"{source} has no sky positions ({', '.join(positions)} missing): a map needs ra and "
                         "dec for every star. Keep them when predicting (they are kept whenever the input has "
                         "them; 'photofeh predict ... --keep ra dec' for other names through a preset); a "
                         "catalogue without positions (e.g. the Green et al. 2020 sample) can be predicted and "
                         "given an MDF ('photofeh mdf') but not mapped")
    per_band = {b: distance_columns_needed([b], absmag_reference, have) for b in bands}
    if all(per_band.values()) or lacking:
        need = sorted({c for cols in per_band.values() for c in cols} | set(lacking))
        raise ValueError(f"{source} lacks column(s) {need} that distances need in every band of {bands}: "
                         f"{how_to_get_distances(bands)}")


@dataclass
class MapProducts:
    """What one streaming pass of ``photofeh map`` accumulates, each part in bounded memory.

    ``rz``: [Fe/H] histograms per (R, |Z|) cell; ``sky``: the same per HEALPix pixel of Galactic (l, b)
    (``nside``; x = pixel index, one y bin); ``slices``: (|Z| edges, one :class:`photofeh.galaxy.mdf.BinnedEstimates`
    per slice) or None; ``cells``: (i, j) -> ``BinnedEstimates`` per map cell (``deconvolve``) or None.
    """

    rz: BinnedQuantileMap
    sky: BinnedQuantileMap
    nside: int = SKY_NSIDE
    slices: tuple | None = None
    cells: dict | None = None

    @classmethod
    def empty(cls, r_max: float, z_max: float, cell: float, nside: int = SKY_NSIDE) -> MapProducts:
        rz = BinnedQuantileMap.feh_r_z(r_max=r_max, z_max=z_max, cell=cell)
        npix = 12 * nside * nside
        return cls(rz, BinnedQuantileMap(np.arange(npix + 1.0), np.array([0.0, 1.0]), rz.value_edges), nside)

    def add_sky(self, l_deg, b_deg, feh) -> None:
        """Stars at Galactic (l, b) in degrees into the sky map's HEALPix pixels."""
        import healpy as hp

        pix = hp.ang2pix(self.nside, l_deg, b_deg, lonlat=True)
        self.sky.add(pix + 0.5, np.full(pix.size, 0.5), feh)

    def save(self, path) -> None:
        """The (R, |Z|) and sky histograms in one .npz (the |Z|-slice results go to map.json)."""
        np.savez_compressed(path, x_edges=self.rz.x_edges, y_edges=self.rz.y_edges,
                            value_edges=self.rz.value_edges, counts=self.rz.counts,
                            sky_nside=self.nside, sky_counts=self.sky.counts[:, 0, :])


def deconvolved_cells(products: MapProducts, min_count: int = 20, n_boot: int = 50, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per cell with at least ``min_count`` stars (``feh_map_from_predictions(deconvolve=True)``): the median
    of the deconvolved MDF (:mod:`photofeh.galaxy.mdf`) and its bootstrap error; NaN elsewhere."""
    m = products.rz
    shape = (len(m.x_edges) - 1, len(m.y_edges) - 1)
    median, err = np.full(shape, np.nan), np.full(shape, np.nan)
    for (i, j), h in sorted((products.cells or {}).items()):
        if h.n >= max(min_count, 10):
            summary = h.summary(n_boot=n_boot, seed=seed)
            median[i, j], err[i, j] = summary["median"], summary["median_se"]
    return median, err


def feh_map_from_predictions(source: str | os.PathLike, *, bands: str | Sequence[str] = "sdss_r",
                             giants: str = "exclude",
                             min_parallax_snr: float = 5.0, max_rel_dist_err: float = 0.3,
                             max_feh_err: float | None = MAX_FEH_ERR, cell: float = 0.5,
                             r_max: float = 20.0, z_max: float = 10.0, chunk_rows: int = 1_000_000,
                             stars_out: str | os.PathLike | None = None, absmag: str = "model",
                             out_of_domain: str = "exclude", slices: Sequence[float] | None = None,
                             deconvolve: bool = False, sky_nside: int = SKY_NSIDE,
                             absmag_reference: dict[str, str] | None = None,
                             distance_prior: str = "none") -> tuple[MapProducts, Counter]:
    """Stream a ``photofeh predict`` output into the median [Fe/H] map of R and |Z|.

    Stars are left out, and counted, when their features were unusable, by
    the giant selection (``giants``: exclude, include, only), when their
    predicted [Fe/H] error exceeds ``max_feh_err`` (imprecise predictions,
    e.g. faint stars far from the labelled set, lean toward the training
    mean and would bias a median), when their distance is missing or its
    relative error exceeds ``max_rel_dist_err``, or when they fall outside
    the map. ``absmag``: "model" (the predicted ``mabs_<band>``) or "ivezic2008" (the Ivezic et al. 2008
    main-sequence M_r(g-i, [Fe/H]) from the predicted [Fe/H], for models without an absolute-magnitude
    label; stars outside its range are counted and left out). ``out_of_domain``: "exclude" (default) leaves
    out, and counts, stars a model marked outside its training domain (``in_domain``, :mod:`photofeh.model.domain`),
    "include" keeps them. ``slices``: |Z| edges (kpc); the [Fe/H] estimates and errors of the mapped stars in
    each |Z| slice are kept as fixed-size histograms (``slices`` of the :class:`MapProducts`,
    :class:`photofeh.galaxy.mdf.BinnedEstimates`) for deconvolved metallicity distributions; ``deconvolve``: the same
    per map cell (``cells``, ~120 kB per occupied cell), for :func:`deconvolved_cells`. The mapped stars also
    fill a sky map of [Fe/H] in HEALPix pixels of Galactic (l, b) (``sky_nside``). ``absmag_reference``: whether
    each ``mabs_<band>`` includes the extinction (``"observed"``) or not (``"dereddened"``); by default read from
    the predictions' provenance (:func:`predictions_absmag_reference`), so the extinction is applied exactly
    once whatever the model's ``deredden`` setting. ``distance_prior``: ``"juric2008"`` (or
    ``"juric2008-within-class"``) places each star by its distance posterior with the stars' density along its
    line of sight (:func:`photofeh.galaxy.distances.star_distances`); where the prior reweighs the classes the
    giant selection follows the posterior class. ``stars_out``: a Parquet
    file with, for every input row in
    order, the distance, its error, whether Gaia's parallax was used, R, z,
    phi (NaN for unusable rows) and ``in_map``.
    """
    import contextlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from photofeh.galaxy.distances import star_distances
    from photofeh.io.catalog import atomic_output
    from photofeh.io.readers import iter_table
    from photofeh.io.validation import clean_columns

    if giants not in ("exclude", "include", "only"):
        raise ValueError(f"giants must be exclude, include or only, not {giants!r}")
    if out_of_domain not in ("exclude", "include"):
        raise ValueError(f"out_of_domain must be exclude or include, not {out_of_domain!r}")
    check_map_options(cell=cell, r_max=r_max, z_max=z_max, min_parallax_snr=min_parallax_snr,
                      max_rel_dist_err=max_rel_dist_err, max_feh_err=max_feh_err, chunk_rows=chunk_rows)
    if not isinstance(sky_nside, int) or sky_nside < 1 or sky_nside & (sky_nside - 1) or sky_nside > 256:
        raise ValueError(f"sky_nside must be a power of 2 from 1 to 256, got {sky_nside!r}")
    if absmag_reference is None:
        absmag_reference, _ = predictions_absmag_reference(source)
    products = MapProducts.empty(r_max=r_max, z_max=z_max, cell=cell, nside=sky_nside)
    products.cells = {} if deconvolve else None
    fmap = products.rz
    if slices is not None:
        from photofeh.galaxy.mdf import BinnedEstimates

        edges = np.asarray(slices, float)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0) or edges[0] < 0:
            raise ValueError(f"|Z| slice edges must be increasing and >= 0, got {list(slices)}")
        products.slices = (edges, [BinnedEstimates() for _ in range(edges.size - 1)])
    counts: Counter = Counter()
    replaced: Counter = Counter()
    out_cols = ("dist_kpc", "dist_err_kpc", "dist_band", "parallax_used", "R_kpc", "z_kpc", "phi_deg")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_output(Path(stars_out))) if stars_out else None  # renamed at the end
        writer = None
        for raw in iter_table(source, chunk_size=chunk_rows):
            chunk, _ = clean_columns(raw, str(source), replaced)  # e.g. a hand-made table with -9999 parallaxes
            if "feh" not in chunk or "usable" not in chunk:
                raise KeyError(f"{source} lacks the feh/usable columns of a 'photofeh predict' output")
            n = len(chunk["feh"])
            counts["stars"] += n
            usable = np.asarray(chunk["usable"], bool) & np.isfinite(chunk["feh"])
            counts["not usable (missing features)"] += int(n - usable.sum())
            if "in_domain" in chunk and out_of_domain == "exclude":
                outside = usable & ~np.asarray(chunk["in_domain"], bool)
                counts["outside the training domain"] += int(outside.sum())
                usable &= ~outside
            cols = {c: np.asarray(v)[usable] for c, v in chunk.items()}
            # (l, b) once where the distance prior needs every usable star's line of sight; else for the mapped ones
            lb = galactic_lb(cols["ra"], cols["dec"]) if distance_prior != "none" else None
            pos = star_distances(cols, bands, min_parallax_snr, absmag, absmag_reference,  # every usable star
                                 prior=distance_prior, lb=lb)
            sel = np.ones(len(cols["feh"]), bool)  # then the map's own selection, each cut counted
            if absmag == "ivezic2008":  # main-sequence colours and [Fe/H] inside the relation's range only
                outside = ~pos["absmag_valid"]
                counts["outside the Ivezic 2008 relation (0.2 < g-i < 4.0, -2.5 < [Fe/H] < 0.2)"] += int(
                    outside.sum())
                sel &= ~outside
            if max_feh_err is not None:
                with np.errstate(invalid="ignore"):
                    vague = ~(np.asarray(cols["feh_err"], float) <= max_feh_err)
                counts[f"[Fe/H] error > {max_feh_err:g} dex"] += int(vague.sum())
                sel &= ~vague
            if giants != "include":
                giant = (pos["p_giant_dist"] >= 0.5 if distance_prior == "juric2008" and "p_giant_dist" in pos
                         else np.asarray(cols["is_giant"], bool))
                cut = sel & (giant if giants == "exclude" else ~giant)
                counts[f"removed by giants={giants}"] += int(cut.sum())
                sel &= ~cut
            with np.errstate(invalid="ignore", divide="ignore"):
                good = sel & np.isfinite(pos["R_kpc"]) & (pos["dist_err_kpc"] / pos["dist_kpc"] <= max_rel_dist_err)
            counts[f"distance missing or error > {max_rel_dist_err:.0%}"] += int((sel & ~good).sum())
            counts["Gaia parallax used"] += int(pos["parallax_used"][good].sum())
            z = np.abs(pos["z_kpc"])
            inside = good & fmap.covers(pos["R_kpc"], z)
            used = fmap.add(pos["R_kpc"][inside], z[inside], cols["feh"][inside])
            products.add_sky(*(galactic_lb(cols["ra"][inside], cols["dec"][inside]) if lb is None
                               else (lb[0][inside], lb[1][inside])), cols["feh"][inside])
            if products.cells is not None:
                from photofeh.galaxy.mdf import add_by_group

                i = np.searchsorted(fmap.x_edges, pos["R_kpc"][inside], side="right") - 1
                j = np.searchsorted(fmap.y_edges, z[inside], side="right") - 1
                add_by_group(products.cells, (i, j), cols["feh"][inside], np.asarray(cols["feh_err"], float)[inside])
            if products.slices is not None:
                edges, hists = products.slices
                k = np.digitize(z[inside], edges) - 1
                feh_in, err_in = cols["feh"][inside], np.asarray(cols["feh_err"], float)[inside]
                teff_in = np.asarray(cols["teff"], float)[inside] if "teff" in cols else None  # unfolding's matching
                for j, h in enumerate(hists):
                    h.add(feh_in[k == j], err_in[k == j], None if teff_in is None else teff_in[k == j])
            counts["outside the map"] += int(good.sum()) - used
            counts["in the map"] += used
            if tmp is not None:
                table = {c: chunk[c] for c in ("source_id", "ra", "dec") if c in chunk}
                for c in (*out_cols, *(c for c in MIXTURE_COLUMNS if c in pos)):
                    full = np.zeros(n, bool) if pos[c].dtype == bool else (
                        np.full(n, -1) if pos[c].dtype.kind == "i" else np.full(n, np.nan))
                    full[usable] = pos[c]
                    table[c] = full
                in_map = np.zeros(n, bool)
                in_map[np.flatnonzero(usable)[inside]] = True
                table["in_map"] = in_map
                table = pa.table(table)
                if writer is None:
                    writer = stack.enter_context(pq.ParquetWriter(tmp, table.schema, compression="snappy"))
                writer.write_table(table)
    if counts["stars"] == 0:
        raise ValueError(f"{source} holds no predictions: nothing to map")
    for column, n in sorted(replaced.items()):
        counts[f"{column}: values set to NaN by validation"] = n
    return products, counts
