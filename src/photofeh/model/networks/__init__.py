"""Network architectures, chosen by name: a backbone plus multi-task heads.

``build_network(arch, n_inputs, labels)`` returns a module mapping standardised
features to ``{"mean": (n, L), "logvar": (n, L), "logit": (n,)}``.
"""

from __future__ import annotations

from photofeh.model.networks.heads import PhotometricNetwork
from photofeh.model.networks.mlp import MLP
from photofeh.model.networks.resdense import ResDense

__all__ = ["MLP", "ResDense", "PhotometricNetwork", "build_network", "check_size", "BACKBONES", "PRESETS",
           "MAX_PARAMETERS"]

BACKBONES = {"mlp": MLP, "resdense": ResDense}


def build_network(arch: dict, n_inputs: int, labels: list[str], heads: str = "independent",
                  classify: bool = True, class_conditional: list[str] | tuple[str, ...] = ()) -> PhotometricNetwork:
    """Build a network from an architecture dict ``{"name": "mlp" | "resdense", ...}``; ``class_conditional``:
    labels predicted once for a dwarf and once for a giant (see :mod:`photofeh.model.networks.heads`)."""
    arch = dict(arch)
    name = arch.pop("name", None)
    if name not in BACKBONES:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(BACKBONES)}")
    try:
        backbone = BACKBONES[name](n_inputs, **arch)
    except TypeError as exc:
        raise ValueError(f"bad options for architecture {name!r}: {exc}") from None
    return PhotometricNetwork(backbone, labels, heads, classify, class_conditional)


# Named configurations. "fast-mlp" is the default: 96-96-48 since 2026-12-02 (issue 14), 1.7x fewer
# multiply-adds than "wide-mlp" (128-128-64, the default before) for [Fe/H] 0.003 dex (1.5%) less precise on
# the real Green et al. 2021 test stars, the same on the mock, every earlier target kept
# (benchmarks/bench_network_size.py). "reference-mlp" is the reference system's baseline
# (inputs -> 1024 -> 512 -> outputs); "reference-resdense" its deep model.
PRESETS: dict[str, dict] = {
    "fast-mlp": {"name": "mlp", "widths": [96, 96, 48], "dropout": 0.0},
    "wide-mlp": {"name": "mlp", "widths": [128, 128, 64], "dropout": 0.0},
    "reference-mlp": {"name": "mlp", "widths": [1024, 512], "dropout": 0.1},
    "reference-resdense": {"name": "resdense", "nfeatures_init": 64, "nfeatures_max": 2048, "depth": 12,
                           "dropout": 0.1},
}

# Far above any photometric network (reference-resdense: ~30 million) and far below what would exhaust a
# machine's memory: a model file asking for more is refused before anything is allocated.
MAX_PARAMETERS = 200_000_000
MAX_WIDTH = 1 << 16


def check_size(arch: dict, n_inputs: int, labels: list[str], heads: str, classify: bool,
               class_conditional: list[str] | tuple[str, ...] = ()) -> int:
    """Build the network on PyTorch's "meta" device (shapes only, no memory) and refuse absurd sizes.

    Returns the parameter count; raises ``ValueError`` naming what is too large or malformed.
    """
    import torch

    for key in ("widths",):
        if key in arch and (not isinstance(arch[key], list | tuple) or len(arch[key]) > 64
                            or not all(isinstance(w, int) and 1 <= w <= MAX_WIDTH for w in arch[key])):
            raise ValueError(f"architecture {key} must be at most 64 integers from 1 to {MAX_WIDTH}, got {arch[key]!r}")
    for key in ("nfeatures_init", "nfeatures_max", "depth"):
        if key in arch and (not isinstance(arch[key], int) or not 1 <= arch[key] <= MAX_WIDTH):
            raise ValueError(f"architecture {key} must be an integer from 1 to {MAX_WIDTH}, got {arch[key]!r}")
    if "depth" in arch and arch["depth"] > 256:
        raise ValueError(f"architecture depth must be at most 256, got {arch['depth']}")
    if "dropout" in arch and (not isinstance(arch["dropout"], int | float) or not 0 <= arch["dropout"] < 1):
        raise ValueError(f"architecture dropout must be in [0, 1), got {arch['dropout']!r}")
    if not 1 <= n_inputs <= MAX_WIDTH or not 1 <= len(labels) <= 64:
        raise ValueError(f"{n_inputs} inputs and {len(labels)} labels: expected 1-{MAX_WIDTH} and 1-64")
    with torch.device("meta"):
        net = build_network(arch, n_inputs, labels, heads, classify, class_conditional)
    n = sum(p.numel() for p in net.parameters())
    if n > MAX_PARAMETERS:
        raise ValueError(f"the architecture {arch} has {n:,d} parameters, more than the {MAX_PARAMETERS:,d} allowed")
    return n
