"""The holes of issue 28 under bad input and faults, one class per section: each is a clear message and a
non-zero exit, nothing half-written that looks complete, and nothing left behind (docs/reliability.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from photofeh.cli import main
from photofeh.io.locking import output_lock
from photofeh.scale.ledger import CHUNK_LOG, COMPLETE, run_state
from photofeh.scale.predict_catalog import IncompleteOutput, PredictOptions, predict_catalog

KEEP = ["sdss_r", "ebv", "parallax", "parallax_error"]


@pytest.fixture(scope="module")
def stars(spec_catalog: pd.DataFrame, tmp_path_factory) -> Path:
    """2,000 labelled mock stars (photometry, parallaxes and E(B-V) with them) as a prediction input."""
    path = tmp_path_factory.mktemp("bad_input") / "stars.parquet"
    spec_catalog.iloc[:2000].reset_index(drop=True).to_parquet(path, row_group_size=500)
    return path


@pytest.fixture(scope="module")
def finished(quick_model: Path, stars: Path, tmp_path_factory) -> Path:
    """A finished prediction run of 5 chunks of 400 stars."""
    out = tmp_path_factory.mktemp("finished") / "pred"
    predict_catalog(quick_model, stars, out, PredictOptions(chunk_rows=400, keep=tuple(KEEP), progress=False),
                    log=lambda s: None)
    return out


def unfinished_copy(finished: Path, dest: Path, chunks: int = 2) -> Path:
    """What a run killed after ``chunks`` chunks leaves: the manifest, their parts and log lines, no record."""
    shutil.copytree(finished, dest)
    (dest / COMPLETE).unlink()
    lines = (dest / CHUNK_LOG).read_text().splitlines()
    (dest / CHUNK_LOG).write_text("".join(line + "\n" for line in lines[:chunks]))
    for line in lines[chunks:]:
        (dest / json.loads(line)["file"]).unlink()
    return dest


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if ".partial-" in p.name or p.name.endswith(".lock"))


# ------------------------------------------------------------------ 1: an output that holds an input
def test_outputs_train_overwrite_of_the_folder_holding_its_table_is_refused(spec_catalog, tmp_path, capsys):
    """Issue 28, hole 1: `train DATA --out FOLDER_HOLDING_DATA --overwrite` deleted the table, exit 0."""
    data = tmp_path / "work"
    data.mkdir()
    spec_catalog.iloc[:600].to_parquet(data / "spec.parquet")
    (tmp_path / "link").symlink_to(data)
    for out in (data, tmp_path / "link", data / "spec.parquet"):
        assert main(["train", str(data / "spec.parquet"), "--out", str(out), "--overwrite", "--epochs", "1"]) == 1
        err = capsys.readouterr().err
        assert ("inside the output" in err or "also an input" in err) and "Traceback" not in err
    assert (data / "spec.parquet").is_file() and sorted(p.name for p in data.iterdir()) == ["spec.parquet"]
    config = data / "cfg.toml"
    config.write_text("[train]\nepochs = 1\n")
    assert main(["train", str(tmp_path / "elsewhere.parquet"), "--config", str(config), "--out", str(data),
                 "--overwrite"]) == 1  # the config is an input too
    assert config.is_file()


@pytest.mark.parametrize("command", ["map", "mdf", "report", "crossmatch", "simulate", "lr-find", "build-training-set",
                                     "merge-photometry"])
def test_outputs_every_command_refuses_an_output_holding_an_input(command, finished, stars, quick_model, tmp_path,
                                                                  capsys):
    folder = tmp_path / "holds"
    folder.mkdir()
    shutil.copy(stars, folder / "in.parquet")
    args = {"map": ["map", str(finished), "--out", str(finished.parent), "--overwrite"],
            "mdf": ["mdf", str(finished), "--out", str(finished.parent), "--overwrite"],
            "report": ["report", str(quick_model.parent), "--predictions", str(finished), "--out", str(finished)],
            "crossmatch": ["crossmatch", str(folder / "in.parquet"), str(stars), "--out", str(folder),
                           "--overwrite"],
            "simulate": ["simulate", "--n-stars", "10", "--out", str(folder / "in.parquet"), "--overwrite",
                         "--isochrones", str(folder / "in.parquet")],
            "lr-find": ["lr-find", str(folder / "in.parquet"), "--out", str(folder / "in.parquet"), "--overwrite"],
            "build-training-set": ["build-training-set", "--labels", str(folder / "in.parquet"), "--out", str(folder),
                                   "--overwrite"],
            # through a link to the folder (predict, crossmatch and merge-photometry over their own input in
            # test_reliability_files; train through a link above)
            "merge-photometry": ["merge-photometry", str(stars), "--other", str(folder / "in.parquet"), "--out",
                                 str(tmp_path / "link"), "--overwrite"]}
    (tmp_path / "link").symlink_to(folder)
    assert main(args[command]) == 1
    err = capsys.readouterr().err
    assert ("input" in err or "inside" in err) and "Traceback" not in err, err
    assert (folder / "in.parquet").read_bytes() == stars.read_bytes() and run_state(finished)["complete"]


# ------------------------------------------------------------------ 8: one overwrite policy
def test_outputs_an_existing_output_is_refused_without_overwrite(stars, finished, quick_model, tmp_path, capsys):
    """Issue 28, hole 8: simulate, report, crossmatch and build-training-set replaced an existing --out."""
    existing = tmp_path / "existing.parquet"
    existing.write_bytes(b"mine")
    cases = [["simulate", "--n-stars", "10", "--out", str(existing)],
             ["report", str(quick_model.parent), "--out", str(existing)],
             ["crossmatch", str(stars), str(stars), "--out", str(existing)],
             ["merge-photometry", str(stars), "--other", str(stars), "--out", str(existing)],
             ["build-training-set", "--labels", str(stars), "--out", str(existing)],
             ["lr-find", str(stars), "--out", str(existing)]]
    for args in cases:
        assert main(args) == 1, args
        err = capsys.readouterr().err
        assert f"{existing} exists; pass --overwrite" in err and "Traceback" not in err
        assert existing.read_bytes() == b"mine"
    for command in ("map", "mdf"):
        folder = tmp_path / command
        folder.mkdir()
        (folder / "old.txt").write_text("mine")
        assert main([command, str(finished), "--out", str(folder)]) == 1
        assert "pass --overwrite" in capsys.readouterr().err and (folder / "old.txt").read_text() == "mine"


def test_outputs_overwrite_replaces_a_folder_only_when_the_new_one_is_complete(finished, tmp_path, capsys,
                                                                               monkeypatch):
    out = tmp_path / "mdf"
    out.mkdir()
    (out / "old.txt").write_text("the previous output")
    import photofeh.report.mdf_figures as figures

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(figures, "plot_mdf", broken)
    assert main(["mdf", str(finished), "--out", str(out), "--overwrite", "--bootstrap", "0"]) == 1
    assert "disk full" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"] and not leftovers(tmp_path)
    monkeypatch.undo()
    assert main(["mdf", str(finished), "--out", str(out), "--overwrite", "--bootstrap", "0"]) == 0
    assert (out / "mdf.json").is_file() and not (out / "old.txt").exists() and not leftovers(tmp_path)


def test_outputs_train_out_symlink_keeps_the_link_and_leaves_nothing(spec_catalog, tmp_path):
    """Issue 28, hole 8: `train --out SYMLINK` replaced the link and left a .NAME.partial-PID-old behind."""
    from photofeh.model.train import TrainConfig, train

    real = tmp_path / "real_run"
    real.mkdir()
    (real / "old.txt").write_text("previous run")
    link = tmp_path / "run"
    link.symlink_to(real)
    cfg = TrainConfig(epochs=1, batch_size=256, baseline_rounds=0, ensemble=1)
    train(spec_catalog.iloc[:1500], cfg, link, log=lambda s: None, overwrite=True)
    assert link.is_symlink() and (link / "model" / "model.json").is_file() and not (real / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real_run", "run"]


# ------------------------------------------------------------------ 5: the lock of the real path
def test_locks_a_symlink_to_a_locked_output_is_refused(finished, quick_model, stars, tmp_path, capsys):
    """Issue 28, hole 5: a second run through a symlink to the same folder took the first's chunks."""
    real = tmp_path / "pred"
    link = tmp_path / "pred_link"
    link.symlink_to(real)
    with output_lock(real, "photofeh predict (the first)"):
        assert main(["predict", str(quick_model), str(stars), "--out", str(link), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert "being written by another process" in err and "the first" in err
    with output_lock(tmp_path / "m", "photofeh map (the first)"):
        (tmp_path / "m_link2").symlink_to(tmp_path / "m")
        assert main(["map", str(finished), "--out", str(tmp_path / "m_link2"), "--no-figures"]) == 1
        assert "being written by another process" in capsys.readouterr().err
    assert not real.exists()


# ------------------------------------------------------------------ 2: an unfinished prediction run
@pytest.mark.parametrize("command", ["map", "mdf", "report"])
def test_runs_an_unfinished_prediction_run_is_refused_unless_asked(command, finished, quick_model, tmp_path,
                                                                   capsys):
    """Issue 28, hole 2: map, mdf and report exited 0 on a run killed at chunk 10 of 120."""
    pred = unfinished_copy(finished, tmp_path / "pred")
    state = run_state(pred)
    assert not state["complete"] and state["stars"] == 800 and state["chunks_total"] == 5
    out = tmp_path / "out"
    args = {"map": ["map", str(pred), "--out", str(out), "--no-figures", "--min-count", "1", "--cell", "2"],
            "mdf": ["mdf", str(pred), "--out", str(out), "--bootstrap", "0"],
            "report": ["report", str(quick_model.parent), "--predictions", str(pred), "--out",
                       str(out / "r.html")]}[command]
    out.mkdir()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "unfinished prediction run (800 stars in 2 of 5 chunks)" in err and "--allow-incomplete" in err
    assert "Traceback" not in err and not any(out.iterdir())
    assert main([*args, "--allow-incomplete"]) == 0
    err = capsys.readouterr().err
    assert "warning: INCOMPLETE" in err
    if command == "report":
        assert "INCOMPLETE: made from an unfinished prediction run" in (out / "r.html").read_text()
    else:
        report = json.loads((out / f"{'map' if command == 'map' else 'mdf'}.json").read_text())
        assert report["incomplete_predictions"]["stars"] == 800
        assert report["counts"]["stars"] == 800


def test_runs_a_run_with_skipped_chunks_is_unfinished(finished, tmp_path):
    pred = tmp_path / "pred"
    shutil.copytree(finished, pred)
    (pred / COMPLETE).unlink()
    with open(pred / CHUNK_LOG, "a") as f:
        f.write(json.dumps({"chunk": 5, "first_row": 2000, "last_row": 2400, "stage": "read", "error": "x"}) + "\n")
    state = run_state(pred)
    assert not state["complete"] and state["failed_chunks"] == [5]
    assert run_state(finished)["complete"] and run_state(finished)["stars"] == 2000


# ------------------------------------------------------------------ 7: what a dataset reader sees
def test_runs_a_copied_part_is_never_read_twice(finished, quick_model, stars, tmp_path, capsys):
    """Issue 28, hole 7: a copied part made the resume report N stars and pandas.read_parquet N + 400."""
    pred = tmp_path / "pred"
    shutil.copytree(finished, pred)
    shutil.copy(pred / "part-000001.parquet", pred / "part-000001 (copy).parquet")
    assert not run_state(pred)["complete"] and run_state(pred)["foreign_files"] == ["part-000001 (copy).parquet"]
    with pytest.raises(IncompleteOutput, match=r"part-000001 \(copy\).parquet"):
        predict_catalog(quick_model, stars, pred, PredictOptions(chunk_rows=400, keep=tuple(KEEP), progress=False),
                        log=lambda s: None)
    assert not (pred / COMPLETE).exists()
    for args in (["map", str(pred), "--out", str(tmp_path / "m"), "--allow-incomplete"],
                 ["mdf", str(pred), "--out", str(tmp_path / "d"), "--allow-incomplete"]):
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "dataset reader would read their rows too" in err and "Traceback" not in err
    (pred / "part-000001 (copy).parquet").unlink()
    predict_catalog(quick_model, stars, pred, PredictOptions(chunk_rows=400, keep=tuple(KEEP), progress=False),
                    log=lambda s: None)
    assert run_state(pred)["complete"]
    assert len(pd.read_parquet(pred)) == 2000 == pq.read_table(pred).num_rows
    assert np.array_equal(pd.read_parquet(pred)["source_id"], pd.read_parquet(finished)["source_id"])


# ------------------------------------------------------------------ 6: mdf --where runs no code
@pytest.mark.parametrize("query", [
    "@pd.io.common.os.system('touch PWNED')",  # the probe of the issue: a pandas query resolved it
    "__import__('os').system('touch PWNED')",
    "feh.__class__", "feh[0] > 1", "open('x')", "(lambda: 1)()", "feh if usable else 0",
    "[x for x in feh]", "'a' == 'a'", "abs(feh, 2)", "sdss_r.max() > 1", "no_such_column > 1",
])
def test_where_anything_but_a_selection_is_refused_before_reading(query, finished, tmp_path, capsys,
                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["mdf", str(finished), "--out", str(tmp_path / "m"), "--where", query, "--bootstrap", "0"]) == 1
    err = capsys.readouterr().err
    assert "--where" in err and ("not allowed" in err or "not a valid" in err or "no column" in err), err
    assert "Traceback" not in err and not (tmp_path / "PWNED").exists() and not (tmp_path / "m").exists()


def test_where_selections_count_the_same_stars_as_numpy(finished):
    from photofeh.galaxy.query import parse_where

    frame = pd.read_parquet(finished)
    cols = {c: frame[c].to_numpy() for c in frame.columns}
    n = len(frame)
    cases = {"abs(feh) > 1 and sdss_r < 18": (np.abs(cols["feh"]) > 1) & (cols["sdss_r"] < 18),
             "-2 < feh <= -0.5 or not usable": ((-2 < cols["feh"]) & (cols["feh"] <= -0.5)) | ~cols["usable"],
             "(feh_err * 2 < 0.4) & ~is_giant": (cols["feh_err"] * 2 < 0.4) & ~cols["is_giant"],
             "log10(parallax) > -0.5": np.log10(np.where(cols["parallax"] > 0, cols["parallax"], np.nan)) > -0.5,
             "sqrt(sdss_r ** 2) // 1 % 2 == 1": np.sqrt(cols["sdss_r"] ** 2) // 1 % 2 == 1,
             "10 ** 10 ** 10 > feh": ~np.isnan(cols["feh"]), "True": np.ones(n, bool)}
    for text, expected in cases.items():
        got = parse_where(text, list(frame.columns))(cols, n)
        assert got.dtype == bool and np.array_equal(got, expected), text
    with pytest.raises(ValueError, match="gives numbers"):
        parse_where("feh + 1", list(frame.columns))(cols, n)


# ------------------------------------------------------------------ 3: evaluate on another table
def test_evaluate_the_run_split_is_not_applied_to_another_table(quick_model, spec_catalog, tmp_path, capsys):
    """Issue 28, hole 3: `evaluate RUN OTHER_TABLE` scored the 2 stars whose ids happened to be in the split."""
    other = spec_catalog.iloc[:3000].copy()
    other["source_id"] = other["source_id"] + 10**15  # another survey's stars; keep two ids of the run's
    other.loc[other.index[:2], "source_id"] = spec_catalog["source_id"].iloc[:2].to_numpy()
    other.to_parquet(tmp_path / "other.parquet")
    out = tmp_path / "ev"
    assert main(["evaluate", str(quick_model.parent), str(tmp_path / "other.parquet"), "--out", str(out),
                 "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert "2,998 of the 3,000 stars" in err and "--split all" in err and "Traceback" not in err
    assert not (out / "test_metrics.json").exists()
    assert main(["evaluate", str(quick_model.parent), str(tmp_path / "other.parquet"), "--out", str(out),
                 "--no-figures", "--split", "all"]) == 0
    assert json.loads((out / "test_metrics.json").read_text())["n_usable"] > 2000


# ------------------------------------------------------------------ 9: damaged run files, no traceback
@pytest.mark.parametrize("damage", ["baselines.json", "lightgbm", "split.parquet"])
def test_evaluate_damaged_run_files_are_named_not_tracebacks(damage, quick_model, spec_catalog, tmp_path,
                                                             capsys):
    run = tmp_path / "run"
    shutil.copytree(quick_model.parent, run)
    spec_catalog.iloc[:3000].to_parquet(tmp_path / "t.parquet")
    target = {"baselines.json": run / "baselines" / "baselines.json", "split.parquet": run / "split.parquet",
              "lightgbm": next((run / "baselines").glob("lightgbm_*.txt"))}[damage]
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 3] + b"\x00garbage{")
    code = main(["evaluate", str(run), str(tmp_path / "t.parquet"), "--out", str(tmp_path / "ev"), "--no-figures"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and target.name in err, err
    assert "damaged" in err or "cannot" in err or "not a whole" in err, err


# ------------------------------------------------------------------ 4: model folders: checksums, full metadata
def _model_copy(quick_model: Path, dest: Path, edit=None) -> Path:
    shutil.copytree(quick_model, dest)
    if edit is not None:
        meta = json.loads((dest / "model.json").read_text())
        edit(meta)
        (dest / "model.json").write_text(json.dumps(meta))
    return dest


def test_model_flipped_weight_bytes_are_refused_by_the_checksum(quick_model, stars, tmp_path, capsys):
    """Issue 28, hole 4: weights with 1,000 flipped bytes gave usable stars with [Fe/H] -7 and Teff 2,300 K."""
    from photofeh.model.artifact import CHECKSUMS, ModelFormatError, load_model_folder

    assert (quick_model / CHECKSUMS).is_file()
    (tmp_path / "models").mkdir()
    folder = _model_copy(quick_model, tmp_path / "models" / "bad")
    w = folder / "model.safetensors"
    data = bytearray(w.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    rng = np.random.default_rng(0)
    for i in rng.choice(np.arange(header, len(data)), 1000, replace=False):
        data[i] ^= 0x01  # low mantissa bits: finite weights, shapes intact, nonsense predictions
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="does not match its checksum"):
        load_model_folder(folder)
    assert main(["predict", str(folder), str(stars), "--out", str(tmp_path / "p"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "does not match its checksum" in err and "Traceback" not in err and not (tmp_path / "p").exists()


BROKEN_META = {
    "prior counts all zero": (lambda m: m["prior"]["training_distribution"].update(
        counts=[0] * len(m["prior"]["training_distribution"]["counts"])), "with some stars"),
    "prior edges decreasing": (lambda m: m["prior"]["training_distribution"]["edges"].reverse(), "increasing"),
    "prior not an object": (lambda m: m.update(prior=[1, 2]), "prior must be an object"),
    "classify a string": (lambda m: m.update(classify="false"), "classify must be true or false"),
    "deredden a number": (lambda m: m.update(deredden=1), "deredden must be true or false"),
    "domain limit inf": (lambda m: m["domain"]["hi"].__setitem__(0, float("inf")), "not a finite number"),
    "domain limit text": (lambda m: m["domain"]["lo"].__setitem__(0, "-1"), "not a finite number"),
    "domain lo above hi": (lambda m: m["domain"].update(lo=[10.0] * len(m["domain"]["lo"]),
                                                        hi=[0.0] * len(m["domain"]["hi"])), "must not exceed"),
}


@pytest.mark.parametrize("case", list(BROKEN_META))
def test_model_metadata_is_validated_in_full(case, quick_model, tmp_path):
    """Issue 28, hole 4: a broken prior gave every star [Fe/H] = 0.500. Refused even without its checksum."""
    from photofeh.model.artifact import CHECKSUMS, ModelFormatError, load_model_folder

    edit, message = BROKEN_META[case]
    folder = _model_copy(quick_model, tmp_path / "model", edit)
    (folder / CHECKSUMS).unlink()  # so that the check, not the checksum, refuses it
    with pytest.raises(ModelFormatError, match=message):
        load_model_folder(folder)


def test_model_edited_metadata_is_refused_and_old_folders_load_with_a_warning(quick_model, tmp_path):
    from photofeh.model.artifact import CHECKSUMS, ModelFormatError, load_model_folder, model_digest

    edited = _model_copy(quick_model, tmp_path / "edited", lambda m: m.update(class_threshold=0.4))
    with pytest.raises(ModelFormatError, match="model.json does not match its checksum"):
        load_model_folder(edited)
    old = _model_copy(quick_model, tmp_path / "old")
    (old / CHECKSUMS).unlink()
    with pytest.warns(UserWarning, match=f"no {CHECKSUMS}.*{model_digest(old)}"):
        meta, members = load_model_folder(old)
    assert len(members) == meta["n_members"]


# ---------------------------------------------------------------- a run that failed before any work (item 9)
def test_runs_a_run_that_finished_no_chunk_does_not_block_the_corrected_command(tmp_path):
    """A prediction folder holding only the manifest (and failed chunks) of a run that finished nothing is
    started again with the new settings, said in the log; one that finished a chunk still refuses them."""
    from photofeh.scale.ledger import MANIFEST, Manifest, ResumeMismatch

    said: list[str] = []
    folder = tmp_path / "out"
    folder.mkdir()
    Manifest(folder, {"chunk_rows": 100, "keep": []}, said.append)
    (folder / CHUNK_LOG).write_text(json.dumps({"chunk": 0, "error": "MemoryError"}) + "\n")
    fresh = Manifest(folder, {"chunk_rows": 100, "keep": ["ra"]}, said.append)
    assert fresh.done == {} and fresh.failed == {} and not (folder / CHUNK_LOG).exists()
    assert json.loads((folder / MANIFEST).read_text())["identity"] == {"chunk_rows": 100, "keep": ["ra"]}
    assert any("finished no chunk" in line for line in said)
    # the same settings resume as before (nothing replaced)
    assert Manifest(folder, {"chunk_rows": 100, "keep": ["ra"]}, said.append).created == fresh.created
    # a finished chunk (its part and its line) is work: other settings are refused, nothing touched
    (folder / "part-00000.parquet").write_bytes(b"PAR1")
    (folder / CHUNK_LOG).write_text(json.dumps({"chunk": 0, "rows": 100}) + "\n")
    with pytest.raises(ResumeMismatch, match="keep"):
        Manifest(folder, {"chunk_rows": 100, "keep": []}, said.append)
    assert (folder / "part-00000.parquet").exists() and (folder / CHUNK_LOG).exists()


def test_duplicate_source_ids_are_counted_without_a_preset():
    """A table already in the schema (no preset) reports its repeated source_ids as a preset's does (item 9:
    predict said 0)."""
    from photofeh.io.presets import apply_preset

    cols = {"source_id": np.array([1, 2, 2, 3, 3, 3]), "sdss_g": np.full(6, 18.0)}
    assert apply_preset(cols, None)[1]["duplicate source_id"] == 3
    assert apply_preset({"source_id": np.arange(4), "sdss_g": np.full(4, 18.0)}, None)[1]["duplicate source_id"] == 0


# ------------------------------------------------------------------ 9: a killed simulate leaves files behind
def _killed_while_writing(folder: Path, write) -> list[str]:
    """Fork a child that runs ``write(out)``, which SIGKILLs it part-way; return what the folder holds after
    the lock's janitor has had up to 10 s (it held nothing before)."""
    import os
    import signal

    from test_interruptions import nothing_left

    out = folder / "mock.parquet"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            write(out)
        finally:
            os._exit(3)  # only if write() did not kill us
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return nothing_left(folder, before=set())


def test_sigkill_simulate_mid_catalogue_leaves_nothing(mock_survey, tmp_path):
    """Issue 28, hole 9: a SIGKILLed `simulate` left `.mock.parquet.partial-PID` and `.mock.parquet.lock`.
    The catalogue is written to an unnamed file (O_TMPFILE) and the janitor the lock forked removes the lock
    file. Killed after its first chunk of two; a subprocess `photofeh simulate` in test_interruptions."""
    import os
    import signal

    from photofeh.simulate import MockSurveyConfig, simulate

    def write(out: Path) -> None:
        def kill(table, rows: int) -> None:
            assert rows == 300 and sorted(os.listdir(out.parent)) == [".mock.parquet.lock"]
            os.kill(os.getpid(), signal.SIGKILL)

        simulate(MockSurveyConfig(n_stars=600, seed=3), out, chunk_size=300, on_chunk=kill, survey=mock_survey)

    assert _killed_while_writing(tmp_path, write) == []


def test_sigkill_leaves_nothing_where_the_unnamed_file_is_unsupported(tmp_path, monkeypatch):
    """Without O_TMPFILE (other systems, some file systems) the hidden `.NAME.partial-PID` is written; the
    janitor removes it with the lock."""
    import os
    import signal

    import photofeh.io.catalog as catalog

    monkeypatch.setattr(catalog, "_unnamed_file", lambda folder: None)

    def write(out: Path) -> None:
        with output_lock(out, "photofeh simulate"), catalog.atomic_output(out) as tmp:
            tmp.write_bytes(b"half a catalogue")
            assert tmp.name.startswith(".mock.parquet.partial-")
            os.kill(os.getpid(), signal.SIGKILL)

    assert _killed_while_writing(tmp_path, write) == []


def test_an_interrupt_while_naming_the_output_leaves_nothing(tmp_path, monkeypatch):
    """The unnamed file is linked under a hidden name, then renamed over the output: Ctrl-C or SIGTERM between
    the two (here at the rename) removes the hidden name too (a SIGTERMed predict left one)."""
    import os

    import photofeh.io.catalog as catalog

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt), catalog.atomic_output(tmp_path / "x.json") as tmp:
        tmp.write_text("{}")
    assert list(tmp_path.iterdir()) == []
