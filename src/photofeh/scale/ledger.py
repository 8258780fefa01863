"""The resume ledger of a prediction run: ``_manifest.json`` (what the run is), ``_chunks.jsonl`` (one line per
finished or failed chunk) and the verified Parquet parts they name (:class:`Manifest`). A run resumes only onto
the same identity (:func:`run_identity`), counts a chunk as done only when its part is whole, and ends by
checking that every input row was written once (:func:`check_complete`)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from photofeh.io.catalog import atomic_output
from photofeh.io.presets import Preset
from photofeh.model.artifact import file_sha256, model_digest
from photofeh.scale.options import PredictOptions

__all__ = ["MANIFEST", "CHUNK_LOG", "COMPLETE", "PARQUET_WRITE", "ResumeMismatch", "IncompleteOutput", "Manifest",
           "part_name", "run_identity", "write_part", "check_complete", "foreign_files", "run_state"]

MANIFEST = "_manifest.json"  # a leading underscore: pyarrow datasets skip these when reading the parts
CHUNK_LOG = "_chunks.jsonl"
# Written last, once every input row is in a verified part: the parts a finished run holds (name -> bytes). A run
# that starts (or resumes) removes it first, so a folder without it is unfinished (map, mdf, report refuse it).
COMPLETE = "_complete.json"
# Predictions are noise-like floats: dictionary encoding them made writing 6.6x slower and files larger
# (250,000 rows: 0.45 s and 17 MB vs 0.07 s and 14 MB, BENCHMARKS.md).
PARQUET_WRITE = {"compression": "snappy", "use_dictionary": False}


class ResumeMismatch(ValueError):
    """The output folder belongs to a run with another input, model or options."""


class IncompleteOutput(ValueError):
    """The output does not hold every input row exactly once."""


# ------------------------------------------------------------------ manifest
def part_name(k: int) -> str:
    return f"part-{k:06d}.parquet"


_sha256 = file_sha256  # the parts' checksums, as the model folder's


def _part_problem(folder: Path, k: int, entry: dict, chunk_rows: int) -> str | None:
    """Why a logged part cannot be trusted, or None if it is whole (name, rows, size, checksum)."""
    if entry.get("file") != part_name(k) or entry.get("first_row") != k * chunk_rows:
        return f"its log line names {entry.get('file')!r} at row {entry.get('first_row')}, not {part_name(k)}"
    path = folder / part_name(k)
    if not path.is_file():
        return f"{part_name(k)} is missing"
    if path.stat().st_size != entry.get("bytes"):
        return f"{part_name(k)} has {path.stat().st_size:,d} bytes, the log says {entry.get('bytes')}"
    if _sha256(path) != entry.get("sha256"):
        return f"{part_name(k)} does not match its checksum"
    try:
        rows = pq.read_metadata(path).num_rows
    except Exception as exc:  # a damaged footer
        return f"{part_name(k)} cannot be read ({type(exc).__name__})"
    if rows != entry.get("rows"):
        return f"{part_name(k)} has {rows} rows, the log says {entry.get('rows')}"
    return None

def _fingerprint(path: Path) -> list:
    """Names, sizes and modification times of the input files: a changed input is not resumed onto."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(p.relative_to(path)) if path.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns]
            for p in files]


def run_identity(source: Path, kind: str, model_dir: Path, model, opts: PredictOptions, read: Sequence[str],
                 keep: Sequence[str], preset: Preset | None) -> dict:
    """What a prediction run is, for its manifest: a run resumes only onto the same identity (a local run and
    a Dask run of the same command share it, so either resumes the other)."""
    return {"input": str(source.resolve()), "input_files": _fingerprint(source), "format": kind,
            "model": model_digest(model_dir), "chunk_rows": opts.chunk_rows, "columns_read": list(read),
            "keep": list(keep), "preset": None if preset is None else preset.name, "ebv_column": opts.ebv.column,
            "sfd_dir": opts.ebv.sfd_dir, "prior": model.estimate_prior}


def write_part(folder: Path, k: int, chunk_rows: int, table: pa.Table, replaced: Mapping[str, int],
               metadata: dict[str, str]) -> dict:
    """Chunk ``k``'s part, fsynced and renamed into place; returns its line for the chunk log (rows, size,
    checksum: see :class:`Manifest`)."""
    name = part_name(k)
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata), sink, **PARQUET_WRITE)
    data = sink.getvalue()
    with atomic_output(folder / name) as tmp:  # fsynced before the rename
        with open(tmp, "wb") as f:
            f.write(data)
    unusable = table.num_rows - int(np.count_nonzero(table["usable"].to_numpy()))
    return {"file": name, "rows": table.num_rows, "first_row": k * chunk_rows, "bytes": data.size,
            "sha256": hashlib.sha256(data).hexdigest(), "unusable": unusable,
            "replaced": {c: v for c, v in replaced.items() if v}}


def foreign_files(folder: Path, parts: Sequence[str]) -> list[str]:
    """The files of ``folder`` that a Parquet dataset reader (pandas.read_parquet, pyarrow.dataset, Dask) would
    read besides the run's ``parts``: every file below it whose path has no component starting with ``.`` or
    ``_`` (the prefixes those readers skip). A copied or stray part would add its rows twice."""
    known = set(parts)
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(c.startswith((".", "_")) for c in rel.parts) and str(rel) not in known:
            out.append(str(rel))
    return out


def check_complete(done: Mapping[int, dict], expected: Mapping[int, int], source: Path, out: Path,
                   folder: Path) -> None:
    """Rows written = rows read, chunk by chunk (``expected``: rows per chunk), for a local or a Dask run, and
    no file beside the parts that a dataset reader would read too; raise :class:`IncompleteOutput` naming
    what differs. Then the run is finished: its :data:`COMPLETE` record lists its parts."""
    wrong = [k for k in expected if done.get(k, {}).get("rows") != expected[k]]
    extra = sorted(set(done) - set(expected))
    total_in, total_out = sum(expected.values()), sum(v["rows"] for v in done.values())
    if wrong or extra or total_in != total_out:
        raise IncompleteOutput(
            f"{out}: {total_out:,d} rows written for {total_in:,d} read from {source}"
            + (f"; chunk(s) {wrong[:10]} differ" if wrong else "")
            + (f"; unexpected chunk(s) {extra[:10]}" if extra else "") + f"; delete {folder} and predict again")
    parts = {v["file"]: v["bytes"] for _, v in sorted(done.items())}
    stray = foreign_files(folder, list(parts))
    if stray:
        raise IncompleteOutput(
            f"{folder} holds {len(stray)} file(s) that no chunk of this run wrote ({', '.join(stray[:5])}"
            f"{' ...' if len(stray) > 5 else ''}): pandas.read_parquet, pyarrow.dataset and Dask would read their "
            "rows too (a copied part gives every row twice). Move them out of the folder and rerun the same command")
    with atomic_output(folder / COMPLETE) as tmp:
        tmp.write_text(json.dumps({"rows": total_out, "chunks": len(done), "parts": parts}, indent=0) + "\n")


def run_state(path: str | os.PathLike) -> dict | None:
    """What a reader of a ``photofeh predict`` output must know before using it: ``None`` for a file or a folder
    that is not a prediction run (no manifest); else ``complete`` (its :data:`COMPLETE` record is there, every
    part it lists has its size, and no other file would be read), ``stars`` and ``chunks_done`` in the finished
    parts, ``chunks_total`` (when the input can still be counted), ``failed_chunks`` (skipped under
    ``--on-error skip``), ``foreign_files`` and ``problems`` (why it is not complete, in words). Cheap: sizes
    and the log are read, not the parts."""
    folder = Path(path)
    if not (folder.is_dir() and (folder / MANIFEST).is_file()):
        return None
    try:
        identity = json.loads((folder / MANIFEST).read_text()).get("identity", {})
    except (json.JSONDecodeError, AttributeError):
        identity = {}
    done: dict[int, dict] = {}
    failed: dict[int, dict] = {}
    if (folder / CHUNK_LOG).is_file():
        for line in (folder / CHUNK_LOG).read_text().splitlines():
            try:
                entry = json.loads(line)
                k = int(entry.pop("chunk"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                continue
            if "error" in entry:
                failed[k] = entry
            else:
                done[k] = entry
                failed.pop(k, None)
    problems = []
    record = None
    if (folder / COMPLETE).is_file():
        try:
            record = json.loads((folder / COMPLETE).read_text())
        except json.JSONDecodeError:
            problems.append(f"its {COMPLETE} is damaged")
    if record is None and not problems:
        problems.append(f"it has no {COMPLETE}: the run was stopped before its end, skipped chunks (--on-error "
                        "skip) or is still running")
    parts = dict(record.get("parts", {})) if isinstance(record, dict) else {e["file"]: e.get("bytes")
                                                                             for e in done.values() if "file" in e}
    missing = [n for n, size in parts.items() if not (folder / n).is_file() or (folder / n).stat().st_size != size]
    if missing:
        problems.append(f"{len(missing)} part(s) missing or changed since the run ({', '.join(missing[:5])})")
    stray = foreign_files(folder, list(parts))
    if stray:
        problems.append(f"{len(stray)} file(s) that no chunk of the run wrote ({', '.join(stray[:5])}"
                        f"{' ...' if len(stray) > 5 else ''}): a dataset reader would read their rows too")
    if failed:
        problems.append(f"{len(failed)} chunk(s) skipped (--on-error skip): {sorted(failed)[:10]}")
    total = None
    if record is None and identity.get("input") and identity.get("chunk_rows"):
        from photofeh.io.readers import known_rows

        try:
            n = known_rows(identity["input"], identity.get("format"))
        except Exception:  # the input moved or cannot be read here: the total is unknown
            n = None
        total = None if n is None else -(-n // int(identity["chunk_rows"]))
    elif isinstance(record, dict):
        total = record.get("chunks")
    return {"complete": not problems, "stars": int(sum(e.get("rows", 0) for e in done.values())
                                                   if record is None else record.get("rows", 0)),
            "chunks_done": len(done), "chunks_total": total, "failed_chunks": sorted(failed),
            "foreign_files": stray, "problems": problems}


class Manifest:
    """What a run has finished: ``_manifest.json`` (written once: what the run is) and ``_chunks.jsonl``
    (one line appended per finished or failed chunk, so a 10^9-star run never rewrites a big file).

    A part is fsynced and renamed into place before its line is appended (and the line is fsynced),
    and the line records the part's rows, size and SHA-256. On resume a chunk counts as done only if
    its line is whole, names chunk k's own part and row range, and the part on disk has that size,
    checksum and row count; anything else (a part emptied by a power loss, edited, replaced, or a
    line pointing elsewhere) is reported and redone.
    """

    def __init__(self, folder: Path, identity: dict, log: Callable[[str], None] = print):
        self.folder, self.identity, self.say = folder, identity, log
        self.path, self.log = folder / MANIFEST, folder / CHUNK_LOG
        self.done: dict[int, dict] = {}
        self.failed: dict[int, dict] = {}
        self.redone: list[int] = []
        self._lock = threading.Lock()
        saved = None
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except json.JSONDecodeError:
                raise ResumeMismatch(f"{self.path} is not valid JSON; delete {folder} to start again") from None
            if saved.get("identity") != identity and not self._finished_nothing():
                diff = [k for k in identity if saved.get("identity", {}).get(k) != identity[k]]
                raise ResumeMismatch(f"{folder} holds a run with a different {', '.join(diff)}; use another --out "
                                     f"or delete it to start again")
        if saved is not None and saved.get("identity") == identity:
            self.created = saved.get("created", "")
            self._replay()
        else:
            if saved is not None:  # an earlier run that failed before finishing any chunk: nothing to keep
                log(f"{folder}: the earlier run there finished no chunk; starting again with these settings")
                self.log.unlink(missing_ok=True)
            self.created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            with atomic_output(self.path) as tmp:
                tmp.write_text(json.dumps({"identity": identity, "created": self.created}, indent=1) + "\n")
        (folder / COMPLETE).unlink(missing_ok=True)  # a run that starts is unfinished until check_complete

    def _finished_nothing(self) -> bool:
        """True when the folder holds no part and its chunk log no finished chunk (failures only, or none): a
        run that failed before any work (issue 28), which must not block the corrected command."""
        if any(p.name not in (MANIFEST, CHUNK_LOG, COMPLETE) and not p.name.startswith(".")
               for p in self.folder.iterdir()):
            return False
        if not self.log.exists():
            return True
        for line in self.log.read_text().splitlines():
            try:
                if "error" not in json.loads(line):
                    return False
            except (json.JSONDecodeError, TypeError):
                continue
        return True

    def _replay(self) -> None:
        if not self.log.exists():
            return
        chunk_rows = self.identity["chunk_rows"]
        for line in self.log.read_text().splitlines():
            try:
                entry = json.loads(line)
                k = int(entry.pop("chunk"))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                continue  # the last line of a killed run
            if "error" in entry:
                self.failed[k] = entry
                continue
            problem = _part_problem(self.folder, k, entry, chunk_rows)
            if problem is None:
                self.done[k] = entry
                self.failed.pop(k, None)
            else:
                self.done.pop(k, None)
                self.redone.append(k)
                self.say(f"chunk {k}: {problem}; it will be predicted again")

    @property
    def replaced(self) -> Counter:
        """Values the validation layer replaced by NaN, per column, over the finished chunks."""
        total: Counter = Counter()
        for entry in self.done.values():
            total.update(entry.get("replaced", {}))
        return total

    def record_done(self, k: int, info: dict) -> None:
        with self._lock:
            self.done[k] = info
            self.failed.pop(k, None)
            self._append({"chunk": k, **info})

    def record_failed(self, k: int, info: dict) -> None:
        with self._lock:
            self.failed[k] = info
            self._append({"chunk": k, **info})

    def _append(self, entry: dict) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
