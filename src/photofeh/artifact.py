"""Saving and loading model folders: ``model.safetensors`` + ``model.json``.

A model folder carries everything needed to use the model again: weights,
architecture, input features and their normalisation, label names and
normalisation, calibration, training provenance and versions. Loading reads
JSON and tensors only: no pickle, no code is executed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

__all__ = ["SCHEMA_VERSION", "save_model_folder", "load_model_folder", "ModelFormatError"]

SCHEMA_VERSION = 1
WEIGHTS, META = "model.safetensors", "model.json"


class ModelFormatError(ValueError):
    """A model folder that cannot be used: missing files, wrong schema version."""


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
    return path


def load_model_folder(path: str | os.PathLike) -> tuple[dict, list[dict[str, torch.Tensor]]]:
    """Read metadata and the state dict of each member."""
    path = Path(path)
    if not (path / META).is_file() or not (path / WEIGHTS).is_file():
        raise ModelFormatError(f"{path} is not a photofeh model folder (needs {META} and {WEIGHTS})")
    try:
        meta = json.loads((path / META).read_text())
    except json.JSONDecodeError as exc:
        raise ModelFormatError(f"{path / META} is not valid JSON: {exc}") from None
    version = meta.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ModelFormatError(f"{path}: model schema version {version} is not supported by this photofeh "
                               f"(expects {SCHEMA_VERSION}); retrain or use the photofeh version that wrote it "
                               f"({meta.get('photofeh_version', 'unknown')})")
    tensors = load_file(str(path / WEIGHTS))
    members = [{} for _ in range(meta["n_members"])]
    for key, t in tensors.items():
        member, _, name = key.partition(".")
        members[int(member.removeprefix("member"))][name] = t
    return meta, members
