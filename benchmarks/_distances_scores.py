"""Scores of ``bench_distances.py``'s per-star frames: d_phot against the parallaxes per group of the held-out
stars (:func:`scores`), against the truth per magnitude bin of the survey-depth mock (:func:`by_magnitude`), and
the mean over training seeds (:func:`over_seeds`).

Kept apart from the training and prediction so that ``bench_distances.py`` holds one job (the samples and their
models) and ``bench_distances_giants.py`` can score with the same functions; what each figure means is in
``bench_distances.py``'s docstring.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GIANT_LOGG = 3.5
REFERENCE_SNR = 10.0
FEH_EDGES = (-0.5, 0.0)  # three bins of the label [Fe/H]: < -0.5, -0.5..0, >= 0
G_EDGES = tuple(np.arange(10.0, 22.01, 1.5))  # observed Gaia G bins of the by-magnitude part
HALO_FEH, THIN_FEH = -1.2, -0.6  # true [Fe/H] splitting the mock's halo-like and thin-disc-like dwarfs
LATE_M = 8.0  # M_G of late M dwarfs; the labelled mock's dwarfs reach M_G 6.4 at their 90th percentile


# ---------------------------------------------------------------- survey-depth mock, by magnitude
def by_magnitude(frame: pd.DataFrame, seed: int = 0) -> dict[str, dict]:
    """Per bin of observed G (:data:`G_EDGES`) and class (all stars, and by the mock's true class): the stars,
    how many have an M_G estimate (the masked model needs 3 measured features: the brightest stars, saturated
    in SDSS and PS1, have only Gaia's two colours) and a distance (the dereddened G needs BP-RP for its
    extinction coefficient: most stars fainter than G ~ 20 have no BP), the median M_true - M_G (mag) and the
    pulls z = (M_true - M_G) / M_G_err (median; half-width about 0 holding 68%, 1 for errors that hold 68% of
    the stars) of the stars with an estimate, the median d_phot/d_true with its bootstrap error of those with a
    distance, and for the dwarfs the median d_phot/d_true deconvolved from the bin's parallaxes
    (:func:`deconvolved`), what the real samples are scored with."""
    from photofeh.model.absmag_calibration import ONE_SIGMA

    rng = np.random.default_rng(seed)
    G, m, M, M_err = (frame[c].to_numpy(float) for c in ("G", "m", "M", "M_err"))
    d_true, M_true, giant = frame["d_true"].to_numpy(float), frame["M_true"].to_numpy(float), frame["giant_true"]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = 10 ** ((m - M) / 5 - 2) / d_true
    out: dict[str, dict] = {}
    for lo, hi in zip(G_EDGES[:-1], G_EDGES[1:], strict=True):
        in_bin = (G >= lo) & (G < hi)
        for cls, rows in (("all", in_bin), ("dwarfs (truth)", in_bin & ~giant), ("giants (truth)", in_bin & giant)):
            est = rows & np.isfinite(M) & np.isfinite(M_err)
            dist = est & np.isfinite(ratio)
            row: dict = {"stars": int(rows.sum()), "with an estimate": int(est.sum()),
                         "with a distance": int(dist.sum())}
            if est.sum() >= 30:
                z = (M_true[est] - M[est]) / M_err[est]
                row.update({"median M_true - M": round(float(np.median(M_true[est] - M[est])), 3),
                            "pull median": round(float(np.median(z)), 2),
                            "pull width": round(float(np.quantile(np.abs(z), ONE_SIGMA)), 2)})
            if dist.sum() >= 30:
                r = ratio[dist]
                boot = [np.median(rng.choice(r, r.size)) for _ in range(200)]
                row.update({"median d_phot/d_true": round(float(np.median(r)), 3), "+-": round(float(np.std(boot)), 3)})
                if cls.startswith("dwarfs"):
                    row.update(_dwarf_mix(ratio, dist, M_true, frame["feh_true"].to_numpy(float)))
                    plx, plx_err = frame["plx"].to_numpy(float)[dist], frame["plx_err"].to_numpy(float)[dist]
                    dec = deconvolved(m[dist], M[dist], M_err[dist], plx, plx_err, rng, bootstrap=0)
                    if "deconvolved median d_phot/d_true" in dec:
                        row["deconvolved median d_phot/d_true"] = dec["deconvolved median d_phot/d_true"]
            out[f"G {lo:g} to {hi:g}, {cls}"] = row
    return out


def _dwarf_mix(ratio, rows, M_true, feh_true) -> dict:
    """What the dwarfs of a magnitude bin are made of, and each part's median d_phot/d_true: by true [Fe/H]
    (metal-poor halo dwarfs against thin-disc ones) and the share of late M dwarfs beyond the labelled set."""
    out = {"share M_G true >= 8": round(float(np.mean(M_true[rows] >= LATE_M)), 3),
           "share [Fe/H] true < -1.2": round(float(np.mean(feh_true[rows] < HALO_FEH)), 3)}
    early = M_true < LATE_M
    for name, part in ((f"M_G true < {LATE_M:g}", early),
                       (f"[Fe/H] true < {HALO_FEH:g}, M_G true < {LATE_M:g}", (feh_true < HALO_FEH) & early),
                       (f"[Fe/H] true >= {THIN_FEH:g}, M_G true < {LATE_M:g}", (feh_true >= THIN_FEH) & early)):
        k = rows & part
        if k.sum() >= 30:
            out[f"median d_phot/d_true, {name}"] = round(float(np.median(ratio[k])), 3)
    return out


# ---------------------------------------------------------------- per group, against the parallaxes
def groups(frame: pd.DataFrame, colour_name: str, colour_edges) -> dict[str, np.ndarray]:
    """Masks of the groups scored: class by the label log g, colour bins, label [Fe/H] bins."""
    giant = frame["logg"].to_numpy() < GIANT_LOGG
    known = np.isfinite(frame["logg"].to_numpy())
    out = {f"dwarfs (log g >= {GIANT_LOGG})": known & ~giant, f"giants (log g < {GIANT_LOGG})": giant}
    if "binary" in frame:  # the mock knows which stars are unresolved binaries
        b = frame["binary"].to_numpy()
        out["dwarfs, single stars (mock truth)"] = known & ~giant & ~b
        out["dwarfs, unresolved binaries (mock truth)"] = known & ~giant & b
    c = frame["colour"].to_numpy()
    edges = [-np.inf, *colour_edges, np.inf]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        out[_bin_name(colour_name, lo, hi)] = (c >= lo) & (c < hi)
    f = frame["feh"].to_numpy()
    edges = [-np.inf, *FEH_EDGES, np.inf]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        out[_bin_name("[Fe/H]", lo, hi)] = (f >= lo) & (f < hi)
    return out


def _bin_name(name: str, lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return f"{name} < {hi:g}"
    if not np.isfinite(hi):
        return f"{name} >= {lo:g}"
    return f"{name} {lo:g} to {hi:g}"


def robust_sigma(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if x.size else float("nan")


def _measured(m, M, M_err, plx, plx_err) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stars with measured parallax S/N >= 10, d_phot/d_plx (= d_phot * parallax) and the M_abs pulls."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = (plx / plx_err >= REFERENCE_SNR) & np.isfinite(M)
        ratio = 10 ** ((m - M) / 5 - 2) * plx
        M_plx = m + 5 * np.log10(np.where(sel, plx, 1.0)) - 10
        M_plx_err = 5 / np.log(10) * plx_err / plx
        pull = (M - M_plx) / np.hypot(M_err, M_plx_err)
    return sel, ratio, pull


def mixture_pulls(frame: pd.DataFrame) -> np.ndarray:
    """Each star's M_abs pull under its whole predictive distribution, the two classes' Gaussians weighed by
    P(giant) (one Gaussian for a model without components), each widened by the parallax's magnitude error:
    z = Phi^-1(F(M_plx)), F the mixture's CDF at the parallax's M (the probability integral transform; 1 for a
    calibrated mixture, whatever the class), where the point estimate's pull takes one Gaussian about the
    chosen class."""
    from scipy.special import ndtr, ndtri

    m, plx, plx_err = (frame[c].to_numpy(float) for c in ("m", "plx", "plx_err"))
    with np.errstate(invalid="ignore", divide="ignore"):
        M_plx = m + 5 * np.log10(np.where(plx > 0, plx, np.nan)) - 10
        s_plx = 5 / np.log(10) * plx_err / plx
        if np.isfinite(frame["M_dwarf"].to_numpy(float)).any():
            p = frame["p_giant"].to_numpy(float)
            cdf = ((1 - p) * ndtr((M_plx - frame["M_dwarf"].to_numpy(float))
                                  / np.hypot(frame["M_dwarf_err"].to_numpy(float), s_plx))
                   + p * ndtr((M_plx - frame["M_giant"].to_numpy(float))
                              / np.hypot(frame["M_giant_err"].to_numpy(float), s_plx)))
        else:
            cdf = ndtr((M_plx - frame["M"].to_numpy(float)) / np.hypot(frame["M_err"].to_numpy(float), s_plx))
        return ndtri(np.clip(cdf, 1e-6, 1 - 1e-6))  # the pull's sign: M_plx - M, as (M - M_plx) mirrored


def exact_model_draws(frame: pd.DataFrame, draws: int = 20, seed: int = 0) -> list[tuple]:
    """(selected, ratio, pull) of ``draws`` simulated skies in which each star's M_abs follows the model's own
    predictive distribution (the component of the star's label class where the model has components)."""
    rng = np.random.default_rng(seed)
    giant = frame["logg"].to_numpy() < GIANT_LOGG
    M, M_err = frame["M"].to_numpy(), frame["M_err"].to_numpy()
    if np.isfinite(frame["M_dwarf"].to_numpy()).any():
        mu = np.where(giant, frame["M_giant"], frame["M_dwarf"])
        sigma = np.where(giant, frame["M_giant_err"], frame["M_dwarf_err"])
    else:
        mu, sigma = M, M_err
    m, plx_err = frame["m"].to_numpy(), frame["plx_err"].to_numpy()
    out = []
    for _ in range(draws):
        true_M = mu + sigma * rng.standard_normal(len(frame))
        plx = 10 ** (2 - (m - true_M) / 5) + plx_err * rng.standard_normal(len(frame))
        out.append(_measured(m, M, M_err, plx, plx_err))
    return out


def scores(frame: pd.DataFrame, colour_name: str, colour_edges, seed: int = 0) -> dict[str, dict]:
    m, M, M_err = frame["m"].to_numpy(), frame["M"].to_numpy(), frame["M_err"].to_numpy()
    plx, plx_err = frame["plx"].to_numpy(), frame["plx_err"].to_numpy()
    sel, ratio, pull = _measured(m, M, M_err, plx, plx_err)
    pit = mixture_pulls(frame)
    sims = exact_model_draws(frame, seed=seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        d_phot = 10 ** ((m - M) / 5 - 2)
        expected = (1 / d_phot) / plx_err >= REFERENCE_SNR
    rng = np.random.default_rng(seed)
    out = {}
    for name, g in groups(frame, colour_name, colour_edges).items():
        k = sel & g
        r = ratio[k]
        row: dict = {"stars": int(k.sum())}
        if k.sum() >= 3:
            boot = [np.median(rng.choice(r, r.size)) for _ in range(200)]
            row.update({"median d_phot/d_plx": round(float(np.median(r)), 3), "+-": round(float(np.std(boot)), 3),
                        "robust scatter ln": round(robust_sigma(np.log(r)), 3),
                        "M pull std": round(float(np.std(pull[k])), 2),
                        "M pull robust": round(robust_sigma(pull[k]), 2),
                        "M pull std, two-component": round(float(np.std(pit[k])), 2),
                        "M pull robust, two-component": round(robust_sigma(pit[k]), 2),
                        "exact model: median": round(float(np.median([np.median(s_r[s_k & g]) for s_k, s_r, _ in sims
                                                                      if (s_k & g).sum()])), 3),
                        "exact model: pull std": round(float(np.median([np.std(s_p[s_k & g]) for s_k, _, s_p in sims
                                                                        if (s_k & g).sum()])), 2)})
        row.update(deconvolved(m[g], M[g], M_err[g], plx[g], plx_err[g], rng))
        row.update(deconvolution_closure(frame, g, rng))
        if np.isfinite(frame["M_dwarf"].to_numpy()).any():  # each star's own class's component (label class)
            giant = frame["logg"].to_numpy() < GIANT_LOGG
            own = np.where(giant, frame["M_giant"], frame["M_dwarf"])[g]
            own_err = np.where(giant, frame["M_giant_err"], frame["M_dwarf_err"])[g]
            width = deconvolved_width(m[g], own, own_err, plx[g], plx_err[g])
            if width is not None:
                row["deconvolved pull width, own class's component"] = width
        e = expected & g & np.isfinite(plx)
        row["stars, S/N_phot >= 10"] = int(e.sum())
        if e.sum() >= 3:
            row["median d_phot x parallax"] = round(float(np.median(d_phot[e] * plx[e])), 3)
        t = g & np.isfinite(M) & np.isfinite(frame["d_true"].to_numpy()) if "d_true" in frame else np.zeros(0, bool)
        if t.any():  # the mock's truth, where the group has stars (an empty group had no quantile to take)
            from photofeh.model.absmag_calibration import ONE_SIGMA

            true_ratio = d_phot[t] / frame["d_true"].to_numpy()[t]
            row["median d_phot/d_true, all"] = round(float(np.median(true_ratio)), 3)
            z = 5 * np.log10(true_ratio) / M_err[t]
            row["pull width, true"] = round(float(np.quantile(np.abs(z), ONE_SIGMA)), 2)
        out[name] = row
    return out


def deconvolved(m, M, M_err, plx, plx_err, rng, bootstrap: int = 5) -> dict:
    """The group's median d_phot/d_true and its pull width with no selection on the parallax: the
    distributions of M_true - M and of (M_true - M) / M_err deconvolved from the parallax errors of every star
    with a parallax (:func:`photofeh.model.absmag_calibration.deconvolve_pulls`; on the mock it tracks the true
    median to a per cent), with a bootstrap error of the median."""
    from photofeh.model.absmag_calibration import deconvolve_pulls, pull_quantiles

    ok = np.isfinite(M) & np.isfinite(plx) & (plx_err > 0)
    if ok.sum() < 30:
        return {}
    m, M, M_err, plx, plx_err = m[ok], M[ok], M_err[ok], plx[ok], plx_err[ok]
    ones = np.ones(ok.sum())

    def median_ratio(rows):
        w = deconvolve_pulls(m[rows], M[rows], ones[rows], plx[rows], plx_err[rows])
        return 10 ** (pull_quantiles(w, 0.5) / 5)

    out = {"deconvolved median d_phot/d_true": round(float(median_ratio(slice(None))), 3)}
    if not bootstrap:
        return out
    boot = [median_ratio(rng.integers(0, ok.sum(), ok.sum())) for _ in range(bootstrap)]
    out.update({"deconvolved +-": round(float(np.std(boot)), 3),
                "deconvolved pull width": deconvolved_width(m, M, M_err, plx, plx_err)})
    return {k: v for k, v in out.items() if v is not None}


def deconvolution_closure(frame: pd.DataFrame, rows: np.ndarray, rng) -> dict:
    """How well the deconvolved median holds for this group's stars: a sky in which each star's true M is drawn
    from its label class's component (its own class's Gaussian, where the model has components), parallaxes
    drawn with the stars' errors, and the deconvolved median d_phot/d_true of that sky beside its true one."""
    from photofeh.model.absmag_calibration import deconvolve_pulls, pull_quantiles

    giant = frame["logg"].to_numpy() < GIANT_LOGG
    M = frame["M"].to_numpy(float)
    if np.isfinite(frame["M_dwarf"].to_numpy(float)).any():
        mu = np.where(giant, frame["M_giant"], frame["M_dwarf"])
        sigma = np.where(giant, frame["M_giant_err"], frame["M_dwarf_err"])
    else:
        mu, sigma = M, frame["M_err"].to_numpy(float)
    m, plx_err = frame["m"].to_numpy(float), frame["plx_err"].to_numpy(float)
    ok = rows & np.isfinite(M) & np.isfinite(mu) & np.isfinite(sigma) & np.isfinite(frame["plx"].to_numpy(float))
    ok &= plx_err > 0
    if ok.sum() < 30:
        return {}
    true_M = mu[ok] + sigma[ok] * rng.standard_normal(ok.sum())
    plx = 10 ** (2 - (m[ok] - true_M) / 5) + plx_err[ok] * rng.standard_normal(ok.sum())
    w = deconvolve_pulls(m[ok], M[ok], np.ones(ok.sum()), plx, plx_err[ok])
    return {"closure: deconvolved": round(float(10 ** (pull_quantiles(w, 0.5) / 5)), 3),
            "closure: truth": round(float(10 ** (np.median(true_M - M[ok]) / 5)), 3)}


def deconvolved_width(m, M, M_err, plx, plx_err) -> float | None:
    """The half-width about z = 0 that holds 68% of the deconvolved (M_true - M) / M_err: 1 where the errors
    hold 68% of the stars (:func:`photofeh.model.absmag_calibration.symmetric_width`)."""
    from photofeh.model.absmag_calibration import deconvolve_pulls, symmetric_width

    ok = np.isfinite(M) & np.isfinite(M_err) & np.isfinite(plx) & (plx_err > 0)
    if ok.sum() < 30:
        return None
    return round(symmetric_width(deconvolve_pulls(m[ok], M[ok], M_err[ok], plx[ok], plx_err[ok]), 0.0), 2)


def over_seeds(rows: list[dict]) -> dict:
    """One group's scores over the training seeds: the mean of each figure (star counts as integers), and the
    range of the median d_phot/d_plx and of d_phot x parallax (how much one network's draw moves them)."""
    out: dict = {}
    for key in rows[0]:
        values = [r[key] for r in rows if key in r]
        if len(values) < len(rows):
            continue
        mean = float(np.mean(values))
        out[key] = (int(round(mean)) if key.startswith(("stars", "with a"))
                    else round(mean, 2 if "pull" in key else 3))
        if key in ("median d_phot/d_plx", "median d_phot x parallax", "deconvolved median d_phot/d_true",
                   "median d_phot/d_true", "median M_true - M") and len(values) > 1:
            out[f"{key}, seed range"] = f"{min(values):.3f}-{max(values):.3f}"
    return out
