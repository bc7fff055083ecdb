"""Joint training of the adapter inventory and the routing table on all documents' samples.

Samples of every document are shuffled together; each batch row is routed by its own document's
weights. Adapters and routing logits are separate AdamW groups (routing learns ~100× faster).
Checkpoints at each epoch's end (safetensors + JSON) let `resume` continue an interrupted run.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import atomic
from .adapters import PolyLoRALinear, inventory_state, load_inventory_state, mixing
from .answer import answer_completion, build_prompt, prompt_prefix
from .augment import Sample
from .routing import RoutingTable

log = logging.getLogger("polyprag")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 6
    batch_size: int = 4
    lr_adapters: float = 1e-3
    lr_routing: float = 1e-1
    tau: float = 1.0
    weight_decay: float = 0.0
    max_length: int = 384  # tokens; longer samples are cut from the left of the passage, never the answer
    seed: int = 0
    train_adapters: bool = True  # False: Poly-z, only the routing rows in `trainable_docs` learn


@dataclass
class Encoded:
    doc: int
    ids: list[int]
    loss_from: int  # tokens before this index (system turn / bos) are not in the loss


def encode(tokenizer, sample: Sample, max_length: int) -> Encoded:
    """Full loss over the user turn and the answer (it makes routing document-specific), not the prefix."""
    passages = [sample.passage] if sample.passage else None
    text = build_prompt(tokenizer, sample.question, passages, shots=False) + answer_completion(tokenizer, sample.answer)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    n_prefix = len(tokenizer(prompt_prefix(tokenizer), add_special_tokens=False).input_ids)
    if len(ids) > max_length:  # keep the prefix and the end (question + answer), drop passage tokens
        ids = ids[:n_prefix] + ids[len(ids) - (max_length - n_prefix):]
    return Encoded(sample.doc, ids, n_prefix)


def collate(batch: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right padding to the longest row of this batch (dynamic padding). Labels from lengths, not pad ids:
    some tokenizers use one id for pad, eos and end-of-turn, and the model must learn to stop."""
    width = max(len(e.ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100)
    for i, e in enumerate(batch):
        n = len(e.ids)
        ids[i, :n] = torch.tensor(e.ids)
        attn[i, :n] = 1
        labels[i, e.loss_from:n] = ids[i, e.loss_from:n]
    return {"input_ids": ids, "attention_mask": attn, "labels": labels, "doc": torch.tensor([e.doc for e in batch])}


def _optimizer(layers: list[PolyLoRALinear], routing: RoutingTable, config: TrainConfig) -> torch.optim.AdamW:
    groups = [{"params": [routing.logits], "lr": config.lr_routing, "weight_decay": 0.0}]
    if config.train_adapters:
        params = [p for l in layers for p in (l.lora_A, l.lora_B)]
        groups.append({"params": params, "lr": config.lr_adapters, "weight_decay": config.weight_decay})
    return torch.optim.AdamW(groups)


def train(model, tokenizer, layers: list[PolyLoRALinear], routing: RoutingTable, samples: list[Sample],
          config: TrainConfig, checkpoint_dir: Path | None = None, trainable_docs: torch.Tensor | None = None,
          progress: bool = True) -> list[float]:
    """Train; returns the mean loss of each epoch. `trainable_docs` (bool (N,)) freezes the other rows."""
    encoded = [encode(tokenizer, s, config.max_length) for s in samples]
    for l in layers:
        for p in (l.lora_A, l.lora_B):
            p.requires_grad_(config.train_adapters)
    opt = _optimizer(layers, routing, config)
    start, history = _resume(checkpoint_dir, layers, routing, opt, config)
    model.train()
    routing.train()
    for epoch in range(start, config.epochs):
        history.append(_epoch(model, layers, routing, opt, encoded, tokenizer.pad_token_id, config, epoch,
                              trainable_docs, progress))
        log.info("epoch %d/%d: loss %.4f", epoch + 1, config.epochs, history[-1])
        if checkpoint_dir:
            _save_checkpoint(checkpoint_dir, layers, routing, opt, config, epoch + 1, history)
    model.eval()
    routing.eval()
    return history


def _epoch(model, layers, routing, opt, encoded, pad_id, config, epoch, trainable_docs, progress) -> float:
    rng = random.Random(config.seed * 100_003 + epoch)  # the same order again on resume
    torch.manual_seed(config.seed * 100_003 + epoch)
    batches = _length_bucketed_batches([len(e.ids) for e in encoded], config.batch_size, rng)
    losses = []
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=not progress)
    for idx in bar:
        batch = collate([encoded[i] for i in idx], pad_id)
        with mixing(layers, routing(batch.pop("doc"), tau=config.tau)):
            loss = model(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if trainable_docs is not None:  # Poly-z: old documents' rows must not move
            routing.logits.grad[~trainable_docs] = 0
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    return sum(losses) / len(losses)


def _length_bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar lengths: padding to a batch's longest row wastes little compute."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 16
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _save_checkpoint(folder: Path, layers, routing, opt, config, epoch: int, history: list[float]) -> None:
    """Tensors in safetensors, counters in JSON; the whole folder replaced atomically."""
    with atomic.staged_dir(folder) as tmp:
        save_file(inventory_state(layers), tmp / "inventory.safetensors")
        save_file({"logits": routing.logits.detach().contiguous()}, tmp / "routing.safetensors")
        save_file(_optimizer_tensors(opt), tmp / "optimizer.safetensors")
        (tmp / "state.json").write_text(json.dumps({"epoch": epoch, "history": history, "config": asdict(config)}))


def _resume(folder: Path | None, layers, routing, opt, config) -> tuple[int, list[float]]:
    if folder is not None:
        atomic.recover_dir(folder)
    if folder is None or not (folder / "state.json").exists():
        return 0, []
    state = json.loads((folder / "state.json").read_text())
    load_inventory_state(layers, load_file(folder / "inventory.safetensors"))
    with torch.no_grad():
        routing.logits.copy_(load_file(folder / "routing.safetensors")["logits"])
    _load_optimizer_tensors(opt, load_file(folder / "optimizer.safetensors"))
    log.info("resuming after epoch %d from %s", state["epoch"], folder)
    return state["epoch"], state["history"]


def _optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for g, group in enumerate(opt.param_groups):
        for p_i, p in enumerate(group["params"]):
            for key, value in opt.state.get(p, {}).items():
                out[f"{g}.{p_i}.{key}"] = torch.as_tensor(value).detach().clone().contiguous()
    return out


def _load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    for g, group in enumerate(opt.param_groups):
        for p_i, p in enumerate(group["params"]):
            state = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"{g}.{p_i}.")}
            if state:
                opt.state[p] = state
