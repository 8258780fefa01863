"""Population MDFs unfolded through a measured response (photofeh.galaxy.unfold).

The estimator here is the one that defeated deconvolution on real stars: per-star estimates shrunk toward
the labelled stars' mean by a factor that grows where the photometry says little, with stated errors that
are too small. The truth is known, so the fractions below -1, -1.5 and -2, the median and the width are
checked against it, and the same estimates deconvolved with their errors (XD) are shown to miss them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from photofeh.galaxy.mdf import BinnedEstimates, MixtureMDF, mdf_summary
from photofeh.galaxy.unfold import GridMDF, ResponseSample, unfold_mdf

M0 = -0.5  # the labelled stars' mean, toward which estimates shrink


def estimator(true: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shrinkage that grows toward the metal-poor end (the colours lose sensitivity), with noise, and errors
    stated as 60% of the real scatter (pulls of ~1.7)."""
    k = np.clip(0.85 + 0.25 * (true + 0.5), 0.35, 0.9)  # d(estimate)/d(true)
    noise = 0.12 + 0.08 * rng.random(true.size)
    est = M0 + k * (true - M0) + noise * rng.standard_normal(true.size)
    return est, 0.6 * noise


def halo_and_disk(n: int, rng: np.random.Generator) -> np.ndarray:
    """A population unlike the labelled one: 55% thick disk N(-0.6, 0.25), 45% halo N(-1.6, 0.5)."""
    halo = rng.random(n) < 0.45
    return np.where(halo, rng.normal(-1.6, 0.5, n), rng.normal(-0.6, 0.25, n))


def labelled(n: int, rng: np.random.Generator) -> np.ndarray:
    """The calibration stars: a SEGUE-like mix, metal-poor stars over-represented, down to -3.5."""
    return np.clip(rng.normal(-0.8, 0.7, n), -3.5, 0.5)


def _run(seed: int, n_target: int = 20_000, n_calib: int = 4000, n_boot: int = 30):
    rng = np.random.default_rng(seed)
    t_cal = labelled(n_calib, rng)
    response = ResponseSample(t_cal, *estimator(t_cal, rng))
    t = halo_and_disk(n_target, rng)
    est, err = estimator(t, rng)
    binned = BinnedEstimates()
    binned.add(est, err)
    return t, est, err, unfold_mdf(binned, response, n_boot=n_boot, seed=seed)


def test_unfolding_recovers_the_tail_where_deconvolution_erases_it():
    t, est, err, s = _run(seed=1)
    truth = {k: float(np.mean(t < float(k))) for k in ("-1", "-1.5", "-2")}
    # one response for all errors (matched to the selection's mix of errors) leaves out what each star's error
    # says of its noise: below -1.5, 0.217 against 0.264 (-18%; within 15% with a response per error stratum,
    # which on the mock survey widened the nearest |Z| slice by half, benchmarks/bench_mdf.py)
    for k, f in s["fraction_below"].items():
        assert f["value"] == pytest.approx(truth[k], rel=0.2, abs=2 * f["error"]), (k, f, truth[k])
    assert s["median"] == pytest.approx(np.median(t), abs=0.05)
    assert s["width"] == pytest.approx(np.std(t), rel=0.2)
    # the same estimates deconvolved with their errors: the tail below -2 is mostly gone
    xd = MixtureMDF.from_dict(mdf_summary(est, err, n_boot=0)["mixture"])
    assert float(xd.cdf(-2.0)) < 0.6 * truth["-2"]


def test_stated_errors_cover_the_truth_about_as_often_as_they_claim():
    """Over seeds, |fraction - truth| < error (one sigma) for 50-95% of the cases (68% nominal), and within
    two errors nearly always; fewer stars than above, so the errors are not negligible."""
    within1, within2 = [], []
    for seed in range(12):
        t, _, _, s = _run(seed=100 + seed, n_target=3000, n_calib=2000, n_boot=25)
        for k in ("-1", "-1.5"):
            f = s["fraction_below"][k]
            d = abs(f["value"] - np.mean(t < float(k)))
            within1.append(d < f["error"])
            within2.append(d < 2 * f["error"])
    assert 0.5 <= np.mean(within1) <= 0.95, np.mean(within1)
    assert np.mean(within2) >= 0.85, np.mean(within2)


def test_a_population_like_the_labelled_one_comes_back_as_itself():
    """Target and calibration stars from one distribution: the unfolded MDF is that distribution."""
    rng = np.random.default_rng(7)
    t_cal = labelled(4000, rng)
    response = ResponseSample(t_cal, *estimator(t_cal, rng))
    t = labelled(8000, rng)
    binned = BinnedEstimates()
    binned.add(*estimator(t, rng))
    s = unfold_mdf(binned, response, n_boot=0)
    assert s["median"] == pytest.approx(np.median(t), abs=0.05)
    assert s["width"] == pytest.approx(np.std(t), rel=0.1)
    assert s["fraction_below"]["-1"]["value"] == pytest.approx(np.mean(t < -1), rel=0.05)
    # 0.174 against 0.154 (+13%): the same pooled response as above
    assert s["fraction_below"]["-1.5"]["value"] == pytest.approx(np.mean(t < -1.5), rel=0.15)
    # below -2 the estimator's slope is 0.35-0.5 at 0.12-0.2 dex of noise: a resolution of ~0.4 dex in the
    # true [Fe/H], so the smoothed tail holds ~25% too many stars (measured over seeds: +20 to +30%)
    assert s["fraction_below"]["-2"]["value"] == pytest.approx(np.mean(t < -2), rel=0.35)


def test_grid_mdf_distribution_functions_and_json():
    """A uniform distribution over -1..0 on the grid: CDF, quantiles, moments of the uniform law."""
    from photofeh.galaxy.unfold import TRUE_GRID

    prob = ((TRUE_GRID > -1) & (TRUE_GRID < 0)).astype(float)
    g = GridMDF(prob / prob.sum())
    assert g.cdf(-0.5) == pytest.approx(0.5, abs=1e-9)
    assert g.median == pytest.approx(-0.5, abs=1e-9)
    assert g.std == pytest.approx(1 / np.sqrt(12), rel=1e-3)  # a uniform law of width 1
    assert float(np.trapezoid(g.pdf(np.linspace(-2, 1, 3001)), np.linspace(-2, 1, 3001))) == pytest.approx(1, abs=0.02)
    back = GridMDF.from_dict(g.to_dict())
    np.testing.assert_allclose(back.prob, g.prob, atol=1e-9)


def test_bad_input_is_refused():
    rng = np.random.default_rng(0)
    t = labelled(100, rng)
    response = ResponseSample(t, *estimator(t, rng))
    few = BinnedEstimates()
    few.add(np.array([-0.5] * 5), np.array([0.1] * 5))
    with pytest.raises(ValueError, match="at least"):
        unfold_mdf(few, response)
    ok = BinnedEstimates()
    ok.add(*estimator(t, rng))
    with pytest.raises(ValueError, match="too few"):
        unfold_mdf(ok, ResponseSample(t[:10], *estimator(t[:10], rng)))
    with pytest.raises(ValueError, match="n_boot"):
        unfold_mdf(ok, response, n_boot=-1)


def _two_kinds(n: int, blue_fraction: float, rng: np.random.Generator, true: np.ndarray | None = None):
    """Faint stars of two kinds with the same error: where the photometry says little the estimate leans toward
    what the colour says of the population (blue turn-off stars: the halo's -1.7; red dwarfs: the disk's -0.6),
    so at one true [Fe/H] the two kinds' estimates differ by up to a dex (0.7 dex on the mock survey)."""
    blue = rng.random(n) < blue_fraction
    t = np.where(blue, rng.normal(-1.6, 0.6, n), rng.normal(-0.6, 0.6, n)) if true is None else true
    centre = np.where(blue, -1.7, -0.6)
    est = centre + 0.5 * (t - centre) + 0.15 * rng.standard_normal(n)
    return t, est, np.full(n, 0.3), np.where(blue, 6200.0, 4700.0)


def test_calibration_stars_are_matched_to_the_selection_in_teff():
    """A calibration sample of mostly red dwarfs, a selection of blue turn-off stars only (the far |Z| slices of a
    map): matched in Teff, the unfolded median and width are the truth's; one response for the calibration's
    mix of kinds (no Teff) reads the selection 0.6 dex too metal-poor and 50% too wide."""
    rng = np.random.default_rng(3)
    response = ResponseSample(*_two_kinds(6000, 0.2, rng))
    t = rng.normal(-1.5, 0.45, 6000)
    _, est, err, teff = _two_kinds(t.size, 1.0, rng, true=t)
    with_teff, without = BinnedEstimates(), BinnedEstimates()
    with_teff.add(est, err, teff)
    without.add(est, err)
    s = unfold_mdf(with_teff, response, n_boot=0)
    assert s["calibration_matching"]["matched_on"] == "error and Teff"
    assert s["median"] == pytest.approx(np.median(t), abs=0.1)
    assert s["width"] == pytest.approx(np.std(t), rel=0.2)
    assert s["fraction_below"]["-2"]["value"] == pytest.approx(np.mean(t < -2), rel=0.3)
    blind = unfold_mdf(without, response, n_boot=0)
    assert blind["calibration_matching"]["matched_on"] == "error"
    assert abs(blind["median"] - np.median(t)) > 0.3 or abs(blind["width"] / np.std(t) - 1) > 0.3


def test_labels_errors_are_taken_out_of_the_response():
    """Calibration labels with 0.2-dex errors, a narrow population (0.2 dex) measured to 0.1 dex: against the noisy
    labels the response is both flatter (regression dilution) and wider than the true one, and unfolding through it
    gives a third too narrow a distribution (0.133 dex); with the labels' errors given, 0.176 dex, near the 0.185
    that the same calibration stars give with their true [Fe/H] as labels. What is left below 0.200 is the
    response's own 0.1-dex kernel in [Fe/H] (unfold.BANDWIDTH_TRUE), which an EMS smoothing of 0.05 dex partly
    hid (0.188 then); hence 15%."""
    rng = np.random.default_rng(4)
    t_cal = rng.normal(-0.8, 0.7, 5000)
    label = t_cal + 0.2 * rng.standard_normal(t_cal.size)
    e_cal = t_cal + 0.1 * rng.standard_normal(t_cal.size)
    sig = np.full(t_cal.size, 0.1)
    t = rng.normal(-0.4, 0.2, 8000)
    binned = BinnedEstimates()
    binned.add(t + 0.1 * rng.standard_normal(t.size), np.full(t.size, 0.1))
    known = unfold_mdf(binned, ResponseSample(label, e_cal, sig, true_err=np.full(t_cal.size, 0.2)), n_boot=0)
    assert known["width"] == pytest.approx(np.std(t), rel=0.15)
    assert known["median"] == pytest.approx(np.median(t), abs=0.05)
    ignored = unfold_mdf(binned, ResponseSample(label, e_cal, sig), n_boot=0)
    assert ignored["width"] < 0.75 * np.std(t), ignored["width"]


def test_binned_teff_counts_follow_add_and_merge():
    """The error x Teff side histogram counts each star once, in its Teff column (or the unknown one)."""
    a, b = BinnedEstimates(), BinnedEstimates()
    a.add(np.array([-0.5, -1.0, -2.0]), np.array([0.1, 0.1, 0.3]), np.array([4800.0, 6100.0, np.nan]))
    b.add(np.array([-0.2]), np.array([0.05]))
    m = a.merge(b)
    assert m.teff_counts.sum() == m.n == 4
    from photofeh.galaxy.mdf import TEFF_EDGES

    for teff in (4800.0, 6100.0):  # each in the column of its Teff bin
        assert m.teff_counts[:, np.searchsorted(TEFF_EDGES, teff, side="right")].sum() == 1
    assert m.teff_counts[:, -1].sum() == 2  # no Teff given (NaN, or none at all)
    np.testing.assert_array_equal(m.teff_counts.sum(axis=1), m.counts.sum(axis=0))


def _targeted_calibration(rng: np.random.Generator, n: int = 40_000):
    """Labelled stars targeted on a colour that moves the estimate at fixed [Fe/H]: ``c`` = 1 (half the
    population) is chosen 8 times as often as ``c`` = 0 and its estimates lie 0.3 dex higher, as where the
    photometry says little the estimate follows the colours. Returns the targeted stars' (true, estimate,
    error) and their targeting probabilities."""
    t = labelled(n, rng)
    c = rng.random(n) < 0.5
    p = np.where(c, 0.8, 0.1)
    chosen = rng.random(n) < p
    est, err = estimator(t, rng)
    est = est + 0.3 * c
    return t[chosen], est[chosen], err[chosen], p[chosen], c


def test_design_weights_undo_a_targeting_on_colour():
    """The targeted calibration stars are 89% c = 1 against the survey's 50%: unweighted, their response at
    fixed [Fe/H] sits 0.12 dex high and the unfolded survey comes out 0.25 dex metal-poor; weighted by
    1 / targeting probability (Horvitz & Thompson 1952) through model.json's ``selection_weight``, the median,
    width and fractions come back to the truth's (before the weights were read, the weighted case was the
    plain one)."""
    rng = np.random.default_rng(7)
    t_cal, e_cal, s_cal, p_cal, _ = _targeted_calibration(rng)
    t = halo_and_disk(20_000, rng)
    est, err = estimator(t, rng)
    est = est + 0.3 * (rng.random(t.size) < 0.5)  # the survey: every colour as the population has it
    binned = BinnedEstimates()
    binned.add(est, err)
    sample = {"true": t_cal.tolist(), "estimate": e_cal.tolist(), "sigma": s_cal.tolist()}
    plain = unfold_mdf(binned, ResponseSample.from_meta({"calibration_sample": sample}), n_boot=0)
    weighted = unfold_mdf(binned, ResponseSample.from_meta(
        {"calibration_sample": {**sample, "selection_weight": (1.0 / p_cal).tolist()}}), n_boot=0)
    truth = float(np.median(t))
    assert plain["median"] < truth - 0.15  # the bias the weights are for (-0.25 dex)
    # weighted: -0.05 (0.03 of it the method's own: through an untargeted calibration of the same size, -0.03)
    assert abs(weighted["median"] - truth) < min(0.08, abs(plain["median"] - truth) / 3)
    assert weighted["width"] == pytest.approx(np.std(t), rel=0.2)
    for k in ("-1", "-1.5"):
        assert weighted["fraction_below"][k]["value"] == pytest.approx(np.mean(t < float(k)), rel=0.2)


def test_training_keeps_the_inverse_targeting_probabilities(spec_catalog, tmp_path):
    """train's selection_column: each calibration entry carries 1 / its star's targeting probability (the mock's
    spec_target_probability: 0.02-0.07 for its colour boxes), and a probability outside (0, 1] is refused."""
    from photofeh.model.train import TrainConfig, train

    table = spec_catalog.iloc[:1200]
    cfg = TrainConfig(epochs=1, seed=0, batch_size=256, baseline_rounds=0, threads=1,
                      selection_column="spec_target_probability")
    train(table, cfg, tmp_path / "run", log=lambda s: None)
    meta = json.loads((tmp_path / "run" / "model" / "model.json").read_text())
    sample = meta["calibration_sample"]
    w = np.asarray(sample["selection_weight"])
    assert w.size == len(sample["true"])
    p = table["spec_target_probability"].to_numpy()
    assert 0.0 < p.min() and p.max() <= 0.2 + 1e-6  # the SEGUE-like boxes' rates (photofeh.simulate.spectro)
    assert w.min() >= 1 / 0.2 - 1e-3 and w.max() <= 1 / p.min() + 1e-3
    # the entries' weights are their own stars' (the labels found again among the table's)
    label = table["feh_spec"].to_numpy()
    found = [(j, np.flatnonzero(np.abs(label - v) < 1e-4)) for j, v in enumerate(sample["true"][:50])]
    found = [(j, rows[0]) for j, rows in found if rows.size == 1]  # labels that name one star
    assert len(found) >= 40
    j, i = np.array(found).T
    np.testing.assert_allclose(w[j], np.round(1.0 / p[i], 4), rtol=1e-3)
    bad = table.assign(spec_target_probability=np.where(np.arange(len(table)) == 3, 0.0, p))
    with pytest.raises(ValueError, match="selection_column"):
        train(bad, cfg, tmp_path / "bad", log=lambda s: None)


def test_unlabelled_stars_need_no_targeting_probability(spec_catalog):
    """A training table may hold stars without a spectroscopic [Fe/H] (a full mock: its truth labels such as
    mabs_sdss_r_true are everywhere): those never targeted have probability 0 (the mock's spec_target_probability
    outside the SEGUE-like boxes' magnitudes), or NaN where unknown. Only stars with an [Fe/H] label enter the
    calibration sample, so only theirs are checked (every row's were, which refused the full mock)."""
    from photofeh.model.train import TrainConfig
    from photofeh.model.train_data import prepare

    cfg = TrainConfig(selection_column="spec_target_probability")
    table = spec_catalog.iloc[:200].copy()
    unlabelled = np.arange(len(table)) < 20
    for col in ("feh_spec", "logg_spec", "teff_spec"):  # as simulate leaves the stars not in_spec
        table.loc[unlabelled, col] = np.nan
    p = table["spec_target_probability"].to_numpy(float).copy()
    p[:10], p[10:20] = 0.0, np.nan
    table["spec_target_probability"] = p
    prepared = prepare(table, cfg)
    np.testing.assert_array_equal(prepared.selection[20:], p[20:])
    with pytest.raises(ValueError, match="1 labelled row"):  # a labelled star's probability is still checked
        prepare(table.assign(spec_target_probability=np.where(np.arange(len(table)) == 25, 0.0, p)), cfg)


def test_train_command_takes_the_selection_column(spec_catalog, tmp_path, capsys):
    """`photofeh train --selection-column COLUMN` (what `make demo` passes) sets selection_column over the config's;
    a column the table lacks is one clear line and no run."""
    from photofeh.cli import build_parser, main
    from photofeh.cli.common import train_config

    args = build_parser().parse_args(["train", "t.parquet", "--out", "r", "--selection-column",
                                      "spec_target_probability"])
    assert train_config(args).selection_column == "spec_target_probability"
    spec_catalog.iloc[:300].to_parquet(tmp_path / "spec.parquet")
    assert main(["train", str(tmp_path / "spec.parquet"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--baseline-rounds", "0", "--quiet", "--selection-column", "targeting"]) == 1
    assert "selection_column 'targeting' is not a column" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_class_selection_stays_paired_after_non_finite_entries(monkeypatch):
    """mdf --giants exclude/only selects the calibration entries by the model's class. An entry whose estimate is
    not finite drops out of the response, so a class list of the full length no longer lined up: the selection
    was skipped (every entry kept). Each entry's class now travels with it."""
    import photofeh.io.readers as readers
    import photofeh.model.artifact as artifact
    from photofeh.galaxy.populations import response_of_predictions

    n = 40
    giant = np.arange(n) % 4 == 0  # every 4th entry a giant, true [Fe/H] -2 (dwarfs 0)
    sample = {"true": np.where(giant, -2.0, 0.0).tolist(), "estimate": np.where(giant, -2.0, 0.0).tolist(),
              "sigma": [0.1] * n, "giant": giant.tolist()}
    sample["estimate"][1] = float("nan")  # a dwarf without an estimate
    meta = {"calibration_sample": sample, "prior": {"kind": "labels"}}
    monkeypatch.setattr(readers, "table_metadata", lambda source: {"model_prior": "labels"})
    monkeypatch.setattr(artifact, "named_model_meta", lambda provenance: (meta, "model.json"))
    dwarfs, _ = response_of_predictions("pred", giants="exclude")
    giants, _ = response_of_predictions("pred", giants="only")
    assert dwarfs.true.size == 29 and np.all(dwarfs.true == 0.0)
    assert giants.true.size == 10 and np.all(giants.true == -2.0)
    everyone, _ = response_of_predictions("pred", giants="include")
    assert everyone.true.size == 39
    del sample["giant"]  # a model that kept no classes: the selection cannot be made, every entry stays
    assert response_of_predictions("pred", giants="exclude")[0].true.size == 39


def test_response_sample_columns_are_read_only():
    """The estimate bins and the posterior are cached per sample: a column changed in place would leave them
    stale, so the columns refuse it (a new sample, or a column replaced whole, recomputes them)."""
    rng = np.random.default_rng(0)
    t = rng.normal(-0.8, 0.5, 200)
    s = ResponseSample(t, t + 0.1 * rng.standard_normal(200), np.full(200, 0.1))
    before = s.by_estimate(np.ones((1, s.estimate.size)))
    with pytest.raises(ValueError, match="read-only"):
        s.estimate += 0.5
    s.estimate = s.estimate + 0.5  # replaced whole: recomputed
    after = s.by_estimate(np.ones((1, s.estimate.size)))
    assert not np.allclose(before, after)
    with pytest.raises(ValueError, match="read-only"):  # and the new column is read-only too
        s.estimate += 0.5
    # the posterior (labels with errors) is recomputed when a column it depends on is replaced
    e = ResponseSample(t, t + 0.1 * rng.standard_normal(200), np.full(200, 0.1), true_err=np.full(200, 0.2))
    old_post = e.posterior().copy()
    e.estimate = rng.permutation(e.estimate)  # the estimates no longer follow the labels
    fresh = ResponseSample(e.true, e.estimate, e.sigma, true_err=e.true_err).posterior()
    np.testing.assert_allclose(e.posterior(), fresh)
    assert not np.allclose(old_post, fresh)
