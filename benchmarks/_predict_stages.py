"""Timings of ``photofeh predict``'s parts, for ``bench_predict.py``: each stage alone on one chunk
(:func:`stage_profile`), Parquet's compressions (:func:`write_options`), a Dask partition against the local
loop's chunk (:func:`dask_partition_cost`), the pipeline's stages in CPU seconds over a whole input
(:func:`pipeline_stages`) and the network's pure forward pass (:func:`network_forward_rate`).

Kept apart from the bench, which makes the inputs, runs the whole command and writes results/predict.json, so
that each file holds one job; these functions take a model folder and an input and return figures.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SURVEY_STAGES = ("read Parquet", "validate (sentinels, ranges, duplicate ids)", "features (dereddening, colours)",
                 "feature errors", "domain score", "network inputs (standardised features and log-errors)",
                 "forward pass (network, in the pipeline)",
                 "predict_features' other work (calibration, ranges, rows back in place)",
                 "output table (and the rest of predict_chunk)", "write Parquet part (checksum, fsync)")


def stage_profile(run: Path, source: Path, chunk_rows: int = 250_000, repeats: int = 4) -> dict:
    """Each stage alone on a chunk, seconds per million stars (median of ``repeats``). For a model that is not
    noise-aware, the sigma points' share is the network's time with the feature errors less its time
    without them; a noise-aware model (one pass per star) has no such stage."""
    import tempfile

    from photofeh.io.readers import iter_table, table_columns
    from photofeh.model.domain import feature_errors
    from photofeh.model.features import feature_matrix
    from photofeh.model.predict import load_model
    from photofeh.scale.ledger import PARQUET_WRITE
    from photofeh.scale.predict_catalog import input_columns, predict_chunk

    model = load_model(run)
    read, keep = input_columns(model, table_columns(source), None, (), str(source))
    sigma = "errors beyond the training stars' (sigma points)"
    times: dict[str, list[float]] = {"read Parquet": [], "features (dereddening, colours)": [],
                                     "network (all heads, calibration, domain flags)": [], sigma: [],
                                     "write Parquet": []}
    if model.noise_aware:
        del times[sigma]
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats):
            t0 = time.perf_counter()
            chunk = next(iter_table(source, read, chunk_rows, start=k * chunk_rows))
            t1 = time.perf_counter()
            X, _ = feature_matrix(chunk, model.features, model.ebv_column)
            X_err = feature_errors(chunk, model.features)
            t2 = time.perf_counter()
            model.predict_features(X, X_err=X_err if model.noise_aware else None)
            t3 = time.perf_counter()
            if not model.noise_aware:
                model.predict_features(X, X_err=X_err)
                times[sigma].append((time.perf_counter() - t3) - (t3 - t2))
            table, _ = predict_chunk(model, chunk, keep)  # the output table (its own time is negligible)
            t4 = time.perf_counter()
            pq.write_table(table, Path(tmp) / "p.parquet", **PARQUET_WRITE)
            t5 = time.perf_counter()
            times["read Parquet"].append(t1 - t0)
            times["features (dereddening, colours)"].append(t2 - t1)
            times["network (all heads, calibration, domain flags)"].append(t3 - t2)
            times["write Parquet"].append(t5 - t4)
    per_million = {k: float(np.median(v)) * 1e6 / chunk_rows for k, v in times.items()}
    total = sum(per_million.values())
    return {k: {"s per million stars": round(v, 3), "share": f"{100 * v / total:.0f}%"}
            for k, v in per_million.items()}


def write_options(run: Path, source: Path, chunk_rows: int = 250_000, repeats: int = 5) -> dict:
    """One chunk of predictions written to memory with each Parquet compression (dictionary encoding off, as
    predict writes): CPU seconds and megabytes per million stars (median of ``repeats``), and the checksum
    the chunk log keeps (SHA-256 of the part)."""
    import hashlib

    from photofeh.io.readers import iter_table, table_columns
    from photofeh.model.predict import load_model
    from photofeh.scale.ledger import PARQUET_WRITE
    from photofeh.scale.predict_catalog import input_columns, predict_chunk

    model = load_model(run)
    read, keep = input_columns(model, table_columns(source), None, (), str(source))
    table, _ = predict_chunk(model, next(iter_table(source, read, chunk_rows)), keep)
    per_m = 1e6 / table.num_rows
    out: dict[str, dict] = {}
    for compression in ("snappy", "none", "lz4", "zstd"):
        spent, data = [], None
        for _ in range(repeats):
            t0 = time.process_time()
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, **{**PARQUET_WRITE, "compression": compression})
            data = sink.getvalue()
            spent.append(time.process_time() - t0)
        label = compression + (" (predict's)" if compression == PARQUET_WRITE["compression"] else "")
        out[label] = {"CPU s per million stars": round(float(np.median(spent)) * per_m, 3),
                      "MB per million stars": round(data.size * per_m / 1e6, 1)}
        if compression == PARQUET_WRITE["compression"]:
            spent = []
            for _ in range(repeats):
                t0 = time.process_time()
                hashlib.sha256(data).hexdigest()
                spent.append(time.process_time() - t0)
            checksum = round(float(np.median(spent)) * per_m, 3)
    out["SHA-256 of the part (the chunk log's checksum)"] = {"CPU s per million stars": checksum}
    return out


def dask_partition_cost(run: Path, source: Path, rows: int = 250_000, repeats: int = 4) -> dict:
    # ``rows`` is the input's row-group size (ensure_inputs writes 250,000): Dask reads a row group per partition
    """One chunk as a Dask worker handles it (pandas in, pandas out, one torch thread) against the same chunk
    as the local loop handles it (numpy columns in, an Arrow table out), same thread, seconds per million stars:
    the part of the Dask gap that is per-row work, not scheduling."""
    import io

    import torch

    from photofeh.io.readers import iter_table, table_columns
    from photofeh.model.predict import load_model
    from photofeh.scale.distributed import predict_partition
    from photofeh.scale.predict_catalog import PARQUET_WRITE, input_columns, predict_chunk

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = load_model(run)
    read, keep = input_columns(model, table_columns(source), None, (), str(source))
    local, dask = [], []
    for k in range(repeats):
        t0 = time.perf_counter()
        chunk = next(iter_table(source, read, rows, start=k * rows))
        table, _ = predict_chunk(model, chunk, keep)
        pq.write_table(table, io.BytesIO(), **PARQUET_WRITE)
        t1 = time.perf_counter()
        frame = pq.ParquetFile(source).read_row_group(k, columns=read).to_pandas()  # a partition, as Dask reads it
        out = predict_partition(frame, str(run), keep)
        pq.write_table(pa.Table.from_pandas(out, preserve_index=False), io.BytesIO(), **PARQUET_WRITE)
        t2 = time.perf_counter()
        local.append(t1 - t0)
        dask.append(t2 - t1)
    torch.set_num_threads(threads)
    per_m = 1e6 / rows
    return {"local loop's chunk, s per million stars (1 thread)": round(float(np.median(local)) * per_m, 3),
            "Dask worker's partition, s per million stars (1 thread)": round(float(np.median(dask)) * per_m, 3),
            "ratio": round(float(np.median(np.array(dask) / np.array(local))), 2)}


class _Clock:
    """Seconds spent in wrapped functions, by stage."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = dict.fromkeys(SURVEY_STAGES, 0.0)

    def wrap(self, stage: str, fn):
        def timed(*args, **kwargs):
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.spent[stage] += time.process_time() - t0

        return timed


def pipeline_stages(model_dir: Path, source: Path, chunk_rows: int = 250_000) -> dict[str, float]:
    """One pass over ``source`` through the code ``photofeh predict`` runs, stages one after the other, torch
    on one thread: CPU seconds (the process's, pyarrow's threads included) per million input rows for each
    stage, which the machine's load moves far less than wall time. Each stage is timed by wrapping the function
    the pipeline calls (the pipeline itself is unchanged), so the stages are those of the current code; the
    command runs them in three threads on successive chunks (reading and preparing; the network; finishing
    and writing)."""
    import tempfile

    import torch

    import photofeh.model.predict as predict_module
    import photofeh.scale.chunks as chunks_module
    from photofeh.io.readers import iter_table, known_rows, table_columns
    from photofeh.model.predict import load_model
    from photofeh.scale.chunks import input_columns, predict_chunk, provenance
    from photofeh.scale.ledger import write_part

    clock = _Clock()
    model = load_model(model_dir)
    read, keep = input_columns(model, table_columns(source), None, (), str(source))
    meta = provenance(model_dir, model, source, None, "bench")
    saved = (chunks_module.apply_preset, predict_module.feature_matrix, predict_module.feature_errors)
    chunks_module.apply_preset = clock.wrap(SURVEY_STAGES[1], chunks_module.apply_preset)
    predict_module.feature_matrix = clock.wrap(SURVEY_STAGES[2], predict_module.feature_matrix)
    predict_module.feature_errors = clock.wrap(SURVEY_STAGES[3], predict_module.feature_errors)
    if model.domain is not None:
        model.domain.score = clock.wrap(SURVEY_STAGES[4], model.domain.score)
    model._network_inputs = clock.wrap(SURVEY_STAGES[5], model._network_inputs)
    model._ensemble = clock.wrap(SURVEY_STAGES[6], model._ensemble)
    model.finish = clock.wrap(SURVEY_STAGES[7], model.finish)
    whole = 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            reader = iter_table(source, read, chunk_rows)
            for k in itertools.count():
                t0 = time.process_time()
                chunk = next(reader, None)
                t1 = time.process_time()
                if chunk is None:
                    break
                table, replaced = predict_chunk(model, chunk, keep)
                t2 = time.process_time()
                write_part(Path(tmp), k, chunk_rows, table, replaced, meta)
                t3 = time.process_time()
                clock.spent[SURVEY_STAGES[0]] += t1 - t0
                whole += t2 - t1
                clock.spent[SURVEY_STAGES[9]] += t3 - t2
    finally:
        chunks_module.apply_preset, predict_module.feature_matrix, predict_module.feature_errors = saved
        torch.set_num_threads(threads)
    s = clock.spent
    s[SURVEY_STAGES[8]] = whole - sum(s[st] for st in SURVEY_STAGES[1:8])  # what predict_chunk does besides
    per_million = 1e6 / known_rows(source)
    return {stage: s[stage] * per_million for stage in SURVEY_STAGES}


def network_forward_rate(model_dir: Path, rows: int = 1_000_000, threads: int | None = None,
                         clock=time.perf_counter, streams: int = 1) -> float:
    """The network's pure forward pass as predict runs it (heads folded, batches of BATCH_ROWS, every member),
    on random inputs of the network's own width: stars per second of ``clock``, one timing; ``threads``: torch's
    threads for it (default: as they are); ``streams``: Python threads each passing its share of the rows (with
    one torch thread each, the layout of predict's default on 2 cores)."""
    import threading

    import torch

    from photofeh.model.predict import BATCH_ROWS, load_model

    model = load_model(model_dir)
    width = next(m for m in model.members[0].modules() if isinstance(m, torch.nn.Linear)).in_features
    z = torch.randn(rows, width, generator=torch.Generator().manual_seed(0))
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)

    def passes(part: torch.Tensor) -> None:
        with torch.inference_mode():
            for net in model.members:
                for s in range(0, len(part), BATCH_ROWS):
                    net(part[s:s + BATCH_ROWS])

    try:
        t0 = clock()
        workers = [threading.Thread(target=passes, args=(part,)) for part in torch.chunk(z, streams)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return rows / (clock() - t0)
    finally:
        torch.set_num_threads(before)
