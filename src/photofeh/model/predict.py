"""Using a trained model: load a folder in one call, predict with uncertainties.

Like astroNN's ``predict``, every label comes with its error, and the result is
the kind of table it was given: a pandas DataFrame keeps its index, an astropy
Table gets units, a dict of arrays gives a dict. Rows lacking a feature get NaN
predictions and ``usable = False``, never a crash; archive column names are
mapped with ``preset=`` (a preset name, a mapping file or a Preset). A
``source_id`` column of the input (or one the preset makes) comes first in the
result, and the run's provenance (model digest, photofeh version, prior, preset:
what ``photofeh predict`` writes into its Parquet metadata) is in
``DataFrame.attrs`` (an astropy Table's ``meta``). A table that lacks columns
raises :class:`photofeh.errors.MissingColumnsError` (a ``KeyError``) with the
message the command line prints.

>>> import photofeh
>>> from photofeh.simulate import MockSurveyConfig, iter_chunks
>>> from photofeh.model.train import TrainConfig, train
>>> stars = next(iter_chunks(MockSurveyConfig(n_stars=3000, seed=5, spec_only=True), chunk_size=3000))
>>> run = train(stars, TrainConfig(epochs=2, baseline_rounds=0), tmp_dir / "run", log=lambda s: None)
>>> model = photofeh.load_model(tmp_dir / "run")
>>> import pandas as pd
>>> df = pd.DataFrame(stars).set_index("source_id").iloc[:5]
>>> out = model.predict(df)
>>> out.index.equals(df.index), list(out.columns[:4])
(True, ['feh', 'feh_err', 'logg', 'logg_err'])
>>> out.attrs["model_digest"] == model.digest, out.attrs["model_prior"], out.attrs["preset"]
(True, 'labels', '')
>>> list(model.predict(df.reset_index()).columns[:2])
['source_id', 'feh']
>>> model.predict(df.drop(columns="sdss_g"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
photofeh.errors.MissingColumnsError: the catalogue lacks columns ['sdss_g'] that this model needs (features: ...)
>>> from astropy.table import Table
>>> model.predict(Table.from_pandas(df))["teff"].unit
Unit("K")
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from photofeh.errors import MissingColumnsError
from photofeh.io.validation import column_rule
from photofeh.model.artifact import load_model_folder
from photofeh.model.domain import SCORE_LIMIT, TrainingDomain, feature_errors
from photofeh.model.features import Standardizer, as_columns, feature_matrix, required_columns
from photofeh.model.likelihood import LikelihoodPrior
from photofeh.model.missing import column_rows, enough_features, network_inputs, prediction_inputs
from photofeh.model.networks import build_network
from photofeh.model.prior import divide_out, prior_of

UNPHYSICAL = "predictions outside the physical range"
BATCH_ROWS = 4096  # rows per forward pass (PhotometricModel._ensemble)

__all__ = ["PhotometricModel", "FeatureBatch", "load_model", "model_folder", "model_provenance", "UNPHYSICAL"]


@dataclass
class FeatureBatch:
    """Stars on their way through :meth:`PhotometricModel.predict_features`: the float32 features ``X`` of
    every row, the rows the network sees (``ok``; their features ``Xok`` and errors ``E_ok``), the network's
    inputs ``Z``, every row's domain score, and once :meth:`~PhotometricModel.forward` has run, its
    ``outputs`` (mean, variance, giant probability)."""

    X: np.ndarray
    ok: np.ndarray
    Xok: np.ndarray
    E_ok: np.ndarray | None
    Z: np.ndarray | None
    score: np.ndarray | None
    outputs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


class PhotometricModel:
    """A trained (ensemble of) network(s) with its normalisation and calibration."""

    def __init__(self, meta: dict, state_dicts: list[dict[str, torch.Tensor]], device: str = "cpu",
                 prior: str | None = None, folder: str | os.PathLike | None = None):
        self.meta = meta
        self.folder = None if folder is None else Path(folder)  # where it was loaded from (provenance)
        self._digest: str | None = None
        # the prior of the estimates returned: the model's own, or "flat" (a labels-prior model's training
        # prior divided out at prediction time, photofeh.model.prior.divide_out)
        self.trained_prior = prior_of(meta)
        self.estimate_prior = prior or ("labels" if self.trained_prior == "likelihood" else self.trained_prior)
        if self.estimate_prior not in ("labels", "flat"):
            raise ValueError(f"prior must be labels or flat, got {prior!r}")
        if self.estimate_prior == "labels" and self.trained_prior == "flat":
            raise ValueError("this model was trained with the flat prior: its estimates cannot be given the labels "
                             "prior back; use a model trained with prior = \"labels\"")
        self._divide = None
        if self.estimate_prior == "flat" and self.trained_prior == "labels":
            info = meta.get("prior") or {}
            label = info.get("label", "feh")
            hist = info.get("training_distribution")
            if not hist or not hist.get("counts") or label not in meta["labels"]:
                raise ValueError("this model does not record its training distribution (trained before "
                                 "photofeh stored it): retrain it, or train with prior = \"flat\"")
            self._divide = (label, hist)
        self._likelihood = LikelihoodPrior.from_meta(meta)
        self.features: list[str] = meta["features"]
        self.labels: list[str] = meta["labels"]
        self.ebv_column: str = meta.get("ebv_column", "ebv")
        self.x_scale = Standardizer.from_dict(meta["input_standardizer"])
        # the same standardisation in float32, in place: the float64 temporaries of Standardizer.transform
        # were 7% of a chunk's time (inputs change by float32 rounding only)
        self._x_mean32 = self.x_scale.mean.astype(np.float32)
        self._x_inv_std32 = (1.0 / self.x_scale.std).astype(np.float32)
        self.y_scale = Standardizer.from_dict(meta["label_standardizer"])
        self.sigma_scale = np.asarray(meta.get("sigma_scale", [1.0] * len(self.labels)), float)
        # class-conditional labels (photofeh.model.networks.heads): their giant components follow the L labels
        # in the ensemble's outputs, with the labels' normalisation and their own sigma scales
        self.conditional: list[str] = list(meta.get("class_conditional") or [])
        self._cond_index = [self.labels.index(lab) for lab in self.conditional]
        if self.conditional:
            self.sigma_scale = np.concatenate([self.sigma_scale, np.asarray(meta["sigma_scale_giant"], float)])
        self.temperature = float(meta.get("class_temperature", 1.0))
        # M_abs labels' error distribution measured on validation parallaxes (photofeh.model.absmag_calibration)
        self.absmag_calibration: dict[str, dict] = dict(meta.get("absmag_calibration") or {})
        self.masked = meta.get("missing", "require") == "mask"  # see photofeh.model.missing
        # the training domain (photofeh.model.domain); models trained before it was stored have none
        self.domain = TrainingDomain.from_dict(meta["domain"]) if meta.get("domain") else None
        # a noise-aware model (photofeh.model.noise) is told each star's feature errors: no sigma points
        self.noise_aware = bool(meta.get("noise_aware", False))
        self.e_scale = Standardizer.from_dict(meta["error_standardizer"]) if self.noise_aware else None
        if self.e_scale is not None:
            self._e_mean32 = self.e_scale.mean.astype(np.float32)
            self._e_inv_std32 = (1.0 / self.e_scale.std).astype(np.float32)
        n_inputs = network_inputs(len(self.features), meta.get("missing", "require"), self.noise_aware)
        self.device = torch.device(device)
        self.members = []
        for sd in state_dicts:
            net = build_network(meta["architecture"], n_inputs, self.labels, meta["heads"],
                                classify=meta.get("classify", True), class_conditional=self.conditional)
            net.load_state_dict(sd)
            net.eval()
            _fold_batchnorm(net)
            self.members.append(net.folded().requires_grad_(False).to(self.device))

    @property
    def digest(self) -> str | None:
        """SHA-256 of the model folder's files (:func:`photofeh.model.artifact.model_digest`), None for a model
        built in memory."""
        if self._digest is None and self.folder is not None:
            from photofeh.model.artifact import model_digest

            self._digest = model_digest(self.folder)
        return self._digest

    @property
    def required_columns(self) -> list[str]:
        return self._with_errors(required_columns(self.features, self.ebv_column, self.meta.get("deredden", True)))

    def needed_columns(self, available) -> list[str]:
        """The columns this model needs from a table with columns ``available``: as :attr:`required_columns`,
        but a colour the table gives as a column of its own replaces its two bands
        (:func:`photofeh.model.features.colour_column`)."""
        return self._with_errors(required_columns(self.features, self.ebv_column, self.meta.get("deredden", True),
                                                  available))

    def _with_errors(self, columns: list[str]) -> list[str]:
        """A noise-aware model also needs the error of every band and of the parallax it reads."""
        if not self.noise_aware:
            return columns
        from photofeh.bands import BANDS

        errs = [f"{c}_err" for c in columns if c in BANDS] + ["parallax_error" for c in columns if c == "parallax"]
        return list(dict.fromkeys([*columns, *errs]))

    @torch.inference_mode()
    def predict_features(self, X: np.ndarray, batch_size: int = BATCH_ROWS, counts: Counter | None = None,
                         X_err: np.ndarray | None = None, dtype=np.float64) -> dict[str, np.ndarray]:
        """Predict from a raw (un-standardised) feature matrix in the model's feature order.

        Rows lacking features, and rows whose outputs are not finite or fall outside a label's physical
        range (:mod:`photofeh.io.validation`), get NaN and ``usable = False``; ``counts[UNPHYSICAL]`` counts the
        latter. With a stored training domain (:mod:`photofeh.model.domain`), every row gets ``domain_score`` and
        ``in_domain``; ``X_err`` (feature errors) lets errors beyond the training stars' widen the
        uncertainties (:meth:`_excess_error_variance`) and mark the row out of the domain. ``dtype``: of the
        label and error columns (``photofeh predict`` writes float32).

        Three steps, which ``photofeh predict`` runs in three threads on successive chunks
        (:mod:`photofeh.scale.predict_catalog`): :meth:`prepare_features` (the network's inputs, the domain
        score), :meth:`forward` (the network alone) and :meth:`finish` (calibration, checks, rows back in place).
        """
        batch = self.prepare_features(X, X_err)
        self.forward(batch, batch_size)
        return self.finish(batch, counts, dtype, batch_size)

    def prepare_features(self, X: np.ndarray, X_err: np.ndarray | None = None) -> FeatureBatch:
        """The first step of :meth:`predict_features`: which rows the network sees, their inputs, and every
        row's domain score."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected an array of shape (n, {len(self.features)}) with features {self.features}")
        if self.masked:  # predict from what each star has, given enough of it
            ok = enough_features(X, int(self.meta.get("min_features", 1)))
        else:
            ok = np.all(np.isfinite(X), axis=1)  # the network sees usable rows only; the others stay NaN
        if self.noise_aware and X_err is None:
            raise ValueError("this noise-aware model needs the feature errors (X_err) of every star")
        every = bool(ok.all())  # most chunks of a catalogue of usable stars: no copy
        Xok = X if every else column_rows(X, ok)
        E_ok = None if X_err is None else (np.asarray(X_err, np.float32) if every
                                            else column_rows(np.asarray(X_err, np.float32), ok))
        score = self.domain.score(X, X_err) if self.domain is not None else None
        return FeatureBatch(X, ok, Xok, E_ok, self._network_inputs(Xok, E_ok), score)

    @torch.inference_mode()
    def forward(self, batch: FeatureBatch, batch_size: int = BATCH_ROWS) -> FeatureBatch:
        """The second step of :meth:`predict_features`: the network on the prepared inputs (``batch.outputs``)."""
        batch.outputs = self._ensemble(batch.Z, batch_size)
        batch.Z = None  # not needed again: its memory goes back while the chunk waits to be finished
        return batch

    @torch.inference_mode()
    def finish(self, batch: FeatureBatch, counts: Counter | None = None, dtype=np.float64,
               batch_size: int = BATCH_ROWS) -> dict[str, np.ndarray]:
        """The last step of :meth:`predict_features`: the network's outputs -> labels with errors (calibrated,
        checked, every row back in its place)."""
        X, ok, Xok, E_ok = batch.X, batch.ok, batch.Xok, batch.E_ok
        mean, var, prob = batch.outputs
        noisy = np.zeros(len(Xok), bool)
        if self.domain is not None and E_ok is not None:
            if self.noise_aware:
                # the network read each star's errors: one pass gives its uncertainty. A star noisier than the
                # re-observed training stars is beyond what it learned: out of the domain
                noisy = self.domain.too_noisy(E_ok, factor=1.0)
            else:
                excess = self.domain.excess_error(E_ok)
                widen = (excess > 0).any(axis=1)
                if widen.any():
                    var[widen] += self._excess_error_variance(Xok[widen], excess[widen], batch_size, mean[widen])
                noisy = self.domain.too_noisy(E_ok)
        loc, scale = self.y_scale.mean, self.y_scale.std
        if self.conditional:  # the giant components, in their labels' units
            loc, scale = (np.concatenate([a, a[self._cond_index]]) for a in (loc, scale))
        # column-major (n, L): every step below works label by label on contiguous columns (row-wise reductions
        # over a C-ordered (n, 5) array cost 2-3x as much; same numbers)
        value = np.empty(mean.shape, order="F")
        np.multiply(mean, scale, out=value)
        value += loc
        err = np.empty(var.shape, order="F")
        err[...] = np.sqrt(var)
        err *= scale
        components: dict[str, np.ndarray] = {}
        if self.absmag_calibration:
            value, err = self._calibrated_absmag(value, err)
        if self.conditional:
            value, err, components = self._class_estimates(value, err, prob)
        if self._likelihood is not None:  # the posterior (or with prior flat the likelihood) and <label>_population
            value, err, components = self._likelihood.estimates(value, err, components, self.estimate_prior)
        # the last guard of "no silent bad value": a row whose outputs are not all finite (overflow in a
        # tampered or diverged model) is not usable, never a number marked usable
        finite = np.isfinite(prob)
        for j in range(value.shape[1]):
            finite &= np.isfinite(value[:, j])
            finite &= np.isfinite(err[:, j])
        # ... and a prediction outside its label's physical range (e.g. [Fe/H] = -60 from a garbled input that
        # still passed validation) is no estimate: counted, and the row is not usable
        with np.errstate(invalid="ignore"):
            physical = np.ones(len(value), bool)
            for j, lab in enumerate(self.labels):
                rule = column_rule(lab)
                if rule is not None:
                    physical &= (value[:, j] >= rule.lo) & (value[:, j] <= rule.hi)
        if counts is not None:
            counts[UNPHYSICAL] += int(np.count_nonzero(finite & ~physical))
        finite &= physical
        rows = np.flatnonzero(ok)
        if not finite.all():
            ok = ok.copy()
            ok[rows[~finite]] = False
            rows, value, err, prob, noisy = rows[finite], value[finite], err[finite], prob[finite], noisy[finite]

        # the training prior is divided out in float64 (photofeh.model.prior.divide_out), then cast
        kind = np.float64 if self._divide is not None else dtype

        every = len(rows) == len(X)  # every row predicted (a chunk of usable stars): no NaN to spread them into

        def spread(values: np.ndarray) -> np.ndarray:
            if every:
                return np.array(values, kind)
            full = np.full(len(X), np.nan, kind)
            full[rows] = values
            return full

        result: dict[str, np.ndarray] = {}
        for j, lab in enumerate(self.labels):
            result[lab] = spread(value[:, j])
            result[f"{lab}_err"] = spread(err[:, j])
        for name, values in components.items():
            result[name] = spread(values[finite] if not finite.all() else values)
        if self.meta.get("classify", True):
            result["p_giant"] = spread(prob)
            with np.errstate(invalid="ignore"):
                result["is_giant"] = ok & (result["p_giant"] >= self.meta.get("class_threshold", 0.5))
        result["usable"] = ok
        if self._divide is not None:  # the training prior divided out of a labels-prior estimate
            label, hist = self._divide
            result[label], result[f"{label}_err"] = divide_out(result[label], result[f"{label}_err"], hist)
            for name, values in result.items():
                if values.dtype.kind == "f":
                    result[name] = values.astype(dtype, copy=False)
        if self.domain is not None:
            score = batch.score
            inside = ok & (score <= SCORE_LIMIT)
            inside[rows[noisy | self.domain.label_extrapolation(value, err)]] = False
            result["domain_score"] = score
            result["in_domain"] = inside
        return result

    def _class_estimates(self, value: np.ndarray, err: np.ndarray, prob: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The point estimate of each class-conditional label from its dwarf and giant components.

        ``value``, ``err``: (n, L + C), the C giant components after the L labels (whose own columns hold the
        dwarf components). The estimate is the component of the more probable class (P(giant) >= 0.5), and its
        error the root mean square of the mixture about it, sqrt(p_c s_c^2 + (1 - p_c)(s_o^2 + (m_o - m_c)^2)),
        where c is the chosen and o the other class: the spread of the value around the estimate under the
        model's own mixture, so a star that may be either gets the error that says so. Returns the L columns
        with these estimates, and the components as ``<label>_dwarf``, ``<label>_giant`` with ``_err``.
        """
        L = len(self.labels)
        giant = prob >= 0.5
        p_chosen = np.where(giant, prob, 1.0 - prob)
        value, err = value.copy(order="K"), err.copy(order="K")
        components: dict[str, np.ndarray] = {}
        for k, (j, lab) in enumerate(zip(self._cond_index, self.conditional, strict=True)):
            m_d, s_d, m_g, s_g = value[:, j], err[:, j], value[:, L + k], err[:, L + k]
            components.update({f"{lab}_dwarf": m_d.copy(), f"{lab}_dwarf_err": s_d.copy(),
                               f"{lab}_giant": m_g.copy(), f"{lab}_giant_err": s_g.copy()})
            m_c, s_c = np.where(giant, m_g, m_d), np.where(giant, s_g, s_d)
            m_o, s_o = np.where(giant, m_d, m_g), np.where(giant, s_d, s_g)
            value[:, j] = m_c
            err[:, j] = np.sqrt(p_chosen * s_c**2 + (1.0 - p_chosen) * (s_o**2 + (m_o - m_c) ** 2))
        return value[:, :L], err[:, :L], components

    def _calibrated_absmag(self, value: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """M_abs estimates moved to the median of their measured error distribution and errors scaled to the
        half-width about it that holds 68% (:mod:`photofeh.model.absmag_calibration`), by cell of the estimated
        [Fe/H] and Teff (by [Fe/H] alone for a model.json without ``teff_edges``); for a class-conditional label
        each component with its own class's calibration, before the estimate is chosen between them. ``value``,
        ``err``: (n, L + C) as :meth:`_class_estimates` takes them."""
        from photofeh.model.absmag_calibration import calibrate_column

        value, err = value.copy(order="K"), err.copy(order="K")
        feh = value[:, self.labels.index("feh")] if "feh" in self.labels else None
        teff = value[:, self.labels.index("teff")] if "teff" in self.labels else None
        for lab, calibration in self.absmag_calibration.items():
            j = self.labels.index(lab)
            columns = ({"dwarf": j, "giant": len(self.labels) + self.conditional.index(lab)}
                       if lab in self.conditional else {"all": j})
            for group, col in columns.items():
                value[:, col], err[:, col] = calibrate_column(value[:, col], err[:, col], feh, calibration[group],
                                                              calibration["feh_edges"], teff,
                                                              calibration.get("teff_edges"))
        return value, err

    def _network_inputs(self, X: np.ndarray, X_err: np.ndarray | None = None) -> np.ndarray:
        """Raw features -> the network's float32 inputs (:func:`photofeh.model.missing.prediction_inputs`):
        standardised; for a masked model, plus the measured-bits; for a noise-aware model given ``X_err``,
        plus the standardised log-errors."""
        errors = (self._e_mean32, self._e_inv_std32) if self.noise_aware and X_err is not None else None
        return prediction_inputs(X, self._x_mean32, self._x_inv_std32, self.masked, X_err, errors)

    @torch.inference_mode()
    def _ensemble(self, Z: np.ndarray, batch_size: int,
                  mean_only: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean and variance (standardised label units, float32) and giant probability of every row: for
        an ensemble, the mixture's (Lakshminarayanan et al. 2017: mean of the means; mean of the calibrated
        variances plus the variance of the means).

        Batches of 4,096 rows keep the activations of the default network (at most 128 wide) in the core's cache:
        on 2 cores they ran 1.4-1.6x faster than 16,384-row batches (benchmarks/bench_predict.py).
        ``mean_only``: the means alone (the sigma points need no variances or probabilities); the other two
        are then zero.
        """
        C = len(self.conditional)
        n, L, M = len(Z), len(self.labels) + C, len(self.members)
        s2 = torch.from_numpy((self.sigma_scale**2).astype(np.float32))
        mean = np.zeros((n, L), np.float32)
        var = np.zeros((n, L), np.float32)
        prob = np.zeros(n, np.float32)
        square = np.zeros((n, L), np.float32) if M > 1 else None
        for net in self.members:
            for s in range(0, n, batch_size):
                out = net(torch.from_numpy(Z[s:s + batch_size]).to(self.device))
                m, logvar = out["mean"], out["logvar"]
                if C:  # the giant components of class-conditional labels after the labels
                    m, logvar = torch.cat([m, out["mean_giant"]], 1), torch.cat([logvar, out["logvar_giant"]], 1)
                m = m.cpu()
                mean[s:s + batch_size] += m.numpy()
                if mean_only:
                    continue
                var[s:s + batch_size] += (logvar.exp().cpu() * s2).numpy()
                if square is not None:
                    square[s:s + batch_size] += (m * m).numpy()
                if "logit" in out:
                    prob[s:s + batch_size] += torch.sigmoid(out["logit"] / self.temperature).cpu().numpy()
        if M > 1:
            mean /= M
            if not mean_only:
                var = var / M + np.maximum(square / M - mean * mean, 0.0)
                prob /= M
        return mean, var, prob

    def _excess_error_variance(self, X: np.ndarray, excess: np.ndarray, batch_size: int = BATCH_ROWS,
                               centre: np.ndarray | None = None) -> np.ndarray:
        """Variance (standardised label units) that feature errors beyond the training stars' add to the
        ensemble-mean estimate, by sigma points (the unscented transform; Julier & Uhlmann 1997, 2004).

        For each feature j with an excess e_j, the estimate is evaluated at x and x +- sqrt(3) e_j, the
        three-point Gauss-Hermite rule (weights 2/3, 1/6, 1/6), exact for the mean and variance of any cubic
        in a Gaussian variable; the features' contributions add (independent errors; products of two
        features' noise are left out). Against a 1,024-draw Monte Carlo of the same stars, its variance is 3%
        high at the median and within 0.95-1.12 for 68% of stars; the 32-draw Monte Carlo it replaced was 16% low
        at the median with a 16-84% range of 0.63-1.33 (its own noise), and needed 32 evaluations per star
        where this needs two per feature with an excess (about 14 for a faint star; bench_precision.py).
        ``centre``: the ensemble means at ``X`` when the caller has them (predict_features), else computed.
        """
        h = np.sqrt(3.0)
        w_centre, w_side = 1.0 - 1.0 / h**2, 0.5 / h**2
        star, feature = np.nonzero(excess > 0)
        step = (h * excess[star, feature]).astype(np.float32)
        Xp = np.repeat(X[star], 2, axis=0)  # rows: (+, -) for every (star, feature) with an excess
        cols = np.repeat(feature, 2)
        Xp[np.arange(len(Xp)), cols] += np.ravel(np.column_stack([step, -step]))
        if centre is None:
            centre = self._ensemble(self._network_inputs(X), batch_size, mean_only=True)[0]
        f0 = centre[star].astype(np.float64)
        fp = self._ensemble(self._network_inputs(Xp), batch_size, mean_only=True)[0].astype(np.float64)
        plus, minus = fp[0::2], fp[1::2]
        mean = w_centre * f0 + w_side * (plus + minus)
        contribution = w_centre * (f0 - mean) ** 2 + w_side * ((plus - mean) ** 2 + (minus - mean) ** 2)
        # each star's features add up (np.bincount per label: np.add.at was 5x slower)
        return np.stack([np.bincount(star, weights=contribution[:, j], minlength=len(X))
                         for j in range(contribution.shape[1])], axis=1).astype(np.float32)

    def predict(self, data, batch_size: int = BATCH_ROWS, counts: Counter | None = None, preset=None):
        """Predict every label with its error for a table of stars.

        ``data``: a pandas DataFrame (the result keeps its index), an astropy Table (the result is a Table with
        units) or a dict of arrays (the result is a dict). ``preset``: archive column names onto the schema
        (a preset name such as ``"gaia_dr3"``, a mapping file, or a Preset). ``counts``: a Counter that receives
        the values the validation layer replaced and the unphysical predictions.

        The input's ``source_id`` (or the one the preset makes) is the result's first column; a DataFrame's
        ``attrs`` (a Table's ``meta``) hold the provenance :func:`model_provenance` gives, with the preset and
        the time, as ``photofeh predict`` writes it. Errors are those of the command line
        (:mod:`photofeh.errors`): :class:`~photofeh.errors.MissingColumnsError` for a missing column,
        :class:`~photofeh.errors.UnknownPresetError` for an unknown preset, both ``KeyError``.
        """
        import time

        from photofeh.io.presets import apply_preset, resolve_preset

        resolved = resolve_preset(preset)
        # no sentinel or impossible value reaches the network (photofeh.io.validation)
        cols, report = apply_preset(as_columns(data), resolved, "catalogue")
        if counts is not None:
            counts.update({k: v for k, v in report.items() if v})
        result = self.predict_columns(cols, batch_size, counts)
        if "source_id" in cols:
            result = {"source_id": np.asarray(cols["source_id"]), **result}
        out = _like(data, result)
        info = {"photofeh_kind": "predictions", **model_provenance(self),
                "preset": "" if resolved is None else resolved.name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if hasattr(out, "attrs"):  # pandas
            out.attrs.update(info)
        elif hasattr(out, "meta"):  # astropy
            out.meta.update(info)
        return out

    def predict_columns(self, cols, batch_size: int = BATCH_ROWS, counts: Counter | None = None,
                        dtype=np.float64) -> dict[str, np.ndarray]:
        """Predict from schema columns that have already been through the validation layer
        (:func:`photofeh.io.presets.apply_preset`), as a catalogue run's chunks have: a dict of arrays."""
        X, X_err = self.column_features(cols)
        return self.predict_features(X, batch_size, counts, X_err, dtype)

    def column_features(self, cols) -> tuple[np.ndarray, np.ndarray | None]:
        """Validated schema columns -> the feature matrix and (where the model uses them) the feature errors,
        the arguments of :meth:`predict_features`; a missing column raises :class:`MissingColumnsError`."""
        missing = [c for c in self.needed_columns(cols) if c not in cols]
        if missing:
            raise MissingColumnsError(f"the catalogue lacks columns {missing} that this model needs "
                                      f"(features: {', '.join(self.features)})")
        X, _ = feature_matrix(cols, self.features, self.ebv_column, self.meta.get("deredden", True))
        X_err = feature_errors(cols, self.features) if self.domain is not None or self.noise_aware else None
        return X, X_err


# Units of the outputs in an astropy Table (log g in dex of cm s^-2, [Fe/H] in dex, M_abs in mag)
LABEL_UNITS = {"feh": "dex", "logg": "dex", "teff": "K"}


def _unit(name: str) -> str | None:
    base = name.removesuffix("_err")
    if base.startswith("mabs_"):
        return "mag"
    return LABEL_UNITS.get(base)


def _like(data, result: dict[str, np.ndarray]):
    """The predictions as the kind of table the stars came in."""
    if hasattr(data, "colnames"):  # astropy Table
        from astropy.table import Table

        table = Table(result)
        for name in table.colnames:
            if _unit(name):
                table[name].unit = _unit(name)
        return table
    if hasattr(data, "columns") and hasattr(data, "index"):  # pandas
        import pandas as pd

        return pd.DataFrame(result, index=data.index)
    return result


def _fold_batchnorm(module: torch.nn.Module) -> None:
    """Fold every eval-mode BatchNorm1d into the Linear layer before it (same outputs to float32
    rounding, one layer fewer: ~10% faster inference)."""
    from torch.nn.utils.fusion import fuse_linear_bn_eval

    for child in module.children():
        if isinstance(child, torch.nn.Sequential):
            layers = list(child)
            for i in range(len(layers) - 1):
                if isinstance(layers[i], torch.nn.Linear) and isinstance(layers[i + 1], torch.nn.BatchNorm1d):
                    child[i] = fuse_linear_bn_eval(layers[i], layers[i + 1])
                    child[i + 1] = torch.nn.Identity()
        _fold_batchnorm(child)


def model_provenance(model: PhotometricModel, model_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """What identifies the model behind predictions, as text (JSON for lists): photofeh version, model folder
    and digest, labels, features, training stars, absolute-magnitude reference, the prior of the estimates and
    the prior it was trained with. ``photofeh predict`` writes these into its Parquet metadata
    (:func:`photofeh.scale.predict_catalog.provenance`); :meth:`PhotometricModel.predict` into ``attrs``."""
    import json

    from photofeh._version import __version__
    from photofeh.model.artifact import model_digest
    from photofeh.model.parallax_labels import absmag_reference

    folder = Path(model_dir) if model_dir is not None else model.folder
    training = model.meta.get("training", {})
    return {"photofeh_version": __version__,
            "model_path": "" if folder is None else str(folder.resolve()),
            "model_digest": (model_digest(folder) if model_dir is not None else model.digest) or "",
            "model_labels": json.dumps(model.labels), "model_features": json.dumps(model.features),
            "model_trained_with": json.dumps({k: training.get(k) for k in ("n_train", "table_ids_sha256")}),
            "model_absmag_reference": json.dumps(absmag_reference(model.meta)),
            "model_prior": getattr(model, "estimate_prior", None) or prior_of(model.meta),
            "model_trained_prior": prior_of(model.meta)}


def model_folder(path: str | os.PathLike) -> Path:
    """A run directory (from ``photofeh train``) or the model folder inside it -> the model folder."""
    path = Path(path)
    return path / "model" if (path / "model" / "model.json").exists() else path


def load_model(path: str | os.PathLike, device: str = "cpu", prior: str | None = None) -> PhotometricModel:
    """Load a model folder written by ``photofeh train`` (or the run directory holding it). ``prior="flat"``
    on a labels-prior model divides its training prior out of the [Fe/H] estimates (docs/populations.md)."""
    from photofeh.model.artifact import model_digest

    folder = model_folder(path)
    meta, states = load_model_folder(folder)
    model = PhotometricModel(meta, states, device, prior, folder)
    # the digest of the files as loaded, taken now: the provenance of every later prediction names the model
    # that made it even if the folder has since been moved, changed or deleted
    model._digest = model_digest(folder)
    return model
