"""Reading catalogues of any size in row chunks: FITS, Parquet (file or dataset), CSV/ECSV, HDF5, VOTable.

``iter_table(path)`` yields dicts of numpy columns. FITS binary tables are
memory-mapped and sliced; Parquet files and partitioned datasets stream
record batches; CSV streams blocks; HDF5 compound datasets are sliced with
h5py. ECSV and VOTable are XML/YAML-headed text formats that astropy parses
whole, so they suit small and medium tables only (said in the error-free
path, not silently). Every error names the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from photofeh.errors import InputError

__all__ = ["as_columns", "READ_FORMATS", "CatalogReadError", "detect_format", "iter_table", "read_columns",
           "count_rows", "table_columns", "table_metadata", "known_rows"]

READ_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".fits": "fits", ".fit": "fits", ".fits.gz": "fits",
                ".fz": "fits", ".csv": "csv", ".csv.gz": "csv", ".txt": "text", ".dat": "text",
                ".ecsv": "ecsv", ".h5": "hdf5", ".hdf5": "hdf5", ".vot": "votable", ".xml": "votable",
                ".votable": "votable"}


class CatalogReadError(InputError):
    """A catalogue that cannot be read: the message names the file and what is wrong (a ``ValueError``)."""


def detect_format(path: Path, fmt: str | None = None) -> str:
    """Format from ``fmt`` or the extension; a folder is a Parquet dataset."""
    valid = sorted(set(READ_FORMATS.values()))
    if fmt:
        if fmt not in valid:
            raise CatalogReadError(f"{path}: unknown format {fmt!r}; choose from {', '.join(valid)}")
        return fmt
    if path.is_dir():
        return "parquet"
    name = path.name.lower()
    for ext, kind in sorted(READ_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(ext):
            return kind
    raise CatalogReadError(f"{path}: cannot tell the format from the extension; pass one of {', '.join(valid)}")


def _native(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype.kind == "S":
        a = np.char.strip(a.astype(str))
    return a


def _select(names: Sequence[str], columns: Sequence[str] | None, path: Path) -> list[str]:
    if columns is None:
        return list(names)
    lower = {n.lower(): n for n in names}
    missing = [c for c in columns if c not in names and c.lower() not in lower]
    if missing:
        raise CatalogReadError(f"{path}: missing column(s) {missing}; the file has {len(names)} columns, "
                               f"e.g. {list(names)[:12]}")
    return [c if c in names else lower[c.lower()] for c in columns]


def _chunks_of_table(table, columns, chunk_size: int, path: Path) -> Iterator[dict[str, np.ndarray]]:
    cols = _select(table.colnames, columns, path)
    for s in range(0, len(table), chunk_size):
        part = table[s:s + chunk_size]
        yield {c: _native(np.ma.filled(part[c], np.nan) if part[c].dtype.kind == "f" else part[c]) for c in cols}


def _table_hdu(hdul):
    """The first table extension of an open FITS file, or None."""
    from astropy.io import fits

    return next((h for h in hdul if isinstance(h, fits.BinTableHDU | fits.TableHDU)), None)


def _hdf5_table(f):
    """The first compound (table) dataset of an open HDF5 file, or None."""
    import h5py

    found: list = []
    f.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset) and obj.dtype.names else None)
    return found[0] if found else None


def _iter_fits(path: Path, columns, chunk_size: int, start: int = 0):
    import warnings

    from astropy.io import fits

    with warnings.catch_warnings(record=True) as caught, fits.open(path, memmap=True) as hdul:
        warnings.simplefilter("always")
        hdu = _table_hdu(hdul)
        if any("truncated" in str(w.message) for w in caught):
            raise CatalogReadError(f"{path}: the file is truncated (shorter than its header says)")
        if hdu is None:
            raise CatalogReadError(f"{path}: no table extension in this FITS file")
        names = hdu.columns.names
        cols = _select(names, columns, path)
        n = hdu.header.get("NAXIS2", 0)
        for s in range(start, n, chunk_size):
            rows = hdu.data[s:s + chunk_size]
            yield {c: _native(rows[c]) for c in cols}


def _iter_parquet(path: Path, columns, chunk_size: int, start: int = 0):
    """Stream record batches of ``chunk_size`` rows file by file; ``start`` skips whole files and row groups by
    their metadata, unread.

    Each file is read by pyarrow's record batch reader, whose batches run across row groups: from a row-group
    boundary (the start of a file, or of the row group ``start`` falls on) every batch is a whole chunk, decoded
    straight into its columns. Cutting the row groups' batches into chunks in numpy instead (a mock file's
    200,000-row groups into 250,000-row chunks) copied every column once more: 0.29 against 0.15 CPU s per
    million stars for the masked model's 32 columns (benchmarks/bench_predict.py). A ``start`` inside a row group
    drops the rows before it and the chunks are re-cut (:func:`_exact`)."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    dataset = ds.dataset(str(path), format="parquet")
    cols = _select(dataset.schema.names, columns, path)
    # batches of at least 64k rows: small batches cost pyarrow more per row; _exact re-cuts them to chunk_size
    batch_rows = max(chunk_size, 1 << 16)
    offset = 0  # first row of the current file in the whole dataset
    for fragment in dataset.get_fragments():
        meta = fragment.metadata
        if offset + meta.num_rows <= start:
            offset += meta.num_rows
            continue
        skip, first_group = max(start - offset, 0), 0
        offset += meta.num_rows
        while first_group < meta.num_row_groups and skip >= meta.row_group(first_group).num_rows:
            skip -= meta.row_group(first_group).num_rows
            first_group += 1
        with fragment.filesystem.open_input_file(fragment.path) as handle:
            # pre_buffer (pyarrow's default) keeps every row group's bytes read so far until the reader ends:
            # memory grew with the file (2.7 GiB for a 10^7-star file, 0.8 for 10^6; a regression test holds it)
            reader = pq.ParquetFile(handle, pre_buffer=False)
            for batch in reader.iter_batches(batch_size=batch_rows, columns=cols,
                                             row_groups=range(first_group, meta.num_row_groups)):
                if skip:
                    dropped = min(skip, batch.num_rows)
                    batch, skip = batch.slice(dropped), skip - dropped
                if batch.num_rows:
                    yield {c: batch.column(c).to_numpy(zero_copy_only=False) for c in cols}


def _iter_csv(path: Path, columns, chunk_size: int):
    import pyarrow.csv as pcsv

    reader = pcsv.open_csv(str(path), read_options=pcsv.ReadOptions(block_size=1 << 24))
    cols = _select(reader.schema.names, columns, path)
    for batch in reader:
        for s in range(0, batch.num_rows, chunk_size):
            part = batch.slice(s, chunk_size)
            yield {c: part.column(c).to_numpy(zero_copy_only=False) for c in cols}


def _iter_text(path: Path, columns, chunk_size: int):
    """Whitespace-separated text with one header line (e.g. isoclassify/TGAS tables)."""
    import pandas as pd

    # closed however the reading ends: a caller that takes only the first rows (table_columns) and drops the
    # generator left the file open (a ResourceWarning, an error where warnings are)
    with pd.read_csv(path, sep=r"\s+", chunksize=chunk_size) as reader:
        for part in reader:
            cols = _select(list(part.columns), columns, path)
            yield {c: part[c].to_numpy() for c in cols}


def _iter_astropy(path: Path, columns, chunk_size: int, fmt: str, start: int = 0):
    from astropy.table import Table

    table = Table.read(path, format={"ecsv": "ascii.ecsv", "votable": "votable"}[fmt])
    yield from _chunks_of_table(table[start:], columns, chunk_size, path)


def _iter_hdf5(path: Path, columns, chunk_size: int, start: int = 0):
    import h5py

    with h5py.File(path, "r") as f:
        dset = _hdf5_table(f)
        if dset is None:
            raise CatalogReadError(f"{path}: no table (compound dataset) in this HDF5 file")
        cols = _select(dset.dtype.names, columns, path)
        for s in range(start, dset.shape[0], chunk_size):
            rows = dset[s:s + chunk_size]
            yield {c: _native(rows[c]) for c in cols}


def _skip(chunks: Iterator[dict[str, np.ndarray]], start: int) -> Iterator[dict[str, np.ndarray]]:
    """Drop the first ``start`` rows of a stream that cannot seek (CSV, text): read, not kept."""
    for chunk in chunks:
        n = len(next(iter(chunk.values()))) if chunk else 0
        if start >= n:
            start -= n
            continue
        yield {c: v[start:] for c, v in chunk.items()} if start else chunk
        start = 0


def _exact(chunks: Iterator[dict[str, np.ndarray]], size: int) -> Iterator[dict[str, np.ndarray]]:
    """Re-cut a stream into chunks of exactly ``size`` rows (the last may be shorter), so that
    chunk k always holds rows [k size, (k+1) size) whatever the file's row groups or blocks."""
    held: list[dict[str, np.ndarray]] = []
    n_held = 0
    for chunk in chunks:
        held.append(chunk)
        n_held += len(next(iter(chunk.values()))) if chunk else 0
        while n_held >= size:
            merged = held[0] if len(held) == 1 else {c: np.concatenate([h[c] for h in held]) for c in held[0]}
            yield {c: v[:size] for c, v in merged.items()}
            rest = {c: v[size:] for c, v in merged.items()}
            n_held -= size
            held = [rest] if n_held else []
    if n_held:
        yield held[0] if len(held) == 1 else {c: np.concatenate([h[c] for h in held]) for c in held[0]}


def iter_table(path: str | os.PathLike, columns: Sequence[str] | None = None, chunk_size: int = 1_000_000,
               fmt: str | None = None, start: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Yield the catalogue from row ``start`` in chunks of exactly ``chunk_size`` rows (the last may be
    shorter) as dicts of numpy arrays.

    ``columns`` selects columns (case-insensitive match; the file's spelling is kept).
    FITS, HDF5 and Parquet seek to ``start`` without reading what lies before it.
    """
    path = Path(path)
    if not path.exists():
        raise CatalogReadError(f"{path} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise CatalogReadError(f"{path} is empty")
    kind = detect_format(path, fmt)
    seekable = {"fits": _iter_fits, "parquet": _iter_parquet, "hdf5": _iter_hdf5}
    try:
        if kind in seekable:
            chunks = seekable[kind](path, columns, chunk_size, start)
        elif kind in ("csv", "text"):
            reader = _iter_csv if kind == "csv" else _iter_text
            chunks = _skip(reader(path, columns, chunk_size), start)
        else:
            chunks = _iter_astropy(path, columns, chunk_size, kind, start)
        yield from _exact(chunks, chunk_size)
    except CatalogReadError:
        raise
    except Exception as exc:  # every library raises its own types for a corrupted file
        raise CatalogReadError(f"{path}: cannot read as {kind}: {type(exc).__name__}: {exc}") from None


def table_columns(path: str | os.PathLike, fmt: str | None = None) -> list[str]:
    """The column names of a catalogue, from its header or schema where the format has one."""
    path = Path(path)
    kind = detect_format(path, fmt) if path.exists() else None
    try:
        if kind == "parquet":
            import pyarrow.dataset as ds

            return list(ds.dataset(str(path), format="parquet").schema.names)
        if kind == "fits":
            from astropy.io import fits

            with fits.open(path, memmap=True) as hdul:
                hdu = _table_hdu(hdul)
                if hdu is not None:
                    return list(hdu.columns.names)
        if kind == "csv":  # the header line, even when no row follows
            import pyarrow.csv as pcsv

            return list(pcsv.open_csv(str(path)).schema.names)
    except Exception as exc:
        raise CatalogReadError(f"{path}: cannot read as {kind}: {type(exc).__name__}: {exc}") from None
    first = next(iter_table(path, chunk_size=1, fmt=fmt), {})
    return list(first)


def table_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The key-value metadata of a Parquet file or folder (e.g. a prediction output's provenance), without
    Arrow's and pandas' own keys; empty for other formats or when there is none."""
    import pyarrow.dataset as ds

    try:
        meta = ds.dataset(str(path), format="parquet").schema.metadata or {}
    except Exception:
        return {}
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"ARROW") and k != b"pandas"}


def known_rows(path: str | os.PathLike, fmt: str | None = None) -> int | None:
    """The number of rows when the format records it (FITS, Parquet, HDF5), else None (not counted)."""
    path = Path(path)
    kind = detect_format(path, fmt)
    try:
        if kind == "parquet":
            import pyarrow.dataset as ds

            return int(sum(f.metadata.num_rows for f in ds.dataset(str(path), format="parquet").get_fragments()))
        if kind == "fits":
            from astropy.io import fits

            with fits.open(path, memmap=True) as hdul:
                hdu = _table_hdu(hdul)
                return int(hdu.header.get("NAXIS2", 0)) if hdu is not None else None
        if kind == "hdf5":
            import h5py

            with h5py.File(path, "r") as f:
                dset = _hdf5_table(f)
                return int(dset.shape[0]) if dset is not None else None
    except Exception:
        return None
    return None


def read_columns(path: str | os.PathLike, columns: Sequence[str] | None = None, fmt: str | None = None
                 ) -> dict[str, np.ndarray]:
    """The whole table (or chosen columns) in memory: for small tables."""
    chunks = list(iter_table(path, columns, fmt=fmt))
    if not chunks:
        raise CatalogReadError(f"{path} has no rows")
    return {c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}


def count_rows(path: str | os.PathLike, fmt: str | None = None) -> int:
    return sum(len(next(iter(ch.values()))) for ch in iter_table(path, fmt=fmt))


def as_columns(data) -> Mapping[str, np.ndarray]:
    """Accept a pandas DataFrame, an astropy Table or a mapping of arrays."""
    if hasattr(data, "colnames"):  # astropy Table: masked float entries become NaN
        return {c: np.ma.filled(np.ma.asarray(data[c]), np.nan) if data[c].dtype.kind == "f"
                else np.asarray(data[c]) for c in data.colnames}
    if hasattr(data, "columns") and hasattr(data, "to_numpy"):  # pandas
        return {c: data[c].to_numpy() for c in data.columns}
    if isinstance(data, Mapping):
        return data
    raise TypeError(f"cannot take columns from a {type(data).__name__}; pass a DataFrame, an astropy Table or "
                    "a dict of columns (for a bare feature array use PhotometricModel.predict_features)")
