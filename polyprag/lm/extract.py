"""Answer extraction: the short answer inside a generation.

`extract_answer_prag` reproduces PRAG's post-processing of generations; `extract_answer` is a less
destructive variant that keeps "." and "," inside answers such as "Henry J. Kaiser", "St. Louis",
"U.S. Navy", "3.5" and "9,984".
"""

from __future__ import annotations

import re
import string

from .prompts import ANSWER_PREFIX, is_chat


def raw_to_answer(tokenizer, generated: str) -> tuple[str, str, str]:
    """(short answer, raw text with prefix, PRAG extraction) from the newly generated text.

    PRAG's own rule (no chain of thought) cuts the generation at its first ".", "," or newline.
    """
    raw = f"{ANSWER_PREFIX}{generated}" if is_chat(tokenizer) else generated.strip()
    return extract_answer(raw), raw, extract_answer_prag(generated, with_cot=False)



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
