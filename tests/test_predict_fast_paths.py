"""The fast forms of the predict path's non-network stages (issue 27, item 3) give the same bits as the plain
row-wise forms they replaced, written out here as the references: the validation layer's range check, the
duplicate-id count, the Gaia extinction polynomials, dereddened features and feature errors, and the training
domain's score, error and label checks. Seeded random tables with missing, infinite and sentinel values."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from photofeh.bands import _GAIA_POLY, GAIA_COLOUR_RANGE, extinction_coefficient
from photofeh.io.presets import duplicate_count
from photofeh.io.validation import clean_columns, column_rule
from photofeh.model.domain import LABEL_SIGMAS, TrainingDomain, feature_errors
from photofeh.model.features import DEFAULT_FEATURES, feature_matrix

BANDS = ("sdss_u", "sdss_g", "sdss_r", "sdss_i", "sdss_z", "ps1_g", "ps1_r", "ps1_i", "ps1_z", "ps1_y",
         "gaia_g", "gaia_bp", "gaia_rp")


def _table(n: int, seed: int, holes: float = 0.1) -> dict[str, np.ndarray]:
    """Mock-like float32 photometry (as simulate writes it) with NaN holes."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(15, 21, n)
    cols = {}
    for k, b in enumerate(BANDS):
        m = (base + 0.3 * k + rng.normal(0, 0.3, n)).astype(np.float32)
        m[rng.random(n) < holes] = np.nan
        cols[b] = m
        cols[f"{b}_err"] = np.abs(rng.normal(0.02, 0.05, n)).astype(np.float32)
    cols["ebv"] = rng.uniform(0, 0.3, n).astype(np.float32)
    cols["parallax"] = rng.normal(0.5, 1.0, n)
    cols["parallax_error"] = np.abs(rng.normal(0.3, 0.2, n)).astype(np.float32) + np.float32(0.01)
    cols["source_id"] = np.arange(n, dtype=np.int64) * 7 + 3
    return cols


def _clean_reference(cols):
    """clean_columns as it was: every value tested, bad ones replaced and counted."""
    counts, out = Counter(), dict(cols)
    for name, a in cols.items():
        rule = column_rule(name)
        if rule is None:
            continue
        a = np.asarray(a, np.float64) if a.dtype.kind != "f" else a
        with np.errstate(invalid="ignore"):
            ok = (a > rule.lo if rule.lo_open else a >= rule.lo) & (a <= rule.hi)
        if rule.sentinels_inside:
            ok &= ~np.isin(a, rule.sentinels_inside)
        n_bad = int(np.count_nonzero(~ok)) - int(np.count_nonzero(np.isnan(a)))
        if n_bad:
            counts[name] += n_bad
        out[name] = np.where(~ok, np.nan, a).astype(a.dtype, copy=False)
    return out, counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_fast_path_equals_element_wise_check(seed):
    cols = _table(20_000, seed)
    rng = np.random.default_rng(100 + seed)
    spoiled = dict(cols)
    for name, bad in (("sdss_g", 99.0), ("parallax", -999.0), ("parallax_error", 0.0), ("ebv", np.inf),
                      ("ps1_r_err", -0.5), ("gaia_bp", -np.inf), ("parallax_error", 999.0)):
        a = spoiled[name].copy()
        a[rng.integers(0, len(a), 1 + seed * 5)] = bad
        spoiled[name] = a
    spoiled["sdss_z"] = np.full(20_000, np.nan, np.float32)  # a column with no value at all
    for table in (cols, spoiled):
        got, got_counts = clean_columns(table)
        want, want_counts = _clean_reference(table)
        assert got_counts == want_counts
        for name in want:
            assert got[name].dtype == want[name].dtype
            np.testing.assert_array_equal(got[name], want[name])
    assert sum(clean_columns(spoiled)[1].values()) >= 7 * (1 + seed * 5) - 3  # the spoiled values are counted


def test_duplicate_count_equals_unique():
    rng = np.random.default_rng(5)
    ids = np.arange(1000, dtype=np.int64) * 3
    cases = [ids, ids[::-1], np.concatenate([ids, ids[:17]]), rng.integers(0, 500, 3000),
             rng.integers(0, 2**62, 3000).astype(np.uint64), np.zeros(0, np.int64), np.array([4], np.int64),
             np.array([1.0, np.nan, np.nan, 1.0, 2.0]), np.array(["a", "b", "a"])]
    for c in cases:
        assert duplicate_count(c) == c.size - np.unique(c).size


def test_gaia_coefficient_equals_numpy_polyval():
    x = np.random.default_rng(6).uniform(-1, 4, 50_000)
    x[::97] = np.nan
    for name, poly in _GAIA_POLY.items():
        want = np.polynomial.polynomial.polyval(np.clip(x, *GAIA_COLOUR_RANGE), poly)
        np.testing.assert_array_equal(extinction_coefficient(name, x), want)
        assert extinction_coefficient(name, 1.2) == pytest.approx(np.polynomial.polynomial.polyval(1.2, poly),
                                                                    rel=0, abs=0)


def test_features_and_errors_equal_plain_float64_forms():
    cols = _table(30_000, 7)
    features = [*DEFAULT_FEATURES, "gaia_bp-gaia_g", "ps1_g", "gaia_rp"]
    X, ok = feature_matrix(cols, features, "ebv")
    # the plain form: every band in float64, m - R E(B-V), Gaia's R from the iterated intrinsic colour
    from photofeh.bands import BANDS as TABLE

    ebv = cols["ebv"].astype(np.float64)
    mag0 = {b: cols[b].astype(np.float64) - TABLE[b].r_ebv * ebv for b in BANDS if TABLE[b].survey != "gaia"}
    bp, rp = cols["gaia_bp"].astype(np.float64), cols["gaia_rp"].astype(np.float64)
    x = bp - rp
    for _ in range(3):
        x = (bp - rp) - (np.polynomial.polynomial.polyval(np.clip(x, 0, 3), _GAIA_POLY["gaia_bp"])
                         - np.polynomial.polynomial.polyval(np.clip(x, 0, 3), _GAIA_POLY["gaia_rp"])) * ebv
    for b in ("gaia_g", "gaia_bp", "gaia_rp"):
        coefficient = np.polynomial.polynomial.polyval(np.clip(x, 0, 3), _GAIA_POLY[b])
        mag0[b] = cols[b].astype(np.float64) - coefficient * ebv
    for j, f in enumerate(features):
        parts = f.split("-")
        want = (mag0[parts[0]] - mag0[parts[1]] if len(parts) == 2 else
                mag0[f] if f in mag0 else cols[f].astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(X[:, j], want, err_msg=f)
    np.testing.assert_array_equal(ok, np.isfinite(X).all(axis=1))
    E = feature_errors(cols, features)
    for j, f in enumerate(features):
        parts = f.split("-")
        if len(parts) == 2:
            a, b = (cols[f"{p}_err"].astype(np.float64) for p in parts)
            want = np.sqrt(a * a + b * b)
        else:
            want = cols["parallax_error" if f == "parallax" else f"{f}_err"].astype(np.float64) \
                if f != "parallax_error" else np.full(len(a), np.nan)
        np.testing.assert_array_equal(E[:, j], want, err_msg=f)
    assert E.dtype == np.float64


def _domain(seed: int) -> tuple[TrainingDomain, np.ndarray, np.ndarray]:
    cols = _table(40_000, seed, holes=0.0)
    X, _ = feature_matrix(cols, list(DEFAULT_FEATURES), "ebv")
    E = feature_errors(cols, list(DEFAULT_FEATURES))
    y = np.random.default_rng(seed).normal(size=(len(X), 4))
    return TrainingDomain.fit(X[:30_000], E[:30_000], y[:30_000]), X[30_000:], E[30_000:]


def test_domain_checks_equal_row_wise_forms():
    domain, X, E = _domain(8)
    rng = np.random.default_rng(9)
    complete = np.concatenate([X] * 3)  # 30,000 stars: blocks of SCORE_BLOCK, every star with every feature
    X = complete.copy()
    X[rng.random(X.shape) < 0.05] = np.nan  # stars with missing features: no principal-axis check
    X[rng.integers(0, len(X), 50), 3] += 5.0  # far outside
    X = np.concatenate([X, complete])
    E = np.concatenate([E] * 6)
    f32 = np.float32
    with np.errstate(invalid="ignore"):
        excess = np.maximum(domain.lo.astype(f32) - X, X - domain.hi.astype(f32)) / domain.scale.astype(f32)
        want = np.fmax.reduce(excess, axis=1, initial=0.0)
        full = np.all(np.isfinite(X), axis=1)
        pcs = ((X[full] - domain.centre.astype(f32)) / domain.scale.astype(f32)) @ domain.axes.T.astype(f32)
        pc = np.maximum(domain.pc_lo.astype(f32) - pcs, pcs - domain.pc_hi.astype(f32)) / domain.pc_scale.astype(f32)
        want[full] = np.maximum(want[full], pc.max(axis=1, initial=0.0))
    for layout in (np.asfortranarray(X), np.ascontiguousarray(X), X[:7]):
        got = domain.score(layout)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want[:len(got)])
    assert (want > 1).sum() >= 40 and 30_000 < full.sum() < len(X)
    E = E * rng.uniform(0.5, 3.0, E.shape)
    E[::11, 2] = np.nan
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(domain.too_noisy(E), np.any(E > 2.0 * domain.error_max, axis=1))
        np.testing.assert_array_equal(domain.too_noisy(E.astype(f32), 1.0),
                                      np.any(E.astype(f32).astype(float) > domain.error_max, axis=1))
        want_excess = np.nan_to_num(np.sqrt(np.clip(E**2 - domain.error_max**2, 0, None)), nan=0.0)
    np.testing.assert_array_equal(domain.excess_error(E), want_excess)
    value, err = rng.normal(size=(len(X), 4)) * 2, np.abs(rng.normal(size=(len(X), 4)))
    value[::13, 0] = np.nan
    domain.label_lo[2] = np.nan  # a label without a range (learned from parallaxes)
    with np.errstate(invalid="ignore"):
        beyond = ((value < domain.label_lo - LABEL_SIGMAS * err) | (value > domain.label_hi + LABEL_SIGMAS * err))
    want_x = np.any(beyond & np.isfinite(domain.label_lo), axis=1)
    np.testing.assert_array_equal(domain.label_extrapolation(value, err), want_x)
    assert 0 < want_x.sum() < len(X)
    none = TrainingDomain(**{**domain.__dict__, "error_max": np.full(len(domain.error_max), np.nan)})
    assert not none.excess_error(E).any() and none.excess_error(E).shape == E.shape
    assert not none.too_noisy(E).any()


def test_default_thread_layout_writes_what_torchs_threads_write(quick_model, catalog, tmp_path):
    """The default thread layout (half the cores as torch threads: one on 2 cores, see
    default_torch_threads) writes the parts, rows and chunk log that torch's two threads (--threads 2) write,
    and a run leaves torch's thread count as it found it."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from photofeh.scale.ledger import CHUNK_LOG
    from photofeh.scale.predict_catalog import PredictOptions, predict_catalog

    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pandas(catalog.iloc[:9_000], preserve_index=False), source, row_group_size=700)
    threads = torch.get_num_threads()
    tables, logs = [], []
    for name, extra in (("default", {}), ("two", {"threads": 2})):
        out = tmp_path / name
        summary = predict_catalog(quick_model, source, out, PredictOptions(chunk_rows=1_000, progress=False, **extra))
        assert summary.rows == 9_000 and summary.chunks_done == 9
        assert torch.get_num_threads() == threads
        tables.append(pq.read_table(out))
        logs.append({e["chunk"]: (e["rows"], e["first_row"], e["unusable"])
                     for e in map(json.loads, (out / CHUNK_LOG).read_text().splitlines()) if "sha256" in e})
    assert logs[0] == logs[1] and tables[0].schema.names == tables[1].schema.names
    for name in tables[0].schema.names:
        a, b = tables[0][name].to_numpy(), tables[1][name].to_numpy()
        np.testing.assert_array_equal(a, b, err_msg=name)  # NaN where NaN: same bits otherwise
    assert 0 < int(np.count_nonzero(tables[0]["usable"].to_numpy())) < 9_000


def test_parquet_reading_memory_stays_flat(tmp_path):
    """Reading a Parquet file chunk by chunk holds a few chunks in Arrow's memory, not every row group read so
    far (pyarrow's pre-buffering kept them all: a 10^7-star prediction peaked at 2.7 GiB against 0.8 for
    10^6), and the chunks are the rows in order, cut across row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photofeh.io.readers import iter_table

    rng = np.random.default_rng(11)
    n, columns = 800_000, [f"c{k}" for k in range(12)]
    table = pa.table({c: rng.normal(size=n) for c in columns})
    source = tmp_path / "in.parquet"
    pq.write_table(table, source, row_group_size=30_000, compression="none")  # 27 groups, not chunk-aligned
    chunk = 40_000  # 3.8 MB of float64 columns
    held, start, before = [], 0, pa.total_allocated_bytes()  # what other tests left allocated
    for k, part in enumerate(iter_table(source, columns, chunk)):
        for c in ("c0", "c11"):
            np.testing.assert_array_equal(part[c], table[c].to_numpy()[start:start + chunk])
        start += len(part["c0"])
        if k >= 3:
            held.append(pa.total_allocated_bytes() - before)
    assert start == n
    assert max(held) < 6 * chunk * len(columns) * 8  # a few chunks, while the file is 20 of them


@pytest.mark.parametrize("missing", ["require", "mask"])
def test_network_inputs_are_those_training_builds(missing):
    """predict's one-array float32 form of the network inputs (standardised features, measured-bits, standardised
    log-errors; features column-major as feature_matrix lays them out) against the functions training builds them
    with (photofeh.model.train_data: masked_inputs, with_errors, error_inputs, Standardizer.transform in
    float64), on errors that are NaN, zero, negative and infinite as well as ordinary."""
    from photofeh.model.features import Standardizer
    from photofeh.model.missing import column_rows, masked_inputs, with_errors
    from photofeh.model.noise import error_inputs
    from photofeh.model.predict import PhotometricModel

    rng = np.random.default_rng(4)
    features = ["sdss_u-sdss_g", "sdss_g-sdss_r", "gaia_bp-gaia_rp", "parallax"]
    n, F = 5_000, len(features)
    meta = {"features": features, "labels": ["feh"], "missing": missing, "noise_aware": True,
            "input_standardizer": {"mean": [1.1, 0.4, 0.9, 0.6], "std": [0.25, 0.12, 0.3, 1.4]},
            "label_standardizer": {"mean": [-0.6], "std": [0.5]},
            "error_standardizer": {"mean": [-1.4, -1.9, -2.2, -0.6], "std": [0.45, 0.3, 0.35, 0.5]}}
    model = PhotometricModel(meta, [])  # no network: only its inputs are built here
    X = np.asfortranarray(rng.normal([1.1, 0.4, 0.9, 0.6], [0.3, 0.2, 0.4, 1.5], (n, F)).astype(np.float32))
    E = np.asfortranarray(10 ** rng.uniform(-3, 0, (n, F)).astype(np.float32))
    X[rng.random((n, F)) < 0.1] = np.nan
    for bad, share in ((np.nan, 0.05), (0.0, 0.02), (-0.1, 0.02), (np.inf, 0.02)):
        E[rng.random((n, F)) < share] = bad
    z = Standardizer.from_dict(meta["input_standardizer"]).transform(X)
    z = masked_inputs(z) if missing == "mask" else z
    want = with_errors(z, Standardizer.from_dict(meta["error_standardizer"]).transform(error_inputs(E)))
    got = model._network_inputs(X, E)
    assert got.dtype == np.float32 and got.shape == want.shape == (n, F * (3 if missing == "mask" else 2))
    assert np.array_equal(np.isnan(got), np.isnan(want))  # NaN features stay NaN without the mask, never errors
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
    with np.errstate(invalid="ignore"):
        unknown = ~(np.isfinite(E) & (E > 0))
    assert unknown.mean() > 0.08 and np.array_equal(got[:, -F:] == 0, unknown)  # an unknown error: the mean, 0
    # rows picked as predict picks them (column-major), and the plain row-major array, give the same inputs
    ok = rng.random(n) < 0.7
    np.testing.assert_array_equal(model._network_inputs(column_rows(X, ok), column_rows(E, ok)),
                                  model._network_inputs(np.ascontiguousarray(X[ok]), np.ascontiguousarray(E[ok])))
