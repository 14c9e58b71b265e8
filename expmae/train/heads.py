"""Classifier heads over one or several modality features.

- MLP: one feature set (the per-feature-set classifiers of the paper's Table 2).
- Concat: concatenated modalities into an MLP (the baseline beside FBP).
- FBP: factorized bilinear pooling (Yu et al. 2017, "MFB"), as used for fusion by the MER 2023
  winners: each modality is projected to o*k dims, modalities are multiplied elementwise
  (pairwise for more than two), sum-pooled over the factor k, then power- and L2-normalised:
      z_ij = SumPool_k(U_i x_i ∘ U_j x_j)         [B, o]
      z    = sign(z) * sqrt(|z|);  z = z / ||z||
  MFB itself fuses two inputs (MFH cascades MFB blocks); for M > 2 modalities this head pools every
  pair and concatenates the M(M-1)/2 vectors before the linear classifier (one modality: its square).
  Dropout: MFB drops units of the product U x ∘ V y; here each modality's projection U_i x_i is
  dropped before the products (and before a missing modality's learned vector replaces it), so a
  dropped unit of one modality is dropped from all its pairs, as modality dropout drops it whole, and
  the "missing" vector itself is never dropped. (tests/test_heads.py recomputes the forward in numpy.)
- Attention: each modality encoded to `hidden`, one score per modality from a small MLP, softmax
  over modalities, weighted sum, linear classifier (the MER 2023 baseline's fusion).
(Late fusion of the per-feature-set classifiers has no weights: see expmae.train.late.)
All heads take a list of tensors [B, D_m], one per modality, and a modality mask [B, M] (1 = present;
None = all present), and return logits [B, C]. A missing modality is never a zero vector the head
must learn to read as "absent": concat sees the mask as M extra inputs, FBP replaces the missing
modality's projection by a learned "missing" vector, attention gives it no weight.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn


def full_mask(xs: list[torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
    """[B, M] float mask (all ones when None)."""
    return torch.ones(len(xs[0]), len(xs)) if mask is None else mask.float()


class MLPHead(nn.Module):
    def __init__(self, dims: list[int], num_classes: int, hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        self.with_mask = len(dims) > 1  # concat over modalities: the mask is an input of its own
        self.net = nn.Sequential(
            nn.Linear(sum(dims) + len(dims) * self.with_mask, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes)
        )

    def forward(self, xs: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.with_mask:
            m = full_mask(xs, mask)
            xs = [x * m[:, i:i + 1] for i, x in enumerate(xs)] + [m]
        return self.net(torch.cat(xs, dim=-1))  # concat of one or several modalities: [B, sum D] -> [B, C]


def fbp_pool(a: torch.Tensor, b: torch.Tensor, factor: int) -> torch.Tensor:
    """Factorized bilinear pooling of two projected inputs [B, o*k] -> normalised [B, o]."""
    z = (a * b).unflatten(-1, (-1, factor)).sum(-1)           # [B, o, k] -> [B, o]
    z = torch.sign(z) * torch.sqrt(z.abs() + 1e-8)             # power normalisation
    return F.normalize(z, dim=-1)                              # L2 normalisation


class FBPHead(nn.Module):
    def __init__(self, dims: list[int], num_classes: int, out_dim: int = 64, factor: int = 4,
                 dropout: float = 0.3, hidden: int = 128):
        super().__init__()
        self.factor = factor
        # A small per-modality encoder before the projection keeps FBP trainable on few labels.
        self.enc = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)) for d in dims)
        self.proj = nn.ModuleList(nn.Linear(hidden, out_dim * factor) for _ in dims)
        self.missing = nn.Parameter(torch.zeros(len(dims), out_dim * factor))  # a missing modality's projection
        self.pairs = list(itertools.combinations(range(len(dims)), 2)) or [(0, 0)]
        self.drop = nn.Dropout(dropout)
        self.cls = nn.Linear(out_dim * len(self.pairs), num_classes)

    def forward(self, xs: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        m = full_mask(xs, mask)
        h = [self.drop(p(e(x))) for x, e, p in zip(xs, self.enc, self.proj)]     # M x [B, o*k]
        h = [m[:, i:i + 1] * x + (1 - m[:, i:i + 1]) * self.missing[i] for i, x in enumerate(h)]
        z = torch.cat([fbp_pool(h[i], h[j], self.factor) for i, j in self.pairs], dim=-1)  # [B, P*o]
        return self.cls(z)


class AttentionHead(nn.Module):
    def __init__(self, dims: list[int], num_classes: int, hidden: int = 128, dropout: float = 0.3):
        super().__init__()
        self.enc = nn.ModuleList(nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(dropout)) for d in dims)
        self.score = nn.Sequential(nn.Linear(hidden, hidden // 2 or 1), nn.Tanh(), nn.Linear(hidden // 2 or 1, 1))
        self.cls = nn.Linear(hidden, num_classes)

    def weights(self, xs: list[torch.Tensor], mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.stack([e(x) for x, e in zip(xs, self.enc)], 1)   # [B, M, H]
        present = full_mask(xs, mask) > 0
        present = present | ~present.any(1, keepdim=True)          # a row with nothing present: uniform, not NaN
        s = self.score(h).squeeze(-1).masked_fill(~present, float("-inf"))
        a = torch.softmax(s, dim=-1)                               # [B, M], sums to 1 over present modalities
        return a, h

    def forward(self, xs: list[torch.Tensor], mask: torch.Tensor | None = None) -> torch.Tensor:
        a, h = self.weights(xs, mask)
        return self.cls((a.unsqueeze(-1) * h).sum(1))              # [B, H] -> [B, C]


HEADS = {"mlp": MLPHead, "concat": MLPHead, "fbp": FBPHead, "attention": AttentionHead}  # = plan.TRAINED_HEADS


def build_head(kind: str, dims: list[int], num_classes: int, params: dict) -> nn.Module:
    """params: a job's settings (expmae.train.plan.train_params: hidden, dropout, fbp_dim, fbp_factor)."""
    if kind not in HEADS:
        raise SystemExit(f"config key fuse.heads: unknown head {kind!r}; one of {sorted(HEADS)}")
    kw = {"hidden": params["hidden"], "dropout": params["dropout"]}
    if kind == "fbp":
        kw.update(out_dim=params["fbp_dim"], factor=params["fbp_factor"])
    return HEADS[kind](dims, num_classes, **kw)
