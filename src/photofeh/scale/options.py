"""What a prediction run is asked to do (:class:`PredictOptions`, range-checked before any work, the device it
runs on) and what it reports (:class:`PredictSummary`): shared by the local run, its worker processes and the
Dask run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from photofeh.io.dust import EbvSource
from photofeh.io.presets import Preset

__all__ = ["PredictOptions", "PredictSummary", "MAX_CHUNK_ROWS", "check_options", "resolve_device"]

MAX_CHUNK_ROWS = 100_000_000  # a chunk is held in memory several times over (~1 KB per row in all)


@dataclass
class PredictOptions:
    chunk_rows: int = 250_000
    keep: tuple[str, ...] = ()          # pass-through columns, after the id columns found in the input
    preset: str | Preset | None = None  # archive columns -> schema, applied to every chunk
    fmt: str | None = None              # input format when the extension does not tell
    on_error: str = "stop"              # "stop" or "skip" a malformed chunk (reported with its rows)
    device: str = "auto"
    threads: int | None = None          # torch intra-op threads; None: torch's default (physical cores)
    workers: int = 1                    # processes on this machine, each predicting whole chunks (seekable input)
    progress: bool = True
    ebv: EbvSource = field(default_factory=EbvSource)  # E(B-V) from another column or a local SFD map
    prior: str | None = None            # "flat": divide a labels-prior model's training prior out (model.prior)


@dataclass
class PredictSummary:
    output: Path
    rows: int
    chunks_done: int
    chunks_total: int | None
    failed: list[dict] = field(default_factory=list)
    replaced: dict[str, int] = field(default_factory=dict)  # values set to NaN by the validation layer
    duplicate_ids: int = 0
    unphysical_predictions: int = 0  # rows whose prediction fell outside its label's physical range: not usable
    redone_chunks: list[int] = field(default_factory=list)  # logged parts that failed verification
    unusable_rows: int = 0
    seconds: float = 0.0
    resumed_chunks: int = 0
    rows_this_run: int = 0

    @property
    def rate(self) -> float:
        """Stars per second of this run (resumed chunks not counted)."""
        return self.rows_this_run / self.seconds if self.seconds > 0 else float("nan")


def check_options(opts: PredictOptions) -> None:
    """Every option range-checked before any work starts."""
    if opts.on_error not in ("stop", "skip"):
        raise ValueError(f"on_error must be 'stop' or 'skip', not {opts.on_error!r}")
    if not isinstance(opts.chunk_rows, int) or not 1 <= opts.chunk_rows <= MAX_CHUNK_ROWS:
        raise ValueError(f"chunk_rows must be an integer from 1 to {MAX_CHUNK_ROWS:,d}, got {opts.chunk_rows!r} "
                         "(a chunk is held in memory: ~1 KB per row)")
    if opts.threads is not None and not 1 <= opts.threads <= 1024:
        raise ValueError(f"threads must be from 1 to 1024, got {opts.threads!r}")
    if not isinstance(opts.workers, int) or not 1 <= opts.workers <= 1024:
        raise ValueError(f"workers must be an integer from 1 to 1024, got {opts.workers!r}")
    if opts.device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {opts.device!r}; choose auto, cpu or cuda")


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA GPU is visible to PyTorch (use --device auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    return device
