"""The Python API: tables in, the same kind of table out; docstring examples run."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pandas as pd


def test_docstring_examples_run(tmp_path: Path):
    import photofeh
    import photofeh.io.validation
    import photofeh.model.predict

    for module in (photofeh, photofeh.model.predict, photofeh.io.validation):
        result = doctest.testmod(module, extraglobs={"tmp_dir": tmp_path}, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_predict_returns_the_kind_of_table_it_was_given(quick_model, spec_catalog):
    """DataFrame -> DataFrame with the same index, astropy Table -> Table with units, dict -> dict; the
    numbers are the same; archive columns through preset=."""
    from astropy.table import Table

    import photofeh

    model = photofeh.load_model(quick_model)
    stars = spec_catalog.iloc[:200].copy()
    stars.index = pd.Index(np.arange(1000, 1200) * 7, name="my_id")
    as_df = model.predict(stars)
    as_table = model.predict(Table.from_pandas(stars))
    as_dict = model.predict({c: stars[c].to_numpy() for c in stars.columns})
    assert isinstance(as_df, pd.DataFrame) and as_df.index.equals(stars.index)
    assert isinstance(as_table, Table) and str(as_table["teff"].unit) == "K" and str(as_table["feh_err"].unit) == "dex"
    assert str(as_table["mabs_sdss_r"].unit) == "mag" and as_table["p_giant"].unit is None
    assert isinstance(as_dict, dict)
    for col in ("feh", "teff_err", "p_giant"):
        np.testing.assert_array_equal(as_df[col].to_numpy(), as_dict[col])
        np.testing.assert_array_equal(np.asarray(as_table[col]), as_dict[col])
    # the same stars under PS1 MeanObject / SDSS PhotoObj / Gaia names need a preset per archive; a mapping
    # from archive names onto the schema gives the same numbers
    renamed = stars.rename(columns={"sdss_u": "u_psf", "sdss_g": "g_psf"})
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        mapping = Path(tmp) / "m.toml"
        mapping.write_text('[columns]\n' + "\n".join(f'{c} = "{c}"' for c in stars.columns
                                                      if c not in ("sdss_u", "sdss_g", "phase", "pop"))
                           + '\nsdss_u = "u_psf"\nsdss_g = "g_psf"\n')
        via_preset = model.predict(renamed, preset=str(mapping))
    np.testing.assert_array_equal(via_preset["feh"].to_numpy(), as_dict["feh"])


def test_a_loaded_model_predicts_after_its_folder_is_gone(quick_model, spec_catalog, tmp_path):
    """The provenance's digest is taken when the model is loaded: deleting (or moving) the folder afterwards
    neither breaks predict nor changes the digest it reports (the benchmarks train into temporary folders)."""
    import shutil

    from photofeh.model.artifact import model_digest
    from photofeh.model.predict import load_model

    shutil.copytree(quick_model, tmp_path / "model")
    expected = model_digest(tmp_path / "model")
    model = load_model(tmp_path / "model")
    shutil.rmtree(tmp_path / "model")
    out = model.predict(spec_catalog.iloc[:100])
    assert out.attrs["model_digest"] == expected and out["usable"].sum() > 90
