"""Predicting on a Dask cluster: a Parquet dataset as tasks of one chunk each, a HATS catalogue through LSDB.

A Parquet task reads its chunk, predicts it and writes its part as a local run
would (same chunks, parts, manifest and chunk log: either kind of run resumes
the other); a HATS partition goes through LSDB's ``map_partitions``. Both call
:func:`photofeh.scale.chunks.predict_chunk`, so a row gets the same
numbers as on one machine. A task carries the model folder's *path*;
:func:`~photofeh.scale.workers.worker_model` loads the model once per worker process and keeps it, so
the task graph stays a few kilobytes whatever the number of chunks, and no
worker unpickles weights per task.

The scheduler is any ``dask.distributed`` address (a SLURM or Kubernetes
cluster started with dask-jobqueue or dask-kubernetes, see docs/predict.md)
or ``local:N`` for N worker processes on this machine.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from photofeh.io.presets import resolve_preset
from photofeh.io.readers import known_rows, table_columns
from photofeh.scale.chunks import ChunkError, bad_chunk, input_columns, predict_chunk, probe_input, provenance
from photofeh.scale.ledger import MANIFEST, IncompleteOutput, Manifest, check_complete, run_identity
from photofeh.scale.options import PredictOptions
from photofeh.scale.predict_catalog import prepare_run
from photofeh.scale.workers import PartError, predict_part, worker_model

__all__ = ["predict_partition", "predict_distributed", "is_hats_catalog", "open_client"]

HATS_MARKERS = ("hats.properties", "properties", "collection.properties")
# Dask's nanny sets MALLOC_TRIM_THRESHOLD_, which also switches off glibc's adaptive mmap threshold: every
# large numpy temporary is then a fresh mmap, page-faulted in, and prediction ran 2-3x slower in workers
# (140k vs 440k stars/s per core, measured). A high mmap threshold gives the speed back; trimming stays.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": 1 << 28}


def _frame_columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Numpy columns of a partition; nullable/Arrow floats and ints become float with NaN for missing."""
    out = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_float_dtype(s.dtype) or (pd.api.types.is_integer_dtype(s.dtype) and s.hasnans):
            out[c] = s.to_numpy(dtype=np.float64 if s.hasnans or not isinstance(s.dtype, np.dtype) else s.dtype,
                                na_value=np.nan)
        else:
            out[c] = s.to_numpy()
    return out


def predict_partition(df: pd.DataFrame, model_dir: str, keep: list[str], preset=None, device: str = "cpu",
                      threads: int | None = None, ebv=None, prior: str | None = None) -> pd.DataFrame:
    """One partition -> its predictions, same index (LSDB keeps its HEALPix index)."""
    model = worker_model(str(model_dir), device, threads, prior)
    table, _ = predict_chunk(model, _frame_columns(df), keep, preset, "partition", ebv)
    out = table.to_pandas()
    out.index = df.index
    return out


def is_hats_catalog(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / m).is_file() for m in HATS_MARKERS)


def open_client(scheduler: str, threads: int | None = None):
    """A ``distributed.Client`` for an address, or a LocalCluster for ``local:N``."""
    import dask
    from distributed import Client

    if scheduler.startswith("local"):
        _, _, n = scheduler.partition(":")
        try:
            workers = int(n) if n else max(1, (os.cpu_count() or 1) // 2)
        except ValueError:
            raise ValueError(f"--scheduler {scheduler!r}: expected local:N with N an integer") from None
        # a Client given cluster options starts its own LocalCluster and stops it when closed
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC.items()}):
            return Client(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None), workers
    try:
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    return client, len(client.scheduler_info().get("workers", {}))


def predict_distributed(model_dir: str | os.PathLike, source: str | os.PathLike, out: str | os.PathLike,
                        options: PredictOptions | None = None, scheduler: str = "local:2", client=None) -> dict:
    """Predict a Parquet dataset (-> Parquet dataset) or a HATS catalogue (-> HATS catalogue) on Dask.

    ``client``: an open ``distributed.Client`` to use (and leave open) instead of ``scheduler``.
    """
    from photofeh.io.locking import output_lock

    opts, model_dir, source, out = prepare_run(model_dir, source, out, options)
    resumable = not is_hats_catalog(source) and (out / MANIFEST).is_file()  # a Parquet run's, local or Dask
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not resumable:
        # LSDB writes with overwrite=True, which would wipe whatever is there
        raise FileExistsError(f"{out} exists, is not an empty folder and holds no photofeh prediction run; "
                              "choose another --out (nothing there is touched)")
    if not is_hats_catalog(source) and (source.is_dir() or source.suffix in (".parquet", ".pq")):
        # the input's first row through the preset and the model before anything is created, as a local run does:
        # a missing column is one bad-input error, not a failure in every task
        model, preset = worker_model(str(model_dir), "cpu", None, opts.prior), resolve_preset(opts.preset)
        read, keep = input_columns(model, table_columns(source), preset, opts.keep, str(source), opts.ebv)
        probe_input(model, source, read, keep, preset, opts.ebv)
    with output_lock(out, f"photofeh predict --scheduler {scheduler} {source}", inside=True):
        return _predict_distributed(model_dir, source, out, opts, scheduler, client)


def _predict_distributed(model_dir: Path, source: Path, out: Path, opts: PredictOptions, scheduler: str,
                         client) -> dict:
    preset = resolve_preset(opts.preset)
    hats = is_hats_catalog(source)
    own_client = client is None
    if own_client:
        client, workers = open_client(scheduler)
    else:
        workers = len(client.scheduler_info().get("workers", {}))
    local = own_client and scheduler.startswith("local")
    threads = opts.threads or (max(1, (os.cpu_count() or 1) // max(workers, 1)) if local else None)
    # on the client, for the column check and the output schema (the same cached copy _meta uses)
    model = worker_model(str(model_dir), "cpu", None, opts.prior)
    t0 = time.perf_counter()
    try:
        if hats:
            n = _predict_hats(model, str(model_dir), source, out, opts, preset, threads)
        else:
            n = _predict_parquet(client, model, str(model_dir), source, out, opts, preset, threads)
    finally:
        if own_client:
            client.close()
    seconds = time.perf_counter() - t0
    n_in = _hats_rows(source) if hats else known_rows(source)
    if n_in is not None and n != n_in:
        raise IncompleteOutput(f"{out}: {n:,d} rows written for {n_in:,d} in {source}; delete {out} and run again")
    return {"output": str(out), "layout": "hats" if hats else "parquet dataset", "stars": n, "workers": workers,
            "seconds": round(seconds, 2), "stars_per_second": round(n / seconds) if seconds > 0 else None}


def _meta(model_dir: str, keep, preset, sample: pd.DataFrame, ebv=None, prior=None) -> pd.DataFrame:
    """The output's empty frame, from predicting two rows on the client."""
    return predict_partition(sample, model_dir, keep, preset, "cpu", None, ebv, prior).iloc[:0]


def _predict_parquet(client, model, model_dir: str, source: Path, out: Path, opts, preset, threads) -> int:
    """One task per chunk of ``opts.chunk_rows`` input rows, as the local run chunks them: the worker reads its
    rows with pyarrow (Parquet seeks to them), predicts them and writes its part, and returns only the part's
    line for the chunk log, which the client appends as tasks finish. The output folder is a local run's
    (:class:`~photofeh.scale.ledger.Manifest`): a killed run, local or Dask, resumes where it
    stopped, with either. Against ``dask.dataframe`` (read_parquet -> map_partitions -> to_parquet) this
    also skips two pandas conversions per partition and the scheduler's bookkeeping of result frames: 1.8x
    faster on a 2-worker LocalCluster, and faster than the single process (benchmarks/bench_predict.py)."""
    from distributed import as_completed

    from photofeh.io.locking import remove_partials

    if not (source.is_dir() or source.suffix in (".parquet", ".pq")):
        raise ValueError(f"{source}: on Dask the input must be a Parquet file or dataset (or a HATS catalogue); "
                         "convert other formats first, or run without --scheduler")
    read, keep = input_columns(model, table_columns(source), preset, opts.keep, str(source), opts.ebv)
    n_rows = known_rows(source) or 0
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out, inside=True)  # a killed run's half-written parts (we hold the lock)
    manifest = Manifest(out, run_identity(source, "parquet", Path(model_dir), model, opts, read, keep, preset),
                        log=lambda s: None)
    metadata = provenance(Path(model_dir), model, source, preset, manifest.created)
    task = functools.partial(predict_part, source=str(source), read=read, keep=keep, chunk_rows=opts.chunk_rows,
                             out=str(out), model_dir=model_dir, preset=preset, device=opts.device, threads=threads,
                             ebv=opts.ebv, prior=opts.prior, metadata=metadata)
    n_chunks = -(-n_rows // opts.chunk_rows)
    pending = [k for k in range(n_chunks) if k not in manifest.done]
    futures = client.map(task, pending, pure=False)
    chunk_of = {f.key: k for f, k in zip(futures, pending, strict=True)}
    for future in as_completed(futures):
        try:
            k, entry = future.result()
        except PartError as exc:  # the finished chunks stay logged; the rest resume with the same command
            client.cancel(futures)
            message = bad_chunk(source, chunk_of[future.key], opts.chunk_rows, n_rows, exc.stage, exc)[0]
            raise ChunkError(f"{message} (the input must change for this chunk; the finished chunks are kept)"
                             if exc.bad_input else f"{message} (rerun the same command to resume)") from None
        manifest.record_done(k, entry)
    check_complete(manifest.done, {k: min(opts.chunk_rows, n_rows - k * opts.chunk_rows) for k in range(n_chunks)},
                   source, out, out)
    return sum(manifest.done[k]["rows"] for k in range(n_chunks))


def _hats_rows(path: Path) -> int | None:
    import lsdb

    return lsdb.open_catalog(path).hc_structure.catalog_info.total_rows


def _predict_hats(model, model_dir: str, source: Path, out: Path, opts, preset, threads) -> int:
    try:
        import lsdb
    except ImportError:
        raise ValueError("HATS catalogues need LSDB: pip install 'photofeh[lsdb]'") from None
    catalog = lsdb.open_catalog(source)
    read, keep = input_columns(model, list(catalog.columns), preset, opts.keep, str(source), opts.ebv)
    ra, dec = catalog.hc_structure.catalog_info.ra_column, catalog.hc_structure.catalog_info.dec_column
    keep = list(dict.fromkeys([ra, dec, *keep]))  # a HATS catalogue must keep its coordinates
    catalog = lsdb.open_catalog(source, columns=sorted(set(read) | set(keep)))
    meta = _meta(model_dir, keep, preset, catalog.head(2), opts.ebv, opts.prior)
    result = catalog.map_partitions(predict_partition, model_dir, keep, preset, opts.device, threads, opts.ebv,
                                    opts.prior, meta=meta)
    result.write_catalog(out, catalog_name=out.name, overwrite=True, progress_bar=False)
    return int(lsdb.open_catalog(out).hc_structure.catalog_info.total_rows or 0)
