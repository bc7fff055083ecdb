"""Arrow routing per document (arXiv 2405.11157; PEFT's `tuners/lora/arrow.py` routes tokens the same way).

Each adapter's prototype is the top right singular vector of its B·A: the input direction it changes most.
A document weighs adapter m of a layer by how strongly its tokens, as that layer reads them, lie along the
prototype (|x·v_m| averaged over its tokens); the top k adapters are kept and softmaxed. No routing is trained:
set beside the learned rows (bench's `poly-arrow`), it asks whether those rows carry more than what the
document's text and the inventory's weights already say.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..lm.adapters import PolyLoRALinear
from ..lm.models import LoadedModel
from ..text.corpus import Document
from .routing import MASKED

TOP_K = 3  # PEFT's ArrowConfig defaults (top_k 3, router_temperature 1.0): the published recipe, not tuned here
TEMPERATURE = 1.0


def prototypes(layer: PolyLoRALinear) -> torch.Tensor:
    """(M, d_in) unit vectors: the top right singular vector of each adapter's B_m A_m, from the small factors:
    with A_mᵀ = Q R, B_m A_m = (B_m Rᵀ) Qᵀ, so its right singular vectors are Q times those of B_m Rᵀ (d_out × r)."""
    a, b = layer.lora_A.detach().float(), layer.lora_B.detach().float()  # (M, r, d_in), (M, d_out, r)
    q, r = torch.linalg.qr(a.mT)  # (M, d_in, r), (M, r, r)
    vh = torch.linalg.svd(b @ r.mT, full_matrices=False).Vh  # (M, r, r): rows are right singular vectors
    return (q @ vh[:, 0, :, None])[..., 0]  # (M, d_in)


@torch.inference_mode()
def document_scores(lm: LoadedModel, layers: list[PolyLoRALinear], docs: list[Document], batch_size: int = 8,
                    max_length: int = 256) -> torch.Tensor:
    """(N, L, M): mean over each document's first `max_length` tokens of |x·v_m| at each adapted layer, x the
    layer's input with no adapter mixed (call it outside `mixing(...)`), v_m its prototypes."""
    protos = [prototypes(layer) for layer in layers]
    scores: list[torch.Tensor | None] = []  # one (B, M) per layer for the batch in progress
    mask = torch.zeros(0)

    def hook(i: int):
        def record(_module, args):
            x = args[0].float()  # (B, T, d_in)
            s = (x @ protos[i].T.to(x.device)).abs()  # (B, T, M)
            m = mask.to(s.device)  # (B, T, 1)
            scores[i] = ((s * m).sum(1) / m.sum(1).clamp_min(1)).cpu()  # (B, M)
        return record

    handles = [layer.register_forward_pre_hook(hook(i)) for i, layer in enumerate(layers)]
    out = []
    try:
        for start in range(0, len(docs), batch_size):
            enc = lm.tokenizer([d.content() for d in docs[start:start + batch_size]], return_tensors="pt",
                               padding=True, padding_side="right", truncation=True,
                               max_length=max_length).to(lm.model.device)
            mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            scores[:] = [None] * len(layers)
            lm.model.base_model(**enc)
            if any(s is None for s in scores):
                raise ValueError("an adapted layer is outside the decoder: Arrow scores read the decoder's layers")
            out.append(torch.stack(scores, 1))  # (B, L, M)
    finally:
        for h in handles:
            h.remove()
    return torch.cat(out)


def arrow_logits(scores: torch.Tensor, groups: int, heads: int = 1, top_k: int = TOP_K,
                 temperature: float = TEMPERATURE) -> torch.Tensor:
    """Routing logits (N, G·H, M) whose inference weights normalize(σ(z)) are softmax(top-k scores / temperature):
    z = logit(w / 2) for the kept adapters (σ(z) = w / 2 sums to 1/2; normalize restores w), MASKED elsewhere.
    `groups` = L·H (a row per layer, "fine") or H (one per document: the layers' scores averaged). With H
    routing heads (--heads) every head takes its layer's weights: a prototype is the whole adapter's."""
    n, n_layers, m = scores.shape
    if groups not in (heads, n_layers * heads):
        raise InputError(f"Arrow routing gives one weight vector per adapted layer ({n_layers}) or per document, "
                         f"for each of {heads} routing head(s); this routing table has {groups} groups per "
                         "document: pass the KB's own --heads.")
    s = scores if groups == n_layers * heads else scores.mean(1, keepdim=True)  # (N, G, M)
    s = s.repeat_interleave(heads, dim=1)  # (N, G·H, M): a layer's heads in turn, as adapters.per_layer reads them
    k = min(top_k, m)
    top, idx = s.topk(k, dim=-1)  # (N, G, k)
    w = torch.softmax(top / temperature, dim=-1)  # (N, G, k)
    return torch.full_like(s, MASKED).scatter(-1, idx, torch.logit(w / 2))
