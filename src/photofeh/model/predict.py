"""Using a trained model: load a folder in one call, predict with uncertainties.

Like astroNN's ``predict``, every label comes with its error, and the result is
the kind of table it was given: a pandas DataFrame keeps its index, an astropy
Table gets units, a dict of arrays gives a dict. Rows lacking a feature get NaN
predictions and ``usable = False``, never a crash; archive column names are
mapped with ``preset=`` (a preset name, a mapping file or a Preset).

>>> import photofeh
>>> from photofeh.simulate import MockSurveyConfig, iter_chunks
>>> from photofeh.model.train import TrainConfig, train
>>> stars = next(iter_chunks(MockSurveyConfig(n_stars=3000, seed=5, spec_only=True), chunk_size=3000))
>>> run = train(stars, TrainConfig(epochs=2), tmp_dir / "run", log=lambda s: None)
>>> model = photofeh.load_model(tmp_dir / "run")
>>> import pandas as pd
>>> df = pd.DataFrame(stars).set_index("source_id").iloc[:5]
>>> out = model.predict(df)
>>> out.index.equals(df.index), list(out.columns[:4])
(True, ['feh', 'feh_err', 'logg', 'logg_err'])
>>> from astropy.table import Table
>>> model.predict(Table.from_pandas(df))["teff"].unit
Unit("K")
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from photofeh.io.validation import column_rule
from photofeh.model.artifact import load_model_folder
from photofeh.model.domain import SCORE_LIMIT, TrainingDomain, feature_errors
from photofeh.model.features import Standardizer, as_columns, feature_matrix, required_columns
from photofeh.model.missing import enough_features, masked_inputs, network_inputs
from photofeh.model.networks import build_network
from photofeh.model.prior import divide_out, prior_of

UNPHYSICAL = "predictions outside the physical range"
BATCH_ROWS = 4096  # rows per forward pass (PhotometricModel._ensemble)

__all__ = ["PhotometricModel", "load_model", "model_folder", "UNPHYSICAL"]


class PhotometricModel:
    """A trained (ensemble of) network(s) with its normalisation and calibration."""

    def __init__(self, meta: dict, state_dicts: list[dict[str, torch.Tensor]], device: str = "cpu",
                 prior: str | None = None):
        self.meta = meta
        # the prior of the estimates returned: the model's own, or "flat" (a labels-prior model's training
        # prior divided out at prediction time, photofeh.model.prior.divide_out)
        self.trained_prior = prior_of(meta)
        self.estimate_prior = prior or self.trained_prior
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
        self.temperature = float(meta.get("class_temperature", 1.0))
        self.masked = meta.get("missing", "require") == "mask"  # see photofeh.model.missing
        # the training domain (photofeh.model.domain); models trained before it was stored have none
        self.domain = TrainingDomain.from_dict(meta["domain"]) if meta.get("domain") else None
        n_inputs = network_inputs(len(self.features), meta.get("missing", "require"))
        self.device = torch.device(device)
        self.members = []
        for sd in state_dicts:
            net = build_network(meta["architecture"], n_inputs, self.labels, meta["heads"],
                                classify=meta.get("classify", True))
            net.load_state_dict(sd)
            net.eval()
            _fold_batchnorm(net)
            self.members.append(net.folded().requires_grad_(False).to(self.device))

    @property
    def required_columns(self) -> list[str]:
        return required_columns(self.features, self.ebv_column, self.meta.get("deredden", True))

    @torch.inference_mode()
    def predict_features(self, X: np.ndarray, batch_size: int = BATCH_ROWS, counts: Counter | None = None,
                         X_err: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Predict from a raw (un-standardised) feature matrix in the model's feature order.

        Rows lacking features, and rows whose outputs are not finite or fall outside a label's physical
        range (:mod:`photofeh.io.validation`), get NaN and ``usable = False``; ``counts[UNPHYSICAL]`` counts the
        latter. With a stored training domain (:mod:`photofeh.model.domain`), every row gets ``domain_score`` and
        ``in_domain``; ``X_err`` (feature errors) lets errors beyond the training stars' widen the
        uncertainties (:meth:`_excess_error_variance`) and mark the row out of the domain.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected an array of shape (n, {len(self.features)}) with features {self.features}")
        if self.masked:  # predict from what each star has, given enough of it
            ok = enough_features(X, int(self.meta.get("min_features", 1)))
        else:
            ok = np.all(np.isfinite(X), axis=1)  # the network sees usable rows only; the others stay NaN
        Xok = X[ok]
        mean, var, prob = self._ensemble(self._network_inputs(Xok), batch_size)
        noisy = np.zeros(len(Xok), bool)
        if self.domain is not None and X_err is not None:
            X_err = np.asarray(X_err, np.float32)[ok]
            excess = self.domain.excess_error(X_err)
            widen = (excess > 0).any(axis=1)
            if widen.any():
                var[widen] += self._excess_error_variance(Xok[widen], excess[widen], batch_size, mean[widen])
            noisy = self.domain.too_noisy(X_err)
        value = self.y_scale.inverse(mean)
        err = np.sqrt(var) * self.y_scale.std
        # the last guard of "no silent bad value": a row whose outputs are not all finite (overflow in a
        # tampered or diverged model) is not usable, never a number marked usable
        finite = np.isfinite(value).all(axis=1) & np.isfinite(err).all(axis=1) & np.isfinite(prob)
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

        def spread(values: np.ndarray) -> np.ndarray:
            full = np.full(len(X), np.nan)
            full[rows] = values
            return full

        result: dict[str, np.ndarray] = {}
        for j, lab in enumerate(self.labels):
            result[lab] = spread(value[:, j])
            result[f"{lab}_err"] = spread(err[:, j])
        if self.meta.get("classify", True):
            result["p_giant"] = spread(prob)
            with np.errstate(invalid="ignore"):
                result["is_giant"] = ok & (result["p_giant"] >= self.meta.get("class_threshold", 0.5))
        result["usable"] = ok
        if self._divide is not None:  # the training prior divided out of a labels-prior estimate
            label, hist = self._divide
            result[label], result[f"{label}_err"] = divide_out(result[label], result[f"{label}_err"], hist)
        if self.domain is not None:
            score = self.domain.score(X)
            inside = ok & (score <= SCORE_LIMIT)
            inside[rows[noisy | self.domain.label_extrapolation(value, err)]] = False
            result["domain_score"] = score.astype(np.float32)
            result["in_domain"] = inside
        return result

    def _network_inputs(self, X: np.ndarray) -> np.ndarray:
        """Raw features -> the network's float32 inputs (standardised; for a masked model, plus the
        measured-bits)."""
        Z = np.subtract(X, self._x_mean32, dtype=np.float32)
        Z *= self._x_inv_std32
        return masked_inputs(Z) if self.masked else Z

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
        n, L, M = len(Z), len(self.labels), len(self.members)
        s2 = torch.from_numpy((self.sigma_scale**2).astype(np.float32))
        mean = np.zeros((n, L), np.float32)
        var = np.zeros((n, L), np.float32)
        prob = np.zeros(n, np.float32)
        square = np.zeros((n, L), np.float32) if M > 1 else None
        for net in self.members:
            for s in range(0, n, batch_size):
                out = net(torch.from_numpy(Z[s:s + batch_size]).to(self.device))
                m = out["mean"].cpu()
                mean[s:s + batch_size] += m.numpy()
                if mean_only:
                    continue
                var[s:s + batch_size] += (out["logvar"].exp().cpu() * s2).numpy()
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
        """
        from photofeh.io.presets import apply_preset, resolve_preset

        # no sentinel or impossible value reaches the network (photofeh.io.validation)
        cols, report = apply_preset(as_columns(data), resolve_preset(preset), "catalogue")
        if counts is not None:
            counts.update({k: v for k, v in report.items() if v})
        return _like(data, self.predict_columns(cols, batch_size, counts))

    def predict_columns(self, cols, batch_size: int = BATCH_ROWS,
                        counts: Counter | None = None) -> dict[str, np.ndarray]:
        """Predict from schema columns that have already been through the validation layer
        (:func:`photofeh.io.presets.apply_preset`), as a catalogue run's chunks have: a dict of arrays."""
        missing = [c for c in self.required_columns if c not in cols]
        if missing:
            raise KeyError(f"the catalogue lacks columns {missing} that this model needs "
                           f"(features: {', '.join(self.features)})")
        X, _ = feature_matrix(cols, self.features, self.ebv_column, self.meta.get("deredden", True))
        X_err = feature_errors(cols, self.features) if self.domain is not None else None
        return self.predict_features(X, batch_size, counts, X_err)


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


def model_folder(path: str | os.PathLike) -> Path:
    """A run directory (from ``photofeh train``) or the model folder inside it -> the model folder."""
    path = Path(path)
    return path / "model" if (path / "model" / "model.json").exists() else path


def load_model(path: str | os.PathLike, device: str = "cpu", prior: str | None = None) -> PhotometricModel:
    """Load a model folder written by ``photofeh train`` (or the run directory holding it). ``prior="flat"``
    on a labels-prior model divides its training prior out of the [Fe/H] estimates (docs/populations.md)."""
    meta, states = load_model_folder(model_folder(path))
    return PhotometricModel(meta, states, device, prior)
