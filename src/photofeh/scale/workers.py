"""Predicting on worker processes: a chunk read, predicted and written by the worker itself
(:func:`predict_part`, also the Dask task), the model loaded once per process (:func:`worker_model`), and the
pool of this machine's processes that ``predict --workers N`` runs (:func:`predict_on_workers`)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from photofeh.errors import InputError
from photofeh.io.readers import CatalogReadError, iter_table
from photofeh.processes import become_worker
from photofeh.scale.chunks import CHUNK_INPUT_ERRORS, ChunkError, predict_chunk
from photofeh.scale.ledger import Manifest, write_part
from photofeh.scale.options import resolve_device

__all__ = ["PartError", "worker_model", "predict_part", "predict_on_workers"]

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
    except CHUNK_INPUT_ERRORS as exc:
        raise PartError("predicted", str(exc), isinstance(exc, InputError)) from None
    return k, write_part(Path(out), k, chunk_rows, table, replaced, metadata)


def predict_on_workers(pending: list[int], workers: int, task: Callable, manifest: Manifest, bar,
                       fail: Callable, source: Path) -> int:
    """``task(k)`` (a :func:`predict_part` with the run's arguments) for each pending chunk on ``workers``
    processes of this machine; this process logs each part in ``manifest`` as it arrives and advances ``bar``,
    so a killed run resumes as a one-process run does; ``fail(k, exc, stage)`` takes a chunk a worker could not
    read or predict. Returns the rows written."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # spawned, not forked (torch's thread pools do not survive fork()), as children of this process, so
    # that they die with it (kill -9 included) instead of finishing chunks nobody will log
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=become_worker, initargs=(os.getpid(),))
    rows, logged = 0, set()
    futures = {pool.submit(task, k): k for k in pending}

    def log_part(future) -> None:
        nonlocal rows
        k, entry = future.result()
        manifest.record_done(k, entry)
        logged.add(k)
        rows += entry["rows"]
        bar.update(entry["rows"])

    try:
        for future in as_completed(futures):
            try:
                log_part(future)
            except PartError as exc:
                fail(futures[future], exc, exc.stage)  # raises under --on-error stop
    except BrokenProcessPool:
        raise ChunkError(f"a worker process died while predicting {source} (out of memory? try fewer "
                         "--workers or smaller --chunk-rows); the chunks finished before are kept: rerun the "
                         "same command to resume") from None
    finally:
        # stopped (an error, Ctrl-C): chunks being predicted finish, and are logged like those before them
        pool.shutdown(wait=True, cancel_futures=True)
        for future, k in futures.items():
            if k not in logged and future.done() and not future.cancelled() and future.exception() is None:
                log_part(future)
    return rows
