"""Readers: one object per answering mode (`modes.MODES`), used by `eval`, `bench`, `serve` and `ask`.

A reader answers questions from their hits: the base model alone (closed-book with the reader's example
exchanges; closed-book-bare asked as the parametric methods ask), with the hits' passages in the prompt
(rag; rag-gold, whose hits are the questions' gold paragraphs), with a knowledge base's mixed adapters
(poly, poly-combine, poly-uniform), with PRAG's per-document adapters (prag, prag-combine), or with LoRAs a
translator makes from the documents (dyprag, dyprag-combine). What each
mode needs is written once, in `modes.MODES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .lm.answer import Answer, answer_questions
from .text.corpus import Document
from .text.datasets import Question
from .errors import InputError
from .lm.generate import GenerationConfig
from .baselines.dyprag import Dyprag
from .kb.knowledge import KnowledgeBase
from .lm.models import LoadedModel
from .modes import MODES, Mode
from .baselines.prag import PragAdapters
from .text.retrieve import Hit, passages


class Reader(Protocol):
    def answer(self, questions: list[str], hits: list[list[Hit]], generation: GenerationConfig,
               progress: bool = True, timings: list[float] | None = None) -> list[Answer]: ...


@dataclass
class ModelReader:
    lm: LoadedModel
    docs: dict[str, Document]
    mode: Mode

    def answer(self, questions, hits, generation, progress=True, timings=None) -> list[Answer]:
        ps = passages(hits, self.docs) if self.mode.passages else None
        return answer_questions(self.lm, questions, ps, generation, progress=progress, timings=timings,
                                shots=self.mode.shots)


@dataclass
class KBReader:
    kb: KnowledgeBase
    mode: Mode

    def answer(self, questions, hits, generation, progress=True, timings=None) -> list[Answer]:
        return self.kb.answer(questions, self.mode.name, generation=generation, progress=progress, timings=timings,
                              hits=hits)


@dataclass
class PragReader:
    adapters: PragAdapters
    docs: list[Document]  # the documents the adapters were trained for, in adapter order
    mode: Mode

    def answer(self, questions, hits, generation, progress=True, timings=None) -> list[Answer]:
        row = {d.id: i for i, d in enumerate(self.docs)}
        ps = passages(hits, {d.id: d for d in self.docs}) if self.mode.passages else None
        return self.adapters.answer(questions, [[row[h.doc_id] for h in hs] for hs in hits], ps, generation,
                                    progress, timings)


@dataclass
class DypragReader:
    dyprag: Dyprag
    docs: dict[str, Document]
    mode: Mode

    def answer(self, questions, hits, generation, progress=True, timings=None) -> list[Answer]:
        ps = passages(hits, self.docs) if self.mode.passages else None
        return self.dyprag.answer(questions, [[self.docs[h.doc_id] for h in hs] for hs in hits], ps, generation,
                                  progress, timings)


def reader(name: str, lm: LoadedModel | None = None, docs: list[Document] = (), kb: KnowledgeBase | None = None,
           prag: PragAdapters | None = None, dyprag: Dyprag | None = None) -> Reader:
    """The reader for mode `name`: `lm` and `docs` (the passages' source) for the base-model modes, `kb` for
    the poly modes, `prag` and `docs` (in adapter order) for PRAG's, `dyprag` and `docs` for DyPRAG's."""
    mode = MODES.get(name)
    if mode is None:
        raise InputError(f"unknown mode {name!r}; choose from {list(MODES)}.")
    if mode.needs == "kb":
        if kb is None:
            raise InputError(f"mode {name} needs a knowledge base: pass --kb KB (build one with `polyprag build`).")
        return KBReader(kb, mode)
    if mode.needs == "lora":
        if prag is None:
            raise InputError(f"mode {name} needs PRAG's per-document adapters (`polyprag bench` trains them).")
        return PragReader(prag, list(docs), mode)
    if mode.needs == "translator":
        if dyprag is None:
            raise InputError(f"mode {name} needs a trained DyPRAG translator (`polyprag bench` trains one).")
        return DypragReader(dyprag, {d.id: d for d in docs}, mode)
    return ModelReader(lm, {d.id: d for d in docs}, mode)


def gold_hits(questions: list[Question]) -> list[list[Hit]]:
    """rag-gold's hits: each question's gold paragraphs."""
    missing = [q.id for q in questions if not q.gold_doc_ids]
    if missing:
        raise InputError(f"mode rag-gold needs gold paragraphs (gold_doc_ids) for every question; "
                         f"{missing[:5]} have none.")
    return [[Hit(d, 1.0) for d in q.gold_doc_ids] for q in questions]
