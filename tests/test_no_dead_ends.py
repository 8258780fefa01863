"""No dead ends (issue 25): predict without the columns only map needs, bad input said once as bad input, typed
API errors with the command line's messages, predictions with source_id and provenance, the benchmarks' split
from the command line, tables of colours, magnitude systems stated and handled, no warnings on real stars."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import GREEN2020, SEGUE_DR17, SSPP_DR9, real_sample

GAIA_FEATURES = ["gaia_bp-gaia_rp", "gaia_g-gaia_rp", "gaia_g", "parallax", "parallax_error"]
LABELS = {"feh": "feh_spec", "logg": "logg_spec", "teff": "teff_spec"}


@pytest.fixture(scope="module")
def green_stars():
    from photofeh.io.real_samples import read_green2020

    return read_green2020(real_sample(GREEN2020))


@pytest.fixture(scope="module")
def gaia_model(green_stars, tmp_path_factory) -> Path:
    """A Gaia-only model (observed magnitudes) trained for one epoch on the real green2020 stars."""
    from photofeh.model.train import TrainConfig, train

    run = tmp_path_factory.mktemp("gaia") / "run"
    cfg = TrainConfig(features=GAIA_FEATURES, labels=list(LABELS), label_columns=LABELS, deredden=False,
                      epochs=1, baseline_rounds=0, threads=1)
    train(green_stars, cfg, run, log=lambda s: None)
    return run


def gaia_source(stars: pd.DataFrame) -> pd.DataFrame:
    """The stars as a Gaia DR3 gaia_source extract without positions (as a user's query may give it)."""
    return pd.DataFrame({"source_id": stars["source_id"], "phot_g_mean_mag": stars["gaia_g"],
                         "phot_bp_mean_mag": stars["gaia_bp"], "phot_rp_mean_mag": stars["gaia_rp"],
                         "parallax": stars["parallax"], "parallax_error": stars["parallax_error"]})


def test_gaia_dr3_without_positions_predicts_from_the_api_and_the_command_line(gaia_model, green_stars, tmp_path,
                                                                               capsys):
    import photofeh
    from photofeh.cli import main

    table = gaia_source(green_stars.iloc[:500])
    model = photofeh.load_model(gaia_model)
    pred = model.predict(table, preset="gaia_dr3")
    direct = model.predict(green_stars.iloc[:500])
    np.testing.assert_array_equal(pred["feh"].to_numpy(), direct["feh"].to_numpy())
    # the predictions carry source_id and the run's provenance
    assert list(pred.columns[:2]) == ["source_id", "feh"]
    np.testing.assert_array_equal(pred["source_id"], table["source_id"])
    from photofeh.model.artifact import model_digest

    assert pred.attrs["model_digest"] == model_digest(gaia_model / "model") and pred.attrs["preset"] == "gaia_dr3"
    assert pred.attrs["model_prior"] == "labels" and json.loads(pred.attrs["model_labels"]) == list(LABELS)
    table.to_parquet(tmp_path / "gaia.parquet")
    assert main(["predict", str(gaia_model), str(tmp_path / "gaia.parquet"), "--preset", "gaia_dr3", "--out",
                 str(tmp_path / "pred"), "--quiet"]) == 0, capsys.readouterr().err
    out = pd.read_parquet(tmp_path / "pred")
    np.testing.assert_allclose(out["feh"], pred["feh"].astype(np.float32))
    assert out.columns[0] == "source_id"


def test_a_missing_column_is_bad_input_said_once_and_the_same_in_python(gaia_model, green_stars, tmp_path, capsys):
    import photofeh
    from photofeh.cli import main
    from photofeh.errors import InputError, MissingColumnsError, PhotofehError

    table = gaia_source(green_stars.iloc[:300]).drop(columns="parallax_error")
    table.to_parquet(tmp_path / "gaia.parquet")
    out = tmp_path / "pred"
    assert main(["predict", str(gaia_model), str(tmp_path / "gaia.parquet"), "--preset", "gaia_dr3", "--out",
                 str(out), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "parallax_error" in err and "rerun" not in err and "resume" not in err
    assert not out.exists()  # refused before anything was created
    with pytest.raises(MissingColumnsError) as info:
        photofeh.load_model(gaia_model).predict(table, preset="gaia_dr3")
    assert isinstance(info.value, KeyError) and isinstance(info.value, InputError)  # old `except KeyError` works
    assert isinstance(info.value, PhotofehError) and isinstance(info.value, ValueError)
    # the command line's message, word for word (it names the table: "catalogue" in Python, the file on the CLI)
    assert err.removeprefix("photofeh predict: error: ").replace(str(tmp_path / "gaia.parquet"), "catalogue") \
        .startswith(str(info.value).split(" (the table has")[0])
    # a column the model needs, through no preset: the same error type
    with pytest.raises(MissingColumnsError, match="lacks columns"):
        photofeh.load_model(gaia_model).predict(green_stars.iloc[:10].drop(columns="gaia_bp"))
    from photofeh.errors import UnknownPresetError

    with pytest.raises(UnknownPresetError, match="unknown preset 'gaia_dr9'"):
        photofeh.load_model(gaia_model).predict(table, preset="gaia_dr9")


def test_a_preset_chunk_that_fails_on_bad_input_does_not_say_rerun(gaia_model, green_stars, tmp_path):
    """A dataset whose third file holds fluxes where magnitudes belong: the run stops there, saying the input
    must change (rerunning the same command would only fail again)."""
    from photofeh.scale.predict_catalog import ChunkError, PredictOptions, predict_catalog

    folder = tmp_path / "ds"
    folder.mkdir()
    gaia_source(green_stars.iloc[:200]).to_parquet(folder / "a.parquet")
    gaia_source(green_stars.iloc[200:400]).to_parquet(folder / "b.parquet")
    table = gaia_source(green_stars.iloc[400:600])
    table["phot_g_mean_mag"] = 10 ** (-0.4 * (table["phot_g_mean_mag"] - 25.6874))  # fluxes (e-/s)
    table.to_parquet(folder / "c.parquet")
    opts = PredictOptions(chunk_rows=200, preset="gaia_dr3", progress=False)
    with pytest.raises(ChunkError) as info:
        predict_catalog(gaia_model, folder, tmp_path / "pred", opts, log=lambda s: None)
    assert "chunk 2" in str(info.value) and "input must change" in str(info.value) and "rerun" not in str(info.value)


def test_split_seed_gives_the_benchmarks_split_and_needs_source_id(green_stars, tmp_path, capsys):
    from photofeh.cli import build_parser, main
    from photofeh.io.real_samples import green2020_test_mask, hashed_test_mask
    from photofeh.model.train import TrainConfig, train

    assert "--split-seed" in build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    ids = green_stars["source_id"].to_numpy()
    np.testing.assert_array_equal(hashed_test_mask(ids, 20201125, 0.3), green2020_test_mask(ids))
    shuffled = green_stars.sample(frac=1.0, random_state=1)
    cfg = TrainConfig(features=GAIA_FEATURES, labels=list(LABELS), label_columns=LABELS, deredden=False, epochs=1,
                      baseline_rounds=0, threads=1, split=(0.56, 0.14, 0.30), split_seed=20201125)
    train(shuffled, cfg, tmp_path / "run", log=lambda s: None)
    split = pd.read_parquet(tmp_path / "run" / "split.parquet")
    np.testing.assert_array_equal(split["split"] == "test", green2020_test_mask(split["source_id"].to_numpy()))
    # a table without source_id cannot be split by it: one clear line
    green_stars.drop(columns="source_id").iloc[:3000].to_parquet(tmp_path / "noid.parquet")
    (tmp_path / "c.toml").write_text('[data]\nfeatures = ["gaia_bp-gaia_rp", "gaia_g-gaia_rp", "gaia_g"]\n'
                                     'labels = ["feh"]\nlabel_columns = { feh = "feh_spec" }\nderedden = false\n'
                                     'classify = false\n')
    assert main(["train", str(tmp_path / "noid.parquet"), "--config", str(tmp_path / "c.toml"), "--split-seed", "7",
                 "--out", str(tmp_path / "run2"), "--epochs", "1", "--baseline-rounds", "0", "--quiet"]) == 1
    assert "no source_id column" in capsys.readouterr().err and not (tmp_path / "run2").exists()


def test_colour_columns_stand_for_their_bands():
    """A table of colours (the SEGUE sample) gives the features a table of magnitudes gives, observed or
    dereddened with the difference of the two bands' coefficients."""
    from photofeh.bands import BANDS
    from photofeh.model.features import feature_matrix, required_columns

    rng = np.random.default_rng(1)
    mags = {b: rng.uniform(15, 20, 50) for b in ("sdss_u", "sdss_g", "sdss_r")}
    ebv = rng.uniform(0, 0.3, 50)
    features = ["sdss_u-sdss_g", "sdss_g-sdss_r"]
    colours = {f: mags[f.split("-")[0]] - mags[f.split("-")[1]] for f in features}
    for deredden in (False, True):
        X_mag, _ = feature_matrix({**mags, "ebv": ebv}, features, deredden_bands=deredden)
        X_col, ok = feature_matrix({**colours, "ebv": ebv}, features, deredden_bands=deredden)
        np.testing.assert_allclose(X_col, X_mag, atol=2e-6)
        assert ok.all()
    assert required_columns(features, deredden=False, available=colours) == features
    assert required_columns(features, deredden=False) == ["sdss_u", "sdss_g", "sdss_r"]
    X, _ = feature_matrix({**colours, "ebv": ebv}, features[:1])
    r = BANDS["sdss_u"].r_ebv - BANDS["sdss_g"].r_ebv
    np.testing.assert_allclose(X[:, 0], colours["sdss_u-sdss_g"] - r * ebv, rtol=1e-6)
    with pytest.raises(ValueError, match="Gaia extinction depends"):
        feature_matrix({"gaia_bp-gaia_rp": np.ones(3), "ebv": np.zeros(3)}, ["gaia_bp-gaia_rp"])


@pytest.mark.filterwarnings("error")
def test_a_segue_colour_model_predicts_on_sdss_magnitudes(tmp_path):
    """Trained on the SEGUE colours (no magnitudes), the model applies to an SSPP table of magnitudes."""
    from photofeh.io.presets import apply_preset
    from photofeh.io.readers import read_columns
    from photofeh.model.predict import load_model
    from photofeh.model.train import load_config, train

    segue, _ = apply_preset(read_columns(real_sample(SEGUE_DR17)), "segue_colours", "segue")
    assert pd.Series(segue["source_id"]).is_unique and len(segue["source_id"]) == 19_530
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "segue.toml")
    cfg.epochs, cfg.baseline_rounds, cfg.threads = 2, 0, 1
    train(pd.DataFrame(segue), cfg, tmp_path / "run", log=lambda s: None)
    model = load_model(tmp_path / "run")
    sspp = model.predict(read_columns(real_sample(SSPP_DR9)), preset="sspp")
    assert np.isfinite(sspp["feh"]).sum() > 50 and sspp.keys() >= {"source_id", "feh", "feh_err"}


@pytest.mark.filterwarnings("error")
def test_green2020_trains_warning_free_with_a_parallax_label(green_stars, tmp_path):
    """The RuntimeWarning training on green2020 printed: the training domain's label range took np.nanmin over
    M_G, a label learned from parallaxes that has no column (all NaN); such a label now has no range (no
    extrapolation check), without a warning."""
    from photofeh.model.train import TrainConfig, train

    cfg = TrainConfig(features=[f for f in GAIA_FEATURES if not f.startswith("parallax")],
                      labels=[*LABELS, "mabs_gaia_g"], label_columns=LABELS, parallax_labels=["mabs_gaia_g"],
                      deredden=False, epochs=1, baseline_rounds=0, threads=1, parallax_zero_point=-0.029)
    train(green_stars, cfg, tmp_path / "run", log=lambda s: None)
    domain = json.loads((tmp_path / "run" / "model" / "model.json").read_text())["domain"]
    assert domain["label_lo"][-1] is None and domain["label_lo"][0] is not None


def test_every_band_states_its_magnitude_system_and_other_systems_are_converted_or_refused(tmp_path):
    from photofeh.bands import AB_MINUS_VEGA, BANDS, to_band_system
    from photofeh.io.presets import apply_preset, load_mapping
    from photofeh.schema import bands_markdown

    systems = {b.survey: b.system for b in BANDS.values()}
    assert systems == {"sdss": "AB", "ps1": "AB", "cfis": "AB", "gaia": "Vega", "tmass": "Vega", "wise": "Vega",
                       "kic": "AB"}
    assert all(b.system_ref and any(c.isdigit() for c in b.system_ref) for b in BANDS.values())  # cited
    doc = (Path(__file__).resolve().parents[1] / "docs" / "schema.md").read_text()
    assert bands_markdown() in doc
    # an AB-magnitude WISE table, said so in its mapping, is read in WISE's Vega system (Jarrett et al. 2011)
    (tmp_path / "wise_ab.toml").write_text('[columns]\nwise_w1 = "W1_AB"\nwise_w2 = "W2_AB"\n'
                                           '[systems]\nwise_w1 = "AB"\nwise_w2 = "AB"\n')
    cols, _ = apply_preset({"W1_AB": np.array([15.0, 99.0]), "W2_AB": np.array([15.5, 16.0])},
                           load_mapping(tmp_path / "wise_ab.toml"), "wise.fits")
    np.testing.assert_allclose(cols["wise_w1"], [15.0 - 2.699, np.nan])
    np.testing.assert_allclose(cols["wise_w2"], [15.5 - 3.339, 16.0 - 3.339])
    assert AB_MINUS_VEGA["gaia_g"] == pytest.approx(25.8010 - 25.6874)  # Riello et al. 2021's zero points
    np.testing.assert_allclose(to_band_system("gaia_g", [17.1136], "AB"), [17.0])
    np.testing.assert_allclose(to_band_system("gaia_g", [17.0], "Vega"), [17.0])
    # no published offset for a "Vega" SDSS table: refused, naming the band
    (tmp_path / "sdss_vega.toml").write_text('[columns]\nsdss_g = "g"\n[systems]\nsdss_g = "Vega"\n')
    with pytest.raises(ValueError, match="sdss_g magnitudes given in Vega"):
        apply_preset({"g": np.array([18.0])}, load_mapping(tmp_path / "sdss_vega.toml"), "sdss.fits")
    (tmp_path / "bad.toml").write_text('[columns]\nsdss_g = "g"\n[systems]\nsdss_g = "ST"\n')
    with pytest.raises(ValueError, match=r"\[systems\]"):
        load_mapping(tmp_path / "bad.toml")


def test_evaluate_reads_a_table_as_the_model_was_trained_or_in_schema_names(green_stars, tmp_path, capsys):
    """train reads the HDF5 file through the config's table_preset; evaluate reads it the same way, takes a
    table already in schema names as it is, and says which column a table lacks for the preset."""
    from photofeh.cli import main

    (tmp_path / "c.toml").write_text('[data]\ntable_preset = "green2020"\nfeatures = ["gaia_bp-gaia_rp", '
                                     '"gaia_g-gaia_rp", "gaia_g"]\nlabels = ["feh"]\n'
                                     'label_columns = { feh = "feh_spec" }\nderedden = false\nclassify = false\n')
    h5 = str(real_sample(GREEN2020))
    run = str(tmp_path / "run")
    assert main(["train", h5, "--config", str(tmp_path / "c.toml"), "--out", run, "--epochs", "1",
                 "--baseline-rounds", "0", "--quiet"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    green_stars.to_parquet(tmp_path / "schema.parquet")
    for table in (h5, str(tmp_path / "schema.parquet")):
        assert main(["evaluate", run, table, "--no-figures"]) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out.split("\nmetrics and figures")[0])["n_usable"] > 1000
    pd.DataFrame({"gaia_g": [15.0]}).to_parquet(tmp_path / "other.parquet")
    assert main(["evaluate", run, str(tmp_path / "other.parquet"), "--preset", "green2020", "--split", "all"]) == 1
    assert "preset 'green2020' needs column 'mag'" in capsys.readouterr().err
