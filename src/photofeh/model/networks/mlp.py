"""Multi-layer perceptron backbone: Linear -> BatchNorm -> ReLU -> Dropout per layer."""

from __future__ import annotations

from torch import nn


class MLP(nn.Module):
    """Fully connected backbone with configurable widths."""

    def __init__(self, n_inputs: int, widths: list[int] = (1024, 512), dropout: float = 0.0,
                 batchnorm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        n = n_inputs
        for w in widths:
            layers += [nn.Linear(n, w)]
            if batchnorm:
                layers.append(nn.BatchNorm1d(w))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            n = w
        self.body = nn.Sequential(*layers)
        self.n_outputs = n

    def forward(self, x):
        return self.body(x)
