"""QA metrics as PRAG computes them (SQuAD / HotpotQA official rules) and answer extraction.

The metric functions reproduce PRAG's `BaseDataset` scoring so that numbers are comparable
with the paper. `extract_answer_prag` reproduces PRAG's post-processing of generations;
`extract_answer` is a less destructive variant that keeps "." and "," inside answers
such as "Henry J. Kaiser", "St. Louis", "U.S. Navy", "3.5" and "9,984".
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
    "extract_answer",
    "extract_answer_prag",
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


def _token_f1(pred: str, gold: str) -> float:
    """Token F1 of two already-normalised strings, with HotpotQA's yes/no/noanswer rule."""
    if (pred in _SPECIAL_ANSWERS or gold in _SPECIAL_ANSWERS) and pred != gold:
        return 0.0
    pred_tokens = pred.split()
    gold_tokens = gold.split()
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


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


# ---------------------------------------------------------------------------------------------
# Answer extraction
# ---------------------------------------------------------------------------------------------


def extract_answer_prag(text: str, with_cot: bool = True) -> str:
    """PRAG's original post-processing (`src/utils.py: evaluate`), kept for comparability.

    With `with_cot` (PRAG's chain-of-thought branch) it keeps what follows the first,
    case-sensitive "the answer is"; then it cuts at the first ".", newline or ",".
    This truncates answers such as "Henry J. Kaiser" to "Henry J".
    """
    pred = text
    if with_cot and "the answer is" in pred:
        pred = pred[pred.find("the answer is") + len("the answer is"):]
    pred = pred.strip()
    for stop in (".", "\n", ","):
        end = pred.find(stop)
        if end != -1:
            pred = pred[:end].strip()
    return pred


# Last match wins: chain-of-thought often says "the answer is" while reasoning, then concludes.
_ANSWER_IS = re.compile(r"\bthe\s+(?:final\s+)?answer\s+is\b", re.IGNORECASE)
# Labels a model puts in front of the answer itself ("Answer: yes", "A: Paris").
_LEADING_LABEL = re.compile(r"^(?:(?:final|short)\s+)?(?:answer|a)\s*:", re.IGNORECASE)
_QUOTES = "\"'`*“”‘’"
_EDGE_CHARS = _QUOTES + string.whitespace
# Abbreviations whose "." does not end a sentence (compared lower-cased, without the ".").
# "no" is deliberately absent so that "No. The film was..." is cut to "No".
_ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "st", "mt", "ft", "jr", "sr", "gen", "col", "lt",
        "capt", "sgt", "gov", "sen", "rev", "inc", "co", "corp", "ltd", "bros", "vs", "etc",
        "vol", "approx",
    }
)
# Dotted initialisms such as "U.S", "D.C", "e.g" (the token before the final ".").
_INITIALISM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")


def _strip_leading(s: str) -> str:
    """Drop leading colons, quotes, markdown bold, whitespace and "Answer:"-style labels."""
    while True:
        stripped = s.lstrip(_EDGE_CHARS + ":")
        stripped = _LEADING_LABEL.sub("", stripped, count=1)
        if stripped == s:
            return s
        s = stripped


def _is_sentence_end(s: str, i: int) -> bool:
    """Whether the "." at s[i] ends a sentence (so the answer is cut there)."""
    # What follows: optional closing quotes, then end of text or whitespace + capitalised word.
    j = i + 1
    while j < len(s) and s[j] in _QUOTES + ")":
        j += 1
    if j < len(s):
        if not s[j].isspace():
            return False  # "3.5", "U.S", "example.com": not a sentence end
        rest = s[j:].lstrip().lstrip(_QUOTES)
        if not rest or not rest[0].isupper():
            return False
    # What precedes: an initial ("J.") or an abbreviation ("St.", "U.S.") does not end it.
    start = i
    while start > 0 and not s[start - 1].isspace():
        start -= 1
    token = s[start:i].strip(_QUOTES + "(")
    if len(token) == 1 and token.isalpha():
        return False
    if token.lower() in _ABBREVIATIONS or _INITIALISM.match(token):
        return False
    return True


def _cut_first_clause(s: str) -> str:
    """Cut at the first sentence-ending "." or at the first comma followed by a space."""
    for i, ch in enumerate(s):
        # A comma followed by a space separates clauses (PRAG cuts there too); one between
        # digits ("9,984") does not.
        if ch == "," and (i + 1 == len(s) or s[i + 1].isspace()):
            return s[:i]
        if ch == "." and _is_sentence_end(s, i):
            return s[:i]
    return s


def extract_answer(text: str) -> str:
    """Turn a verbose generation into a short answer, keeping "." and "," that belong to it.

    Steps: take what follows the last "the answer is" (case-insensitive); drop leading
    labels, colons and quotes; keep the first line; cut at the first sentence end or ", ";
    strip trailing "." and edge quotes/asterisks. If that leaves nothing, fall back to the
    first non-empty line of `text` ("The answer is:\\n\\n" style outputs).
    """
    answer = text
    matches = list(_ANSWER_IS.finditer(answer))
    if matches:
        answer = answer[matches[-1].end():]
    answer = _strip_leading(answer)
    answer = answer.split("\n", 1)[0].strip()
    answer = _cut_first_clause(answer)
    # Trailing "." left by an abbreviation ("U.S.") or initial; normalisation drops it anyway.
    answer = answer.strip(_EDGE_CHARS).rstrip(".").strip(_EDGE_CHARS)
    if answer:
        return answer
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""
