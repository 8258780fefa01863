"""Multi-task heads: a mean and a log-variance per regression label, a giant/dwarf logit.

Independent heads read the backbone only. Causal heads follow the physics of
how a spectrum constrains a star: Teff first, [Fe/H] given Teff, log g given
Teff and [Fe/H], and the giant/dwarf class given all of them; any other
regression label (e.g. an absolute magnitude) reads the backbone and all of
the causal estimates.

A class-conditional label (``class_conditional``) has a second head: the first gives its value for a dwarf,
the second for a giant (log g < 3.5), so that with the class probability the network states a two-component
mixture, p(y | x) = (1 - P_giant) p(y | x, dwarf) + P_giant p(y | x, giant), instead of one Gaussian
between two modes (the K-dwarf/K-giant ambiguity of an absolute magnitude; the loss in
:func:`photofeh.model.train_loop.multitask_loss`, the point estimate in
:meth:`photofeh.model.predict.PhotometricModel.predict_features`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

CAUSAL_ORDER = ("teff", "feh", "logg")


class PhotometricNetwork(nn.Module):
    def __init__(self, backbone: nn.Module, labels: list[str], heads: str = "independent",
                 classify: bool = True, class_conditional: list[str] | tuple[str, ...] = ()):
        super().__init__()
        if heads not in ("independent", "causal"):
            raise ValueError(f"heads must be 'independent' or 'causal', got {heads!r}")
        check_class_conditional(labels, class_conditional, classify)
        self.backbone, self.labels, self.mode, self.classify = backbone, list(labels), heads, classify
        self.conditional = [lab for lab in labels if lab in class_conditional]
        n = backbone.n_outputs
        if heads == "causal":
            self.order = [lab for lab in CAUSAL_ORDER if lab in labels] + [lab for lab in labels
                                                                        if lab not in CAUSAL_ORDER]
            # each head reads the causal estimates before it; a class-conditional label's (one of two values)
            # is passed on to none
            passed = [lab in CAUSAL_ORDER and lab not in self.conditional for lab in self.order]
            widths = [n + sum(passed[:i]) for i in range(len(self.order))]
        else:
            self.order = list(labels)
            widths = [n] * len(labels)
        self.reg = nn.ModuleDict({lab: nn.Linear(w, 2) for lab, w in zip(self.order, widths, strict=True)})
        # the causal classifier reads every estimate but the class-conditional ones (whose meaning depends on
        # the class it is to find)
        self.cls_inputs = [lab for lab in self.order if lab not in self.conditional]
        n_cls = n + (len(self.cls_inputs) if heads == "causal" else 0)
        self.cls = nn.Linear(n_cls, 1) if classify else None
        # the giant component of each class-conditional label: the same inputs as its (dwarf) head
        width = dict(zip(self.order, widths, strict=True))
        self.reg_giant = nn.ModuleDict({lab: nn.Linear(width[lab], 2) for lab in self.conditional})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.backbone(x))

    def heads(self, h: torch.Tensor, clamp: bool = True) -> dict[str, torch.Tensor]:
        """The heads on the backbone's output ``h`` (apart, so that a benchmark can run the backbone in another
        arithmetic: benchmarks/bench_precision.py)."""
        n = h.shape[1]
        heads = ([self.reg[lab] for lab in self.order] + ([self.cls] if self.cls is not None else [])
                 + [self.reg_giant[lab] for lab in self.conditional])
        # Every head's weights on the backbone output in one matrix product; the causal inputs (the
        # earlier estimates, a few columns) are added afterwards. Same function as concatenating
        # [h, estimates] before each head, without copying h once per head (heads took 40% of inference).
        base = F.linear(h, torch.cat([m.weight[:, :n] for m in heads]), torch.cat([m.bias for m in heads]))
        means: dict[str, torch.Tensor] = {}
        logvars: dict[str, torch.Tensor] = {}
        previous: list[torch.Tensor] = []
        inputs_at: dict[str, list[torch.Tensor]] = {}  # the causal estimates each head reads
        for i, lab in enumerate(self.order):
            out = base[:, 2 * i:2 * i + 2]
            inputs_at[lab] = list(previous)
            if self.mode == "causal" and previous:
                out = out + torch.stack(previous, 1) @ self.reg[lab].weight[:, n:].T
            means[lab], logvars[lab] = out[:, 0], out[:, 1].clamp(-12.0, 8.0) if clamp else out[:, 1]
            if self.mode == "causal" and lab in CAUSAL_ORDER and lab not in self.conditional:
                previous.append(out[:, 0])
        result = {"mean": torch.stack([means[lab] for lab in self.labels], 1),
                  "logvar": torch.stack([logvars[lab] for lab in self.labels], 1)}
        if self.cls is not None:
            logit = base[:, 2 * len(self.order)]
            if self.mode == "causal":
                logit = logit + torch.stack([means[lab] for lab in self.cls_inputs], 1) @ self.cls.weight[0, n:]
            result["logit"] = logit
        if self.conditional:
            first = 2 * len(self.order) + (self.cls is not None)
            g_means, g_logvars = [], []
            for k, lab in enumerate(self.conditional):
                out = base[:, first + 2 * k:first + 2 * k + 2]
                if self.mode == "causal" and inputs_at[lab]:
                    out = out + torch.stack(inputs_at[lab], 1) @ self.reg_giant[lab].weight[:, n:].T
                g_means.append(out[:, 0])
                g_logvars.append(out[:, 1].clamp(-12.0, 8.0) if clamp else out[:, 1])
            result["mean_giant"], result["logvar_giant"] = torch.stack(g_means, 1), torch.stack(g_logvars, 1)
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
        if self.conditional:
            cols += [out["mean_giant"], out["logvar_giant"]]
        affine = torch.cat(cols, 1)  # (n + 1, 2L [+ 1] [+ 2C])
        linear = nn.Linear(n, affine.shape[1]).to(p.device)
        linear.weight.copy_((affine[1:] - affine[0]).T)
        linear.bias.copy_(affine[0])
        return FoldedNetwork(self.backbone, linear, len(self.labels), self.cls is not None,
                             len(self.conditional)).eval()


class FoldedNetwork(nn.Module):
    """A PhotometricNetwork for inference: the backbone and one affine map to every output
    (:meth:`PhotometricNetwork.folded`). Same outputs, to float32 rounding."""

    def __init__(self, backbone: nn.Module, linear: nn.Linear, n_labels: int, classify: bool,
                 n_conditional: int = 0):
        super().__init__()
        self.backbone, self.linear, self.n_labels, self.classify = backbone, linear, n_labels, classify
        self.n_conditional = n_conditional

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.backbone(x))

    def heads(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.linear(h)
        L = self.n_labels
        result = {"mean": out[:, :L], "logvar": out[:, L:2 * L].clamp(-12.0, 8.0)}
        if self.classify:
            result["logit"] = out[:, 2 * L]
        if self.n_conditional:
            first, C = 2 * L + self.classify, self.n_conditional
            result["mean_giant"] = out[:, first:first + C]
            result["logvar_giant"] = out[:, first + C:first + 2 * C].clamp(-12.0, 8.0)
        return result


def check_class_conditional(labels, class_conditional, classify: bool) -> None:
    """Class-conditional labels must be labels of the network and need the giant/dwarf class (the weight of
    their two components); a ``ValueError`` naming what is wrong."""
    if not isinstance(class_conditional, list | tuple) or not all(isinstance(c, str) for c in class_conditional):
        raise ValueError(f"class_conditional must be a list of label names, got {class_conditional!r}")
    unknown = [c for c in class_conditional if c not in labels]
    if unknown:
        raise ValueError(f"class_conditional label(s) {unknown} are not among the labels {list(labels)}")
    if class_conditional and not classify:
        raise ValueError("class_conditional labels need classify = true: P(giant) weighs their two components")

