"""Label noise in the likelihood (issue 26, item 2): each label's error enters the Gaussian NLL's variance
(:func:`photofeh.model.train_loop.multitask_loss`), so that noisy labels do not set the network's width.

The errors come from the table (``<label column>_err``; green2020's from its covariances, by the preset), or,
where a table has none, from a constant of the config (``label_errors``), e.g. the SSPP's [Fe/H] scatter
for the SEGUE colours. ``label_noise = false`` drops them all: the network's variance then absorbs the
labels' own scatter (what training did before issue 26 for tables without error columns)."""

from __future__ import annotations

import numpy as np

__all__ = ["SSPP_FEH_ERR", "apply_label_errors"]

# The SEGUE Stellar Parameter Pipeline's typical internal [Fe/H] error, sigma([Fe/H]) <= 0.10 dex for S/N >= 10 and
# 4500 K <= Teff <= 7500 K (Lee et al. 2008a, AJ 136, 2022; as summarised on the SDSS SSPP pages). The external
# error against high-resolution spectra is larger, 0.22 dex random plus systematic (Allende Prieto et al. 2008,
# AJ 136, 2070); the scatter between stars, what the likelihood's variance needs, is the internal one. The mock's
# SSPP-like labels use it as their floor too (photofeh.simulate.spectro.sspp_labels).
SSPP_FEH_ERR = 0.10


def apply_label_errors(p, cfg) -> dict:
    """Set the label errors of a :class:`~photofeh.model.train_data.Prepared` table in place, as ``cfg`` asks
    (``label_noise``, ``label_errors``); return what was used, for model.json: per label the stars with an error
    from the table, with the constant, and the median error."""
    labels = list(cfg.labels)
    if not cfg.label_noise:
        p.e[:] = 0.0
        return {"label_noise": False}
    out: dict = {"label_noise": True, "labels": {}}
    for j, lab in enumerate(labels):
        has = np.isfinite(p.y[:, j])
        from_table = has & (p.e[:, j] > 0)
        constant = cfg.label_errors.get(lab)
        if constant is not None:
            p.e[has & ~from_table, j] = float(constant)
        used = p.e[has, j]
        out["labels"][lab] = {"from_table": int(from_table.sum()),
                              "constant": None if constant is None else float(constant),
                              "from_constant": int((has & ~from_table).sum()) if constant is not None else 0,
                              "median_error": round(float(np.median(used)), 4) if used.size else None}
    return out
