"""Counterfactual HotpotQA and 2Wiki (`--dataset hotpotqa-cf | 2wiki-cf`): knowledge the reader cannot know.

Entity substitution (Longpre et al. 2021, "Entity-Based Knowledge Conflicts in Question Answering"): each
selected question's answer, and its bridge entity where it has one, is replaced by an invented entity of the
same shape (a year by another year, a number by another number of as many digits, a name by invented words
for its capitalised words; lowercase words, month names and particles kept), in every paragraph of the corpus and in every
question that names it, and the gold answer becomes the invented one. One world for the whole corpus: a string
maps to one invention (drawn from a hash of the string), so documents never contradict each other and a
closed-book reader scores ≈ 0: every point must come from the documents.

A question is kept only if it can be substituted: its answer is a name or a number (a capital or a digit: not
yes/no, not a common noun that would be rewritten everywhere), of 3 characters to 5 words, appears in one of
its gold paragraphs and not in the question (an either-or question names its answer). The split's
rows are filtered so, then sampled per type as the real dataset is (datasets.load_counterfactual): n
counterfactual questions are the first n substitutable ones of each type, never a reserved row.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import replace
from typing import Any

from .corpus import Document

_KEEP = set("the a an of and or in on at for to by de la le von van der du del da di y".split()) | set(
    "January February March April May June July August September October November December".split())
_CONSONANTS, _VOWELS = "bdfgklmnprstvz", "aeiou"
_TOKEN = re.compile(r"[^\W\d_]+|\d+|[\W_]+")


# Questions are datasets.Question (id, question, answers, gold_doc_ids, qtype); this module sits above datasets
# (which loads the counterfactual variants with it), so it takes them as they come.
Question = Any


def substitutable(q: Question, gold_texts: list[str]) -> bool:
    answer = q.answers[0]
    if len(answer.strip()) < 3 or len(answer.split()) > 5 or not re.search(r"[A-Z\d]", answer):
        return False  # yes/no, a common noun ("director": one word everywhere) or a sentence: no entity
    if answer.lower() in q.question.lower() or invent(answer) == answer:
        return False
    return any(_pattern([answer]).search(t) for t in gold_texts)


def substitute(questions: list[Question], docs: list[Document], corpus) -> tuple[list[Question], list[Document]]:
    """The questions and corpus in one invented world: every answer (and its aliases) and bridge entity mapped.
    `corpus`: an empty datasets.CorpusBuilder, which gives the rewritten documents their ids."""
    by_id = {d.id: d for d in docs}
    mapping: dict[str, str] = {}
    for q in questions:
        new = invent(q.answers[0])
        for alias in q.answers:
            mapping.setdefault(alias, new)
    answers = _pattern(list(mapping))
    for q in questions:
        bridge = bridge_entity(q, [by_id[g] for g in q.gold_doc_ids])
        # a bridge holding an answer ("Conscription in the United States") would rename it away
        if bridge and bridge not in mapping and not answers.search(bridge):
            mapping[bridge] = invent(bridge)
    pattern = _pattern(list(mapping))

    def apply(text: str) -> str:
        return pattern.sub(lambda m: mapping[m.group()], text)

    ids = {}
    for d in docs:
        ids[d.id] = corpus.add(apply(d.title), apply(d.text))
    out = [replace(q, question=apply(q.question), answers=[mapping[q.answers[0]]],
                   gold_doc_ids=list(dict.fromkeys(ids[g] for g in q.gold_doc_ids))) for q in questions]
    # An answer inside another, longer one ("New York" / "New York City") can be renamed away with it: such a
    # question has no answer left in its documents and is dropped.
    text = {d.id: d.text for d in corpus.docs}
    return [q for q in out if any(q.answers[0] in text[g] for g in q.gold_doc_ids)], corpus.docs


def bridge_entity(q: Question, gold: list[Document]) -> str | None:
    """The one gold paragraph's title (without a "(film)"-like suffix) that the question does not name: the
    entity the first hop leads to. None when there is not exactly one, or it is the answer."""
    cores = [re.sub(r"\s*\([^)]*\)$", "", d.title).strip() for d in gold]
    unnamed = [c for c in cores if len(c) >= 4 and c.lower() not in q.question.lower()]
    if len(unnamed) != 1 or unnamed[0] in q.answers or invent(unnamed[0]) == unnamed[0]:
        return None
    return unnamed[0]


def invent(original: str) -> str:
    """An invented entity of the same shape as `original`, the same every time for the same string."""
    rng = random.Random(hashlib.sha256(original.encode()).hexdigest())
    return "".join(_invent_token(t, rng) for t in _TOKEN.findall(original))


def _invent_token(token: str, rng: random.Random) -> str:
    if token.isdigit():
        value = int(token)
        if len(token) == 4 and 1000 <= value <= 2100:  # a year: another year, decades away
            return str(value + rng.choice((-1, 1)) * rng.randint(7, 60))
        if len(token) <= 2:  # a day or a small count
            return str(rng.choice([v for v in range(1, 29) if v != value]))
        return str(rng.randint(10 ** (len(token) - 1), 10 ** len(token) - 1))
    if not token[:1].isupper() or token in _KEEP:  # lowercase words say the type ("3,677 seated"): kept
        return token
    word = _word(rng, max(len(token), 3))
    return word.upper() if token.isupper() and len(token) > 1 else word.capitalize()


def _word(rng: random.Random, length: int) -> str:
    """Consonant-vowel syllables: pronounceable and, at these lengths, almost never an English word."""
    out = ""
    while len(out) < length:
        out += rng.choice(_CONSONANTS) + rng.choice(_VOWELS)
    return out[:length] if length % 2 == 0 else out[: length - 1] + rng.choice(_CONSONANTS)


def _pattern(strings: list[str]) -> re.Pattern:
    """Any of `strings` as a whole word; the longest first, so "New York City" wins over "New York"."""
    alternatives = "|".join(re.escape(s) for s in sorted(strings, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
