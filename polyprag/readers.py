"""Readers: one object per answering mode, and the one registry that `eval`, `bench`, `serve` and `ask` use.

A reader answers questions from their hits: the base model alone (closed-book with the reader's example
exchanges; closed-book-bare asked as the parametric methods ask), with the hits' passages in the prompt
(rag; rag-gold, whose hits are the questions' gold paragraphs), with a knowledge base's mixed adapters
(poly, poly-combine, poly-uniform), with PRAG's per-document adapters (prag, prag-combine), or with LoRAs a
translator makes from the documents (dyprag, dyprag-combine). What each
mode needs is written once, in MODES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .answer import Answer, answer_questions
from .corpus import Document
from .datasets import Question
from .errors import InputError
from .generate import GenerationConfig
from .dyprag import Dyprag
from .kb import POLY_MODES, KnowledgeBase
from .models import LoadedModel
from .prag import PragAdapters
from .retrieve import Hit, passages


@dataclass(frozen=True)
class Mode:
    name: str
    needs: str  # "model" (the base model), "kb" (a knowledge base), "prag" (PRAG's adapters) or "dyprag" (a translator)
    passages: bool  # the hits' passages go into the prompt
    about: str
    served: bool = False  # `ask`, the HTTP service and the demo offer it (a KB and its base model are enough)


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("closed-book", "model", False, "the question alone, after the reader's example exchanges", served=True),
    Mode("closed-book-bare", "model", False, "asked as the parametric modes ask (no examples), no adapter"),
    Mode("rag", "model", True, "the top-k passages in the prompt", served=True),
    Mode("rag-gold", "model", True, "the question's gold paragraphs in the prompt: the reader's upper bound"),
    *(Mode(name, "kb", name == "poly-combine", about, served=True) for name, about in zip(POLY_MODES, (
        "the adapters mixed by the mean of the retrieved documents' routing weights",
        "poly, with the passages in the prompt too",
        "every adapter weighted alike: what routing adds is poly minus this"))),
    Mode("prag", "prag", False, "the sum of the retrieved documents' own LoRAs (PRAG)"),
    Mode("prag-combine", "prag", True, "prag, with the passages in the prompt too"),
    Mode("dyprag", "dyprag", False, "the sum of LoRAs a trained translator makes from the retrieved documents (DyPRAG)"),
    Mode("dyprag-combine", "dyprag", True, "dyprag, with the passages in the prompt too"),
)}
# the modes a knowledge base answers in: `ask`, the service (GET /v1/modes, the web page), the demo, the load test
SERVED = tuple(name for name, m in MODES.items() if m.served)


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
                                shots=self.mode.name != "closed-book-bare")


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
    if mode.needs == "prag":
        if prag is None:
            raise InputError(f"mode {name} needs PRAG's per-document adapters (`polyprag bench` trains them).")
        return PragReader(prag, list(docs), mode)
    if mode.needs == "dyprag":
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
