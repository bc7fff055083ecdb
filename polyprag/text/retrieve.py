"""BM25 over title + text (bm25s), saved as .npy + JSON — no pickle."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from .. import atomic
from .corpus import Document
from ..errors import InputError

IDS_FILE = "doc_ids.json"
MAX_K = 100  # documents mixed into the adapters or put into the prompt per question
TOP_K = 3  # documents retrieved per question by default: PRAG's k


@dataclass(frozen=True)
class Hit:
    doc_id: str
    score: float


def passages(hits: list[list[Hit]], docs: dict[str, Document]) -> list[list[str]]:
    """Each question's retrieved documents as prompt passages (title and text), in hit order."""
    return [[docs[h.doc_id].content() for h in hs] for hs in hits]


def tokenize(texts: list[str]) -> list[list[str]]:
    """Lower-cased word tokens (scikit-learn pattern) without English stopwords; shared by docs and queries."""
    return bm25s.tokenize(texts, stopwords="en", return_ids=False, show_progress=False)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best positive scores, best first, ties to the lower index: a full stable argsort's
    first k, without the zeros. Only documents sharing a word with the query score above zero, so the
    partition runs over those (partitioning 1M scores that are mostly tied zeros costs ~100 ms per query)."""
    hit = np.flatnonzero(scores > 0)  # ascending indices: ties keep their order below
    values = scores[hit]
    if k < len(hit):
        kth = np.partition(values, len(values) - k)[len(values) - k]  # the k-th largest value
        keep = values >= kth
        hit, values = hit[keep], values[keep]
    return hit[np.argsort(-values, kind="stable")][:k]


class BM25Index:
    def __init__(self, retriever: bm25s.BM25, doc_ids: list[str]):
        self.retriever = retriever
        self.doc_ids = doc_ids

    @classmethod
    def build(cls, docs: list[Document], k1: float = 1.5, b: float = 0.75) -> BM25Index:
        if not docs:
            raise InputError("cannot build a BM25 index over an empty corpus; pass at least one document.")
        retriever = bm25s.BM25(method="lucene", k1=k1, b=b)
        retriever.index(tokenize([d.content() for d in docs]), show_progress=False)
        return cls(retriever, [d.id for d in docs])

    def search(self, queries: list[str], k: int = TOP_K) -> list[list[Hit]]:
        """Top-k documents per query, best first; queries with no known word get no hits."""
        if not 1 <= k <= MAX_K:
            raise InputError(f"k = {k} is out of range: retrieve 1 to {MAX_K} documents per question (default 3).")
        k = min(k, len(self.doc_ids))
        return [self._search_one(tokens, k) for tokens in tokenize(queries)]

    def _search_one(self, tokens: list[str], k: int) -> list[Hit]:
        known = [t for t in tokens if t in self.retriever.vocab_dict]
        if not known:
            return []
        scores = self.retriever.get_scores(known)  # (N,)
        return [Hit(self.doc_ids[i], float(scores[i])) for i in top_k(scores, k)]

    def save(self, folder: str | Path) -> None:
        with atomic.staged_dir(folder) as tmp:
            self.retriever.save(str(tmp), allow_pickle=False)
            (tmp / IDS_FILE).write_text(json.dumps(self.doc_ids, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> BM25Index:
        folder = Path(folder)
        if not (folder / IDS_FILE).exists():
            raise InputError(f"{folder} is not a polyprag BM25 index ({IDS_FILE} missing); rebuild it.")
        retriever = bm25s.BM25.load(str(folder), allow_pickle=False)
        return cls(retriever, json.loads((folder / IDS_FILE).read_text(encoding="utf-8")))


def shuffled_hits(hits: list[list[Hit]], doc_ids: list[str], seed: int) -> list[list[Hit]]:
    """Each question's hits with every document replaced by one drawn (seeded, without repeats within the
    question) from the encoded documents it did not retrieve; the order and scores stay."""
    rng = random.Random(seed)
    out = []
    for hs in hits:
        own = {h.doc_id for h in hs}
        others = [d for d in doc_ids if d not in own]
        drawn = rng.sample(others, min(len(hs), len(others)))
        out.append([Hit(d, h.score) for d, h in zip(drawn, hs)])
    return out
