"""One extinction contract (issue 25): a model records whether its absolute magnitudes go with observed or
dereddened magnitudes, and distances apply the extinction exactly once.

The reference is the mock's own forward model (photofeh.simulate.observe.reddened: m = M + mu + A(band,
intrinsic BP-RP) E(B-V)), independent of the dereddening code the distances use. A model trained with
``deredden = true`` learns the intrinsic M; one trained with ``deredden = false`` and parallax labels learns
M + A from observed magnitudes (its inputs carry the reddening). Both must give the true distance at any
E(B-V); pairing the second with dereddened magnitudes (the bug of issue 25) puts a star at E(B-V) = 0.2 and
1 kpc at ~0.8 kpc in Gaia G.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from photofeh.bands import BANDS, extinction_coefficient
from photofeh.galaxy.distances import star_distances
from photofeh.simulate.observe import reddened

EBV_BINS = np.arange(0.0, 0.61, 0.1)


@pytest.fixture(scope="module")
def reddened_stars(spec_catalog) -> pd.DataFrame:
    """Mock stars with true distances and absolute magnitudes, re-observed through E(B-V) uniform in 0-0.6
    (noise-free photometry: the contract, not the model, is under test)."""
    rng = np.random.default_rng(25)
    s = spec_catalog.iloc[:6000]
    n = len(s)
    d = s["dist_kpc_true"].to_numpy(float)
    dm = 5 * np.log10(d * 100.0)
    ebv = rng.uniform(0.0, 0.6, n)
    bp_rp0 = (s["mabs_gaia_bp_true"] - s["mabs_gaia_rp_true"]).to_numpy(float)
    out = {"ra": s["ra"].to_numpy(float), "dec": s["dec"].to_numpy(float), "ebv": ebv, "dist_kpc_true": d}
    for b in BANDS:
        # bands the mock does not simulate (2MASS, WISE, KIC) get an intrinsic M of their own: any value works
        mabs = (s[f"mabs_{b}_true"] if f"mabs_{b}_true" in s else s["mabs_sdss_i_true"] - 1.0).to_numpy(float)
        m = reddened(b, mabs, dm, ebv, bp_rp0)
        out[b] = m
        out[f"{b}_err"] = np.full(n, 0.01)
        out[f"mabs_{b}_intrinsic"] = mabs
        out[f"mabs_{b}_observed"] = m - dm  # what a model fitted to observed magnitudes learns: M + A
    return pd.DataFrame(out)


def _ratio_by_ebv(stars: pd.DataFrame, band: str, reference: str, pair_with: str) -> np.ndarray:
    cols = {c: stars[c].to_numpy() for c in ("ra", "dec", "ebv", band, f"{band}_err", "gaia_bp", "gaia_rp")}
    cols[f"mabs_{band}"] = stars[f"mabs_{band}_{reference}"].to_numpy()
    cols[f"mabs_{band}_err"] = np.full(len(stars), 0.1)
    pos = star_distances(cols, band, absmag_reference={f"mabs_{band}": pair_with})
    ratio = pos["dist_kpc"] / stars["dist_kpc_true"].to_numpy()
    k = np.digitize(stars["ebv"].to_numpy(), EBV_BINS) - 1
    return np.array([np.median(ratio[k == j]) for j in range(EBV_BINS.size - 1)])


@pytest.mark.parametrize("band", list(BANDS))
@pytest.mark.parametrize("reference", ["intrinsic", "observed"])
def test_distances_apply_the_extinction_once(reddened_stars, band, reference):
    """Median d/d_true within 1% in every E(B-V) bin from 0 to 0.6, for both kinds of model, every band."""
    pair = "dereddened" if reference == "intrinsic" else "observed"
    medians = _ratio_by_ebv(reddened_stars, band, reference, pair)
    assert np.all(np.abs(medians - 1.0) < 0.01), (band, reference, medians)


def test_extinction_twice_is_caught(reddened_stars):
    """The bug of issue 25, reproduced: an M_G that holds the extinction paired with dereddened G puts stars
    too near by 10^(-A_G/5), ~19% at E(B-V) = 0.2 (A_G ~ 0.45 mag for a G dwarf): the test above would fail."""
    medians = _ratio_by_ebv(reddened_stars, "gaia_g", "observed", "dereddened")
    a_g = extinction_coefficient("gaia_g", np.array([0.8]))[0] * 0.25  # middle of the 0.2-0.3 bin, BP-RP ~ 0.8
    assert medians[2] == pytest.approx(10 ** (-a_g / 5), abs=0.03)
    assert medians[0] > medians[-1] + 0.3  # falls with E(B-V)


def test_observed_absmag_needs_no_reddening(reddened_stars):
    """A model whose M holds the extinction is mapped from the observed magnitude alone (no E(B-V) column)."""
    s = reddened_stars.iloc[:100]
    cols = {"ra": s["ra"].to_numpy(), "dec": s["dec"].to_numpy(), "gaia_g": s["gaia_g"].to_numpy(),
            "mabs_gaia_g": s["mabs_gaia_g_observed"].to_numpy(), "mabs_gaia_g_err": np.full(100, 0.1)}
    pos = star_distances(cols, "gaia_g", absmag_reference={"mabs_gaia_g": "observed"})
    np.testing.assert_allclose(pos["dist_kpc"], s["dist_kpc_true"], rtol=1e-6)
    with pytest.raises(KeyError, match="ebv"):
        star_distances(cols, "gaia_g")  # an intrinsic M needs the reddening


def test_models_record_their_absmag_reference():
    """model.json's absmag_reference, and the rule that fills it for folders made before it existed."""
    from photofeh.model.parallax_labels import absmag_reference

    labels = ["feh", "mabs_gaia_g", "mabs_sdss_r"]
    assert absmag_reference({"labels": labels, "parallax_labels": ["mabs_gaia_g"], "deredden": False}) == {
        "mabs_gaia_g": "observed", "mabs_sdss_r": "dereddened"}  # a label column is intrinsic
    assert absmag_reference({"labels": labels, "parallax_labels": ["mabs_gaia_g"], "deredden": True}) == {
        "mabs_gaia_g": "dereddened", "mabs_sdss_r": "dereddened"}
    assert absmag_reference({"labels": labels, "absmag_reference": {"mabs_sdss_r": "observed"}})[
        "mabs_sdss_r"] == "observed"
    with pytest.raises(ValueError, match="absmag_reference"):
        absmag_reference({"labels": labels, "absmag_reference": {"mabs_sdss_r": "apparent"}})


def test_map_reads_the_contract_from_the_predictions(reddened_stars, tmp_path, capsys):
    """`photofeh map` takes the reference from the predictions' provenance: the same stars, predicted by a
    'deredden = false' model, land at their true distances; labelled as intrinsic they would not."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photofeh.cli import main

    s = reddened_stars.iloc[:3000]
    n = len(s)
    table = {"source_id": np.arange(n), "ra": s["ra"], "dec": s["dec"], "gaia_g": s["gaia_g"],
             "gaia_bp": s["gaia_bp"], "gaia_rp": s["gaia_rp"], "ebv": s["ebv"],
             "mabs_gaia_g": s["mabs_gaia_g_observed"], "mabs_gaia_g_err": np.full(n, 0.05),
             "feh": np.full(n, -0.5), "feh_err": np.full(n, 0.1), "usable": np.ones(n, bool),
             "is_giant": np.zeros(n, bool)}
    result = {}
    for reference in ("observed", "dereddened"):
        t = pa.table({k: np.asarray(v) for k, v in table.items()})
        t = t.replace_schema_metadata({"photofeh_kind": "predictions", "model_absmag_reference":
                                       json.dumps({"mabs_gaia_g": reference})})
        pred = tmp_path / f"pred_{reference}.parquet"
        pq.write_table(t, pred)
        assert main(["map", str(pred), "--out", str(tmp_path / f"map_{reference}"), "--band", "gaia_g",
                     "--cell", "2", "--min-count", "1", "--no-figures", "--stars",
                     str(tmp_path / f"stars_{reference}.parquet")]) == 0
        capsys.readouterr()
        report = json.loads((tmp_path / f"map_{reference}" / "map.json").read_text())
        assert report["absmag_reference"]["bands"] == {"mabs_gaia_g": reference}
        stars = pd.read_parquet(tmp_path / f"stars_{reference}.parquet")
        result[reference] = np.median(stars["dist_kpc"] / s["dist_kpc_true"].to_numpy())
    assert result["observed"] == pytest.approx(1.0, abs=0.01)
    assert result["dereddened"] < 0.9  # the extinction removed twice


def test_map_refuses_a_table_without_positions_before_writing(tmp_path):
    """green2020-like predictions (no ra/dec): a clear message naming what is missing, and no map folder."""
    from photofeh.cli import main

    pd.DataFrame({"feh": [-0.5] * 20, "feh_err": [0.1] * 20, "usable": [True] * 20, "gaia_g": [15.0] * 20,
                  "mabs_gaia_g": [4.0] * 20, "mabs_gaia_g_err": [0.2] * 20, "ebv": [0.1] * 20}).to_parquet(
        tmp_path / "pred.parquet")
    out = tmp_path / "map"
    assert main(["map", str(tmp_path / "pred.parquet"), "--out", str(out), "--band", "gaia_g"]) != 0
    assert not out.exists()
