"""An optimizer's state as flat named tensors, so that a training checkpoint is safetensors, not pickle (the
`torch.save` of `optimizer.state_dict()`): poly's training (method.train) and DyPRAG's translator save theirs."""

from __future__ import annotations

import torch


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Every state tensor (AdamW: step, exp_avg, exp_avg_sq) keyed "GROUP.PARAM.NAME" by position."""
    out = {}
    for g, group in enumerate(opt.param_groups):
        for p_i, p in enumerate(group["params"]):
            for key, value in opt.state.get(p, {}).items():
                out[f"{g}.{p_i}.{key}"] = torch.as_tensor(value).detach().clone().contiguous()
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """The state `optimizer_tensors` saved, put back on the same optimizer's parameters (by position)."""
    for g, group in enumerate(opt.param_groups):
        for p_i, p in enumerate(group["params"]):
            state = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"{g}.{p_i}.")}
            if state:
                opt.state[p] = state
