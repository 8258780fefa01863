"""Metallicity distributions of selections of predicted stars: ``photofeh mdf`` (its figure is drawn by
:mod:`photofeh.report.mdf_figures`).

Reads a ``photofeh predict`` output chunk by chunk, applies the selection (a checked expression on its columns,
:mod:`photofeh.galaxy.query`; the giant class, an error cut, the training domain), counts every star left out,
and unfolds the selected estimates through the response the model measured on its validation stars
(:mod:`photofeh.galaxy.unfold`), whatever prior the estimates carry. Deconvolving the estimates with their own
errors (:mod:`photofeh.galaxy.mdf`, ``method = "xd"``) is right only for likelihood-like estimates with
calibrated errors; on real stars it erased the metal-poor tail (docs/populations.md).
"""

from __future__ import annotations

import numpy as np

from photofeh.galaxy.mdf import MIN_STARS, BinnedEstimates, MixtureMDF, mdf_summary

__all__ = ["mdf_of_predictions", "RAW_LIMIT", "METHODS", "response_of_predictions",
           "summary_distribution", "with_fractions"]

# Beyond this many selected stars the estimates go into a BinnedEstimates: bounded memory and time (the
# deconvolution and its bootstrap then cost the same for 10^5 and 10^9 stars; 1.5 million raw estimates
# with 100 bootstrap resamples ran for more than 10 minutes). Its 0.02 dex bins are far below any MDF's width.
RAW_LIMIT = 200_000


METHODS = ("unfold", "xd")


def response_of_predictions(source, giants: str = "include", max_feh_err: float | None = None,
                            estimate: str = "feh"):
    """The measured response (:class:`photofeh.galaxy.unfold.ResponseSample`) of the model that made a
    ``photofeh predict`` output, for the estimates it holds (its prior: ``predict --prior flat`` divides the
    training prior out of the calibration stars' estimates too) and the same giant and error selection;
    ``None`` (and why) when the model is not found or was trained before it kept a calibration sample.
    ``estimate = "population"``: the response of a likelihood model's population column (photofeh.model.likelihood)."""
    from photofeh.galaxy.unfold import ResponseSample
    from photofeh.io.readers import table_metadata
    from photofeh.model.artifact import named_model_meta

    provenance = table_metadata(source)
    model, model_json = named_model_meta(provenance)
    if model is None:
        return None, "the predictions do not name a model folder that exists here (provenance 'model_path')"
    response = ResponseSample.from_meta(model, "flat" if estimate == "population"
                                        else provenance.get("model_prior", "labels"))
    if response is None:
        return None, f"{model_json} has no calibration sample (a model trained before photofeh kept one)"
    keep = np.ones(response.true.size, bool)
    if giants != "include" and np.isfinite(response.giant).all():  # models that kept each entry's class
        keep &= (response.giant == 1) == (giants == "only")
    if max_feh_err is not None:
        keep &= response.sigma <= max_feh_err
    return response.subset(keep), str(model_json)


def mdf_of_predictions(source, where: str | None = None, max_feh_err: float | None = None,
                       giants: str = "include", out_of_domain: str = "exclude", chunk_rows: int = 1_000_000,
                       n_boot: int = 200, seed: int = 0, n_components: int | None = None, method: str = "unfold",
                       estimate: str = "feh") -> tuple[dict, dict, np.ndarray | None]:
    """The metallicity distribution of a selection of a ``photofeh predict`` output (folder or file).

    ``method``: ``"unfold"`` (default) unfolds the estimates through the model's measured response
    (:mod:`photofeh.galaxy.unfold`: free of the estimator's shrinkage and of its errors' calibration, with
    the fractions below -1, -1.5 and -2); ``"xd"`` deconvolves them with their own errors
    (:mod:`photofeh.galaxy.mdf`), which is right only for likelihood-like estimates with calibrated errors.
    A model without a calibration sample falls back to ``"xd"``, and the summary says so.

    ``where``: a selection on the output's columns (``"abs(b) > 30 and sdss_g < 19"``; keep the columns with
    ``predict --keep``): column names, numbers, comparisons, and/or/not, arithmetic and abs/sqrt/log10, parsed and
    checked by :func:`photofeh.galaxy.query.parse_where`, never evaluated as code; ``max_feh_err``: leave out vaguer
    estimates; ``giants``: include, exclude or only (the model's class); ``out_of_domain``: exclude (default) or
    include stars outside the model's training domain; ``estimate``: ``"feh"`` (default) or ``"population"``,
    the ``feh_population`` column of a model trained with ``prior = "likelihood"`` (a Gaussian likelihood with
    its width, what deconvolving with the estimates' errors assumes). Every star left out is counted.
    Returns ``(summary, counts, estimates)``: the summary of :func:`mdf_summary`, the selection counts, and the
    selected estimates (past ``RAW_LIMIT`` stars, their :class:`BinnedEstimates` histogram instead).
    """
    import pandas as pd

    from photofeh.io.readers import iter_table
    from photofeh.io.validation import clean_columns

    if giants not in ("include", "exclude", "only"):
        raise ValueError(f"giants must be include, exclude or only, not {giants!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if out_of_domain not in ("exclude", "include"):
        raise ValueError(f"out_of_domain must be exclude or include, not {out_of_domain!r}")
    if estimate not in ("feh", "population"):
        raise ValueError(f"estimate must be feh or population, not {estimate!r}")
    col = "feh" if estimate == "feh" else "feh_population"
    response, response_from = (response_of_predictions(source, giants, max_feh_err, estimate) if method == "unfold"
                               else (None, ""))
    if method == "unfold" and response is None:
        method, fallback = "xd", f"unfolding impossible: {response_from}; deconvolved with the estimates' errors"
    else:
        fallback = None
    counts: dict[str, int] = {"stars": 0}

    def count(key: str, n: int) -> None:
        counts[key] = counts.get(key, 0) + int(n)

    if where:  # parsed and checked against the columns before any row is read; never eval'd (galaxy/query)
        from photofeh.galaxy.query import parse_where
        from photofeh.io.readers import table_columns

        selection = parse_where(where, table_columns(source))
    xs, es, binned = [], [], None
    for raw in iter_table(source, chunk_size=chunk_rows):
        chunk, _ = clean_columns(raw, str(source))
        for c in (col, f"{col}_err", "usable"):
            if c not in chunk:
                raise KeyError(f"{source} lacks the {c} column of a 'photofeh predict' output"
                               + (" (a model trained with prior = \"likelihood\" writes it)" if col != "feh" else ""))
        frame = pd.DataFrame(chunk)
        count("stars", len(frame))
        keep = frame["usable"].to_numpy(bool) & np.isfinite(frame[col].to_numpy(float))
        count("not usable", (~keep).sum())
        if "in_domain" in frame and out_of_domain == "exclude":
            outside = keep & ~frame["in_domain"].to_numpy(bool)
            count("outside the training domain", outside.sum())
            keep &= ~outside
        if where:
            chosen = selection(chunk, len(frame))
            count("not selected by --where", (keep & ~chosen).sum())
            keep &= chosen
        if giants != "include" and "is_giant" in frame:
            giant = frame["is_giant"].to_numpy(bool)
            cut = keep & (giant if giants == "exclude" else ~giant)
            count(f"removed by giants={giants}", cut.sum())
            keep &= ~cut
        if max_feh_err is not None:
            vague = keep & ~(frame[f"{col}_err"].to_numpy(float) <= max_feh_err)
            count(f"[Fe/H] error > {max_feh_err:g} dex", vague.sum())
            keep &= ~vague
        x, e = frame[col].to_numpy(float)[keep], frame[f"{col}_err"].to_numpy(float)[keep]
        teff = frame["teff"].to_numpy(float)[keep] if "teff" in frame else None  # for the unfolding's matching
        count("selected", x.size)
        if binned is None and method == "unfold":
            binned = BinnedEstimates()
        if binned is None:
            xs.append(x)
            es.append(e)
            if sum(a.size for a in xs) > RAW_LIMIT:
                binned = BinnedEstimates()
                binned.add(np.concatenate(xs), np.concatenate(es))
                xs, es = [], []
        else:
            binned.add(x, e, teff)
    if counts["stars"] == 0:
        raise ValueError(f"{source} holds no predictions")
    if method == "unfold":
        from photofeh.galaxy.unfold import unfold_mdf

        summary = unfold_mdf(binned if binned is not None else BinnedEstimates(), response, n_boot=n_boot,
                             seed=seed)
        summary["response_from"] = response_from
        return summary, counts, binned
    if binned is not None:
        summary = binned.summary(n_boot=n_boot, seed=seed, n_components=n_components)
        return with_fractions(summary, fallback), counts, binned
    x, e = (np.concatenate(a) if a else np.empty(0) for a in (xs, es))
    if x.size < MIN_STARS:
        raise ValueError(f"the selection holds {x.size} stars; an MDF needs at least {MIN_STARS} "
                         f"(counts: {counts})")
    return with_fractions(mdf_summary(x, e, n_boot=n_boot, seed=seed, n_components=n_components), fallback), counts, x


def with_fractions(summary: dict, note: str | None) -> dict:
    """An XD summary with the fractions below -1, -1.5 and -2 of its mixture (no bootstrap error: NaN)."""
    from photofeh.galaxy.unfold import FRACTION_THRESHOLDS

    mdf = MixtureMDF.from_dict(summary["mixture"])
    summary["fraction_below"] = {f"{t:g}": {"value": float(mdf.cdf(t)), "error": float("nan")}
                                 for t in FRACTION_THRESHOLDS}
    summary["method"] = "extreme deconvolution with the estimates' errors (Bovy, Hogg & Roweis 2011)"
    if note:
        summary["method_note"] = note
    return summary


def summary_distribution(summary: dict):
    """The distribution an MDF summary describes (an unfolded grid or an XD mixture); both have ``pdf``."""
    if "distribution" in summary:
        from photofeh.galaxy.unfold import GridMDF

        return GridMDF.from_dict(summary["distribution"])
    return MixtureMDF.from_dict(summary["mixture"])
