"""One chunk of a catalogue through the pipeline: the columns to read, the preset, E(B-V), the model, a table
of predictions with its provenance; the same code for the one-process run, its worker processes and Dask.
A chunk that cannot be read or predicted is a :class:`ChunkError` naming its rows (:func:`bad_chunk`)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from photofeh.errors import MissingColumnsError
from photofeh.io.dust import EbvSource
from photofeh.io.presets import Preset, apply_preset
from photofeh.io.readers import iter_table
from photofeh.model.predict import FeatureBatch

__all__ = ["ID_COLUMNS", "ChunkError", "ChunkWork", "input_columns", "probe_input", "predict_chunk", "prepare_chunk",
           "finish_chunk", "provenance", "read_provenance", "bad_chunk"]

# what a chunk whose input cannot be predicted raises: that chunk fails (skipped, or the run stops saying so);
# any other error is a fault of the program or the machine and propagates
CHUNK_INPUT_ERRORS = (KeyError, ValueError, TypeError)
ID_COLUMNS = ("source_id", "ra", "dec")


class ChunkError(ValueError):
    """A chunk that could not be read or predicted, with its row range."""


def input_columns(model, available: Sequence[str], preset: Preset | None, keep: Sequence[str],
                  source: str, ebv: EbvSource | None = None) -> tuple[list[str], list[str]]:
    """Which columns to read from the input, and which to pass through to the output.

    Only these are read: a Gaia ``gaia_source`` file has ~150 columns and the
    default model needs a dozen. ``ebv``: E(B-V) from another column or a map
    (then the model's E(B-V) column is not needed). Raises ``KeyError`` naming what is missing.
    """
    ebv = ebv or EbvSource()
    extra = ebv.reads(available)
    lower = {c.lower(): c for c in available}
    ids = [c for c in ID_COLUMNS if c in available]
    # a preset that derives columns (e.g. green2020's labels and source_id) may make a kept column: checked on
    # the first row (probe_input)
    missing_keep = [c for c in keep if c not in available and c.lower() not in lower
                    and not (preset and c in preset.columns and preset.columns[c].lower() in lower)
                    and not (preset and preset.derive is not None)]
    if missing_keep:
        raise MissingColumnsError(f"{source}: --keep column(s) {missing_keep} not in the input")
    if preset is None:
        from photofeh.bands import BANDS

        needed = list(model.needed_columns(available))
        bands = [c for c in needed if c in BANDS]
        extinction = [f"A_{b}" for b in bands if f"A_{b}" in available]  # deredden prefers these
        if model.ebv_column in needed and model.ebv_column not in available and (
                len(extinction) == len(bands) or ebv.provides()):
            needed.remove(model.ebv_column)
        missing = [c for c in needed if c not in available]
        if missing:
            hint = (" (E(B-V): --ebv-column NAME for another column, --sfd-dir DIR for a local SFD map, or A_<band> "
                    "columns)" if model.ebv_column in missing else "")
            raise MissingColumnsError(f"{source} lacks column(s) {missing} that the model needs (features: "
                           f"{', '.join(model.features)}){hint}; map archive columns with --preset or --mapping")
        # feature errors where the input has them: errors beyond the training stars' widen the uncertainties
        # and mark the star out of the training domain (photofeh.model.domain)
        errors = [f"{c}_err" if c != "parallax" else "parallax_error" for c in needed]
        errors = [c for c in errors if c in available] if model.domain is not None else []
        read = [*needed, *extinction, *errors, *ids, *keep, *extra]
    else:
        ids = [c for c in ID_COLUMNS if c in preset.columns and preset.columns[c].lower() in lower]
        wanted = {*preset.columns.values(), *preset.reads, *keep, *extra}
        read = [lower[c.lower()] for c in wanted if c.lower() in lower]
    return sorted(dict.fromkeys(read)), list(dict.fromkeys([*ids, *keep]))


def probe_input(model, source: Path, read: Sequence[str], keep: Sequence[str], preset: Preset | None,
                ebv: EbvSource, fmt: str | None = None) -> list[str]:
    """The input's first row through the preset and the model, before anything is written: a table that lacks
    a column the preset, the model or ``--keep`` needs is refused here, once, as bad input
    (:class:`photofeh.errors.MissingColumnsError`), not chunk by chunk as failures to resume. Returns ``keep``
    with the id columns the preset derives in front (green2020's hashed ``source_id``), so that the
    predictions carry them."""
    first = next(iter_table(source, list(read), 1, fmt), None)
    if not first:
        return list(keep)
    cols, _ = apply_preset(first, preset, str(source))
    missing = [c for c in keep if c not in cols and c not in first]
    if missing:
        made = f" nor made by the preset {preset.name!r}" if preset is not None else ""
        raise MissingColumnsError(f"{source}: --keep column(s) {missing} not in the input{made} (it has e.g. "
                                  f"{sorted(cols)[:12]})")
    if not ebv.sfd_dir:  # the map is read at the first chunk, not for a probe
        if ebv.provides():
            cols = ebv.apply(cols, first, model.ebv_column, str(source), Counter())
        try:
            model.predict_columns(cols)
        except MissingColumnsError as exc:
            raise MissingColumnsError(f"{source}: {exc}; map archive columns with --preset or --mapping"
                                      if preset is None else f"{source} (preset {preset.name!r}): {exc}") from None
    ids = [c for c in ID_COLUMNS if c in cols and c not in keep and c not in first]
    return [*ids, *keep]


def predict_chunk(model, raw: Mapping[str, np.ndarray], keep: Sequence[str], preset: Preset | None = None,
                  source: str = "chunk", ebv: EbvSource | None = None) -> tuple[pa.Table, Counter]:
    """One chunk of the input -> one table of predictions (shared by the local and the Dask paths): the three
    steps :func:`prepare_chunk`, the network (:meth:`~photofeh.model.predict.PhotometricModel.forward`) and
    :func:`finish_chunk`, which the one-process run overlaps on successive chunks.

    Output columns: the pass-through columns, then every label with ``_err``
    (float32: the errors are >1e3 times the float32 rounding), ``p_giant``,
    ``is_giant`` and ``usable`` (False where a feature is missing: NaN predictions, row kept).
    """
    work = prepare_chunk(model, raw, keep, preset, source, ebv)
    model.forward(work.batch)
    return finish_chunk(model, work)


@dataclass
class ChunkWork:
    """A chunk between the steps of :func:`predict_chunk`: the pass-through columns, the stars' features on
    their way through the model, and the values the validation layer replaced."""

    keep: dict[str, np.ndarray]
    batch: FeatureBatch
    report: Counter


def prepare_chunk(model, raw: Mapping[str, np.ndarray], keep: Sequence[str], preset: Preset | None = None,
                  source: str = "chunk", ebv: EbvSource | None = None) -> ChunkWork:
    """The input's columns -> validated schema columns (the preset, :mod:`photofeh.io.validation`), E(B-V),
    the features and the network's inputs (:meth:`~photofeh.model.predict.PhotometricModel.prepare_features`)."""
    cols, report = apply_preset(raw, preset, source)  # schema names, validated (photofeh.io.validation)
    if ebv is not None and ebv.provides():
        cols = ebv.apply(cols, raw, model.ebv_column, source, report)
    X, X_err = model.column_features(cols)  # validated above: not a second time per chunk
    kept = {c: np.asarray(cols[c] if c in cols else raw[c]) for c in keep}
    return ChunkWork(kept, model.prepare_features(X, X_err), report)


def finish_chunk(model, work: ChunkWork) -> tuple[pa.Table, Counter]:
    """The network's outputs of a prepared chunk -> its table of predictions (float32 labels and errors)."""
    pred = model.finish(work.batch, counts=work.report, dtype=np.float32)
    return pa.table({**work.keep, **pred}), work.report


# ------------------------------------------------------------------ provenance
def provenance(model_dir: Path, model, source: Path, preset: Preset | None, created: str) -> dict[str, str]:
    """What made a prediction output, as Parquet key-value metadata (every part, and the single file):
    photofeh version, model path and digest, its labels and prior (:func:`photofeh.model.predict.
    model_provenance`, as the Python API's ``DataFrame.attrs``), the input and preset, and when the run began
    (the same for every part of a resumed run, so resumed output stays identical)."""
    from photofeh.model.predict import model_provenance

    return {"photofeh_kind": "predictions", **model_provenance(model, model_dir),
            "input": str(source.resolve()), "preset": "" if preset is None else preset.name, "created": created}


def read_provenance(path: str | os.PathLike) -> dict[str, str]:
    """The provenance metadata of a prediction output (folder or file); empty if it has none."""
    from photofeh.io.readers import table_metadata

    return table_metadata(path)


def bad_chunk(source: Path, k: int, chunk_rows: int, n_total: int | None, stage: str,
              exc: BaseException) -> tuple[str, int, int]:
    """What to say of chunk ``k`` that could not be read or predicted (local and Dask runs): the message
    naming its rows, and its first and last row."""
    first = k * chunk_rows
    last = first + chunk_rows - 1 if n_total is None else min(first + chunk_rows, n_total) - 1
    return f"{source}: chunk {k} (rows {first:,d}-{last:,d}) could not be {stage}: {exc}", first, last
