"""What one training pass keeps for the backward, node by node: autograd's saved tensors after a forward of the
decoder with the adapter inventory mixed in, grouped by (node, saved name, dtype, last dim), the frozen weights
that nodes only reference left out (they are the model's, not the pass's).

    .venv/bin/python benchmarks/saved_by_node.py [--tokens 256] [--dtype bfloat16]

Beside benchmarks/saved_activations.py (a whole build's largest pass, by dtype and width, weights included): this
walks one pass's graph, so it names the node that keeps each tensor. The output head is left out: training applies it chunk by chunk and keeps only each chunk's (n, d) gradient
(method.loss.nll_loss), none of its logits.
"""

from __future__ import annotations

import argparse
import collections

import torch

from polyprag.lm.adapters import InventoryConfig, inject, mixing
from polyprag.lm.models import DEFAULT_MODEL, load_model


def saved(loss: torch.Tensor, skip: set[int]) -> collections.Counter:
    """Bytes per (node, saved name, dtype, last dim) over the graph behind `loss`, each storage counted once."""
    seen, by, stack, visited = set(skip), collections.Counter(), [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for name in (a for a in dir(node) if a.startswith("_saved_")):
            value = getattr(node, name)
            if isinstance(value, torch.Tensor) and value.dim() and value.untyped_storage().data_ptr() not in seen:
                seen.add(value.untyped_storage().data_ptr())
                key = (node.name(), name.removeprefix("_saved_"), str(value.dtype).removeprefix("torch."), value.shape[-1])
                by[key] += value.untyped_storage().nbytes()
        stack += [f for f, _ in node.next_functions]
    return by


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--tokens", type=int, default=256, help="one row of this many tokens")
    ap.add_argument("--dtype", default="bfloat16")
    args = ap.parse_args()
    torch.manual_seed(0)
    lm = load_model(args.model, dtype=args.dtype)
    layers = inject(lm.model, InventoryConfig())
    for layer in layers:
        for p in layer.named_adapters().values():
            p.requires_grad_(True)
    ids = torch.randint(100, lm.tokenizer.vocab_size, (1, args.tokens))  # (1, T)
    logits = torch.randn(1, 1, InventoryConfig().n_adapters, requires_grad=True)  # the routing learns too, as in a build
    weights = torch.softmax(logits, -1)  # (B, G, M): one mixture
    with mixing(layers, weights):
        hidden = lm.model.base_model(input_ids=ids).last_hidden_state  # (1, T, d)
    loss = hidden.float().pow(2).mean()
    weights_ptrs = {p.untyped_storage().data_ptr() for p in lm.model.parameters()}
    by = saved(loss, weights_ptrs)
    print(f"{args.tokens} tokens, {args.dtype}: {sum(by.values()) / 2**20:.1f} MiB saved for the backward")
    print("| node | saved | dtype | last dim | MiB |\n|---|---|---|---|---|")
    for (node, name, dtype, dim), n in by.most_common():
        if n >= 2**18:
            print(f"| {node} | {name} | {dtype} | {dim} | {n / 2**20:.1f} |")


if __name__ == "__main__":
    main()
