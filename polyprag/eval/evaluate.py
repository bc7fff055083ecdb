"""Run answering modes over a question set and score them (EM, F1, accuracy, recall@k, latency)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..lm.answer import Answer
from ..lm.generate import GenerationConfig
from ..text.corpus import Document
from ..text.datasets import Question
from ..errors import InputError
from ..kb.knowledge import KnowledgeBase
from .metrics import Scores, mean_scores, score
from ..lm.models import LoadedModel
from ..modes import EVAL_DEFAULT, MODES as READER_MODES
from ..readers import gold_hits, reader
from ..text.retrieve import TOP_K, BM25Index

log = logging.getLogger("polyprag")

# PRAG's adapters and DyPRAG's translator are trained by `bench` only
MODES = tuple(name for name, m in READER_MODES.items() if m.needs in ("model", "kb"))


@cache
def code_version() -> dict:
    """The code a result came from: polyprag's version and, in a git checkout, the commit, the package folder's
    tree and pyproject.toml's blob at it (the same across commits that change only docs or benchmarks; the
    dependency pins count) and whether the package's files differed from it (rows computed by different code must
    not be averaged unawares)."""
    try:
        __version__ = version("polyprag")
    except PackageNotFoundError:  # the source tree on sys.path, not installed
        __version__ = None
    package = Path(__file__).resolve().parents[1]  # polyprag/, above this sub-package
    try:
        commit = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        tree = "+".join(subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD:./", "HEAD:../pyproject.toml"],
                                       capture_output=True, text=True, timeout=10, check=True).stdout.split())
        changed = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--", "."], capture_output=True,
                                 text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # an installed wheel, or no git: the version says it
        return {"polyprag": __version__, "commit": None, "tree": None, "dirty": None}
    return {"polyprag": __version__, "commit": commit, "tree": tree, "dirty": bool(changed)}


@dataclass(frozen=True)
class EvalConfig:
    modes: tuple[str, ...] = EVAL_DEFAULT
    k: int = TOP_K
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self):
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise InputError(f"unknown mode(s) {bad}; choose from {list(MODES)}.")
        if self.k < 1:
            raise InputError(f"k = {self.k} is invalid: retrieve at least 1 passage.")


@dataclass
class EvalResult:
    config: dict
    rows: list[dict]
    predictions: dict[str, list[dict]]

    def to_json(self) -> dict:
        return {"config": self.config, "rows": self.rows, "predictions": self.predictions}


def recall_at_k(gold: list[str], retrieved: list[str]) -> float:
    return len(set(gold) & set(retrieved)) / len(set(gold))


def evaluate(lm: LoadedModel, questions: list[Question], docs: list[Document], config: EvalConfig,
             progress: bool = True, kb: KnowledgeBase | None = None) -> EvalResult:
    """Every mode over the same retrieval; with `kb`, retrieval runs over the KB's own documents."""
    docs = kb.docs if kb else docs
    readers = {mode: reader(mode, lm, docs, kb) for mode in config.modes}  # a missing KB fails before any work
    texts = [q.question for q in questions]
    hits = (kb.index if kb else BM25Index.build(docs)).search(texts, k=config.k)
    retrieved = [[h.doc_id for h in hs] for hs in hits]
    rows, predictions = [], {}
    for mode, read in readers.items():
        timings: list[float] = []
        start = time.perf_counter()
        answers = read.answer(texts, gold_hits(questions) if READER_MODES[mode].gold else hits, config.generation,
                           progress, timings)
        seconds = time.perf_counter() - start
        rows.append(score_row(mode, questions, answers, retrieved, timings, seconds))
        predictions[mode] = [prediction(q, a, r) for q, a, r in zip(questions, answers, retrieved)]
        log.info("%s: F1 %.1f in %.0f s", mode, rows[-1]["f1"], seconds)
    cfg = {"model": lm.spec, "model_path": lm.path, "k": config.k, "modes": list(config.modes),
           "n_questions": len(questions), "n_docs": len(docs), **asdict(config.generation)}
    return EvalResult(cfg, rows, predictions)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def score_row(mode: str, questions: list[Question], answers: list[Answer], retrieved: list[list[str]],
              timings: list[float], seconds: float) -> dict:
    """One table row: EM/F1/acc (ours and PRAG's cut), recall@k, per-question latency p50/p95, throughput."""
    ours = mean_scores([score(a.answer, q.answers) for q, a in zip(questions, answers)])
    prag = mean_scores([score(a.answer_prag, q.answers) for q, a in zip(questions, answers)])
    with_gold = [(q, r) for q, r in zip(questions, retrieved) if q.gold_doc_ids]
    recall = statistics.fmean(recall_at_k(q.gold_doc_ids, r) for q, r in with_gold) if with_gold else None
    return {"method": mode, "n": len(questions), **_pct(ours), "em_prag": round(100 * prag.em, 3),
            "f1_prag": round(100 * prag.f1, 3), "recall_at_k": None if recall is None else round(recall, 4),
            "latency_p50_s": round(statistics.median(timings), 3), "latency_p95_s": round(percentile(timings, 95), 3),
            "seconds_per_question": round(seconds / len(questions), 3)}


def _pct(s: Scores) -> dict:
    # 3 decimals: reports print 1, and a mean of rows stored to 2 would round twice (20.253 -> 20.25 -> 20.2)
    return {"em": round(100 * s.em, 3), "f1": round(100 * s.f1, 3), "acc": round(100 * s.acc, 3)}


def prediction(q: Question, a: Answer, retrieved: list[str]) -> dict:
    return {"id": q.id, "question": q.question, "answers": q.answers, "prediction": a.answer,
            "prediction_prag": a.answer_prag, "raw": a.raw, "retrieved": retrieved, "qtype": q.qtype}


def data_fingerprint(questions: list[Question], corpus: list[Document]) -> str:
    """A hash of what a run reads (questions, answers, documents): a resume must read the same."""
    parts = [(q.id, q.question, q.answers) for q in questions] + [(d.id, d.title, d.text) for d in corpus]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:16]
