"""Fault and fuzz suite, in-process, for what photofeh reads: bad values, configs, arguments, the real samples
(damaged outputs, locks and tampered models: tests/test_reliability_files.py).

The promise (docs/reliability.md): no traceback, no exit 0 with incomplete or wrong output, no
non-physical value used. Hypothesis runs derandomized, so the suite is deterministic.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from photofeh.cli import main
from photofeh.io.validation import RULES, clean_columns, column_rule
from photofeh.model.predict import load_model
from photofeh.scale.predict_catalog import PredictOptions, predict_catalog

DERANDOMIZED = settings(derandomize=True, deadline=None, max_examples=80,
                        suppress_health_check=[HealthCheck.function_scoped_fixture])
SENTINELS = [-9999.0, -999.0, -99.0, 99.0, 999.0, 9999.0]


@pytest.fixture(scope="module")
def model_dir(quick_model: Path) -> Path:
    return quick_model


# ------------------------------------------------------------------ values
@DERANDOMIZED
@given(st.sampled_from(["sdss_u", "ps1_g_err", "ebv", "A_sdss_r", "parallax", "parallax_error", "feh_spec",
                        "logg_spec_err", "teff_true", "mabs_sdss_r_true"]),
       st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SENTINELS),
                          st.floats(-30, 30)), min_size=1, max_size=50))
def test_values_clean_columns_keeps_only_possible_values(name, values):
    """Whatever a column holds, what comes out is finite and in range, or NaN; replaced values are counted."""
    a = np.asarray(values, float)
    rule = column_rule(name)
    out, counts = clean_columns({name: a, "untouched": a}, "fuzz")
    v = out[name]
    finite = np.isfinite(v)
    assert np.all(v[finite] >= rule.lo) and np.all(v[finite] <= rule.hi)
    if rule.lo_open:
        assert np.all(v[finite] > rule.lo)
    assert not np.isin(v[finite], rule.sentinels_inside).any()
    assert np.array_equal(v[finite], a[finite])  # kept values are not altered
    assert counts[name] == int(np.sum(~finite & ~np.isnan(a)))
    assert out["untouched"] is a  # outside the schema: passed through as it is


def test_values_each_kind_of_bad_value_named_in_the_issue():
    cols = {"sdss_g": np.array([-9999.0, 99.0, 999.0, -99.0, 18.5, np.inf]),
            "sdss_g_err": np.array([-0.1, 0.02, 0.02, 0.02, 0.02, 0.02]),
            "ebv": np.array([-9999.0, -0.01, 0.05, 0.05, 0.05, 0.05]),
            "parallax": np.array([-9999.0, -1.5, 0.5, 2000.0, 0.3, 0.1]),
            "parallax_error": np.array([0.1, 0.1, -0.2, 0.0, 0.1, 0.1]),
            "feh_spec": np.array([-9999.0, -2.5, 0.1, 99.0, -1.0, -0.5]),
            "phot_g_mean_mag": np.array([-9999.0] * 6)}
    out, counts = clean_columns(cols)
    assert np.isnan(out["sdss_g"][[0, 1, 2, 3, 5]]).all() and out["sdss_g"][4] == 18.5
    assert np.isnan(out["sdss_g_err"][0]) and np.isnan(out["ebv"][:2]).all()
    assert out["parallax"][1] == -1.5  # a negative parallax is a measurement and stays
    assert np.isnan(out["parallax"][[0, 3]]).all() and np.isnan(out["parallax_error"][[2, 3]]).all()
    assert np.isnan(out["feh_spec"][[0, 3]]).all()
    assert out["phot_g_mean_mag"] is cols["phot_g_mean_mag"]  # not a schema column
    assert dict(counts) == {"sdss_g": 5, "sdss_g_err": 1, "ebv": 2, "parallax": 2, "parallax_error": 2,
                            "feh_spec": 2}
    with pytest.raises(ValueError, match="column 'sdss_r' should hold numbers"):
        clean_columns({"sdss_r": np.array(["18.2", "bright"], dtype=object)}, "my.csv")


def test_values_rules_are_physical():
    """Spot checks of the ranges against published extremes (validation.py cites them)."""
    assert RULES["[Fe/H]"].lo <= -7.1  # SMSS J0313-6708: [Fe/H] < -7.1 (Keller et al. 2014)
    assert RULES["parallax"].hi > 768.1  # Proxima Centauri, 768.07 mas (Gaia EDR3)
    assert RULES["magnitude"].lo <= -1.46  # Sirius, V = -1.46
    assert RULES["Teff"].lo <= 2000 and RULES["Teff"].hi >= 150_000


def test_values_sentinels_never_reach_the_network(model_dir, usable_stars, tmp_path, capsys):
    """Sentinels written straight into schema columns (no preset): NaN, counted, rows not usable."""
    bad = usable_stars.copy()
    rows = {"sdss_u": [0, 1], "ps1_r": [2], "gaia_bp": [3], "ebv": [4], "parallax": [5], "sdss_g": [6]}
    values = {"sdss_u": [-9999.0, 99.0], "ps1_r": [999.0], "gaia_bp": [-99.0], "ebv": [-9999.0],
              "parallax": [-9999.0], "sdss_g": [np.inf]}
    for col, idx in rows.items():
        bad.loc[idx, col] = values[col]
    bad.loc[7, "sdss_r_err"] = -0.3  # not a feature, but kept in the output: validated too
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), tmp_path / "bad.parquet")
    assert main(["predict", str(model_dir), str(tmp_path / "bad.parquet"), "--out", str(tmp_path / "p"),
                 "--quiet", "--keep", "sdss_r_err"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["values_replaced"] == {"sdss_u": 2, "ps1_r": 1, "gaia_bp": 1, "ebv": 1, "parallax": 1,
                                         "sdss_g": 1, "sdss_r_err": 1}
    got = pq.read_table(tmp_path / "p").to_pandas()
    # the other rows are exactly as usable as without the sentinels (a 2-epoch model may still put one of
    # the coolest dwarfs outside the physical range: that row is unusable in both)
    clean = load_model(model_dir).predict(usable_stars)
    assert not got["usable"][:7].any() and np.isnan(got["sdss_r_err"][7])
    assert np.array_equal(got["usable"][7:], clean["usable"][7:]) and got["usable"][7:].mean() > 0.99
    assert np.isnan(got["feh"][:7]).all()
    # usable means inside the label's physical range (io.validation: [Fe/H] -10 to +2); a 2-epoch model may put an
    # M dwarf far cooler than any labelled star below -5
    assert got.loc[got["usable"], "feh"].between(-10, 2).all()


def test_values_garbled_fits_bytes_give_no_usable_nonsense(model_dir, usable_stars, tmp_path):
    """A FITS file whose data bytes are overwritten with noise (seeded): no usable absurd prediction."""
    from astropy.table import Table

    path = tmp_path / "garbled.fits"
    Table.from_pandas(usable_stars).write(path)
    from astropy.io import fits

    with fits.open(path) as hdul:
        start = hdul[1].fileinfo()["datLoc"]  # only data bytes are damaged: the header stays readable
    data = np.frombuffer(path.read_bytes(), np.uint8).copy()
    rng = np.random.default_rng(9)
    hit = rng.choice(data.size - start, size=(data.size - start) // 3, replace=False) + start
    data[hit] = rng.integers(0, 256, hit.size)
    path.write_bytes(data.tobytes())
    summary = predict_catalog(model_dir, path, tmp_path / "p", PredictOptions(progress=False))
    got = pq.read_table(tmp_path / "p").to_pandas()
    assert summary.rows == len(usable_stars) and sum(summary.replaced.values()) > 1000
    use = got["usable"].to_numpy()
    assert use.sum() < len(got) / 2  # most rows have a garbled feature
    for col, (lo, hi) in {"feh": (-10, 2), "logg": (-1.5, 9.5), "teff": (1500, 2e5)}.items():
        assert np.all(np.isfinite(got[col][use])) and got[col][use].between(lo, hi).all(), col
    assert np.isnan(got.loc[~use, "feh"]).all()


def test_values_label_sentinels_never_train(spec_catalog, tmp_path):
    """15% of the labels set to -9999 (and a few negative errors): they are dropped and counted."""
    from photofeh.model.train import TrainConfig, prepare, train

    table = spec_catalog.iloc[:4000].copy()
    rng = np.random.default_rng(3)
    hit = rng.choice(len(table), size=600, replace=False)
    table.loc[table.index[hit], "feh_spec"] = -9999.0
    table.loc[table.index[:50], "feh_spec_err"] = -0.1
    cfg = TrainConfig(baseline_rounds=0, epochs=1, batch_size=256)
    p = prepare(table, cfg)
    assert p.replaced["feh_spec"] == 600 and p.replaced["feh_spec_err"] == 50
    feh = p.y[:, cfg.labels.index("feh")]
    assert np.nanmin(feh) > -5 and abs(np.nanmean(feh)) < 2  # was -1515 with the sentinels in
    model = train(table, cfg, tmp_path / "run", log=lambda s: None)
    meta = json.loads((model / "model.json").read_text())
    assert meta["training"]["values_replaced"]["feh_spec"] == 600
    assert -3 < meta["label_standardizer"]["mean"][0] < 0.5


def test_values_training_set_cuts_see_the_validated_values(tmp_path):
    """Negative errors do not pass max_err; -9999 labels do not pass require_labels."""
    from photofeh.io.cuts import Cuts
    from photofeh.io.training_set import build_training_set

    n = 40
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(10, 20, n), rng.uniform(0, 10, n)
    labels = pd.DataFrame({"source_id": np.arange(n), "ra": ra, "dec": dec, "feh_spec": rng.uniform(-2, 0, n)})
    labels.loc[:9, "feh_spec"] = -9999.0
    phot = pd.DataFrame({"ra": ra, "dec": dec, "sdss_g": rng.uniform(15, 19, n), "sdss_g_err": np.full(n, 0.02)})
    phot.loc[10:14, "sdss_g_err"] = -0.05
    labels.to_parquet(tmp_path / "labels.parquet")
    phot.to_parquet(tmp_path / "phot.parquet")
    report = build_training_set(tmp_path / "labels.parquet", [(tmp_path / "phot.parquet", None)],
                                tmp_path / "train.parquet",
                                cuts=Cuts(max_err={"sdss_g": 0.1}, require_labels=("feh_spec",)))
    got = pd.read_parquet(tmp_path / "train.parquet")
    assert len(got) == report["kept rows"] == 25
    assert (got["feh_spec"] > -5).all() and (got["sdss_g_err"] >= 0).all()
    assert report["matches"][0]["values_replaced"] == {"reference": {"feh_spec": 10}, "other": {"sdss_g_err": 5}}


def test_values_non_finite_outputs_are_not_usable(model_dir, usable_stars):
    """The last guard: a model whose outputs overflow gives NaN and usable = False, never inf marked usable."""
    model = load_model(model_dir)
    model.y_scale.std = model.y_scale.std * 1e306  # as a damaged file would (load_model itself refuses it)
    out = model.predict(usable_stars.iloc[:100])
    assert not out["usable"].any() and np.isnan(out["feh"]).all()


# ------------------------------------------------------------------ configs
CONFIG_CASES = {
    "[trian]\nepochs = 5\n": "unknown section [trian] (did you mean 'train'?)",
    "epochs = 5\n": "setting 'epochs' lies outside any section",
    "[train]\nepoch = 5\n": "unknown setting 'epoch' (did you mean 'epochs'?)",
    '[train]\nepochs = "five"\n': "epochs must be an integer",
    "[train]\nepochs = 0\n": "epochs must be from 1",
    "[train]\nmax_lr = -1.0\n": "max_lr must be a finite number",
    "[train]\nmax_lr = nan\n": "max_lr must be a finite number",
    "[data]\nsplit = [0.5, 0.6, -0.1]\n": "split must be three finite fractions >= 0",
    "[data]\nsplit = [0.7, 0.2]\n": "split must be three finite fractions",
    "[data]\nsplit = [0.5, 0.3, 0.3]\n": "must sum to 1",
    "[data]\nsplit = [0.8, 0.0, 0.2]\n": "needs training and validation stars",
    "[data]\nfeatures = 'sdss_u-sdss_g'\n": "features must be a list of text",
    '[data]\nmissing = "impute"\n': "missing must be one of",
    '[model]\npreset = "huge"\n': "unknown preset 'huge'",
    "[model]\narchitecture = {name = 'mlp', widths = [2000000000]}\n": "widths must be at most 64 integers",
    "[model]\nensemble = 1000000000\n": "ensemble must be from 1 to 100",
    "[train]\nseed = -1\n": "seed must be from 0",
    "[train]\nbatch_size = true\n": "batch_size must be an integer",
    "model = 3\n": "'model' must be a section",
}


@pytest.mark.parametrize("text,message", list(CONFIG_CASES.items()))
def test_config_mistakes_are_named(text, message, tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text(text)
    assert main(["train", str(tmp_path / "never-read.parquet"), "--config", str(f), "--out",
                 str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


CUTS_CASES = {
    "max_evb = 0.3\n": "did you mean 'max_ebv'",
    'max_ebv = "low"\n': "max_ebv must be a finite number",
    "[mag_range]\nsdss_g = [20, 14]\n": "bright < faint",
    "[max_err]\nsdss_g = -0.1\n": "positive number",
    "mag_range = 3\n": "must be a table",
    "require_labels = 'feh_spec'\n": "list of column names",
}


@pytest.mark.parametrize("text,message", list(CUTS_CASES.items()))
def test_config_cuts_mistakes_are_named(text, message, tmp_path, capsys):
    f = tmp_path / "cuts.toml"
    f.write_text(text)
    assert main(["build-training-set", "--labels", str(tmp_path / "l.parquet"), "--photometry",
                 str(tmp_path / "p.parquet"), "--cuts", str(f), "--out", str(tmp_path / "t.parquet")]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_config_evaluate_metrics_never_see_label_sentinels(model_dir, spec_catalog):
    from photofeh.model.evaluate import evaluate_model

    table = spec_catalog.iloc[:3000].copy()
    clean = evaluate_model(load_model(model_dir), table)
    scored = np.isfinite(load_model(model_dir).predict(table.iloc[:300])["feh"]) & np.isfinite(table["feh_spec"][:300])
    table.loc[table.index[:300], "feh_spec"] = -9999.0
    dirty = evaluate_model(load_model(model_dir), table)
    assert dirty["values_replaced"] == {"feh_spec": 300}
    assert dirty["labels"]["feh"]["vs_labels"]["n"] == clean["labels"]["feh"]["vs_labels"]["n"] - scored.sum()
    assert abs(dirty["labels"]["feh"]["vs_labels"]["bias_median"]
               - clean["labels"]["feh"]["vs_labels"]["bias_median"]) < 0.05


def test_config_a_test_fraction_of_zero_is_valid(tmp_path):
    from photofeh.model.train import check_split, split_indices

    f = tmp_path / "c.toml"
    f.write_text("[data]\nsplit = [0.8, 0.2, 0.0]\n")
    from photofeh.model.train import load_config

    assert load_config(f).split == (0.8, 0.2, 0.0)
    assert check_split([0.8, 0.2, 0]) == (0.8, 0.2, 0.0)
    s = split_indices(1000, (0.8, 0.2, 0.0), 1)
    assert Counter(s.tolist()) == {0: 800, 1: 200}


def test_config_duplicate_ids_stay_on_one_side_of_the_split(spec_catalog, tmp_path, capsys):
    from photofeh.model.train import split_indices

    ids = np.concatenate([np.arange(20_000), np.arange(5_000)])  # 5,000 stars observed twice
    split = split_indices(ids.size, (0.7, 0.15, 0.15), 0, ids)
    sides = pd.DataFrame({"id": ids, "split": split}).groupby("id")["split"].nunique()
    assert (sides == 1).all()
    assert abs(np.mean(split == 2) - 0.15) < 0.01
    unique = np.arange(5000)
    assert np.array_equal(split_indices(5000, (0.7, 0.15, 0.15), 4, unique), split_indices(5000, (0.7, 0.15, 0.15), 4))
    table = pd.concat([spec_catalog.iloc[:3000], spec_catalog.iloc[:600]], ignore_index=True)
    table.to_parquet(tmp_path / "dup.parquet")
    assert main(["train", str(tmp_path / "dup.parquet"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--baseline-rounds", "0"]) == 0
    assert "600 row(s) repeat a source_id" in capsys.readouterr().err
    sp = pd.read_parquet(tmp_path / "run" / "split.parquet")
    assert (sp.groupby("source_id")["split"].nunique() == 1).all()


def test_config_train_refuses_an_existing_folder_unless_overwrite(spec_catalog, tmp_path, capsys):
    spec_catalog.iloc[:1500].to_parquet(tmp_path / "spec.parquet")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    args = ["train", str(tmp_path / "spec.parquet"), "--epochs", "1", "--quiet", "--out", str(mine),
            "--baseline-rounds", "30"]  # a baseline folder to list, fitted quickly
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "precious"
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in mine.iterdir()) == ["baselines", "config.toml", "history.csv", "history.pdf",
                                                      "history.png", "labelled_sample.parquet", "model",
                                                      "split.parquet"]
    assert not list(tmp_path.glob(".*"))  # no temporary folder or lock left


def test_config_evaluate_refuses_the_training_table_without_its_split(spec_catalog, tmp_path, capsys):
    spec_catalog.iloc[:2000].to_parquet(tmp_path / "spec.parquet")
    assert main(["train", str(tmp_path / "spec.parquet"), "--epochs", "1", "--quiet", "--out",
                 str(tmp_path / "run"), "--baseline-rounds", "0"]) == 0
    (tmp_path / "run" / "split.parquet").unlink()  # as a hand-copied run might lack it
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), str(tmp_path / "spec.parquet")]) == 1
    assert "split.parquet is missing" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "run"), str(tmp_path / "spec.parquet"), "--split", "all",
                 "--out", str(tmp_path / "ev"), "--no-figures"]) == 0
    spec_catalog.iloc[2000:2600].to_parquet(tmp_path / "other.parquet")  # another table needs no split
    assert main(["evaluate", str(tmp_path / "run"), str(tmp_path / "other.parquet"), "--out",
                 str(tmp_path / "ev2"), "--no-figures"]) == 0
    assert not list((tmp_path / "ev2").glob("*.png"))


# ------------------------------------------------------------------ arguments
ARG_CASES = [
    ["map", "PRED", "--out", "OUT", "--cell", "0"],
    ["map", "PRED", "--out", "OUT", "--cell", "nan"],
    ["map", "PRED", "--out", "OUT", "--r-max", "-3"],
    ["map", "PRED", "--out", "OUT", "--min-count", "0"],
    ["map", "PRED", "--out", "OUT", "--max-feh-err", "inf"],
    ["crossmatch", "PRED", "PRED", "--out", "OUT", "--radius", "nan"],
    ["crossmatch", "PRED", "PRED", "--out", "OUT", "--radius", "0"],
    ["crossmatch", "PRED", "PRED", "--out", "OUT", "--radius", "-1"],
    ["simulate", "--n-stars", "1000", "--out", "OUT", "--workers", "64"],
    ["simulate", "--n-stars", "1000", "--out", "OUT", "--seed", "-4"],
    ["simulate", "--n-stars", "1000", "--out", "OUT", "--mag-range", "14", "nan"],
    ["predict", "PRED", "PRED", "--out", "OUT", "--chunk-rows", "1000000000000"],
    ["predict", "PRED", "PRED", "--out", "OUT", "--threads", "0"],
    ["merge-photometry", "PRED", "--other", "PRED", "--out", "OUT", "--radius", "inf"],
    ["train", "PRED", "--out", "OUT", "--seed", "-1"],
    ["train", "PRED", "--out", "OUT", "--baseline-rounds", "-1"],
]


@pytest.mark.parametrize("args", ARG_CASES, ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_args_out_of_range_are_refused_before_any_work(args, tmp_path, capsys):
    args = [str(tmp_path / "p.parquet") if a == "PRED" else str(tmp_path / "o") if a == "OUT" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "expected" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_args_a_map_grid_too_large_for_memory_is_refused(tmp_path, capsys):
    pq.write_table(pa.table({"feh": [0.0], "usable": [True]}), tmp_path / "p.parquet")
    for cell in ("0.01", "0.001"):  # 0.001 kpc asked for ~745 GiB before
        assert main(["map", str(tmp_path / "p.parquet"), "--out", str(tmp_path / "m"), "--cell", cell]) == 1
        assert "GiB" in capsys.readouterr().err and not (tmp_path / "m").exists()


# ------------------------------------------------------------------ the real samples
def _green2020_columns(path: Path) -> dict[str, np.ndarray]:
    """Schema columns from the Green et al. 2020 structured array (bands in the README's order)."""
    import h5py

    with h5py.File(path) as f:
        d = f["data"][:]
    bands = ["gaia_g", "gaia_bp", "gaia_rp", "ps1_g", "ps1_r", "ps1_i", "ps1_z", "ps1_y", "tmass_j", "tmass_h",
             "tmass_ks", "wise_w1", "wise_w2"]
    cols = {b: d["mag"][:, i] for i, b in enumerate(bands)}
    cols.update({f"{b}_err": d["mag_err"][:, i] for i, b in enumerate(bands)})
    cols.update(parallax=d["parallax"], parallax_error=d["parallax_err"], teff_spec=d["atm_param"][:, 0],
                logg_spec=d["atm_param"][:, 1], feh_spec=d["atm_param"][:, 2])
    return cols


def test_values_real_samples_through_the_validation_layer():
    """The real samples: SSPP's -9999 labels and KIC's sentinels are counted; the Green et al. 2020 stars are
    clean, and their 92 negative parallaxes (measurements) stay."""
    from conftest import GREEN2020, KEPLER_GIANTS, SSPP_DR9, real_sample

    from photofeh.io.presets import apply_preset
    from photofeh.io.readers import read_columns

    sspp, counts = apply_preset(read_columns(real_sample(SSPP_DR9)), "sspp", "sspp")
    assert counts["feh_spec"] == counts["teff_spec"] == 92  # 92 of the 100 rows carry FEH_ADOP = -9999
    kepler, counts = apply_preset(read_columns(real_sample(KEPLER_GIANTS)), "kepler_huber17")
    assert counts["kic_g"] == 33 and counts["feh_spec"] == 0
    green, counts = clean_columns(_green2020_columns(real_sample(GREEN2020)), "green2020")
    assert sum(counts.values()) == 0 and int(np.sum(green["parallax"] < 0)) == 92
    for table in (sspp, kepler, green):
        for name, values in table.items():
            rule = column_rule(name)
            if rule is not None:
                v = np.asarray(values, float)
                v = v[np.isfinite(v)]
                assert np.all((v >= rule.lo) & (v <= rule.hi)), name


def test_config_real_tables_without_labels_or_ids(model_dir, spec_catalog, tmp_path, capsys):
    """evaluate and train on real-like tables: a missing or all-NaN label column is a named error and
    nothing is written; a table without source_id is scored with --split all."""
    table = spec_catalog.iloc[:1500]
    table.drop(columns=["mabs_sdss_r_true"]).to_parquet(tmp_path / "nomabs.parquet")
    table.assign(teff_spec=np.nan).to_parquet(tmp_path / "nanteff.parquet")
    table.drop(columns=["source_id"]).to_parquet(tmp_path / "noid.parquet")
    for name, message in (("nomabs", "lacks the label column(s) ['mabs_sdss_r_true']"),
                          ("nanteff", "label column(s) ['teff_spec'] hold no finite value")):
        assert main(["evaluate", str(model_dir), str(tmp_path / f"{name}.parquet"), "--out",
                     str(tmp_path / f"ev_{name}")]) == 1
        assert message in capsys.readouterr().err and not (tmp_path / f"ev_{name}").exists()
        assert main(["train", str(tmp_path / f"{name}.parquet"), "--out", str(tmp_path / f"run_{name}"),
                     "--epochs", "1"]) == 1
        assert message in capsys.readouterr().err and not (tmp_path / f"run_{name}").exists()
    assert main(["evaluate", str(model_dir), str(tmp_path / "noid.parquet"), "--split", "all", "--out",
                 str(tmp_path / "ev_noid"), "--no-figures"]) == 0
    assert (tmp_path / "ev_noid" / "test_metrics.json").is_file()
