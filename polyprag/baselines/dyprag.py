"""The DyPRAG baseline: a parameter translator that turns a document into a LoRA in one forward pass.

DyPRAG (Tan et al. 2025, "Dynamic Parametric RAG"; code: Trae1ounG/DyPRAG, src/projector.py and
src/train_dyprag.py). A document's embedding is the frozen base model's last-layer hidden state at the
document's last token. For every module PRAG adapts, in every layer, a small MLP (embedding ⊕ layer index
→ 32 hidden units, ReLU → the LoRA's A; a second one → its B; weights drawn from N(0, 1e-7)) emits that
module's rank-r LoRA at PRAG's rank, α and targets. It learns from PRAG adapters of documents that are
*not* evaluated: next-token loss of the translated LoRA on the document's augmented samples
+ 0.01 × KL(PRAG-adapted model ‖ translated) + 100 × Σ MSE(translated A and B, PRAG's A and B); AdamW,
lr 1e-5, one epoch (DyPRAG's defaults: `DypragConfig`). Where polyprag differs, and why:
- the translated LoRA is applied with PEFT's scaling α/r, exactly like PRAG's adapters (their code adds
  B·A unscaled while matching A and B to PRAG's, which PRAG uses scaled);
- one step per document over all of its samples, averaged (theirs: one step on the first sample of each
  passage); the KL is summed over a sample's loss tokens (theirs: over every padded position);
- the top-k documents' LoRAs are summed as PRAG sums them (theirs: the mean of the A's and of the B's),
  so dyprag and prag differ only in where the LoRA comes from.
The translator is saved as safetensors + JSON and reused by later runs.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .. import atomic
from ..lm.answer import Answer
from ..text.augment import Sample
from ..text.corpus import Document
from ..errors import InputError
from ..lm.generate import GenerationConfig
from .prag import SLOT, PragAdapters
from ..method.checkpoint import load_optimizer_tensors, optimizer_tensors
from ..method.train import collate, encode, width_multiple

log = logging.getLogger("polyprag")
FILES = ("translator.safetensors", "translator.json")
LOSSES = ("loss", "ce", "kl", "mse")
# A long epoch (~50 min over 300 paragraphs with Gemma) is saved part way, so that a restart loses at most this
CHECKPOINT_EVERY_S = 600.0


@dataclass(frozen=True)
class DypragConfig:
    hidden: int = 32  # DyPRAG's projector_p
    lr: float = 1e-5  # DyPRAG's dyprag_learning_rate
    epochs: int = 1  # DyPRAG's dyprag_train_epochs in its README
    kl_weight: float = 0.01
    mse_weight: float = 100.0
    init_std: float = 1e-7
    seed: int = 0
    max_length: int = 384  # tokens of a training sample, as PRAG's
    doc_tokens: int = 512  # tokens of the document read for its embedding

    def __post_init__(self):
        if self.hidden < 1 or self.epochs < 1 or not self.lr > 0:
            raise InputError(f"DyPRAG translator: hidden {self.hidden} and epochs {self.epochs} must be >= 1 and "
                             f"lr {self.lr} > 0; fix --dyprag-epochs / --dyprag-lr.")


@dataclass(frozen=True)
class Target:
    """One module PRAG adapts: where its LoRA goes (PEFT's saved key prefix) and its shapes."""

    key: str  # e.g. base_model.model.model.layers.3.mlp.up_proj
    layer: int
    d_in: int
    d_out: int


def targets(prag: PragAdapters) -> list[Target]:
    """The LoRA-carrying modules of PRAG's PEFT model, in model order."""
    found = []
    for name, m in prag.model.named_modules():
        if isinstance(getattr(m, "lora_A", None), nn.ModuleDict) and SLOT in m.lora_A:
            layer = re.search(r"\.(\d+)\.", name)
            found.append(Target(name, int(layer.group(1)) if layer else 0, m.in_features, m.out_features))
    return found


class Head(nn.Module):
    """One module's LoRA from a document embedding: an MLP for A (r, d_in) and one for B (d_out, r)."""

    def __init__(self, d: int, hidden: int, rank: int, target: Target, std: float, gen: torch.Generator):
        super().__init__()
        self.rank, self.target = rank, target
        self.a = nn.Sequential(nn.Linear(d + 1, hidden, bias=False), nn.ReLU(),
                               nn.Linear(hidden, rank * target.d_in, bias=False))
        self.b = nn.Sequential(nn.Linear(d + 1, hidden, bias=False), nn.ReLU(),
                               nn.Linear(hidden, target.d_out * rank, bias=False))
        for p in self.parameters():
            nn.init.normal_(p, 0.0, std, generator=gen)

    def forward(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # e: (d,)
        x = torch.cat([e, e.new_tensor([float(self.target.layer)])])  # (d + 1,): DyPRAG feeds the layer index
        return self.a(x).view(self.rank, self.target.d_in), self.b(x).view(self.target.d_out, self.rank)


class Translator(nn.Module):
    """Document embedding (d,) → a PEFT LoRA state dict ({key}.lora_A.weight (r, d_in), {key}.lora_B.weight)."""

    def __init__(self, d: int, rank: int, found: list[Target], config: DypragConfig):
        super().__init__()
        self.d, self.rank, self.config = d, rank, config
        gen = torch.Generator().manual_seed(config.seed)  # torch's own seed differs in every process
        self.heads = nn.ModuleList(Head(d, config.hidden, rank, t, config.init_std, gen) for t in found)

    def forward(self, e: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        for head in self.heads:
            a, b = head(e)
            out[f"{head.target.key}.lora_A.weight"], out[f"{head.target.key}.lora_B.weight"] = a, b
        return out

    def save(self, folder: str | Path) -> None:
        meta = {"config": asdict(self.config), "d": self.d, "rank": self.rank,
                "targets": [asdict(h.target) for h in self.heads]}
        with atomic.staged_dir(Path(folder)) as tmp:
            save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, tmp / FILES[0])
            (tmp / FILES[1]).write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> Translator:
        folder = Path(folder)
        meta = json.loads((folder / FILES[1]).read_text())
        found = [Target(**t) for t in meta["targets"]]
        translator = cls(meta["d"], meta["rank"], found, DypragConfig(**meta["config"]))
        translator.load_state_dict(load_file(folder / FILES[0]))
        return translator.eval()


def as_params(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A LoRA in PEFT's saved keys → the names of PRAG's trainable slot, for `torch.func.functional_call`."""
    return {re.sub(r"\.lora_([AB])\.weight$", rf".lora_\1.{SLOT}.weight", k): v for k, v in lora.items()}


class Dyprag:
    """PRAG's PEFT model plus a translator: trains the translator, and answers with translated LoRAs."""

    def __init__(self, prag: PragAdapters, config: DypragConfig, translator: Translator | None = None):
        self.prag, self.config, self.lm = prag, config, prag.lm
        self.translator = translator or Translator(self.lm.model.config.hidden_size, prag.config.rank, targets(prag),
                                                   config)

    @torch.no_grad()
    def embed(self, doc: Document) -> torch.Tensor:
        """(d,) the base model's last hidden state at the document's last token (adapters off)."""
        ids = self.lm.tokenizer(doc.content(), return_tensors="pt", truncation=True,
                                max_length=self.config.doc_tokens).input_ids.to(self.lm.model.device)
        with self.prag.model.disable_adapter():
            hidden = self.prag.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]  # (1, T, d)
        return hidden[0, -1].float().cpu()

    @torch.no_grad()
    def lora(self, doc: Document) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.translator(self.embed(doc)).items()}

    def train(self, docs: list[Document], samples: list[Sample], progress: bool = True,
              checkpoint: Path | None = None, every_s: float = CHECKPOINT_EVERY_S) -> list[dict]:
        """One step per document per epoch, on PRAG adapters already saved for `docs` (prag.encode first).
        Returns each epoch's mean losses and seconds ("seconds_before": those an earlier process spent on it).
        `checkpoint`: a folder written every `every_s` seconds and after every epoch, from which an interrupted
        training resumes where it was (the translator, its optimizer, the epoch's order and the random state);
        the caller deletes it once the translator is saved."""
        by_doc: dict[int, list[Sample]] = {}
        for s in samples:
            by_doc.setdefault(s.doc, []).append(s)
        order = [d for d in range(len(docs)) if by_doc.get(d)]
        missing = [d for d in order if not (self.prag.doc_dir(d) / "adapter_model.safetensors").exists()]
        if missing:
            raise InputError(f"DyPRAG needs PRAG adapters of its training documents; {len(missing)} are missing "
                             f"(e.g. {self.prag.doc_dir(missing[0])}): run PragAdapters.encode on them first.")
        embeddings = {d: self.embed(docs[d]) for d in tqdm(order, desc="DyPRAG embeddings", disable=not progress)}
        torch.manual_seed(self.config.seed)
        rng = random.Random(self.config.seed)
        opt = torch.optim.AdamW(self.translator.parameters(), lr=self.config.lr)
        history, partial = self._resume(checkpoint, opt, rng)
        for epoch in range(len(history), self.config.epochs):
            # the epoch's order and how far it got: a checkpoint's, else a fresh shuffle
            shuffled, done, totals, before = partial or (rng.sample(order, len(order)), 0, dict.fromkeys(LOSSES, 0.0), 0.0)
            partial, start, saved = None, time.perf_counter(), time.monotonic()
            for i in tqdm(range(done, len(shuffled)), desc=f"DyPRAG translator, epoch {epoch + 1}", unit="doc",
                          initial=done, total=len(shuffled), disable=not progress):
                d = shuffled[i]
                parts = self._step(embeddings[d], by_doc[d], load_file(self.prag.doc_dir(d) / "adapter_model.safetensors"),
                                   opt)
                for k, v in parts.items():
                    totals[k] += v / len(order)
                if checkpoint is not None and time.monotonic() - saved > every_s and i + 1 < len(shuffled):
                    spent = before + time.perf_counter() - start
                    self._save(checkpoint, opt, rng, history, {"order": shuffled, "done": i + 1, "totals": totals,
                                                               "seconds": spent})
                    saved = time.monotonic()
            history.append({"epoch": epoch + 1, **{k: round(v, 6) for k, v in totals.items()},
                            "seconds": round(before + time.perf_counter() - start, 3),
                            "seconds_before": round(before, 3)})
            log.info("DyPRAG translator epoch %d: %s", epoch + 1, history[-1])
            if checkpoint is not None and epoch + 1 < self.config.epochs:
                self._save(checkpoint, opt, rng, history, None)
        self.translator.eval()
        return history

    def _save(self, checkpoint: Path, opt: torch.optim.Optimizer, rng: random.Random, history: list[dict],
              partial: dict | None) -> None:
        with atomic.staged_dir(checkpoint) as tmp:
            self.translator.save(tmp / "translator")
            save_file(optimizer_tensors(opt), tmp / "optimizer.safetensors")
            (tmp / "state.json").write_text(json.dumps({"history": history, "rng": rng.getstate(), "partial": partial}))

    def _resume(self, checkpoint: Path | None, opt: torch.optim.Optimizer,
                rng: random.Random) -> tuple[list[dict], tuple | None]:
        """The epochs a checkpoint holds (marked resumed: an earlier process spent their seconds) and the epoch it
        was in (its order, documents done, loss totals, seconds spent), the translator, optimizer and random state
        put back; nothing without one."""
        if checkpoint is None:
            return [], None
        atomic.recover_dir(checkpoint)
        if not (checkpoint / "state.json").exists():
            return [], None
        state, saved = json.loads((checkpoint / "state.json").read_text()), Translator.load(checkpoint / "translator")
        if saved.config != self.config:
            raise InputError(f"{checkpoint} holds a translator training with other settings ({asdict(saved.config)}, "
                             f"now {asdict(self.config)}); delete it to start over.")
        self.translator.load_state_dict(saved.state_dict())
        load_optimizer_tensors(opt, load_file(checkpoint / "optimizer.safetensors"))
        version, internal, gauss = state["rng"]
        rng.setstate((version, tuple(internal), gauss))
        p = state.get("partial")
        log.info("DyPRAG translator: resuming from %s (%d epochs done%s)", checkpoint, len(state["history"]),
                 f", {p['done']} documents into the next" if p else "")
        history = [{**h, "resumed": True, "seconds_before": h["seconds"]} for h in state["history"]]
        return history, (p["order"], p["done"], p["totals"], p["seconds"]) if p else None

    def _step(self, e: torch.Tensor, samples: list[Sample], target: dict[str, torch.Tensor],
              opt: torch.optim.Optimizer) -> dict[str, float]:
        """One optimizer step on one document: its samples one at a time (the logits of a 262k-token vocabulary
        over a few samples would not fit), their losses averaged, gradients summed into the translator."""
        self.translator.train()
        opt.zero_grad(set_to_none=True)
        lora = self.translator(e.to(self.lm.model.device))
        params, fixed = as_params(lora), as_params(target)
        ce = kl = 0.0
        for sample in samples:
            part_ce, part_kl = self._sample_losses(sample, params, fixed)
            ((part_ce + self.config.kl_weight * part_kl) / len(samples)).backward(retain_graph=True)
            ce, kl = ce + part_ce.item() / len(samples), kl + part_kl.item() / len(samples)
        mse = sum(nn.functional.mse_loss(v, target[k].to(v)) for k, v in lora.items())
        (self.config.mse_weight * mse).backward()
        opt.step()
        return {"loss": ce + self.config.kl_weight * kl + self.config.mse_weight * mse.item(), "ce": ce, "kl": kl,
                "mse": mse.item()}

    def _sample_losses(self, sample: Sample, params: dict[str, torch.Tensor],
                       fixed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The translated LoRA's next-token loss on one sample, and KL(PRAG-adapted ‖ translated) summed over
        its loss positions."""
        model = self.prag.model
        batch = collate([encode(self.lm.tokenizer, sample, self.config.max_length)], self.lm.tokenizer.pad_token_id,
                        width_multiple(model))
        batch = {k: v.to(model.device) for k, v in batch.items() if k != "doc"}
        mask = batch["labels"][:, 1:] != -100  # (1, T-1): the positions whose next token is in the loss
        with torch.no_grad():
            teacher = torch.func.functional_call(model, fixed, args=(), kwargs=batch).logits[:, :-1][mask]
            log_t = torch.log_softmax(teacher.float(), -1)  # (n, V)
        out = torch.func.functional_call(model, params, args=(), kwargs=batch)
        log_s = torch.log_softmax(out.logits[:, :-1][mask].float(), -1)  # (n, V)
        return out.loss, (log_t.exp() * (log_t - log_s)).sum()

    def answer(self, questions: list[str], docs_per_question: list[list[Document]], passages: list[list[str]] | None,
               generation: GenerationConfig, progress: bool = True, timings: list[float] | None = None) -> list[Answer]:
        """One question at a time: its documents read and translated, their LoRAs summed (as PRAG's), generated.
        The latency includes the translation: DyPRAG stores nothing per document."""
        return self.prag.answer_summed(questions, lambda i: [self.lora(d) for d in docs_per_question[i]], passages,
                                       generation, progress, timings, "DyPRAG answering")

    def storage_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.translator.parameters())
