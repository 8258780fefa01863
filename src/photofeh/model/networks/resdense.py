"""Residual dense encoder/decoder with feature-wise attention (the reference deep model).

The encoder widens from ``nfeatures_init`` doubling up to ``nfeatures_max``;
the decoder narrows back. ``depth`` counts residual blocks in all. Decoder
blocks add the output of the encoder block of the same width (U-Net-like skip
connections), and every block ends with a feature-wise attention gate,
h <- h * sigmoid(W h + b) (a squeeze-and-excitation gate for dense layers;
Hu et al. 2018).
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualDenseBlock(nn.Module):
    def __init__(self, n_in: int, n_out: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(n_out, n_out), nn.BatchNorm1d(n_out),
        )
        self.shortcut = nn.Identity() if n_in == n_out else nn.Linear(n_in, n_out, bias=False)
        self.gate = nn.Linear(n_out, n_out)
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.act(self.body(x) + self.shortcut(x))
        return h * torch.sigmoid(self.gate(h))


def _widths(n_init: int, n_max: int, depth: int) -> tuple[list[int], list[int]]:
    n_enc = max(1, (depth + 1) // 2)
    enc = [min(n_init * 2**k, n_max) for k in range(n_enc)]
    dec = list(reversed(enc[:-1]))[: max(0, depth - n_enc)]
    return enc, dec


class ResDense(nn.Module):
    """Encoder/decoder of residual dense blocks with skips between matching widths."""

    def __init__(self, n_inputs: int, nfeatures_init: int = 64, nfeatures_max: int = 2048, depth: int = 12,
                 dropout: float = 0.0):
        super().__init__()
        enc, dec = _widths(nfeatures_init, nfeatures_max, depth)
        self.stem = nn.Linear(n_inputs, enc[0])
        self.encoder = nn.ModuleList(ResidualDenseBlock(a, b, dropout) for a, b in zip([enc[0]] + enc[:-1], enc,
                                                                                          strict=True))
        self.decoder = nn.ModuleList(ResidualDenseBlock(a, b, dropout) for a, b in zip([enc[-1]] + dec[:-1], dec,
                                                                                          strict=True))
        self.enc_widths, self.dec_widths = enc, dec
        self.n_outputs = dec[-1] if dec else enc[-1]

    def forward(self, x):
        h = self.stem(x)
        skips: dict[int, torch.Tensor] = {}
        for block, w in zip(self.encoder, self.enc_widths, strict=True):
            h = block(h)
            skips[w] = h
        for block, w in zip(self.decoder, self.dec_widths, strict=True):
            h = block(h) + skips[w]
        return h
