"""Joint training of the adapter inventory and the routing table on all documents' samples.

Samples of every document are shuffled together; each batch row is routed by its own document's
weights. Adapters and routing logits are separate AdamW groups (routing learns ~100× faster).
Checkpoints at each epoch's end and every CHECKPOINT_EVERY_S within one (safetensors + JSON) let a rerun continue
an interrupted run where it was, with the same result.

Objectives: "nll" (next-token loss on the user turn and the rule answer), "distill" (the frozen base model
reading the document is the teacher: KL from its top-k next-token distribution to the routed student's,
on the answer tokens, with no passage in the student's prompt; the teacher keeps the reader's own answer
distribution, which NLL on rule answers sharpens into an answer shape), or "both" (their sum).
Each epoch logs routing diagnostics: max |Z|, the routing gradient norm, the routing entropy, the effective
number of adapters per document, and the mean cosine between the inventory's adapters.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .. import atomic, distributed
from ..lm.adapters import (PolyLoRALinear, adapter_cosine, inventory_state, load_inventory_state, mixing, old_part,
                       recompute_context)
from ..lm.prompts import answer_completion, build_prompt, prompt_prefix
from ..lm.models import release_heap, trim_heap
from ..text.augment import Sample
from ..errors import InputError
from .routing import MASKED, RoutingTable, entropy_stats
from .checkpoint import load_optimizer_tensors, optimizer_tensors
from .config import TrainConfig
from .loss import nll_loss

# A checkpoint within an epoch this often (seconds): an epoch of a large build outlasts many a session or job slot,
# and an interrupted one then loses at most this much of it (a save costs well under a second at 20 adapters)
CHECKPOINT_EVERY_S = 600.0

log = logging.getLogger("polyprag")


@dataclass
class Encoded:
    doc: int
    ids: list[int]
    loss_from: int  # tokens before this index (system turn / bos) are not in the loss
    answer_from: int = 0  # distillation: index of the first answer token in ids
    teacher: tuple[torch.Tensor, torch.Tensor] | None = None  # (n_answer, k) log-probs and token ids
    teacher_hidden: torch.Tensor | None = None  # (n_answer, d): the teacher's last hidden states (--distill-hidden)
    routed: bool = True  # False: mixed by uniform weights, not the document's routing (Sample.routed)


def encode(tokenizer, sample: Sample, max_length: int) -> Encoded:
    """Full loss over the user turn and the answer (it makes routing document-specific), not the prefix."""
    passages = [sample.passage] if sample.passage else None
    text = build_prompt(tokenizer, sample.question, passages, shots=False) + answer_completion(tokenizer, sample.answer)
    ids = tokenizer(text, add_special_tokens=False).input_ids
    n_prefix = len(tokenizer(prompt_prefix(tokenizer), add_special_tokens=False).input_ids)
    if len(ids) > max_length:  # keep the prefix and the end (question + answer), drop passage tokens
        ids = ids[:n_prefix] + ids[len(ids) - (max_length - n_prefix):]
    return Encoded(sample.doc, ids, n_prefix, routed=sample.routed)


def encode_distill(tokenizer, sample: Sample, max_length: int, shots: bool = False) -> tuple[Encoded, list[int]]:
    """The student's sequence (no passage) and the teacher's (the document in context; with `shots` after the
    reader's answer examples too), both ending in the same answer token ids, so position j of the answer lines up."""
    n_prefix = len(tokenizer(prompt_prefix(tokenizer), add_special_tokens=False).input_ids)
    answer = tokenizer(answer_completion(tokenizer, sample.answer), add_special_tokens=False).input_ids

    def ids_for(passage: str | None, shots: bool, limit: int) -> list[int]:
        prompt = tokenizer(build_prompt(tokenizer, sample.question, [passage] if passage else None, shots=shots),
                           add_special_tokens=False).input_ids
        keep = max(limit - len(answer), n_prefix + 1)
        if len(prompt) > keep:  # drop passage tokens after the prefix, never the question's end or the answer
            prompt = prompt[:n_prefix] + prompt[len(prompt) - (keep - n_prefix):]
        return prompt + answer

    student = ids_for(sample.passage, False, max_length)
    teacher = ids_for(sample.source, True, 2 * max_length) if shots else ids_for(sample.source, False, max_length)
    return Encoded(sample.doc, student, n_prefix, len(student) - len(answer), routed=sample.routed), teacher


@torch.no_grad()
def teacher_targets(model, pairs: list[tuple[Encoded, list[int]]], top_k: int, progress: bool,
                    hidden: bool = False) -> None:
    """Fill each student's `teacher` with the base model's top-k log-probs on the answer tokens, reading its
    own sequence (the document in context), and with `hidden` its last hidden states there too. One row at a
    time: only the answer positions' logits are kept."""
    model.eval()
    for enc, ids in tqdm(pairs, desc="teacher", unit="sample", disable=not progress):
        n = len(enc.ids) - enc.answer_from
        out = model(input_ids=torch.tensor([ids], device=model.device), logits_to_keep=n + 1,
                    output_hidden_states=hidden)
        logits = out.logits[0, :n]  # (n, V): the positions that predict the answer's n tokens
        if hidden:
            # (n, d), the same positions; a copy: a view would keep the whole (T, d) sequence alive all training
            enc.teacher_hidden = out.hidden_states[-1][0, -(n + 1):-1].float().clone()
        logp = torch.log_softmax(logits.float(), -1)
        values, index = logp.topk(min(top_k, logp.shape[-1]), -1)  # (n, k)
        enc.teacher = (values, index)


# A 16-bit model's batches are rounded up to this many tokens: in bfloat16 on a CPU every new matmul shape adds a
# oneDNN primitive to a cache of 1,024, and free widths grew a build by ~300 MiB (BENCHMARKS.md, "Why the bfloat16
# build was not smaller"); right padding leaves the real positions' outputs and the loss unchanged. A float32
# model has no such cache, so its rows (PRAG's, one at a time, too) are not padded ("Batch widths by dtype").
WIDTH_MULTIPLE = 16


def width_multiple(model: torch.nn.Module) -> int:
    """What `collate` rounds a batch's width up to for this model: WIDTH_MULTIPLE in 16 bits, else 1."""
    return WIDTH_MULTIPLE if getattr(model, "dtype", torch.float32) in (torch.bfloat16, torch.float16) else 1


def _width(rows: list[Encoded], multiple: int) -> int:
    """The padded width of a batch of these rows: its longest row, rounded up to `multiple`."""
    return -(-max(len(e.ids) for e in rows) // multiple) * multiple


def collate(batch: list[Encoded], pad_id: int, multiple: int = 1) -> dict[str, torch.Tensor]:
    """Right padding to the longest row of this batch, rounded up to `multiple` (`width_multiple`). Labels from
    lengths, not pad ids: some tokenizers use one id for pad, eos and end-of-turn, and the model must learn to
    stop."""
    width = _width(batch, multiple)
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
    lr = config.lr_router if routing.embeddings is not None else config.lr_routing
    groups = [{"params": routing.trainable(), "lr": lr, "weight_decay": 0.0}]
    if config.train_adapters:
        params = [p for l in layers for p in l.named_adapters().values()]
        groups.append({"params": params, "lr": config.lr_adapters, "weight_decay": config.weight_decay})
    return torch.optim.AdamW(groups)


def train(model, tokenizer, layers: list[PolyLoRALinear], routing: RoutingTable, samples: list[Sample],
          config: TrainConfig, checkpoint_dir: Path | None = None, trainable_docs: torch.Tensor | None = None,
          progress: bool = True, frozen_adapters: int = 0) -> list[dict]:
    """Train; returns one record per epoch: its mean loss and the routing diagnostics (module docstring).
    `trainable_docs` (bool (N,)) freezes the other rows; the first `frozen_adapters` adapters of every
    layer stay as they are (a grown inventory trains only its new ones)."""
    if distributed.size() > 1 and config.objective != "nll":
        raise InputError(f"objective {config.objective!r} runs in one process only; launch without torchrun, or "
                         "use --objective nll.")
    if config.micro_batch and config.objective != "nll":
        raise InputError(f"micro_batch={config.micro_batch} splits the NLL only; use --micro-batch 0 with "
                         f"objective {config.objective!r}.")
    encoded = _encode_all(model, tokenizer, samples, config, progress)
    for l in layers:
        for p in l.named_adapters().values():
            p.requires_grad_(config.train_adapters)
    run = _Run(model, layers, routing, _optimizer(layers, routing, config), encoded, tokenizer.pad_token_id, config,
               trainable_docs, frozen_adapters, checkpoint_dir, progress)
    start, history, partial = _resume(run)
    if config.checkpoint_activations:  # the context_fn recomputes each layer with the mixing it ran forward with
        model.activation_checkpointing_enable({"use_reentrant": False, "context_fn": recompute_context})
    model.train()
    routing.train()
    try:
        history = _epochs(run, start, history, partial)
    finally:
        if config.checkpoint_activations:
            model.activation_checkpointing_disable()
        model.eval()
        routing.eval()
        _release(run)
    return history


def _release(run: _Run) -> None:
    """Drop the gradients and hand the training's freed memory back to the OS: glibc keeps freed blocks in the
    heap, and answering in the same process (`demo`, `bench`) then stacked its own ~400 MiB on top of the
    build's peak (BENCHMARKS.md, "Answering after a build in one process")."""
    run.opt.state.clear()  # freed now, before the trim, rather than when the run goes out of scope
    learned = [p for l in run.layers for p in l.named_adapters().values()] + list(run.routing.parameters())
    for p in learned:  # the routing's own rows too: under a router they get gradients the optimiser never steps
        p.grad = None
    release_heap()


@dataclass
class _Run:
    """One training run's state: the model and what learns, the encoded samples, and what stays fixed over its
    epochs (what `_epochs`, `_epoch`, `_backward` and the checkpoints share, instead of a dozen parameters)."""

    model: torch.nn.Module
    layers: list[PolyLoRALinear]
    routing: RoutingTable
    opt: torch.optim.AdamW
    encoded: list[Encoded]
    pad_id: int
    config: TrainConfig
    trainable_docs: torch.Tensor | None  # bool (N,): the routing rows that may move (Poly-z); None: all
    frozen_adapters: int  # the first adapters of every layer stay as they are (a grown inventory)
    checkpoint_dir: Path | None
    progress: bool


def _epochs(run: _Run, start: int, history: list[dict], partial: dict | None) -> list[dict]:
    """The epochs from `start` on (the first from where `partial`, a checkpoint within it, left off)."""
    config, layers, routing = run.config, run.layers, run.routing
    for epoch in range(start, config.epochs):
        loss, grad, seconds, before = _epoch(run, epoch, history, partial if epoch == start else None)
        history.append({"epoch": epoch + 1, "loss": round(loss, 5), "tokens": sum(len(e.ids) for e in run.encoded),
                        "seconds": round(seconds, 4), **({"seconds_before": round(before, 4)} if before else {}),
                        **diagnostics(layers, routing, grad)})
        log.info("epoch %d/%d: loss %.4f; routing: max|Z| %.2f, grad norm %.3g, entropy %.3f, %.1f effective "
                 "adapters per document; adapter cosine %s", epoch + 1, config.epochs, loss,
                 history[-1]["max_abs_z"], history[-1]["routing_grad_norm"], history[-1]["entropy"],
                 history[-1]["effective_adapters"], history[-1]["adapter_cosine"])
        if run.checkpoint_dir and distributed.is_main():
            _save_checkpoint(run, epoch + 1, history)
    return history


def diagnostics(layers: list[PolyLoRALinear], routing: RoutingTable, grad_norm: float) -> dict:
    """Is routing leaving uniform, and are the adapters distinct? (The numbers `inspect` and the manifest show.)"""
    with torch.no_grad():
        weights = routing.inference_weights()
        z = routing.effective_logits()
        max_z = float(z[z > MASKED / 2].abs().max())  # not the logits that shut old rows off grown adapters
    cos = adapter_cosine(layers)
    return {"max_abs_z": round(max_z, 4),
            "routing_grad_norm": round(grad_norm, 6),
            **{k: round(v, 4) for k, v in entropy_stats(weights).items()},
            "adapter_cosine": None if cos is None else round(cos, 4)}


def _encode_all(model, tokenizer, samples: list[Sample], config: TrainConfig, progress: bool) -> list[Encoded]:
    if config.objective == "nll":
        return [encode(tokenizer, s, config.max_length) for s in samples]
    pairs = [encode_distill(tokenizer, s, config.max_length, config.distill_shots) for s in samples]
    taught = [s.source is not None and not s.passage for s in samples]  # a passage shown: nothing to distil
    if config.objective == "distill":  # the KL is the whole loss: samples without a teacher would add nothing
        pairs = [p for p, t in zip(pairs, taught) if t]
        if not pairs:
            raise InputError("objective 'distill' needs samples without a passage in the prompt (with their "
                             "document as the teacher's context); use --objective nll or both.")
    teacher_targets(model, [p for p, t in zip(pairs, taught) if t] if config.objective == "both" else pairs,
                    config.distill_top_k, progress, hidden=config.distill_hidden > 0)
    return [enc for enc, _ in pairs]


def _epoch(run: _Run, epoch: int, history: list[dict], partial: dict | None) -> tuple[float, float, float, float]:
    """One pass (the rest of one, from a checkpoint's `partial`); returns the mean loss, the mean norm of the routing
    logits' gradient, the epoch's seconds and those of them an earlier process spent."""
    config, opt, routing, encoded = run.config, run.opt, run.routing, run.encoded
    rng = random.Random(config.seed * 100_003 + epoch)  # the same order again on resume
    torch.manual_seed(config.seed * 100_003 + epoch)
    batches = _length_bucketed_batches([len(e.ids) for e in encoded], config.batch_size, rng)
    done, losses, grads, before = 0, [], [], 0.0
    if partial:  # the random state (the routing's noise) as the checkpoint left it, not the epoch's start
        done, losses, grads, before = partial["done"], partial["losses"], partial["grads"], partial["seconds"]
        torch.set_rng_state(partial["rng"]["torch"])
        if cuda := [partial["rng"][k] for k in sorted(partial["rng"]) if k.startswith("cuda.")]:
            torch.cuda.set_rng_state_all(cuda)
    began, saved = time.perf_counter(), time.monotonic()
    bar = tqdm(batches[done:], desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", initial=done,
               total=len(batches), disable=not run.progress or not distributed.is_main())
    for i, idx in enumerate(bar, start=done):
        opt.zero_grad(set_to_none=True)
        loss = _backward(run, [encoded[i] for i in idx])
        distributed.sum_gradients([p for g in opt.param_groups for p in g["params"]])
        if run.trainable_docs is not None:  # Poly-z: old documents' rows must not move
            routing.logits.grad[~run.trainable_docs] = 0
        for l in run.layers if run.frozen_adapters and config.train_adapters else ():
            for k, p in l.named_adapters().items():  # the shared adapter is an old one too
                p.grad[old_part(k, run.frozen_adapters)] = 0
        grads.append(routing.grad_norm())
        opt.step()
        trim_heap()  # the batch's freed activations back to the OS: ~70 MiB off a build's peak (models.trim_heap)
        losses.append(distributed.total(loss))
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
        if run.checkpoint_dir and time.monotonic() - saved > CHECKPOINT_EVERY_S and i + 1 < len(batches) \
                and distributed.is_main():
            _save_checkpoint(run, epoch, history, {"done": i + 1, "losses": losses, "grads": grads,
                                                   "seconds": before + time.perf_counter() - began})
            saved = time.monotonic()
    return sum(losses) / len(losses), sum(grads) / len(grads), before + time.perf_counter() - began, before


def _backward(run: _Run, rows: list[Encoded]) -> float:
    """Forward and backward of one batch; returns its loss (under several processes, this process's part).
    A process computes its share of the rows (all of them when alone), in passes of `micro_batch` rows; each
    pass's loss is weighted by its part of the batch's loss tokens, so the gradients sum to the batch's."""
    model, layers, routing, config, pad_id = run.model, run.layers, run.routing, run.config, run.pad_id
    docs = torch.tensor([e.doc for e in rows])  # routing rows: the table stays on the CPU
    weights = routing(docs, tau=config.tau)  # (B, G, M); every process draws the same noise
    routed = torch.tensor([e.routed for e in rows])  # (B,)
    if not routed.all():  # format rows through every adapter alike: the routing learns from fact rows only
        weights = torch.where(routed[:, None, None], weights, torch.full_like(weights, 1 / weights.shape[-1]))
    share = list(range(len(rows))[distributed.block(len(rows))])
    passes = _passes(rows, share, config, width_multiple(model))
    entropy = _routing_penalty(routing, docs, config)
    if len(passes) == 1 and distributed.size() == 1:  # one pass: the loss straight through the routing
        loss = _pass_loss(model, layers, rows, passes[0], weights, pad_id, config)
        loss = loss + entropy if entropy is not None else loss
        loss.backward()
        return loss.item()
    w = weights.detach().requires_grad_()  # each pass frees its activations; the routing gets their sum below
    total = 0.0
    for rows_in_pass in passes:
        part = _pass_loss(model, layers, rows, rows_in_pass, w, pad_id, config)
        part = part * _loss_tokens([rows[i] for i in rows_in_pass]) / _loss_tokens(rows)
        part.backward()
        total += part.item()
    grad = w.grad if w.grad is not None else torch.zeros_like(w)  # no rows here: a zero gradient to send
    torch.autograd.backward([weights] + ([entropy] if entropy is not None else []),
                            [grad] + ([torch.ones(())] if entropy is not None else []))
    return total + (entropy.item() if entropy is not None else 0.0)


def _routing_penalty(routing: RoutingTable, docs: torch.Tensor, config: TrainConfig) -> torch.Tensor | None:
    """λ_e · H(each row) − λ_b · H(the batch's mean row), or None when both weights are 0. The noise in training
    mixes everything; the first term pulls each row to few adapters, the second keeps the rows apart."""
    if not (config.routing_entropy or config.routing_balance):
        return None
    penalty = config.routing_entropy * routing.entropy(docs) if config.routing_entropy else 0.0
    if config.routing_balance:
        penalty = penalty - config.routing_balance * routing.batch_entropy(docs)
    return penalty / distributed.size()


def _passes(rows: list[Encoded], share: list[int], config: TrainConfig, multiple: int = 1) -> list[list[int]]:
    """The rows of `share` (indices into `rows`) in forward/backward passes: `config.micro_batch` at a time, or
    packed longest first so that each pass holds at most `config.pass_tokens` tokens padded as `collate` pads
    them (at least one row; all of them in one pass when no budget is set or the objective is not the NLL alone).
    Packing by length keeps a passage row from making every bare question of its batch a pass of its own."""
    if not share:  # another process took every row of this batch
        return []
    if config.micro_batch:
        return [share[i:i + config.micro_batch] for i in range(0, len(share), config.micro_batch)]
    if not config.pass_tokens or config.objective != "nll":
        return [share]
    passes: list[list[int]] = []
    for i in sorted(share, key=lambda i: -len(rows[i].ids)):  # the first row of a pass is its widest
        if passes and (len(passes[-1]) + 1) * _width([rows[passes[-1][0]]], multiple) <= config.pass_tokens:
            passes[-1].append(i)
        else:
            passes.append([i])
    return passes


def _pass_loss(model, layers: list[PolyLoRALinear], rows: list[Encoded], which: list[int], weights: torch.Tensor,
               pad_id: int, config: TrainConfig) -> torch.Tensor:
    """The mean loss of rows[which], each mixed by its row of weights (B, G, M)."""
    part = [rows[i] for i in which]
    batch = {k: v.to(model.device) for k, v in collate(part, pad_id, width_multiple(model)).items() if k != "doc"}
    with mixing(layers, weights[which]):  # (len(which), G, M): these rows' weights, in their order
        return _loss(model, batch, part, config)


def _loss_tokens(rows: list[Encoded]) -> int:
    """Positions with a next-token label (those past `loss_from`): what the NLL of a batch is averaged over."""
    return sum(len(e.ids) - max(e.loss_from, 1) for e in rows)


def _loss(model, batch: dict[str, torch.Tensor], rows: list[Encoded], config: TrainConfig) -> torch.Tensor:
    if config.objective == "nll":
        return nll_loss(model, batch)
    labels = batch.pop("labels")
    out = model(**batch, output_hidden_states=config.distill_hidden > 0)
    logits = out.logits  # (B, T, V)
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                            ignore_index=-100)
    kl = _distill_loss(logits, rows)
    if kl is None:  # no row with a teacher (every sample showed its passage): NLL alone
        return nll
    if config.distill_hidden:
        kl = kl + config.distill_hidden * _hidden_loss(out.hidden_states[-1], rows)
    return kl if config.objective == "distill" else nll + kl


def _distill_loss(logits: torch.Tensor, rows: list[Encoded]) -> torch.Tensor | None:
    """Mean over answer tokens of KL(teacher top-k, renormalised ‖ student), for the rows that have a teacher."""
    terms = []
    for i, e in enumerate(rows):
        if e.teacher is None:
            continue
        t_logp, index = e.teacher  # (n, k)
        n = len(e.ids) - e.answer_from
        s_logp = torch.log_softmax(logits[i, e.answer_from - 1:e.answer_from - 1 + n].float(), -1)  # (n, V)
        p = torch.softmax(t_logp, -1)  # (n, k): the teacher's top-k mass renormalised
        terms.append((p * (p.clamp_min(1e-12).log() - s_logp.gather(-1, index))).sum(-1))  # (n,)
    return torch.cat(terms).mean() if terms else None


def _hidden_loss(hidden: torch.Tensor, rows: list[Encoded]) -> torch.Tensor:
    """Mean over answer tokens of 1 − cos(student's, teacher's last hidden state) at the positions predicting
    them, for the rows that have a teacher; hidden (B, T, d)."""
    terms = []
    for i, e in enumerate(rows):
        if e.teacher_hidden is not None:
            n = len(e.ids) - e.answer_from
            h = hidden[i, e.answer_from - 1:e.answer_from - 1 + n].float()  # (n, d)
            terms.append(1 - torch.nn.functional.cosine_similarity(h, e.teacher_hidden.to(h.device), dim=-1))
    return torch.cat(terms).mean()


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


def _save_checkpoint(run: _Run, epoch: int, history: list[dict], partial: dict | None = None) -> None:
    """Tensors in safetensors, counters in JSON; the whole folder replaced atomically. `epoch`: the epochs done;
    `partial`: how far the next one got (batches done, their losses and gradient norms, seconds), whose random
    state is saved with it."""
    with atomic.staged_dir(run.checkpoint_dir) as tmp:
        save_file(inventory_state(run.layers), tmp / "inventory.safetensors")
        save_file(run.routing.tensors(), tmp / "routing.safetensors")
        save_file(optimizer_tensors(run.opt), tmp / "optimizer.safetensors")
        if partial is not None:  # the routing's noise (CPU) and a GPU's dropout
            cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
            save_file({"torch": torch.get_rng_state(), **{f"cuda.{i}": s for i, s in enumerate(cuda)}},
                      tmp / "rng.safetensors")
        (tmp / "state.json").write_text(json.dumps({"epoch": epoch, "history": history, "partial": partial,
                                                    "config": asdict(run.config)}))


def _resume(run: _Run) -> tuple[int, list[dict], dict | None]:
    """The epochs a checkpoint holds, their history and how far the next one got (None: from its start)."""
    folder = run.checkpoint_dir
    if folder is not None and distributed.is_main():
        atomic.recover_dir(folder)
    distributed.barrier()  # the others read the checkpoint once it is whole
    if folder is None or not (folder / "state.json").exists():
        return 0, [], None
    state = json.loads((folder / "state.json").read_text())
    load_inventory_state(run.layers, load_file(folder / "inventory.safetensors"))
    run.routing.load_tensors(load_file(folder / "routing.safetensors"))
    load_optimizer_tensors(run.opt, load_file(folder / "optimizer.safetensors"))
    partial = state.get("partial")
    if partial:
        partial = {**partial, "rng": load_file(folder / "rng.safetensors")}
    log.info("resuming after epoch %d%s from %s", state["epoch"],
             f" and {partial['done']} batches of the next" if partial else "", folder)
    # marked, so that the build's time counts them: their seconds were spent by an earlier process
    return state["epoch"], [{**h, "resumed": True} for h in state["history"]], partial
