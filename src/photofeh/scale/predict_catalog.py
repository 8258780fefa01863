"""Predicting for whole catalogues on one machine: streamed, overlapped, resumable (``photofeh predict``).

The input is cut into chunks of ``chunk_rows`` rows; chunk k always holds
rows [k c, (k+1) c) (see :func:`photofeh.io.readers.iter_table`). Each chunk is
predicted and written as its own Parquet part, atomically, then recorded in
``_chunks.jsonl`` (``_manifest.json`` says what the run is: input, model,
chunk size). Started again with the same command, a run skips the
recorded chunks, so a crash or a ``kill -9`` costs at most the chunks in
flight, and the output is identical to that of an uninterrupted run.

Three threads work on successive chunks at once: one reads chunk k+1 and
prepares it (validation, features, the network's inputs, the domain score:
:func:`~photofeh.scale.chunks.prepare_chunk`), this one runs the network on
chunk k, and one finishes chunk k-1 (calibration, checks, the table:
:func:`~photofeh.scale.chunks.finish_chunk`) and writes its part. pyarrow,
numpy's array loops and torch release the GIL, so on 2 cores the work around
the network runs beside it instead of after it.

The run's parts: what it is asked (:mod:`~photofeh.scale.options`), one chunk through the pipeline
(:mod:`~photofeh.scale.chunks`), the resume ledger (:mod:`~photofeh.scale.ledger`) and the worker processes
(:mod:`~photofeh.scale.workers`); this module runs them. Their public names are importable from here too.
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq

from photofeh.errors import InputError
from photofeh.io.catalog import atomic_output, check_output_place
from photofeh.io.presets import resolve_preset
from photofeh.io.readers import CatalogReadError, detect_format, iter_table, known_rows, table_columns
from photofeh.model.artifact import model_digest
from photofeh.model.predict import UNPHYSICAL
from photofeh.processes import available_cores
from photofeh.scale.chunks import (
    CHUNK_INPUT_ERRORS,
    ChunkError,
    ChunkWork,
    bad_chunk,
    finish_chunk,
    input_columns,
    predict_chunk,
    prepare_chunk,
    probe_input,
    provenance,
    read_provenance,
)
from photofeh.scale.ledger import (
    CHUNK_LOG,
    MANIFEST,
    PARQUET_WRITE,
    IncompleteOutput,
    Manifest,
    ResumeMismatch,
    check_complete,
    part_name,
    run_identity,
    write_part,
)
from photofeh.scale.options import PredictOptions, PredictSummary, check_options, resolve_device
from photofeh.scale.workers import PartError, predict_on_workers, predict_part, worker_model

__all__ = ["PredictOptions", "PredictSummary", "predict_catalog", "predict_chunk", "input_columns",
           "ResumeMismatch", "ChunkError", "IncompleteOutput", "MANIFEST", "check_options", "prepare_run",
           "provenance", "read_provenance", "model_digest",
           # defined in options, chunks, ledger and workers; importable from here as before the split
           "CHUNK_LOG", "PARQUET_WRITE", "part_name", "worker_model"]

SEEKABLE = ("fits", "parquet", "hdf5")


def default_torch_threads() -> int:
    """Torch's threads for a one-process run on a CPU when --threads is not given: half the cores (one on 2).

    The network runs on one torch thread in the main thread, while the thread that reads and prepares chunks
    and the one that finishes and writes them (and pyarrow's decoding) take the other cores. Measured before
    those two threads took the numpy stages (when the main thread ran them beside the network): torch's
    default, every core, left an idle torch thread spinning on the second core of 2 while the numpy stages
    ran, taking it from the reader and writer: the whole command
    took 3x the CPU time and twice the wall time of one torch thread on this shared machine. Two chunks
    predicted at once in two threads (one torch thread each) were measured too, and took 1.1-1.2x the wall time
    of one chunk at a time (benchmarks/bench_predict.py --part layouts; BENCHMARKS.md)."""
    return max(1, available_cores() // 2)


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


def predict_catalog(model_dir: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike,
                    options: PredictOptions | None = None, log: Callable[[str], None] = print) -> PredictSummary:
    """Predict every star of ``source`` into ``out`` (a folder of Parquet parts, or one ``.parquet`` file)
    with the model folder (or run directory) ``model_dir``.

    Resumes from ``out``'s manifest when one exists for the same input, model and options. Holds the
    output's lock for the whole run (a second writer is refused, see :mod:`photofeh.io.locking`) and ends
    by checking that every input row was written once (:class:`IncompleteOutput` otherwise).
    """
    import torch

    from photofeh.io.locking import output_lock

    opts, model_dir, source, out = prepare_run(model_dir, source, out, options)
    threads = torch.get_num_threads()  # the run sets its own (default_torch_threads); given back after it
    try:
        with output_lock(out, f"photofeh predict {source}", inside=True):
            return _PredictionRun(model_dir, source, out, opts, log).run()
    finally:
        torch.set_num_threads(threads)


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
        self.model_dir, self.device = model_dir, resolve_device(opts.device)
        if opts.threads:
            torch.set_num_threads(opts.threads)
        elif self.device == "cpu" and opts.workers == 1:
            torch.set_num_threads(default_torch_threads())
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

    def _chunks(self, first: int, last: int | None
                ) -> Iterator[tuple[int, int | None, ChunkWork | None, BaseException | None]]:
        """(k, rows, prepared chunk, None) for chunks first..last, read and prepared ahead in a thread
        (:func:`photofeh.scale.chunks.prepare_chunk`: validation, features, the network's inputs, the domain
        score); (k, rows, None, error) for a chunk that could not be prepared; a read error ends the run as
        (k, None, None, error)."""
        c = self.opts.chunk_rows

        def prepared() -> Iterator[tuple[int, int, ChunkWork | None, BaseException | None]]:
            for k, chunk in zip(itertools.count(first), iter_table(self.source, self.read, c, self.opts.fmt,
                                                                   start=first * c), strict=False):
                rows = len(next(iter(chunk.values()))) if chunk else 0
                if k in self.manifest.done:  # only in unseekable streams, read from the start
                    yield k, rows, None, None
                else:
                    try:
                        work = prepare_chunk(self.model, chunk, self.keep, self.preset,
                                             f"{self.source} rows {k * c:,d}+", self.opts.ebv)
                    except Exception as err:  # handed to run(): the chunk's failure, or a fault raised there
                        yield k, rows, None, err
                    else:
                        yield k, rows, work, None
                if last is not None and k >= last:
                    return

        k = first
        for item, exc in _prefetch(prepared()):
            if exc is not None:
                yield k, None, None, exc
                return
            yield item
            k = item[0] + 1

    def _finish_and_write(self, k: int, work: ChunkWork) -> tuple[int, int, BaseException | None]:
        """In the writer thread: a chunk the network has run on -> its table (:func:`photofeh.scale.chunks.
        finish_chunk`) -> its part, then its line in the chunk log (see :class:`Manifest`). Returns (k, rows
        written, None), or (k, 0, error) for a chunk whose predictions could not be finished."""
        try:
            table, replaced = finish_chunk(self.model, work)
        except CHUNK_INPUT_ERRORS as err:
            return k, 0, err
        self.manifest.record_done(k, write_part(self.folder, k, self.opts.chunk_rows, table, replaced,
                                                self.provenance))
        return k, table.num_rows, None

    def _written(self, bar, k: int, rows: int, exc: BaseException | None) -> int:
        """A chunk back from the writer thread: its rows on the progress bar, or its failure reported."""
        if exc is not None:
            self._fail(k, exc, "predicted")  # raises under --on-error stop
        bar.update(rows)
        return rows

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
                for k, rows, work, exc in self._chunks(first, last):
                    if rows is None:
                        self._fail(k, exc, "read")  # raises under --on-error stop
                        if self.kind not in SEEKABLE:
                            self.log(f"{self.source}: a {self.kind} file cannot be read past a bad block; "
                                     "stopping here")
                        elif last is None or k < last:
                            runs.insert(0, (k + 1, last))  # seek past the bad chunk
                        break
                    self.rows_read[k] = rows
                    if k in manifest.done:  # only in unseekable streams, read from the start
                        continue
                    if exc is not None:
                        if not isinstance(exc, CHUNK_INPUT_ERRORS):
                            raise exc  # a fault in preparing, not the chunk's input: never skipped as a read error
                        self._fail(k, exc, "predicted")
                        continue
                    self.model.forward(work.batch)  # the network, in this thread; the rest in the other two
                    in_flight.append(writer.submit(self._finish_and_write, k, work))
                    while len(in_flight) > 2 or (in_flight and in_flight[0].done()):
                        rows_this_run += self._written(bar, *in_flight.pop(0).result())  # errors surface
            while in_flight:
                rows_this_run += self._written(bar, *in_flight.pop(0).result())
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
        opts, c = self.opts, self.opts.chunk_rows
        pending = [k for k in range(self.n_chunks) if k not in self.manifest.done]
        workers = min(opts.workers, max(len(pending), 1))
        threads = opts.threads or max(1, available_cores() // workers)
        task = functools.partial(predict_part, source=str(self.source), read=list(self.read), keep=list(self.keep),
                                 chunk_rows=c, out=str(self.folder), model_dir=str(self.model_dir),
                                 preset=self.preset, device=self.device, threads=threads, ebv=opts.ebv,
                                 prior=opts.prior, metadata=self.provenance, fmt=opts.fmt)
        return predict_on_workers(pending, workers, task, self.manifest, bar, self._fail, self.source)

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
