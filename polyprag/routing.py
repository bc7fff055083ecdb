"""The routing table: per document, logits over the M adapters (per target layer, or one shared vector).

Training: w = normalize(σ((Z[d] + L) / τ)), L logistic noise (a relaxed Bernoulli, as in Polytropon);
inference: w = normalize(σ(Z[d])); normalize(v) = v / (Σv + ε).
Init: near zero ("uniform", the paper's), or from clusters of the documents' embeddings ("cluster"): with
Z ≈ 0 every adapter gets the same gradient and the inventory never specialises (measured: entropy 0.999).
"""

from __future__ import annotations

import math

import torch
from torch import nn

EPS = 1e-6
ROUTING_INITS = ("uniform", "cluster")


def normalize(v: torch.Tensor) -> torch.Tensor:
    return v / (v.sum(-1, keepdim=True) + EPS)


class RoutingTable(nn.Module):
    def __init__(self, n_docs: int, n_groups: int, n_adapters: int, init_range: float = 1e-3):
        super().__init__()
        self.logits = nn.Parameter(torch.empty(n_docs, n_groups, n_adapters).uniform_(-init_range, init_range))
        self.centroids: torch.Tensor | None = None  # (C, d), C ≤ M: cluster init's k-means centroids

    @property
    def n_docs(self) -> int:
        return self.logits.shape[0]

    def forward(self, doc_idx: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        """Mixing weights (B, G, M) for documents doc_idx (B,); noisy only in training mode."""
        z = self.logits[doc_idx]  # (B, G, M)
        if self.training:
            u = torch.rand_like(z).clamp(EPS, 1 - EPS)
            z = (z + torch.log(u) - torch.log1p(-u)) / tau
        return normalize(torch.sigmoid(z))

    def inference_weights(self) -> torch.Tensor:
        """Every document's inference weights normalize(σ(Z)): (N, G, M)."""
        return normalize(torch.sigmoid(self.logits))

    @torch.no_grad()
    def mean_weights(self, doc_idx: torch.Tensor) -> torch.Tensor:
        """Inference weights of several documents averaged: (k,) → (G, M)."""
        return normalize(torch.sigmoid(self.logits[doc_idx])).mean(0)

    def uniform(self) -> torch.Tensor:
        g, m = self.logits.shape[1:]
        return torch.full((g, m), 1.0 / m)

    @torch.no_grad()
    def grow(self, n_new: int, init_range: float = 1e-3) -> None:
        """Append rows for new documents (Poly-z); existing rows keep their values."""
        new = torch.empty(n_new, *self.logits.shape[1:]).uniform_(-init_range, init_range)
        self.logits = nn.Parameter(torch.cat([self.logits.data, new.to(self.logits)]))

    @torch.no_grad()
    def init_from_clusters(self, assign: torch.Tensor, strength: float, start: int = 0) -> None:
        """Row start + i: logit +strength on adapter assign[i] (its document's cluster), -strength elsewhere."""
        z = torch.full((len(assign), *self.logits.shape[1:]), -strength)  # (n, G, M)
        z[torch.arange(len(assign)), :, assign] = strength
        self.logits[start:start + len(assign)] = z.to(self.logits)

    def nearest_cluster(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) the cluster (= adapter) whose centroid is closest in cosine to each embedding of x (n, d)."""
        return (x @ self.centroids.T).argmax(1)


def document_entropy(weights: torch.Tensor) -> torch.Tensor:
    """(N,) each document's routing entropy / log M (1 = uniform, 0 = one adapter), of its weights (N, G, M)
    averaged over the G layers: the one definition the manifest, `inspect` and the bench report use."""
    w = weights.detach().mean(1)  # (N, M)
    w = (w / w.sum(-1, keepdim=True).clamp_min(1e-12)).clamp_min(1e-12)
    m = weights.shape[-1]
    # One adapter leaves no choice: call it fully sparse rather than divide by log 1 = 0.
    return -(w * w.log()).sum(-1) / math.log(m) if m > 1 else torch.zeros(w.shape[0], dtype=w.dtype)


def entropy_stats(weights: torch.Tensor) -> dict[str, float]:
    """Mean normalised entropy of inference weights (N, G, M) (`document_entropy`), and the effective number
    of adapters exp(entropy) a document mixes (M = uniform, 1 = one adapter)."""
    m = weights.shape[-1]
    h = document_entropy(weights)  # (N,)
    return {"entropy": float(h.mean()), "effective_adapters": float((h * math.log(m)).exp().mean()) if m > 1 else 1.0}
