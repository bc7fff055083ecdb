"""Counterfactual HotpotQA and 2Wiki (`--dataset hotpotqa-cf | 2wiki-cf`): knowledge the reader cannot know.

Entity substitution (Longpre et al. 2021, "Entity-Based Knowledge Conflicts in Question Answering"): each
selected question's answer, and its bridge entity where it has one, is replaced by an invented entity of the
same shape (a year by another year from 1000 to 2017, every year of one entity moved by the same offset; a
number by another with as many digits in each group, an ordinal keeping its suffix right; a name by
ordinary name-words for its capitalised words — "Texas Tech University" -> "Marden Ashby University", so that a
small reader can copy it from a passage as it copies a real name; lowercase words, month names, particles and
the capitalised words that say what kind of thing it is kept: University, River, Century, Ltd),
in every paragraph of the corpus and in every question that names it, and the gold answer becomes the
invented one. The first version made names of random syllables; with SmolLM2-135M, RAG scored 4.8 F1 on the
100 counterfactual HotpotQA test questions (benchmarks/results/cf-v1-hotpotqa-test-n100-smollm2) and with these
name-words 4.1, the gold paragraphs in the prompt 11.8 (benchmarks/results/cf-v2-check-hotpotqa-test-n100-smollm2):
the small reader answers these multi-hop questions from its own prior (a name the question mentions) rather
than from a passage that contradicts it, so on this variant every method sits near the floor at this size.
Version 3 (2026-12-05) keeps an invention's kind (the kind words above, "The"), shifts every year of one
entity by one offset ("1969 until 1974" stays a span), and renames no word common to the corpus: v2 turned
"American" into a name in a quarter of HotpotQA's paragraphs ("an Vance comedian"). Version 4 (2026-12-06, before
any test run of a counterfactual pair) drops a question that holds a renamed part of its answer: v3 kept an
either-or question whose gold answer is a fuller form of the name it asks about ("... Samantha Cristoforetti or
Jean-Loup Chrétien?", answer "Jean-Loup Jacques Marie Chrétien"), so the renamed passages no longer held the name
asked about (10 of v3's 17 HotpotQA test comparison questions; 8 bridge ones lost a word of the question too, "Kansas
Song" for "... in Lawrence, Kansas"). One world for the whole corpus: a string
maps to one invention (drawn from a hash of the string), so documents never contradict each other and a
closed-book reader scores ≈ 0: every point must come from the documents.

A question is kept only if it can be substituted: its answer is a name or a number (a capital or a digit: not
yes/no, not a common noun that would be rewritten everywhere), of 3 characters to 5 words, appears in one of
its gold paragraphs and not in the question, nor any of its name-words or numbers (an either-or question names its
answer), and, unless a number, in
at most COMMON_SHARE of the split's paragraphs (a nationality or a major country is vocabulary, not an entity). The split's
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
# Ordinary English surnames that double as place and company names: copyable, and no fact attaches to the
# invented combinations ("Marden Ashby"). Written for this module; not the vocabulary of any dataset.
_NAME_WORDS = tuple("""
Abbott Ainsley Alder Ashby Ashford Barlow Beckett Bexley Bramley Brandt Brook Carden Carlow Chalk Corbin
Corwin Crane Dalby Dalton Denholm Draper Easton Elwood Emsley Farleigh Fenmore Fenwick Fisher Garner Garrick
Gilmore Granger Halden Hale Hartley Hayward Holt Ingram Iverson Jarrow Jessop Keaton Kendal Kirby Lacey
Langley Larkin Lowell Ludlow Marden Marsh Mercer Merrick Milner Morley Norcross Northam Oakley Ogden Orton
Paxton Pembury Penrose Prescott Quarles Quinlan Radley Ramsey Redford Rowan Rowley Sandford Selby Shelton
Stanton Stroud Sutton Tanner Thornton Tilbury Torrance Upton Varley Vance Wakefield Walden Warrick Webber
Wexley Whitlock Winslow Wolcott Yardley Yates
""".split())
# Capitalised words that say what kind of thing a name is ("Texas Tech University", "the late 12th Century",
# "Lush Ltd.", "Lord Combermere"): kept like lowercase words, so the invention stays an answer of the question's
# kind. General English, written for this module; not the vocabulary of any dataset.
_KINDS = set("""
The Academy Agency Airlines Airport Album Alliance Arena Army Association Avenue Award Band Bank Battle Bay Beach
Baron Baronet Bishop Bridge Brothers Building Canal Captain Cardinal Castle Cathedral Center Centre Century Championship Channel Chapel
Chief Church City Club College Company Conference Corporation Council Count Countess County Court Cup Dam Department District
Division Duke Dynasty Earl Emperor Empire Empress FC Festival Field Force Forest Fort Foundation Gallery Games Garden Gardens General
Governor Group Hall High Highway Hill Hills Hospital Hotel House Inc Institute Island Islands Isles King Kingdom
Lady Lake League Library Line Lord Ltd Manor Market Marquess Memorial Ministry Minister Mount Mountain Mountains Museum
National Navy Network Ocean Office Orchestra Palace Park Party Peak Pictures Point Port President Press Prince
Princess Prize Province Queen Railway Range Records Region Republic River Road Royal Saint School Sea Secretary
Senate Senator Series Sir Society Sultan Square Stadium State States Station Street Studio Studios Temple Theater Theatre
Tower Town Township Trail Tribe Trophy University Valley Village Viscount War Way Zoo
""".split())
# A name found in more of the paragraphs than this is vocabulary ("American", "Roman"): renaming it would rewrite
# a quarter of the corpus into odd English, so it is neither an answer to substitute nor a bridge to rename
COMMON_SHARE = 0.02
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
_ORDINAL = re.compile(r"(?<!\d)(\d+)(st|nd|rd|th)(?![^\W\d_])")
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters
_TOKEN = re.compile(r"[^\W\d_]+|\d+|[\W_]+")
LAST_YEAR = 2017  # HotpotQA's and 2Wiki's paragraphs were written by then: an invented year is never later


# Questions are datasets.Question (id, question, answers, gold_doc_ids, qtype); this module sits above datasets
# (which loads the counterfactual variants with it), so it takes them as they come.
Question = Any


def substitutable(q: Question, gold_texts: list[str], texts: list[str] = ()) -> bool:
    """`texts`: the paragraphs of the split, where a name too common to rename shows (COMMON_SHARE)."""
    answer = q.answers[0]
    if len(answer.strip()) < 3 or len(answer.split()) > 5 or not re.search(r"[A-Z\d]", answer):
        return False  # yes/no, a common noun ("director": one word everywhere) or a sentence: no entity
    if answer.lower() in q.question.lower() or _names_part_of(answer, q.question) or invent(answer) == answer \
            or common(answer, texts):
        return False
    return any(_pattern([answer]).search(t) for t in gold_texts)


def _names_part_of(answer: str, question: str) -> bool:
    """Whether the question holds a token of the answer that invention renames (a name-word or a number): "Who was
    born first, Samantha Cristoforetti or Jean-Loup Chrétien?" with the answer "Jean-Loup Jacques Marie Chrétien"
    would ask about a name its renamed passages no longer hold (version 4)."""
    asked = set(_TOKEN.findall(question))
    return any(t in asked and _renamed(t) for t in _TOKEN.findall(answer))


def _renamed(token: str) -> bool:
    """Whether invention replaces `token`: a number or a name-word; lowercase words, particles and kind words stay."""
    return token.isdigit() or (token[:1].isupper() and token not in _KEEP and token not in _KINDS)


def common(name: str, texts: list[str]) -> bool:
    """Whether `name`, not a number, is in more than COMMON_SHARE of `texts` (as a whole word)."""
    if not texts or not re.search(r"[^\W\d_]", name):
        return False
    pattern = _pattern([name])
    return sum(1 for t in texts if name in t and pattern.search(t)) > COMMON_SHARE * len(texts)


def substitute(questions: list[Question], docs: list[Document], corpus,
               texts: list[str] | None = None) -> tuple[list[Question], list[Document]]:
    """The questions and corpus in one invented world: every answer (and its aliases) and bridge entity mapped.
    `corpus`: an empty datasets.CorpusBuilder, which gives the rewritten documents their ids. `texts`: the
    paragraphs a name too common to rename is counted in (COMMON_SHARE): the split's, as for the answers, so
    that what is renamed does not depend on n (default: `docs`)."""
    by_id = {d.id: d for d in docs}
    fresh = _fresh_names(docs)
    mapping: dict[str, str] = {}
    for q in questions:
        new = mapping.get(q.answers[0]) or fresh(q.answers[0])
        for alias in q.answers if new else ():
            mapping.setdefault(alias, new)
    answers, texts = _pattern(list(mapping)), [d.text for d in docs] if texts is None else texts
    for q in questions:
        bridge = bridge_entity(q, [by_id[g] for g in q.gold_doc_ids])
        # a bridge holding an answer ("Conscription in the United States") would rename it away
        if bridge and bridge not in mapping and not answers.search(bridge) and not common(bridge, texts):
            if new := fresh(bridge):
                mapping[bridge] = new
    pattern = _pattern(list(mapping))

    def apply(text: str) -> str:
        return pattern.sub(lambda m: mapping[m.group()], text)

    ids = {}
    for d in docs:
        ids[d.id] = corpus.add(apply(d.title), apply(d.text))
    out = [replace(q, question=apply(q.question), answers=[mapping[q.answers[0]]],
                   gold_doc_ids=list(dict.fromkeys(ids[g] for g in q.gold_doc_ids)))
           for q in questions if q.answers[0] in mapping]  # a question whose answer found no invention is dropped
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


def invent(original: str, attempt: int = 0) -> str:
    """An invented entity of the same shape as `original`, the same every time for the same string (and
    attempt: a later attempt draws another one)."""
    rng = random.Random(hashlib.sha256(f"{attempt}:{original}".encode()).hexdigest())
    shift = _year_shift([int(y) for y in _YEAR.findall(original) if 1000 <= int(y) <= 2100], rng)
    new = "".join(_invent_token(t, rng, shift) for t in _TOKEN.findall(original))
    return _ORDINAL.sub(lambda m: m.group(1) + _suffix(int(m.group(1))), new) if _ORDINAL.search(original) else new


def _year_shift(years: list[int], rng: random.Random) -> int:
    """One offset for every year of an entity, decades away, keeping each in 1000..LAST_YEAR (a span stays a
    span); where no offset of 7 to 60 years keeps them there, the drawn one cut to the range."""
    sign, size = rng.choice((-1, 1)), rng.randint(7, 60)
    low, high = (1000 - min(years), LAST_YEAR - max(years)) if years else (0, 0)
    if low > high:  # years a millennium apart: no offset keeps both in range
        return 0
    fits = [s for s in (sign * size, -sign * size) if low <= s <= high]
    return fits[0] if fits else min(max(sign * size, low), high)


def _suffix(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _fresh_names(docs: list[Document]):
    """invent, drawn again until the invention names nothing else: not another entity's invention, and no word
    of it that the original lacks in the corpus (name-words are real words: "Fisher" may already stand in some
    paragraph, and an invention holding it would tie the invented entity to that one)."""
    taken: set[str] = set()
    corpus_words = set(_WORD.findall("\n".join(f"{d.title}\n{d.text}" for d in docs)))

    def fresh(original: str) -> str | None:
        old = set(_WORD.findall(original))
        for attempt in range(1000):  # after 50 draws, a word of the corpus is allowed; another's invention never
            new = invent(original, attempt)
            if new not in taken and new != original and (
                    attempt >= 50 or not (set(_WORD.findall(new)) - old) & corpus_words):
                taken.add(new)
                return new
        return None  # a shape with too few variants ("12 km" among thirty such): left as it is

    return fresh


def _invent_token(token: str, rng: random.Random, shift: int) -> str:
    if token.isdigit():
        value = int(token)
        if len(token) == 4 and 1000 <= value <= 2100:  # a year: another year, decades away, never in the future
            return str(value + shift)
        if len(token) <= 2:  # a day or a small count
            return str(rng.choice([v for v in range(1, 29) if v != value]))
        return str(rng.randint(10 ** (len(token) - 1), 10 ** len(token) - 1))
    if not _renamed(token):  # they say the kind ("3,677 seated"): kept
        return token
    if token.isupper() and len(token) > 1:  # an acronym: as many other capitals
        return "".join(rng.choice([c for c in "ABCDEFGHKLMNPRSTVW" if c != old]) for old in token)
    return rng.choice([w for w in _NAME_WORDS if w != token])


def _pattern(strings: list[str]) -> re.Pattern:
    """Any of `strings` as a whole word; the longest first, so "New York City" wins over "New York"."""
    alternatives = "|".join(re.escape(s) for s in sorted(strings, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
