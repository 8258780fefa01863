"""Assembling a labelled training set: labels x photometry on the sky, then counted quality cuts."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from photofeh.io.catalog import atomic_output
from photofeh.io.crossmatch import crossmatch_files
from photofeh.io.cuts import Cuts, apply_cuts
from photofeh.io.presets import preset_label

__all__ = ["build_training_set"]


def build_training_set(labels: str | os.PathLike, photometry: Sequence[tuple[str | os.PathLike, str | None]],
                       out: str | os.PathLike, labels_preset: str | None = None, radius_arcsec: float = 1.0,
                       cuts: Cuts | None = None, chunk_size: int = 1_000_000,
                       sfd_dir: str | os.PathLike | None = None, epoch: float | None = None) -> dict:
    """Join each photometric catalogue onto the label table, apply cuts, write Parquet + a JSON report.

    ``photometry`` is a list of (path, preset or None). The report (also
    written next to the output as ``<out>.report.json``) holds each match's
    statistics and the number of stars each cut removed. With ``sfd_dir``
    (a folder holding the SFD map files), ``ebv_sfd`` is read from the map and
    fills ``ebv`` where the catalogues gave none.
    """

    from photofeh.io.catalog import check_output_place
    from photofeh.io.locking import output_lock

    out = Path(out)
    photometry = list(photometry or [])
    check_output_place(out, [labels, *(path for path, _ in photometry)])
    same = [str(path) for path, _ in photometry if Path(path).resolve() == Path(labels).resolve()]
    if same:
        raise ValueError(f"{same[0]} is both the label table and a photometric catalogue: it would be matched onto "
                         "itself and its columns duplicated; leave it out of --photometry (the labels' own "
                         "photometry is kept)")
    with output_lock(out, f"photofeh build-training-set {labels}"):
        return _build(labels, photometry, out, labels_preset, radius_arcsec, cuts, chunk_size, sfd_dir, epoch)


def _proper_motions_in(a, a_preset, b, b_preset) -> bool:
    """Whether either catalogue of a match has proper motions (only then is an epoch applied)."""
    from photofeh.io.crossmatch import _has_pm_columns

    return _has_pm_columns(a, a_preset) or _has_pm_columns(b, b_preset)


def _build(labels, photometry, out: Path, labels_preset, radius_arcsec, cuts, chunk_size, sfd_dir, epoch) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    report: dict = {"labels": str(labels), "matches": []}
    # hidden and named like every temporary output, so that a killed run's leftovers are removed by the next
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.partial-{os.getpid()}-") as tmp:
        current, current_preset = Path(labels), labels_preset
        if not photometry:  # the label table carries its photometry (e.g. SSPP): mapped and validated alone
            from collections import Counter

            from photofeh.io.crossmatch import _mapped_chunks

            replaced: Counter = Counter()
            chunks = list(_mapped_chunks(labels, labels_preset, chunk_size, replaced))
            if not chunks:
                raise ValueError(f"{labels} has no rows")
            current = Path(tmp) / "labels.parquet"
            pq.write_table(pa.table({c: np.concatenate([ch[c] for ch in chunks]) for c in chunks[0]}), current)
            report["values_replaced"] = {k: v for k, v in replaced.items() if k != "duplicate source_id"}
        for k, (path, preset) in enumerate(photometry):
            step = Path(tmp) / f"join{k}.parquet"
            match = crossmatch_files(current, path, step, radius_arcsec, current_preset, preset, chunk_size,
                                     suffix=f"_{preset_label(preset, f'cat{k + 1}')}",
                                     epoch=epoch if _proper_motions_in(current, current_preset, path, preset) else None)
            report["matches"].append({"catalogue": str(path), "preset": preset_label(preset, None), **match})
            current, current_preset = step, None
        table = pq.read_table(current)
        if sfd_dir is not None:
            from photofeh.io.dust import sfd_ebv
            from photofeh.io.sky import radec

            ebv_map = sfd_ebv(*radec({c: table.column(c).to_numpy() for c in ("ra", "dec")}), sfd_dir)
            table = table.append_column("ebv_sfd", pa.array(ebv_map))
            if "ebv" not in table.column_names:
                table = table.append_column("ebv", pa.array(ebv_map))
            else:
                filled = np.where(np.isnan(table.column("ebv").to_numpy(zero_copy_only=False)), ebv_map,
                                  table.column("ebv").to_numpy(zero_copy_only=False))
                table = table.set_column(table.column_names.index("ebv"), "ebv", pa.array(filled))
        cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
        labelled = [c for c in ("feh_spec", "logg_spec", "teff_spec") if c in cols]
        if labelled:  # rows with at least one spectroscopic label (sentinels are NaN by now)
            report["rows with labels"] = int(np.any([np.isfinite(np.asarray(cols[c], float)) for c in labelled],
                                                    axis=0).sum())
        keep, cut_report = apply_cuts(cols, cuts or Cuts())
        report["cuts"] = cut_report
        with atomic_output(out) as tmp_out:
            pq.write_table(table.filter(pa.array(keep)), tmp_out)
    with atomic_output(Path(f"{out}.report.json")) as tmp_report:
        tmp_report.write_text(json.dumps(report, indent=2, default=float) + "\n")
    report["kept rows"] = int(np.sum(keep))
    return report
