"""Predicting for whole catalogues on one machine: streamed, overlapped, resumable (``photofeh predict``).

The input is cut into chunks of ``chunk_rows`` rows; chunk k always holds
rows [k c, (k+1) c) (see :func:`photofeh.readers.iter_table`). Each chunk is
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

from photofeh.catalog import atomic_output
from photofeh.presets import PRESETS, Preset, apply_preset
from photofeh.readers import CatalogReadError, detect_format, iter_table, known_rows, table_columns

__all__ = ["PredictOptions", "PredictSummary", "predict_catalog", "predict_chunk", "input_columns",
           "ResumeMismatch", "ChunkError", "MANIFEST"]

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
    progress: bool = True


@dataclass
class PredictSummary:
    output: Path
    rows: int
    chunks_done: int
    chunks_total: int | None
    failed: list[dict] = field(default_factory=list)
    sentinels: dict[str, int] = field(default_factory=dict)
    unusable_rows: int = 0
    seconds: float = 0.0
    resumed_chunks: int = 0
    rows_this_run: int = 0

    @property
    def rate(self) -> float:
        """Stars per second of this run (resumed chunks not counted)."""
        return self.rows_this_run / self.seconds if self.seconds > 0 else float("nan")


def _preset(preset: str | Preset | None) -> Preset | None:
    if preset is None or isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return PRESETS[preset]


def input_columns(model, available: Sequence[str], preset: Preset | None, keep: Sequence[str],
                  source: str) -> tuple[list[str], list[str]]:
    """Which columns to read from the input, and which to pass through to the output.

    Only these are read: a Gaia ``gaia_source`` file has ~150 columns and the
    default model needs a dozen. Raises ``KeyError`` naming what is missing.
    """
    lower = {c.lower(): c for c in available}
    ids = [c for c in ID_COLUMNS if c in available]
    missing_keep = [c for c in keep if c not in available and c.lower() not in lower
                    and not (preset and c in preset.columns and preset.columns[c].lower() in lower)]
    if missing_keep:
        raise KeyError(f"{source}: --keep column(s) {missing_keep} not in the input")
    if preset is None:
        from photofeh.bands import BANDS

        needed = list(model.required_columns)
        bands = [c for c in needed if c in BANDS]
        extinction = [f"A_{b}" for b in bands if f"A_{b}" in available]  # deredden prefers these
        if model.ebv_column not in available and len(extinction) == len(bands):
            needed.remove(model.ebv_column)
        missing = [c for c in needed if c not in available]
        if missing:
            raise KeyError(f"{source} lacks column(s) {missing} that the model needs (features: "
                           f"{', '.join(model.features)}); map archive columns with --preset or --mapping")
        read = [*needed, *extinction, *ids, *keep]
    else:
        ids = [c for c in ID_COLUMNS if c in preset.columns and preset.columns[c].lower() in lower]
        wanted = {*preset.columns.values(), *preset.reads, *keep}
        read = [lower[c.lower()] for c in wanted if c.lower() in lower]
    return sorted(dict.fromkeys(read)), list(dict.fromkeys([*ids, *keep]))


def predict_chunk(model, raw: Mapping[str, np.ndarray], keep: Sequence[str], preset: Preset | None = None,
                  source: str = "chunk") -> tuple[pa.Table, Counter]:
    """One chunk of the input -> one table of predictions (shared by the local and the Dask paths).

    Output columns: the pass-through columns, then every label with ``_err``
    (float32: the errors are >1e3 times the float32 rounding), ``p_giant``,
    ``is_giant`` and ``usable`` (False where a feature is missing: NaN predictions, row kept).
    """
    cols, report = apply_preset(raw, preset, source) if preset is not None else (raw, Counter())
    pred = model.predict(cols)
    out: dict[str, np.ndarray] = {}
    for c in keep:
        out[c] = np.asarray(cols[c] if c in cols else raw[c])
    for name, values in pred.items():
        out[name] = values.astype(np.float32) if values.dtype.kind == "f" else values
    return pa.table(out), report


# ------------------------------------------------------------------ manifest
def _fingerprint(path: Path) -> list:
    """Names, sizes and modification times of the input files: a changed input is not resumed onto."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(p.relative_to(path)) if path.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns]
            for p in files]


def _model_digest(model_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.json", "model.safetensors"):
        with open(model_dir / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class Manifest:
    """What a run has finished: ``_manifest.json`` (written once: what the run is) and ``_chunks.jsonl``
    (one line appended per finished or failed chunk, so a 10^9-star run never rewrites a big file).

    A chunk counts as done when its line exists and its part file too (parts are renamed into
    place, so a present part is whole); a line cut short by a kill is ignored.
    """

    def __init__(self, folder: Path, identity: dict):
        self.folder, self.identity = folder, identity
        self.path, self.log = folder / MANIFEST, folder / CHUNK_LOG
        self.done: dict[int, dict] = {}
        self.failed: dict[int, dict] = {}
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
            self._replay()
        else:
            with atomic_output(self.path) as tmp:
                tmp.write_text(json.dumps({"identity": identity, "created": time.strftime("%Y-%m-%dT%H:%M:%S")},
                                          indent=1) + "\n")

    def _replay(self) -> None:
        if not self.log.exists():
            return
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line of a killed run
            k = int(entry.pop("chunk"))
            if "error" in entry:
                self.failed[k] = entry
            elif (self.folder / entry["file"]).is_file():
                self.done[k] = entry
                self.failed.pop(k, None)

    @property
    def sentinels(self) -> Counter:
        total: Counter = Counter()
        for entry in self.done.values():
            total.update(entry.get("sentinels", {}))
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


def predict_catalog(model_dir: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike,
                    options: PredictOptions | None = None, log: Callable[[str], None] = print) -> PredictSummary:
    """Predict every star of ``source`` into ``out`` (a folder of Parquet parts, or one ``.parquet`` file)
    with the model folder (or run directory) ``model_dir``.

    Resumes from ``out``'s manifest when one exists for the same input, model and options.
    """
    from photofeh.predict import model_folder

    return _PredictionRun(model_folder(model_dir), Path(source), Path(out), options or PredictOptions(), log).run()


class _PredictionRun:
    """One ``photofeh predict``: set-up and checks, the chunk loop, the summary."""

    def __init__(self, model_dir: Path, source: Path, out: Path, opts: PredictOptions, log: Callable[[str], None]):
        import torch

        from photofeh.predict import load_model

        if opts.on_error not in ("stop", "skip"):
            raise ValueError(f"on_error must be 'stop' or 'skip', not {opts.on_error!r}")
        if opts.chunk_rows < 1:
            raise ValueError("chunk_rows must be positive")
        if not source.exists():
            raise CatalogReadError(f"{source} does not exist")
        self.source, self.out, self.opts, self.log = source, out, opts, log
        self.single_file = out.suffix == ".parquet"
        self.folder = out.with_name(out.name + ".parts") if self.single_file else out
        if self.single_file and out.exists() and not self.folder.exists():
            raise FileExistsError(f"{out} exists and is complete; delete it to predict again")
        if self.folder.is_dir() and any(self.folder.iterdir()) and not (self.folder / MANIFEST).exists():
            raise FileExistsError(f"{self.folder} exists, is not empty and holds no photofeh prediction run; "
                                  "choose another --out (nothing there is touched)")
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self.model = load_model(model_dir, resolve_device(opts.device))
        self.preset = _preset(opts.preset)
        self.kind = detect_format(source, opts.fmt)
        self.read, self.keep = input_columns(self.model, table_columns(source, opts.fmt), self.preset, opts.keep,
                                             str(source))
        self.n_total = known_rows(source, opts.fmt)
        self.n_chunks = None if self.n_total is None else -(-self.n_total // opts.chunk_rows)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.manifest = Manifest(self.folder, {
            "input": str(source.resolve()), "input_files": _fingerprint(source), "format": self.kind,
            "model": _model_digest(model_dir), "chunk_rows": opts.chunk_rows, "columns_read": self.read,
            "keep": self.keep, "preset": None if self.preset is None else self.preset.name})

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

    def _write(self, k: int, table: pa.Table, sentinels: Counter) -> None:
        """In the writer thread: the part, renamed into place, then its line in the chunk log."""
        name = f"part-{k:06d}.parquet"
        with atomic_output(self.folder / name) as tmp:
            pq.write_table(table, tmp, **PARQUET_WRITE)
        unusable = table.num_rows - int(np.count_nonzero(table["usable"].to_numpy()))
        self.manifest.record_done(k, {"file": name, "rows": table.num_rows, "first_row": k * self.opts.chunk_rows,
                                      "unusable": unusable, "sentinels": {c: v for c, v in sentinels.items() if v}})

    def _fail(self, k: int, exc: BaseException, stage: str) -> None:
        """Report a bad chunk with its rows: stop (raise) or record it and go on."""
        c = self.opts.chunk_rows
        first = k * c
        last = first + c - 1 if self.n_total is None else min(first + c, self.n_total) - 1
        message = f"{self.source}: chunk {k} (rows {first:,d}-{last:,d}) could not be {stage}: {exc}"
        if self.opts.on_error == "stop":
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
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="photofeh-write")
        in_flight: list[Future] = []
        rows_this_run = 0
        t0 = time.perf_counter()
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
                    if k in manifest.done:  # only in unseekable streams, read from the start
                        continue
                    start = k * self.opts.chunk_rows
                    try:
                        table, sentinels = predict_chunk(self.model, chunk, self.keep, self.preset,
                                                         f"{self.source} rows {start:,d}+")
                    except (KeyError, ValueError, TypeError) as err:
                        self._fail(k, err, "predicted")
                        continue
                    in_flight.append(writer.submit(self._write, k, table, sentinels))
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

    def _summary(self, resumed: int, rows_this_run: int, seconds: float) -> PredictSummary:
        done, failed = self.manifest.done, self.manifest.failed
        complete = not failed and (self.n_chunks is None or len(done) == self.n_chunks)
        if self.single_file and complete:
            _concatenate(self.folder, sorted(done), self.out)
        return PredictSummary(
            output=self.out if (complete or not self.single_file) else self.folder,
            rows=sum(v["rows"] for v in done.values()), chunks_done=len(done),
            chunks_total=self.n_chunks if self.n_chunks is not None else (len(done) if complete else None),
            failed=[{"chunk": k, **v} for k, v in sorted(failed.items())], sentinels=dict(self.manifest.sentinels),
            unusable_rows=sum(v.get("unusable", 0) for v in done.values()), seconds=seconds,
            resumed_chunks=resumed, rows_this_run=rows_this_run)


def _concatenate(folder: Path, chunks: list[int], out: Path) -> None:
    """Parts -> one Parquet file, streamed part by part, atomically; then the parts are removed."""
    import shutil

    parts = [folder / f"part-{k:06d}.parquet" for k in chunks]
    schema = pq.read_schema(parts[0])
    with atomic_output(out) as tmp, pq.ParquetWriter(tmp, schema, **PARQUET_WRITE) as w:
        for p in parts:
            w.write_table(pq.read_table(p))
    shutil.rmtree(folder)
