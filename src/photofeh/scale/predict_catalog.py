"""Predicting for whole catalogues on one machine: streamed, overlapped, resumable (``photofeh predict``).

The input is cut into chunks of ``chunk_rows`` rows; chunk k always holds
rows [k c, (k+1) c) (see :func:`photofeh.io.readers.iter_table`). Each chunk is
predicted and written as its own Parquet part, atomically, then recorded in
``_chunks.jsonl`` (``_manifest.json`` says what the run is: input, model,
chunk size). Started again with the same command, a run skips the
recorded chunks, so a crash or a ``kill -9`` costs at most the chunks in
flight, and the output is identical to that of an uninterrupted run.

Reading (one thread), the network (torch's threads) and writing (one thread)
overlap: pyarrow and torch release the GIL, so on 2 cores the read and
write time hides behind the compute.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from photofeh.errors import InputError, MissingColumnsError
from photofeh.io.catalog import atomic_output, check_output_place
from photofeh.io.dust import EbvSource
from photofeh.io.presets import Preset, apply_preset, resolve_preset
from photofeh.io.readers import CatalogReadError, detect_format, iter_table, known_rows, table_columns
from photofeh.model.artifact import model_digest
from photofeh.model.predict import UNPHYSICAL
from photofeh.processes import available_cores, become_worker

__all__ = ["PredictOptions", "PredictSummary", "predict_catalog", "predict_chunk", "input_columns",
           "ResumeMismatch", "ChunkError", "IncompleteOutput", "MANIFEST", "check_options", "prepare_run",
           "provenance",
           "read_provenance", "model_digest"]

MANIFEST = "_manifest.json"  # a leading underscore: pyarrow datasets skip these when reading the parts
CHUNK_LOG = "_chunks.jsonl"
ID_COLUMNS = ("source_id", "ra", "dec")
SEEKABLE = ("fits", "parquet", "hdf5")
# Predictions are noise-like floats: dictionary encoding them made writing 6.6x slower and files larger
# (250,000 rows: 0.45 s and 17 MB vs 0.07 s and 14 MB, BENCHMARKS.md).
PARQUET_WRITE = {"compression": "snappy", "use_dictionary": False}


class ResumeMismatch(ValueError):
    """The output folder belongs to a run with another input, model or options."""


class ChunkError(ValueError):
    """A chunk that could not be read or predicted, with its row range."""


@dataclass
class PredictOptions:
    chunk_rows: int = 250_000
    keep: tuple[str, ...] = ()          # pass-through columns, after the id columns found in the input
    preset: str | Preset | None = None  # archive columns -> schema, applied to every chunk
    fmt: str | None = None              # input format when the extension does not tell
    on_error: str = "stop"              # "stop" or "skip" a malformed chunk (reported with its rows)
    device: str = "auto"
    threads: int | None = None          # torch intra-op threads; None: torch's default (physical cores)
    workers: int = 1                    # processes on this machine, each predicting whole chunks (seekable input)
    progress: bool = True
    ebv: EbvSource = field(default_factory=EbvSource)  # E(B-V) from another column or a local SFD map
    prior: str | None = None            # "flat": divide a labels-prior model's training prior out (model.prior)


@dataclass
class PredictSummary:
    output: Path
    rows: int
    chunks_done: int
    chunks_total: int | None
    failed: list[dict] = field(default_factory=list)
    replaced: dict[str, int] = field(default_factory=dict)  # values set to NaN by the validation layer
    duplicate_ids: int = 0
    unphysical_predictions: int = 0  # rows whose prediction fell outside its label's physical range: not usable
    redone_chunks: list[int] = field(default_factory=list)  # logged parts that failed verification
    unusable_rows: int = 0
    seconds: float = 0.0
    resumed_chunks: int = 0
    rows_this_run: int = 0

    @property
    def rate(self) -> float:
        """Stars per second of this run (resumed chunks not counted)."""
        return self.rows_this_run / self.seconds if self.seconds > 0 else float("nan")


def input_columns(model, available: Sequence[str], preset: Preset | None, keep: Sequence[str],
                  source: str, ebv: EbvSource | None = None) -> tuple[list[str], list[str]]:
    """Which columns to read from the input, and which to pass through to the output.

    Only these are read: a Gaia ``gaia_source`` file has ~150 columns and the
    default model needs a dozen. ``ebv``: E(B-V) from another column or a map
    (then the model's E(B-V) column is not needed). Raises ``KeyError`` naming what is missing.
    """
    ebv = ebv or EbvSource()
    extra = ebv.reads(available)
    lower = {c.lower(): c for c in available}
    ids = [c for c in ID_COLUMNS if c in available]
    # a preset that derives columns (e.g. green2020's labels and source_id) may make a kept column: checked on
    # the first row (probe_input)
    missing_keep = [c for c in keep if c not in available and c.lower() not in lower
                    and not (preset and c in preset.columns and preset.columns[c].lower() in lower)
                    and not (preset and preset.derive is not None)]
    if missing_keep:
        raise MissingColumnsError(f"{source}: --keep column(s) {missing_keep} not in the input")
    if preset is None:
        from photofeh.bands import BANDS

        needed = list(model.needed_columns(available))
        bands = [c for c in needed if c in BANDS]
        extinction = [f"A_{b}" for b in bands if f"A_{b}" in available]  # deredden prefers these
        if model.ebv_column in needed and model.ebv_column not in available and (
                len(extinction) == len(bands) or ebv.provides()):
            needed.remove(model.ebv_column)
        missing = [c for c in needed if c not in available]
        if missing:
            hint = (" (E(B-V): --ebv-column NAME for another column, --sfd-dir DIR for a local SFD map, or A_<band> "
                    "columns)" if model.ebv_column in missing else "")
            raise MissingColumnsError(f"{source} lacks column(s) {missing} that the model needs (features: "
                           f"{', '.join(model.features)}){hint}; map archive columns with --preset or --mapping")
        # feature errors where the input has them: errors beyond the training stars' widen the uncertainties
        # and mark the star out of the training domain (photofeh.model.domain)
        errors = [f"{c}_err" if c != "parallax" else "parallax_error" for c in needed]
        errors = [c for c in errors if c in available] if model.domain is not None else []
        read = [*needed, *extinction, *errors, *ids, *keep, *extra]
    else:
        ids = [c for c in ID_COLUMNS if c in preset.columns and preset.columns[c].lower() in lower]
        wanted = {*preset.columns.values(), *preset.reads, *keep, *extra}
        read = [lower[c.lower()] for c in wanted if c.lower() in lower]
    return sorted(dict.fromkeys(read)), list(dict.fromkeys([*ids, *keep]))


def probe_input(model, source: Path, read: Sequence[str], keep: Sequence[str], preset: Preset | None,
                ebv: EbvSource, fmt: str | None = None) -> list[str]:
    """The input's first row through the preset and the model, before anything is written: a table that lacks
    a column the preset, the model or ``--keep`` needs is refused here, once, as bad input
    (:class:`photofeh.errors.MissingColumnsError`), not chunk by chunk as failures to resume. Returns ``keep``
    with the id columns the preset derives in front (green2020's hashed ``source_id``), so that the
    predictions carry them."""
    first = next(iter_table(source, list(read), 1, fmt), None)
    if not first:
        return list(keep)
    cols, _ = apply_preset(first, preset, str(source))
    missing = [c for c in keep if c not in cols and c not in first]
    if missing:
        made = f" nor made by the preset {preset.name!r}" if preset is not None else ""
        raise MissingColumnsError(f"{source}: --keep column(s) {missing} not in the input{made} (it has e.g. "
                                  f"{sorted(cols)[:12]})")
    if not ebv.sfd_dir:  # the map is read at the first chunk, not for a probe
        if ebv.provides():
            cols = ebv.apply(cols, first, model.ebv_column, str(source), Counter())
        try:
            model.predict_columns(cols)
        except MissingColumnsError as exc:
            raise MissingColumnsError(f"{source}: {exc}; map archive columns with --preset or --mapping"
                                      if preset is None else f"{source} (preset {preset.name!r}): {exc}") from None
    ids = [c for c in ID_COLUMNS if c in cols and c not in keep and c not in first]
    return [*ids, *keep]


def predict_chunk(model, raw: Mapping[str, np.ndarray], keep: Sequence[str], preset: Preset | None = None,
                  source: str = "chunk", ebv: EbvSource | None = None) -> tuple[pa.Table, Counter]:
    """One chunk of the input -> one table of predictions (shared by the local and the Dask paths).

    Output columns: the pass-through columns, then every label with ``_err``
    (float32: the errors are >1e3 times the float32 rounding), ``p_giant``,
    ``is_giant`` and ``usable`` (False where a feature is missing: NaN predictions, row kept).
    """
    cols, report = apply_preset(raw, preset, source)  # schema names, validated (photofeh.io.validation)
    if ebv is not None and ebv.provides():
        cols = ebv.apply(cols, raw, model.ebv_column, source, report)
    pred = model.predict_columns(cols, counts=report)  # validated above: not a second time per chunk
    out: dict[str, np.ndarray] = {}
    for c in keep:
        out[c] = np.asarray(cols[c] if c in cols else raw[c])
    for name, values in pred.items():
        out[name] = values.astype(np.float32) if values.dtype.kind == "f" else values
    return pa.table(out), report


# ------------------------------------------------------------------ provenance
def provenance(model_dir: Path, model, source: Path, preset: Preset | None, created: str) -> dict[str, str]:
    """What made a prediction output, as Parquet key-value metadata (every part, and the single file):
    photofeh version, model path and digest, its labels and prior (:func:`photofeh.model.predict.
    model_provenance`, as the Python API's ``DataFrame.attrs``), the input and preset, and when the run began
    (the same for every part of a resumed run, so resumed output stays identical)."""
    from photofeh.model.predict import model_provenance

    return {"photofeh_kind": "predictions", **model_provenance(model, model_dir),
            "input": str(source.resolve()), "preset": "" if preset is None else preset.name, "created": created}


def read_provenance(path: str | os.PathLike) -> dict[str, str]:
    """The provenance metadata of a prediction output (folder or file); empty if it has none."""
    from photofeh.io.readers import table_metadata

    return table_metadata(path)


# ------------------------------------------------------------------ manifest
def part_name(k: int) -> str:
    return f"part-{k:06d}.parquet"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _part_problem(folder: Path, k: int, entry: dict, chunk_rows: int) -> str | None:
    """Why a logged part cannot be trusted, or None if it is whole (name, rows, size, checksum)."""
    if entry.get("file") != part_name(k) or entry.get("first_row") != k * chunk_rows:
        return f"its log line names {entry.get('file')!r} at row {entry.get('first_row')}, not {part_name(k)}"
    path = folder / part_name(k)
    if not path.is_file():
        return f"{part_name(k)} is missing"
    if path.stat().st_size != entry.get("bytes"):
        return f"{part_name(k)} has {path.stat().st_size:,d} bytes, the log says {entry.get('bytes')}"
    if _sha256(path) != entry.get("sha256"):
        return f"{part_name(k)} does not match its checksum"
    try:
        rows = pq.read_metadata(path).num_rows
    except Exception as exc:  # a damaged footer
        return f"{part_name(k)} cannot be read ({type(exc).__name__})"
    if rows != entry.get("rows"):
        return f"{part_name(k)} has {rows} rows, the log says {entry.get('rows')}"
    return None

def _fingerprint(path: Path) -> list:
    """Names, sizes and modification times of the input files: a changed input is not resumed onto."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(p.relative_to(path)) if path.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns]
            for p in files]


def run_identity(source: Path, kind: str, model_dir: Path, model, opts: PredictOptions, read: Sequence[str],
                 keep: Sequence[str], preset: Preset | None) -> dict:
    """What a prediction run is, for its manifest: a run resumes only onto the same identity (a local run and
    a Dask run of the same command share it, so either resumes the other)."""
    return {"input": str(source.resolve()), "input_files": _fingerprint(source), "format": kind,
            "model": model_digest(model_dir), "chunk_rows": opts.chunk_rows, "columns_read": list(read),
            "keep": list(keep), "preset": None if preset is None else preset.name, "ebv_column": opts.ebv.column,
            "sfd_dir": opts.ebv.sfd_dir, "prior": model.estimate_prior}


def write_part(folder: Path, k: int, chunk_rows: int, table: pa.Table, replaced: Mapping[str, int],
               metadata: dict[str, str]) -> dict:
    """Chunk ``k``'s part, fsynced and renamed into place; returns its line for the chunk log (rows, size,
    checksum: see :class:`Manifest`)."""
    name = part_name(k)
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink, **PARQUET_WRITE)
    data = sink.getvalue()
    with atomic_output(folder / name) as tmp:  # fsynced before the rename
        with open(tmp, "wb") as f:
            f.write(data)
    unusable = table.num_rows - int(np.count_nonzero(table["usable"].to_numpy()))
    return {"file": name, "rows": table.num_rows, "first_row": k * chunk_rows, "bytes": data.size,
            "sha256": hashlib.sha256(data).hexdigest(), "unusable": unusable,
            "replaced": {c: v for c, v in replaced.items() if v}}


def check_complete(done: Mapping[int, dict], expected: Mapping[int, int], source: Path, out: Path,
                   folder: Path) -> None:
    """Rows written = rows read, chunk by chunk (``expected``: rows per chunk), for a local or a Dask run;
    raise :class:`IncompleteOutput` naming what differs."""
    wrong = [k for k in expected if done.get(k, {}).get("rows") != expected[k]]
    extra = sorted(set(done) - set(expected))
    total_in, total_out = sum(expected.values()), sum(v["rows"] for v in done.values())
    if wrong or extra or total_in != total_out:
        raise IncompleteOutput(
            f"{out}: {total_out:,d} rows written for {total_in:,d} read from {source}"
            + (f"; chunk(s) {wrong[:10]} differ" if wrong else "")
            + (f"; unexpected chunk(s) {extra[:10]}" if extra else "") + f"; delete {folder} and predict again")


class Manifest:
    """What a run has finished: ``_manifest.json`` (written once: what the run is) and ``_chunks.jsonl``
    (one line appended per finished or failed chunk, so a 10^9-star run never rewrites a big file).

    A part is fsynced and renamed into place before its line is appended (and the line is fsynced),
    and the line records the part's rows, size and SHA-256. On resume a chunk counts as done only if
    its line is whole, names chunk k's own part and row range, and the part on disk has that size,
    checksum and row count; anything else (a part emptied by a power loss, edited, replaced, or a
    line pointing elsewhere) is reported and redone.
    """

    def __init__(self, folder: Path, identity: dict, log: Callable[[str], None] = print):
        self.folder, self.identity, self.say = folder, identity, log
        self.path, self.log = folder / MANIFEST, folder / CHUNK_LOG
        self.done: dict[int, dict] = {}
        self.failed: dict[int, dict] = {}
        self.redone: list[int] = []
        self._lock = threading.Lock()
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                raise ResumeMismatch(f"{self.path} is not valid JSON; delete {folder} to start again") from None
            if saved.get("identity") != identity:
                diff = [k for k in identity if saved.get("identity", {}).get(k) != identity[k]]
                raise ResumeMismatch(f"{folder} holds a run with a different {', '.join(diff)}; use another --out "
                                     f"or delete it to start again")
            self.created = saved.get("created", "")
            self._replay()
        else:
            self.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            with atomic_output(self.path) as tmp:
                tmp.write_text(json.dumps({"identity": identity, "created": self.created}, indent=1) + "\n")

    def _replay(self) -> None:
        if not self.log.exists():
            return
        chunk_rows = self.identity["chunk_rows"]
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
                k = int(entry.pop("chunk"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                continue  # the last line of a killed run
            if "error" in entry:
                self.failed[k] = entry
                continue
            problem = _part_problem(self.folder, k, entry, chunk_rows)
            if problem is None:
                self.done[k] = entry
                self.failed.pop(k, None)
            else:
                self.done.pop(k, None)
                self.redone.append(k)
                self.say(f"chunk {k}: {problem}; it will be predicted again")

    @property
    def replaced(self) -> Counter:
        """Values the validation layer replaced by NaN, per column, over the finished chunks."""
        total: Counter = Counter()
        for entry in self.done.values():
            total.update(entry.get("replaced", {}))
        return total

    def record_done(self, k: int, info: dict) -> None:
        with self._lock:
            self.done[k] = info
            self.failed.pop(k, None)
            self._append({"chunk": k, **info})

    def record_failed(self, k: int, info: dict) -> None:
        with self._lock:
            self.failed[k] = info
            self._append({"chunk": k, **info})

    def _append(self, entry: dict) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())


def bad_chunk(source: Path, k: int, chunk_rows: int, n_total: int | None, stage: str,
              exc: BaseException) -> tuple[str, int, int]:
    """What to say of chunk ``k`` that could not be read or predicted (local and Dask runs): the message
    naming its rows, and its first and last row."""
    first = k * chunk_rows
    last = first + chunk_rows - 1 if n_total is None else min(first + chunk_rows, n_total) - 1
    return f"{source}: chunk {k} (rows {first:,d}-{last:,d}) could not be {stage}: {exc}", first, last


# ------------------------------------------------------- one chunk in a worker
class PartError(ValueError):
    """A chunk a worker could not read or predict: ``stage`` ("read" or "predicted") and the message."""

    def __init__(self, stage: str, message: str, bad_input: bool = False):
        super().__init__(stage, message, bad_input)
        self.stage, self.message, self.bad_input = stage, message, bad_input

    def __str__(self) -> str:
        return self.message


@functools.lru_cache(maxsize=2)
def worker_model(model_dir: str, device: str, threads: int | None, prior: str | None = None):
    """The model, loaded at the first chunk a worker process predicts and reused for the others."""
    import torch

    from photofeh.model.predict import load_model

    if threads:
        torch.set_num_threads(threads)
    return load_model(model_dir, resolve_device(device), prior)


def predict_part(k: int, source: str, read: list[str], keep: list[str], chunk_rows: int, out: str, model_dir: str,
                 preset, device: str, threads: int | None, ebv, prior: str | None, metadata: dict,
                 fmt: str | None = None) -> tuple[int, dict]:
    """In a worker process (local ``--workers`` or Dask): rows ``k * chunk_rows`` onwards of a seekable
    ``source`` -> ``out/part-k.parquet`` (written beside and renamed, as the one-process run writes its parts);
    returns ``k`` and the part's line for the chunk log, which the calling process appends. A chunk that
    cannot be read or predicted raises :class:`PartError`."""
    model = worker_model(model_dir, device, threads, prior)
    try:
        chunk = next(iter_table(source, read, chunk_rows, fmt, start=k * chunk_rows))
    except (CatalogReadError, OSError, ValueError) as exc:
        raise PartError("read", str(exc)) from None
    try:
        table, replaced = predict_chunk(model, chunk, keep, preset, f"{source} rows {k * chunk_rows:,d}+", ebv)
    except (KeyError, ValueError, TypeError) as exc:
        raise PartError("predicted", str(exc), isinstance(exc, InputError)) from None
    return k, write_part(Path(out), k, chunk_rows, table, replaced, metadata)


# -------------------------------------------------------------- the run
def _prefetch(chunks: Iterator, depth: int = 2) -> Iterator:
    """Read ahead in a thread: (item, None) or (None, exception), in order."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        """Hand over an entry unless the consumer has gone; False once it has."""
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in chunks:
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, which decides
            put((None, exc))
            return
        put((None, StopIteration()))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if isinstance(exc, StopIteration):
                return
            yield item, exc
            if exc is not None:
                return
    finally:
        stop.set()


def _runs(pending: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs [first, last] of pending chunk indices."""
    runs: list[tuple[int, int]] = []
    for k in pending:
        if runs and runs[-1][1] == k - 1:
            runs[-1] = (runs[-1][0], k)
        else:
            runs.append((k, k))
    return runs


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to PyTorch (use --device auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return device


MAX_CHUNK_ROWS = 100_000_000  # a chunk is held in memory several times over (~1 KB per row in all)


def predict_catalog(model_dir: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike,
                    options: PredictOptions | None = None, log: Callable[[str], None] = print) -> PredictSummary:
    """Predict every star of ``source`` into ``out`` (a folder of Parquet parts, or one ``.parquet`` file)
    with the model folder (or run directory) ``model_dir``.

    Resumes from ``out``'s manifest when one exists for the same input, model and options. Holds the
    output's lock for the whole run (a second writer is refused, see :mod:`photofeh.io.locking`) and ends
    by checking that every input row was written once (:class:`IncompleteOutput` otherwise).
    """
    from photofeh.io.locking import output_lock

    opts, model_dir, source, out = prepare_run(model_dir, source, out, options)
    with output_lock(out, f"photofeh predict {source}", inside=True):
        return _PredictionRun(model_dir, source, out, opts, log).run()


def prepare_run(model_dir, source, out, options: PredictOptions | None) -> tuple[PredictOptions, Path, Path, Path]:
    """What every prediction run (local or Dask) checks before any work: the options' ranges, the model
    folder of a run directory, an existing input, and an output that changes no input or other run."""
    from photofeh.model.predict import model_folder

    opts = options or PredictOptions()
    check_options(opts)
    model_dir, source, out = model_folder(model_dir), Path(source), Path(out)
    if not source.exists():
        raise CatalogReadError(f"{source} does not exist")
    check_output_place(out, [source, model_dir])
    return opts, model_dir, source, out


class IncompleteOutput(ValueError):
    """The output does not hold every input row exactly once."""


def check_options(opts: PredictOptions) -> None:
    """Every option range-checked before any work starts."""
    if opts.on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', not {opts.on_error!r}")
    if not isinstance(opts.chunk_rows, int) or not 1 <= opts.chunk_rows <= MAX_CHUNK_ROWS:
        raise ValueError(f"chunk_rows must be an integer from 1 to {MAX_CHUNK_ROWS:,d}, got {opts.chunk_rows!r} "
                         "(a chunk is held in memory: ~1 KB per row)")
    if opts.threads is not None and not 1 <= opts.threads <= 1024:
        raise ValueError(f"threads must be from 1 to 1024, got {opts.threads!r}")
    if not isinstance(opts.workers, int) or not 1 <= opts.workers <= 1024:
        raise ValueError(f"workers must be an integer from 1 to 1024, got {opts.workers!r}")
    if opts.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {opts.device!r}; choose auto, cpu or cuda")


class _PredictionRun:
    """One ``photofeh predict``: set-up and checks, the chunk loop, the summary."""

    def __init__(self, model_dir: Path, source: Path, out: Path, opts: PredictOptions, log: Callable[[str], None]):
        import torch

        from photofeh.io.locking import remove_partials
        from photofeh.model.predict import load_model

        self.source, self.out, self.opts, self.log = source, out, opts, log
        self.single_file = out.suffix == ".parquet"
        self.folder = out.with_name(out.name + ".parts") if self.single_file else out
        if self.single_file and out.exists() and not self.folder.exists():
            raise FileExistsError(f"{out} exists and is complete; delete it to predict again")
        if self.folder.is_dir() and any(p.name != MANIFEST and not p.name.startswith(".")
                                        for p in self.folder.iterdir()) and not (self.folder / MANIFEST).exists():
            raise FileExistsError(f"{self.folder} exists, is not empty and holds no photofeh prediction run; "
                                  "choose another --out (nothing there is touched)")
        remove_partials(self.folder, inside=True)  # a killed run's half-written parts (we hold the lock)
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.model_dir, self.device = model_dir, resolve_device(opts.device)
        self.model = load_model(model_dir, self.device, opts.prior)
        self.preset = resolve_preset(opts.preset)
        self.kind = detect_format(source, opts.fmt)
        self.read, self.keep = input_columns(self.model, table_columns(source, opts.fmt), self.preset, opts.keep,
                                             str(source), opts.ebv)
        self.keep = probe_input(self.model, source, self.read, self.keep, self.preset, opts.ebv, opts.fmt)
        self.n_total = known_rows(source, opts.fmt)
        if self.n_total == 0:
            raise CatalogReadError(f"{source} has no rows: nothing to predict")
        self.n_chunks = None if self.n_total is None else -(-self.n_total // opts.chunk_rows)
        self.rows_read: dict[int, int] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(self.folder, run_identity(source, self.kind, model_dir, self.model, opts, self.read,
                                                           self.keep, self.preset), log)
        self.provenance = provenance(model_dir, self.model, source, self.preset, self.manifest.created)

    # ---------------------------------------------------------------- steps
    def _pending_runs(self) -> list[tuple[int, int | None]]:
        """Runs [first, last] of unfinished chunks; one open-ended run for a stream of unknown length."""
        done = self.manifest.done
        if self.n_chunks is not None:
            return _runs([k for k in range(self.n_chunks) if k not in done])
        return [(next(k for k in range(len(done) + 1) if k not in done), None)]

    def _chunks(self, first: int, last: int | None) -> Iterator[tuple[int, dict | None, BaseException | None]]:
        """(k, chunk, None) for chunks first..last, read ahead; a read error ends the run as (k, None, exc)."""
        c = self.opts.chunk_rows
        k = first
        for chunk, exc in _prefetch(iter_table(self.source, self.read, c, self.opts.fmt, start=first * c)):
            yield k, chunk, exc
            if exc is not None or (last is not None and k >= last):
                return
            k += 1

    def _write(self, k: int, table: pa.Table, replaced: Counter) -> None:
        """In the writer thread: the part, then its line in the chunk log (see :class:`Manifest`)."""
        self.manifest.record_done(k, write_part(self.folder, k, self.opts.chunk_rows, table, replaced,
                                                self.provenance))

    def _fail(self, k: int, exc: BaseException, stage: str) -> None:
        """Report a bad chunk with its rows: stop (raise) or record it and go on."""
        message, first, last = bad_chunk(self.source, k, self.opts.chunk_rows, self.n_total, stage, exc)
        if self.opts.on_error == "stop":
            if isinstance(exc, InputError) or (isinstance(exc, PartError) and exc.bad_input):
                # the same input gives the same error: rerunning cannot resume past it
                raise ChunkError(message + " (the input must change for this chunk; the chunks finished before "
                                 "are kept; --on-error skip to go past it)")
            raise ChunkError(message + " (rerun the same command to resume; --on-error skip to go past it)")
        self.log(f"skipped {message}")
        self.manifest.record_failed(k, {"first_row": first, "last_row": last, "stage": stage, "error": str(exc)})

    # ------------------------------------------------------------------ run
    def run(self) -> PredictSummary:
        from tqdm import tqdm

        manifest = self.manifest
        resumed = len(manifest.done)
        done_rows = sum(v["rows"] for v in manifest.done.values())
        if resumed:
            self.log(f"resuming: {resumed} chunk(s), {done_rows:,d} stars already done in {self.folder}")
        bar = tqdm(total=self.n_total, initial=done_rows, unit="star", unit_scale=True, smoothing=0.05,
                   disable=not self.opts.progress, desc="predict", dynamic_ncols=True, mininterval=1.0)
        t0 = time.perf_counter()
        if self.opts.workers > 1:
            if self.kind in SEEKABLE and self.n_chunks is not None:
                try:
                    rows_this_run = self._run_workers(bar)
                finally:
                    bar.close()
                return self._summary(resumed, rows_this_run, time.perf_counter() - t0)
            self.log(f"--workers: a {self.kind} input is read as one stream; predicting in this process")
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="photofeh-write")
        in_flight: list[Future] = []
        rows_this_run = 0
        try:
            runs = self._pending_runs()
            while runs:
                first, last = runs.pop(0)
                for k, chunk, exc in self._chunks(first, last):
                    if exc is not None:
                        self._fail(k, exc, "read")  # raises under --on-error stop
                        if self.kind not in SEEKABLE:
                            self.log(f"{self.source}: a {self.kind} file cannot be read past a bad block; "
                                     "stopping here")
                        elif last is None or k < last:
                            runs.insert(0, (k + 1, last))  # seek past the bad chunk
                        break
                    self.rows_read[k] = len(next(iter(chunk.values()))) if chunk else 0
                    if k in manifest.done:  # only in unseekable streams, read from the start
                        continue
                    start = k * self.opts.chunk_rows
                    try:
                        table, replaced = predict_chunk(self.model, chunk, self.keep, self.preset,
                                                        f"{self.source} rows {start:,d}+", self.opts.ebv)
                    except (KeyError, ValueError, TypeError) as err:
                        self._fail(k, err, "predicted")
                        continue
                    in_flight.append(writer.submit(self._write, k, table, replaced))
                    while len(in_flight) > 2 or (in_flight and in_flight[0].done()):
                        in_flight.pop(0).result()  # at most two chunks wait to be written; errors surface
                    rows_this_run += table.num_rows
                    bar.update(table.num_rows)
            for f in in_flight:
                f.result()
        finally:
            writer.shutdown(wait=True)  # even when interrupted: finished chunks are kept and logged
            bar.close()
        return self._summary(resumed, rows_this_run, time.perf_counter() - t0)

    def _run_workers(self, bar) -> int:
        """The pending chunks on ``opts.workers`` processes of this machine: each reads its chunk (the input is
        seekable), predicts it and writes its part (:func:`predict_part`, as a Dask task does); this process
        logs each part as it arrives, so a killed run resumes as a one-process run does. Every stage of a
        chunk runs in parallel, not only the network's products: 1.02-1.22x faster than one process with two
        threads on 2 cores (benchmarks/bench_predict.py), and the way to use a many-core node."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        opts, c = self.opts, self.opts.chunk_rows
        pending = [k for k in range(self.n_chunks) if k not in self.manifest.done]
        workers = min(opts.workers, max(len(pending), 1))
        threads = opts.threads or max(1, available_cores() // workers)
        task = functools.partial(predict_part, source=str(self.source), read=list(self.read), keep=list(self.keep),
                                 chunk_rows=c, out=str(self.folder), model_dir=str(self.model_dir),
                                 preset=self.preset, device=self.device, threads=threads, ebv=opts.ebv,
                                 prior=opts.prior, metadata=self.provenance, fmt=opts.fmt)
        # spawned, not forked (torch's thread pools do not survive fork()), as children of this process, so
        # that they die with it (kill -9 included) instead of finishing chunks nobody will log
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=become_worker, initargs=(os.getpid(),))
        rows, logged = 0, set()
        futures = {pool.submit(task, k): k for k in pending}

        def log_part(future) -> None:
            nonlocal rows
            k, entry = future.result()
            self.manifest.record_done(k, entry)
            logged.add(k)
            rows += entry["rows"]
            bar.update(entry["rows"])

        try:
            for future in as_completed(futures):
                try:
                    log_part(future)
                except PartError as exc:
                    self._fail(futures[future], exc, exc.stage)  # raises under --on-error stop
        except BrokenProcessPool:
            raise ChunkError(f"a worker process died while predicting {self.source} (out of memory? try fewer "
                             "--workers or smaller --chunk-rows); the chunks finished before are kept: rerun the "
                             "same command to resume") from None
        finally:
            # stopped (an error, Ctrl-C): chunks being predicted finish, and are logged like those before them
            pool.shutdown(wait=True, cancel_futures=True)
            for future, k in futures.items():
                if k not in logged and future.done() and not future.cancelled() and future.exception() is None:
                    log_part(future)
        return rows

    def _check_complete(self) -> None:
        """Rows written = rows read, chunk by chunk; raise :class:`IncompleteOutput` naming what differs."""
        done, c = self.manifest.done, self.opts.chunk_rows
        if self.n_total is not None:
            expected = {k: min(c, self.n_total - k * c) for k in range(self.n_chunks)}
        else:  # a stream of unknown length: the chunks read now, and the verified parts before them
            expected = {**{k: v["rows"] for k, v in done.items()}, **self.rows_read}
            last = max(expected, default=-1)
            expected.update({k: c for k in range(last) if expected.get(k) != c})  # whole chunks but the last
        if sum(expected.values()) == 0:
            raise IncompleteOutput(f"{self.source} yielded no rows: nothing was predicted (is it the file you "
                                   "meant, and does its mapping name its columns?)")
        check_complete(done, expected, self.source, self.out, self.folder)

    def _summary(self, resumed: int, rows_this_run: int, seconds: float) -> PredictSummary:
        done, failed = self.manifest.done, self.manifest.failed
        if not failed:  # every chunk was meant to be written: check that it was (a short input included)
            self._check_complete()
        complete = not failed
        if self.single_file and complete:
            _concatenate(self.folder, sorted(done), self.out, sum(v["rows"] for v in done.values()))
        replaced = self.manifest.replaced
        duplicates = replaced.pop("duplicate source_id", 0)
        unphysical = replaced.pop(UNPHYSICAL, 0)
        return PredictSummary(
            output=self.out if (complete or not self.single_file) else self.folder,
            rows=sum(v["rows"] for v in done.values()), chunks_done=len(done),
            chunks_total=self.n_chunks if self.n_chunks is not None else (len(done) if complete else None),
            failed=[{"chunk": k, **v} for k, v in sorted(failed.items())], replaced=dict(replaced),
            duplicate_ids=duplicates, unphysical_predictions=unphysical, redone_chunks=list(self.manifest.redone),
            unusable_rows=sum(v.get("unusable", 0) for v in done.values()), seconds=seconds,
            resumed_chunks=resumed, rows_this_run=rows_this_run)


def _concatenate(folder: Path, chunks: list[int], out: Path, rows: int) -> None:
    """Parts -> one Parquet file, streamed part by part, atomically; checked to hold ``rows`` rows before
    the parts are removed."""
    import shutil

    parts = [folder / part_name(k) for k in chunks]
    schema = pq.read_schema(parts[0])
    with atomic_output(out) as tmp:
        with pq.ParquetWriter(tmp, schema, **PARQUET_WRITE) as w:
            for p in parts:
                w.write_table(pq.read_table(p))
        if pq.read_metadata(tmp).num_rows != rows:
            raise IncompleteOutput(f"{out}: the assembled file does not hold the {rows:,d} rows of its parts; "
                                   f"the parts are kept in {folder}")
    shutil.rmtree(folder)
