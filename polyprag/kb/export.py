"""A question's mixture as a standard PEFT LoRA adapter, for multi-LoRA servers (vLLM, LoRAX, S-LoRA style).

With poly mixing (A = Σ w A_m, B = Σ w B_m) a question's mixture on each layer *is* one rank-r LoRA; a shared
adapter, delta mixing (Σ w B_m A_m) and summed mixtures are sums of LoRAs, which concatenate into one LoRA
of a higher rank (A stacked on A, B beside B). The folder holds `adapter_config.json` and
`adapter_model.safetensors` in PEFT's layout, written directly: building them through PEFT would need a
second copy of the base model in memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .. import atomic
from ..lm.adapters import PolyLoRALinear, per_layer
from ..errors import InputError


def export_lora(model: nn.Module, weights: torch.Tensor, out: str | Path, base_model: str) -> dict:
    """Write the mixture `weights` ((G·H, M), or (G·H, K, M): K mixtures summed; `adapters.per_layer`) of
    `model`'s adapted layers as a PEFT LoRA folder at `out` (replaced atomically); returns its adapter config."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PolyLoRALinear)]
    try:
        each = per_layer([m for _, m in layers], weights[None])  # (1, K, H, M) per layer
    except ValueError as e:
        raise InputError(f"{e}.") from None
    tensors, rank = {}, None
    for (name, layer), w in zip(layers, each):
        if not isinstance(layer.base_layer, nn.Linear):
            raise InputError(f"{name} is a {type(layer.base_layer).__name__}; export handles nn.Linear layers only.")
        a, b = _lora(layer, w[0])
        tensors[f"base_model.model.{name}.lora_A.weight"] = a.contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = b.contiguous()
        rank = a.shape[0]
    scaling = layers[0][1].scaling
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model, "r": rank,
              "lora_alpha": scaling * rank, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
              "target_modules": [name for name, _ in layers], "inference_mode": True}
    with atomic.staged_dir(Path(out)) as tmp:
        save_file(tensors, tmp / "adapter_model.safetensors")
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=1))
    return config


@torch.no_grad()
def _lora(layer: PolyLoRALinear, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(A (R, d_in), B (d_out, R)) whose B·A is the layer's mixed update for weights w (K, H, M)."""
    w = w.float().cpu()
    h, m = w.shape[1:]
    lora_a, lora_b = layer.lora_A[:m].detach().float().cpu(), layer.lora_B[:m].detach().float().cpu()
    a_parts, b_parts = [], []
    for wk in w:  # (H, M): head j mixes the j-th block of the inputs (A) and of the outputs (B)
        if layer.config.mixing == "poly":
            a_parts.append(torch.einsum("jm,mrjd->rjd", wk, lora_a.unflatten(2, (h, -1))).flatten(1))  # (r, d_in)
            b_parts.append(torch.einsum("jm,mjor->jor", wk, lora_b.unflatten(1, (h, -1))).flatten(0, 1))  # (d_out, r)
        else:  # delta (one head): Σ_m w_m B_m A_m, each pair a rank-r part
            a_parts += list(lora_a)
            b_parts += [wk[0, i] * lora_b[i] for i in range(m)]
    if layer.config.shared:
        a_parts.append(layer.shared_A.detach().float().cpu())
        b_parts.append(layer.shared_B.detach().float().cpu())
    return torch.cat(a_parts, 0), torch.cat(b_parts, 1)
