"""What reliability costs in `photofeh predict`: the validation layer, durable parts, resume verification.

On one 250,000-row chunk of all-usable mock stars (every feature present, so the network sees every row),
each measured as the median of 7 repeats, and compared as ratios taken in the same run (this machine's
speed drifts from minute to minute):
- the validation layer (`clean_columns`) against the whole per-chunk prediction (`predict_chunk`, which
  validates each chunk once, in the preset step);
- a part written durably (fsync before the rename, directory fsync, SHA-256 for the log) against a plain
  `pyarrow.parquet.write_table`;
- verifying a logged part on resume (size, SHA-256, Parquet footer row count).

Usage: python benchmarks/bench_reliability.py [--work DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _common import median_seconds, write_result

ROWS = 250_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()

    from photofeh.io.catalog import atomic_output
    from photofeh.io.validation import clean_columns
    from photofeh.model.predict import load_model
    from photofeh.model.train import TrainConfig, train
    from photofeh.scale.ledger import _part_problem
    from photofeh.scale.predict_catalog import PARQUET_WRITE, input_columns, predict_chunk
    from photofeh.simulate import MockSurveyConfig, iter_chunks

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        tmp = Path(tmp)
        spec = next(iter_chunks(MockSurveyConfig(n_stars=20_000, seed=2, spec_only=True), chunk_size=20_000))
        model_dir = train(spec, TrainConfig(epochs=5, seed=0), tmp / "run", log=lambda s: None)
        model = load_model(model_dir)
        usable = model.predict(spec)["usable"]
        rows = np.resize(np.flatnonzero(usable), ROWS)  # repeated usable stars: the network sees every row
        read, keep = input_columns(model, list(spec), None, (), "bench")
        chunk = {c: np.asarray(spec[c])[rows] for c in read}

        t_clean = median_seconds(lambda: clean_columns(chunk))
        t_chunk = median_seconds(lambda: predict_chunk(model, chunk, keep))
        table, _ = predict_chunk(model, chunk, keep)

        def plain() -> None:
            pq.write_table(table, tmp / "plain.parquet", **PARQUET_WRITE)

        entry: dict = {}

        def durable() -> None:
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink, **PARQUET_WRITE)
            data = sink.getvalue()
            with atomic_output(tmp / "part-000000.parquet") as part, open(part, "wb") as f:
                f.write(data)
            entry.update(file="part-000000.parquet", first_row=0, rows=table.num_rows, bytes=data.size,
                         sha256=hashlib.sha256(data).hexdigest())

        t_plain = median_seconds(plain)
        t_durable = median_seconds(durable)
        t_verify = median_seconds(lambda: _part_problem(tmp, 0, entry, ROWS))
        assert _part_problem(tmp, 0, entry, ROWS) is None

    per_million = 1e6 / ROWS
    figures = {
        "validation layer": {"s per million stars": round(t_clean * per_million, 4),
                             "share of the per-chunk prediction": f"{t_clean / t_chunk:.1%}"},
        "durable part write (fsync, rename, SHA-256)": {
            "s per million stars": round(t_durable * per_million, 3),
            "ratio to a plain write (same run)": round(t_durable / t_plain, 2)},
        "plain part write": {"s per million stars": round(t_plain * per_million, 3)},
        "verify a logged part on resume": {"s per million stars": round(t_verify * per_million, 4)},
        "per-chunk prediction (features, network, output table)": {
            "s per million stars": round(t_chunk * per_million, 3)},
    }
    write_result("reliability", "What reliability costs (`photofeh predict`, one 250,000-row chunk)", figures,
                 notes="Medians of 7 repeats on one chunk of all-usable stars. Parts are written in a thread "
                       "that overlaps the network, so the durable write costs wall time only when writing "
                       "is the slowest stage.")


if __name__ == "__main__":
    main()
