"""Levers on the network's arithmetic for `photofeh predict` (issue 14), measured in one process.

1. bfloat16 inference (AVX-512 BF16 here): the backbone run under torch.autocast, all of it or all but
   its first product, against float32 on the same stars. Kept only if [Fe/H] changes by less than
   0.005 dex at the 99.9th percentile (issue 14's gate).
2. The Monte Carlo over feature errors beyond the training stars' (photofeh.model.predict), in float32
   (kept) against the float64 copy of the network it used before.

A default-config model is trained (20 epochs) on 20,000 labelled mock stars; 200,000 survey stars with
every feature are predicted. Speeds are medians of ``--repeats`` rounds, the variants alternating.

Usage: python benchmarks/bench_precision.py [--work DIR]
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _common import mock_columns, write_result

from photofeh.model.domain import feature_errors
from photofeh.model.features import feature_matrix
from photofeh.model.predict import load_model
from photofeh.model.train import load_config, train
from photofeh.simulate import MockSurveyConfig

BATCH = 16384


def bf16_backbone(net, first_in_fp32: bool):
    """The network with its backbone's products in bfloat16 (optionally all but the first), heads float32."""
    layers = list(net.backbone.body)

    def forward(z):
        for i, layer in enumerate(layers):
            if first_in_fp32 and i == 0:
                z = layer(z)
                continue
            with torch.autocast("cpu", dtype=torch.bfloat16):
                z = layer(z)
        return net.heads(z.float())

    return forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default="/tmp/photofeh_bench_precision")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    run = Path(args.work) / "run"
    if not (run / "model" / "model.json").exists():
        cfg = replace(load_config(Path(__file__).resolve().parents[1] / "configs" / "default.toml"), epochs=20,
                      baseline_rounds=0)
        train(mock_columns(MockSurveyConfig(n_stars=20_000, seed=41, spec_only=True)), cfg, run, log=lambda s: None)
    model = load_model(run)
    net = model.members[0]
    stars = mock_columns(MockSurveyConfig(n_stars=400_000, seed=42))
    X, _ = feature_matrix(stars, model.features, model.ebv_column)
    keep = np.all(np.isfinite(X), axis=1)
    X = X[keep][:200_000]
    X_err = feature_errors({c: v[keep] for c, v in stars.items()}, model.features)[:200_000]
    Z = torch.from_numpy(model.x_scale.transform(X))
    variants = {"float32": net, "bfloat16 backbone": bf16_backbone(net, False),
                "bfloat16 backbone, first product float32": bf16_backbone(net, True)}
    times: dict[str, list[float]] = {k: [] for k in variants}
    outs = {}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for name, f in variants.items():
                t0 = time.perf_counter()
                outs[name] = torch.cat([f(Z[s:s + BATCH])["mean"] for s in range(0, len(Z), BATCH)])
                times[name].append(time.perf_counter() - t0)
    feh = model.labels.index("feh")
    ref = outs["float32"][:, feh] * float(model.y_scale.std[feh])
    bf16 = {}
    for name in variants:
        d = np.abs((outs[name][:, feh] * float(model.y_scale.std[feh]) - ref).numpy())
        ratio = np.median(np.array(times["float32"]) / np.array(times[name]))
        bf16[name] = {"stars/s (forward)": round(len(Z) / float(np.median(times[name]))),
                      "speed / float32": round(float(ratio), 2),
                      "|d[Fe/H]| 99.9th pct, dex": round(float(np.percentile(d, 99.9)), 4),
                      "|d[Fe/H]| max, dex": round(float(d.max()), 4)}
    # 2. the excess-noise Monte Carlo: float32 (as now) against a float64 copy of the network (as before)
    excess = model.domain.excess_error(X_err)
    rows = (excess > 0).any(axis=1)
    sub_x, sub_e = X[rows][:20_000], excess[rows][:20_000]
    net64 = copy.deepcopy(net).double()
    unit = np.random.default_rng(0x5EED).standard_normal((32, X.shape[1]))

    def mc64():
        with torch.inference_mode():
            return np.var([net64(torch.from_numpy(model.x_scale.transform(sub_x + u * sub_e, np.float64)))["mean"]
                           .numpy() for u in unit], axis=0)

    t64, t32 = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        v64 = mc64()
        t1 = time.perf_counter()
        v32 = model._excess_noise_variance(sub_x, sub_e)
        t2 = time.perf_counter()
        t64.append(t1 - t0)
        t32.append(t2 - t1)
    rel = np.abs(np.sqrt(v32) - np.sqrt(v64)) / np.sqrt(v64)
    mc = {"stars with errors beyond the training stars'": f"{rows.mean():.1%}",
          "float64 Monte Carlo, s per million such stars": round(float(np.median(t64)) / len(sub_x) * 1e6, 1),
          "float32 Monte Carlo, s per million such stars": round(float(np.median(t32)) / len(sub_x) * 1e6, 1),
          "speed-up": round(float(np.median(np.array(t64) / np.array(t32))), 2),
          "added error, float32 vs float64: 99.9th pct relative difference": float(f"{np.percentile(rel, 99.9):.2g}")}
    figures = {"bfloat16 inference (default network, 200,000 stars, 2 threads)": bf16,
               "excess-noise Monte Carlo (20,000 such stars)": {"float32 vs float64": mc}}
    print(figures)
    write_result("precision", "Network arithmetic: bfloat16 inference and the float32 Monte Carlo (issue 14)",
                 figures, notes="bfloat16 is measured and rejected: it is 1.3-1.4x faster than float32 on this AVX-512 "
                                "BF16 CPU but moves [Fe/H] by 0.01-0.02 dex at the 99.9th percentile (issue 14's gate "
                                "is 0.005), even with the first product, which reads the photometry, kept in float32; "
                                "the 8-bit mantissa of the hidden activations is the limit. The Monte Carlo over "
                                "excess feature errors now runs in float32.")


if __name__ == "__main__":
    main()
