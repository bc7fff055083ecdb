"""The precision a knowledge base's learned tensors are stored in.

The inventory in fp32, bf16 (the default) or int8 with one scale per adapter matrix; the routing logits in
fp16 (fp32 when the inventory is). Training keeps fp32 masters; `rounded` is what a tensor comes back as from
storage, and a KB rounds its masters to it after training, so it answers the same before a save and after a
load. docs/experiments.md ("Storage precision") measured bf16 + fp16 at the same F1 as fp32 on HotpotQA n=100.
"""

from __future__ import annotations

import torch

from ..errors import InputError

PRECISIONS = ("fp32", "bf16", "int8")
DEFAULT = "bf16"
LEGACY = "fp32"  # a manifest without "storage" was written before stored precision was a choice
SCALE = ".scale"  # int8: tensor `k` has its per-matrix scales in `k + SCALE`


def check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"storage={precision!r}; choose from {list(PRECISIONS)} (bf16 halves the inventory "
                         "at the same F1; int8 quarters it).")
    return precision


def pack(tensors: dict[str, torch.Tensor], precision: str) -> dict[str, torch.Tensor]:
    """Inventory tensors as stored: fp32, bf16, or int8 plus a `SCALE` tensor per key."""
    if precision != "int8":
        dtype = torch.float32 if precision == "fp32" else torch.bfloat16
        return {k: t.to(dtype).contiguous() for k, t in tensors.items()}
    out = {}
    for k, t in tensors.items():
        scale = _int8_scale(t)
        out[k] = torch.round(t / scale).clamp(-127, 127).to(torch.int8).contiguous()
        out[k + SCALE] = scale.flatten().contiguous()
    return out


def unpack(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stored inventory tensors back in fp32 (any precision `pack` writes; fp32 files as they are)."""
    out = {}
    for k, t in tensors.items():
        if k.endswith(SCALE):
            continue
        if t.dtype == torch.int8:
            out[k] = t.float() * tensors[k + SCALE].reshape(-1, *[1] * (t.dim() - 1))
        else:
            out[k] = t.float()
    return out


def rounded(t: torch.Tensor, precision: str) -> torch.Tensor:
    """t as it comes back from storage at `precision` (in t's dtype). Rounding twice changes nothing."""
    return unpack(pack({"t": t.float()}, precision))["t"].to(t.dtype)


def routing_dtype(precision: str) -> torch.dtype:
    return torch.float32 if precision == "fp32" else torch.float16


def _int8_scale(t: torch.Tensor) -> torch.Tensor:
    """One scale per adapter matrix (per first index of an (M, ...) tensor; one for a 2-d one): the power of
    two that fits its largest value in ±127. A power of two makes q·scale exact, so quantising an already
    quantised tensor gives it back bit for bit (an add re-stores the old adapters unchanged)."""
    flat = t.float().reshape(t.shape[0], -1) if t.dim() > 2 else t.float().reshape(1, -1)
    top = flat.abs().amax(1).clamp_min(1e-30) / 127
    scale = torch.exp2(torch.ceil(torch.log2(top)))  # (M,) or (1,)
    return scale.reshape(-1, *[1] * (t.dim() - 1)) if t.dim() > 2 else scale.reshape(1, 1)
