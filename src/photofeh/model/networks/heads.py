"""Multi-task heads: a mean and a log-variance per regression label, a giant/dwarf logit.

Independent heads read the backbone only. Causal heads follow the physics of
how a spectrum constrains a star: Teff first, [Fe/H] given Teff, log g given
Teff and [Fe/H], and the giant/dwarf class given all of them; any other
regression label (e.g. an absolute magnitude) reads the backbone and all of
the causal estimates.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

CAUSAL_ORDER = ("teff", "feh", "logg")


class PhotometricNetwork(nn.Module):
    def __init__(self, backbone: nn.Module, labels: list[str], heads: str = "independent",
                 classify: bool = True):
        super().__init__()
        if heads not in ("independent", "causal"):
            raise ValueError(f"heads must be 'independent' or 'causal', got {heads!r}")
        self.backbone, self.labels, self.mode, self.classify = backbone, list(labels), heads, classify
        n = backbone.n_outputs
        if heads == "causal":
            self.order = [lab for lab in CAUSAL_ORDER if lab in labels] + [lab for lab in labels
                                                                        if lab not in CAUSAL_ORDER]
            n_causal = sum(lab in CAUSAL_ORDER for lab in labels)
            widths = [n + min(i, n_causal) for i in range(len(self.order))]
        else:
            self.order = list(labels)
            widths = [n] * len(labels)
        self.reg = nn.ModuleDict({lab: nn.Linear(w, 2) for lab, w in zip(self.order, widths, strict=True)})
        n_cls = n + (len(self.order) if heads == "causal" else 0)
        self.cls = nn.Linear(n_cls, 1) if classify else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.backbone(x))

    def heads(self, h: torch.Tensor, clamp: bool = True) -> dict[str, torch.Tensor]:
        """The heads on the backbone's output ``h`` (apart, so that a benchmark can run the backbone in another
        arithmetic: benchmarks/bench_precision.py)."""
        n = h.shape[1]
        heads = [self.reg[lab] for lab in self.order] + ([self.cls] if self.cls is not None else [])
        # Every head's weights on the backbone output in one matrix product; the causal inputs (the
        # earlier estimates, a few columns) are added afterwards. Same function as concatenating
        # [h, estimates] before each head, without copying h once per head (heads took 40% of inference).
        base = F.linear(h, torch.cat([m.weight[:, :n] for m in heads]), torch.cat([m.bias for m in heads]))
        means: dict[str, torch.Tensor] = {}
        logvars: dict[str, torch.Tensor] = {}
        previous: list[torch.Tensor] = []
        for i, lab in enumerate(self.order):
            out = base[:, 2 * i:2 * i + 2]
            if self.mode == "causal" and previous:
                out = out + torch.stack(previous, 1) @ self.reg[lab].weight[:, n:].T
            means[lab], logvars[lab] = out[:, 0], out[:, 1].clamp(-12.0, 8.0) if clamp else out[:, 1]
            if self.mode == "causal" and lab in CAUSAL_ORDER:
                previous.append(out[:, 0])
        result = {"mean": torch.stack([means[lab] for lab in self.labels], 1),
                  "logvar": torch.stack([logvars[lab] for lab in self.labels], 1)}
        if self.cls is not None:
            logit = base[:, -1]
            if self.mode == "causal":
                logit = logit + torch.stack([means[lab] for lab in self.order], 1) @ self.cls.weight[0, n:]
            result["logit"] = logit
        return result

    @torch.no_grad()
    def folded(self) -> FoldedNetwork:
        """The same function for inference, with every head in one matrix product.

        Before the log-variance clamp the heads, causal ones included, are affine in the backbone's output:
        each estimate is a linear function of ``h`` plus linear functions of earlier estimates, themselves
        linear in ``h``. The composed map is read off in float64 at ``h = 0`` (the offset) and at the unit
        vectors (the columns). The chain of small products took about 40% of the default network's inference.
        """
        n = self.backbone.n_outputs
        p = next(self.parameters())
        basis = torch.cat([torch.zeros(1, n), torch.eye(n)]).to(p.device, torch.float64)
        heads64 = copy.deepcopy(self, memo={id(self.backbone): None}).double()  # the heads only
        out = heads64.heads(basis, clamp=False)
        cols = [out["mean"], out["logvar"]] + ([out["logit"][:, None]] if self.cls is not None else [])
        affine = torch.cat(cols, 1)  # (n + 1, 2L [+ 1])
        linear = nn.Linear(n, affine.shape[1]).to(p.device)
        linear.weight.copy_((affine[1:] - affine[0]).T)
        linear.bias.copy_(affine[0])
        return FoldedNetwork(self.backbone, linear, len(self.labels), self.cls is not None).eval()


class FoldedNetwork(nn.Module):
    """A PhotometricNetwork for inference: the backbone and one affine map to every output
    (:meth:`PhotometricNetwork.folded`). Same outputs, to float32 rounding."""

    def __init__(self, backbone: nn.Module, linear: nn.Linear, n_labels: int, classify: bool):
        super().__init__()
        self.backbone, self.linear, self.n_labels, self.classify = backbone, linear, n_labels, classify

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.backbone(x))

    def heads(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.linear(h)
        L = self.n_labels
        result = {"mean": out[:, :L], "logvar": out[:, L:2 * L].clamp(-12.0, 8.0)}
        if self.classify:
            result["logit"] = out[:, 2 * L]
        return result


def build_network(arch: dict, n_inputs: int, labels: list[str], heads: str = "independent",
                  classify: bool = True) -> PhotometricNetwork:
    """Build a network from an architecture dict ``{"name": "mlp" | "resdense", ...}``."""
    from photofeh.model.networks import BACKBONES

    arch = dict(arch)
    name = arch.pop("name", None)
    if name not in BACKBONES:
        raise ValueError(f"unknown architecture {name!r}; choose from {', '.join(BACKBONES)}")
    try:
        backbone = BACKBONES[name](n_inputs, **arch)
    except TypeError as exc:
        raise ValueError(f"bad options for architecture {name!r}: {exc}") from None
    return PhotometricNetwork(backbone, labels, heads, classify)
