"""Batched greedy generation, with or without per-row adapter mixing: longest prompts first, left padding."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .adapters import PolyLoRALinear, mixing
from .models import LoadedModel
from .prompts import is_chat
from ..settings import check, setting


@dataclass(frozen=True)
class GenerationConfig:
    max_new_tokens: int = setting(32, "tokens generated per answer at most", at_least=1)
    batch_size: int = setting(8, "questions answered per generation batch", at_least=1)
    # 4096: rag's prompts on the sample (371-730 tokens with the shots) 5 to 8 a batch; the demo then answers under
    # its build's peak (8192 peaked 160 MiB above it) and no slower than 2048 (BENCHMARKS.md, "Answering after a build")
    batch_tokens: int = setting(4096, "prompt tokens per generation batch at most (rows × its longest prompt; "
                                "a longer prompt is answered alone): bounds a batch's memory", at_least=1)

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class Routing:
    """Per-question mixing weights for the adapter inventory: weights (Q, G, M) over `layers`."""

    layers: list[PolyLoRALinear]
    weights: torch.Tensor


@torch.inference_mode()
def generate(lm: LoadedModel, prompts: list[str], config: GenerationConfig = GenerationConfig(),
             progress: bool = True, timings: list[float] | None = None, routing: Routing | None = None) -> list[str]:
    """Greedy, batched (left padding, `token_batches`), longest prompts first; returns only each prompt's new text.

    `timings`, when given, receives each prompt's share of its batch's wall time (amortised latency).
    """
    if not prompts:
        return []
    lengths = [len(ids) for ids in lm.tokenizer(prompts, add_special_tokens=False).input_ids]
    out: list[str] = [""] * len(prompts)
    shares: list[float] = [0.0] * len(prompts)
    batches = token_batches(lengths, config.batch_size, config.batch_tokens)
    for batch in tqdm(batches, desc="generating", unit="batch", disable=not progress or len(batches) < 2):
        start = time.perf_counter()
        route = mixing(routing.layers, routing.weights[batch]) if routing else nullcontext()
        with route:
            texts = _generate_batch(lm, [prompts[i] for i in batch], config)
        share = (time.perf_counter() - start) / len(batch)
        for i, text in zip(batch, texts):
            out[i], shares[i] = text, share
    if timings is not None:
        timings.extend(shares)
    return out


def token_batches(lengths: list[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Prompt indices in batches, longest first: at most `batch_size` rows and `batch_tokens` padded tokens each
    (rows × the batch's first, longest prompt), so that a batch's memory is bounded whatever the prompts hold."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        if last and len(last) < batch_size and (len(last) + 1) * lengths[last[0]] <= batch_tokens:
            last.append(i)
        else:
            batches.append([i])
    return batches


def _generate_batch(lm: LoadedModel, prompts: list[str], config: GenerationConfig) -> list[str]:
    tok, model = lm.tokenizer, lm.model
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left",
              add_special_tokens=False).to(model.device)
    # Base models have no end-of-turn token: stop each row at its first newline instead.
    stop = {} if is_chat(tok) else {"stop_strings": ["\n"], "tokenizer": tok}
    ids = model.generate(**enc, max_new_tokens=config.max_new_tokens, do_sample=False, top_p=None, top_k=None,
                         temperature=None, pad_token_id=tok.pad_token_id, **stop)  # (B, T + new)
    new = ids[:, enc["input_ids"].shape[1]:]
    return [t.split("\n\n")[0] if is_chat(tok) else t.split("\n")[0]
            for t in tok.batch_decode(new, skip_special_tokens=True)]
