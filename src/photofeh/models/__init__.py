"""Network architectures, chosen by name: a backbone plus multi-task heads.

``build_network(arch, n_inputs, labels)`` returns a module mapping standardised
features to ``{"mean": (n, L), "logvar": (n, L), "logit": (n,)}``.
"""

from __future__ import annotations

from photofeh.models.heads import PhotometricNetwork, build_network
from photofeh.models.mlp import MLP
from photofeh.models.resdense import ResDense

__all__ = ["MLP", "ResDense", "PhotometricNetwork", "build_network", "BACKBONES", "PRESETS"]

BACKBONES = {"mlp": MLP, "resdense": ResDense}

# Named configurations. "reference-mlp" is the reference system's baseline
# (inputs -> 1024 -> 512 -> outputs); "reference-resdense" its deep model.
PRESETS: dict[str, dict] = {
    "fast-mlp": {"name": "mlp", "widths": [128, 128, 64], "dropout": 0.0},
    "reference-mlp": {"name": "mlp", "widths": [1024, 512], "dropout": 0.1},
    "reference-resdense": {"name": "resdense", "nfeatures_init": 64, "nfeatures_max": 2048, "depth": 12,
                           "dropout": 0.1},
}
