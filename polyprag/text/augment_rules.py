"""Rule-based, LLM-free document augmentation in PRAG's shape: one rewrite and some QA pairs.

PRAG trains one LoRA per document on an LLM's rewrite of it and three QA pairs
{question, answer, full_answer}. This module makes the same records with regexes only,
so augmentation is instant, deterministic (same document -> same record, no randomness)
and needs no model. Answers are always verbatim spans of the document text; the
full_answer is the sentence they came from.

Questions come in two kinds: wh-questions built from a few templates keyed on the span
type and the cue word before it ("in 1412" -> "in what year", "by the chemist X" ->
"Which chemist ...?", "born in X" -> "Where was <title> born?"), mostly kept in place
("... rising to how many metres?") because moving a phrase to the front needs do-support
that regexes cannot do safely; and cloze questions ("<title>: ... ___ .... What fills the
blank?") as the fallback when no template fits. The answer spans come from `spans`; what a document is about
(its `Topic`) is read from the document itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from .corpus import Document
from .spans import FUNCTION_WORDS, Span, extract_spans, span_at, split_sentences, title_core

SOURCE = "rules-v1"

# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    full_answer: str


@dataclass(frozen=True)
class Augmentation:
    doc_id: str
    rewrite: str
    qa: tuple[QAPair, ...]
    source: str


# ---------------------------------------------------------------- word lists of the question templates

# Words that make a capitalised run a place or an institution, not a person ("Lake Orr", "Vance University"):
# generic English heads of geographic and institutional names (gazetteer feature types, kinds of body), none
# taken from any corpus. A document adds its own: a name word it also uses in lower case ("the fair").
_PLACE_HEADS = set(
    "Lake River Mount Mountain Island Bay Cape Valley Hill Forest Sea Ocean Coast Desert Street Road Avenue "
    "Square Park Bridge Station Airport Port Harbour Harbor Castle Palace Tower Church Cathedral Abbey Temple "
    "Museum Gallery Library Theatre Theater Hall House Hospital School College University Institute Academy "
    "Company Corporation Group Club Society Association Council Party League Union Festival Award Prize Cup "
    "Times Gazette Press Act".split()
)
# Words before a name that describe, not name a role: "the lower Dravoss", "an old Ossenlaw word".
_ADJECTIVES = set(
    "old new lower upper northern southern eastern western first last same great little big "
    "small large early late main nearby modern ancient famous local national royal".split()
)
# A verb before "in/at/to X" makes "where" read well ("died where"); a noun does not ("workshop where").
_PLACE_VERBS = set(
    "is was are were be been lies lay stands stood hangs hung sits sat lives lived died born held "
    "kept built made found set rises rose flows grows grew remains remained".split()
)
# Words after the head noun of "X is a <noun phrase>" that end the phrase: "a compound first prepared in".
_DEFINITION_STOPS = {"first", "only", "also", "now", "once", "still", "mainly", "largely", "mostly", "endemic",
                     "native", "located", "situated", "based", "known", "named", "called"}
_PASSIVE_VERB = (r"(?:[a-z]+ed|built|cast|dug|made|sold|held|found|led|taught|bought|brought|won|"
                 r"set|kept|paid|laid|sent|spent|lent|lit|shot|bound|hung|spun|struck)")


# ---------------------------------------------------------------- subjects and clauses


def _possessive(subject: str) -> str:
    return subject + ("'" if subject.endswith("s") else "'s")


@dataclass(frozen=True)
class Topic:
    """What a document is about, read from the document itself (no word list): its title as a noun phrase,
    the common nouns that stand for it ("the bridge" where the opening sentence says it is a bridge) and the
    words it uses in lower case (a name holding one is a thing, not a person: "Lantern Wool Fair", "the fair")."""

    name: str
    nouns: frozenset[str] = frozenset()
    common: frozenset[str] = frozenset()


def _topic(doc: Document, sentences: list[str]) -> Topic:
    name = title_core(doc.title)
    nouns = {m.group(1).lower() for m in re.finditer(r"([A-Za-z]+)\)\s*$", doc.title)}  # "Quillon (programming language)"
    last = name.split()[-1] if len(name.split()) > 1 else ""
    if last.isalpha():
        nouns.add(last.lower())  # "Marlow Bridge": "the bridge"
    head = _defined_as(sentences[0]) if sentences else None
    if head:
        nouns.add(head)
    return Topic(name, frozenset(nouns), frozenset(re.findall(r"\b[a-z]+\b", doc.text)))


def _defined_as(sentence: str) -> str | None:
    """The head noun of an opening definition: "X is a 2005 American film directed by ..." -> "film"."""
    m = re.search(r"\b(?:is|was|are|were) (?:a|an|the|one of the) (.*)", sentence)
    head = ""
    for word in (m.group(1).split() if m else []):
        bare = word.rstrip(",.;:)")
        if (bare in FUNCTION_WORDS or bare in _DEFINITION_STOPS or "(" in word
                or re.fullmatch(rf"[a-z]+(?:ed|ing)|{_PASSIVE_VERB}|[a-z]+en", bare)):
            break
        head = bare
        if bare != word:
            break  # the phrase ends at its punctuation
    return head if re.fullmatch(r"[a-z]{3,}", head) else None


def _fix_subject(text: str, topic: Topic) -> str:
    """Replace a leading pronoun or "The band" (the topic's own noun) with the title, so the question stands
    alone."""
    if topic.name:
        possessive = _possessive(topic.name)
        text = re.sub(r"^(?:it|she|he|they)\b(?!')", topic.name, text, flags=re.IGNORECASE)
        text = re.sub(r"^(?:its|her|his|their)\b", possessive, text, flags=re.IGNORECASE)
        m = re.match(r"^[Tt]he ([a-z]+)('s)?(?=$| [a-z])", text)
        if m and m.group(1) in topic.nouns:
            text = (possessive if m.group(2) else topic.name) + text[m.end() :]
    return text[:1].upper() + text[1:]


def _as_object(text: str, topic: Topic) -> str:
    """A sentence subject moved after the verb: pronouns -> title, "The old quarter" -> "the ..."."""
    fixed = _fix_subject(text, topic)
    if fixed.startswith("The ") and not (topic.name and text.startswith(topic.name)):
        return "the " + fixed[4:]
    return fixed


# Where a clause ends after the asked-about phrase; not at an " and " that joins two numbers or
# names ("1791 and 1798", "Aurel and Casimir Halvering").
_TAIL_END_RE = re.compile(r"[,;:]\s|\s[–—-]\s|\s\(|\s(?:and|but|which|who|where|while)\s(?![\dA-Z])")


def _tail(after: str, appositive: bool = False) -> str:
    """The rest of the clause after the phrase, without its final punctuation.

    In an appositive ("The crystal, 14 centimetres long, is kept ...") the clause goes on
    past the closing comma.
    """
    skip = after.find(", ") + 2 if appositive and ", " in after else 0
    m = _TAIL_END_RE.search(after, skip)
    piece = after[: m.start()] if m else after
    return re.sub(r"[.!?,]+$", "", piece.rstrip())


def _clause_start(before: str) -> int:
    """Where the clause containing the end of `before` starts."""
    ends = [m.end() for m in re.finditer(r"[;:]\s|,\s(?:and|but)\s|,\s|\sand\s", before)]
    return ends[-1] if ends else 0


# ---------------------------------------------------------------- questions


def _in_situ(sent: str, pstart: int, pend: int, wh: str, topic: Topic) -> str:
    """The sentence with the phrase replaced by its wh-phrase: "... rising to how many metres?"."""
    before = sent[:pstart]
    tail = _tail(sent[pend:], appositive=before.endswith(", "))
    if not before.strip():
        # A leading adverbial ("In 1927 a flood ...") moves to the end: "A flood ... in what year?"
        rest = tail.lstrip(" ,")
        if not rest or rest.split()[0] in ("to", "and", "or", "until", "till", "through"):
            return ""  # "From 1902 to 1931 ...": the clause needs its opening phrase
        return f"{_fix_subject(rest, topic)} {wh}?"
    return _fix_subject(f"{before}{wh}{tail}", topic) + "?"


def _front_passive(sent: str, span: Span, wh: str, topic: Topic, agent: bool) -> str | None:
    """ "X was granted a charter in 1412" -> "In what year was X granted a charter?";
    with agent=True, "X was cast in 1714 by Y" -> "Who cast X in 1714?"."""
    before = sent[: span.pstart]
    clause = before[_clause_start(before) :]
    m = re.fullmatch(rf"(?P<subj>[A-Z][^,;]*?) (?P<aux>was|were) (?P<adv>(?:first|originally|"
                     rf"later|also|once|jointly|officially) )?(?P<verb>{_PASSIVE_VERB})(?P<rest>.*?)\s*",
                     clause)
    if not m or len(m["subj"].split()) > 6:
        return None
    tail, adv = _tail(sent[span.pend :]), m["adv"] or ""
    obj = _as_object(m["subj"], topic)
    if agent:
        if not re.fullmatch(r"(?: (?:in|on) [\w ]*\d{4})?", m["rest"]):
            return None  # "founded in 1884 with money left by X": X did not found it
        return f"{wh} {adv}{m['verb']} {obj}{m['rest']}{tail}?"
    return f"{wh} {m['aux']} {obj} {adv}{m['verb']}{m['rest']}{tail}?"


def _wh_question(sent: str, span: Span, topic: Topic) -> str | None:
    """A template question for the span, or None when no template fits (then: cloze)."""
    builder = _WH_BUILDERS.get(span.kind)
    return builder(sent, span, topic) if builder else None


def _time_question(sent: str, span: Span, topic: Topic) -> str | None:
    before = sent[: span.start]
    m = re.search(r"\b(in|on|since|until|till|by|from|to|between|and|after|before|around|of)\s$",
                  before, re.IGNORECASE)
    if not m:
        return None  # "an 1897 novel", "(1871–1939)": no natural wh-phrase
    prep = m.group(1).lower()
    what = "what year"
    if span.kind == "date":
        what = "what date" if span.text[0].isdigit() or "," in span.text else "what month and year"
    phrase = Span(span.start, span.end, span.kind, span.text, m.start(1), span.pend)
    if prep in ("in", "on") and m.start(1) > 0:
        fronted = _front_passive(sent, phrase, f"{prep.capitalize()} {what}", topic, agent=False)
        if fronted:
            return fronted
    return _in_situ(sent, m.start(1), span.pend, f"{prep} {what}", topic)


def _amount_question(sent: str, span: Span, topic: Topic) -> str | None:
    noun = span.extra
    if span.kind == "measure" and not noun.endswith("s") and noun not in ("feet", "percent"):
        noun += "s"  # "1 kilometre" -> "how many kilometres"
    return _in_situ(sent, span.pstart, span.pend, f"how many {noun}", topic)


def _in_list(sent: str, span: Span) -> bool:
    """ "boron, calcium and magnesium": a wh-phrase in the middle of a list reads badly."""
    return bool(re.search(r"(?:,|\band) $", sent[: span.start]) or re.match(r", \w+ and ", sent[span.end :]))


def _ends_phrase(next_word: str) -> bool:
    """Whether the noun phrase ends before `next_word`: not in "wool road", but in "granite quarried"."""
    return next_word in FUNCTION_WORDS or bool(re.fullmatch(r"[a-z]+(?:ed|ing)", next_word))


def _colour_question(sent: str, span: Span, topic: Topic) -> str | None:
    if _in_list(sent, span):
        return None
    # "of a pale violet colour" -> "of what colour"; "a bright copper-red crown" -> "what colour crown".
    start, end = span.pstart, span.pend
    m = re.search(r"\b(?:an? )?(?:(?:bright|vivid|rich) )?$", sent[:start])
    start = m.start() if m and m.group() else start
    m = re.match(r" colou?r(?:ed)?\b", sent[end:])
    end = end + m.end() if m else end
    return _in_situ(sent, start, end, "what colour", topic)


def _material_question(sent: str, span: Span, topic: Topic) -> str | None:
    nxt = re.match(r" ([a-z]+)", sent[span.end :])
    if _in_list(sent, span) or (nxt and not _ends_phrase(nxt.group(1))):
        return None  # "the wool road": the material is an adjective here
    return _in_situ(sent, span.pstart, span.pend, f"what {span.extra}", topic)


def _name_question(sent: str, span: Span, topic: Topic) -> str | None:
    before = sent[: span.start]
    if re.search(r"\bborn in $", before):
        return f"Where was {topic.name} born?" if topic.name else None
    nxt = re.match(r" ([a-z]+)", sent[span.end :])
    if nxt and not _ends_phrase(nxt.group(1)):
        return None  # "the Linden kettle", "Skerrow fishermen": the name is a modifier here
    role = _ROLE_RE.search(before)
    if role and _is_role(role["role"]):
        return _role_question(sent, span, role, topic)
    cue = re.search(r"\b(by|under|in|at|near|on|beside|into|to|from|is|was|were|are)\s(?:the\s)?$",
                    before)
    if not cue:
        return None
    word, person = cue.group(1), _is_person(span.text, topic)
    if word in ("by", "under"):
        if word == "by":
            fronted = _front_passive(sent, _with_phrase(span, cue.start()), "Who", topic, True)
            if fronted and person:
                return fronted
        wh = f"{word} {'whom' if person else 'what'}"
    elif word in ("is", "was", "were", "are"):
        wh = f"{word} {'who' if person else 'what'}"
    elif _after_verb(before[: cue.start()]) and not person:
        wh = "from where" if word == "from" else "where"
    else:
        return None
    return _in_situ(sent, cue.start(), span.pend, wh, topic)


def _after_verb(before: str) -> bool:
    words = before.split()
    last = words[-1].lower() if words else ""
    return last in _PLACE_VERBS or bool(re.fullmatch(r"[a-z]+(?:ed|ing)", last))


def _is_role(role: str) -> bool:
    """ "the chemist", "the wool merchant", "the island (of)": not "the lower", "the slopes (of)"."""
    words = role.split()
    last = words[-1]
    return not (set(w.lower() for w in words) & (FUNCTION_WORDS | _ADJECTIVES)
                or re.search(r"(?:[^s]s|ed|ern)$", last))


_ROLE_RE = re.compile(
    r"(?:\b(?P<prep>by|from|to|in|at|of|for|with|under|on|into|near)\s)?"
    r"\b(?P<det>the|a|an|its|her|his|their)\s(?P<role>(?:[A-Za-z'’-]+\s){0,2}?[a-z][a-z-]*)\s(?:of\s)?$"
)


def _role_question(sent: str, span: Span, role: re.Match, topic: Topic) -> str | None:
    """ "by the chemist Ilario Quenn" -> "Which chemist ...?", "the island of Skerrow" -> "which island"."""
    prep = role["prep"] or ""
    start = role.start("prep") if prep else role.start("det")
    if prep == "by":
        fronted = _front_passive(sent, _with_phrase(span, start), f"Which {role['role']}", topic, True)
        if fronted:
            return fronted
    wh = f"{prep} which {role['role']}".strip()
    return _in_situ(sent, start, span.pend, wh, topic)


def _with_phrase(span: Span, pstart: int) -> Span:
    return Span(span.start, span.end, span.kind, span.text, pstart, span.pend, span.extra)


def _is_person(name: str, topic: Topic) -> bool:
    """Two to four capitalised words, none a place head nor a word the document uses in lower case:
    "Teodor Vask", not "Lake Immerveld" nor "Lantern Wool Fair" (the text speaks of "the fair")."""
    words = name.split()
    return 2 <= len(words) <= 4 and all(w[0].isupper() for w in words) and not (
        set(words) & _PLACE_HEADS or {w.lower() for w in words} & topic.common)


_WH_BUILDERS = {
    "year": _time_question,
    "date": _time_question,
    "measure": _amount_question,
    "count": _amount_question,
    "colour": _colour_question,
    "material": _material_question,
    "name": _name_question,
}


def cloze_question(sent: str, span: Span, title: str) -> str:
    """ "<title>: <sentence with ___>. What fills the blank?"."""
    body = re.sub(r"[.!?]+$", "", (sent[: span.start] + "___" + sent[span.end :]).strip())
    return f"{title}: {body}. What fills the blank?" if title else f"{body}. What fills the blank?"


def _with_topic(question: str | None, title: str) -> str | None:
    """Prefix "<title>: " to a question that names neither the title nor its main words,
    so "The old quarter is known for ...?" still says which document it is about."""
    words = [w for w in re.findall(r"[\w'’&.-]+", title_core(title)) if w[0].isupper() and w != "The"]
    if not question or not words or any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", question, re.IGNORECASE)
                                        for w in words):
        return question
    return f"{title}: {question}"


def _leaks(question: str, answer: str) -> bool:
    """True when the question gives its own answer away (e.g. the answer is also the title)."""
    pattern = r"(?<!\w)" + re.escape(answer.lower()) + r"(?!\w)"
    return re.search(pattern, question.lower()) is not None


# ---------------------------------------------------------------- candidates and selection


@dataclass(frozen=True)
class _Candidate:
    pair: QAPair
    sentence: int
    kind: str
    cloze: bool
    order: int


def _candidates(doc: Document, sentences: list[str], topic: Topic) -> list[_Candidate]:
    out: list[_Candidate] = []
    for i, sent in enumerate(sentences):
        for span in extract_spans(sent, doc.title):
            question = _with_topic(_wh_question(sent, span, topic), doc.title)
            cloze = not question or _leaks(question, span.text)
            if cloze:
                question = cloze_question(sent, span, doc.title)
            if _leaks(question, span.text):
                continue  # the answer appears twice, or in the title: a giveaway
            out.append(_Candidate(QAPair(question, span.text, sent), i, span.kind, cloze, len(out)))
    return out


def _select(cands: list[_Candidate], k: int) -> list[_Candidate]:
    """Greedy diverse pick: new sentences first, then new span kinds and answers, wh before cloze."""
    chosen: list[_Candidate] = []
    left = list(cands)
    while left and len(chosen) < k:
        def cost(c: _Candidate) -> tuple:
            return (sum(x.sentence == c.sentence for x in chosen),
                    sum(x.pair.answer == c.pair.answer for x in chosen),
                    c.cloze, sum(x.kind == c.kind for x in chosen), c.order)
        best = min(left, key=cost)
        chosen.append(best)
        left.remove(best)
    return sorted(chosen, key=lambda c: c.order)  # document order reads naturally


def _fallback(doc: Document, sentences: list[str]) -> QAPair:
    """A cloze on the title (or the longest word) of the first sentence: never an empty qa."""
    sent = sentences[0]
    core = title_core(doc.title)
    at = sent.find(core) if core else -1
    if at >= 0:
        span = span_at(sent, at, at + len(core), "name")
        return QAPair(cloze_question(sent, span, ""), span.text, sent)
    words = list(re.finditer(r"\w+", sent))
    if not words:
        return QAPair(f"{doc.title or 'The document'} says what?", sent, sent)
    word = max(words, key=lambda m: len(m.group()))  # max keeps the first on ties
    return QAPair(cloze_question(sent, span_at(sent, word.start(), word.end(), "word"), doc.title),
                  word.group(), sent)


# ---------------------------------------------------------------- rewrite


_REWRITES = ((" is known for ", " is noted for "), (" was known for ", " was noted for "),
             (" more than ", " over "), (" was founded in ", " was established in "))


def _rewrite(sentences: list[str], topic: Topic) -> str:
    """Second sentence first, the opening sentence last, pronouns resolved, a few safe synonyms."""
    order = sentences[1:] + sentences[:1] if len(sentences) > 1 else sentences
    text = " ".join(_fix_subject(s, topic) if i == 0 else s for i, s in enumerate(order))
    for old, new in _REWRITES:
        text = text.replace(old, new)
    return f"About {topic.name}: {text}" if topic.name else text


# ---------------------------------------------------------------- entry point


def rule_augment(doc: Document, n_qa: int = 3, max_qa: int | None = None) -> Augmentation:
    """Rewrite plus QA pairs for one document: n_qa pairs, or up to max_qa when it is given.

    max_qa overrides n_qa: every candidate (up to max_qa) is kept, because a fact that no QA
    pair asks about is not learned by the document's LoRA.
    """
    for name, value in (("n_qa", n_qa), ("max_qa", max_qa)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{name}={value!r}: use a positive integer (PRAG uses n_qa=3)")
    sentences = split_sentences(doc.text)
    if not sentences:
        raise InputError(f"document {doc.id!r} has no text to augment; remove it or give it text")
    topic = _topic(doc, sentences)  # read once: the questions and the rewrite both name it
    chosen = _select(_candidates(doc, sentences, topic), max_qa if max_qa is not None else n_qa)
    qa = tuple(c.pair for c in chosen) or (_fallback(doc, sentences),)
    return Augmentation(doc.id, _rewrite(sentences, topic), qa, SOURCE)


# ---------------------------------------------------------------- JSON cache


def to_json(aug: Augmentation) -> dict:
    """A JSON-ready dict with PRAG-like keys, for JSONL caching."""
    return {
        "doc_id": aug.doc_id,
        "rewrite": aug.rewrite,
        "qa": [{"question": p.question, "answer": p.answer, "full_answer": p.full_answer}
               for p in aug.qa],
        "source": aug.source,
    }


def from_json(obj: Any) -> Augmentation:
    """Inverse of to_json; a missing or mistyped field raises InputError naming it."""
    record = _require_fields(obj, ("doc_id", "rewrite", "qa", "source"), "augmentation record")
    if not isinstance(record["qa"], list):
        raise InputError(f"augmentation record: field 'qa' must be a list, got "
                         f"{type(record['qa']).__name__}; re-create the cache")
    pairs = []
    for i, item in enumerate(record["qa"]):
        fields = _require_fields(item, ("question", "answer", "full_answer"), f"augmentation qa[{i}]")
        pairs.append(QAPair(fields["question"], fields["answer"], fields["full_answer"]))
    return Augmentation(record["doc_id"], record["rewrite"], tuple(pairs), record["source"])


def _require_fields(obj: Any, names: tuple[str, ...], where: str) -> dict:
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}; re-create the cache")
    for name in names:
        if name not in obj:
            raise InputError(f"{where}: missing field {name!r}; re-create the cache")
        if name != "qa" and not isinstance(obj[name], str):
            raise InputError(f"{where}: field {name!r} must be a string, got "
                             f"{type(obj[name]).__name__}; re-create the cache")
    return obj
