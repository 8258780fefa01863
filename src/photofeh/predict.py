"""Using a trained model: load a folder in one call, predict with uncertainties.

>>> model = photofeh.load_model("run/model")
>>> out = model.predict(df)          # pandas DataFrame, astropy Table, dict of arrays
>>> out["feh"], out["feh_err"], out["p_giant"]

Like astroNN's ``predict``, every label comes with its error. Rows lacking a
feature get NaN predictions and ``usable = False``, never a crash.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from photofeh.artifact import load_model_folder
from photofeh.features import Standardizer, as_columns, feature_matrix, required_columns
from photofeh.missing import enough_features, masked_inputs, network_inputs
from photofeh.models import build_network
from photofeh.validation import clean_columns, column_rule

UNPHYSICAL = "predictions outside the physical range"

__all__ = ["PhotometricModel", "load_model", "model_folder", "UNPHYSICAL"]


class PhotometricModel:
    """A trained (ensemble of) network(s) with its normalisation and calibration."""

    def __init__(self, meta: dict, state_dicts: list[dict[str, torch.Tensor]], device: str = "cpu"):
        self.meta = meta
        self.features: list[str] = meta["features"]
        self.labels: list[str] = meta["labels"]
        self.ebv_column: str = meta.get("ebv_column", "ebv")
        self.x_scale = Standardizer.from_dict(meta["input_standardizer"])
        self.y_scale = Standardizer.from_dict(meta["label_standardizer"])
        self.sigma_scale = np.asarray(meta.get("sigma_scale", [1.0] * len(self.labels)), float)
        self.temperature = float(meta.get("class_temperature", 1.0))
        self.masked = meta.get("missing", "require") == "mask"  # see photofeh.missing
        n_inputs = network_inputs(len(self.features), meta.get("missing", "require"))
        self.device = torch.device(device)
        self.members = []
        for sd in state_dicts:
            net = build_network(meta["architecture"], n_inputs, self.labels, meta["heads"],
                                classify=meta.get("classify", True))
            net.load_state_dict(sd)
            net.eval()
            _fold_batchnorm(net)
            self.members.append(net.to(self.device))

    @property
    def required_columns(self) -> list[str]:
        return required_columns(self.features, self.ebv_column)

    @torch.inference_mode()
    def predict_features(self, X: np.ndarray, batch_size: int = 16384, counts: Counter | None = None
                         ) -> dict[str, np.ndarray]:
        """Predict from a raw (un-standardised) feature matrix in the model's feature order.

        Rows lacking features, and rows whose outputs are not finite or fall outside a label's physical
        range (:mod:`photofeh.validation`), get NaN and ``usable = False``; ``counts[UNPHYSICAL]`` counts the
        latter.

        Batches of ~16k rows keep the activations in cache: on 2 CPU cores
        they ran twice as fast as 64k-row batches for the default network.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.features):
            raise ValueError(f"expected an array of shape (n, {len(self.features)}) with features {self.features}")
        if self.masked:  # predict from what each star has, given enough of it
            ok = enough_features(X, int(self.meta.get("min_features", 1)))
            Z = masked_inputs(self.x_scale.transform(X[ok]))
        else:
            ok = np.all(np.isfinite(X), axis=1)
            Z = self.x_scale.transform(X[ok])  # the network sees usable rows only; the others stay NaN
        n, L = len(Z), len(self.labels)
        means = np.empty((len(self.members), n, L))
        variances = np.empty((len(self.members), n, L))
        probs = np.zeros((len(self.members), n))
        for k, net in enumerate(self.members):
            for s in range(0, n, batch_size):
                out = net(torch.from_numpy(Z[s:s + batch_size]).to(self.device))
                means[k, s:s + batch_size] = out["mean"].double().cpu().numpy()
                variances[k, s:s + batch_size] = out["logvar"].double().exp().cpu().numpy()
                if "logit" in out:
                    probs[k, s:s + batch_size] = torch.sigmoid(out["logit"].double() / self.temperature).cpu().numpy()
        # deep ensemble (Lakshminarayanan et al. 2017): mixture mean and variance
        mean = means.mean(0)
        var = (variances * self.sigma_scale**2).mean(0) + means.var(0)
        value = self.y_scale.inverse(mean)
        err = np.sqrt(var) * self.y_scale.std
        # the last guard of "no silent bad value": a row whose outputs are not all finite (overflow in a
        # tampered or diverged model) is not usable, never a number marked usable
        finite = np.isfinite(value).all(axis=1) & np.isfinite(err).all(axis=1) & np.isfinite(probs).all(axis=0)
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
            rows, value, err, probs = rows[finite], value[finite], err[finite], probs[:, finite]


        def spread(values: np.ndarray) -> np.ndarray:
            full = np.full(len(X), np.nan)
            full[rows] = values
            return full

        result: dict[str, np.ndarray] = {}
        for j, lab in enumerate(self.labels):
            result[lab] = spread(value[:, j])
            result[f"{lab}_err"] = spread(err[:, j])
        if self.meta.get("classify", True):
            result["p_giant"] = spread(probs.mean(0))
            with np.errstate(invalid="ignore"):
                result["is_giant"] = ok & (result["p_giant"] >= self.meta.get("class_threshold", 0.5))
        result["usable"] = ok
        return result

    def predict(self, data, batch_size: int = 16384, counts: Counter | None = None) -> dict[str, np.ndarray]:
        """Predict every label with its error for a table of stars (see module docstring)."""
        cols, _ = clean_columns(as_columns(data), "catalogue")  # no sentinel or impossible value reaches the network
        missing = [c for c in self.required_columns if c not in cols]
        if missing:
            raise KeyError(f"the catalogue lacks columns {missing} that this model needs "
                           f"(features: {', '.join(self.features)})")
        X, _ = feature_matrix(cols, self.features, self.ebv_column)
        return self.predict_features(X, batch_size, counts)


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


def load_model(path: str | os.PathLike, device: str = "cpu") -> PhotometricModel:
    """Load a model folder written by ``photofeh train`` (or the run directory holding it)."""
    meta, states = load_model_folder(model_folder(path))
    return PhotometricModel(meta, states, device)
