"""Joining catalogues on the sky: nearest neighbour within a radius, in chunks.

The reference catalogue (the smaller one, e.g. spectroscopic labels) is put
in a KD-tree of unit vectors; the other catalogue streams through it chunk by
chunk, so catalogues of tens of millions of rows need memory only for the
reference and one chunk. Chord length c and angle theta are related by
c = 2 sin(theta / 2).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from photofeh.io.presets import preset_label
from photofeh.io.sky import radec

__all__ = ["SkyMatcher", "MatchResult", "crossmatch_files", "merge_onto", "radec", "unit_vectors"]

ARCSEC = np.pi / (180.0 * 3600.0)


GAIA_DR3_EPOCH = 2016.0  # Julian year of Gaia (E)DR3 positions (Gaia Collaboration, Brown et al. 2021, A&A 649, A1)
MAS_PER_RAD = 180.0 / np.pi * 3.6e6


def propagate(ra_deg, dec_deg, pmra_masyr, pmdec_masyr, from_epoch, to_epoch) -> tuple[np.ndarray, np.ndarray]:
    """Positions moved along their proper motions from ``from_epoch`` to ``to_epoch`` (Julian years).

    Linear motion on the sphere, without parallax or radial velocity: r(t) = r0 + dt (mu_a* p + mu_d q),
    normalised, with p, q the unit vectors towards increasing ra and dec (ESA 1997, The Hipparcos Catalogue,
    vol. 1, section 1.2.8). ``pmra`` is mu_a* = mu_a cos(dec), as Gaia gives it. Rows without a proper
    motion keep their position. Exact to < 1 mas for 20 years at 1 arcsec/yr away from the poles.
    """
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    dt = np.asarray(to_epoch, float) - np.asarray(from_epoch, float)
    mua = np.nan_to_num(np.asarray(pmra_masyr, float)) / MAS_PER_RAD
    mud = np.nan_to_num(np.asarray(pmdec_masyr, float)) / MAS_PER_RAD
    r = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    p = np.stack([-np.sin(ra), np.cos(ra), np.zeros_like(ra)])
    q = np.stack([-np.sin(dec) * np.cos(ra), -np.sin(dec) * np.sin(ra), np.cos(dec)])
    v = r + dt * (mua * p + mud * q)
    v /= np.linalg.norm(v, axis=0)
    return np.degrees(np.arctan2(v[1], v[0])) % 360.0, np.degrees(np.arcsin(np.clip(v[2], -1, 1)))


def _moved(cols: Mapping[str, np.ndarray], epoch: float | None) -> tuple[np.ndarray, np.ndarray]:
    """A table's ra, dec at ``epoch`` if it has proper motions (and epoch is given), else as they are."""
    ra, dec = radec(cols)
    if epoch is None or not has_proper_motions(cols):
        return ra, dec
    start = np.asarray(cols["ref_epoch"], float) if "ref_epoch" in cols else GAIA_DR3_EPOCH
    return propagate(ra, dec, cols["pmra"], cols["pmdec"], np.nan_to_num(start, nan=GAIA_DR3_EPOCH), epoch)


def has_proper_motions(cols) -> bool:
    return "pmra" in cols and "pmdec" in cols


def unit_vectors(ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra_deg, float)), np.radians(np.asarray(dec_deg, float))
    cd = np.cos(dec)
    return np.column_stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)])


@dataclass
class MatchResult:
    """For each reference row: index of its nearest match in the streamed catalogue (-1: none) and separation."""

    index: np.ndarray
    sep_arcsec: np.ndarray
    n_candidates: np.ndarray  # how many streamed rows fell within the radius (>1: ambiguous)

    @property
    def matched(self) -> np.ndarray:
        return self.index >= 0

    def report(self) -> dict:
        m = self.matched
        sep = self.sep_arcsec[m]
        return {"reference_rows": int(m.size), "matched": int(m.sum()),
                "unmatched": int((~m).sum()), "ambiguous (>1 within radius)": int((self.n_candidates > 1).sum()),
                "median_sep_arcsec": float(np.median(sep)) if sep.size else float("nan"),
                "p95_sep_arcsec": float(np.percentile(sep, 95)) if sep.size else float("nan")}


class SkyMatcher:
    """Nearest-neighbour matching of a streamed catalogue onto a reference catalogue."""

    def __init__(self, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float = 1.0):
        if radius_arcsec <= 0:
            raise ValueError(f"match radius must be positive, got {radius_arcsec}")
        ok = np.isfinite(ra_deg) & np.isfinite(dec_deg)
        self.n = len(ra_deg)
        self.valid_rows = np.flatnonzero(ok)
        self.tree = cKDTree(unit_vectors(np.asarray(ra_deg)[ok], np.asarray(dec_deg)[ok]))
        self.radius = radius_arcsec
        self.chord = 2.0 * np.sin(radius_arcsec * ARCSEC / 2.0)

    def match(self, chunks: Iterable[Mapping[str, np.ndarray]]) -> MatchResult:
        """Stream ``chunks`` (dicts with ra/dec columns, any case); rows are numbered across chunks."""
        best_sep = np.full(self.n, np.inf)
        best_idx = np.full(self.n, -1, dtype=np.int64)
        count = np.zeros(self.n, dtype=np.int64)
        offset = 0
        for chunk in chunks:
            v = unit_vectors(*radec(chunk))
            good = np.all(np.isfinite(v), axis=1)
            rows = np.flatnonzero(good)
            dist, j = self.tree.query(v[good], k=1, distance_upper_bound=self.chord)
            hit = np.isfinite(dist)
            ref = self.valid_rows[j[hit]]
            sep = 2.0 * np.arcsin(np.clip(dist[hit] / 2.0, 0, 1)) / ARCSEC
            _keep_closest(best_sep, best_idx, count, ref, sep, rows[hit] + offset)
            offset += len(good)
        return MatchResult(best_idx, np.where(best_idx >= 0, best_sep, np.nan), count)


def _keep_closest(best_sep: np.ndarray, best_idx: np.ndarray, count: np.ndarray, ref: np.ndarray, sep: np.ndarray,
                  src: np.ndarray) -> None:
    """Fold one chunk's matched pairs (reference row, separation, streamed row) into the running best match
    per reference row, and count every pair as a candidate."""
    np.add.at(count, ref, 1)
    order = np.lexsort((sep, ref))
    ref, sep, src = ref[order], sep[order], src[order]
    first = np.ones(ref.size, bool)
    first[1:] = ref[1:] != ref[:-1]
    ref, sep, src = ref[first], sep[first], src[first]
    better = sep < best_sep[ref]
    best_sep[ref[better]] = sep[better]
    best_idx[ref[better]] = src[better]


MAX_SEARCH_ARCSEC = 120.0  # the widest candidate search a proper motion may ask for (e.g. 10"/yr over 12 yr)


def epoch_years(values) -> np.ndarray:
    """Julian years from a column holding Julian years or MJD (told apart by value: MJD > 3000;
    MJD 51544.5 is J2000.0)."""
    a = np.asarray(values, float)
    return np.where(a > 3000.0, 2000.0 + (a - 51544.5) / 365.25, a)


def _sep_arcsec(ra1, dec1, ra2, dec2) -> np.ndarray:
    chord = np.linalg.norm(unit_vectors(ra1, dec1) - unit_vectors(ra2, dec2), axis=1)
    return 2.0 * np.arcsin(np.clip(chord / 2.0, 0, 1)) / ARCSEC


def match_epoch_column(ref: Mapping[str, np.ndarray], ref_epochs: np.ndarray | None, chunks: Iterable[Mapping],
                       radius_arcsec: float, column: str, other_epochs: tuple[float, float] | None = None
                       ) -> MatchResult:
    """Nearest match when one catalogue has proper motions and the other a per-row observation epoch.

    The moving catalogue is brought to a common epoch e0 (the median of the epochs) for a KD-tree search whose
    radius grows with each star's possible displacement (proper motion x largest |epoch - e0|, at most
    120"); every candidate pair is then compared exactly, the moving star propagated to its partner's own
    epoch (:func:`propagate`). ``ref_epochs``: the reference's epochs (Julian years) when the reference is the
    one without proper motions; else None, each streamed chunk carries ``column``, and ``other_epochs`` gives
    the median and the largest distance from it of the streamed epochs (a first pass over that column).
    """
    ra_r, dec_r = radec(ref)
    ref_moves = ref_epochs is None
    best_sep = np.full(len(ra_r), np.inf)
    best_idx = np.full(len(ra_r), -1, dtype=np.int64)
    count = np.zeros(len(ra_r), dtype=np.int64)
    if ref_moves:
        e0, _ = other_epochs
        start_r = np.nan_to_num(np.asarray(ref.get("ref_epoch", np.full(len(ra_r), GAIA_DR3_EPOCH)), float),
                                nan=GAIA_DR3_EPOCH)
        pm_r = (np.nan_to_num(np.asarray(ref["pmra"], float)), np.nan_to_num(np.asarray(ref["pmdec"], float)))
        tree_ra, tree_dec = propagate(ra_r, dec_r, *pm_r, start_r, e0)
        mu_max = float(np.max(np.hypot(*pm_r))) if len(ra_r) else 0.0
    else:
        e0 = float(np.nanmedian(ref_epochs))
        span = float(np.nanmax(np.abs(ref_epochs - e0)))
        tree_ra, tree_dec = ra_r, dec_r
    ok = np.isfinite(tree_ra) & np.isfinite(tree_dec)
    valid_rows = np.flatnonzero(ok)
    tree = cKDTree(unit_vectors(tree_ra[ok], tree_dec[ok]))
    offset = 0
    for chunk in chunks:
        ra_s, dec_s = radec(chunk)
        n = len(ra_s)
        if ref_moves:  # streamed stars stay at their epochs; the search widens with the reference's motions
            e_s = epoch_years(chunk[column])
            q_ra, q_dec = ra_s, dec_s
            reach = radius_arcsec + mu_max * np.abs(e_s - e0) / 1000.0
        else:  # streamed stars move: brought to e0, searched as widely as they can have moved
            start_s = np.nan_to_num(np.asarray(chunk.get("ref_epoch", np.full(n, GAIA_DR3_EPOCH)), float),
                                    nan=GAIA_DR3_EPOCH)
            pm_s = (np.nan_to_num(np.asarray(chunk["pmra"], float)), np.nan_to_num(np.asarray(chunk["pmdec"], float)))
            q_ra, q_dec = propagate(ra_s, dec_s, *pm_s, start_s, e0)
            reach = radius_arcsec + np.hypot(*pm_s) * span / 1000.0
        reach = np.clip(reach, radius_arcsec, MAX_SEARCH_ARCSEC)
        v = unit_vectors(q_ra, q_dec)
        good = np.flatnonzero(np.all(np.isfinite(v), axis=1) & np.isfinite(reach))
        lists = tree.query_ball_point(v[good], 2.0 * np.sin(reach[good] * ARCSEC / 2.0)) if good.size else []
        src = np.repeat(good, [len(x) for x in lists]).astype(np.int64)
        cand = valid_rows[np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])] if len(src) else src
        if ref_moves:  # the reference star at the streamed star's epoch
            pra, pdec = propagate(ra_r[cand], dec_r[cand], pm_r[0][cand], pm_r[1][cand], start_r[cand], e_s[src])
            sep = _sep_arcsec(pra, pdec, ra_s[src], dec_s[src])
        else:  # the streamed star at the reference star's epoch
            pra, pdec = propagate(ra_s[src], dec_s[src], pm_s[0][src], pm_s[1][src], start_s[src], ref_epochs[cand])
            sep = _sep_arcsec(pra, pdec, ra_r[cand], dec_r[cand])
        inside = sep <= radius_arcsec
        _keep_closest(best_sep, best_idx, count, cand[inside], sep[inside], src[inside] + offset)
        offset += n
    return MatchResult(best_idx, np.where(best_idx >= 0, best_sep, np.nan), count)


def _mapped_chunks(path, preset, chunk_size: int, counts: Counter | None = None):
    """Chunks of a catalogue, mapped through its preset when one is given and validated in any case
    (:func:`photofeh.io.presets.apply_preset`); replaced values are added to ``counts``."""
    from photofeh.io.presets import apply_preset, resolve_preset
    from photofeh.io.readers import iter_table

    p = resolve_preset(preset)
    for chunk in iter_table(path, None, chunk_size):
        cols, report = apply_preset(chunk, p, str(path))
        if counts is not None:
            counts.update({k: v for k, v in report.items() if v})
        yield cols


def _positions(path, preset, chunk_size: int, epoch: float | str | None = None):
    """Only ra and dec (moved to a fixed ``epoch`` when the catalogue has proper motions), for the matching
    pass; with an epoch column, the positions as they are plus the proper motions and that column (by its own
    name in the file). The other columns are read once, in the gathering pass."""
    from photofeh.io.presets import resolve_preset
    from photofeh.io.readers import iter_table, table_columns
    from photofeh.io.validation import clean_columns

    p = resolve_preset(preset)
    wanted = ["ra", "dec"] + (["pmra", "pmdec", "ref_epoch"] if epoch is not None else [])
    mapped = {k: (k if p is None else p.columns.get(k)) for k in wanted}
    if isinstance(epoch, str):
        mapped[epoch] = epoch
    lower = {c.lower(): c for c in table_columns(path)}
    present = {k: lower[v.lower()] for k, v in mapped.items() if v and v.lower() in lower}
    if "ra" not in present or "dec" not in present:
        raise KeyError(f"{path}: no {mapped['ra']}/{mapped['dec']} columns to match on")
    for chunk in iter_table(path, list(present.values()), chunk_size):
        cols = {k: np.asarray(chunk[v], float) for k, v in present.items()}
        cols = {**cols, **clean_columns({"ra": cols["ra"], "dec": cols["dec"]}, str(path))[0]}
        if isinstance(epoch, str):
            yield cols
            continue
        ra, dec = _moved(cols, epoch)
        yield {"ra": ra, "dec": dec}


def crossmatch_files(reference, other, out, radius_arcsec: float = 1.0, reference_preset=None, other_preset=None,
                     chunk_size: int = 1_000_000, suffix: str = "_2", epoch: float | str | None = None) -> dict:
    """Join ``other`` onto ``reference`` (nearest within the radius); write Parquet; return the match report.

    Every reference row is kept (unmatched rows get NaN/empty values), so no
    star disappears; ``match_sep_arcsec`` and ``match_n_candidates`` say how
    each match went. ``epoch`` (Julian year, e.g. 2004.5 for SDSS imaging):
    the catalogue with proper motions (``pmra``, ``pmdec``; e.g. Gaia at
    J2016.0, or its ``ref_epoch``) is moved to that epoch before matching, so
    that high-proper-motion stars are not lost; its output positions are
    those of its own epoch. ``epoch`` may also name a column of the other
    catalogue holding each row's observation epoch (Julian years or MJD, e.g.
    SDSS ``mjd``): see :func:`match_epoch_column`.
    """
    from pathlib import Path

    from photofeh.io.catalog import check_output_place, check_writable
    from photofeh.io.locking import output_lock

    out = Path(out)
    check_writable(out)
    check_output_place(out, [reference, other])
    if not np.isfinite(radius_arcsec) or radius_arcsec <= 0:
        raise ValueError(f"match radius must be a positive number of arcsec, got {radius_arcsec}")
    with output_lock(out, f"photofeh crossmatch {reference} {other}"):
        return _crossmatch_files(reference, other, out, radius_arcsec, reference_preset, other_preset, chunk_size,
                                 suffix, epoch)


def _crossmatch_files(reference, other, out, radius_arcsec, reference_preset, other_preset, chunk_size,
                      suffix, epoch=None) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photofeh.io.catalog import atomic_output

    replaced = {"reference": Counter(), "other": Counter()}
    ref_chunks = list(_mapped_chunks(reference, reference_preset, chunk_size, replaced["reference"]))
    if not ref_chunks:
        raise ValueError(f"{reference} has no rows: nothing to match onto")
    ref = {c: np.concatenate([ch[c] for ch in ref_chunks]) for c in ref_chunks[0]}
    if epoch is not None and not isinstance(epoch, str) and not has_proper_motions(ref) and not _has_pm_columns(
            other, other_preset):
        raise ValueError(f"--epoch {epoch}: neither {reference} nor {other} has proper motions (pmra, pmdec) to "
                         "move positions with")
    if isinstance(epoch, str):  # a per-row observation epoch in the catalogue without proper motions
        result = _match_with_epoch_column(ref, reference, reference_preset, other, other_preset, chunk_size,
                                          radius_arcsec, epoch)
    else:
        matcher = SkyMatcher(*_moved(ref, epoch), radius_arcsec)
        result = matcher.match(_positions(other, other_preset, chunk_size, epoch))
    wanted = np.flatnonzero(result.matched)
    order = np.argsort(result.index[wanted])
    src_sorted, ref_rows = result.index[wanted][order], wanted[order]
    gathered: dict[str, np.ndarray] = {}
    offset = 0
    for chunk in _mapped_chunks(other, other_preset, chunk_size, replaced["other"]):
        n = len(next(iter(chunk.values())))
        lo, hi = np.searchsorted(src_sorted, [offset, offset + n])
        for c, v in chunk.items():
            name = c + suffix if c in ref else c
            if name not in gathered:
                fill = np.nan if np.asarray(v).dtype.kind == "f" else (-1 if np.asarray(v).dtype.kind in "iu" else "")
                kind = np.asarray(v).dtype if np.asarray(v).dtype.kind in "fiub" else object
                gathered[name] = np.full(len(result.index), fill, dtype=kind if kind is not bool else object)
            gathered[name][ref_rows[lo:hi]] = np.asarray(v)[src_sorted[lo:hi] - offset]
        offset += n
    table = {**ref, **gathered, "match_sep_arcsec": result.sep_arcsec, "match_n_candidates": result.n_candidates}
    with atomic_output(out) as tmp:
        pq.write_table(pa.table({k: pa.array(v) for k, v in table.items()}), tmp)
    report = {**result.report(), "values_replaced": {k: dict(v) for k, v in replaced.items()}}
    if epoch is not None:
        report["positions moved to epoch"] = {"epoch": epoch, "reference": has_proper_motions(ref),
                                              "other": _has_pm_columns(other, other_preset)}
    return report


def _match_with_epoch_column(ref, reference, reference_preset, other, other_preset, chunk_size, radius,
                             column: str) -> MatchResult:
    from photofeh.io.readers import read_columns, table_columns

    ref_moves, other_moves = has_proper_motions(ref), _has_pm_columns(other, other_preset)
    if ref_moves == other_moves:
        raise ValueError(f"--epoch {column}: exactly one of the two catalogues must have proper motions (pmra, "
                         f"pmdec), the other the epoch column; here {'both' if ref_moves else 'neither'} have them")
    holder = other if ref_moves else reference
    if column.lower() not in {c.lower() for c in table_columns(holder)}:
        raise KeyError(f"--epoch {column}: {holder} has no column {column!r} (Julian years or MJD)")
    ref_epochs, other_epochs = None, None
    if ref_moves:  # a first pass over the streamed epochs only
        from photofeh.io.readers import iter_table

        epochs = np.concatenate([epoch_years(next(iter(c.values()))) for c in iter_table(other, [column], chunk_size)])
        e0 = float(np.nanmedian(epochs))
        other_epochs = (e0, float(np.nanmax(np.abs(epochs - e0))))
    else:
        ref_epochs = epoch_years(next(iter(read_columns(reference, [column]).values())))
    return match_epoch_column(ref, ref_epochs, _positions(other, other_preset, chunk_size, column), radius, column,
                              other_epochs)


def _has_pm_columns(path, preset) -> bool:
    from photofeh.io.presets import resolve_preset
    from photofeh.io.readers import table_columns

    p = resolve_preset(preset)
    names = {c.lower() for c in table_columns(path)}
    return all((k if p is None else p.columns.get(k, "")).lower() in names for k in ("pmra", "pmdec"))


def _attach(chunk: Mapping[str, np.ndarray], trees, chord: float, counts: dict) -> dict[str, np.ndarray]:
    """One base chunk with the nearest row of each in-memory catalogue attached (NaN/-1/None where none)."""
    v = unit_vectors(*radec(chunk))
    good = np.all(np.isfinite(v), axis=1)
    n = len(v)
    table = dict(chunk)
    for suffix, name, cols, valid, tree in trees:
        dist = np.full(n, np.inf)
        j = np.zeros(n, dtype=np.int64)
        dist[good], j[good] = tree.query(v[good], k=1, distance_upper_bound=chord)
        hit = np.isfinite(dist)
        src = valid[np.where(hit, j, 0)]
        for c, col in cols.items():
            col = np.asarray(col)
            vals = col[src]
            if col.dtype.kind == "f":
                vals = np.where(hit, vals, np.nan)
            elif col.dtype.kind in "iu":
                vals = np.where(hit, vals, -1)
            else:
                vals = np.where(hit, vals.astype(object), None)
            table[c + suffix if c in chunk or c in ("ra", "dec") else c] = vals
        table[f"match_sep_arcsec{suffix}"] = np.where(
            hit, 2.0 * np.arcsin(np.clip(np.where(hit, dist, 0) / 2.0, 0, 1)) / ARCSEC, np.nan)
        counts[name]["matched"] += int(hit.sum())
    return table


def merge_onto(base, others, out, radius_arcsec: float = 1.0, base_preset=None, chunk_size: int = 1_000_000,
               sfd_dir=None) -> dict:
    """Stream ``base`` (any size) and attach, row by row, the nearest row of each catalogue in ``others``.

    The prediction-input counterpart of :func:`crossmatch_files`: here the
    big catalogue streams and every base row is kept, while each of
    ``others`` (a list of (path, preset)) is held in memory as a KD-tree, so
    they must fit in memory. Output is Parquet written chunk by chunk to a
    temporary file and renamed at the end. With ``sfd_dir`` (a folder with the
    SFD map files), ``ebv`` is read from the map where no catalogue gave one.
    Returns per-catalogue match counts.
    """
    from pathlib import Path

    from photofeh.io.catalog import check_output_place, check_writable
    from photofeh.io.locking import output_lock

    out = Path(out)
    check_writable(out)
    check_output_place(out, [base, *(path for path, _ in others)])
    if not np.isfinite(radius_arcsec) or radius_arcsec <= 0:
        raise ValueError(f"match radius must be a positive number of arcsec, got {radius_arcsec}")
    with output_lock(out, f"photofeh merge-photometry {base}"):
        return _merge_onto(base, others, out, radius_arcsec, base_preset, chunk_size, sfd_dir)


def _merge_onto(base, others, out, radius_arcsec, base_preset, chunk_size, sfd_dir) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photofeh.io.catalog import atomic_output
    from photofeh.io.dust import EbvSource

    trees = []
    replaced = {str(base): Counter(), **{str(path): Counter() for path, _ in others}}
    for k, (path, preset) in enumerate(others):
        chunks = list(_mapped_chunks(path, preset, chunk_size, replaced[str(path)]))
        if not chunks:
            raise ValueError(f"{path} has no rows: nothing to attach")
        cols = {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}
        ra, dec = radec(cols)
        ok = np.isfinite(ra) & np.isfinite(dec)
        trees.append((f"_{preset_label(preset, f'cat{k + 1}')}", str(path), cols, np.flatnonzero(ok),
                      cKDTree(unit_vectors(ra[ok], dec[ok]))))
    chord = 2.0 * np.sin(radius_arcsec * ARCSEC / 2.0)
    counts = {name: {"matched": 0} for _, name, *_ in trees}
    rows_in = ebv_from_map = 0
    with atomic_output(out) as tmp:
        writer = None
        try:
            for chunk in _mapped_chunks(base, base_preset, chunk_size, replaced[str(base)]):
                merged = _attach(chunk, trees, chord, counts)
                if sfd_dir is not None:
                    had = np.isfinite(np.asarray(merged.get("ebv", np.full(len(merged["ra"]), np.nan)), float))
                    merged = EbvSource(sfd_dir=str(sfd_dir)).apply(merged, merged, "ebv", str(base), Counter())
                    ebv_from_map += int((~had & np.isfinite(merged["ebv"])).sum())
                arrow = pa.table({k: pa.array(v) for k, v in merged.items()})
                if writer is None:
                    writer = pq.ParquetWriter(tmp, arrow.schema)
                writer.write_table(arrow.cast(writer.schema))
                rows_in += arrow.num_rows
            if writer is None:
                raise ValueError(f"{base} has no rows")
        finally:
            if writer is not None:
                writer.close()
    report = {"base rows": rows_in, **{name: {**c, "unmatched": rows_in - c["matched"]} for name, c in counts.items()},
              "values_replaced": {k: dict(v) for k, v in replaced.items()}}
    if sfd_dir is not None:
        report["ebv from the SFD map"] = ebv_from_map
    return report
