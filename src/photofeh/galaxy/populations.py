"""Metallicity distributions of selections of predicted stars: ``photofeh mdf`` and its figure.

Reads a ``photofeh predict`` output chunk by chunk, applies the selection (a pandas query, the giant class,
an error cut, the training domain), counts every star left out, and deconvolves the selected estimates with
their errors (:mod:`photofeh.galaxy.mdf`). The estimates should come from a flat-prior model (``prior = "flat"``):
deconvolving posterior means under the labels prior would count that prior twice (docs/populations.md).
"""

from __future__ import annotations

import numpy as np

from photofeh.galaxy.mdf import MIN_STARS, BinnedEstimates, MixtureMDF, mdf_summary

__all__ = ["mdf_of_predictions", "plot_mdf", "RAW_LIMIT"]

# Beyond this many selected stars the estimates go into a BinnedEstimates: bounded memory and time (the
# deconvolution and its bootstrap then cost the same for 10^5 and 10^9 stars; 1.5 million raw estimates
# with 100 bootstrap resamples ran for more than 10 minutes). Its 0.02 dex bins are far below any MDF's width.
RAW_LIMIT = 200_000


def mdf_of_predictions(source, where: str | None = None, max_feh_err: float | None = None,
                       giants: str = "include", out_of_domain: str = "exclude", chunk_rows: int = 1_000_000,
                       n_boot: int = 200, seed: int = 0, n_components: int | None = None
                       ) -> tuple[dict, dict, np.ndarray | None]:
    """The deconvolved MDF of a selection of a ``photofeh predict`` output (folder or file).

    ``where``: a pandas query on the output's columns (``"abs(b) > 30 and sdss_g < 19"``; keep the columns
    with ``predict --keep``); ``max_feh_err``: leave out vaguer estimates; ``giants``: include, exclude or
    only (the model's class); ``out_of_domain``: exclude (default) or include stars outside the model's
    training domain. Every star left out is counted. Returns ``(summary, counts, estimates)``: the summary of
    :func:`mdf_summary`, the selection counts, and the selected estimates (past ``RAW_LIMIT`` stars, their
    :class:`BinnedEstimates` histogram instead).
    """
    import pandas as pd

    from photofeh.io.readers import iter_table
    from photofeh.io.validation import clean_columns

    if giants not in ("include", "exclude", "only"):
        raise ValueError(f"giants must be include, exclude or only, not {giants!r}")
    if out_of_domain not in ("exclude", "include"):
        raise ValueError(f"out_of_domain must be exclude or include, not {out_of_domain!r}")
    counts: dict[str, int] = {"stars": 0}

    def count(key: str, n: int) -> None:
        counts[key] = counts.get(key, 0) + int(n)

    xs, es, binned = [], [], None
    for raw in iter_table(source, chunk_size=chunk_rows):
        chunk, _ = clean_columns(raw, str(source))
        for c in ("feh", "feh_err", "usable"):
            if c not in chunk:
                raise KeyError(f"{source} lacks the {c} column of a 'photofeh predict' output")
        frame = pd.DataFrame(chunk)
        count("stars", len(frame))
        keep = frame["usable"].to_numpy(bool) & np.isfinite(frame["feh"].to_numpy(float))
        count("not usable", (~keep).sum())
        if "in_domain" in frame and out_of_domain == "exclude":
            outside = keep & ~frame["in_domain"].to_numpy(bool)
            count("outside the training domain", outside.sum())
            keep &= ~outside
        if where:
            try:
                chosen = frame.eval(where)
            except Exception as exc:  # pandas raises many kinds; the message names the problem
                raise ValueError(f"--where {where!r}: {exc}") from None
            chosen = np.asarray(chosen, bool) if np.ndim(chosen) else np.full(len(frame), bool(chosen))
            count("not selected by --where", (keep & ~chosen).sum())
            keep &= chosen
        if giants != "include" and "is_giant" in frame:
            giant = frame["is_giant"].to_numpy(bool)
            cut = keep & (giant if giants == "exclude" else ~giant)
            count(f"removed by giants={giants}", cut.sum())
            keep &= ~cut
        if max_feh_err is not None:
            vague = keep & ~(frame["feh_err"].to_numpy(float) <= max_feh_err)
            count(f"[Fe/H] error > {max_feh_err:g} dex", vague.sum())
            keep &= ~vague
        x, e = frame["feh"].to_numpy(float)[keep], frame["feh_err"].to_numpy(float)[keep]
        count("selected", x.size)
        if binned is None:
            xs.append(x)
            es.append(e)
            if sum(a.size for a in xs) > RAW_LIMIT:
                binned = BinnedEstimates()
                binned.add(np.concatenate(xs), np.concatenate(es))
                xs, es = [], []
        else:
            binned.add(x, e)
    if counts["stars"] == 0:
        raise ValueError(f"{source} holds no predictions")
    if binned is not None:
        return binned.summary(n_boot=n_boot, seed=seed, n_components=n_components), counts, binned
    x, e = (np.concatenate(a) if a else np.empty(0) for a in (xs, es))
    if x.size < MIN_STARS:
        raise ValueError(f"the selection holds {x.size} stars; an MDF needs at least {MIN_STARS} "
                         f"(counts: {counts})")
    return mdf_summary(x, e, n_boot=n_boot, seed=seed, n_components=n_components), counts, x


def plot_mdf(summary: dict, x: np.ndarray | BinnedEstimates | None, stem, title: str = "") -> list:
    """The deconvolved MDF (with its bootstrap median) over the histogram of the estimates, if given; written
    as ``stem``.png and ``stem``.pdf (:mod:`photofeh.report.style`). Returns the paths."""
    from photofeh.report.style import new_figure, save_figure, styled

    mdf = MixtureMDF.from_dict(summary["mixture"])
    grid = np.linspace(-4.0, 1.0, 501)
    with styled():
        fig, axes = new_figure(1, 1, width="single", aspect=0.75)
        _draw_mdf(axes[0, 0], mdf, summary, x, grid, title)
        return save_figure(fig, stem)


def _draw_mdf(ax, mdf, summary, x, grid, title) -> None:
    edges = np.arange(-4.0, 1.01, 0.1)
    if isinstance(x, BinnedEstimates):  # many stars: their histogram (0.02 dex bins) summed into 0.1 dex bins
        hist, shown = x.estimate_histogram(edges), x.n
    elif x is not None and x.size:
        hist, _ = np.histogram(x, bins=edges)
        shown = x.size
    else:
        hist, shown = None, 0
    if hist is not None and shown:
        ax.stairs(hist / (max(hist.sum(), 1) * 0.1), edges, color="0.5", label=f"estimates ({shown:,d} stars)")
    ax.plot(grid, mdf.pdf(grid), color="C0", lw=2, label="deconvolved MDF")
    ax.axvline(summary["median"], color="C0", ls="--",
               label=f"median {summary['median']:.2f} $\\pm$ {summary['median_se']:.2f}")
    ax.set_xlabel("[Fe/H] (dex)")
    ax.set_ylabel("stars per dex (normalised)")
    if hist is not None and shown:
        from photofeh.report.style import data_range

        cdf = np.cumsum(hist) / max(hist.sum(), 1)
        ax.set_xlim(*data_range(np.interp([0.002, 0.998], cdf, edges[1:]), 0, 100, step=0.25))
    ax.set_title(title)
    ax.legend(fontsize=7)
