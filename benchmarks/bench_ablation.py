"""Ablation of issue 26, items 1, 2 and 4: label noise in the likelihood, pretraining on the mock and the seed
study's network, on real stars.

Rows, each trained by photofeh.model.train.train (what `photofeh train` runs) on the same fixed split:
- real labels only: label errors ignored (label_noise = false), no pretraining;
- + label noise: each label's error in the likelihood (green2020's from its covariances, the SEGUE colours'
  the SSPP's 0.10 dex: photofeh.model.label_noise.SSPP_FEH_ERR);
- + mock pretraining: the network pretrained on the calibrated mock ([pretrain]), then fine-tuned;
- both;
- seed network (ResDense, narrowed): the seed study's deep model (the "reference-resdense" preset: residual dense
  blocks, each ending in a feature-wise attention gate, U-Net-like skips; photofeh.model.networks.resdense) with
  causal heads (Teff, then [Fe/H] given Teff, then log g; photofeh.model.networks.heads), narrowed to
  SEED_NETWORK so that it trains on this shared 2-core CPU in minutes, with label noise on (the kept setting);
- seed network (ResDense, depth 12, 512 wide): the same at the seed study's depth and a 4x wider top, a check
  of whether the narrowing is what limits it;
- tuned LightGBM: the run's own baseline (photofeh.model.baselines.RunBaselines, tuned on the validation split),
  fitted on the training stars of the first row.
Samples: the SEGUE colours (configs/segue-colours.toml: the table of scripts/segue_schema_table.py, 20% test stars
by a seeded hash of source_id) with all labels and with 1,000 and 3,000 (training + validation stars drawn,
seeded, from the non-test stars; the same test stars), and green2020 (configs/green2020.toml, its fixed 30% test
split). Per row, on the test stars: the Gaussian-fit sigma of the [Fe/H] residuals (as in the seed study), the
robust sigma, the median bias in 0.5-dex bins of label [Fe/H] holding >= 30 stars, the pull width (robust
sigma of residual / sqrt(sigma^2 + the label error the row assumed^2)), training seconds and prediction rate.

--part population (issue 26 item 3): per sample, a labels-prior model (its per-star estimate, and `--prior flat`)
against one prior = "likelihood" model (its per-star and population columns): results/population_estimates.json.

Usage: nice -n 10 python benchmarks/bench_ablation.py [--samples segue green2020] [--sizes all 1000 3000]
       [--rows "seed network (ResDense, narrowed)"]   (only those rows, merged into the existing ablation.json)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT, green2020_path, segue_dr17_path, write_result

from photofeh.model.evaluate import gaussian_fit_sigma, robust_sigma
from photofeh.model.missing import network_inputs
from photofeh.model.networks import check_size
from photofeh.model.train import load_config, prepare, train
from photofeh.simulate.cache import cached_mock

sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

MIN_BIN = 30  # stars a 0.5-dex [Fe/H] bin needs to be quoted (issue 26's targets)
BIN_EDGES = np.arange(-4.0, 1.01, 0.5)
SPLIT_SEED = 20201125
# the mocks pretrained on: the SEGUE colours' a SEGUE-like spectroscopic sample with its SSPP-like labels, observed
# colours (the real file is not dereddened) and u error <= 0.05 (well-measured stars, as the real ones);
# green2020's a photometric mock of bright stars (Gaia G 10-17, |b| > 10 deg, LAMOST/APOGEE/GALAH-like) with its
# true labels (the mock's spectroscopic sample is SEGUE-like: faint, high latitude)
PRETRAIN = {
    "segue": {"n_stars": 40_000, "seed": 1, "spec_only": True, "labels": "spec", "observed_colours": True,
              "max_error": 0.05, "epochs": 8},
    "green2020": {"n_stars": 40_000, "seed": 1, "spec_only": False, "select_band": "gaia_g",
                  "mag_range": [10.0, 17.0], "min_abs_b": 10.0, "labels": "true", "epochs": 8},
}
# The seed study's network narrowed for the CPU: "reference-resdense" (photofeh.model.networks.PRESETS: 64 -> 2048
# features, depth 12, dropout 0.1; 25.2 million parameters on four colours) at nfeatures_max 256 and depth 6
# (encoder 64-128-256, decoder 128-64, each block gated by attention): 0.39 million parameters, 65x fewer, which
# trains 40 epochs on the 12,500 SEGUE training stars in about half a minute on one thread of the shared machine
# (results/ablation.json), where the full width would take tens of minutes per row (no GPU lent to these runs).
# SEED_NETWORK_WIDER: the seed's depth 12 (encoder 64-128-256-512-512-512, decoder 512-512-256-128-64), 4.7 million
# parameters.
SEED_NETWORK = {"name": "resdense", "nfeatures_init": 64, "nfeatures_max": 256, "depth": 6, "dropout": 0.1}
SEED_NETWORK_WIDER = {**SEED_NETWORK, "nfeatures_max": 512, "depth": 12}
SEED_ROW = "seed network (ResDense, narrowed)"
# row -> (label noise, mock pretraining, architecture (None: the config's) and heads (None: the config's))
ROWS = {"real labels only": (False, False, None, None), "+ label noise": (True, False, None, None),
        "+ mock pretraining": (False, True, None, None), "both": (True, True, None, None),
        SEED_ROW: (True, False, SEED_NETWORK, "causal"),
        "seed network (ResDense, depth 12, 512 wide)": (True, False, SEED_NETWORK_WIDER, "causal")}


def sample_table(name: str) -> tuple[pd.DataFrame, object]:
    if name == "segue":
        from segue_schema_table import segue_schema_table

        return segue_schema_table(segue_dr17_path()), load_config(ROOT / "configs" / "segue-colours.toml")
    from photofeh.cli.common import load_table

    # one network with the patience of its epochs: the rows compare training choices on one network (the
    # configuration's ensemble of 5 at 200 epochs is measured beside one network in bench_green2020.py)
    cfg = replace(load_config(ROOT / "configs" / "green2020.toml"), ensemble=1, patience=15)
    return load_table(str(green2020_path()), cfg.table_preset), cfg


def few_labels(table: pd.DataFrame, cfg, n: int, seed: int = 0) -> pd.DataFrame:
    """The fixed test stars and ``n`` others drawn at random (seeded): training + validation shrink, the test
    set stays."""
    from photofeh.io.real_samples import hashed_test_mask

    test = hashed_test_mask(table["source_id"].to_numpy(), cfg.split_seed, cfg.split[2])
    rest = np.flatnonzero(~test)
    keep = np.sort(np.concatenate([np.flatnonzero(test),
                                   np.random.default_rng(seed).choice(rest, min(n, rest.size), replace=False)]))
    return table.iloc[keep].reset_index(drop=True)


def label_errors_used(table: pd.DataFrame, cfg) -> np.ndarray:
    """The [Fe/H] label error the run's likelihood used for each star (0 where label noise is off)."""
    if not cfg.label_noise:
        return np.zeros(len(table))
    e = table[f"{cfg.label_columns['feh']}_err"].to_numpy(float) if f"{cfg.label_columns['feh']}_err" in table \
        else np.zeros(len(table))
    e = np.where(np.isfinite(e) & (e > 0), e, cfg.label_errors.get("feh", 0.0))
    return e


def scores(pred, err, y, e_label) -> dict:
    r = pred - y
    ok = np.isfinite(r)
    out = {"test stars": int(ok.sum()), "sigma (Gaussian fit)": round(gaussian_fit_sigma(r[ok])[1], 4),
           "robust sigma": round(robust_sigma(r[ok]), 4)}
    for lo in BIN_EDGES[:-1]:
        sel = ok & (y >= lo) & (y < lo + 0.5)
        if sel.sum() >= MIN_BIN:
            out[f"bias {lo:+.1f}..{lo + 0.5:+.1f}"] = round(float(np.median(r[sel])), 3)
    if err is not None:
        pull = r[ok] / np.sqrt(err[ok] ** 2 + e_label[ok] ** 2)
        out["pull width"] = round(robust_sigma(pull), 3)
        tail = ok & (y < -1.5)
        if tail.sum() >= MIN_BIN:
            out["pull width [Fe/H] < -1.5"] = round(robust_sigma(r[tail] / np.sqrt(err[tail] ** 2
                                                                                 + e_label[tail] ** 2)), 3)
    return out


def run_row(table: pd.DataFrame, cfg, workdir: Path, name: str, log) -> tuple[dict, dict | None]:
    """Train one row, score it on the run's test stars; with baselines, the LightGBM row too."""
    from photofeh.model.baselines import BASELINE_FOLDER, RunBaselines
    from photofeh.model.predict import load_model

    run = workdir / name.replace(" ", "_").replace("+", "p")
    shutil.rmtree(run, ignore_errors=True)
    train(table, cfg, run, log=log, mock_source=cached_mock)
    split = pd.read_parquet(run / "split.parquet")
    test = table[(split["split"] == "test").to_numpy()].reset_index(drop=True)
    model = load_model(run)
    t0 = time.perf_counter()
    out = model.predict(test)
    rate = len(test) / (time.perf_counter() - t0)
    y = test[cfg.label_columns["feh"]].to_numpy(float)
    meta = model.meta
    row = scores(np.asarray(out["feh"], float), np.asarray(out["feh_err"], float), y, label_errors_used(test, cfg))
    row["training stars"] = meta["training"]["n_train"]
    row["training seconds"] = meta["training"]["seconds"]
    row["network parameters"] = check_size(cfg.architecture, network_inputs(len(cfg.features), cfg.missing,
                                                                            cfg.noise_aware),
                                           cfg.labels, cfg.heads, cfg.classify, cfg.class_conditional)
    row["predict stars/s"] = round(rate)
    if meta["training"].get("pretraining"):
        row["pretraining seconds"] = meta["training"]["pretraining"]["seconds"]
    lgbm = None
    base = RunBaselines.load(run / BASELINE_FOLDER)
    if base is not None:
        X = prepare(test, cfg).X
        t0 = time.perf_counter()
        pred = base.predict(X)["LightGBM"]["feh"]
        lgbm = scores(pred, None, y, np.zeros(len(test)))
        lgbm["training stars"] = base.meta["n_train"]
        lgbm["training seconds"] = base.meta["seconds"]
        lgbm["predict stars/s"] = round(len(test) / (time.perf_counter() - t0))
    shutil.rmtree(run, ignore_errors=True)
    return row, lgbm


# --part population (issue 26 item 3): one model, two estimates. Each sample's split trained twice, with prior =
# "labels" (today: the per-star estimate, and `predict --prior flat` dividing the smoothed training prior out) and
# prior = "likelihood" (photofeh.model.likelihood: the per-star posterior and the population estimate of one pass).
POPULATION_ROWS = ("labels prior: per star", "labels prior: flat at prediction (divided out)",
                   "likelihood head: per star", "likelihood head: population",
                   "likelihood head: prior^0.5 (measured only)")
# the mock: a SEGUE-like spectroscopic sample (u to z) scored against its true [Fe/H] (no label noise)
POPULATION_MOCK = {"n_stars": 30_000, "seed": 7, "spec_only": True}


FRACTION_AT = (-2.0, -1.5, -1.0)


def deconvolved_fractions(est: np.ndarray, err: np.ndarray) -> dict:
    """The test stars' [Fe/H] distribution as `photofeh mdf --method xd` infers it from these estimates and
    errors (extreme deconvolution, photofeh.galaxy.mdf; no bootstrap): its fractions below -2, -1.5 and -1, to
    set beside the labels' own. Right only where the estimates are likelihoods with their widths."""
    from photofeh.galaxy.mdf import MixtureMDF, mdf_summary

    ok = np.isfinite(est) & np.isfinite(err)
    mdf = MixtureMDF.from_dict(mdf_summary(est[ok], err[ok], n_boot=0)["mixture"])
    return {f"below {t:g}": round(float(mdf.cdf(t)), 4) for t in FRACTION_AT}


def population_rows(table: pd.DataFrame, base_cfg, seed: int, epochs: int, mdf: bool = True) -> tuple[dict, dict]:
    """One seed on one sample: the rows of POPULATION_ROWS on the test stars, the information floor and the
    scatter ratios; and (``mdf``) the fractions of each row's MDF, deconvolved and unfolded, beside the labels'."""
    from photofeh.model.likelihood import posterior_moments
    from photofeh.model.predict import load_model

    rows, mdfs = {}, {}
    for prior in ("labels", "likelihood"):
        cfg = replace(base_cfg, prior=prior, prior_label="feh", seed=seed, epochs=epochs, threads=1,
                      baseline_rounds=0)
        with tempfile.TemporaryDirectory(prefix="population-") as tmp:
            run = Path(tmp) / "run"
            t0 = time.perf_counter()
            train(table, cfg, run, log=lambda s: None)
            seconds = time.perf_counter() - t0
            split = pd.read_parquet(run / "split.parquet")
            test = table[(split["split"] == "test").to_numpy()].reset_index(drop=True)
            y = test[cfg.label_columns["feh"]].to_numpy(float)
            e = label_errors_used(test, cfg)
            out = load_model(run).predict(test)
            names = POPULATION_ROWS[:2] if prior == "labels" else POPULATION_ROWS[2:]
            if prior == "labels":
                flat = load_model(run, prior="flat").predict(test)
                pairs = ((out["feh"], out["feh_err"]), (flat["feh"], flat["feh_err"]))
            else:
                # the same likelihood under the square root of the training prior: one point between the two
                # estimates, measured to show the trade-off, not offered by predict
                hist = load_model(run).meta["prior"]["training_distribution"]
                half = posterior_moments(out["feh_population"].to_numpy(float),
                                         out["feh_population_err"].to_numpy(float), np.asarray(hist["edges"]),
                                         np.asarray(hist["counts"], float) ** 0.5)
                pairs = ((out["feh"], out["feh_err"]), (out["feh_population"], out["feh_population_err"]), half)
                widths = {"likelihood width s (median, dex)": float(np.nanmedian(out["feh_population_err"])),
                          "posterior sd (median, dex)": float(np.nanmedian(out["feh_err"]))}
            meta = load_model(run).meta
            # the response each estimate is unfolded through (photofeh.galaxy.unfold): that of its own column
            priors = ("labels", "flat") if prior == "labels" else ("labels", "flat", None)
            for name, (est, err), response_prior in zip(names, pairs, priors, strict=True):
                rows[name] = scores(np.asarray(est, float), np.asarray(err, float), y, e)
                rows[name]["training seconds"] = round(seconds, 1)
                if mdf:
                    mdfs[name] = {**deconvolved_fractions(np.asarray(est, float), np.asarray(err, float)),
                                  **unfolded_fractions(np.asarray(est, float), np.asarray(err, float), meta,
                                                       response_prior)}
            if mdf:
                mdfs["labels of the test stars"] = {f"below {t:g}": round(float(np.mean(y < t)), 4)
                                                    for t in FRACTION_AT}
    s = {name: rows[name]["sigma (Gaussian fit)"] for name in POPULATION_ROWS}
    # the floor of what an estimate unbiased given the truth costs: its scatter is at least the likelihood's
    # width (the Cramer-Rao bound of a Gaussian likelihood), against the posterior's for the per-star one
    rows["information"] = {k: round(v, 4) for k, v in widths.items()}
    rows["information"]["likelihood width / posterior sd"] = round(widths["likelihood width s (median, dex)"]
                                                                   / widths["posterior sd (median, dex)"], 3)
    rows["scatter ratios"] = {
        "today: flat at prediction / per star": round(s[POPULATION_ROWS[1]] / s[POPULATION_ROWS[0]], 3),
        "likelihood: population / its per star": round(s[POPULATION_ROWS[3]] / s[POPULATION_ROWS[2]], 3),
        "likelihood: population / today's per star": round(s[POPULATION_ROWS[3]] / s[POPULATION_ROWS[0]], 3),
        "likelihood per star / today's per star": round(s[POPULATION_ROWS[2]] / s[POPULATION_ROWS[0]], 3),
        "likelihood prior^0.5 / its per star": round(s[POPULATION_ROWS[4]] / s[POPULATION_ROWS[2]], 3)}
    return rows, mdfs


def unfolded_fractions(est: np.ndarray, err: np.ndarray, meta: dict, prior: str | None) -> dict:
    """The same fractions as `photofeh mdf` (its default, unfolding) infers them: through the response the model
    measured on its validation stars for this estimate (``prior``: ``"labels"`` for a model's own column,
    ``"flat"`` for the divided-out or the population column; None: no response, not unfolded)."""
    from photofeh.galaxy.mdf import BinnedEstimates
    from photofeh.galaxy.unfold import ResponseSample, unfold_mdf

    if prior is None:
        return {}
    binned = BinnedEstimates()
    binned.add(est, err)
    summary = unfold_mdf(binned, ResponseSample.from_meta(meta, prior), n_boot=0)
    return {f"unfolded below {t:g}": round(float(summary["fraction_below"][f"{t:g}"]["value"]), 4)
            for t in FRACTION_AT}


def worst_bias(row: dict, lo: float = -3.0, hi: float = 0.0) -> float:
    """The largest |median bias| over a row's 0.5-dex bins (those holding >= MIN_BIN stars) from lo to hi."""
    values = [abs(v) for k, v in row.items() if k.startswith("bias ")
              and lo <= float(k.split()[1].split("..")[0]) and float(k.split("..")[1]) <= hi]
    return round(max(values), 3) if values else float("nan")


def population_tables(samples: list[str], seeds: list[int], epochs: int, cache: str) -> dict:
    """Per sample: :func:`population_rows` for the first seed, and for every seed a line of the seed-to-seed
    table (scatter ratios, worst |bias| from -3 to 0, the information floor)."""
    figures: dict = {}
    spread: dict = {}
    for sample in samples:
        if sample == "mock":
            cols, _ = cached_mock(POPULATION_MOCK, cache, log=lambda s: None)
            table = pd.DataFrame({k: v for k, v in cols.items() if np.ndim(v) == 1})
            base_cfg = replace(load_config(ROOT / "configs" / "segue-colours.toml"),
                               label_columns={"feh": "feh_true"}, label_errors={})
        else:
            table, base_cfg = sample_table(sample)
        key = {"segue": "SEGUE colours, all labels", "green2020": "green2020", "mock": "mock (true [Fe/H])"}[sample]
        for seed in seeds:
            rows, mdfs = population_rows(table, base_cfg, seed, epochs, mdf=seed == seeds[0])
            print(f"{key}, seed {seed}: {rows}", flush=True)
            if seed == seeds[0]:
                figures[key] = rows
                figures[f"{key}: deconvolved MDF of the test stars"] = mdfs
            spread[f"{key}, seed {seed}"] = {
                **rows["scatter ratios"], "floor: likelihood width / posterior sd":
                rows["information"]["likelihood width / posterior sd"],
                **{f"worst |bias| -3..0: {name}": worst_bias(rows[name]) for name in POPULATION_ROWS[:4]}}
            figures["seed to seed"] = spread
            write_population(figures, seeds, epochs)
    return figures


def write_population(figures: dict, seeds: list[int], epochs: int) -> None:
    write_result(
        "population_estimates", "One model, two estimates: per star and for populations (issue 26, item 3)",
        figures, notes="Test stars of the fixed splits (SEGUE colours: 20% by a hash of source_id seeded with "
        f"{SPLIT_SEED}, i.e. 80/20; green2020: 30%; the mock {POPULATION_MOCK}: as the SEGUE colours, scored "
        "against the true [Fe/H], label errors 0). The sample tables: network seed "
        f"{seeds[0]}, {epochs} epochs, one thread; 'seed to seed': the same for seeds {seeds}. 'labels prior' rows: "
        "a model trained as today (prior = "
        "labels), its per-star estimate and `predict --prior flat` (training prior smoothed and divided out, "
        "photofeh.model.prior.divide_out); 'likelihood head' rows: one model trained with prior = likelihood "
        "(photofeh.model.likelihood), its feh (per-star posterior) and feh_population columns from one pass, and "
        "(measured only) its likelihood under the square root of the training histogram. 'information': the "
        "median likelihood width s against the median posterior sd on the test stars. 'deconvolved MDF': the test "
        "stars' distribution inferred from each row's estimates and errors by extreme deconvolution (mdf "
        "--method xd, no bootstrap) and unfolded through the response of the same column on the model's validation "
        "stars (mdf's default, no bootstrap), its fractions below -2, -1.5 and -1 beside the labels' own. "
        "Bias: median residual per 0.5-dex bin of label [Fe/H] with >= 30 stars; pull width: robust sigma of "
        "residual / sqrt(error^2 + label error^2).",
        script="benchmarks/bench_ablation.py --part population")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--part", choices=("ablation", "population"), default="ablation",
                    help="population: issue 26 item 3's comparison (results/population_estimates.json)")
    ap.add_argument("--samples", nargs="+", default=["segue", "green2020"], choices=["segue", "green2020"])
    ap.add_argument("--sizes", nargs="+", default=["all", "3000", "1000"])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS),
                    help="rows to train (the tuned LightGBM comes with 'real labels only'); the others are kept "
                         "from the existing results/ablation.json")
    ap.add_argument("--population-samples", nargs="+", default=["mock"], choices=["mock"],
                    help="with --part population: also the mock (its [Fe/H] truth)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", help="with --part population: network seeds (the first fills the "
                                                         "sample tables; each a line of the seed-to-seed table)")
    ap.add_argument("--epochs", type=int, default=40, help="real-label epochs (the configs' 80 halved: shared CPU)")
    ap.add_argument("--baseline-rounds", type=int, default=1000, help="most LightGBM rounds (tuned, stopped early)")
    ap.add_argument("--cache", default=str(ROOT / "benchmarks" / ".mock_cache"), help="folder of the cached mocks")
    args = ap.parse_args()
    if args.part == "population":
        population_tables([s for s in ("segue", "green2020", "mock") if s in args.samples or s == "mock"
                           and "mock" in args.population_samples], args.seeds or [args.seed], args.epochs, args.cache)
        return
    figures: dict = {}
    def log(s):
        return None
    workdir = Path(tempfile.mkdtemp(prefix="ablation-"))
    t_all = time.perf_counter()
    try:
        for sample in args.samples:
            full, base_cfg = sample_table(sample)
            sizes = args.sizes if sample == "segue" else ["all"]
            for size in sizes:
                table = full if size == "all" else few_labels(full, base_cfg, int(size), args.seed)
                key = f"{'SEGUE colours' if sample == 'segue' else 'green2020'}, " + \
                      ("all labels" if size == "all" else f"{int(size):,d} labels")
                rows = {}
                lgbm_row = None
                for row in args.rows:
                    noise, pre, arch, heads = ROWS[row]
                    # few labels: smaller batches, so that an epoch is more than one step
                    batch = base_cfg.batch_size if size == "all" else min(base_cfg.batch_size, max(64, int(size) // 16))
                    cfg = replace(base_cfg, label_noise=noise, seed=args.seed, epochs=args.epochs, threads=1,
                                  batch_size=batch,
                                  pretrain={**PRETRAIN[sample], "cache_dir": args.cache} if pre else {},
                                  baseline_rounds=args.baseline_rounds if row == "real labels only" else 0,
                                  architecture=dict(arch or base_cfg.architecture), heads=heads or base_cfg.heads)
                    t0 = time.perf_counter()
                    rows[row], lgbm = run_row(table, cfg, workdir, row, log)
                    if lgbm is not None:
                        lgbm_row = lgbm
                    print(f"{key} / {row}: {rows[row]} ({time.perf_counter() - t0:.0f} s)", flush=True)
                if lgbm_row is not None:
                    rows["tuned LightGBM"] = lgbm_row
                    print(f"{key} / tuned LightGBM: {lgbm_row}", flush=True)
                figures[key] = rows
                save(figures, args)  # after each table: a run cut short keeps what it measured
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"all in {time.perf_counter() - t_all:.0f} s")


def save(figures: dict, args) -> None:
    import json

    path = ROOT / "benchmarks" / "results" / "ablation.json"
    if path.exists():  # another sample's or row's run may have written meanwhile: keep its tables and rows
        old = json.loads(path.read_text())["figures"]
        figures = {**old, **{key: {**old.get(key, {}), **rows} for key, rows in figures.items()}}
    order = [*ROWS, "tuned LightGBM"]
    figures = {key: dict(sorted(rows.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
               for key, rows in figures.items()}
    write_result(
        "ablation", "Label noise, mock pretraining and the seed network on real stars (issue 26, items 1, 2 and 4)",
        figures,
        notes="Test stars of fixed, seeded splits ([Fe/H]): SEGUE colours (configs/segue-colours.toml, 20% test by a "
              f"hash of source_id seeded with {SPLIT_SEED}; with 1,000 or 3,000 labels, the training and "
              "validation stars drawn from the rest, the same test stars) and green2020 (configs/green2020.toml, "
              "30% test). 'sigma (Gaussian fit)' as in the seed study; bias: median residual per 0.5-dex bin of "
              f"label [Fe/H] with >= {MIN_BIN} stars; pull width: robust sigma of residual / sqrt(sigma^2 + "
              "label error^2), the label error the row's likelihood assumed (0 without label noise). Pretraining: "
              + "; ".join(f"{k}: {v}" for k, v in PRETRAIN.items())
              + f". Network seed {args.seed}, one run per row, {args.epochs} epochs on the real labels (patience "
              f"15 for green2020, as the SEGUE config), one thread (with 1,000 or 3,000 labels batches of 64 or 187 "
              f"stars), LightGBM at most "
              f"{args.baseline_rounds} rounds: differences of a few thousandths of a dex are within the seed-to-seed "
              "scatter. Seed network: " + ", ".join(f"{k} {v}" for k, v in SEED_NETWORK.items())
              + " (the depth-12 row: nfeatures_max 512, depth 12), causal heads, label noise on (the seed study's "
              "'reference-resdense' narrowed from 2048 features and depth 12; no GPU lent for the full width). "
              "Training seconds on the shared 2-core machine, loaded by other sessions (load 5-12): compare them "
              "within a table only.")


if __name__ == "__main__":
    main()
