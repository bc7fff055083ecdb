"""The PRAG baseline: one PEFT LoRA per document, the retrieved documents' LoRAs summed at question time.

PRAG (Su et al. 2025): r=2, α=32 on the MLP projections, AdamW lr 3e-4, 1 epoch, batch 1, trained on the
same augmented samples as Poly-PRAG; at question time the top-k documents' adapters are combined with
PEFT's `add_weighted_adapter(..., combination_type="cat")` (weights 1: a sum of the k LoRA updates).
Adapters are saved one folder per document (PEFT's safetensors format) under `folder/<doc index>/`;
encoding skips documents whose folder already exists, so an interrupted run resumes: `folder/docs.json` names the
document each index was trained on and `prag_config.json` the settings, and a resume that disagrees is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import atomic
from ..errors import InputError
from ..lm.adapters import target_modules
from ..lm.answer import Answer, answer_questions
from ..lm.generate import GenerationConfig
from ..text.augment import Sample
from ..text.corpus import Document
from ..lm.models import LoadedModel
from ..method.loss import nll_loss
from ..method.train import collate, encode, width_multiple

log = logging.getLogger("polyprag")
SLOT = "encoding"  # the adapter being trained; each document's copy is saved from it


@dataclass(frozen=True)
class PragConfig:
    rank: int = 2
    alpha: float = 32.0
    targets: tuple[str, ...] = ("mlp",)
    lr: float = 3e-4
    epochs: int = 1
    seed: int = 0
    max_length: int = 384


class PragAdapters:
    """A base model wrapped by PEFT, able to train one document's LoRA and to answer with a sum of them."""

    def __init__(self, lm: LoadedModel, config: PragConfig, folder: str | Path, tally: str | Path | None = None):
        """`tally`: where the training seconds are counted (default FOLDER/timing.json; bench keeps it beside the
        answers it commits, so a resume on another machine, without these adapters, keeps counting)."""
        from peft import LoraConfig, get_peft_model  # ~2 s to import: only the PRAG baseline pays it

        self.lm, self.config, self.folder = lm, config, Path(folder)
        self.tally = Path(tally) if tally is not None else self.folder / "timing.json"
        if not self.tally.exists() and (self.folder / "timing.json").exists():  # where runs before 2026-12-05 kept it
            atomic.write_text(self.tally, (self.folder / "timing.json").read_text())
        suffixes = sorted({name.rsplit(".", 1)[-1] for name, _ in target_modules(lm.model, config.targets)})
        lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0, target_modules=suffixes)
        self.lora = lora
        self.model = get_peft_model(lm.model, lora, adapter_name=SLOT)
        self.model.eval()

    def doc_dir(self, doc: int) -> Path:
        return self.folder / str(doc)

    def encode(self, samples: list[Sample], docs: list[Document], progress: bool = True,
               only: set[int] | None = None) -> float:
        """Train and save the adapter of every document (samples' `doc` indexes `docs`; `only`: of these indices)
        not saved yet; returns training seconds per document, counted over every run that trained some of them
        (the tally file keeps them across resumes)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._check_resume(docs)
        by_doc: dict[int, list[Sample]] = {}
        for s in samples:
            by_doc.setdefault(s.doc, []).append(s)
        wanted = range(len(docs)) if only is None else sorted(only)
        todo = [d for d in wanted if not (self.doc_dir(d) / "adapter_model.safetensors").exists()]
        start = time.perf_counter()
        tally = json.loads(self.tally.read_text()) if self.tally.exists() else {"seconds": 0.0, "docs": 0}
        for doc in tqdm(todo, desc=f"PRAG adapters (lr {self.config.lr:g})", unit="doc", disable=not progress):
            self._train_one(doc, by_doc.get(doc, []))
            size = sum(f.stat().st_size for f in self.doc_dir(doc).iterdir())  # the same shapes for every document
            tally = {"seconds": tally["seconds"] + time.perf_counter() - start, "docs": tally["docs"] + 1,
                     "bytes_per_doc": size}
            start = time.perf_counter()
            atomic.write_text(self.tally, json.dumps(tally))
        return tally["seconds"] / max(tally["docs"], 1)

    def _check_resume(self, docs: list[Document]) -> None:
        """Saved adapters are reused by index: refuse a folder trained with other settings or on other documents
        (a changed data file or retrieval would otherwise attach old LoRAs to new documents without a word)."""
        config, keys = json.loads(json.dumps(asdict(self.config))), [doc_key(d) for d in docs]
        saved_config, saved_keys = self.folder / "prag_config.json", self.folder / "docs.json"
        if saved_config.exists() and {**config, **json.loads(saved_config.read_text())} != config:
            raise InputError(f"{self.folder} holds PRAG adapters trained with other settings ({saved_config.read_text()}, "
                             f"now {json.dumps(config)}); use another folder or delete it to retrain.")
        if not saved_keys.exists() and any(self.folder.glob("*/adapter_model.safetensors")):
            raise InputError(f"{self.folder} holds PRAG adapters without a record of their documents (docs.json, "
                             "kept since 2026-12-05); use another folder or delete it to retrain.")
        old = json.loads(saved_keys.read_text()) if saved_keys.exists() else []
        changed = [i for i, (a, b) in enumerate(zip(old, keys)) if a != b and self.doc_dir(i).exists()]
        if changed:
            raise InputError(f"{self.folder}: the adapters of document indices {changed[:5]} were trained on other "
                             "documents (the data or the retrieval changed); use another folder or delete it to retrain.")
        atomic.write_text(saved_config, json.dumps(config))
        atomic.write_text(saved_keys, json.dumps(keys + old[len(keys):]))

    def _train_one(self, doc: int, samples: list[Sample]) -> None:
        torch.manual_seed(self.config.seed * 100_003 + doc)
        for module in self.model.modules():  # fresh LoRA init for this document
            if hasattr(module, "reset_lora_parameters") and SLOT in getattr(module, "lora_A", {}):
                module.reset_lora_parameters(SLOT, True)
        params = [p for n, p in self.model.named_parameters() if f".{SLOT}." in n]
        opt = torch.optim.AdamW(params, lr=self.config.lr, weight_decay=0.0)
        encoded = [encode(self.lm.tokenizer, s, self.config.max_length) for s in samples]
        rng = random.Random(self.config.seed * 100_003 + doc)
        self.model.train()
        for _ in range(self.config.epochs):
            for e in rng.sample(encoded, len(encoded)):  # batch 1, as PRAG
                batch = collate([e], self.lm.tokenizer.pad_token_id, width_multiple(self.model))
                batch.pop("doc")
                loss = nll_loss(self.model, {k: v.to(self.model.device) for k, v in batch.items()})
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.model.eval()
        with atomic.staged_dir(self.doc_dir(doc)) as tmp:
            self.model.save_pretrained(tmp, selected_adapters=[SLOT])
            for f in (tmp / SLOT).iterdir():  # PEFT puts a named adapter in a subfolder
                f.rename(tmp / f.name)
            (tmp / SLOT).rmdir()

    def answer(self, questions: list[str], docs_per_question: list[list[int]], passages: list[list[str]] | None,
               generation: GenerationConfig, progress: bool = True, timings: list[float] | None = None) -> list[Answer]:
        """One question at a time: its documents' adapters loaded, summed ("cat"), generated, unloaded."""
        return self.answer_summed(questions, lambda i: [self.doc_dir(d) for d in docs_per_question[i]], passages,
                                  generation, progress, timings, "PRAG answering")

    def answer_summed(self, questions: list[str], loras: Callable[[int], list[Path | dict[str, torch.Tensor]]],
                      passages: list[list[str]] | None, generation: GenerationConfig, progress: bool = True,
                      timings: list[float] | None = None, desc: str = "answering") -> list[Answer]:
        """Question i answered with the sum of `loras(i)` (see `summed`); its latency includes making them."""
        answers = []
        for i in tqdm(range(len(questions)), desc=desc, unit="q", disable=not progress):
            start = time.perf_counter()
            with self.summed(loras(i)):
                ps = [passages[i]] if passages is not None else None
                answers += answer_questions(self.lm, [questions[i]], ps, generation, progress=False, shots=False)
            if timings is not None:
                timings.append(time.perf_counter() - start)
        return answers

    @contextmanager
    def _merged(self, docs: list[int]):
        """Within the block the model answers with the sum of these documents' adapters (none: the base model)."""
        with self.summed([self.doc_dir(d) for d in docs]):
            yield

    @contextmanager
    def summed(self, loras: list[Path | dict[str, torch.Tensor]]):
        """Within the block the model answers with the sum of these LoRAs: saved adapter folders, or state dicts
        in PEFT's saved keys (DyPRAG's translated LoRAs). None: the base model."""
        if not loras:
            with self.model.disable_adapter():
                yield
            return
        names = [f"doc{i}" for i in range(len(loras))]
        for name, lora in zip(names, loras):
            if isinstance(lora, dict):
                from peft import set_peft_model_state_dict  # imported with PragAdapters already

                self.model.add_adapter(name, self.lora)
                set_peft_model_state_dict(self.model, lora, adapter_name=name)
            else:
                self.model.load_adapter(str(lora), adapter_name=name, is_trainable=False)
        self.model.add_weighted_adapter(names, [1.0] * len(names), "merged", combination_type="cat")
        self.model.set_adapter("merged")
        try:
            yield
        finally:
            self.model.set_adapter(SLOT)
            for name in [*names, "merged"]:
                self.model.delete_adapter(name)

    def storage_bytes(self, n_docs: int) -> int:
        """What `n_docs` adapters take (every one has the same shapes): from the tally, since a run resumed on
        another machine may hold only the adapters it trained itself."""
        tally = json.loads(self.tally.read_text()) if self.tally.exists() else {}
        if "bytes_per_doc" in tally:
            return tally["bytes_per_doc"] * n_docs
        return sum(f.stat().st_size for d in range(n_docs) for f in self.doc_dir(d).iterdir())


def doc_key(doc: Document) -> str:
    """The document an adapter was trained on: its id and a hash of its title and text."""
    return f"{doc.id}:{hashlib.sha256(json.dumps([doc.title, doc.text]).encode()).hexdigest()[:16]}"
