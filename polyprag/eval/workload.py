"""What every method of a bench run shares: the questions, the documents encoded and each question's top-k."""

from __future__ import annotations

from dataclasses import dataclass

from ..text.corpus import Document
from ..text.datasets import Question
from ..text.retrieve import BM25Index, Hit


@dataclass
class Workload:
    """What every method shares: the questions, the encoded documents and each question's top-k."""

    questions: list[Question]
    docs: list[Document]  # the documents encoded
    hits: list[list[Hit]]
    corpus: list[Document]  # the whole closed corpus (gold paragraphs may lie outside `docs`)

    @property
    def texts(self) -> list[str]:
        return [q.question for q in self.questions]

    @property
    def retrieved(self) -> list[list[str]]:
        return [[h.doc_id for h in hs] for hs in self.hits]


def workload(questions: list[Question], corpus: list[Document], mode: str, k: int) -> Workload:
    """BM25 over the whole closed corpus; per-question mode then keeps only the paragraphs retrieved."""
    hits = BM25Index.build(corpus).search([q.question for q in questions], k=k)
    if mode == "closed":
        return Workload(questions, corpus, hits, corpus)
    wanted = {h.doc_id for hs in hits for h in hs}
    return Workload(questions, [d for d in corpus if d.id in wanted], hits, corpus)
