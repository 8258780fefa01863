"""configs/cfis-u.toml: the default model plus CFIS u where a star has it (issue 26's mock target).

benchmarks/bench_mock_target.py measures it; these tests check what its rows assume: the file is default.toml
with one feature more (and the missing-photometry mode that feature needs), the feature exists exactly inside
the CFIS footprint, and one `train` gives every star an estimate, in the footprint or not.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from photofeh.model.predict import load_model
from photofeh.model.train import load_config, prepare, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_cfis_config_is_the_default_plus_cfis_u():
    default, cfis = asdict(load_config(CONFIGS / "default.toml")), asdict(load_config(CONFIGS / "cfis-u.toml"))
    changed = {k for k in default if default[k] != cfis[k]}
    assert changed == {"features", "missing", "group_dropout"}
    assert cfis["features"] == [*default["features"], "cfis_u-sdss_g"]
    assert (cfis["missing"], cfis["group_dropout"]) == ("mask", 0.0)


def test_cfis_feature_inside_its_footprint_only(spec_catalog):
    cfg = load_config(CONFIGS / "cfis-u.toml")
    p = prepare(spec_catalog, cfg)
    cfis = p.X[:, cfg.features.index("cfis_u-sdss_g")]
    # the mock's CFIS footprint, b >= 25 and dec >= 30 (photofeh.simulate.observe.DEFAULT_FOOTPRINTS["cfis"])
    inside = (spec_catalog["b"].to_numpy() >= 25) & (spec_catalog["dec"].to_numpy() >= 30)
    bright = spec_catalog["sdss_r"].to_numpy() < 19
    assert not np.isfinite(cfis[~inside]).any()
    assert np.isfinite(cfis[inside & bright]).mean() > 0.95  # CFIS u reaches ~24: every bright star has it
    assert 0.2 < inside[bright].mean() < 0.8  # both kinds of star are in the sample
    # a star outside the footprint keeps the default model's features: no star the default takes is lost
    assert p.usable[prepare(spec_catalog, load_config(CONFIGS / "default.toml")).usable].all()


def test_cfis_config_trains_and_predicts_inside_and_outside(spec_catalog, tmp_path):
    cfg = load_config(CONFIGS / "cfis-u.toml")
    cfg.epochs, cfg.baseline_rounds = 2, 0
    table = spec_catalog.iloc[:6000]
    train(table, cfg, tmp_path / "run", log=lambda s: None)
    out = load_model(tmp_path / "run" / "model").predict(table)
    has_cfis = np.isfinite(table["cfis_u"].to_numpy())
    usable = prepare(table, load_config(CONFIGS / "default.toml")).usable
    for where in (has_cfis & usable, ~has_cfis & usable):
        assert where.sum() > 500
        assert np.isfinite(out["feh"][where]).all() and (out["feh_err"][where] > 0).all()
