"""Several processes encoding one corpus: `torchrun` / `accelerate launch` run `polyprag build` unchanged.

Every process holds the whole model, inventory and routing table and walks the same seeded batches; each
computes its share of a batch's rows, and the gradients are summed across processes before every step,
so all processes take the same step as one process with the same global batch would. Augmentation and
document embeddings are split across processes and gathered. Only process 0 writes files.
Why not DDP's module wrapper: the trained tensors live in the adapter layers *and* in the routing table
outside the model, with per-row mixing set per call; summing their gradients is one call per step.
Launched without torchrun (no WORLD_SIZE, or 1) everything here is a no-op.
"""

from __future__ import annotations

import json
import os

import torch
import torch.distributed as dist


def size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def active() -> bool:
    """True under a launcher with more than one process; starts the process group on first use: gloo for
    CPU tensors (the routing table always lives there), NCCL for GPU ones where CUDA is available."""
    if size() <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return True


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def block(n: int) -> slice:
    """This process's contiguous share of n items (the shares, in rank order, are the whole)."""
    per = -(-n // size())  # ceil
    return slice(min(rank() * per, n), min((rank() + 1) * per, n))


def gather_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """Every process's `block(n)` rows of x (rows, ...) → all n rows, in order, on every process."""
    if not active():
        return x
    per = -(-n // size())
    padded = torch.zeros(per, *x.shape[1:], dtype=x.dtype)
    padded[:len(x)] = x
    parts = [torch.empty_like(padded) for _ in range(size())]
    dist.all_gather(parts, padded)
    return torch.cat(parts)[:n]


def gather_json(values: list) -> list:
    """Every process's list of JSON values → their concatenation in rank order, on every process
    (sent as UTF-8 bytes in tensors: no pickle between processes either)."""
    if not active():
        return values
    data = torch.tensor(list(json.dumps(values).encode()), dtype=torch.uint8)
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(size())]
    dist.all_gather(sizes, torch.tensor([len(data)]))
    width = int(max(s.item() for s in sizes))
    parts = [torch.zeros(width, dtype=torch.uint8) for _ in range(size())]
    dist.all_gather(parts, torch.cat([data, torch.zeros(width - len(data), dtype=torch.uint8)]))
    return [v for p, s in zip(parts, sizes) for v in json.loads(bytes(p[:int(s.item())].tolist()).decode())]


def sum_gradients(params: list[torch.Tensor]) -> None:
    """Sum each parameter's gradient over the processes (a missing gradient counts as zero): one flat
    all-reduce per device per step, not one per tensor."""
    if not active():
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for device in {p.grad.device for p in params}:
        grads = [p.grad for p in params if p.grad.device == device]
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))


def total(value: float) -> float:
    """The sum of a number over the processes."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())
