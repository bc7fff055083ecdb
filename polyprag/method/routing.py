"""The routing table: per document, logits over the M adapters (per target layer, or one shared vector).

Training: w = normalize(σ((Z[d] + L) / τ)), L logistic noise (a relaxed Bernoulli, as in Polytropon);
inference: w = normalize(σ(Z[d])); normalize(v) = v / (Σv + ε).
Init: near zero ("uniform", the paper's), or from clusters of the documents' embeddings ("cluster"): with
Z ≈ 0 every adapter gets the same gradient and the inventory never specialises (measured: entropy 0.999).
Router ("embedding"): during training a document's logits are Router(its embedding), a linear map fitted to
the cluster table and then trained with the adapters; after training they are written into the table, so
answering reads a table either way, and a new document gets its row from the router in one forward pass.
"""

from __future__ import annotations

import math

import torch
from torch import nn

EPS = 1e-6
# The logit of an adapter a row may not use (one added to the inventory after the row was trained):
# σ(MASKED) is exactly 0 in float32 and below, and it stays finite on disk.
MASKED = -1e4
ROUTING_INITS = ("uniform", "cluster")
ROUTERS = ("table", "embedding")


def normalize(v: torch.Tensor) -> torch.Tensor:
    return v / (v.sum(-1, keepdim=True) + EPS)


class Router(nn.Module):
    """Routing logits (n, G, M) from document embeddings (n, d): a linear map of the centred, unit embedding
    (mean-pooled hidden states share a large common direction; centring makes their differences count)."""

    def __init__(self, dim: int, n_groups: int, n_adapters: int):
        super().__init__()
        self.register_buffer("centre", torch.zeros(dim))
        self.linear = nn.Linear(dim, n_groups * n_adapters)
        self.shape = (n_groups, n_adapters)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x - self.centre, dim=-1)  # (n, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x)).view(-1, *self.shape)  # (n, G, M)

    @torch.no_grad()
    def fit(self, x: torch.Tensor, z: torch.Tensor, ridge: float = 1.0) -> None:
        """Ridge regression of the logits z (N, G, M) on the embeddings x (N, d); the bias is not penalised."""
        self.centre.copy_(x.mean(0))
        f = torch.cat([self.features(x), torch.ones(len(x), 1)], 1).double()  # (N, d + 1)
        penalty = torch.diag(torch.cat([torch.full((f.shape[1] - 1,), ridge), torch.zeros(1)])).double()
        w = torch.linalg.solve(f.T @ f + penalty, f.T @ z.flatten(1).double())  # (d + 1, G·M)
        self.linear.weight.copy_(w[:-1].T.float())
        self.linear.bias.copy_(w[-1].float())

    @torch.no_grad()
    def grow(self, n: int) -> None:
        """n more adapters per group, which the router never picks (weight 0, bias MASKED)."""
        g, m = self.shape
        w = self.linear.weight.data.view(g, m, -1)
        b = self.linear.bias.data.view(g, m)
        self.shape = (g, m + n)
        self.linear = nn.Linear(w.shape[-1], g * (m + n))
        self.linear.weight.data = torch.cat([w, torch.zeros(g, n, w.shape[-1])], 1).reshape(g * (m + n), -1)
        self.linear.bias.data = torch.cat([b, torch.full((g, n), MASKED)], 1).reshape(-1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"router.weight": self.linear.weight.detach().contiguous(),
                "router.bias": self.linear.bias.detach().contiguous(), "router.centre": self.centre.contiguous()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], n_groups: int, n_adapters: int) -> Router:
        router = cls(tensors["router.centre"].shape[0], n_groups, n_adapters)
        with torch.no_grad():
            router.linear.weight.copy_(tensors["router.weight"])
            router.linear.bias.copy_(tensors["router.bias"])
            router.centre.copy_(tensors["router.centre"])
        return router


class RoutingTable(nn.Module):
    def __init__(self, n_docs: int, n_groups: int, n_adapters: int, init_range: float = 1e-3):
        super().__init__()
        self.logits = nn.Parameter(torch.empty(n_docs, n_groups, n_adapters).uniform_(-init_range, init_range))
        self._init_rest()

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> RoutingTable:
        """The table as a KB's routing file holds it, without a copy: the logits stay in their stored dtype (fp16
        or fp32) and, read by `store.read_mapped`, on disk until a question reads their rows. Anything that
        changes the table first takes an fp32 copy of it (`_own`)."""
        table = cls.__new__(cls)
        nn.Module.__init__(table)
        table.logits = nn.Parameter(tensors["logits"], requires_grad=False)
        table._init_rest()
        table._load_extras(tensors)
        return table.eval()

    def _init_rest(self) -> None:
        self.centroids: torch.Tensor | None = None  # (C, d), C ≤ M: cluster init's k-means centroids
        self.router: Router | None = None
        # (N, d) while the router is being trained: logits = table + router(embeddings); None once materialised
        self.embeddings: torch.Tensor | None = None

    @property
    def n_docs(self) -> int:
        return self.logits.shape[0]

    @torch.no_grad()
    def _own(self) -> None:
        """Before a change: the logits as an fp32 tensor of this process (a loaded table may be fp16, memory-mapped)."""
        if self.logits.dtype != torch.float32 or not self.logits.requires_grad:
            self.logits = nn.Parameter(self.logits.detach().float().clone())

    def trainable(self) -> list[nn.Parameter]:
        """What routing training moves: the router while it is attached, else the table."""
        self._own()
        return list(self.router.linear.parameters()) if self.embeddings is not None else [self.logits]

    def grad_norm(self) -> float:
        grads = [p.grad.flatten() for p in self.trainable() if p.grad is not None]
        return float(torch.cat(grads).norm()) if grads else 0.0

    def effective_logits(self, doc_idx: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        z = self.logits[doc_idx].float()  # (B, G, M); a loaded table may hold fp16
        if self.embeddings is not None:
            z = z + self.router(self.embeddings[doc_idx])
        return z

    @torch.no_grad()
    def materialise(self) -> None:
        """Write the router's logits into the table and detach the embeddings: answering reads the table."""
        if self.embeddings is not None:
            self.logits.copy_(self.effective_logits())
            self.embeddings = None

    def forward(self, doc_idx: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        """Mixing weights (B, G, M) for documents doc_idx (B,); noisy only in training mode."""
        z = self.effective_logits(doc_idx)  # (B, G, M)
        if self.training:
            u = torch.rand_like(z).clamp(EPS, 1 - EPS)
            z = (z + torch.log(u) - torch.log1p(-u)) / tau
        return normalize(torch.sigmoid(z))

    def entropy(self, doc_idx: torch.Tensor) -> torch.Tensor:
        """Mean normalised entropy (differentiable) of rows doc_idx's inference weights, per layer group."""
        w = normalize(torch.sigmoid(self.effective_logits(doc_idx))).clamp_min(EPS)  # (B, G, M)
        m = w.shape[-1]
        return -(w * w.log()).sum(-1).mean() / math.log(m) if m > 1 else w.new_zeros(())

    def batch_entropy(self, doc_idx: torch.Tensor) -> torch.Tensor:
        """Normalised entropy (differentiable) of the mean of rows doc_idx's inference weights, per layer group:
        high when the batch as a whole spreads over the adapters."""
        w = normalize(torch.sigmoid(self.effective_logits(doc_idx))).mean(0).clamp_min(EPS)  # (G, M)
        m = w.shape[-1]
        return -(w * w.log()).sum(-1).mean() / math.log(m) if m > 1 else w.new_zeros(())

    def inference_weights(self, doc_idx: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Inference weights normalize(σ(Z)) of rows doc_idx (every document's by default): (B, G, M)."""
        return masked_weights(self.effective_logits(doc_idx))

    @torch.no_grad()
    def mean_weights(self, doc_idx: torch.Tensor) -> torch.Tensor:
        """Inference weights of several documents averaged: (k,) → (G, M)."""
        return masked_weights(self.effective_logits(doc_idx)).mean(0)

    def uniform(self) -> torch.Tensor:
        g, m = self.logits.shape[1:]
        return torch.full((g, m), 1.0 / m)

    @torch.no_grad()
    def grow(self, n_new: int, init_range: float = 1e-3) -> None:
        """Append rows for new documents (Poly-z); existing rows keep their values."""
        self._own()
        new = torch.empty(n_new, *self.logits.shape[1:]).uniform_(-init_range, init_range)
        self.logits = nn.Parameter(torch.cat([self.logits.data, new.to(self.logits)]))

    @torch.no_grad()
    def grow_adapters(self, n: int) -> None:
        """n more adapters: every existing row gets logit MASKED for them (weight exactly 0), so its mixing
        does not change; the router, if any, gives them MASKED too."""
        self._own()
        rows, g, _ = self.logits.shape
        self.logits = nn.Parameter(torch.cat([self.logits.data, torch.full((rows, g, n), MASKED).to(self.logits)], -1))
        if self.router is not None:
            self.router.grow(n)

    @torch.no_grad()
    def init_from_clusters(self, assign: torch.Tensor, strength: float, start: int = 0) -> None:
        """Row start + i: logit +strength on adapter assign[i] (its document's cluster), -strength elsewhere."""
        self._own()
        z = torch.full((len(assign), *self.logits.shape[1:]), -strength)  # (n, G, M)
        z[torch.arange(len(assign)), :, assign] = strength
        self.logits[start:start + len(assign)] = z.to(self.logits)

    def tensors(self) -> dict[str, torch.Tensor]:
        """routing.safetensors (and a checkpoint's): the table, the cluster centroids and the router if any."""
        out = {"logits": self.logits.detach().contiguous()}
        if self.centroids is not None:
            out["centroids"] = self.centroids.contiguous()
        return {**out, **(self.router.tensors() if self.router is not None else {})}

    @torch.no_grad()
    def keep(self, rows: torch.Tensor) -> None:
        """Only these rows (their documents stay; the others are removed)."""
        self.logits = nn.Parameter(self.logits.detach()[rows].clone(), requires_grad=self.logits.requires_grad)

    @torch.no_grad()
    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Values into this table (a checkpoint's, when training resumes)."""
        self._own()
        self.logits.copy_(tensors["logits"])
        self._load_extras(tensors)

    def _load_extras(self, tensors: dict[str, torch.Tensor]) -> None:
        self.centroids = tensors.get("centroids")
        if "router.weight" in tensors:
            router = Router.from_tensors(tensors, *self.logits.shape[1:])
            if self.router is None:
                self.router = router
            else:  # resuming a checkpoint: the attached router (and its embeddings) stays, its values return
                self.router.load_state_dict(router.state_dict())

    @torch.no_grad()
    def attach_router(self, x: torch.Tensor, ridge: float = 1.0) -> None:
        """From here each row's logits are router(x[row]), the router fitted (ridge) to the table as it stands
        (e.g. cluster init), the table zeroed. `materialise` writes the trained router's logits back."""
        self._own()
        self.router = Router(x.shape[1], *self.logits.shape[1:])
        self.router.fit(x, self.logits.detach())
        self.logits.zero_()
        self.embeddings = x

    @torch.no_grad()
    def init_from_router(self, x: torch.Tensor, start: int) -> None:
        """Rows start … start + n take the router's logits for the embeddings x (n, d): routing without training."""
        self._own()
        self.logits[start:start + len(x)] = self.router(x).to(self.logits)

    def nearest_cluster(self, x: torch.Tensor) -> torch.Tensor:
        """(n,) the cluster (= adapter) whose centroid is closest in cosine to each embedding of x (n, d)."""
        return (x @ self.centroids.T).argmax(1)


def masked_weights(z: torch.Tensor) -> torch.Tensor:
    """normalize(σ(z)) of logits z (n, G, M), each row over its adapters up to its last unmasked one and 0
    after: a row trained before the inventory grew is computed exactly as it was then."""
    widths = used_adapters(z)  # (n,)
    out = torch.zeros_like(z)
    for w in widths.unique().tolist():
        rows = widths == w
        out[rows, :, :w] = normalize(torch.sigmoid(z[rows, :, :w]))
    return out


def used_adapters(z: torch.Tensor) -> torch.Tensor:
    """(n,) per row of logits z (n, G, M): 1 + its last adapter whose logit is not MASKED."""
    unmasked = (z > MASKED / 2).any(1)  # (n, M)
    return z.shape[-1] - unmasked.flip(-1).int().argmax(-1)


def document_entropy(weights: torch.Tensor) -> torch.Tensor:
    """(N,) each document's routing entropy / log M (1 = uniform, 0 = one adapter), of its weights (N, G, M)
    averaged over the G layers: the one definition the manifest, `inspect` and the bench report use."""
    w = weights.detach().mean(1)  # (N, M)
    w = (w / w.sum(-1, keepdim=True).clamp_min(1e-12)).clamp_min(1e-12)
    m = weights.shape[-1]
    # One adapter leaves no choice: call it fully sparse rather than divide by log 1 = 0.
    return -(w * w.log()).sum(-1) / math.log(m) if m > 1 else torch.zeros(w.shape[0], dtype=w.dtype)


def layer_entropy(weights: torch.Tensor) -> torch.Tensor:
    """(N,) each document's routing entropy / log M within each layer group, averaged over the G groups.
    Lower than `document_entropy` when a document's layers each use few adapters but not the same ones (the
    layer-averaged weights then look spread although every layer's mixture is sparse)."""
    w = weights.detach().clamp_min(1e-12)  # (N, G, M)
    m = weights.shape[-1]
    return (-(w * w.log()).sum(-1) / math.log(m)).mean(1) if m > 1 else torch.zeros(w.shape[0], dtype=w.dtype)


def entropy_stats(weights: torch.Tensor) -> dict[str, float]:
    """Mean normalised entropy of inference weights (N, G, M) (`document_entropy`), the effective number of
    adapters exp(entropy) a document mixes (M = uniform, 1 = one adapter), and both per layer group
    (`layer_entropy`)."""
    m = weights.shape[-1]
    h, hl = document_entropy(weights), layer_entropy(weights)  # (N,), (N,)
    return {"entropy": float(h.mean()), "effective_adapters": float((h * math.log(m)).exp().mean()) if m > 1 else 1.0,
            "entropy_per_layer": float(hl.mean()),
            "effective_adapters_per_layer": float((hl * math.log(m)).exp().mean()) if m > 1 else 1.0}
