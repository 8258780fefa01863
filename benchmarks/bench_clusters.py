"""Mock clusters: their [Fe/H] recovered by `photofeh mdf` from photometry, against the truth.

Six simple stellar populations (photofeh simulate --cluster) at [Fe/H] = -2.1, -1.8, -1.4, -1.0, -0.6, -0.2,
with the ages of the mock's stars of that [Fe/H], and two younger ones (age systematic), at distances that
put the turn-off at g = 17-20, each with the
field stars the Galaxy model puts in a 6-arcmin cone. The default configuration is trained on the
SEGUE-like labelled mock set (30,000 stars) once with each prior; members and field are predicted, and the
MDF of (a) the members (perfect membership) and (b) every star within 3 arcmin of the centre (field
contamination) is deconvolved (`photofeh.galaxy.populations.mdf_of_predictions`, the code of `photofeh mdf`):
its median with the bootstrap error, against the cluster's [Fe/H]. Targets (flat prior): within 0.10 dex,
with an error bar that covers the truth.

Usage: python benchmarks/bench_clusters.py [--epochs N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import ROOT, labelled_mock, write_result

# [Fe/H], age (Gyr), distance (kpc): turn-off g ~ 17-20 (checked in the output: "turn-off g"). Ages as the
# mock's stars of that [Fe/H] have them (halo 12 +- 1 Gyr, thick disk 11 +- 1, thin disk 0.1-10 uniform), then
# two clusters younger than the labelled stars of their [Fe/H]: photometry cannot tell age from [Fe/H] at the
# turn-off, so these measure the age systematic rather than the method.
CLUSTERS = ((-2.1, 12.0, 8.0), (-1.8, 12.0, 8.0), (-1.4, 12.0, 7.0), (-1.0, 11.0, 6.0), (-0.6, 11.0, 5.0),
            (-0.2, 5.0, 4.0), (-1.0, 8.0, 6.0), (-0.6, 5.0, 5.0))
N_MEMBERS = 600
FIELD_ARCMIN, INNER_ARCMIN = 6.0, 3.0


def main() -> None:
    import pandas as pd

    from photofeh.galaxy.populations import mdf_of_predictions
    from photofeh.model.predict import load_model
    from photofeh.model.train import load_config, train
    from photofeh.simulate.cluster import ClusterConfig, ClusterFieldSurvey

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()
    spec = labelled_mock(30_000, seed=2)
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = {}
        for prior in ("labels", "flat"):
            cfg = load_config(ROOT / "configs" / "default.toml")
            cfg.prior, cfg.epochs = prior, args.epochs
            train(spec, cfg, tmp / prior, log=lambda s: None)
            models[prior] = load_model(tmp / prior)
            if prior == "labels":  # the same model, its training prior divided out at prediction time
                models["divided out"] = load_model(tmp / prior, prior="flat")
        for k, (feh, age, dist) in enumerate(CLUSTERS):
            cluster = ClusterConfig(feh=feh, age_gyr=age, distance_kpc=dist, n_members=N_MEMBERS, seed=100 + k)
            survey = ClusterFieldSurvey(cluster, FIELD_ARCMIN)  # its own field draw (seed) per cluster
            stars = pd.DataFrame(survey.members(cluster))
            field = pd.DataFrame(survey.field())
            stars["cluster_member"], field["cluster_member"] = True, False
            both = pd.concat([stars, field], ignore_index=True)
            sep = _separation_arcmin(both["l"].to_numpy(), both["b"].to_numpy(), cluster.l_deg, cluster.b_deg)
            member = both["cluster_member"].to_numpy()
            g_to = float(np.nanpercentile(both.loc[member & ~both["is_giant_true"], "sdss_g"], 5))
            row = {"turn-off g (5th percentile of member dwarfs)": round(g_to, 1),
                   "members": int(member.sum()), "field stars within 3 arcmin": int(((sep < INNER_ARCMIN)
                                                                                     & ~member).sum())}
            for prior, model in models.items():
                pred = model.predict(both)
                pred["cluster_member"], pred["r_arcmin"] = member, sep
                path = tmp / f"pred_{k}_{prior}.parquet"
                pred.to_parquet(path)
                for name, where in (("members", "cluster_member"), ("within 3 arcmin", f"r_arcmin < {INNER_ARCMIN}")):
                    try:
                        summary, counts, _ = mdf_of_predictions(path, where=where, n_boot=200, seed=k)
                    except ValueError as exc:
                        row[f"{prior}, {name}"] = str(exc)
                        continue
                    err = summary["median"] - feh
                    row[f"{prior}, {name}"] = {
                        "stars": counts["selected"], "median": round(summary["median"], 3),
                        "median error (bootstrap)": round(summary["median_se"], 3),
                        "median - truth": round(err, 3),
                        "covered (|median - truth| <= 2 errors)": bool(abs(err) <= 2 * summary["median_se"]),
                        "median of the estimates": round(summary["observed_median"], 3)}
            figures[f"[Fe/H] = {feh:+.1f}, {age:g} Gyr, {dist:g} kpc"] = row
            print(figures[f"[Fe/H] = {feh:+.1f}, {age:g} Gyr, {dist:g} kpc"], flush=True)
    write_result("clusters", "Mock clusters: [Fe/H] from photofeh mdf against the truth", figures,
                 notes=f"default configuration, {args.epochs} epochs, 30,000 labelled mock stars; {N_MEMBERS} "
                       f"members per cluster at (l, b) = (60, 60) deg, field stars in a {FIELD_ARCMIN:g}-arcmin "
                       "cone; stars outside the training domain left out (mdf default).")


def _separation_arcmin(l, b, l0, b0) -> np.ndarray:
    l, b, l0, b0 = (np.radians(v) for v in (l, b, l0, b0))
    cos = np.sin(b) * np.sin(b0) + np.cos(b) * np.cos(b0) * np.cos(l - l0)
    return np.degrees(np.arccos(np.clip(cos, -1, 1))) * 60.0


if __name__ == "__main__":
    main()
