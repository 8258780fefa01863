"""Writing (and, later, reading) catalogues in chunks, atomically.

An output appears under its final name only when it is complete: chunks go
to a temporary file in the same folder, renamed at the end; on any error the
temporary file is removed, so no half-written catalogue is ever left behind.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from photofeh.schema import Column

__all__ = ["CatalogWriter", "arrow_schema", "arrow_table", "atomic_output", "format_for", "check_writable",
           "check_output_place", "check_overwrite", "folder_output", "read_table", "replace_folder", "fsync"]

FITS_STRING_WIDTH = 24  # fixed-width text columns in FITS ('horizontal branch' is 17)
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".fits": "fits", ".fit": "fits", ".fits.gz": "fits"}


def format_for(path: Path, fmt: str | None = None) -> str:
    """Output format from an explicit name or the file extension."""
    if fmt:
        if fmt not in ("parquet", "fits"):
            raise ValueError(f"unknown output format {fmt!r}; use 'parquet' or 'fits'")
        return fmt
    name = path.name.lower()
    for ext, kind in sorted(FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(ext):
            return kind
    raise ValueError(f"cannot tell the format of {path} from its extension; "
                     f"use one of {', '.join(FORMATS)} or pass a format")


def check_writable(path: Path) -> None:
    """Fail early, with the path in the message, if ``path`` cannot be created."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OSError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OSError(f"cannot write {path}: folder {parent} is not writable")
    if path.is_dir():
        raise OSError(f"cannot write {path}: it is a folder")


def check_output_place(out: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse an output that would change an input or another run: the same path as an input, a path
    inside an input folder or holding an input, or a path inside a photofeh prediction run, run
    directory or model folder. Raises ``ValueError`` naming both."""
    o = Path(out).resolve()
    for given in inputs:
        i = Path(given).resolve()
        if o == i:
            raise ValueError(f"the output {out} is also an input: choose another output (the input would be lost)")
        if i in o.parents:
            raise ValueError(f"the output {out} lies inside the input {given}: choose a place outside it")
        if o in i.parents:
            raise ValueError(f"the input {given} lies inside the output {out}: choose another output")
    for parent in o.parents:
        if any((parent / marker).is_file() for marker in ("_manifest.json", "model.json",
                                                           "model/model.json")):
            raise ValueError(f"the output {out} lies inside {parent}, which holds another photofeh run or "
                             "model: choose a place outside it")


def check_overwrite(out: str | os.PathLike, overwrite: bool) -> None:
    """The one overwrite policy of every command: an existing output (a file, or a folder that is not empty)
    is refused unless ``overwrite``; with it, the old output is replaced only once the new one is complete
    (:func:`atomic_output`, :func:`folder_output`). Raises ``FileExistsError`` naming the output."""
    path = Path(out).resolve()  # a link is judged by what it points to (a link to nothing yet is no output)
    if not path.exists() or overwrite:
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    raise FileExistsError(f"{out} exists; pass --overwrite to replace it (only once the new output is complete) "
                          "or choose another --out")


def replace_folder(new: Path, final: Path) -> None:
    """Rename the complete folder ``new`` to ``final``; an existing ``final`` is moved aside first (under a
    hidden ``.partial-<pid>-old`` name, which a killed process leaves for the next writer to remove) and
    removed after. ``final`` must be a real path (a link is resolved by the caller: the link stays)."""
    import shutil

    old = final.with_name(f".{final.name}.partial-{os.getpid()}-old")
    if final.exists() or final.is_symlink():
        os.replace(final, old)
    os.replace(new, final)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists() or old.is_symlink():
        old.unlink()


@contextmanager
def folder_output(final: Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``final``; it replaces ``final`` (:func:`replace_folder`) only if
    the block completes, and is removed otherwise: an output folder is complete (the old one or the new one)
    whenever the process stops. Call with ``final``'s lock held (:func:`photofeh.io.locking.output_lock`)."""
    import shutil

    tmp = partial_path(final)
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def partial_path(path: Path) -> Path:
    """Where an output is written before it is complete: a hidden file in the same folder."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def fsync(path: Path) -> None:
    """Flush a written file to the disk (a power loss cannot leave it empty under its final name), or a
    folder (its renames become durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unnamed_file(folder: Path) -> int | None:
    """A file without a name in ``folder`` (Linux ``O_TMPFILE``, kernel >= 3.11), open for writing, or None
    where the system or the file system does not support it (then a hidden named file is used).

    Nothing names the file until it is linked in: a process killed while writing (SIGKILL included) leaves
    nothing in the folder, and the kernel frees the blocks. It is reached by its path ``/proc/self/fd/N``,
    so any library that opens a path writes to it."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        fd = os.open(folder, flag | os.O_WRONLY | os.O_CLOEXEC, 0o666)  # the umask applies, as for a named file
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):  # unsupported here
            return None
        raise
    return fd


def _link_into_place(fd: int, final: Path, durable: bool) -> None:
    """Give the unnamed file ``fd`` the name ``final`` (replacing what was there): linked under the hidden
    temporary name, then renamed over ``final`` (``linkat`` cannot replace). Between the two a kill leaves
    the hidden name, which the janitor of the lock (photofeh.io.locking) or the next writer removes."""
    folder = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if durable:
            os.fsync(fd)
        staged = partial_path(final).name
        try:
            # a dst_dir_fd makes os.link call linkat(AT_SYMLINK_FOLLOW), which follows /proc's link to the file
            os.link(f"/proc/self/fd/{fd}", staged, dst_dir_fd=folder)
            os.replace(staged, final.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:  # e.g. Ctrl-C or SIGTERM between the two: the staged name (ours) goes too
            try:
                os.unlink(staged, dir_fd=folder)
            except OSError:
                pass
            raise
        if durable:
            os.fsync(folder)
    finally:
        os.close(folder)


@contextmanager
def atomic_output(path: Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; it becomes ``path`` only if the block completes.

    On Linux the path is that of an unnamed file in ``path``'s folder (``/proc/self/fd/N``, see
    :func:`_unnamed_file`): a killed process leaves nothing. Elsewhere (or where the file system lacks
    ``O_TMPFILE``) it is a hidden name carrying the process id (``.<name>.partial-<pid>``): a killed process
    leaves only such names, which the next writer of ``path`` removes (``photofeh.io.locking``). Write the
    path by opening it (not by renaming another file onto it); do not hand it to another process.
    ``durable``: the file is fsynced before it is named and the folder after.
    """
    path = Path(path)
    fd = _unnamed_file(path.parent)
    if fd is not None:
        try:
            yield Path(f"/proc/self/fd/{fd}")
            _link_into_place(fd, path, durable)
        finally:
            os.close(fd)
        return
    tmp = partial_path(path)
    try:
        yield tmp
        if durable and tmp.is_file():
            fsync(tmp)
        os.replace(tmp, path)
        if durable:
            fsync(path.parent)  # Path("x").parent is Path(".")
    finally:
        tmp.unlink(missing_ok=True)


def _fits_unit(unit: str) -> str | None:
    """FITS unit string; 'dex' is not a FITS unit (Pence et al. 2010, table 3), so it is left blank."""
    return None if unit in ("", "dex") else unit


def arrow_schema(columns: Sequence[Column], metadata: dict[str, str] | None = None):
    """The Arrow schema of ``columns``: units and descriptions as field metadata, ``metadata`` on the schema.

    Every field is non-nullable (Parquet REQUIRED): this project's catalogues mark a missing value with NaN,
    never with a null, and without the definition levels a nullable column carries the Parquet writer ran
    1.3x faster on the mock survey (0.79 against 1.06 us per star, files the same size); a null that slipped
    in would stop the writer (ArrowInvalid) rather than be written.
    """
    import pyarrow as pa

    types = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(),
             "bool": pa.bool_(), "string": pa.string()}
    fields = [pa.field(c.name, types[c.dtype], nullable=False,
                       metadata={"unit": c.unit, "description": c.description})
              for c in columns]
    return pa.schema(fields, metadata={k: str(v) for k, v in (metadata or {}).items()})


def arrow_table(chunk: dict[str, np.ndarray], columns: Sequence[Column],
                labels: dict[str, Sequence[str]] | None = None, schema=None):
    """A chunk of numpy columns as an Arrow table (numeric columns without a copy).

    ``labels``: text columns given as integer codes into these labels (``labels[name][code]``); they become
    text in Arrow's C++ (a dictionary array cast to string), about 10x cheaper than converting Python strings.
    """
    import pyarrow as pa

    arrays = []
    for c in columns:
        value = chunk[c.name]
        if labels and c.name in labels:
            coded = pa.DictionaryArray.from_arrays(pa.array(value), pa.array(list(labels[c.name]), pa.string()))
            arrays.append(coded.cast(pa.string()))
        else:
            arrays.append(pa.array(value))
    return pa.Table.from_arrays(arrays, schema=schema or arrow_schema(columns))


class CatalogWriter:
    """Context manager streaming column chunks to Parquet or FITS.

    FITS needs the row count up front (``n_rows``): the binary-table header
    is written first and rows are streamed after it (astropy StreamingHDU).
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[Column], n_rows: int | None = None,
                 fmt: str | None = None, metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.fmt = format_for(self.path, fmt)
        check_writable(self.path)
        self.columns = list(columns)
        self.n_rows = n_rows
        self.metadata = metadata or {}
        self.rows_written = 0
        self._stage = atomic_output(self.path)  # an unnamed file (Linux) or a hidden one, named when complete
        self._writer = None

    # -- fits
    def _fits_header(self):
        from astropy.io import fits

        if self.n_rows is None:
            raise ValueError("writing FITS needs the number of rows in advance")
        codes = {"float32": "E", "float64": "D", "int64": "K", "bool": "L", "string": f"{FITS_STRING_WIDTH}A"}
        cols = [fits.Column(name=c.name, format=codes[c.dtype],
                            unit=_fits_unit(c.unit), array=np.zeros(0)) for c in self.columns]
        hdu = fits.BinTableHDU.from_columns(cols, nrows=0)
        hdr = hdu.header
        hdr["NAXIS2"] = self.n_rows
        for key, val in self.metadata.items():
            hdr.add_comment(f"{key}: {val}"[:2000])
        return hdr

    def __enter__(self) -> CatalogWriter:
        self._tmp = self._stage.__enter__()
        try:
            self._open()
        except BaseException as exc:
            self._stage.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary file
            raise
        return self

    def _open(self) -> None:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self._schema = arrow_schema(self.columns, self.metadata)
            # dictionary encoding for the string columns only: tried on every float column (Arrow's default) it
            # made the mock survey's writing 3.2x slower and its file 1.5x larger (260 against 177 bytes per star)
            strings = [c.name for c in self.columns if c.dtype == "string"]
            # min/max statistics for the identifiers only: the catalogues written here (mock survey, cluster
            # fields) come in random order, so every row group spans the whole range of every other column and
            # its statistics could skip nothing, while computing them was a fifth of the writing
            # (1.37-1.50 against 1.18-1.20 s per million mock stars, one run)
            ids = [c.name for c in self.columns if c.dtype == "int64"]
            # snappy (Arrow's default, and the prediction parts'), not zstd: on the mock survey it wrote in 0.55-0.57
            # against 0.92-0.99 us per star, a sixth of simulate's CPU, and reads back 1.3x faster, for files 17%
            # larger (207 against 177 bytes per star)
            self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="snappy", use_dictionary=strings,
                                            write_statistics=ids)
        else:
            from astropy.io import fits

            self._writer = fits.StreamingHDU(self._tmp, self._fits_header())
            self._dtype = self._fits_record_dtype()

    def _fits_record_dtype(self) -> np.dtype:
        fmt = {"float32": ">f4", "float64": ">f8", "int64": ">i8", "bool": "S1", "string": f"S{FITS_STRING_WIDTH}"}
        return np.dtype([(c.name, fmt[c.dtype]) for c in self.columns])

    def write(self, chunk) -> None:
        """Append ``chunk``: a dict of numpy columns or an Arrow table with this writer's columns."""
        table = None if isinstance(chunk, dict) else chunk
        n = len(next(iter(chunk.values()))) if table is None else table.num_rows
        if self.fmt == "parquet":
            self._writer.write_table(arrow_table(chunk, self.columns, schema=self._schema) if table is None else
                                     table.select([c.name for c in self.columns]))
        else:
            if table is not None:
                chunk = {c.name: table.column(c.name).to_numpy() for c in self.columns}
            rec = np.empty(n, dtype=self._dtype)
            for c in self.columns:
                v = chunk[c.name]
                if c.dtype == "bool":
                    rec[c.name] = np.where(v, b"T", b"F")
                elif c.dtype == "string":
                    rec[c.name] = np.asarray(v, dtype=f"S{FITS_STRING_WIDTH}")
                else:
                    rec[c.name] = v
            self._writer.write(rec.view(np.uint8))  # a bintable streams as BITPIX=8 bytes
        self.rows_written += n

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
            if exc_type is None and self.n_rows is not None and self.rows_written != self.n_rows:
                raise RuntimeError(f"{self.path}: wrote {self.rows_written} rows, expected {self.n_rows}")
        except BaseException as failure:
            self._stage.__exit__(type(failure), failure, failure.__traceback__)  # nothing is named
            raise
        self._stage.__exit__(exc_type, exc, tb)  # named (fsynced) only if the block completed


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None):
    """Read a whole Parquet or FITS catalogue into a pandas DataFrame (small tables only).

    Errors name the file; chunked reading of large catalogues comes with the
    catalogue layer.
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    fmt = format_for(path)
    try:
        if fmt == "parquet":
            return pd.read_parquet(path, columns=list(columns) if columns else None)
        from astropy.table import Table

        t = Table.read(path)
        df = t.to_pandas()
        for c in df.columns:
            if df[c].dtype == object and len(df) and isinstance(df[c].iloc[0], bytes):
                df[c] = df[c].str.decode("ascii").str.strip()
        return df[list(columns)] if columns else df
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
