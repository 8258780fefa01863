"""Mock clusters: their [Fe/H] recovered from photometry by every population estimate photofeh has, against the truth.

Simple stellar populations (photofeh simulate --cluster) from [Fe/H] = -2.3 to -0.2, with the ages of the mock's
stars of that [Fe/H], and two younger ones (age systematic), at distances that put the turn-off at g = 17-20,
each with the field stars the Galaxy model puts in a 6-arcmin cone. The default configuration is trained on the
SEGUE-like labelled mock set (30,000 stars) once with each prior (labels, flat, likelihood); members and field
are predicted by ``photofeh predict``'s code (scale.predict_catalog: the output names its model, whose
calibration sample the unfolding needs), and the MDF of (a) the members (perfect membership) and (b) every star
within 3 arcmin of the centre (field contamination) comes from ``photofeh mdf``'s code
(``photofeh.galaxy.populations.mdf_of_predictions``): its median with the bootstrap error, against the
cluster's [Fe/H]. Estimates: each prior's ``feh`` unfolded through the model's measured response (mdf's
default), the labels model with its prior divided out (``predict --prior flat``), the likelihood model's
``feh_population`` (``mdf --estimate population``) unfolded and deconvolved with its errors (``--method xd``),
and the median of the members' estimates. Target (issue 26): within 0.10 dex from -2.3 to -0.7.

``--part diagnose`` (after the main run, with the same ``--work``) adds what limits the metal-poor clusters: the
members' MDF from the model's giants alone (``mdf --giants only``); the members unfolded through the response of
unselected mock field stars (true [Fe/H], no label errors, no SEGUE targeting) instead of the model's calibration
stars; and, for main-sequence stars at fixed true [Fe/H] and g, the median estimate - truth of SEGUE-targeted
labelled mock stars (the kind the calibration sample holds) against unselected field stars.

``--part weighted`` (the same way) adds to each cluster the labels model trained with ``selection_column`` (the
mock's ``spec_target_probability``: the unfolding weights each calibration star by the inverse of its targeting
probability).

Usage: python benchmarks/bench_clusters.py [--epochs N] [--work DIR] [--only-train] [--part main|diagnose|weighted]
(``--work``: keep the models, catalogues and predictions there, and reuse the models found there)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import RESULTS, ROOT, labelled_mock, merge_result, write_result

# [Fe/H], age (Gyr), distance (kpc): turn-off g ~ 17-20 (checked in the output: "turn-off g"). Ages as the
# mock's stars of that [Fe/H] have them (halo 12 +- 1 Gyr, thick disk 11 +- 1, thin disk 0.1-10 uniform), then
# two clusters younger than the labelled stars of their [Fe/H]: photometry cannot tell age from [Fe/H] at the
# turn-off, so these measure the age systematic rather than the method. -2.3 and -0.7 are the ends of issue 26's
# target range (M92 is at -2.31, Harris 1996, 2010 edition).
CLUSTERS = ((-2.3, 12.0, 8.0), (-2.1, 12.0, 8.0), (-1.8, 12.0, 8.0), (-1.4, 12.0, 7.0), (-1.0, 11.0, 6.0),
            (-0.7, 11.0, 5.0), (-0.6, 11.0, 5.0), (-0.2, 5.0, 4.0), (-1.0, 8.0, 6.0), (-0.6, 5.0, 5.0))
N_MEMBERS = 600
# the bands behind the default model's features (configs/default.toml), as one chain of colours
MODEL_BANDS = ["sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z", "ps1_g", "ps1_r", "ps1_i", "ps1_z", "ps1_y",
               "gaia_bp", "gaia_g", "gaia_rp"]
FIELD_ARCMIN, INNER_ARCMIN = 6.0, 3.0
TURNOFF_TEFF = (5750.0, 6500.0)  # K: the old clusters' main-sequence members near the turn-off (--part diagnose)
FIELD_STARS = 400_000  # --part diagnose: the plain mock survey whose stars give the unselected response
PRIORS = ("labels", "flat", "likelihood")
# --part weighted: the labels model trained with selection_column (its calibration stars weighted by the inverse of
# their SEGUE-like targeting probability in the unfolding, Horvitz & Thompson 1952; the mock's column)
WEIGHTED, TARGET_COLUMN = "weighted", "spec_target_probability"
# (row name, model, predict --prior, mdf --estimate, mdf --method)
ESTIMATES = (("labels", "labels", None, "feh", "unfold"),
             ("divided out", "labels", "flat", "feh", "unfold"),
             ("flat", "flat", None, "feh", "unfold"),
             ("likelihood, per star", "likelihood", None, "feh", "unfold"),
             ("likelihood, population", "likelihood", None, "population", "unfold"),
             ("likelihood, population (xd)", "likelihood", None, "population", "xd"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--work", type=Path, help="keep models, catalogues and predictions here (models reused)")
    ap.add_argument("--only-train", action="store_true")
    ap.add_argument("--part", choices=("main", "diagnose", "weighted"), default="main")
    ap.add_argument("--boot", type=int, default=50, help="bootstrap draws per MDF (each redraws the response)")
    args = ap.parse_args()
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        run(args, args.work)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args, Path(tmp))


def run(args, work: Path) -> None:
    from photofeh.model.train import load_config, train

    spec = None
    for prior in (*PRIORS, WEIGHTED) if args.part == "weighted" else PRIORS:
        if (work / prior / "model" / "model.json").exists():
            continue
        spec = labelled_mock(30_000, seed=2) if spec is None else spec
        cfg = load_config(ROOT / "configs" / "default.toml")
        cfg.prior, cfg.epochs = ("labels" if prior == WEIGHTED else prior), args.epochs
        if prior == WEIGHTED:
            cfg.selection_column = TARGET_COLUMN
        train(spec, cfg, work / prior, log=lambda s: None)
        print(f"trained {prior}", flush=True)
    if args.only_train:
        return
    if args.part == "diagnose":
        merge_result("clusters", diagnose(work, args.boot))
        return
    if args.part == "weighted":
        merge_result("clusters", weighted_rows(work, args.boot))
        return
    figures: dict = {}
    for k, (feh, age, dist) in enumerate(CLUSTERS):
        name = cluster_name(feh, age, dist)
        figures[name] = cluster_row(work, k, feh, age, dist, args.boot)
        print(name, figures[name], flush=True)
    write_result("clusters", "Mock clusters: [Fe/H] from photofeh mdf against the truth", figures,
                 notes=f"default configuration, {args.epochs} epochs, 30,000 labelled mock stars, one model per "
                       f"prior (labels, flat, likelihood); {N_MEMBERS} members per cluster at (l, b) = (60, 60) "
                       f"deg, field stars in a {FIELD_ARCMIN:g}-arcmin cone; stars outside the training domain "
                       "left out (mdf default); 'median': the MDF's (unfolded through the model's measured "
                       "response, or for '(xd)' deconvolved with the estimates' errors), {args.boot} bootstrap draws; "
                       "'within 3 arcmin' for the labels model and the likelihood's population column only. "
                       "'Cramer-Rao bound': the smallest error of an unbiased estimate of the cluster's [Fe/H] from "
                       "the members with every band the model uses (photofeh.simulate.information, as "
                       "bench_information_limit.py: the SDSS, PS1 and Gaia colours, G and the parallax with the "
                       "members' own errors; 1 / sqrt(sum of the per-star Fisher information), each star's age "
                       "free within a 0.6-dex prior or known), and the share of it in each evolutionary phase.")


def cluster_name(feh: float, age: float, dist: float) -> str:
    """A cluster's section name in the result file."""
    return f"[Fe/H] = {feh:+.1f}, {age:g} Gyr, {dist:g} kpc"


def median_row(summary: dict, counts: dict, feh: float) -> dict:
    """An MDF's median (mdf_of_predictions' summary and counts) against the cluster's [Fe/H] ``feh``."""
    err, se = summary["median"] - feh, summary["median_se"]
    return {"stars": counts["selected"], "median": round(summary["median"], 3),
            "median error (bootstrap)": round(se, 3), "median - truth": round(err, 3),
            "covered (|median - truth| <= 2 errors)": bool(abs(err) <= 2 * se),
            "median of the estimates": round(summary["observed_median"], 3)}


def cluster_row(work: Path, k: int, feh: float, age: float, dist: float, n_boot: int) -> dict:
    """Simulate one cluster and its field, predict it with every model, and summarise each estimate."""
    import pandas as pd

    from photofeh.galaxy.populations import mdf_of_predictions
    from photofeh.scale.options import PredictOptions
    from photofeh.scale.predict_catalog import predict_catalog

    cat = catalogue(work, k, feh, age, dist)
    both = pd.read_parquet(cat)
    member = both["cluster_member"].to_numpy()
    g_to = float(np.nanpercentile(both.loc[member & ~both["is_giant_true"], "sdss_g"], 5))
    row: dict = {"turn-off g (5th percentile of member dwarfs)": round(g_to, 1), "members": int(member.sum()),
                 "field stars within 3 arcmin": int(((both["r_arcmin"] < INNER_ARCMIN) & ~member).sum()),
                 "Cramer-Rao bound": information_bound(both[member])}
    keep = ("cluster_member", "r_arcmin", "feh_true", "sdss_g", "is_giant_true", "phase")
    for label, model, prior, estimate, method in ESTIMATES:
        out = work / f"pred_{k}_{model}_{prior or 'own'}.parquet"
        if not out.exists():
            predict_catalog(work / model, cat, out, PredictOptions(keep=keep, prior=prior, progress=False),
                            log=lambda s: None)
        selections = (("members", "cluster_member"), ("within 3 arcmin", f"r_arcmin < {INNER_ARCMIN}"))
        for name, where in selections[:2 if label in ("labels", "likelihood, population") else 1]:
            try:
                summary, counts, _ = mdf_of_predictions(out, where=where, n_boot=n_boot, seed=k, method=method,
                                                        estimate=estimate)
            except ValueError as exc:
                row[f"{label}, {name}"] = str(exc)
                continue
            row[f"{label}, {name}"] = median_row(summary, counts, feh)
    return row


def weighted_rows(work: Path, n_boot: int) -> dict:
    """Each cluster's section of the result file with the row of the targeting-weighted labels model added."""
    import json

    from photofeh.galaxy.populations import mdf_of_predictions
    from photofeh.scale.options import PredictOptions
    from photofeh.scale.predict_catalog import predict_catalog

    figures = json.loads((RESULTS / "clusters.json").read_text())["figures"]
    out = {}
    for k, (feh, age, dist) in enumerate(CLUSTERS):
        name = cluster_name(feh, age, dist)
        pred = work / f"pred_{k}_{WEIGHTED}_own.parquet"
        if not pred.exists():
            predict_catalog(work / WEIGHTED, catalogue(work, k, feh, age, dist), pred,
                            PredictOptions(keep=("cluster_member", "r_arcmin"), progress=False), log=lambda s: None)
        summary, counts, _ = mdf_of_predictions(pred, where="cluster_member", n_boot=n_boot, seed=k)
        out[name] = {**figures[name], "labels, targeting-weighted, members": median_row(summary, counts, feh)}
        print(name, out[name]["labels, targeting-weighted, members"], flush=True)
    return out


def diagnose(work: Path, n_boot: int) -> dict:
    """What limits the metal-poor clusters (module docstring, ``--part diagnose``); clusters of issue 26's range."""
    import json

    import pandas as pd

    from photofeh.galaxy.mdf import BinnedEstimates
    from photofeh.galaxy.populations import mdf_of_predictions
    from photofeh.galaxy.unfold import ResponseSample, unfold_mdf
    from photofeh.model.predict import load_model
    from photofeh.simulate.survey import MockSurveyConfig

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import catalog_frame

    in_range = [(k, c) for k, c in enumerate(CLUSTERS) if -2.3 <= c[0] <= -0.7 and c[1] >= 11.0]
    field_path = work / "field_mock.parquet"  # unselected stars: every star of a plain mock survey
    if not field_path.exists():
        f = catalog_frame(MockSurveyConfig(n_stars=FIELD_STARS, seed=11, spec_only=False))
        f[(f["feh_true"] < -0.3) & (f["sdss_g"] > 15) & (f["sdss_g"] < 21.5)].to_parquet(field_path)
    field = pd.read_parquet(field_path)
    targeted = labelled_mock(30_000, seed=5)  # SEGUE-like targets, another seed than the training set's
    out: dict = {}
    giants, via_field = {}, {}
    for k, (feh, age, dist) in in_range:
        name = cluster_name(feh, age, dist)
        try:
            summary, counts, _ = mdf_of_predictions(work / f"pred_{k}_labels_own.parquet", where="cluster_member",
                                                    giants="only", n_boot=n_boot, seed=k)
            giants[name] = {"giants": counts["selected"], "median - truth": round(summary["median"] - feh, 3),
                            "median error (bootstrap)": round(summary["median_se"], 3)}
        except ValueError as exc:
            giants[name] = str(exc)
    out["members' giants alone (labels model, mdf --giants only)"] = giants
    brighter = {}
    for k, (feh, age, dist) in in_range:  # members within the labelled stars' magnitudes (SEGUE-like: g < 20)
        row = {}
        for cut in (19.0, 19.5, 20.0):
            summary, counts, _ = mdf_of_predictions(work / f"pred_{k}_labels_own.parquet", n_boot=n_boot, seed=k,
                                                    where=f"cluster_member and sdss_g < {cut}")
            row[f"g < {cut:g}"] = {"stars": counts["selected"], "median - truth": round(summary["median"] - feh, 3),
                                   "median error (bootstrap)": round(summary["median_se"], 3)}
        brighter[cluster_name(feh, age, dist)] = row
    out["members brighter than g (labels model, mdf --where)"] = brighter
    no_hb = {}
    for k, (feh, age, dist) in in_range:  # horizontal-branch colours also depend on more than [Fe/H] and age
        members = pd.read_parquet(catalogue(work, k, feh, age, dist))
        members = members[members["cluster_member"] & (members["phase"] != "horizontal branch")]
        no_hb[cluster_name(feh, age, dist)] = information_bound(members)
    out["Cramer-Rao bound without the horizontal branch"] = no_hb
    bias: dict = {}
    for prior, col in (("labels", "feh"), ("likelihood", "feh_population")):
        model = load_model(work / prior / "model")
        res = {}
        for which, cat in (("unselected field stars", field), ("SEGUE-targeted labelled stars", targeted)):
            p = model.predict(cat)
            ok = (p["usable"].to_numpy(bool) & p["in_domain"].to_numpy(bool)
                  & (cat["phase"] == "main sequence").to_numpy() & (cat["sdss_g"] > 18.5).to_numpy()
                  & (cat["sdss_g"] < 20.0).to_numpy() & (cat["teff_true"] >= TURNOFF_TEFF[0]).to_numpy()
                  & (cat["teff_true"] < TURNOFF_TEFF[1]).to_numpy())
            res[which] = (cat["feh_true"].to_numpy(float)[ok], (p[col] - cat["feh_true"]).to_numpy(float)[ok])
            if prior == "labels" and which == "unselected field stars":
                field_response = ResponseSample(cat["feh_true"].to_numpy(float)[p["usable"].to_numpy(bool)],
                                                p[col].to_numpy(float)[p["usable"].to_numpy(bool)],
                                                p[f"{col}_err"].to_numpy(float)[p["usable"].to_numpy(bool)],
                                                p["teff"].to_numpy(float)[p["usable"].to_numpy(bool)])
        rows = {}
        for lo, hi in ((-2.4, -2.0), (-2.0, -1.6), (-1.6, -1.2), (-1.2, -0.8)):
            row = {}
            for which, (t, r) in res.items():
                m = (t > lo) & (t < hi)
                row[which] = {"stars": int(m.sum()), "median estimate - truth": round(float(np.median(r[m])), 3)}
            row["targeted - unselected"] = round(row["SEGUE-targeted labelled stars"]["median estimate - truth"]
                                                 - row["unselected field stars"]["median estimate - truth"], 3)
            rows[f"{lo:+.1f} to {hi:+.1f}"] = row
        bias[f"{prior} model, {col}"] = rows
    out[f"selection: main-sequence stars with 18.5 < g < 20 and Teff {TURNOFF_TEFF[0]:.0f}-{TURNOFF_TEFF[1]:.0f} K, "
        "estimate - truth"] = bias
    meta = json.loads((work / "labels" / "model" / "model.json").read_text())
    calibration = ResponseSample.from_meta(meta)
    for k, (feh, age, dist) in in_range:
        pred = pd.read_parquet(work / f"pred_{k}_labels_own.parquet")
        ok = (pred["cluster_member"].to_numpy(bool) & pred["usable"].to_numpy(bool)
              & pred["in_domain"].to_numpy(bool))
        b = BinnedEstimates()
        b.add(pred["feh"].to_numpy(float)[ok], pred["feh_err"].to_numpy(float)[ok], pred["teff"].to_numpy(float)[ok])
        name = cluster_name(feh, age, dist)
        via_field[name] = {
            "calibration stars (mdf)": round(unfold_mdf(b, calibration, n_boot=0)["median"] - feh, 3),
            "unselected field stars, true [Fe/H]": round(unfold_mdf(b, field_response, n_boot=0)["median"] - feh, 3)}
    out["members unfolded through another response (labels model), median - truth"] = via_field
    return {"diagnosis": out}


def information_bound(members) -> dict:
    """The Cramer-Rao bound on the cluster's mean [Fe/H] from its members with every band of the default model
    (bench_information_limit's algebra), age free and known, and each phase's share of the information."""
    from bench_information_limit import bounds, features, priors

    from photofeh.bands import BANDS
    from photofeh.simulate import information as inf
    from photofeh.simulate.observe import DustModel
    from photofeh.simulate.survey import MockSurvey, MockSurveyConfig

    grid = MockSurvey(MockSurveyConfig(n_stars=1)).grid
    need = [*MODEL_BANDS, "parallax"]
    c = members[np.isfinite(members[need].to_numpy(float)).all(axis=1)]
    feh, logage = c["feh_true"].to_numpy(float), np.log10(c["age_gyr_true"].to_numpy(float) * 1e9)
    eep = inf.eep_from_mass(grid, feh, logage, c["mass_true"].to_numpy(float), c["teff_true"].to_numpy(float),
                            c["logg_true"].to_numpy(float))
    theta = {"feh": feh, "logage": logage, "eep": eep, "ebv": c["ebv_true"].to_numpy(float),
             "dm": 5 * np.log10(100 * c["dist_kpc_true"].to_numpy(float))}
    J = inf.model_jacobian(grid, MODEL_BANDS, theta)
    sig = np.column_stack([np.hypot(c[f"{b}_err"], BANDS[b].zp_scatter) for b in MODEL_BANDS])
    jp = np.zeros((feh.size, 1, len(inf.PARAMS)))
    jp[:, 0, inf.PARAMS.index("dm")] = -np.log(10) / 5 * inf.parallax_mas(theta["dm"])
    colours = [f"{a}-{b}" for a, b in zip(MODEL_BANDS[:-1], MODEL_BANDS[1:], strict=True)]
    Jf, C = features(J, sig, MODEL_BANDS, [*colours, "gaia_g"],
                     extra=(jp, c["parallax_error"].to_numpy(float)[:, None]))
    b = bounds(Jf, C, priors(feh.size, DustModel.ebv_frac_error * c["ebv"].to_numpy(float)))
    info = {k: np.where(np.isfinite(v), v, np.inf) ** -2.0 for k, v in b.items()}
    phase = c["phase"].to_numpy(str)
    return {"members": int(feh.size),
            **{f"cluster mean, age {k.split()[1]}": round(float(v.sum() ** -0.5), 3) for k, v in info.items()},
            "median per star, age free": round(float(np.median(b["age free"])), 2),
            "information share, age free": {p: round(float(info["age free"][phase == p].sum()
                                                           / info["age free"].sum()), 2) for p in np.unique(phase)}}


def catalogue(work: Path, k: int, feh: float, age: float, dist: float) -> Path:
    """Members and field of cluster ``k`` with their distance from the centre (``r_arcmin``), written once."""
    import pandas as pd

    from photofeh.simulate.cluster import ClusterConfig, ClusterFieldSurvey

    cluster = ClusterConfig(feh=feh, age_gyr=age, distance_kpc=dist, n_members=N_MEMBERS, seed=100 + k)
    cat = work / f"cluster_{k}.parquet"
    if not cat.exists():
        survey = ClusterFieldSurvey(cluster, FIELD_ARCMIN)  # its own field draw (seed) per cluster
        stars, field = pd.DataFrame(survey.members(cluster)), pd.DataFrame(survey.field())
        stars["cluster_member"], field["cluster_member"] = True, False
        both = pd.concat([stars, field], ignore_index=True)
        both["r_arcmin"] = _separation_arcmin(both["l"].to_numpy(), both["b"].to_numpy(), cluster.l_deg,
                                              cluster.b_deg)
        both.to_parquet(cat)
    return cat


def _separation_arcmin(l, b, l0, b0) -> np.ndarray:
    l, b, l0, b0 = (np.radians(v) for v in (l, b, l0, b0))
    cos = np.sin(b) * np.sin(b0) + np.cos(b) * np.cos(b0) * np.cos(l - l0)
    return np.degrees(np.arccos(np.clip(cos, -1, 1))) * 60.0


if __name__ == "__main__":
    main()
