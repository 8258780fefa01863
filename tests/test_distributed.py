"""Prediction on a real dask.distributed LocalCluster (2 worker processes), Parquet and HATS layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photofeh.scale.predict_catalog import PredictOptions, predict_catalog

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def model_dir(quick_model: Path) -> Path:
    return quick_model


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def dataset(catalog: pd.DataFrame, tmp_path_factory) -> Path:
    """20,000 mock stars as a 5-file Parquet dataset."""
    folder = tmp_path_factory.mktemp("dask_in") / "survey"
    folder.mkdir()
    for k in range(5):
        part = catalog.iloc[k * 4000:(k + 1) * 4000]
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"part-{k}.parquet")
    return folder


def test_dask_output_equals_single_machine_row_for_row(model_dir, dataset, client, tmp_path):
    from photofeh.scale.distributed import predict_distributed
    from photofeh.scale.predict_catalog import worker_model

    # 3,000-row chunks: seven tasks, most spanning two of the five files
    report = predict_distributed(model_dir, dataset, tmp_path / "dask_out", PredictOptions(chunk_rows=3000),
                                 client=client)
    predict_catalog(model_dir, dataset, tmp_path / "local_out", PredictOptions(chunk_rows=3000, progress=False))
    dask_out = pq.read_table(tmp_path / "dask_out").to_pandas()
    local_out = pq.read_table(tmp_path / "local_out").to_pandas()
    assert report["stars"] == 20_000 and report["workers"] == 2
    assert list(dask_out.columns) == list(local_out.columns)
    pd.testing.assert_frame_equal(dask_out.reset_index(drop=True), local_out.reset_index(drop=True),
                                  check_dtype=False, rtol=1e-6)
    # the model went to each worker once, not with every task (7 tasks, 2 workers)
    loads = client.run(lambda: worker_model.cache_info().misses)
    assert sorted(loads.values()) in ([1, 1], [0, 1])


def test_hats_catalog_through_lsdb(model_dir, catalog, client, tmp_path):
    lsdb = pytest.importorskip("lsdb")
    from photofeh.scale.distributed import is_hats_catalog, predict_distributed

    stars = catalog.iloc[:8000].reset_index(drop=True)
    lsdb.from_dataframe(stars, ra_column="ra", dec_column="dec", highest_order=3, partition_rows=2000
                        ).write_catalog(tmp_path / "survey_hats", catalog_name="survey_hats", progress_bar=False)
    assert is_hats_catalog(tmp_path / "survey_hats")
    report = predict_distributed(model_dir, tmp_path / "survey_hats", tmp_path / "pred_hats", client=client)
    assert report["layout"] == "hats" and report["stars"] == 8000
    back = lsdb.open_catalog(tmp_path / "pred_hats")
    assert back.get_healpix_pixels()  # written back as a HATS catalogue, HEALPix-partitioned
    got = back.compute().sort_values("source_id").reset_index(drop=True)
    from photofeh.model.predict import load_model

    expected = load_model(model_dir).predict(stars.sort_values("source_id").reset_index(drop=True))
    np.testing.assert_array_equal(got["usable"], expected["usable"])
    for col in ("feh", "logg", "teff", "p_giant"):
        np.testing.assert_allclose(got[col], expected[col].astype(np.float32), rtol=2e-6, equal_nan=True)


def test_cli_scheduler_address(model_dir, dataset, client, tmp_path, capsys):
    """`photofeh predict ... --scheduler tcp://...` runs on an existing cluster (as on SLURM or Kubernetes)."""
    import json

    from photofeh.cli import main

    assert main(["predict", str(model_dir), str(dataset), "--out", str(tmp_path / "o"),
                 "--scheduler", client.scheduler.address]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stars"] == 20_000 and len(pq.read_table(tmp_path / "o")) == 20_000
    assert main(["predict", str(model_dir), str(dataset / "part-0.parquet").replace(".parquet", ".fits"),
                 "--out", str(tmp_path / "o2"), "--scheduler", client.scheduler.address]) == 1


def test_dask_refuses_an_input_lacking_a_feature_before_creating_anything(model_dir, catalog, client, tmp_path,
                                                                            capsys):
    """A Parquet input without a column the model needs: one bad-input message naming it, exit 1, no output
    folder (as a local run), not a failure in every task."""
    from photofeh.cli import main

    catalog.iloc[:500].drop(columns=["sdss_u"]).to_parquet(tmp_path / "no_u.parquet")
    out = tmp_path / "o"
    assert main(["predict", str(model_dir), str(tmp_path / "no_u.parquet"), "--out", str(out),
                 "--scheduler", client.scheduler.address]) == 1
    assert "sdss_u" in capsys.readouterr().err and not out.exists()


def test_dask_resumes_a_killed_run_local_or_dask(model_dir, dataset, client, tmp_path):
    """A run's folder as a kill leaves it (the last chunks' parts and log lines missing, one part damaged) is
    finished by a Dask run, which keeps the local run's manifest and parts: the output equals an
    uninterrupted run's, and a run with other options is refused rather than mixed in."""
    import json

    from photofeh.scale.distributed import predict_distributed
    from photofeh.scale.predict_catalog import CHUNK_LOG, ResumeMismatch, part_name

    opts = PredictOptions(chunk_rows=3000, progress=False)
    predict_catalog(model_dir, dataset, tmp_path / "whole", opts)
    out = tmp_path / "out"
    predict_catalog(model_dir, dataset, out, opts)
    log = out / CHUNK_LOG
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines() if json.loads(line)["chunk"] < 4))
    for k in range(4, 7):
        (out / part_name(k)).unlink()
    damaged = out / part_name(1)
    damaged.write_bytes(damaged.read_bytes()[:-100])  # a part cut short (its checksum and size no longer match)
    report = predict_distributed(model_dir, dataset, out, opts, client=client)
    assert report["stars"] == 20_000
    redone = [json.loads(line)["chunk"] for line in log.read_text().splitlines()[4:]]
    assert sorted(redone) == [1, 4, 5, 6]
    pd.testing.assert_frame_equal(pq.read_table(out).to_pandas(), pq.read_table(tmp_path / "whole").to_pandas(),
                                  check_dtype=False, rtol=1e-6)
    with pytest.raises(ResumeMismatch, match="chunk_rows"):
        predict_distributed(model_dir, dataset, out, PredictOptions(chunk_rows=5000), client=client)


def test_a_bad_chunk_on_dask_is_named_with_its_rows(model_dir, dataset_with_a_bad_file, client, tmp_path):
    """A task that cannot read its chunk (text in a magnitude column) stops the run with the chunk's rows."""
    from photofeh.scale.distributed import predict_distributed
    from photofeh.scale.predict_catalog import ChunkError

    with pytest.raises(ChunkError, match=r"chunk 1 \(rows 1,000-1,999\)"):
        predict_distributed(model_dir, dataset_with_a_bad_file, tmp_path / "out", PredictOptions(chunk_rows=1000),
                            client=client)
