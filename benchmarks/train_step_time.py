"""Seconds per PRAG training step (batch 1, as PRAG trains) with the training loss as polyprag computes it and
with the earlier loss (the head's NLL checkpointed: applied again in the backward pass), on the same rows; with
`--compile`, also the transformer body under torch.compile (its first step's compile time, then its step time).

    .venv/bin/python benchmarks/train_step_time.py [--model smollm2-135m-instruct] [--steps 20] [--compile] [--out DIR]

Run it alone: it times. Prints a table and writes DIR/train-step-time.json (with `lm.models.machine()`).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

from polyprag.baselines.prag import SLOT, PragAdapters, PragConfig
from polyprag.lm.models import load_model, machine
from polyprag.method import loss as T
from polyprag.method.train import Encoded, collate


def chunked_nll(body, lm, batch: dict[str, torch.Tensor], chunk_nll) -> torch.Tensor:
    """The mean NLL over the labelled positions, `chunk_nll(head, h, y, cap)` summing each chunk's (as nll_loss
    does, with the body passed in, so a compiled body can be timed too)."""
    head, cap = lm.get_output_embeddings(), getattr(lm.config, "final_logit_softcapping", None)
    hidden = body(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state[:, :-1]
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    h, y = hidden[keep], labels[keep]
    step = max(16, T.HEAD_CHUNK_BYTES // (4 * head.out_features))
    return torch.stack([chunk_nll(head, h[i:i + step], y[i:i + step], cap)
                        for i in range(0, len(y), step)]).sum() / len(y)


def checkpointed(head, h, y, cap) -> torch.Tensor:
    """The loss before 2026-12-06: each chunk's NLL checkpointed, so the backward pass applies the head again."""
    def nll(h, y):
        logits = head(h).float()
        return torch.nn.functional.cross_entropy(torch.tanh(logits / cap) * cap if cap else logits, y, reduction="sum")
    return checkpoint(nll, h, y, use_reentrant=False)


def fused(head, h, y, cap) -> torch.Tensor:
    """polyprag's loss now (`method.loss.nll_loss`): the gradient with respect to h from the same logits."""
    return T.HeadNLL.apply(h, head.weight, head.bias, y, cap)


def time_steps(prag: PragAdapters, loss_fn, rows: list[Encoded], warmup: int) -> tuple[float, float, list[float]]:
    """(seconds of the warm-up steps, seconds per step after them, the losses): fresh adapter and optimizer."""
    torch.manual_seed(0)
    for module in prag.model.modules():
        if hasattr(module, "reset_lora_parameters") and SLOT in getattr(module, "lora_A", {}):
            module.reset_lora_parameters(SLOT, True)
    opt = torch.optim.AdamW([p for n, p in prag.model.named_parameters() if f".{SLOT}." in n], lr=3e-4)
    losses, marks = [], [time.perf_counter()]
    for i, e in enumerate(rows):
        batch = collate([e], prag.lm.tokenizer.pad_token_id)
        batch.pop("doc")
        loss = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if i + 1 == warmup:
            marks.append(time.perf_counter())
    marks.append(time.perf_counter())
    return marks[1] - marks[0], (marks[2] - marks[1]) / (len(rows) - warmup), losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per variant, after 3 warm-up steps")
    ap.add_argument("--compile", action="store_true", help="also time the body under torch.compile(dynamic=True)")
    ap.add_argument("--out", default="runs/train-step-time")
    args = ap.parse_args()
    lm = load_model(args.model, dtype="float32")
    prag = PragAdapters(lm, PragConfig(lr=3e-4, epochs=4), tempfile.mkdtemp())
    rng = random.Random(0)  # rows of 60-200 tokens, as PRAG's samples of HotpotQA paragraphs are
    vocab = lm.model.get_output_embeddings().out_features
    rows = [Encoded(0, [rng.randrange(100, vocab) for _ in range(rng.randint(60, 200))], 10)
            for _ in range(3 + args.steps)]
    body = lm.model.base_model  # the transformer without its head (LoRA layers injected in place by PEFT)
    variants = {"checkpointed head (before)": lambda b: chunked_nll(body, lm.model, b, checkpointed),
                "head gradient in the loss's pass (now)": lambda b: chunked_nll(body, lm.model, b, fused)}
    if args.compile:
        compiled = torch.compile(body, dynamic=True)
        variants["now, body under torch.compile"] = lambda b: chunked_nll(compiled, lm.model, b, fused)
    results = {}
    for name, fn in variants.items():
        warm, per_step, losses = time_steps(prag, fn, rows, 3)
        results[name] = {"warmup_s": round(warm, 2), "step_s": round(per_step, 4), "losses": losses}
    first = next(iter(results.values()))
    print(f"| loss | warm-up (3 steps) s | s/step | × before | max loss gap to before |\n|---|---|---|---|---|")
    for name, r in results.items():
        gap = max(abs(a - b) for a, b in zip(r["losses"], first["losses"]))
        r["max_loss_gap"] = gap
        print(f"| {name} | {r['warmup_s']:.1f} | {r['step_s']:.3f} | {r['step_s'] / first['step_s']:.2f} | {gap:.1e} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train-step-time.json").write_text(json.dumps(
        {"model": args.model, "dtype": "float32", "steps": args.steps, "machine": machine(), "variants": results},
        indent=1))


if __name__ == "__main__":
    main()
