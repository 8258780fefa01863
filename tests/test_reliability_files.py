"""Fault suite for what photofeh writes and reads back: damaged output parts, leftovers of killed runs, locks,
tampered or damaged model folders (the input side: tests/test_reliability.py).

The promise (docs/reliability.md): no traceback, no exit 0 with incomplete or wrong output, and a resume that redoes
exactly what is damaged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photofeh.cli import main
from photofeh.io.locking import OutputLocked, output_lock
from photofeh.model.artifact import ModelFormatError, load_model_folder
from photofeh.scale.predict_catalog import CHUNK_LOG, IncompleteOutput, PredictOptions, predict_catalog


@pytest.fixture(scope="module")
def model_dir(quick_model: Path) -> Path:
    return quick_model


# ------------------------------------------------------------------ files and outputs
@pytest.fixture()
def small_input(usable_stars, tmp_path) -> Path:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(usable_stars.iloc[:2000], preserve_index=False), path, row_group_size=500)
    return path


def _opts(**kw):
    return PredictOptions(chunk_rows=400, progress=False, **kw)


@pytest.mark.parametrize("damage", ["empty", "one byte", "truncated", "missing", "line elsewhere", "rows"])
def test_files_damaged_parts_are_redone_on_resume(damage, model_dir, small_input, tmp_path):
    """A finished run whose part 2 is damaged after the fact: the resume notices, redoes it, output identical."""
    out = tmp_path / "out"
    predict_catalog(model_dir, small_input, out, _opts())
    reference = pq.read_table(out).to_pandas()
    part = out / "part-000002.parquet"
    if damage == "empty":
        part.write_bytes(b"")  # as after a power loss without fsync
    elif damage == "one byte":
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0xFF
        part.write_bytes(bytes(data))
    elif damage == "truncated":
        part.write_bytes(part.read_bytes()[:-100])
    elif damage == "missing":
        part.unlink()
    elif damage == "line elsewhere":
        lines = (out / CHUNK_LOG).read_text().splitlines()
        entries = [json.loads(x) for x in lines]
        for e in entries:
            if e["chunk"] == 2:
                e["file"] = "part-000003.parquet"
        (out / CHUNK_LOG).write_text("".join(json.dumps(e) + "\n" for e in entries))
    else:  # a valid Parquet file with the right name but other rows
        pq.write_table(pq.read_table(out / "part-000001.parquet"), part)
    messages: list[str] = []
    again = predict_catalog(model_dir, small_input, out, PredictOptions(chunk_rows=400, progress=False),
                            log=messages.append)
    assert again.redone_chunks == [2] and again.rows_this_run == 400 and again.rows == 2000
    assert any("chunk 2" in m for m in messages)
    assert pq.read_table(out).to_pandas().equals(reference)


def test_files_leftovers_of_a_killed_run_are_removed(model_dir, small_input, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in (".part-000001.parquet.partial-99999", "._manifest.json.partial-4242"):
        (out / name).write_bytes(b"half")
    (tmp_path / ".one.parquet.partial-777").write_bytes(b"half")
    predict_catalog(model_dir, small_input, out, _opts())
    predict_catalog(model_dir, small_input, tmp_path / "one.parquet", _opts())
    assert not list(tmp_path.rglob("*.partial-*")) and not list(tmp_path.glob(".*.lock"))


def test_files_rows_written_must_equal_rows_read(model_dir, small_input, tmp_path, monkeypatch):
    import photofeh.scale.predict_catalog as pc

    monkeypatch.setattr(pc, "known_rows", lambda path, fmt=None: 2050)  # the input says more than it holds
    with pytest.raises(IncompleteOutput, match="2,000 rows written for 2,050 read"):
        predict_catalog(model_dir, small_input, tmp_path / "out", _opts())


@pytest.mark.parametrize("fmt", ["parquet", "csv", "fits"])
def test_files_an_empty_input_is_an_error_not_an_empty_output(fmt, model_dir, usable_stars, tmp_path, capsys):
    from astropy.table import Table

    path = tmp_path / f"empty.{fmt}"
    empty = usable_stars.iloc[:0]
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), path)
    elif fmt == "csv":
        empty.to_csv(path, index=False)
    else:
        Table.from_pandas(empty).write(path)
    assert main(["predict", str(model_dir), str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no rows" in err and "Traceback" not in err
    assert main(["crossmatch", str(path), str(path), "--out", str(tmp_path / "x.parquet")]) == 1
    assert "no rows" in capsys.readouterr().err and not (tmp_path / "x.parquet").exists()


def test_files_outputs_that_would_change_an_input_or_another_run_are_refused(model_dir, small_input, tmp_path,
                                                                             capsys):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    shutil.copy(small_input, dataset / "a.parquet")
    before = sorted(p.name for p in dataset.iterdir())
    cases = [
        ["predict", str(model_dir), str(dataset), "--out", str(dataset / "pred")],  # inside the input
        ["predict", str(model_dir), str(small_input), "--out", str(model_dir / "pred")],  # inside a model folder
        ["predict", str(model_dir), str(small_input), "--out", str(model_dir.parent / "pred")],  # inside a run
        ["predict", str(model_dir), str(dataset), "--out", str(tmp_path / "d2"), "--scheduler", "local:1"],
        ["crossmatch", str(small_input), str(small_input), "--out", str(small_input)],  # the input itself
        ["merge-photometry", str(small_input), "--other", str(small_input), "--out", str(small_input)],
    ]
    (tmp_path / "d2").mkdir()
    (tmp_path / "d2" / "keep.txt").write_text("mine")  # Dask would have wiped this folder
    for args in cases:
        assert main(args) == 1, args
        err = capsys.readouterr().err
        assert ("inside" in err or "also an input" in err or "not an empty folder" in err) and "Traceback" not in err
    assert sorted(p.name for p in dataset.iterdir()) == before
    assert (tmp_path / "d2" / "keep.txt").read_text() == "mine"
    predict_catalog(model_dir, small_input, tmp_path / "run1", _opts())
    with pytest.raises(ValueError, match="another photofeh run"):
        predict_catalog(model_dir, small_input, tmp_path / "run1" / "nested", _opts())


def test_files_a_mapping_with_a_misspelt_section_is_refused(model_dir, small_input, tmp_path, capsys):
    f = tmp_path / "map.toml"
    f.write_text('base = "gaia_dr3"\n[colums]\ngaia_g = "g"\n')
    assert main(["predict", str(model_dir), str(small_input), "--out", str(tmp_path / "o"), "--mapping",
                 str(f)]) == 1
    err = capsys.readouterr().err
    assert "'colums'" in err and "did you mean 'columns'" in err and not (tmp_path / "o").exists()


# ------------------------------------------------------------------ locks
def test_files_an_output_in_a_missing_folder_is_named_and_nothing_is_created(model_dir, small_input, tmp_path,
                                                                                capsys):
    """predict and train into a folder that does not exist: the folder is named, no '[Errno 2] ... .lock'."""
    out = tmp_path / "no_such_folder" / "pred"
    assert main(["predict", str(model_dir), str(small_input), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"folder {out.parent} does not exist" in err and "Errno" not in err
    assert main(["train", str(small_input), "--out", str(tmp_path / "no_such_folder" / "run"), "--epochs", "1"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no_such_folder").exists()


def test_locks_a_second_writer_is_refused_naming_the_first(model_dir, small_input, spec_catalog, tmp_path, capsys):
    spec_catalog.iloc[:600].to_parquet(tmp_path / "spec.parquet")
    outputs = {
        "predict": (tmp_path / "pred", ["predict", str(model_dir), str(small_input), "--out",
                                        str(tmp_path / "pred")]),
        "simulate": (tmp_path / "sim.parquet", ["simulate", "--n-stars", "100", "--out",
                                                str(tmp_path / "sim.parquet")]),
        "train": (tmp_path / "run", ["train", str(tmp_path / "spec.parquet"), "--out", str(tmp_path / "run")]),
        "crossmatch": (tmp_path / "x.parquet", ["crossmatch", str(small_input), str(small_input), "--out",
                                                str(tmp_path / "x.parquet")]),
        "map": (tmp_path / "map", ["map", str(tmp_path / "pred_like.parquet"), "--out", str(tmp_path / "map")]),
    }
    # map checks its input before taking the lock (a table it cannot map is refused before anything is
    # created): give it one it can map
    pd.DataFrame({c: [1.0] * 20 for c in ("ra", "dec", "feh", "feh_err", "sdss_r", "mabs_sdss_r",
                                          "mabs_sdss_r_err", "ebv")} | {"usable": [True] * 20}).to_parquet(
        tmp_path / "pred_like.parquet")
    for name, (out, args) in outputs.items():
        with output_lock(out, "photofeh test-holder"):
            assert main(args) == 1, name
            err = capsys.readouterr().err
            assert "being written by another process" in err and "photofeh test-holder" in err, name
        assert not out.exists() or name == "map", name  # nothing written by the refused command
    with output_lock(tmp_path / "same", "first"):
        with pytest.raises(OutputLocked, match="first"):
            with output_lock(tmp_path / "same", "second"):
                pass
    with output_lock(tmp_path / "same", "third"):  # released: free again
        pass
    assert not list(tmp_path.glob(".*.lock"))


def test_a_lock_held_for_a_dead_owner_is_waited_for_not_refused(tmp_path):
    """A run started right after `kill -9` of the previous one can meet the lock still held by the dead owner's
    janitor, which removes its leftovers (or by the kernel, a moment before it releases the dead process's
    files): the lock file then names a process that no longer exists, and output_lock waits for the lock
    (DEAD_OWNER_WAIT_S) instead of refusing. Here a helper process holds it for 0.5 s under a dead pid's name."""
    import socket
    import subprocess
    import sys

    from photofeh.io.locking import lock_path

    out = tmp_path / "pred"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # reaped: its pid names no process
    lock = lock_path(out.resolve())
    lock.write_text(f"pid {dead.pid} on {socket.gethostname()}, photofeh predict, since 2026-12-07 23:55:03\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(lock)!r}, os.O_RDWR)\nfcntl.flock(fd, fcntl.LOCK_EX)\n"
         "print('held', flush=True)\ntime.sleep(0.5)\nos.unlink(" + repr(str(lock)) + ")\n"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with output_lock(out, "photofeh predict (the rerun)"):
        assert "the rerun" in lock.read_text()
    holder.wait()
    # a live owner is refused at once, as before
    with output_lock(out, "photofeh predict (alive)"):
        with pytest.raises(OutputLocked, match="alive"):
            with output_lock(out, "second"):
                pass



# ------------------------------------------------------------------ model folders
def _tamper_meta(folder: Path, edit) -> None:
    meta = json.loads((folder / "model.json").read_text())
    edit(meta)
    (folder / "model.json").write_text(json.dumps(meta))


MODEL_CASES = {
    "n_members 1e9": (lambda m: m.update(n_members=10**9), "n_members must be an integer from 1 to 100"),
    "more members than weights": (lambda m: m.update(n_members=2), "tensor(s) missing"),
    "widths 2e9": (lambda m: m["architecture"].update(widths=[2_000_000_000]), "widths must be at most 64 integers"),
    "other widths": (lambda m: m["architecture"].update(widths=[64, 64]), "has shape"),
    "label std 0": (lambda m: m["label_standardizer"]["std"].__setitem__(0, 0.0), "scales must be > 0"),
    "label std 1e300": (lambda m: m["label_standardizer"]["std"].__setitem__(0, 1e300), "not a finite number"),
    "input mean NaN": (lambda m: m["input_standardizer"]["mean"].__setitem__(0, float("nan")), "not a finite"),
    "sigma scale negative": (lambda m: m.update(sigma_scale=[-1.0] * len(m["labels"])), "scales must be > 0"),
    "fewer features": (lambda m: m.update(features=m["features"][:-1]), "list of"),
    "temperature 0": (lambda m: m.update(class_temperature=0.0), "class_temperature"),
    "unknown architecture": (lambda m: m["architecture"].update(name="transformer"), "unknown architecture"),
    "labels not a list": (lambda m: m.update(labels="feh"), "labels must be a list"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_model_tampered_metadata_is_refused_before_allocation(case, model_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    edit, message = MODEL_CASES[case]
    _tamper_meta(folder, edit)
    with pytest.raises(ModelFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_model_folder(folder)
    assert main(["predict", str(folder), str(folder / "model.json"), "--out", str(tmp_path / "o")]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "header garbage", "empty", "nan weights"])
def test_model_damaged_weights_are_refused(damage, model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    w = folder / "model.safetensors"
    if damage == "truncated":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif damage == "header garbage":
        data = bytearray(w.read_bytes())
        data[8:40] = b"\xff" * 32
        w.write_bytes(bytes(data))
    elif damage == "empty":
        w.write_bytes(b"")
    else:
        tensors = load_file(str(w))
        key = next(k for k, t in tensors.items() if t.is_floating_point() and t.numel() > 10)
        tensors[key][0] = torch.nan
        save_file(tensors, str(w), metadata={"format": "photofeh"})
    with pytest.raises(ModelFormatError):
        load_model_folder(folder)
