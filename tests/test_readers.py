"""Reading catalogues in every format and mapping survey columns onto the schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest
from astropy.table import Table
from conftest import KEPLER_GIANTS, SSPP_DR9, real_sample
from hypothesis import given, settings
from hypothesis import strategies as st

from photofeh.io.presets import MAGNITUDE_SENTINELS, apply_preset, load_mapping
from photofeh.io.readers import CatalogReadError, iter_table, read_columns
from photofeh.simulate import MockSurveyConfig, simulate

NUMERIC = ["source_id", "ra", "dec", "ebv", "sdss_u", "sdss_g_err", "gaia_g", "parallax", "feh_true", "feh_spec"]


@pytest.fixture(scope="module")
def formats(tmp_path_factory) -> dict[str, Path]:
    """The same 2,000 mock stars written as Parquet, FITS, CSV, ECSV, VOTable and HDF5."""
    d = tmp_path_factory.mktemp("formats")
    simulate(MockSurveyConfig(n_stars=2_000, seed=8), d / "m.parquet")
    simulate(MockSurveyConfig(n_stars=2_000, seed=8), d / "m.fits")
    t = Table.read(d / "m.parquet")[NUMERIC]
    pcsv.write_csv(pa.table({c: np.asarray(t[c]) for c in NUMERIC}), d / "m.csv")
    t.write(d / "m.ecsv")
    t.write(d / "m.vot", format="votable")
    t.write(d / "m.h5", path="stars", serialize_meta=False)
    return {p.suffix: p for p in d.iterdir()}


def test_every_format_gives_identical_arrays(formats):
    ref = read_columns(formats[".parquet"], NUMERIC)
    for ext, path in formats.items():
        got = read_columns(path, NUMERIC)
        for c in NUMERIC:
            # text formats read float32 columns back as float64: compare at the stored precision
            same = np.asarray(got[c]).astype(ref[c].dtype)
            assert np.array_equal(same, ref[c], equal_nan=True), (ext, c)


def test_chunks_reassemble_the_table(formats):
    for ext in (".fits", ".parquet", ".csv", ".h5"):
        chunks = list(iter_table(formats[ext], ["source_id", "gaia_g"], chunk_size=300))
        assert all(len(ch["source_id"]) <= 300 for ch in chunks)
        ids = np.concatenate([ch["source_id"] for ch in chunks])
        assert np.array_equal(ids, read_columns(formats[".parquet"], ["source_id"])["source_id"])


def test_chunks_start_anywhere_with_exact_sizes(formats, tmp_path: Path):
    """Chunk k holds rows [k c, (k+1) c) whatever the file's row groups: what resuming relies on."""
    import pyarrow.parquet as pq

    ids = read_columns(formats[".parquet"], ["source_id"])["source_id"]
    table = pq.read_table(formats[".parquet"], columns=["source_id"])
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=170)  # groups straddle the chunks
    (tmp_path / "ds").mkdir()
    for k, s in enumerate(range(0, len(ids), 700)):
        pq.write_table(table.slice(s, 700), tmp_path / "ds" / f"part-{k}.parquet", row_group_size=230)
    paths = [formats[e] for e in (".fits", ".parquet", ".csv", ".h5", ".vot")]
    for path in (*paths, tmp_path / "groups.parquet", tmp_path / "ds"):
        for start in (0, 300, 1234, 1999, 2000):
            chunks = list(iter_table(path, ["source_id"], chunk_size=300, start=start))
            sizes = [len(ch["source_id"]) for ch in chunks]
            assert all(n == 300 for n in sizes[:-1]) and (not sizes or 0 < sizes[-1] <= 300), (path, start)
            got = np.concatenate([ch["source_id"] for ch in chunks]) if chunks else ids[:0]
            assert np.array_equal(got, ids[start:]), (path, start)


def test_partitioned_parquet_dataset(formats, tmp_path: Path):
    import pyarrow.parquet as pq

    table = pq.read_table(formats[".parquet"], columns=["source_id", "b"])
    table = table.append_column("north", pa.array(np.asarray(table["b"]) > 0))
    pq.write_to_dataset(table, tmp_path / "ds", partition_cols=["north"])
    got = read_columns(tmp_path / "ds", ["source_id"])
    assert sorted(got["source_id"]) == sorted(table["source_id"].to_pylist())


def test_bad_files_give_clear_errors(tmp_path: Path, formats):
    with pytest.raises(CatalogReadError, match="does not exist"):
        read_columns(tmp_path / "nope.fits")
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(CatalogReadError, match="empty.parquet is empty"):
        read_columns(tmp_path / "empty.parquet")
    (tmp_path / "junk.fits").write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CatalogReadError, match="junk.fits"):
        read_columns(tmp_path / "junk.fits")
    with pytest.raises(CatalogReadError, match=r"missing column\(s\) \['psfMag_q'\]"):
        read_columns(formats[".fits"], ["psfMag_q"])
    truncated = tmp_path / "cut.parquet"
    truncated.write_bytes(formats[".parquet"].read_bytes()[:3000])
    with pytest.raises(CatalogReadError, match="cut.parquet"):
        read_columns(truncated)


def test_real_sspp_table_through_its_preset():
    raw = read_columns(real_sample(SSPP_DR9))
    out, report = apply_preset(raw, "sspp", "sspp_dr9_sample.fits")
    assert len(out["feh_spec"]) == 100  # no row dropped
    assert report["feh_spec"] == int(np.sum(raw["FEH_ADOP"] == -9999)) == 92
    ok = np.isfinite(out["feh_spec"])
    assert np.all((out["feh_spec"][ok] > -4.5) & (out["feh_spec"][ok] < 1.0))
    # magnitudes from g and the colours: u = g + (u-g), z = g - (g-r) - (r-i) - (i-z)
    i = int(np.flatnonzero(raw["UG"] > -100)[0])
    assert out["sdss_u"][i] == pytest.approx(raw["G_MAG"][i] + raw["UG"][i], abs=1e-5)
    assert out["sdss_z"][i] == pytest.approx(raw["G_MAG"][i] - raw["GR"][i] - raw["RI"][i] - raw["IZ"][i],
                                             abs=1e-5)


def test_real_kepler_giants_through_their_preset():
    raw = read_columns(real_sample(KEPLER_GIANTS))
    out, report = apply_preset(raw, "kepler_huber17")
    assert len(out["logg_spec"]) == 2236
    assert 2.2 < np.nanmedian(out["logg_spec"]) < 3.0  # mostly red giants
    assert np.nanmedian(out["parallax"]) > 0
    assert report["kic_g"] == int(np.sum(np.isin(np.asarray(raw["gmag"], float), MAGNITUDE_SENTINELS)))


def test_gaia_preset_fluxes_and_flux_over_error():
    """G = -2.5 log10(1e5) + 25.6874 = 13.1874; sigma = sqrt((1.0857/100)^2 + 0.0027553^2) = 0.011202."""
    raw = {"source_id": np.array([1, 2, 3]), "ra": np.zeros(3), "dec": np.zeros(3),
           "phot_g_mean_flux": np.array([1e5, 0.0, -5.0]), "phot_g_mean_flux_over_error": np.array([100.0, 0, 5]),
           "phot_bp_mean_mag": np.array([13.5, np.nan, 20.0]), "phot_rp_mean_mag": np.array([12.8, 99.0, 19.0]),
           "parallax": np.array([1.0, np.nan, 0.1]), "parallax_error": np.array([0.02, np.nan, 0.5])}
    out, report = apply_preset(raw, "gaia_dr3")
    assert out["gaia_g"][0] == pytest.approx(13.1874, abs=1e-4)
    assert np.isnan(out["gaia_g"][1:]).all()
    assert out["gaia_g_err"][0] == pytest.approx(0.011202, abs=2e-6)
    assert np.isnan(out["gaia_rp"][1]) and report["gaia_rp"] == 1


def test_cfis_megapipe_sextractor_catalogue(tmp_path: Path):
    """A SExtractor FITS_LDAC-style table as MegaPipe writes it: 99.0 marks a non-detection."""
    from astropy.table import Table

    t = Table({"NUMBER": np.arange(1, 4, dtype=np.int32), "ALPHA_J2000": [150.1, 150.2, 150.3],
               "DELTA_J2000": [2.1, 2.2, 2.3], "MAG_AUTO": np.array([21.3, 99.0, 23.9], np.float32),
               "MAGERR_AUTO": np.array([0.02, 99.0, 0.15], np.float32), "FLAGS": np.array([0, 4, 3], np.int16)})
    path = tmp_path / "CFIS.150.2.u.cat.fits"
    t.write(path)
    out, report = apply_preset(read_columns(path), "cfis_megapipe", path.name)
    np.testing.assert_allclose(out["cfis_u"], [21.3, np.nan, 23.9], rtol=1e-6)
    assert report["cfis_u"] == 1 and report["cfis_u_err"] == 1
    np.testing.assert_array_equal(out["cfis_flags"], [0, 4, 3])
    with pytest.raises(KeyError, match="MAG_AUTO"):
        apply_preset({k: v for k, v in read_columns(path).items() if k != "MAG_AUTO"}, "cfis_megapipe", path.name)


def test_user_mapping_file(tmp_path: Path):
    f = tmp_path / "map.toml"
    f.write_text('base = "ps1_meanobject"\n[columns]\nps1_g = "g_psf"\n')
    preset = load_mapping(f)
    raw = {"objID": np.arange(3), "raMean": np.zeros(3), "decMean": np.zeros(3), "g_psf": np.array([18.0, -999, 20]),
           **{f"{b}MeanPSFMag": np.full(3, 19.0) for b in "rizy"},
           **{f"{b}MeanPSFMagErr": np.full(3, 0.01) for b in "grizy"}}
    out, report = apply_preset(raw, preset)
    assert np.isnan(out["ps1_g"][1]) and report["ps1_g"] == 1
    with pytest.raises(KeyError, match="yMeanPSFMag"):
        apply_preset({k: v for k, v in raw.items() if k != "yMeanPSFMag"}, preset, "my.fits")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                          st.sampled_from([99.0, 999.0, -9999.0, -999.0])), min_size=1, max_size=40))
def test_sentinels_become_nan_and_no_row_is_lost(values):
    a = np.asarray(values, dtype=np.float64)
    raw = {"objID": np.arange(a.size), "ra": np.zeros(a.size), "dec": np.zeros(a.size),
           **{f"psfMag_{b}": a for b in "ugriz"}, **{f"psfMagErr_{b}": np.abs(a) for b in "ugriz"}}
    # sentinels, NaN/inf and values no survey magnitude can take (photofeh.io.validation: -2 <= m <= 35)
    bad = np.isin(a, MAGNITUDE_SENTINELS) | ~np.isfinite(a) | (a < -2.0) | (a > 35.0)
    try:
        out, report = apply_preset(raw, "sdss_photoobj")
    except ValueError as exc:  # a clean refusal is fine when the values cannot be magnitudes
        assert "not a magnitude" in str(exc)
        sentinel = np.isin(a, MAGNITUDE_SENTINELS) | ~np.isfinite(a)  # the unit check looks past these only
        assert not -5.0 < np.median(a[~sentinel]) < 40.0
        return
    assert out["sdss_g"].size == a.size
    assert np.array_equal(np.isnan(out["sdss_g"]), bad)
    assert report["sdss_g"] == int((bad & ~np.isnan(a)).sum())
    assert np.array_equal(out["sdss_g"][~bad], a[~bad])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=60), st.sampled_from([".parquet", ".fits", ".csv"]))
def test_duplicate_ids_are_counted_never_dropped(tmp_path_factory, ids, ext):
    """Duplicated source ids read from a file: every row comes back and the duplicates are counted."""
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.size
    t = Table({"source_id": ids, "ra": np.linspace(0, 359, n), "dec": np.zeros(n),
               "phot_g_mean_mag": np.full(n, 17.0), "phot_bp_mean_mag": np.full(n, 17.4),
               "phot_rp_mean_mag": np.full(n, 16.5), "parallax": np.ones(n), "parallax_error": np.full(n, 0.1)})
    path = tmp_path_factory.mktemp("dup") / f"gaia{ext}"
    t.write(path, format="csv" if ext == ".csv" else None)
    out, report = apply_preset(read_columns(path), "gaia_dr3", path.name)
    assert np.array_equal(out["source_id"], ids)
    assert report["duplicate source_id"] == n - np.unique(ids).size


def test_wrong_units_and_duplicate_ids_are_reported():
    base = {"objID": np.array([1, 2, 2]), "ra": np.array([10.0, 20.0, 30.0]), "dec": np.array([0.0, 1.0, 2.0]),
            **{f"psfMag_{b}": np.array([18.0, 19.0, 20.0]) for b in "ugriz"},
            **{f"psfMagErr_{b}": np.full(3, 0.02) for b in "ugriz"}}
    out, report = apply_preset(base, "sdss_photoobj")
    assert report["duplicate source_id"] == 1 and out["source_id"].size == 3
    with pytest.raises(ValueError, match="wrong units"):
        apply_preset({**base, "ra": np.radians(base["ra"]) - 1.0}, "sdss_photoobj", "radians.fits")
    with pytest.raises(ValueError, match="not a magnitude"):
        apply_preset({**base, "psfMag_g": np.array([1e4, 2e4, 3e4])}, "sdss_photoobj", "fluxes.fits")


@settings(max_examples=25, deadline=None)
@given(cut=st.floats(min_value=0.0, max_value=0.98), ext=st.sampled_from([".parquet", ".fits", ".csv", ".h5"]))
def test_truncated_files_fail_cleanly_or_read_whole_rows(formats, tmp_path_factory, cut, ext):
    """A file cut anywhere gives a CatalogReadError naming it, or (text formats) only complete rows."""
    data = formats[ext].read_bytes()
    path = tmp_path_factory.mktemp("cut") / f"cut{ext}"
    path.write_bytes(data[: int(cut * len(data))])
    try:
        got = read_columns(path, ["source_id", "ra"])
    except CatalogReadError as exc:
        assert path.name in str(exc)
        return
    ref = read_columns(formats[".parquet"], ["source_id", "ra"])
    n = got["source_id"].size
    assert n <= ref["source_id"].size
    # whatever was read is a prefix of the real table (a partial last CSV line may fail to parse above)
    assert np.array_equal(np.asarray(got["source_id"][: n - 1], np.int64), ref["source_id"][: n - 1])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.text(min_size=1, max_size=6), st.floats(allow_nan=False, width=32)), min_size=1,
                max_size=20))
def test_wrong_types_give_a_named_error_or_numbers(tmp_path_factory, values):
    """A magnitude column holding text: every entry parses as a number, or an error names the file
    (and, from the preset, the column)."""
    n = len(values)
    path = tmp_path_factory.mktemp("types") / "photoobj.csv"
    import pandas as pd

    pd.DataFrame({"objID": np.arange(n), "ra": np.ones(n), "dec": np.ones(n),
                  **{f"psfMag_{b}": np.full(n, 18.0) for b in "uriz"}, "psfMag_g": [str(v) for v in values],
                  **{f"psfMagErr_{b}": np.full(n, 0.02) for b in "ugriz"}}).to_csv(path, index=False)
    try:
        raw = read_columns(path)
    except CatalogReadError as exc:  # e.g. a '\r' inside a value breaks the CSV row: refused, file named
        assert path.name in str(exc)
        return
    try:
        out, _ = apply_preset(raw, "sdss_photoobj", str(path))
    except ValueError as exc:
        assert "psfMag_g" in str(exc) and path.name in str(exc)
        return
    assert out["sdss_g"].size == n and out["sdss_g"].dtype == np.float64
