"""QA metrics as PRAG computes them (SQuAD / HotpotQA official rules).

The metric functions reproduce PRAG's `BaseDataset` scoring so that numbers are comparable
with the paper (answer extraction, upstream of scoring, is in `lm.extract`).
Scores are fractions in [0, 1]; callers scale them for display.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

from polyprag.errors import InputError

__all__ = [
    "Scores",
    "accuracy",
    "exact_match",
    "f1_score",
    "mean_scores",
    "normalize_answer",
    "score",
]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# HotpotQA: a yes/no/noanswer answer is all-or-nothing, never partial token credit.
_SPECIAL_ANSWERS = frozenset({"yes", "no", "noanswer"})


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower -> remove punctuation -> remove articles -> collapse spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _check_golds(prediction: str, golds: list[str]) -> None:
    # A bare string would be iterated character by character and score silently wrong.
    if isinstance(golds, str):
        raise TypeError(
            f"golds for prediction {prediction!r} must be a list of strings, got the string "
            f"{golds!r}; wrap it as [{golds!r}]"
        )
    if len(golds) == 0:
        raise InputError(
            f"no gold answers for prediction {prediction!r}: every question needs at least "
            "one gold answer to be scored"
        )


def exact_match(prediction: str, golds: list[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold alias, else 0.0."""
    _check_golds(prediction, golds)
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(g) for g in golds) else 0.0


def token_halves(pred: str, gold: str) -> tuple[float, float]:
    """(recall, precision) of two already-normalised strings: the shared tokens over the gold's and over the
    prediction's; HotpotQA's rule: a yes/no/noanswer answer that differs scores 0 on both."""
    if (pred in _SPECIAL_ANSWERS or gold in _SPECIAL_ANSWERS) and pred != gold:
        return 0.0, 0.0
    pred_tokens, gold_tokens = pred.split(), gold.split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0, 0.0
    return num_same / len(gold_tokens), num_same / len(pred_tokens)


def _token_f1(pred: str, gold: str) -> float:
    """Token F1 of two already-normalised strings, the harmonic mean of `token_halves`."""
    recall, precision = token_halves(pred, gold)
    return 2 * precision * recall / (precision + recall) if recall else 0.0


def f1_score(prediction: str, golds: list[str]) -> float:
    """Best token F1 over gold aliases (PRAG / HotpotQA rules)."""
    _check_golds(prediction, golds)
    pred = normalize_answer(prediction)
    return max(_token_f1(pred, normalize_answer(g)) for g in golds)


def accuracy(prediction: str, golds: list[str]) -> float:
    """1.0 if any non-empty normalised gold occurs in the normalised prediction as whole tokens."""
    _check_golds(prediction, golds)
    # Padding with spaces makes the substring test respect token boundaries ("art" vs "party").
    padded = f" {normalize_answer(prediction)} "
    for g in golds:
        gold = normalize_answer(g)
        if gold and f" {gold} " in padded:
            return 1.0
    return 0.0


@dataclass
class Scores:
    em: float
    f1: float
    acc: float


def score(prediction: str, golds: list[str]) -> Scores:
    """All three metrics for one prediction."""
    return Scores(
        em=exact_match(prediction, golds),
        f1=f1_score(prediction, golds),
        acc=accuracy(prediction, golds),
    )


def mean_scores(items: list[Scores]) -> Scores:
    """Per-metric mean; zeros for an empty list so that empty runs still report."""
    n = len(items)
    if n == 0:
        return Scores(em=0.0, f1=0.0, acc=0.0)
    return Scores(
        em=sum(s.em for s in items) / n,
        f1=sum(s.f1 for s in items) / n,
        acc=sum(s.acc for s in items) / n,
    )
