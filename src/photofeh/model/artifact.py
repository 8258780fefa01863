"""Saving and loading model folders: ``model.safetensors`` + ``model.json``.

A model folder carries everything needed to use the model again: weights,
architecture, input features and their normalisation, label names and
normalisation, calibration, training provenance and versions. Loading reads
JSON and tensors only: no pickle, no code is executed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from photofeh.errors import PhotofehError
from photofeh.model.prior import PRIOR_KINDS

__all__ = ["SCHEMA_VERSION", "save_model_folder", "load_model_folder", "ModelFormatError", "model_digest",
           "file_sha256", "named_model_meta"]

SCHEMA_VERSION = 1
WEIGHTS, META = "model.safetensors", "model.json"
# SHA-256 of the two files, written last at save and verified at load: a flipped byte in the weights or an edit
# of the metadata that still validates (a prior table, a domain limit) is refused, not used. A folder without
# it (saved before photofeh wrote it) loads with a warning naming its digest.
CHECKSUMS = "checksums.json"


class ModelFormatError(PhotofehError, ValueError):
    """A model folder that cannot be used: missing files, wrong schema version."""


def model_digest(model_dir: str | os.PathLike) -> str:
    """SHA-256 of a model folder's two files: the identity of a model in every output made with it."""
    import hashlib

    h = hashlib.sha256()
    for name in (META, WEIGHTS):
        with open(Path(model_dir) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def named_model_meta(provenance: dict[str, str]) -> tuple[dict | None, Path | None]:
    """The metadata (model.json) of the model a prediction output's provenance names (``model_path``), and
    its path; ``(None, None)`` when the provenance names none or the folder is not here."""
    path = Path(provenance["model_path"]) / META if provenance.get("model_path") else None
    if path is None or not path.is_file():
        return None, None
    return json.loads(path.read_text()), path


def save_model_folder(path: str | os.PathLike, members: list[torch.nn.Module], meta: dict) -> Path:
    """Write weights of every ensemble member and the metadata, atomically per file."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"member{k}.{name}": t.detach().cpu().contiguous()
               for k, m in enumerate(members) for name, t in m.state_dict().items()}
    meta = {**meta, "schema_version": SCHEMA_VERSION, "n_members": len(members)}
    tmp_w, tmp_m = path / f".{WEIGHTS}.tmp", path / f".{META}.tmp"
    save_file(tensors, str(tmp_w), metadata={"format": "photofeh"})
    tmp_m.write_text(json.dumps(meta, indent=2, default=float) + "\n")
    os.replace(tmp_w, path / WEIGHTS)
    os.replace(tmp_m, path / META)
    tmp_c = path / f".{CHECKSUMS}.tmp"
    tmp_c.write_text(json.dumps({name: file_sha256(path / name) for name in (META, WEIGHTS)}, indent=1) + "\n")
    os.replace(tmp_c, path / CHECKSUMS)
    return path


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify_checksums(path: Path) -> None:
    """The files against :data:`CHECKSUMS`; a folder without it loads with a warning (see above)."""
    record = path / CHECKSUMS
    if not record.is_file():
        import warnings

        warnings.warn(f"{path} has no {CHECKSUMS} (saved by a photofeh before 2026-12): its files cannot be "
                      f"verified; model digest {model_digest(path)}", stacklevel=3)
        return
    try:
        sums = json.loads(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{record} is not valid JSON: {exc}") from None
    for name in (META, WEIGHTS):
        if not isinstance(sums, dict) or not isinstance(sums.get(name), str):
            raise ModelFormatError(f"{record} has no checksum of {name}")
        if file_sha256(path / name) != sums[name]:
            raise ModelFormatError(f"{path / name} does not match its checksum in {record}: the file was changed "
                                   "or damaged after the model was saved; restore the model folder from a copy")


MAX_MEMBERS = 100
MAX_SCALE = 1e8  # |mean| and std of any feature or label: Teff in K is ~1e4; larger is a damaged file


def load_model_folder(path: str | os.PathLike) -> tuple[dict, list[dict[str, torch.Tensor]]]:
    """Read metadata and the state dict of each member, after checking them.

    Everything is validated before any weight is loaded: the metadata's types and sizes (bounded), the
    normalisation and calibration (finite, non-zero scales), and the shape of every tensor in the weights
    file's header against the network the metadata describes (built on PyTorch's "meta" device, which
    allocates nothing). Loaded weights must be finite. Any problem is a :class:`ModelFormatError` naming it.
    """
    path = Path(path)
    if not (path / META).is_file() or not (path / WEIGHTS).is_file():
        raise ModelFormatError(f"{path} is not a photofeh model folder (needs {META} and {WEIGHTS})")
    try:
        meta = json.loads((path / META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path / META} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{path / META} does not hold a JSON object")
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelFormatError(f"{path}: model schema version {version} is not supported by this photofeh "
                               f"(expects {SCHEMA_VERSION}); retrain or use the photofeh version that wrote it "
                               f"({meta.get('photofeh_version', 'unknown')})")
    try:
        expected = _check_meta(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{path / META}: {str(exc).strip(chr(39))}") from None
    _check_weights_header(path / WEIGHTS, expected, meta["n_members"])
    _verify_checksums(path)
    try:
        tensors = load_file(str(path / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise ModelFormatError(f"{path / WEIGHTS} cannot be read: {type(exc).__name__}: {exc}") from None
    members = [{} for _ in range(meta["n_members"])]
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ModelFormatError(f"{path / WEIGHTS}: tensor {key} holds NaN or infinite values")
        member, _, name = key.partition(".")
        members[int(member.removeprefix("member"))][name] = t
    return meta, members


def _finite_list(meta: dict, key: str, n: int, positive: bool = False) -> None:
    values = meta[key]
    if not isinstance(values, list) or len(values) != n:
        raise ValueError(f"{key} must be a list of {n} numbers")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or abs(v) > MAX_SCALE:
            raise ValueError(f"{key} holds {v!r}: not a finite number of sensible size (|x| <= {MAX_SCALE:g})")
        if positive and not v > 0:
            raise ValueError(f"{key} holds {v!r}: scales must be > 0")


def _check_meta(meta: dict) -> dict[str, tuple[int, ...]]:
    """Types, sizes and scales of the metadata; returns the tensor shapes one member must have."""
    from photofeh.model.missing import MISSING_MODES, network_inputs
    from photofeh.model.networks import check_size

    features, labels = meta["features"], meta["labels"]
    for key, values, most in (("features", features, 1000), ("labels", labels, 64)):
        if not isinstance(values, list) or not 1 <= len(values) <= most or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{key} must be a list of 1 to {most} names")
    n_members = meta["n_members"]
    if isinstance(n_members, bool) or not isinstance(n_members, int) or not 1 <= n_members <= MAX_MEMBERS:
        raise ValueError(f"n_members must be an integer from 1 to {MAX_MEMBERS}, got {n_members!r}")
    missing = meta.get("missing", "require")
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {MISSING_MODES}, got {missing!r}")
    F, L = len(features), len(labels)
    for name in ("input_standardizer", "label_standardizer"):
        if not isinstance(meta[name], dict):
            raise ValueError(f"{name} must be an object with mean and std")
    _finite_list(meta["input_standardizer"], "mean", F)
    _finite_list(meta["input_standardizer"], "std", F, positive=True)
    _finite_list(meta["label_standardizer"], "mean", L)
    _finite_list(meta["label_standardizer"], "std", L, positive=True)
    noise_aware = meta.get("noise_aware", False)
    if not isinstance(noise_aware, bool):
        raise ValueError(f"noise_aware must be true or false, got {noise_aware!r}")
    if noise_aware:  # the standardiser of the log-errors the network reads (photofeh.model.noise)
        if not isinstance(meta.get("error_standardizer"), dict):
            raise ValueError("a noise_aware model needs error_standardizer, an object with mean and std")
        _finite_list(meta["error_standardizer"], "mean", F)
        _finite_list(meta["error_standardizer"], "std", F, positive=True)
    if "sigma_scale" in meta:
        _finite_list(meta, "sigma_scale", L, positive=True)
    for key, lo, hi in (("class_temperature", 1e-6, 1e6), ("class_threshold", 0.0, 1.0), ("min_features", 1, F)):
        v = meta.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi):
            raise ValueError(f"{key} must be a number from {lo:g} to {hi:g}, got {v!r}")
    if not isinstance(meta["architecture"], dict):
        raise ValueError("architecture must be an object")
    arch, heads, classify = meta["architecture"], meta["heads"], meta.get("classify", True)
    conditional = meta.get("class_conditional") or []
    check_size(arch, network_inputs(F, missing, noise_aware), labels, heads, classify, conditional)
    if conditional:
        _finite_list(meta, "sigma_scale_giant", len(conditional), positive=True)
    _check_prior_and_domain(meta, F, L)
    from photofeh.model.networks import build_network

    with torch.device("meta"):
        net = build_network(arch, network_inputs(F, missing, noise_aware), labels, heads, classify, conditional)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _numbers(values, name: str, n: int | None = None, none_ok: bool = False) -> list:
    """A list of finite numbers (``None`` allowed where ``none_ok``: an open limit), of length ``n`` if given."""
    if not isinstance(values, list) or (n is not None and len(values) != n) or len(values) > 100_000:
        raise ValueError(f"{name} must be a list of {n if n is not None else 'at most 100,000'} numbers")
    for v in values:
        if v is None and none_ok:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{name} holds {v!r}: not a finite number")
    return values


def _check_prior_and_domain(meta: dict, F: int, L: int) -> None:
    """The switches are booleans, the prior's training histogram a histogram (increasing edges, counts >= 0,
    some stars), and the training domain's limits finite numbers or open (null)."""
    for key in ("classify", "deredden"):
        if key in meta and not isinstance(meta[key], bool):
            raise ValueError(f"{key} must be true or false, got {meta[key]!r}")
    prior = meta.get("prior")
    if prior is not None:
        if not isinstance(prior, dict) or prior.get("kind", "labels") not in PRIOR_KINDS:
            raise ValueError("prior must be an object whose kind is labels, flat or likelihood")
        hist = prior.get("training_distribution")
        if hist is not None:
            if not isinstance(hist, dict):
                raise ValueError("prior.training_distribution must be an object with edges and counts")
            edges = _numbers(hist.get("edges"), "prior.training_distribution.edges")
            counts = _numbers(hist.get("counts"), "prior.training_distribution.counts", max(len(edges) - 1, 0))
            if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:], strict=True)):
                raise ValueError("prior.training_distribution.edges must be at least 2 increasing numbers")
            if any(c < 0 for c in counts) or not sum(counts) > 0:
                raise ValueError("prior.training_distribution.counts must be >= 0 with some stars")
    domain = meta.get("domain")
    if domain:
        if not isinstance(domain, dict):
            raise ValueError("domain must be an object")
        for key in ("lo", "hi", "scale", "centre", "pc_lo", "pc_hi", "pc_scale", "error_max"):
            if key in domain:
                _numbers(domain[key], f"domain.{key}", none_ok=True)
        for key in ("lo", "hi", "scale", "centre", "error_max"):
            if key in domain and len(domain[key]) != F:
                raise ValueError(f"domain.{key} must hold {F} values (one per feature)")
        for key in ("label_lo", "label_hi"):
            if key in domain:
                _numbers(domain[key], f"domain.{key}", L, none_ok=True)
        if "axes" in domain:
            if not isinstance(domain["axes"], list):
                raise ValueError("domain.axes must be a list of rows")
            for row in domain["axes"]:
                _numbers(row, "domain.axes", F, none_ok=True)
        if any(lo is not None and hi is not None and lo > hi
               for lo, hi in zip(domain.get("lo", []), domain.get("hi", []), strict=False)):
            raise ValueError("domain.lo must not exceed domain.hi")


def _check_weights_header(path: Path, expected: dict[str, tuple[int, ...]], n_members: int) -> None:
    """Tensor names and shapes from the safetensors header (nothing loaded) against the metadata."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:
        raise ModelFormatError(f"{path} is not a readable safetensors file: {type(exc).__name__}: {exc}") from None
    want = {f"member{m}.{k}": shape for m in range(n_members) for k, shape in expected.items()}
    missing = sorted(set(want) - set(shapes))
    extra = sorted(set(shapes) - set(want))
    wrong = sorted(k for k in set(want) & set(shapes) if want[k] != shapes[k])
    if missing or extra or wrong:
        details = []
        if missing:
            details.append(f"{len(missing)} tensor(s) missing, e.g. {missing[0]}")
        if extra:
            details.append(f"{len(extra)} unexpected tensor(s), e.g. {extra[0]}")
        if wrong:
            details.append(f"{wrong[0]} has shape {shapes[wrong[0]]}, the metadata implies {want[wrong[0]]}")
        raise ModelFormatError(f"{path} does not match {META} ({n_members} member(s)): " + "; ".join(details))
