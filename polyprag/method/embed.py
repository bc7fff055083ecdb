"""Document embeddings from the frozen base model, and k-means over them (content-informed routing).

A document's embedding is the mean of the base model's last hidden states over its text (title and
body), L2-normalised. k-means over the embeddings gives each document a topic cluster; `--routing-init
cluster` starts its routing row on that cluster's adapter, so from the first step documents of different
topics train different adapters. k-means is ~20 lines of torch here: not worth a scikit-learn dependency.
"""

from __future__ import annotations

import torch

from .. import distributed
from ..text.corpus import Document
from ..lm.models import LoadedModel


@torch.inference_mode()
def embed_documents(lm: LoadedModel, docs: list[Document], batch_size: int = 8, max_length: int = 256) -> torch.Tensor:
    """(N, d) unit vectors: mean-pooled last hidden states of each document's first `max_length` tokens.
    Run with the adapters off (call it before they are injected, or outside any mixing). Under several
    processes each embeds its share and every process gets all N."""
    tok = lm.tokenizer
    mine = docs[distributed.block(len(docs))]
    out = [torch.zeros(0, lm.model.config.hidden_size)]
    for start in range(0, len(mine), batch_size):
        texts = [d.content() for d in mine[start:start + batch_size]]
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="right", truncation=True,
                  max_length=max_length).to(lm.model.device)
        # The decoder alone: the output head's (B, T, V) logits (400 MB at 8 × 256 tokens over a 49k vocabulary)
        # and every layer's hidden states are not needed, only the last (final norm applied, as hidden_states[-1])
        hidden = lm.model.base_model(**enc).last_hidden_state  # (B, T, d)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)  # (B, d)
        out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
    return distributed.gather_rows(torch.cat(out), len(docs))


def kmeans(x: torch.Tensor, k: int, seed: int = 0, iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine k-means with k-means++ seeding: the cluster (N,) of each row of x (N, d) and the unit centroids
    (C, d), C = min(k, N). With N ≤ k, each row is its own cluster."""
    n = x.shape[0]
    if n <= k:
        return torch.arange(n), x.clone()
    gen = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(n, (1,), generator=gen)]  # (1, d)
    while centres.shape[0] < k:  # k-means++: the next centre far from those chosen
        dist = (1 - x @ centres.T).min(1).values.clamp_min(0)  # (N,)
        pick = torch.multinomial(dist + 1e-12, 1, generator=gen)
        centres = torch.cat([centres, x[pick]])
    assign = torch.full((n,), -1)
    for _ in range(iters):
        new = (x @ centres.T).argmax(1)  # (N,)
        if torch.equal(new, assign):
            break
        assign = new
        for c in range(k):
            members = x[assign == c]
            if len(members):  # an empty cluster keeps its centre
                centres[c] = torch.nn.functional.normalize(members.mean(0), dim=0)
    return assign, centres
