"""What a build's training keeps for the backward pass: the bytes autograd saves in the largest pass, by dtype
and last dimension (unique storages), around the build command's own code.

    head -10 polyprag/data/sample/docs.jsonl > /tmp/docs10.jsonl
    .venv/bin/python benchmarks/saved_activations.py -q build /tmp/docs10.jsonl --out /tmp/kb --epochs 1 [--dtype bfloat16]

The arguments are polyprag's (`polyprag.cli.main`); the table is printed when the build ends.
"""

from __future__ import annotations

import sys

import torch

from polyprag.cli import main
from polyprag.method import train

LARGEST = {"bytes": 0, "tokens": 0, "by": {}}


def _counted(pass_loss):
    def wrapped(model, layers, rows, which, weights, pad_id, objective):
        seen, by = set(), {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            key = (t.untyped_storage().data_ptr(), t.dtype)
            if key not in seen:  # views of one storage count once
                seen.add(key)
                kind = (str(t.dtype).removeprefix("torch."), t.shape[-1] if t.dim() else 1)
                by[kind] = by.get(kind, 0) + t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = pass_loss(model, layers, rows, which, weights, pad_id, objective)
        if sum(by.values()) > LARGEST["bytes"]:
            LARGEST.update(bytes=sum(by.values()), tokens=sum(len(rows[i].ids) for i in which), by=by)
        return loss
    return wrapped


if __name__ == "__main__":
    train._pass_loss = _counted(train._pass_loss)
    code = main(sys.argv[1:])
    print(f"largest pass: {LARGEST['tokens']} tokens, {LARGEST['bytes'] / 2**20:,.0f} MiB saved for backward")
    print("| dtype | last dim | MiB |\n|---|---|---|")
    for (dtype, dim), n in sorted(LARGEST["by"].items(), key=lambda kv: -kv[1])[:10]:
        print(f"| {dtype} | {dim} | {n / 2**20:,.1f} |")
    sys.exit(code)
